/* bench_step: whole training steps through a backend (backend.h), the way
 * `gptc train` runs them (train.c), on random weights and token batches:
 * what the per-op numbers add up to, with the overheads between kernels. */
#include <dlfcn.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "backend.h"
#include "backend_cpu.h"
#include "bench.h"
#include "gen.h"
#include "util.h"

/* a few distinct batches, so no step sees the same tokens as the last */
#define BENCH_STEP_BATCHES 4

/* the profiled source's table (templates/cpu/model.c) */
typedef int (*bench_prof_table_fn)(const char *const **names, double **seconds, long **calls);

typedef struct {
  backend *b;
  const cfg_t *cfg;
  int32_t *inputs, *targets; /* BENCH_STEP_BATCHES x n_micro x (B, T) */
  size_t per_step;           /* ids per step */
  long step;
  double loss;
  int failed;
  /* profiling: counters cleared once the warm-up steps have run */
  bench_prof_table_fn prof;
  long warmup, timed;
  double wall;
} bench_step_ctx;

static void bench_prof_clear(bench_prof_table_fn f) {
  const char *const *names;
  double *sec;
  long *calls;
  int n = f(&names, &sec, &calls);
  memset(sec, 0, (size_t)n * sizeof *sec);
  memset(calls, 0, (size_t)n * sizeof *calls);
}

static void bench_step_run(void *p, int variant) {
  (void)variant;
  bench_step_ctx *c = p;
  if (c->failed) return;
  const cfg_train *tr = &c->cfg->train;
  size_t at = (size_t)(c->step % BENCH_STEP_BATCHES) * c->per_step;
  backend_step st = {c->inputs + at, c->targets + at, tr->grad_accum, tr->seed, (uint64_t)c->step * tr->grad_accum,
                     c->cfg->drop_rate > 0,
                     {(float)tr->lr, (float)tr->beta1, (float)tr->beta2, (float)tr->eps, (float)tr->weight_decay,
                      1.0f, (int)c->step + 1},
                     tr->grad_clip};
  double norm;
  if (c->prof && c->step == c->warmup) bench_prof_clear(c->prof);
  double t0 = c->prof ? util_now() : 0;
  if (c->b->ops->train_step(c->b, &st, &c->loss, &norm)) c->failed = 1;
  if (c->prof && c->step >= c->warmup) {
    c->wall += util_now() - t0;
    c->timed++;
  }
  c->step++;
}

/* normal(0, init_std) or init_value per tensor, as a fresh model starts */
static void bench_step_params(const backend *b, float *params, uint64_t seed) {
  for (int i = 0; i < b->n_tensors; i++) {
    const gptc_tensor *t = &b->tensors[i];
    for (size_t j = 0; j < t->numel; j++) {
      float v = t->init_value;
      if (t->init_std > 0) {
        double u1 = bench_uniform(&seed), u2 = bench_uniform(&seed);
        v = (float)(t->init_std * sqrt(-2 * log(1 - u1)) * cos(2 * M_PI * u2));
      }
      params[t->offset + j] = v;
    }
  }
}

/* r->prof from the model's table, per timed step */
static int bench_prof_collect(bench_step_ctx *c, bench_step_result *r) {
  const char *const *names;
  double *sec;
  long *calls;
  int n = c->prof(&names, &sec, &calls);
  if (!c->timed) return util_err("profile: no step was timed");
  if (!(r->prof = util_calloc((size_t)n, sizeof *r->prof, "the step profile"))) return -1;
  for (int i = 0; i < n; i++) {
    struct bench_prof_row *p = &r->prof[i];
    const char *sp = strchr(names[i], ' ');
    snprintf(p->pass, sizeof p->pass, "%.*s", sp ? (int)(sp - names[i]) : 0, names[i]);
    snprintf(p->fn, sizeof p->fn, "%s", sp ? sp + 1 : names[i]);
    p->seconds = sec[i] / (double)c->timed;
    p->calls = (double)calls[i] / (double)c->timed;
  }
  r->n_prof = n;
  r->prof_step_s = c->wall / (double)c->timed;
  r->prof_rest_s = r->prof_step_s;
  for (int i = 0; i < n; i++) r->prof_rest_s -= r->prof[i].seconds;
  return 0;
}

