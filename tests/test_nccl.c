/* Data-parallel training on GPUs without a GPU: `mpirun gptc train --device
 * cuda` over the host emulator of the driver (tests/gpu/emu/fakecuda.c) and
 * a fake NCCL over MPI (tests/gpu/emu/fakenccl.c), both selected through
 * the environment (GPTC_LIBCUDA, GPTC_LIBNCCL) exactly as the real
 * libraries are. Checked: N ranks x grad_accum g == one CUDA process x
 * grad_accum N*g bit for bit (weights, moments, log losses), the CUDA
 * data-parallel kernels against the CPU's loops (bf16 rounding included),
 * faults (a NaN on one rank, a failing NCCL link, no NCCL at all), and bf16
 * gradients on the wire (deterministic, close to fp32, half the bytes), on
 * the CPU through MPI too. Where the emulator, NVRTC or mpicc is missing
 * the cases are reported skipped (tu_skip), never passed. */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "cfg.h"
#include "ckpt.h"
#include "cuda.h"
#include "testutil.h"
#include "util.h"

static const char *cfg(void) { return tu_src("configs/tiny-test.lua"); }

static const char *dir(const char *name) {
  static char b[4][1024];
  static int i;
  char *p = b[i++ & 3];
  snprintf(p, 1024, "%s/%s", tu_tmpdir(), name);
  return p;
}

/* mpicc, to build the fake NCCL: NULL when it runs */
static const char *mpicc_missing(void) {
  return system("mpicc --version >/dev/null 2>&1") == 0 ? NULL : "no mpicc to build the fake NCCL";
}

/* The fake driver and the fake NCCL (built once per test process), and the
 * environment every rank inherits: one fake GPU per rank. */
static void fakes(void) {
  static int ready;
  if (ready) return;
  tu_fake_cuda("test_nccl");
  char lib[1100], cmd[3000];
  snprintf(lib, sizeof lib, "%s/libnccl.so.2", tu_tmpdir());
  snprintf(cmd, sizeof cmd, "mpicc -O2 -shared -fPIC -o '%s' '%s'", lib, tu_src("tests/gpu/emu/fakenccl.c"));
  ck_assert_msg(system(cmd) == 0, "building the fake NCCL failed: %s", cmd);
  setenv("GPTC_LIBNCCL", lib, 1);
  setenv("FAKECUDA_DEVICES", "3", 1);
  ready = 1;
}

/* One CUDA process (the reference). */
static void single(const char *out, const char *args) {
  tu_run_result r;
  ck_assert_msg(tu_run(&r, NULL, "train --config '%s' --out '%s' --device cuda --quiet %s", cfg(), out, args) == 0, "%s",
                r.err);
  tu_run_free(&r);
}

/* ---- bitwise: N ranks over NCCL == one process with grad_accum N x g ---- */

START_TEST(two_ranks_equal_accum_two) {
  fakes();
  const char *a = dir("n2-single"), *b = dir("n2-ranks");
  single(a, "--steps 3 --set train.grad_accum=2");
  tu_run_result r;
  int code = tu_mpi_run(&r, NULL, "-np 2 '%s' train --config '%s' --out '%s' --device cuda --steps 3", GPTC_EXE, cfg(), b);
  ck_assert_msg(code == 0, "%s", r.err);
  ck_assert_msg(strstr(r.out, "data-parallel: 2 ranks (NCCL) | batch 4 = 2 ranks x batch_size 2 x grad_accum 1\n"), "%s",
                r.out);
  ck_assert_msg(strstr(r.out, "cuda: gptc CUDA emulator (host), sm_80"), "%s", r.out);
  tu_run_free(&r);
  tu_same_run(a, b);
}
END_TEST

START_TEST(three_ranks_equal_accum_three) {
  fakes();
  const char *a = dir("n3-single"), *b = dir("n3-ranks");
  single(a, "--steps 2 --set train.grad_accum=3");
  tu_run_result r;
  int code = tu_mpi_run(&r, NULL, "-np 3 '%s' train --config '%s' --out '%s' --device cuda --quiet --steps 2", GPTC_EXE,
                        cfg(), b);
  ck_assert_msg(code == 0, "%s", r.err);
  tu_run_free(&r);
  tu_same_run(a, b);
}
END_TEST

