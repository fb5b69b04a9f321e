/* x86emu.h: the AVX-512, AVX512-BF16 and AMX intrinsics of gptc's generated
 * bf16 GEMMs (templates/cpu/gemm_kernel.c), in plain C, so their hardware
 * micro-kernels run, and are checked, on any host (tests/test_bf16emu.c).
 * A generated source with GPTC_X86_EMU defined as this header's path (in
 * quotes) includes it instead of <immintrin.h> and compiles both hardware
 * kernels whatever the CPU; amx_ready() then says yes (no while the
 * environment has X86EMU_AMX_REFUSED, to test the fallback).
 *
 * Each function follows the Intel 64 and IA-32 Architectures Software
 * Developer's Manual, Vol. 2 ("Operation" and "Exceptions" of the instruction),
 * with the operand order of the Intel Intrinsics Guide:
 *   _mm512_loadu_si512, _mm512_storeu_ps  VMOVDQU32 / VMOVUPS: 64 bytes, any alignment
 *   _mm512_set1_epi32                    VPBROADCASTD: the dword in all 16 lanes
 *   _mm512_dpbf16_ps(src, a, b)          VDPBF16PS srcdest, src1, src2: per dword lane i,
 *                                        srcdest += src1.bf16[2i+1] src2.bf16[2i+1], then
 *                                        srcdest += src1.bf16[2i] src2.bf16[2i]; each an
 *                                        fp32 FMA, RNE, denormal inputs as zero (DAZ),
 *                                        denormal results flushed (FTZ), MXCSR unused; which
 *                                        NaN comes out: Table 5-1 (src1 low, src2 low,
 *                                        src1 high, src2 high, srcdest)
 *   _tile_loadconfig                     LDTILECFG, palette 1 (8 tiles of at most 16 rows
 *                                        of 64 bytes): #GP on a bad palette, non-zero
 *                                        reserved bytes, rows or colsb over the palette's
 *                                        limits or one of them zero, tiles 8..15 used
 *   _tile_zero                           TILEZERO
 *   _tile_loadd, _tile_stored            TILELOADD / TILESTORED: the configured rows x colsb
 *                                        bytes, rows `stride` bytes apart; the rest of the
 *                                        register zero
 *   _tile_dpbf16ps(dst, a, b)            TDPBF16PS tsrcdest, tsrc1, tsrc2: per row m, the
 *                                        even and the odd elements' products summed apart
 *                                        from zero in k order (temp1[2n], temp1[2n+1]),
 *                                        then srcdest += (even + odd); FMAs and adds RNE,
 *                                        DAZ, FTZ; #UD as its exception class AMX-E4 (shapes
 *                                        that do not chain, tiles not distinct, over the
 *                                        TMUL limits)
 * An instruction the hardware would fault on (#GP, #UD: an unconfigured tile,
 * a shape or stride beyond the configuration) aborts with a message naming
 * it, so a layout bug shows as a failed test rather than as other numbers.
 * The AMX state (TILECFG and the 8 tile registers) is per thread, as the
 * hardware's is per logical processor. Written from the manual's text; the
 * types are GNU C vectors of the same sizes as the real ones. */
#ifndef GPTC_X86EMU_H
#define GPTC_X86EMU_H

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

/* 64-byte vectors by value without -mavx512f: GCC warns that the call ABI
 * differs from an AVX-512 build's; every function here is inlined, so no
 * call crosses that ABI */
#if defined(__GNUC__)
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

typedef float x86emu_m512 __attribute__((vector_size(64)));
typedef long long x86emu_m512i __attribute__((vector_size(64)));
typedef uint16_t x86emu_m512bh __attribute__((vector_size(64))); /* 32 bf16, as bits */

#define X86EMU_INLINE static inline __attribute__((always_inline, unused))

/* the instruction `insn` would fault: say why and stop */
static __attribute__((noreturn, unused, format(printf, 2, 3))) void x86emu_fault(const char *insn, const char *fmt,
                                                                                   ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "x86emu: %s faults: ", insn);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  abort();
}

/* ---- fp32 arithmetic as the BF16 instructions do it ------------------------------- */

