/* cuda_nvrtc: see cuda.h. In-process compilation of CUDA sources with
 * NVRTC, and the target and version that go into the kernel cache's key
 * (cuda.c); without NVRTC (GPTC_HAVE_NVRTC undefined) every call fails with
 * "built without CUDA support". NVRTC's options and the cache key are
 * jit.c's. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef GPTC_HAVE_NVRTC
#include <nvrtc.h>
#endif

#include "cuda.h"
#include "jit.h"
#include "util.h"

/* ---- NVRTC ---------------------------------------------------------------------------- */

/* the options besides the architecture are jit.c's (jit_nvrtc_options),
 * as they are part of the cache key */

#ifdef GPTC_HAVE_NVRTC
int cuda_have_nvrtc(void) { return 1; }

/* cuda_nvrtc_compile without util_err (its message goes to `why`), so that
 * several threads can compile at once: NVRTC is thread-safe per program. */
int cuda_nvrtc_run(const char *src, const char *path, const char *arch, int want_ptx, char **bin,
                   size_t *bin_len, char **log, char *why, size_t why_n) {
  *bin = NULL;
  *bin_len = 0;
  if (log) *log = NULL;
  nvrtcProgram prog;
  nvrtcResult r = nvrtcCreateProgram(&prog, src, path, 0, NULL, NULL);
  if (r != NVRTC_SUCCESS) {
    snprintf(why, why_n, "NVRTC: nvrtcCreateProgram failed: %s", nvrtcGetErrorString(r));
    return -1;
  }
  char archopt[64];
  snprintf(archopt, sizeof archopt, "--gpu-architecture=%s", arch);
  const char *opts[8];
  int n = 0;
  opts[n++] = archopt;
  for (int i = 0; jit_nvrtc_options[i]; i++) opts[n++] = jit_nvrtc_options[i];
  r = nvrtcCompileProgram(prog, n, opts);
  size_t log_size = 0;
  char *text = NULL;
  if (nvrtcGetProgramLogSize(prog, &log_size) == NVRTC_SUCCESS && log_size > 1) {
    text = malloc(log_size);
    if (text && nvrtcGetProgramLog(prog, text) != NVRTC_SUCCESS) text[0] = 0;
  }
  int rc = 0;
  if (r != NVRTC_SUCCESS) {
    /* the whole log on stderr, its first error in the one-line message */
    char folded[1024];
    jit_fold(text ? text : "", folded, sizeof folded);
    if (text) fprintf(stderr, "%s", text);
    snprintf(why, why_n, "compiling %s with NVRTC for %s failed (%s)%s%s", path, arch, nvrtcGetErrorString(r),
             folded[0] ? ": " : "", folded);
    rc = -1;
  } else {
    size_t size = 0;
    r = want_ptx ? nvrtcGetPTXSize(prog, &size) : nvrtcGetCUBINSize(prog, &size);
    char *out = r == NVRTC_SUCCESS ? malloc(size) : NULL;
    if (out && (want_ptx ? nvrtcGetPTX(prog, out) : nvrtcGetCUBIN(prog, out)) == NVRTC_SUCCESS) {
      *bin = out;
      *bin_len = size;
    } else {
      free(out);
      if (r != NVRTC_SUCCESS)
        snprintf(why, why_n, "NVRTC: reading the compiled %s failed: %s", want_ptx ? "PTX" : "CUBIN",
                 nvrtcGetErrorString(r));
      else snprintf(why, why_n, "out of memory: compiled CUDA module (%zu bytes)", size);
      rc = -1;
    }
  }
  if (log) *log = text;
  else free(text);
  nvrtcDestroyProgram(&prog);
  return rc;
}

int cuda_nvrtc_compile(const char *src, const char *path, const char *arch, int want_ptx, char **bin, size_t *bin_len,
                       char **log) {
  char why[4600];
  if (cuda_nvrtc_run(src, path, arch, want_ptx, bin, bin_len, log, why, sizeof why)) return util_err("%s", why);
  return 0;
}

/* The target for a device of compute capability `cc` (e.g. 90): its own
 * CUBIN when NVRTC knows it; else PTX for the newest older architecture
 * NVRTC knows, which the driver compiles. */
int cuda_nvrtc_target(int cc, char *arch, size_t n, int *ptx) {
  int count = 0, best = 0;
  if (nvrtcGetNumSupportedArchs(&count) != NVRTC_SUCCESS || count <= 0)
    return util_err("NVRTC: cannot list the supported GPU architectures");
  int *list = util_malloc((size_t)count * sizeof *list, "architecture list");
  if (!list) return -1;
  nvrtcGetSupportedArchs(list);
  for (int i = 0; i < count; i++) {
    if (list[i] == cc) best = cc;
    if (list[i] < cc && list[i] > best && best != cc) best = list[i];
  }
  free(list);
  if (best < 80) return util_err("NVRTC supports no architecture between 8.0 and this GPU's %d.%d", cc / 10, cc % 10);
  *ptx = best != cc;
  snprintf(arch, n, "%s_%d", *ptx ? "compute" : "sm", best);
  return 0;
}

void cuda_nvrtc_version(char *out, size_t n) {
  int major = 0, minor = 0;
  nvrtcVersion(&major, &minor);
  snprintf(out, n, "nvrtc %d.%d", major, minor);
}
#else
int cuda_have_nvrtc(void) { return 0; }

int cuda_nvrtc_compile(const char *src, const char *path, const char *arch, int want_ptx, char **bin, size_t *bin_len,
                       char **log) {
  (void)src, (void)path, (void)arch, (void)want_ptx;
  *bin = NULL;
  *bin_len = 0;
  if (log) *log = NULL;
  return util_err("this gptc was built without CUDA support (NVRTC was not found at build time)");
}

int cuda_nvrtc_run(const char *src, const char *path, const char *arch, int want_ptx, char **bin,
                   size_t *bin_len, char **log, char *why, size_t why_n) {
  (void)src, (void)path, (void)arch, (void)want_ptx;
  *bin = NULL;
  *bin_len = 0;
  if (log) *log = NULL;
  snprintf(why, why_n, "this gptc was built without CUDA support (NVRTC was not found at build time)");
  return -1;
}

int cuda_nvrtc_target(int cc, char *arch, size_t n, int *ptx) {
  (void)cc, (void)arch, (void)n, (void)ptx;
  return util_err("this gptc was built without CUDA support (NVRTC was not found at build time)");
}

void cuda_nvrtc_version(char *out, size_t n) { snprintf(out, n, "no nvrtc"); }
#endif
