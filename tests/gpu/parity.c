/* parity: the CUDA backend against the CPU backend from the same weights,
 * and against the PyTorch golden files (tests/golden/model/). Used by
 * tests/gpu/run.sh on a GPU, and by tests/test_cuda.c (which includes this
 * file with PARITY_NO_MAIN) through the host emulator when there is none.
 *
 * Checks, for one config and precision: the forward loss and logits, every
 * parameter's gradient, the gradient norm, 10 training steps (AdamW,
 * clipping, dropout with the same Philox masks on both devices), the
 * evaluation forward, KV-cache inference, bitwise determinism of a rerun,
 * and bitwise equality of the CUDA-graph step with kernel-by-kernel
 * launches. Errors are relative: max |cuda - cpu| / max |cpu| over a
 * tensor, and for gradients ||cuda - cpu|| / ||cpu|| per tensor. On a forward mismatch every training activation is compared,
 * layer by layer, to show where the two part.
 *
 *   parity --config FILE [--vocab N] [--precision fp32|bf16]   (repeatable)
 *   parity --golden DIR                                         (repeatable)
 * exits 0 when every check passes. */
#include <lauxlib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "backend_cpu.h"
#include "backend_cuda.h"
#include "cfg.h"
#include "cuda.h"
#include "lx.h"
#include "sample.h"
#include "train.h"
#include "util.h"

typedef struct {
  double loss, grad, step_loss, final_loss; /* tolerances */
  FILE *log;
  int failures;
} parity_ctx;

static double parity_rel(const float *a, const float *b, size_t n) {
  double err = 0, scale = 0;
  for (size_t i = 0; i < n; i++) {
    double d = fabs((double)a[i] - b[i]);
    err = d > err || isnan(d) ? d : err;
    scale = fmax(scale, fabs((double)b[i]));
  }
  return scale > 0 ? err / scale : err;
}

/* ||a - b|| / ||b|| (2-norms): the gradients' error measure, robust to the
 * odd element whose TF32 rounding dominates a max */
static double parity_l2(const float *a, const float *b, size_t n) {
  double err = 0, scale = 0;
  for (size_t i = 0; i < n; i++) {
    double d = (double)a[i] - b[i];
    err += d * d;
    scale += (double)b[i] * b[i];
  }
  return scale > 0 ? sqrt(err / scale) : sqrt(err);
}

static double parity_srel(double a, double b) { return fabs(a - b) / fmax(fabs(b), 1e-6); }

/* one check: prints it, counts a failure when err > tol (or NaN) */
static void parity_expect(parity_ctx *px, const char *what, double err, double tol) {
  int ok = err <= tol;
  if (!ok) px->failures++;
  fprintf(px->log, "  %-44s %.3g (limit %.3g)%s\n", what, err, tol, ok ? "" : "  FAIL");
}

static void parity_batch(int V, size_t n, uint64_t seed, int32_t *in, int32_t *tg) {
  sample_rng r;
  sample_seed(&r, seed);
  for (size_t i = 0; i < n; i++) {
    in[i] = (int32_t)(sample_u64(&r) % (uint64_t)V);
    tg[i] = sample_u64(&r) % 10 == 0 ? -1 : (int32_t)(sample_u64(&r) % (uint64_t)V);
  }
}

