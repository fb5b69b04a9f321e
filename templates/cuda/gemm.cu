% local bf = k.bf
% local E = bf and "bf16" or "float"
% local KS = bf and 16 or 8
% local MI, NI = k.WM // 16, k.WN // 8
% local WARPS_N = k.BN // k.WN
% local MT, NTL, KT = (k.M + k.BM - 1) // k.BM, (k.N + k.BN - 1) // k.BN, (k.K + k.BK - 1) // k.BK
% local TA, TB = k.a_bf and "bf16" or "float", k.b_bf and "bf16" or "float"
% local epi_desc = { store = "=", acc = "+=", gelu = "= (and G = GELU of it)", residual = "= X + dropout of it", gelu_bwd = "= GELU'(P) *" }
/* ---- C ({{k.M}}, {{k.N}}) {{epi_desc[k.epi]}} {{k.ta and "A^T" or "A"}} . {{k.tb and "B^T" or "B"}}{{k.bias and " + bias" or ""}}, K={{k.K}}: {{k.desc}}
 * A {{k.ta and "(K, M)" or "(M, K)"}} {{TA}} row stride {{k.lda}}; B {{k.tb and "(N, K)" or "(K, N)"}} {{TB}} row stride {{k.ldb}}
 * {{bf and "bf16 mma.sync m16n8k16" or "tf32 mma.sync m16n8k8"}}, fp32 accumulate; block tile {{k.BM}}x{{k.BN}}x{{k.BK}} ({{MT}}x{{NTL}} tiles, {{KT}} k-steps),
 * {{k.NT // 32}} warps of {{k.WM}}x{{k.WN}}. Tiles are staged through registers into shared memory as
 * [row][k] (k contiguous, converted to {{bf and "bf16" or "tf32"}}), double buffered: the global loads of step
 * k+1 are in flight while step k's tensor-core work runs. ---- */
