% local B, T, H, hd, C = k.B, k.T, k.H, k.hd, k.C
% local C3 = 3 * C
% local S, Tp, TS = k.S, k.Tp, k.TS
% -- k.generic (gen/bench.lua): the dims are run-time C expressions, so the
% -- plain row-by-row branches are taken and nothing is unrolled over hd
% local scale = k.generic and ("(real)(1.0 / sqrt((double)" .. hd .. "))") or lit(1 / math.sqrt(hd))
% local vec = not k.generic and hd % VL == 0 and hd // VL <= 8
% local nvh = vec and hd // VL or 0
% -- blocked (gen/cpu/emit.lua decides): QK^T, PV and the backward products run on
% -- the GEMM micro-kernel in blocks of MR query (or key) rows
% local blocked = not k.generic and k.blocked
% -- query (key) blocks of MR rows, and the groups of qb (kb) of them a task takes
% local nblk = (T + MR - 1) // MR
% local nqg, nkg = blocked and (nblk + k.qb - 1) // k.qb, blocked and (nblk + k.kb - 1) // k.kb
/* ---- causal self-attention: qkv (B={{B}}, T={{T}}, 3C={{C3}}) -> out (B={{B}}, T={{T}}, C={{C}}),
 * H={{H}} heads of hd={{hd}}; weights softmax(q.k / sqrt({{hd}})) over t2 <= t{{k.store and ", kept in att (B, H, T, T) for the backward" or ""}}.
 * Each (b, h) has its slice of scratch (B, H, S={{S}}): K or V of the head transposed
 * (hd, Tp={{Tp}}, zero padded), then (row path) blocks of weights, edge tiles and dropout words.
% if blocked then
 * Blocks of {{MR}} query rows: the scores (MR, keys) = q rows . K^T and the output
 * (MR, hd) = weights . V rows run on the GEMM micro-kernel; softmax and dropout go row
 * by row in between. Schedule {{k.schedule}}, {{k.schedule_source}} (gen/cpu/schedule.lua): one task per
 * (b, h, group of {{k.qb}} consecutive query blocks), B x H x {{(T + MR - 1) // MR}} / {{k.qb}} tasks
 * so many cores have work, and a head's K and V stay in cache across the group's blocks;
 * the backward's key side likewise in groups of {{k.kb}} key blocks. A task's block buffers
 * are its thread's.
% else
 * One task per (b, h).
 * Row by row ({{hd}} is no multiple of the {{NR}}-wide GEMM panels): a row's scores are
 * {{VL}}-wide vectors of q . K^T, its output a weighted sum of V rows in registers.
% end
 * ---- */

/* s[0, nv*{{VL}}) = q . kt columns for the vectors covering t2 <= t; kt (hd, Tp) rows {{TS}} apart. Four
 * partial sums over d (then added in a fixed order) keep four FMA chains in flight. */
GPTC_INLINE void {{k.fn}}_scores(real *restrict s, const real *restrict q, const real *restrict kt, int nv) {
  for (int c = 0; c < nv; c++) {
    vreal a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
    const real *kc = kt + c * {{VL}};
    int d = 0;
    for (; d + 4 <= {{hd}}; d += 4) {
      a0 += q[d] * vload(kc + d * {{TS}});
      a1 += q[d + 1] * vload(kc + (d + 1) * {{TS}});
      a2 += q[d + 2] * vload(kc + (d + 2) * {{TS}});
      a3 += q[d + 3] * vload(kc + (d + 3) * {{TS}});
    }
    for (; d < {{hd}}; d++) a0 += q[d] * vload(kc + d * {{TS}});
    vstore(s + c * {{VL}}, (a0 + a1) + (a2 + a3));
  }
}

/* o (hd) = sum over t2 < n of w[t2] x[t2 * {{C3}}] (hd), accumulated in registers; even
 * and odd t2 go to separate sums (added at the end) to halve the FMA chains */
GPTC_INLINE void {{k.fn}}_mix(real *restrict o, const real *restrict w, const real *restrict x, int n) {
% if vec then
%   for i = 0, nvh - 1 do
  vreal a{{i}} = {0}, b{{i}} = {0};
%   end
  int t2 = 0;
  for (; t2 + 2 <= n; t2 += 2) {
    const real w0 = w[t2], w1 = w[t2 + 1], *x0 = x + (size_t)t2 * {{C3}}, *x1 = x0 + {{C3}};
%   for i = 0, nvh - 1 do
    a{{i}} += w0 * vload(x0 + {{i * VL}});
    b{{i}} += w1 * vload(x1 + {{i * VL}});
%   end
  }
  if (t2 < n) {
    const real w0 = w[t2], *x0 = x + (size_t)t2 * {{C3}};
%   for i = 0, nvh - 1 do
    a{{i}} += w0 * vload(x0 + {{i * VL}});
%   end
  }
%   for i = 0, nvh - 1 do
  vstore(o + {{i * VL}}, a{{i}} + b{{i}});
%   end
% else
  real a[{{hd}}];
  for (int d = 0; d < {{hd}}; d++) a[d] = 0;
  for (int t2 = 0; t2 < n; t2++)
    for (int d = 0; d < {{hd}}; d++) a[d] += w[t2] * x[(size_t)t2 * {{C3}} + d];
  for (int d = 0; d < {{hd}}; d++) o[d] = a[d];
% end
}

