/* tok_vocab: what the tokenizer parts share (tok_internal.h): allocation
 * and release of a tok_t, its entries and vocabulary hash, the vocabulary
 * blob (format: tok.c's header comment), and the JSON string reader and
 * writer of encoder.json keys and blob lines. Calls only util and tok_map,
 * never the dispatch (tok.c) or a part (tok_bpe.c, tok_simple.c). */
#include <stdlib.h>
#include <string.h>

#include "cfg.h"
#include "tok_internal.h"

tok_t *tok_alloc(int kind) {
  tok_t *t = util_calloc(1, sizeof *t, "tokenizer");
  if (!t) return NULL;
  t->kind = kind;
  t->eot = t->unk = -1;
  return t;
}

int tok_add_entry(tok_t *t, const char *s, size_t n) {
  if ((size_t)t->n_vocab + 2 > t->ent_cap) {
    size_t cap = t->ent_cap ? t->ent_cap * 2 : 256;
    uint32_t *o = util_realloc(t->ent_off, cap * sizeof *o, "tokenizer vocabulary");
    if (!o) return -1;
    t->ent_off = o;
    t->ent_cap = cap;
  }
  if (t->n_vocab == INT32_MAX - 1 || t->ent.len + n > UINT32_MAX)
    return util_err("tokenizer vocabulary: too large (2^31 entries or 4 GiB of text at most)");
  if (util_buf_add(&t->ent, s, n)) return -1;
  t->ent_off[t->n_vocab] = (uint32_t)(t->ent.len - n);
  t->ent_off[++t->n_vocab] = (uint32_t)t->ent.len;
  return 0;
}

int tok_finish(tok_t *t) {
  char *blob;
  size_t n;
  if (tok_vocab_save(t, &blob, &n)) return -1;
  util_sha256_hex(blob, n, t->hash);
  free(blob);
  return 0;
}

/* ---- JSON strings ---------------------------------------------------------- */

static int tok_json_hex4(const char *s, size_t n, size_t i, uint32_t *v) {
  if (i + 4 > n) return -1;
  *v = 0;
  for (int k = 0; k < 4; k++) {
    char c = s[i + (size_t)k];
    int d = c >= '0' && c <= '9'   ? c - '0'
            : c >= 'a' && c <= 'f' ? c - 'a' + 10
            : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                   : -1;
    if (d < 0) return -1;
    *v = *v << 4 | (uint32_t)d;
  }
  return 0;
}

long tok_json_read(const char *s, size_t n, util_buf *out, const char *what, size_t base) {
  if (!n || s[0] != '"') return util_err("%s, byte offset %zu: expected a JSON string", what, base);
  size_t i = 1;
  while (i < n) {
    unsigned char c = (unsigned char)s[i];
    if (c == '"') return (long)(i + 1);
    if (c < 0x20) return util_err("%s, byte offset %zu: control character inside a JSON string", what, base + i);
    if (c != '\\') {
      size_t j = i;
      while (j < n && s[j] != '"' && s[j] != '\\' && (unsigned char)s[j] >= 0x20) j++;
      if (util_buf_add(out, s + i, j - i)) return -1;
      i = j;
      continue;
    }
    if (i + 1 >= n) break;
    char e = s[i + 1], lit = 0;
    switch (e) {
    case '"': lit = '"'; break;
    case '\\': lit = '\\'; break;
    case '/': lit = '/'; break;
    case 'b': lit = '\b'; break;
    case 'f': lit = '\f'; break;
    case 'n': lit = '\n'; break;
    case 'r': lit = '\r'; break;
    case 't': lit = '\t'; break;
    case 'u': break;
    default:
      if (e > 0x20 && e < 0x7F)
        return util_err("%s, byte offset %zu: invalid escape '\\%c' in a JSON string", what, base + i, e);
      return util_err("%s, byte offset %zu: invalid escape (byte 0x%02X after '\\') in a JSON string", what, base + i,
                      (unsigned char)e);
    }
    if (e != 'u') {
      if (util_buf_add(out, &lit, 1)) return -1;
      i += 2;
      continue;
    }
    uint32_t cp, lo;
    if (tok_json_hex4(s, n, i + 2, &cp))
      return util_err("%s, byte offset %zu: \\u needs four hex digits", what, base + i);
    size_t used = 6;
    if (cp >= 0xD800 && cp <= 0xDBFF) {
      /* a high surrogate must be followed by an escaped low one: the pair
       * is one code point above U+FFFF */
      if (i + 7 < n && s[i + 6] == '\\' && s[i + 7] == 'u' && !tok_json_hex4(s, n, i + 8, &lo) && lo >= 0xDC00 &&
          lo <= 0xDFFF) {
        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
        used = 12;
      } else {
        return util_err("%s, byte offset %zu: unpaired surrogate \\u%04X in a JSON string", what, base + i, cp);
      }
    } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
      return util_err("%s, byte offset %zu: unpaired surrogate \\u%04X in a JSON string", what, base + i, cp);
    }
    char u[4];
    if (util_buf_add(out, u, (size_t)util_utf8_encode(cp, u))) return -1;
    i += used;
  }
  return util_err("%s, byte offset %zu: unterminated JSON string", what, base + n);
}

