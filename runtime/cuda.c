/* cuda: see cuda.h. The driver API loaded with dlopen, the kernel cache
 * (keys from cuda_nvrtc.c's target and version) and module loading; the
 * launch plan is cuda_plan.c, NVRTC cuda_nvrtc.c. */
#include "cuda.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gen.h"
#include "jit.h"
#include "util.h"

/* The hash a unit's module must carry (its GPTC_SOURCE_HASH line). */
static int cuda_unit_hash(const char *src, char hash[65]) {
  const char *h = strstr(src, "#define GPTC_SOURCE_HASH \"");
  if (!h || strlen(h) < 26 + 64) return util_err("CUDA source: no GPTC_SOURCE_HASH");
  memcpy(hash, h + 26, 64);
  hash[64] = 0;
  return 0;
}

/* ---- the data-parallel kernels (cuda.h) ----------------------------------------------------
 * dist.c's ordered sums on a GPU: one thread per element, so each element's
 * sum is the same chain of fp32 adds in the same order as the CPU's loops.
 * Not generated: they do not depend on the model, so every model shares one
 * cached program. The kernels index with int: the caller launches chunks. */
const char *const cuda_dist_kernels[CUDA_DIST_KERNELS] = {"gptc_dist_add", "gptc_dist_add_bf16", "gptc_dist_to_bf16",
                                                          "gptc_dist_from_bf16"};

static const char cuda_dist_src[] =
    "typedef unsigned short bf16; /* raw bfloat16 bits */\n"
    "extern \"C\" __device__ const unsigned gptc_abi[4] = {%d, %zu, %zu, 0};\n"
    "extern \"C\" __device__ const char gptc_source_hash[65] = GPTC_SOURCE_HASH;\n"
    "/* dst (n) += src (n) */\n"
    "extern \"C\" __global__ void __launch_bounds__(256) gptc_dist_add(float *__restrict__ dst, const float *__restrict__ src, int n) {\n"
    "  const int i = (int)(blockIdx.x * 256 + threadIdx.x);\n"
    "  if (i < n) dst[i] += src[i];\n"
    "}\n"
    "/* dst (n) += float(src (n) bf16) */\n"
    "extern \"C\" __global__ void __launch_bounds__(256) gptc_dist_add_bf16(float *__restrict__ dst, const bf16 *__restrict__ src, int n) {\n"
    "  const int i = (int)(blockIdx.x * 256 + threadIdx.x);\n"
    "  if (i < n) dst[i] += __uint_as_float((unsigned)src[i] << 16);\n"
    "}\n"
    "/* dst (n) bf16 = src (n) rounded to nearest even; a NaN stays a quiet NaN (backend_cpu.c's rule) */\n"
    "extern \"C\" __global__ void __launch_bounds__(256) gptc_dist_to_bf16(bf16 *__restrict__ dst, const float *__restrict__ src, int n) {\n"
    "  const int i = (int)(blockIdx.x * 256 + threadIdx.x);\n"
    "  if (i >= n) return;\n"
    "  const unsigned u = __float_as_uint(src[i]);\n"
    "  dst[i] = (u & 0x7fffffffu) > 0x7f800000u ? (bf16)(u >> 16 | 0x40) : (bf16)((u + 0x7fffu + (u >> 16 & 1)) >> 16);\n"
    "}\n"
    "/* dst (n) = float(src (n) bf16) */\n"
    "extern \"C\" __global__ void __launch_bounds__(256) gptc_dist_from_bf16(float *__restrict__ dst, const bf16 *__restrict__ src, int n) {\n"
    "  const int i = (int)(blockIdx.x * 256 + threadIdx.x);\n"
    "  if (i < n) dst[i] = __uint_as_float((unsigned)src[i] << 16);\n"
    "}\n";

int cuda_dist_unit(gen_unit **units, int *n) {
  char body[sizeof cuda_dist_src + 64], h[65];
  int bl = snprintf(body, sizeof body, cuda_dist_src, CUDA_ABI, sizeof(cuda_micro), sizeof(cuda_ctl));
  util_sha256_hex(body, (size_t)bl, h);
  size_t len = (size_t)bl + 200;
  char *src = util_malloc(len, "CUDA data-parallel kernels"), *name = util_strdup("dist");
  gen_unit *u = src && name ? util_realloc(*units, (size_t)(*n + 1) * sizeof *u, "CUDA kernel units") : NULL;
  if (!u) {
    free(src), free(name);
    return -1;
  }
  *units = u;
  /* the header gen_cuda_units gives every unit: its own content hash */
  size_t sl = (size_t)snprintf(src, len, "/* gptc CUDA kernel unit dist (data-parallel sums, runtime/cuda.c) */\n"
                                         "#define GPTC_SOURCE_HASH \"%s\"\n%s", h, body);
  u[(*n)++] = (gen_unit){name, src, sl};
  return 0;
}

