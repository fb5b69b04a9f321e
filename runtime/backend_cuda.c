/* backend_cuda: the backend over the generated CUDA (cuda.h). The host runs
 * the launch plan: each program is a fixed list of kernel launches whose
 * arguments are buffer + offset, resolved against the device allocations.
 * Per-step values (micro-batch ids, dropout counters, loss scale, AdamW
 * constants) live in device structs (cuda_micro, cuda_ctl) uploaded before
 * the launches, so a whole training step can be captured once as a CUDA
 * graph and replayed ($GPTC_CUDA_GRAPHS=0 launches kernel by kernel). */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend_cuda.h"
#include "cuda.h"
#include "gen.h"
#include "util.h"

typedef struct {
  cuda_plan plan;
  cuda_dev *dev;
  gptc_tensor *tensors;
  int n_tensors;
  cuda_ptr buf[CUDA_N_BUFS]; /* base of each plan buffer (0: not allocated) */
  cuda_ptr alloc_params, alloc_params16, alloc_grads, alloc_opt, alloc_acts, alloc_eval, alloc_infer, alloc_io;
  int n_slots;          /* micro-batch slots in io and micro */
  int32_t *io;          /* (n_slots, io_slot) host staging */
  int32_t *tok_count;   /* (V + 1) counting-sort scratch */
  cuda_micro *micro;    /* (n_slots) host mirror */
  cuda_ctl ctl;         /* host mirror */
  int graphs;           /* capture the step and inference as CUDA graphs */
  void *step_graph, *infer_graph;
  int step_graph_micro; /* the micro-batch count step_graph was captured for */
  int dist_k;           /* plan index of gptc_dist_add (the dist kernels follow it); -1: none */
} backend_cuda;

static size_t backend_cuda_esize(int buf) {
  return buf == CUDA_BUF_PARAMS16 ? 2 : buf == CUDA_BUF_MICRO ? sizeof(cuda_micro) : buf == CUDA_BUF_CTL ? sizeof(cuda_ctl) : 4;
}

/* ---- running the plan ------------------------------------------------------------------ */

/* Launches program `prog` with the io and micro arguments of slot `slot`. */
static int backend_cuda_run(backend_cuda *c, int prog, int slot) {
  const cuda_plan *p = &c->plan;
  for (int i = 0; i < p->n_launches[prog]; i++) {
    const cuda_call *ln = &p->progs[prog][i];
    uint64_t ptr[CUDA_MAX_ARGS];
    int32_t ints[CUDA_MAX_ARGS];
    void *params[CUDA_MAX_ARGS];
    for (int a = 0; a < ln->nargs; a++) {
      const cuda_arg *g = &ln->args[a];
      if (g->buf == CUDA_ARG_INT) {
        ints[a] = (int32_t)g->off;
        params[a] = &ints[a];
        continue;
      }
      if (!c->buf[g->buf])
        return util_err("CUDA backend: %s (%s) needs the %s buffer, which is not allocated", cuda_prog_name(prog),
                        p->kernels[ln->kernel].name, cuda_buf_name(g->buf));
      ptr[a] = c->buf[g->buf] + (uint64_t)g->off * backend_cuda_esize(g->buf);
      if (g->buf == CUDA_BUF_IO) ptr[a] += (uint64_t)slot * p->io_slot * sizeof(int32_t);
      if (g->buf == CUDA_BUF_MICRO) ptr[a] += (uint64_t)slot * sizeof(cuda_micro);
      params[a] = &ptr[a];
    }
    if (cuda_launch(c->dev, ln->kernel, ln->grid, ln->block, params))
      return util_err("%s, kernel %s: %s", cuda_prog_name(prog), p->kernels[ln->kernel].name, util_errmsg());
  }
  return 0;
}

/* Host side of one micro-batch slot: ids, targets (-1 without), and for the
 * embedding backward the positions sorted by token (counting sort, stable)
 * with one segment per distinct token. */
