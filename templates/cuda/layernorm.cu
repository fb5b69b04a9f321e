% local N, C, VEC, NV = k.N, k.C, k.vec, k.NV
% local full = C % (32 * VEC) == 0
% local VT = VEC == 4 and "float4" or VEC == 2 and "float2" or "float"
% -- loads VEC floats at p into v[i][0..VEC)
% local function vload(dst, p)
%   if VEC == 4 then
      const float4 q = *(const float4 *)({{p}});
      {{dst}}[0] = q.x;
      {{dst}}[1] = q.y;
      {{dst}}[2] = q.z;
      {{dst}}[3] = q.w;
%   elseif VEC == 2 then
      const float2 q = *(const float2 *)({{p}});
      {{dst}}[0] = q.x;
      {{dst}}[1] = q.y;
%   else
      {{dst}}[0] = *({{p}});
%   end
% end
% if k.kind == "fwd" then
/* ---- LayerNorm over C={{C}} for N={{N}} rows (eps 1e-5, biased variance): one warp per row, each
 * lane holding {{NV}} x {{VEC}} columns in registers ({{VT}} loads); mean and variance from warp sums ---- */
extern "C" __global__ void __launch_bounds__(128) {{k.fn}}(float *__restrict__ out, float *__restrict__ mean,
    float *__restrict__ rstd, const float *__restrict__ inp, const float *__restrict__ w, const float *__restrict__ b) {
  const int row = blockIdx.x * 4 + (threadIdx.x >> 5), lane = threadIdx.x & 31;
  if (row >= {{N}}) return;
  const float *x = inp + (size_t)row * {{C}};
  float v[{{NV}}][{{VEC}}];
  float sum = 0.0f;
#pragma unroll
  for (int i = 0; i < {{NV}}; i++) {
    const int c = (i * 32 + lane) * {{VEC}};
    if ({{full and "true" or ("c < " .. C)}}) {
% vload("v[i]", "x + c")
    } else {
#pragma unroll
      for (int j = 0; j < {{VEC}}; j++) v[i][j] = 0.0f;
    }
#pragma unroll
    for (int j = 0; j < {{VEC}}; j++) sum += v[i][j];
  }
  const float m = warp_sum(sum) / {{C}};
  float sq = 0.0f;
#pragma unroll
  for (int i = 0; i < {{NV}}; i++)
    if ({{full and "true" or ("(i * 32 + lane) * " .. VEC .. " < " .. C)}})
#pragma unroll
      for (int j = 0; j < {{VEC}}; j++) sq += (v[i][j] - m) * (v[i][j] - m);
  const float s = 1.0f / sqrtf(warp_sum(sq) / {{C}} + {{flit(1e-5)}});
  float *o = out + (size_t)row * {{C}};
#pragma unroll
  for (int i = 0; i < {{NV}}; i++) {
    const int c = (i * 32 + lane) * {{VEC}};
    if ({{full and "true" or ("c < " .. C)}}) {
#pragma unroll
      for (int j = 0; j < {{VEC}}; j++) o[c + j] = (v[i][j] - m) * s * w[c + j] + b[c + j];
    }
  }
  if (lane == 0) {
    mean[row] = m;
    rstd[row] = s;
  }
}
% else
/* ---- LayerNorm backward, input gradient, C={{C}}, N={{N}} rows: dinp {{k.acc and "+=" or "="}} rstd * (g - mean(g) - xhat *
 * mean(g * xhat)) with g = dout * w; one warp per row. The weight and bias gradients are column sums
 * (colsum kernels). ---- */
extern "C" __global__ void __launch_bounds__(128) {{k.fn}}(float *__restrict__ dinp, const float *__restrict__ dout,
    const float *__restrict__ inp, const float *__restrict__ mean, const float *__restrict__ rstd,
    const float *__restrict__ w) {
  const int row = blockIdx.x * 4 + (threadIdx.x >> 5), lane = threadIdx.x & 31;
  if (row >= {{N}}) return;
  const float *x = inp + (size_t)row * {{C}}, *dy = dout + (size_t)row * {{C}};
  const float m = mean[row], s = rstd[row];
  float xv[{{NV}}][{{VEC}}], gv[{{NV}}][{{VEC}}];
  float a1 = 0.0f, a2 = 0.0f;
#pragma unroll
  for (int i = 0; i < {{NV}}; i++) {
    const int c = (i * 32 + lane) * {{VEC}};
#pragma unroll
    for (int j = 0; j < {{VEC}}; j++) xv[i][j] = gv[i][j] = 0.0f;
    if ({{full and "true" or ("c < " .. C)}}) {
      {
% vload("xv[i]", "x + c")
      }
      float dv[{{VEC}}], wv[{{VEC}}];
      {
% vload("dv", "dy + c")
      }
      {
% vload("wv", "w + c")
      }
#pragma unroll
      for (int j = 0; j < {{VEC}}; j++) {
        gv[i][j] = dv[j] * wv[j];
        a1 += gv[i][j];
        a2 += gv[i][j] * (xv[i][j] - m) * s;
      }
    }
  }
  const float mg = warp_sum(a1) / {{C}}, mgx = warp_sum(a2) / {{C}};
  float *dx = dinp + (size_t)row * {{C}};
#pragma unroll
  for (int i = 0; i < {{NV}}; i++) {
    const int c = (i * 32 + lane) * {{VEC}};
    if ({{full and "true" or ("c < " .. C)}}) {
#pragma unroll
      for (int j = 0; j < {{VEC}}; j++) dx[c + j] {{k.acc and "+=" or "="}} s * (gv[i][j] - mg - (xv[i][j] - m) * s * mgx);
    }
  }
}
% end
