/* The per-kernel NVRTC cache of the CUDA backend (runtime/cuda.c
 * gen_cuda_units / cuda_dev_open_units, gen/cuda/emit.lua M.split) and
 * `gptc gen --explain --device cuda`: each unit is the prelude and its
 * kernel exactly as in the whole source; a config that changes only
 * n_layers compiles no kernel program (only the optimizer's, which holds the
 * tensor table); one that changes emb_dim compiles exactly the units
 * --explain called new; a damaged cached image is rebuilt; and on the host
 * emulator of the driver (tests/gpu/emu) the per-kernel modules compute what
 * the whole source as one module computes, bit for bit. */
#include <dirent.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend.h"
#include "backend_cuda.h"
#include "cfg.h"
#include "cuda.h"
#include "gen.h"
#include "testutil.h"
#include "util.h"

#define PARITY_NO_MAIN
#include "gpu/parity.c"

#define VOCAB 40
#define MAX_UNITS 96

/* A tiny-test-sized config with `top` spliced into its fields (a later
 * duplicate field wins in a Lua table constructor, so `top` overrides). */
static const char *write_cfg(const char *name, const char *top) {
  char src[4096];
  snprintf(src, sizeof src,
           "return { name = 'kcu', tokenizer = 'char', vocab_size = %d, data = '%s', emb_dim = 16, n_heads = 2,\n"
           "  n_layers = 1, context_length = 16, drop_rate = 0.1, qkv_bias = true, tie_embeddings = false, %s\n"
           "  train = { batch_size = 2, max_length = 16, stride = 16, lr = 1e-3, steps = 2 } }\n",
           VOCAB, tu_src("data/the-verdict.txt"), top);
  char fname[256];
  snprintf(fname, sizeof fname, "%s.lua", name);
  return tu_write_str(fname, src);
}

static void load_cfg(const char *path, cfg_t *c) { ck_assert_msg(cfg_load_file(path, c) == 0, "%s", util_errmsg()); }

/* ---- the units, generation only (no NVRTC) ---------------------------------------------- */

typedef struct {
  char *whole;
  size_t len;
  gen_unit *u;
  int n;
} units_t;

static void units_of(const char *cfgpath, units_t *x) {
  cfg_t c;
  char hash[65];
  load_cfg(cfgpath, &c);
  ck_assert_msg(gen_cuda_units(&c, NULL, &x->whole, &x->len, hash, &x->u, &x->n) == 0, "%s", util_errmsg());
  /* the whole source is byte for byte gen_cuda_source's */
  char *src, h2[65];
  size_t len;
  ck_assert_int_eq(gen_cuda_source(&c, NULL, &src, &len, h2), 0);
  ck_assert_uint_eq(len, x->len);
  ck_assert(!memcmp(src, x->whole, len));
  ck_assert_str_eq(hash, h2);
  free(src);
}

static void units_free(units_t *x) {
  gen_units_free(x->u, x->n);
  free(x->whole);
}

/* the unit named `name`, or NULL */
static const gen_unit *unit_named(const units_t *x, const char *name) {
  for (int i = 0; i < x->n; i++)
    if (!strcmp(x->u[i].name, name)) return &x->u[i];
  return NULL;
}

