% local LINE = 64 // RSIZE
% local MR, NR, NV = k.MR or MR, k.NR or NR, k.NV or NV
% local mk = k.micro or mk
% -- bf16: both operands rounded to bfloat16 as they are packed (A always packed)
% local bf = k.bf16
% local R, VR, COPY = "", "", "gemm_copy"
% -- the pack buffers' element: bf16 bits in the pair layout, or reals
% local EL = bf and "uint16_t" or "real"
% local PA, PB = bf and "pack_a16" or "pack_a", bf and "pack_b16" or "pack_b"
/* C ({{k.M}}, {{k.N}}) {{k.mode == "acc" and "+=" or "="}} {{k.ta and "A^T" or "A"}} . {{k.tb and "B^T" or "B"}}{{k.mode == "bias" and " + bias" or ""}} with K={{k.K}}: {{k.desc}}
 * A {{k.ta and "(K, M)" or "(M, K)"}} row stride {{k.lda}}, B {{k.tb and "(N, K)" or "(K, N)"}} row stride {{k.ldb}}; tiles {{k.MC}}x{{k.NC}}, K blocks of {{k.KC}}
% if k.schedule then
 * schedule ({{k.schedule_source}}): {{k.schedule}}
% end
 */
% if k.epi == "gelu" then
/* epilogue: G = GELU(C) for each finished tile (G has C's shape) */
KERNEL void {{k.fn}}(real *restrict C, const real *restrict A, const real *restrict B, const real *restrict bias,
                     real *restrict G) {
% elseif k.epi == "gelu_grad" then
/* epilogue: C *= GELU'(X) for each finished tile (X, the GELU input, has C's shape) */
KERNEL void {{k.fn}}(real *restrict C, const real *restrict A, const real *restrict B, const real *restrict bias,
                     const real *restrict X) {
% elseif k.epi == "residual" then
/* epilogue: C = X + dropout(C) for each finished tile (the residual add; dropout element
 * index = the flat index in C, as the residual kernel) */
KERNEL void {{k.fn}}(real *restrict C, const real *restrict A, const real *restrict B, const real *restrict bias,
                     const real *restrict X, gptc_rng rng, uint32_t site) {
%   if p == 0 then
  (void)rng;
  (void)site;
%   end
% elseif k.epi == "colsum" then
/* with db (N) += column sums of B, gathered while packing B in the tiles of the first
 * row block (rows added in order) */
KERNEL void {{k.fn}}(real *restrict C, const real *restrict A, const real *restrict B, const real *restrict bias,
                     real *restrict db) {
% else
KERNEL void {{k.fn}}(real *restrict C, const real *restrict A, const real *restrict B, const real *restrict bias) {
% end
% if k.mode ~= "bias" then
  (void)bias;
% end
% if k.a_whole then
  /* this call's number: a thread's packed A from an earlier call is stale */
  const unsigned call = __atomic_add_fetch(&gemm_calls, 1, __ATOMIC_RELAXED);
% end
#pragma omp parallel for schedule(dynamic, 1)
  for (int tile = 0; tile < {{k.MT * k.NT}}; tile++) {
% if k.order == 1 then
    /* column blocks outer (schedule order=1): consecutive tiles share B's column block */
    const int ic = tile % {{k.MT}} * {{k.MC}}, jc = tile / {{k.MT}} * {{k.NC}};
% else
    const int ic = tile / {{k.NT}} * {{k.MC}}, jc = tile % {{k.NT}} * {{k.NC}};
% end
    const int mc = ic + {{k.MC}} <= {{k.M}} ? {{k.MC}} : {{k.M}} - ic;
    const int nc = jc + {{k.NC}} <= {{k.N}} ? {{k.NC}} : {{k.N}} - jc;
% if k.a_whole then
    /* A's row block is packed whole ({{k.a_block}} reals a K block) by the first tile of
     * this row block a thread takes; its later tiles of the row block reuse it */
    const int fresh = pack_a_call != call || pack_a_row != ic;
    pack_a_call = call;
    pack_a_row = ic;
    {{EL}} *pb = {{PB}};
% else
    {{EL}} *pa = {{PA}}, *pb = {{PB}};
% end
% if k.epi == "colsum" then
    real colsum[{{k.NC}}];
    for (int j = 0; j < nc; j++) colsum[j] = 0;
% end
    for (int pc = 0; pc < {{k.K}}; pc += {{k.KC}}) {
      const int kc = pc + {{k.KC}} <= {{k.K}} ? {{k.KC}} : {{k.K}} - pc;
% if k.mode == "acc" then
      const int mode = 1;
% elseif k.mode == "bias" then
      const int mode = pc == 0 ? 2 : 1;
% else
      const int mode = pc == 0 ? 0 : 1;
% end
% if bf then
      /* kc2: kc rounded up to {{KP}}, the pair layout's k granule (k in [kc, kc2) is zero).
       * B block (kc, nc) -> {{NR}}-column panels of k pairs in bf16, panel q at pb + q kc2:
       * b(k, j) at (k / 2) * {{2 * NR}} + 2 j + k % 2, so the pair (k, k + 1) of a column is one
       * 32-bit word and a pair row {{NR}} of them (vdpbf16ps's and tdpbf16ps's B); zero padded */
      const int kc2 = (kc + {{KP - 1}}) / {{KP}} * {{KP}};
%   if k.tb then
      /* B^T's rows are B's columns, k contiguous */
      for (int j = 0; j < (nc + {{NR - 1}}) / {{NR}} * {{NR}}; j++) {
        uint16_t *bp = pb + (size_t)(j / {{NR}} * {{NR}}) * kc2 + 2 * (j % {{NR}});
        if (j < nc) {
          const real *src = B + (size_t)(jc + j) * {{k.ldb}} + pc;
          for (int kk = 0; kk < kc2; kk++) bp[(size_t)(kk >> 1) * {{2 * NR}} + (kk & 1)] = kk < kc ? bf16_bits(src[kk]) : 0;
        } else {
          for (int kk = 0; kk < kc2; kk++) bp[(size_t)(kk >> 1) * {{2 * NR}} + (kk & 1)] = 0;
        }
      }
%   else
      /* row by row, so each row of B is read once, in order */
      for (int kk = 0; kk < kc2; kk++) {
        uint16_t *bp = pb + (size_t)(kk >> 1) * {{2 * NR}} + (kk & 1);
        if (kk >= kc) {
          for (int q = 0; q < nc; q += {{NR}})
            for (int j = 0; j < {{NR}}; j++) bp[(size_t)q * kc2 + 2 * j] = 0;
          continue;
        }
        const real *src = B + (size_t)(pc + kk) * {{k.ldb}} + jc;
%     if k.epi == "colsum" then
        if (ic == 0)
          for (int j = 0; j < nc; j++) colsum[j] += src[j];
%     end
        for (int q = 0; q < nc; q += {{NR}}) {
          uint16_t *d = bp + (size_t)q * kc2;
          for (int j = 0; j < {{NR}}; j++) d[2 * j] = q + j < nc ? bf16_bits(src[q + j]) : 0;
        }
      }
%   end
% elseif k.tb then
      /* B block (kc, nc) -> {{NR}}-column panels (kc, {{NR}}), zero padded */
      for (int q = 0; q < nc; q += {{NR}}) {
        real *bp = pb + (size_t)q * kc;
        const int nr = nc - q < {{NR}} ? nc - q : {{NR}};
        /* a transpose: rows of B become columns of the panel, {{LINE}} k (one cache line of
         * each row) at a time: the {{NR}} rows, {{k.ldb}} apart, may share a few L1 sets, so a
         * row's line is used whole before the next row's is read */
        const real *src = B + (size_t)(jc + q) * {{k.ldb}} + pc;
        for (int k0 = 0; k0 < kc; k0 += {{LINE}}) {
          const int kn = kc - k0 < {{LINE}} ? kc - k0 : {{LINE}};
          for (int j = 0; j < {{NR}}; j++) {
            const real *s = src + (size_t)j * {{k.ldb}} + k0;
            real *d = bp + (size_t)k0 * {{NR}} + j;
            if (j < nr) {
              if (kn == {{LINE}}) {
                for (int kk = 0; kk < {{LINE}}; kk++) d[kk * {{NR}}] = {{R}}(s[kk]);
              } else {
                for (int kk = 0; kk < kn; kk++) d[kk * {{NR}}] = {{R}}(s[kk]);
              }
            } else {
              for (int kk = 0; kk < kn; kk++) d[kk * {{NR}}] = 0;
            }
          }
        }
      }
% elseif k.b_in_place then
      /* B's rows are read in place (schedule packb=0), {{k.ldb}} apart; only a partial panel
       * at the edge, columns [qe, nc), is packed (kc, {{NR}}), zero padded */
      const int qe = nc / {{NR}} * {{NR}};
      if (qe < nc)
        for (int kk = 0; kk < kc; kk++) {
          const real *src = B + (size_t)(pc + kk) * {{k.ldb}} + jc + qe;
          for (int j = 0; j < {{NR}}; j++) pb[(size_t)kk * {{NR}} + j] = qe + j < nc ? src[j] : 0;
        }
% else
      /* B block (kc, nc) -> {{NR}}-column panels (kc, {{NR}}), zero padded */
      /* row by row, so each row of B is read once, in order */
      for (int kk = 0; kk < kc; kk++) {
        const real *src = B + (size_t)(pc + kk) * {{k.ldb}} + jc;
%   if k.epi == "colsum" then
        if (ic == 0)
          for (int j = 0; j < nc; j++) colsum[j] += src[j];
%   end
        for (int q = 0; q < nc; q += {{NR}}) {
          real *bp = pb + (size_t)q * kc + (size_t)kk * {{NR}};
          if (q + {{NR}} <= nc) {
%   for v = 0, NV - 1 do
            vstore(bp + {{v * VL}}, {{VR}}(vload(src + q + {{v * VL}})));
%   end
          } else {
            for (int j = 0; j < {{NR}}; j++) bp[j] = q + j < nc ? {{R}}(src[q + j]) : 0;
          }
        }
      }
% end
% if k.a_whole then
      {{EL}} *pa = {{PA}} + (size_t)(pc / {{k.KC}}) * {{k.a_block}};
% end
% if bf then
      /* A block (or A^T's) -> {{MR}}-row strips of bf16 rows, k contiguous (stride kc2 + {{APAD}}):
       * a pair is one 32-bit word (vdpbf16ps's broadcast), 32 k a tile row (tileloadd);
       * rows past mc and k past kc are zero */
      const int lda = kc2 + {{APAD}};
%   if k.a_whole then
      if (fresh) {
%   else
      {
%   end
        const int mcr = (mc + {{MR - 1}}) / {{MR}} * {{MR}};
%   if k.ta then
        for (int kk = 0; kk < kc2; kk++) {
          const real *src = A + (size_t)(pc + (kk < kc ? kk : 0)) * {{k.lda}} + ic;
          for (int i = 0; i < mcr; i++) pa[(size_t)i * lda + kk] = kk < kc && i < mc ? bf16_bits(src[i]) : 0;
        }
%   else
        for (int i = 0; i < mcr; i++) {
          uint16_t *d = pa + (size_t)i * lda;
          int kk = 0;
          if (i < mc) {
            const real *src = A + (size_t)(ic + i) * {{k.lda}} + pc;
            for (; kk < kc; kk++) d[kk] = bf16_bits(src[kk]);
          }
          for (; kk < kc2; kk++) d[kk] = 0;
        }
%   end
      }
% elseif k.ta then
      /* A^T block -> {{MR}}-row strips (kc, {{MR}}), zero padded; row by row as B */
      for (int kk = 0; {{k.a_whole and "fresh && " or ""}}kk < kc; kk++) {
        const real *src = A + (size_t)(pc + kk) * {{k.lda}} + ic;
        for (int p = 0; p < mc; p += {{MR}}) {
          real *ap = pa + (size_t)p * kc + (size_t)kk * {{MR}};
          if (p + {{MR}} <= mc)
            memcpy(ap, src + p, {{MR}} * sizeof(real));
          else
            for (int i = 0; i < {{MR}}; i++) ap[i] = p + i < mc ? {{R}}(src[p + i]) : 0;
        }
      }
% elseif k.pack_rows then
      /* A block -> rows of stride kc + {{APAD}}: in place, the {{MR}} rows a strip streams
       * ({{k.lda}} apart) would share too few cache sets; rows past the edge are zero */
      const int lda = kc + {{APAD}};
%   if k.a_whole then
      if (fresh) {
        for (int i = 0; i < mc; i++) {{COPY}}(pa + (size_t)i * lda, A + (size_t)(ic + i) * {{k.lda}} + pc, kc);
        for (int i = mc; i < (mc + {{MR - 1}}) / {{MR}} * {{MR}}; i++) memset(pa + (size_t)i * lda, 0, (size_t)kc * sizeof(real));
      }
%   else
      for (int i = 0; i < mc; i++) {{COPY}}(pa + (size_t)i * lda, A + (size_t)(ic + i) * {{k.lda}} + pc, kc);
      for (int i = mc; i < (mc + {{MR - 1}}) / {{MR}} * {{MR}}; i++) memset(pa + (size_t)i * lda, 0, (size_t)kc * sizeof(real));
%   end
% else
      /* A rows are read in place; only a partial strip at the edge is copied (zero padded) */
      const int lda = kc + {{APAD}};
      if (mc % {{MR}}) {
        const int p0 = mc / {{MR}} * {{MR}};
        for (int i = p0; i < p0 + {{MR}}; i++) {
          if (i < mc) {{COPY}}(pa + (size_t)(i - p0) * lda, A + (size_t)(ic + i) * {{k.lda}} + pc, kc);
          else memset(pa + (size_t)(i - p0) * lda, 0, (size_t)kc * sizeof(real));
        }
      }
% end
      for (int q = 0; q < nc; q += {{NR}}) {
        const int nr = nc - q < {{NR}} ? nc - q : {{NR}};
% local BQ, LDBQ = "pb + (size_t)q * kc", NR
% if k.b_in_place then
%   BQ, LDBQ = "bq", "ldbq"
        /* the panel: B itself, or the packed edge panel */
        const real *bq = q < qe ? B + (size_t)pc * {{k.ldb}} + jc + q : pb;
        const int ldbq = q < qe ? {{k.ldb}} : {{NR}};
% end
        for (int p = 0; p < mc; p += {{MR}}) {
          const int mr = mc - p < {{MR}} ? mc - p : {{MR}};
          real *c = C + (size_t)(ic + p) * {{k.N}} + jc + q;
          const real *bb = {{k.mode == "bias" and "bias + jc + q" or "NULL"}};
% if bf then
#define GEMM_STRIP(dst, ldc, m) {{mk.bf}}(kc, pa + (size_t)p * lda, lda, pb + (size_t)q * kc2, dst, ldc, m, bb)
% elseif k.ta then
#define GEMM_STRIP(dst, ldc, m) {{mk.cols}}(kc, pa + (size_t)p * kc, {{MR}}, {{BQ}}, {{LDBQ}}, dst, ldc, m, bb)
% elseif k.pack_rows then
#define GEMM_STRIP(dst, ldc, m) {{mk.rows}}(kc, pa + (size_t)p * lda, lda, {{BQ}}, {{LDBQ}}, dst, ldc, m, bb)
% else
#define GEMM_STRIP(dst, ldc, m)                                                                                    \
  (mr < {{MR}} ? {{mk.rows}}(kc, pa, lda, {{BQ}}, {{LDBQ}}, dst, ldc, m, bb)                       \
           : {{mk.rows}}(kc, A + (size_t)(ic + p) * {{k.lda}} + pc, {{k.lda}}, {{BQ}}, {{LDBQ}}, dst, ldc, m, bb))
% end
          if (mr == {{MR}} && nr == {{NR}}) {
            GEMM_STRIP(c, {{k.N}}, mode);
          } else {
            real t[{{MR * NR}}] __attribute__((aligned(64)));
            edge_init(t, {{MR}}, {{NR}}, c, {{k.N}}, mr, nr, mode, bb);
            GEMM_STRIP(t, {{NR}}, 1);
            edge_store(c, {{k.N}}, t, {{NR}}, mr, nr);
          }
#undef GEMM_STRIP
        }
      }
    }
% if k.epi == "gelu" then
    for (int i = 0; i < mc; i++) {
      const real *c = C + (size_t)(ic + i) * {{k.N}} + jc;
      real *g = G + (size_t)(ic + i) * {{k.N}} + jc;
      int j = 0;
%   if real == "float" then
      for (; j + {{VL}} <= nc; j += {{VL}}) vstore(g + j, vgelu_r(vload(c + j)));
%   end
      for (; j < nc; j++) g[j] = gelu_r(c[j]);
    }
% elseif k.epi == "gelu_grad" then
    for (int i = 0; i < mc; i++) {
      real *c = C + (size_t)(ic + i) * {{k.N}} + jc;
      const real *x = X + (size_t)(ic + i) * {{k.N}} + jc;
      int j = 0;
%   if real == "float" then
      for (; j + {{VL}} <= nc; j += {{VL}}) vstore(c + j, vload(c + j) * vgelu_grad_r(vload(x + j)));
%   end
      for (; j < nc; j++) c[j] *= gelu_grad_r(x[j]);
    }
% elseif k.epi == "residual" then
    for (int i = 0; i < mc; i++) {
      real *c = C + (size_t)(ic + i) * {{k.N}} + jc;
      const real *x = X + (size_t)(ic + i) * {{k.N}} + jc;
%   if p > 0 then
      if (rng.train) {
        uint32_t w[{{k.NC + 128}}];
        const int s0 = dropout_words(rng, site, (uint64_t)(ic + i) * {{k.N}} + (uint64_t)jc, nc, w);
        for (int j = 0; j < nc; j++) c[j] = x[j] + (w[s0 + j] >= DROP_THRESHOLD ? c[j] * DROP_SCALE : 0);
        continue;
      }
%   end
      for (int j = 0; j < nc; j++) c[j] += x[j];
    }
% elseif k.epi == "colsum" then
    if (ic == 0)
      for (int j = 0; j < nc; j++) db[jc + j] += colsum[j];
% end
  }
}
