/* backend_cpu: the backend over the generated C (cpu.h, model.h). The
 * buffers are host memory, 64-byte aligned and zeroed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend_cpu.h"
#include "util.h"

typedef struct {
  cpu_module mod;
  const gptc_model *m;
  float *params, *grads, *adam_m, *adam_v, *acts, *grad_acts; /* n_params x4; n_acts; n_grad_acts */
  float *eval_acts;                                           /* n_eval_acts */
  float *kv, *scratch;                                        /* n_kv; n_infer_scratch */
} backend_cpu;

static float *backend_cpu_buf(size_t n, const char *what) {
  void *p = NULL;
  size_t bytes = ((n ? n : 1) * sizeof(float) + 63) & ~(size_t)63;
  if (posix_memalign(&p, 64, bytes) != 0) {
    util_err("out of memory: %s needs %zu bytes (%.1f MiB available)", what, bytes, util_mem_available() / 1048576.0);
    return NULL;
  }
  memset(p, 0, bytes);
  return p;
}

static int backend_cpu_alloc(backend *b, int what) {
  backend_cpu *c = b->impl;
  const gptc_model *m = c->m;
  if ((what & BACKEND_TRAIN) && !c->grads) {
    int moments = !(what & BACKEND_NO_MOMENTS);
    if (!(c->grads = backend_cpu_buf(m->n_params, "gradients")) ||
        (moments && !(c->adam_m = backend_cpu_buf(m->n_params, "AdamW first moments"))) ||
        (moments && !(c->adam_v = backend_cpu_buf(m->n_params, "AdamW second moments"))) ||
        !(c->acts = backend_cpu_buf(m->n_acts, "activations")) ||
        !(c->grad_acts = backend_cpu_buf(m->n_grad_acts, "activation gradients")))
      return -1;
    b->host_m = c->adam_m;
    b->host_v = c->adam_v;
    b->host_grads = b->grads = c->grads;
  }
  if ((what & BACKEND_EVAL) && !c->eval_acts && !(c->eval_acts = backend_cpu_buf(m->n_eval_acts, "evaluation activations")))
    return -1;
  if ((what & BACKEND_INFER) && !c->kv &&
      (!(c->kv = backend_cpu_buf(m->n_kv, "KV cache")) || !(c->scratch = backend_cpu_buf(m->n_infer_scratch, "inference scratch"))))
    return -1;
  return 0;
}

static int backend_cpu_upload(backend *b, const float *params, const float *m, const float *v) {
  backend_cpu *c = b->impl;
  size_t n = c->m->n_params * sizeof(float);
  if (params != c->params) memcpy(c->params, params, n);
  if ((m || v) && !c->adam_m) return util_err("AdamW moments uploaded before the training buffers were allocated");
  if (m && m != c->adam_m) memcpy(c->adam_m, m, n);
  if (v && v != c->adam_v) memcpy(c->adam_v, v, n);
  return 0;
}

static int backend_cpu_download(backend *b, float *params, float *m, float *v) {
  backend_cpu *c = b->impl;
  size_t n = c->m->n_params * sizeof(float);
  if (params && params != c->params) memcpy(params, c->params, n);
  if ((m || v) && !c->adam_m) return util_err("AdamW moments downloaded before the training buffers were allocated");
  if (m && m != c->adam_m) memcpy(m, c->adam_m, n);
  if (v && v != c->adam_v) memcpy(v, c->adam_v, n);
  return 0;
}

static int backend_cpu_need(const void *buf, const char *op) {
  return buf ? 0 : util_err("%s needs buffers that were not allocated", op);
}

static int backend_cpu_forward(backend *b, const int32_t *in, const int32_t *tg, gptc_rng rng, float *loss) {
  backend_cpu *c = b->impl;
  if (backend_cpu_need(c->acts, "forward")) return -1;
  *loss = c->m->forward(c->params, c->acts, in, tg, rng);
  return 0;
}

static int backend_cpu_backward(backend *b, const int32_t *in, const int32_t *tg, gptc_rng rng, float loss_scale) {
  backend_cpu *c = b->impl;
  if (backend_cpu_need(c->grads, "backward")) return -1;
  c->m->backward(c->params, c->grads, c->acts, c->grad_acts, in, tg, rng, loss_scale);
  return 0;
}

