/* ---- GEMM building blocks --------------------------------------------------------
 * C (M, N) = op(A) (M, K) . op(B) (K, N), blocked after Goto & van de Geijn. A
 * thread owns each C tile of at most MC x NC whole and walks K in KC blocks in
 * order, so every element of C is summed in the same order whatever the
 * thread count. Each block of A and B is packed into contiguous, zero-padded
 * {{MR}}-row strips and {{NR}}-column panels (no cache-set conflicts between the
 * rows the micro-kernel streams, no edge cases inside it). */
static _Thread_local real pack_a[{{pack_a}}] __attribute__((aligned(64)));
static _Thread_local real pack_b[{{pack_b}}] __attribute__((aligned(64)));

/* The micro-kernel names its {{MR}} x {{NV}} vector accumulators so they live in
 * registers whatever the optimizer decides about loops; one shared copy keeps
 * the compile time of many GEMMs low. */
/* c ({{MR}}, {{NR}}) (mode: 0 store, 1 add, 2 bias + acc) = sum over k < kc of
 * a[k][i] b[k][j] from a packed A strip (kc, {{MR}}) and B panel (kc, {{NR}}) */
static __attribute__((noinline)) void micro_kernel(int kc, const real *restrict a, const real *restrict b,
                                                   real *restrict c, int ldc, int mode, const real *restrict bias) {
% for i = 0, MR - 1 do
  vreal {{acc_list(i)}};
% end
  for (int k = 0; k < kc; k++) {
    const real *ak = a + (size_t)k * {{MR}}, *bk = b + (size_t)k * {{NR}};
% for v = 0, NV - 1 do
    const vreal b{{v}} = vload(bk + {{v * VL}});
% end
% for i = 0, MR - 1 do
    {
      const real av = ak[{{i}}];
%   for v = 0, NV - 1 do
      c{{i}}_{{v}} += av * b{{v}};
%   end
    }
% end
  }
% for i = 0, MR - 1 do
%   for v = 0, NV - 1 do
  {
    real *ci = c + (size_t){{i}} * ldc + {{v * VL}};
    vstore(ci, mode == 1 ? vload(ci) + c{{i}}_{{v}} : mode == 2 ? vload(bias + {{v * VL}}) + c{{i}}_{{v}} : c{{i}}_{{v}});
  }
%   end
% end
}

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
