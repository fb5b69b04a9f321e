/* fuzz_tokcache: the token cache reader in data.c, through data_load. The
 * input is train.tokens of a fixed char-level text; the first byte's bits:
 *   bit 0: refresh the checksum (FNV-1a 64 as data.c's format comment
 *          describes it), so damage past the header gets past that check
 *   bit 1: copy version, kind, vocab size and the two hashes from the real
 *          cache, so the reader goes on to the ids
 * Properties: data_load always succeeds (a bad cache is rebuilt); the ids it
 * returns are in the vocabulary and decode; a second load gives them again. */
#include <string.h>

#include "cfg.h"
#include "data.h"
#include "fuzz.h"
#include "util.h"

#define HDR 168 /* data.c's DATA_HDR */

static const char fuzz_text[] = "It had always been his fate to have women say such things of him.\n";
static cfg_t fuzz_cfg;
static char fuzz_cache[1024], fuzz_text_path[1024], fuzz_tokens[1100];
static uint8_t *fuzz_ref; /* the real train.tokens */
static size_t fuzz_ref_len;
static data_set fuzz_real;

static void fuzz_setup(void) {
  static const char src[] =
      "return { name = 'fuzz', tokenizer = 'char', emb_dim = 8, n_heads = 1, n_layers = 1, context_length = 8 }";
  if (cfg_load_string(src, "fuzz.lua", &fuzz_cfg))
    fuzz_fail("config: %s", util_errmsg());
  snprintf(fuzz_text_path, sizeof fuzz_text_path, "%s", fuzz_file("text.txt", (const uint8_t *)fuzz_text,
                                                                  sizeof fuzz_text - 1));
  snprintf(fuzz_cache, sizeof fuzz_cache, "%s/cache", fuzz_dir());
  snprintf(fuzz_tokens, sizeof fuzz_tokens, "%s/train.tokens", fuzz_cache);
  const char *paths[1] = {fuzz_text_path};
  if (data_load(&fuzz_cfg, paths, 1, fuzz_cache, &fuzz_real)) fuzz_fail("data_load: %s", util_errmsg());
  char *ref;
  if (util_read_file(fuzz_tokens, &ref, &fuzz_ref_len)) fuzz_fail("%s", util_errmsg());
  fuzz_ref = (uint8_t *)ref;
}

static uint64_t fuzz_checksum(const uint8_t *f, size_t len) {
  static const uint8_t zero[8];
  uint64_t h = util_fnv1a(f, 32, 0);
  h = util_fnv1a(zero, 8, h);
  return util_fnv1a(f + 40, len - 40, h);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!fuzz_ref) fuzz_setup();
  if (size < 1) return 0;
  size_t len = size - 1;
  uint8_t *f = malloc(len + 1);
  if (!f) fuzz_fail("out of memory");
  memcpy(f, data + 1, len);
  if ((data[0] & 2) && len >= HDR) {
    memcpy(f + 8, fuzz_ref + 8, 4);    /* version */
    memcpy(f + 12, fuzz_ref + 12, 4);  /* kind */
    memcpy(f + 20, fuzz_ref + 20, 4);  /* vocab size */
    memcpy(f + 40, fuzz_ref + 40, 128); /* vocab hash, text hash */
  }
  if ((data[0] & 1) && len >= HDR) {
    uint64_t h = fuzz_checksum(f, len);
    for (int i = 0; i < 8; i++) f[32 + i] = (uint8_t)(h >> 8 * i);
  }
  FILE *out = fopen(fuzz_tokens, "wb");
  if (!out || (len && fwrite(f, 1, len, out) != len) || fclose(out)) fuzz_fail("cannot write %s", fuzz_tokens);
  free(f);

  cfg_t c = fuzz_cfg;
  data_set ds;
  const char *paths[1] = {fuzz_text_path};
  if (data_load(&c, paths, 1, fuzz_cache, &ds)) fuzz_fail("data_load failed on a bad cache: %s", util_errmsg());
  for (size_t i = 0; i < ds.n_train; i++)
    if (ds.train[i] < 0 || ds.train[i] >= tok_vocab_size(ds.tok)) fuzz_fail("id %d out of range", ds.train[i]);
  char *back;
  size_t n;
  if (tok_decode(ds.tok, ds.train, ds.n_train, &back, &n)) fuzz_fail("cached ids do not decode");
  free(back);
  /* the file now on disk is what data_load trusted or rebuilt: reading it
   * again must give the same ids */
  data_set again;
  if (data_load(&c, paths, 1, fuzz_cache, &again)) fuzz_fail("data_load: %s", util_errmsg());
  if (again.n_train != ds.n_train || memcmp(again.train, ds.train, ds.n_train * sizeof *ds.train))
    fuzz_fail("the cache changed between two loads");
  data_free(&again);
  data_free(&ds);
  return 0;
}
