/* cuda: the CUDA side of gptc. Compiles a config's CUDA source (made by
 * gen.c's gen_cuda_source from gen/cuda/emit.lua) in-process with NVRTC
 * for the GPU's compute capability, one program per kernel (each CUBIN cached by content hash under
 * util_cache_dir()/cuda/, the missing ones compiled in parallel; docs/startup.md), loads them
 * through the CUDA driver API (libcuda.so.1, dlopen'ed at run time: gptc
 * starts and runs on the CPU without a driver), and parses the launch plan
 * at the end of the source. The backend that runs the plan is
 * runtime/backend_cuda.c.
 *
 * Built without NVRTC (GPTC_HAVE_NVRTC undefined), generation (gen.c) still
 * works and everything here fails with "built without CUDA support". */
#ifndef GPTC_CUDA_H
#define GPTC_CUDA_H

#include <stddef.h>
#include <stdint.h>

#include "cfg.h"
#include "gen.h"

/* ---- the ABI of the generated kernels (templates/cuda/prelude.cu; the
 * module's gptc_abi global is checked against these at load) ---- */

#define CUDA_ABI 1

/* One micro-batch's arguments and results. */
typedef struct {
  uint64_t seed, offset; /* dropout: Philox key and micro-batch counter */
  float loss_scale;      /* backward: grads += loss_scale * d(mean loss)/d(params) */
  int train;             /* dropout on */
  float loss;            /* out: mean loss over targets >= 0 */
  int n_valid;           /* out: targets >= 0 */
  int n_seg;             /* distinct input tokens (embedding backward) */
  int pad;
} cuda_micro;

/* Optimizer and inference control. */
typedef struct {
  double sumsq;     /* out: sum of squares of every gradient */
  double grad_clip; /* 0 disables clipping */
  float step, bc2_sqrt, b1c, b2, b2c, keep, eps; /* AdamW constants, as the CPU computes them */
  int lerp_hi;
  float fixed_scale; /* the grad_scale of a lone AdamW step */
  int use_fixed;
  float grad_scale; /* out: from the norm and grad_clip */
  int skip;         /* out: the step leaves the weights alone (non-finite loss or norm) */
  int n_micro;
  int token, pos; /* inference */
  int pad;
} cuda_ctl;

_Static_assert(sizeof(cuda_micro) == 40, "cuda_micro must match gptc_micro in templates/cuda/prelude.cu");
_Static_assert(sizeof(cuda_ctl) == 80, "cuda_ctl must match gptc_ctl in templates/cuda/prelude.cu");

/* ---- the launch plan (cuda_plan.c) ---- */

enum {
  CUDA_BUF_PARAMS, CUDA_BUF_PARAMS16, CUDA_BUF_GRADS, CUDA_BUF_ADAM_M, CUDA_BUF_ADAM_V, CUDA_BUF_ACTS,
  CUDA_BUF_GRAD_ACTS, CUDA_BUF_SCRATCH, CUDA_BUF_EVAL_ACTS, CUDA_BUF_KV, CUDA_BUF_INFER, CUDA_BUF_IO,
  CUDA_BUF_MICRO, CUDA_BUF_CTL, CUDA_N_BUFS,
  CUDA_ARG_INT = -1
};

#define CUDA_MAX_ARGS 12

typedef struct {
  int buf;     /* CUDA_BUF_* or CUDA_ARG_INT */
  int64_t off; /* elements of that buffer, or the int's value */
} cuda_arg;

typedef struct {
  int kernel; /* index into cuda_plan.kernels */
  unsigned grid[3], block[3];
  int nargs;
  cuda_arg args[CUDA_MAX_ARGS];
} cuda_call;

enum { CUDA_PROG_TRAIN_FWD, CUDA_PROG_TRAIN_BWD, CUDA_PROG_EVAL_FWD, CUDA_PROG_GRAD_NORM, CUDA_PROG_ADAMW,
       CUDA_PROG_TO_BF16, CUDA_PROG_INFER, CUDA_N_PROGS };

