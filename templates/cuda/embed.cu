% local B, T, C = k.B, k.T, k.C
% if k.kind == "fwd" then
/* ---- token + position embedding: out (B={{B}}, T={{T}}, C={{C}}) = wte[inputs] + wpe[t]{{k.drop and ", dropout site 0" or ""}};
 * thread t takes elements 64 (t / 16) + t % 16 + 16 j, j = 0..3 (one Philox call); the host checks the
 * ids against V={{k.V}} ---- */
extern "C" __global__ void __launch_bounds__(256) {{k.fn}}(float *__restrict__ out, const float *__restrict__ wte,
    const float *__restrict__ wpe, const int *__restrict__ inputs{{k.drop and ", const gptc_micro *__restrict__ mc" or ""}}) {
  const u64 t = (u64)blockIdx.x * 256 + threadIdx.x, e0 = 64 * (t >> 4) + (t & 15);
  if (e0 >= {{B * T * C}}) return;
% if k.drop then
  const bool drop = mc->train != 0;
  const uint4 w = drop ? drop_words4(mc, 0u, t >> 4, (u32)(t & 15)) : make_uint4(0u, 0u, 0u, 0u);
% end
#pragma unroll
  for (int j = 0; j < 4; j++) {
    const u64 i = e0 + 16 * j;
    if (i >= {{B * T * C}}) break;
    const int bt = (int)(i / {{C}}), c = (int)(i % {{C}});
    const float o = wte[(size_t)inputs[bt] * {{C}} + c] + wpe[(size_t)(bt % {{T}}) * {{C}} + c];
% if k.drop then
    out[i] = drop ? drop_apply(o, uint4_word(w, j)) : o;
% else
    out[i] = o;
% end
  }
}
% elseif k.kind == "bwd_wpe" then
/* ---- dwpe (T={{T}}, C={{C}}) += sum over b of dout (B={{B}}, T, C), b in order ---- */
extern "C" __global__ void __launch_bounds__(256) {{k.fn}}(float *__restrict__ dwpe, const float *__restrict__ dout) {
  const int i = blockIdx.x * 256 + threadIdx.x;
  if (i >= {{T * C}}) return;
  float s = 0.0f;
#pragma unroll 4
  for (int b = 0; b < {{B}}; b++) s += dout[(size_t)b * {{T * C}} + i];
  dwpe[i] += s;
}
% else
/* ---- dwte[token] += the rows of dout (B={{B}}, T={{T}}, C={{C}}) holding that token. The host sorts the
 * positions by token (stable, so each sum runs in position order): segment s covers
 * order[seg_start[s] .. seg_start[s + 1]) and belongs to token seg_tok[s]; block (s, y) owns columns
 * 128y..128y+127 of that token's row, so no two blocks touch the same element ---- */
extern "C" __global__ void __launch_bounds__(128) {{k.fn}}(float *__restrict__ dwte, const float *__restrict__ dout,
    const int *__restrict__ order, const int *__restrict__ seg_start, const int *__restrict__ seg_tok,
    const gptc_micro *__restrict__ mc) {
  const int seg = blockIdx.x, c = blockIdx.y * 128 + threadIdx.x;
  if (seg >= mc->n_seg || c >= {{C}}) return;
  float s = 0.0f;
  for (int j = seg_start[seg]; j < seg_start[seg + 1]; j++) s += dout[(size_t)order[j] * {{C}} + c];
  dwte[(size_t)seg_tok[seg] * {{C}} + c] += s;
}
% end
