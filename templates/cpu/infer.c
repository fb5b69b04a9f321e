% local d = S.dims
% local C, V, H, hd, ctx, L = d.C, d.V, d.H, d.hd, d.ctx, d.L
/* ---- batch-1 inference with a KV cache (L={{L}}, 2, ctx={{ctx}}, C={{C}}) ---------------- */
% if q8 then
%   local B, P = q8.block, q8.panel
% for _, g in ipairs(gemvs) do

/* y (N={{g.N}}) = x (K={{g.K}}) . W (K, N) + b with W in q8 (gen/quant.lua): int8 q in panels of {{P}}
 * columns, q (NP={{g.NP}}, K={{g.K}}, {{P}}), and one scale per {{B}} rows of a column, s (NP, NB={{g.NB}}, {{P}}).
 * Each thread owns {{g.NCH}}-column slices; per column the sum order is fixed: p = x[k] * q[k] added over
 * a block's rows in order, then acc = b + s * p added over the blocks in order. */
static void {{g.fn}}(real *y, const real *x, const float *s, const signed char *q, const real *b) {
#pragma omp parallel for schedule(static)
  for (int n0 = 0; n0 < {{g.NP * P}}; n0 += {{g.NCH}}) {
    const signed char *qp = q + (size_t)(n0 / {{P}}) * {{g.K * P}} + n0 % {{P}}; /* (K, {{P}}) panel, this slice */
    const float *sp = s + (size_t)(n0 / {{P}}) * {{g.NB * P}} + n0 % {{P}};         /* (NB, {{P}}) */
    real acc[{{g.NCH}}];
    for (int j = 0; j < {{g.NCH}}; j++) acc[j] = b && n0 + j < {{g.N}} ? b[n0 + j] : 0;
    for (int kb = 0; kb < {{g.NB}}; kb++) {
      real p[{{g.NCH}}];
      for (int j = 0; j < {{g.NCH}}; j++) p[j] = 0;
      int k1 = kb * {{B}} + {{B}} < {{g.K}} ? kb * {{B}} + {{B}} : {{g.K}};
      for (int kk = kb * {{B}}; kk < k1; kk++) {
        const signed char *w = qp + (size_t)kk * {{P}};
        /* the lanes are independent (no reassociation): without the pragma
         * gcc converts the int8s one at a time with scalar instructions */
#pragma omp simd
        for (int j = 0; j < {{g.NCH}}; j++) p[j] += x[kk] * (real)w[j];
      }
      for (int j = 0; j < {{g.NCH}}; j++) acc[j] += sp[kb * {{P}} + j] * p[j];
    }
    int nn = {{g.N}} - n0 < {{g.NCH}} ? {{g.N}} - n0 : {{g.NCH}};
    for (int j = 0; j < nn; j++) y[n0 + j] = acc[j];
  }
}
% end
% else
% for _, g in ipairs(gemvs) do

/* y (N={{g.N}}) = x (K={{g.K}}) . W (K, N) + b; each thread owns column slices and adds k in order */
static void {{g.fn}}(real *y, const real *x, const real *W, const real *b) {
#pragma omp parallel for schedule(static)
  for (int n0 = 0; n0 < {{g.N}}; n0 += {{g.NCH}}) {
    real acc[{{g.NCH}}];
    int nn = n0 + {{g.NCH}} <= {{g.N}} ? {{g.NCH}} : {{g.N}} - n0;
    for (int j = 0; j < {{g.NCH}}; j++) acc[j] = b && j < nn ? b[n0 + j] : 0;
    if (nn == {{g.NCH}}) {
      for (int kk = 0; kk < {{g.K}}; kk++) {
        const real *w = W + (size_t)kk * {{g.N}} + n0;
        for (int j = 0; j < {{g.NCH}}; j++) acc[j] += x[kk] * w[j];
      }
    } else {
      for (int kk = 0; kk < {{g.K}}; kk++) {
        const real *w = W + (size_t)kk * {{g.N}} + n0;
        for (int j = 0; j < nn; j++) acc[j] += x[kk] * w[j];
      }
    }
    for (int j = 0; j < nn; j++) y[n0 + j] = acc[j];
  }
}
% end
% end

/* one row of LayerNorm (C={{C}}, eps 1e-5) */
static void infer_layernorm(real *out, const real *x, const real *w, const real *b) {
  real m = vec_sum(x, {{C}}) / {{C}};
  real s = 1 / sqrt_r(vec_sqdev(x, m, {{C}}) / {{C}} + {{lit(1e-5)}});
  for (int c = 0; c < {{C}}; c++) out[c] = (x[c] - m) * s * w[c] + b[c];
}

