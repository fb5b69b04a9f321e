% local B, T, H, hd, C = k.B, k.T, k.H, k.hd, k.C
% local C3 = 3 * C
% local S, Tp = k.S, k.Tp
% local scale = lit(1 / math.sqrt(hd))
/* ---- causal self-attention: qkv (B={{B}}, T={{T}}, 3C={{C3}}) -> out (B={{B}}, T={{T}}, C={{C}}),
 * H={{H}} heads of hd={{hd}}; weights softmax(q.k / sqrt({{hd}})) over t2 <= t{{k.store and ", kept in att (B, H, T, T) for the backward" or ""}}.
 * One task per (b, h) with its own slice of scratch (B, H, S={{S}}): K or V of the head
 * transposed (hd, Tp={{Tp}}, zero padded) so the scores of a row are {{VL}}-wide vectors,
 * then rows of weights and of dropout words. ---- */

/* s[0, nv*{{VL}}) = q . kt columns for the {{VL}}-wide blocks covering t2 <= t; kt (hd, Tp) */
GPTC_INLINE void {{k.fn}}_scores(real *restrict s, const real *restrict q, const real *restrict kt, int nv) {
  for (int c = 0; c < nv; c++) {
    vreal acc = {0};
    const real *kc = kt + c * {{VL}};
    for (int d = 0; d < {{hd}}; d++) acc += q[d] * vload(kc + d * {{Tp}});
    vstore(s + c * {{VL}}, acc);
  }
}

/* acc (hd) += a * x (hd) */
GPTC_INLINE void {{k.fn}}_axpy(real *restrict acc, real a, const real *restrict x) {
% if hd % VL == 0 then
  for (int d = 0; d < {{hd}}; d += {{VL}}) vstore(acc + d, vload(acc + d) + a * vload(x + d));
% else
  for (int d = 0; d < {{hd}}; d++) acc[d] += a * x[d];
% end
}

/* fills the (hd, Tp) transpose of rows src[t2 * {{C3}} + d] (K or V of one head) */
GPTC_INLINE void {{k.fn}}_transpose(real *restrict dst, const real *restrict src) {
  for (int d = 0; d < {{hd}}; d++)
    for (int t2 = 0; t2 < {{T}}; t2++) dst[d * {{Tp}} + t2] = src[(size_t)t2 * {{C3}} + d];
% if Tp > T then
  for (int d = 0; d < {{hd}}; d++)
    for (int t2 = {{T}}; t2 < {{Tp}}; t2++) dst[d * {{Tp}} + t2] = 0;
% end
}

KERNEL void {{k.fn}}_forward(real *out, real *att, const real *qkv, real *scratch, gptc_rng rng, uint32_t site) {
% if not k.store then
  (void)att;
% end
% if p == 0 then
  (void)rng;
  (void)site;
% end
#pragma omp parallel for schedule(static)
  for (int bh = 0; bh < {{B * H}}; bh++) {
    const int b = bh / {{H}}, h = bh % {{H}};
    const real *base = qkv + (size_t)b * {{T * C3}} + h * {{hd}};
    real *kt = scratch + (size_t)bh * {{S}};              /* (hd, Tp) */
    real *row = kt + {{hd * Tp}};                         /* (Tp) */
% if p > 0 then
    real *wdrop = row + {{Tp}};                           /* (Tp) */
    uint32_t *bits = (uint32_t *)(wdrop + {{Tp}});        /* (Tp + 128) */
% end
    {{k.fn}}_transpose(kt, base + {{C}});
    for (int t = 0; t < {{T}}; t++) {
      const int n = t + 1, nv = t / {{VL}} + 1;
% if k.store then
      real *w = att + ((size_t)bh * {{T}} + t) * {{T}};
% else
      real *w = row;
% end
      {{k.fn}}_scores(row, base + (size_t)t * {{C3}}, kt, nv);
      for (int t2 = 0; t2 < n; t2++) row[t2] *= {{scale}};
      const real mx = vec_max(row, n);
      const real inv = 1 / vec_exp_sum(row, mx, n);
      for (int t2 = 0; t2 < n; t2++) w[t2] = row[t2] * inv;
% if k.store then
      for (int t2 = n; t2 < {{T}}; t2++) w[t2] = 0;
% end
      const real *wd = w;
% if p > 0 then
      if (rng.train) {
        const int s0 = dropout_words(rng, site, ((uint64_t)bh * {{T}} + t) * {{T}}, n, bits);
        for (int t2 = 0; t2 < n; t2++) wdrop[t2] = bits[s0 + t2] >= DROP_THRESHOLD ? w[t2] * DROP_SCALE : 0;
        wd = wdrop;
      }
% end
      real *o = out + ((size_t)b * {{T}} + t) * {{C}} + h * {{hd}};
      for (int d = 0; d < {{hd}}; d++) o[d] = 0;
      for (int t2 = 0; t2 < n; t2++) {{k.fn}}_axpy(o, wd[t2], base + (size_t)t2 * {{C3}} + {{2 * C}});
    }
  }
}
% if k.backward then

