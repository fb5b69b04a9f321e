-- emit: renders a model's C source from its derived shapes (gen/shapes.lua)
-- and the kernel templates (templates/cpu/). Every kernel is instantiated
-- with literal dimensions; the passes call those instances with literal
-- buffer offsets, so the compiler sees fixed trip counts everywhere.
--
-- Entry points (called from runtime/gen.c; summary also from cmd_gen.c,
-- infer_body from export.c; prepare, render and gemm_instance from
-- gen/bench.lua, which renders the same kernel instances):
--   body(cfg, opts)          the source below the header
--   header(cfg, hash, opts)  the header comment naming config, version, hash
--   infer_body(cfg, opts)    a standalone source with only the inference step
--   summary(cfg)             the readable shape summary (shapes.txt)
--   prepare(cfg, opts)       the preparation step body() starts with: the
--                            shapes S, the template environment env, the
--                            kernel instances ks and the passes' source
--   render(tpl, env, k)      one template of templates/cpu/ with instance k
--   gemm_instance(ks, env, M, N, K, ta, tb, mode, desc, epi, sched, suffix)
--                            adds a GEMM instance to ks; returns its name
-- opts.real is "float" (default) or "double" (the finite-difference build);
-- opts.vec_bytes is the host's vector width in bytes (64 for AVX-512);
-- opts.threads is the host's processor count (default 2): GEMMs get at least
-- four C tiles a thread, so every core has work and the last round of
-- tiles wastes little;
-- opts.mr / opts.nv override the GEMM register block (rows, vectors of
-- columns); opts.export_kernels makes every kernel an exported symbol and
-- opts.gemm_blocks = {MC, NC, KC, pack_rows} forces GEMM blocking and the
-- copying of A's rows (both for tests); opts.schedule_all = "mr=4 kc=40 .."
-- forces one schedule (gen/cpu/schedule.lua) on every GEMM; opts.schedules =
-- { [instance name] = schedule string } holds the host's tuned ones
-- (runtime/schedfile.h), opts.schedule_source where they came from;
-- opts.att_schedule = "qb=2 kb=3" forces one attention schedule (tests).

local fuse = require("fuse")
local layout = require("cpu.layout")
local schedule = require("cpu.schedule")
local shapes = require("shapes")
local template = require("template")

local M = {}

local TPL = "templates/cpu/"

-- ---- literals ------------------------------------------------------------------

local function literal(real)
  return function(x)
    local s = string.format(real == "float" and "%.9g" or "%.17g", x)
    if not s:find("[%.eEn]") then s = s .. ".0" end
    return real == "float" and s .. "f" or s
  end
end

local function ceil_div(a, b) return (a + b - 1) // b end
local function round_up(a, b) return ceil_div(a, b) * b end

-- ---- environment shared by every template --------------------------------------

local function host_vec_bytes(opts) return opts.vec_bytes or 64 end
local function host_threads(opts) return math.max(math.tointeger(opts.threads) or 2, 1) end

