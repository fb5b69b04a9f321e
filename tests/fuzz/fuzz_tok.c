/* fuzz_tok: the tokenizers. The first byte picks what the rest is:
 *   0 gpt2: text; decode(encode(text)) == text, byte for byte
 *   1 char: text; a vocabulary built from it, then the same round trip
 *   2 word: text; a vocabulary built from it; decoding normalizes spaces,
 *     so the property is encode(decode(ids)) == ids
 *   3 a char (bit 4 clear) or word vocabulary blob, as in a checkpoint
 * Bit 2 sets allow_special. Every vocabulary must also survive
 * tok_vocab_save -> tok_from_vocab with the same hash, and decoding the
 * input's bytes as ids must fail exactly when one is out of range. */
#include <string.h>

#include "cfg.h"
#include "fuzz.h"
#include "tok.h"
#include "util.h"

static void fuzz_vocab_roundtrip(const tok_t *t) {
  char *blob;
  size_t n;
  if (tok_vocab_save(t, &blob, &n)) fuzz_fail("cannot save a vocabulary: %s", util_errmsg());
  tok_t *u = tok_from_vocab(tok_kind(t), blob, n);
  if (!u) fuzz_fail("a saved vocabulary does not load: %s", util_errmsg());
  if (tok_vocab_size(u) != tok_vocab_size(t) || strcmp(tok_vocab_hash(u), tok_vocab_hash(t)) ||
      tok_eot(u) != tok_eot(t))
    fuzz_fail("a vocabulary changed through save and load");
  tok_free(u);
  free(blob);
}

static void fuzz_decode_raw(const tok_t *t, const uint8_t *p, size_t n) {
  size_t k = n / 4;
  int32_t *ids = malloc(k * sizeof *ids + 1);
  if (!ids) fuzz_fail("out of memory");
  memcpy(ids, p, k * 4);
  int in_range = 1;
  for (size_t i = 0; i < k; i++) in_range &= ids[i] >= 0 && ids[i] < tok_vocab_size(t);
  char *text;
  size_t len;
  int rc = tok_decode(t, ids, k, &text, &len);
  if ((rc == 0) != in_range) fuzz_fail("decode of %s ids returned %d", in_range ? "valid" : "invalid", rc);
  if (rc == 0) {
    if (text[len] != '\0') fuzz_fail("decoded text not NUL-terminated");
    free(text);
  }
  util_errclear();
  free(ids);
}

static int32_t *fuzz_encode(tok_t *t, const char *s, size_t n, int special, size_t *n_ids) {
  int32_t *ids;
  if (tok_encode(t, s, n, special, &ids, n_ids)) fuzz_fail("cannot encode valid text: %s", util_errmsg());
  for (size_t i = 0; i < *n_ids; i++)
    if (ids[i] < 0 || ids[i] >= tok_vocab_size(t)) fuzz_fail("id %d out of range", ids[i]);
  return ids;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static tok_t *gpt2;
  if (!gpt2 && !(gpt2 = tok_gpt2_new())) fuzz_fail("gpt2: %s", util_errmsg());
  if (size < 1) return 0;
  int mode = data[0] & 3, special = !!(data[0] & 4);
  const char *s = (const char *)data + 1;
  size_t n = size - 1;
  util_errclear();
  if (mode == 3) {
    tok_t *t = tok_from_vocab(data[0] & 16 ? CFG_TOK_WORD : CFG_TOK_CHAR, s, n);
    if (!t) {
      if (!strcmp(util_errmsg(), "unknown error")) fuzz_fail("vocabulary rejected without a message");
      util_errclear();
      return 0;
    }
    fuzz_vocab_roundtrip(t);
    fuzz_decode_raw(t, data + 1, n);
    tok_free(t);
    return 0;
  }
  int valid = n > 0 && util_utf8_invalid_at(s, n) < 0;
  tok_t *t = gpt2;
  if (mode == 1 || mode == 2) {
    t = mode == 1 ? tok_char_new(s, n) : tok_word_new(s, n);
    if (!t) {
      if (valid && mode == 1) fuzz_fail("char vocabulary of valid text refused: %s", util_errmsg());
      util_errclear();
      return 0;
    }
    fuzz_vocab_roundtrip(t);
  }
  if (valid) {
    size_t n_ids, len;
    int32_t *ids = fuzz_encode(t, s, n, special, &n_ids);
    char *text;
    if (tok_decode(t, ids, n_ids, &text, &len)) fuzz_fail("cannot decode its own ids: %s", util_errmsg());
    if (mode != 2 && (len != n || memcmp(text, s, n))) fuzz_fail("round trip changed the text");
    if (mode == 2) {
      size_t n2;
      int32_t *ids2 = fuzz_encode(t, text, len, special, &n2);
      if (n2 != n_ids || memcmp(ids, ids2, n2 * sizeof *ids)) fuzz_fail("word: encode(decode(ids)) != ids");
      free(ids2);
    }
    free(text);
    free(ids);
  } else if (mode == 0) {
    int32_t *ids;
    size_t n_ids;
    if (n > 0 && tok_encode(t, s, n, special, &ids, &n_ids) == 0) fuzz_fail("gpt2 encoded invalid UTF-8");
    util_errclear();
  }
  fuzz_decode_raw(t, data + 1, n);
  if (t != gpt2) tok_free(t);
  return 0;
}
