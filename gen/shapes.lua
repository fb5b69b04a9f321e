-- shapes: derives, in one place, every shape of a GPT-2 model from its
-- config that both devices share: the dimensions, the parameter tensors
-- (Hugging Face GPT-2 names and layouts) and their offsets in the flat
-- parameter buffer, the activation buffers every pass needs, the inference
-- scratch and KV cache, and the op program with its loop bounds.
--
-- The result is device-neutral: it holds no device's buffers. A device's
-- layout pass (gen/cpu/layout.lua, gen/cuda/layout.lua) lays the activations
-- out with its own additions (what attention keeps for its backward, kernel
-- scratch) through M.act_layouts, and the fusion pass (gen/fuse.lua) marks
-- the op program; the emitters read both.

local M = {}

M.ALIGN = 16 -- floats: every tensor and buffer offset is a multiple of this

local function align(n) return (n + M.ALIGN - 1) // M.ALIGN * M.ALIGN end

-- A shape is a list of { dim_name, value } pairs, so comments can show
-- "(B=12, T=64, C=128)".
local function numel(shape)
  local n = 1
  for _, d in ipairs(shape) do n = n * d[2] end
  return n
end

function M.shape_str(shape)
  local p = {}
  for _, d in ipairs(shape) do p[#p + 1] = d[1] .. "=" .. d[2] end
  return "(" .. table.concat(p, ", ") .. ")"
end

-- ---- parameters --------------------------------------------------------------

-- Builds the tensor list in Hugging Face GPT-2 state-dict order.
local function tensors(d, cfg)
  local list, by = {}, {}
  local off = 0
  local cproj_std = 0.02 / math.sqrt(2 * d.L)
  local function add(name, shape, opts)
    local n = numel(shape)
    local sizes = {}
    for i, s in ipairs(shape) do sizes[i] = s[2] end
    local t = {
      name = name, shape = shape, sizes = sizes, ndim = #shape, offset = off, numel = n,
      decay = #shape == 2, init_std = opts.std or 0, init_value = opts.value or 0,
      layer = opts.layer, key = opts.key or name,
    }
    list[#list + 1] = t
    by[name] = t
    off = align(off + n)
    return t
  end
  local V, C, ctx = { "V", d.V }, { "C", d.C }, { "ctx", d.ctx }
  local C3, C4 = { "3C", 3 * d.C }, { "4C", 4 * d.C }
  add("wte.weight", { V, C }, { std = 0.02 })
  add("wpe.weight", { ctx, C }, { std = 0.02 })
  local layer_start = {}
  for l = 0, d.L - 1 do
    layer_start[l] = off
    local function lt(key, shape, opts)
      opts.layer, opts.key = l, key
      add("h." .. l .. "." .. key, shape, opts)
    end
    lt("ln_1.weight", { C }, { value = 1 })
    lt("ln_1.bias", { C }, {})
    lt("attn.c_attn.weight", { C, C3 }, { std = 0.02 })
    if cfg.qkv_bias then lt("attn.c_attn.bias", { C3 }, {}) end
    lt("attn.c_proj.weight", { C, C }, { std = cproj_std })
    lt("attn.c_proj.bias", { C }, {})
    lt("ln_2.weight", { C }, { value = 1 })
    lt("ln_2.bias", { C }, {})
    lt("mlp.c_fc.weight", { C, C4 }, { std = 0.02 })
    lt("mlp.c_fc.bias", { C4 }, {})
    lt("mlp.c_proj.weight", { C4, C }, { std = cproj_std })
    lt("mlp.c_proj.bias", { C }, {})
  end
  add("ln_f.weight", { C }, { value = 1 })
  add("ln_f.bias", { C }, {})
  if not cfg.tie_embeddings then add("lm_head.weight", { V, C }, { std = 0.02 }) end
  -- every layer has the same tensor sizes in the same order, so layer l's
  -- copy of a tensor sits at (layer 0 offset) + l * layer_stride
  local stride = d.L > 1 and layer_start[1] - layer_start[0] or 0
  for _, t in ipairs(list) do
    if t.layer then
      t.layer0_offset = t.offset - t.layer * stride
      assert(by["h.0." .. t.key].offset == t.layer0_offset, "shapes: layer stride is not constant")
    end
  end
  return list, by, off, stride
end

-- ---- activation layouts ------------------------------------------------------

-- A layout places named buffers in one flat float array. A per-layer buffer
-- has `stride` > 0 (layer l at offset + l * stride) or stride 0 when every
-- layer shares it (evaluation). `alias` maps a name onto another buffer.
local function new_layout(name)
  return { name = name, buffers = {}, by = {}, n = 0 }
end

local function place(lay, name, shape, opts)
  opts = opts or {}
  local b = { name = name, shape = shape, numel = numel(shape), offset = lay.n, stride = 0, layers = opts.layers }
  lay.buffers[#lay.buffers + 1] = b
  lay.by[name] = b
  lay.n = align(lay.n + b.numel)
  return b
end

-- Per-layer buffers of the training pass: layer l's block is contiguous, so
-- one stride moves every buffer to the next layer.
local function place_layers(lay, L, specs)
  local base = lay.n
  local inner = 0
  local placed = {}
  for _, s in ipairs(specs) do
    local b = { name = s[1], shape = s[2], numel = numel(s[2]), offset = base + inner, layers = L }
    inner = align(inner + b.numel)
    placed[#placed + 1] = b
  end
  for _, b in ipairs(placed) do
    b.stride = inner
    lay.buffers[#lay.buffers + 1] = b
    lay.by[b.name] = b
  end
  lay.n = base + inner * L
end

-- saved: the device's per-layer buffer { name, shape } that attention keeps
-- for its backward (training only), placed right after qkv; nil for none
local function layer_specs(d, B, T, saved)
  local Bs, Ts, Cs = { "B", B }, { "T", T }, { "C", d.C }
  local s = {
    { "ln1", { Bs, Ts, Cs } }, { "ln1_mean", { Bs, Ts } }, { "ln1_rstd", { Bs, Ts } },
    { "qkv", { Bs, Ts, { "3C", 3 * d.C } } },
  }
  if saved then s[#s + 1] = saved end
  for _, x in ipairs({
    { "atty", { Bs, Ts, Cs } }, { "res2", { Bs, Ts, Cs } },
    { "ln2", { Bs, Ts, Cs } }, { "ln2_mean", { Bs, Ts } }, { "ln2_rstd", { Bs, Ts } },
    { "fch", { Bs, Ts, { "4C", 4 * d.C } } }, { "fch_gelu", { Bs, Ts, { "4C", 4 * d.C } } },
    { "res3", { Bs, Ts, Cs } },
  }) do
    s[#s + 1] = x
  end
  return s
end

local function tail_specs(d, B, T)
  local Bs, Ts = { "B", B }, { "T", T }
  return {
    { "lnf", { Bs, Ts, { "C", d.C } } }, { "lnf_mean", { Bs, Ts } }, { "lnf_rstd", { Bs, Ts } },
    { "logits", { Bs, Ts, { "V", d.V } } }, { "lse", { Bs, Ts } }, { "losses", { Bs, Ts } },
  }
end

-- The activation layouts of a device: `dev` holds its additions, each a
-- function returning a buffer { name, shape } or nil:
--   dev.saved(d)                 per layer of the training pass, after qkv:
--                                what attention keeps for its backward
--   dev.scratch(d, B, T, grad)   appended to each of the three layouts
--                                (grad: the backward's)
-- Returns the training activations (everything the backward reads, per
-- layer), the evaluation activations and the backward scratch.
function M.act_layouts(S, dev)
  local d = S.dims
  local function scratch(lay, B, T, grad)
    local s = dev.scratch and dev.scratch(d, B, T, grad)
    if s then place(lay, s[1], s[2]) end
  end
  -- training: layer l's block is contiguous (place_layers)
  local acts = new_layout("acts")
  local B, T = d.B, d.T
  place(acts, "encoded", { { "B", B }, { "T", T }, { "C", d.C } })
  place_layers(acts, d.L, layer_specs(d, B, T, dev.saved and dev.saved(d)))
  for _, s in ipairs(tail_specs(d, B, T)) do place(acts, s[1], s[2]) end
  scratch(acts, B, T)

  -- evaluation: no backward, so the layers share one set of buffers, the
  -- residual stream ping-pongs between two (x and res2), and attention
  -- keeps nothing
  local ev = new_layout("eval_acts")
  B, T = d.eval_B, d.eval_T
  local x = place(ev, "res3", { { "B", B }, { "T", T }, { "C", d.C } })
  ev.by.encoded = x
  for _, s in ipairs(layer_specs(d, B, T)) do
    if s[1] ~= "res3" then place(ev, s[1], s[2]) end
  end
  for _, s in ipairs(tail_specs(d, B, T)) do place(ev, s[1], s[2]) end
  scratch(ev, B, T)

  -- backward scratch at (B, T), shared by all layers
  local g = new_layout("grad_acts")
  local Bs, Ts, Cs = { "B", d.B }, { "T", d.T }, { "C", d.C }
  place(g, "dres", { Bs, Ts, Cs })
  place(g, "dln", { Bs, Ts, Cs })
  place(g, "dqkv", { Bs, Ts, { "3C", 3 * d.C } })
  place(g, "datty", { Bs, Ts, Cs })
  place(g, "dfch", { Bs, Ts, { "4C", 4 * d.C } })
  place(g, "dproj", { Bs, Ts, Cs })
  scratch(g, d.B, d.T, true)
  return acts, ev, g
end

-- Batch-1 inference scratch (one token).
local function infer_scratch(d)
  local lay = new_layout("infer_scratch")
  local Cs = { "C", d.C }
  place(lay, "x", { Cs })
  place(lay, "ln", { Cs })
  place(lay, "qkv", { { "3C", 3 * d.C } })
  place(lay, "atty", { Cs })
  place(lay, "proj", { Cs })
  place(lay, "fch", { { "4C", 4 * d.C } })
  place(lay, "att", { { "H", d.H }, { "ctx", d.ctx } })
  return lay
end

-- ---- the op program ----------------------------------------------------------
-- Each op names its kind, its buffers (by layout name, with the gradient
-- buffer that backward uses) and parameter tensors (by layer-relative key),
-- and its loop bounds. Backward walks the same list in reverse.

local function buf(name, grad) return { buf = name, grad = grad } end

local function program(d, cfg, mode)
  local train = mode == "train"
  local B, T = train and d.B or d.eval_B, train and d.T or d.eval_T
  local BT, C = B * T, d.C
  local pre, layer, post = {}, {}, {}
  pre[1] = { kind = "embed", out = buf("encoded", "dres"), B = B, T = T, C = C, V = d.V, site = 0 }
  local function ln(name, inp, key, acc)
    return { kind = "layernorm", inp = inp, out = buf(name, "dln"), mean = buf(name .. "_mean"),
      rstd = buf(name .. "_rstd"), w = key .. ".weight", b = key .. ".bias", N = BT, C = C, dinp_acc = acc }
  end
  local function mm(inp, out, key, N, K, bias)
    return { kind = "matmul", inp = inp, out = out, w = key .. ".weight", bias = bias and (key .. ".bias") or nil,
      M = BT, N = N, K = K, wt = false }
  end
  local x = { buf = "layer_in", grad = "dres" }
  layer[#layer + 1] = ln("ln1", x, "ln_1", true)
  layer[#layer + 1] = mm(buf("ln1", "dln"), buf("qkv", "dqkv"), "attn.c_attn", 3 * C, C, cfg.qkv_bias)
  -- what attention keeps for its backward and its scratch are the device's
  -- (its layout pass adds them to this op)
  layer[#layer + 1] = { kind = "attention", qkv = buf("qkv", "dqkv"), out = buf("atty", "datty"), B = B, T = T,
    H = d.H, hd = d.hd, site = 1 }
  layer[#layer + 1] = mm(buf("atty", "datty"), buf("res2", "dproj"), "attn.c_proj", C, C, true)
  layer[#layer + 1] = { kind = "residual", x = x, out = buf("res2", "dres"), branch = "dproj", N = BT * C,
    shape = { { "B", B }, { "T", T }, { "C", C } }, site = 2 }
  layer[#layer + 1] = ln("ln2", buf("res2", "dres"), "ln_2", true)
  layer[#layer + 1] = mm(buf("ln2", "dln"), buf("fch", "dfch"), "mlp.c_fc", 4 * C, C, true)
  layer[#layer + 1] = { kind = "gelu", inp = buf("fch", "dfch"), out = buf("fch_gelu", "dfch"), N = BT * 4 * C }
  layer[#layer + 1] = mm(buf("fch_gelu", "dfch"), buf("res3", "dproj"), "mlp.c_proj", C, 4 * C, true)
  layer[#layer + 1] = { kind = "residual", x = buf("res2", "dres"), out = buf("res3", "dres"), branch = "dproj",
    N = BT * C, shape = { { "B", B }, { "T", T }, { "C", C } }, site = 3 }
  post[#post + 1] = ln("lnf", buf("last_out", "dres"), "ln_f", false)
  post[#post + 1] = { kind = "matmul", inp = buf("lnf", "dln"), out = buf("logits", "logits"),
    w = cfg.tie_embeddings and "wte.weight" or "lm_head.weight", M = BT, N = d.V, K = C, wt = true }
  post[#post + 1] = { kind = "loss", logits = buf("logits"), lse = buf("lse"), losses = buf("losses"), M = BT,
    V = d.V }
  return { mode = mode, B = B, T = T, pre = pre, layer = layer, post = post }
end

-- Dropout site numbers: 0 is the embedding; layer l's ops use 1 + 3l + k
-- for their local site k (attention weights, attention residual, MLP residual).
function M.site(op, l)
  if op.kind == "embed" then return 0 end
  return 1 + 3 * l + (op.site - 1)
end

-- ---- derivation ----------------------------------------------------------------

function M.derive(cfg)
  local V = cfg.vocab_size
  if not V or V <= 0 then
    error(string.format("config '%s': vocab_size is unknown (char and word tokenizers derive it from the " ..
      "training text; pass --vocab-size)", tostring(cfg.name)), 0)
  end
  -- every size below is an integer product of these fields: bounded first,
  -- in floating point, so none of them can wrap (a vocabulary given later,
  -- e.g. `gen --vocab-size`, had no such check when the config loaded)
  require("config").check_sizes(cfg, string.format("config '%s'", tostring(cfg.name)))
  local d = {
    V = V, C = cfg.emb_dim, H = cfg.n_heads, L = cfg.n_layers, ctx = cfg.context_length,
    B = cfg.train.batch_size, T = cfg.train.max_length,
  }
  d.hd = d.C // d.H
  d.eval_B, d.eval_T = d.B, d.ctx
  d.p = cfg.drop_rate
  local S = { dims = d, name = cfg.name, qkv_bias = cfg.qkv_bias, tie_embeddings = cfg.tie_embeddings }
  S.tensors, S.tensor, S.n_params, S.layer_stride = tensors(d, cfg)
  S.infer_scratch = infer_scratch(d)
  S.kv = { shape = { { "L", d.L }, { "2", 2 }, { "ctx", d.ctx }, { "C", d.C } } }
  S.kv.numel = numel(S.kv.shape)
  S.train = program(d, cfg, "train")
  S.eval = program(d, cfg, "eval")
  S.n_sites = 1 + 3 * d.L
  -- Philox counters index dropout elements in 32-bit groups of four
  local biggest = d.B * d.H * d.T * d.T
  if biggest >= 2 ^ 34 then
    error(string.format("config '%s': attention weights of %d elements exceed the dropout counter range (2^34)",
      tostring(cfg.name), biggest), 0)
  end
  local real_params = 0
  for _, t in ipairs(S.tensors) do real_params = real_params + t.numel end
  S.n_params_real = real_params
  return S
end

return M
