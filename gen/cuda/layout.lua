-- cuda/layout: the CUDA backend's layout pass. Lays out, from the
-- device-neutral shapes (gen/shapes.lua), the buffers the CUDA kernels
-- (templates/cuda/) and the launch plan use.
--
-- Parameters, gradients and AdamW moments use the shapes' flat layout
-- unchanged (checkpoints and the CPU backend share it). The activations add
-- one per-layer buffer of the training pass: attention never stores its
-- (B, H, T, T) weights (the kernels are flash-style and recompute them) but
-- `att_lse` (B, H, T), the softmax normalizers the backward needs. Kernel
-- scratch (reduction partials, the attention backward's row dots) lives in
-- a separate `scratch` layout, the inference step's in `infer`, and each
-- micro-batch's token ids in an `io` slot.

local shapes = require("shapes")

local M = {}

local function ceil_div(a, b) return (a + b - 1) // b end
local function align(n) return ceil_div(n, shapes.ALIGN) * shapes.ALIGN end

local function new_layout(name) return { name = name, buffers = {}, by = {}, n = 0 } end

-- A buffer of numel elements at the layout's end (aligned as the shapes' are).
local function place(lay, name, numel)
  local b = { name = name, numel = numel, offset = lay.n, stride = 0 }
  lay.buffers[#lay.buffers + 1] = b
  lay.by[name] = b
  lay.n = align(lay.n + numel)
  return b
end

-- The activation layouts (shapes.act_layouts): training acts with att_lse
-- per layer, evaluation acts and the backward scratch as the shapes have them.
function M.acts(S)
  return shapes.act_layouts(S, {
    saved = function(d) return { "att_lse", { { "B", d.B }, { "H", d.H }, { "T", d.T } } } end,
  })
end

-- The io slot, in int32s: inputs and targets (BTmax each), the host-sorted
-- token order, segment starts and segment tokens of the embedding backward.
function M.io(d)
  local BTmax = math.max(d.B * d.T, d.eval_B * d.eval_T)
  local io = { BTmax = BTmax, inputs = 0, targets = BTmax, order = 2 * BTmax, seg_start = 3 * BTmax,
    seg_tok = 4 * BTmax + 1 }
  io.slot = align(5 * BTmax + 1)
  return io
end

-- Scratch: the attention backward's row dots, the gradient norm's partials
-- (doubles) and the column sums' partials (col_scratch elements: known only
-- once the passes have registered their needs, so it is last).
function M.scratch(S, n_chunks, col_scratch)
  local d = S.dims
  local lay = new_layout("scratch")
  place(lay, "att_d", d.B * d.H * d.T)
  place(lay, "normpart", 2 * n_chunks) -- doubles
  place(lay, "colpart", col_scratch)
  return lay
end

-- The inference step: the shapes' scratch, then the LayerNorm statistics
-- and the logits.
function M.infer(S)
  local lay = new_layout("infer")
  for _, b in ipairs(S.infer_scratch.buffers) do place(lay, b.name, b.numel) end
  place(lay, "ln_mean", 1)
  place(lay, "ln_rstd", 1)
  place(lay, "logits", S.dims.V)
  return lay
end

return M