/* dqkv (B, T, 3C) = the gradients of q, k and v from dout (B, T, C). Each
 * (b, h) task owns its slice of dqkv and walks t in order. */
KERNEL void {{k.fn}}_backward(real *dqkv, const real *dout, const real *qkv, const real *att, real *scratch,
                              gptc_rng rng, uint32_t site) {
%   if p == 0 then
  (void)rng;
  (void)site;
%   end
#pragma omp parallel for schedule(static)
  for (int bh = 0; bh < {{B * H}}; bh++) {
    const int b = bh / {{H}}, h = bh % {{H}};
    const real *base = qkv + (size_t)b * {{T * C3}} + h * {{hd}};
    real *dbase = dqkv + (size_t)b * {{T * C3}} + h * {{hd}};
    real *vt = scratch + (size_t)bh * {{S}};               /* (hd, Tp) */
    real *dw = vt + {{hd * Tp}};                           /* (Tp) */
%   if p > 0 then
    uint32_t *bits = (uint32_t *)(dw + {{2 * Tp}});        /* (Tp + 128) */
%   end
    {{k.fn}}_transpose(vt, base + {{2 * C}});
    for (int t2 = 0; t2 < {{T}}; t2++)
      for (int d = 0; d < {{hd}}; d++) {
        dbase[(size_t)t2 * {{C3}} + {{C}} + d] = 0;
        dbase[(size_t)t2 * {{C3}} + {{2 * C}} + d] = 0;
      }
    for (int t = 0; t < {{T}}; t++) {
      const real *w = att + ((size_t)bh * {{T}} + t) * {{T}};
      const real *dy = dout + ((size_t)b * {{T}} + t) * {{C}} + h * {{hd}};
      const real *q = base + (size_t)t * {{C3}};
      const int n = t + 1, nv = t / {{VL}} + 1;
      /* dw[t2] = dy . v[t2], the gradient of the weights after dropout */
      {{k.fn}}_scores(dw, dy, vt, nv);
%   if p > 0 then
      int s0 = -1;
      if (rng.train) s0 = dropout_words(rng, site, ((uint64_t)bh * {{T}} + t) * {{T}}, n, bits);
%   end
      /* dv[t2] += w'[t2] dy with w' the weights after dropout; dw -> gradient before dropout */
      for (int t2 = 0; t2 < n; t2++) {
        real a = w[t2];
%   if p > 0 then
        if (s0 >= 0) {
          const int keep = bits[s0 + t2] >= DROP_THRESHOLD;
          a = keep ? a * DROP_SCALE : 0;
          dw[t2] = keep ? dw[t2] * DROP_SCALE : 0;
        }
%   end
        {{k.fn}}_axpy(dbase + (size_t)t2 * {{C3}} + {{2 * C}}, a, dy);
      }
      /* softmax backward and the 1/sqrt(hd) scale: ds = w (dw - w.dw) / sqrt(hd) */
      const real wdw = vec_dot(w, dw, n);
      for (int t2 = 0; t2 < n; t2++) dw[t2] = w[t2] * (dw[t2] - wdw) * {{scale}};
      real *dq = dbase + (size_t)t * {{C3}};
      for (int d = 0; d < {{hd}}; d++) dq[d] = 0;
      for (int t2 = 0; t2 < n; t2++) {
        {{k.fn}}_axpy(dq, dw[t2], base + (size_t)t2 * {{C3}} + {{C}});
        {{k.fn}}_axpy(dbase + (size_t)t2 * {{C3}} + {{C}}, dw[t2], q);
      }
    }
  }
}
% end