-- cfg (optional): its precision; "bf16" rounds the GEMMs' operands to bf16
-- as they are packed (the inference step stays fp32)
local function base_env(S, opts, cfg)
  local real = opts.real or "float"
  if real ~= "float" and real ~= "double" then error("emit: opts.real must be float or double", 0) end
  local vec_bytes = host_vec_bytes(opts)
  local size = real == "float" and 4 or 8
  local VL = math.max(vec_bytes // size, 2)
  local p = S.dims.p
  local env = {
    S = S, real = real, VL = VL, p = p, lit = literal(real), flit = literal("float"), shape_str = shapes.shape_str,
    -- register block: MR rows x two vectors of columns; fewer rows when the
    -- host has only 16 vector registers
    MR = opts.mr or (vec_bytes >= 64 and 8 or 6), NV = opts.nv or 2, RSIZE = size, APAD = 16,
    vec_bytes = vec_bytes, force_mr = opts.mr, force_nv = opts.nv,
    schedules = opts.schedules, schedule_all = opts.schedule_all, att_schedule = opts.att_schedule,
    bf16 = cfg ~= nil and cfg.precision == "bf16",
    -- the bf16 GEMMs' micro-kernel: portable, avx512bf16 or amx (runtime/cpu_bf16.c)
    bf16_path = opts.bf16_path or "portable",
    ATT_ROWS = layout.ATT_ROWS,
    c_string = function(str) return (str:gsub('[\\"]', '\\%0'):gsub("[%c\128-\255]", function(c)
      return string.format("\\%03o", c:byte())
    end)) end,
    export_kernels = opts.export_kernels and true or false,
    profile = opts.profile and true or false,
    gemm_blocks = opts.gemm_blocks,
    threads = host_threads(opts),
    drop_threshold = string.format("%d", math.min(math.floor(p * 2 ^ 32 + 0.5), 2 ^ 32 - 1)),
  }
  env.NR = env.NV * VL
  if env.bf16 and opts.bf16_error then error(opts.bf16_error, 0) end
  -- the bf16 pack layout's k granule: pairs, or AMX's 32 k a tile row
  env.KP = env.bf16_path == "amx" and 32 or 2
  env.acc_list = function(i)
    local t = {}
    for v = 0, env.NV - 1 do t[#t + 1] = string.format("c%d_%d = {0}", i, v) end
    return table.concat(t, ", ")
  end
  return env
end

-- ---- kernel instances ------------------------------------------------------------
-- Instances are keyed by function name (which encodes the shape), collected
-- in first-use order and rendered once; backward variants are merged.

local function new_kernels()
  return { list = {}, by = {} }
end

local function use(ks, tpl, k, backward)
  local e = ks.by[k.fn]
  if not e then
    e = { tpl = tpl, k = k }
    k.backward = false
    k.bwd = {}
    ks.by[k.fn] = e
    ks.list[#ks.list + 1] = e
  end
  if backward then e.k.backward = true end
  return e.k
end

-- The most a thread's packed A may hold when it keeps a whole row block
-- (L2-sized: a reused block is read back from L2 or L3, never packed again)
local A_WHOLE = 4 << 20

-- The micro-kernels a source needs, one per register block, unroll and
-- prefetch distance, keyed "6x16u1p0"; the host's default block is always
-- there (attention runs on it).
local function micro(ks, env, mr, nv, unroll, pf)
  pf = pf or 0
  local key = string.format("%dx%du%dp%d", mr, nv * env.VL, unroll, pf)
  ks.micro = ks.micro or { list = {}, by = {} }
  local m = ks.micro.by[key]
  if not m then
    local suffix = string.format("_%dx%d%s%s", mr, nv * env.VL, unroll > 1 and ("_u" .. unroll) or "",
      pf > 0 and ("_pf" .. pf) or "")
    m = { MR = mr, NV = nv, NR = nv * env.VL, unroll = unroll, pf = pf, rows = "micro_kernel_rows" .. suffix,
      cols = "micro_kernel_cols" .. suffix, edge = string.format("edge_%dx%d", mr, nv * env.VL) }
    if env.bf16 then
      -- the bf16 pair kernels: the portable one always (the others' fallback);
      -- the hardware's where the panel is whole 16-column (one zmm, one tile) blocks
      m.bf = "micro_kernel_bf16" .. suffix
      m.bf_portable = "micro_kernel_bf16_portable" .. suffix
      m.bf_path = (env.bf16_path ~= "portable" and env.VL == 16 and m.NR % 16 == 0) and env.bf16_path or "portable"
    end
    ks.micro.by[key] = m
    ks.micro.list[#ks.micro.list + 1] = m
  end
  return m
end

-- The schedule of GEMM problem p: `sched` when given (the tuner's
-- candidates), else the host's tuned one from opts.schedules when it passes
-- the rules, else the heuristic. Returns it and where it came from.
local function gemm_schedule(env, p, sched)
  local h = schedule.host(env)
  if sched then return assert(schedule.check(p, h, sched)), "candidate" end
  -- one schedule for every instance (fields left out: the heuristic's), for tests
  if env.schedule_all then
    local t, why = schedule.parse(env.schedule_all)
    if t then t, why = schedule.check(p, h, t) end
    if not t then error("emit: opts.schedule_all '" .. env.schedule_all .. "': " .. why, 0) end
    return t, "forced"
  end
  local tuned = env.schedules and env.schedules[schedule.name(p)]
  if tuned and not h.blocks and not h.mr and not h.nv then
    local t, why = schedule.parse(tuned)
    if t then t, why = schedule.check(p, h, t) end
    if t then return t, "tuned" end
    return schedule.default(p, h), "heuristic; the tuned entry '" .. tuned .. "' was refused: " .. why
  end
  return schedule.default(p, h), "heuristic"
end

-- One GEMM instance: C (M, N) = op(A) . op(B) with the schedule above. The
-- name encodes the shape (and `suffix`, for the tuner's candidates).
local function gemm_instance(ks, env, M_, N, K, ta, tb, mode, desc, epi, sched, suffix)
  local p = { M = M_, N = N, K = K, ta = ta, tb = tb, mode = mode, epi = epi, bf16 = env.bf16 }
  local fn = schedule.name(p) .. (suffix or "")
  if ks.by[fn] then return fn end
  local s, source = gemm_schedule(env, p, sched)
  local m = micro(ks, env, s.mr, s.nv, s.unroll, s.pf)
  local MR, NR = s.mr, m.NR
  local k = {
    fn = fn, M = M_, N = N, K = K, ta = ta, tb = tb, mode = mode, desc = desc, epi = epi,
    lda = ta and M_ or K, ldb = tb and K or N,
    MR = MR, NV = s.nv, NR = NR, micro = m, MC = s.mc, NC = s.nc, KC = s.kc, pack_rows = not ta and s.pack == 1,
    unroll = s.unroll, order = s.order, b_in_place = s.packb == 0, schedule = schedule.str(s), schedule_source = source, bf16 = env.bf16,
  }
  k.MT, k.NT = ceil_div(M_, k.MC), ceil_div(N, k.NC)
  -- packed A: the A^T strips of a block, the rows of a block (stride KC +
  -- APAD) when they are copied, or else one edge strip; B: a block's panels
  local a_size = ta and round_up(k.MC, MR) * k.KC or (k.pack_rows and round_up(k.MC, MR) or MR) * (k.KC + env.APAD)
  -- bf16: A's rows (stride kc rounded up to KP, + APAD) and B's pair panels, in bf16 elements
  local KCP = env.bf16 and round_up(k.KC, env.KP) or k.KC
  if env.bf16 then a_size = round_up(k.MC, MR) * (KCP + env.APAD) end
  -- A copied whole: when several tiles share a row block, a thread keeps the
  -- row block's packed K blocks and reuses them for its next tile of that row
  -- block instead of packing them again (up to A_WHOLE bytes a thread)
  local kblocks_c = ceil_div(K, k.KC)
  if (ta or k.pack_rows) and k.NT > 1 and kblocks_c * a_size * env.RSIZE <= A_WHOLE then
    k.a_whole, k.a_block = true, a_size
    a_size = kblocks_c * a_size
  end
  use(ks, "gemm.c", k, false)
  -- its own packing buffers' sizes, for its compilation unit (split)
  k.pack_a_size, k.pack_b_size = a_size, round_up(k.NC, NR) * KCP
  ks.pack_a = math.max(ks.pack_a or 0, a_size)
  ks.pack_b = math.max(ks.pack_b or 0, k.pack_b_size)
  return fn
end

-- The schedule of attention instance fn (gen/cpu/schedule.lua): forced, the
-- host's tuned one if it passes the rules, else the heuristic; and where it
-- came from.
local function att_schedule(env, fn, a)
  if env.att_schedule then
    local t, why = schedule.att_parse(env.att_schedule)
    if t then t, why = schedule.att_check(a, t) end
    if not t then error("emit: opts.att_schedule '" .. env.att_schedule .. "': " .. why, 0) end
    return t, "forced"
  end
  local tuned = env.schedules and env.schedules[fn]
  if tuned then
    local t, why = schedule.att_parse(tuned)
    if t then t, why = schedule.att_check(a, t) end
    if t then return t, "tuned" end
    return schedule.att_default(a), "heuristic; the tuned entry '" .. tuned .. "' was refused: " .. why
  end
  return schedule.att_default(a), "heuristic"
end

-- ---- passes --------------------------------------------------------------------

-- Pointer expressions for one pass. Inside the layer loop, per-layer
-- parameters are `lp + off` (lp = params + l * layer_stride), gradients
-- `lg + off`, and per-layer activations `la + off`.
local function pointers(S, mode)
  local lay = mode == "train" and S.acts or S.eval_acts
  local P = {}
  local function tensor(key, in_layer)
    if in_layer then
      local t = S.tensor["h.0." .. key]
      if not t then return nil end
      return t, t.layer0_offset
    end
    local t = S.tensor[key]
    return t, t and t.offset
  end
  function P.param(key, in_layer)
    local t, off = tensor(key, in_layer)
    if not t then error("emit: no tensor " .. key, 0) end
    return string.format("%s + %d", in_layer and "lp" or "params", off)
  end
  function P.grad(key, in_layer)
    local t, off = tensor(key, in_layer)
    if not t then error("emit: no tensor " .. key, 0) end
    return string.format("%s + %d", in_layer and "lg" or "grads", off)
  end
  function P.act(ref)
    local name = type(ref) == "table" and ref.buf or ref
    if name == "layer_in" then return "x_in" end
    if name == "last_out" then
      local b = lay.by.res3
      return string.format("acts + %d", b.offset + (S.dims.L - 1) * b.stride)
    end
    local b = lay.by[name]
    if not b then error("emit: no activation buffer " .. name, 0) end
    if b.stride > 0 then return string.format("la + %d", b.offset) end
    return string.format("acts + %d", b.offset)
  end
  function P.dact(name)
    local b = S.grad_acts.by[name]
    if b then return string.format("grad_acts + %d", b.offset) end
    return P.act(name)
  end
  P.layout = lay
  return P
end

local function site_expr(op)
  if op.kind == "embed" then return "0" end
  return string.format("(uint32_t)(%d + 3 * l)", op.site)
end

-- The gradient of the logits is computed in their buffer.
local function gname(g) return g == "logits" and "dlogits" or g end

-- How a buffer reference reads in comments.
local function ref_name(ref)
  local name = type(ref) == "table" and ref.buf or ref
  if name == "layer_in" then return "x_in" end
  if name == "last_out" then return "res3[L-1]" end
  return name
end

local function comment_shape(S, lay, ref)
  local name = type(ref) == "table" and ref.buf or ref
  if name == "layer_in" or name == "last_out" then name = "res3" end
  local b = lay.by[name] or S.grad_acts.by[name]
  return b and shapes.shape_str(b.shape) or ""
end

-- Forward call lines for one op; registers the kernel instances it needs.
local function forward_call(S, env, ks, P, op, train, in_layer)
  local d = S.dims
  local k
  local out = {}
  local function line(fmt, ...) out[#out + 1] = string.format(fmt, ...) end
  if op.kind == "embed" then
    k = use(ks, "embed.c", { fn = string.format("embed_%dx%d", op.B, op.T), B = op.B, T = op.T, C = op.C,
      V = op.V, site = 0, CW = math.min(env.VL, op.C) }, train)
    line("/* encoded %s = wte[inputs] + wpe[t], dropout */", comment_shape(S, P.layout, op.out))
    line("%s_forward(%s, %s, %s, inputs, rng);", k.fn, P.act(op.out), P.param("wte.weight"),
      P.param("wpe.weight"))
  elseif op.kind == "layernorm" then
    k = use(ks, "layernorm.c", { fn = string.format("layernorm_%dx%d", op.N, op.C), N = op.N, C = op.C,
      CW = math.min(env.VL, op.C) }, train)
    line("/* %s %s = LayerNorm(%s) */", op.out.buf, comment_shape(S, P.layout, op.out), ref_name(op.inp))
    line("%s_forward(%s, %s, %s, %s, %s, %s);", k.fn, P.act(op.out), P.act(op.mean), P.act(op.rstd),
      P.act(op.inp), P.param(op.w, in_layer), P.param(op.b, in_layer))
  elseif op.kind == "matmul" then
    local mode = op.bias and "bias" or "set"
    local r = op.residual
    local fn = gemm_instance(ks, env, op.M, op.N, op.K, false, op.wt, mode,
      string.format("%s forward", op.w), op.gelu_out and "gelu" or r and "residual")
    line("/* %s %s = %s%s . %s%s%s%s */", op.out.buf, comment_shape(S, P.layout, op.out),
      r and (ref_name(r.x) .. " + dropout(") or "", op.inp.buf, op.w, op.wt and "^T" or "",
      op.bias and (" + " .. op.bias) or "", r and ") (residual fused)" or
      op.gelu_out and string.format("; %s = GELU(%s), fused", op.gelu_out.buf, op.out.buf) or "")
    local extra = op.gelu_out and (", " .. P.act(op.gelu_out)) or
        r and string.format(", %s, rng, %s", P.act(r.x), site_expr(r)) or ""
    line("%s(%s, %s, %s, %s%s);", fn, P.act(op.out), P.act(op.inp), P.param(op.w, in_layer),
      op.bias and P.param(op.bias, in_layer) or "NULL", extra)
  elseif op.kind == "attention" then
    local S_, Tp, TS = layout.att_scratch(d, op.T)
    local fn = string.format("attention_%dx%d%s", op.B, op.T, op.att and "" or "_nostore")
    local s, source = att_schedule(env, fn, { B = op.B, H = op.H, T = op.T, hd = op.hd, MR = env.MR,
      threads = env.threads })
    -- blocked: QK^T, PV and the backward products on the micro-kernel, which
    -- needs hd whole NR-wide panels; else the row path, one task a head,
    -- where the schedule does not apply
    local blocked = op.hd % env.NR == 0 and env.MR <= layout.ATT_ROWS and layout.VEC % env.NR == 0
    k = use(ks, "attention.c", { fn = fn,
      B = op.B, T = op.T, H = op.H, hd = op.hd, C = d.C, store = op.att ~= nil, S = S_, Tp = Tp, TS = TS,
      S2 = layout.att_grad_scratch(d, op.T), blocked = blocked, qb = s.qb, kb = s.kb, schedule = schedule.att_str(s),
      schedule_source = source }, train)
    line("/* %s %s = causal attention over qkv%s */", op.out.buf, comment_shape(S, P.layout, op.out),
      op.att and (", weights in att " .. comment_shape(S, P.layout, op.att)) or "")
    line("%s_forward(%s, %s, %s, %s, rng, %s);", k.fn, P.act(op.out), op.att and P.act(op.att) or "NULL",
      P.act(op.qkv), P.act(op.scratch), site_expr(op))
  elseif op.kind == "residual" then
    k = use(ks, "residual.c", { fn = string.format("residual_%d", op.N), N = op.N, shape = op.shape,
      CH = math.min(4096, round_up(op.N, 4)) }, train)
    -- fused into the projection before it (the kernel stays for the backward
    -- and, exported, for the per-op tests)
    if not op.fused or env.export_kernels then k.forward_used = true end
    if op.fused then return out end
    line("/* %s %s = %s + dropout(%s) */", op.out.buf, comment_shape(S, P.layout, op.out), ref_name(op.x), op.out.buf)
    line("%s_forward(%s, %s, rng, %s);", k.fn, P.act(op.out), P.act(op.x), site_expr(op))
  elseif op.kind == "gelu" then
    -- fused into the matmul before it (kept as a kernel for the per-op tests)
    if op.fused and not env.export_kernels then return out end
    k = use(ks, "gelu.c", { fn = string.format("gelu_%d", op.N), N = op.N, CH = math.min(4096, op.N) }, train)
    if op.fused then return out end
    line("/* %s %s = GELU(%s) */", op.out.buf, comment_shape(S, P.layout, op.out), op.inp.buf)
    line("%s_forward(%s, %s);", k.fn, P.act(op.out), P.act(op.inp))
  elseif op.kind == "loss" then
    k = use(ks, "loss.c", { fn = string.format("crossentropy_%dx%d", op.M, op.V), M = op.M, V = op.V }, train)
    line("/* mean cross-entropy of logits %s against targets */", comment_shape(S, P.layout, op.logits))
    line("if (targets) loss = %s_forward(%s, %s, %s, targets);", k.fn, P.act(op.logits), P.act(op.lse),
      P.act(op.losses))
  else
    error("emit: unknown op kind " .. tostring(op.kind), 0)
  end
  return out
end

-- Backward call lines for one op (called in reverse op order).
local function backward_call(S, env, ks, P, op, in_layer)
  local out = {}
  local function line(fmt, ...) out[#out + 1] = string.format(fmt, ...) end
  local function inst(fn) return ks.by[fn].k end
  if op.kind == "embed" then
    local k = inst(string.format("embed_%dx%d", op.B, op.T))
    line("/* dwte, dwpe += dropout'(dres) scattered by token and position */")
    line("%s_backward(%s, %s, %s, inputs, rng);", k.fn, P.grad("wte.weight"), P.grad("wpe.weight"),
      P.dact(op.out.grad))
  elseif op.kind == "layernorm" then
    local k = inst(string.format("layernorm_%dx%d", op.N, op.C))
    local seen = false
    for _, a in ipairs(k.bwd) do seen = seen or a == op.dinp_acc end
    if not seen then k.bwd[#k.bwd + 1] = op.dinp_acc end
    line("/* %s %s %s LayerNorm backward of %s; d%s, d%s += */", op.inp.grad, comment_shape(S, P.layout, op.inp.grad),
      op.dinp_acc and "+=" or "=", ref_name(op.inp), op.w, op.b)
    line("%s_backward%s(%s, %s, %s, %s, %s, %s, %s, %s);", k.fn, op.dinp_acc and "_acc" or "",
      P.dact(op.inp.grad), P.grad(op.w, in_layer), P.grad(op.b, in_layer), P.dact(op.out.grad), P.act(op.inp),
      P.act(op.mean), P.act(op.rstd), P.param(op.w, in_layer))
  elseif op.kind == "matmul" then
    local M_, N, K = op.M, op.N, op.K
    local dx, dw
    if op.wt then
      -- W (N, K): dx (M, K) = dy (M, N) . W; dW (N, K) += dy^T . x
      dx = gemm_instance(ks, env, M_, K, N, false, false, "set", op.w .. " backward, input gradient")
      dw = gemm_instance(ks, env, N, K, M_, true, false, "acc", op.w .. " backward, weight gradient")
      line("/* %s %s = %s . %s; d%s += %s^T . %s */", op.inp.grad, comment_shape(S, P.layout, op.inp.grad),
        gname(op.out.grad), op.w, op.w, gname(op.out.grad), op.inp.buf)
      line("%s(%s, %s, %s, NULL);", dx, P.dact(op.inp.grad), P.dact(op.out.grad), P.param(op.w, in_layer))
      line("%s(%s, %s, %s, NULL);", dw, P.grad(op.w, in_layer), P.dact(op.out.grad), P.act(op.inp))
    else
      -- W (K, N): dx (M, K) = dy (M, N) . W^T; dW (K, N) += x^T . dy
      local g = op.gelu_grad_of
      dx = gemm_instance(ks, env, M_, K, N, false, true, "set", op.w .. " backward, input gradient",
        g and "gelu_grad")
      dw = gemm_instance(ks, env, K, N, M_, true, false, "acc", op.w .. " backward, weight gradient",
        op.bias and "colsum")
      line("/* %s %s = %s . %s^T%s; d%s += %s^T . %s%s */", op.inp.grad, comment_shape(S, P.layout, op.inp.grad),
        op.out.grad, op.w, g and string.format(", times GELU'(%s) (fused)", g.buf) or "", op.w, op.inp.buf,
        op.out.grad, op.bias and string.format("; d%s += column sums of %s (fused)", op.bias, op.out.grad) or "")
      line("%s(%s, %s, %s, NULL%s);", dx, P.dact(op.inp.grad), P.dact(op.out.grad), P.param(op.w, in_layer),
        g and (", " .. P.act(g)) or "")
      line("%s(%s, %s, %s, NULL%s);", dw, P.grad(op.w, in_layer), P.act(op.inp), P.dact(op.out.grad),
        op.bias and (", " .. P.grad(op.bias, in_layer)) or "")
    end
    assert(not (op.bias and op.wt), "emit: a bias on a transposed-weight matmul has no kernel")
  elseif op.kind == "attention" then
    local k = inst(string.format("attention_%dx%d", op.B, op.T))
    line("/* dqkv %s = attention backward of datty */", comment_shape(S, P.layout, op.qkv.grad))
    line("%s_backward(%s, %s, %s, %s, %s, rng, %s);", k.fn, P.dact(op.qkv.grad), P.dact(op.out.grad), P.act(op.qkv),
      P.act(op.att), P.dact(op.scratch.grad), site_expr(op))
  elseif op.kind == "residual" then
    local k = inst(string.format("residual_%d", op.N))
    line("/* %s %s = dropout'(%s); the skip path keeps %s */", op.branch, comment_shape(S, P.layout, op.branch),
      op.out.grad, op.out.grad)
    line("%s_backward(%s, %s, rng, %s);", k.fn, P.dact(op.branch), P.dact(op.out.grad), site_expr(op))
  elseif op.kind == "gelu" then
    if op.fused_bwd then return out end
    local k = inst(string.format("gelu_%d", op.N))
    line("/* %s %s *= GELU'(%s) */", op.inp.grad, comment_shape(S, P.layout, op.inp.grad), op.inp.buf)
    line("%s_backward(%s, %s);", k.fn, P.dact(op.inp.grad), P.act(op.inp))
  elseif op.kind == "loss" then
    local k = inst(string.format("crossentropy_%dx%d", op.M, op.V))
    line("/* logits %s -> dlogits, in place */", comment_shape(S, P.layout, op.logits))
    line("%s_backward(%s, %s, targets, loss_scale);", k.fn, P.act(op.logits), P.act(op.lse))
  end
  return out
end

local function indent(lines, n)
  local pad = string.rep(" ", n)
  local r = {}
  for _, l in ipairs(lines) do r[#r + 1] = pad .. l end
  return table.concat(r, "\n")
end

-- Renders the forward (and for training the backward) pass bodies.
local function passes(S, env, ks)
  local d = S.dims
  local res = {}
  -- the host's default micro-kernel, which attention also runs on
  env.mk = micro(ks, env, env.MR, env.NV, 1)
  ks.bf16 = env.bf16
  -- `gptc bench --profile` (opts.profile): a prof_mark(id) after each
  -- kernel call of the training passes adds the time since the previous mark
  -- to the call site's kernel (templates/cpu/model.c); the calls themselves
  -- are the same text as without it
  local prof = env.profile and { list = {}, by = {} } or nil
  res.prof = prof
  local function emit(dst, lines, pass)
    for _, l in ipairs(lines) do
      dst[#dst + 1] = l
      local fn = prof and pass and (l:match("^([%w_]+)%(") or l:match("^if %b() [%w_]+ = ([%w_]+)%("))
      if fn then
        local key = pass .. " " .. fn
        if not prof.by[key] then
          prof.list[#prof.list + 1] = { pass = pass, fn = fn }
          prof.by[key] = #prof.list - 1
        end
        dst[#dst + 1] = string.format("prof_mark(%d);", prof.by[key])
      end
    end
  end
  for _, mode in ipairs({ "train", "eval" }) do
    local prog = mode == "train" and S.train or S.eval
    local P = pointers(S, mode)
    local train = mode == "train"
    local f = { pre = {}, layer = {}, post = {} }
    for _, part in ipairs({ "pre", "layer", "post" }) do
      for _, op in ipairs(prog[part]) do
        local lines = forward_call(S, env, ks, P, op, train, part == "layer")
        if train then emit(f[part], lines, "forward") else emit(f[part], lines, nil) end
      end
    end
    res[mode] = { pre = indent(f.pre, 2), layer = indent(f.layer, 4), post = indent(f.post, 2) }
    if train then
      local b = { pre = {}, layer = {}, post = {} }
      for _, part in ipairs({ "post", "layer", "pre" }) do
        local ops = prog[part]
        for i = #ops, 1, -1 do emit(b[part], backward_call(S, env, ks, P, ops[i], part == "layer"), "backward") end
      end
      res.backward = { pre = indent(b.pre, 2), layer = indent(b.layer, 4), post = indent(b.post, 2) }
    end
    res[mode].acts_stride = P.layout.by.ln1.stride
    -- layer l reads the previous layer's res3: la + (res3 offset - stride)
    local back = P.layout.by.res3.stride - P.layout.by.res3.offset
    res[mode].x_in = train
        and string.format("l == 0 ? acts + %d : la%s", P.layout.by.encoded.offset,
          back == 0 and "" or string.format(" %s %d", back > 0 and "-" or "+", math.abs(back)))
        or string.format("acts + %d", P.layout.by.res3.offset)
  end
  return res
end

-- ---- optimizer chunks ------------------------------------------------------------

local CHUNK = 65536

local function chunk_tensors(S)
  local c = 0
  for _, t in ipairs(S.tensors) do
    t.chunk0 = c
    c = c + ceil_div(t.numel, CHUNK)
  end
  return c
end

-- ---- whole sources ---------------------------------------------------------------

-- q8 (opts.quant): the mat-vecs read int8 weights (gen/quant.lua) and the
-- lm head is one of them
local function gemv_list(S, env, q8)
  local C = S.dims.C
  local list = {}
  local shapes_kn = { { C, 3 * C }, { C, C }, { C, 4 * C }, { 4 * C, C } }
  if q8 then shapes_kn[#shapes_kn + 1] = { C, S.dims.V } end
  for _, kn in ipairs(shapes_kn) do
    local fn = string.format(q8 and "gemvq_%dx%d" or "gemv_%dx%d", kn[1], kn[2])
    local dup = false
    for _, g in ipairs(list) do dup = dup or g.fn == fn end
    if not dup then
      local g = { fn = fn, K = kn[1], N = kn[2], NCH = 2 * env.VL }
      if q8 then
        assert(q8.panel % g.NCH == 0, "emit: the q8 panel is not a multiple of the mat-vec's column slice")
        g.NB, g.NP = (g.K + q8.block - 1) // q8.block, (g.N + q8.panel - 1) // q8.panel
      end
      list[#list + 1] = g
    end
  end
  return list
end

local function infer_env(S, env, quant)
  local q8 = quant == "q8" and require("quant").layout(S) or nil
  env.q8 = q8
  env.gemvs = gemv_list(S, env, q8)
  env.gemv_name = function(K, N) return string.format(q8 and "gemvq_%dx%d" or "gemv_%dx%d", K, N) end
  env.so = function(name) return S.infer_scratch.by[name].offset end
  if q8 then
    env.goff = function(name) return q8.goff[name] end
    env.loff = function(key) return q8.loff[key] end
    env.layer_stride = q8.layer_stride
    -- the weight arguments of layer matrix `key` (lq: the layer's q8 base)
    env.wq = function(key)
      local m = q8.lmat[key]
      return string.format("(const float *)(lq + %d), (const signed char *)(lq + %d)", m.s_off, m.q_off)
    end
  else
    env.goff = function(name) return S.tensor[name].offset end
    env.loff = function(key) return S.tensor["h.0." .. key].layer0_offset end
    env.layer_stride = S.layer_stride
    env.wq = function(key) return "lp + " .. env.loff(key) end
  end
  return env
end

local function render(name, env, k)
  env.k = k
  return template.render(TPL .. name, env)
end

-- The generator's passes for the CPU, in order: the device-neutral shapes
-- (gen/shapes.lua), the CPU's layouts (gen/cpu/layout.lua) and the fusion
-- marks (gen/fuse.lua).
local function fused_shapes(cfg) return fuse.run(layout.derive(cfg)) end

-- The preparation step that emit's body and gen/bench.lua share: the
-- shapes, the environment, every kernel instance the passes call (with the
-- fusion marks of gen/fuse.lua) and the passes' source.
local function prepare(cfg, opts)
  local S = fused_shapes(cfg)
  local env = base_env(S, opts, cfg)
  local ks = new_kernels()
  local pass = passes(S, env, ks)
  env.CHUNK = CHUNK
  env.n_chunks = chunk_tensors(S)
  return S, env, ks, pass
end

-- The body, and with `units` its compilation units (see M.split).
local function body(cfg, opts, units)
  opts = opts or {}
  local S, env, ks, pass = prepare(cfg, opts)
  env.pack_a, env.pack_b = ks.pack_a, ks.pack_b
  env.micros = ks.micro.list
  local prelude = render("prelude.c", env)
  local parts = { prelude, render("gemm_kernel.c", env) }
  local kernels = {}
  for _, e in ipairs(ks.list) do
    kernels[#kernels + 1] = render(e.tpl, env, e.k)
    parts[#parts + 1] = kernels[#kernels]
  end
  local tail = { render("optim.c", env), render("infer.c", infer_env(S, env)) }
  env.pass = pass
  env.sizes = layout.sizes(S)
  env.version = gptc.version
  tail[#tail + 1] = render("model.c", env)
  for _, t in ipairs(tail) do parts[#parts + 1] = t end
  local whole = table.concat(parts, "\n")
  if not units then return whole end

  -- Each kernel instance on its own: the prelude with its kernels external
  -- and hidden (env.unit), then what the instance uses of the GEMM building
  -- blocks (its own micro-kernel and packing buffers; attention runs on the
  -- host's default micro-kernel), then the instance, rendered as in the
  -- whole source. Nothing in a unit depends on n_layers or on the other
  -- instances, so a config that keeps a kernel's shapes reuses its object.
  env.unit = true
  local uprelude = render("prelude.c", env)
  local list = {}
  local protos = { "/* ---- the kernels, each compiled on its own (gptc's per-kernel cache) ---- */" }
  for i, e in ipairs(ks.list) do
    -- an instance that renders no function (a fused op's evaluation-mode
    -- twin) needs no unit
    if not ("\n" .. kernels[i]):find("\nKERNEL ") then goto next end
    local u = { uprelude }
    if e.tpl == "gemm.c" or e.tpl == "attention.c" then
      local gemm = e.tpl == "gemm.c"
      env.micros = { gemm and e.k.micro or env.mk }
      env.pack_a, env.pack_b = gemm and e.k.pack_a_size or nil, gemm and e.k.pack_b_size or nil
      u[#u + 1] = render("gemm_kernel.c", env)
    end
    u[#u + 1] = kernels[i]
    list[#list + 1] = { name = e.k.fn, src = table.concat(u, "\n") }
    -- the glue's declarations: every KERNEL definition's signature
    for sig in ("\n" .. kernels[i]):gmatch("\nKERNEL ([^{;]-)%s*{") do
      protos[#protos + 1] = '__attribute__((visibility("hidden"))) ' .. sig .. ";"
    end
    ::next::
  end
  -- the glue: what depends on the whole model (the passes, AdamW's tensor
  -- table, the inference step, the model table); the caller puts the header
  -- above it
  list[#list + 1] = { name = "model", src = prelude .. "\n" .. table.concat(protos, "\n") .. "\n\n" ..
      table.concat(tail, "\n") }
  return whole, list
end

function M.body(cfg, opts) return body(cfg, opts, false) end

-- The body (as M.body) and the list of its compilation units, each
-- { name = kernel instance or "model", src = a C translation unit }; the
-- last is the model's glue, which the caller prefixes with the header.
-- Linked together they compute what the body computes, bit for bit: the
-- kernels are the same text compiled with the same flags, and no sum spans
-- two units (runtime/cpu.c).
function M.split(cfg, opts) return body(cfg, opts, true) end

-- Just the inference step, for a standalone program: the prelude, the
-- inference kernels and the step itself.
-- opts.quant "q8" reads the weights from gen/quant.lua's blob (default
-- "f32": the flat parameter buffer).
function M.infer_body(cfg, opts)
  opts = opts or {}
  local quant = opts.quant or "f32"
  if quant ~= "f32" and quant ~= "q8" then error("emit: opts.quant must be f32 or q8", 0) end
  local S = shapes.derive(cfg)
  local env = infer_env(S, base_env(S, opts), quant)
  return render("prelude.c", env) .. "\n" .. render("infer.c", env)
end

-- The header's list of GEMM and attention schedules: each instance, its
-- schedule and where the schedule came from.
local function schedule_lines(S, opts, cfg)
  if (opts.real or "float") ~= "float" then return "" end
  local env = base_env(S, opts, cfg)
  local ks = new_kernels()
  passes(S, env, ks)
  local o, w = {}, 0
  for _, e in ipairs(ks.list) do
    if e.tpl == "gemm.c" then w = math.max(w, #e.k.fn) end
  end
  for _, e in ipairs(ks.list) do
    if e.tpl == "gemm.c" then
      o[#o + 1] = string.format(" *   %-" .. w .. "s  %s (%s)\n", e.k.fn, e.k.schedule, e.k.schedule_source)
    end
  end
  local a = {}
  local MR = base_env(S, opts, cfg).MR
  for _, e in ipairs(ks.list) do
    if e.tpl == "attention.c" then
      -- qb and kb a whole head: the backward runs a head's two passes in one
      -- task (templates/cpu/attention.c)
      local nblk = (e.k.T + MR - 1) // MR
      local fused = e.k.backward and e.k.qb >= nblk and e.k.kb >= nblk
      a[#a + 1] = string.format(" *   %-" .. w .. "s  %s\n", e.k.fn, e.k.blocked and
        (e.k.schedule .. ", " .. e.k.schedule_source .. (fused and "; backward: both passes in one task a head" or "")) or
        string.format("none: row path (head_dim %d is no multiple of the %d-wide panels), one task a head", e.k.hd,
          base_env(S, opts, cfg).NR))
    end
  end
  return " * GEMM schedules (gen/cpu/schedule.lua; `gptc tune` measures them on this host" ..
      (opts.schedule_source and (";\n *   " .. opts.schedule_source) or "") .. "):\n" .. table.concat(o) ..
      " * attention schedules (query/key blocks a task, gen/cpu/schedule.lua):\n" .. table.concat(a)
end

-- The header's line naming a bf16 model's GEMM path (none for fp32).
local BF16_PATHS = {
  portable = "portable: bf16 pairs summed with fp32 vector FMAs",
  avx512bf16 = "avx512bf16: vdpbf16ps",
  amx = "amx: tdpbf16ps on 16x32 bf16 tiles, vdpbf16ps or portable if the tile state is refused",
}
local function bf16_line(cfg, opts)
  if cfg.precision ~= "bf16" then return "" end
  local path = opts.bf16_path or "portable"
  return string.format(" * bf16 GEMM path %s (pair layout, docs/bench-cpu.md)\n", BF16_PATHS[path] or path)
end

function M.header(cfg, hash, opts)
  opts = opts or {}
  local S = fused_shapes(cfg)
  local d = S.dims
  -- the name sits in a C comment: keep it from closing the comment
  local name = cfg.name:gsub("%*/", "* /")
  return string.format([[
/* gptc model "%s": generated by gptc %s; do not edit, regenerate with `gptc gen`.
 * V=%d C=%d H=%d head_dim=%d L=%d context_length=%d qkv_bias=%s tie_embeddings=%s drop_rate=%g
 * training shape B=%d T=%d, evaluation shape B=%d T=%d; %d parameters; element type %s
 * for a host with %d-byte vectors and %d processors (the GEMMs' register blocks and tiles)
%s%s * content hash (SHA-256 of the source below this header):
 *   %s */
#define GPTC_SOURCE_HASH "%s"
]], name, gptc.version, d.V, d.C, d.H, d.hd, d.L, d.ctx, tostring(cfg.qkv_bias), tostring(cfg.tie_embeddings),
    d.p, d.B, d.T, d.eval_B, d.eval_T, S.n_params_real, opts.real or "float", host_vec_bytes(opts),
    host_threads(opts), bf16_line(cfg, opts) .. (opts.profile and
      " * profiled: a timing mark after every kernel call of the training passes (gptc bench --profile)\n" or ""),
    schedule_lines(S, opts, cfg), hash, hash)
end

-- ---- readable summary ------------------------------------------------------------

function M.summary(cfg)
  local S = layout.derive(cfg)
  local d = S.dims
  local o = {}
  local function p(fmt, ...) o[#o + 1] = string.format(fmt, ...) end
  p("model %s (gptc %s)", cfg.name, gptc.version)
  p("dims: V=%d C=%d H=%d head_dim=%d L=%d context_length=%d", d.V, d.C, d.H, d.hd, d.L, d.ctx)
  p("training shape: B=%d T=%d; evaluation shape: B=%d T=%d; drop_rate=%g", d.B, d.T, d.eval_B, d.eval_T, d.p)
  p("qkv_bias=%s tie_embeddings=%s", tostring(cfg.qkv_bias), tostring(cfg.tie_embeddings))
  p("")
  p("parameters: %d (flat buffer %d floats, offsets aligned to %d)", S.n_params_real, S.n_params, shapes.ALIGN)
  p("%-28s %-16s %12s %12s %5s %s", "tensor", "shape", "offset", "numel", "decay", "init")
  for _, t in ipairs(S.tensors) do
    local init = t.init_std > 0 and string.format("normal(0, %.6g)", t.init_std) or string.format("%g", t.init_value)
    p("%-28s %-16s %12d %12d %5s %s", t.name, "[" .. table.concat(t.sizes, ", ") .. "]", t.offset, t.numel,
      t.decay and "yes" or "no", init)
  end
  local function layout(lay, title)
    p("")
    p("%s: %d floats", title, lay.n)
    p("%-12s %-32s %12s %12s %s", "buffer", "shape", "offset", "numel", "per layer")
    for _, b in ipairs(lay.buffers) do
      p("%-12s %-32s %12d %12d %s", b.name, shapes.shape_str(b.shape), b.offset, b.numel,
        b.stride > 0 and string.format("x%d, stride %d", b.layers, b.stride) or "")
    end
  end
  layout(S.acts, "training activations (acts)")
  layout(S.grad_acts, "backward scratch (grad_acts)")
  layout(S.eval_acts, "evaluation activations (eval_acts; layers share buffers)")
  layout(S.infer_scratch, "inference scratch")
  p("")
  p("kv cache %s: %d floats", shapes.shape_str(S.kv.shape), S.kv.numel)
  p("")
  p("ops per layer (training): ")
  for _, op in ipairs(S.train.layer) do
    local b = op.kind == "matmul" and string.format(" M=%d N=%d K=%d (%s)", op.M, op.N, op.K, op.w)
        or op.kind == "attention" and string.format(" B=%d H=%d T=%d hd=%d", op.B, op.H, op.T, op.hd)
        or op.N and string.format(" N=%d", op.N) or ""
    p("  %-10s%s", op.kind, b)
  end
  local m = S.memory
  p("")
  p("memory: training %.1f MiB (params, grads, AdamW m and v, acts, grad_acts); evaluation %.1f MiB; " ..
    "inference %.1f MiB", m.train_bytes / 2 ^ 20, m.eval_bytes / 2 ^ 20, m.infer_bytes / 2 ^ 20)
  return table.concat(o, "\n") .. "\n"
end

function M.prepare(cfg, opts) return prepare(cfg, opts or {}) end
M.render = render
M.gemm_instance = gemm_instance

return M