/* Every training activation of the forward just run, CPU against CUDA. */
static void parity_diagnose(parity_ctx *px, const cfg_t *cfg, backend *cpu, backend *gpu) {
  lua_State *L = lx_new();
  if (!L) return;
  cfg_push(L, cfg);
  const float *acts = backend_cpu_acts(cpu);
  if (!acts || lx_call(L, "shapes", "derive", 1, 1)) {
    lua_close(L);
    return;
  }
  lua_getfield(L, -1, "acts");
  lua_getfield(L, -1, "buffers");
  int nb = (int)lua_rawlen(L, -1);
  fprintf(px->log, "  activations, CUDA against CPU (max relative error):\n");
  for (int i = 1; i <= nb; i++) {
    lua_rawgeti(L, -1, i);
    lua_getfield(L, -1, "name");
    const char *name = lua_tostring(L, -1);
    lua_getfield(L, -2, "offset");
    lua_getfield(L, -3, "stride");
    lua_getfield(L, -4, "numel");
    lua_getfield(L, -5, "layers");
    size_t off = (size_t)lua_tointeger(L, -4), stride = (size_t)lua_tointeger(L, -3), numel = (size_t)lua_tointeger(L, -2);
    int layers = lua_isinteger(L, -1) ? (int)lua_tointeger(L, -1) : 1;
    float *buf = malloc(numel * sizeof(float));
    for (int l = 0; buf && l < (stride ? layers : 1); l++) {
      if (backend_cuda_act(gpu, name, l, buf, numel)) {
        util_errclear();
        break;
      }
      fprintf(px->log, "    %-10s layer %d: %.3g\n", name, l, parity_rel(buf, acts + off + l * stride, numel));
    }
    free(buf);
    lua_pop(L, 6);
  }
  lua_close(L);
}

/* Weights for both devices: the GPT-2 init, biases and LayerNorm
 * parameters perturbed so that every parameter shapes the loss. */
static float *parity_weights(const backend *b, uint64_t seed) {
  float *p = calloc(b->n_params, sizeof(float));
  if (!p) return NULL;
  train_init_tensors(b->tensors, b->n_tensors, b->n_params, p, seed);
  sample_rng r;
  sample_seed(&r, seed + 1);
  for (int i = 0; i < b->n_tensors; i++)
    if (b->tensors[i].ndim == 1)
      for (size_t k = 0; k < b->tensors[i].numel; k++)
        p[b->tensors[i].offset + k] += (float)(0.1 * (sample_uniform(&r) - 0.5));
  return p;
}

/* n steps from `params` (fresh moments) on b; losses and final weights out. */
static int parity_steps(backend *b, const float *params, int n, double *losses, double *norms, float *out) {
  size_t bt = (size_t)b->B * b->T;
  float *zero = calloc(b->n_params, sizeof(float));
  int32_t *in = malloc(bt * sizeof(int32_t)), *tg = malloc(bt * sizeof(int32_t));
  int rc = zero && in && tg ? b->ops->upload(b, params, zero, zero) : -1;
  for (int s = 0; rc == 0 && s < n; s++) {
    parity_batch(b->vocab_size, bt, 100 + (uint64_t)s, in, tg);
    backend_step st = {in, tg, 1, 7, (uint64_t)s, 1, {1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 1.0f, s + 1}, 1.0};
    rc = b->ops->train_step(b, &st, &losses[s], &norms[s]);
  }
  if (rc == 0) rc = b->ops->download(b, out, NULL, NULL);
  free(zero), free(in), free(tg);
  return rc;
}

static void parity_fail(parity_ctx *px, const char *what) {
  px->failures++;
  fprintf(px->log, "  %s failed: %s  FAIL\n", what, util_errmsg());
}

/* All the checks for one config (on a variant of the generated kernels
 * when gen is non-NULL); returns the failures (also added to px). */