/* y (hd) += a * x (hd) */
GPTC_INLINE void {{k.fn}}_axpy(real *restrict y, real a, const real *restrict x) {
% if vec then
  for (int d = 0; d < {{hd}}; d += {{VL}}) vstore(y + d, vload(y + d) + a * vload(x + d));
% else
  for (int d = 0; d < {{hd}}; d++) y[d] += a * x[d];
% end
}

/* fills the (hd, Tp) transpose (rows {{TS}} apart) of rows src[t2 * {{C3}} + d] (K or V of one
 * head), zero padded past T; the generic kernel in blocks of 16 rows of src so both sides
 * stay in cache */
GPTC_INLINE void {{k.fn}}_transpose(real *restrict dst, const real *restrict src) {
% if k.generic then
  for (int t0 = 0; t0 < {{T}}; t0 += 16)
    for (int d = 0; d < {{hd}}; d++)
      for (int t2 = t0; t2 < t0 + 16 && t2 < {{T}}; t2++) dst[d * {{TS}} + t2] = src[(size_t)t2 * {{C3}} + d];
% else
  /* {{VL}} rows of src at a time, each d's {{VL}} values gathered into one vector and
   * stored whole: element by element took 3.8 instructions an element, 10% of the
   * forward at T 64 (docs/bench-cpu.md, "Small-T attention") */
%   local g = {}
%   for j = 0, VL - 1 do g[#g + 1] = j == 0 and "s[d]" or string.format("s[%d + d]", j * C3) end
  int t0 = 0;
  for (; t0 + {{VL}} <= {{T}}; t0 += {{VL}}) {
    const real *s = src + (size_t)t0 * {{C3}};
    for (int d = 0; d < {{hd}}; d++) {
      const vreal x = { {{table.concat(g, ", ")}} };
      vstore(dst + d * {{TS}} + t0, x);
    }
  }
  for (int d = 0; d < {{hd}}; d++)
    for (int t2 = t0; t2 < {{T}}; t2++) dst[d * {{TS}} + t2] = src[(size_t)t2 * {{C3}} + d];
% end
% if k.generic or Tp > T then
  for (int d = 0; d < {{hd}}; d++)
    for (int t2 = {{T}}; t2 < {{Tp}}; t2++) dst[d * {{TS}} + t2] = 0;
% end
}

/* The softmax of a row in three steps (each whole vectors, the lanes past n masked, so
 * the sums have a fixed order and no scalar tail); {{k.fn}}_softmax runs them on one
 * row, the blocked path step by step over a block's rows ({{k.fn}}_block_softmax).
 * _scale_max: row[0, m) = row * scale, the lanes past n set to the first scaled value
 * times the scale again (the scalar loop this replaces read row[0] after scaling it;
 * kept, as it can move the maximum and so the bits); returns the maximum, each lane's
 * running maximum (x > acc ? x : acc from the first value, as vec_max) with halves
 * folded the same way. */
% if real == "float" then
%   local lanes = {}
%   for j = 0, VL - 1 do lanes[#lanes + 1] = j end
GPTC_INLINE real {{k.fn}}_scale_max(real *restrict row, int n, int nv) {
  const vint lane = { {{table.concat(lanes, ", ")}} };
  const real f0 = row[0] * {{scale}}, f1 = f0 * {{scale}};
  vreal first = {0}, pad = {0}; /* f0 and f1 in every lane (zero + f0 would turn a -0 into +0) */
  for (int j = 0; j < {{VL}}; j++) first[j] = f0, pad[j] = f1;
  vreal vm = first;
  for (int c = 0; c < nv * {{VL}}; c += {{VL}}) {
    const vreal x = vsel(lane + c < n, vload(row + c) * {{scale}}, pad);
    vstore(row + c, x);
    vm = vsel(x > vm, x, vm);
  }
  real acc[{{VL}}];
  vstore(acc, vm);
  return lanes_max(acc);
}

/* _exp_sum: row[0, m) = exp(row - mx), zero past n; returns their sum (one lane sum
 * for each of the {{VL}} lanes, then lanes_total). vexp_r on whole vectors: the scalar
 * exp_r's clamps keep GCC from vectorizing it, and a scalar exp a key cost as much
 * as the two products around it at small head_dim; vexp_r is exp_r's steps lane by
 * lane, so the same bits. */
GPTC_INLINE real {{k.fn}}_exp_sum(real *restrict row, int n, int nv, real mx) {
  const vint lane = { {{table.concat(lanes, ", ")}} };
  const vreal zero = {0};
  vreal va = zero;
  for (int c = 0; c < nv * {{VL}}; c += {{VL}}) {
    const vreal e = vsel(lane + c < n, vexp_r(vload(row + c) - mx), zero);
    vstore(row + c, e);
    va += e;
  }
  real acc[{{VL}}];
  vstore(acc, va);
  return lanes_total(acc);
}

/* _normalize: row[0, m) *= inv */
GPTC_INLINE void {{k.fn}}_normalize(real *restrict row, int nv, real inv) {
  for (int c = 0; c < nv * {{VL}}; c += {{VL}}) vstore(row + c, vload(row + c) * inv);
}
% else
GPTC_INLINE real {{k.fn}}_scale_max(real *restrict row, int n, int nv) {
  const int m = nv * {{VL}};
  for (int t2 = 0; t2 < m; t2++) row[t2] = t2 < n ? row[t2] * {{scale}} : row[0] * {{scale}};
  return vec_max(row, m);
}

GPTC_INLINE real {{k.fn}}_exp_sum(real *restrict row, int n, int nv, real mx) {
  real acc[{{VL}}] = {0};
  for (int c = 0; c < nv * {{VL}}; c += {{VL}})
    for (int j = 0; j < {{VL}}; j++) {
      const real e = c + j < n ? exp_r(row[c + j] - mx) : 0;
      row[c + j] = e;
      acc[j] += e;
    }
  return lanes_total(acc);
}

GPTC_INLINE void {{k.fn}}_normalize(real *restrict row, int nv, real inv) {
  for (int t2 = 0; t2 < nv * {{VL}}; t2++) row[t2] *= inv;
}
% end

/* row[0, n) = softmax(row[0, n) * scale); row[n, nv*{{VL}}) = 0 */
GPTC_INLINE void {{k.fn}}_softmax(real *restrict row, int n, int nv) {
  const real mx = {{k.fn}}_scale_max(row, n, nv);
  {{k.fn}}_normalize(row, nv, 1 / {{k.fn}}_exp_sum(row, n, nv, mx));
}

% if blocked then
/* the softmax of query rows t0 .. t0 + r - 1 (row t over t2 <= t), their scores in sb
 * (rows {{Tp}} apart): each step over all r rows before the next. Row by row, each row
 * ended in a chain of dependent steps (the exponentials' polynomial, the lane sums, a
 * division) that the next row's work could not overlap (3-8% of the forward at T 64,
 * docs/bench-cpu.md). Each row's own operations and their order are the same. */
GPTC_INLINE void {{k.fn}}_block_softmax(real *restrict sb, int t0, int r) {
  real v[{{MR}}];
  for (int i = 0; i < r; i++) v[i] = {{k.fn}}_scale_max(sb + i * {{Tp}}, t0 + i + 1, (t0 + i) / {{VL}} + 1);
  for (int i = 0; i < r; i++) v[i] = {{k.fn}}_exp_sum(sb + i * {{Tp}}, t0 + i + 1, (t0 + i) / {{VL}} + 1, v[i]);
  for (int i = 0; i < r; i++) v[i] = 1 / v[i];
  for (int i = 0; i < r; i++) {{k.fn}}_normalize(sb + i * {{Tp}}, (t0 + i) / {{VL}} + 1, v[i]);
}

/* query row t's weights, after the softmax: zero for t < t2 < kc; the att row stored
 * when kept; the dropped-out weights in pw */
GPTC_INLINE void {{k.fn}}_weights(real *restrict row, real *restrict pw, real *att_row, int t, int kc,
                                        gptc_rng rng, uint32_t site, uint32_t *bits, uint64_t drop0) {
  const int n = t + 1, nv = t / {{VL}} + 1;
  for (int t2 = nv * {{VL}}; t2 < kc; t2++) row[t2] = 0;
% if k.store and real == "float" then
  /* the att row: row[0, n) and zeros, in whole vectors where they fit in its {{T}}
   * (a memcpy and a memset a row were 4% of the forward's instructions at T 64) */
%   local lanes = {}
%   for j = 0, VL - 1 do lanes[#lanes + 1] = j end
  const vint lane = { {{table.concat(lanes, ", ")}} };
  const vreal zero = {0};
  int c = 0;
  for (; c + {{VL}} <= {{T}} && c < nv * {{VL}}; c += {{VL}}) vstore(att_row + c, vsel(lane + c < n, vload(row + c), zero));
  for (; c + {{VL}} <= {{T}}; c += {{VL}}) vstore(att_row + c, zero);
  for (; c < {{T}}; c++) att_row[c] = c < n ? row[c] : 0;
% elseif k.store then
  memcpy(att_row, row, (size_t)n * sizeof(real));
  for (int t2 = n; t2 < {{T}}; t2++) att_row[t2] = 0;
% else
  (void)att_row;
% end
% if not k.store and p == 0 then
  (void)n;
% end
% if p > 0 then
  if (rng.train) {
    const int s0 = dropout_words(rng, site, drop0, n, bits);
    for (int t2 = 0; t2 < n; t2++) pw[t2] = bits[s0 + t2] >= DROP_THRESHOLD ? row[t2] * DROP_SCALE : 0;
    for (int t2 = n; t2 < kc; t2++) pw[t2] = 0;
  }
% else
  (void)pw;
  (void)rng;
  (void)site;
  (void)bits;
  (void)drop0;
% end
}

/* A task's block buffers, one set per thread: ({{MR}}, Tp) scores then weights, ({{MR}}, Tp)
 * weights after dropout, ({{MR}}, hd) edge rows of q (or dout) and of the output, and
 * one row of dropout words (Tp + 128) */
static _Thread_local real {{k.fn}}_blk[{{2 * ATT_ROWS * Tp + 2 * ATT_ROWS * hd + Tp + 128}}] __attribute__((aligned(64)));

KERNEL void {{k.fn}}_forward(real *out, real *att, const real *qkv, real *scratch, gptc_rng rng, uint32_t site) {
% if not k.store then
  (void)att;
% end
  /* K of every head transposed first; then one task per (b, h, group of {{k.qb}} blocks of
   * {{MR}} queries), {{B * H * nqg}} in all so every core has work, the longest (last) groups first */
#pragma omp parallel for schedule(static)
  for (int bh = 0; bh < {{B * H}}; bh++)
    {{k.fn}}_transpose(scratch + (size_t)bh * {{S}}, qkv + (size_t)(bh / {{H}}) * {{T * C3}} + bh % {{H}} * {{hd}} + {{C}});
#pragma omp parallel for schedule(dynamic, 1)
  for (int task = 0; task < {{B * H * nqg}}; task++) {
    const int bh = task % {{B * H}}, g0 = ({{nqg - 1}} - task / {{B * H}}) * {{k.qb * MR}};
    const int b = bh / {{H}}, h = bh % {{H}};
    const real *base = qkv + (size_t)b * {{T * C3}} + h * {{hd}};
    const real *kt = scratch + (size_t)bh * {{S}};        /* (hd, Tp), rows {{TS}} apart */
    real *sb = {{k.fn}}_blk;                              /* ({{MR}}, Tp) scores, then weights */
    real *pw = sb + {{ATT_ROWS * Tp}};                    /* ({{MR}}, Tp) weights after dropout */
    real *qb = pw + {{ATT_ROWS * Tp}};                    /* ({{MR}}, hd) edge rows of q */
    real *ob = qb + {{ATT_ROWS * hd}};                    /* ({{MR}}, hd) edge rows of the output */
    uint32_t *bits = (uint32_t *)(ob + {{ATT_ROWS * hd}});  /* (Tp + 128) */
    for (int t0 = g0; t0 < g0 + {{k.qb * MR}} && t0 < {{T}}; t0 += {{MR}}) {
      const int r = {{T}} - t0 < {{MR}} ? {{T}} - t0 : {{MR}}, kc = t0 + r;
      const real *qa = base + (size_t)t0 * {{C3}};
      int lda = {{C3}};
      if (r < {{MR}}) {
        for (int i = 0; i < {{MR}}; i++)
          for (int d = 0; d < {{hd}}; d++) qb[i * {{hd}} + d] = i < r ? qa[(size_t)i * {{C3}} + d] : 0;
        qa = qb;
        lda = {{hd}};
      }
      for (int cb = 0; cb < kc; cb += {{NR}})
        {{mk.rows}}({{hd}}, qa, lda, kt + cb, {{TS}}, sb + cb, {{Tp}}, 0, NULL);
      {{k.fn}}_block_softmax(sb, t0, r);
      for (int i = 0; i < r; i++) {
        const int t = t0 + i;
        {{k.fn}}_weights(sb + i * {{Tp}}, pw + i * {{Tp}}, {{k.store and ("att + ((size_t)bh * " .. T .. " + t) * " .. T) or "NULL"}}, t, kc,
                         rng, site, bits, ((uint64_t)bh * {{T}} + t) * {{T}});
      }
      const real *wa = {{p > 0 and "rng.train ? pw : sb" or "sb"}};
      real *o = out + ((size_t)b * {{T}} + t0) * {{C}} + h * {{hd}};
      for (int cb = 0; cb < {{hd}}; cb += {{NR}}) {
        if (r == {{MR}})
          {{mk.rows}}(kc, wa, {{Tp}}, base + {{2 * C}} + cb, {{C3}}, o + cb, {{C}}, 0, NULL);
        else
          {{mk.rows}}(kc, wa, {{Tp}}, base + {{2 * C}} + cb, {{C3}}, ob + cb, {{hd}}, 0, NULL);
      }
      if (r < {{MR}})
        for (int i = 0; i < r; i++) memcpy(o + (size_t)i * {{C}}, ob + i * {{hd}}, {{hd}} * sizeof(real));
    }
  }
}
% else
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
    real *row = kt + {{hd * TS}};                         /* (Tp) */
% if p > 0 then
    real *wdrop = row + {{Tp}};                           /* (Tp) */
    uint32_t *bits = (uint32_t *)(wdrop + {{Tp}});        /* (Tp + 128) */
% end
    {{k.fn}}_transpose(kt, base + {{C}});
    for (int t2 = 0; t2 < {{Tp}}; t2++) row[t2] = 0;
    for (int t = 0; t < {{T}}; t++) {
      const int n = t + 1, nv = t / {{VL}} + 1;
      {{k.fn}}_scores(row, base + (size_t)t * {{C3}}, kt, nv);
      {{k.fn}}_softmax(row, n, nv);
      const real *wd = row;
% if k.store then
      memcpy(att + ((size_t)bh * {{T}} + t) * {{T}}, row, {{T}} * sizeof(real));
% end
% if p > 0 then
      if (rng.train) {
        const int s0 = dropout_words(rng, site, ((uint64_t)bh * {{T}} + t) * {{T}}, n, bits);
        for (int t2 = 0; t2 < n; t2++) wdrop[t2] = bits[s0 + t2] >= DROP_THRESHOLD ? row[t2] * DROP_SCALE : 0;
        wd = wdrop;
      }
% end
      {{k.fn}}_mix(out + ((size_t)b * {{T}} + t) * {{C}} + h * {{hd}}, wd, base + {{2 * C}}, n);
    }
  }
}
% end
% if k.backward then

/* Query row t of the backward, for both paths below: copies its weights w (T) into dst
 * and wdt (zero past t), applies dropout's mask to wdt and to dw (the gradient of the
 * weights after dropout), then dst = the gradient of the scores: the softmax backward
 * w (dw - w.dw) and the 1/sqrt({{hd}}) scale, zero past t. */
GPTC_INLINE void {{k.fn}}_row_backward(real *restrict dst, real *restrict wdt, real *restrict dw,
                                        const real *restrict w, int t, int bh, gptc_rng rng, uint32_t site,
                                        uint32_t *bits) {
  const int n = t + 1, m = (t / {{VL}} + 1) * {{VL}};
% if real == "float" then
  /* whole vectors (the scalar loops cost as much as a product at T 64); w's row is
   * {{T}} long, so a vector that would run past it is copied lane by lane */
%   local lanes = {}
%   for j = 0, VL - 1 do lanes[#lanes + 1] = j end
  const vint lane = { {{table.concat(lanes, ", ")}} };
  const vreal zero = {0};
  for (int c = 0; c < {{Tp}}; c += {{VL}}) {
    vreal x = zero;
    if (c + {{VL}} <= {{T}})
      x = vsel(lane + c < n, vload(w + c), zero);
    else
      for (int j = 0; j < {{VL}}; j++) x[j] = c + j < n ? w[c + j] : 0;
    vstore(dst + c, x);
    vstore(wdt + c, x);
  }
% else
  for (int t2 = 0; t2 < {{Tp}}; t2++) dst[t2] = t2 < n ? w[t2] : 0;
  for (int t2 = 0; t2 < {{Tp}}; t2++) wdt[t2] = dst[t2];
% end
%   if p > 0 then
  if (rng.train) {
    const int s0 = dropout_words(rng, site, ((uint64_t)bh * {{T}} + t) * {{T}}, n, bits);
    for (int t2 = 0; t2 < n; t2++) {
      const int keep = bits[s0 + t2] >= DROP_THRESHOLD;
      dw[t2] = keep ? dw[t2] * DROP_SCALE : 0;
      wdt[t2] = keep ? wdt[t2] * DROP_SCALE : 0;
    }
  }
%   else
  (void)bh, (void)rng, (void)site, (void)bits;
%   end
  const real wdw = vec_dot(dst, dw, m);
% if real == "float" then
  for (int c = 0; c < m; c += {{VL}}) vstore(dst + c, vload(dst + c) * (vload(dw + c) - wdw) * {{scale}});
% else
  for (int t2 = 0; t2 < m; t2++) dst[t2] = dst[t2] * (dw[t2] - wdw) * {{scale}};
% end
}
% end
% if k.backward and blocked then

/* pass 1 for query blocks g0 .. g0 + {{k.qb * MR}} of head bh (see below) */
GPTC_INLINE void {{k.fn}}_queries(real *dqkv, const real *dout, const real *qkv, const real *att, real *scratch,
                                       gptc_rng rng, uint32_t site, int bh, int g0) {
%   if p == 0 then
  (void)rng;
  (void)site;
%   end
  const int b = bh / {{H}}, h = bh % {{H}};
  const real *base = qkv + (size_t)b * {{T * C3}} + h * {{hd}};
  const real *dyb = dout + (size_t)b * {{T * C}} + h * {{hd}};
  real *dbase = dqkv + (size_t)b * {{T * C3}} + h * {{hd}};
  const real *vt = scratch + (size_t)bh * {{k.S2}};      /* (hd, Tp), rows {{TS}} apart */
  real *ds = scratch + (size_t)bh * {{k.S2}} + {{hd * TS}}; /* (T, Tp) */
  real *wd = ds + {{T * Tp}};                            /* (T, Tp) weights after dropout */
  real *dwb = {{k.fn}}_blk;                              /* ({{MR}}, Tp) */
  real *qb = dwb + {{2 * ATT_ROWS * Tp}};                /* ({{MR}}, hd) edge rows of dout */
  real *ob = qb + {{ATT_ROWS * hd}};                     /* ({{MR}}, hd) edge rows of a result */
%   if p > 0 then
  uint32_t *bits = (uint32_t *)(ob + {{ATT_ROWS * hd}}); /* (Tp + 128) */
%   end
  for (int t0 = g0; t0 < g0 + {{k.qb * MR}} && t0 < {{T}}; t0 += {{MR}}) {
    const int r = {{T}} - t0 < {{MR}} ? {{T}} - t0 : {{MR}}, kc = t0 + r;
    const real *ya = dyb + (size_t)t0 * {{C}};
    int lda = {{C}};
    if (r < {{MR}}) {
      for (int i = 0; i < {{MR}}; i++)
        for (int d = 0; d < {{hd}}; d++) qb[i * {{hd}} + d] = i < r ? ya[(size_t)i * {{C}} + d] : 0;
      ya = qb;
      lda = {{hd}};
    }
    /* dwb = dout rows . V^T: the gradient of the weights after dropout */
    for (int cb = 0; cb < kc; cb += {{NR}})
      {{mk.rows}}({{hd}}, ya, lda, vt + cb, {{TS}}, dwb + cb, {{Tp}}, 0, NULL);
    for (int i = 0; i < r; i++) {
      const int t = t0 + i;
      {{k.fn}}_row_backward(ds + (size_t)t * {{Tp}}, wd + (size_t)t * {{Tp}}, dwb + i * {{Tp}},
                            att + ((size_t)bh * {{T}} + t) * {{T}}, t, bh, rng, site, {{p > 0 and "bits" or "NULL"}});
    }
    /* dq rows = ds rows . K rows. The micro-kernel reads {{MR}} rows: in the last, partial
     * block the rows past T would be wd's first rows, which another task of this head
     * may be writing, so those rows are read from a zero-padded copy in dwb (free once
     * the row backward above is done); each row's sum is its own, so the bits are the same */
    const real *dsa = ds + (size_t)t0 * {{Tp}};
    if (r < {{MR}}) {
      for (int i = 0; i < {{MR}}; i++)
        for (int t2 = 0; t2 < kc; t2++) dwb[i * {{Tp}} + t2] = i < r ? dsa[(size_t)i * {{Tp}} + t2] : 0;
      dsa = dwb;
    }
    real *dq = dbase + (size_t)t0 * {{C3}};
    for (int cb = 0; cb < {{hd}}; cb += {{NR}}) {
      if (r == {{MR}})
        {{mk.rows}}(kc, dsa, {{Tp}}, base + {{C}} + cb, {{C3}}, dq + cb, {{C3}}, 0, NULL);
      else
        {{mk.rows}}(kc, dsa, {{Tp}}, base + {{C}} + cb, {{C3}}, ob + cb, {{hd}}, 0, NULL);
    }
    if (r < {{MR}})
      for (int i = 0; i < r; i++) memcpy(dq + (size_t)i * {{C3}}, ob + i * {{hd}}, {{hd}} * sizeof(real));
  }
}

/* pass 2 for key blocks g0 .. g0 + {{k.kb * MR}} of head bh: dk rows k0.. = sum over t >= k0
 * of ds[t][key] q[t]; dv likewise with wd and dout */
GPTC_INLINE void {{k.fn}}_keys(real *dqkv, const real *dout, const real *qkv, const real *scratch, int bh, int g0) {
  const int b = bh / {{H}}, h = bh % {{H}};
  const real *base = qkv + (size_t)b * {{T * C3}} + h * {{hd}};
  const real *dyb = dout + (size_t)b * {{T * C}} + h * {{hd}};
  real *dbase = dqkv + (size_t)b * {{T * C3}} + h * {{hd}};
  const real *ds = scratch + (size_t)bh * {{k.S2}} + {{hd * TS}}; /* (T, Tp) */
  const real *wd = ds + {{T * Tp}};                                /* (T, Tp) */
  real *ob = {{k.fn}}_blk + {{2 * ATT_ROWS * Tp + ATT_ROWS * hd}};  /* ({{MR}}, hd) */
  for (int k0 = g0; k0 < g0 + {{k.kb * MR}} && k0 < {{T}}; k0 += {{MR}}) {
    const int r = {{T}} - k0 < {{MR}} ? {{T}} - k0 : {{MR}}, kc = {{T}} - k0;
    real *dk = dbase + (size_t)k0 * {{C3}} + {{C}}, *dv = dk + {{C}};
    for (int cb = 0; cb < {{hd}}; cb += {{NR}}) {
      const real *qrows = base + (size_t)k0 * {{C3}} + cb, *yrows = dyb + (size_t)k0 * {{C}} + cb;
      const real *da = ds + (size_t)k0 * {{Tp}} + k0, *wa = wd + (size_t)k0 * {{Tp}} + k0;
      if (r == {{MR}}) {
        {{mk.cols}}(kc, da, {{Tp}}, qrows, {{C3}}, dk + cb, {{C3}}, 0, NULL);
        {{mk.cols}}(kc, wa, {{Tp}}, yrows, {{C}}, dv + cb, {{C3}}, 0, NULL);
      } else {
        {{mk.cols}}(kc, da, {{Tp}}, qrows, {{C3}}, ob + cb, {{hd}}, 0, NULL);
        for (int i = 0; i < r; i++) memcpy(dk + (size_t)i * {{C3}} + cb, ob + i * {{hd}} + cb, {{NR}} * sizeof(real));
        {{mk.cols}}(kc, wa, {{Tp}}, yrows, {{C}}, ob + cb, {{hd}}, 0, NULL);
        for (int i = 0; i < r; i++) memcpy(dv + (size_t)i * {{C3}} + cb, ob + i * {{hd}} + cb, {{NR}} * sizeof(real));
      }
    }
  }
}

/* dqkv (B, T, 3C) = the gradients of q, k and v from dout (B, T, C), in three parallel
 * passes, each of whose tasks owns the rows it writes. V of every head is transposed first.
 * Pass 1, one task per (b, h, group of {{k.qb}} blocks of {{MR}} queries), block by block:
 * the weight gradients (dout rows . V^T on the micro-kernel), then row by row dropout and
 * the softmax backward into ds (T, Tp), the weights after dropout into wd (T, Tp), then
 * dq = ds . K. Pass 2, one task per (b, h, group of {{k.kb}} blocks of {{MR}} keys):
 * dk = ds^T . q and dv = wd^T . dout, every sum in order.
%   if nqg == 1 and nkg == 1 then
 * Both groups are a whole head here, so one task runs a head's pass 1 and then its pass 2,
 * while the head's ds and wd ({{2 * T * Tp * 4 // 1024}} KiB) are still in L1/L2: as separate
 * passes pass 2 read every head's from L3 or memory, which at T 64 cost as much as its
 * products. The sums are the same, so the bits are.
%   end
 * grad scratch (B, H, S={{k.S2}}): the transpose, ds and wd of each head; block buffers
 * per thread ({{k.fn}}_blk). */
KERNEL void {{k.fn}}_backward(real *dqkv, const real *dout, const real *qkv, const real *att, real *scratch,
                              gptc_rng rng, uint32_t site) {
#pragma omp parallel for schedule(static)
  for (int bh = 0; bh < {{B * H}}; bh++)
    {{k.fn}}_transpose(scratch + (size_t)bh * {{k.S2}}, qkv + (size_t)(bh / {{H}}) * {{T * C3}} + bh % {{H}} * {{hd}} + {{2 * C}});
%   if nqg == 1 and nkg == 1 then
#pragma omp parallel for schedule(dynamic, 1)
  for (int bh = 0; bh < {{B * H}}; bh++) {
    {{k.fn}}_queries(dqkv, dout, qkv, att, scratch, rng, site, bh, 0);
    {{k.fn}}_keys(dqkv, dout, qkv, scratch, bh, 0);
  }
%   else
  /* pass 1: groups of {{k.qb}} query blocks, the longest (last) first */
#pragma omp parallel for schedule(dynamic, 1)
  for (int task = 0; task < {{B * H * nqg}}; task++)
    {{k.fn}}_queries(dqkv, dout, qkv, att, scratch, rng, site, task % {{B * H}},
                     ({{nqg - 1}} - task / {{B * H}}) * {{k.qb * MR}});
  /* pass 2: groups of {{k.kb}} key blocks, the longest (first) first */
#pragma omp parallel for schedule(dynamic, 1)
  for (int task = 0; task < {{B * H * nkg}}; task++)
    {{k.fn}}_keys(dqkv, dout, qkv, scratch, task % {{B * H}}, task / {{B * H}} * {{k.kb * MR}});
%   end
}
% elseif k.backward then

/* o (hd) = sum over t in [t0, {{T}}) of w[t * {{Tp}}] x[t * xs] (hd): a column of a (T, Tp)
 * matrix against rows of x, accumulated in registers */
GPTC_INLINE void {{k.fn}}_colmix(real *restrict o, const real *restrict w, const real *restrict x, int xs, int t0) {
% if vec then
%   for i = 0, nvh - 1 do
  vreal a{{i}} = {0}, b{{i}} = {0};
%   end
  int t = t0;
  for (; t + 2 <= {{T}}; t += 2) {
    const real w0 = w[(size_t)t * {{Tp}}], w1 = w[(size_t)(t + 1) * {{Tp}}];
    const real *x0 = x + (size_t)t * xs, *x1 = x0 + xs;
%   for i = 0, nvh - 1 do
    a{{i}} += w0 * vload(x0 + {{i * VL}});
    b{{i}} += w1 * vload(x1 + {{i * VL}});
%   end
  }
  if (t < {{T}}) {
    const real w0 = w[(size_t)t * {{Tp}}], *x0 = x + (size_t)t * xs;
%   for i = 0, nvh - 1 do
    a{{i}} += w0 * vload(x0 + {{i * VL}});
%   end
  }
%   for i = 0, nvh - 1 do
  vstore(o + {{i * VL}}, a{{i}} + b{{i}});
%   end
% else
  real a[{{hd}}];
  for (int d = 0; d < {{hd}}; d++) a[d] = 0;
  for (int t = t0; t < {{T}}; t++)
    for (int d = 0; d < {{hd}}; d++) a[d] += w[(size_t)t * {{Tp}}] * x[(size_t)t * xs + d];
  for (int d = 0; d < {{hd}}; d++) o[d] = a[d];
% end
}

/* dqkv (B, T, 3C) = the gradients of q, k and v from dout (B, T, C). Each (b, h) task
 * owns its slice of dqkv. Pass 1 walks the queries: the weight gradients ds (T, Tp) and
 * the weights after dropout w' (T, Tp) go to the task's scratch, dq is summed in
 * registers. Pass 2 walks the keys: dv[t2] and dk[t2] are column sums over t >= t2, also
 * in registers, so no row is updated more than once. grad scratch (B, H, S={{k.S2}}). */
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
    const real *dyb = dout + (size_t)b * {{T * C}} + h * {{hd}};
    real *dbase = dqkv + (size_t)b * {{T * C3}} + h * {{hd}};
    real *vt = scratch + (size_t)bh * {{k.S2}};            /* (hd, Tp) */
    real *ds = vt + {{hd * TS}};                           /* (T, Tp) */
    real *wd = ds + {{T * Tp}};                            /* (T, Tp) weights after dropout */
    real *dw = wd + {{T * Tp}};                            /* (Tp) */
%   if p > 0 then
    uint32_t *bits = (uint32_t *)(dw + {{Tp}});            /* (Tp + 128) */
%   end
    {{k.fn}}_transpose(vt, base + {{2 * C}});
    for (int t = 0; t < {{T}}; t++) {
      real *dst = ds + (size_t)t * {{Tp}};
      /* dw[t2] = dy . v[t2], the gradient of the weights after dropout */
      {{k.fn}}_scores(dw, dyb + (size_t)t * {{C}}, vt, t / {{VL}} + 1);
      {{k.fn}}_row_backward(dst, wd + (size_t)t * {{Tp}}, dw, att + ((size_t)bh * {{T}} + t) * {{T}}, t, bh, rng, site,
                            {{p > 0 and "bits" or "NULL"}});
      {{k.fn}}_mix(dbase + (size_t)t * {{C3}}, dst, base + {{C}}, t + 1);
    }
    for (int t2 = 0; t2 < {{T}}; t2++) {
      {{k.fn}}_colmix(dbase + (size_t)t2 * {{C3}} + {{C}}, ds + t2, base, {{C3}}, t2);
      {{k.fn}}_colmix(dbase + (size_t)t2 * {{C3}} + {{2 * C}}, wd + t2, dyb, {{C}}, t2);
    }
  }
}
% end
