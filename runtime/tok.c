/* tok: the public tokenizer API (tok.h). Construction from a saved
 * vocabulary, the vocabulary blob and its hash, and dispatch to the gpt2
 * (tok_bpe.c) and char/word (tok_simple.c) parts; also the JSON string
 * reader and writer they share.
 *
 * Vocabulary blob (char, word): the line "gptc-vocab KIND 1", then the text
 * of every id in id order, one JSON string literal a line, each line ending
 * in '\n'. For gpt2 the blob is just "gpt2": the tables are built in. */
#include <stdlib.h>
#include <string.h>

#include "cfg.h"
#include "tok_internal.h"

#define TOK_BLOB_MAGIC "gptc-vocab"

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

/* Entry checks while loading: char entries are single code points in
 * ascending order; word entries are unique and have no whitespace. */
static int tok_blob_entry(tok_t *t, const char *s, size_t n, int line, uint32_t *prev) {
  if (t->kind == CFG_TOK_CHAR) {
    uint32_t cp;
    if (!n || (size_t)util_utf8_decode(s, &cp) != n)
      return util_err("vocabulary line %d: a char entry must be exactly one character", line);
    if (t->n_vocab && cp <= *prev)
      return util_err("vocabulary line %d: char entries must be in ascending code point order", line);
    *prev = cp;
  } else {
    if (!n) return util_err("vocabulary line %d: a word entry cannot be empty", line);
    for (size_t i = 0; i < n;) {
      uint32_t cp;
      i += (size_t)util_utf8_decode(s + i, &cp);
      if (tok_py_space(cp)) return util_err("vocabulary line %d: a word entry cannot contain whitespace", line);
    }
    int r = tok_map_put(&t->words, s, n, t->n_vocab);
    if (r < 0) return -1;
    if (!r) return util_err("vocabulary line %d: duplicate word entry", line);
    if (n == 13 && !memcmp(s, "<|endoftext|>", 13)) t->eot = t->n_vocab;
    if (n == 7 && !memcmp(s, "<|unk|>", 7)) t->unk = t->n_vocab;
  }
  return tok_add_entry(t, s, n);
}

tok_t *tok_from_vocab(int kind, const char *blob, size_t n) {
  if (kind == CFG_TOK_GPT2) return tok_gpt2_new();
  if (kind != CFG_TOK_CHAR && kind != CFG_TOK_WORD) return util_err("unknown tokenizer kind %d", kind), NULL;
  const char *want = cfg_tokenizer_name(kind);
  if (!blob) blob = "", n = 0;
  long bad = util_utf8_invalid_at(blob, n);
  if (bad >= 0) return util_err("vocabulary: invalid UTF-8 at byte offset %ld", bad), NULL;
  const char *nl = memchr(blob, '\n', n);
  size_t hl = nl ? (size_t)(nl - blob) : n, ml = strlen(TOK_BLOB_MAGIC);
  if (n == 4 && !memcmp(blob, "gpt2", 4))
    return util_err("vocabulary is for the gpt2 tokenizer, expected %s", want), NULL;
  if (hl < ml + 1 || memcmp(blob, TOK_BLOB_MAGIC " ", ml + 1) || !nl)
    return util_err("vocabulary: the first line must be '%s %s 1'", TOK_BLOB_MAGIC, want), NULL;
  const char *k = blob + ml + 1, *sp = memchr(k, ' ', hl - ml - 1);
  size_t kl = sp ? (size_t)(sp - k) : hl - ml - 1;
  if (kl != strlen(want) || memcmp(k, want, kl))
    return util_err("vocabulary is for the %.*s tokenizer, expected %s", (int)kl, k, want), NULL;
  if (!sp || (size_t)(nl - sp) != 2 || sp[1] != '1')
    return util_err("vocabulary: unsupported format version on line 1 (expected '%s %s 1')", TOK_BLOB_MAGIC, want),
           NULL;

  tok_t *t = tok_alloc(kind);
  util_buf e = {0};
  if (!t || (kind == CFG_TOK_WORD && tok_map_init(&t->words, 1024))) goto fail;
  size_t i = hl + 1;
  int line = 1;
  uint32_t prev = 0;
  char what[64];
  while (i < n) {
    line++;
    snprintf(what, sizeof what, "vocabulary line %d", line);
    e.len = 0;
    long used = tok_json_read(blob + i, n - i, &e, what, i);
    if (used < 0) goto fail;
    i += (size_t)used;
    if (i >= n || blob[i] != '\n') {
      util_err("vocabulary line %d: expected a newline after the entry (byte offset %zu)", line, i);
      goto fail;
    }
    i++;
    if (tok_blob_entry(t, e.data ? e.data : "", e.len, line, &prev)) goto fail;
  }
  if (!t->n_vocab) {
    util_err("vocabulary has no entries");
    goto fail;
  }
  if ((kind == CFG_TOK_CHAR && tok_char_index(t)) || tok_finish(t)) goto fail;
  util_buf_free(&e);
  return t;
fail:
  util_buf_free(&e);
  tok_free(t);
  return NULL;
}

