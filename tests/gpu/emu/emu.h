/* emu.h: runs gptc's generated CUDA kernels on the host, for tests on
 * machines without a GPU. The generated .cu is compiled as C++ with this
 * header forced in first (-include) and -DGPTC_CUDA_EMULATION; the fake
 * driver (fakecuda.c) loads the result and calls emu_run for each launch.
 *
 * Every CUDA thread of a block is a coroutine on one OS thread (its own
 * stack, switched by a few instructions of x86-64 assembly: ucontext's
 * signal-mask system calls made the emulator ten times slower);
 * threads switch only at barriers, so __syncthreads, __syncwarp, warp
 * shuffles and mma.sync are exact rendezvous points. Within a barrier
 * interval each thread runs alone, in block order (or in reverse order with
 * $EMU_ORDER=reverse): a missing barrier shows up as results that depend on
 * the order. A warp collective completes when its last live lane arrives;
 * lanes then read their own results. mma.sync and the tf32/bf16 conversions
 * follow the PTX ISA's definitions (fragment layouts, rounding), written
 * here independently of the kernels that use them. */
#ifndef GPTC_EMU_H
#define GPTC_EMU_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if !defined(__x86_64__)
#error "the CUDA emulator's context switch is x86-64 assembly"
#endif

#include <cmath>
using std::isfinite;

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(n)
/* one block runs at a time, so a function-static array is the block's shared memory */
#define __shared__ static
#define __constant__
#define __align__(n) __attribute__((aligned(n)))

/* the GPU's alignment, so -fsanitize=alignment traps a misaligned vector access */
struct __attribute__((aligned(16))) uint4 { unsigned x, y, z, w; };
struct __attribute__((aligned(8))) uint2 { unsigned x, y; };
struct __attribute__((aligned(16))) float4 { float x, y, z, w; };
struct __attribute__((aligned(8))) float2 { float x, y; };
struct emu_dim3 { unsigned x, y, z; };
static inline uint4 make_uint4(unsigned a, unsigned b, unsigned c, unsigned d) { return {a, b, c, d}; }
static inline uint2 make_uint2(unsigned a, unsigned b) { return {a, b}; }
static inline float4 make_float4(float a, float b, float c, float d) { return {a, b, c, d}; }
static inline float2 make_float2(float a, float b) { return {a, b}; }

static inline unsigned __umulhi(unsigned a, unsigned b) { return (unsigned)(((uint64_t)a * b) >> 32); }
static inline unsigned __float_as_uint(float f) { unsigned u; memcpy(&u, &f, 4); return u; }
static inline float __uint_as_float(unsigned u) { float f; memcpy(&f, &u, 4); return f; }
static inline float __int_as_float(int i) { float f; memcpy(&f, &i, 4); return f; }

/* emu_ctx_switch(save, load): pushes the callee-saved registers, stores the
 * stack pointer in *save, loads `load` and pops the registers saved there */
asm(".text\n"
    ".p2align 4\n"
    ".type emu_ctx_switch, @function\n"
    "emu_ctx_switch:\n"
    "  pushq %rbp\n  pushq %rbx\n  pushq %r12\n  pushq %r13\n  pushq %r14\n  pushq %r15\n"
    "  movq %rsp, (%rdi)\n"
    "  movq %rsi, %rsp\n"
    "  popq %r15\n  popq %r14\n  popq %r13\n  popq %r12\n  popq %rbx\n  popq %rbp\n"
    "  ret\n"
    ".size emu_ctx_switch, .-emu_ctx_switch\n");
extern "C" void emu_ctx_switch(void **save, void *load);

