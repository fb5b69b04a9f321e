/* The AVX512-BF16 and AMX bf16 GEMM kernels run on every host, through the
 * intrinsics emulated from Intel's definitions (tests/emu_x86/x86emu.h; the
 * generated source built with GPTC_X86_EMU). Checked: the emulation itself
 * on hand-computed cases per intrinsic (the orders, a rounding tie, DAZ, FTZ,
 * NaN priority, and the faults a bad tile layout would raise); the
 * vdpbf16ps kernel equal to the portable kernel bit for bit on every plain
 * GEMM instance (edge strips, odd K, denormals, NaN and Inf); the AMX kernel
 * equal to a scalar reference of the SDM's tdpbf16ps order bit for bit and
 * to the portable kernel within test_bf16hw's tolerance; bf16 training
 * through each within 2e-2 of fp32, vdpbf16ps's state after it equal to the
 * portable path's. What only the real CPU can show (speed, and that the
 * silicon follows the manual) is test_bf16hw's. */
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bf16test.h"

#include "emu_x86/x86emu.h"

/* ---- the emulation on its own --------------------------------------------------- */

static float f(uint32_t u) { return from_bits(u); }
/* a vector of 16 equal fp32 lanes, and 32 bf16 lanes all (hi, lo) pairs */
static __m512 splat(float x) {
  __m512 v;
  for (int i = 0; i < 16; i++) v[i] = x;
  return v;
}
static __m512bh pairs(uint16_t hi, uint16_t lo) {
  return (__m512bh)_mm512_set1_epi32((int)((uint32_t)hi << 16 | lo));
}
/* lane 0 of vdpbf16ps(c, (a_hi, a_lo), (b_hi, b_lo)), after checking all 16 lanes agree */
static uint32_t dp(float c, uint16_t ahi, uint16_t alo, uint16_t bhi, uint16_t blo) {
  __m512 r = _mm512_dpbf16_ps(splat(c), pairs(ahi, alo), pairs(bhi, blo));
  for (int i = 1; i < 16; i++) ck_assert_uint_eq(bits(r[i]), bits(r[0]));
  return bits(r[0]);
}

/* bf16 bits of a few exact values */
#define BF_1 0x3f80     /* 1 */
#define BF_M1 0xbf80    /* -1 */
#define BF_2M12 0x3980  /* 2^-12 */
#define BF_2M15 0x3800  /* 2^-15 */
#define BF_2M70 0x1c80  /* 2^-70 */
#define BF_M2M70 0x9c80 /* -2^-70 */
#define BF_2P100 0x7180 /* 2^100 */
#define BF_DENORM 0x0001 /* 2^-133, a bf16 denormal */
#define BF_2M63 0x2000  /* 2^-63 */

START_TEST(emu_avx512) {
  /* loads and stores: 64 bytes at any alignment; set1: every dword lane */
  uint8_t buf[80], out[80];
  for (int i = 0; i < 80; i++) buf[i] = (uint8_t)(i * 7 + 1);
  memset(out, 0, sizeof out);
  _mm512_storeu_ps(out + 3, (__m512)_mm512_loadu_si512(buf + 5));
  ck_assert_int_eq(memcmp(out + 3, buf + 5, 64), 0);
  ck_assert_int_eq(out[2] | out[67], 0);
  __m512i s = _mm512_set1_epi32((int)0x89abcdefu);
  uint32_t w[16];
  memcpy(w, &s, 64);
  for (int i = 0; i < 16; i++) ck_assert_uint_eq(w[i], 0x89abcdefu);

  /* the odd (high) element first: 1 + (-1) 1 = 0, then + 2^-15 2^-15 = 2^-30;
   * the even one first would lose 2^-30 in 1 + 2^-30 and give 0 */
  ck_assert_uint_eq(dp(1.0f, BF_M1, BF_2M15, BF_1, BF_2M15), bits(0x1p-30f));
  /* a rounding tie to even: 1 + 2^-24 is 1; (1 + 2^-23) + 2^-24 is 1 + 2^-22 */
  ck_assert_uint_eq(dp(1.0f, BF_2M12, 0, BF_2M12, 0), bits(1.0f));
  ck_assert_uint_eq(dp(0x1.000002p0f, 0, BF_2M12, 0, BF_2M12), 0x3f800002u);
  /* DAZ: a bf16 denormal (2^-133) times 2^100 is 0, not 2^-33; an fp32
   * denormal start 3 2^-149 adds nothing to 2^-63 2^-63 = 2^-126 */
  ck_assert_uint_eq(dp(0.0f, BF_DENORM, 0, BF_2P100, 0), 0u);
  ck_assert_uint_eq(dp(f(3), BF_2M63, 0, BF_2M63, 0), 0x00800000u);
  /* FTZ: 2^-70 2^-70 = 2^-140 (an fp32 denormal) is flushed to a zero of its sign */
  ck_assert_uint_eq(dp(0.0f, BF_2M70, 0, BF_2M70, 0), 0u);
  ck_assert_uint_eq(dp(-0.0f, BF_M2M70, BF_M2M70, BF_2M70, BF_2M70), 0x80000000u);
  /* (but -0 + 0 0 is +0, as any RNE sum of opposite zeros) */
  ck_assert_uint_eq(dp(-0.0f, BF_M2M70, 0, BF_2M70, 0), 0u);
  /* NaN priority (Table 5-1): src1 low over src2 high, quieted; srcdest last */
  ck_assert_uint_eq(dp(1.0f, BF_1, 0x7f81, 0xffc2, BF_1), 0x7fc10000u);
  ck_assert_uint_eq(dp(f(0x7fa00000u), BF_1, BF_1, BF_1, BF_1), 0x7fe00000u);
  ck_assert_uint_eq(dp(1.0f, BF_1, 0, 0xffc2, BF_1), 0xffc20000u);
  /* inf x 0 is the QNaN indefinite */
  ck_assert_uint_eq(dp(1.0f, 0x7f80, 0, 0, 0), 0xffc00000u);
  ck_assert_uint_eq(dp(f(0xff800000u), 0x7f80, 0, BF_1, 0), 0xffc00000u);
}
END_TEST

