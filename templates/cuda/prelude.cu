/* Self-contained: no CUDA headers, so NVRTC needs no include path. Every
 * kernel is extern "C" (no name mangling): the runtime finds them by the
 * names in the launch plan at the end of this file. */
typedef unsigned int u32;
typedef unsigned long long u64;
typedef unsigned short bf16; /* raw bfloat16 bits */

/* ---- the ABI shared with runtime/cuda.c (gptc_abi guards it) ---------------------------- */
#define GPTC_CUDA_ABI 1

/* One micro-batch: written by the host before the launches that read it. */
typedef struct {
  u64 seed, offset; /* dropout: Philox key and micro-batch counter */
  float loss_scale; /* backward: grads += loss_scale * d(mean loss)/d(params) */
  int train;        /* dropout on */
  float loss;       /* out: mean cross-entropy over targets >= 0 */
  int n_valid;      /* out: targets >= 0 */
  int n_seg;        /* distinct input tokens (segments of the embedding backward) */
  int pad;
} gptc_micro;

/* Optimizer and inference control. */
typedef struct {
  double sumsq;     /* out: sum of squares of every gradient */
  double grad_clip; /* clip to this global norm; 0 disables */
  /* AdamW constants, computed by the host exactly as the CPU backend does */
  float step, bc2_sqrt, b1c, b2, b2c, keep, eps;
  int lerp_hi;
  float fixed_scale; /* grad_scale when use_fixed (a lone AdamW step) */
  int use_fixed;
  float grad_scale; /* out: min(1, grad_clip / (norm + 1e-6)) */
  int skip;         /* out: non-finite loss or norm, the step leaves the weights alone */
  int n_micro;      /* micro-batches whose losses the step checks */
  int token, pos;   /* inference */
  int pad;
} gptc_ctl;

extern "C" __device__ const u32 gptc_abi[4] = {GPTC_CUDA_ABI, sizeof(gptc_micro), sizeof(gptc_ctl), {{bf16_mode and 1 or 0}}};
extern "C" __device__ const char gptc_source_hash[65] = GPTC_SOURCE_HASH;

#define INF __int_as_float(0x7f800000)
/* inline helpers: unused ones are dropped without a warning */
#define DEV __device__ __forceinline__

/* ---- Philox4x32-10, bit for bit the CPU's (templates/cpu/prelude.c) -----------------------
 * Dropout words come in blocks of 64 elements: element i of a site takes word (i / 16) % 4 of
 * philox(counter = {16 (i / 64) + i % 16, site, offset_lo, offset_hi}, key = seed), so one call
 * serves elements i, i + 16, i + 32 and i + 48 of a block. */