static void backend_cuda_fill_slot(backend_cuda *c, int slot, const int32_t *in, const int32_t *tg, size_t bt,
                                   int segments) {
  const cuda_plan *p = &c->plan;
  int32_t *io = c->io + (size_t)slot * p->io_slot;
  memcpy(io + p->io_inputs, in, bt * sizeof(int32_t));
  for (size_t i = 0; i < bt; i++) io[p->io_targets + i] = tg ? tg[i] : -1;
  c->micro[slot].n_seg = 0;
  if (!segments) return;
  int32_t *cnt = c->tok_count, *order = io + p->io_order, *start = io + p->io_seg_start, *tok = io + p->io_seg_tok;
  for (size_t i = 0; i < bt; i++) cnt[in[i]]++;
  int n_seg = 0, at = 0;
  for (int v = 0; v < p->V; v++) {
    if (!cnt[v]) continue;
    start[n_seg] = at;
    tok[n_seg++] = v;
    int n = cnt[v];
    cnt[v] = at; /* becomes the write position */
    at += n;
  }
  start[n_seg] = at;
  for (size_t i = 0; i < bt; i++) order[cnt[in[i]]++] = (int32_t)i;
  for (int s = 0; s < n_seg; s++) cnt[tok[s]] = 0;
  c->micro[slot].n_seg = n_seg;
}

static int backend_cuda_upload_slots(backend_cuda *c, int n) {
  const cuda_plan *p = &c->plan;
  if (cuda_upload(c->dev, c->buf[CUDA_BUF_IO], c->io, (size_t)n * p->io_slot * sizeof(int32_t))) return -1;
  return cuda_upload(c->dev, c->buf[CUDA_BUF_MICRO], c->micro, (size_t)n * sizeof(cuda_micro));
}

/* The AdamW constants exactly as the CPU's gptc_adamw computes them. */
static void backend_cuda_adamw_consts(cuda_ctl *ctl, gptc_adamw_args a) {
  double bc1 = 1 - pow((double)a.beta1, a.t), bc2 = 1 - pow((double)a.beta2, a.t);
  ctl->step = (float)(a.lr / bc1);
  ctl->bc2_sqrt = (float)sqrt(bc2);
  ctl->eps = a.eps;
  ctl->b1c = (float)(1 - (double)a.beta1);
  ctl->b2 = a.beta2;
  ctl->b2c = (float)(1 - (double)a.beta2);
  ctl->keep = (float)(1 - (double)a.lr * a.weight_decay);
  ctl->lerp_hi = ctl->b1c >= 0.5f;
}

/* ---- ops -------------------------------------------------------------------------------- */

static int backend_cuda_alloc(backend *b, int what) {
  backend_cuda *c = b->impl;
  const cuda_plan *p = &c->plan;
  if ((what & BACKEND_TRAIN) && !c->alloc_grads) {
    size_t na = (p->count[CUDA_BUF_ACTS] + 63) & ~(size_t)63, ng = (p->count[CUDA_BUF_GRAD_ACTS] + 63) & ~(size_t)63;
    if (cuda_alloc(c->dev, p->n_params * 4, "gradients", &c->alloc_grads) ||
        cuda_alloc(c->dev, 2 * p->n_params * 4, "AdamW moments", &c->alloc_opt) ||
        cuda_alloc(c->dev, (na + ng + p->count[CUDA_BUF_SCRATCH]) * 4, "activations (with backward and kernel scratch)",
                   &c->alloc_acts))
      return -1;
    c->buf[CUDA_BUF_GRADS] = c->alloc_grads;
    b->grads = (float *)(uintptr_t)c->alloc_grads;
    c->buf[CUDA_BUF_ADAM_M] = c->alloc_opt;
    c->buf[CUDA_BUF_ADAM_V] = c->alloc_opt + p->n_params * 4;
    c->buf[CUDA_BUF_ACTS] = c->alloc_acts;
    c->buf[CUDA_BUF_GRAD_ACTS] = c->alloc_acts + na * 4;
    c->buf[CUDA_BUF_SCRATCH] = c->alloc_acts + (na + ng) * 4;
    /* fresh moments are zero, like the CPU's calloc'ed ones */
    if (cuda_zero(c->dev, c->alloc_opt, 2 * p->n_params * 4) || cuda_zero(c->dev, c->alloc_grads, p->n_params * 4))
      return -1;
  }
  if ((what & BACKEND_EVAL) && !c->alloc_eval) {
    if (cuda_alloc(c->dev, p->count[CUDA_BUF_EVAL_ACTS] * 4, "evaluation activations", &c->alloc_eval)) return -1;
    c->buf[CUDA_BUF_EVAL_ACTS] = c->alloc_eval;
  }
  if ((what & BACKEND_INFER) && !c->alloc_infer) {
    size_t nk = (p->count[CUDA_BUF_KV] + 63) & ~(size_t)63;
    if (cuda_alloc(c->dev, (nk + p->count[CUDA_BUF_INFER]) * 4, "KV cache and inference scratch", &c->alloc_infer) ||
        cuda_zero(c->dev, c->alloc_infer, (nk + p->count[CUDA_BUF_INFER]) * 4))
      return -1;
    c->buf[CUDA_BUF_KV] = c->alloc_infer;
    c->buf[CUDA_BUF_INFER] = c->alloc_infer + nk * 4;
  }
  return 0;
}

