/* fakecuda: a stand-in for libcuda.so.1 that runs gptc's CUDA backend on the
 * host, for tests without a GPU ($GPTC_LIBCUDA names it). Device memory is
 * host memory; a module is the generated source compiled with the host C++
 * compiler against emu.h (the CUBIN gptc hands over is only used to find
 * that source: its gptc_source_hash names the .cu next to it in the cache;
 * misaligned vector accesses and indexes outside fixed-size arrays, shared
 * memory included, trap);
 * launches run in the emulator; stream capture records launches and memsets
 * into a graph that replays them. Only what gptc's runtime/cuda.c calls is
 * here.
 *
 * Build: cc -O2 -shared -fPIC -DEMU_HEADER='"/path/emu.h"' -o libcuda.so.1 fakecuda.c -ldl
 * Environment: GPTC_CACHE (where the sources are), FAKECUDA_CC (compute
 * capability, default 90), FAKECUDA_CXX (compiler, default c++),
 * FAKECUDA_MEM_LIMIT (device memory in bytes, default 80 GiB), FAKECUDA_DEVICES
 * (GPUs reported, default 1),
 * FAKECUDA_SO_DIR (where the emulated modules are cached, an existing
 * directory; default $GPTC_CACHE/cuda, beside the sources). */
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <link.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef int CUresult;
enum { OK = 0, E_INVALID_VALUE = 1, E_OOM = 2, E_NOT_INIT = 3, E_INVALID_IMAGE = 200, E_NOT_FOUND = 500,
       E_LAUNCH = 719, E_CAPTURE = 900 };

typedef struct fake_function fake_function;

typedef struct {
  void *so;
  int (*run)(void (*)(void), const unsigned *, const unsigned *, const uint64_t *, const char **);
  char *src;          /* the generated source (kernel signatures) */
  fake_function *fns; /* handed out by cuModuleGetFunction, freed on unload as the driver does */
} fake_module;

struct fake_function {
  fake_module *mod;
  fake_function *next;
  void (*fn)(void);
  int nparams;
  unsigned int_mask;
};

typedef struct {
  int kind; /* 0 launch, 1 memset */
  fake_function *f;
  unsigned grid[3], block[3];
  uint64_t args[12];
  uint64_t ptr, bytes;
  unsigned char value;
} fake_node;

typedef struct {
  fake_node *nodes;
  int n, cap;
} fake_graph;

static int fake_capturing;
static fake_graph *fake_capture;
static size_t fake_allocated;
static char fake_last_error[600];

CUresult cuGetErrorName(CUresult r, const char **s) {
  *s = r == OK ? "CUDA_SUCCESS" : r == E_OOM ? "CUDA_ERROR_OUT_OF_MEMORY" : r == E_LAUNCH ? "CUDA_ERROR_LAUNCH_FAILED"
     : r == E_INVALID_IMAGE ? "CUDA_ERROR_INVALID_IMAGE" : r == E_NOT_FOUND ? "CUDA_ERROR_NOT_FOUND"
     : r == E_CAPTURE ? "CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED" : "CUDA_ERROR_INVALID_VALUE";
  return OK;
}

CUresult cuGetErrorString(CUresult r, const char **s) {
  *s = fake_last_error[0] ? fake_last_error : r == OK ? "no error" : "fakecuda error";
  return OK;
}

static CUresult fake_fail(CUresult r, const char *fmt, const char *arg) {
  snprintf(fake_last_error, sizeof fake_last_error, fmt, arg);
  return r;
}

CUresult cuInit(unsigned flags) { return flags ? E_INVALID_VALUE : OK; }
CUresult cuDriverGetVersion(int *v) { *v = 13000; return OK; }
/* FAKECUDA_DEVICES: how many GPUs the fake reports (default 1; the
 * data-parallel tests give each rank its own, all host memory) */
