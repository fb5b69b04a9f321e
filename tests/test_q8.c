/* q8 weights: the block quantizer's exact error bound, the generated q8
 * inference step against the float32 step on the dequantized weights,
 * `gptc sample --quant q8` against the q8 export, the exported --eval
 * against `gptc eval`, and bad --quant values refused. */
#include <dirent.h>
#include <dlfcn.h>
#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cfg.h"
#include "cpu.h"
#include "gen.h"
#include "quant.h"
#include "testutil.h"
#include "util.h"

/* Set once by the fixture (in the parent, before the forked tests). */
static char dir[1024], ckpt[1200], exe32[1200], exe8[1200];

/* A shell command under a time limit (no single quotes in it). */
static int xrun(tu_run_result *r, const char *fmt, ...) {
  char cmd[8192];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(cmd, sizeof cmd, fmt, ap);
  va_end(ap);
  return tu_sh(r, NULL, "timeout 300 sh -c '%s'", cmd);
}

/* splitmix64 -> uniform in [-1, 1) */
static uint64_t rng_state = 42;
static double urand(void) {
  uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return (double)(z >> 11) * 0x1.0p-52 - 1.0;
}

/* ---- the block quantizer -------------------------------------------------------- */

/* Every value of the block within s / 2 of s q (in exact double arithmetic),
 * q in [-127, 127], and the largest magnitude on +-127. */
static void check_block(const float *v, size_t vs, int n) {
  int8_t q[3 * QUANT_BLOCK];
  memset(q, 99, sizeof q);
  float s = quant_q8_block(v, vs, n, q, 3);
  float amax = 0;
  for (int i = 0; i < n; i++) amax = fmaxf(amax, fabsf(v[i * vs]));
  if (amax == 0) {
    ck_assert(s == 0);
  } else {
    ck_assert(s > 0 && isfinite(s));
    ck_assert_msg((double)amax / s <= 127.0, "max|v| / s = %.9g", (double)amax / s);
  }
  int top = 0;
  for (int i = 0; i < n; i++) {
    ck_assert(q[i * 3] >= -127 && q[i * 3] <= 127);
    double err = fabs((double)v[i * vs] - (double)s * q[i * 3]);
    ck_assert_msg(err <= (double)s / 2, "value %d: %.9g -> %d * %.9g, error %.3g > s/2", i, v[i * vs], q[i * 3], s,
                  err);
    if (fabsf(v[i * vs]) == amax && amax > 0) top = abs(q[i * 3]);
  }
  if (amax >= 127 * FLT_MIN) ck_assert_int_eq(top, 127); /* (a subnormal scale is too coarse for that) */
  for (int i = 0; i < n; i++) ck_assert_int_eq(q[i * 3 + 1], 99); /* wrote only its stride */
}

START_TEST(block_round_trip) {
  float v[2 * QUANT_BLOCK];
  for (int trial = 0; trial < 2000; trial++) {
    double scale = pow(10.0, (urand() + 1) * 6 - 8); /* 1e-8 .. 1e4 */
    int n = trial % 7 == 0 ? 1 + trial % QUANT_BLOCK : QUANT_BLOCK;
    for (int i = 0; i < 2 * n; i++) v[i] = (float)(urand() * scale);
    check_block(v, 1, n);
    check_block(v, 2, n); /* a column: every other value */
  }
}
END_TEST

START_TEST(block_zeros_and_outliers) {
  float v[QUANT_BLOCK] = {0};
  int8_t q[QUANT_BLOCK];
  ck_assert(quant_q8_block(v, 1, QUANT_BLOCK, q, 1) == 0);
  for (int i = 0; i < QUANT_BLOCK; i++) ck_assert_int_eq(q[i], 0);
  v[5] = -0.0f;
  check_block(v, 1, QUANT_BLOCK);
  /* one large outlier: the rest round to zero or near it, each still
   * within s / 2, and the outlier itself exact at -127 */
  for (int i = 0; i < QUANT_BLOCK; i++) v[i] = (float)(urand() * 1e-3);
  v[17] = -1000.0f;
  check_block(v, 1, QUANT_BLOCK);
  float s = quant_q8_block(v, 1, QUANT_BLOCK, q, 1);
  ck_assert_int_eq(q[17], -127);
  ck_assert(fabs(-127.0 * s - -1000.0) <= s / 2);
  for (int i = 0; i < QUANT_BLOCK; i++)
    if (i != 17) ck_assert_int_eq(q[i], 0);
  /* two outliers of opposite sign, values exactly on halves of the scale */
  for (int i = 0; i < QUANT_BLOCK; i++) v[i] = (float)(i - 16) * 0.5f;
  v[0] = 127.0f;
  v[1] = -127.0f;
  s = quant_q8_block(v, 1, QUANT_BLOCK, q, 1);
  ck_assert(s == 1.0f);
  ck_assert_int_eq(q[0], 127);
  ck_assert_int_eq(q[1], -127);
  ck_assert_int_eq(q[3], -7); /* -6.5: a tie, away from zero */
  check_block(v, 1, QUANT_BLOCK);
  /* subnormal magnitudes: the scale stays positive and the bound holds */
  for (int i = 0; i < QUANT_BLOCK; i++) v[i] = (float)(urand() * 0x1p-140);
  check_block(v, 1, QUANT_BLOCK);
  v[0] = 0x1p-149f;
  for (int i = 1; i < QUANT_BLOCK; i++) v[i] = 0;
  check_block(v, 1, QUANT_BLOCK);
}
END_TEST