typedef struct {
  char name[96];
  int nparams;     /* from its signature in the source */
  int max_threads; /* its __launch_bounds__ (1024 without) */
} cuda_kernel;

typedef struct {
  int V, ctx, B, T, eval_B, eval_T, bf16; /* @model: what the backend sizes and checks by */
  size_t n_params;
  size_t count[CUDA_N_BUFS]; /* elements of each buffer (io: int32 per slot; micro, ctl: structs) */
  size_t io_slot, io_inputs, io_targets, io_order, io_seg_start, io_seg_tok;
  size_t logits_train, logits_eval, logits_infer;
  int n_kernels;
  cuda_kernel *kernels;
  int n_launches[CUDA_N_PROGS];
  cuda_call *progs[CUDA_N_PROGS];
  /* training activations by name (layer l of a per-layer buffer at offset + l * stride) */
  int n_acts;
  struct cuda_act {
    char name[32];
    size_t offset, stride, numel;
    int layers;
  } *acts;
} cuda_plan;

/* Parses and checks the plan in `src`: every kernel launched is defined in
 * the source with as many parameters as the launch passes, every buffer
 * offset is inside its buffer, block sizes are within the hardware's. */
int cuda_plan_parse(const char *src, size_t len, cuda_plan *plan);
void cuda_plan_free(cuda_plan *plan);
const char *cuda_buf_name(int buf);
const char *cuda_prog_name(int prog);

/* ---- NVRTC (cuda_nvrtc.c) ---- */

/* 1 when built with NVRTC. */
int cuda_have_nvrtc(void);
/* Compiles `src` (named `path` in messages: NVRTC prints "path(line): ...")
 * for `arch` ("sm_90"): CUBIN when want_ptx is 0, else PTX. *log gets the
 * compiler log (warnings) when log is non-NULL; on failure the log is also
 * printed to stderr. Caller frees *bin and *log. */
int cuda_nvrtc_compile(const char *src, const char *path, const char *arch, int want_ptx, char **bin, size_t *bin_len,
                       char **log);
/* For the kernel cache (cuda.c): cuda_nvrtc_compile without util_err (the
 * message goes to `why`), safe from several threads at once; the target
 * for a GPU of compute capability cc (its own "sm_NN" CUBIN, or *ptx 1 and
 * "compute_NN" PTX of the newest older architecture NVRTC knows); NVRTC's
 * version, for the cache key. */
int cuda_nvrtc_run(const char *src, const char *path, const char *arch, int want_ptx, char **bin, size_t *bin_len,
                   char **log, char *why, size_t why_n);
int cuda_nvrtc_target(int cc, char *arch, size_t n, int *ptx);
void cuda_nvrtc_version(char *out, size_t n);

/* ---- the data-parallel kernels (dist.h's sums on a GPU) ---- */

/* gptc_dist_add (dst += src), gptc_dist_add_bf16 (dst += float(src bf16)),
 * gptc_dist_to_bf16 (round to nearest even), gptc_dist_from_bf16; each
 * (dst, src, int n), one thread per element, blocks of 256. */
#define CUDA_DIST_KERNELS 4
extern const char *const cuda_dist_kernels[CUDA_DIST_KERNELS];
/* Appends their program (unit "dist", with its content hash) to the units
 * of gen_cuda_units: a run, `gptc gen --compile` and --explain see the same list. */
int cuda_dist_unit(gen_unit **units, int *n);

/* ---- the driver ---- */

/* 0 when a CUDA GPU this backend can use is present (the driver loads,
 * initializes and reports a device of compute capability 8.0 or newer);
 * else -1 with the reason in util_err. $GPTC_LIBCUDA names the driver
 * library instead of libcuda.so.1. */
int cuda_probe(void);

/* ---- a GPU with a loaded module ---- */

typedef uint64_t cuda_ptr; /* device address */
typedef struct cuda_dev cuda_dev;

