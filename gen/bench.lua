-- bench: renders the benchmark source of a model for `gptc bench` (the ABI is
-- templates/bench/abi.h). It holds every kernel instance one training step
-- runs, each twice: specialized (the model's own instance, literal shapes,
-- rendered as emit.body renders it) and generic (the same template rendered
-- with the shapes as run-time values), plus for each matmul the plain generic
-- GEMM of the product alone, the reference for the library's sgemm.
--
-- Entry points:
--   body(cfg, opts)      the source below the header; opts as emit.body
--                        (real must be "float": the ABI's buffers are float)
--   header(cfg, hash)    the header comment naming config, version and hash,
--                        and GPTC_SOURCE_HASH (source = header .. body)
--   ops(cfg, opts)       the op list as Lua tables, what body() tabulates
--   summary(cfg, opts)   the op list as readable text
--   sym(expr)            a run-time dimension (below), for tests

local emit = require("cpu.emit")
local layout = require("cpu.layout")
local schedule = require("cpu.schedule")
local shapes = require("shapes")
local template = require("template")

local M = {}

local TPL = "templates/cpu/"

-- The generic GEMM's blocking: fixed tiles of GBLOCK (rounded up to the
-- register block), whatever the shape; K in blocks of GBLOCK.
local GBLOCK = 256
-- The generic elementwise kernels' chunk (residual) and channel slice
-- (embedding, layernorm backward) stay blocking constants, not shapes.
local GCHUNK = 4096

local function ceil_div(a, b) return (a + b - 1) // b end
local function round_up(a, b) return ceil_div(a, b) * b end

-- ---- run-time dimensions -------------------------------------------------------
-- A symbol stands for a C expression of int type, e.g. "gd.M". Arithmetic
-- with numbers or other symbols builds a bigger expression, so a template's
-- {{k.M * k.N}} renders "(gd.M * gd.N)" and `..` splices it into text.
-- Comparisons raise an error: a template must not decide anything on a
-- run-time shape (it branches on k.generic instead). Lua never calls __eq
-- for a table and a number, so `sym == 0` is silently false: the same rule.

local Sym = {}

local function sym(expr) return setmetatable({ expr = expr }, Sym) end
local function is_sym(x) return getmetatable(x) == Sym end

local function operand(x)
  if is_sym(x) then return x.expr end
  if math.type(x) == "integer" or (math.type(x) == "float" and x == math.floor(x) and math.abs(x) < 2 ^ 53) then
    return string.format("%d", x)
  end
  error("bench: a run-time dimension combined with " .. tostring(x), 3)
end

-- `unit`: the operand that leaves the other unchanged (x + 0, x * 1)
local function binop(op, unit)
  return function(a, b)
    if unit and b == unit then return a end
    if unit and a == unit and op ~= "-" and op ~= "/" then return b end
    return sym("(" .. operand(a) .. " " .. op .. " " .. operand(b) .. ")")
  end
end

Sym.__add = binop("+", 0)
Sym.__sub = binop("-", 0)
Sym.__mul = binop("*", 1)
Sym.__idiv = binop("/", 1) -- C's / on non-negative ints is Lua's //
Sym.__mod = binop("%")
Sym.__div = function(a, b) return sym("((double)" .. operand(a) .. " / " .. operand(b) .. ")") end
Sym.__unm = function(a) return sym("(-" .. a.expr .. ")") end
Sym.__concat = function(a, b)
  return (is_sym(a) and a.expr or a) .. (is_sym(b) and b.expr or b)
end
Sym.__tostring = function(a) return a.expr end
local function refuse()
  error("bench: a template compared a run-time dimension (branch on k.generic instead)", 2)
end
Sym.__eq, Sym.__lt, Sym.__le = refuse, refuse, refuse

M.sym = sym

-- The generic kernels read their shapes from the file-scope struct gd.
local function dim(name) return sym("gd." .. name) end

-- ---- buffers and records ---------------------------------------------------------

local F = 4 -- bytes of a float and of an int32 id

local function buf(name, numel, init, out, ids_below)
  return { name = name, numel = numel, init = init or "RANDN", out = out and 1 or 0, ids_below = ids_below or 0 }
end