static int backend_cpu_zero_grads(backend *b) {
  backend_cpu *c = b->impl;
  if (backend_cpu_need(c->grads, "zeroing gradients")) return -1;
  memset(c->grads, 0, c->m->n_params * sizeof(float));
  return 0;
}

static int backend_cpu_download_grads(backend *b, float *grads) {
  backend_cpu *c = b->impl;
  if (backend_cpu_need(c->grads, "reading gradients")) return -1;
  memcpy(grads, c->grads, c->m->n_params * sizeof(float));
  return 0;
}

static int backend_cpu_grad_sq_norm(backend *b, double *out) {
  backend_cpu *c = b->impl;
  if (backend_cpu_need(c->grads, "the gradient norm")) return -1;
  *out = c->m->grad_sq_norm(c->grads);
  return 0;
}

static int backend_cpu_adamw(backend *b, gptc_adamw_args a) {
  backend_cpu *c = b->impl;
  if (backend_cpu_need(c->grads, "AdamW") || backend_cpu_need(c->adam_m, "AdamW")) return -1;
  c->m->adamw(c->params, c->grads, c->adam_m, c->adam_v, a);
  return 0;
}

static int backend_cpu_adamw_range(backend *b, gptc_adamw_args a, size_t lo, size_t hi, float *m, float *v) {
  backend_cpu *c = b->impl;
  if (backend_cpu_need(c->grads, "AdamW")) return -1;
  if (lo > hi || hi > c->m->n_params) return util_err("AdamW range [%zu, %zu) outside the %zu parameters", lo, hi, c->m->n_params);
  c->m->adamw_range(c->params, c->grads, m, v, a, lo, hi);
  return 0;
}

static int backend_cpu_forward_eval(backend *b, const int32_t *in, const int32_t *tg, float *loss) {
  backend_cpu *c = b->impl;
  if (backend_cpu_alloc(b, BACKEND_EVAL)) return -1;
  *loss = c->m->forward_eval(c->params, c->eval_acts, in, tg);
  return 0;
}

static int backend_cpu_infer(backend *b, int token, int pos, float *logits) {
  backend_cpu *c = b->impl;
  if (backend_cpu_alloc(b, BACKEND_INFER)) return -1;
  c->m->infer(c->params, c->kv, c->scratch, token, pos, logits);
  return 0;
}

static int backend_cpu_logits(backend *b, int eval, float *out) {
  backend_cpu *c = b->impl;
  const gptc_model *m = c->m;
  const float *src = eval ? c->eval_acts : c->acts;
  if (backend_cpu_need(src, "reading logits")) return -1;
  size_t n = (size_t)(eval ? m->eval_B * m->eval_T : m->B * m->T) * (size_t)m->vocab_size;
  memcpy(out, src + (eval ? m->eval_logits_offset : m->logits_offset), n * sizeof(float));
  return 0;
}

static void backend_cpu_close(backend *b) {
  backend_cpu *c = b->impl;
  if (c) {
    if (c->mod.handle) cpu_unload(&c->mod);
    free(c->params), free(c->grads), free(c->adam_m), free(c->adam_v), free(c->acts), free(c->grad_acts);
    free(c->eval_acts), free(c->kv), free(c->scratch);
    free(c);
  }
  free(b);
}

/* ---- data-parallel vectors (backend.h): host memory, plain loops ---- */

static void *backend_cpu_vec_alloc(backend *b, size_t n, size_t esize, const char *what) {
  (void)b;
  return util_calloc(n ? n : 1, esize, what);
}

static void backend_cpu_vec_free(backend *b, void *p) {
  (void)b;
  free(p);
}

static int backend_cpu_vec_add(backend *b, float *dst, const float *src, size_t n) {
  (void)b;
  for (size_t i = 0; i < n; i++) dst[i] += src[i];
  return 0;
}