static int fake_devices(void) {
  const char *n = getenv("FAKECUDA_DEVICES");
  return n && atoi(n) > 0 ? atoi(n) : 1;
}
CUresult cuDeviceGetCount(int *n) { *n = fake_devices(); return OK; }
CUresult cuDeviceGet(int *d, int i) { *d = i; return i >= 0 && i < fake_devices() ? OK : E_INVALID_VALUE; }
CUresult cuDeviceGetName(char *name, int len, int d) {
  (void)d;
  snprintf(name, (size_t)len, "gptc CUDA emulator (host)");
  return OK;
}
CUresult cuDeviceGetAttribute(int *v, int attr, int d) {
  (void)d;
  const char *cc = getenv("FAKECUDA_CC");
  int c = cc ? atoi(cc) : 90;
  *v = attr == 75 ? c / 10 : attr == 76 ? c % 10 : attr == 16 ? 132 : 0;
  return OK;
}
CUresult cuDevicePrimaryCtxRetain(void **ctx, int d) { *ctx = (void *)(uintptr_t)(d + 1); return OK; }
CUresult cuDevicePrimaryCtxRelease_v2(int d) { (void)d; return OK; }
CUresult cuCtxSetCurrent(void *ctx) { (void)ctx; return OK; }
CUresult cuMemGetInfo_v2(size_t *free_b, size_t *total) {
  const char *lim = getenv("FAKECUDA_MEM_LIMIT");
  *total = lim ? (size_t)atoll(lim) : (size_t)80 << 30;
  *free_b = *total > fake_allocated ? *total - fake_allocated : 0;
  return OK;
}
CUresult cuMemAlloc_v2(uint64_t *p, size_t n) {
  const char *lim = getenv("FAKECUDA_MEM_LIMIT");
  if (lim && fake_allocated + n > (size_t)atoll(lim)) return E_OOM;
  void *q = aligned_alloc(256, (n + 255) & ~(size_t)255);
  if (!q) return E_OOM;
  memset(q, 0xFF, n); /* device memory starts as garbage (NaN floats), not zeros */
  fake_allocated += n;
  *p = (uint64_t)(uintptr_t)q;
  return OK;
}
CUresult cuMemFree_v2(uint64_t p) {
  free((void *)(uintptr_t)p);
  return OK;
}
CUresult cuMemcpyHtoDAsync_v2(uint64_t dst, const void *src, size_t n, void *s) {
  (void)s;
  if (fake_capturing) return fake_fail(E_CAPTURE, "%s", "a host copy inside stream capture");
  memcpy((void *)(uintptr_t)dst, src, n);
  return OK;
}
CUresult cuMemcpyDtoDAsync_v2(uint64_t dst, uint64_t src, size_t n, void *s) {
  (void)s;
  if (fake_capturing) return fake_fail(E_CAPTURE, "%s", "a device copy inside stream capture (not emulated)");
  memmove((void *)(uintptr_t)dst, (const void *)(uintptr_t)src, n);
  return OK;
}
CUresult cuMemcpyDtoHAsync_v2(void *dst, uint64_t src, size_t n, void *s) {
  (void)s;
  if (fake_capturing) return fake_fail(E_CAPTURE, "%s", "a host copy inside stream capture");
  memcpy(dst, (void *)(uintptr_t)src, n);
  return OK;
}

static void fake_record(fake_node *nd) {
  fake_graph *g = fake_capture;
  if (g->n == g->cap) {
    g->cap = g->cap ? 2 * g->cap : 256;
    g->nodes = realloc(g->nodes, (size_t)g->cap * sizeof *g->nodes);
  }
  g->nodes[g->n++] = *nd;
}

CUresult cuMemsetD8Async(uint64_t p, unsigned char v, size_t n, void *s) {
  (void)s;
  if (fake_capturing) {
    fake_node nd = {.kind = 1, .ptr = p, .bytes = n, .value = v};
    fake_record(&nd);
    return OK;
  }
  memset((void *)(uintptr_t)p, v, n);
  return OK;
}

/* ---- modules ------------------------------------------------------------------------ */

