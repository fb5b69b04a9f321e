% if k.kind == "final" then
/* ---- column sums, stage 2: out{{k.Q == 2 and "0, out1" or ""}} (N={{k.N}}) += the {{k.RS}} row-chunk partials (RS={{k.RS}}, Q={{k.Q}}, N={{k.N}}),
 * added in chunk order: the same bits on every run ---- */
extern "C" __global__ void __launch_bounds__(128) {{k.fn}}(float *__restrict__ out0, {{k.Q == 2 and "float *__restrict__ out1, " or ""}}const float *__restrict__ part) {
  const int c = blockIdx.x * 128 + threadIdx.x;
  if (c >= {{k.N}}) return;
% for q = 0, k.Q - 1 do
  {
    float s = 0.0f;
    for (int y = 0; y < {{k.RS}}; y++) s += part[((size_t)y * {{k.Q}} + {{q}}) * {{k.N}} + c];
    out{{q}}[c] += s;
  }
% end
}
% else
% local ln = k.kind == "ln_part"
% local Q = ln and 2 or 1
/* ---- column sums, stage 1: {{ln and "LayerNorm weight and bias gradients, dw = dout * xhat and db = dout" or "bias gradient, db = dout"}}
 * summed over rows, R={{k.R}} rows of N={{k.N}}; block (x, y) sums columns 32x..32x+31 over rows
 * {{k.RCH}}y..{{k.RCH}}y+{{k.RCH - 1}} (8 row lanes, then the 8 partials in order) into part (RS={{k.RS}}, Q={{Q}}, N) ---- */
extern "C" __global__ void __launch_bounds__(256) {{k.fn}}(float *__restrict__ part, const float *__restrict__ dout{{ln and ", const float *__restrict__ inp, const float *__restrict__ mean, const float *__restrict__ rstd" or ""}}) {
  __shared__ float red[{{Q}}][8][33];
  const int c = blockIdx.x * 32 + threadIdx.x, r0 = blockIdx.y * {{k.RCH}};
  const int r1 = r0 + {{k.RCH}} < {{k.R}} ? r0 + {{k.RCH}} : {{k.R}};
  float a0 = 0.0f{{ln and ", a1 = 0.0f" or ""}};
  if (c < {{k.N}})
    for (int r = r0 + threadIdx.y; r < r1; r += 8) {
      const float dy = dout[(size_t)r * {{k.N}} + c];
% if ln then
      a0 += dy * (inp[(size_t)r * {{k.N}} + c] - mean[r]) * rstd[r];
      a1 += dy;
% else
      a0 += dy;
% end
    }
  red[0][threadIdx.y][threadIdx.x] = a0;
% if ln then
  red[1][threadIdx.y][threadIdx.x] = a1;
% end
  __syncthreads();
  if (threadIdx.y == 0 && c < {{k.N}}) {
% for q = 0, Q - 1 do
    {
      float s = 0.0f;
#pragma unroll
      for (int y = 0; y < 8; y++) s += red[{{q}}][y][threadIdx.x];
      part[((size_t)blockIdx.y * {{Q}} + {{q}}) * {{k.N}} + c] = s;
    }
% end
  }
}
% end
