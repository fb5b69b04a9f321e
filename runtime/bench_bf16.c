/* bench_bf16: the bf16 peaks `gptc bench` reports beside the fp32 one: a
 * vdpbf16ps loop (AVX512-BF16) and an AMX tdpbf16ps tile loop, each on every
 * OpenMP thread, best of several short runs (bench_loop_gflops), for the paths this CPU has
 * (runtime/cpu_bf16.h asks cpuid, XCR0 and, for AMX, arch_prctl). */
#include <stdint.h>

#include "bench.h"
#include "cpu_bf16.h"

#if defined(__x86_64__)
#include <immintrin.h>

/* 12 independent accumulators, as the fp32 loop: each vdpbf16ps is 16 lanes
 * x 2 products x 2 flops; the empty asm keeps the chains apart */
__attribute__((target("avx512f,avx512bf16"))) static float bench_dp_loop(long iters) {
  __m512 a[12];
  for (int i = 0; i < 12; i++) a[i] = _mm512_set1_ps(1.0f + 0.1f * (float)i);
  __m512bh x = (__m512bh)_mm512_set1_epi32(0x3f803f80), y = (__m512bh)_mm512_set1_epi32(0x35803580);
  for (long n = 0; n < iters; n++) {
    __asm__ volatile("" : "+v"(a[0]), "+v"(a[1]), "+v"(a[2]), "+v"(a[3]), "+v"(a[4]), "+v"(a[5]));
    __asm__ volatile("" : "+v"(a[6]), "+v"(a[7]), "+v"(a[8]), "+v"(a[9]), "+v"(a[10]), "+v"(a[11]));
    for (int i = 0; i < 12; i++) a[i] = _mm512_dpbf16_ps(a[i], x, y);
  }
  __m512 s = a[0];
  for (int i = 1; i < 12; i++) s = _mm512_add_ps(s, a[i]);
  return _mm512_reduce_add_ps(s);
}

/* tiles 0..3 accumulate (16 x 16 fp32), 4..5 A (16 x 32 bf16), 6..7 B (16
 * pair rows x 16 columns): four independent tdpbf16ps of 16 x 16 x 32 (16384
 * flops each) an iteration */
static const struct {
  uint8_t palette, start_row, reserved[14];
  uint16_t colsb[16];
  uint8_t rows[16];
} __attribute__((aligned(64))) bench_tile_cfg = {1, 0, {0}, {64, 64, 64, 64, 64, 64, 64, 64}, {16, 16, 16, 16, 16, 16, 16, 16}};

__attribute__((target("amx-tile,amx-bf16"))) static float bench_amx_loop(long iters) {
  static _Thread_local uint16_t ab[16 * 32] __attribute__((aligned(64)));
  float c[16 * 16] __attribute__((aligned(64)));
  for (int i = 0; i < 16 * 32; i++) ab[i] = 0x3c00; /* 2^-7 */
  _tile_loadconfig(&bench_tile_cfg);
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
  _tile_loadd(4, ab, 64);
  _tile_loadd(5, ab, 64);
  _tile_loadd(6, ab, 64);
  _tile_loadd(7, ab, 64);
  for (long n = 0; n < iters; n++) {
    _tile_dpbf16ps(0, 4, 6);
    _tile_dpbf16ps(1, 4, 7);
    _tile_dpbf16ps(2, 5, 6);
    _tile_dpbf16ps(3, 5, 7);
  }
  _tile_stored(0, c, 64);
  _tile_release();
  return c[0];
}
#endif

void bench_bf16_peaks(bench_machine *m) {
  m->bf16_dp_gflops = m->bf16_amx_gflops = 0;
  if (cpu_bf16_has("avx512bf16", m->bf16_dp_why, sizeof m->bf16_dp_why) == 1) {
#if defined(__x86_64__)
    m->bf16_dp_gflops = bench_loop_gflops(bench_dp_loop, 10000000, 12.0 * 16 * 4);
#endif
  }
  if (cpu_bf16_has("amx", m->bf16_amx_why, sizeof m->bf16_amx_why) == 1) {
#if defined(__x86_64__)
    m->bf16_amx_gflops = bench_loop_gflops(bench_amx_loop, 1000000, 4.0 * 16 * 16 * 32 * 2);
#endif
  }
}
