/* tok_vocab: what the tokenizer parts share (tok_internal.h): allocation
 * and release of a tok_t, its entries and vocabulary hash, the vocabulary
 * blob (format: tok.c's header comment; its lines are JSON strings written
 * by json.c). Calls only util, json and tok_map, never the dispatch
 * (tok.c) or a part (tok_bpe.c, tok_simple.c). */
#include <stdlib.h>
#include <string.h>

#include "cfg.h"
#include "json.h"
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

/* ---- vocabulary blob ------------------------------------------------------- */

int tok_vocab_save(const tok_t *t, char **blob, size_t *n) {
  util_buf b = {0};
  if (t->kind == CFG_TOK_GPT2) {
    if (util_buf_add(&b, "gpt2", 4)) return -1;
  } else {
    if (util_buf_printf(&b, "%s %s 1\n", TOK_BLOB_MAGIC, cfg_tokenizer_name(t->kind))) goto fail;
    for (int i = 0; i < t->n_vocab; i++) {
      if (json_write_str_line(&b, t->ent.data + t->ent_off[i], t->ent_off[i + 1] - t->ent_off[i], "vocabulary"))
        goto fail;
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