/* a palette-1 configuration with the given (rows, colsb) of tiles 0..n-1 */
typedef struct {
  uint8_t palette, start_row, reserved[14];
  uint16_t colsb[16];
  uint8_t rows[16];
} __attribute__((aligned(64))) tilecfg;

static tilecfg cfg3(int r0, int c0, int r1, int c1, int r2, int c2) {
  tilecfg c;
  memset(&c, 0, sizeof c);
  c.palette = 1;
  c.rows[0] = (uint8_t)r0, c.colsb[0] = (uint16_t)c0;
  c.rows[1] = (uint8_t)r1, c.colsb[1] = (uint16_t)c1;
  c.rows[2] = (uint8_t)r2, c.colsb[2] = (uint16_t)c2;
  return c;
}

/* C (1 x 1) += A (1 x 4 k) B (4 k x 1) through tiles 0, 1, 2 */
static uint32_t tdp(float c, const uint16_t a[4], const uint16_t b[4]) {
  tilecfg cfg = cfg3(1, 4, 1, 8, 2, 4);
  _tile_loadconfig(&cfg);
  const uint16_t bm[4] = {b[0], b[1], b[2], b[3]}; /* B rows: the pairs (k0, k1), (k2, k3) */
  float cm = c, out = -1;
  _tile_loadd(0, &cm, 4);
  _tile_loadd(1, a, 8);
  _tile_loadd(2, bm, 4);
  _tile_dpbf16ps(0, 1, 2);
  _tile_stored(0, &out, 4);
  return bits(out);
}

START_TEST(emu_amx) {
  /* the SDM order: the even elements' products (k 0, 2) summed from zero, the
   * odd ones' (k 1, 3) likewise, then c += even + odd: (1 - 1) + (2^-24 + 2^-24)
   * = 2^-23; vdpbf16ps's order (odd, even, odd, even into c) gives 0 */
  const uint16_t a1[4] = {BF_1, BF_2M12, BF_M1, BF_2M12}, b1[4] = {BF_1, BF_2M12, BF_1, BF_2M12};
  ck_assert_uint_eq(tdp(0.0f, a1, b1), bits(0x1p-23f));
  /* a rounding tie in the last add: 1 + (2^-24 + 0) is 1; 1 + 2^-23 + 2^-24 is 1 + 2^-22 */
  const uint16_t a2[4] = {BF_2M12, 0, 0, 0}, b2[4] = {BF_2M12, 0, 0, 0};
  ck_assert_uint_eq(tdp(1.0f, a2, b2), bits(1.0f));
  ck_assert_uint_eq(tdp(0x1.000002p0f, a2, b2), 0x3f800002u);
  /* DAZ on C (an fp32 denormal start is zero) and on a bf16 input; FTZ on a product */
  const uint16_t z[4] = {0, 0, 0, 0}, a3[4] = {BF_DENORM, BF_2M70, 0, 0}, b3[4] = {BF_2P100, BF_M2M70, 0, 0};
  ck_assert_uint_eq(tdp(f(5), z, z), 0u);
  ck_assert_uint_eq(tdp(0.0f, a3, b3), 0u);

  /* loads and stores move the configured rows x colsb with the stride; a
   * load zeroes the rest of the register, a store writes nothing else */
  tilecfg cfg = cfg3(3, 12, 16, 64, 16, 64);
  _tile_loadconfig(&cfg);
  uint8_t src[3 * 20], dst[3 * 20];
  for (int i = 0; i < 60; i++) src[i] = (uint8_t)(i + 1);
  memset(dst, 0xee, sizeof dst);
  _tile_loadd(0, src, 20);
  _tile_stored(0, dst, 20);
  for (int r = 0; r < 3; r++)
    for (int j = 0; j < 20; j++) ck_assert_uint_eq(dst[r * 20 + j], j < 12 ? src[r * 20 + j] : 0xee);
  _tile_zero(0);
  _tile_stored(0, dst, 20);
  for (int r = 0; r < 3; r++)
    for (int j = 0; j < 12; j++) ck_assert_uint_eq(dst[r * 20 + j], 0);
}
END_TEST