/* The hash in a module image: the first run of 64 lowercase hex digits then a NUL. */
static int fake_image_hash(const unsigned char *img, char hash[65]) {
  /* a CUBIN is an ELF file: its size is in the header (section table end) */
  const ElfW(Ehdr) *eh = (const ElfW(Ehdr) *)img;
  size_t n = memcmp(img, ELFMAG, SELFMAG) == 0 ? eh->e_shoff + (size_t)eh->e_shnum * eh->e_shentsize : strlen((const char *)img);
  for (size_t i = 0; i + 65 <= n; i++) {
    size_t k = 0;
    while (k < 64 && ((img[i + k] >= '0' && img[i + k] <= '9') || (img[i + k] >= 'a' && img[i + k] <= 'f'))) k++;
    if (k == 64 && img[i + 64] == 0 && (i == 0 || img[i - 1] == 0 || img[i - 1] == '"')) {
      memcpy(hash, img + i, 64);
      hash[64] = 0;
      return 0;
    }
  }
  return -1;
}

static char *fake_read(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  rewind(f);
  char *d = malloc((size_t)n + 1);
  if (d && fread(d, 1, (size_t)n, f) != (size_t)n) {
    free(d);
    d = NULL;
  }
  if (d) d[n] = 0;
  fclose(f);
  return d;
}

/* The C++ flags of an emulated module; its precompiled header's are the same. */
#define FAKE_CXXFLAGS                                                                                          \
  "-O1 -std=c++17 -w -fPIC -fsanitize=alignment,bounds -fsanitize-undefined-trap-on-error -DGPTC_CUDA_EMULATION"

/* Runs `cmd`, its output to /dev/null: 0 when it succeeded. */
static int fake_system(const char *cmd) {
  FILE *p = popen(cmd, "r");
  if (!p) return -1;
  char sink[512];
  while (fread(sink, 1, sizeof sink, p) > 0) {
  }
  return pclose(p) == 0 ? 0 : -1;
}

/* The header every emulated module includes, as `header`: parsing emu.h and
 * the C++ headers under it was half of each module's compile, so it is
 * precompiled once per cache directory and emulator version (a copy of emu.h
 * as DIR/emu-STAMP.h, beside it the .gch that gcc uses in its place). Both
 * go to a temp name and are renamed, so concurrent test processes never see
 * half a file; when the copy or the precompile fails, emu.h itself. */
static void fake_pch(const char *cxx, const char *dir, long stamp, char *header, size_t n) {
  char copy[4400], gch[4500], tmp[4600], cmd[14000];
  snprintf(copy, sizeof copy, "%s/emu-%lx.h", dir, stamp);
  snprintf(gch, sizeof gch, "%s.gch", copy);
  snprintf(header, n, "%s", EMU_HEADER);
  if (access(gch, R_OK) == 0 && access(copy, R_OK) == 0) {
    snprintf(header, n, "%s", copy);
    return;
  }
  char *text = fake_read(EMU_HEADER);
  if (!text) return;
  snprintf(tmp, sizeof tmp, "%s.tmp.%ld", copy, (long)getpid());
  FILE *f = fopen(tmp, "wb");
  int ok = f && fputs(text, f) >= 0;
  if (f && fclose(f)) ok = 0;
  free(text);
  if (!ok || rename(tmp, copy)) {
    unlink(tmp);
    return;
  }
  snprintf(tmp, sizeof tmp, "%s.tmp.%ld", gch, (long)getpid());
  snprintf(cmd, sizeof cmd, "%s " FAKE_CXXFLAGS " -x c++-header '%s' -o '%s' 2>&1", cxx, copy, tmp);
  if (fake_system(cmd) || rename(tmp, gch)) {
    unlink(tmp);
    return;
  }
  snprintf(header, n, "%s", copy);
}