/* ---- faults: every rank stops with one message, the checkpoint intact ---- */

/* err says `msg` (after a "gptc: rank R of N: " prefix), and every line of it
 * that says "training stopped:" says the same (whichever ranks print it) */
static void same_message(const char *err, const char *msg) {
  int n = 0;
  for (const char *p = err; (p = strstr(p, "training stopped:")); p++, n++)
    ck_assert_msg(!strncmp(p, msg, strlen(msg)), "%s", err);
  ck_assert_msg(n >= 1, "%s", err);
}

START_TEST(faults) {
  fakes();
  const char *a = dir("f-ref"), *b = dir("f-nan"), *c = dir("f-link");
  single(a, "--steps 1 --set train.grad_accum=2 --set train.eval_interval=1");
  /* a NaN in rank 1's gradient at step 2 */
  tu_run_result r;
  int code = tu_mpi_run(&r, "GPTC_DIST_NAN=1:2", "-np 2 '%s' train --config '%s' --out '%s' --device cuda --quiet --steps 3 "
                                                 "--set train.eval_interval=1", GPTC_EXE, cfg(), b);
  ck_assert_int_ne(code, 0);
  same_message(r.err, "training stopped: loss is nan at step 2 (from a micro-batch of rank 1 of 2); the last good "
                      "checkpoint is ");
  tu_run_free(&r);
  tu_same_tensors(a, b, "last.safetensors");
  tu_same_tensors(a, b, "last.opt.safetensors");
  /* rank 1's NCCL link fails in its third group (step 2's exchange) */
  code = tu_mpi_run(&r, "FAKENCCL_FAIL=1:3", "-np 2 '%s' train --config '%s' --out '%s' --device cuda --quiet --steps 3 "
                                             "--set train.eval_interval=1", GPTC_EXE, cfg(), c);
  ck_assert_int_ne(code, 0);
  /* only rank 1 fails; MPI_Abort ends rank 0 without a word of its own */
  const char *m = strstr(r.err, "gptc: rank 1 of 2: NCCL group end (gradient exchange) failed: fakenccl: injected "
                                "failure (FAKENCCL_FAIL): the link to the other ranks is down\n");
  ck_assert_msg(m && !strstr(m + 1, "gptc: rank"), "%s", r.err);
  tu_run_free(&r);
  tu_same_tensors(a, c, "last.safetensors");
  ckpt_meta meta;
  char path[1200];
  snprintf(path, sizeof path, "%s/last.safetensors", c);
  ck_assert_msg(ckpt_load_meta(path, &meta) == 0, "%s", util_errmsg());
  ck_assert_uint_eq(meta.step, 1);
  ckpt_meta_free(&meta);
}
END_TEST

/* without NCCL: one line naming the library, every rank stopped, nothing written */
START_TEST(no_nccl) {
  fakes();
  const char *b = dir("no-nccl");
  tu_run_result r;
  int code = tu_mpi_run(&r, "GPTC_LIBNCCL=/nonexistent/libnccl.so.2",
                        "-np 2 '%s' train --config '%s' --out '%s' --device cuda --quiet --steps 2", GPTC_EXE, cfg(), b);
  ck_assert_int_ne(code, 0);
  const char *m = strstr(r.err, ": cannot load NCCL /nonexistent/libnccl.so.2 (");
  ck_assert_msg(m && strstr(m, "): install NCCL or train on the CPU\n"), "%s", r.err);
  ck_assert_msg(strstr(r.err, "gptc: rank "), "%s", r.err);
  tu_run_free(&r);
  char path[1200];
  snprintf(path, sizeof path, "%s/last.safetensors", b);
  ck_assert(!util_file_exists(path));
}
END_TEST

/* ---- the data-parallel kernels against the CPU's loops ---- */