/* What the hardware would fault on stops the process with a message naming
 * the instruction and the rule (each in a child of its own). */
static void expect_fault(int which, const char *want) {
  int fd[2];
  ck_assert_int_eq(pipe(fd), 0);
  pid_t pid = fork();
  ck_assert_int_ge(pid, 0);
  if (pid == 0) {
    dup2(fd[1], 2);
    close(fd[0]);
    alarm(20);
    tilecfg good = cfg3(2, 64, 2, 64, 16, 64), bad = good;
    static float mem[16 * 16];
    switch (which) {
    case 0: /* no configuration yet in this thread */
      _tile_loadd(0, mem, 64);
      break;
    case 1: /* 17 rows */
      bad.rows[1] = 17;
      _tile_loadconfig(&bad);
      break;
    case 2: /* a tile of palette 1 beyond tmm7 */
      bad.rows[8] = 1, bad.colsb[8] = 4;
      _tile_loadconfig(&bad);
      break;
    case 3: /* A's 16 pairs of k, B's 8 rows */
      bad.rows[2] = 8;
      _tile_loadconfig(&bad);
      _tile_dpbf16ps(0, 1, 2);
      break;
    case 4: /* the same tile twice */
      _tile_loadconfig(&good);
      _tile_dpbf16ps(0, 1, 1);
      break;
    case 5: /* C's rows are not A's */
      bad.rows[0] = 3;
      _tile_loadconfig(&bad);
      _tile_dpbf16ps(0, 1, 2);
      break;
    case 6: /* an unconfigured tile */
      _tile_loadconfig(&good);
      _tile_zero(5);
      break;
    }
    _exit(0);
  }
  close(fd[1]);
  char msg[512] = "";
  size_t n = 0;
  ssize_t k;
  while (n + 1 < sizeof msg && (k = read(fd[0], msg + n, sizeof msg - 1 - n)) > 0) n += (size_t)k;
  msg[n] = 0;
  close(fd[0]);
  int st;
  ck_assert_int_eq(waitpid(pid, &st, 0), pid);
  ck_assert_msg(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT, "case %d: no fault (status %d): %s", which, st, msg);
  ck_assert_msg(strstr(msg, want), "case %d: '%s' does not say '%s'", which, msg, want);
}

START_TEST(emu_amx_faults) {
  expect_fault(0, "x86emu: TILELOADD faults: no tile configuration loaded");
  expect_fault(1, "x86emu: LDTILECFG faults: tile 1: 17 rows of 64 bytes (palette 1: at most 16 of 64)");
  expect_fault(2, "x86emu: LDTILECFG faults: tile 8 configured");
  expect_fault(3, "x86emu: TDPBF16PS faults: tmm1's rows are 16 pairs of k, tmm2 has 8 rows");
  expect_fault(4, "x86emu: TDPBF16PS faults: tmm0, tmm1, tmm1 are not distinct");
  expect_fault(5, "x86emu: TDPBF16PS faults: tmm0 has 3 rows, tmm1 2");
  expect_fault(6, "x86emu: TILEZERO faults: tmm5 is not configured");
}
END_TEST

/* ---- the generated kernels through the emulation -------------------------------- */

/* the schedules: the heuristic (8 x 32 blocks: two zmm, two C tiles) and one
 * cut small (3-row strips of three vectors, three C tiles, K blocks of 10
 * padded to 32 for AMX, small tiles: every edge strip and K block tail).
 * Each is a whole model compiled (about 10 s here), so two. */
static const char *const SCHEDS[] = {NULL, "mr=3 nv=3 kc=9 mc=9 nc=48"};
#define N_SCHEDS 2