CUresult cuModuleLoadData(void **out, const void *image) {
  char hash[65], dir[4096], want[128], src_path[4400] = "", so_path[4400];
  if (fake_image_hash(image, hash)) return fake_fail(E_INVALID_IMAGE, "%s", "no gptc source hash in the module image");
  /* gptc's cache directory: $GPTC_CACHE, else ~/.cache/gptc (runtime/util.c) */
  const char *cache = getenv("GPTC_CACHE"), *home = getenv("HOME");
  if (cache && *cache) snprintf(dir, sizeof dir, "%s/cuda", cache);
  else snprintf(dir, sizeof dir, "%s/.cache/gptc/cuda", home && *home ? home : "/tmp");
  snprintf(want, sizeof want, "#define GPTC_SOURCE_HASH \"%s\"", hash);
  DIR *dp = opendir(dir);
  struct dirent *e;
  char *src = NULL;
  while (dp && (e = readdir(dp)) != NULL) {
    size_t l = strlen(e->d_name);
    if (l < 4 || strcmp(e->d_name + l - 3, ".cu")) continue;
    snprintf(src_path, sizeof src_path, "%s/%s", dir, e->d_name);
    src = fake_read(src_path);
    if (src && strstr(src, want)) break;
    free(src);
    src = NULL;
  }
  if (dp) closedir(dp);
  if (!src) return fake_fail(E_INVALID_IMAGE, "no generated source with hash %s in $GPTC_CACHE/cuda", hash);
  /* the emulated module is cached by source hash and emulator, beside the
   * source or in $FAKECUDA_SO_DIR (content-addressed: a test that points
   * GPTC_CACHE at a fresh directory still reuses the modules built before) */
  const char *so_dir = getenv("FAKECUDA_SO_DIR");
  if (so_dir && *so_dir) snprintf(dir, sizeof dir, "%s", so_dir);
  struct stat st;
  long emu_stamp = stat(EMU_HEADER, &st) == 0 ? (long)st.st_mtime ^ (long)st.st_size : 0;
  snprintf(so_path, sizeof so_path, "%s/%s-%lx.emu.so", dir, hash, emu_stamp);
  if (access(so_path, R_OK) != 0) {
    const char *cxx = getenv("FAKECUDA_CXX");
    char tmp[4500], cmd[14000], header[4400];
    fake_pch(cxx && *cxx ? cxx : "c++", dir, emu_stamp, header, sizeof header);
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", so_path, (long)getpid());
    snprintf(cmd, sizeof cmd, "%s " FAKE_CXXFLAGS " -shared -include '%s' -x c++ '%s' -o '%s' 2>&1",
             cxx && *cxx ? cxx : "c++", header, src_path, tmp);
    FILE *p = popen(cmd, "r");
    char out[4096];
    size_t got = p ? fread(out, 1, sizeof out - 1, p) : 0;
    out[got] = 0;
    int rc = p ? pclose(p) : -1;
    if (rc != 0 || rename(tmp, so_path) != 0) {
      unlink(tmp);
      free(src);
      return fake_fail(E_INVALID_IMAGE, "compiling the emulated module failed: %.500s", out);
    }
  }
  fake_module *m = calloc(1, sizeof *m);
  m->so = dlopen(so_path, RTLD_NOW | RTLD_LOCAL);
  if (!m->so) {
    free(m);
    free(src);
    return fake_fail(E_INVALID_IMAGE, "%s", dlerror());
  }
  m->run = (int (*)(void (*)(void), const unsigned *, const unsigned *, const uint64_t *, const char **))(uintptr_t)dlsym(
      m->so, "emu_run");
  m->src = src;
  *out = m;
  return m->run ? OK : fake_fail(E_INVALID_IMAGE, "%s", "emulated module without emu_run");
}

CUresult cuModuleUnload(void *mod) {
  fake_module *m = mod;
  dlclose(m->so);
  for (fake_function *f = m->fns, *next; f; f = next) {
    next = f->next;
    free(f);
  }
  free(m->src);
  free(m);
  return OK;
}

CUresult cuModuleGetFunction(void **out, void *mod, const char *name) {
  fake_module *m = mod;
  fake_function *f = calloc(1, sizeof *f);
  f->mod = m;
  f->fn = (void (*)(void))(uintptr_t)dlsym(m->so, name);
  if (!f->fn) {
    free(f);
    return fake_fail(E_NOT_FOUND, "no kernel %s", name);
  }
  /* the parameter list from the source: pointers and ints */
  char key[200];
  snprintf(key, sizeof key, " %s(", name);
  const char *s = strstr(m->src, key);
  if (!s) {
    free(f);
    return fake_fail(E_NOT_FOUND, "no definition of %s in the source", name);
  }
  s += strlen(key);
  const char *end = strchr(s, ')');
  for (const char *a = s; a < end;) {
    const char *c = memchr(a, ',', (size_t)(end - a));
    const char *e = c ? c : end;
    while (a < e && (*a == ' ' || *a == '\n')) a++;
    if (a == e) break;
    if (!memchr(a, '*', (size_t)(e - a))) f->int_mask |= 1u << f->nparams;
    f->nparams++;
    a = c ? c + 1 : end;
  }
  f->next = m->fns;
  m->fns = f;
  *out = f;
  return OK;
}