START_TEST(units_are_the_whole_source_split) {
  units_t a;
  units_of(write_cfg("gen-a", ""), &a);
  ck_assert_int_ge(a.n, 10);
  ck_assert_int_le(a.n, MAX_UNITS);
  /* the prelude: the whole body up to the first kernel (the text after the header) */
  const char *body = strstr(a.whole, "#define GPTC_SOURCE_HASH");
  ck_assert_ptr_nonnull(body);
  body = strchr(body, '\n') + 1;
  /* the prelude: what every unit starts with (the units differ right after it) */
  size_t pre = (size_t)-1;
  const char *first = strchr(strchr(a.u[0].src, '\n') + 1, '\n') + 1;
  for (int i = 1; i < a.n; i++) {
    const char *rest = strchr(strchr(a.u[i].src, '\n') + 1, '\n') + 1;
    size_t k = 0;
    while (rest[k] && rest[k] == first[k]) k++;
    pre = k < pre ? k : pre;
  }
  ck_assert(pre > 1000 && !strncmp(body, first, pre));
  ck_assert_ptr_null(strstr(first, "__global__") < first + pre ? strstr(first, "__global__") : NULL);
  int kernels = 0, optimizer = 0;
  for (int i = 0; i < a.n; i++) {
    const char *s = a.u[i].src;
    /* line 1 names the unit, line 2 is its own hash: SHA-256 of the rest */
    ck_assert_msg(!strncmp(s, "/* gptc CUDA kernel unit ", 25), "%s", a.u[i].name);
    const char *l2 = strchr(s, '\n') + 1, *rest = strchr(l2, '\n') + 1;
    char h[65], line[128];
    util_sha256_hex(rest, a.u[i].len - (size_t)(rest - s), h);
    snprintf(line, sizeof line, "#define GPTC_SOURCE_HASH \"%s\"\n", h);
    ck_assert(!strncmp(l2, line, strlen(line)));
    /* the rest is the body's prelude, then text found verbatim in the body */
    ck_assert_msg(strstr(body, rest + pre) != NULL, "unit %s is not text of the whole source", a.u[i].name);
    /* one kernel a unit, but the optimizer's, which share the tensor table */
    int defs = 0;
    for (const char *p = rest; (p = strstr(p, "extern \"C\" __global__ void ")) != NULL; p++) defs++;
    if (!strcmp(a.u[i].name, "optimizer")) {
      optimizer++;
      ck_assert_int_ge(defs, 3);
    } else {
      ck_assert_int_eq(defs, 1);
      char key[128];
      snprintf(key, sizeof key, " %s(", a.u[i].name);
      ck_assert_msg(strstr(rest, key), "unit %s does not define its kernel", a.u[i].name);
    }
    kernels += defs;
  }
  ck_assert_int_eq(optimizer, 1);
  /* every kernel of the whole source is in exactly one unit */
  int whole_defs = 0;
  for (const char *p = a.whole; (p = strstr(p, "extern \"C\" __global__ void ")) != NULL; p++) whole_defs++;
  ck_assert_int_eq(kernels, whole_defs);

  /* n_layers changes the optimizer's unit and nothing else */
  units_t b;
  units_of(write_cfg("gen-b", "n_layers = 3,"), &b);
  ck_assert_int_eq(b.n, a.n);
  for (int i = 0; i < a.n; i++) {
    const gen_unit *o = unit_named(&b, a.u[i].name);
    ck_assert_msg(o != NULL, "unit %s is gone with n_layers = 3", a.u[i].name);
    int same = o->len == a.u[i].len && !memcmp(o->src, a.u[i].src, o->len);
    ck_assert_msg(same == !!strcmp(a.u[i].name, "optimizer"), "unit %s", a.u[i].name);
  }
  units_free(&b);
  units_free(&a);
}
END_TEST

#ifdef GPTC_HAVE_NVRTC
/* ---- the cache, through the CLI (NVRTC, no GPU needed) ---------------------------------- */

static char cache_dir[1100];

static void use_cache(const char *name) {
  snprintf(cache_dir, sizeof cache_dir, "%s/%s", tu_tmpdir(), name);
  setenv("GPTC_CACHE", cache_dir, 1);
}

/* the compiled images in the cache */
static int count_images(void) {
  char dir[1200];
  snprintf(dir, sizeof dir, "%s/cuda", cache_dir);
  DIR *d = opendir(dir);
  if (!d) return 0;
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    size_t l = strlen(e->d_name);
    n += l > 6 && !strcmp(e->d_name + l - 6, ".cubin");
  }
  closedir(d);
  return n;
}

typedef struct {
  char name[96], key[65];
  int fresh;
} row;

