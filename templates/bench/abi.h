/* bench ABI: what a generated benchmark source (gen/bench.lua) exports to
 * `gptc bench` (runtime/bench.c). This file is the one definition: the
 * runtime includes it and the generator pastes its text into the source.
 *
 * A benchmark source holds, for one config, every kernel instance the
 * training step runs twice: specialized (literal shapes, as the model runs
 * it) and generic (the same template rendered with the shapes as run-time
 * values and nothing unrolled), plus for each matmul the plain generic GEMM
 * of the product alone (no bias, no fused epilogue), the reference for the
 * library baseline (sgemm). */
#ifndef GPTC_BENCH_ABI_H
#define GPTC_BENCH_ABI_H

#include <stddef.h>

#define GPTC_BENCH_ABI_VERSION 1

/* how the harness fills a buffer before a run */
enum {
  GPTC_BENCH_RANDN = 0,    /* float, normal(0, 1) */
  GPTC_BENCH_POSITIVE = 1, /* float, uniform in [0.5, 1.5) (rstd, variances) */
  GPTC_BENCH_IDS = 2,      /* int32, uniform in [0, ids_below) */
  GPTC_BENCH_ZERO = 3      /* float, zeros */
};

typedef struct {
  const char *name; /* the kernel parameter it is passed as: "C", "A", "dinp", ... */
  size_t numel;     /* elements: floats, or int32 for GPTC_BENCH_IDS */
  int init;         /* GPTC_BENCH_* */
  int ids_below;    /* GPTC_BENCH_IDS only */
  int out;          /* 1 when the op writes it: compared between variants */
} gptc_bench_buf;

/* One variant of one op. bufs[i] points at the buffer op->bufs[i];
 * dims points at op->dims (only generic variants read it: the harness
 * hands the shapes over at run time, so no shape is a compile-time
 * constant there). */
typedef void (*gptc_bench_fn)(void *const *bufs, const int *dims);

typedef struct {
  const char *kernel; /* the specialized instance's name, e.g. gemm_4096x1536x384_nn_bias_gelu */
  const char *op;     /* embedding, layernorm, matmul, attention, gelu, residual, crossentropy, adamw */
  const char *pass;   /* forward, backward or update */
  const char *what;   /* one readable line: tensor, shapes, what is fused */
  int calls;          /* calls per training step */
  double flops;       /* per call, 2 per multiply-add */
  double bytes;       /* per call, the least bytes read plus written */
  int compute_bound;  /* 1: rated against the FMA peak, 0: against copy bandwidth */
  int n_bufs;
  const gptc_bench_buf *bufs;
  int n_dims;
  const int *dims;               /* the generic variant's run-time shapes */
  const char *const *dim_names;  /* their names, for readers */
  gptc_bench_fn specialized, generic;
  /* matmuls (gemm = 1): the library computes C (M, N) = op(A) . op(B), plus C
   * when accumulate, row-major with lda = ta ? M : K, ldb = tb ? K : N,
   * ldc = N, on the buffers a_buf, b_buf, c_buf; `plain` computes the same
   * with the generic GEMM, the reference it is checked against. */
  int gemm;
  int M, N, K, ta, tb, accumulate;
  int a_buf, b_buf, c_buf;
  gptc_bench_fn plain;
} gptc_bench_op;

typedef struct {
  int abi_version; /* GPTC_BENCH_ABI_VERSION */
  const char *config_name, *hash;
  int n_ops;
  const gptc_bench_op *ops;
} gptc_bench;

/* the one exported symbol of a benchmark source */
typedef const gptc_bench *(*gptc_bench_get_fn)(void);
#define GPTC_BENCH_SYMBOL "gptc_bench_get"

#endif
