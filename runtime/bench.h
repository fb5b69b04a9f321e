/* bench: the harness behind `gptc bench` (cmd_bench.c).
 *
 * Three parts, each usable alone (tests/test_bench.c drives them on a
 * hand-written fixture, tests/bench_train.c uses the FMA peak):
 *   machine  the fp32 FMA peak and the copy bandwidth, measured here, and a
 *            description of the CPU, compiler and gptc (bench.c);
 *   ops      a benchmark source (gen/bench.lua, ABI templates/bench/abi.h)
 *            compiled like a model; every op's variants run on the same
 *            seeded inputs, are checked against the generic reference and
 *            only then timed; matmuls also against OpenBLAS (bench.c);
 *   step     whole training steps through a backend (bench_step.c);
 * and the report of all three: table, JSON, SVG (bench_report.c). */
#ifndef GPTC_BENCH_H
#define GPTC_BENCH_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "../templates/bench/abi.h"
#include "cfg.h"
#include "cpu.h"
#include "util.h"

/* ---- machine ------------------------------------------------------------ */

typedef struct {
  char cpu[256];           /* "model name" from /proc/cpuinfo */
  int logical_cpus, cores; /* online CPUs; distinct (package, core) pairs */
  int threads;             /* OpenMP threads the kernels run on */
  char isa[16];            /* widest vector ISA: avx512f, avx2 or sse */
  int fma_lanes;           /* floats per FMA in the peak loop */
  char cc[256], compiler[256]; /* $CC and its --version line */
  const char *flags;       /* the JIT's flags */
  double fma_gflops;       /* measured fp32 FMA peak, every thread at once */
  double copy_gbs;         /* measured copy bandwidth, read + write */
  /* measured bf16 peaks (bench_bf16.c), 0 where the CPU lacks the path and
   * then why in *_why: vdpbf16ps (AVX512-BF16) and AMX's tdpbf16ps */
  double bf16_dp_gflops, bf16_amx_gflops;
  char bf16_dp_why[160], bf16_amx_why[160];
} bench_machine;

/* Fills everything but the two measurements (threads: the current OpenMP
 * thread count). */
void bench_describe(bench_machine *m);
/* GFLOP/s of a register-resident FMA loop on every OpenMP thread (best of
 * seven), in the widest vector ISA the CPU has; *lanes gets its width. */
double bench_fma_peak(int *lanes);
/* GFLOP/s of fn(iters) run on every thread at once, best of seven runs;
 * fn returns a value that keeps its work alive (the peak loops) */
double bench_loop_gflops(float (*fn)(long), long iters, double flops_per_iter);
/* The bf16 peaks (GFLOP/s, every OpenMP thread) of the paths this CPU has
 * into m->bf16_*_gflops, why not into m->bf16_*_why for the others. */
void bench_bf16_peaks(bench_machine *m);
/* The machine line and, once measured, the peaks lines of bench_print. */
void bench_print_machine(FILE *f, const bench_machine *m);
/* GB/s (read + write) of copying `bytes` between two arrays, every OpenMP
 * thread a slice (best of five); -1 with util_err when out of memory. */
int bench_copy_bw(size_t bytes, double *gbs);

/* ---- statistics and timing ---------------------------------------------- */

typedef struct {
  int n;
  double median, min, max, p10, p90;
} bench_stats;

/* Order statistics of n samples (x is not changed; n = 0 gives zeros).
 * Percentiles interpolate linearly between order statistics. */
void bench_stats_of(const double *x, int n, bench_stats *s);

/* How many runs are timed: `warmup` untimed runs, then exactly `repeats`
 * when > 0, else at least min_runs until min_seconds of runs have passed,
 * at most max_runs. flush_bytes > 0: before each timed run (untimed) a
 * buffer that large is read and written through, so the run finds its
 * inputs in memory, not in the caches (bench_flush_bytes() sizes it). */
typedef struct {
  int warmup, repeats, min_runs, max_runs;
  double min_seconds;
  size_t flush_bytes;
} bench_timing;

#define BENCH_OP_TIMING {2, 0, 5, 200, 0.2, 0}
#define BENCH_STEP_TIMING {2, 0, 5, 100, 1.0, 0}

