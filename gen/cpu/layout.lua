-- cpu/layout: the CPU's layout pass. Adds to the device-neutral shapes
-- (gen/shapes.lua) what only the CPU kernels (templates/cpu/) need: the
-- per-layer attention weights the training pass stores for the backward, the
-- attention kernels' scratch at the end of each activation layout, the op
-- program's references to both, the memory totals and the gptc_model size
-- fields.

local shapes = require("shapes")

local M = {}

local function align(n) return (n + shapes.ALIGN - 1) // shapes.ALIGN * shapes.ALIGN end

-- Attention works on one (b, h) at a time, in blocks of up to ATT_ROWS query
-- or key rows, with K or V transposed (hd, Tp) and Tp = T rounded up to VEC
-- (a multiple of every register-block width). The forward's scratch: the
-- transpose, two (ATT_ROWS, Tp) blocks of weights, two (ATT_ROWS, hd) edge
-- tiles, and one row of dropout words (Tp + 128).
-- The transpose's rows are Tp + 16 apart: with a power-of-two-ish stride the
-- hd rows would fall into a few cache sets.
M.VEC, M.ATT_ROWS = 32, 8
function M.att_scratch(d, T)
  local Tp = (T + M.VEC - 1) // M.VEC * M.VEC
  local R = M.ATT_ROWS
  return align(d.hd * (Tp + 16) + 2 * R * Tp + 2 * R * d.hd + Tp + 128), Tp, Tp + 16
end

-- The backward's: the transpose, the weight gradients and the weights after
-- dropout (T, Tp) each, a (ATT_ROWS, Tp) block, the edge tiles, and the
-- dropout words.
function M.att_grad_scratch(d, T)
  local _, Tp = M.att_scratch(d, T)
  local R = M.ATT_ROWS
  return align(d.hd * (Tp + 16) + 2 * T * Tp + R * Tp + 2 * R * d.hd + Tp + 128)
end

-- The CPU's additions to the activation layouts (shapes.act_layouts): the
-- training pass stores the (B, H, T, T) attention weights of every layer;
-- each layout ends with the attention scratch, (B, H, S) at its shape.
local DEV = {
  saved = function(d) return { "att", { { "B", d.B }, { "H", d.H }, { "T", d.T }, { "T", d.T } } } end,
  scratch = function(d, B, T, grad)
    local S = grad and M.att_grad_scratch(d, T) or (M.att_scratch(d, T))
    return { "att_scratch", { { "B", B }, { "H", d.H }, { "S", S } } }
  end,
}

-- Lays S out for the CPU, in place; returns S. Sets S.acts, S.eval_acts,
-- S.grad_acts and S.memory, and gives the attention ops of both programs
-- their scratch (and, training, their weights buffer).
function M.apply(S)
  S.acts, S.eval_acts, S.grad_acts = shapes.act_layouts(S, DEV)
  for _, prog in ipairs({ S.train, S.eval }) do
    for _, op in ipairs(prog.layer) do
      if op.kind == "attention" then
        op.att = prog.mode == "train" and { buf = "att" } or nil
        op.scratch = { buf = "att_scratch", grad = "att_scratch" }
      end
    end
  end
  local n_params = S.n_params
  S.memory = {
    params_bytes = 4 * n_params,
    train_bytes = 4 * (4 * n_params + S.acts.n + S.grad_acts.n),
    eval_bytes = 4 * (n_params + S.eval_acts.n),
    infer_bytes = 4 * (n_params + S.kv.numel + S.infer_scratch.n),
  }
  return S
end

-- shapes.derive then apply: the shapes the CPU emitter, the benchmark
-- harness and the CPU backend's memory check read.
function M.derive(cfg) return M.apply(shapes.derive(cfg)) end

-- Buffer totals as the gptc_model size fields.
function M.sizes(S)
  return {
    n_params = S.n_params, n_acts = S.acts.n, n_grad_acts = S.grad_acts.n, n_eval_acts = S.eval_acts.n,
    n_kv = S.kv.numel, n_infer_scratch = S.infer_scratch.n,
    logits_offset = S.acts.by.logits.offset, eval_logits_offset = S.eval_acts.by.logits.offset,
  }
end

return M