/* ---- the driver API, dlopen'ed ------------------------------------------------------------
 * The driver's types, declared here: handles are opaque pointers, devices
 * and results ints, device addresses 64-bit. The entries are the ABI-stable
 * symbols (the _v2 ones where the header maps a name onto them). */
typedef int cu_result;
typedef void *cu_handle;

#define CUDA_DRIVER_FNS(X)                                                                                      \
  X(cuGetErrorName, "cuGetErrorName", (cu_result, const char **))                                               \
  X(cuGetErrorString, "cuGetErrorString", (cu_result, const char **))                                           \
  X(cuInit, "cuInit", (unsigned))                                                                                \
  X(cuDriverGetVersion, "cuDriverGetVersion", (int *))                                                          \
  X(cuDeviceGetCount, "cuDeviceGetCount", (int *))                                                              \
  X(cuDeviceGet, "cuDeviceGet", (int *, int))                                                                   \
  X(cuDeviceGetName, "cuDeviceGetName", (char *, int, int))                                                     \
  X(cuDeviceGetAttribute, "cuDeviceGetAttribute", (int *, int, int))                                            \
  X(cuDevicePrimaryCtxRetain, "cuDevicePrimaryCtxRetain", (cu_handle *, int))                                   \
  X(cuDevicePrimaryCtxRelease, "cuDevicePrimaryCtxRelease_v2", (int))                                          \
  X(cuCtxSetCurrent, "cuCtxSetCurrent", (cu_handle))                                                            \
  X(cuMemGetInfo, "cuMemGetInfo_v2", (size_t *, size_t *))                                                      \
  X(cuMemAlloc, "cuMemAlloc_v2", (cuda_ptr *, size_t))                                                          \
  X(cuMemFree, "cuMemFree_v2", (cuda_ptr))                                                                      \
  X(cuMemcpyHtoDAsync, "cuMemcpyHtoDAsync_v2", (cuda_ptr, const void *, size_t, cu_handle))                    \
  X(cuMemcpyDtoHAsync, "cuMemcpyDtoHAsync_v2", (void *, cuda_ptr, size_t, cu_handle))                          \
  X(cuMemsetD8Async, "cuMemsetD8Async", (cuda_ptr, unsigned char, size_t, cu_handle))                           \
  X(cuMemcpyDtoDAsync, "cuMemcpyDtoDAsync_v2", (cuda_ptr, cuda_ptr, size_t, cu_handle))                         \
  X(cuModuleLoadData, "cuModuleLoadData", (cu_handle *, const void *))                                          \
  X(cuModuleUnload, "cuModuleUnload", (cu_handle))                                                              \
  X(cuModuleGetFunction, "cuModuleGetFunction", (cu_handle *, cu_handle, const char *))                         \
  X(cuModuleGetGlobal, "cuModuleGetGlobal_v2", (cuda_ptr *, size_t *, cu_handle, const char *))                 \
  X(cuLaunchKernel, "cuLaunchKernel",                                                                            \
    (cu_handle, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, cu_handle, void **, void **)) \
  X(cuStreamCreate, "cuStreamCreate", (cu_handle *, unsigned))                                                  \
  X(cuStreamDestroy, "cuStreamDestroy_v2", (cu_handle))                                                         \
  X(cuStreamSynchronize, "cuStreamSynchronize", (cu_handle))                                                    \
  X(cuStreamBeginCapture, "cuStreamBeginCapture_v2", (cu_handle, int))                                          \
  X(cuStreamEndCapture, "cuStreamEndCapture", (cu_handle, cu_handle *))                                         \
  X(cuGraphInstantiateWithFlags, "cuGraphInstantiateWithFlags", (cu_handle *, cu_handle, unsigned long long))   \
  X(cuGraphLaunch, "cuGraphLaunch", (cu_handle, cu_handle))                                                     \
  X(cuGraphExecDestroy, "cuGraphExecDestroy", (cu_handle))                                                      \
  X(cuGraphDestroy, "cuGraphDestroy", (cu_handle))

enum {
  CU_SUCCESS = 0,
  CU_ERROR_OUT_OF_MEMORY = 2,
  CU_ATTR_SM_COUNT = 16,
  CU_ATTR_CC_MAJOR = 75,
  CU_ATTR_CC_MINOR = 76,
  CU_STREAM_NON_BLOCKING = 1,
  CU_CAPTURE_THREAD_LOCAL = 1,
};

static struct {
#define CUDA_FIELD(f, sym, args) cu_result(*f) args;
  CUDA_DRIVER_FNS(CUDA_FIELD)
#undef CUDA_FIELD
  /* cuFuncGetParamInfo (CUDA 12.4+): cross-checks the plan's argument
   * counts against the compiled kernels; skipped when absent */
  cu_result (*cuFuncGetParamInfo)(cu_handle, size_t, size_t *, size_t *);
  void *lib;
  int state; /* 0 untried, 1 ready, -1 failed (reason in cuda_drv_reason) */
} cuda_drv;
static char cuda_drv_reason[1024];