static int backend_cuda_upload(backend *b, const float *params, const float *m, const float *v) {
  backend_cuda *c = b->impl;
  size_t n = c->plan.n_params * 4;
  if ((m || v) && !c->alloc_opt) return util_err("AdamW moments uploaded before the training buffers were allocated");
  if (cuda_upload(c->dev, c->buf[CUDA_BUF_PARAMS], params, n) ||
      (m && cuda_upload(c->dev, c->buf[CUDA_BUF_ADAM_M], m, n)) || (v && cuda_upload(c->dev, c->buf[CUDA_BUF_ADAM_V], v, n)))
    return -1;
  if (c->plan.bf16 && backend_cuda_run(c, CUDA_PROG_TO_BF16, 0)) return -1;
  return cuda_sync(c->dev);
}

static int backend_cuda_download(backend *b, float *params, float *m, float *v) {
  backend_cuda *c = b->impl;
  size_t n = c->plan.n_params * 4;
  if ((m || v) && !c->alloc_opt) return util_err("AdamW moments downloaded before the training buffers were allocated");
  return (params && cuda_download(c->dev, params, c->buf[CUDA_BUF_PARAMS], n)) ||
                 (m && cuda_download(c->dev, m, c->buf[CUDA_BUF_ADAM_M], n)) ||
                 (v && cuda_download(c->dev, v, c->buf[CUDA_BUF_ADAM_V], n))
             ? -1
             : 0;
}

static int backend_cuda_need_train(backend_cuda *c, const char *op) {
  return c->alloc_grads ? 0 : util_err("%s needs the training buffers (alloc BACKEND_TRAIN first)", op);
}

static int backend_cuda_forward(backend *b, const int32_t *in, const int32_t *tg, gptc_rng rng, float *loss) {
  backend_cuda *c = b->impl;
  const cuda_plan *p = &c->plan;
  size_t bt = (size_t)p->B * p->T;
  if (backend_cuda_need_train(c, "forward")) return -1;
  if (!backend_ids_ok(in, tg, bt, p->V)) {
    *loss = NAN;
    return 0;
  }
  backend_cuda_fill_slot(c, 0, in, tg, bt, 1);
  cuda_micro *mc = &c->micro[0];
  mc->seed = rng.seed, mc->offset = rng.offset, mc->train = rng.train, mc->loss_scale = 1;
  if (backend_cuda_upload_slots(c, 1) || backend_cuda_run(c, CUDA_PROG_TRAIN_FWD, 0) ||
      cuda_download(c->dev, mc, c->buf[CUDA_BUF_MICRO], sizeof *mc))
    return -1;
  *loss = mc->loss;
  return 0;
}

static int backend_cuda_backward(backend *b, const int32_t *in, const int32_t *tg, gptc_rng rng, float loss_scale) {
  backend_cuda *c = b->impl;
  const cuda_plan *p = &c->plan;
  if (backend_cuda_need_train(c, "backward")) return -1;
  if (!tg || !backend_ids_ok(in, tg, (size_t)p->B * p->T, p->V)) return 0;
  /* slot 0 still holds this batch (forward came first); the mirror holds
   * forward's n_valid, which the loss backward divides by */
  cuda_micro *mc = &c->micro[0];
  mc->seed = rng.seed, mc->offset = rng.offset, mc->train = rng.train, mc->loss_scale = loss_scale;
  if (cuda_upload(c->dev, c->buf[CUDA_BUF_MICRO], mc, sizeof *mc)) return -1;
  return backend_cuda_run(c, CUDA_PROG_TRAIN_BWD, 0);
}

