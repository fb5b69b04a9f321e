/* ---- GEMM building blocks --------------------------------------------------------
 * C (M, N) = op(A) (M, K) . op(B) (K, N), blocked after Goto & van de Geijn. A
 * thread owns each C tile of at most MC x NC whole and walks K in KC blocks in
 * order, so every element of C is summed in the same order whatever the
 * thread count, tile size or K block (gen/schedule.lua). Each K block of B is
 * packed into zero-padded NR-column panels (a transpose for B^T); A^T into
 * MR-row strips; rows of A are read in place unless their stride would crowd
 * them into too few cache sets, then copied with a padded stride. Edge strips
 * are zero padded, so the MR x NR register-blocked micro-kernel never sees a
 * partial tile. Each instance's schedule (MR, NR, tiles, K block) is named
 * above it. */
% if pack_a then
static _Thread_local real pack_a[{{pack_a}}] __attribute__((aligned(64)));
static _Thread_local real pack_b[{{pack_b}}] __attribute__((aligned(64)));
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

/* d[0, n) = s[0, n) rounded to bf16 */
static __attribute__((unused)) void gemm_copy_bf16(real *restrict d, const real *restrict s, int n) {
  int i = 0;
  for (; i + {{VL}} <= n; i += {{VL}}) vstore(d + i, vbf16_round(vload(s + i)));
  for (; i < n; i++) d[i] = bf16_round(s[i]);
}
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