/* ---- accessors and dispatch ------------------------------------------------ */

const char *tok_vocab_hash(const tok_t *t) { return t->hash; }
int tok_kind(const tok_t *t) { return t->kind; }
int tok_vocab_size(const tok_t *t) { return t->n_vocab; }
int tok_eot(const tok_t *t) { return t->eot; }

const char *tok_entry(const tok_t *t, int id, size_t *len) {
  if (t->kind == CFG_TOK_GPT2 || id < 0 || id >= t->n_vocab) return NULL;
  *len = t->ent_off[id + 1] - t->ent_off[id];
  return t->ent.data + t->ent_off[id];
}

int tok_encode(tok_t *t, const char *text, size_t n, int allow_special, int32_t **ids, size_t *n_ids) {
  *ids = NULL;
  *n_ids = 0;
  long bad = util_utf8_invalid_at(text, n);
  if (bad >= 0) return util_err("invalid UTF-8 at byte offset %ld", bad);
  switch (t->kind) {
  case CFG_TOK_GPT2: return tok_bpe_encode(t, text, n, allow_special, ids, n_ids);
  case CFG_TOK_CHAR: return tok_char_encode(t, text, n, ids, n_ids);
  default: return tok_word_encode(t, text, n, allow_special, ids, n_ids);
  }
}

/* Ids decoded by this process, for tests that bound the work of a caller
 * (sample.c decodes each token once). Relaxed atomics: any thread may decode. */
static size_t tok_decoded_ids;
size_t tok_stat_decoded_ids(void) { return __atomic_load_n(&tok_decoded_ids, __ATOMIC_RELAXED); }

int tok_decode(const tok_t *t, const int32_t *ids, size_t n, char **text, size_t *len) {
  return tok_decode_from(t, ids, 0, n, text, len);
}

int tok_decode_from(const tok_t *t, const int32_t *ids, size_t from, size_t n, char **text, size_t *len) {
  *text = NULL;
  *len = 0;
  if (from > n) from = n; /* nothing to add */
  for (size_t i = from; i < n; i++)
    if (ids[i] < 0 || ids[i] >= t->n_vocab)
      return util_err("token id %d at position %zu is out of range (vocabulary size %d)", (int)ids[i], i, t->n_vocab);
  __atomic_fetch_add(&tok_decoded_ids, n > from ? n - from : 0, __ATOMIC_RELAXED);
  util_buf out = {0};
  int rc = 0;
  if (t->kind == CFG_TOK_GPT2)
    rc = tok_bpe_decode(t, ids + from, n - from, &out);
  else if (t->kind == CFG_TOK_WORD)
    rc = tok_word_decode(t, ids, from, n, &out);
  else
    for (size_t i = from; i < n && !rc; i++)
      rc = util_buf_add(&out, t->ent.data + t->ent_off[ids[i]], t->ent_off[ids[i] + 1] - t->ent_off[ids[i]]);
  if (rc || util_buf_add(&out, "", 1)) {
    util_buf_free(&out);
    return -1;
  }
  *text = out.data;
  *len = out.len - 1;
  return 0;
}

void tok_free(tok_t *t) {
  if (!t) return;
  tok_bpe_free(t->bpe);
  util_buf_free(&t->ent);
  free(t->ent_off);
  if (t->words.slot) tok_map_free(&t->words);
  free(t->cps);
  free(t);
}
