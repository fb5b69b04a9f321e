/* tok_internal: what the tokenizer files (tok.c, tok_vocab.c, tok_map.c,
 * tok_bpe.c, tok_simple.c, tok_unicode.c) share, and what tests/test_tok.c reaches past
 * the public API for. Not for other modules. */
#ifndef GPTC_TOK_INTERNAL_H
#define GPTC_TOK_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "tok.h"
#include "util.h"

/* ---- byte-string -> int32 hash map (tok_map.c) ----------------------------
 * Open addressing with linear probing; keys are copied into one arena so
 * a map is three allocations however many keys it holds. Values are >= 0. */
typedef struct {
  uint32_t hash, idx; /* idx = entry index + 1; 0 marks an empty slot */
} tok_map_slot;
typedef struct {
  size_t off;   /* key start in `keys` */
  uint32_t len; /* key length in bytes */
  int32_t val;
} tok_map_ent;
typedef struct {
  tok_map_slot *slot; /* (cap) */
  size_t cap;         /* power of two, kept at least twice the entry count */
  tok_map_ent *ent;   /* (n) in insertion order */
  size_t n, ent_cap;
  util_buf keys;
} tok_map;

int tok_map_init(tok_map *m, size_t expect);
/* The value stored for the key, or -1 when absent. */
int32_t tok_map_get(const tok_map *m, const void *key, size_t len);
/* Inserts key -> val. Returns 1 when inserted, 0 when the key was already
 * there (its value is left alone), -1 when out of memory. */
int tok_map_put(tok_map *m, const void *key, size_t len, int32_t val);
void tok_map_clear(tok_map *m);
void tok_map_free(tok_map *m);

/* ---- the tokenizer object -------------------------------------------------- */
typedef struct tok_bpe tok_bpe; /* gpt2 state, tok_bpe.c */

struct tok_t {
  int kind;    /* CFG_TOK_* */
  int n_vocab; /* ids are 0 .. n_vocab-1 */
  int eot;     /* id of <|endoftext|>, or -1 */
  int unk;     /* word: id of <|unk|>, or -1 (unknown words are then an error) */
  char hash[65];
  /* char/word: entry i is the UTF-8 text of id i, at ent.data + ent_off[i]
   * up to ent_off[i + 1]. */
  util_buf ent;
  uint32_t *ent_off;  /* (n_vocab + 1) */
  size_t ent_cap;     /* capacity of ent_off */
  tok_map words;      /* word: entry text -> id */
  uint32_t *cps;      /* char: (n_vocab) the code points, ascending */
  int32_t ascii[128]; /* char: id of each ASCII character, -1 when absent */
  tok_bpe *bpe;       /* gpt2 */
};

#define TOK_BLOB_MAGIC "gptc-vocab" /* the vocabulary blob's first word */

/* Shared by the constructors (tok_vocab.c): allocates a tokenizer of `kind`. */
tok_t *tok_alloc(int kind);
/* Frees t and everything but the gpt2 state (t->bpe must be NULL or
 * freed already: tok_free does both). */
void tok_release(tok_t *t);
/* Appends the text of the next id (char/word); tok_finish then sets the
 * vocabulary hash. */
int tok_add_entry(tok_t *t, const char *s, size_t n);
int tok_finish(tok_t *t);

/* ---- per-kind parts -------------------------------------------------------- */
int tok_bpe_encode(tok_t *t, const char *s, size_t n, int allow_special, int32_t **ids, size_t *n_ids);
int tok_bpe_decode(const tok_t *t, const int32_t *ids, size_t n, util_buf *out);
void tok_bpe_free(tok_bpe *b);
/* Pre-tokenization only: the end offset of every regex piece (*ends is
 * malloc'ed). For tests that check the regex classes code point by code point. */
int tok_bpe_pieces(tok_t *t, const char *s, size_t n, size_t **ends, size_t *n_pieces);

/* Python's str.isspace(): the whitespace of the seeds' word split regex. */
int tok_py_space(uint32_t cp);
int tok_char_encode(tok_t *t, const char *s, size_t n, int32_t **ids, size_t *n_ids);
int tok_char_index(tok_t *t); /* builds cps/ascii from the entries */
int tok_word_encode(tok_t *t, const char *s, size_t n, int allow_special, int32_t **ids, size_t *n_ids);
/* The text ids[from..n) add after ids[0..from) (the joining space depends
 * only on the token and on whether it is the first). */
int tok_word_decode(const tok_t *t, const int32_t *ids, size_t from, size_t n, util_buf *out);
/* Ids decoded so far by tok_decode/tok_decode_from in this process (tests). */
size_t tok_stat_decoded_ids(void);
/* Merge-table lookups by this thread's gpt2 encodes so far (tests bound the
 * BPE's work by it: linear in the bytes, where a naive merge is quadratic). */
size_t tok_stat_rank_lookups(void);
/* The word vocabulary; with_specials = 0 leaves out <|endoftext|> and
 * <|unk|> (the seeds' SimpleTokenizerV1 vocabulary, used by tests). */
tok_t *tok_word_new_ex(const char *text, size_t n, int with_specials);

/* The gpt2 tokenizer with the regex forced into its fallback forms, so
 * tests can check them against tiktoken on any machine:
 * TOK_GPT2_EXPLICIT spells \p{L} and \p{N} out in full even where PCRE2's
 * own tables would do; TOK_GPT2_NO_JIT uses PCRE2's interpreter. */
enum { TOK_GPT2_EXPLICIT = 1, TOK_GPT2_NO_JIT = 2 };
tok_t *tok_gpt2_new_ex(int flags);
/* One line on how the pre-tokenizer runs (classes, JIT), for benchmarks. */
const char *tok_bpe_describe(const tok_t *t);

/* ---- Unicode classes of the GPT-2 regex (tok_unicode.c) ------------------- */
extern const char tok_uni_version[], tok_uni_base_version[];
extern const uint32_t tok_uni_letter[][2], tok_uni_number[][2], tok_uni_space[][2];
extern const size_t tok_uni_n_letter, tok_uni_n_number, tok_uni_n_space;
/* letters and numbers assigned after tok_uni_base_version */
extern const uint32_t tok_uni_letter_added[][2], tok_uni_number_added[][2];
extern const size_t tok_uni_n_letter_added, tok_uni_n_number_added;

#endif