static int backend_cuda_zero_grads(backend *b) {
  backend_cuda *c = b->impl;
  if (backend_cuda_need_train(c, "zeroing gradients")) return -1;
  return cuda_zero(c->dev, c->buf[CUDA_BUF_GRADS], c->plan.n_params * 4);
}

static int backend_cuda_download_grads(backend *b, float *grads) {
  backend_cuda *c = b->impl;
  if (backend_cuda_need_train(c, "reading gradients")) return -1;
  return cuda_download(c->dev, grads, c->buf[CUDA_BUF_GRADS], c->plan.n_params * 4);
}

static int backend_cuda_grad_sq_norm(backend *b, double *out) {
  backend_cuda *c = b->impl;
  if (backend_cuda_need_train(c, "the gradient norm")) return -1;
  c->ctl.n_micro = 0;
  if (cuda_upload(c->dev, c->buf[CUDA_BUF_CTL], &c->ctl, sizeof c->ctl) || backend_cuda_run(c, CUDA_PROG_GRAD_NORM, 0) ||
      cuda_download(c->dev, &c->ctl, c->buf[CUDA_BUF_CTL], sizeof c->ctl))
    return -1;
  *out = c->ctl.sumsq;
  return 0;
}

static int backend_cuda_adamw(backend *b, gptc_adamw_args a) {
  backend_cuda *c = b->impl;
  if (backend_cuda_need_train(c, "AdamW")) return -1;
  backend_cuda_adamw_consts(&c->ctl, a);
  c->ctl.use_fixed = 1;
  c->ctl.fixed_scale = a.grad_scale;
  if (cuda_upload(c->dev, c->buf[CUDA_BUF_CTL], &c->ctl, sizeof c->ctl)) return -1;
  return backend_cuda_run(c, CUDA_PROG_ADAMW, 0);
}

/* The launches of one step for n micro-batches (run, or captured). */
static int backend_cuda_step_launches(backend_cuda *c, int n) {
  if (cuda_zero(c->dev, c->buf[CUDA_BUF_GRADS], c->plan.n_params * 4)) return -1;
  for (int i = 0; i < n; i++)
    if (backend_cuda_run(c, CUDA_PROG_TRAIN_FWD, i) || backend_cuda_run(c, CUDA_PROG_TRAIN_BWD, i)) return -1;
  return backend_cuda_run(c, CUDA_PROG_GRAD_NORM, 0) || backend_cuda_run(c, CUDA_PROG_ADAMW, 0) ? -1 : 0;
}

/* Runs `launches` through a graph captured once (and kept in *graph), or
 * directly when graphs are off. A failed capture turns graphs off with a
 * notice and runs directly. */
static int backend_cuda_graphed(backend_cuda *c, void **graph, int (*launches)(backend_cuda *, int), int n) {
  if (!c->graphs) return launches(c, n);
  if (!*graph) {
    if (cuda_graph_begin(c->dev)) return -1;
    int rc = launches(c, n);
    void *exec = NULL;
    int end = cuda_graph_end(c->dev, &exec);
    if (rc || end) {
      fprintf(stderr, "gptc: CUDA graph capture failed (%s); launching kernels one by one\n", util_errmsg());
      c->graphs = 0;
      cuda_graph_free(c->dev, exec);
      return launches(c, n);
    }
    *graph = exec;
  }
  return cuda_graph_launch(c->dev, *graph);
}

