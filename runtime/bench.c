/* bench: see bench.h. The machine measurements, statistics and timing, the
 * OpenBLAS baseline and the per-op harness. */
#include "bench.h"

#include <dlfcn.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gen.h"
#include "jit.h"

/* ---- machine ----------------------------------------------------------------- */

static void bench_isa(char isa[16], int *lanes) {
  snprintf(isa, 16, "sse");
  *lanes = 4;
#if defined(__x86_64__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) snprintf(isa, 16, "avx512f"), *lanes = 16;
  else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) snprintf(isa, 16, "avx2"), *lanes = 8;
#else
  snprintf(isa, 16, "generic");
#endif
}

/* "key\t: value" lines of /proc/cpuinfo: the model name, and the number of
 * distinct (physical id, core id) pairs as the physical core count. */
static void bench_cpuinfo(bench_machine *m) {
  snprintf(m->cpu, sizeof m->cpu, "unknown CPU");
  m->cores = 0;
  FILE *f = fopen("/proc/cpuinfo", "r");
  if (!f) return;
  char line[512];
  int phys = 0, pairs[1024], n = 0;
  while (fgets(line, sizeof line, f)) {
    char *colon = strchr(line, ':');
    if (!colon) continue;
    char *v = colon + 1 + (colon[1] == ' ');
    v[strcspn(v, "\n")] = 0;
    if (!strncmp(line, "model name", 10) && !strcmp(m->cpu, "unknown CPU")) snprintf(m->cpu, sizeof m->cpu, "%s", v);
    else if (!strncmp(line, "physical id", 11)) phys = atoi(v);
    else if (!strncmp(line, "core id", 7)) {
      int key = phys * 65536 + atoi(v), seen = 0;
      for (int i = 0; i < n && !seen; i++) seen = pairs[i] == key;
      if (!seen && n < 1024) pairs[n++] = key;
    }
  }
  fclose(f);
  m->cores = n;
}

void bench_describe(bench_machine *m) {
  memset(m, 0, sizeof *m);
  bench_cpuinfo(m);
  long online = sysconf(_SC_NPROCESSORS_ONLN);
  m->logical_cpus = online > 0 ? (int)online : 1;
  if (m->cores <= 0) m->cores = m->logical_cpus;
  m->threads = omp_get_max_threads();
  bench_isa(m->isa, &m->fma_lanes);
  const char *cc = jit_cc(0);
  snprintf(m->cc, sizeof m->cc, "%s", cc);
  jit_cc_id(cc, m->compiler, sizeof m->compiler);
  m->flags = JIT_FLAGS_SO;
}

/* fp32 FMA peak: 12 independent accumulators per thread stay in registers
 * (more than latency x throughput of any current core), the widest vector
 * ISA the CPU has is picked at run time. Each accumulator starts at its own
 * value and passes through an empty asm every iteration: with equal starts
 * and no barrier the compiler proves the 12 chains equal and keeps one,
 * which runs one FMA per iteration and reports about twice the peak. */
#define BENCH_FMA_BODY(VT)                                                       \
  VT x = one * (float)0.999, y = one * (float)1e-6;                              \
  VT a0 = one * 1.0f, a1 = one * 1.1f, a2 = one * 1.2f, a3 = one * 1.3f;         \
  VT a4 = one * 1.4f, a5 = one * 1.5f, a6 = one * 1.6f, a7 = one * 1.7f;         \
  VT a8 = one * 1.8f, a9 = one * 1.9f, a10 = one * 2.0f, a11 = one * 2.1f;       \
  __asm__ volatile("" : "+x"(x), "+x"(y));                                       \
  for (long i = 0; i < iters; i++) {                                             \
    __asm__ volatile("" : "+x"(a0), "+x"(a1), "+x"(a2), "+x"(a3), "+x"(a4), "+x"(a5)); \
    __asm__ volatile("" : "+x"(a6), "+x"(a7), "+x"(a8), "+x"(a9), "+x"(a10), "+x"(a11)); \
    a0 = a0 * x + y, a1 = a1 * x + y, a2 = a2 * x + y, a3 = a3 * x + y;          \
    a4 = a4 * x + y, a5 = a5 * x + y, a6 = a6 * x + y, a7 = a7 * x + y;          \
    a8 = a8 * x + y, a9 = a9 * x + y, a10 = a10 * x + y, a11 = a11 * x + y;      \
  }                                                                              \
  VT s = a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9 + a10 + a11;            \
  return s[0];