static int cuda_fail(cu_result r, const char *call) {
  const char *name = NULL, *str = NULL;
  if (cuda_drv.cuGetErrorName) cuda_drv.cuGetErrorName(r, &name);
  if (cuda_drv.cuGetErrorString) cuda_drv.cuGetErrorString(r, &str);
  return util_err("CUDA driver: %s failed: %s (%s)", call, name ? name : "unknown error", str ? str : "no description");
}

/* `call` (a driver call expression) checked: -1 with util_err naming it */
#define CU_CHECK(call, what) ((r = (call)) == CU_SUCCESS ? 0 : cuda_fail(r, what))

/* Loads and initializes the driver once; the outcome is remembered. */
static int cuda_drv_load(void) {
  if (cuda_drv.state) {
    if (cuda_drv.state < 0) return util_err("%s", cuda_drv_reason);
    return 0;
  }
  cuda_drv.state = -1;
  const char *path = getenv("GPTC_LIBCUDA");
  if (!path || !*path) path = "libcuda.so.1";
  cuda_drv.lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (!cuda_drv.lib) {
    const char *e = dlerror();
    snprintf(cuda_drv_reason, sizeof cuda_drv_reason, "cannot load the CUDA driver %s (%s)", path, e ? e : "dlopen failed");
    return util_err("%s", cuda_drv_reason);
  }
#define CUDA_LOAD(f, sym, args)                                                                  \
  if (!(cuda_drv.f = (__typeof__(cuda_drv.f))(uintptr_t)dlsym(cuda_drv.lib, sym))) {             \
    snprintf(cuda_drv_reason, sizeof cuda_drv_reason, "the CUDA driver %s has no %s (too old)", path, sym); \
    return util_err("%s", cuda_drv_reason);                                                      \
  }
  CUDA_DRIVER_FNS(CUDA_LOAD)
#undef CUDA_LOAD
  cuda_drv.cuFuncGetParamInfo = (__typeof__(cuda_drv.cuFuncGetParamInfo))(uintptr_t)dlsym(cuda_drv.lib, "cuFuncGetParamInfo");
  cu_result r = cuda_drv.cuInit(0);
  if (r != CU_SUCCESS) {
    cuda_fail(r, "cuInit");
    snprintf(cuda_drv_reason, sizeof cuda_drv_reason, "%s", util_errmsg());
    return -1;
  }
  cuda_drv.state = 1;
  return 0;
}

/* the GPU cuda_dev_start opens (cuda_use_device) */
static int cuda_ordinal;

void cuda_use_device(int ordinal) { cuda_ordinal = ordinal; }

/* GPU cuda_ordinal and its compute capability (major * 10 + minor). */
static int cuda_device(int *dev, int *cc, char *name, size_t name_len) {
  cu_result r;
  int count = 0, major = 0, minor = 0;
  if (CU_CHECK(cuda_drv.cuDeviceGetCount(&count), "cuDeviceGetCount")) return -1;
  if (count < 1) return util_err("the CUDA driver reports no GPU");
  if (cuda_ordinal >= count)
    return util_err("GPU %d: the CUDA driver reports %d GPU%s on this machine (one rank per GPU: start at most %d "
                    "ranks per machine)", cuda_ordinal, count, count == 1 ? "" : "s", count);
  if (CU_CHECK(cuda_drv.cuDeviceGet(dev, cuda_ordinal), "cuDeviceGet") ||
      CU_CHECK(cuda_drv.cuDeviceGetAttribute(&major, CU_ATTR_CC_MAJOR, *dev), "cuDeviceGetAttribute") ||
      CU_CHECK(cuda_drv.cuDeviceGetAttribute(&minor, CU_ATTR_CC_MINOR, *dev), "cuDeviceGetAttribute") ||
      CU_CHECK(cuda_drv.cuDeviceGetName(name, (int)name_len, *dev), "cuDeviceGetName"))
    return -1;
  *cc = 10 * major + minor;
  if (*cc < 80)
    return util_err("GPU %d (%s) has compute capability %d.%d; the CUDA backend needs 8.0 or newer (TF32 and bf16 "
                    "mma.sync)", cuda_ordinal, name, major, minor);
  return 0;
}

int cuda_probe(void) {
  if (!cuda_have_nvrtc())
    return util_err("this gptc was built without CUDA support (NVRTC was not found at build time)");
  if (cuda_drv_load()) return -1;
  int dev, cc;
  char name[256];
  return cuda_device(&dev, &cc, name, sizeof name);
}

/* ---- the device and its module ------------------------------------------------------------ */

