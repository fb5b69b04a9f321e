% if k.kind == "embed" then
/* ---- batch-1 inference with a KV cache; the token and its position come from ctl ---------------- */
/* x (C={{k.C}}) = wte[token] + wpe[pos] */
extern "C" __global__ void __launch_bounds__(128) {{k.fn}}(float *__restrict__ x, const float *__restrict__ wte,
    const float *__restrict__ wpe, const gptc_ctl *__restrict__ ctl) {
  const int c = blockIdx.x * 128 + threadIdx.x;
  if (c < {{k.C}}) x[c] = wte[(size_t)ctl->token * {{k.C}} + c] + wpe[(size_t)ctl->pos * {{k.C}} + c];
}
% elseif k.kind == "gemv" then
% local K, N = k.K, k.N
% local KS = (K + 7) // 8
/* ---- y (N={{N}}) {{k.mode == "residual" and "+=" or "="}} {{k.mode == "gelu" and "GELU(" or ""}}x (K={{K}}) . W (K, N){{k.mode ~= "set" and " + b" or ""}}{{k.mode == "gelu" and ")" or ""}}: block = 32 columns x 8 warps, warp w
 * adds k in [{{KS}}w, {{KS}}(w+1)), then the 8 partials in order ---- */
extern "C" __global__ void __launch_bounds__(256) {{k.fn}}(float *__restrict__ y, const float *__restrict__ x,
    const float *__restrict__ W{{k.mode ~= "set" and ", const float *__restrict__ b" or ""}}) {
  __shared__ float xs[{{K}}], red[8][33];
  for (int i = threadIdx.x; i < {{K}}; i += 256) xs[i] = x[i];
  __syncthreads();
  const int w = threadIdx.x >> 5, lane = threadIdx.x & 31, n = blockIdx.x * 32 + lane;
  float acc = 0.0f;
  if (n < {{N}}) {
    const int k1 = (w + 1) * {{KS}} < {{K}} ? (w + 1) * {{KS}} : {{K}};
    for (int kk = w * {{KS}}; kk < k1; kk++) acc += xs[kk] * W[(size_t)kk * {{N}} + n];
  }
  red[w][lane] = acc;
  __syncthreads();
  if (w == 0 && n < {{N}}) {
    float s = {{k.mode ~= "set" and "b[n]" or "0.0f"}};
#pragma unroll
    for (int j = 0; j < 8; j++) s += red[j][lane];
% if k.mode == "residual" then
    y[n] += s;
% elseif k.mode == "gelu" then
    y[n] = gelu_f(s);
% else
    y[n] = s;
% end
  }
}
% elseif k.kind == "kv_store" then
/* kv cache of one layer (2, ctx={{k.ctx}}, C={{k.C}}): row pos of keys and values = the k and v parts of qkv */
extern "C" __global__ void __launch_bounds__(128) {{k.fn}}(float *__restrict__ kv, const float *__restrict__ qkv,
    const gptc_ctl *__restrict__ ctl) {
  const int c = blockIdx.x * 128 + threadIdx.x;
  if (c >= {{k.C}}) return;
  const size_t at = (size_t)ctl->pos * {{k.C}} + c;
  kv[at] = qkv[{{k.C}} + c];
  kv[{{k.ctx * k.C}} + at] = qkv[{{2 * k.C}} + c];
}
% elseif k.kind == "attn" then
% local C, H, HD, ctx = k.C, k.H, k.hd, k.ctx
% local NP = 256 // HD
/* ---- one head per block: atty (C={{C}}) slice h = softmax(q . K^T / sqrt({{HD}})) . V over cached positions
 * 0..pos; the weights go through att (H={{H}}, ctx={{ctx}}); the weighted sum splits positions over {{NP}} groups
 * of {{HD}} threads, added in group order ---- */
extern "C" __global__ void __launch_bounds__(256) {{k.fn}}(float *__restrict__ atty, const float *__restrict__ qkv,
    const float *__restrict__ kv, float *__restrict__ att, const gptc_ctl *__restrict__ ctl) {
  __shared__ float red[8], part[{{NP}}][{{HD}}];
  const int h = blockIdx.x, tid = threadIdx.x, n = ctl->pos + 1;
  const float *q = qkv + h * {{HD}}, *kc = kv + h * {{HD}}, *vc = kv + {{ctx * C}} + h * {{HD}};
  float *w = att + h * {{ctx}};
  float mx = -INF;
  for (int t2 = tid; t2 < n; t2 += 256) {
    float s = 0.0f;
    for (int d = 0; d < {{HD}}; d++) s += q[d] * kc[(size_t)t2 * {{C}} + d];
    s *= {{flit(1 / math.sqrt(HD))}};
    w[t2] = s;
    mx = fmaxf(mx, s);
  }
  mx = warp_max(mx);
  if ((tid & 31) == 0) red[tid >> 5] = mx;
  __syncthreads();
  mx = red[0];
  for (int i = 1; i < 8; i++) mx = fmaxf(mx, red[i]);
  __syncthreads();
  float sum = 0.0f;
  for (int t2 = tid; t2 < n; t2 += 256) {
    const float e = expf(w[t2] - mx);
    w[t2] = e;
    sum += e;
  }
  sum = warp_sum(sum);
  if ((tid & 31) == 0) red[tid >> 5] = sum;
  __syncthreads();
  float tot = 0.0f;
  for (int i = 0; i < 8; i++) tot += red[i];
  const int d = tid % {{HD}}, g = tid / {{HD}};
  if (g < {{NP}}) {
    float acc = 0.0f;
    for (int t2 = g; t2 < n; t2 += {{NP}}) acc += w[t2] * vc[(size_t)t2 * {{C}} + d];
    part[g][d] = acc;
  }
  __syncthreads();
  if (tid < {{HD}}) {
    float s = 0.0f;
    for (int i = 0; i < {{NP}}; i++) s += part[i][tid];
    atty[h * {{HD}} + tid] = s / tot;
  }
}
% else
/* ---- logits (V={{k.V}}) = ln (C={{k.C}}) . W^T with W (V, C): one warp per vocabulary row ---- */
extern "C" __global__ void __launch_bounds__(256) {{k.fn}}(float *__restrict__ logits, const float *__restrict__ ln,
    const float *__restrict__ W) {
  const int v = blockIdx.x * 8 + (threadIdx.x >> 5), lane = threadIdx.x & 31;
  if (v >= {{k.V}}) return;
  const float *wr = W + (size_t)v * {{k.C}};
  float s = 0.0f;
  for (int c = lane; c < {{k.C}}; c += 32) s += ln[c] * wr[c];
  s = warp_sum(s);
  if (lane == 0) logits[v] = s;
}
% end
