/* tok: the public tokenizer API (tok.h). Construction from a saved
 * vocabulary and dispatch to the gpt2 (tok_bpe.c) and char/word
 * (tok_simple.c) parts. What those parts share (allocation, entries, the
 * vocabulary blob and its hash; its JSON strings are json.c's) is tok_vocab.c, which calls
 * nothing here, so the parts never call back up into the dispatch.
 *
 * Vocabulary blob (char, word): the line "gptc-vocab KIND 1", then the text
 * of every id in id order, one JSON string literal a line, each line ending
 * in '\n'. For gpt2 the blob is just "gpt2": the tables are built in. */
#include <stdlib.h>
#include <string.h>

#include "cfg.h"
#include "json.h"
#include "tok_internal.h"

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
    long used = json_read_str(blob + i, n - i, &e, what, i);
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
  t->bpe = NULL;
  tok_release(t);
}