/* Twice the last-level cache (sysfs, else sysconf), within 64 MiB .. 1 GiB. */
size_t bench_flush_bytes(void);

/* Times k variants run(ctx, 0..k-1) round-robin per the policy (each gets
 * the same number of runs; min_seconds applies to each), calling
 * prepare(ctx, i) untimed before each run (NULL: nothing); seconds per run
 * of variant i into s[i]. -1 with util_err when out of memory. */
int bench_time(int k, void (*run)(void *, int), void (*prepare)(void *, int), void *ctx, const bench_timing *t,
               bench_stats *s);

/* ---- the library baseline: OpenBLAS, dlopen'ed so gptc starts without it */

typedef void (*bench_sgemm_fn)(int order, int ta, int tb, int M, int N, int K, float alpha, const float *A,
                               int lda, const float *B, int ldb, float beta, float *C, int ldc);
typedef struct {
  void *handle;
  bench_sgemm_fn sgemm;
  char name[64];      /* the library file, "libopenblas.so.0" */
  char corename[64];  /* openblas_get_corename(): the kernels it picked */
  char why[256];      /* why it is not there, when handle is NULL */
  int threads;
} bench_blas;

/* Loads OpenBLAS with `threads` threads. Returns 0, or -1 with b->why set
 * (not an error: the library column then reads n/a). */
int bench_blas_open(int threads, bench_blas *b);
void bench_blas_close(bench_blas *b);
/* The op's product C = op(A) . op(B) (+ C) through cblas_sgemm. */
void bench_blas_gemm(const bench_blas *b, const gptc_bench_op *op, void *const *bufs);

/* Uniform in [0, 1) from a splitmix64 stream: the benchmark's inputs are
 * reproducible from their seed. */
double bench_uniform(uint64_t *state);

/* ---- ops -------------------------------------------------------------------- */

/* Loads a compiled benchmark source: gen_bench_source + cpu_build (cached
 * under util_cache_dir()/bench/), checked for the ABI version and hash. */
int bench_load(const cfg_t *cfg, cpu_object *obj, const gptc_bench **out);
/* The same for a given source; hash NULL skips the hash check. */
int bench_open_source(const char *src, size_t len, const char *hash, cpu_object *obj, const gptc_bench **out);

enum { BENCH_SPEC, BENCH_GEN, BENCH_LIB, BENCH_NVAR }; /* variants */
enum { BENCH_OK, BENCH_MISMATCH, BENCH_NA };           /* their checks */
extern const char *const bench_var_names[BENCH_NVAR];  /* specialized, generic, library */

typedef struct {
  int status;    /* BENCH_OK (checked, then timed), BENCH_MISMATCH (not timed), BENCH_NA */
  double err;    /* max |out - ref| / max |ref| over the outputs (inf on NaN) */
  bench_stats t; /* seconds per call */
} bench_var;

typedef struct {
  const gptc_bench_op *op;
  bench_var v[BENCH_NVAR];
  float *plain_c; /* matmuls, between bench_op_run and bench_op_lib: plain's C */
} bench_op_result;

/* The largest relative error allowed between a variant and its reference. */
#define BENCH_TOLERANCE 1e-4

/* max |a - ref| / max |ref| (max |a - ref| when ref is all zeros); inf
 * when either holds a NaN or an infinity. */
double bench_rel_diff(const float *a, const float *ref, size_t n);

/* Runs one op's own kernels: buffers filled from `seed`, the generic
 * variant as the reference, the specialized one checked against it, both
 * timed (round-robin) when they match; for a matmul, plain's C is kept for
 * bench_op_lib. -1 with util_err when out of memory or the op's tables are
 * inconsistent (a mismatch is a result, not an error). */
int bench_op_run(const gptc_bench_op *op, uint64_t seed, const bench_timing *t, bench_op_result *r);
/* The library on a matmul after bench_op_run (same seed): checked on C
 * against plain, timed when it matches; n/a without a library. The two are
 * separate so that all library runs can come after all of gptc's: OpenMP's
 * and OpenBLAS's idle threads spin for a while after their last call and
 * would slow the other's runs if they alternated. */