/* ---- the q8 step against the float32 step on the dequantized weights ------------ */

typedef struct {
  cpu_object obj;
  quant_infer_fn *fn;
} step_fn;

static void step_open(const cfg_t *cfg, int quant, step_fn *s) {
  char *src;
  size_t len;
  ck_assert_msg(quant_infer_unit(cfg, quant, gen_vec_bytes(), "", NULL, &src, &len) == 0, "%s", util_errmsg());
  ck_assert_msg(cpu_build(src, len, "infer", NULL, NULL, &s->obj) == 0, "%s", util_errmsg());
  free(src);
  s->fn = (quant_infer_fn *)dlsym(s->obj.handle, "export_infer");
  ck_assert_ptr_nonnull(s->fn);
}

/* Each quantized matrix of the flat float32 parameters replaced by s q
 * (rounded to float), blocks of 32 along K of W (K, N). */
static void dequantize(float *p, size_t off, int K, int N, size_t sk, size_t sn) {
  int8_t q[QUANT_BLOCK];
  for (int n = 0; n < N; n++)
    for (int k0 = 0; k0 < K; k0 += QUANT_BLOCK) {
      int rows = K - k0 < QUANT_BLOCK ? K - k0 : QUANT_BLOCK;
      float *w = p + off + (size_t)n * sn + (size_t)k0 * sk;
      float s = quant_q8_block(w, sk, rows, q, 1);
      for (int i = 0; i < rows; i++) w[i * sk] = s * (float)q[i];
    }
}

