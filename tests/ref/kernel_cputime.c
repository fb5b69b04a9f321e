/* One-thread CPU time per call of a few kernels of the baby recipe (configs/
 * shakespeare-char-baby.lua), compiled straight from a `gptc gen` source: the
 * thread's CPU time, not wall time, so the other jobs of a shared machine count
 * less (docs/bench-cpu.md, "Zen 1 kernels"). Not built by CMake; see
 * kernel_cputime.sh. MODEL is the path of the generated model.c. */
#include MODEL
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* n floats in [-scale, scale) from a seeded LCG */
static float *buf(size_t n, unsigned s, float scale) {
  float *v = aligned_alloc(64, (n * 4 + 63) / 64 * 64);
  for (size_t i = 0; i < n; i++) {
    s = s * 1103515245u + 12345u;
    v[i] = scale * (((s >> 8) & 0xffff) / 32768.0f - 1.0f);
  }
  return v;
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

#define R 40
/* 3 warm-up calls, then R timed ones: the minimum and the median */
#define TIME(label, flops, call)                                                                          \
  do {                                                                                                    \
    double t[R];                                                                                          \
    for (int w = 0; w < 3; w++) call;                                                                     \
    for (int r = 0; r < R; r++) {                                                                         \
      double t0 = now();                                                                                  \
      call;                                                                                               \
      t[r] = now() - t0;                                                                                  \
    }                                                                                                     \
    qsort(t, R, sizeof *t, cmp);                                                                          \
    printf("%-36s min %8.3f ms  median %8.3f ms  %6.2f GFLOP/s at the min\n", label, t[0] * 1e3,         \
           t[R / 2] * 1e3, (flops) / t[0] * 1e-9);                                                       \
  } while (0)

#ifdef MID
/* MID: only the attention of the mid recipe (configs/shakespeare-char-mid.lua: B 64, T 256, C 384,
 * H 6, hd 64), the largest gap to the peak on the AVX2 host (docs/bench-cpu.md) */
int main(void) {
  /* qkv (64, 256, 1152), out (64, 256, 384), att (384, 256, 256), scratch (384, S2 <= 160000) */
  float *qkv = buf(64 * 256 * 1152, 7, 1), *out = buf(64 * 256 * 384, 8, 1), *att = buf(384 * 256 * 256, 9, 1);
  float *scr = buf(384 * 160000, 10, 1), *dq = buf(64 * 256 * 1152, 11, 1), *dout = buf(64 * 256 * 384, 12, 1);
  gptc_rng rng;
  memset(&rng, 0, sizeof rng);
  TIME("attention_64x256_forward", 4.0 * 384 * 256 * 257 / 2 * 64, attention_64x256_forward(out, att, qkv, scr, rng, 1));
  TIME("attention_64x256_backward", 8.0 * 384 * 256 * 257 / 2 * 64,
       attention_64x256_backward(dq, dout, qkv, att, scr, rng, 1));
  return 0;
}
#else
int main(void) {
  /* A (768, 512) scaled so the GEMM outputs are about N(0, 1), as GELU's inputs in training */
  float *A = buf(768 * 512, 1, 0.25f), *B = buf(512 * 512, 2, 1), *bias = buf(512, 3, 1);
  float *C = buf(768 * 512, 4, 1), *G = buf(768 * 512, 5, 1), *X = buf(768 * 512, 6, 1);
  /* attention: qkv (12, 64, 384), out (12, 64, 128), att (48, 64, 64), scratch (48, S) */
  float *qkv = buf(768 * 384, 7, 1), *out = buf(768 * 128, 8, 1), *att = buf(48 * 64 * 64, 9, 1);
  float *scr = buf(48 * 12000, 10, 1), *dq = buf(768 * 384, 11, 1), *dout = buf(768 * 128, 12, 1);
  gptc_rng rng;
  memset(&rng, 0, sizeof rng);
  TIME("gemm_768x384x128_nn_set", 2.0 * 768 * 384 * 128, gemm_768x384x128_nn_set(C, A, B, bias));
  TIME("gemm_768x512x128_nn_bias_gelu", 2.0 * 768 * 512 * 128, gemm_768x512x128_nn_bias_gelu(C, A, B, bias, G));
  TIME("gemm_768x512x128_nt_set_gelu_grad", 2.0 * 768 * 512 * 128,
       gemm_768x512x128_nt_set_gelu_grad(C, A, B, bias, X));
  /* causal: T (T + 1) / 2 score and mix pairs of hd = 32, 2 FLOPs each, twice (four products backward) */
  TIME("attention_12x64_forward", 4.0 * 48 * 64 * 65 / 2 * 32, attention_12x64_forward(out, att, qkv, scr, rng, 1));
  TIME("attention_12x64_backward", 8.0 * 48 * 64 * 65 / 2 * 32,
       attention_12x64_backward(dq, dout, qkv, att, scr, rng, 1));
  return 0;
}
#endif