int bench_op_lib(const gptc_bench_op *op, uint64_t seed, const bench_timing *t, const bench_blas *blas,
                 bench_op_result *r);
/* Frees what bench_op_run kept (plain's C) when bench_op_lib is not run. */
void bench_op_free(bench_op_result *r);

/* ---- races: the candidates of one kernel (gptc tune) -------------------------- */

/* k ops with one buffer table (ops[0]'s), e.g. the candidate schedules of
 * one GEMM instance (gen/tune.lua). Opening fills the buffers from `seed`,
 * runs ops[0]'s generic variant as the reference and each op's specialized
 * one: same[i] = 1 when its outputs equal the reference's bit for bit. */
typedef struct {
  const gptc_bench_op *const *ops;
  int k;
  int *same;
  void *bufs;
} bench_race;

int bench_race_open(bench_race *r, const gptc_bench_op *const *ops, int k, uint64_t seed);
/* Times the specialized variants of ops which[0..n) round-robin per t. */
int bench_race_time(bench_race *r, const int *which, int n, const bench_timing *t, bench_stats *st);
void bench_race_close(bench_race *r);

/* ---- the training step -------------------------------------------------------- */

typedef struct {
  int ran;
  char device[8];
  char about[256];              /* where the model came from */
  bench_stats t;                /* seconds per step */
  double tokens_per_step, flops_per_token, loss;
  size_t n_params;              /* real parameters (the tensor table) */
  size_t rss_bytes;             /* the process's RSS high-water after the steps */
  int have_model_bytes;         /* the model's accounting (CPU) */
  size_t params_bytes, grads_bytes, moments_bytes, acts_bytes;
  /* the step profile (profile on, CPU): per call site kind, per step */
  int n_prof;
  struct bench_prof_row {
    char pass[12];   /* forward, backward or update */
    char fn[116];    /* the kernel (or gptc_adamw, gptc_grad_sq_norm) */
    double seconds, calls;
  } *prof;           /* malloc'ed: bench_step_free */
  double prof_step_s; /* the profiled steps' mean wall time */
  double prof_rest_s; /* of it, the time outside the marks */
} bench_step_result;

/* Opens a backend for cfg on `device` (cpu or cuda), fills the parameters
 * and random token batches from `seed` and times whole training steps
 * (zero grads, forward and backward per micro-batch, norm, clipping, AdamW). */
int bench_step(const cfg_t *cfg, const char *device, uint64_t seed, const bench_timing *t, bench_step_result *r);
/* With profile set (device cpu), the same steps run a source with timing
 * marks between its kernel calls (gen_set_profile) and r->prof gets, per
 * step, the time between each mark and the one before it by call site
 * kind: where a real step's time goes, kernels at the temperature the step
 * leaves their data. The timed steps' mean wall time is prof_step_s; what
 * the marks do not cover (zeroing gradients, the runtime between passes)
 * is its remainder. */
int bench_step_profiled(const cfg_t *cfg, const char *device, uint64_t seed, const bench_timing *t, int profile,
                        bench_step_result *r);
void bench_step_free(bench_step_result *r);

/* ---- the report ------------------------------------------------------------------ */

typedef struct {
  const cfg_t *cfg;
  const char *hash;       /* the benchmark source's content hash ("" without ops) */
  bench_machine machine;
  const bench_blas *blas; /* NULL: not tried */
  bench_timing op_timing, step_timing;
  uint64_t seed;
  int n_ops;              /* 0 when the per-op part did not run */
  bench_op_result *ops;
  bench_step_result step;
  const char *note;       /* one line printed under the table, or NULL */
} bench_report;

/* GFLOP/s (compute-bound ops) or GB/s of a variant and its fraction of the
 * machine's peak (FMA or copy); 0 when the variant was not timed. The
 * library's rate counts only its product (2 M N K). */
void bench_rate(const bench_report *r, const bench_op_result *o, int var, double *rate, double *frac);
/* Mismatched variants over every op. */
int bench_mismatches(const bench_report *r);

void bench_print(FILE *f, const bench_report *r);
int bench_json(const bench_report *r, util_buf *out);
int bench_svg(const bench_report *r, util_buf *out);

#endif