int parity_config(parity_ctx *px, const cfg_t *cfg_in, int precision, const gen_cuda_opts *gen) {
  cfg_t cfg = *cfg_in;
  cfg.precision = precision;
  int bf = precision == CFG_BF16, before = px->failures;
  fprintf(px->log, "parity %s %s (drop_rate %g)%s\n", cfg.name, bf ? "bf16" : "fp32", cfg.drop_rate,
          gen ? " (kernel variant)" : "");
  backend *cpu = NULL, *gpu = NULL, *direct = NULL;
  float *w = NULL, *a = NULL, *b = NULL, *la = NULL, *lb = NULL;
  int32_t *in = NULL, *tg = NULL;
  if (backend_open(&cfg, "cpu", &cpu) || (gen ? cuda_probe() || backend_cuda_open_variant(&cfg, gen, &gpu)
                                              : backend_open(&cfg, "cuda", &gpu))) {
    parity_fail(px, "opening the backends");
    goto out;
  }
  int all = BACKEND_TRAIN | BACKEND_EVAL | BACKEND_INFER;
  if (cpu->ops->alloc(cpu, all) || gpu->ops->alloc(gpu, all)) {
    parity_fail(px, "allocating");
    goto out;
  }
  size_t np = cpu->n_params, V = (size_t)cpu->vocab_size;
  size_t bt = (size_t)cpu->B * cpu->T, ebt = (size_t)cpu->eval_B * cpu->eval_T;
  size_t big = (ebt > bt ? ebt : bt) * V;
  w = parity_weights(cpu, 1);
  a = malloc(np * sizeof(float)), b = malloc(np * sizeof(float));
  la = malloc(big * sizeof(float)), lb = malloc(big * sizeof(float));
  in = malloc((ebt > bt ? ebt : bt) * sizeof(int32_t)), tg = malloc((ebt > bt ? ebt : bt) * sizeof(int32_t));
  if (!w || !a || !b || !la || !lb || !in || !tg) {
    parity_fail(px, "allocating host buffers");
    goto out;
  }

  /* forward and backward of one batch */
  parity_batch((int)V, bt, 2, in, tg);
  gptc_rng rng = {11, 5, cfg.drop_rate > 0};
  float lc, lg;
  if (cpu->ops->upload(cpu, w, NULL, NULL) || gpu->ops->upload(gpu, w, NULL, NULL) ||
      cpu->ops->forward(cpu, in, tg, rng, &lc) || gpu->ops->forward(gpu, in, tg, rng, &lg) ||
      cpu->ops->logits(cpu, 0, la) || gpu->ops->logits(gpu, 0, lb)) {
    parity_fail(px, "forward");
    goto out;
  }
  fprintf(px->log, "  loss cpu %.7f cuda %.7f\n", lc, lg);
  parity_expect(px, "forward loss", parity_srel(lg, lc), px->loss);
  double le = parity_rel(lb, la, bt * V);
  parity_expect(px, "logits", le, bf ? 5e-2 : 2e-3);
  if (le > (bf ? 5e-2 : 2e-3) || !(parity_srel(lg, lc) <= px->loss)) parity_diagnose(px, &cfg, cpu, gpu);
  if (cpu->ops->zero_grads(cpu) || gpu->ops->zero_grads(gpu) || cpu->ops->backward(cpu, in, tg, rng, 1.0f) ||
      gpu->ops->backward(gpu, in, tg, rng, 1.0f) || cpu->ops->download_grads(cpu, a) ||
      gpu->ops->download_grads(gpu, b)) {
    parity_fail(px, "backward");
    goto out;
  }
  double worst = 0, worst_max = 0;
  const char *worst_name = "";
  for (int i = 0; i < cpu->n_tensors; i++) {
    const gptc_tensor *t = &cpu->tensors[i];
    double e = parity_l2(b + t->offset, a + t->offset, t->numel);
    worst_max = fmax(worst_max, parity_rel(b + t->offset, a + t->offset, t->numel));
    if (!(e <= worst)) worst = e, worst_name = t->name;
    if (!(e <= px->grad)) fprintf(px->log, "    d%s: %.3g\n", t->name, e);
  }
  char what[200];
  snprintf(what, sizeof what, "worst gradient, 2-norm (d%s)", worst_name);
  parity_expect(px, what, worst, px->grad);
  fprintf(px->log, "  (worst gradient by the max-norm: %.3g)\n", worst_max);
  double nc, ng;
  if (cpu->ops->grad_sq_norm(cpu, &nc) || gpu->ops->grad_sq_norm(gpu, &ng)) {
    parity_fail(px, "gradient norm");
    goto out;
  }
  parity_expect(px, "gradient norm", parity_srel(sqrt(ng), sqrt(nc)), px->grad);

  /* training steps */
  enum { STEPS = 10 };
  double lcs[STEPS], lgs[STEPS], ncs[STEPS], ngs[STEPS], l2[STEPS], n2[STEPS];
  if (parity_steps(cpu, w, STEPS, lcs, ncs, a) || parity_steps(gpu, w, STEPS, lgs, ngs, b)) {
    parity_fail(px, "training steps");
    goto out;
  }
  double se = 0;
  for (int s = 0; s < STEPS; s++) se = fmax(se, parity_srel(lgs[s], lcs[s]));
  fprintf(px->log, "  step losses cpu %.6f .. %.6f, cuda %.6f .. %.6f\n", lcs[0], lcs[STEPS - 1], lgs[0], lgs[STEPS - 1]);
  parity_expect(px, "loss along 10 steps (worst)", se, px->step_loss);
  parity_expect(px, "loss after 10 steps", parity_srel(lgs[STEPS - 1], lcs[STEPS - 1]), px->final_loss);
  parity_expect(px, "weights after 10 steps (2-norm)", parity_l2(b, a, np), bf ? 1e-1 : 1e-3);

  /* the same steps again: bitwise the same; then kernel by kernel, no graph */
  if (parity_steps(gpu, w, STEPS, l2, n2, a)) {
    parity_fail(px, "training steps, rerun");
    goto out;
  }
  int same = !memcmp(a, b, np * sizeof(float)) && !memcmp(l2, lgs, sizeof l2) && !memcmp(n2, ngs, sizeof n2);
  parity_expect(px, "rerun differs (bitwise)", same ? 0 : 1, 0);
  setenv("GPTC_CUDA_GRAPHS", "0", 1);
  int drc = gen ? backend_cuda_open_variant(&cfg, gen, &direct) : backend_open(&cfg, "cuda", &direct);
  unsetenv("GPTC_CUDA_GRAPHS");
  if (drc || direct->ops->alloc(direct, BACKEND_TRAIN) || parity_steps(direct, w, STEPS, l2, n2, a)) {
    parity_fail(px, "training steps without graphs");
    goto out;
  }
  same = !memcmp(a, b, np * sizeof(float)) && !memcmp(l2, lgs, sizeof l2);
  parity_expect(px, "graph vs kernel-by-kernel differs (bitwise)", same ? 0 : 1, 0);

  /* evaluation and inference from the initial weights */
  parity_batch((int)V, ebt, 3, in, tg);
  if (cpu->ops->upload(cpu, w, NULL, NULL) || gpu->ops->upload(gpu, w, NULL, NULL) ||
      cpu->ops->forward_eval(cpu, in, tg, &lc) || gpu->ops->forward_eval(gpu, in, tg, &lg) ||
      cpu->ops->logits(cpu, 1, la) || gpu->ops->logits(gpu, 1, lb)) {
    parity_fail(px, "evaluation forward");
    goto out;
  }
  parity_expect(px, "evaluation loss", parity_srel(lg, lc), px->loss);
  parity_expect(px, "evaluation logits", parity_rel(lb, la, ebt * V), bf ? 5e-2 : 2e-3);
  double ie = 0;
  int n_pos = cpu->context_length < 12 ? cpu->context_length : 12;
  for (int pos = 0; pos < n_pos; pos++) {
    if (cpu->ops->infer(cpu, in[pos], pos, la) || gpu->ops->infer(gpu, in[pos], pos, lb)) {
      parity_fail(px, "inference");
      goto out;
    }
    ie = fmax(ie, parity_rel(lb, la, V));
  }
  parity_expect(px, "inference logits (fp32 on both)", ie, 2e-5);
out:
  free(w), free(a), free(b), free(la), free(lb), free(in), free(tg);
  backend_close(cpu);
  backend_close(gpu);
  backend_close(direct);
  return px->failures - before;
}