static void check_step(int tie, int C, int V) {
  char src[1024], where[64];
  snprintf(src, sizeof src,
           "{ name = 'q8-step', tokenizer = 'char', emb_dim = %d, n_heads = 2, n_layers = 2, context_length = 8,"
           " drop_rate = 0.0, qkv_bias = true, tie_embeddings = %s, vocab_size = %d,"
           " train = { batch_size = 2, max_length = 8, stride = 8, steps = 1 } }",
           C, tie ? "true" : "false", V);
  snprintf(where, sizeof where, "q8 step C=%d", C);
  cfg_t cfg;
  ck_assert_msg(cfg_load_data(src, where, &cfg) == 0, "%s", util_errmsg());
  gptc_tensor *ts;
  int nt;
  size_t n_params;
  ck_assert_msg(gen_tensors(&cfg, &ts, &nt, &n_params) == 0, "%s", util_errmsg());
  float *p = calloc(n_params, sizeof(float)), *pd = calloc(n_params, sizeof(float));
  ck_assert(p && pd);
  for (size_t i = 0; i < n_params; i++) p[i] = (float)(urand() * 0.3);
  memcpy(pd, p, n_params * sizeof(float));
  int mats = 0;
  for (int i = 0; i < nt; i++) {
    const char *nm = ts[i].name;
    if (strstr(nm, "c_attn.weight") || strstr(nm, "c_proj.weight") || strstr(nm, "c_fc.weight"))
      dequantize(pd, ts[i].offset, ts[i].shape[0], ts[i].shape[1], (size_t)ts[i].shape[1], 1), mats++;
    else if (!strcmp(nm, tie ? "wte.weight" : "lm_head.weight")) /* the head: W (K=C, N=V) = (V, C)^T */
      dequantize(pd, ts[i].offset, ts[i].shape[1], ts[i].shape[0], 1, (size_t)ts[i].shape[1]), mats++;
  }
  ck_assert_int_eq(mats, 9);
  /* The reference is the float32 step of the untied twin of the model:
   * every matrix dequantized, lm_head = the dequantized head, and wte
   * float32 as the q8 step's embedding lookup reads it. */
  cfg_t rcfg = cfg;
  rcfg.tie_embeddings = 0;
  gptc_tensor *rts;
  int rnt;
  size_t rn;
  ck_assert_msg(gen_tensors(&rcfg, &rts, &rnt, &rn) == 0, "%s", util_errmsg());
  float *rp = calloc(rn, sizeof(float)), *rp0 = calloc(rn, sizeof(float)); /* dequantized; original */
  ck_assert(rp && rp0);
  for (int i = 0; i < rnt; i++) {
    int head = !strcmp(rts[i].name, "lm_head.weight");
    const char *from = head && tie ? "wte.weight" : rts[i].name;
    for (int j = 0; j < nt; j++)
      if (!strcmp(ts[j].name, from)) {
        const float *base = !strcmp(rts[i].name, "wte.weight") ? p : pd;
        memcpy(rp + rts[i].offset, base + ts[j].offset, ts[j].numel * sizeof(float));
        memcpy(rp0 + rts[i].offset, p + ts[j].offset, ts[j].numel * sizeof(float));
      }
  }
  step_fn f32, q8;
  step_open(&rcfg, QUANT_F32, &f32);
  step_open(&cfg, QUANT_Q8, &q8);
  unsigned char *blob;
  size_t bytes;
  ck_assert_msg(quant_q8_pack(&cfg, p, &blob, &bytes) == 0, "%s", util_errmsg());
  ck_assert(bytes < n_params * sizeof(float)); /* the point of it */
  size_t n_kv = (size_t)2 * 2 * 8 * C, n_scratch = 64 * (size_t)C + 4096;
  float *kv1 = calloc(n_kv, 4), *kv2 = calloc(n_kv, 4), *s1 = calloc(n_scratch, 4), *s2 = calloc(n_scratch, 4);
  float *l1 = malloc((size_t)V * 4), *l2 = malloc((size_t)V * 4);
  float *l0 = malloc((size_t)V * 4);
  float *kv0 = calloc(n_kv, 4);
  double moved = 0; /* how far quantization moved the logits: the comparison must be able to fail */
  for (int pos = 0; pos < 8; pos++) {
    int tok = (pos * 7 + 3) % V;
    f32.fn(rp, kv1, s1, tok, pos, l1);
    f32.fn(rp0, kv0, s1, tok, pos, l0);
    q8.fn((const float *)blob, kv2, s2, tok, pos, l2);
    for (int v = 0; v < V; v++) {
      double d = fabs((double)l1[v] - l2[v]) / (1 + fabs(l1[v]));
      ck_assert_msg(isfinite(l2[v]) && d < 2e-5, "C=%d tie=%d pos %d logit %d: f32 %.9g q8 %.9g", C, tie, pos, v,
                    l1[v], l2[v]);
      double m = fabs((double)l0[v] - l2[v]) / (1 + fabs(l0[v]));
      moved = m > moved ? m : moved;
    }
  }
  ck_assert_msg(moved > 1e-4, "q8 logits within %.3g of the original float32 ones: the test cannot tell", moved);
  free(kv0), free(kv1), free(kv2), free(s1), free(s2), free(l0), free(l1), free(l2), free(blob);
  cpu_object_close(&f32.obj);
  cpu_object_close(&q8.obj);
  gen_tensors_free(rts, rnt);
  gen_tensors_free(ts, nt);
  free(rp), free(rp0), free(p), free(pd);
}

START_TEST(step_matches_dequantized) {
  check_step(1, 64, 77);  /* K = 64: two blocks; 4C = 256; V = 77: a part panel */
  check_step(0, 48, 33);  /* K = 48: a part block; untied head */
}
END_TEST

/* ---- the command line: gptc sample --quant q8, exported q8 and --eval -------------- */

static void q8_setup(void) {
  snprintf(dir, sizeof dir, "%s", tu_tmpdir());
  tu_run_result r;
  int code = tu_run(&r, NULL, "train --config '%s' --steps 150 --set train.lr=0.01 --quiet --out '%s/char'",
                    tu_src("configs/tiny-test.lua"), dir);
  ck_assert_msg(code == 0, "train: %s", r.err);
  tu_run_free(&r);
  snprintf(ckpt, sizeof ckpt, "%s/char/last.safetensors", dir);
  snprintf(exe32, sizeof exe32, "%s/model-f32", dir);
  snprintf(exe8, sizeof exe8, "%s/model-q8", dir);
  code = tu_run(&r, NULL, "export --ckpt '%s' -o '%s' --quant f32", ckpt, exe32);
  ck_assert_msg(code == 0 && r.err_len == 0, "export f32 (%d): %s", code, r.err);
  tu_run_free(&r);
  code = tu_run(&r, NULL, "export --ckpt '%s' -o '%s' --quant q8", ckpt, exe8);
  ck_assert_msg(code == 0 && r.err_len == 0, "export q8 (%d): %s", code, r.err);
  tu_run_free(&r);
}

