-- emit_cuda: renders a model's CUDA source from its derived shapes
-- (gen/shapes.lua) and the kernel templates (templates/cuda/). As for the
-- CPU, every kernel is instantiated with literal dimensions. The host side
-- is not C but a launch plan: the exact sequence of kernel launches of each
-- pass (grid, block, arguments as buffer + offset), written as a comment
-- block at the end of the source, which runtime/cuda.c reads back. Source and
-- plan are one text, so one content hash covers both.
--
-- Entry points (called from runtime/gen.c: gen_cuda_source, gen_cuda_units):
--   body(cfg, opts)          the source below the header, plan included
--   split(cfg, opts)         the body and its NVRTC programs, one per kernel
--   header(cfg, hash, opts)  the header comment naming config, version, hash
-- opts.fuse = false keeps GELU and the residual add as separate kernels;
-- opts.tile = 1..4 makes every GEMM use that block tile (TILES below). Tests
-- use both to reach, on small models, code the shipped shapes take.
--
-- Layouts: gen/cuda/layout.lua (the activations with att_lse, the kernel
-- scratch, the inference buffers, the io slot).

local fuse = require("fuse")
local layout = require("cuda.layout")
local shapes = require("shapes")
local template = require("template")

local M = {}

local TPL = "templates/cuda/"
M.PLAN_VERSION = 1

local function ceil_div(a, b) return (a + b - 1) // b end

local function flit(x)
  local s = string.format("%.9g", x)
  if not s:find("[%.eEn]") then s = s .. ".0" end
  return s .. "f"
end

-- ---- kernel registry ---------------------------------------------------------------

local function new_kernels() return { list = {}, by = {} } end