static int backend_cuda_train_step(backend *b, const backend_step *s, double *loss, double *norm) {
  backend_cuda *c = b->impl;
  const cuda_plan *p = &c->plan;
  size_t bt = (size_t)p->B * p->T;
  *loss = 0;
  *norm = 0;
  if (backend_cuda_need_train(c, "a training step")) return -1;
  if (s->n_micro < 1 || s->n_micro > c->n_slots)
    return util_err("CUDA backend: a step of %d micro-batches, but %d slots are allocated (train.grad_accum)", s->n_micro,
                    c->n_slots);
  if (!backend_ids_ok(s->inputs, s->targets, bt * (size_t)s->n_micro, p->V)) {
    *loss = NAN; /* as the CPU's forward reports a bad batch; the weights stay */
    return 0;
  }
  for (int i = 0; i < s->n_micro; i++) {
    backend_cuda_fill_slot(c, i, s->inputs + (size_t)i * bt, s->targets + (size_t)i * bt, bt, 1);
    cuda_micro *mc = &c->micro[i];
    mc->seed = s->seed, mc->offset = s->offset + (uint64_t)i, mc->train = s->dropout;
    mc->loss_scale = 1.0f / s->n_micro;
  }
  backend_cuda_adamw_consts(&c->ctl, s->adamw);
  c->ctl.use_fixed = 0;
  c->ctl.grad_clip = s->grad_clip;
  c->ctl.n_micro = s->n_micro;
  if (backend_cuda_upload_slots(c, s->n_micro) || cuda_upload(c->dev, c->buf[CUDA_BUF_CTL], &c->ctl, sizeof c->ctl))
    return -1;
  if (c->step_graph && c->step_graph_micro != s->n_micro) {
    cuda_graph_free(c->dev, c->step_graph);
    c->step_graph = NULL;
  }
  c->step_graph_micro = s->n_micro;
  if (backend_cuda_graphed(c, &c->step_graph, backend_cuda_step_launches, s->n_micro) ||
      cuda_download(c->dev, c->micro, c->buf[CUDA_BUF_MICRO], (size_t)s->n_micro * sizeof(cuda_micro)) ||
      cuda_download(c->dev, &c->ctl, c->buf[CUDA_BUF_CTL], sizeof c->ctl))
    return -1;
  for (int i = 0; i < s->n_micro; i++) *loss += c->micro[i].loss / s->n_micro;
  *norm = sqrt(c->ctl.sumsq);
  return 0;
}

static int backend_cuda_forward_eval(backend *b, const int32_t *in, const int32_t *tg, float *loss) {
  backend_cuda *c = b->impl;
  const cuda_plan *p = &c->plan;
  size_t bt = (size_t)p->eval_B * p->eval_T;
  if (backend_cuda_alloc(b, BACKEND_EVAL)) return -1;
  if (!backend_ids_ok(in, tg, bt, p->V)) {
    *loss = NAN;
    return 0;
  }
  backend_cuda_fill_slot(c, 0, in, tg, bt, 0);
  cuda_micro *mc = &c->micro[0];
  mc->train = 0, mc->loss_scale = 1;
  if (backend_cuda_upload_slots(c, 1) || backend_cuda_run(c, CUDA_PROG_EVAL_FWD, 0) ||
      cuda_download(c->dev, mc, c->buf[CUDA_BUF_MICRO], sizeof *mc))
    return -1;
  *loss = mc->loss;
  return 0;
}

static int backend_cuda_infer_launches(backend_cuda *c, int n) {
  (void)n;
  return backend_cuda_run(c, CUDA_PROG_INFER, 0);
}

static int backend_cuda_infer(backend *b, int token, int pos, float *logits) {
  backend_cuda *c = b->impl;
  const cuda_plan *p = &c->plan;
  if (token < 0 || token >= p->V || pos < 0 || pos >= p->ctx) {
    for (int v = 0; v < p->V; v++) logits[v] = NAN;
    return 0;
  }
  if (backend_cuda_alloc(b, BACKEND_INFER)) return -1;
  c->ctl.token = token;
  c->ctl.pos = pos;
  if (cuda_upload(c->dev, c->buf[CUDA_BUF_CTL] + offsetof(cuda_ctl, token), &c->ctl.token, 2 * sizeof(int)) ||
      backend_cuda_graphed(c, &c->infer_graph, backend_cuda_infer_launches, 0))
    return -1;
  return cuda_download(c->dev, logits, c->buf[CUDA_BUF_INFER] + p->logits_infer * 4, (size_t)p->V * 4);
}

