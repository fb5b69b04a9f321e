/* gen: the C side of the generator. Runs the gen/ Lua modules in the embedded
 * interpreter: shape derivation (gen/shapes.lua) and rendering of the
 * templates/ into sources. */
#ifndef GPTC_GEN_H
#define GPTC_GEN_H

#include <stddef.h>

#include "cfg.h"
#include "model.h"

/* The parameter tensors for a config (names, shapes, offsets), straight from
 * gen/shapes.lua without compiling anything. *tensors (and the names in it)
 * are malloc'ed; free with gen_tensors_free. */
int gen_tensors(const cfg_t *cfg, gptc_tensor **tensors, int *n, size_t *n_params);
void gen_tensors_free(gptc_tensor *tensors, int n);

/* The host's vector width in bytes (64 AVX-512, 32 AVX2, else 16), for the
 * generator's register blocking: generated C is tuned to the machine that
 * compiles it (-march=native), and every emitter (model, bench, export) must
 * be given the same width to produce the same kernels. */
int gen_vec_bytes(void);

struct lua_State;
/* Sets the fields of the options table on the top of L's stack. */
typedef void gen_opts_fn(struct lua_State *L, const void *arg);

/* Sets the host's fields of the options table on the top of L's stack:
 * real = "float", vec_bytes, threads (the processor count). */
void gen_host_opts(struct lua_State *L);

/* One generated source from gen/<module>.lua: header(cfg, hash, opts) ..
 * body(cfg, opts), hash = SHA-256 of the body (a header that takes no opts
 * ignores them). *src is malloc'ed. */
int gen_render(const cfg_t *cfg, const char *module, gen_opts_fn *fill, const void *arg, char **src, size_t *len,
               char hash[65]);

/* Renders the C source for `cfg` (device "cpu"). *src is malloc'ed;
 * hash (64 hex + NUL) is the content hash printed in its header. */
int gen_source(const cfg_t *cfg, const char *device, char **src, size_t *len, char hash[65]);

/* One compilation unit of a model's C source (gen/cpu/emit.lua M.split). */
typedef struct {
  char *name;  /* the kernel instance ("gemm_...", "attention_4x64", ...) or "model" */
  char *src;   /* a whole translation unit */
  size_t len;
} gen_unit;

/* gen_source for device "cpu", and the same source as separately
 * compiled units: every kernel instance, then the model's glue (with the
 * header) last. *units and what it holds are malloc'ed; gen_units_free. */
int gen_units(const cfg_t *cfg, char **src, size_t *len, char hash[65], gen_unit **units, int *n);
void gen_units_free(gen_unit *units, int n);
/* gen_units for any module with a split(cfg, opts): glue_header 1 puts the
 * header above the last unit (the CPU's glue), 0 leaves the units as the
 * module returned them (the CUDA kernels: runtime/cuda.c gen_cuda_units). */
int gen_units_render(const cfg_t *cfg, const char *module, gen_opts_fn *fill, const void *arg, int glue_header,
                     char **src, size_t *len, char hash[65], gen_unit **units, int *n);

/* ---- CUDA sources (gen/cuda/emit.lua; no GPU, no NVRTC needed) ---- */

/* Variants for tests: the kernels' other code paths on small shapes. */
typedef struct {
  int unfused; /* 1: GELU and the residual add as separate kernels */
  int tile;    /* 1..4: every GEMM uses block tile 128x128, 128x64, 64x64 or 32x32; 0: by shape */
  int whole;   /* backend: 1 compiles the whole source as one NVRTC program (the reference the per-kernel
                  programs are compared with); 0 one program per kernel unit (gen_cuda_units) */
} gen_cuda_opts;

/* The CUDA source for cfg (precision from cfg->precision); *src is
 * malloc'ed, hash is the content hash printed in its header. */
int gen_cuda_source(const cfg_t *cfg, const gen_cuda_opts *opts, char **src, size_t *len, char hash[65]);
/* gen_cuda_source, and the same kernels as separate NVRTC programs
 * (gen/cuda/emit.lua M.split): one unit per kernel instance, named by it,
 * and "optimizer" (AdamW, the gradient norm and the bf16 copy share the
 * tensor table: the one unit that depends on n_layers). A unit is
 * GPTC_SOURCE_HASH (of the rest) + the prelude + its kernels' text, exactly
 * as in the whole source; the launch plan stays in the whole source. */
int gen_cuda_units(const cfg_t *cfg, const gen_cuda_opts *opts, char **src, size_t *len, char hash[65],
                   gen_unit **units, int *n);

/* Renders the benchmark source for `cfg` (gen/bench.lua; the ABI is
 * templates/bench/abi.h): every kernel instance of the training step,
 * specialized and generic. *src is malloc'ed; hash as gen_source's. */
int gen_bench_source(const cfg_t *cfg, char **src, size_t *len, char hash[65]);

#endif