struct cuda_dev {
  int dev, cc;
  cu_handle ctx, stream;
  cu_handle *modules; /* one per NVRTC program: the whole model, or each kernel unit */
  int n_modules;
  cu_handle *fns; /* one per plan kernel, each from the module that defines it */
  int n_fns;
  char about[4400];
};

const char *cuda_dev_about(const cuda_dev *d) { return d->about; }

/* Reads __device__ global `name` of module `mod` (exactly `size` bytes). */
static int cuda_read_global(cuda_dev *d, cu_handle mod, const char *name, void *out, size_t size) {
  cu_result r;
  cuda_ptr p;
  size_t got = 0;
  if (CU_CHECK(cuda_drv.cuModuleGetGlobal(&p, &got, mod, name), "cuModuleGetGlobal")) return -1;
  if (got != size) return util_err("CUDA module: %s is %zu bytes, expected %zu", name, got, size);
  return cuda_download(d, out, p, size);
}

/* Loads a module image into *mod and checks that it is the expected
 * source and ABI; -1 (nothing loaded) otherwise. */
static int cuda_module_load(cuda_dev *d, cu_handle *mod, const void *image, const char *what, const char *hash) {
  cu_result r;
  if (CU_CHECK(cuda_drv.cuModuleLoadData(mod, image), "cuModuleLoadData")) {
    *mod = NULL;
    return util_err("%s: %s", what, util_errmsg());
  }
  char h[65] = {0};
  unsigned abi[4] = {0};
  int rc = cuda_read_global(d, *mod, "gptc_source_hash", h, sizeof h);
  if (!rc) rc = cuda_read_global(d, *mod, "gptc_abi", abi, sizeof abi);
  if (!rc && strncmp(h, hash, 64)) rc = util_err("%s: content hash does not match the generated source", what);
  if (!rc && (abi[0] != CUDA_ABI || abi[1] != sizeof(cuda_micro) || abi[2] != sizeof(cuda_ctl)))
    rc = util_err("%s: module ABI %u (structs of %u and %u bytes), this gptc needs ABI %d (%zu and %zu bytes)", what,
                  abi[0], abi[1], abi[2], CUDA_ABI, sizeof(cuda_micro), sizeof(cuda_ctl));
  if (rc) {
    cuda_drv.cuModuleUnload(*mod);
    *mod = NULL;
  }
  return rc;
}

/* The cache entry for `src` on a GPU of compute capability `cc`: the
 * target NVRTC builds for, and the paths of the module and of the source
 * kept next to it (NVRTC messages and -lineinfo name it). The key
 * (jit_key_nvrtc) hashes the source, the target, NVRTC's options and its
 * version. Writes nothing. */
static int cuda_cache_key(const char *src, size_t len, int cc, char *arch, size_t arch_n, int *ptx, char key[65],
                          char *bin_path, char *src_path, size_t path_n) {
  char ver[64];
  if (cuda_nvrtc_target(cc, arch, arch_n, ptx)) return -1;
  cuda_nvrtc_version(ver, sizeof ver);
  jit_key_nvrtc(src, len, arch, ver, key);
  snprintf(bin_path, path_n, "%s/cuda/%s.%s", util_cache_dir(), key, *ptx ? "ptx" : "cubin");
  snprintf(src_path, path_n, "%s/cuda/%s.cu", util_cache_dir(), key);
  return 0;
}

/* cuda_cache_key, then the cache directory made and the source written. */
static int cuda_cache_entry(const char *src, size_t len, int cc, char *arch, size_t arch_n, int *ptx, char *bin_path,
                            char *src_path, size_t path_n) {
  char key[65], dir[4000];
  if (cuda_cache_key(src, len, cc, arch, arch_n, ptx, key, bin_path, src_path, path_n)) return -1;
  snprintf(dir, sizeof dir, "%s/cuda", util_cache_dir());
  if (util_mkdir_p(dir)) return util_err("cache directory %s: %s", dir, util_errmsg());
  if (!util_file_exists(src_path) && util_write_file_atomic(src_path, src, len))
    return util_err("cannot write the generated CUDA source: %s", util_errmsg());
  return 0;
}

/* NVRTC-compiles `src` for `arch` and writes the module to bin_path
 * (atomically, so concurrent runs never see a partial file); *bin is the
 * image, for the caller to load and free. */
static int cuda_cache_compile(const char *src, const char *src_path, const char *arch, int ptx, const char *bin_path,
                              char **bin, size_t *n) {
  if (cuda_nvrtc_compile(src, src_path, arch, ptx, bin, n, NULL)) return -1;
  /* (NVRTC's PTX includes its terminating NUL, which the driver's JIT needs);
   * the content hash goes beside it, after it (util_cache_seal) */
  if (util_write_file_atomic(bin_path, *bin, *n) == 0 && util_cache_seal(bin_path, *bin, *n) == 0) return 0;
  free(*bin);
  *bin = NULL;
  return -1;
}

