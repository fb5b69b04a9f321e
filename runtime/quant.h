/* quant: int8 weights ("q8") for batch-1 inference, shared by `gptc export
 * --quant q8` and `gptc sample --quant q8` so both run the same numbers.
 *
 * A matrix W (K, N) of the mat-vecs (attention qkv and proj, MLP fc and
 * proj, the lm head) becomes int8 values with one float32 scale per block
 * of QUANT_BLOCK rows of a column (along K, the contraction): s = max|w| /
 * 127 rounded to float (nudged up until max|w| / s <= 127), q = w / s
 * rounded to nearest (ties away from zero), so |w - s q| <= s / 2 exactly.
 * Where the blocks sit is gen/quant.lua's layout (one place); the inference
 * code that reads them is templates/cpu/infer.c's gemvq_ (emit.infer_body
 * with opts.quant = "q8"). Embeddings, layernorms and biases stay float32. */
#ifndef GPTC_QUANT_H
#define GPTC_QUANT_H

#include <stddef.h>
#include <stdint.h>

#include "cfg.h"
#include "cpu.h"

enum { QUANT_F32 = 0, QUANT_Q8 = 1 };
#define QUANT_BLOCK 32 /* must equal gen/quant.lua's M.BLOCK (quant_q8_pack checks) */

/* "f32" or "q8" -> QUANT_*; -1 with util_err naming `opt` otherwise. */
int quant_parse(const char *opt, const char *s, int *quant);
const char *quant_name(int quant);

/* Quantizes the n (1..QUANT_BLOCK) finite values v[i * vs] into q[i * qs]
 * and returns their scale (0 for a block of zeros). */
float quant_q8_block(const float *v, size_t vs, int n, int8_t *q, size_t qs);

/* The q8 weight blob of cfg's model from its float32 parameters (the flat
 * layout of gen/shapes.lua): *blob (*bytes, 64-byte aligned, free()). */
int quant_q8_pack(const cfg_t *cfg, const float *params, unsigned char **blob, size_t *bytes);

/* The translation unit of the batch-1 inference step for cfg with `quant`,
 * `vec_bytes`-wide vectors: templates/export/model.c around
 * emit.infer_body, defining export_infer<suffix>; `flags` (NULL: none
 * named) goes into its header comment. The exported executable compiles one
 * per kernel variant (export_target.h) as model<suffix>.c; `gptc sample
 * --quant` JIT-compiles the same text with suffix "" and the JIT's width.
 * *src is malloc'ed. */
int quant_infer_unit(const cfg_t *cfg, int quant, int vec_bytes, const char *suffix, const char *flags, char **src,
                     size_t *len);

typedef void quant_infer_fn(const float *params, float *kv, float *scratch, int token, int pos, float *logits);

/* A q8 model in the JIT, for `gptc sample --quant q8`. */
typedef struct {
  unsigned char *blob; /* quant_q8_pack's weights */
  size_t bytes;
  float *kv, *scratch; /* the KV cache (L, 2, ctx, C) and the inference scratch */
  cpu_object obj;      /* the compiled quant_infer_unit */
  quant_infer_fn *infer;
} quant_model;

int quant_model_open(const cfg_t *cfg, const float *params, quant_model *m);
/* sample_infer_fn over a quant_model. */
int quant_model_infer(void *ctx, int token, int pos, float *logits);
void quant_model_close(quant_model *m);

#endif