-- Registers kernel instance `k` (its name encodes every parameter) rendered
-- by template `tpl`; returns the registered instance.
local function use(ks, tpl, k)
  local e = ks.by[k.fn]
  if e then return e.k end
  e = { tpl = tpl, k = k }
  ks.by[k.fn] = e
  ks.list[#ks.list + 1] = e
  return k
end

-- ---- launches --------------------------------------------------------------------

-- A launch: kernel, grid, block, arguments. An argument is a buffer
-- reference "name+offset" (offset in elements of that buffer), or "#n" for
-- an int.
local function launch(prog, k, grid, block, args, desc)
  for _, a in ipairs(args) do
    if type(a) ~= "string" then error("emit_cuda: bad argument for " .. k.fn, 0) end
  end
  prog[#prog + 1] = { fn = k.fn, grid = grid, block = block, args = args, desc = desc, nargs = k.nargs }
  if k.nargs and k.nargs ~= #args then
    error(string.format("emit_cuda: %s takes %d arguments, launch passes %d", k.fn, k.nargs, #args), 0)
  end
end

local function ref(buf, off) return off == 0 and buf or string.format("%s+%d", buf, off) end

-- Blocks of 256 threads for an elementwise kernel over n elements: a thread
-- takes four (the elements one Philox call covers), 16 threads a block of 64.
local function ew_blocks(n) return ceil_div(ceil_div(n, 64) * 16, 256) end

-- ---- GEMM ----------------------------------------------------------------------

-- Block tiles, largest first: the largest that still makes about two waves
-- on a 132-SM GPU is used; small problems fall back to small tiles.
local TILES = {
  { BM = 128, BN = 128, WM = 64, WN = 32, NT = 256 },
  { BM = 128, BN = 64, WM = 64, WN = 32, NT = 128 },
  { BM = 64, BN = 64, WM = 32, WN = 32, NT = 128 },
  { BM = 32, BN = 32, WM = 16, WN = 16, NT = 128 },
}

local function pick_tile(Mm, N, force)
  if force and force > 0 then
    return TILES[force] or error("emit_cuda: opts.tile must be 1.." .. #TILES, 0)
  end
  for i = 1, 3 do
    local t = TILES[i]
    if ceil_div(Mm, t.BM) * ceil_div(N, t.BN) >= 264 then return t end
  end
  if Mm >= 64 and N >= 64 then return TILES[3] end
  return TILES[4]
end

local function vec_for(ld) return ld % 4 == 0 and 4 or ld % 2 == 0 and 2 or 1 end

-- g: { M, N, K, ta, tb, epi, bias, drop, b_bf, desc }
local function gemm(env, ks, g)
  local bf = env.bf16
  local tile = pick_tile(g.M, g.N, env.tile)
  local k = {
    M = g.M, N = g.N, K = g.K, ta = g.ta, tb = g.tb, epi = g.epi, bias = g.bias or false, drop = g.drop or false,
    bf = bf, a_bf = false, b_bf = g.b_bf and bf or false, desc = g.desc,
    BM = tile.BM, BN = tile.BN, WM = tile.WM, WN = tile.WN, NT = tile.NT, BK = bf and 32 or 16,
  }
  k.lda = g.ta and g.M or g.K
  k.ldb = g.tb and g.K or g.N
  k.va, k.vb = vec_for(k.lda), vec_for(k.ldb)
  k.fn = string.format("gemm_%dx%dx%d_%s%s_%s%s%s%s", g.M, g.N, g.K, g.ta and "t" or "n", g.tb and "t" or "n", g.epi,
    k.bias and "_bias" or "", k.drop and "_drop" or "", k.b_bf and "_wbf16" or "")
  k.nargs = 3 + (g.epi == "gelu" and 1 or 0) + (k.bias and 1 or 0) + ((g.epi == "residual" or g.epi == "gelu_bwd") and 1 or 0)
      + (k.drop and 2 or 0)
  k.grid = { ceil_div(g.N, k.BN), ceil_div(g.M, k.BM), 1 }
  k.block = { k.NT, 1, 1 }
  if k.grid[2] > 65535 then error("emit_cuda: GEMM " .. k.fn .. " needs more than 65535 row tiles", 0) end
  return use(ks, "gemm.cu", k)
end

-- ---- pointer expressions --------------------------------------------------------

-- Buffer references of one pass. `lay` is the activation layout; layer `l`
-- picks per-layer buffers.
local function pointers(S, env, mode)
  local P = {}
  local lay = mode == "train" and env.acts or env.eval_acts
  local bufname = mode == "train" and "acts" or "eval_acts"
  local L = S.dims.L
  local function tensor(key, l)
    if l then
      local t = S.tensor["h.0." .. key]
      if not t then error("emit_cuda: no tensor " .. key, 0) end
      return t.layer0_offset + l * S.layer_stride
    end
    local t = S.tensor[key]
    if not t then error("emit_cuda: no tensor " .. key, 0) end
    return t.offset
  end
  function P.param(key, l) return ref("params", tensor(key, l)) end
  function P.weight(key, l) return ref(env.bf16 and "params16" or "params", tensor(key, l)) end
  function P.grad(key, l) return ref("grads", tensor(key, l)) end
  function P.buf(name, l)
    if name == "layer_in" then
      if mode == "train" and l > 0 then return P.buf("res3", l - 1) end
      return P.buf("encoded", l)
    end
    if name == "last_out" then return P.buf("res3", L - 1) end
    local b = lay.by[name]
    if not b then error("emit_cuda: no activation buffer " .. name, 0) end
    return b, b.offset + (b.stride > 0 and l * b.stride or 0)
  end
  function P.act(name, l)
    local b, off = P.buf(type(name) == "table" and name.buf or name, l)
    if type(b) == "string" then return b end
    return ref(bufname, off)
  end
  function P.dact(name, l)
    name = env.galias[name] or name
    local b = env.grad_acts.by[name]
    if b then return ref("grad_acts", b.offset) end
    return P.act(name, l)
  end
  function P.shape(name)
    if name == "layer_in" or name == "last_out" then name = "res3" end
    local b = lay.by[name] or env.grad_acts.by[name]
    return b and b.shape and shapes.shape_str(b.shape) or ""
  end
  P.layout = lay
  return P
end

-- ---- forward -----------------------------------------------------------------------

local function desc_layer(l, s) return l and string.format("layer %d: %s", l, s) or s end

-- Emits the launches of forward op `op` (of layer l or nil). An op the
-- fusion pass (gen/fuse.lua) marked fused runs in the matmul before it.
local function forward_op(S, env, ks, P, prog, op, l, train)
  local d = S.dims
  if op.fused then return end
  local drop = train and d.p > 0
  local site = l and op.site and shapes.site(op, l) or 0
  if op.kind == "embed" then
    local k = use(ks, "embed.cu", { kind = "fwd", fn = string.format("embed_fwd_%dx%d%s", op.B, op.T,
      drop and "_drop" or ""), B = op.B, T = op.T, C = d.C, V = d.V, drop = drop, nargs = drop and 5 or 4 })
    launch(prog, k, { ew_blocks(op.B * op.T * d.C), 1, 1 }, { 256, 1, 1 },
      { P.act(op.out, l), P.param("wte.weight"), P.param("wpe.weight"), "io+" .. env.io.inputs, drop and "micro" or nil },
      string.format("encoded %s = wte[inputs] + wpe[t]%s", P.shape("encoded"), drop and ", dropout (site 0)" or ""))
  elseif op.kind == "layernorm" then
    local k = use(ks, "layernorm.cu", env.ln_fwd(op.N, op.C))
    launch(prog, k, { ceil_div(op.N, 4), 1, 1 }, { 128, 1, 1 },
      { P.act(op.out, l), P.act(op.mean, l), P.act(op.rstd, l), P.act(op.inp, l), P.param(op.w, l), P.param(op.b, l) },
      desc_layer(l, string.format("%s %s = LayerNorm(%s)", op.out.buf, P.shape(op.out.buf), op.inp.buf)))
  elseif op.kind == "matmul" then
    local epi, fused, r = "store", "", op.residual
    if op.gelu_out then
      epi = "gelu"
      fused = string.format(", %s = GELU(%s)", op.gelu_out.buf, op.out.buf)
    elseif r then
      epi = "residual"
      fused = string.format(", then %s + %s", r.x.buf == "layer_in" and "x_in" or r.x.buf,
        drop and "dropout (site " .. shapes.site(r, l) .. ")" or "it")
    end
    local k = gemm(env, ks, { M = op.M, N = op.N, K = op.K, ta = false, tb = op.wt, epi = epi, bias = op.bias ~= nil,
      drop = epi == "residual" and drop, b_bf = true, desc = op.w .. " forward" })
    local args = { P.act(op.out, l) }
    if epi == "gelu" then args[#args + 1] = P.act(op.gelu_out, l) end
    args[#args + 1] = P.act(op.inp, l)
    args[#args + 1] = P.weight(op.w, l)
    if op.bias then args[#args + 1] = P.param(op.bias, l) end
    if epi == "residual" then
      args[#args + 1] = P.act(r.x, l)
      if k.drop then
        args[#args + 1] = "micro"
        args[#args + 1] = "#" .. shapes.site(r, l)
      end
    end
    launch(prog, k, k.grid, k.block, args, desc_layer(l, string.format("%s %s = %s . %s%s%s%s", op.out.buf,
      P.shape(op.out.buf), op.inp.buf, op.w, op.wt and "^T" or "", op.bias and (" + " .. op.bias) or "", fused)))
  elseif op.kind == "attention" then
    local k = use(ks, "attention.cu", env.attn("fwd", op.B, op.T, train, drop))
    local args = { P.act(op.out, l) }
    if train then args[#args + 1] = P.act("att_lse", l) end
    args[#args + 1] = P.act(op.qkv, l)
    if drop then
      args[#args + 1] = "micro"
      args[#args + 1] = "#" .. site
    end
    launch(prog, k, k.grid, k.block, args, desc_layer(l, string.format("%s %s = causal attention over qkv%s",
      op.out.buf, P.shape(op.out.buf), train and " (row softmax normalizers to att_lse)" or "")))
  elseif op.kind == "residual" then
    local k = use(ks, "elementwise.cu", { kind = "residual", fn = string.format("residual_%d%s", op.N,
      drop and "_drop" or ""), N = op.N, drop = drop, nargs = drop and 4 or 2 })
    local args = { P.act(op.out, l), P.act(op.x, l) }
    if drop then
      args[#args + 1] = "micro"
      args[#args + 1] = "#" .. site
    end
    launch(prog, k, { ew_blocks(op.N), 1, 1 }, { 256, 1, 1 }, args,
      desc_layer(l, string.format("%s = %s + dropout(%s)", op.out.buf, op.x.buf, op.out.buf)))
  elseif op.kind == "gelu" then
    local k = use(ks, "elementwise.cu", { kind = "gelu_fwd", fn = string.format("gelu_fwd_%d", op.N), N = op.N,
      nargs = 2 })
    launch(prog, k, { ew_blocks(op.N), 1, 1 }, { 256, 1, 1 }, { P.act(op.out, l), P.act(op.inp, l) },
      desc_layer(l, string.format("%s = GELU(%s)", op.out.buf, op.inp.buf)))
  elseif op.kind == "loss" then
    local k = use(ks, "loss.cu", { kind = "fwd", fn = string.format("xent_fwd_%dx%d", op.M, op.V), M = op.M, V = op.V,
      nargs = 4 })
    launch(prog, k, { op.M, 1, 1 }, { 256, 1, 1 }, { P.act(op.lse, l), P.act(op.losses, l), P.act(op.logits, l),
      "io+" .. env.io.targets }, string.format("lse, losses %s = softmax cross-entropy of logits %s",
      P.shape("losses"), P.shape("logits")))
    local km = use(ks, "loss.cu", { kind = "mean", fn = string.format("xent_mean_%d", op.M), M = op.M, nargs = 3 })
    launch(prog, km, { 1, 1, 1 }, { 256, 1, 1 }, { "micro", P.act(op.losses, l), "io+" .. env.io.targets },
      "loss = mean of losses over targets >= 0")
  else
    error("emit_cuda: unknown op kind " .. tostring(op.kind), 0)
  end
end

-- ---- backward ----------------------------------------------------------------------

-- Column sums into one or two (N) vectors through per-row-chunk partials
-- (RS, Q, N) in scratch, then a fixed-order reduction: deterministic.
local COL_ROWS = 256

local function colsum_launches(env, ks, prog, part_kind, rows, N, args_in, outs, desc)
  local RS = ceil_div(rows, COL_ROWS)
  local Q = #outs
  env.col_scratch = math.max(env.col_scratch, RS * Q * N)
  local kp = use(ks, "colsum.cu", { kind = part_kind, fn = string.format("%s_%dx%d", part_kind, rows, N), R = rows,
    N = N, RS = RS, RCH = COL_ROWS, nargs = 1 + #args_in })
  local a = { "scratch+" .. env.scratch.by.colpart.offset }
  for _, x in ipairs(args_in) do a[#a + 1] = x end
  launch(prog, kp, { ceil_div(N, 32), RS, 1 }, { 32, 8, 1 }, a, desc .. " (partial sums of row chunks)")
  local kf = use(ks, "colsum.cu", { kind = "final", fn = string.format("colsum_final%d_%dx%d", Q, RS, N), N = N, RS = RS,
    Q = Q, nargs = Q + 1 })
  local fa = {}
  for _, o in ipairs(outs) do fa[#fa + 1] = o end
  fa[#fa + 1] = "scratch+" .. env.scratch.by.colpart.offset
  launch(prog, kf, { ceil_div(N, 128), 1, 1 }, { 128, 1, 1 }, fa, desc .. " (partials added in order)")
end

-- Emits the backward launches of op `op` (of layer l or nil; the pass walks
-- the ops in reverse). GELU's backward marked fused (gen/fuse.lua) runs in
-- the epilogue of the next matmul's input-gradient GEMM.
local function backward_op(S, env, ks, P, prog, op, l)
  local d = S.dims
  local drop = d.p > 0
  local site = l and op.site and shapes.site(op, l) or 0
  if op.kind == "loss" then
    local k = use(ks, "loss.cu", { kind = "bwd", fn = string.format("xent_bwd_%dx%d", op.M, op.V), M = op.M, V = op.V,
      nargs = 4 })
    launch(prog, k, { op.M, 1, 1 }, { 256, 1, 1 }, { P.act(op.logits, l), P.act(op.lse, l), "io+" .. env.io.targets,
      "micro" }, "logits (B, T, V) -> d(loss_scale * mean loss)/d(logits), in place")
  elseif op.kind == "matmul" then
    local Mm, N, K = op.M, op.N, op.K
    local lw = l
    local g = op.gelu_grad_of
    local epi = g and "gelu_bwd" or "store"
    local dy = P.dact(op.out.grad, l)
    local dx_desc = string.format("d%s = d%s . %s%s%s", g and g.buf or op.inp.buf, op.out.buf,
      op.w, op.wt and "" or "^T", g and (" * GELU'(" .. g.buf .. ")") or "")
    local kx, kw
    if op.wt then
      -- W (N, K): dx (M, K) = dy (M, N) . W; dW (N, K) += dy^T . x
      kx = gemm(env, ks, { M = Mm, N = K, K = N, ta = false, tb = false, epi = epi, b_bf = true,
        desc = op.w .. " backward, input gradient" })
      kw = gemm(env, ks, { M = N, N = K, K = Mm, ta = true, tb = false, epi = "acc", desc = op.w ..
        " backward, weight gradient" })
    else
      -- W (K, N): dx (M, K) = dy (M, N) . W^T; dW (K, N) += x^T . dy
      kx = gemm(env, ks, { M = Mm, N = K, K = N, ta = false, tb = true, epi = epi, b_bf = true,
        desc = op.w .. " backward, input gradient" })
      kw = gemm(env, ks, { M = K, N = N, K = Mm, ta = true, tb = false, epi = "acc", desc = op.w ..
        " backward, weight gradient" })
    end
    local ax = { P.dact(op.inp.grad, l), dy, P.weight(op.w, lw) }
    if g then ax[#ax + 1] = P.act(g, l) end
    launch(prog, kx, kx.grid, kx.block, ax, desc_layer(l, dx_desc))
    if op.wt then
      launch(prog, kw, kw.grid, kw.block, { P.grad(op.w, lw), dy, P.act(op.inp, l) },
        desc_layer(l, string.format("d%s += d%s^T . %s", op.w, op.out.buf, op.inp.buf)))
    else
      launch(prog, kw, kw.grid, kw.block, { P.grad(op.w, lw), P.act(op.inp, l), dy },
        desc_layer(l, string.format("d%s += %s^T . d%s", op.w, op.inp.buf, op.out.buf)))
    end
    if op.bias then
      colsum_launches(env, ks, prog, "bias_part", Mm, N, { dy }, { P.grad(op.bias, l) },
        desc_layer(l, string.format("d%s += column sums of d%s", op.bias, op.out.buf)))
    end
  elseif op.kind == "attention" then
    local dout, qkv = P.dact(op.out.grad, l), P.act(op.qkv, l)
    local dd = "scratch+" .. env.scratch.by.att_d.offset
    local kp = use(ks, "attention.cu", env.attn("bwd_pre", op.B, op.T, true, drop))
    launch(prog, kp, kp.grid, kp.block, { dd, dout, P.act(op.out, l) },
      desc_layer(l, "att_d (B, H, T) = row dots of datty and atty (softmax backward)"))
    local kkv = use(ks, "attention.cu", env.attn("bwd_dkv", op.B, op.T, true, drop))
    local kq = use(ks, "attention.cu", env.attn("bwd_dq", op.B, op.T, true, drop))
    for _, kk in ipairs({ kkv, kq }) do
      local a = { P.dact(op.qkv.grad, l), qkv, dout, P.act("att_lse", l), dd }
      if drop then
        a[#a + 1] = "micro"
        a[#a + 1] = "#" .. site
      end
      launch(prog, kk, kk.grid, kk.block, a, desc_layer(l, kk == kkv and "dk, dv slices of dqkv (one block per key tile)"
        or "dq slice of dqkv (one block per query tile)"))
    end
  elseif op.kind == "residual" then
    if drop then
      local k = use(ks, "elementwise.cu", { kind = "dropout", fn = string.format("dropout_%d", op.N), N = op.N,
        nargs = 4 })
      launch(prog, k, { ew_blocks(op.N), 1, 1 }, { 256, 1, 1 },
        { P.dact(op.branch, l), P.dact(op.out.grad, l), "micro", "#" .. site },
        desc_layer(l, string.format("%s = dropout(%s) with the forward's mask; the skip path keeps %s", op.branch,
          op.out.grad, op.out.grad)))
    end
  elseif op.kind == "gelu" then
    if op.fused_bwd then return end
    local k = use(ks, "elementwise.cu", { kind = "gelu_bwd", fn = string.format("gelu_bwd_%d", op.N), N = op.N,
      nargs = 2 })
    launch(prog, k, { ew_blocks(op.N), 1, 1 }, { 256, 1, 1 }, { P.dact(op.inp.grad, l),
      P.act(op.inp, l) }, desc_layer(l, string.format("d%s *= GELU'(%s)", op.inp.buf, op.inp.buf)))
  elseif op.kind == "layernorm" then
    local k = use(ks, "layernorm.cu", env.ln_bwd(op.N, op.C, op.dinp_acc))
    launch(prog, k, { ceil_div(op.N, 4), 1, 1 }, { 128, 1, 1 }, { P.dact(op.inp.grad, l), P.dact(op.out.grad, l),
      P.act(op.inp, l), P.act(op.mean, l), P.act(op.rstd, l), P.param(op.w, l) },
      desc_layer(l, string.format("%s %s LayerNorm backward of %s", op.inp.grad, op.dinp_acc and "+=" or "=",
        op.out.grad)))
    colsum_launches(env, ks, prog, "ln_part", op.N, op.C, { P.dact(op.out.grad, l), P.act(op.inp, l),
      P.act(op.mean, l), P.act(op.rstd, l) }, { P.grad(op.w, l), P.grad(op.b, l) },
      desc_layer(l, string.format("d%s += sum of d%s * xhat, d%s += sum of d%s", op.w, op.out.buf, op.b, op.out.buf)))
  elseif op.kind == "embed" then
    local dres = P.dact(op.out.grad, l)
    if drop then
      local N = op.B * op.T * d.C
      local k = use(ks, "elementwise.cu", { kind = "dropout", fn = string.format("dropout_%d", N), N = N, nargs = 4 })
      launch(prog, k, { ew_blocks(N), 1, 1 }, { 256, 1, 1 }, { dres, dres, "micro", "#0" },
        "dres = dropout(dres) with the embedding's mask (site 0), in place")
    end
    local kp = use(ks, "embed.cu", { kind = "bwd_wpe", fn = string.format("embed_bwd_wpe_%dx%d", op.B, op.T), B = op.B,
      T = op.T, C = d.C, nargs = 2 })
    launch(prog, kp, { ceil_div(op.T * d.C, 256), 1, 1 }, { 256, 1, 1 }, { P.grad("wpe.weight"), dres },
      "dwpe[t] += sum over b of dres[b, t]")
    local kt = use(ks, "embed.cu", { kind = "bwd_wte", fn = string.format("embed_bwd_wte_%dx%d", op.B, op.T), B = op.B,
      T = op.T, C = d.C, nargs = 6 })
    launch(prog, kt, { op.B * op.T, ceil_div(d.C, 128), 1 }, { 128, 1, 1 }, { P.grad("wte.weight"), dres,
      "io+" .. env.io.order, "io+" .. env.io.seg_start, "io+" .. env.io.seg_tok, "micro" },
      "dwte[token] += its rows of dres, one block per distinct token (segments sorted by the host)")
  else
    error("emit_cuda: unknown op kind " .. tostring(op.kind), 0)
  end
end

-- ---- passes ----------------------------------------------------------------------

local function forward_pass(S, env, ks, mode)
  local prog = {}
  local P = pointers(S, env, mode)
  local p = mode == "train" and S.train or S.eval
  local train = mode == "train"
  local function run(ops, l)
    for _, op in ipairs(ops) do forward_op(S, env, ks, P, prog, op, l, train) end
  end
  run(p.pre, nil)
  for l = 0, S.dims.L - 1 do run(p.layer, l) end
  run(p.post, nil)
  return prog
end

local function backward_pass(S, env, ks)
  local prog = {}
  local P = pointers(S, env, "train")
  local p = S.train
  local function run(ops, l)
    for i = #ops, 1, -1 do backward_op(S, env, ks, P, prog, ops[i], l) end
  end
  run(p.post, nil)
  for l = S.dims.L - 1, 0, -1 do run(p.layer, l) end
  run(p.pre, nil)
  return prog
end

-- ---- optimizer --------------------------------------------------------------------

local CHUNK = 16384

local function optimizer(S, env, ks)
  local chunks = 0
  local table_rows = {}
  for _, t in ipairs(S.tensors) do
    table_rows[#table_rows + 1] = { offset = t.offset, numel = t.numel, chunk0 = chunks, decay = t.decay, name = t.name }
    chunks = chunks + ceil_div(t.numel, CHUNK)
  end
  env.opt = { rows = table_rows, n_chunks = chunks, CHUNK = CHUNK }
  local norm, adam, conv = {}, {}, {}
  local kp = use(ks, "optim.cu", { kind = "norm_part", fn = "gradnorm_part", nargs = 2 })
  launch(norm, kp, { chunks, 1, 1 }, { 256, 1, 1 }, { "scratch+" .. env.scratch.by.normpart.offset, "grads" },
    string.format("sum of squares of each of the %d gradient chunks, in double", chunks))
  local kf = use(ks, "optim.cu", { kind = "norm_final", fn = "gradnorm_final", nargs = 3 })
  launch(norm, kf, { 1, 1, 1 }, { 256, 1, 1 }, { "ctl", "scratch+" .. env.scratch.by.normpart.offset, "micro" },
    "ctl.sumsq = their sum; the clip scale and the skip flag (non-finite loss or norm)")
  local ka = use(ks, "optim.cu", { kind = "adamw", fn = "adamw", nargs = env.bf16 and 6 or 5 })
  local aa = { "params", "grads", "adam_m", "adam_v" }
  if env.bf16 then aa[#aa + 1] = "params16" end
  aa[#aa + 1] = "ctl"
  launch(adam, ka, { chunks, 1, 1 }, { 256, 1, 1 }, aa, "AdamW over every tensor" ..
    (env.bf16 and ", refreshing the bf16 weight copy" or ""))
  if env.bf16 then
    local kc = use(ks, "optim.cu", { kind = "to_bf16", fn = string.format("params_to_bf16_%d", S.n_params),
      N = S.n_params, nargs = 2 })
    launch(conv, kc, { ceil_div(S.n_params, 256 * 4), 1, 1 }, { 256, 1, 1 }, { "params16", "params" },
      "params16 = bf16(params) after an upload")
  end
  return norm, adam, conv
end

-- ---- inference -------------------------------------------------------------------

local function infer_pass(S, env, ks)
  local d = S.dims
  local C, H, hd = d.C, d.H, d.hd
  local prog = {}
  local lay = env.infer
  local function so(name) return ref("infer", lay.by[name].offset) end
  local function lp(key, l) return ref("params", S.tensor["h.0." .. key].layer0_offset + l * S.layer_stride) end
  local function gp(key) return ref("params", S.tensor[key].offset) end
  local ke = use(ks, "infer.cu", { kind = "embed", fn = "infer_embed", C = C, nargs = 4 })
  launch(prog, ke, { ceil_div(C, 128), 1, 1 }, { 128, 1, 1 }, { so("x"), gp("wte.weight"), gp("wpe.weight"), "ctl" },
    "x = wte[token] + wpe[pos]")
  local kln = use(ks, "layernorm.cu", env.ln_fwd(1, C))
  local function ln(key, l)
    local w, b = l and lp(key .. ".weight", l) or gp(key .. ".weight"), l and lp(key .. ".bias", l) or gp(key .. ".bias")
    launch(prog, kln, { 1, 1, 1 }, { 128, 1, 1 }, { so("ln"), so("ln_mean"), so("ln_rstd"), so("x"), w, b },
      desc_layer(l, "ln = LayerNorm(x) (" .. key .. ")"))
  end
  local function gemv(K, N, mode, y, x, w, b, desc)
    local k = use(ks, "infer.cu", { kind = "gemv", fn = string.format("gemv_%dx%d_%s", K, N, mode), K = K, N = N,
      mode = mode, nargs = b and 4 or 3 })
    launch(prog, k, { ceil_div(N, 32), 1, 1 }, { 256, 1, 1 }, { y, x, w, b }, desc)
  end
  for l = 0, d.L - 1 do
    ln("ln_1", l)
    gemv(C, 3 * C, S.qkv_bias and "bias" or "set", so("qkv"), so("ln"), lp("attn.c_attn.weight", l),
      S.qkv_bias and lp("attn.c_attn.bias", l) or nil, desc_layer(l, "qkv = ln . c_attn"))
    local kv = ref("kv", l * 2 * d.ctx * C)
    local kk = use(ks, "infer.cu", { kind = "kv_store", fn = "infer_kv_store", C = C, ctx = d.ctx, nargs = 3 })
    launch(prog, kk, { ceil_div(C, 128), 1, 1 }, { 128, 1, 1 }, { kv, so("qkv"), "ctl" },
      desc_layer(l, "kv cache [pos] = k, v"))
    local ka = use(ks, "infer.cu", { kind = "attn", fn = "infer_attention", C = C, H = H, hd = hd, ctx = d.ctx,
      nargs = 5 })
    launch(prog, ka, { H, 1, 1 }, { 256, 1, 1 }, { so("atty"), so("qkv"), kv, so("att"), "ctl" },
      desc_layer(l, "atty = attention of q over the cached positions 0..pos"))
    gemv(C, C, "residual", so("x"), so("atty"), lp("attn.c_proj.weight", l), lp("attn.c_proj.bias", l),
      desc_layer(l, "x += atty . c_proj + bias"))
    ln("ln_2", l)
    gemv(C, 4 * C, "gelu", so("fch"), so("ln"), lp("mlp.c_fc.weight", l), lp("mlp.c_fc.bias", l),
      desc_layer(l, "fch = GELU(ln . c_fc + bias)"))
    gemv(4 * C, C, "residual", so("x"), so("fch"), lp("mlp.c_proj.weight", l), lp("mlp.c_proj.bias", l),
      desc_layer(l, "x += fch . c_proj + bias"))
  end
  ln("ln_f", nil)
  local kl = use(ks, "infer.cu", { kind = "logits", fn = string.format("infer_logits_%dx%d", d.V, C), V = d.V, C = C,
    nargs = 3 })
  launch(prog, kl, { ceil_div(d.V, 8), 1, 1 }, { 256, 1, 1 }, { so("logits"), so("ln"),
    gp(S.tie_embeddings and "wte.weight" or "lm_head.weight") }, "logits (V) = ln . W^T")
  return prog
end

-- ---- environment -------------------------------------------------------------------

local function attn_blocks(hd)
  -- the backward keeps K, V, Q, dO tiles and two (BQ, BQ) score tiles in
  -- static shared memory (48 KiB)
  for _, bq in ipairs({ 32, 16 }) do
    if (4 * bq * (hd + 1) + 2 * bq * (bq + 1) + 2 * bq) * 4 <= 48 * 1024 then return bq end
  end
  error(string.format("emit_cuda: head_dim %d is too large for the attention kernels' shared memory", hd), 0)
end

local function make_env(S, cfg, opts)
  local d = S.dims
  local env = {
    S = S, p = d.p, flit = flit, shape_str = shapes.shape_str, bf16 = cfg.precision == "bf16",
    tile = opts.tile, galias = {}, col_scratch = 1,
    drop_threshold = string.format("%d", math.min(math.floor(d.p * 2 ^ 32 + 0.5), 2 ^ 32 - 1)),
  }
  env.bf16_mode = env.bf16
  if d.hd > 256 then error(string.format("emit_cuda: head_dim %d exceeds 256 (inference attention)", d.hd), 0) end
  -- without dropout a residual's branch gradient is its output gradient
  if d.p == 0 then env.galias.dproj = "dres" end
  env.acts, env.eval_acts, env.grad_acts = layout.acts(S)
  env.io = layout.io(d)
  local bq = attn_blocks(d.hd)
  function env.attn(kind, B, T, train, drop)
    local k = { kind = kind, B = B, T = T, H = d.H, hd = d.hd, C = d.C, BQ = bq, train = train, drop = drop }
    local nt = ceil_div(T, bq)
    if kind == "fwd" then
      k.fn = string.format("attention_fwd_%dx%d%s%s", B, T, train and "_lse" or "", drop and "_drop" or "")
      k.nargs = 2 + (train and 1 or 0) + (drop and 2 or 0)
      k.grid, k.block = { nt, B * d.H, 1 }, { 4 * bq, 1, 1 }
    elseif kind == "bwd_pre" then
      k.fn = string.format("attention_bwd_rowdot_%dx%d", B, T)
      k.nargs = 3
      k.grid, k.block = { ceil_div(B * d.H * T, 8), 1, 1 }, { 256, 1, 1 }
    else
      k.fn = string.format("attention_%s_%dx%d%s", kind, B, T, drop and "_drop" or "")
      k.nargs = 5 + (drop and 2 or 0)
      k.grid, k.block = { nt, B * d.H, 1 }, { 4 * bq, 1, 1 }
    end
    if k.grid[2] > 65535 then error("emit_cuda: B * n_heads exceeds 65535 attention blocks", 0) end
    return k
  end
  function env.ln_fwd(N, C)
    local vec = vec_for(C)
    return { kind = "fwd", fn = string.format("layernorm_fwd_%dx%d", N, C), N = N, C = C, vec = vec,
      NV = ceil_div(C, 32 * vec), nargs = 6 }
  end
  function env.ln_bwd(N, C, acc)
    local vec = vec_for(C)
    return { kind = "bwd", fn = string.format("layernorm_bwd_%dx%d%s", N, C, acc and "_acc" or ""), N = N, C = C,
      vec = vec, NV = ceil_div(C, 32 * vec), acc = acc, nargs = 6 }
  end
  return env
end

-- ---- the plan as text -------------------------------------------------------------

local function plan_text(S, env, progs)
  local d = S.dims
  local o = {}
  local function p(fmt, ...) o[#o + 1] = string.format(fmt, ...) end
  p("/* ---- launch plan, read by gptc's CUDA runtime (runtime/cuda.c) ------------------------------")
  p(" * @k KERNEL GRID_X GRID_Y GRID_Z BLOCK_X BLOCK_Y BLOCK_Z ARG...: ARG is BUFFER[+OFFSET] (elements of")
  p(" * that buffer) or #INT; io and micro mean the current micro-batch's slot.")
  p("@gptc-cuda-plan %d", M.PLAN_VERSION)
  -- what the backend sizes its buffers and checks its inputs by (the kernels have the rest as literals)
  p("@model V=%d ctx=%d B=%d T=%d eval_B=%d eval_T=%d n_params=%d bf16=%d", d.V, d.ctx, d.B, d.T, d.eval_B,
    d.eval_T, S.n_params, env.bf16 and 1 or 0)
  p("@buffer acts %d", env.acts.n)
  p("@buffer grad_acts %d", env.grad_acts.n)
  p("@buffer scratch %d", env.scratch.n)
  p("@buffer eval_acts %d", env.eval_acts.n)
  p("@buffer kv %d", S.kv.numel)
  p("@buffer infer %d", env.infer.n)
  p("@io slot=%d inputs=%d targets=%d order=%d seg_start=%d seg_tok=%d bt=%d eval_bt=%d", env.io.slot,
    env.io.inputs, env.io.targets, env.io.order, env.io.seg_start, env.io.seg_tok, d.B * d.T, d.eval_B * d.eval_T)
  p("@logits train=%d eval=%d infer=%d", env.acts.by.logits.offset, env.eval_acts.by.logits.offset,
    env.infer.by.logits.offset)
  for _, b in ipairs(env.acts.buffers) do
    p("@act %s %d %d %d %d", b.name, b.offset, b.stride, b.stride > 0 and d.L or 1, b.numel)
  end
  for _, pr in ipairs(progs) do
    p(" *")
    p(" * ---- %s: %d launches", pr.name, #pr.prog)
    p("@prog %s", pr.name)
    for _, ln in ipairs(pr.prog) do
      p(" * %s", ln.desc)
      p("@k %s %d %d %d %d %d %d %s", ln.fn, ln.grid[1], ln.grid[2], ln.grid[3], ln.block[1], ln.block[2], ln.block[3],
        table.concat(ln.args, " "))
    end
  end
  p("@end")
  p(" */")
  return table.concat(o, "\n") .. "\n"
end

-- ---- whole source -----------------------------------------------------------------

local function render(env, name, k)
  env.k = k
  return template.render(TPL .. name, env)
end

-- The model rendered once: the prelude's text, the kernels' texts in
-- their registration order (each { fn, tpl, text }) and the launch plan.
local function build(cfg, opts)
  opts = opts or {}
  -- the generator's passes, in order: the device-neutral shapes, the fusion
  -- marks (gen/fuse.lua; opts.fuse = false: none) and, in make_env and
  -- below, the CUDA layouts (gen/cuda/layout.lua)
  local S = fuse.run(shapes.derive(cfg), { enabled = opts.fuse ~= false })
  local env = make_env(S, cfg, opts)
  local ks = new_kernels()
  -- the scratch offsets are needed while the passes are emitted: place
  -- att_d and the norm partials first (their sizes are known), colpart last
  local n_chunks = 0
  for _, t in ipairs(S.tensors) do n_chunks = n_chunks + ceil_div(t.numel, CHUNK) end
  env.scratch = layout.scratch(S, n_chunks, env.col_scratch)
  env.infer = layout.infer(S)
  local progs = {
    { name = "train_forward", prog = forward_pass(S, env, ks, "train") },
    { name = "train_backward", prog = backward_pass(S, env, ks) },
    { name = "eval_forward", prog = forward_pass(S, env, ks, "eval") },
  }
  local norm, adam, conv = optimizer(S, env, ks)
  progs[#progs + 1] = { name = "grad_norm", prog = norm }
  progs[#progs + 1] = { name = "adamw", prog = adam }
  progs[#progs + 1] = { name = "params_to_bf16", prog = conv }
  progs[#progs + 1] = { name = "infer", prog = infer_pass(S, env, ks) }
  env.scratch = layout.scratch(S, n_chunks, env.col_scratch) -- colpart now has its final size (it is last)
  local prelude = render(env, "prelude.cu")
  local kernels = {}
  for _, e in ipairs(ks.list) do kernels[#kernels + 1] = { fn = e.k.fn, tpl = e.tpl, text = render(env, e.tpl, e.k) } end
  return prelude, kernels, plan_text(S, env, progs)
end

local function join(prelude, kernels, plan)
  local parts = { prelude }
  for _, k in ipairs(kernels) do parts[#parts + 1] = k.text end
  parts[#parts + 1] = plan
  return table.concat(parts, "\n")
end

function M.body(cfg, opts) return join(build(cfg, opts)) end

-- The body (as M.body) and the NVRTC programs it splits into, for the
-- per-kernel cache (runtime/cuda.c): one unit { name, src } per kernel,
-- the prelude then that kernel's text exactly as in the body (the C side
-- puts the unit's own GPTC_SOURCE_HASH above it). The optimizer's kernels
-- share their tensor table (optim.cu) and stay one unit, "optimizer": it
-- holds every tensor's offset, so it alone depends on n_layers. The launch
-- plan is host-side and belongs to no unit.
function M.split(cfg, opts)
  local prelude, kernels, plan = build(cfg, opts)
  local units, opt = {}, nil
  for _, k in ipairs(kernels) do
    if k.tpl == "optim.cu" then
      if not opt then
        opt = { name = "optimizer", parts = { prelude } }
        units[#units + 1] = opt
      end
      opt.parts[#opt.parts + 1] = k.text
    else
      units[#units + 1] = { name = k.fn, src = prelude .. "\n" .. k.text }
    end
  end
  if opt then opt.src, opt.parts = table.concat(opt.parts, "\n"), nil end
  return join(prelude, kernels, plan), units
end

function M.header(cfg, hash, opts)
  opts = opts or {}
  local S = shapes.derive(cfg)
  local d = S.dims
  -- the name sits in a C comment: keep it from closing the comment (as emit.lua's header)
  local name = cfg.name:gsub("%*/", "* /")
  return string.format([[
/* gptc model "%s" for CUDA: generated by gptc %s; do not edit, regenerate with `gptc gen --device cuda`.
 * V=%d C=%d H=%d head_dim=%d L=%d context_length=%d qkv_bias=%s tie_embeddings=%s drop_rate=%g
 * training shape B=%d T=%d, evaluation shape B=%d T=%d; %d parameters; precision %s%s
 * content hash (SHA-256 of the source below this header):
 *   %s */
#define GPTC_SOURCE_HASH "%s"
]], name, gptc.version, d.V, d.C, d.H, d.hd, d.L, d.ctx, tostring(cfg.qkv_bias), tostring(cfg.tie_embeddings), d.p,
    d.B, d.T, d.eval_B, d.eval_T, S.n_params_real,
    cfg.precision == "bf16" and "bf16 (fp32 master weights, bf16 tensor-core GEMMs)" or "fp32 (TF32 tensor-core GEMMs)",
    (opts.fuse == false and "; unfused GELU and residual kernels" or "") ..
    ((opts.tile or 0) > 0 and string.format("; every GEMM tiled %dx%d", TILES[opts.tile].BM, TILES[opts.tile].BN) or ""),
    hash, hash)
end

return M