X86EMU_INLINE uint32_t x86emu_bits(float x) {
  uint32_t u;
  memcpy(&u, &x, 4);
  return u;
}
X86EMU_INLINE float x86emu_float(uint32_t u) {
  float x;
  memcpy(&x, &u, 4);
  return x;
}
/* make_fp32: bf16 bits as the upper half of an fp32 */
X86EMU_INLINE float x86emu_make_fp32(uint16_t b) { return x86emu_float((uint32_t)b << 16); }
/* DAZ on an input and FTZ on a result: a denormal is a zero of its sign */
X86EMU_INLINE float x86emu_flush(float x) {
  const uint32_t u = x86emu_bits(x);
  return (u & 0x7f800000u) ? x : x86emu_float(u & 0x80000000u);
}
X86EMU_INLINE int x86emu_isnan(float x) { return (x86emu_bits(x) & 0x7fffffffu) > 0x7f800000u; }
/* a NaN operand comes out quieted */
X86EMU_INLINE float x86emu_quiet(float x) { return x86emu_float(x86emu_bits(x) | 0x00400000u); }
/* an invalid operation (inf x 0, inf - inf) gives the QNaN floating-point indefinite */
#define X86EMU_INDEFINITE 0xffc00000u

/* c + a b, one rounding (RNE: the C default), DAZ in, FTZ out; the first NaN of
 * a, b, c (the order of Table 5-1 within one FMA) */
X86EMU_INLINE float x86emu_fma(float a, float b, float c) {
  if (x86emu_isnan(a)) return x86emu_quiet(a);
  if (x86emu_isnan(b)) return x86emu_quiet(b);
  if (x86emu_isnan(c)) return x86emu_quiet(c);
  const float r = fmaf(x86emu_flush(a), x86emu_flush(b), x86emu_flush(c));
  return x86emu_isnan(r) ? x86emu_float(X86EMU_INDEFINITE) : x86emu_flush(r);
}
/* x + y, RNE, DAZ in, FTZ out; the first NaN of x, y */
X86EMU_INLINE float x86emu_add(float x, float y) {
  if (x86emu_isnan(x)) return x86emu_quiet(x);
  if (x86emu_isnan(y)) return x86emu_quiet(y);
  const float r = x86emu_flush(x) + x86emu_flush(y);
  return x86emu_isnan(r) ? x86emu_float(X86EMU_INDEFINITE) : x86emu_flush(r);
}

/* ---- AVX-512 ------------------------------------------------------------------------ */

X86EMU_INLINE x86emu_m512i x86emu_loadu_si512(const void *p) {
  x86emu_m512i v;
  memcpy(&v, p, 64);
  return v;
}
X86EMU_INLINE void x86emu_storeu_ps(void *p, x86emu_m512 v) { memcpy(p, &v, 64); }
X86EMU_INLINE x86emu_m512i x86emu_set1_epi32(int x) {
  int32_t d[16];
  x86emu_m512i v;
  for (int i = 0; i < 16; i++) d[i] = x;
  memcpy(&v, d, 64);
  return v;
}
/* VDPBF16PS zmm (no mask): the odd (high) pair element first, then the even */
X86EMU_INLINE x86emu_m512 x86emu_dpbf16_ps(x86emu_m512 src, x86emu_m512bh a, x86emu_m512bh b) {
  for (int i = 0; i < 16; i++) {
    float d = src[i];
    d = x86emu_fma(x86emu_make_fp32(a[2 * i + 1]), x86emu_make_fp32(b[2 * i + 1]), d);
    d = x86emu_fma(x86emu_make_fp32(a[2 * i]), x86emu_make_fp32(b[2 * i]), d);
    src[i] = d;
  }
  return src;
}

/* ---- AMX: palette 1 --------------------------------------------------------------- */

/* TILECFG and the tile registers, per thread; configured = TILES_CONFIGURED */
typedef struct {
  int configured;
  uint8_t rows[8];
  uint16_t colsb[8];
  uint8_t t[8][16][64]; /* (tile, row, byte) */
} x86emu_amx_state;
static _Thread_local x86emu_amx_state x86emu_amx;