CUresult cuFuncGetParamInfo(void *func, size_t i, size_t *off, size_t *size) {
  fake_function *f = func;
  if (i >= (size_t)f->nparams) return E_INVALID_VALUE;
  *off = 8 * i;
  *size = (f->int_mask >> i) & 1 ? 4 : 8;
  return OK;
}

CUresult cuModuleGetGlobal_v2(uint64_t *p, size_t *size, void *mod, const char *name) {
  fake_module *m = mod;
  void *sym = dlsym(m->so, name);
  Dl_info info;
  const ElfW(Sym) *es = NULL;
  if (!sym || !dladdr1(sym, &info, (void **)&es, RTLD_DL_SYMENT) || !es) return fake_fail(E_NOT_FOUND, "no global %s", name);
  *p = (uint64_t)(uintptr_t)sym;
  *size = es->st_size;
  return OK;
}

static CUresult fake_run(const fake_node *nd) {
  if (nd->kind == 1) {
    memset((void *)(uintptr_t)nd->ptr, nd->value, nd->bytes);
    return OK;
  }
  const char *msg = NULL;
  if (nd->f->mod->run(nd->f->fn, nd->grid, nd->block, nd->args, &msg)) return fake_fail(E_LAUNCH, "emulator: %s", msg);
  return OK;
}

CUresult cuLaunchKernel(void *func, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
                        unsigned smem, void *stream, void **params, void **extra) {
  (void)stream;
  fake_function *f = func;
  if (smem || extra) return fake_fail(E_INVALID_VALUE, "%s", "dynamic shared memory and extra are not emulated");
  fake_node nd = {.kind = 0, .f = f, .grid = {gx, gy, gz}, .block = {bx, by, bz}};
  for (int i = 0; i < f->nparams; i++) {
    if ((f->int_mask >> i) & 1) {
      int32_t v;
      memcpy(&v, params[i], 4);
      nd.args[i] = (uint64_t)(uint32_t)v;
    } else {
      memcpy(&nd.args[i], params[i], 8);
    }
  }
  if (fake_capturing) {
    fake_record(&nd);
    return OK;
  }
  return fake_run(&nd);
}

CUresult cuStreamCreate(void **s, unsigned flags) {
  (void)flags;
  *s = (void *)(uintptr_t)1;
  return OK;
}
CUresult cuStreamDestroy_v2(void *s) { (void)s; return OK; }
CUresult cuStreamSynchronize(void *s) { (void)s; return OK; }
CUresult cuStreamBeginCapture_v2(void *s, int mode) {
  (void)s, (void)mode;
  if (fake_capturing) return E_CAPTURE;
  fake_capturing = 1;
  fake_capture = calloc(1, sizeof *fake_capture);
  return OK;
}
CUresult cuStreamEndCapture(void *s, void **graph) {
  (void)s;
  if (!fake_capturing) return E_CAPTURE;
  fake_capturing = 0;
  *graph = fake_capture;
  fake_capture = NULL;
  return OK;
}
CUresult cuGraphInstantiateWithFlags(void **exec, void *graph, unsigned long long flags) {
  (void)flags;
  fake_graph *g = graph, *e = calloc(1, sizeof *e);
  e->n = e->cap = g->n;
  e->nodes = malloc((size_t)(g->n ? g->n : 1) * sizeof *e->nodes);
  memcpy(e->nodes, g->nodes, (size_t)g->n * sizeof *e->nodes);
  *exec = e;
  return OK;
}
CUresult cuGraphLaunch(void *exec, void *s) {
  (void)s;
  fake_graph *g = exec;
  for (int i = 0; i < g->n; i++) {
    CUresult r = fake_run(&g->nodes[i]);
    if (r) return r;
  }
  return OK;
}
static void fake_graph_free(fake_graph *g) {
  free(g->nodes);
  free(g);
}
CUresult cuGraphExecDestroy(void *e) { fake_graph_free(e); return OK; }
CUresult cuGraphDestroy(void *g) { fake_graph_free(g); return OK; }
