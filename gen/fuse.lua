-- fuse: the fusion pass. Decides, once for every device, which elementwise
-- ops of the op program (gen/shapes.lua) run inside the kernels of the
-- matmuls around them, and marks the ops; the CPU emitter
-- (gen/cpu/emit.lua), its benchmark harness (gen/bench.lua) and the CUDA
-- emitter (gen/cuda/emit.lua) read the marks and decide nothing themselves.
--
-- The marks:
--   matmul.residual = r      the residual add r that follows the matmul runs
--                            in the matmul's epilogue (forward: the matmul
--                            writes r's branch, so r adds x and dropout in place)
--   residual.fused = true    ... so r's forward is no kernel of its own; its
--                            backward is (it feeds three kernels)
--   matmul.gelu_out = ref    GELU's forward runs in the epilogue of the
--                            matmul producing its input, writing ref too
--   matmul.gelu_grad_of = ref  GELU's backward runs in the epilogue of the
--                            input-gradient GEMM of the matmul consuming its
--                            output (ref: GELU's input, which GELU' reads)
--   gelu.fused = true        GELU's forward is no kernel of its own
--   gelu.fused_bwd = true    nor is its backward
-- Both devices fuse the same set; `gptc gen` notes each fusion in the
-- source (CPU: the call's comment, CUDA: the launch's description).

local M = {}

-- Marks one list of ops (a part of a program: pre, layer or post).
function M.mark(ops)
  for i = 1, #ops - 1 do
    local a, b, c = ops[i], ops[i + 1], ops[i + 2]
    -- a residual add follows the projection that writes its branch in place
    if a.kind == "matmul" and b.kind == "residual" and b.out.buf == a.out.buf then
      a.residual = b
      b.fused = true
    end
    -- GELU between two matmuls: the first writes its input, the second
    -- reads its output and has a kernel-layout weight (its input-gradient
    -- GEMM is the one with the gelu_grad epilogue)
    if a.kind == "matmul" and b.kind == "gelu" and b.inp.buf == a.out.buf and c and c.kind == "matmul" and
        c.inp.buf == b.out.buf and not c.wt then
      a.gelu_out = b.out
      c.gelu_grad_of = b.inp
      b.fused, b.fused_bwd = true, true
    end
  end
end

-- Marks every part of both programs of S (shapes.derive's result), in
-- place; returns S. opts.enabled == false marks nothing: every op its own
-- kernel (the CUDA tests' unfused variant, `gen_cuda_opts.unfused`).
function M.run(S, opts)
  if opts and opts.enabled == false then return S end
  for _, prog in ipairs({ S.train, S.eval }) do
    for _, part in ipairs({ "pre", "layer", "post" }) do M.mark(prog[part]) end
  end
  return S
end

return M
