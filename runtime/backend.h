/* backend: where a model runs. The training loop, `gptc eval` and `gptc
 * sample` drive a model through this small vtable, so the same loop runs on
 * the CPU (backend_cpu.c: the generated C through gptc_model) and on a GPU
 * (backend_cuda.c: the generated CUDA through a launch plan).
 *
 * A backend owns the model's buffers (parameters, gradients, AdamW moments,
 * activations, KV cache) in its own memory; the host moves parameters and
 * moments in and out with upload/download (checkpoints are the same files
 * on every device). Every op returns 0, or -1 with util_err set. */
#ifndef GPTC_BACKEND_H
#define GPTC_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "cfg.h"
#include "model.h"

/* what to allocate (alloc): parameters always; the rest on request */
/* BACKEND_NO_MOMENTS, with BACKEND_TRAIN: no whole-model AdamW moments (ZeRO-1
 * keeps only a shard of them, dist.h; host_m and host_v stay NULL; CPU) */
enum { BACKEND_TRAIN = 1, BACKEND_EVAL = 2, BACKEND_INFER = 4, BACKEND_NO_MOMENTS = 8 };

typedef struct backend backend;

/* One optimizer step: n_micro micro-batches of (B, T) through forward and
 * backward, the global gradient norm, clipping, AdamW. */
typedef struct {
  const int32_t *inputs, *targets; /* n_micro consecutive (B, T) batches */
  int n_micro;
  uint64_t seed, offset; /* dropout key; micro-batch i uses counter offset + i */
  int dropout;           /* dropout on (the config's drop_rate > 0) */
  gptc_adamw_args adamw; /* grad_scale is not used: clipping derives it from the norm */
  double grad_clip;      /* clip to this global norm; 0 disables */
} backend_step;

typedef struct {
  int (*alloc)(backend *b, int what);
  /* params (n_params floats, the tensor table's layout) into the backend;
   * m and v (AdamW moments) too when non-NULL */
  int (*upload)(backend *b, const float *params, const float *m, const float *v);
  int (*download)(backend *b, float *params, float *m, float *v);
  /* forward at (B, T); *loss = mean loss over targets >= 0 (NaN on an id out of range) */
  int (*forward)(backend *b, const int32_t *inputs, const int32_t *targets, gptc_rng rng, float *loss);
  /* backward after forward with the same arguments: grads += loss_scale * d(mean loss)/d(params) */
  int (*backward)(backend *b, const int32_t *inputs, const int32_t *targets, gptc_rng rng, float loss_scale);
  int (*zero_grads)(backend *b);
  /* the accumulated gradients (n_params floats) */
  int (*download_grads)(backend *b, float *grads);
  int (*grad_sq_norm)(backend *b, double *out);
  int (*adamw)(backend *b, gptc_adamw_args a);
  /* ZeRO-1 (dist.h), CPU only (NULL elsewhere): AdamW on the elements [lo, hi)
   * with m, v: (hi - lo) their moments, bitwise adamw's update there */
  int (*adamw_range)(backend *b, gptc_adamw_args a, size_t lo, size_t hi, float *m, float *v);
  /* the whole step: zero grads, the micro-batches, norm, clipping, AdamW.
   * *loss is the sum over micro-batches of loss / n_micro, *norm the
   * gradient norm before clipping; when either is not finite the weights
   * are left as they were. */
  int (*train_step)(backend *b, const backend_step *s, double *loss, double *norm);
  /* forward at (eval_B, eval_T) without dropout */
  int (*forward_eval)(backend *b, const int32_t *inputs, const int32_t *targets, float *loss);
  /* KV-cache inference of one token at `pos`; writes the (V) logits */
  int (*infer)(backend *b, int token, int pos, float *logits);
  /* the (B, T, V) logits of the last forward (eval: (eval_B, eval_T, V) of forward_eval) */
  int (*logits)(backend *b, int eval, float *out);
  void (*close)(backend *b);
  /* ---- data-parallel (dist.c): vectors in the backend's own memory (host
   * memory on the CPU, device addresses on a GPU, never dereferenced by the
   * caller there), so the ordered reduction runs where the gradients are.
   * Every op is in stream order on a GPU: a transport that shares the
   * stream (backend.stream) sees their results. NULL: data-parallel
   * training cannot run on this device. */
  /* n zeroed floats (or bf16 halves, bytes = 2 n: `esize` 4 or 2) */
  void *(*vec_alloc)(backend *b, size_t n, size_t esize, const char *what);
  void (*vec_free)(backend *b, void *p);
  /* dst[i] += src[i] for i in [0, n) (one fp32 add each: the order of a sum
   * of several vectors is the order of the calls) */
  int (*vec_add)(backend *b, float *dst, const float *src, size_t n);
  /* dst[i] += float(src[i]): src (n) bf16 */
  int (*vec_add_bf16)(backend *b, float *dst, const uint16_t *src, size_t n);
  /* dst (n) bf16 = src rounded to nearest even (NaN stays NaN) */
  int (*vec_to_bf16)(backend *b, uint16_t *dst, const float *src, size_t n);
  /* dst (n) = float(src (n) bf16) */
  int (*vec_from_bf16)(backend *b, float *dst, const uint16_t *src, size_t n);
  int (*vec_zero)(backend *b, void *dst, size_t bytes);
  /* bytes from backend memory src, or from the host when `host`, to dst */
  int (*vec_copy)(backend *b, void *dst, const void *src, size_t bytes, int host);
} backend_ops;

struct backend {
  const backend_ops *ops;
  const char *device; /* "cpu" or "cuda" */
  char about[4600];   /* the kernels' origin, for the training banner */
  /* the model's shapes, from the generator */
  int vocab_size, context_length, B, T, eval_B, eval_T;
  size_t n_params;
  int n_tensors;
  const gptc_tensor *tensors;
  /* CPU: the backend's own buffers, usable in place (upload and download
   * of these very pointers copy nothing); NULL on a GPU */
  float *host_params, *host_m, *host_v;
  /* CPU: the gradient buffer (n_params) once BACKEND_TRAIN is allocated, for
   * dist.c's ordered reduction; NULL on a GPU */
  float *host_grads;
  /* the gradient buffer (n_params) in the backend's memory, for the vec ops
   * (the CPU: host_grads; CUDA: a device address) once BACKEND_TRAIN is allocated */
  float *grads;
  void *stream; /* CUDA: the training stream (a CUstream), for NCCL; NULL on the CPU */
  void *impl;
};

/* Opens a backend for cfg on `device`: "cpu", "cuda", or "auto" (CUDA when
 * a usable GPU is present, else the CPU after a one-line notice on stderr).
 * The registry (backend_reg.c): the one place that knows every backend;
 * each device's own calls are in backend_cpu.h and backend_cuda.h. */
int backend_open(const cfg_t *cfg, const char *device, backend **out);
void backend_close(backend *b);

/* ---- helpers for the backends (backend.c; they call nothing above them) ---- */

/* 1 when every input id is in [0, V) and every target < V (the kernels'
 * precondition; a bad batch gives a NaN loss, as on the CPU). */
int backend_ids_ok(const int32_t *inputs, const int32_t *targets, size_t n, int V);
/* The step through the single ops (the CPU's step; CUDA replays the same
 * sequence from a graph). */
int backend_step_generic(backend *b, const backend_step *s, double *loss, double *norm);

#endif