static int backend_cuda_logits(backend *b, int eval, float *out) {
  backend_cuda *c = b->impl;
  const cuda_plan *p = &c->plan;
  cuda_ptr base = c->buf[eval ? CUDA_BUF_EVAL_ACTS : CUDA_BUF_ACTS];
  if (!base) return util_err("reading logits needs buffers that were not allocated");
  size_t n = (size_t)(eval ? p->eval_B * p->eval_T : p->B * p->T) * (size_t)p->V;
  return cuda_download(c->dev, out, base + (eval ? p->logits_eval : p->logits_train) * 4, n * 4);
}

static void backend_cuda_close(backend *b) {
  backend_cuda *c = b->impl;
  if (c) {
    if (c->dev) {
      cuda_graph_free(c->dev, c->step_graph);
      cuda_graph_free(c->dev, c->infer_graph);
      cuda_ptr all[] = {c->alloc_params, c->alloc_params16, c->alloc_grads, c->alloc_opt,
                        c->alloc_acts,   c->alloc_eval,     c->alloc_infer, c->alloc_io};
      for (size_t i = 0; i < sizeof all / sizeof *all; i++) cuda_free(c->dev, all[i]);
      cuda_dev_close(c->dev);
    }
    cuda_plan_free(&c->plan);
    gen_tensors_free(c->tensors, c->n_tensors);
    free(c->io), free(c->tok_count), free(c->micro);
    free(c);
  }
  free(b);
}

/* ---- data-parallel vectors (backend.h): device memory, dist kernels ---- */

/* The data-parallel kernels (cuda.h's cuda_dist_unit) in the plan, after
 * the model's: c->dist_k + DIST_* */
enum { DIST_ADD, DIST_ADD_BF16, DIST_TO_BF16, DIST_FROM_BF16 };

static int backend_cuda_dist_plan(backend_cuda *c) {
  cuda_kernel *k = util_realloc(c->plan.kernels, (size_t)(c->plan.n_kernels + CUDA_DIST_KERNELS) * sizeof *k,
                                "kernel table");
  if (!k) return -1;
  c->plan.kernels = k;
  c->dist_k = c->plan.n_kernels;
  for (int i = 0; i < CUDA_DIST_KERNELS; i++) {
    cuda_kernel *e = &k[c->plan.n_kernels++];
    memset(e, 0, sizeof *e);
    snprintf(e->name, sizeof e->name, "%s", cuda_dist_kernels[i]);
    e->nparams = 3, e->max_threads = 256;
  }
  return 0;
}

/* dst[i] op src[i] for i < n: kernel DIST_* over chunks of 2^30 elements
 * (the kernels index with int); dsz, ssz: bytes per element of dst and src */
static int backend_cuda_dist_run(backend *b, int kern, void *dst, size_t dsz, const void *src, size_t ssz, size_t n) {
  backend_cuda *c = b->impl;
  if (c->dist_k < 0)
    return util_err("CUDA backend: the data-parallel kernels are not loaded (a whole-source test variant)");
  const size_t chunk = (size_t)1 << 30;
  for (size_t at = 0; at < n; at += chunk) {
    int m = (int)(n - at < chunk ? n - at : chunk);
    uint64_t pd = (uint64_t)(uintptr_t)dst + at * dsz, ps = (uint64_t)(uintptr_t)src + at * ssz;
    void *params[3] = {&pd, &ps, &m};
    unsigned grid[3] = {(unsigned)((m + 255) / 256), 1, 1}, block[3] = {256, 1, 1};
    if (cuda_launch(c->dev, c->dist_k + kern, grid, block, params))
      return util_err("%s: %s", cuda_dist_kernels[kern], util_errmsg());
  }
  return 0;
}

static void *backend_cuda_vec_alloc(backend *b, size_t n, size_t esize, const char *what) {
  backend_cuda *c = b->impl;
  cuda_ptr p = 0;
  size_t bytes = (n ? n : 1) * esize;
  if (cuda_alloc(c->dev, bytes, what, &p) || cuda_zero(c->dev, p, bytes)) {
    if (p) cuda_free(c->dev, p);
    return NULL;
  }
  return (void *)(uintptr_t)p;
}

static void backend_cuda_vec_free(backend *b, void *p) {
  backend_cuda *c = b->impl;
  cuda_free(c->dev, (cuda_ptr)(uintptr_t)p);
}

