% local o = opt
% if k.kind == "norm_part" then
/* ---- optimizer: the {{#o.rows}} parameter tensors walked in {{o.n_chunks}} chunks of at most {{o.CHUNK}} floats, one
 * block per chunk ---- */
struct opt_tensor {
  u64 offset, numel;
  int chunk0, decay;
};
/* {offset, numel, first chunk, weight decay} of each tensor, in order */
static __constant__ opt_tensor opt_tensors[{{#o.rows}}] = {
% for _, t in ipairs(o.rows) do
  { {{t.offset}}ull, {{t.numel}}ull, {{t.chunk0}}, {{t.decay and 1 or 0}} }, /* {{t.name}} */
% end
};

/* the chunk's elements [*i0, *i0 + *n) and its tensor */
DEV int opt_chunk(int c, u64 *i0, int *n) {
  int lo = 0, hi = {{#o.rows - 1}};
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (opt_tensors[mid].chunk0 <= c) lo = mid;
    else hi = mid - 1;
  }
  const u64 start = opt_tensors[lo].offset + (u64)(c - opt_tensors[lo].chunk0) * {{o.CHUNK}};
  const u64 end = opt_tensors[lo].offset + opt_tensors[lo].numel;
  *i0 = start;
  *n = (int)(end - start < {{o.CHUNK}} ? end - start : {{o.CHUNK}});
  return lo;
}

DEV double block_sum_d(double v, double *sh) {
  v = warp_sum_d(v);
  if ((threadIdx.x & 31) == 0) sh[threadIdx.x >> 5] = v;
  __syncthreads();
  double s = 0.0;
  if (threadIdx.x == 0)
    for (int w = 0; w < (int)(blockDim.x >> 5); w++) s += sh[w];
  return s;
}

/* part[c] = sum of squares of gradient chunk c, in double */
extern "C" __global__ void __launch_bounds__(256) {{k.fn}}(double *__restrict__ part, const float *__restrict__ grads) {
  __shared__ double sh[8];
  u64 i0;
  int n;
  opt_chunk(blockIdx.x, &i0, &n);
  double acc = 0.0;
  for (int i = threadIdx.x; i < n; i += 256) {
    const double g = grads[i0 + i];
    acc += g * g;
  }
  const double s = block_sum_d(acc, sh);
  if (threadIdx.x == 0) part[blockIdx.x] = s;
}
% elseif k.kind == "norm_final" then
/* ctl.sumsq = the sum of the {{o.n_chunks}} chunk sums (fixed order); from it the clip scale
 * min(1, grad_clip / (norm + 1e-6)) as the CPU loop computes it, and the skip flag: a non-finite norm
 * or micro-batch loss leaves the weights alone, as the CPU loop stops before AdamW */
extern "C" __global__ void __launch_bounds__(256) {{k.fn}}(gptc_ctl *__restrict__ ctl, const double *__restrict__ part,
    const gptc_micro *__restrict__ mc) {
  __shared__ double sh[8];
  double acc = 0.0;
  for (int c = threadIdx.x; c < {{o.n_chunks}}; c += 256) acc += part[c];
  const double s = block_sum_d(acc, sh);
  if (threadIdx.x == 0) {
    const double norm = sqrt(s);
    int skip = !isfinite(norm);
    for (int i = 0; i < ctl->n_micro; i++) skip |= !isfinite(mc[i].loss);
    ctl->sumsq = s;
    ctl->grad_scale = ctl->grad_clip > 0 && norm > ctl->grad_clip ? (float)(ctl->grad_clip / (norm + 1e-6)) : 1.0f;
    ctl->skip = skip;
  }
}
% elseif k.kind == "adamw" then
/* ---- AdamW with PyTorch's semantics, the CPU's float arithmetic: g = grad * grad_scale; p *= 1 - lr * wd
 * (decay tensors only); m = lerp(m, g, 1 - beta1); v = beta2 v + (1 - beta2) g^2;
 * p -= lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps){{bf16_mode and "; params16 = bf16(p)" or ""}} ---- */
extern "C" __global__ void __launch_bounds__(256) {{k.fn}}(float *__restrict__ params, const float *__restrict__ grads,
    float *__restrict__ m, float *__restrict__ v, {{bf16_mode and "bf16 *__restrict__ params16, " or ""}}const gptc_ctl *__restrict__ ctl) {
  if (!ctl->use_fixed && ctl->skip) return;
  const float gs = ctl->use_fixed ? ctl->fixed_scale : ctl->grad_scale;
  const float step = ctl->step, bc2_sqrt = ctl->bc2_sqrt, b1c = ctl->b1c, b2 = ctl->b2, b2c = ctl->b2c, eps = ctl->eps;
  const int lerp_hi = ctl->lerp_hi; /* torch's lerp switches formula at weight 0.5 */
  u64 i0;
  int n;
  const int ti = opt_chunk(blockIdx.x, &i0, &n);
  const float dk = opt_tensors[ti].decay ? ctl->keep : 1.0f;
  for (int j = threadIdx.x; j < n; j += 256) {
    const u64 i = i0 + j;
    const float gi = grads[i] * gs;
    const float mi = lerp_hi ? gi - (gi - m[i]) * (1.0f - b1c) : m[i] + b1c * (gi - m[i]);
    const float vi = v[i] * b2 + b2c * (gi * gi);
    m[i] = mi;
    v[i] = vi;
    const float p = params[i] * dk - step * (mi / (sqrtf(vi) / bc2_sqrt + eps));
    params[i] = p;
% if bf16_mode then
    params16[i] = to_bf16(p);
% end
  }
}
% else
/* ---- params16 (N={{k.N}}) = bf16(params), four per thread ---- */
extern "C" __global__ void __launch_bounds__(256) {{k.fn}}(bf16 *__restrict__ params16, const float *__restrict__ params) {
  const size_t i = ((size_t)blockIdx.x * 256 + threadIdx.x) * 4;
#pragma unroll
  for (int j = 0; j < 4; j++)
    if (i + j < (size_t){{k.N}}) params16[i + j] = to_bf16(params[i + j]);
}
% end