#if defined(__x86_64__)
typedef float bench_v16 __attribute__((vector_size(64)));
typedef float bench_v8 __attribute__((vector_size(32)));
__attribute__((target("avx512f"))) static float bench_fma512(long iters) {
  bench_v16 one = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
  BENCH_FMA_BODY(bench_v16)
}
__attribute__((target("avx2,fma"))) static float bench_fma256(long iters) {
  bench_v8 one = {1, 1, 1, 1, 1, 1, 1, 1};
  BENCH_FMA_BODY(bench_v8)
}
#endif
typedef float bench_v4 __attribute__((vector_size(16)));
static float bench_fma128(long iters) {
  bench_v4 one = {1, 1, 1, 1};
  BENCH_FMA_BODY(bench_v4)
}

double bench_fma_peak(int *lanes) {
  char isa[16];
  bench_isa(isa, lanes);
  float (*fn)(long) = bench_fma128;
#if defined(__x86_64__)
  if (*lanes == 16) fn = bench_fma512;
  else if (*lanes == 8) fn = bench_fma256;
#endif
  return bench_loop_gflops(fn, 20000000, 2.0 * 12 * *lanes);
}

double bench_loop_gflops(float (*fn)(long), long iters, double flops_per_iter) {
  /* short runs, best of several: on a shared machine one of them likely
   * runs undisturbed */
  double best = 0;
  for (int rep = 0; rep < 7; rep++) {
    float sink = 0;
    double t = util_now();
#pragma omp parallel reduction(+ : sink)
    sink += fn(iters);
    t = util_now() - t;
    double gf = flops_per_iter * (double)iters * omp_get_max_threads() / t / 1e9;
    if (gf > best) best = gf;
    if (sink == 42) fputc(' ', stderr); /* keeps the result alive */
  }
  return best;
}

int bench_copy_bw(size_t bytes, double *gbs) {
  *gbs = 0;
  size_t n = bytes / sizeof(float);
  float *a = NULL, *b = NULL;
  if (posix_memalign((void **)&a, 4096, n * sizeof(float)) || posix_memalign((void **)&b, 4096, n * sizeof(float))) {
    free(a);
    return util_err("out of memory: the copy-bandwidth arrays need 2 x %zu bytes", n * sizeof(float));
  }
  int nt = omp_get_max_threads();
  /* every thread touches (and so places) the slice it copies later */
#pragma omp parallel num_threads(nt)
  {
    int t = omp_get_thread_num();
    size_t lo = n * (size_t)t / (size_t)nt, hi = n * (size_t)(t + 1) / (size_t)nt;
    for (size_t i = lo; i < hi; i++) a[i] = (float)i, b[i] = 0;
  }
  double best = 0;
  for (int rep = 0; rep < 5; rep++) {
    double t0 = util_now();
#pragma omp parallel num_threads(nt)
    {
      int t = omp_get_thread_num();
      size_t lo = n * (size_t)t / (size_t)nt, hi = n * (size_t)(t + 1) / (size_t)nt;
      memcpy(b + lo, a + lo, (hi - lo) * sizeof(float));
    }
    double dt = util_now() - t0;
    double g = 2.0 * (double)(n * sizeof(float)) / dt / 1e9;
    if (g > best) best = g;
  }
  if (b[n / 2] != (float)(n / 2)) fputc(' ', stderr); /* keeps the copies alive */
  free(a);
  free(b);
  *gbs = best;
  return 0;
}

/* ---- statistics and timing -------------------------------------------------------- */

static int bench_cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* the q-quantile of sorted x, interpolating between neighbours */
static double bench_quantile(const double *x, int n, double q) {
  double pos = q * (n - 1);
  int i = (int)pos;
  if (i >= n - 1) return x[n - 1];
  return x[i] + (pos - i) * (x[i + 1] - x[i]);
}

