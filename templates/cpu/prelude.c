#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef {{real}} real;

#define GPTC_INLINE static inline __attribute__((always_inline))
% if export_kernels then
/* kernels are exported so tests can check each op on its own */
#define KERNEL __attribute__((visibility("default")))
% elseif unit then
/* one kernel compiled on its own (gptc's per-kernel cache): the model's
 * glue, another translation unit of the same shared object, calls it */
#define KERNEL __attribute__((visibility("hidden")))
% else
#define KERNEL static
% end

/* ---- ABI: gptc's runtime/model.h, pasted (its one text), over this source's `real` */
% if real ~= "float" then
/* Element type {{real}}: a verification build. Buffers and losses use `real`
 * instead of float; the layout is otherwise the ABI's. */
% end
#define GPTC_REAL real
{{gptc.read("runtime/model.h")}}
/* ---- Philox4x32-10 (Salmon et al., SC'11) ------------------------------------
 * Dropout words come in blocks of 64 elements: element i of a site takes
 * word (i / 16) % 4 of philox(counter = {16 (i / 64) + i % 16, site,
 * offset_lo, offset_hi}, key = seed). The mask depends only on data
 * coordinates, never on the thread that draws it, and the 16 counters of a
 * block fill one vector. */
#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

% if bench or unit then
/* static in a benchmark source (gen/bench.lua), which exports only gptc_bench_get,
 * and in a kernel's own unit (the model's glue exports it) */
static __attribute__((unused)) void gptc_philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]) {
% else
__attribute__((visibility("default"))) void gptc_philox4x32_10(const uint32_t ctr[4], const uint32_t key[2],
                                                               uint32_t out[4]) {
% end
  uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3], k0 = key[0], k1 = key[1];
  for (int r = 0; r < 10; r++) {
    uint64_t p0 = (uint64_t)PHILOX_M0 * c0, p1 = (uint64_t)PHILOX_M1 * c2;
    uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0, n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1;
    c0 = n0;
    c1 = (uint32_t)p1;
    c2 = n2;
    c3 = (uint32_t)p0;
    k0 += PHILOX_W0;
    k1 += PHILOX_W1;
  }
  out[0] = c0;
  out[1] = c1;
  out[2] = c2;
  out[3] = c3;
}

#if defined(__AVX512F__)
#include <immintrin.h>
/* the high and low halves of the 16 products a[j] * m (even and odd lanes
 * through two 32x32->64 multiplies) */
GPTC_INLINE void philox_mulhilo(__m512i a, __m512i m, __m512i *hi, __m512i *lo) {
  __m512i pe = _mm512_mul_epu32(a, m), po = _mm512_mul_epu32(_mm512_srli_epi64(a, 32), m);
  *lo = _mm512_mask_blend_epi32(0xAAAA, pe, _mm512_slli_epi64(po, 32));
  *hi = _mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64(pe, 32), po);
}

/* words of blocks b0 .. b0 + nb - 1 into out (64 per block); two blocks at
 * a time hide the multiply latency */