static void gptc_infer(const real *params, real *kv, real *scratch, int token, int pos, real *logits) {
  if (token < 0 || token >= {{V}} || pos < 0 || pos >= {{ctx}}) {
    for (int v = 0; v < {{V}}; v++) logits[v] = NAN;
    return;
  }
  real *x = scratch + {{so("x")}};       /* (C={{C}}) residual stream */
  real *ln = scratch + {{so("ln")}};     /* (C={{C}}) */
  real *qkv = scratch + {{so("qkv")}};   /* (3C={{3 * C}}) */
  real *atty = scratch + {{so("atty")}}; /* (C={{C}}) */
  real *proj = scratch + {{so("proj")}}; /* (C={{C}}) */
  real *fch = scratch + {{so("fch")}};   /* (4C={{4 * C}}) */
  real *att = scratch + {{so("att")}};   /* (H={{H}}, ctx={{ctx}}) */
  const real *we = params + {{goff("wte.weight")}} + (size_t)token * {{C}};
  const real *pe = params + {{goff("wpe.weight")}} + (size_t)pos * {{C}};
  for (int c = 0; c < {{C}}; c++) x[c] = we[c] + pe[c];
  for (int l = 0; l < {{L}}; l++) {
    const real *lp = params + (size_t)l * {{layer_stride}};
% if q8 then
    const unsigned char *lq = (const unsigned char *)params + {{q8.q8_base}} + (size_t)l * {{q8.q8_stride}}; /* layer l's q8 matrices */
% end
    real *kc = kv + (size_t)l * {{2 * ctx * C}};  /* (ctx, C) keys of layer l */
    real *vc = kc + {{ctx * C}};                   /* (ctx, C) values */
    infer_layernorm(ln, x, lp + {{loff("ln_1.weight")}}, lp + {{loff("ln_1.bias")}});
    {{gemv_name(C, 3 * C)}}(qkv, ln, {{wq("attn.c_attn.weight")}}, {{S.qkv_bias and ("lp + " .. loff("attn.c_attn.bias")) or "NULL"}});
    memcpy(kc + (size_t)pos * {{C}}, qkv + {{C}}, {{C}} * sizeof(real));
    memcpy(vc + (size_t)pos * {{C}}, qkv + {{2 * C}}, {{C}} * sizeof(real));
#pragma omp parallel for schedule(static)
    for (int h = 0; h < {{H}}; h++) {
      const real *q = qkv + h * {{hd}};
      real *w = att + h * {{ctx}};
      for (int t2 = 0; t2 <= pos; t2++) w[t2] = vec_dot(q, kc + (size_t)t2 * {{C}} + h * {{hd}}, {{hd}}) * {{lit(1 / math.sqrt(hd))}};
      real mx = vec_max(w, pos + 1);
      real inv = 1 / vec_exp_sum(w, mx, pos + 1);
      real acc[{{hd}}];
      for (int d = 0; d < {{hd}}; d++) acc[d] = 0;
      for (int t2 = 0; t2 <= pos; t2++) {
        real a = w[t2] * inv;
        const real *v = vc + (size_t)t2 * {{C}} + h * {{hd}};
        for (int d = 0; d < {{hd}}; d++) acc[d] += a * v[d];
      }
      for (int d = 0; d < {{hd}}; d++) atty[h * {{hd}} + d] = acc[d];
    }
    {{gemv_name(C, C)}}(proj, atty, {{wq("attn.c_proj.weight")}}, lp + {{loff("attn.c_proj.bias")}});
    for (int c = 0; c < {{C}}; c++) x[c] += proj[c];
    infer_layernorm(ln, x, lp + {{loff("ln_2.weight")}}, lp + {{loff("ln_2.bias")}});
    {{gemv_name(C, 4 * C)}}(fch, ln, {{wq("mlp.c_fc.weight")}}, lp + {{loff("mlp.c_fc.bias")}});
    for (int i = 0; i < {{4 * C}}; i++) fch[i] = gelu_r(fch[i]);
    {{gemv_name(4 * C, C)}}(proj, fch, {{wq("mlp.c_proj.weight")}}, lp + {{loff("mlp.c_proj.bias")}});
    for (int c = 0; c < {{C}}; c++) x[c] += proj[c];
  }
  infer_layernorm(ln, x, params + {{goff("ln_f.weight")}}, params + {{goff("ln_f.bias")}});
% if q8 then
  const unsigned char *hq = (const unsigned char *)params; /* the lm head, W (K=C={{C}}, N=V={{V}}) in q8 */
  {{gemv_name(C, V)}}(logits, ln, (const float *)(hq + {{q8.head.s_off}}), (const signed char *)(hq + {{q8.head.q_off}}), NULL);
% else
  const real *wl = params + {{goff(S.tie_embeddings and "wte.weight" or "lm_head.weight")}}; /* (V={{V}}, C={{C}}) */
#pragma omp parallel for schedule(static)
  for (int v = 0; v < {{V}}; v++) logits[v] = vec_dot(ln, wl + (size_t)v * {{C}}, {{C}});
% end
}