namespace emu {

enum { RUN, WAIT_BLOCK, WAIT_WARP, DONE };
enum { OP_NONE, OP_SYNCWARP, OP_SHFL, OP_MMA_TF32, OP_MMA_BF16 };

struct thread {
  void *sp;
  emu_dim3 tid;
  int lane, warp, state;
};

static const size_t STACK = 256 * 1024;
static thread *threads;
static char *stacks;
static int n_threads, cap_threads;
static thread *cur;
static void *sched_sp;
static emu_dim3 block_idx, block_dim, grid_dim;
static int block_arrived;
static int failed;
static char fail_msg[512];

/* per-warp collective state */
struct warp_state {
  int op, arrived, param;
  uint64_t in[32], out[32];
  unsigned a[32][4], b[32][2];
  float d[32][4], dout[32][4];
};
static warp_state warps[32];

static void (*kernel_fn)();
static uint64_t kernel_args[12];

static void fail(const char *msg) {
  if (!failed) snprintf(fail_msg, sizeof fail_msg, "%s", msg);
  failed = 1;
}

static void yield() { emu_ctx_switch(&cur->sp, sched_sp); }

static int live_in_warp(int w) {
  int n = 0;
  for (int i = w * 32; i < n_threads && i < (w + 1) * 32; i++) n += threads[i].state != DONE;
  return n;
}
static int live() {
  int n = 0;
  for (int i = 0; i < n_threads; i++) n += threads[i].state != DONE;
  return n;
}

static float tf32_operand(unsigned u) { return __uint_as_float(u & 0xffffe000u); } /* the unit reads 19 bits */
static float bf16_operand(unsigned short h) { return __uint_as_float((unsigned)h << 16); }

/* the warp's collective, once every live lane has arrived */
static void complete(int w) {
  warp_state &s = warps[w];
  if (s.op == OP_SHFL) {
    for (int l = 0; l < 32; l++) s.out[l] = s.in[l ^ s.param];
  } else if (s.op == OP_MMA_TF32 || s.op == OP_MMA_BF16) {
    const bool bf = s.op == OP_MMA_BF16;
    const int K = bf ? 16 : 8;
    float A[16][16], B[16][8];
    for (int l = 0; l < 32; l++) {
      int g = l >> 2, t = l & 3;
      if (!bf) {
        /* m16n8k8 .tf32: a0 (g, t), a1 (g+8, t), a2 (g, t+4), a3 (g+8, t+4); b0 (k=t, n=g), b1 (k=t+4, n=g) */
        A[g][t] = tf32_operand(s.a[l][0]);
        A[g + 8][t] = tf32_operand(s.a[l][1]);
        A[g][t + 4] = tf32_operand(s.a[l][2]);
        A[g + 8][t + 4] = tf32_operand(s.a[l][3]);
        B[t][g] = tf32_operand(s.b[l][0]);
        B[t + 4][g] = tf32_operand(s.b[l][1]);
      } else {
        /* m16n8k16 .bf16: register r holds two k-consecutive elements, the lower k in the low half:
         * a0 (g, 2t..2t+1), a1 (g+8, 2t..), a2 (g, 2t+8..), a3 (g+8, 2t+8..); b0 (k=2t.., n=g), b1 (k=2t+8.., n=g) */
        const int rows[4] = {g, g + 8, g, g + 8}, cols[4] = {2 * t, 2 * t, 2 * t + 8, 2 * t + 8};
        for (int r = 0; r < 4; r++) {
          A[rows[r]][cols[r]] = bf16_operand((unsigned short)(s.a[l][r] & 0xffff));
          A[rows[r]][cols[r] + 1] = bf16_operand((unsigned short)(s.a[l][r] >> 16));
        }
        for (int r = 0; r < 2; r++) {
          B[2 * t + 8 * r][g] = bf16_operand((unsigned short)(s.b[l][r] & 0xffff));
          B[2 * t + 8 * r + 1][g] = bf16_operand((unsigned short)(s.b[l][r] >> 16));
        }
      }
    }
    for (int l = 0; l < 32; l++) {
      int g = l >> 2, t = l & 3;
      /* d0 (g, 2t), d1 (g, 2t+1), d2 (g+8, 2t), d3 (g+8, 2t+1) */
      const int rows[4] = {g, g, g + 8, g + 8}, cols[4] = {2 * t, 2 * t + 1, 2 * t, 2 * t + 1};
      for (int r = 0; r < 4; r++) {
        double acc = 0;
        for (int k = 0; k < K; k++) acc += (double)A[rows[r]][k] * B[k][cols[r]];
        s.dout[l][r] = (float)((double)s.d[l][r] + acc);
      }
    }
  }
  s.op = OP_NONE;
  s.arrived = 0;
  for (int i = w * 32; i < n_threads && i < (w + 1) * 32; i++)
    if (threads[i].state == WAIT_WARP) threads[i].state = RUN;
}

static void warp_arrive(int op, int param) {
  warp_state &s = warps[cur->warp];
  if (s.arrived == 0) {
    s.op = op;
    s.param = param;
  } else if (s.op != op || s.param != param) {
    fail("lanes of one warp reached different warp collectives (divergent __shfl/__syncwarp/mma.sync)");
  }
  s.arrived++;
  if (s.arrived == live_in_warp(cur->warp)) {
    complete(cur->warp);
    return;
  }
  cur->state = WAIT_WARP;
  yield();
}

static void release_block() {
  block_arrived = 0;
  for (int i = 0; i < n_threads; i++)
    if (threads[i].state == WAIT_BLOCK) threads[i].state = RUN;
}

static void entry() {
  typedef void (*fn12)(uint64_t, uint64_t, uint64_t, uint64_t, uint64_t, uint64_t, uint64_t, uint64_t, uint64_t,
                       uint64_t, uint64_t, uint64_t);
  const uint64_t *a = kernel_args;
  ((fn12)kernel_fn)(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9], a[10], a[11]);
  cur->state = DONE;
  if (warps[cur->warp].arrived) fail("a lane exited while its warp waited in a collective");
  if (block_arrived && block_arrived == live()) release_block();
  emu_ctx_switch(&cur->sp, sched_sp); /* never resumed */
}