void bench_step_free(bench_step_result *r) {
  free(r->prof);
  r->prof = NULL;
  r->n_prof = 0;
}

int bench_step(const cfg_t *cfg, const char *device, uint64_t seed, const bench_timing *t, bench_step_result *r) {
  return bench_step_profiled(cfg, device, seed, t, 0, r);
}

int bench_step_profiled(const cfg_t *cfg, const char *device, uint64_t seed, const bench_timing *t, int profile,
                        bench_step_result *r) {
  memset(r, 0, sizeof *r);
  bench_step_ctx c = {0};
  c.cfg = cfg;
  if (profile && strcmp(device, "cpu")) return util_err("the step profile is for --device cpu (got '%s')", device);
  gen_set_profile(profile);
  int opened = backend_open(cfg, device, &c.b);
  gen_set_profile(0);
  if (opened) return -1;
  backend *b = c.b;
  if (profile) {
    const cpu_module *mod = backend_cpu_module(b);
    c.prof = mod ? (bench_prof_table_fn)dlsym(mod->handle, "gptc_prof_table") : NULL;
    if (!c.prof) {
      backend_close(b);
      return util_err("profile: the compiled model has no gptc_prof_table (not a profiled source)");
    }
    c.warmup = t->warmup;
  }
  float *host = NULL;
  int rc = -1;
  if (b->ops->alloc(b, BACKEND_TRAIN)) goto done;
  host = b->host_params ? b->host_params : util_calloc(b->n_params, sizeof(float), "parameters");
  if (!host) goto done;
  bench_step_params(b, host, seed);
  if (b->ops->upload(b, host, NULL, NULL)) goto done;

  c.per_step = (size_t)b->B * b->T * cfg->train.grad_accum;
  size_t n = c.per_step * BENCH_STEP_BATCHES;
  c.inputs = util_malloc(n * sizeof(int32_t), "token batches");
  c.targets = util_malloc(n * sizeof(int32_t), "token batches");
  if (!c.inputs || !c.targets) goto done;
  uint64_t s = seed ^ 0x5DEECE66Dull;
  for (size_t i = 0; i < n; i++) {
    c.inputs[i] = (int32_t)(bench_uniform(&s) * b->vocab_size);
    c.targets[i] = (int32_t)(bench_uniform(&s) * b->vocab_size);
  }

  if (bench_time(1, bench_step_run, NULL, &c, t, &r->t)) goto done;
  if (c.failed) goto done;
  if (c.prof && bench_prof_collect(&c, r)) goto done;
  r->ran = 1;
  snprintf(r->device, sizeof r->device, "%s", b->device);
  snprintf(r->about, sizeof r->about, "%.255s", b->about);
  for (int i = 0; i < b->n_tensors; i++) r->n_params += b->tensors[i].numel;
  r->tokens_per_step = (double)c.per_step;
  r->flops_per_token = 6.0 * (double)r->n_params + 12.0 * cfg->n_layers * b->T * cfg->emb_dim;
  r->loss = c.loss;
  struct rusage ru;
  if (getrusage(RUSAGE_SELF, &ru) == 0) r->rss_bytes = (size_t)ru.ru_maxrss * 1024; /* KiB on Linux */
  const cpu_module *mod = backend_cpu_module(b);
  if (mod && mod->model) {
    const gptc_model *m = mod->model;
    r->have_model_bytes = 1;
    r->params_bytes = r->grads_bytes = m->n_params * sizeof(float);
    r->moments_bytes = 2 * m->n_params * sizeof(float);
    r->acts_bytes = (m->n_acts + m->n_grad_acts) * sizeof(float);
  }
  rc = 0;
done:
  if (host && host != b->host_params) free(host);
  free(c.inputs);
  free(c.targets);
  backend_close(b);
  return rc;
}
