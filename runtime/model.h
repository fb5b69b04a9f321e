/* model: the ABI between the runtime and a generated model.
 *
 * The generator (gen/) derives every shape once and emits C that defines one
 * `gptc_model` (returned by `gptc_model_get`) whose tables and constants come
 * from that derivation: the runtime never recomputes a shape or an offset.
 * This text is the one copy of the ABI: gptc embeds this file and
 * templates/cpu/prelude.c pastes it into every generated CPU source (so
 * compiling one needs no gptc headers), after defining GPTC_REAL to its
 * element type `real`; abi_version guards the layout.
 *
 * Buffers are flat arrays of GPTC_REAL (float; double in a verification
 * build, tests/test_fd.c) owned by the runtime:
 *   params, grads, adam_m, adam_v : n_params floats, laid out by `tensors`
 *   acts      : n_acts floats, every activation the backward pass needs at (B, T)
 *   grad_acts : n_grad_acts floats, backward scratch at (B, T)
 *   eval_acts : n_eval_acts floats, activations at (eval_B, eval_T)
 *   kv        : n_kv floats, the KV cache (n_layers, 2, context_length, C)
 *   infer_scratch : n_infer_scratch floats
 * Token ids are int32; a target < 0 is ignored by the loss (padding rows).
 * Every reduction is split by data, never by thread, so results do not
 * depend on the number of OpenMP threads. */
#ifndef GPTC_MODEL_H
#define GPTC_MODEL_H

#include <stddef.h>
#include <stdint.h>

#define GPTC_ABI_VERSION 1

/* The buffers' element type: float unless the includer says otherwise (the
 * generated prelude defines it to its `real`). */
#ifndef GPTC_REAL
#define GPTC_REAL float
#endif

typedef struct {
  const char *name;  /* Hugging Face GPT-2 name, e.g. "h.0.attn.c_attn.weight" */
  int ndim;          /* 1 or 2 */
  int shape[2];      /* HF layout: Conv1D weights are [in, out], wte [V, C] */
  size_t offset;     /* floats from the start of the flat buffer */
  size_t numel;
  int decay;         /* AdamW weight decay applies (2-D weights, embeddings) */
  float init_std;    /* normal(0, init_std) at init; 0 means constant init_value */
  float init_value;
} gptc_tensor;

/* Dropout masks come from Philox4x32-10 keyed by `seed`, with a counter made
 * of (`offset`, dropout site, element index): reproducible and independent
 * of threads. The runtime sets offset = global micro-batch index. */
typedef struct {
  uint64_t seed;
  uint64_t offset;
  int train; /* 0: dropout off (evaluation) */
} gptc_rng;

typedef struct {
  float lr, beta1, beta2, eps, weight_decay;
  float grad_scale; /* grads are multiplied by this first (clipping) */
  int t;            /* 1-based step for bias correction */
} gptc_adamw_args;

typedef struct {
  int abi_version; /* GPTC_ABI_VERSION */
  const char *config_name, *gen_version, *hash;
  int vocab_size, emb_dim, n_heads, head_dim, n_layers, context_length;
  int qkv_bias, tie_embeddings;
  float drop_rate;
  int B, T;           /* training shape */
  int eval_B, eval_T; /* evaluation shape (eval_T = context_length) */
  size_t n_params;
  int n_tensors;
  const gptc_tensor *tensors;
  size_t n_acts, n_grad_acts, n_eval_acts, n_kv, n_infer_scratch;
  size_t logits_offset;      /* (B, T, V) logits inside acts after forward */
  size_t eval_logits_offset; /* (eval_B, eval_T, V) logits inside eval_acts */

  /* Forward at (B, T). Returns the mean cross-entropy over targets >= 0
   * (0 when targets is NULL or all are ignored). */
  GPTC_REAL (*forward)(const GPTC_REAL *params, GPTC_REAL *acts, const int32_t *inputs, const int32_t *targets,
                       gptc_rng rng);
  /* Backward at (B, T), after forward with the same arguments. ACCUMULATES
   * loss_scale * d(mean loss)/d(params) into grads (loss_scale = 1/grad_accum
   * for accumulation). May overwrite acts. */
  void (*backward)(const GPTC_REAL *params, GPTC_REAL *grads, GPTC_REAL *acts, GPTC_REAL *grad_acts,
                   const int32_t *inputs, const int32_t *targets, gptc_rng rng, float loss_scale);
  /* Forward at (eval_B, eval_T), no dropout; returns the mean loss. */
  GPTC_REAL (*forward_eval)(const GPTC_REAL *params, GPTC_REAL *eval_acts, const int32_t *inputs,
                            const int32_t *targets);
  /* Sum of squares of all grads (in double, fixed order). */
  double (*grad_sq_norm)(const GPTC_REAL *grads);
  /* One AdamW step over every tensor; decay only where tensors[i].decay. */
  void (*adamw)(GPTC_REAL *params, const GPTC_REAL *grads, GPTC_REAL *m, GPTC_REAL *v, gptc_adamw_args a);
  /* Batch-1 KV-cache inference: feeds `token` at position `pos`
   * (0 <= pos < context_length; positions < pos must already be cached) and
   * writes the (V) logits for the next token. */
  void (*infer)(const GPTC_REAL *params, GPTC_REAL *kv, GPTC_REAL *scratch, int token, int pos, GPTC_REAL *logits);
  /* adamw on the elements [lo, hi) only, with m and v holding just those
   * (m[i - lo]): a rank's shard under ZeRO-1, bitwise adamw's values there */
  void (*adamw_range)(GPTC_REAL *params, const GPTC_REAL *grads, GPTC_REAL *m, GPTC_REAL *v, gptc_adamw_args a,
                      size_t lo, size_t hi);
} gptc_model;

typedef const gptc_model *(*gptc_model_get_fn)(void);

#endif