int cuda_precompile(const char *src, size_t len, int cc, char *path, size_t path_n, int *compiled) {
  char arch[32], src_path[4200];
  int ptx = 0;
  *compiled = 0;
  if (cuda_cache_entry(src, len, cc, arch, sizeof arch, &ptx, path, src_path, path_n)) return -1;
  if (util_file_exists(path) && util_cache_verify(path, NULL, NULL) == 0) return 0;
  char *bin;
  size_t n;
  if (cuda_cache_compile(src, src_path, arch, ptx, path, &bin, &n)) return -1;
  free(bin);
  *compiled = 1;
  return 0;
}

/* ---- the per-kernel programs -------------------------------------------------------------
 * Each unit of gen_cuda_units is one NVRTC program cached under its own
 * key; the missing ones are compiled by a pool of threads (NVRTC is
 * thread-safe per program), their images written under one lock. */

typedef struct {
  const gen_unit *u;
  char arch[32], bin_path[4200], src_path[4200];
  int ptx, need; /* need: no valid cached image */
  char *image;   /* the image, once read or compiled */
  size_t n;
  int failed;
  char why[4600];
} cuda_job;

typedef struct {
  cuda_job *jobs;
  int n, next;
  pthread_mutex_t lock;
} cuda_pool;

static void *cuda_pool_worker(void *arg) {
  cuda_pool *p = arg;
  for (;;) {
    pthread_mutex_lock(&p->lock);
    int i = p->next;
    while (i < p->n && !p->jobs[i].need) i++;
    p->next = i + 1;
    pthread_mutex_unlock(&p->lock);
    if (i >= p->n) return NULL;
    cuda_job *j = &p->jobs[i];
    char why[4600];
    int rc = cuda_nvrtc_run(j->u->src, j->src_path, j->arch, j->ptx, &j->image, &j->n, NULL, why, sizeof why);
    pthread_mutex_lock(&p->lock); /* the writes one at a time (util_err's message is per thread) */
    if (!rc && (util_write_file_atomic(j->bin_path, j->image, j->n) || util_cache_seal(j->bin_path, j->image, j->n))) {
      snprintf(why, sizeof why, "%s", util_errmsg());
      rc = -1;
    }
    if (rc) {
      free(j->image);
      j->image = NULL;
      j->failed = 1;
      snprintf(j->why, sizeof j->why, "%s", why);
    }
    pthread_mutex_unlock(&p->lock);
  }
}

/* Compiles the jobs that need it, in parallel; -1 naming the first unit
 * that failed. *compiled counts the programs compiled. */
static int cuda_jobs_compile(cuda_job *jobs, int n, int *compiled) {
  int need = 0;
  for (int i = 0; i < n; i++) need += jobs[i].need;
  *compiled = 0;
  if (!need) return 0;
  long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  int nt = (int)(cpus < 1 ? 1 : cpus > 64 ? 64 : cpus);
  if (nt > need) nt = need;
  cuda_pool pool = {jobs, n, 0, PTHREAD_MUTEX_INITIALIZER};
  pthread_t tid[64];
  int started = 0;
  for (int t = 1; t < nt; t++)
    if (pthread_create(&tid[started], NULL, cuda_pool_worker, &pool) == 0) started++;
  cuda_pool_worker(&pool); /* this thread works too: with no extra thread it compiles them all */
  for (int t = 0; t < started; t++) pthread_join(tid[t], NULL);
  for (int i = 0; i < n; i++) {
    if (jobs[i].failed) return util_err("CUDA kernel unit %s: %s", jobs[i].u->name, jobs[i].why);
    *compiled += jobs[i].need;
  }
  return 0;
}

static void cuda_jobs_free(cuda_job *jobs, int n) {
  for (int i = 0; jobs && i < n; i++) free(jobs[i].image);
  free(jobs);
}

/* The jobs for `units` on a GPU of compute capability cc: each unit's
 * cache entry (source written) and whether its image must be compiled; a
 * valid cached image is read into the job when `read` is set. */
static int cuda_jobs_plan(const gen_unit *units, int n, int cc, int read, cuda_job **out) {
  cuda_job *jobs = util_calloc((size_t)(n ? n : 1), sizeof *jobs, "CUDA kernel units");
  *out = jobs;
  if (!jobs) return -1;
  for (int i = 0; i < n; i++) {
    cuda_job *j = &jobs[i];
    j->u = &units[i];
    if (cuda_cache_entry(units[i].src, units[i].len, cc, j->arch, sizeof j->arch, &j->ptx, j->bin_path, j->src_path,
                         sizeof j->bin_path))
      return -1;
    /* a damaged image (or one with no hash) is never handed to the driver: rebuilt */
    j->need = !util_file_exists(j->bin_path) ||
              util_cache_verify(j->bin_path, read ? &j->image : NULL, read ? &j->n : NULL) != 0;
    if (j->need) util_errclear();
  }
  return 0;
}