void bench_stats_of(const double *x, int n, bench_stats *s) {
  memset(s, 0, sizeof *s);
  if (n <= 0) return;
  double *c = malloc((size_t)n * sizeof *c);
  if (!c) return;
  memcpy(c, x, (size_t)n * sizeof *c);
  qsort(c, (size_t)n, sizeof *c, bench_cmp);
  s->n = n;
  s->min = c[0];
  s->max = c[n - 1];
  s->median = bench_quantile(c, n, 0.5);
  s->p10 = bench_quantile(c, n, 0.1);
  s->p90 = bench_quantile(c, n, 0.9);
  free(c);
}

/* The last-level cache of CPU 0 in bytes from sysfs (what lscpu shows: the
 * cache one core shares, not glibc's sysconf sum over the package), or 0 */
static size_t bench_llc_bytes(void) {
  size_t best = 0;
  int best_level = 0;
  for (int i = 0; i < 16; i++) {
    char path[128], buf[64];
    int level = 0;
    snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/level", i);
    FILE *f = fopen(path, "r");
    if (!f) continue;
    if (fscanf(f, "%d", &level) != 1) level = 0;
    fclose(f);
    snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/size", i);
    f = fopen(path, "r");
    if (!f) continue;
    size_t n = 0;
    if (fgets(buf, sizeof buf, f)) {
      char *end;
      n = strtoul(buf, &end, 10);
      if (*end == 'K') n <<= 10;
      else if (*end == 'M') n <<= 20;
    }
    fclose(f);
    if (level > best_level || (level == best_level && n > best)) best = n, best_level = level;
  }
  return best;
}

size_t bench_flush_bytes(void) {
  size_t llc = bench_llc_bytes();
#ifdef _SC_LEVEL3_CACHE_SIZE
  if (!llc) {
    long v = sysconf(_SC_LEVEL3_CACHE_SIZE);
    if (v <= 0) v = sysconf(_SC_LEVEL2_CACHE_SIZE);
    if (v > 0) llc = (size_t)v;
  }
#endif
  size_t n = llc ? 2 * llc : (size_t)64 << 20;
  if (n < ((size_t)64 << 20)) n = (size_t)64 << 20;
  if (n > ((size_t)1 << 30)) n = (size_t)1 << 30;
  return n;
}

/* Reads and writes every cache line of f[0, n): what the timed run reads
 * next comes from memory */
static void bench_flush(volatile unsigned char *f, size_t n) {
  for (size_t i = 0; i < n; i += 64) f[i] = (unsigned char)(f[i] + 1);
}

int bench_time(int k, void (*run)(void *, int), void (*prepare)(void *, int), void *ctx, const bench_timing *t,
               bench_stats *s) {
  int cap = t->repeats > 0 ? t->repeats : t->max_runs;
  double *x = util_malloc((size_t)cap * (size_t)k * sizeof *x, "timing samples");
  double *total = util_calloc((size_t)k, sizeof *total, "timing totals");
  unsigned char *flush = t->flush_bytes ? util_calloc(t->flush_bytes, 1, "cache flush buffer") : NULL;
  if (!x || !total || (t->flush_bytes && !flush)) {
    free(x);
    free(total);
    free(flush);
    return -1;
  }
  for (int w = 0; w < t->warmup; w++)
    for (int i = 0; i < k; i++) {
      if (prepare) prepare(ctx, i);
      run(ctx, i);
    }
  int n = 0, more = 1;
  while (n < cap && more) {
    for (int i = 0; i < k; i++) {
      if (prepare) prepare(ctx, i);
      if (flush) bench_flush(flush, t->flush_bytes);
      double t0 = util_now();
      run(ctx, i);
      x[(size_t)i * cap + n] = util_now() - t0;
      total[i] += x[(size_t)i * cap + n];
    }
    n++;
    more = t->repeats > 0 || n < t->min_runs;
    for (int i = 0; i < k && !more; i++) more = total[i] < t->min_seconds;
  }
  for (int i = 0; i < k; i++) bench_stats_of(x + (size_t)i * cap, n, &s[i]);
  free(x);
  free(total);
  free(flush);
  return 0;
}

/* ---- OpenBLAS ------------------------------------------------------------------------ */