/* Compiles `src` into the kernel cache for a GPU of compute capability
 * `cc` (e.g. 90) without one present, so that a later run on such a GPU
 * loads it without compiling; *compiled is 0 when it was there already.
 * path gets the cache entry's file. */
int cuda_precompile(const char *src, size_t len, int cc, char *path, size_t path_n, int *compiled);
/* cuda_precompile for the units of gen_cuda_units: the missing or damaged
 * ones compiled in parallel; *compiled counts them; paths[i] gets unit i's
 * cache entry and fresh[i] 1 when it was compiled (both n long). */
int cuda_precompile_units(const gen_unit *units, int n, int cc, int *compiled, char (*paths)[4200], int *fresh);
/* One unit for `gptc gen --explain --device cuda`. */
typedef struct {
  char name[96];
  char key[65];  /* its cache entry: util_cache_dir()/cuda/KEY.cubin (or .ptx) */
  char arch[32]; /* the NVRTC target */
  int cached;    /* 1 when the entry is there and intact */
} cuda_unit_info;
/* The units of cfg's CUDA source for compute capability cc (0: GPU 0's),
 * each with its key and whether it is cached; compiles and writes nothing. */
int cuda_explain(const cfg_t *cfg, int cc, cuda_unit_info **units, int *n);
/* Opens the GPU (0, or cuda_use_device's; primary context, one stream), then compiles `src` with
 * NVRTC for its architecture or loads the cached module, checks that the
 * module is the source with content hash `hash` and this ABI, and resolves
 * every kernel of `plan`. */
int cuda_dev_open(const char *src, size_t len, const char *hash, const cuda_plan *plan, cuda_dev **out);
/* cuda_dev_open for the units of gen_cuda_units: one module per unit
 * (cached ones loaded, the rest compiled in parallel), each plan kernel
 * looked up in the module of the unit that defines it. */
int cuda_dev_open_units(const gen_unit *units, int n, const cuda_plan *plan, cuda_dev **out);
void cuda_dev_close(cuda_dev *d);
/* "NVIDIA H100 80GB HBM3, sm_90, compiled /cache/cuda/<key>.cubin" */
const char *cuda_dev_about(const cuda_dev *d);

/* Device memory; an out-of-memory error reports the request against the free memory. */
int cuda_alloc(cuda_dev *d, size_t bytes, const char *what, cuda_ptr *p);
void cuda_free(cuda_dev *d, cuda_ptr p);
/* Stream-ordered copies and fills; `src` may be reused on return. */
int cuda_upload(cuda_dev *d, cuda_ptr dst, const void *src, size_t bytes);
int cuda_zero(cuda_dev *d, cuda_ptr p, size_t bytes);
/* device to device, stream-ordered */
int cuda_copy(cuda_dev *d, cuda_ptr dst, cuda_ptr src, size_t bytes);
/* The stream every launch and copy of d runs on (a CUstream: NCCL's too). */
void *cuda_dev_stream(const cuda_dev *d);
/* The GPU the next cuda_dev_open* opens (default 0): one rank per GPU
 * under a launcher picks its local rank (dist.h). */
void cuda_use_device(int ordinal);
/* Waits for the stream, then copies to the host. */
int cuda_download(cuda_dev *d, void *dst, cuda_ptr src, size_t bytes);
int cuda_sync(cuda_dev *d);
/* Launches plan kernel `kernel` on the stream; params[i] points at argument i. */
int cuda_launch(cuda_dev *d, int kernel, const unsigned grid[3], const unsigned block[3], void **params);

/* CUDA graphs: the launches between begin and end are captured (not run);
 * the instantiated graph then runs them all with one call. */
int cuda_graph_begin(cuda_dev *d);
int cuda_graph_end(cuda_dev *d, void **exec);
int cuda_graph_launch(cuda_dev *d, void *exec);
void cuda_graph_free(cuda_dev *d, void *exec);

#endif