GPTC_INLINE void philox_blocks(uint64_t seed, uint64_t offset, uint32_t site, uint64_t b0, int nb, uint32_t *out) {
  const __m512i M0 = _mm512_set1_epi32((int)PHILOX_M0), M1 = _mm512_set1_epi32((int)PHILOX_M1);
  const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  for (int b = 0; b < nb; b += 2) {
    __m512i c0[2], c1[2], c2[2], c3[2];
    for (int u = 0; u < 2; u++) {
      c0[u] = _mm512_add_epi32(_mm512_set1_epi32((int)(uint32_t)(16 * (b0 + (uint64_t)(b + u)))), lane);
      c1[u] = _mm512_set1_epi32((int)site);
      c2[u] = _mm512_set1_epi32((int)(uint32_t)offset);
      c3[u] = _mm512_set1_epi32((int)(uint32_t)(offset >> 32));
    }
    uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
    for (int r = 0; r < 10; r++) {
      const __m512i K0 = _mm512_set1_epi32((int)k0), K1 = _mm512_set1_epi32((int)k1);
      for (int u = 0; u < 2; u++) {
        __m512i hi0, lo0, hi1, lo1;
        philox_mulhilo(c0[u], M0, &hi0, &lo0);
        philox_mulhilo(c2[u], M1, &hi1, &lo1);
        c0[u] = _mm512_xor_si512(_mm512_xor_si512(hi1, c1[u]), K0);
        c2[u] = _mm512_xor_si512(_mm512_xor_si512(hi0, c3[u]), K1);
        c1[u] = lo1;
        c3[u] = lo0;
      }
      k0 += PHILOX_W0;
      k1 += PHILOX_W1;
    }
    for (int u = 0; u < 2 && b + u < nb; u++) {
      uint32_t *o = out + 64 * (b + u);
      _mm512_storeu_si512(o, c0[u]);
      _mm512_storeu_si512(o + 16, c1[u]);
      _mm512_storeu_si512(o + 32, c2[u]);
      _mm512_storeu_si512(o + 48, c3[u]);
    }
  }
}
#else
GPTC_INLINE void philox_blocks(uint64_t seed, uint64_t offset, uint32_t site, uint64_t b0, int nb, uint32_t *out) {
  for (int b = 0; b < nb; b++)
    for (int j = 0; j < 16; j++) {
      const uint32_t ctr[4] = {(uint32_t)(16 * (b0 + (uint64_t)b) + (uint64_t)j), site, (uint32_t)offset,
                               (uint32_t)(offset >> 32)};
      const uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
      uint32_t w[4];
      gptc_philox4x32_10(ctr, key, w);
      for (int k = 0; k < 4; k++) out[64 * b + 16 * k + j] = w[k];
    }
}
#endif

/* Random words for dropout elements [start, start + n) of one site: element
 * start + i gets words[skip + i] where skip is the return value. `words`
 * holds n + 128 entries (the blocks at both ends). */
GPTC_INLINE int dropout_words(gptc_rng rng, uint32_t site, uint64_t start, int n, uint32_t *words) {
  uint64_t b0 = start >> 6, b1 = (start + (uint64_t)n - 1) >> 6;
  philox_blocks(rng.seed, rng.offset, site, b0, (int)(b1 - b0 + 1), words);
  return (int)(start & 63);
}

% if p > 0 then
/* drop rate {{p}}: an element is dropped when its word < DROP_THRESHOLD
 * (= round(p * 2^32)); kept ones are scaled by 1 / (1 - p) */
#define DROP_THRESHOLD {{drop_threshold}}u
#define DROP_SCALE {{lit(1 / (1 - p))}}
% end

/* ---- elementwise math --------------------------------------------------------- */
% if real == "float" then
#define sqrt_r sqrtf
#define log_r logf
% else
#define sqrt_r sqrt
#define log_r log
% end
% if real == "float" then
/* exp for float, vectorizable (glibc's expf is a call gcc cannot vectorize
 * without -ffast-math): Cody-Waite reduction x = k ln2 + r, |r| <= ln2/2,
 * the Cephes minimax polynomial for e^r, and 2^k built in the exponent
 * field. Max relative error about 2 ulp on [-87.3, 88.3]; inputs are
 * clamped to that range. */