#if defined(__x86_64__) || defined(__i386__)
#define X86 1
#else
#define X86 0
#endif

/* A few NaNs (one signalling, one negative) and infinities of both signs
 * among d's inputs: some outputs NaN or infinite, most not. */
static void add_specials(const gemm_inst *g, gemm_data *d) {
  size_t na = (size_t)g->M * g->K, nb = (size_t)g->K * g->N;
  d->A[3 % na] = f(0x7fa00000u);
  d->A[na / 2] = INFINITY;
  d->B[5 % nb] = -INFINITY;
  d->B[nb - 7] = f(0xffb00000u);
  d->bias[g->N - 1] = INFINITY;
}

START_TEST(avx512bf16_equals_portable) {
  for (int s = 0; s < N_SCHEDS; s++) {
    size_t len[2];
    cpu_object obj[2];
    char *src[2] = {bf16_build("bf16", (host_opts){64, "portable", SCHEDS[s]}, 0, &obj[0], &len[0]),
                    bf16_build("bf16", (host_opts){64, "avx512bf16", SCHEDS[s]}, 1, &obj[1], &len[1])};
    ck_assert_msg(strstr(src[1], "_mm512_dpbf16_ps("), "the avx512bf16 source without vdpbf16ps");
    gemm_inst g[64];
    int n = plain_gemms(src[1], g, 64), odd_k = 0, specials = 0;
    ck_assert_msg(n >= 4, "%d plain GEMM instances", n);
    for (int i = 0; i < n; i++) {
      for (int sp = 0; sp < 2; sp++) {
        gemm_data d = gemm_data_new(&g[i], 11 + (uint64_t)i);
        if (sp) add_specials(&g[i], &d);
        size_t mn = (size_t)g[i].M * g[i].N;
        float *C0 = malloc(mn * 4);
        memcpy(C0, d.C, mn * 4);
        ((gemm_fn)(uintptr_t)sym(&obj[0], g[i].name))(C0, d.A, d.B, d.bias);
        ((gemm_fn)(uintptr_t)sym(&obj[1], g[i].name))(d.C, d.A, d.B, d.bias);
        for (size_t e = 0; e < mn; e++) {
          /* which NaN comes out is x86's (the emulation's) only on x86: the
           * portable kernel elsewhere gives that CPU's */
          const int same = bits(d.C[e]) == bits(C0[e]) || (!X86 && isnan(d.C[e]) && isnan(C0[e]));
          ck_assert_msg(same, "%s (%s%s): vdpbf16ps %a (%08x), portable %a (%08x) at %zu",
                        g[i].name, SCHEDS[s] ? SCHEDS[s] : "heuristic", sp ? ", NaN and Inf" : "", d.C[e],
                        bits(d.C[e]), C0[e], bits(C0[e]), e);
          specials += sp && !isfinite(C0[e]);
        }
        free(C0);
        gemm_data_free(&d);
      }
      odd_k += g[i].K % 2;
    }
    ck_assert_msg(odd_k > 0, "no instance with odd K");
    ck_assert_msg(specials > 0, "no NaN or Inf came out");
    for (int v = 0; v < 2; v++) free(src[v]), cpu_object_close(&obj[v]);
  }
}
END_TEST

/* AMX (emulated: the SDM's order exactly) equals the scalar reference of that
 * order bit for bit, and the portable path within test_bf16hw's bound:
 * |C_amx - C_portable| <= 2 K 2^-24 sum_k |a_k b_k| + 2^-126; somewhere it
 * differs from the portable path (so it is not the portable kernel running).
 * Refused the tile state, it falls back to vdpbf16ps: the portable bits. */
