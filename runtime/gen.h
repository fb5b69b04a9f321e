/* gen: the Lua bridge, the one module through which C calls the generator.
 * It owns the embedded interpreter (lx.c: the state, the loader of the
 * embedded gen/ and templates/, the limits, one-line errors) and offers the
 * rest of gptc typed entry points: configs (gen_cfg_*, gen_cfg.c), shapes
 * (gen_tensors, gen_n_params), CPU, CUDA and benchmark sources
 * (gen_source, gen_units, gen_cuda_*, gen_bench_source), gemm tuning
 * (gen_tune_*), the q8 layout and inference step (gen_q8_derive,
 * gen_infer_source) and the export templates' environment (gen_env_*,
 * gen_env.c). No file outside gen*.c, lx.c and lit.c includes lua.h; the
 * Lua-side declarations the bridge's files share (and tests use) are in
 * lx.h. Every entry returns -1 with util_err set to one line on failure. */
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

/* gen/shapes.lua's parameter counts: n_params (the flat buffer, padding
 * included) and n_params_real (without padding); either may be NULL. */
int gen_n_params(const cfg_t *cfg, size_t *n_params, size_t *n_params_real);

/* ---- configs (gen/config.lua; gen_cfg.c). cfg.h's loaders call these. ---- */

/* Runs config source `src` (`name` in messages) in a sandboxed state,
 * applies the overrides fields[i] = values[i] (`--set`, split by
 * cfg_set_split; values read as data, never run), validates and copies
 * the table into *cfg. src NULL only reads the overrides' values. */
int gen_cfg_load(const char *src, const char *name, const char *const *fields, const char *const *values, int n_sets,
                 cfg_t *cfg);
/* A checkpoint's stored config: a table literal (lit.c), validated. */
int gen_cfg_load_data(const char *src, const char *name, cfg_t *cfg);
/* cfg_field_json, cfg_check_memory, cfg_serialize, cfg_describe (cfg.h). */
int gen_cfg_field_json(const cfg_t *cfg, const char *field, char *out, size_t cap);
int gen_cfg_check_memory(const cfg_t *cfg);
char *gen_cfg_serialize(const cfg_t *cfg);
char *gen_cfg_describe(void);

/* `gptc gen`'s shapes.txt (gen/cpu/emit.lua's summary); caller frees. */
char *gen_summary(const cfg_t *cfg);

/* From now on the C sources (gen_source, gen_units) carry the step
 * profile's timing marks (on 1) or not (0, the default): `gptc bench
 * --profile`, `gptc gen --profile`; templates/cpu/model.c. */
void gen_set_profile(int on);

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

/* ---- gemm tuning (gen/tune.lua) ---- */

/* One GEMM instance of the training step: its kernel name, calls per step
 * and flops per call. */
typedef struct {
  char fn[96];
  int calls;
  double flops;
} gen_gemm;
/* The training step's GEMM instances; *list is malloc'ed. */
int gen_tune_gemms(const cfg_t *cfg, gen_gemm **list, int *n);
/* The candidates source (gptc tune) for the instances fns[0..n), each
 * searched from schedule bases[i] ("" = the heuristic's). */
int gen_tune_source(const cfg_t *cfg, const char *const *fns, const char *const *bases, int n, char **src, size_t *len,
                    char hash[65]);

/* ---- q8 weights and the inference step (gen/quant.lua, gen/cpu/emit.lua) ---- */

/* The q8 weight blob's layout: what quant.c packs, in bytes and floats. */
typedef struct {
  size_t dst, src, n; /* n floats from params + src (floats) copied to blob + dst (bytes): biases, norms */
} gen_q8_copy;
typedef struct {
  size_t src, K, N;   /* the float (K, N) matrix at params + src, element (k, n) at src + n * sn + k * sk */
  size_t sk, sn;
  size_t NB, NP;      /* blocks along K, panels along N */
  size_t s_off, q_off; /* the scales (NP, NB, panel) floats and the int8 values (NP, K, panel) in the blob */
} gen_q8_mat;
typedef struct {
  size_t bytes, panel, block, n_kv, n_scratch;
  int n_copies, n_mats;
  gen_q8_copy *copies; /* malloc'ed, with mats; gen_q8_layout_free */
  gen_q8_mat *mats;
} gen_q8_layout;
int gen_q8_derive(const cfg_t *cfg, gen_q8_layout *q);
void gen_q8_layout_free(gen_q8_layout *q);
/* The inference step as one program's unit (templates/export/model.c over
 * emit.infer_body) for weights `quant` ("f32", "q8"), vector width
 * vec_bytes, symbol suffix and compiler flags (NULL: none). */
int gen_infer_source(const cfg_t *cfg, const char *quant, int vec_bytes, const char *suffix, const char *flags,
                     char **src, size_t *len);

/* ---- the export templates' environment (templates/export/; gen_env.c) ---- */

/* One environment table the templates render with: env.cfg (the config
 * table) and env.S (gen/shapes.lua's derivation), then what the caller sets. */
typedef struct gen_env gen_env;
gen_env *gen_env_new(const cfg_t *cfg);
void gen_env_free(gen_env *e);
/* env[key] = v */
void gen_env_str(gen_env *e, const char *key, const char *v);
void gen_env_int(gen_env *e, const char *key, long long v);
void gen_env_bool(gen_env *e, const char *key, int v);
/* Appends an empty table to the list env[list] (created when missing) and
 * makes it the item gen_env_item_* set fields of, until the next append. */
void gen_env_append(gen_env *e, const char *list);
void gen_env_item_str(gen_env *e, const char *key, const char *v); /* v NULL: left out */
void gen_env_item_int(gen_env *e, const char *key, long long v);
/* The number of entries of the list env[list] (0 when missing). */
int gen_env_len(gen_env *e, const char *list);
/* Renders the template file `name` (e.g. "templates/export/main.c"). */
int gen_env_render(gen_env *e, const char *name, char **src, size_t *len);

#endif