GPTC_INLINE float exp_r(float x) {
  x = x < -87.3f ? -87.3f : x;
  x = x > 88.3f ? 88.3f : x;
  /* 1.5 * 2^23: adding it rounds to an integer held in the low mantissa bits */
  float t = x * 1.44269504088896341f + 12582912.0f;
  float k = t - 12582912.0f;
  int32_t ti;
  memcpy(&ti, &t, 4);
  int32_t ki = ti - 0x4B400000;
  float r = x - k * 0.693359375f;
  r = r - k * -2.12194440e-4f;
  float y = 1.9875691500e-4f;
  y = y * r + 1.3981999507e-3f;
  y = y * r + 8.3334519073e-3f;
  y = y * r + 4.1665795894e-2f;
  y = y * r + 1.6666665459e-1f;
  y = y * r + 5.0000001201e-1f;
  y = y * r * r + r + 1.0f;
  int32_t bits = (ki + 127) << 23;
  float scale;
  memcpy(&scale, &bits, 4);
  return y * scale;
}
% else
GPTC_INLINE real exp_r(real x) { return exp(x); }
% end

/* ---- vectors ------------------------------------------------------------------------
 * One vector of {{VL}} reals (GNU C vector extension) for the kernels whose loop
 * structure matters too much to leave to the vectorizer; memcpy does the
 * unaligned loads and stores. */
typedef real vreal __attribute__((vector_size({{VL * RSIZE}})));
GPTC_INLINE vreal vload(const real *p) {
  vreal v;
  memcpy(&v, p, sizeof v);
  return v;
}
GPTC_INLINE void vstore(real *p, vreal v) { memcpy(p, &v, sizeof v); }

/* GELU, tanh approximation: 0.5 x (1 + tanh(u)) with u = sqrt(2/pi) (x + 0.044715 x^3),
 * computed as x sigmoid(2u) = x / (1 + e^{-2u}) (one exp, no cancellation near 0).
 * The derivative: s + 2 x s (1 - s) du/dx with s = sigmoid(2u). */
#define GELU_S {{lit(math.sqrt(2 / math.pi))}} /* sqrt(2/pi) */
#define GELU_A {{lit(0.044715)}}
% if real == "float" then
/* A whole vector at a time: the compiler does not vectorize the scalar form's
 * clamps (branches it may not turn into selects without -ffast-math). The
 * scalar gelu_r and gelu_grad_r run lane 0 of these, so every caller (fused
 * epilogue, GELU kernel, inference, vector or tail) gets the same bits. */
typedef int32_t vint __attribute__((vector_size({{VL * RSIZE}})));
/* a where m is set, else b */
GPTC_INLINE vreal vsel(vint m, vreal a, vreal b) { return (vreal)((m & (vint)a) | (~m & (vint)b)); }
/* exp_r's steps on a vector (a NaN stays a NaN, as there) */
GPTC_INLINE vreal vexp_r(vreal x) {
  const vreal zero = {0};
  x = vsel(x < -87.3f, zero - 87.3f, x);
  x = vsel(x > 88.3f, zero + 88.3f, x);
  const vreal t = x * 1.44269504088896341f + 12582912.0f;
  const vreal k = t - 12582912.0f;
  const vint ki = (vint)t - 0x4B400000;
  vreal r = x - k * 0.693359375f;
  r = r - k * -2.12194440e-4f;
  vreal y = zero + 1.9875691500e-4f;
  y = y * r + 1.3981999507e-3f;
  y = y * r + 8.3334519073e-3f;
  y = y * r + 4.1665795894e-2f;
  y = y * r + 1.6666665459e-1f;
  y = y * r + 5.0000001201e-1f;
  y = y * r * r + r + 1.0f;
  return y * (vreal)((ki + 127) << 23);
}
/* e^{-2u}, its exponent capped at 80 so 1 / (1 + e) stays a normal number */
GPTC_INLINE vreal vgelu_e(vreal x) {
  const vreal z = -2 * GELU_S * (x + GELU_A * x * x * x), cap = {0};
  return vexp_r(vsel(z < 80, z, cap + 80));
}
GPTC_INLINE vreal vgelu_r(vreal x) { return x / (1 + vgelu_e(x)); }
GPTC_INLINE vreal vgelu_grad_r(vreal x) {
  const vreal s = 1 / (1 + vgelu_e(x));
  return s + 2 * x * s * (1 - s) * GELU_S * (1 + 3 * GELU_A * x * x);
}
GPTC_INLINE real gelu_r(real x) {
  const vreal v = {x};
  return vgelu_r(v)[0];
}
GPTC_INLINE real gelu_grad_r(real x) {
  const vreal v = {x};
  return vgelu_grad_r(v)[0];
}
% else
/* e^{-2u}, its exponent capped at 80 so 1 / (1 + e) stays a normal number */
GPTC_INLINE real gelu_e(real x) {
  const real z = -2 * GELU_S * (x + GELU_A * x * x * x);
  return exp_r(z < 80 ? z : 80);
}
GPTC_INLINE real gelu_r(real x) { return x / (1 + gelu_e(x)); }
GPTC_INLINE real gelu_grad_r(real x) {
  const real s = 1 / (1 + gelu_e(x));
  return s + 2 * x * s * (1 - s) * GELU_S * (1 + 3 * GELU_A * x * x);
}
% end
% if bf16 then

