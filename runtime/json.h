/* json: a small, strict JSON (RFC 8259) parser and writer helpers, for
 * safetensors headers and Hugging Face config.json files, and the one JSON
 * string codec of the tokenizers (encoder.json keys, vocabulary blob lines).
 *
 * Strict means: UTF-8 input only, no comments, no trailing commas, no
 * leading zeros, no lone surrogates in \u escapes, no control characters in
 * strings, no duplicate object keys, nothing but whitespace after the value.
 * Errors name the byte offset: "<what>: invalid JSON at byte N: <rule>". */
#ifndef GPTC_JSON_H
#define GPTC_JSON_H

#include <stddef.h>
#include <stdint.h>

#include "util.h"

/* Limits that keep a hostile input from exhausting the stack or memory. */
#define JSON_MAX_BYTES 100000000u /* as the safetensors header limit */
#define JSON_MAX_DEPTH 64
#define JSON_MAX_VALUES 1000000u

enum { JSON_NULL, JSON_BOOL, JSON_NUM, JSON_STR, JSON_ARR, JSON_OBJ };

typedef struct json_val json_val;
typedef struct json_member json_member;

struct json_val {
  int type;
  int boolean;          /* JSON_BOOL */
  int is_int;           /* JSON_NUM: the literal is an integer that fits int64 */
  int64_t i;            /* JSON_NUM with is_int: its exact value */
  double num;           /* JSON_NUM */
  size_t offset;        /* byte offset of the value in the text */
  size_t len;           /* JSON_STR: bytes; JSON_ARR / JSON_OBJ: elements */
  char *str;            /* JSON_STR: decoded, NUL-terminated (may hold \u0000) */
  json_val *items;      /* JSON_ARR */
  json_member *members; /* JSON_OBJ, in document order */
  size_t *order;        /* JSON_OBJ: member indices sorted by key */
};

struct json_member {
  char *key; /* decoded, NUL-terminated */
  size_t key_len;
  size_t key_offset; /* byte offset of the key's opening quote */
  json_val val;
};

/* Parses `len` bytes of `text`. `what` (a file name) starts error messages.
 * Returns NULL after util_err on invalid input or a broken limit. */
json_val *json_parse(const char *text, size_t len, const char *what);
void json_free(json_val *v);

/* The member `key` of an object (NULL when absent or v is not an object). */
const json_val *json_get(const json_val *v, const char *key);
const char *json_type_name(int type);

/* Reads the JSON string literal at s (s[0] must be '"') of a format that
 * holds JSON strings outside a JSON document (encoder.json's keys, the
 * vocabulary blob's lines), appending its decoded bytes to out. The caller
 * checks that s is UTF-8 where it must be. Returns the bytes consumed, or -1
 * after util_err "<what>: invalid JSON at byte <base + offset>: <rule>" (base:
 * where s starts in its file). */
long json_read_str(const char *s, size_t n, util_buf *out, const char *what, size_t base);

/* Writers append to a util_buf; they return -1 after util_err on failure. */
/* A quoted string; `s` must be valid UTF-8 (named by `what` in the error). */
int json_write_str(util_buf *b, const char *s, size_t n, const char *what);
/* json_write_str's form for files of one string per line (the vocabulary
 * blob): it also escapes DEL, U+0080..U+009F and U+2028/U+2029, so every
 * invisible or line-breaking character shows as an escape, and writes
 * U+0008 and U+000C as \b and \f. The blob's bytes are hashed into the
 * vocabulary hash, so this form never changes. */
int json_write_str_line(util_buf *b, const char *s, size_t n, const char *what);
/* A finite number in the shortest form that reads back exactly. */
int json_write_num(util_buf *b, double x, const char *what);

#endif
