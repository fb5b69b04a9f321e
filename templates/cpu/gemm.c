/* C ({{k.M}}, {{k.N}}) {{k.mode == "acc" and "+=" or "="}} {{k.ta and "A^T" or "A"}} . {{k.tb and "B^T" or "B"}}{{k.mode == "bias" and " + bias" or ""}} with K={{k.K}}: {{k.desc}}
 * A {{k.ta and "(K, M)" or "(M, K)"}} row stride {{k.lda}}, B {{k.tb and "(N, K)" or "(K, N)"}} row stride {{k.ldb}}; tiles {{k.MC}}x{{k.NC}}, K blocks of {{k.KC}} */
KERNEL void {{k.fn}}(real *restrict C, const real *restrict A, const real *restrict B, const real *restrict bias) {
% if k.mode ~= "bias" then
  (void)bias;
% end
#pragma omp parallel for schedule(dynamic, 1)
  for (int tile = 0; tile < {{k.MT * k.NT}}; tile++) {
    const int ic = tile / {{k.NT}} * {{k.MC}}, jc = tile % {{k.NT}} * {{k.NC}};
    const int mc = ic + {{k.MC}} <= {{k.M}} ? {{k.MC}} : {{k.M}} - ic;
    const int nc = jc + {{k.NC}} <= {{k.N}} ? {{k.NC}} : {{k.N}} - jc;
    real *pa = pack_a, *pb = pack_b;
    for (int pc = 0; pc < {{k.K}}; pc += {{k.KC}}) {
      const int kc = pc + {{k.KC}} <= {{k.K}} ? {{k.KC}} : {{k.K}} - pc;
% if k.mode == "acc" then
      const int mode = 1;
% elseif k.mode == "bias" then
      const int mode = pc == 0 ? 2 : 1;
% else
      const int mode = pc == 0 ? 0 : 1;
% end
      /* B block (kc, nc) -> {{NR}}-column panels (kc, {{NR}}), zero padded */
      for (int q = 0; q < nc; q += {{NR}}) {
        real *bp = pb + (size_t)q * kc;
        const int nr = nc - q < {{NR}} ? nc - q : {{NR}};
% if k.tb then
        for (int j = 0; j < nr; j++) {
          const real *src = B + (size_t)(jc + q + j) * {{k.ldb}} + pc;
          for (int kk = 0; kk < kc; kk++) bp[kk * {{NR}} + j] = src[kk];
        }
        for (int j = nr; j < {{NR}}; j++)
          for (int kk = 0; kk < kc; kk++) bp[kk * {{NR}} + j] = 0;
% else
        for (int kk = 0; kk < kc; kk++) {
          const real *src = B + (size_t)(pc + kk) * {{k.ldb}} + jc + q;
          if (nr == {{NR}})
            memcpy(bp + kk * {{NR}}, src, {{NR}} * sizeof(real));
          else
            for (int j = 0; j < {{NR}}; j++) bp[kk * {{NR}} + j] = j < nr ? src[j] : 0;
        }
% end
      }
      /* A block (mc, kc) -> {{MR}}-row strips (kc, {{MR}}), zero padded */
      for (int p = 0; p < mc; p += {{MR}}) {
        real *ap = pa + (size_t)p * kc;
        const int mr = mc - p < {{MR}} ? mc - p : {{MR}};
% if k.ta then
        for (int kk = 0; kk < kc; kk++) {
          const real *src = A + (size_t)(pc + kk) * {{k.lda}} + ic + p;
          if (mr == {{MR}})
            memcpy(ap + kk * {{MR}}, src, {{MR}} * sizeof(real));
          else
            for (int i = 0; i < {{MR}}; i++) ap[kk * {{MR}} + i] = i < mr ? src[i] : 0;
        }
% else
        for (int i = 0; i < mr; i++) {
          const real *src = A + (size_t)(ic + p + i) * {{k.lda}} + pc;
          for (int kk = 0; kk < kc; kk++) ap[kk * {{MR}} + i] = src[kk];
        }
        for (int i = mr; i < {{MR}}; i++)
          for (int kk = 0; kk < kc; kk++) ap[kk * {{MR}} + i] = 0;
% end
      }
      for (int q = 0; q < nc; q += {{NR}}) {
        const int nr = nc - q < {{NR}} ? nc - q : {{NR}};
        for (int p = 0; p < mc; p += {{MR}}) {
          const int mr = mc - p < {{MR}} ? mc - p : {{MR}};
          real *c = C + (size_t)(ic + p) * {{k.N}} + jc + q;
          const real *bb = {{k.mode == "bias" and "bias + jc + q" or "NULL"}};
          if (mr == {{MR}} && nr == {{NR}}) {
            micro_kernel(kc, pa + (size_t)p * kc, pb + (size_t)q * kc, c, {{k.N}}, mode, bb);
          } else {
            real t[{{MR * NR}}] __attribute__((aligned(64)));
            micro_kernel(kc, pa + (size_t)p * kc, pb + (size_t)q * kc, t, {{NR}}, 0, NULL);
            edge_store(c, {{k.N}}, t, mr, nr, mode, bb);
          }
        }
      }
    }
  }
}