static int backend_cuda_vec_add(backend *b, float *dst, const float *src, size_t n) {
  return backend_cuda_dist_run(b, DIST_ADD, dst, 4, src, 4, n);
}

static int backend_cuda_vec_add_bf16(backend *b, float *dst, const uint16_t *src, size_t n) {
  return backend_cuda_dist_run(b, DIST_ADD_BF16, dst, 4, src, 2, n);
}

static int backend_cuda_vec_to_bf16(backend *b, uint16_t *dst, const float *src, size_t n) {
  return backend_cuda_dist_run(b, DIST_TO_BF16, dst, 2, src, 4, n);
}

static int backend_cuda_vec_from_bf16(backend *b, float *dst, const uint16_t *src, size_t n) {
  return backend_cuda_dist_run(b, DIST_FROM_BF16, dst, 4, src, 2, n);
}

static int backend_cuda_vec_zero(backend *b, void *dst, size_t bytes) {
  backend_cuda *c = b->impl;
  return cuda_zero(c->dev, (cuda_ptr)(uintptr_t)dst, bytes);
}

static int backend_cuda_vec_copy(backend *b, void *dst, const void *src, size_t bytes, int host) {
  backend_cuda *c = b->impl;
  return host ? cuda_upload(c->dev, (cuda_ptr)(uintptr_t)dst, src, bytes)
              : cuda_copy(c->dev, (cuda_ptr)(uintptr_t)dst, (cuda_ptr)(uintptr_t)src, bytes);
}

static const backend_ops backend_cuda_ops = {
    .alloc = backend_cuda_alloc,
    .upload = backend_cuda_upload,
    .download = backend_cuda_download,
    .forward = backend_cuda_forward,
    .backward = backend_cuda_backward,
    .zero_grads = backend_cuda_zero_grads,
    .download_grads = backend_cuda_download_grads,
    .grad_sq_norm = backend_cuda_grad_sq_norm,
    .adamw = backend_cuda_adamw,
    .train_step = backend_cuda_train_step,
    .forward_eval = backend_cuda_forward_eval,
    .infer = backend_cuda_infer,
    .logits = backend_cuda_logits,
    .close = backend_cuda_close,
    .vec_alloc = backend_cuda_vec_alloc,
    .vec_free = backend_cuda_vec_free,
    .vec_add = backend_cuda_vec_add,
    .vec_add_bf16 = backend_cuda_vec_add_bf16,
    .vec_to_bf16 = backend_cuda_vec_to_bf16,
    .vec_from_bf16 = backend_cuda_vec_from_bf16,
    .vec_zero = backend_cuda_vec_zero,
    .vec_copy = backend_cuda_vec_copy,
};

/* The buffers every op needs: parameters (and their bf16 copy), the
 * micro-batch slots and the control struct. */
static int backend_cuda_base(backend_cuda *c) {
  const cuda_plan *p = &c->plan;
  size_t io_bytes = (size_t)c->n_slots * p->io_slot * sizeof(int32_t);
  size_t micro_at = (io_bytes + 255) & ~(size_t)255, ctl_at = micro_at + ((c->n_slots * sizeof(cuda_micro) + 255) & ~(size_t)255);
  if (cuda_alloc(c->dev, p->n_params * 4, "parameters", &c->alloc_params) ||
      (p->bf16 && cuda_alloc(c->dev, p->n_params * 2, "bf16 parameter copy", &c->alloc_params16)) ||
      cuda_alloc(c->dev, ctl_at + sizeof(cuda_ctl), "batch slots", &c->alloc_io))
    return -1;
  c->buf[CUDA_BUF_PARAMS] = c->alloc_params;
  c->buf[CUDA_BUF_PARAMS16] = c->alloc_params16;
  c->buf[CUDA_BUF_IO] = c->alloc_io;
  c->buf[CUDA_BUF_MICRO] = c->alloc_io + micro_at;
  c->buf[CUDA_BUF_CTL] = c->alloc_io + ctl_at;
  /* padding between tensors stays zero: the AdamW chunks never touch it */
  if (cuda_zero(c->dev, c->alloc_params, p->n_params * 4) ||
      (p->bf16 && cuda_zero(c->dev, c->alloc_params16, p->n_params * 2)) ||
      cuda_zero(c->dev, c->alloc_io, ctl_at + sizeof(cuda_ctl)))
    return -1;
  c->io = util_calloc((size_t)c->n_slots * p->io_slot, sizeof(int32_t), "batch slots");
  c->tok_count = util_calloc((size_t)p->V + 1, sizeof(int32_t), "token counts");
  c->micro = util_calloc((size_t)c->n_slots, sizeof(cuda_micro), "micro-batch structs");
  return c->io && c->tok_count && c->micro ? 0 : -1;
}