static float backend_cpu_bf16_f32(uint16_t h) {
  uint32_t u = (uint32_t)h << 16;
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

static int backend_cpu_vec_add_bf16(backend *b, float *dst, const uint16_t *src, size_t n) {
  (void)b;
  for (size_t i = 0; i < n; i++) dst[i] += backend_cpu_bf16_f32(src[i]);
  return 0;
}

static int backend_cpu_vec_from_bf16(backend *b, float *dst, const uint16_t *src, size_t n) {
  (void)b;
  for (size_t i = 0; i < n; i++) dst[i] = backend_cpu_bf16_f32(src[i]);
  return 0;
}

/* round to nearest even on the top 16 bits; a NaN stays a (quiet) NaN
 * (the same rule as gptc_dist_to_bf16 in backend_cuda.c's kernels) */
static int backend_cpu_vec_to_bf16(backend *b, uint16_t *dst, const float *src, size_t n) {
  (void)b;
  for (size_t i = 0; i < n; i++) {
    uint32_t u;
    memcpy(&u, &src[i], sizeof u);
    dst[i] = (u & 0x7fffffffu) > 0x7f800000u ? (uint16_t)(u >> 16 | 0x40) : (uint16_t)((u + 0x7fffu + (u >> 16 & 1)) >> 16);
  }
  return 0;
}

static int backend_cpu_vec_zero(backend *b, void *dst, size_t bytes) {
  (void)b;
  memset(dst, 0, bytes);
  return 0;
}

static int backend_cpu_vec_copy(backend *b, void *dst, const void *src, size_t bytes, int host) {
  (void)b, (void)host;
  memmove(dst, src, bytes);
  return 0;
}

static const backend_ops backend_cpu_ops = {
    .alloc = backend_cpu_alloc,
    .upload = backend_cpu_upload,
    .download = backend_cpu_download,
    .forward = backend_cpu_forward,
    .backward = backend_cpu_backward,
    .zero_grads = backend_cpu_zero_grads,
    .download_grads = backend_cpu_download_grads,
    .grad_sq_norm = backend_cpu_grad_sq_norm,
    .adamw = backend_cpu_adamw,
    .adamw_range = backend_cpu_adamw_range,
    .train_step = backend_step_generic,
    .forward_eval = backend_cpu_forward_eval,
    .infer = backend_cpu_infer,
    .logits = backend_cpu_logits,
    .close = backend_cpu_close,
    .vec_alloc = backend_cpu_vec_alloc,
    .vec_free = backend_cpu_vec_free,
    .vec_add = backend_cpu_vec_add,
    .vec_add_bf16 = backend_cpu_vec_add_bf16,
    .vec_to_bf16 = backend_cpu_vec_to_bf16,
    .vec_from_bf16 = backend_cpu_vec_from_bf16,
    .vec_zero = backend_cpu_vec_zero,
    .vec_copy = backend_cpu_vec_copy,
};

int backend_cpu_open(const cfg_t *cfg, backend **out) {
  *out = NULL;
  backend *b = util_calloc(1, sizeof *b, "backend");
  backend_cpu *c = b ? util_calloc(1, sizeof *c, "CPU backend") : NULL;
  if (!c) {
    free(b);
    return -1;
  }
  b->ops = &backend_cpu_ops;
  b->impl = c;
  b->device = "cpu";
  if (cfg_check_memory(cfg) || cpu_load(cfg, &c->mod)) {
    backend_cpu_close(b);
    return -1;
  }
  const gptc_model *m = c->m = c->mod.model;
  snprintf(b->about, sizeof b->about, "%s %s", c->mod.compiled ? "compiled" : "cached", c->mod.so_path);
  b->vocab_size = m->vocab_size, b->context_length = m->context_length;
  b->B = m->B, b->T = m->T, b->eval_B = m->eval_B, b->eval_T = m->eval_T;
  b->n_params = m->n_params, b->n_tensors = m->n_tensors, b->tensors = m->tensors;
  if (!(c->params = backend_cpu_buf(m->n_params, "parameters"))) {
    backend_cpu_close(b);
    return -1;
  }
  b->host_params = c->params;
  *out = b;
  return 0;
}

const cpu_module *backend_cpu_module(const backend *b) {
  return b && !strcmp(b->device, "cpu") ? &((const backend_cpu *)b->impl)->mod : NULL;
}

const float *backend_cpu_acts(const backend *b) {
  return b && !strcmp(b->device, "cpu") ? ((const backend_cpu *)b->impl)->acts : NULL;
}
