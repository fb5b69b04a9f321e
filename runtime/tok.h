/* tok: tokenizers. gpt2 = byte-level BPE over the bundled GPT-2 tables
 * (tiktoken's "gpt2" ids exactly); char = sorted code points of the training
 * text; word = the seed notebooks' SimpleTokenizerV2. */
#ifndef GPTC_TOK_H
#define GPTC_TOK_H

#include <stddef.h>
#include <stdint.h>

typedef struct tok_t tok_t;

tok_t *tok_gpt2_new(void); /* from the embedded data/gpt2 files */
/* Vocabulary built from `text` (must be valid UTF-8, non-empty). */
tok_t *tok_char_new(const char *text, size_t n);
tok_t *tok_word_new(const char *text, size_t n);
/* kind: CFG_TOK_* from cfg.h. For gpt2 the blob is ignored. */
tok_t *tok_from_vocab(int kind, const char *blob, size_t n);
/* The vocabulary as a self-describing text blob (stored with the data
 * cache and in checkpoints); "gpt2" for gpt2. Caller frees. */
int tok_vocab_save(const tok_t *t, char **blob, size_t *n);
/* SHA-256 hex of the vocabulary (identifies it in caches and checkpoints). */
const char *tok_vocab_hash(const tok_t *t);
int tok_kind(const tok_t *t);
int tok_vocab_size(const tok_t *t);
/* char/word: the text of entry `id` (not NUL-terminated, *len bytes);
 * NULL for gpt2 or an id out of range. */
const char *tok_entry(const tok_t *t, int id, size_t *len);
/* id of <|endoftext|>, or -1 when the vocabulary has none (char). */
int tok_eot(const tok_t *t);
/* Encodes UTF-8 text. allow_special: "<|endoftext|>" becomes the single
 * special id (gpt2, word); otherwise it is ordinary text. Invalid UTF-8 ->
 * error naming the byte offset; char: unknown character -> error naming it
 * and its position. *ids is malloc'ed. */
int tok_encode(tok_t *t, const char *text, size_t n, int allow_special, int32_t **ids, size_t *n_ids);
/* Decodes ids to text (malloc'ed, NUL-terminated). An id out of range is an
 * error naming it. gpt2 output may end in a partial UTF-8 sequence when the
 * ids stop mid-character. */
int tok_decode(const tok_t *t, const int32_t *ids, size_t n, char **text, size_t *len);
/* The text that ids[from..n) add after the text of ids[0..from):
 * tok_decode(ids, n) is tok_decode(ids, from) followed by it, so a stream
 * is decoded one token at a time in time linear in its length. Errors name
 * positions in ids as tok_decode does. */
int tok_decode_from(const tok_t *t, const int32_t *ids, size_t from, size_t n, char **text, size_t *len);
void tok_free(tok_t *t);

#endif