/* LDTILECFG m512: the 64-byte palette-1 layout (byte 0 palette, 1 start_row,
 * 2..15 reserved, 16..47 colsb[16] as 16-bit words, 48..63 rows[16]) */
X86EMU_INLINE void x86emu_tile_loadconfig(const void *cfg) {
  const uint8_t *m = cfg;
  if (m[0] == 0) { /* palette 0: the init state, no tile usable */
    memset(&x86emu_amx, 0, sizeof x86emu_amx);
    return;
  }
  if (m[0] != 1) x86emu_fault("LDTILECFG", "palette %d (this CPU has palettes 0 and 1)", m[0]);
  if (m[1] != 0) x86emu_fault("LDTILECFG", "start_row %d (only a restarted load sets it)", m[1]);
  for (int i = 2; i < 16; i++)
    if (m[i]) x86emu_fault("LDTILECFG", "reserved byte %d is %d, not zero", i, m[i]);
  for (int t = 0; t < 16; t++) {
    const unsigned colsb = (unsigned)m[16 + 2 * t] | (unsigned)m[17 + 2 * t] << 8, rows = m[48 + t];
    if (t >= 8 && (colsb || rows))
      x86emu_fault("LDTILECFG", "tile %d configured (%u rows, %u bytes): palette 1 has tiles 0..7", t, rows, colsb);
    if (t >= 8) continue;
    if (rows > 16 || colsb > 64)
      x86emu_fault("LDTILECFG", "tile %d: %u rows of %u bytes (palette 1: at most 16 of 64)", t, rows, colsb);
    if (!rows != !colsb)
      x86emu_fault("LDTILECFG", "tile %d: %u rows of %u bytes (both or neither zero)", t, rows, colsb);
    x86emu_amx.rows[t] = (uint8_t)rows;
    x86emu_amx.colsb[t] = (uint16_t)colsb;
  }
  memset(x86emu_amx.t, 0, sizeof x86emu_amx.t); /* LDTILECFG zeroes the tile data */
  x86emu_amx.configured = 1;
}

/* tile t must exist and be configured for `insn` */
X86EMU_INLINE void x86emu_tile_check(const char *insn, int t) {
  if (!x86emu_amx.configured) x86emu_fault(insn, "no tile configuration loaded (LDTILECFG)");
  if (t < 0 || t > 7) x86emu_fault(insn, "tmm%d (palette 1 has tmm0..tmm7)", t);
  if (!x86emu_amx.rows[t]) x86emu_fault(insn, "tmm%d is not configured (0 rows)", t);
}

X86EMU_INLINE void x86emu_tile_zero(int t) {
  x86emu_tile_check("TILEZERO", t);
  memset(x86emu_amx.t[t], 0, sizeof x86emu_amx.t[t]);
}

X86EMU_INLINE void x86emu_tile_loadd(int t, const void *base, long stride) {
  x86emu_tile_check("TILELOADD", t);
  memset(x86emu_amx.t[t], 0, sizeof x86emu_amx.t[t]);
  for (int r = 0; r < x86emu_amx.rows[t]; r++)
    memcpy(x86emu_amx.t[t][r], (const uint8_t *)base + r * stride, x86emu_amx.colsb[t]);
}

X86EMU_INLINE void x86emu_tile_stored(int t, void *base, long stride) {
  x86emu_tile_check("TILESTORED", t);
  for (int r = 0; r < x86emu_amx.rows[t]; r++)
    memcpy((uint8_t *)base + r * stride, x86emu_amx.t[t][r], x86emu_amx.colsb[t]);
}

/* the tile's row r, element e, of 16 or 32 bits */
X86EMU_INLINE uint16_t x86emu_tile_bf16(int t, int r, int e) {
  uint16_t x;
  memcpy(&x, &x86emu_amx.t[t][r][2 * e], 2);
  return x;
}

