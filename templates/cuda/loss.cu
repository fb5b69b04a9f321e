% if k.kind == "fwd" then
/* ---- softmax cross-entropy over V={{k.V}} for M={{k.M}} rows, targets < 0 ignored: one block per row, a
 * one-pass online (max, sum of exp) per thread, merged in a fixed tree; lse = log sum exp ---- */
extern "C" __global__ void __launch_bounds__(256) {{k.fn}}(float *__restrict__ lse, float *__restrict__ losses,
    const float *__restrict__ logits, const int *__restrict__ targets) {
  __shared__ float sm[8], ss[8];
  const int row = blockIdx.x, tid = threadIdx.x;
  const int tg = targets[row];
  if (tg < 0) {
    if (tid == 0) lse[row] = losses[row] = 0.0f;
    return;
  }
  const float *x = logits + (size_t)row * {{k.V}};
  float m = -INF, s = 0.0f;
  for (int v = tid; v < {{k.V}}; v += 256) {
    const float xv = x[v];
    if (xv > m) {
      s = s * expf(m - xv) + 1.0f;
      m = xv;
    } else {
      s += expf(xv - m); /* a NaN logit lands here and poisons the sum, as it should */
    }
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const float m2 = __shfl_xor_sync(0xffffffffu, m, o), s2 = __shfl_xor_sync(0xffffffffu, s, o);
    lse_merge(m, s, m2, s2);
  }
  if ((tid & 31) == 0) {
    sm[tid >> 5] = m;
    ss[tid >> 5] = s;
  }
  __syncthreads();
  if (tid == 0) {
    float M = sm[0], S = ss[0];
    for (int w = 1; w < 8; w++) lse_merge(M, S, sm[w], ss[w]);
    const float L = M + logf(S);
    lse[row] = L;
    losses[row] = L - x[tg];
  }
}
% elseif k.kind == "mean" then
/* ---- the mean loss: mc.loss = sum of losses over targets >= 0 (in double, fixed tree) / their count,
 * M={{k.M}} rows; mc.n_valid = that count ---- */
extern "C" __global__ void __launch_bounds__(256) {{k.fn}}(gptc_micro *__restrict__ mc, const float *__restrict__ losses,
    const int *__restrict__ targets) {
  __shared__ double sd[8];
  __shared__ int sn[8];
  const int tid = threadIdx.x;
  double s = 0.0;
  int n = 0;
  for (int r = tid; r < {{k.M}}; r += 256)
    if (targets[r] >= 0) {
      s += (double)losses[r];
      n++;
    }
  s = warp_sum_d(s);
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) n += __shfl_xor_sync(0xffffffffu, n, o);
  if ((tid & 31) == 0) {
    sd[tid >> 5] = s;
    sn[tid >> 5] = n;
  }
  __syncthreads();
  if (tid == 0) {
    double S = 0.0;
    int N = 0;
    for (int w = 0; w < 8; w++) {
      S += sd[w];
      N += sn[w];
    }
    mc->loss = N ? (float)(S / N) : 0.0f;
    mc->n_valid = N;
  }
}
% else
/* ---- cross-entropy backward, in place: logits (M={{k.M}}, V={{k.V}}) become (softmax - onehot(target)) *
 * loss_scale / n_valid; ignored rows get 0 ---- */
extern "C" __global__ void __launch_bounds__(256) {{k.fn}}(float *__restrict__ logits, const float *__restrict__ lse,
    const int *__restrict__ targets, const gptc_micro *__restrict__ mc) {
  const int row = blockIdx.x, tg = targets[row], n = mc->n_valid;
  const float g = n ? mc->loss_scale / n : 0.0f;
  float *x = logits + (size_t)row * {{k.V}};
  if (tg < 0) {
    for (int v = threadIdx.x; v < {{k.V}}; v += 256) x[v] = 0.0f;
    return;
  }
  const float L = lse[row];
  for (int v = threadIdx.x; v < {{k.V}}; v += 256) x[v] = expf(x[v] - L) * g - (v == tg ? g : 0.0f);
}
% end