int cuda_precompile_units(const gen_unit *units, int n, int cc, int *compiled, char (*paths)[4200], int *fresh) {
  cuda_job *jobs;
  int rc = cuda_jobs_plan(units, n, cc, 0, &jobs);
  if (!rc) rc = cuda_jobs_compile(jobs, n, compiled);
  for (int i = 0; !rc && i < n; i++) {
    snprintf(paths[i], sizeof paths[i], "%s", jobs[i].bin_path);
    fresh[i] = jobs[i].need;
  }
  cuda_jobs_free(jobs, n);
  return rc;
}

/* The compute capability of GPU 0. */
static int cuda_gpu_cc(int *cc) {
  int dev;
  char name[256];
  if (cuda_probe()) return -1;
  return cuda_device(&dev, cc, name, sizeof name);
}

int cuda_explain(const cfg_t *cfg, int cc, cuda_unit_info **out, int *n) {
  *out = NULL;
  *n = 0;
  if (!cc && cuda_gpu_cc(&cc))
    return util_err("%s; name the GPU architecture with --compile sm_NN", util_errmsg());
  char *src;
  size_t len;
  char hash[65];
  gen_unit *units;
  int nu;
  if (gen_cuda_units(cfg, NULL, &src, &len, hash, &units, &nu)) return -1;
  free(src);
  if (cuda_dist_unit(&units, &nu)) {
    gen_units_free(units, nu);
    return -1;
  }
  cuda_unit_info *info = util_calloc((size_t)(nu ? nu : 1), sizeof *info, "unit list");
  int rc = info ? 0 : -1;
  for (int i = 0; !rc && i < nu; i++) {
    char arch[32], bin[4200], srcp[4200];
    int ptx;
    snprintf(info[i].name, sizeof info[i].name, "%s", units[i].name);
    rc = cuda_cache_key(units[i].src, units[i].len, cc, arch, sizeof arch, &ptx, info[i].key, bin, srcp, sizeof bin);
    /* cached means a run would load it: present and intact (checked
     * quietly: nothing is rebuilt here) */
    char *img = NULL;
    size_t img_n = 0;
    info[i].cached = !rc && util_file_exists(bin) && util_read_file(bin, &img, &img_n) == 0 &&
                     util_cache_check(bin, img, img_n) == NULL;
    free(img);
    if (!rc && !info[i].cached) util_errclear();
    snprintf(info[i].arch, sizeof info[i].arch, "%s", arch);
  }
  gen_units_free(units, nu);
  if (rc) {
    free(info);
    return -1;
  }
  *out = info;
  *n = nu;
  return 0;
}

/* Opens GPU 0's primary context and a stream. */
static int cuda_dev_start(cuda_dev **out) {
  *out = NULL;
  if (cuda_probe()) return -1;
  cuda_dev *d = util_calloc(1, sizeof *d, "CUDA device");
  if (!d) return -1;
  *out = d;
  cu_result r;
  char name[256];
  int rc = cuda_device(&d->dev, &d->cc, name, sizeof name);
  if (!rc) snprintf(d->about, sizeof d->about, "%s, sm_%d", name, d->cc);
  if (!rc) rc = CU_CHECK(cuda_drv.cuDevicePrimaryCtxRetain(&d->ctx, d->dev), "cuDevicePrimaryCtxRetain");
  if (!rc) rc = CU_CHECK(cuda_drv.cuCtxSetCurrent(d->ctx), "cuCtxSetCurrent");
  if (!rc) rc = CU_CHECK(cuda_drv.cuStreamCreate(&d->stream, CU_STREAM_NON_BLOCKING), "cuStreamCreate");
  return rc;
}

/* The module for the whole source: the cached image when it loads and
 * checks, else a fresh NVRTC compile written to the cache. */
static int cuda_module(cuda_dev *d, const char *src, size_t len, const char *hash) {
  char arch[32], bin_path[4200], src_path[4200];
  int ptx = 0;
  d->modules = util_calloc(1, sizeof *d->modules, "CUDA modules");
  if (!d->modules) return -1;
  d->n_modules = 1;
  if (cuda_cache_entry(src, len, d->cc, arch, sizeof arch, &ptx, bin_path, src_path, sizeof bin_path)) return -1;
  if (util_file_exists(bin_path)) {
    char *image;
    size_t n;
    /* a damaged image (or one with no hash) is never handed to the driver */
    if (util_cache_verify(bin_path, &image, &n) == 0) {
      int rc = cuda_module_load(d, &d->modules[0], image, bin_path, hash);
      free(image);
      if (rc == 0) {
        snprintf(d->about + strlen(d->about), sizeof d->about - strlen(d->about), ", cached %s", bin_path);
        return 0;
      }
    }
    util_errclear(); /* a stale or damaged cache entry is rebuilt */
  }
  char *bin;
  size_t n;
  if (cuda_cache_compile(src, src_path, arch, ptx, bin_path, &bin, &n)) return -1;
  int rc = cuda_module_load(d, &d->modules[0], bin, bin_path, hash);
  free(bin);
  if (rc) return -1;
  snprintf(d->about + strlen(d->about), sizeof d->about - strlen(d->about), ", compiled %s", bin_path);
  return 0;
}

