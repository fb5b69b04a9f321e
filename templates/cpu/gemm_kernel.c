/* ---- GEMM building blocks --------------------------------------------------------
 * C (M, N) = op(A) (M, K) . op(B) (K, N), blocked after Goto & van de Geijn. A
 * thread owns each C tile of at most MC x NC whole and walks K in KC blocks in
 * order, so every element of C is summed in the same order whatever the
 * thread count. Each K block of B is packed into zero-padded {{NR}}-column panels
 * (a transpose for B^T); A^T into {{MR}}-row strips; rows of A are read in place
 * unless their stride would crowd them into too few cache sets, then copied
 * with a padded stride. Edge strips are zero padded, so the {{MR}}x{{NR}}
 * register-blocked micro-kernel never sees a partial tile. */
static _Thread_local real pack_a[{{pack_a}}] __attribute__((aligned(64)));
static _Thread_local real pack_b[{{pack_b}}] __attribute__((aligned(64)));
/* A GEMM that packs A's row block whole (a_whole) numbers its calls; a thread
 * knows which call and row block its pack_a holds. */
static unsigned gemm_calls __attribute__((unused));
static _Thread_local unsigned pack_a_call __attribute__((unused));
static _Thread_local int pack_a_row __attribute__((unused)) = -1;

% local function kernel(name, rows)
/* c ({{MR}}, {{NR}}) (mode: 0 store, 1 add, 2 bias + acc) = sum over k < kc of
 * a(i, k) b[k * ldb + j], with a(i, k) = {{rows and "a[i * lda + k]" or "a[k * lda + i]"}}. The {{MR}} x {{NV}}
 * vector accumulators are named so they stay in registers whatever the
 * optimizer does with loops; one shared copy keeps compile times low. */
static __attribute__((noinline)) void {{name}}(int kc, const real *restrict a, int lda, const real *restrict b,
                                             int ldb, real *restrict c, int ldc, int mode,
                                             const real *restrict bias) {
%   for i = 0, MR - 1 do
  vreal {{acc_list(i)}};
%   end
%   if rows then
%     for i = 0, MR - 1 do
  const real *a{{i}} = a + (size_t){{i}} * lda;
%     end
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
  {
    real *ci = c + (size_t){{i}} * ldc + {{v * VL}};
    vstore(ci, mode == 1 ? vload(ci) + c{{i}}_{{v}} : mode == 2 ? vload(bias + {{v * VL}}) + c{{i}}_{{v}} : c{{i}}_{{v}});
  }
%     end
%   end
}
% end
% kernel("micro_kernel_rows", true)

% kernel("micro_kernel_cols", false)

/* An edge tile (mr < {{MR}} or nr < {{NR}}): computed whole into a scratch
 * tile, then the valid part stored with the mode. */
static void edge_store(real *restrict c, int ldc, const real *restrict t, int mr, int nr, int mode,
                       const real *restrict bias) {
  for (int i = 0; i < mr; i++)
    for (int j = 0; j < nr; j++) {
      real v = t[i * {{NR}} + j];
      c[(size_t)i * ldc + j] = mode == 1 ? c[(size_t)i * ldc + j] + v : mode == 2 ? bias[j] + v : v;
    }
}