int backend_cuda_open(const cfg_t *cfg, backend **out) { return backend_cuda_open_variant(cfg, NULL, out); }

int backend_cuda_open_variant(const cfg_t *cfg, const gen_cuda_opts *gen, backend **out) {
  *out = NULL;
  backend *b = util_calloc(1, sizeof *b, "backend");
  backend_cuda *c = b ? util_calloc(1, sizeof *c, "CUDA backend") : NULL;
  if (!c) {
    free(b);
    return -1;
  }
  b->ops = &backend_cuda_ops;
  b->impl = c;
  b->device = "cuda";
  const char *g = getenv("GPTC_CUDA_GRAPHS");
  c->graphs = !(g && !strcmp(g, "0"));
  c->n_slots = cfg->train.grad_accum > 0 ? cfg->train.grad_accum : 1;
  c->dist_k = -1;
  char *src = NULL;
  size_t len;
  char hash[65];
  size_t n_params = 0;
  /* one NVRTC program per kernel (each cached on its own), unless the
   * variant asks for the whole source as one */
  int whole = gen && gen->whole;
  gen_unit *units = NULL;
  int n_units = 0;
  int rc = whole ? gen_cuda_source(cfg, gen, &src, &len, hash)
                 : gen_cuda_units(cfg, gen, &src, &len, hash, &units, &n_units);
  if (!rc) rc = cuda_plan_parse(src, len, &c->plan);
  if (!rc) rc = gen_tensors(cfg, &c->tensors, &c->n_tensors, &n_params);
  if (!rc && n_params != c->plan.n_params)
    rc = util_err("CUDA plan: %zu parameters, the shapes say %zu", c->plan.n_params, n_params);
  if (!rc && !whole) rc = cuda_dist_unit(&units, &n_units) || backend_cuda_dist_plan(c) ? -1 : 0;
  if (!rc) rc = whole ? cuda_dev_open(src, len, hash, &c->plan, &c->dev)
                      : cuda_dev_open_units(units, n_units, &c->plan, &c->dev);
  gen_units_free(units, n_units);
  free(src);
  if (!rc) rc = backend_cuda_base(c);
  if (rc) {
    backend_cuda_close(b);
    return -1;
  }
  const cuda_plan *p = &c->plan;
  snprintf(b->about, sizeof b->about, "cuda: %s", cuda_dev_about(c->dev));
  b->stream = cuda_dev_stream(c->dev);
  b->vocab_size = p->V, b->context_length = p->ctx;
  b->B = p->B, b->T = p->T, b->eval_B = p->eval_B, b->eval_T = p->eval_T;
  b->n_params = p->n_params, b->n_tensors = c->n_tensors, b->tensors = c->tensors;
  *out = b;
  return 0;
}

int backend_cuda_act(backend *b, const char *name, int layer, float *out, size_t n) {
  if (!b || strcmp(b->device, "cuda")) return util_err("backend_cuda_act: not a CUDA backend");
  backend_cuda *c = b->impl;
  const cuda_plan *p = &c->plan;
  if (!c->alloc_acts) return util_err("backend_cuda_act: the training buffers are not allocated");
  for (int i = 0; i < p->n_acts; i++) {
    const struct cuda_act *a = &p->acts[i];
    if (strcmp(a->name, name)) continue;
    if (layer < 0 || layer >= a->layers || n > a->numel)
      return util_err("backend_cuda_act: %s has %d layers of %zu floats", name, a->layers, a->numel);
    return cuda_download(c->dev, out, c->buf[CUDA_BUF_ACTS] + (a->offset + (size_t)layer * a->stride) * 4, n * 4);
  }
  return util_err("backend_cuda_act: no activation '%s' in the launch plan", name);
}