/* One module per unit: the cached images that load and check, the rest
 * compiled in parallel, then loaded. */
static int cuda_unit_modules(cuda_dev *d, const gen_unit *units, int n) {
  d->modules = util_calloc((size_t)(n ? n : 1), sizeof *d->modules, "CUDA modules");
  if (!d->modules) return -1;
  d->n_modules = n;
  cuda_job *jobs;
  int rc = cuda_jobs_plan(units, n, d->cc, 1, &jobs);
  char hash[65];
  for (int i = 0; !rc && i < n; i++) {
    if (jobs[i].need) continue;
    rc = cuda_unit_hash(units[i].src, hash);
    /* a cached image the driver refuses is compiled again */
    if (!rc && cuda_module_load(d, &d->modules[i], jobs[i].image, jobs[i].bin_path, hash)) {
      util_errclear();
      jobs[i].need = 1;
    }
    free(jobs[i].image);
    jobs[i].image = NULL;
  }
  int compiled = 0;
  if (!rc) rc = cuda_jobs_compile(jobs, n, &compiled);
  for (int i = 0; !rc && i < n; i++) {
    if (!jobs[i].need) continue;
    rc = cuda_unit_hash(units[i].src, hash);
    if (!rc) rc = cuda_module_load(d, &d->modules[i], jobs[i].image, jobs[i].bin_path, hash);
  }
  cuda_jobs_free(jobs, n);
  if (rc) return -1;
  snprintf(d->about + strlen(d->about), sizeof d->about - strlen(d->about), ", %d kernel programs (%d compiled, %d "
           "cached) in %s/cuda", n, compiled, n - compiled, util_cache_dir());
  return 0;
}

/* Resolves every plan kernel in the module whose source defines it. */
static int cuda_dev_functions(cuda_dev *d, const gen_unit *units, const cuda_plan *plan) {
  cu_result r;
  d->fns = util_calloc((size_t)(plan->n_kernels ? plan->n_kernels : 1), sizeof *d->fns, "kernel handles");
  if (!d->fns) return -1;
  char key[128];
  for (int i = 0; i < plan->n_kernels; i++) {
    const cuda_kernel *k = &plan->kernels[i];
    int m = 0;
    if (units) {
      snprintf(key, sizeof key, " %s(", k->name);
      m = -1;
      for (int u = 0; u < d->n_modules && m < 0; u++)
        if (strstr(units[u].src, key)) m = u;
      if (m < 0) return util_err("CUDA kernel units: no unit defines kernel %s", k->name);
    }
    if (CU_CHECK(cuda_drv.cuModuleGetFunction(&d->fns[i], d->modules[m], k->name), "cuModuleGetFunction"))
      return util_err("CUDA module: kernel %s: %s", k->name, util_errmsg());
    d->n_fns = i + 1;
    size_t off, size;
    if (cuda_drv.cuFuncGetParamInfo && k->nparams > 0 &&
        (cuda_drv.cuFuncGetParamInfo(d->fns[i], (size_t)k->nparams - 1, &off, &size) != CU_SUCCESS ||
         cuda_drv.cuFuncGetParamInfo(d->fns[i], (size_t)k->nparams, &off, &size) == CU_SUCCESS))
      return util_err("CUDA module: kernel %s does not take the %d parameters its source declares", k->name,
                      k->nparams);
  }
  return 0;
}

int cuda_dev_open(const char *src, size_t len, const char *hash, const cuda_plan *plan, cuda_dev **out) {
  cuda_dev *d;
  int rc = cuda_dev_start(&d);
  if (!rc) rc = cuda_module(d, src, len, hash);
  if (!rc) rc = cuda_dev_functions(d, NULL, plan);
  if (rc) {
    cuda_dev_close(d);
    return -1;
  }
  *out = d;
  return 0;
}

int cuda_dev_open_units(const gen_unit *units, int n, const cuda_plan *plan, cuda_dev **out) {
  cuda_dev *d;
  int rc = cuda_dev_start(&d);
  if (!rc) rc = cuda_unit_modules(d, units, n);
  if (!rc) rc = cuda_dev_functions(d, units, plan);
  if (rc) {
    cuda_dev_close(d);
    return -1;
  }
  *out = d;
  return 0;
}