START_TEST(amx_sdm_order) {
  for (int s = 0; s < N_SCHEDS; s++) {
    size_t len[2];
    cpu_object obj[2];
    char *src[2] = {bf16_build("bf16", (host_opts){64, "portable", SCHEDS[s]}, 0, &obj[0], &len[0]),
                    bf16_build("bf16", (host_opts){64, "amx", SCHEDS[s]}, 1, &obj[1], &len[1])};
    ck_assert_msg(strstr(src[1], "_tile_dpbf16ps("), "the amx source without tdpbf16ps");
    gemm_inst g[64];
    int n = plain_gemms(src[1], g, 64);
    size_t differ = 0;
    ck_assert_msg(n >= 4, "%d plain GEMM instances", n);
    for (int i = 0; i < n; i++) {
      gemm_pair q = gemm_pair_run(&g[i], &obj[0], &obj[1], 13 + (uint64_t)i);
      int M = g[i].M, N = g[i].N, K = g[i].K;
      size_t mn = (size_t)M * N;
      /* the tile state refused (amx_ready() no): the vdpbf16ps fallback, the portable bits */
      float *F = malloc(mn * 4);
      memcpy(F, q.start, mn * 4);
      setenv("X86EMU_AMX_REFUSED", "1", 1);
      ((gemm_fn)(uintptr_t)sym(&obj[1], g[i].name))(F, q.d.A, q.d.B, q.d.bias);
      unsetenv("X86EMU_AMX_REFUSED");
      for (size_t e = 0; e < mn; e++)
        ck_assert_msg(bits(F[e]) == bits(q.ref[e]), "%s: AMX refused %a, portable %a at %zu", g[i].name, F[e],
                      q.ref[e], e);
      free(F);
      for (int r = 0; r < M; r++)
        for (int c = 0; c < N; c++) {
          const size_t e = (size_t)r * N + c;
          const float got = q.d.C[e],
                      want = ref_amx_elem(M, N, K, g[i].KC, g[i].ta, g[i].tb, q.d.A, q.d.B,
                                          gemm_pair_start(&g[i], &q, r, c), r, c);
          ck_assert_msg(bits(want) == bits(got), "%s (%s, K blocks of %d): C[%d][%d] amx %a, the SDM order %a",
                        g[i].name, SCHEDS[s] ? SCHEDS[s] : "heuristic", g[i].KC, r, c, got, want);
          double tol = amx_bound(&g[i], &q, r, c), diff = fabs((double)got - q.ref[e]);
          ck_assert_msg(diff <= tol, "%s: C[%d][%d] amx %a, portable %a (tolerance %g)", g[i].name, r, c, got,
                        q.ref[e], tol);
          differ += bits(got) != bits(q.ref[e]);
        }
      gemm_pair_free(&q);
    }
    ck_assert_msg(differ > 0, "%s: amx equals portable everywhere: not the AMX kernel?",
                  SCHEDS[s] ? SCHEDS[s] : "heuristic");
    for (int v = 0; v < 2; v++) free(src[v]), cpu_object_close(&obj[v]);
  }
}
END_TEST

/* 10 AdamW steps of the small model through each path (64-byte vectors, the
 * hardware kernels' width): bf16 within 2e-2 (relative) of fp32; the
 * vdpbf16ps path's parameters and moments equal the portable path's bit for
 * bit (a checkpoint holds exactly these). */
START_TEST(training) {
  static const char *const paths[] = {"portable", "avx512bf16", "amx"};
  float loss[3], *state[3];
  size_t n[3], len;
  cpu_object obj;
  /* fp32 at this host's width: test_bf16hw's build of it, shared through the cache */
  free(bf16_build("fp32", (host_opts){gen_vec_bytes(), "portable", NULL}, 0, &obj, &len));
  float fp32 = train_steps(&obj, 10, NULL, NULL);
  cpu_object_close(&obj);
  for (int p = 0; p < 3; p++) {
    free(bf16_build("bf16", (host_opts){64, paths[p], NULL}, p > 0, &obj, &len));
    loss[p] = train_steps(&obj, 10, &state[p], &n[p]);
    cpu_object_close(&obj);
    ck_assert_msg(fabsf(loss[p] - fp32) <= 2e-2f * fabsf(fp32), "%s: bf16 %.9g, fp32 %.9g", paths[p], loss[p], fp32);
    ck_assert_msg(bits(loss[p]) != bits(fp32), "%s gave fp32's loss bit for bit", paths[p]);
  }
  ck_assert_uint_eq(n[1], n[0]);
  for (size_t i = 0; i < n[0]; i++)
    ck_assert_msg(bits(state[1][i]) == bits(state[0][i]), "state[%zu]: vdpbf16ps %a, portable %a", i, state[1][i],
                  state[0][i]);
  ck_assert_msg(bits(loss[1]) == bits(loss[0]), "loss: vdpbf16ps %.9g, portable %.9g", loss[1], loss[0]);
  for (int p = 0; p < 3; p++) free(state[p]);
}
END_TEST

int main(void) {
  Suite *s = suite_create("bf16emu");
  tu_add_case(s, "emu_avx512", emu_avx512, 60);
  tu_add_case(s, "emu_amx", emu_amx, 60);
  tu_add_case(s, "emu_amx_faults", emu_amx_faults, 60);
  tu_add_case(s, "avx512bf16", avx512bf16_equals_portable, 300);
  tu_add_case(s, "amx", amx_sdm_order, 300);
  tu_add_case(s, "training", training, 300);
  return tu_main(s);
}