#define BENCH_BLAS_LIB "libopenblas.so.0"
enum { BENCH_CBLAS_ROW_MAJOR = 101, BENCH_CBLAS_NO_TRANS = 111, BENCH_CBLAS_TRANS = 112 };

int bench_blas_open(int threads, bench_blas *b) {
  memset(b, 0, sizeof *b);
  snprintf(b->name, sizeof b->name, "%s", BENCH_BLAS_LIB);
  void *h = dlopen(BENCH_BLAS_LIB, RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    const char *e = dlerror();
    snprintf(b->why, sizeof b->why, "cannot load %s (%s)", BENCH_BLAS_LIB, e ? e : "dlopen failed");
    return -1;
  }
  b->sgemm = (bench_sgemm_fn)(uintptr_t)dlsym(h, "cblas_sgemm");
  void (*set_threads)(int) = (void (*)(int))(uintptr_t)dlsym(h, "openblas_set_num_threads");
  char *(*corename)(void) = (char *(*)(void))(uintptr_t)dlsym(h, "openblas_get_corename");
  int (*get_threads)(void) = (int (*)(void))(uintptr_t)dlsym(h, "openblas_get_num_threads");
  if (!b->sgemm || !set_threads) {
    snprintf(b->why, sizeof b->why, "%s has no %s", BENCH_BLAS_LIB, b->sgemm ? "openblas_set_num_threads" : "cblas_sgemm");
    dlclose(h);
    b->sgemm = NULL;
    return -1;
  }
  set_threads(threads);
  b->threads = get_threads ? get_threads() : threads;
  const char *core = corename ? corename() : NULL;
  snprintf(b->corename, sizeof b->corename, "%s", core ? core : "unknown");
  b->handle = h;
  return 0;
}

void bench_blas_close(bench_blas *b) {
  if (b->handle) dlclose(b->handle);
  b->handle = NULL;
  b->sgemm = NULL;
}

void bench_blas_gemm(const bench_blas *b, const gptc_bench_op *op, void *const *bufs) {
  /* row-major with the ABI's leading dimensions: lda = ta ? M : K,
   * ldb = tb ? K : N, ldc = N */
  b->sgemm(BENCH_CBLAS_ROW_MAJOR, op->ta ? BENCH_CBLAS_TRANS : BENCH_CBLAS_NO_TRANS,
           op->tb ? BENCH_CBLAS_TRANS : BENCH_CBLAS_NO_TRANS, op->M, op->N, op->K, 1.0f, bufs[op->a_buf],
           op->ta ? op->M : op->K, bufs[op->b_buf], op->tb ? op->K : op->N, op->accumulate ? 1.0f : 0.0f,
           bufs[op->c_buf], op->N);
}

/* ---- loading a benchmark source ---------------------------------------------------- */

static int bench_check(void *h, const char *so_path, void *ctx) {
  const char *hash = ctx;
  gptc_bench_get_fn get = (gptc_bench_get_fn)(uintptr_t)dlsym(h, GPTC_BENCH_SYMBOL);
  const gptc_bench *b = get ? get() : NULL;
  if (!b) return util_err("%s: no %s in the benchmark source", so_path, GPTC_BENCH_SYMBOL);
  if (b->abi_version != GPTC_BENCH_ABI_VERSION)
    return util_err("%s: benchmark ABI version %d, this gptc needs %d", so_path, b->abi_version,
                    GPTC_BENCH_ABI_VERSION);
  if (hash && (!b->hash || strcmp(b->hash, hash)))
    return util_err("%s: content hash does not match the generated benchmark source", so_path);
  return 0;
}

int bench_open_source(const char *src, size_t len, const char *hash, cpu_object *obj, const gptc_bench **out) {
  *out = NULL;
  if (cpu_build(src, len, "bench", bench_check, (void *)hash, obj)) return -1;
  *out = ((gptc_bench_get_fn)(uintptr_t)dlsym(obj->handle, GPTC_BENCH_SYMBOL))();
  return 0;
}

int bench_load(const cfg_t *cfg, cpu_object *obj, const gptc_bench **out) {
  char *src;
  size_t len;
  char hash[65];
  if (gen_bench_source(cfg, &src, &len, hash)) return -1;
  int rc = bench_open_source(src, len, hash, obj, out);
  free(src);
  return rc;
}