void cuda_dev_close(cuda_dev *d) {
  if (!d) return;
  if (d->stream) {
    cuda_drv.cuStreamSynchronize(d->stream);
    cuda_drv.cuStreamDestroy(d->stream);
  }
  for (int i = 0; i < d->n_modules; i++)
    if (d->modules[i]) cuda_drv.cuModuleUnload(d->modules[i]);
  if (d->ctx) cuda_drv.cuDevicePrimaryCtxRelease(d->dev);
  free(d->modules);
  free(d->fns);
  free(d);
}

int cuda_alloc(cuda_dev *d, size_t bytes, const char *what, cuda_ptr *p) {
  (void)d;
  *p = 0;
  cu_result r = cuda_drv.cuMemAlloc(p, bytes ? bytes : 1);
  if (r == CU_SUCCESS) return 0;
  *p = 0;
  size_t free_b = 0, total_b = 0;
  if (r == CU_ERROR_OUT_OF_MEMORY && cuda_drv.cuMemGetInfo(&free_b, &total_b) == CU_SUCCESS)
    return util_err("out of GPU memory: %s needs %.1f MiB but %.1f MiB of the GPU's %.1f MiB are free (cuMemGetInfo)",
                    what, bytes / 1048576.0, free_b / 1048576.0, total_b / 1048576.0);
  cuda_fail(r, "cuMemAlloc");
  return util_err("%s (%.1f MiB): %s", what, bytes / 1048576.0, util_errmsg());
}

void cuda_free(cuda_dev *d, cuda_ptr p) {
  (void)d;
  if (p) cuda_drv.cuMemFree(p);
}

int cuda_upload(cuda_dev *d, cuda_ptr dst, const void *src, size_t bytes) {
  cu_result r;
  return bytes ? CU_CHECK(cuda_drv.cuMemcpyHtoDAsync(dst, src, bytes, d->stream), "cuMemcpyHtoDAsync") : 0;
}

int cuda_zero(cuda_dev *d, cuda_ptr p, size_t bytes) {
  cu_result r;
  return bytes ? CU_CHECK(cuda_drv.cuMemsetD8Async(p, 0, bytes, d->stream), "cuMemsetD8Async") : 0;
}

int cuda_copy(cuda_dev *d, cuda_ptr dst, cuda_ptr src, size_t bytes) {
  cu_result r;
  return bytes ? CU_CHECK(cuda_drv.cuMemcpyDtoDAsync(dst, src, bytes, d->stream), "cuMemcpyDtoDAsync") : 0;
}

void *cuda_dev_stream(const cuda_dev *d) { return d->stream; }

int cuda_download(cuda_dev *d, void *dst, cuda_ptr src, size_t bytes) {
  cu_result r;
  if (bytes && CU_CHECK(cuda_drv.cuMemcpyDtoHAsync(dst, src, bytes, d->stream), "cuMemcpyDtoHAsync")) return -1;
  return cuda_sync(d);
}

int cuda_sync(cuda_dev *d) {
  cu_result r;
  /* a kernel fault surfaces here, on the next synchronizing call */
  return CU_CHECK(cuda_drv.cuStreamSynchronize(d->stream), "cuStreamSynchronize (a kernel failed)");
}

int cuda_launch(cuda_dev *d, int kernel, const unsigned grid[3], const unsigned block[3], void **params) {
  cu_result r = cuda_drv.cuLaunchKernel(d->fns[kernel], grid[0], grid[1], grid[2], block[0], block[1], block[2], 0,
                                        d->stream, params, NULL);
  return r == CU_SUCCESS ? 0 : cuda_fail(r, "cuLaunchKernel");
}

int cuda_graph_begin(cuda_dev *d) {
  cu_result r;
  return CU_CHECK(cuda_drv.cuStreamBeginCapture(d->stream, CU_CAPTURE_THREAD_LOCAL), "cuStreamBeginCapture");
}

int cuda_graph_end(cuda_dev *d, void **exec) {
  cu_result r;
  cu_handle graph = NULL;
  *exec = NULL;
  if (CU_CHECK(cuda_drv.cuStreamEndCapture(d->stream, &graph), "cuStreamEndCapture")) return -1;
  int rc = CU_CHECK(cuda_drv.cuGraphInstantiateWithFlags(exec, graph, 0), "cuGraphInstantiateWithFlags");
  cuda_drv.cuGraphDestroy(graph);
  if (rc) *exec = NULL;
  return rc;
}

int cuda_graph_launch(cuda_dev *d, void *exec) {
  cu_result r;
  return CU_CHECK(cuda_drv.cuGraphLaunch(exec, d->stream), "cuGraphLaunch");
}

void cuda_graph_free(cuda_dev *d, void *exec) {
  (void)d;
  if (exec) cuda_drv.cuGraphExecDestroy(exec);
}