X86EMU_INLINE void x86emu_tile_dpbf16ps(int dst, int a, int b) {
  static const char I[] = "TDPBF16PS";
  x86emu_tile_check(I, dst), x86emu_tile_check(I, a), x86emu_tile_check(I, b);
  const x86emu_amx_state *s = &x86emu_amx;
  if (dst == a || dst == b || a == b) x86emu_fault(I, "tmm%d, tmm%d, tmm%d are not distinct", dst, a, b);
  if (s->colsb[dst] % 4 || s->colsb[a] % 4 || s->colsb[b] % 4)
    x86emu_fault(I, "a row of %u, %u or %u bytes is not whole dwords", s->colsb[dst], s->colsb[a], s->colsb[b]);
  if (s->rows[dst] != s->rows[a])
    x86emu_fault(I, "tmm%d has %u rows, tmm%d %u: C and A must match", dst, s->rows[dst], a, s->rows[a]);
  if (s->colsb[a] / 4 != s->rows[b])
    x86emu_fault(I, "tmm%d's rows are %u pairs of k, tmm%d has %u rows: A's k and B's must match", a,
                 s->colsb[a] / 4, b, s->rows[b]);
  if (s->colsb[dst] != s->colsb[b])
    x86emu_fault(I, "tmm%d's rows are %u bytes, tmm%d's %u: C and B must match", dst, s->colsb[dst], b, s->colsb[b]);
  const int n_dst = s->colsb[dst] / 4, n_k = s->colsb[a] / 4;
  for (int m = 0; m < s->rows[dst]; m++) {
    float temp[32] = {0}; /* temp1[2n]: the even elements' sum of column n, temp1[2n+1] the odd */
    for (int k = 0; k < n_k; k++)
      for (int n = 0; n < n_dst; n++) {
        temp[2 * n] = x86emu_fma(x86emu_make_fp32(x86emu_tile_bf16(a, m, 2 * k)),
                                 x86emu_make_fp32(x86emu_tile_bf16(b, k, 2 * n)), temp[2 * n]);
        temp[2 * n + 1] = x86emu_fma(x86emu_make_fp32(x86emu_tile_bf16(a, m, 2 * k + 1)),
                                     x86emu_make_fp32(x86emu_tile_bf16(b, k, 2 * n + 1)), temp[2 * n + 1]);
      }
    for (int n = 0; n < n_dst; n++) {
      float c;
      memcpy(&c, &x86emu_amx.t[dst][m][4 * n], 4);
      c = x86emu_add(c, x86emu_add(temp[2 * n], temp[2 * n + 1]));
      memcpy(&x86emu_amx.t[dst][m][4 * n], &c, 4);
    }
  }
}

/* ---- the intrinsics' names --------------------------------------------------------
 * Defined after any <immintrin.h> the source included (the prelude's, on an
 * AVX-512 host; GCC's defines the _tile_ ones as macros), so only the text
 * that follows takes the emulation. */
#undef __m512
#undef __m512i
#undef __m512bh
#undef _mm512_loadu_si512
#undef _mm512_storeu_ps
#undef _mm512_set1_epi32
#undef _mm512_dpbf16_ps
#undef _tile_loadconfig
#undef _tile_zero
#undef _tile_loadd
#undef _tile_stored
#undef _tile_dpbf16ps
#define __m512 x86emu_m512
#define __m512i x86emu_m512i
#define __m512bh x86emu_m512bh
#define _mm512_loadu_si512(p) x86emu_loadu_si512(p)
#define _mm512_storeu_ps(p, v) x86emu_storeu_ps((p), (v))
#define _mm512_set1_epi32(x) x86emu_set1_epi32(x)
#define _mm512_dpbf16_ps(src, a, b) x86emu_dpbf16_ps((src), (a), (b))
#define _tile_loadconfig(cfg) x86emu_tile_loadconfig(cfg)
#define _tile_zero(t) x86emu_tile_zero(t)
#define _tile_loadd(t, base, stride) x86emu_tile_loadd((t), (base), (long)(stride))
#define _tile_stored(t, base, stride) x86emu_tile_stored((t), (base), (long)(stride))
#define _tile_dpbf16ps(dst, a, b) x86emu_tile_dpbf16ps((dst), (a), (b))

#endif