/* `gptc gen --explain --device cuda --compile sm_80`: its rows; returns how many */
static int explain(const char *cfg, row *rows, int *n_new) {
  tu_run_result r;
  ck_assert_msg(tu_run(&r, NULL, "gen --config '%s' --explain --device cuda --compile sm_80", cfg) == 0, "%s", r.err);
  ck_assert_str_eq(r.err, ""); /* quiet even about a damaged image: it rebuilds nothing */
  int n = 0, fresh = 0;
  char *save, *line = strtok_r(r.out, "\n", &save);
  ck_assert_msg(line && !strncmp(line, "unit ", 5), "%s", r.out);
  while ((line = strtok_r(NULL, "\n", &save)) != NULL) {
    char state[16];
    if (sscanf(line, "%95s %64s %15s", rows[n].name, rows[n].key, state) == 3 && strlen(rows[n].key) == 64) {
      ck_assert_msg(!strcmp(state, "new") || !strcmp(state, "cached"), "%s", line);
      rows[n].fresh = !strcmp(state, "new");
      fresh += rows[n].fresh;
      ck_assert_int_lt(++n, MAX_UNITS);
    } else {
      int nn, nc;
      ck_assert_msg(sscanf(line, "%d new, %d cached (NVRTC programs for sm_80)", &nn, &nc) == 2, "%s", line);
      ck_assert_int_eq(nn, fresh);
      ck_assert_int_eq(nn + nc, n);
    }
  }
  tu_run_free(&r);
  *n_new = fresh;
  return n;
}

/* `gptc gen --compile sm_80`: asserts that it compiled exactly the rows
 * marked new (by key), and returns how many it compiled. */
static int compile_expect(const char *cfg, const row *rows, int n, const char *want_err) {
  tu_run_result r;
  char out[1200];
  snprintf(out, sizeof out, "%s/gen-out", tu_tmpdir());
  ck_assert_msg(tu_run(&r, NULL, "gen --config '%s' -o '%s' --device cuda --compile sm_80", cfg, out) == 0, "%s", r.err);
  int compiled = 0, listed = 0;
  for (int i = 0; i < n; i++) {
    char want[1400];
    snprintf(want, sizeof want, "%s/cuda/%s.cubin (%s)\n", cache_dir, rows[i].key,
             rows[i].fresh ? "compiled" : "already in the cache");
    ck_assert_msg(strstr(r.out, want), "unit %s: no line '%s' in:\n%.2000s", rows[i].name, want, r.out);
    compiled += rows[i].fresh;
    listed++;
  }
  /* and nothing else was compiled */
  int lines = 0;
  for (const char *p = r.out; (p = strstr(p, " (compiled)\n")) != NULL; p++) lines++;
  ck_assert_int_eq(lines, compiled);
  ck_assert_int_eq(listed, n);
  ck_assert_str_eq(r.err, want_err ? want_err : "");
  tu_run_free(&r);
  return compiled;
}

START_TEST(cache_reuse_per_kernel) {
  use_cache("reuse-cache");
  row a[MAX_UNITS], b[MAX_UNITS], c[MAX_UNITS];
  int fa, fb, fc;
  const char *ca = write_cfg("ca", ""), *cb = write_cfg("cb", "n_layers = 3,"), *cc = write_cfg("cc", "emb_dim = 24,");
  /* --explain writes nothing: no images, no sources */
  int na = explain(ca, a, &fa);
  ck_assert_int_eq(fa, na);
  char dir[1200];
  snprintf(dir, sizeof dir, "%s/cuda", cache_dir);
  ck_assert(!util_file_exists(dir));
  ck_assert_int_eq(compile_expect(ca, a, na, NULL), na);
  ck_assert_int_eq(count_images(), na);
  ck_assert(explain(ca, a, &fa) == na && fa == 0);

  /* n_layers: no kernel program is new; the optimizer's (the tensor table) is */
  int nb = explain(cb, b, &fb);
  ck_assert_int_eq(nb, na);
  ck_assert_int_eq(fb, 1);
  for (int i = 0; i < nb; i++) ck_assert_msg(b[i].fresh == !strcmp(b[i].name, "optimizer"), "%s", b[i].name);
  ck_assert_int_eq(compile_expect(cb, b, nb, NULL), 1);
  ck_assert_int_eq(count_images(), na + 1);

  /* emb_dim: exactly what --explain called new, and some kernels are shared */
  int nc = explain(cc, c, &fc);
  ck_assert_int_gt(fc, 0);
  ck_assert_int_lt(fc, nc);
  ck_assert_int_eq(compile_expect(cc, c, nc, NULL), fc);
  ck_assert_int_eq(count_images(), na + 1 + fc);
  ck_assert(explain(cc, c, &fc) == nc && fc == 0);
}
END_TEST