/* Whether some source in the JIT's cache of inference steps holds `needle`. */
static int cached_infer_has(const char *needle) {
  char path[4200];
  snprintf(path, sizeof path, "%s/infer", util_cache_dir());
  DIR *d = opendir(path);
  int found = 0;
  struct dirent *e;
  while (d && !found && (e = readdir(d))) {
    size_t n = strlen(e->d_name);
    if (n < 3 || strcmp(e->d_name + n - 2, ".c")) continue;
    char *src;
    size_t len;
    snprintf(path, sizeof path, "%s/infer/%s", util_cache_dir(), e->d_name);
    if (util_read_file(path, &src, &len) == 0) {
      found = strstr(src, needle) != NULL;
      free(src);
    }
  }
  if (d) closedir(d);
  return found;
}

/* gptc sample --quant q8 and the q8 export: the same text for the same
 * seed, sampled and greedy. The q8 path is really taken: the export's
 * logits are not the float32 export's, and sample compiled a q8 step. */
START_TEST(sample_matches_export) {
  static const char *const opts[] = {"--seed 7 --tokens 120", "--seed 99 --tokens 120 --top-k 5",
                                     "--temperature 0 --tokens 120"};
  for (int i = 0; i < 3; i++) {
    tu_run_result a, b, c;
    ck_assert_int_eq(tu_run(&a, NULL, "sample --quant q8 --threads 1 --ckpt '%s' --prompt 'I had ' %s", ckpt, opts[i]),
                     0);
    ck_assert_int_eq(xrun(&b, "%s --threads 1 %s \"I had \"", exe8, opts[i]), 0);
    ck_assert_int_eq(xrun(&c, "%s --threads 1 %s \"I had \"", exe32, opts[i]), 0);
    ck_assert_msg(a.out_len > 100, "%s", a.err);
    ck_assert_str_eq(a.out, b.out);
    tu_run_free(&a), tu_run_free(&b), tu_run_free(&c);
  }
  ck_assert(cached_infer_has("static void gemvq_16x48("));
  char d32[1200], d8[1200];
  snprintf(d32, sizeof d32, "%s/logits-f32", dir);
  snprintf(d8, sizeof d8, "%s/logits-q8", dir);
  tu_run_result r;
  ck_assert_int_eq(xrun(&r, "%s --dump-logits \"%s\" \"I had a\"", exe32, d32), 0);
  tu_run_free(&r);
  ck_assert_int_eq(xrun(&r, "%s --dump-logits \"%s\" \"I had a\"", exe8, d8), 0);
  tu_run_free(&r);
  char *l32, *l8;
  size_t n32, n8;
  ck_assert_int_eq(util_read_file(d32, &l32, &n32), 0);
  ck_assert_int_eq(util_read_file(d8, &l8, &n8), 0);
  ck_assert(n32 == n8 && n8 > 0 && memcmp(l32, l8, n8) != 0);
  free(l32), free(l8);
}
END_TEST

/* --info: the quantization, the weights' size and the file's own size */
START_TEST(info_quant_and_size) {
  const char *exes[] = {exe32, exe8};
  long weights[2];
  for (int i = 0; i < 2; i++) {
    tu_run_result r;
    ck_assert_int_eq(xrun(&r, "%s --info", exes[i]), 0);
    ck_assert_msg(strstr(r.out, i ? "quantization: q8 (" : "quantization: f32\n"), "%s", r.out);
    struct stat st;
    ck_assert_int_eq(stat(exes[i], &st), 0);
    char want[64];
    snprintf(want, sizeof want, "file_size: %lld bytes\n", (long long)st.st_size);
    ck_assert_msg(strstr(r.out, want), "want '%s' in:\n%s", want, r.out);
    const char *w = strstr(r.out, "weights: ");
    ck_assert_ptr_nonnull(w);
    weights[i] = strtol(w + 9, NULL, 10);
    tu_run_free(&r);
  }
  ck_assert_msg(weights[0] >= 7840 * 4, "f32 weights %ld bytes for tiny-test's 7840 parameters", weights[0]);
  ck_assert_msg(weights[1] < weights[0], "q8 weights %ld bytes, f32 %ld", weights[1], weights[0]);
}
END_TEST

