/* data: text loading, train/val split, tokenization with an on-disk token
 * cache, and the seeds' sliding windows and batches. */
#ifndef GPTC_DATA_H
#define GPTC_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "cfg.h"
#include "tok.h"

typedef struct {
  tok_t *tok;             /* owned; char/word vocab built from the whole text */
  size_t n_chars;         /* code points in the joined text */
  size_t n_chars_train;   /* the first (1 - val_ratio) of them */
  int32_t *train, *val;   /* token ids of each split */
  size_t n_train, n_val;
  char text_hash[65];     /* SHA-256 of the joined text */
} data_set;

/* Loads the texts (files, or directories whose *.txt files are taken in
 * sorted order as separate documents), joins them (with <|endoftext|> for
 * gpt2 and word, nothing for char), splits by characters, tokenizes each
 * split and builds or reuses the token cache in `cache_dir` (created).
 * paths == NULL uses cfg->data. Sets the config's vocab_size when derived.
 * Errors: missing file, empty text, invalid UTF-8 (byte offset). */
int data_load(cfg_t *cfg, const char *const *paths, int n_paths, const char *cache_dir, data_set *ds);
/* data_load for a checkpoint's run (`gptc eval --split`): the joined text's
 * SHA-256 must be want_hash (the checkpoint `ckpt`'s text_hash), else a
 * clear error before anything is tokenized. */
int data_load_run(cfg_t *cfg, const char *const *paths, int n_paths, const char *cache_dir, const char *want_hash,
                  const char *ckpt, data_set *ds);
void data_free(data_set *ds);

/* The token cache of a config outside a training run (`gptc data`, `gen`,
 * `bench`): <cache>/data/<config name as one safe path component>. */
int data_cache_dir(const cfg_t *cfg, char *out, size_t cap);
/* Sets a char/word config's vocab_size from its text, through that cache;
 * a config that has one already is left alone. */
int data_derive_vocab(cfg_t *cfg);

/* Windows exactly as the seeds: for i in range(0, len(ids) - T, stride):
 * input = ids[i:i+T], target = ids[i+1:i+T+1]; grouped in batches of B,
 * shuffled per epoch with the seed when `shuffle`, the last partial batch
 * dropped when `drop_last`. */
typedef struct {
  const int32_t *ids;
  size_t n;
  int B, T, stride, shuffle, drop_last;
  uint64_t seed;
  size_t n_windows, n_batches;
} data_loader;

/* Fails with a clear message when the split is shorter than one window. */
int data_loader_init(data_loader *dl, const int32_t *ids, size_t n, int B, int T, int stride, int shuffle,
                     int drop_last, uint64_t seed, const char *split_name);
/* Batch `b` (0 <= b < n_batches) of `epoch`: fills inputs and targets
 * (B*T each, row-major (B, T)); rows past the end of a partial last batch
 * get input 0 and target -1 (ignored by the loss). Returns the rows filled. */
int data_batch(const data_loader *dl, uint64_t epoch, size_t b, int32_t *inputs, int32_t *targets);

/* train.sampling = "random" (nanoGPT's get_batch): global micro-batch `g`
 * takes B window starts uniformly from 0 .. n-T-1 (every window that has a
 * target for each position), from a splitmix64 stream keyed by (seed, g)
 * alone, so any batch can be produced on its own and a resumed run draws
 * the same ones. Fills inputs and targets as data_batch; starts (B, may be
 * NULL) gets the chosen starts. */
void data_random_batch(const data_loader *dl, uint64_t g, int32_t *inputs, int32_t *targets, size_t *starts);

/* Every non-overlapping window of a split of n tokens: starts 0, T, 2T, ...
 * while start + T < n, i.e. floor((n - 1) / T) of them (0 when n <= T); the
 * tail after the last one (fewer than T + 1 tokens) is not scored. */
size_t data_full_windows(size_t n, int T);
/* The evaluation windows of a split (docs/validation.md): want == 0 or want
 * >= data_full_windows: every non-overlapping window, in order. Otherwise
 * stratified: the starts 0 .. n-T-1 cut into `want` equal strata, one start
 * drawn in each from a stream keyed by (seed, stratum), in stratum order, so
 * the set covers the whole split (first and last stratum included) and is a
 * function of (n, T, want, seed) only: the same at every evaluation and
 * after --resume. Returns the starts (caller frees; *count of them), NULL
 * with util_err on failure or when no window fits (naming split_name). */
size_t *data_eval_windows(size_t n, int T, size_t want, uint64_t seed, const char *split_name, size_t *count);

#endif