/* A damaged image is new to --explain, rebuilt (with the notice), and only it. */
START_TEST(damaged_image_rebuilt) {
  use_cache("damage-cache");
  row a[MAX_UNITS];
  int fa;
  const char *ca = write_cfg("da", "");
  int na = explain(ca, a, &fa);
  ck_assert_int_eq(compile_expect(ca, a, na, NULL), na);
  int victim = na / 2;
  char bin[1400];
  snprintf(bin, sizeof bin, "%s/cuda/%s.cubin", cache_dir, a[victim].key);
  char *b;
  size_t n;
  ck_assert_int_eq(util_read_file(bin, &b, &n), 0);
  for (size_t k = 0; k < 16; k++) b[n / 2 + k] ^= 0x5a;
  FILE *f = fopen(bin, "wb");
  ck_assert_uint_eq(fwrite(b, 1, n, f), n);
  fclose(f);
  free(b);
  ck_assert(explain(ca, a, &fa) == na && fa == 1 && a[victim].fresh);
  char want[2000];
  snprintf(want, sizeof want, "gptc: cached object %s: its contents do not match their hash (damaged); rebuilding it\n",
           bin);
  ck_assert_int_eq(compile_expect(ca, a, na, want), 1);
  ck_assert(explain(ca, a, &fa) == na && fa == 0);
  ck_assert_int_eq(count_images(), na);
}
END_TEST

/* ---- the per-kernel modules against the whole source, on the emulator ------------------- */

/* (main leaves the case out, reported skipped, where the emulator cannot run) */
static void emulator(void) { tu_fake_cuda("test_kcache_cuda"); }

typedef struct {
  double losses[3], norms[3];
  float *params, *grads, *logits, *eval_logits, *infer;
  float loss, eval_loss;
  char about[4600];
  size_t n_params, n_logits, n_eval_logits;
  int V;
} run_out;

/* Everything the backend computes, from the same weights and batches:
 * forward (dropout on) and backward, the gradients, the eval forward and
 * its logits, KV-cache inference, three whole steps (norm, clipping,
 * AdamW) and the weights after them. */
static void run_backend(const cfg_t *c, int whole, run_out *o) {
  gen_cuda_opts g = {0, 0, whole};
  backend *b;
  ck_assert_msg(backend_cuda_open_variant(c, &g, &b) == 0, "%s", util_errmsg());
  ck_assert_int_eq(b->ops->alloc(b, BACKEND_TRAIN | BACKEND_EVAL | BACKEND_INFER), 0);
  o->n_params = b->n_params;
  o->V = b->vocab_size;
  snprintf(o->about, sizeof o->about, "%s", b->about);
  float *w = parity_weights(b, 11), *zero = calloc(b->n_params, 4);
  size_t bt = (size_t)b->B * b->T, ebt = (size_t)b->eval_B * b->eval_T;
  int32_t *in = malloc(ebt > bt ? ebt * 4 : bt * 4), *tg = malloc(ebt > bt ? ebt * 4 : bt * 4);
  o->grads = malloc(b->n_params * 4);
  o->params = malloc(b->n_params * 4);
  o->n_logits = bt * (size_t)b->vocab_size;
  o->n_eval_logits = ebt * (size_t)b->vocab_size;
  o->logits = malloc(o->n_logits * 4);
  o->eval_logits = malloc(o->n_eval_logits * 4);
  o->infer = malloc((size_t)b->vocab_size * 4 * 3);
  ck_assert_int_eq(b->ops->upload(b, w, zero, zero), 0);
  parity_batch(b->vocab_size, bt, 5, in, tg);
  gptc_rng rng = {7, 3, 1};
  ck_assert_int_eq(b->ops->zero_grads(b), 0);
  ck_assert_int_eq(b->ops->forward(b, in, tg, rng, &o->loss), 0);
  ck_assert_int_eq(b->ops->logits(b, 0, o->logits), 0);
  ck_assert_int_eq(b->ops->backward(b, in, tg, rng, 1.0f), 0);
  ck_assert_int_eq(b->ops->download_grads(b, o->grads), 0);
  parity_batch(b->vocab_size, ebt, 6, in, tg);
  ck_assert_int_eq(b->ops->forward_eval(b, in, tg, &o->eval_loss), 0);
  ck_assert_int_eq(b->ops->logits(b, 1, o->eval_logits), 0);
  for (int pos = 0; pos < 3; pos++) ck_assert_int_eq(b->ops->infer(b, 3 + pos, pos, o->infer + pos * b->vocab_size), 0);
  ck_assert_msg(parity_steps(b, w, 3, o->losses, o->norms, o->params) == 0, "%s", util_errmsg());
  free(w), free(zero), free(in), free(tg);
  backend_close(b);
}