/* ---- bf16 (precision = "bf16") ---------------------------------------------------
 * The GEMMs round both operands to bfloat16 as they pack them (round to nearest,
 * ties to even; a NaN stays a NaN; a bf16 denormal becomes a zero of its sign, as
 * the hardware's DAZ reads it) into the pair layout (gemm.c) and multiply-add in
 * fp32, each pair of k in the order vdpbf16ps sums it (gemm_kernel.c). Weights,
 * gradients, AdamW's moments and every other op stay fp32. */
GPTC_INLINE float bf16_round(float x) {
  uint32_t u;
  memcpy(&u, &x, 4);
  u = (u & 0x7fffffffu) > 0x7f800000u ? (u | 0x00400000u) & 0xffff0000u : (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
  memcpy(&x, &u, 4);
  return x;
}
/* x as bf16 bits (the upper half of bf16_round(x)), denormals flushed */
GPTC_INLINE uint16_t bf16_bits(float x) {
  uint32_t u;
  x = bf16_round(x);
  memcpy(&u, &x, 4);
  if (!(u & 0x7f800000u)) u &= 0x80000000u;
  return (uint16_t)(u >> 16);
}
/* the float whose bits are u */
GPTC_INLINE float bits_f(uint32_t u) {
  float x;
  memcpy(&x, &u, 4);
  return x;
}
typedef uint32_t vbits __attribute__((vector_size({{VL * RSIZE}})));
/* x with each denormal lane a zero of its sign: the hardware's flush of a
 * result (FTZ) and of an fp32 input (DAZ) */
GPTC_INLINE vreal vftz(vreal x) {
  const vbits u = (vbits)x;
  const vbits tiny = (vbits)((u & 0x7f800000u) == 0);
  return (vreal)(u & (~tiny | 0x80000000u));
}
/* The portable bf16 kernel's flush of every FMA result (and DAZ on its inputs).
 * On x86 the MXCSR does it in hardware, set by a caller around the kernel (its body is
 * its own function, so no FMA of it moves outside the setting); elsewhere vftz per
 * result. */
#if defined(__x86_64__) || defined(__i386__)
#define BF16_FTZ(x) (x)
#define BF16_FTZ_ON()                                                                                              \
  const unsigned bf16_csr = __builtin_ia32_stmxcsr();                                                              \
  __builtin_ia32_ldmxcsr(bf16_csr | 0x8040u) /* FTZ (bit 15), DAZ (bit 6) */
#define BF16_FTZ_OFF() __builtin_ia32_ldmxcsr(bf16_csr)
#else
#define BF16_FTZ(x) vftz(x)
#define BF16_FTZ_ON() ((void)0)
#define BF16_FTZ_OFF() ((void)0)
#endif
% end

/* ---- reductions in a fixed order ---------------------------------------------
 * {{VL}} partial sums (one vector) over the row, then a fixed pairwise tree:
 * the order depends only on n, so every call gives the same bits. */
GPTC_INLINE real lanes_total(real *acc) {
% local w = VL // 2
% while w >= 1 do
  for (int j = 0; j < {{w}}; j++) acc[j] += acc[j + {{w}}];
%   w = w // 2
% end
  return acc[0];
}

/* the maximum of the {{VL}} lanes: halves folded as lanes_total adds them, each
 * step acc[j + w] > acc[j] ? acc[j + w] : acc[j] */
GPTC_INLINE real lanes_max(real *acc) {
% local w = VL // 2
% while w >= 1 do
  for (int j = 0; j < {{w}}; j++) acc[j] = acc[j + {{w}}] > acc[j] ? acc[j + {{w}}] : acc[j];
%   w = w // 2
% end
  return acc[0];
}

GPTC_INLINE real vec_sum(const real *x, int n) {
  real acc[{{VL}}] = {0};
  int i = 0;
  for (; i + {{VL}} <= n; i += {{VL}})
    for (int j = 0; j < {{VL}}; j++) acc[j] += x[i + j];
  for (int j = 0; i + j < n; j++) acc[j] += x[i + j];
  return lanes_total(acc);
}

GPTC_INLINE real vec_dot(const real *x, const real *y, int n) {
  real acc[{{VL}}] = {0};
  int i = 0;
  for (; i + {{VL}} <= n; i += {{VL}})
    for (int j = 0; j < {{VL}}; j++) acc[j] += x[i + j] * y[i + j];
  for (int j = 0; i + j < n; j++) acc[j] += x[i + j] * y[i + j];
  return lanes_total(acc);
}

/* sum of (x - c)^2 */
GPTC_INLINE real vec_sqdev(const real *x, real c, int n) {
  real acc[{{VL}}] = {0};
  int i = 0;
  for (; i + {{VL}} <= n; i += {{VL}})
    for (int j = 0; j < {{VL}}; j++) acc[j] += (x[i + j] - c) * (x[i + j] - c);
  for (int j = 0; i + j < n; j++) acc[j] += (x[i + j] - c) * (x[i + j] - c);
  return lanes_total(acc);
}

GPTC_INLINE real vec_max(const real *x, int n) {
  real acc[{{VL}}];
  for (int j = 0; j < {{VL}}; j++) acc[j] = x[0];
  int i = 0;
  for (; i + {{VL}} <= n; i += {{VL}})
    for (int j = 0; j < {{VL}}; j++) acc[j] = x[i + j] > acc[j] ? x[i + j] : acc[j];
  for (int j = 0; i + j < n; j++) acc[j] = x[i + j] > acc[j] ? x[i + j] : acc[j];
  return lanes_max(acc);
}

/* x[i] = exp(x[i] - m), returning the sum (fixed order) */
GPTC_INLINE real vec_exp_sum(real *x, real m, int n) {
  real acc[{{VL}}] = {0};
  int i = 0;
  for (; i + {{VL}} <= n; i += {{VL}})
    for (int j = 0; j < {{VL}}; j++) {
      x[i + j] = exp_r(x[i + j] - m);
      acc[j] += x[i + j];
    }
  for (int j = 0; i + j < n; j++) {
    x[i + j] = exp_r(x[i + j] - m);
    acc[j] += x[i + j];
  }
  return lanes_total(acc);
}

/* sum of exp(x[i] - m), x untouched */
GPTC_INLINE real vec_sum_exp(const real *x, real m, int n) {
  real acc[{{VL}}] = {0};
  int i = 0;
  for (; i + {{VL}} <= n; i += {{VL}})
    for (int j = 0; j < {{VL}}; j++) acc[j] += exp_r(x[i + j] - m);
  for (int j = 0; i + j < n; j++) acc[j] += exp_r(x[i + j] - m);
  return lanes_total(acc);
}

GPTC_INLINE size_t min_z(size_t a, size_t b) { return a < b ? a : b; }