/* ---- one op ----------------------------------------------------------------------------- */

const char *const bench_var_names[BENCH_NVAR] = {"specialized", "generic", "library"};

double bench_rel_diff(const float *a, const float *ref, size_t n) {
  double d = 0, m = 0;
  for (size_t i = 0; i < n; i++) {
    if (!isfinite(a[i]) || !isfinite(ref[i])) return INFINITY;
    double e = fabs((double)a[i] - ref[i]);
    if (e > d) d = e;
    if (fabs(ref[i]) > m) m = fabs(ref[i]);
  }
  return m > 0 ? d / m : d;
}

/* splitmix64: a seeded stream per op, independent of the other ops */
static uint64_t bench_next(uint64_t *s) {
  uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

double bench_uniform(uint64_t *s) { return (double)(bench_next(s) >> 11) / (double)(1ull << 53); }

static void bench_fill(const gptc_bench_buf *d, void *p, uint64_t *s) {
  float *f = p;
  int32_t *ids = p;
  for (size_t i = 0; i < d->numel; i++) switch (d->init) {
    case GPTC_BENCH_RANDN: {
      double u1 = bench_uniform(s), u2 = bench_uniform(s);
      f[i] = (float)(sqrt(-2 * log(1 - u1)) * cos(2 * M_PI * u2));
      break;
    }
    case GPTC_BENCH_POSITIVE: f[i] = (float)(0.5 + bench_uniform(s)); break;
    case GPTC_BENCH_IDS: ids[i] = (int32_t)(bench_uniform(s) * (d->ids_below > 0 ? d->ids_below : 1)); break;
    default: f[i] = 0; break;
    }
}

/* An op's buffers: the live ones the kernels get, the filled snapshot and
 * the reference outputs, all 64-byte aligned. */
typedef struct {
  const gptc_bench_op *op;
  int n;
  void **live, **snap, **ref;
  size_t *bytes;
  gptc_bench_fn fn;         /* the variant a run calls */
  const bench_blas *blas;   /* or the library, when set */
} bench_bufs;

static void *bench_alloc(size_t bytes, const char *what) {
  void *p = NULL;
  size_t n = ((bytes ? bytes : 1) + 63) & ~(size_t)63;
  if (posix_memalign(&p, 64, n)) {
    util_err("out of memory: %s needs %zu bytes", what, n);
    return NULL;
  }
  memset(p, 0, n);
  return p;
}

static void bench_bufs_free(bench_bufs *s) {
  for (int i = 0; i < s->n; i++) {
    if (s->live) free(s->live[i]);
    if (s->snap) free(s->snap[i]);
    if (s->ref) free(s->ref[i]);
  }
  free(s->live), free(s->snap), free(s->ref), free(s->bytes);
}

static int bench_bufs_init(bench_bufs *s, const gptc_bench_op *op, uint64_t seed) {
  memset(s, 0, sizeof *s);
  s->op = op;
  int n = op->n_bufs;
  s->live = calloc((size_t)n + 1, sizeof(void *)), s->snap = calloc((size_t)n + 1, sizeof(void *));
  s->ref = calloc((size_t)n + 1, sizeof(void *)), s->bytes = calloc((size_t)n + 1, sizeof(size_t));
  s->n = n;
  if (!s->live || !s->snap || !s->ref || !s->bytes) {
    bench_bufs_free(s);
    return util_err("out of memory: the buffers of %s", op->kernel);
  }
  uint64_t st = seed;
  for (int i = 0; i < n; i++) {
    s->bytes[i] = op->bufs[i].numel * 4;
    char what[160];
    snprintf(what, sizeof what, "%s's buffer %s", op->kernel, op->bufs[i].name);
    if (!(s->live[i] = bench_alloc(s->bytes[i], what)) || !(s->snap[i] = bench_alloc(s->bytes[i], what)) ||
        ((op->bufs[i].out || (op->gemm && i == op->c_buf)) && !(s->ref[i] = bench_alloc(s->bytes[i], what)))) {
      bench_bufs_free(s);
      return -1;
    }
    bench_fill(&op->bufs[i], s->snap[i], &st);
  }
  return 0;
}

static void bench_restore(bench_bufs *s) {
  for (int i = 0; i < s->n; i++) memcpy(s->live[i], s->snap[i], s->bytes[i]);
}

/* one call of the current variant (fn), or of the library */
static void bench_call(bench_bufs *s) {
  if (s->blas) bench_blas_gemm(s->blas, s->op, s->live);
  else s->fn(s->live, s->op->dims);
}

/* one run from the snapshot; the outputs `which` (-1: every out buffer) are
 * kept as the reference, or compared with it (the largest error) */
static double bench_once(bench_bufs *s, int which, int keep) {
  bench_restore(s);
  bench_call(s);
  double worst = 0;
  for (int i = 0; i < s->n; i++) {
    if (which >= 0 ? i != which : !s->op->bufs[i].out) continue;
    if (keep) {
      memcpy(s->ref[i], s->live[i], s->bytes[i]);
      continue;
    }
    double e;
    if (s->op->bufs[i].init == GPTC_BENCH_IDS) e = memcmp(s->ref[i], s->live[i], s->bytes[i]) ? INFINITY : 0;
    else e = bench_rel_diff(s->live[i], s->ref[i], s->op->bufs[i].numel);
    if (!(e <= worst)) worst = e;
  }
  return worst;
}

/* the variants being timed, for bench_time's callbacks */
typedef struct {
  bench_bufs *s;
  gptc_bench_fn fns[BENCH_NVAR];
} bench_timed;

static void bench_timed_prepare(void *ctx, int i) {
  bench_timed *t = ctx;
  t->s->fn = t->fns[i];
  bench_restore(t->s);
}

static void bench_timed_run(void *ctx, int i) {
  (void)i;
  bench_call(((bench_timed *)ctx)->s);
}

/* The op's description is consistent: the library reads and writes its
 * buffers by M, N and K, so they must be that large. */
static int bench_op_valid(const gptc_bench_op *op) {
  if (op->n_bufs < 1 || !op->bufs || !op->specialized || !op->generic || (op->n_dims && !op->dims))
    return util_err("benchmark op %s: no buffers, dims or variants", op->kernel);
  if (!op->gemm) return 0;
  int ab = op->a_buf, bb = op->b_buf, cb = op->c_buf;
  if (ab < 0 || ab >= op->n_bufs || bb < 0 || bb >= op->n_bufs || cb < 0 || cb >= op->n_bufs || !op->plain)
    return util_err("benchmark op %s: matmul buffers %d/%d/%d outside its %d buffers (or no plain variant)",
                    op->kernel, ab, bb, cb, op->n_bufs);
  if (op->M < 1 || op->N < 1 || op->K < 1 || op->bufs[ab].numel < (size_t)op->M * op->K ||
      op->bufs[bb].numel < (size_t)op->K * op->N || op->bufs[cb].numel < (size_t)op->M * op->N)
    return util_err("benchmark op %s: buffers smaller than its %dx%dx%d product", op->kernel, op->M, op->N, op->K);
  return 0;
}

static int bench_status(double err) { return err <= BENCH_TOLERANCE ? BENCH_OK : BENCH_MISMATCH; }

int bench_op_run(const gptc_bench_op *op, uint64_t seed, const bench_timing *t, bench_op_result *r) {
  memset(r, 0, sizeof *r);
  r->op = op;
  r->v[BENCH_LIB].status = BENCH_NA;
  if (bench_op_valid(op)) return -1;
  bench_bufs s;
  if (bench_bufs_init(&s, op, seed)) return -1;
  /* the generic variant is the reference; run twice and compared with
   * itself, a non-finite or irreproducible output is still caught */
  s.fn = op->generic;
  bench_once(&s, -1, 1);
  r->v[BENCH_GEN].err = bench_once(&s, -1, 0);
  s.fn = op->specialized;
  r->v[BENCH_SPEC].err = bench_once(&s, -1, 0);
  /* matmuls: plain's C, the reference the library is checked against later */
  if (op->gemm) {
    s.fn = op->plain;
    bench_once(&s, op->c_buf, 1);
    r->plain_c = s.ref[op->c_buf];
    s.ref[op->c_buf] = NULL;
  }
  /* the variants that match are timed round-robin, so a disturbance that
   * lasts a while (another process) hits them alike */
  bench_timed tm = {&s, {0}};
  int idx[2], k = 0;
  for (int v = BENCH_SPEC; v <= BENCH_GEN; v++) {
    r->v[v].status = bench_status(r->v[v].err);
    if (r->v[v].status == BENCH_OK) idx[k] = v, tm.fns[k++] = v == BENCH_SPEC ? op->specialized : op->generic;
  }
  bench_stats st[2];
  int rc = k ? bench_time(k, bench_timed_run, bench_timed_prepare, &tm, t, st) : 0;
  for (int i = 0; i < k && !rc; i++) r->v[idx[i]].t = st[i];
  bench_bufs_free(&s);
  return rc;
}

int bench_op_lib(const gptc_bench_op *op, uint64_t seed, const bench_timing *t, const bench_blas *blas,
                 bench_op_result *r) {
  if (!op->gemm || !r->plain_c || !blas || !blas->sgemm) return 0;
  bench_bufs s;
  if (bench_bufs_init(&s, op, seed)) return -1;
  free(s.ref[op->c_buf]);
  s.ref[op->c_buf] = r->plain_c;
  r->plain_c = NULL;
  s.blas = blas;
  bench_var *v = &r->v[BENCH_LIB];
  v->err = bench_once(&s, op->c_buf, 0);
  v->status = bench_status(v->err);
  int rc = 0;
  if (v->status == BENCH_OK) {
    bench_timed tm = {&s, {0}};
    rc = bench_time(1, bench_timed_run, bench_timed_prepare, &tm, t, &v->t);
  }
  bench_bufs_free(&s);
  return rc;
}

void bench_op_free(bench_op_result *r) {
  free(r->plain_c);
  r->plain_c = NULL;
}

/* ---- races (gptc tune) ------------------------------------------------------------------ */

/* the candidates being raced, for bench_time's callbacks */
typedef struct {
  bench_bufs *s;
  const gptc_bench_fn *fns;
} bench_racers;

static void bench_race_prepare(void *ctx, int i) {
  bench_racers *r = ctx;
  r->s->fn = r->fns[i];
  bench_restore(r->s);
}

static void bench_race_run(void *ctx, int i) {
  (void)i;
  bench_call(((bench_racers *)ctx)->s);
}

int bench_race_open(bench_race *r, const gptc_bench_op *const *ops, int k, uint64_t seed) {
  memset(r, 0, sizeof *r);
  bench_bufs *s = util_calloc(1, sizeof *s, "race buffers");
  r->same = util_calloc((size_t)(k ? k : 1), sizeof *r->same, "race results");
  if (!s || !r->same || bench_op_valid(ops[0]) || bench_bufs_init(s, ops[0], seed)) {
    free(s);
    free(r->same);
    return -1;
  }
  r->bufs = s;
  r->ops = ops;
  r->k = k;
  s->fn = ops[0]->generic;
  bench_once(s, -1, 1);
  for (int i = 0; i < k; i++) {
    /* the same bits in every output as the reference */
    bench_restore(s);
    ops[i]->specialized(s->live, ops[i]->dims);
    r->same[i] = 1;
    for (int b = 0; b < s->n; b++)
      if (ops[0]->bufs[b].out && memcmp(s->live[b], s->ref[b], s->bytes[b])) r->same[i] = 0;
  }
  return 0;
}

int bench_race_time(bench_race *r, const int *which, int n, const bench_timing *t, bench_stats *st) {
  gptc_bench_fn *fns = util_malloc((size_t)(n ? n : 1) * sizeof *fns, "race");
  if (!fns) return -1;
  for (int i = 0; i < n; i++) fns[i] = r->ops[which[i]]->specialized;
  bench_racers rc = {r->bufs, fns};
  int rv = bench_time(n, bench_race_run, bench_race_prepare, &rc, t, st);
  free(fns);
  return rv;
}

void bench_race_close(bench_race *r) {
  if (r->bufs) bench_bufs_free(r->bufs);
  free(r->bufs);
  free(r->same);
  memset(r, 0, sizeof *r);
}