% local params = { "float *__restrict__ C" }
% if k.epi == "gelu" then params[#params + 1] = "float *__restrict__ G" end
% params[#params + 1] = "const " .. TA .. " *__restrict__ A"
% params[#params + 1] = "const " .. TB .. " *__restrict__ B"
% if k.bias then params[#params + 1] = "const float *__restrict__ bias" end
% if k.epi == "residual" then params[#params + 1] = "const float *__restrict__ X" end
% if k.epi == "gelu_bwd" then params[#params + 1] = "const float *__restrict__ P" end
% if k.drop then params[#params + 1] = "const gptc_micro *__restrict__ mc" ; params[#params + 1] = "int site" end
extern "C" __global__ void __launch_bounds__({{k.NT}}) {{k.fn}}({{table.concat(params, ", ")}}) {
  constexpr int LDS = {{k.BK + (bf and 8 or 4)}}; /* padded row: fragment loads hit 32 distinct banks */
  __shared__ __align__(16) {{E}} As[2][{{k.BM}} * LDS];
  __shared__ __align__(16) {{E}} Bs[2][{{k.BN}} * LDS];
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, t = lane & 3;
  const int m0 = blockIdx.y * {{k.BM}}, n0 = blockIdx.x * {{k.BN}};
  const int wm = warp / {{WARPS_N}} * {{k.WM}}, wn = warp % {{WARPS_N}} * {{k.WN}};
% if k.drop then
  const bool drop = mc->train != 0;
% end
  float acc[{{MI}}][{{NI}}][4];
#pragma unroll
  for (int i = 0; i < {{MI}}; i++)
#pragma unroll
    for (int j = 0; j < {{NI}}; j++) acc[i][j][0] = acc[i][j][1] = acc[i][j][2] = acc[i][j][3] = 0.0f;
%
% -- One operand's staging: `X` is A or B; rows ("outer") are M or N. k_contig: the global
% -- layout has k contiguous (A (M, K), B (N, K)); otherwise the outer index is contiguous.
% local ops = {
%   A = { name = "A", BO = k.BM, O = k.M, o0 = "m0", ld = k.lda, kc = not k.ta, v = k.va, src = TA },
%   B = { name = "B", BO = k.BN, O = k.N, o0 = "n0", ld = k.ldb, kc = k.tb, v = k.vb, src = TB },
% }
% for _, X in pairs(ops) do X.nv = X.BO * k.BK // (X.v * k.NT) end
% local function decl(X, pad)
{{pad}}{{X.src}} r{{X.name}}[{{X.nv}}][{{X.v}}]; /* next tile of {{X.name}}, in flight */
% end
% local function load(X, kexpr, pad)
#pragma unroll
{{pad}}for (int i = 0; i < {{X.nv}}; i++) {
{{pad}}  const int v = tid + i * {{k.NT}};
%   if X.kc then
{{pad}}  const int o = v / {{k.BK // X.v}}, kk = v % {{k.BK // X.v}} * {{X.v}};
%   else
{{pad}}  const int kk = v % {{k.BK}}, o = v / {{k.BK}} * {{X.v}};
%   end
{{pad}}  const int go = {{X.o0}} + o, gk = ({{kexpr}}) + kk;
{{pad}}  const bool ok = go < {{X.O}} && gk < {{k.K}};
%   local idx = X.kc and ("(size_t)go * " .. X.ld .. " + gk") or ("(size_t)gk * " .. X.ld .. " + go")
%   if X.src == "float" and X.v == 4 then
{{pad}}  float4 q = ok ? *(const float4 *)({{X.name}} + {{idx}}) : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
{{pad}}  r{{X.name}}[i][0] = q.x;
{{pad}}  r{{X.name}}[i][1] = q.y;
{{pad}}  r{{X.name}}[i][2] = q.z;
{{pad}}  r{{X.name}}[i][3] = q.w;
%   elseif X.src == "float" and X.v == 2 then
{{pad}}  float2 q = ok ? *(const float2 *)({{X.name}} + {{idx}}) : make_float2(0.0f, 0.0f);
{{pad}}  r{{X.name}}[i][0] = q.x;
{{pad}}  r{{X.name}}[i][1] = q.y;
%   elseif X.src == "bf16" and X.v == 4 then
{{pad}}  uint2 q = ok ? *(const uint2 *)({{X.name}} + {{idx}}) : make_uint2(0u, 0u);
{{pad}}  r{{X.name}}[i][0] = (bf16)(q.x & 0xffffu);
{{pad}}  r{{X.name}}[i][1] = (bf16)(q.x >> 16);
{{pad}}  r{{X.name}}[i][2] = (bf16)(q.y & 0xffffu);
{{pad}}  r{{X.name}}[i][3] = (bf16)(q.y >> 16);
%   elseif X.src == "bf16" and X.v == 2 then
{{pad}}  u32 q = ok ? *(const u32 *)({{X.name}} + {{idx}}) : 0u;
{{pad}}  r{{X.name}}[i][0] = (bf16)(q & 0xffffu);
{{pad}}  r{{X.name}}[i][1] = (bf16)(q >> 16);
%   else
{{pad}}  r{{X.name}}[i][0] = ok ? {{X.name}}[{{idx}}] : ({{X.src}})0;
%   end
{{pad}}}
% end
% local function cvt(X, e)
%   if bf then return X.src == "bf16" and e or ("to_bf16(" .. e .. ")") end
%   return "to_tf32(" .. e .. ")"
% end
% local function store(X, buf, pad)
#pragma unroll
{{pad}}for (int i = 0; i < {{X.nv}}; i++) {
{{pad}}  const int v = tid + i * {{k.NT}};
%   if X.kc then
{{pad}}  const int o = v / {{k.BK // X.v}}, kk = v % {{k.BK // X.v}} * {{X.v}};
{{pad}}  {{E}} *s = {{X.name}}s[{{buf}}] + o * LDS + kk;
#pragma unroll
{{pad}}  for (int j = 0; j < {{X.v}}; j++) s[j] = {{cvt(X, "r" .. X.name .. "[i][j]")}};
%   else
{{pad}}  const int kk = v % {{k.BK}}, o = v / {{k.BK}} * {{X.v}};
{{pad}}  {{E}} *s = {{X.name}}s[{{buf}}] + o * LDS + kk;
#pragma unroll
{{pad}}  for (int j = 0; j < {{X.v}}; j++) s[j * LDS] = {{cvt(X, "r" .. X.name .. "[i][j]")}};
%   end
{{pad}}}
% end
%
% decl(ops.A, "  ")
% decl(ops.B, "  ")
% load(ops.A, "0", "  ")
% load(ops.B, "0", "  ")
% store(ops.A, "0", "  ")
% store(ops.B, "0", "  ")
  __syncthreads();
% if KT > 1 then
  for (int kt = 0; kt < {{KT}}; kt++) {
    const int buf = kt & 1;
    if (kt + 1 < {{KT}}) {
% load(ops.A, "(kt + 1) * " .. k.BK, "      ")
% load(ops.B, "(kt + 1) * " .. k.BK, "      ")
    }
% else
  {
    const int buf = 0;
% end
    const {{E}} *as = As[buf], *bs = Bs[buf];
#pragma unroll
    for (int ks = 0; ks < {{k.BK}}; ks += {{KS}}) {
      u32 af[{{MI}}][4], bfr[{{NI}}][2];
#pragma unroll
      for (int i = 0; i < {{MI}}; i++) {
% if bf then
        const bf16 *pa = as + (wm + i * 16 + g) * LDS + ks + 2 * t;
        af[i][0] = *(const u32 *)pa;
        af[i][1] = *(const u32 *)(pa + 8 * LDS);
        af[i][2] = *(const u32 *)(pa + 8);
        af[i][3] = *(const u32 *)(pa + 8 * LDS + 8);
% else
        const float *pa = as + (wm + i * 16 + g) * LDS + ks + t;
        af[i][0] = __float_as_uint(pa[0]);
        af[i][1] = __float_as_uint(pa[8 * LDS]);
        af[i][2] = __float_as_uint(pa[4]);
        af[i][3] = __float_as_uint(pa[8 * LDS + 4]);
% end
      }
#pragma unroll
      for (int j = 0; j < {{NI}}; j++) {
% if bf then
        const bf16 *pb = bs + (wn + j * 8 + g) * LDS + ks + 2 * t;
        bfr[j][0] = *(const u32 *)pb;
        bfr[j][1] = *(const u32 *)(pb + 8);
% else
        const float *pb = bs + (wn + j * 8 + g) * LDS + ks + t;
        bfr[j][0] = __float_as_uint(pb[0]);
        bfr[j][1] = __float_as_uint(pb[4]);
% end
      }
#pragma unroll
      for (int i = 0; i < {{MI}}; i++)
#pragma unroll
        for (int j = 0; j < {{NI}}; j++) mma_{{bf and "bf16" or "tf32"}}(acc[i][j], af[i], bfr[j]);
    }
% if KT > 1 then
    if (kt + 1 < {{KT}}) {
% store(ops.A, "buf ^ 1", "      ")
% store(ops.B, "buf ^ 1", "      ")
    }
    __syncthreads();
% end
  }

  /* epilogue: thread holds rows g and g + 8, columns 2t and 2t + 1 of each 16x8 tile */
#pragma unroll
  for (int i = 0; i < {{MI}}; i++)
#pragma unroll
    for (int j = 0; j < {{NI}}; j++)
#pragma unroll
      for (int h = 0; h < 2; h++) {
        const int row = m0 + wm + i * 16 + g + h * 8, col = n0 + wn + j * 8 + 2 * t;
        if (row >= {{k.M}}) continue;
        const size_t idx = (size_t)row * {{k.N}} + col;
        float v0 = acc[i][j][2 * h], v1 = acc[i][j][2 * h + 1];
% -- element epilogue for (e, vN) at column col + e
% local function elem(e, vn)
%   local ix = e == 0 and "idx" or "idx + 1"
%   if k.bias then
        {{vn}} += bias[col + {{e}}];
%   end
%   if k.epi == "store" then
        C[{{ix}}] = {{vn}};
%   elseif k.epi == "acc" then
        C[{{ix}}] += {{vn}};
%   elseif k.epi == "gelu" then
        C[{{ix}}] = {{vn}};
        G[{{ix}}] = gelu_f({{vn}});
%   elseif k.epi == "gelu_bwd" then
        C[{{ix}}] = {{vn}} * gelu_d(P[{{ix}}]);
%   elseif k.epi == "residual" then
%     if k.drop then
        if (drop) {{vn}} = drop_apply({{vn}}, drop_word(mc, (u32)site, {{ix}}));
%     end
        C[{{ix}}] = X[{{ix}}] + {{vn}};
%   end
% end
% if k.N % 2 == 0 and (k.epi == "store" or k.epi == "gelu" or (k.epi == "residual" and not k.drop)) then
        if (col >= {{k.N}}) continue;
%   if k.bias then
        v0 += bias[col];
        v1 += bias[col + 1];
%   end
%   if k.epi == "residual" then
        const float2 x = *(const float2 *)(X + idx);
        v0 += x.x;
        v1 += x.y;
%   end
        *(float2 *)(C + idx) = make_float2(v0, v1);
%   if k.epi == "gelu" then
        *(float2 *)(G + idx) = make_float2(gelu_f(v0), gelu_f(v1));
%   end
% else
        if (col < {{k.N}}) {
% elem(0, "v0")
        }
        if (col + 1 < {{k.N}}) {
% elem(1, "v1")
        }
% end
      }
}
