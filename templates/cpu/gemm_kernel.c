/* ---- GEMM building blocks --------------------------------------------------------
 * C (M, N) = op(A) (M, K) . op(B) (K, N), blocked after Goto & van de Geijn. A
 * thread owns each C tile of at most MC x NC whole and walks K in KC blocks in
 * order, so every element of C is summed in the same order whatever the
 * thread count, tile size or K block (gen/cpu/schedule.lua). Each K block of B is
 * packed into zero-padded NR-column panels (a transpose for B^T); A^T into
 * MR-row strips; rows of A are read in place unless their stride would crowd
 * them into too few cache sets, then copied with a padded stride. Edge strips
 * are zero padded, so the MR x NR register-blocked micro-kernel never sees a
 * partial tile. Each instance's schedule (MR, NR, tiles, K block) is named
 * above it. */
% if pack_a and bf16 then
/* bf16: the pair layout's bits (gemm.c), sized in bf16 elements */
static _Thread_local uint16_t pack_a16[{{pack_a}}] __attribute__((aligned(64)));
static _Thread_local uint16_t pack_b16[{{pack_b}}] __attribute__((aligned(64)));
% end
% if pack_a and (not bf16 or pack_fp32) then
static _Thread_local real pack_a[{{pack_a}}] __attribute__((aligned(64)));
static _Thread_local real pack_b[{{pack_b}}] __attribute__((aligned(64)));
% end
% if pack_a then
/* A GEMM that packs A's row block whole (a_whole) numbers its calls; a thread
 * knows which call and row block its pack_a holds. */
static unsigned gemm_calls __attribute__((unused));
static _Thread_local unsigned pack_a_call __attribute__((unused));
static _Thread_local int pack_a_row __attribute__((unused)) = -1;
% end

% local function kernel(m, rows)
%   local MR, NV, NR = m.MR, m.NV, m.NR
%   local name = rows and m.rows or m.cols
/* c ({{MR}}, {{NR}}) = its start (mode 0: zero, 1: c itself, 2: the bias row)
 * plus a(i, k) b[k * ldb + j] for k = 0, 1, .., kc - 1 in order, one fused
 * multiply-add each, with a(i, k) = {{rows and "a[i * lda + k]" or "a[k * lda + i]"}}. Every register block
 * and K blocking sums in this order, so all schedules give the same bits.
 * The {{MR}} x {{NV}} vector accumulators are named so they stay in registers
 * whatever the optimizer does with loops; one shared copy keeps compile
 * times low. */
