/* fuzz_safetensors: ckpt_st_open on a file (the header's JSON, dtypes,
 * shapes, offsets, layout), then every accessor and every readable tensor.
 * Properties: an accepted file's tensors lie inside the file and cover its
 * data exactly; each one is found by name; and the readable ones written
 * back with ckpt_st_write read again to the same bits. */
#include <string.h>

#include "ckpt.h"
#include "fuzz.h"
#include "util.h"

/* Tensor names the writer refuses (empty, or equal once cut at a NUL). */
static int fuzz_writable(const ckpt_st *st) {
  for (int i = 0; i < ckpt_st_count(st); i++) {
    const ckpt_st_tensor *t = ckpt_st_at(st, i);
    if (!t->name[0] || t->dtype == CKPT_OTHER || ckpt_st_find(st, t->name) != t) return 0;
  }
  return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  util_errclear();
  const char *path = fuzz_file("in.safetensors", data, size);
  ckpt_st *st = ckpt_st_open(path);
  if (!st) {
    if (!strcmp(util_errmsg(), "unknown error")) fuzz_fail("rejected without a message");
    util_errclear();
    return 0;
  }
  int n = ckpt_st_count(st);
  if (n < 0 || ckpt_st_at(st, n) || ckpt_st_at(st, -1)) fuzz_fail("ckpt_st_at past the ends");
  uint64_t covered = 0;
  float **vals = calloc((size_t)n + 1, sizeof *vals);
  ckpt_st_out *out = calloc((size_t)n + 1, sizeof *out);
  if (!vals || !out) fuzz_fail("out of memory");
  for (int i = 0; i < n; i++) {
    const ckpt_st_tensor *t = ckpt_st_at(st, i);
    const ckpt_st_tensor *f = ckpt_st_find(st, t->name);
    if (!f || strcmp(f->name, t->name)) fuzz_fail("tensor '%s' not found by name", t->name);
    if (t->ndim < 0 || t->ndim > CKPT_MAX_DIMS || t->begin > t->end || t->end > size)
      fuzz_fail("tensor '%s': rank %d, bytes [%llu, %llu) in a %zu-byte file", t->name, t->ndim,
                (unsigned long long)t->begin, (unsigned long long)t->end, size);
    uint64_t numel = 1;
    for (int d = 0; d < t->ndim; d++) numel *= t->shape[d];
    if (numel != t->numel) fuzz_fail("tensor '%s': numel %llu, shape says %llu", t->name,
                                     (unsigned long long)t->numel, (unsigned long long)numel);
    covered += t->end - t->begin;
    if (t->dtype == CKPT_OTHER) {
      if (ckpt_st_read_f32(st, t, NULL) == 0) fuzz_fail("tensor '%s' of dtype %s read", t->name, t->dtype_name);
      util_errclear();
      continue;
    }
    /* numel <= (end - begin) / 2 < size: bounded by the input */
    vals[i] = malloc((size_t)t->numel * sizeof(float) + 1);
    if (!vals[i]) fuzz_fail("out of memory");
    if (ckpt_st_read_f32(st, t, vals[i])) fuzz_fail("accepted tensor '%s' unreadable: %s", t->name, util_errmsg());
    out[i] = (ckpt_st_out){t->name, t->ndim, {0}, vals[i]};
    memcpy(out[i].shape, t->shape, sizeof t->shape);
  }
  uint64_t header = 0; /* bytes 0-7: the header's length, little-endian */
  for (int k = 7; k >= 0; k--) header = header << 8 | data[k];
  header += 8;
  if (covered != size - header) fuzz_fail("tensors cover %llu of %llu data bytes", (unsigned long long)covered,
                                          (unsigned long long)(size - header));

  if (fuzz_writable(st)) {
    size_t flen = 0;
    const char *fmt = ckpt_st_meta(st, "format", &flen);
    ckpt_st_kv kv = {"format", fmt, flen};
    char path2[1024];
    snprintf(path2, sizeof path2, "%s/out.safetensors", fuzz_dir());
    if (ckpt_st_write(path2, &kv, fmt ? 1 : 0, out, n)) fuzz_fail("cannot write back: %s", util_errmsg());
    ckpt_st *st2 = ckpt_st_open(path2);
    if (!st2) fuzz_fail("written back, does not open: %s", util_errmsg());
    if (ckpt_st_count(st2) != n) fuzz_fail("written back, %d tensors instead of %d", ckpt_st_count(st2), n);
    size_t flen2 = 0;
    const char *fmt2 = ckpt_st_meta(st2, "format", &flen2);
    if (!fmt != !fmt2 || flen != flen2 || (fmt && memcmp(fmt, fmt2, flen))) fuzz_fail("metadata changed");
    for (int i = 0; i < n; i++) {
      const ckpt_st_tensor *a = ckpt_st_at(st, i), *b = ckpt_st_find(st2, a->name);
      if (!b || b->dtype != CKPT_F32 || b->ndim != a->ndim || memcmp(b->shape, a->shape, sizeof a->shape))
        fuzz_fail("tensor '%s' changed its dtype or shape", a->name);
      float *v = malloc((size_t)b->numel * sizeof(float) + 1);
      if (!v || ckpt_st_read_f32(st2, b, v)) fuzz_fail("tensor '%s' unreadable after writing", a->name);
      if (memcmp(v, vals[i], (size_t)b->numel * sizeof(float))) fuzz_fail("tensor '%s' changed its bits", a->name);
      free(v);
    }
    ckpt_st_close(st2);
  }
  for (int i = 0; i < n; i++) free(vals[i]);
  free(vals);
  free(out);
  ckpt_st_close(st);
  return 0;
}
