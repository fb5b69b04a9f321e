% local B, T, H, HD, C, BQ = k.B, k.T, k.H, k.hd, k.C, k.BQ
% local C3, HDP, NTH, KPT, DPT = 3 * C, k.hd + 1, 4 * k.BQ, k.BQ // 4, (k.hd + 3) // 4
% local NQT = (T + BQ - 1) // BQ
% local SCALE = flit(1 / math.sqrt(HD))
% -- Dropout words for the KPT consecutive keys of one thread: element index
% -- ((bh T + q) T + key) as on the CPU, one Philox call each (the four words
% -- of a call belong to keys 16 apart)
% local function words(first, pad)
{{pad}}u32 wd[{{KPT}}];
{{pad}}{
{{pad}}  const u64 e0 = ((u64)bh * {{T}} + (u64)q) * {{T}} + (u64)({{first}});
#pragma unroll
{{pad}}  for (int j = 0; j < {{KPT}}; j++) wd[j] = drop_word(mc, (u32)site, e0 + j);
{{pad}}}
% end
% -- cooperative tile load of rows [r0, r0 + BQ) of one qkv part into dst (BQ, HDP), zero past T
% local function tile_load(dst, src, r0, pad)
{{pad}}for (int e = threadIdx.x; e < {{BQ * HD}}; e += {{NTH}}) {
{{pad}}  const int rr = e / {{HD}}, d = e % {{HD}};
{{pad}}  {{dst}}[rr * {{HDP}} + d] = ({{r0}}) + rr < {{T}} ? ({{src}})[(size_t)(({{r0}}) + rr) * {{C3}} + d] : 0.0f;
{{pad}}}
% end
% -- Backward scores of row r (query q) against keys s*KPT + j of the key tile at k0:
% -- p (weights after dropout, into Ps when ps) and ds = w * (dw' - D) / sqrt(hd) into Ss.
% local function bwd_scores(ps, pad)
{{pad}}{
{{pad}}  float sqk[{{KPT}}], sdp[{{KPT}}];
#pragma unroll
{{pad}}  for (int j = 0; j < {{KPT}}; j++) sqk[j] = sdp[j] = 0.0f;
{{pad}}  for (int d = 0; d < {{HD}}; d++) {
{{pad}}    const float qd = Qs[r * {{HDP}} + d], gd = dOs[r * {{HDP}} + d];
#pragma unroll
{{pad}}    for (int j = 0; j < {{KPT}}; j++) {
{{pad}}      sqk[j] += qd * Ks[(s * {{KPT}} + j) * {{HDP}} + d];
{{pad}}      sdp[j] += gd * Vs[(s * {{KPT}} + j) * {{HDP}} + d];
{{pad}}    }
{{pad}}  }
%   if k.drop then
{{pad}}  const bool drop = mc->train != 0;
%     words("k0 + s * " .. KPT, pad .. "  ")
%   end
#pragma unroll
{{pad}}  for (int j = 0; j < {{KPT}}; j++) {
{{pad}}    const int key = k0 + s * {{KPT}} + j;
{{pad}}    const float p = key <= q && q < {{T}} ? expf(sqk[j] * {{SCALE}} - ls[r]) : 0.0f;
{{pad}}    float dp = sdp[j];
%   if k.drop then
{{pad}}    if (drop) dp = drop_apply(dp, wd[j]);
%   end
%   if ps then
%     if k.drop then
{{pad}}    Ps[r * {{BQ + 1}} + s * {{KPT}} + j] = drop ? drop_apply(p, wd[j]) : p;
%     else
{{pad}}    Ps[r * {{BQ + 1}} + s * {{KPT}} + j] = p;
%     end
%   end
{{pad}}    Ss[r * {{BQ + 1}} + s * {{KPT}} + j] = p * (dp - Ds[r]) * {{SCALE}};
{{pad}}  }
{{pad}}}
% end
% if k.kind == "fwd" then
/* ---- causal self-attention, flash style: qkv (B={{B}}, T={{T}}, 3C={{C3}}) -> out (B, T, C={{C}}), H={{H}} heads of
 * hd={{HD}}. One block per ({{BQ}} queries, b, h), {{NTH}} threads: 4 per query row, each scoring {{KPT}} keys of
 * the {{BQ}}-key tile, online softmax (running max m and sum l), the P.V product from shared memory.
 * The (T, T) weights never reach global memory{{k.train and "; the row normalizers m + log l go to lse (B, H, T)" or ""}}.
% if k.drop then
 * Dropout on the weights: element (b, h, t, t2) has index ((b H + h) T + t) T + t2, as on the CPU.
% end
 * Query tiles run in reverse so the longest rows start first. ---- */
extern "C" __global__ void __launch_bounds__({{NTH}}) {{k.fn}}(float *__restrict__ out, {{k.train and "float *__restrict__ lse, " or ""}}const float *__restrict__ qkv{{k.drop and ", const gptc_micro *__restrict__ mc, int site" or ""}}) {
  __shared__ float Qs[{{BQ * HDP}}], Ks[{{BQ * HDP}}], Vs[{{BQ * HDP}}], Ps[{{BQ * (BQ + 1)}}];
  const int r = threadIdx.x >> 2, s = threadIdx.x & 3;
  const int qt = gridDim.x - 1 - blockIdx.x, bh = blockIdx.y, b = bh / {{H}}, h = bh % {{H}};
  const int q0 = qt * {{BQ}}, q = q0 + r;
  const float *base = qkv + (size_t)b * {{T * C3}} + h * {{HD}};
% if k.drop then
  const bool drop = mc->train != 0;
% end
% tile_load("Qs", "base", "q0", "  ")
  float m = -INF, l = 0.0f, o[{{DPT}}];
#pragma unroll
  for (int i = 0; i < {{DPT}}; i++) o[i] = 0.0f;
  const int nkt = ((q0 + {{BQ}} < {{T}} ? q0 + {{BQ}} : {{T}}) - 1) / {{BQ}} + 1; /* key tiles up to the diagonal */
  for (int kt = 0; kt < nkt; kt++) {
    const int k0 = kt * {{BQ}};
    __syncthreads(); /* the previous tile is consumed (and Qs is loaded) */
% tile_load("Ks", "base + " .. C, "k0", "    ")
% tile_load("Vs", "base + " .. 2 * C, "k0", "    ")
    __syncthreads();
    float sc[{{KPT}}];
#pragma unroll
    for (int j = 0; j < {{KPT}}; j++) sc[j] = 0.0f;
    for (int d = 0; d < {{HD}}; d++) {
      const float qd = Qs[r * {{HDP}} + d];
#pragma unroll
      for (int j = 0; j < {{KPT}}; j++) sc[j] += qd * Ks[(s * {{KPT}} + j) * {{HDP}} + d];
    }
    float mx = -INF;
#pragma unroll
    for (int j = 0; j < {{KPT}}; j++) {
      sc[j] = k0 + s * {{KPT}} + j <= q ? sc[j] * {{SCALE}} : -INF;
      mx = fmaxf(mx, sc[j]);
    }
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
    const float mn = fmaxf(m, mx);
    const float ms = mn == -INF ? 0.0f : mn; /* a row past T has no keys: keep it NaN-free */
    const float corr = expf(m - ms);
    float rs = 0.0f;
% if k.drop then
%   words("k0 + s * " .. KPT, "    ")
% end
#pragma unroll
    for (int j = 0; j < {{KPT}}; j++) {
      const float p = expf(sc[j] - ms);
      rs += p;
% if k.drop then
      Ps[r * {{BQ + 1}} + s * {{KPT}} + j] = drop ? drop_apply(p, wd[j]) : p;
% else
      Ps[r * {{BQ + 1}} + s * {{KPT}} + j] = p;
% end
    }
    rs += __shfl_xor_sync(0xffffffffu, rs, 1);
    rs += __shfl_xor_sync(0xffffffffu, rs, 2);
    l = l * corr + rs;
    m = mn;
#pragma unroll
    for (int i = 0; i < {{DPT}}; i++) o[i] *= corr;
    __syncwarp(); /* row r's weights come from its own 4 lanes */
    for (int c = 0; c < {{BQ}}; c++) {
      const float pc = Ps[r * {{BQ + 1}} + c];
#pragma unroll
      for (int i = 0; i < {{DPT}}; i++)
        if (s + 4 * i < {{HD}}) o[i] += pc * Vs[c * {{HDP}} + s + 4 * i];
    }
  }
  if (q < {{T}}) {
    const float inv = 1.0f / l;
    float *y = out + ((size_t)b * {{T}} + q) * {{C}} + h * {{HD}};
#pragma unroll
    for (int i = 0; i < {{DPT}}; i++)
      if (s + 4 * i < {{HD}}) y[s + 4 * i] = o[i] * inv;
% if k.train then
    if (s == 0) lse[(size_t)bh * {{T}} + q] = m + logf(l);
% end
  }
}
% elseif k.kind == "bwd_pre" then
/* ---- attention backward, row dots: dd (B={{B}}, H={{H}}, T={{T}}) = sum over d of dout . out per head, the
 * softmax backward's w . dw' (dropout included: out already holds the dropped weights' product) ---- */
extern "C" __global__ void __launch_bounds__(256) {{k.fn}}(float *__restrict__ dd, const float *__restrict__ dout,
    const float *__restrict__ out) {
  const int row = blockIdx.x * 8 + (threadIdx.x >> 5), lane = threadIdx.x & 31;
  if (row >= {{B * H * T}}) return;
  const int bh = row / {{T}}, t = row % {{T}}, b = bh / {{H}}, h = bh % {{H}};
  const size_t at = ((size_t)b * {{T}} + t) * {{C}} + h * {{HD}};
  float acc = 0.0f;
  for (int d = lane; d < {{HD}}; d += 32) acc += dout[at + d] * out[at + d];
  acc = warp_sum(acc);
  if (lane == 0) dd[row] = acc;
}
% else
% local dkv = k.kind == "bwd_dkv"
/* ---- attention backward, {{dkv and "dk and dv" or "dq"}}: dqkv (B={{B}}, T={{T}}, 3C={{C3}}) {{dkv and "k and v" or "q"}} slices, recomputing the weights
 * w = exp(q.k / sqrt({{HD}}) - lse) tile by tile (nothing (T, T) is stored). One block per {{dkv and "key" or "query"}} tile of {{BQ}}
 * and (b, h); the score phase gives each thread 4 x {{KPT}} (query, key) pairs, the accumulation phase
 * gives each thread one {{dkv and "key" or "query"}} row and every 4th of the {{HD}} dims, summed in a fixed order (no atomics). ---- */
extern "C" __global__ void __launch_bounds__({{NTH}}) {{k.fn}}(float *__restrict__ dqkv, const float *__restrict__ qkv,
    const float *__restrict__ dout, const float *__restrict__ lse, const float *__restrict__ dd{{k.drop and ", const gptc_micro *__restrict__ mc, int site" or ""}}) {
  __shared__ float Qs[{{BQ * HDP}}], dOs[{{BQ * HDP}}], Ks[{{BQ * HDP}}], Vs[{{BQ * HDP}}];
  __shared__ float {{dkv and "Ps[" .. BQ * (BQ + 1) .. "], " or ""}}Ss[{{BQ * (BQ + 1)}}], ls[{{BQ}}], Ds[{{BQ}}];
  const int r = threadIdx.x >> 2, s = threadIdx.x & 3;
  const int bh = blockIdx.y, b = bh / {{H}}, h = bh % {{H}};
  const float *base = qkv + (size_t)b * {{T * C3}} + h * {{HD}};
  const float *gbase = dout + (size_t)b * {{T * C}} + h * {{HD}};
% if dkv then
  const int k0 = blockIdx.x * {{BQ}};
% tile_load("Ks", "base + " .. C, "k0", "  ")
% tile_load("Vs", "base + " .. 2 * C, "k0", "  ")
  float dk[{{DPT}}], dv[{{DPT}}];
#pragma unroll
  for (int i = 0; i < {{DPT}}; i++) dk[i] = dv[i] = 0.0f;
  for (int qt = blockIdx.x; qt < {{NQT}}; qt++) { /* query tiles at or below the diagonal */
    const int q0 = qt * {{BQ}}, q = q0 + r;
    __syncthreads(); /* the previous query tile is consumed (and Ks, Vs are loaded) */
% else
  const int q0 = (gridDim.x - 1 - blockIdx.x) * {{BQ}}, q = q0 + r;
  float dq[{{DPT}}];
#pragma unroll
  for (int i = 0; i < {{DPT}}; i++) dq[i] = 0.0f;
  {
% end
% tile_load("Qs", "base", "q0", "    ")
    for (int e = threadIdx.x; e < {{BQ * HD}}; e += {{NTH}}) {
      const int rr = e / {{HD}}, d = e % {{HD}};
      dOs[rr * {{HDP}} + d] = q0 + rr < {{T}} ? gbase[(size_t)(q0 + rr) * {{C}} + d] : 0.0f;
    }
    if (threadIdx.x < {{BQ}}) {
      const bool ok = q0 + (int)threadIdx.x < {{T}};
      ls[threadIdx.x] = ok ? lse[(size_t)bh * {{T}} + q0 + threadIdx.x] : 0.0f;
      Ds[threadIdx.x] = ok ? dd[(size_t)bh * {{T}} + q0 + threadIdx.x] : 0.0f;
    }
% if dkv then
    __syncthreads();
% bwd_scores(true, "    ")
    __syncthreads();
    /* accumulation: thread (c, s) owns key k0 + c and dims s, s + 4, ... */
    for (int rr = 0; rr < {{BQ}}; rr++) {
      const float pr = Ps[rr * {{BQ + 1}} + r], sr = Ss[rr * {{BQ + 1}} + r];
#pragma unroll
      for (int i = 0; i < {{DPT}}; i++)
        if (s + 4 * i < {{HD}}) {
          dv[i] += pr * dOs[rr * {{HDP}} + s + 4 * i];
          dk[i] += sr * Qs[rr * {{HDP}} + s + 4 * i];
        }
    }
  }
  if (k0 + r < {{T}}) {
    float *g = dqkv + ((size_t)b * {{T}} + k0 + r) * {{C3}} + h * {{HD}};
#pragma unroll
    for (int i = 0; i < {{DPT}}; i++)
      if (s + 4 * i < {{HD}}) {
        g[{{C}} + s + 4 * i] = dk[i];
        g[{{2 * C}} + s + 4 * i] = dv[i];
      }
  }
}
% else
  }
  const int nkt = ((q0 + {{BQ}} < {{T}} ? q0 + {{BQ}} : {{T}}) - 1) / {{BQ}} + 1;
  for (int kt = 0; kt < nkt; kt++) {
    const int k0 = kt * {{BQ}};
    __syncthreads(); /* the previous key tile is consumed (and the query tile is loaded) */
% tile_load("Ks", "base + " .. C, "k0", "    ")
% tile_load("Vs", "base + " .. 2 * C, "k0", "    ")
    __syncthreads();
% bwd_scores(false, "    ")
    __syncwarp(); /* row r's scores come from its own 4 lanes */
    for (int c = 0; c < {{BQ}}; c++) {
      const float sc = Ss[r * {{BQ + 1}} + c];
#pragma unroll
      for (int i = 0; i < {{DPT}}; i++)
        if (s + 4 * i < {{HD}}) dq[i] += sc * Ks[c * {{HDP}} + s + 4 * i];
    }
  }
  if (q < {{T}}) {
    float *g = dqkv + ((size_t)b * {{T}} + q) * {{C3}} + h * {{HD}};
#pragma unroll
    for (int i = 0; i < {{DPT}}; i++)
      if (s + 4 * i < {{HD}}) g[s + 4 * i] = dq[i];
  }
}
% end
% end