static int run_block(bool reverse) {
  for (int i = 0; i < n_threads; i++) {
    thread &t = threads[i];
    /* a fresh stack as emu_ctx_switch leaves it: six registers, then the
     * address `ret` jumps to (entry, which sees the stack of a call) */
    uintptr_t top = ((uintptr_t)(stacks + (size_t)(i + 1) * STACK) & ~(uintptr_t)15) - 16;
    void **frame = (void **)top;
    frame[0] = (void *)entry;
    for (int r = 1; r <= 6; r++) frame[-r] = 0;
    t.sp = frame - 6;
    t.state = RUN;
  }
  for (int w = 0; w < 32; w++) warps[w].arrived = 0, warps[w].op = OP_NONE;
  block_arrived = 0;
  for (;;) {
    bool ran = false, all_done = true;
    for (int k = 0; k < n_threads && !failed; k++) {
      thread &t = threads[reverse ? n_threads - 1 - k : k];
      if (t.state != DONE) all_done = false;
      if (t.state != RUN) continue;
      cur = &t;
      emu_ctx_switch(&sched_sp, t.sp);
      ran = true;
    }
    if (failed) return -1;
    if (all_done) return 0;
    if (!ran) {
      fail("deadlock: threads wait at barriers that can never complete (__syncthreads in divergent code?)");
      return -1;
    }
  }
}

} /* namespace emu */

#define threadIdx (emu::cur->tid)
#define blockIdx (emu::block_idx)
#define blockDim (emu::block_dim)
#define gridDim (emu::grid_dim)

static inline void __syncthreads() {
  emu::block_arrived++;
  if (emu::block_arrived == emu::live()) {
    emu::release_block();
    return;
  }
  emu::cur->state = emu::WAIT_BLOCK;
  emu::yield();
}

static inline void __syncwarp(unsigned mask = 0xffffffffu) {
  (void)mask;
  emu::warp_arrive(emu::OP_SYNCWARP, 0);
}