/* bf16 of x by round to nearest even, as fixed bit patterns (the reference) */
static const struct {
  uint32_t f;
  uint16_t h;
} BF16[] = {
    {0x3f800000u, 0x3f80}, /* 1 */
    {0x3f808000u, 0x3f80}, /* 1 + 2^-8: a tie, to the even 0x3f80 */
    {0x3f818000u, 0x3f82}, /* 1 + 3 2^-8: a tie, to the even 0x3f82 */
    {0x3f808001u, 0x3f81}, /* just above the tie: up */
    {0x3f807fffu, 0x3f80}, /* just below: down */
    {0xbf818000u, 0xbf82}, /* negative ties alike */
    {0x80000000u, 0x8000}, /* -0 */
    {0x00000001u, 0x0000}, /* the smallest subnormal: to +0 */
    {0x00018000u, 0x0002}, /* a subnormal tie: to even */
    {0x7f800000u, 0x7f80}, /* inf */
    {0xff800000u, 0xff80}, /* -inf */
    {0x7f7fffffu, 0x7f80}, /* FLT_MAX rounds to inf */
    {0x7fc00000u, 0x7fc0}, /* a quiet NaN */
    {0x7f800001u, 0x7fc0}, /* a NaN whose payload is below bit 16 stays a NaN (quiet) */
    {0xffc00001u, 0xffc0},
};
#define N_BF16 (sizeof BF16 / sizeof *BF16)

static backend *open_dev(const char *device) {
  cfg_t c;
  ck_assert_msg(cfg_load_file(cfg(), &c) == 0, "%s", util_errmsg());
  ck_assert_msg(cfg_set_vocab(&c, 62) == 0, "%s", util_errmsg());
  backend *b;
  ck_assert_msg(backend_open(&c, device, &b) == 0, "%s", util_errmsg());
  ck_assert_msg(b->ops->alloc(b, BACKEND_TRAIN) == 0, "%s", util_errmsg());
  return b;
}

