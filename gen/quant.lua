-- quant: the q8 weight layout (`gptc export --quant q8`, `gptc sample
-- --quant q8`), derived once from the shapes. The C side (runtime/quant.c)
-- fills a blob from the float32 parameters by walking `copies` and `mats`;
-- the inference template (templates/cpu/infer.c) reads it through `goff`,
-- `loff`, `layer_stride` and the matrices' byte offsets. Nothing here
-- depends on the host's vector width, so one blob serves every kernel
-- variant.
--
-- The blob, in bytes:
--   f32 part   every tensor that is not quantized (embeddings, layernorms,
--              biases), float32, in the parameter order, each at a multiple
--              of 16 floats; layer l's at loff(key) + l * layer_stride
--   q8 part    from q8_base, 64-byte aligned: per layer the matrices
--              attn.c_attn, attn.c_proj, mlp.c_fc, mlp.c_proj (layer l's at
--              q8_base + l * q8_stride + the matrix's s_off / q_off), then
--              the lm head
-- A matrix is the generated code's W (K, N) (y = x . W): K along the
-- contraction. Its int8 values sit in panels of PANEL columns, q (NP, K,
-- PANEL) with NP = ceil(N / PANEL), so a slice of columns streams through
-- memory in order; its scales are one float per BLOCK rows of a column, s
-- (NP, NB, PANEL) with NB = ceil(K / BLOCK). Columns past N (the last
-- panel's padding) hold zeros.
--
-- The lm head: an untied lm_head.weight (V, C) is quantized and left out of
-- the f32 part. A tied wte stays float32 for the embedding lookup (one row
-- a token) and gets a q8 copy for the head's mat-vec, which reads all of it
-- every token: the head is a third of gpt2-124m's weights, so leaving it
-- float32 would cap the memory saved, and the speed-up, near 2x.

local M = {}

M.BLOCK = 32 -- rows of K sharing one scale
M.PANEL = 32 -- columns of a panel
M.ALIGN = 64 -- bytes: every matrix's s and q

local LAYER_MATS = { "attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight" }

local function ceil_div(a, b) return (a + b - 1) // b end
local function align(n, a) return ceil_div(n, a) * a end

-- The matrix descriptor of tensor t seen as W (K, N): row-major (K, N) for
-- the layers' weights, the transpose of (V, C) for the head.
local function mat(t, head)
  local K, N = t.sizes[1], t.sizes[2]
  local sk, sn = N, 1
  if head then K, N, sk, sn = t.sizes[2], t.sizes[1], 1, t.sizes[2] end
  local m = { name = t.name, src = t.offset, K = K, N = N, sk = sk, sn = sn,
              NB = ceil_div(K, M.BLOCK), NP = ceil_div(N, M.PANEL) }
  m.s_bytes = m.NP * m.NB * M.PANEL * 4
  m.q_bytes = m.NP * K * M.PANEL
  return m
end

-- Places m at byte offset `off`; returns the offset after it.
local function put(m, off)
  m.s_off = off
  m.q_off = align(off + m.s_bytes, M.ALIGN)
  return align(m.q_off + m.q_bytes, M.ALIGN)
end

function M.layout(S)
  local d = S.dims
  local quantized = {}
  for _, k in ipairs(LAYER_MATS) do quantized[k] = true end
  local head_name = S.tie_embeddings and "wte.weight" or "lm_head.weight"
  local Q = { copies = {}, mats = {}, goff = {}, loff = {}, block = M.BLOCK, panel = M.PANEL }

  -- the f32 part
  local off, first = 0, {}
  for _, t in ipairs(S.tensors) do
    local q = (t.layer and quantized[t.key]) or t.name == "lm_head.weight"
    if not q then
      Q.copies[#Q.copies + 1] = { src = t.offset, dst = off * 4, n = t.numel }
      if t.layer then
        first[t.layer] = first[t.layer] or off
        if t.layer == 0 then Q.loff[t.key] = off end
      else
        Q.goff[t.name] = off
      end
      off = align(off + t.numel, 16)
    end
  end
  Q.layer_stride = d.L > 1 and first[1] - first[0] or 0
  for l = 1, d.L - 1 do
    assert(first[l] - first[l - 1] == Q.layer_stride, "quant: layer stride is not constant")
  end
  Q.f32_floats = off

  -- the q8 part: layer 0's matrices set the per-layer offsets
  local at = align(off * 4, M.ALIGN)
  Q.q8_base = at
  Q.lmat = {}
  for l = 0, d.L - 1 do
    local start = at
    for _, k in ipairs(LAYER_MATS) do
      local m = mat(S.tensor["h." .. l .. "." .. k], false)
      at = put(m, at)
      Q.mats[#Q.mats + 1] = m
      if l == 0 then Q.lmat[k] = { s_off = m.s_off - start, q_off = m.q_off - start, K = m.K, N = m.N } end
    end
    if l == 0 then Q.q8_stride = at - start end
  end
  local h = mat(S.tensor[head_name], true)
  at = put(h, at)
  Q.mats[#Q.mats + 1] = h
  Q.head = { s_off = h.s_off, q_off = h.q_off, K = h.K, N = h.N }
  Q.bytes = at
  Q.n_kv, Q.n_scratch = S.kv.numel, S.infer_scratch.n
  return Q
end

-- For the C side: the layout of cfg's model.
function M.for_cfg(cfg) return M.layout(require("shapes").derive(cfg)) end

return M
