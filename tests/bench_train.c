/* bench_train: speed of one full training step (zero grads, forward,
 * backward, gradient norm, AdamW) of the generated fp32 CPU model for three
 * shapes, against this machine's fp32 FMA peak measured with the
 * register-resident FMA loop on every thread of runtime/bench.c.
 *
 * Usage: bench_train [threads [shape [fp32|bf16]]] (default 2 threads, every shape, fp32;
 * a shape of "" is every shape; bf16: the configs' precision = "bf16"). Prints one table row per shape:
 * median ms per step, tokens/s, achieved GFLOP/s with FLOPs per token =
 * 6 N + 12 L T C, and the fraction of peak; then the peak RSS. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "bench.h"
#include "cfg.h"
#include "cpu.h"
#include "util.h"

typedef struct {
  const char *label;
  const char *src; /* config source */
  int steps;       /* timed steps */
  double target_ms;
} bench_shape;

static const bench_shape bench_shapes[] = {
    {"shakespeare-char (V 65, 4/4/128, T 64, B 12)",
     "return { name = 'bench-char', tokenizer = 'char', vocab_size = 65, emb_dim = 128, n_heads = 4,"
     " n_layers = 4, context_length = 64, drop_rate = 0.1, train = { batch_size = 12, max_length = 64 } }",
     40, 20},
    {"mid (V 65, 6/6/384, T 256, B 16)",
     "return { name = 'bench-mid', tokenizer = 'char', vocab_size = 65, emb_dim = 384, n_heads = 6,"
     " n_layers = 6, context_length = 256, drop_rate = 0.2, train = { batch_size = 16, max_length = 256 } }",
     5, 1200},
    {"gpt2-124M (V 50257, 12/12/768, T 64, B 4)",
     "return { name = 'bench-gpt2', tokenizer = 'gpt2', emb_dim = 768, n_heads = 12, n_layers = 12,"
     " context_length = 1024, drop_rate = 0.1, train = { batch_size = 4, max_length = 64 } }",
     5, 1000},
};

static int bench_cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static int bench_run(const bench_shape *s, double peak, int bf16) {
  cfg_t cfg;
  char src[1024];
  snprintf(src, sizeof src, "%s%s", bf16 ? "return { precision = 'bf16'," : "", s->src + (bf16 ? strlen("return {") : 0));
  if (cfg_load_string(src, s->label, &cfg)) {
    fprintf(stderr, "bench: %s\n", util_errmsg());
    return -1;
  }
  cpu_module mod;
  double t0 = util_now();
  if (cpu_load(&cfg, &mod)) {
    fprintf(stderr, "bench: %s\n", util_errmsg());
    return -1;
  }
  double t_compile = util_now() - t0;
  const gptc_model *m = mod.model;
  size_t np = m->n_params;
  float *params = calloc(np, 4), *grads = calloc(np, 4), *mo = calloc(np, 4), *vo = calloc(np, 4);
  float *acts = calloc(m->n_acts, 4), *ga = calloc(m->n_grad_acts, 4);
  int BT = m->B * m->T;
  int32_t *in = malloc((size_t)BT * 4), *tg = malloc((size_t)BT * 4);
  if (!params || !grads || !mo || !vo || !acts || !ga || !in || !tg) {
    fprintf(stderr, "bench: out of memory\n");
    return -1;
  }
  uint64_t x = 1;
  size_t n_real = 0;
  for (int i = 0; i < m->n_tensors; i++) {
    const gptc_tensor *t = &m->tensors[i];
    n_real += t->numel;
    for (size_t j = 0; j < t->numel; j++) {
      x = x * 6364136223846793005ull + 1442695040888963407ull;
      float u = (float)((double)(x >> 40) / (double)(1ull << 24)) * 2 - 1;
      params[t->offset + j] = t->init_std > 0 ? 1.7f * t->init_std * u : t->init_value;
    }
  }
  for (int i = 0; i < BT; i++) {
    in[i] = (int32_t)((i * 7919u) % (unsigned)m->vocab_size);
    tg[i] = (int32_t)((i * 104729u + 1) % (unsigned)m->vocab_size);
  }
  int n = s->steps + 2;
  double *ms = malloc(sizeof(double) * (size_t)n);
  float loss = 0;
  for (int i = 0; i < n; i++) {
    gptc_rng rng = {1, (uint64_t)i, 1};
    double t = util_now();
    memset(grads, 0, np * 4);
    loss = m->forward(params, acts, in, tg, rng);
    m->backward(params, grads, acts, ga, in, tg, rng, 1.0f);
    double norm = sqrt(m->grad_sq_norm(grads));
    gptc_adamw_args a = {1e-4f, 0.9f, 0.95f, 1e-8f, 0.1f, (float)(norm > 1 ? 1 / (norm + 1e-6) : 1), i + 1};
    m->adamw(params, grads, mo, vo, a);
    ms[i] = (util_now() - t) * 1e3;
  }
  qsort(ms + 2, (size_t)s->steps, sizeof(double), bench_cmp); /* the first two steps warm up */
  double med = ms[2 + s->steps / 2];
  double flops_tok = 6.0 * (double)n_real + 12.0 * m->n_layers * m->T * m->emb_dim;
  double gflops = flops_tok * BT / (med / 1e3) / 1e9;
  printf("%-44s %9.1f %9.0f %10.0f %8.1f %7.1f%% %8.0f  %s  (loss %.3f, compile %.1fs)\n", s->label, med,
         BT / (med / 1e3), flops_tok / 1e6, gflops, 100 * gflops / peak, s->target_ms,
         med <= s->target_ms ? "ok" : "SLOW", loss, t_compile);
  fflush(stdout);
  free(params), free(grads), free(mo), free(vo), free(acts), free(ga), free(in), free(tg), free(ms);
  cpu_unload(&mod);
  return 0;
}

int main(int argc, char **argv) {
  int threads = argc > 1 ? atoi(argv[1]) : 2;
  if (threads < 1) threads = 1;
  cpu_set_threads(threads);
  int lanes;
  double peak = bench_fma_peak(&lanes); /* the one `gptc bench` measures */
  int bf16 = argc > 3 && !strcmp(argv[3], "bf16");
  printf("%s, %d threads; FMA peak %.1f GFLOP/s (%d-lane FMA loop, all threads)\n\n", bf16 ? "bf16" : "fp32", threads,
         peak, lanes);
  printf("%-44s %9s %9s %10s %8s %8s %8s\n", "shape", "ms/step", "tokens/s", "MFLOP/tok", "GFLOP/s", "of peak",
         "target");
  int rc = 0;
  /* an optional second argument keeps only the shapes whose label contains it */
  for (size_t i = 0; i < sizeof bench_shapes / sizeof *bench_shapes; i++)
    if (argc < 3 || strstr(bench_shapes[i].label, argv[2])) rc |= bench_run(&bench_shapes[i], peak, bf16);
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  printf("\npeak RSS %.0f MiB (the gpt2-124M shape runs last and is the largest)\n", ru.ru_maxrss / 1024.0);
  return rc ? 1 : 0;
}