static __attribute__((noinline, unused)) void {{name}}(int kc, const real *restrict a, int lda, const real *restrict b,
                                             int ldb, real *restrict c, int ldc, int mode,
                                             const real *restrict bias) {
%   for i = 0, MR - 1 do
%     for v = 0, NV - 1 do
  vreal c{{i}}_{{v}} = mode == 1 ? vload(c + {{i}} * (size_t)ldc + {{v * VL}}) : mode == 2 ? vload(bias + {{v * VL}}) : (vreal){0};
%     end
%   end
%   if rows then
%     for i = 0, MR - 1 do
  const real *a{{i}} = a + (size_t){{i}} * lda;
%     end
%   end
%   if m.unroll > 1 then
#pragma GCC unroll {{m.unroll}}
%   end
  for (int k = 0; k < kc; k++) {
    const real *bk = b + (size_t)k * ldb;
%   if not rows then
    const real *ak = a + (size_t)k * lda;
%   end
%   if m.pf > 0 then
    /* prefetch (schedule pf={{m.pf}}): B's panel row k + {{m.pf}} and {{rows and ("each A row at k + " .. m.pf .. ", every " .. 64 // RSIZE .. " k (a line)") or ("A's strip row k + " .. m.pf)}}
     * (a hint: past the end it reads nothing and never faults) */
%     for l = 0, (NR * RSIZE - 1) // 64 do
    __builtin_prefetch(bk + {{m.pf}} * (size_t)ldb + {{l * 64 // RSIZE}});
%     end
%     if rows then
    if (k % {{64 // RSIZE}} == 0) {
%       for i = 0, MR - 1 do
      __builtin_prefetch(a{{i}} + k + {{m.pf}});
%       end
    }
%     else
    __builtin_prefetch(ak + {{m.pf}} * (size_t)lda);
%     end
%   end
%   for v = 0, NV - 1 do
    const vreal b{{v}} = vload(bk + {{v * VL}});
%   end
%   for i = 0, MR - 1 do
    {
      const real av = {{rows and ("a" .. i .. "[k]") or ("ak[" .. i .. "]")}};
%     for v = 0, NV - 1 do
      c{{i}}_{{v}} += av * b{{v}};
%     end
    }
%   end
  }
%   for i = 0, MR - 1 do
%     for v = 0, NV - 1 do
  vstore(c + {{i}} * (size_t)ldc + {{v * VL}}, c{{i}}_{{v}});
%     end
%   end
}
% end
% for _, m in ipairs(micros) do
% kernel(m, true)

% kernel(m, false)

% end
/* d[0, n) = s[0, n): a row of A packed as it is */
static __attribute__((unused)) void gemm_copy(real *restrict d, const real *restrict s, int n) {
  memcpy(d, s, (size_t)n * sizeof(real));
}
% if bf16 then
%   local amx = false
%   for _, m in ipairs(micros) do if m.bf_path == "amx" then amx = true end end
%   if amx then

/* AMX's tile data is the kernel's to hand out: ask once per process (Linux:
 * arch_prctl(ARCH_REQ_XCOMP_PERM, XTILEDATA)); refused, the bf16 GEMMs fall
 * back to vdpbf16ps where compiled in, else to the portable kernel (the same
 * pack layout; the zeros AMX pads k with add nothing). */
#include <sys/syscall.h>
#include <unistd.h>
static int amx_state; /* 0 not asked, 1 granted, -1 refused */
static __attribute__((unused)) int amx_ready(void) {
#if defined(GPTC_X86_EMU) /* the emulated tiles (tests/emu_x86/x86emu.h) need no permission; a test may refuse */
  extern char *getenv(const char *);
  return !getenv("X86EMU_AMX_REFUSED");
#endif
  int s = __atomic_load_n(&amx_state, __ATOMIC_ACQUIRE);
  if (!s) {
    s = syscall(SYS_arch_prctl, 0x1023 /* ARCH_REQ_XCOMP_PERM */, 18 /* XFEATURE_XTILEDATA */) == 0 ? 1 : -1;
    __atomic_store_n(&amx_state, s, __ATOMIC_RELEASE);
  }
  return s > 0;
}
%   end
%   if amx or (function() for _, m in ipairs(micros) do if m.bf_path ~= "portable" then return true end end end)() then
#if defined(GPTC_X86_EMU)
#include GPTC_X86_EMU /* tests: the intrinsics emulated on any host (tests/emu_x86/x86emu.h) */
#else
#include <immintrin.h>
#endif
%   end
%   for _, m in ipairs(micros) do
%     local MR, NV, NR = m.MR, m.NV, m.NR

/* c ({{MR}}, {{NR}}) = its start (mode 0: zero, 1: c itself, 2: the bias row), then for each
 * pair of k (2j, 2j + 1), j = 0, 1, .., (kc - 1) / 2 in order: c += a(i, 2j+1) b(2j+1, j'),
 * then c += a(i, 2j) b(2j, j'), one fused multiply-add each, every input and result
 * flushed to zero when denormal (vdpbf16ps's order: Intel SDM, DAZ in, FTZ out, round to
 * nearest even). a: {{MR}} rows of bf16, k contiguous, lda apart; b: a pair panel
 * (kc2 / 2, {{NR}}, 2) bf16; k = kc (odd kc) is the layout's zero. The portable kernel:
 * every host runs it, and it is the reference the hardware kernels equal. */
static __attribute__((noinline, unused)) void {{m.bf_portable}}_body(int kc, const uint16_t *restrict a, int lda,
                                             const uint16_t *restrict b, real *restrict c, int ldc, int mode,
                                             const real *restrict bias) {
%     for i = 0, MR - 1 do
%       for v = 0, NV - 1 do
  vreal c{{i}}_{{v}} = vftz(mode == 1 ? vload(c + {{i}} * (size_t)ldc + {{v * VL}}) : mode == 2 ? vload(bias + {{v * VL}}) : (vreal){0});
%       end
%     end
%     for i = 0, MR - 1 do
  const uint16_t *a{{i}} = a + (size_t){{i}} * lda;
%     end
  for (int k = 0; k < kc; k += 2) {
    const uint16_t *bk = b + (size_t)k * {{NR}};
%     for v = 0, NV - 1 do
    vbits w{{v}};
    memcpy(&w{{v}}, bk + {{2 * v * VL}}, sizeof w{{v}});
    const vreal bo{{v}} = (vreal)(w{{v}} & 0xffff0000u), be{{v}} = (vreal)(w{{v}} << 16);
%     end
%     for i = 0, MR - 1 do
    {
      uint32_t w;
      memcpy(&w, a{{i}} + k, 4);
      const real ao = bits_f(w & 0xffff0000u), ae = bits_f(w << 16);
%       for v = 0, NV - 1 do
      c{{i}}_{{v}} = BF16_FTZ(c{{i}}_{{v}} + ao * bo{{v}});
      c{{i}}_{{v}} = BF16_FTZ(c{{i}}_{{v}} + ae * be{{v}});
%       end
    }
%     end
  }
%     for i = 0, MR - 1 do
%       for v = 0, NV - 1 do
  vstore(c + {{i}} * (size_t)ldc + {{v * VL}}, c{{i}}_{{v}});
%       end
%     end
}
static __attribute__((noinline, unused)) void {{m.bf_portable}}(int kc, const uint16_t *restrict a, int lda,
                                             const uint16_t *restrict b, real *restrict c, int ldc, int mode,
                                             const real *restrict bias) {
  BF16_FTZ_ON();
  {{m.bf_portable}}_body(kc, a, lda, b, c, ldc, mode, bias);
  BF16_FTZ_OFF();
}
%     if m.bf_path ~= "portable" then
%       local fallback = m.bf_portable

/* The same with vdpbf16ps ({{NV}} x 16-column B words a pair row; A's pair broadcast):
 * its documented order is the portable kernel's, so the two agree bit for bit. */
#if (defined(__AVX512BF16__) && defined(__AVX512F__)) || defined(GPTC_X86_EMU)
%       fallback = m.bf .. "_avx512"
static __attribute__((noinline, unused)) void {{m.bf}}_avx512(int kc, const uint16_t *restrict a, int lda,
                                             const uint16_t *restrict b, real *restrict c, int ldc, int mode,
                                             const real *restrict bias) {
%       for i = 0, MR - 1 do
%         for v = 0, NV - 1 do
  __m512 c{{i}}_{{v}} = (__m512)vftz(mode == 1 ? vload(c + {{i}} * (size_t)ldc + {{v * 16}}) : mode == 2 ? vload(bias + {{v * 16}}) : (vreal){0});
%         end
%       end
%       for i = 0, MR - 1 do
  const uint16_t *a{{i}} = a + (size_t){{i}} * lda;
%       end
  for (int k = 0; k < kc; k += 2) {
    const uint16_t *bk = b + (size_t)k * {{NR}};
%       for v = 0, NV - 1 do
    const __m512bh b{{v}} = (__m512bh)_mm512_loadu_si512(bk + {{32 * v}});
%       end
%       for i = 0, MR - 1 do
    {
      uint32_t w;
      memcpy(&w, a{{i}} + k, 4);
      const __m512bh av = (__m512bh)_mm512_set1_epi32((int)w);
%         for v = 0, NV - 1 do
      c{{i}}_{{v}} = _mm512_dpbf16_ps(c{{i}}_{{v}}, av, b{{v}});
%         end
    }
%       end
  }
%       for i = 0, MR - 1 do
%         for v = 0, NV - 1 do
  _mm512_storeu_ps(c + {{i}} * (size_t)ldc + {{v * 16}}, c{{i}}_{{v}});
%         end
%       end
}
%       if m.bf_path == "avx512bf16" then
#else
#error "this source's bf16 GEMMs use AVX512-BF16 (vdpbf16ps): compile it with -mavx512bf16 (-march=native on a CPU that has it)"
%       end
#endif
%       if m.bf_path == "avx512bf16" then
#define {{m.bf}} {{m.bf}}_avx512
%       else
%         local NT = NR // 16

/* The same with AMX: tiles 0..{{NT - 1}} hold C ({{MR}} rows x 16 fp32), tile {{NT}} A ({{MR}} rows x
 * 32 bf16), tile {{NT + 1}} a B block (16 pair rows x 16 columns x 2); each tdpbf16ps adds 16
 * pairs of k. Its documented order (Intel SDM) is another: per instruction, the even
 * elements' products summed from zero in k order, the odd ones' likewise, then
 * c += (even + odd), each step rounded to nearest even with DAZ and FTZ. So it agrees
 * with the portable kernel within the tolerance tests/test_bf16hw.c states, not bit for
 * bit. kc is padded to 32 with zeros by the pack layout. Refused the tile state,
 * {{fallback}}. */
#if (defined(__AMX_BF16__) && defined(__AMX_TILE__)) || defined(GPTC_X86_EMU)
static const struct {
  uint8_t palette, start_row, reserved[14];
  uint16_t colsb[16];
  uint8_t rows[16];
} __attribute__((aligned(64))) amx_cfg_{{MR}}x{{NR}} = {
    1, 0, {0}, { {{string.rep("64, ", NT + 2)}}}, { {{string.rep(MR .. ", ", NT + 1)}}16 }};
static __attribute__((noinline, unused)) void {{m.bf}}(int kc, const uint16_t *restrict a, int lda,
                                             const uint16_t *restrict b, real *restrict c, int ldc, int mode,
                                             const real *restrict bias) {
  if (!amx_ready()) {
    {{fallback}}(kc, a, lda, b, c, ldc, mode, bias);
    return;
  }
  _tile_loadconfig(&amx_cfg_{{MR}}x{{NR}});
  real t[{{MR * 16}}] __attribute__((aligned(64)));
  if (mode == 2)
    for (int i = 0; i < {{MR}}; i++) memcpy(t + i * 16, bias, 16 * sizeof(real));
%         for v = 0, NT - 1 do
  if (mode == 0) _tile_zero({{v}});
  else if (mode == 1) _tile_loadd({{v}}, c + {{16 * v}}, ldc * (int)sizeof(real));
  else {
%           if v > 0 then
    for (int i = 0; i < {{MR}}; i++) memcpy(t + i * 16, bias + {{16 * v}}, 16 * sizeof(real));
%           end
    _tile_loadd({{v}}, t, 64);
  }
%         end
  for (int k = 0; k < kc; k += 32) {
    _tile_loadd({{NT}}, a + k, lda * 2);
%         for v = 0, NT - 1 do
    _tile_loadd({{NT + 1}}, b + (size_t)k * {{NR}} + {{32 * v}}, {{4 * NR}});
    _tile_dpbf16ps({{v}}, {{NT}}, {{NT + 1}});
%         end
  }
%         for v = 0, NT - 1 do
  _tile_stored({{v}}, c + {{16 * v}}, ldc * (int)sizeof(real));
%         end
}
#else
#error "this source's bf16 GEMMs use AMX (tdpbf16ps): compile it with -mamx-tile -mamx-bf16 (-march=native on a CPU that has them)"
#endif
%       end
%     else
#define {{m.bf}} {{m.bf_portable}}
%     end
%   end
% end

/* An edge tile (mr or nr short of the register block (tr, tc)) is computed
 * whole in a scratch tile t: edge_init fills t with what each sum starts
 * from (mode 0: zero, 1: C, 2: the bias; zero outside the valid part), the
 * micro-kernel adds to it (mode 1), edge_store copies the valid part back. */
static __attribute__((unused)) void edge_init(real *restrict t, int tr, int tc, const real *restrict c, int ldc,
                                              int mr, int nr, int mode, const real *restrict bias) {
  for (int i = 0; i < tr; i++)
    for (int j = 0; j < tc; j++)
      t[i * tc + j] = i >= mr || j >= nr ? 0 : mode == 1 ? c[(size_t)i * ldc + j] : mode == 2 ? bias[j] : 0;
}

static __attribute__((unused)) void edge_store(real *restrict c, int ldc, const real *restrict t, int tc, int mr,
                                               int nr) {
  for (int i = 0; i < mr; i++)
    for (int j = 0; j < nr; j++) c[(size_t)i * ldc + j] = t[i * tc + j];
}