START_TEST(dist_kernels) {
  fakes();
  backend *dev[2] = {open_dev("cpu"), open_dev("cuda")};
  enum { N = 4099 }; /* past a 256-thread block, not a multiple of it */
  float *x = malloc(N * sizeof *x), *y = malloc(N * sizeof *y), *got[2]; // (N) each
  uint16_t *h = malloc(N * sizeof *h);                                 // (N)
  uint64_t s = 0x9e3779b97f4a7c15ull;
  for (int i = 0; i < N; i++) {
    uint32_t u;
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    u = i < (int)N_BF16 ? BF16[i].f : (uint32_t)(s >> 32);
    memcpy(&x[i], &u, 4);
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    y[i] = (float)((double)(s >> 11) / 9007199254740992.0 - 0.5);
  }
  uint16_t *h16[2];
  for (int d = 0; d < 2; d++) {
    backend *b = dev[d];
    const backend_ops *o = b->ops;
    /* (the emulator's device memory is host memory: read back in place) */
    float *dx = o->vec_alloc(b, N, 4, "x"), *dy = o->vec_alloc(b, N, 4, "y");
    uint16_t *dh = o->vec_alloc(b, N, 2, "h");
    ck_assert(dx && dy && dh);
    ck_assert_int_eq(o->vec_copy(b, dx, x, N * 4, 1), 0);
    ck_assert_int_eq(o->vec_copy(b, dy, y, N * 4, 1), 0);
    ck_assert_int_eq(o->vec_to_bf16(b, dh, dx, N), 0);
    /* y += x, y += float(h), then x = float(h), all in order */
    ck_assert_int_eq(o->vec_add(b, dy, dx, N), 0);
    ck_assert_int_eq(o->vec_add_bf16(b, dy, dh, N), 0);
    ck_assert_int_eq(o->vec_from_bf16(b, dx, dh, N), 0);
    ck_assert_int_eq(o->vec_copy(b, dx + 1, dx, 8 * 4, 0), 0); /* overlapping moves are memmove's */
    ck_assert_int_eq(o->vec_zero(b, dx + N - 3, 3 * 4), 0);
    /* (the emulator runs every launch at once: nothing to wait for) */
    got[d] = malloc(2 * N * sizeof(float));
    h16[d] = malloc(N * sizeof(uint16_t));
    memcpy(got[d], dx, N * 4);
    memcpy(got[d] + N, dy, N * 4);
    memcpy(h16[d], dh, N * 2);
    o->vec_free(b, dx), o->vec_free(b, dy), o->vec_free(b, dh);
  }
  /* the fixed patterns, on both */
  for (int d = 0; d < 2; d++)
    for (size_t i = 0; i < N_BF16; i++)
      ck_assert_msg(h16[d][i] == BF16[i].h, "%s: bf16(0x%08x) = 0x%04x, expected 0x%04x", dev[d]->device, BF16[i].f,
                    h16[d][i], BF16[i].h);
  /* an independent reference for the rest: the nearest bf16 in double, ties to the even one */
  for (int i = (int)N_BF16; i < N; i++) {
    if (isnan(x[i]) || isinf(x[i])) continue;
    uint32_t u;
    memcpy(&u, &x[i], 4);
    uint32_t lo = u & 0xffff0000u, hi = lo + 0x10000u;
    float fl, fh;
    memcpy(&fl, &lo, 4);
    memcpy(&fh, &hi, 4);
    double dl = fabs((double)x[i] - fl), dh = fabs((double)fh - x[i]);
    uint16_t want = (uint16_t)((dl < dh || (dl == dh && !((lo >> 16) & 1)) ? lo : hi) >> 16);
    ck_assert_msg(h16[0][i] == want, "cpu: bf16(0x%08x) = 0x%04x, expected 0x%04x", u, h16[0][i], want);
  }
  /* the GPU's kernels give the CPU's bits */
  ck_assert(!memcmp(h16[0], h16[1], N * 2));
  ck_assert(!memcmp(got[0], got[1], 2 * N * sizeof(float)));
  /* and the sums are the plain ordered fp32 adds */
  for (int i = (int)N_BF16; i < N - 3; i += 97) {
    uint32_t w = (uint32_t)h16[0][i] << 16;
    float hf, yy = y[i];
    memcpy(&hf, &w, 4);
    yy += x[i];
    yy += hf;
    ck_assert_msg(got[0][N + i] == yy || (isnan(yy) && isnan(got[0][N + i])), "y[%d]", i);
  }
  for (int d = 0; d < 2; d++) free(got[d]), free(h16[d]), backend_close(dev[d]);
  free(x), free(y), free(h);
#ifdef GPTC_HAVE_NVRTC
  /* the unit compiles for a Hopper GPU too, without a warning */
  char path[1200], *src = NULL;
  size_t len;
  snprintf(path, sizeof path, "%s/cuda", util_cache_dir());
  tu_run_result r;
  ck_assert_int_eq(tu_sh(&r, NULL, "grep -l 'gptc CUDA kernel unit dist ' '%s'/*.cu | head -1", path), 0);
  char *nl = strchr(r.out, '\n');
  if (nl) *nl = 0;
  ck_assert_msg(util_read_file(r.out, &src, &len) == 0, "%s", r.out);
  char *bin = NULL, *log = NULL;
  size_t n;
  ck_assert_msg(cuda_nvrtc_compile(src, r.out, "sm_90", 0, &bin, &n, &log) == 0, "%s", util_errmsg());
  ck_assert_msg(!log || !*log, "%s", log);
  free(bin), free(log), free(src);
  tu_run_free(&r);
#endif
}
END_TEST

/* ---- bf16 gradients on the wire ---- */

/* The `loss` of log line `step` of run dir. */
static double log_loss(const char *run, int step) {
  char path[1200], *log, key[64];
  size_t len;
  snprintf(path, sizeof path, "%s/log.jsonl", run);
  ck_assert_int_eq(util_read_file(path, &log, &len), 0);
  snprintf(key, sizeof key, "{\"step\":%d,\"loss\":", step);
  char *p = strstr(log, key);
  ck_assert_msg(p != NULL, "%s", log);
  double v = atof(p + strlen(key));
  free(log);
  return v;
}

/* The bytes rank 0 says it moves per step. */
static double moved(const char *out, const char *type) {
  char key[64];
  snprintf(key, sizeof key, "gradients between ranks: %s | ", type);
  const char *p = strstr(out, key);
  ck_assert_msg(p != NULL, "%s", out);
  return atof(p + strlen(key));
}

static void job(const char *device, const char *out, const char *args, double *bytes, const char *type) {
  tu_run_result r;
  int code = tu_mpi_run(&r, NULL, "-np 2 '%s' train --config '%s' --out '%s' --device %s --no-tune %s", GPTC_EXE, cfg(),
                        out, device, args);
  ck_assert_msg(code == 0, "%s", r.err);
  *bytes = moved(r.out, type);
  tu_run_free(&r);
}