template <class T> static inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask) {
  (void)mask;
  static_assert(sizeof(T) <= 8, "shuffle of more than 8 bytes");
  emu::warp_state &s = emu::warps[emu::cur->warp];
  uint64_t bits = 0;
  memcpy(&bits, &v, sizeof v);
  s.in[emu::cur->lane] = bits;
  emu::warp_arrive(emu::OP_SHFL, lane_mask);
  T r;
  memcpy(&r, &s.out[emu::cur->lane], sizeof r);
  return r;
}

/* cvt.rna.tf32.f32: round to nearest, ties away from zero, to 10 mantissa bits */
static inline float to_tf32(float x) {
  unsigned u = __float_as_uint(x);
  if ((u & 0x7f800000u) != 0x7f800000u) u = (u + 0x1000u) & 0xffffe000u;
  return __uint_as_float(u);
}

/* cvt.rn.bf16.f32: round to nearest even */
static inline unsigned short to_bf16(float x) {
  unsigned u = __float_as_uint(x);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (unsigned short)((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1);
  return (unsigned short)(u >> 16);
}

static inline void emu_mma(int op, float *d, const unsigned *a, const unsigned *b) {
  emu::warp_state &s = emu::warps[emu::cur->warp];
  int l = emu::cur->lane;
  for (int i = 0; i < 4; i++) s.a[l][i] = a[i], s.d[l][i] = d[i];
  s.b[l][0] = b[0], s.b[l][1] = b[1];
  emu::warp_arrive(op, 0);
  for (int i = 0; i < 4; i++) d[i] = s.dout[l][i];
}
static inline void mma_tf32(float *d, const unsigned *a, const unsigned *b) { emu_mma(emu::OP_MMA_TF32, d, a, b); }
static inline void mma_bf16(float *d, const unsigned *a, const unsigned *b) { emu_mma(emu::OP_MMA_BF16, d, a, b); }

/* The thread stacks live as long as the module: freed when the driver
 * unloads it (dlclose runs this). */
__attribute__((destructor)) static void emu_free_stacks() {
  free(emu::threads);
  free(emu::stacks);
}

/* Runs kernel `fn` (all parameters pointers or ints, passed as 64-bit
 * words: the x86-64 calling convention reads an int from the low half) over
 * the grid. Returns 0, or -1 with the reason in *msg. */
extern "C" int emu_run(void (*fn)(), const unsigned grid[3], const unsigned block[3], const uint64_t args[12],
                       const char **msg) {
  using namespace emu;
  int n = (int)(block[0] * block[1] * block[2]);
  if (n < 1 || n > 1024) {
    *msg = "block size outside 1..1024";
    return -1;
  }
  if (n > cap_threads) {
    free(threads);
    free(stacks);
    threads = (thread *)calloc((size_t)n, sizeof *threads);
    stacks = (char *)malloc((size_t)n * STACK);
    if (!threads || !stacks) {
      *msg = "out of memory for thread stacks";
      cap_threads = 0;
      return -1;
    }
    cap_threads = n;
  }
  n_threads = n;
  for (int i = 0; i < n; i++) {
    threads[i].tid = {(unsigned)(i % block[0]), (unsigned)(i / block[0] % block[1]), (unsigned)(i / (block[0] * block[1]))};
    threads[i].lane = i % 32;
    threads[i].warp = i / 32;
  }
  kernel_fn = fn;
  memcpy(kernel_args, args, sizeof kernel_args);
  block_dim = {block[0], block[1], block[2]};
  grid_dim = {grid[0], grid[1], grid[2]};
  const char *order = getenv("EMU_ORDER");
  bool reverse = order && !strcmp(order, "reverse");
  failed = 0;
  for (unsigned z = 0; z < grid[2]; z++)
    for (unsigned y = 0; y < grid[1]; y++)
      for (unsigned x = 0; x < grid[0]; x++) {
        block_idx = {x, y, z};
        if (run_block(reverse)) {
          *msg = fail_msg;
          return -1;
        }
      }
  return 0;
}

#endif