DEV uint4 philox(u64 seed, u64 offset, u32 site, u64 counter) {
  u32 c0 = (u32)counter, c1 = site, c2 = (u32)offset, c3 = (u32)(offset >> 32);
  u32 k0 = (u32)seed, k1 = (u32)(seed >> 32);
#pragma unroll
  for (int r = 0; r < 10; r++) {
    u32 hi0 = __umulhi(0xD2511F53u, c0), lo0 = 0xD2511F53u * c0;
    u32 hi1 = __umulhi(0xCD9E8D57u, c2), lo1 = 0xCD9E8D57u * c2;
    u32 n0 = hi1 ^ c1 ^ k0, n2 = hi0 ^ c3 ^ k1;
    c0 = n0;
    c1 = lo1;
    c2 = n2;
    c3 = lo0;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  return make_uint4(c0, c1, c2, c3);
}

DEV u32 uint4_word(uint4 w, u32 i) { return i == 0 ? w.x : i == 1 ? w.y : i == 2 ? w.z : w.w; }

/* the words of elements 64b + l + 16k, k = 0..3, of a site: one call */
DEV uint4 drop_words4(const gptc_micro *mc, u32 site, u64 b, u32 l) {
  return philox(mc->seed, mc->offset, site, 16 * b + l);
}
/* the word of dropout element i alone */
DEV u32 drop_word(const gptc_micro *mc, u32 site, u64 i) {
  return uint4_word(drop_words4(mc, site, i >> 6, (u32)(i & 15)), (u32)((i >> 4) & 3));
}

% if p > 0 then
/* drop rate {{p}}: an element is dropped when its word < DROP_THRESHOLD (= round(p * 2^32));
 * kept ones are scaled by 1 / (1 - p) */
#define DROP_THRESHOLD {{drop_threshold}}u
#define DROP_SCALE {{flit(1 / (1 - p))}}
DEV float drop_apply(float x, u32 word) { return word >= DROP_THRESHOLD ? x * DROP_SCALE : 0.0f; }
% end

/* ---- elementwise math (no fast-math intrinsics: the CPU path uses IEEE exp) ------------ */
/* GELU, tanh approximation, as the CPU computes it: 0.5 x (1 + tanh(u)) = x sigmoid(2u) with
 * u = sqrt(2/pi) (x + 0.044715 x^3); e^{-2u} with its exponent capped at 80 */
#define GELU_S {{flit(math.sqrt(2 / math.pi))}} /* sqrt(2/pi) */
#define GELU_A {{flit(0.044715)}}
DEV float gelu_e(float x) {
  const float z = -2.0f * GELU_S * (x + GELU_A * x * x * x);
  return expf(z < 80.0f ? z : 80.0f);
}
DEV float gelu_f(float x) { return x / (1.0f + gelu_e(x)); }
/* d gelu(x) / dx = s + 2 x s (1 - s) du/dx, s = sigmoid(2u) */
DEV float gelu_d(float x) {
  const float s = 1.0f / (1.0f + gelu_e(x));
  return s + 2.0f * x * s * (1.0f - s) * GELU_S * (1.0f + 3.0f * GELU_A * x * x);
}

/* ---- reductions: fixed shuffle trees, so every run adds in the same order -------------- */
DEV float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
DEV double warp_sum_d(double v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
DEV float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
/* (max, sum of exp(x - max)) pairs: merging keeps sum relative to the larger max */
DEV void lse_merge(float &m, float &s, float m2, float s2) {
  if (m2 == -INF) return;
  if (m == -INF) {
    m = m2;
    s = s2;
    return;
  }
  float mx = fmaxf(m, m2);
  s = s * expf(m - mx) + s2 * expf(m2 - mx);
  m = mx;
}

/* ---- tensor-core operands ----------------------------------------------------------------
 * (GPTC_CUDA_EMULATION: a host emulator for tests without a GPU, tests/gpu/emu/emu.h, supplies
 * these four from the PTX ISA's definitions instead) */
#ifndef GPTC_CUDA_EMULATION
/* fp32 -> tf32, round to nearest (ties away), held in a 32-bit register */
DEV float to_tf32(float x) {
  u32 r;
  asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(x));
  return __uint_as_float(r);
}
DEV bf16 to_bf16(float x) {
  unsigned short r;
  asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(r) : "f"(x));
  return r;
}

/* D (16x8, fp32) += A (16x8, tf32, row) . B (8x8, tf32, col); fragment layouts per the PTX ISA:
 * g = lane / 4, t = lane % 4; a = {(g, t), (g+8, t), (g, t+4), (g+8, t+4)}; b = {(t, g), (t+4, g)};
 * d = {(g, 2t), (g, 2t+1), (g+8, 2t), (g+8, 2t+1)} as (row, column). */
DEV void mma_tf32(float *d, const u32 *a, const u32 *b) {
  asm volatile("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
               "{%0,%1,%2,%3};"
               : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
/* D (16x8, fp32) += A (16x16, bf16, row) . B (16x8, bf16, col); each register holds two
 * consecutive k: a = {(g, 2t..), (g+8, 2t..), (g, 2t+8..), (g+8, 2t+8..)}, b = {(2t.., g), (2t+8.., g)} */
DEV void mma_bf16(float *d, const u32 *a, const u32 *b) {
  asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
               "{%0,%1,%2,%3};"
               : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
#endif