START_TEST(bf16_gradients_cpu) {
  const char *a = dir("g32"), *b = dir("g16"), *c = dir("g16-again");
  double b32, b16, again;
  job("cpu", a, "--steps 10", &b32, "fp32");
  job("cpu", b, "--steps 10 --dist-grad bf16", &b16, "bf16");
  job("cpu", c, "--steps 10 --dist-grad bf16", &again, "bf16");
  /* deterministic: two runs are one */
  tu_same_run(b, c);
  /* the weights differ from fp32's, the loss barely */
  tu_run_result r;
  ck_assert_int_eq(tu_sh(&r, NULL, "cmp -s '%s/last.safetensors' '%s/last.safetensors'", a, b), 1);
  tu_run_free(&r);
  double l32 = log_loss(a, 10), l16 = log_loss(b, 10);
  ck_assert_msg(fabs(l32 - l16) < 2e-2, "loss at step 10: fp32 %.6f, bf16 %.6f", l32, l16);
  /* half the bytes: 2 ranks, (1 + 1) x (n/2 + n/2) elements of 4 or 2 bytes */
  ck_assert_msg(b32 > 0 && b16 * 2 == b32, "fp32 %g bytes, bf16 %g", b32, b16);
  /* a single process has nothing to send */
  ck_assert_int_ne(tu_run(&r, NULL, "train --config '%s' --out '%s' --dist-grad bf16 --steps 1", cfg(), dir("g-single")), 0);
  ck_assert_msg(strstr(r.err, "--dist-grad bf16: sets how gradients travel between the ranks of an MPI job"), "%s", r.err);
  tu_run_free(&r);
  ck_assert_int_ne(tu_run(&r, NULL, "train --config '%s' --dist-grad fp16", cfg()), 0);
  ck_assert_msg(strstr(r.err, "option '--dist-grad' must be fp32 or bf16 (got 'fp16')"), "%s", r.err);
  tu_run_free(&r);
}
END_TEST

START_TEST(bf16_gradients_nccl) {
  fakes();
  const char *a = dir("c32"), *b = dir("c16"), *c = dir("c16-again");
  double b32, b16, again;
  /* (3 steps: the emulator is slow; the CPU case runs 10 through the same dist.c) */
  job("cuda", a, "--steps 3", &b32, "fp32");
  job("cuda", b, "--steps 3 --dist-grad bf16", &b16, "bf16");
  job("cuda", c, "--steps 3 --dist-grad bf16", &again, "bf16");
  tu_same_run(b, c);
  double l32 = log_loss(a, 3), l16 = log_loss(b, 3);
  ck_assert_msg(fabs(l32 - l16) < 2e-2, "loss at step 3: fp32 %.6f, bf16 %.6f", l32, l16);
  ck_assert_msg(b32 > 0 && b16 * 2 == b32, "fp32 %g bytes, bf16 %g", b32, b16);
}
END_TEST

int main(void) {
  Suite *s = suite_create("nccl");
  tu_add_case(s, "bf16_cpu", bf16_gradients_cpu, 300);
  const char *missing = tu_fake_cuda_missing();
  if (!missing) missing = mpicc_missing();
#ifndef GPTC_HAVE_NVRTC
  missing = "built without NVRTC (the CUDA backend)";
#endif
  if (missing) {
    char why[300]; /* bf16_cpu still runs: the exit status is still "skipped" */
    snprintf(why, sizeof why, "the emulated GPU cases cannot run: %s", missing);
    tu_skip("test_nccl", "nccl", why);
  } else {
    tu_add_case(s, "kernels", dist_kernels, 300);
    tu_add_case(s, "two_ranks", two_ranks_equal_accum_two, 300);
    tu_add_case(s, "three_ranks", three_ranks_equal_accum_three, 300);
    tu_add_case(s, "faults", faults, 300);
    tu_add_case(s, "no_nccl", no_nccl, 300);
    tu_add_case(s, "bf16_nccl", bf16_gradients_nccl, 300);
  }
  return tu_main(s);
}