int tok_json_write(util_buf *out, const char *s, size_t n) {
  static const char hex[] = "0123456789abcdef";
  if (util_buf_add(out, "\"", 1)) return -1;
  size_t i = 0;
  while (i < n) {
    unsigned char c = (unsigned char)s[i];
    const unsigned char *u = (const unsigned char *)s + i;
    uint32_t cp = 0x110000; /* set when the character needs a \u escape */
    size_t len = 1;
    const char *esc = NULL;
    switch (c) {
    case '"': esc = "\\\""; break;
    case '\\': esc = "\\\\"; break;
    case '\n': esc = "\\n"; break;
    case '\t': esc = "\\t"; break;
    case '\r': esc = "\\r"; break;
    case '\b': esc = "\\b"; break;
    case '\f': esc = "\\f"; break;
    default:
      if (c < 0x20 || c == 0x7F)
        cp = c;
      else if (c == 0xC2 && i + 1 < n && u[1] >= 0x80 && u[1] <= 0x9F)
        cp = u[1], len = 2;
      else if (c == 0xE2 && i + 2 < n && u[1] == 0x80 && (u[2] == 0xA8 || u[2] == 0xA9))
        cp = 0x2000u + u[2] - 0x80, len = 3;
    }
    if (esc) {
      if (util_buf_add(out, esc, 2)) return -1;
    } else if (cp < 0x110000) {
      char e[6] = {'\\', 'u', hex[cp >> 12 & 15], hex[cp >> 8 & 15], hex[cp >> 4 & 15], hex[cp & 15]};
      if (util_buf_add(out, e, 6)) return -1;
    } else {
      size_t j = i + 1; /* copy the run of bytes that need no escape at once */
      while (j < n && (unsigned char)s[j] >= 0x20 && s[j] != '"' && s[j] != '\\' && s[j] != 0x7F &&
             (unsigned char)s[j] != 0xC2 && (unsigned char)s[j] != 0xE2)
        j++;
      len = j - i;
      if (util_buf_add(out, s + i, len)) return -1;
    }
    i += len;
  }
  return util_buf_add(out, "\"", 1);
}

/* ---- vocabulary blob ------------------------------------------------------- */

int tok_vocab_save(const tok_t *t, char **blob, size_t *n) {
  util_buf b = {0};
  if (t->kind == CFG_TOK_GPT2) {
    if (util_buf_add(&b, "gpt2", 4)) return -1;
  } else {
    if (util_buf_printf(&b, "%s %s 1\n", TOK_BLOB_MAGIC, cfg_tokenizer_name(t->kind))) goto fail;
    for (int i = 0; i < t->n_vocab; i++) {
      if (tok_json_write(&b, t->ent.data + t->ent_off[i], t->ent_off[i + 1] - t->ent_off[i])) goto fail;
      if (util_buf_add(&b, "\n", 1)) goto fail;
    }
  }
  if (util_buf_add(&b, "", 1)) goto fail; /* NUL for callers that print it */
  *blob = b.data;
  *n = b.len - 1;
  return 0;
fail:
  util_buf_free(&b);
  return -1;
}

void tok_release(tok_t *t) {
  if (!t) return;
  util_buf_free(&t->ent);
  free(t->ent_off);
  if (t->words.slot) tok_map_free(&t->words);
  free(t->cps);
  free(t);
}