/* ---- the PyTorch golden files on CUDA (tests/test_golden.c's checks) ---- */

static void *parity_read(const char *dir, const char *name, size_t bytes) {
  char path[1200], *data;
  size_t len;
  snprintf(path, sizeof path, "%s/%s", dir, name);
  if (util_read_file(path, &data, &len)) return NULL;
  if (len != bytes) {
    util_err("%s: %zu bytes, expected %zu", path, len, bytes);
    free(data);
    return NULL;
  }
  return data;
}

int parity_golden(parity_ctx *px, const char *dir) {
  int before = px->failures;
  char path[1200];
  snprintf(path, sizeof path, "%s/config.lua", dir);
  cfg_t cfg;
  backend *gpu = NULL;
  float *packed = NULL, *w = NULL, *g = NULL, *want = NULL, *want_loss = NULL, *logits = NULL, *lg = NULL, *steps = NULL;
  int32_t *in = NULL, *tg = NULL, *ein = NULL, *etg = NULL;
  fprintf(px->log, "golden %s on CUDA\n", dir);
  if (cfg_load_file(path, &cfg) || backend_open(&cfg, "cuda", &gpu) ||
      gpu->ops->alloc(gpu, BACKEND_TRAIN | BACKEND_EVAL | BACKEND_INFER)) {
    parity_fail(px, "opening");
    goto out;
  }
  size_t total = 0, bt = (size_t)gpu->B * gpu->T, V = (size_t)gpu->vocab_size;
  for (int i = 0; i < gpu->n_tensors; i++) total += gpu->tensors[i].numel;
  packed = parity_read(dir, "params.f32", total * 4);
  want = parity_read(dir, "grads.f32", total * 4);
  want_loss = parity_read(dir, "loss.f32", 4);
  logits = parity_read(dir, "logits.f32", bt * V * 4);
  steps = parity_read(dir, "steps.f32", 11 * 4);
  in = parity_read(dir, "inputs.i32", bt * 4);
  tg = parity_read(dir, "targets.i32", bt * 4);
  w = calloc(gpu->n_params, 4), g = calloc(gpu->n_params, 4), lg = malloc((size_t)gpu->eval_B * gpu->eval_T * V * 4);
  ein = calloc((size_t)gpu->eval_B * gpu->eval_T, 4), etg = calloc((size_t)gpu->eval_B * gpu->eval_T, 4);
  if (!packed || !want || !want_loss || !logits || !steps || !in || !tg || !w || !g || !lg || !ein || !etg) {
    parity_fail(px, "reading the golden files");
    goto out;
  }
  for (size_t i = 0, at = 0; i < (size_t)gpu->n_tensors; at += gpu->tensors[i].numel, i++)
    memcpy(w + gpu->tensors[i].offset, packed + at, gpu->tensors[i].numel * 4);
  gptc_rng rng = {123, 0, 1};
  float loss;
  if (gpu->ops->upload(gpu, w, NULL, NULL) || gpu->ops->forward(gpu, in, tg, rng, &loss) ||
      gpu->ops->logits(gpu, 0, lg) || gpu->ops->zero_grads(gpu) || gpu->ops->backward(gpu, in, tg, rng, 1.0f) ||
      gpu->ops->download_grads(gpu, g)) {
    parity_fail(px, "forward and backward");
    goto out;
  }
  parity_expect(px, "loss against torch", parity_srel(loss, *want_loss), px->loss);
  parity_expect(px, "logits against torch", parity_rel(lg, logits, bt * V), 2e-3);
  double worst = 0;
  for (size_t i = 0, at = 0; i < (size_t)gpu->n_tensors; at += gpu->tensors[i].numel, i++)
    worst = fmax(worst, parity_l2(g + gpu->tensors[i].offset, want + at, gpu->tensors[i].numel));
  parity_expect(px, "worst gradient (2-norm) against torch", worst, px->grad);
  /* 10 AdamW steps with clipping to norm 1.0, as the torch reference */
  const cfg_train *tr = &cfg.train;
  double se = 0;
  float *zero = calloc(gpu->n_params, 4);
  if (!zero || gpu->ops->upload(gpu, w, zero, zero)) {
    free(zero);
    parity_fail(px, "uploading");
    goto out;
  }
  free(zero);
  for (int s = 0; s < 10; s++) {
    double l, norm;
    backend_step st = {in, tg, 1, 1, 0, 1,
                       {(float)tr->lr, (float)tr->beta1, (float)tr->beta2, (float)tr->eps, (float)tr->weight_decay, 1.0f, s + 1},
                       tr->grad_clip};
    if (gpu->ops->train_step(gpu, &st, &l, &norm)) {
      parity_fail(px, "training step");
      goto out;
    }
    se = fmax(se, parity_srel(l, steps[s]));
  }
  float last;
  if (gpu->ops->forward(gpu, in, tg, rng, &last)) {
    parity_fail(px, "forward after the steps");
    goto out;
  }
  se = fmax(se, parity_srel(last, steps[10]));
  parity_expect(px, "losses along 10 AdamW steps against torch", se, px->step_loss);
  /* evaluation at (eval_B, context_length), the golden rows padded with ignored positions */
  if (gpu->ops->upload(gpu, w, NULL, NULL)) goto out;
  int eT = gpu->eval_T, T = gpu->T;
  for (int bb = 0; bb < gpu->eval_B; bb++)
    for (int t = 0; t < eT; t++) {
      ein[bb * eT + t] = bb < gpu->B && t < T ? in[bb * T + t] : (bb + 3 * t) % (int)V;
      etg[bb * eT + t] = bb < gpu->B && t < T ? tg[bb * T + t] : -1;
    }
  float el;
  if (gpu->ops->forward_eval(gpu, ein, etg, &el)) {
    parity_fail(px, "evaluation");
    goto out;
  }
  parity_expect(px, "evaluation loss against torch", parity_srel(el, *want_loss), px->loss);
  double ie = 0;
  for (int t = 0; t < T; t++) {
    if (gpu->ops->infer(gpu, in[t], t, lg)) {
      parity_fail(px, "inference");
      goto out;
    }
    ie = fmax(ie, parity_rel(lg, logits + (size_t)t * V, V));
  }
  parity_expect(px, "inference logits against torch", ie, 1e-4);
out:
  free(packed), free(w), free(g), free(want), free(want_loss), free(logits), free(lg), free(steps);
  free(in), free(tg), free(ein), free(etg);
  backend_close(gpu);
  return px->failures - before;
}