static void run_free(run_out *o) {
  free(o->params), free(o->grads), free(o->logits), free(o->eval_logits), free(o->infer);
}

START_TEST(units_bitwise_equal_whole) {
  emulator();
  use_cache("emu-cache");
  cfg_t c;
  load_cfg(write_cfg("emu", ""), &c);
  run_out u, w, again;
  run_backend(&c, 0, &u);
  run_backend(&c, 1, &w);
  /* the first open compiled every program, the second none */
  ck_assert_msg(strstr(u.about, " kernel programs (") && !strstr(u.about, " (0 compiled, "), "%s", u.about);
  run_backend(&c, 0, &again);
  ck_assert_msg(strstr(again.about, " (0 compiled, "), "%s", again.about);
  ck_assert(!memcmp(again.params, u.params, u.n_params * 4));
  run_free(&again);
  ck_assert(isfinite(u.loss) && u.loss > 0);
  ck_assert_msg(!memcmp(&u.loss, &w.loss, 4), "forward loss %.9g (units) vs %.9g (whole)", u.loss, w.loss);
  ck_assert(!memcmp(u.logits, w.logits, u.n_logits * 4));
  ck_assert(!memcmp(u.grads, w.grads, u.n_params * 4));
  ck_assert(!memcmp(&u.eval_loss, &w.eval_loss, 4));
  ck_assert(!memcmp(u.eval_logits, w.eval_logits, u.n_eval_logits * 4));
  ck_assert(!memcmp(u.infer, w.infer, (size_t)u.V * 4 * 3));
  ck_assert(!memcmp(u.losses, w.losses, sizeof u.losses) && !memcmp(u.norms, w.norms, sizeof u.norms));
  ck_assert(!memcmp(u.params, w.params, u.n_params * 4));
  /* the steps moved the weights, and a gradient is not all zero */
  double gs = 0;
  for (size_t i = 0; i < u.n_params; i++) gs += fabs(u.grads[i]);
  ck_assert(gs > 0);
  ck_assert(u.losses[0] != u.losses[2]);
  run_free(&u);
  run_free(&w);
}
END_TEST
#endif

int main(void) {
  Suite *s = suite_create("kcache_cuda");
  TCase *gen = tcase_create("generation");
  tcase_set_timeout(gen, 300);
  tcase_add_test(gen, units_are_the_whole_source_split);
  suite_add_tcase(s, gen);
#ifdef GPTC_HAVE_NVRTC
  /* NVRTC and the emulator's C++ builds: minutes of uninstrumented work,
   * left out of the sanitizer suite like test_cuda's (build/test-asan.sh) */
  TCase *nv = tcase_create("nvrtc");
  tcase_set_tags(nv, "nvrtc_compile_all");
  tcase_set_timeout(nv, 1200);
  tcase_add_test(nv, cache_reuse_per_kernel);
  tcase_add_test(nv, damaged_image_rebuilt);
  /* without the emulator the other cases run and ctest reports the test
   * skipped (tu_skip), never passed */
  const char *missing = tu_fake_cuda_missing();
  if (missing) tu_skip("test_kcache_cuda", "kcache_cuda", missing);
  else tcase_add_test(nv, units_bitwise_equal_whole);
  suite_add_tcase(s, nv);
#else
  tu_skip("test_kcache_cuda", "kcache_cuda", "its NVRTC cases: gptc was built without NVRTC (no CUDA toolkit found)");
#endif
  return tu_main(s);
}