-- "bufs[0], bufs[1], ..." for the first n buffers
local function buf_args(n)
  local a = {}
  for i = 0, n - 1 do a[#a + 1] = string.format("bufs[%d]", i) end
  return a
end

local function append(list, ...)
  for _, x in ipairs({ ... }) do list[#list + 1] = x end
  return list
end

local function shape2(a, b) return string.format("(%d, %d)", a, b) end

-- ---- generic instance tables -------------------------------------------------------
-- For each template: the dims the generic twin takes at run time (read off
-- the specialized k) and its k table. Blocking constants stay literal.

local generic = {}

generic["embed.c"] = {
  dims = { "B", "T", "C", "V" },
  k = function(k, env)
    return { B = dim("B"), T = dim("T"), C = dim("C"), V = dim("V"), site = k.site, CW = env.VL }
  end,
}

generic["layernorm.c"] = {
  dims = { "N", "C" },
  k = function(_, env) return { N = dim("N"), C = dim("C"), CW = env.VL } end,
}

-- the scratch layout follows layout.att_scratch, evaluated on symbols: the
-- thunk computes Tp, TS, S and S2 from B, T, C, H, hd
generic["attention.c"] = {
  dims = { "B", "T", "C", "H", "hd" },
  derived = function()
    local d = { hd = dim("hd") }
    local S_, Tp, TS = layout.att_scratch(d, dim("T"))
    return { { "Tp", Tp }, { "TS", TS }, { "S", S_ }, { "S2", layout.att_grad_scratch(d, dim("T")) } }
  end,
  k = function(k)
    return { B = dim("B"), T = dim("T"), C = dim("C"), H = dim("H"), hd = dim("hd"), store = k.store,
      Tp = dim("Tp"), TS = dim("TS"), S = dim("S"), S2 = dim("S2") }
  end,
}

-- N counts elements against size_t offsets: the cast keeps the compares
-- between equal signedness
generic["residual.c"] = {
  dims = { "N" },
  k = function()
    return { N = sym("((size_t)gd.N)"), shape = { { "N", dim("N") } }, CH = GCHUNK }
  end,
}

generic["loss.c"] = {
  dims = { "M", "V" },
  k = function() return { M = dim("M"), V = dim("V") } end,
}

-- The GEMM's k table as gemm_instance would build it, with run-time M, N, K
-- and fixed blocks; A's rows are always copied (their stride is unknown).
-- bf16: the twin of a bf16 instance rounds as it does; the plain GEMM, the
-- library's reference, does not (the library multiplies fp32).
local function generic_gemm_k(env, fn, ta, tb, mode, epi, desc, bf16)
  local M_, N, K = dim("M"), dim("N"), dim("K")
  local k = {
    fn = fn, generic = true, M = M_, N = N, K = K, ta = ta, tb = tb, mode = mode, epi = epi, desc = desc,
    lda = ta and M_ or K, ldb = tb and K or N, pack_rows = true, backward = false, bwd = {}, bf16 = bf16,
    MC = round_up(GBLOCK, env.MR), NC = round_up(GBLOCK, env.NR), KC = GBLOCK,
  }
  k.MT, k.NT = (M_ + (k.MC - 1)) // k.MC, (N + (k.NC - 1)) // k.NC
  return k
end

generic["gemm.c"] = {
  dims = { "M", "N", "K" },
  k = function(k, env) return generic_gemm_k(env, "generic_" .. k.fn, k.ta, k.tb, k.mode, k.epi, k.desc, k.bf16) end,
}

-- The generic twin of instance k (from ks).
local function generic_instance(tpl, k, env)
  local g = generic[tpl]
  local gk = g.k(k, env)
  gk.fn = "generic_" .. k.fn
  gk.generic = true
  gk.backward, gk.bwd, gk.forward_used = k.backward, k.bwd, k.forward_used
  return gk
end

-- ---- the training step -------------------------------------------------------------
-- Walks S.train as emit's passes do (forward in order, backward in reverse,
-- then AdamW) and records each kernel entry point it calls once, with the
-- calls per step. emit.passes has already instantiated every kernel (and
-- marked the fusions) in ks; the names below follow emit's, and a name emit
-- did not instantiate is an error rather than a silent divergence.

-- ks.bf16: the instances' precision (emit.passes records it)
local function gemm_name(ks, M_, N, K, ta, tb, mode, epi)
  return schedule.name({ M = M_, N = N, K = K, ta = ta, tb = tb, mode = mode, epi = epi, bf16 = ks.bf16 })
end

-- The record of one GEMM call (C, A, B, bias, then the epilogue's buffer).
local function gemm_rec(e, site, desc)
  local k = e.k
  local bias, acc = k.mode == "bias", k.mode == "acc"
  local MN = k.M * k.N
  local bufs = { buf("C", MN, "RANDN", true), buf("A", k.M * k.K), buf("B", k.K * k.N) }
  local args = buf_args(3)
  args[4] = "NULL"
  if bias then
    bufs[4] = buf("bias", k.N)
    args[4] = "bufs[3]"
  end
  local extra = 0
  if k.epi == "gelu" then
    append(bufs, buf("G", MN, "RANDN", true))
    extra = MN
  elseif k.epi == "gelu_grad" or k.epi == "residual" then
    append(bufs, buf("X", MN))
    extra = MN
  elseif k.epi == "colsum" then
    append(bufs, buf("db", k.N, "RANDN", true))
    extra = 2 * k.N
  end
  if k.epi then args[#args + 1] = string.format("bufs[%d]", #bufs - 1) end
  if k.epi == "residual" then append(args, "bench_rng", string.format("%d", site.dropout)) end
  return {
    kernel = k.fn, tpl = "gemm.c", inst = k.fn, op = "matmul", site = site.name, desc = desc,
    flops = 2 * k.M * k.N * k.K,
    bytes = F * (k.M * k.K + k.K * k.N + (acc and 2 or 1) * MN + (bias and k.N or 0) + extra),
    compute_bound = 1, bufs = bufs, args = args,
    gemm = { M = k.M, N = k.N, K = k.K, ta = k.ta, tb = k.tb, acc = acc, a = 1, b = 2, c = 0 },
  }
end

local function site_of(op, in_layer)
  if op.w == "wte.weight" and op.kind == "matmul" then return "wte (tied lm_head)" end
  local key = op.w:gsub("%.weight$", "")
  return in_layer and ("h.*." .. key) or key
end

-- The lookup of the kernel instances emit made for this step, by name: a
-- name bench derives that emit did not make is a bug in one of the two.
local function instance_of(ks)
  return function(name)
    return ks.by[name] or error("bench: emit has no kernel instance " .. name, 0)
  end
end

local function forward_recs(S, ks, op, in_layer)
  local d = S.dims
  local inst = instance_of(ks)
  if op.kind == "embed" then
    local k = inst(string.format("embed_%dx%d", op.B, op.T)).k
    local BT = k.B * k.T
    return { {
      kernel = k.fn .. "_forward", tpl = "embed.c", inst = k.fn, op = "embedding", site = "wte, wpe",
      desc = string.format("encoded (B=%d, T=%d, C=%d) = wte[inputs] + wpe[t]%s", k.B, k.T, k.C,
        d.p > 0 and ", dropout" or ""),
      flops = 2 * BT * k.C, bytes = F * (2 * BT * k.C + k.T * k.C + BT), compute_bound = 0,
      bufs = { buf("out", BT * k.C, "RANDN", true), buf("wte", k.V * k.C), buf("wpe", k.T * k.C),
        buf("inputs", BT, "IDS", false, k.V) },
      args = append(buf_args(4), "bench_rng"),
    } }
  elseif op.kind == "layernorm" then
    local k = inst(string.format("layernorm_%dx%d", op.N, op.C)).k
    return { {
      kernel = k.fn .. "_forward", tpl = "layernorm.c", inst = k.fn, op = "layernorm", site = site_of(op, in_layer),
      desc = string.format("out, mean, rstd = LayerNorm of x (N=%d, C=%d)", k.N, k.C),
      flops = 8 * k.N * k.C, bytes = F * (2 * k.N * k.C + 2 * k.C + 2 * k.N), compute_bound = 0,
      bufs = { buf("out", k.N * k.C, "RANDN", true), buf("mean", k.N, "RANDN", true),
        buf("rstd", k.N, "POSITIVE", true), buf("inp", k.N * k.C), buf("w", k.C), buf("b", k.C) },
      args = buf_args(6),
    } }
  elseif op.kind == "matmul" then
    local r = op.residual
    local e = inst(gemm_name(ks, op.M, op.N, op.K, false, op.wt, op.bias and "bias" or "set",
      op.gelu_out and "gelu" or r and "residual"))
    local site = { name = site_of(op, in_layer), dropout = r and shapes.site(r, 0) }
    local prod = string.format("%s %s . W%s %s%s", op.inp.buf, shape2(op.M, op.K), op.wt and "^T" or "",
      op.wt and shape2(op.N, op.K) or shape2(op.K, op.N), op.bias and " + bias" or "")
    local desc
    if r then
      desc = string.format("%s %s = %s + dropout(%s); residual add fused", op.out.buf, shape2(op.M, op.N),
        r.x.buf == "layer_in" and "x" or r.x.buf, prod)
    else
      desc = string.format("%s %s = %s%s", op.out.buf, shape2(op.M, op.N), prod,
        op.gelu_out and string.format("; GELU into %s fused", op.gelu_out.buf) or "")
    end
    return { gemm_rec(e, site, desc) }
  elseif op.kind == "attention" then
    local k = inst(string.format("attention_%dx%d%s", op.B, op.T, op.att and "" or "_nostore")).k
    local pairs_ = k.B * k.H * k.T * (k.T + 1) // 2 -- causal (t, t2 <= t) pairs
    return { {
      kernel = k.fn .. "_forward", tpl = "attention.c", inst = k.fn, op = "attention", site = "h.*.attn",
      desc = string.format("causal softmax(q.k/sqrt(hd)) . v, qkv (B=%d, T=%d, 3C=%d) -> atty, " ..
        "H=%d hd=%d, weights kept in att (B, H, T, T)%s", k.B, k.T, 3 * k.C, k.H, k.hd, d.p > 0 and ", dropout" or ""),
      flops = 2 * 2 * pairs_ * k.hd,
      bytes = F * (3 * k.B * k.T * k.C + k.B * k.T * k.C + k.B * k.H * k.T * k.T), compute_bound = 1,
      bufs = { buf("out", k.B * k.T * k.C, "RANDN", true), buf("att", k.B * k.H * k.T * k.T, "RANDN", true),
        buf("qkv", 3 * k.B * k.T * k.C), buf("scratch", k.B * k.H * k.S, "ZERO") },
      args = append(buf_args(4), "bench_rng", string.format("%d", shapes.site(op, 0))),
    } }
  elseif op.kind == "residual" or op.kind == "gelu" then
    if op.fused then return {} end
    error("bench: an unfused " .. op.kind .. " in the training step has no benchmark record", 0)
  elseif op.kind == "loss" then
    local k = inst(string.format("crossentropy_%dx%d", op.M, op.V)).k
    return { {
      kernel = k.fn .. "_forward", tpl = "loss.c", inst = k.fn, op = "crossentropy", site = "logits",
      desc = string.format("mean cross-entropy of (M=%d, V=%d) against targets", k.M, k.V),
      flops = 4 * k.M * k.V, bytes = F * (k.M * k.V + 3 * k.M), compute_bound = 0,
      bufs = { buf("logits", k.M * k.V), buf("lse", k.M, "RANDN", true), buf("losses", k.M, "RANDN", true),
        buf("targets", k.M, "IDS", false, k.V) },
      args = buf_args(4), discard = true,
    } }
  end
  error("bench: unknown op kind " .. tostring(op.kind), 0)
end

local function backward_recs(S, ks, op, in_layer)
  local d = S.dims
  local inst = instance_of(ks)
  if op.kind == "embed" then
    local k = inst(string.format("embed_%dx%d", op.B, op.T)).k
    local BT = k.B * k.T
    local rows = math.min(BT, k.V) -- rows of dwte touched at most
    return { {
      kernel = k.fn .. "_backward", tpl = "embed.c", inst = k.fn, op = "embedding", site = "wte, wpe",
      desc = string.format("dwte, dwpe += dencoded (B=%d, T=%d, C=%d) scattered by token and position%s",
        k.B, k.T, k.C, d.p > 0 and ", dropout'" or ""),
      flops = 2 * BT * k.C, bytes = F * ((d.p > 0 and 2 or 1) * BT * k.C + 2 * rows * k.C + 2 * k.T * k.C + BT),
      compute_bound = 0,
      bufs = { buf("dwte", k.V * k.C, "RANDN", true), buf("dwpe", k.T * k.C, "RANDN", true),
        buf("dout", BT * k.C, "RANDN", d.p > 0), buf("inputs", BT, "IDS", false, k.V) },
      args = append(buf_args(4), "bench_rng"),
    } }
  elseif op.kind == "layernorm" then
    local k = inst(string.format("layernorm_%dx%d", op.N, op.C)).k
    local acc = op.dinp_acc
    local NC = k.N * k.C
    return { {
      kernel = k.fn .. (acc and "_backward_acc" or "_backward"), tpl = "layernorm.c", inst = k.fn, op = "layernorm",
      site = site_of(op, in_layer),
      desc = string.format("dinp (N=%d, C=%d) %s LayerNorm backward of dout; dw, db +=", k.N, k.C,
        acc and "+=" or "="),
      flops = 14 * NC, bytes = F * ((acc and 4 or 3) * NC + 2 * k.N + 5 * k.C), compute_bound = 0,
      bufs = { buf("dinp", NC, "RANDN", true), buf("dw", k.C, "RANDN", true), buf("db", k.C, "RANDN", true),
        buf("dout", NC), buf("inp", NC), buf("mean", k.N), buf("rstd", k.N, "POSITIVE"), buf("w", k.C) },
      args = buf_args(8),
    } }
  elseif op.kind == "matmul" then
    local M_, N, K = op.M, op.N, op.K
    local site = { name = site_of(op, in_layer) }
    local dx, dw
    if op.wt then
      -- W (N, K): dx (M, K) = dy (M, N) . W; dW (N, K) += dy^T . x
      dx = inst(gemm_name(ks, M_, K, N, false, false, "set"))
      dw = inst(gemm_name(ks, N, K, M_, true, false, "acc"))
      return {
        gemm_rec(dx, site, string.format("input gradient: %s %s = d%s %s . W %s", op.inp.grad, shape2(M_, K),
          op.out.buf, shape2(M_, N), shape2(N, K))),
        gemm_rec(dw, site, string.format("weight gradient: dW %s += d%s^T . %s", shape2(N, K), op.out.buf,
          op.inp.buf)),
      }
    end
    -- W (K, N): dx (M, K) = dy (M, N) . W^T; dW (K, N) += x^T . dy
    local g = op.gelu_grad_of
    dx = inst(gemm_name(ks, M_, K, N, false, true, "set", g and "gelu_grad"))
    dw = inst(gemm_name(ks, K, N, M_, true, false, "acc", op.bias and "colsum"))
    return {
      gemm_rec(dx, site, string.format("input gradient: %s %s = %s %s . W^T %s%s", op.inp.grad, shape2(M_, K),
        op.out.grad, shape2(M_, N), shape2(K, N), g and string.format("; times GELU'(%s) fused", g.buf) or "")),
      gemm_rec(dw, site, string.format("weight gradient: dW %s += %s^T . %s%s", shape2(K, N), op.inp.buf,
        op.out.grad, op.bias and "; dbias += column sums fused" or "")),
    }
  elseif op.kind == "attention" then
    local k = inst(string.format("attention_%dx%d", op.B, op.T)).k
    local pairs_ = k.B * k.H * k.T * (k.T + 1) // 2
    local BTC = k.B * k.T * k.C
    return { {
      kernel = k.fn .. "_backward", tpl = "attention.c", inst = k.fn, op = "attention", site = "h.*.attn",
      desc = string.format("dqkv (B=%d, T=%d, 3C=%d) from datty and att, H=%d hd=%d%s", k.B, k.T,
        3 * k.C, k.H, k.hd, d.p > 0 and ", dropout'" or ""),
      -- four causal products: dweights = dy . v, dq = ds . k, dk = ds^T . q, dv = w^T . dy
      flops = 4 * 2 * pairs_ * k.hd,
      bytes = F * (BTC + 3 * BTC + k.B * k.H * k.T * k.T + 3 * BTC), compute_bound = 1,
      bufs = { buf("dqkv", 3 * BTC, "RANDN", true), buf("dout", BTC), buf("qkv", 3 * BTC),
        buf("att", k.B * k.H * k.T * k.T, "POSITIVE"), buf("scratch", k.B * k.H * k.S2, "ZERO") },
      args = append(buf_args(5), "bench_rng", string.format("%d", shapes.site(op, 0))),
    } }
  elseif op.kind == "residual" then
    local k = inst(string.format("residual_%d", op.N)).k
    local what = op.site == 2 and "h.*.attn" or "h.*.mlp"
    return { {
      kernel = k.fn .. "_backward", tpl = "residual.c", inst = k.fn, op = "residual", site = what .. " residual",
      desc = string.format("dbranch = dropout'(dres) %s", shapes.shape_str(k.shape)),
      flops = k.N, bytes = F * 2 * k.N, compute_bound = 0,
      bufs = { buf("dbranch", k.N, "RANDN", true), buf("dout", k.N) },
      args = append(buf_args(2), "bench_rng", string.format("%d", shapes.site(op, 0))),
    } }
  elseif op.kind == "gelu" then
    if op.fused_bwd then return {} end
    error("bench: an unfused gelu in the training step has no benchmark record", 0)
  elseif op.kind == "loss" then
    local k = inst(string.format("crossentropy_%dx%d", op.M, op.V)).k
    return { {
      kernel = k.fn .. "_backward", tpl = "loss.c", inst = k.fn, op = "crossentropy", site = "logits",
      desc = string.format("dlogits (M=%d, V=%d) = softmax - onehot, in place", k.M, k.V),
      flops = 3 * k.M * k.V, bytes = F * (2 * k.M * k.V + 2 * k.M), compute_bound = 0,
      bufs = { buf("logits", k.M * k.V, "RANDN", true), buf("lse", k.M, "POSITIVE"),
        buf("targets", k.M, "IDS", false, k.V) },
      args = append(buf_args(3), "1.0f"),
    } }
  end
  error("bench: unknown op kind " .. tostring(op.kind), 0)
end

-- AdamW over the flat parameter buffer (optim.c's gptc_adamw).
local function adamw_rec(S, env)
  local n, real_n = S.n_params, S.n_params_real
  return {
    kernel = "gptc_adamw", generic_kernel = "generic_gptc_adamw", tpl = "optim.c", op = "adamw",
    site = string.format("all %d tensors", #S.tensors),
    desc = string.format("AdamW over %d parameters in %d chunks of up to %d (decay on 2-D tensors)", real_n,
      env.n_chunks, env.CHUNK),
    calls = 1, flops = 16 * real_n, bytes = F * 7 * real_n, compute_bound = 0,
    bufs = { buf("params", n, "RANDN", true), buf("grads", n), buf("m", n, "RANDN", true),
      buf("v", n, "POSITIVE", true) },
    args = append(buf_args(4), "bench_adamw"),
    dims = { { name = "n_chunks", value = env.n_chunks }, { name = "n_tensors", value = #S.tensors } },
    derived = {},
  }
end

local function replace_plain(s, from, to)
  local out, pos = {}, 1
  while true do
    local a, b = s:find(from, pos, true)
    if not a then break end
    out[#out + 1] = s:sub(pos, a - 1) .. to
    pos = b + 1
  end
  return table.concat(out) .. s:sub(pos)
end

-- The derived values of a template's generic twin, as C assignments' right
-- sides; a later value reads an earlier one by name (gd.Tp), not expanded.
local function derived_dims(g)
  local list = {}
  for _, x in ipairs(g.derived and g.derived() or {}) do
    local e = x[2].expr
    local prev = {}
    for i, p in ipairs(list) do prev[i] = p end
    table.sort(prev, function(a, b) return #a.full > #b.full end)
    for _, p in ipairs(prev) do e = replace_plain(e, p.full, "gd." .. p.name) end
    list[#list + 1] = { name = x[1], expr = e, full = x[2].expr }
  end
  return list
end

-- Every distinct kernel entry point of the step, in first-use order.
local function step_ops(S, env, ks)
  local list, by = {}, {}
  local function add(recs, pass, calls)
    for _, r in ipairs(recs) do
      r.pass = pass
      local e = by[r.kernel]
      if e then
        e.calls = e.calls + calls
        local seen = false
        for _, s in ipairs(e.sites) do seen = seen or s == r.site end
        if not seen then e.sites[#e.sites + 1] = r.site end
      else
        r.calls, r.sites = calls, { r.site }
        by[r.kernel] = r
        list[#list + 1] = r
      end
    end
  end
  local prog = S.train
  for _, part in ipairs({ "pre", "layer", "post" }) do
    for _, op in ipairs(prog[part]) do
      add(forward_recs(S, ks, op, part == "layer"), "forward", part == "layer" and S.dims.L or 1)
    end
  end
  for _, part in ipairs({ "post", "layer", "pre" }) do
    local ops = prog[part]
    for i = #ops, 1, -1 do
      add(backward_recs(S, ks, ops[i], part == "layer"), "backward", part == "layer" and S.dims.L or 1)
    end
  end
  local a = adamw_rec(S, env)
  a.sites, a.pass = { a.site }, "update"
  list[#list + 1] = a
  for _, r in ipairs(list) do
    r.what = table.concat(r.sites, ", ") .. ": " .. r.desc
    if r.tpl ~= "optim.c" then
      local k = ks.by[r.inst].k
      local g = generic[r.tpl]
      r.generic_kernel = "generic_" .. r.kernel
      r.dims = {}
      for _, name in ipairs(g.dims) do r.dims[#r.dims + 1] = { name = name, value = k[name] } end
      r.derived = derived_dims(g)
    end
  end
  return list
end

-- ---- preparation -------------------------------------------------------------------

-- The model's environment and instances exactly as emit.body builds them,
-- and the step's op list.
local function prepare(cfg, opts)
  opts = opts or {}
  if (opts.real or "float") ~= "float" then error("bench: opts.real must be float (the bench ABI is float)", 0) end
  local o = {}
  for key, v in pairs(opts) do o[key] = v end
  o.export_kernels = nil -- the source exports only gptc_bench_get
  local S, env, ks = emit.prepare(cfg, o)
  return S, env, ks, step_ops(S, env, ks)
end

function M.ops(cfg, opts)
  local _, _, _, ops = prepare(cfg, opts)
  return ops
end

-- ---- the source ----------------------------------------------------------------------

local function section(title)
  return string.format("/* ==== %s ==== */\n", title)
end

-- The op table (templates/bench/ops.c) after the kernels in parts; the whole source.
local function finish(parts, env, cfg, ops)
  env.ops = ops
  env.config_name = cfg.name
  env.seed = cfg.train.seed
  env.tr = cfg.train
  env.num = function(x) return string.format("%.17g", x) end
  parts[#parts + 1] = template.render("templates/bench/ops.c", env)
  return table.concat(parts, "\n")
end

function M.body(cfg, opts)
  local _, env, ks, ops = prepare(cfg, opts)
  env.bench = true
  -- the instances the step uses, in first-use order, and their generic twins
  local used, gemm_modes, plains = {}, {}, {}
  for _, e in ipairs(ks.list) do
    for _, r in ipairs(ops) do
      if r.inst == e.k.fn then
        used[#used + 1] = e
        break
      end
    end
  end
  for _, r in ipairs(ops) do
    if r.gemm then
      local g = r.gemm
      local fn = string.format("generic_gemm_%s%s_%s", g.ta and "t" or "n", g.tb and "t" or "n",
        g.acc and "acc" or "set")
      r.plain_kernel = fn
      if not gemm_modes[fn] then
        gemm_modes[fn] = true
        plains[#plains + 1] = generic_gemm_k(env, fn, g.ta, g.tb, g.acc and "acc" or "set", nil,
          "the product alone, the reference for the library GEMM")
      end
    end
  end
  -- the pack buffers also hold the generic GEMM's blocks (rows of A copied)
  env.pack_a = math.max(ks.pack_a or 0, round_up(GBLOCK, env.MR) * (GBLOCK + env.APAD))
  env.pack_b = math.max(ks.pack_b or 0, round_up(GBLOCK, env.NR) * GBLOCK)
  -- a bf16 model's bench also has fp32 GEMMs (the library's reference): both buffers
  env.pack_fp32 = true
  env.micros = ks.micro.list
  -- gd's fields: every dim and derived value, in first-use order
  local fields, seen = {}, {}
  for _, r in ipairs(ops) do
    for _, x in ipairs(r.dims) do
      if not seen[x.name] then fields[#fields + 1], seen[x.name] = x.name, true end
    end
    for _, x in ipairs(r.derived) do
      if not seen[x.name] then fields[#fields + 1], seen[x.name] = x.name, true end
    end
  end
  env.fields = fields

  local parts = {
    "/* The benchmark ABI (templates/bench/abi.h), pasted: */\n" .. gptc.read("templates/bench/abi.h"),
    emit.render("prelude.c", env), emit.render("gemm_kernel.c", env),
    template.render("templates/bench/dims.c", env),
    section("specialized kernels: the model's own instances (as in its source)"),
  }
  for _, e in ipairs(used) do parts[#parts + 1] = emit.render(e.tpl, env, e.k) end
  parts[#parts + 1] = emit.render("optim.c", env, { update_only = true })
  parts[#parts + 1] = section("generic kernels: the same templates, shapes read from gd at run time") ..
      "#undef KERNEL\n#define KERNEL static __attribute__((noinline))"
  for _, e in ipairs(used) do parts[#parts + 1] = emit.render(e.tpl, env, generic_instance(e.tpl, e.k, env)) end
  parts[#parts + 1] = emit.render("optim.c", env, { update_only = true, generic = true, prefix = "generic_",
    n_chunks = dim("n_chunks"), n_tensors = dim("n_tensors") })
  parts[#parts + 1] = section("plain generic GEMMs: C = op(A) . op(B) (+ C), no bias or epilogue")
  for _, k in ipairs(plains) do parts[#parts + 1] = emit.render("gemm.c", env, k) end
  return finish(parts, env, cfg, ops)
end

function M.header(cfg, hash)
  local S = shapes.derive(cfg)
  local d = S.dims
  local name = cfg.name:gsub("%*/", "* /")
  return string.format([[
/* gptc benchmark source for model "%s": generated by gptc %s; do not edit, `gptc bench` regenerates it.
 * Every kernel instance of the training step, specialized and generic (templates/bench/abi.h).
 * V=%d C=%d H=%d head_dim=%d L=%d training shape B=%d T=%d qkv_bias=%s tie_embeddings=%s drop_rate=%g
 * content hash (SHA-256 of the source below this header):
 *   %s */
#define GPTC_SOURCE_HASH "%s"
]], name, gptc.version, d.V, d.C, d.H, d.hd, d.L, d.B, d.T, tostring(cfg.qkv_bias), tostring(cfg.tie_embeddings),
    d.p, hash, hash)
end

-- ---- the tuner's source ------------------------------------------------------------
-- For `gptc tune` (runtime/tune.c): the same ABI, one op per candidate
-- schedule of each GEMM instance asked for. An op's kernel is the instance's
-- name (the candidates of one instance are consecutive and share its
-- buffers), its `what` the candidate's schedule; the specialized variant
-- runs the candidate, the generic one the instance on its heuristic
-- schedule, the reference every candidate must equal bit for bit.
-- opts.tune = { { fn = name, base = schedule string or "" }, ... }: the
-- candidates are base (or the heuristic) and its neighbours (schedule.lua).

-- The GEMM and attention instances of the training step: name, calls and
-- flops per call (an attention instance's forward and backward together).
function M.gemms(cfg, opts)
  local o = {}
  for key, v in pairs(opts or {}) do o[key] = v end
  o.schedules = nil
  local list, att = {}, {}
  local _, _, ks, ops = prepare(cfg, o)
  for _, r in ipairs(ops) do
    if r.gemm then list[#list + 1] = { fn = r.kernel, calls = r.calls, flops = r.flops } end
    -- (the row path's, one task a head, has no schedule to tune)
    if r.tpl == "attention.c" and ks.by[r.inst].k.blocked then
      if not att[r.inst] then
        att[r.inst] = { fn = r.inst, calls = r.calls, flops = 0 }
        list[#list + 1] = att[r.inst]
      end
      att[r.inst].flops = att[r.inst].flops + r.flops
    end
  end
  return list
end

-- An attention instance's candidate: the instance's k with schedule s and
-- its own name; and the record of one training step's use of it: forward,
-- then backward on the weights the forward kept (fn_step, below).
local function att_candidate(k, s, suffix)
  local c = {}
  for key, v in pairs(k) do c[key] = v end
  c.fn, c.qb, c.kb, c.schedule, c.schedule_source = k.fn .. suffix, s.qb, s.kb, schedule.att_str(s), "candidate"
  return c
end

local function att_step(k)
  return string.format([[
/* %s's forward, then its backward (one training step's attention) */
static void %s_step(real *out, real *att, const real *qkv, real *scratch, real *dqkv, const real *dout,
                    gptc_rng rng, uint32_t site) {
  %s_forward(out, att, qkv, scratch, rng, site);
  %s_backward(dqkv, dout, qkv, att, scratch, rng, site);
}
]], k.fn, k.fn, k.fn, k.fn)
end

local function att_rec(fwd, k, bwd_flops)
  local BTC = k.B * k.T * k.C
  return {
    kernel = k.fn, tpl = "attention.c", inst = k.fn, op = "attention", site = fwd.site, pass = "step",
    calls = fwd.calls, what = "", desc = fwd.desc, flops = fwd.flops + bwd_flops, bytes = fwd.bytes,
    compute_bound = 1,
    bufs = { buf("out", BTC, "RANDN", true), buf("att", k.B * k.H * k.T * k.T, "RANDN", true),
      buf("qkv", 3 * BTC), buf("scratch", k.B * k.H * math.max(k.S, k.S2), "ZERO"),
      buf("dqkv", 3 * BTC, "RANDN", true), buf("dout", BTC) },
    args = append(buf_args(6), "bench_rng", fwd.args[#fwd.args]),
  }
end

function M.tune_body(cfg, opts)
  local o = {}
  for key, v in pairs(opts or {}) do o[key] = v end
  o.schedules = nil -- the references are the heuristic instances
  local _, env, ks, ops = prepare(cfg, o)
  env.bench = true
  local want = {}
  for _, t in ipairs(o.tune or {}) do want[t.fn] = t.base or "" end
  local h = schedule.host(env)
  local list, render_fns, att_parts = {}, {}, {}
  local bwd_flops = {}
  for _, r in ipairs(ops) do
    if r.tpl == "attention.c" and r.pass == "backward" then bwd_flops[r.inst] = r.flops end
  end
  for _, r in ipairs(ops) do
    local abase = r.tpl == "attention.c" and r.pass == "forward" and want[r.inst]
    if abase then
      -- the heuristic instance and each candidate, run forward then backward
      local k = ks.by[r.inst].k
      local a = { B = k.B, H = k.H, T = k.T, hd = k.hd, MR = env.MR, threads = env.threads }
      local b = abase ~= "" and schedule.att_parse(abase)
      b = b and schedule.att_check(a, b) or schedule.att_default(a)
      att_parts[#att_parts + 1] = emit.render("attention.c", env, k) .. "\n" .. att_step(k)
      for i, s in ipairs(schedule.att_neighbours(a, b)) do
        local kc = att_candidate(k, s, "_c" .. i)
        kc.backward = true
        att_parts[#att_parts + 1] = emit.render("attention.c", env, kc) .. "\n" .. att_step(kc)
        local c = att_rec(r, k, bwd_flops[r.inst] or 0)
        c.spec_fn, c.generic_kernel, c.what = kc.fn .. "_step", k.fn .. "_step", schedule.att_str(s)
        c.dims, c.derived = {}, {}
        list[#list + 1] = c
      end
    end
    local base = r.gemm and want[r.kernel]
    if base then
      local k = ks.by[r.kernel].k
      local p = { M = k.M, N = k.N, K = k.K, ta = k.ta, tb = k.tb, mode = k.mode, epi = k.epi }
      local b = base ~= "" and schedule.parse(base)
      b = b and schedule.check(p, h, b) or schedule.default(p, h)
      render_fns[#render_fns + 1] = r.kernel
      for i, s in ipairs(schedule.neighbours(p, h, b)) do
        local fn = emit.gemm_instance(ks, env, k.M, k.N, k.K, k.ta, k.tb, k.mode, k.desc, k.epi, s, "_c" .. i)
        render_fns[#render_fns + 1] = fn
        local c = {}
        for key, v in pairs(r) do c[key] = v end
        c.spec_fn, c.generic_kernel, c.what = fn, r.kernel, schedule.str(s)
        c.gemm, c.dims, c.derived = nil, {}, {}
        list[#list + 1] = c
      end
    end
  end
  env.pack_a, env.pack_b = ks.pack_a, ks.pack_b
  env.micros = ks.micro.list
  local parts = {
    "/* The benchmark ABI (templates/bench/abi.h), pasted: */\n" .. gptc.read("templates/bench/abi.h"),
    emit.render("prelude.c", env), emit.render("gemm_kernel.c", env),
    section("each GEMM instance on its heuristic schedule, then its candidates"),
  }
  for _, fn in ipairs(render_fns) do parts[#parts + 1] = emit.render("gemm.c", env, ks.by[fn].k) end
  if #att_parts > 0 then
    parts[#parts + 1] = section("each attention instance on its heuristic schedule, then its candidates")
    for _, t in ipairs(att_parts) do parts[#parts + 1] = t end
  end
  return finish(parts, env, cfg, list)
end

function M.tune_header(cfg, hash)
  local name = cfg.name:gsub("%*/", "* /")
  return string.format([[
/* gptc tuning source for model "%s": generated by gptc %s for `gptc tune`; every op is one candidate
 * schedule of one GEMM instance (gen/cpu/schedule.lua), raced against the others on this host.
 * content hash (SHA-256 of the source below this header):
 *   %s */
#define GPTC_SOURCE_HASH "%s"
]], name, gptc.version, hash, hash)
end

-- The op list as a table, one op a line.
function M.summary(cfg, opts)
  local ops = M.ops(cfg, opts)
  local o = { string.format("%-44s %-9s %5s %14s %14s  %s", "kernel", "pass", "calls", "flops", "bytes", "what") }
  for _, r in ipairs(ops) do
    o[#o + 1] = string.format("%-44s %-9s %5d %14.0f %14.0f  %s", r.kernel, r.pass, r.calls, r.flops, r.bytes, r.what)
  end
  return table.concat(o, "\n") .. "\n"
end

return M