/* fp32 (TF32 GEMMs) and bf16 tolerances */
void parity_init(parity_ctx *px, FILE *log, int bf16) {
  px->log = log;
  px->failures = 0;
  px->loss = bf16 ? 2e-2 : 1e-3;
  px->grad = bf16 ? 1e-1 : 1e-3;
  px->step_loss = bf16 ? 2e-2 : 1e-3;
  px->final_loss = bf16 ? 2e-2 : 1e-3;
}

#ifndef PARITY_NO_MAIN
int main(int argc, char **argv) {
  parity_ctx px;
  int failures = 0, ran = 0;
  const char *vocab = NULL, *precision = "fp32";
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--vocab") && i + 1 < argc) {
      vocab = argv[++i];
    } else if (!strcmp(argv[i], "--precision") && i + 1 < argc) {
      precision = argv[++i];
    } else if (!strcmp(argv[i], "--config") && i + 1 < argc) {
      cfg_t cfg;
      if (cfg_load_file(argv[++i], &cfg) || (vocab && cfg_set_vocab(&cfg, atoi(vocab)))) {
        fprintf(stderr, "parity: %s\n", util_errmsg());
        return 2;
      }
      int bf = !strcmp(precision, "bf16");
      parity_init(&px, stdout, bf);
      failures += parity_config(&px, &cfg, bf ? CFG_BF16 : CFG_FP32, NULL);
      ran++;
      vocab = NULL;
    } else if (!strcmp(argv[i], "--golden") && i + 1 < argc) {
      parity_init(&px, stdout, 0);
      failures += parity_golden(&px, argv[++i]);
      ran++;
    } else {
      fprintf(stderr, "usage: parity [--vocab N] [--precision fp32|bf16] --config FILE ... | --golden DIR ...\n");
      return 2;
    }
  }
  if (!ran) {
    fprintf(stderr, "parity: nothing to check (give --config or --golden)\n");
    return 2;
  }
  printf("parity: %d failure%s\n", failures, failures == 1 ? "" : "s");
  return failures ? 1 : 0;
}
#endif