static double loss_of(const char *out) {
  const char *l = strstr(out, "\nloss ");
  ck_assert_msg(l, "no loss line in:\n%s", out);
  return strtod(l + 6, NULL);
}

/* the exported --eval: float32 gives gptc eval's windows and loss (to the
 * printed digits, up to the different sum order of the batched forward and
 * the mat-vecs); q8 costs a little, within 3 % */
START_TEST(eval_matches_gptc_eval) {
  const char *text = tu_src("data/the-verdict.txt");
  tu_run_result g, a, b;
  ck_assert_int_eq(tu_run(&g, NULL, "eval --threads 1 --ckpt '%s' --text '%s'", ckpt, text), 0);
  ck_assert_int_eq(xrun(&a, "%s --threads 1 --eval \"%s\"", exe32, text), 0);
  ck_assert_int_eq(xrun(&b, "%s --threads 1 --eval \"%s\"", exe8, text), 0);
  /* the same windows, tokens and positions */
  const char *bar = strstr(g.out, "| perplexity");
  ck_assert_ptr_nonnull(bar);
  size_t head = (size_t)(bar - g.out);
  ck_assert_msg(!strncmp(g.out, a.out, head) && !strncmp(g.out, b.out, head), "gptc eval:\n%sf32:\n%sq8:\n%s", g.out,
                a.out, b.out);
  double lg = loss_of(g.out), l32 = loss_of(a.out), l8 = loss_of(b.out);
  ck_assert_msg(fabs(l32 - lg) <= 5e-6, "f32 export %.6f vs gptc eval %.6f", l32, lg);
  ck_assert_msg(l8 != l32 || strcmp(a.out, b.out), "q8 eval identical to f32");
  ck_assert_msg(fabs(l8 - l32) <= 0.03 * l32, "q8 %.6f vs f32 %.6f", l8, l32);
  ck_assert_msg(lg < 3.5, "the model is not trained (loss %.3f)", lg);
  tu_run_free(&g), tu_run_free(&a), tu_run_free(&b);

  /* a bad file: one line naming it, nonzero exit */
  ck_assert_int_eq(xrun(&a, "%s --eval \"%s/none.txt\"", exe8, dir), 1);
  ck_assert_msg(strstr(a.err, "none.txt") && strchr(a.err, '\n') == a.err + a.err_len - 1, "%s", a.err);
  tu_run_free(&a);
  const char *shortf = tu_write_str("short.txt", "I had");
  ck_assert_int_eq(xrun(&a, "%s --eval \"%s\"", exe8, shortf), 1);
  ck_assert_msg(strstr(a.err, "too short"), "%s", a.err);
  tu_run_free(&a);
}
END_TEST

/* a bad --quant: refused with the option named, nothing written */
START_TEST(bad_quant_refused) {
  char out[1200];
  snprintf(out, sizeof out, "%s/never", dir);
  tu_run_result r;
  ck_assert_int_eq(tu_run(&r, NULL, "export --ckpt '%s' -o '%s' --quant q4", ckpt, out), 2);
  ck_assert_msg(strstr(r.err, "'--quant' must be f32 or q8 (got 'q4')"), "%s", r.err);
  ck_assert(!util_file_exists(out));
  tu_run_free(&r);
  ck_assert_int_eq(tu_run(&r, NULL, "sample --ckpt '%s' --quant Q8", ckpt), 2);
  ck_assert_msg(strstr(r.err, "'--quant' must be f32 or q8 (got 'Q8')") && r.out_len == 0, "%s", r.err);
  tu_run_free(&r);
  ck_assert_int_eq(tu_run(&r, NULL, "sample --ckpt '%s' --quant q8 --device cuda", ckpt), 2);
  ck_assert_msg(strstr(r.err, "--quant q8") && strstr(r.err, "CPU only"), "%s", r.err);
  tu_run_free(&r);
}
END_TEST

int main(void) {
  Suite *s = suite_create("q8");
  TCase *unit = tcase_create("unit");
  tcase_set_timeout(unit, 300);
  tcase_add_test(unit, block_round_trip);
  tcase_add_test(unit, block_zeros_and_outliers);
  tcase_add_test(unit, step_matches_dequantized);
  suite_add_tcase(s, unit);
  TCase *cli = tcase_create("cli");
  tcase_set_timeout(cli, 600);
  tcase_add_unchecked_fixture(cli, q8_setup, NULL);
  tcase_add_test(cli, sample_matches_export);
  tcase_add_test(cli, info_quant_and_size);
  tcase_add_test(cli, eval_matches_gptc_eval);
  tcase_add_test(cli, bad_quant_refused);
  suite_add_tcase(s, cli);
  return tu_main(s);
}
