% local N = k.N
% -- thread t handles elements 64 (t / 16) + t % 16 + 16 j, j = 0..3: the four elements one
% -- Philox call covers, and a half-warp touches 16 consecutive floats per j
% local function head()
  const u64 t = (u64)blockIdx.x * 256 + threadIdx.x, e0 = 64 * (t >> 4) + (t & 15);
  if (e0 >= {{N}}) return;
% end
% local function each(body)
#pragma unroll
  for (int j = 0; j < 4; j++) {
    const u64 i = e0 + 16 * j;
    if (i < {{N}}) {{body}}
  }
% end
% if k.kind == "residual" then
/* ---- residual: out = x + {{k.drop and "dropout(out)" or "out"}}, N={{N}} elements ---- */
extern "C" __global__ void __launch_bounds__(256) {{k.fn}}(float *__restrict__ out, const float *__restrict__ x{{k.drop and ", const gptc_micro *__restrict__ mc, int site" or ""}}) {
% head()
% if k.drop then
  if (mc->train) {
    const uint4 w = drop_words4(mc, (u32)site, t >> 4, (u32)(t & 15));
%   each("out[i] = x[i] + drop_apply(out[i], uint4_word(w, j));")
    return;
  }
% end
% each("out[i] += x[i];")
}
% elseif k.kind == "dropout" then
/* ---- dropout backward with the forward's mask: dst = dropout(src), N={{N}} elements (dst may be src);
 * without training dropout it copies ---- */
extern "C" __global__ void __launch_bounds__(256) {{k.fn}}(float *dst, const float *src, const gptc_micro *__restrict__ mc,
    int site) {
% head()
  if (mc->train) {
    const uint4 w = drop_words4(mc, (u32)site, t >> 4, (u32)(t & 15));
%   each("dst[i] = drop_apply(src[i], uint4_word(w, j));")
    return;
  }
% each("dst[i] = src[i];")
}
% elseif k.kind == "gelu_fwd" then
/* ---- GELU, tanh approximation (GPT-2): out = GELU(inp), N={{N}} elements ---- */
extern "C" __global__ void __launch_bounds__(256) {{k.fn}}(float *__restrict__ out, const float *__restrict__ inp) {
% head()
% each("out[i] = gelu_f(inp[i]);")
}
% else
/* ---- GELU backward: d (N={{N}}) *= GELU'(inp), in place ---- */
extern "C" __global__ void __launch_bounds__(256) {{k.fn}}(float *__restrict__ d, const float *__restrict__ inp) {
% head()
% each("d[i] *= gelu_d(inp[i]);")
}
% end
