-- config: the one place where config fields, their defaults and their rules
-- live. Configs are Lua files that return a table; they run in a sandbox
-- (no io, os, require, load, dofile) so a config can compute values but
-- cannot touch the machine. `gptc help config` prints this schema.

local M = {}

local function posint(v) return math.type(v) == "integer" and v > 0 end
local function nonneg(v) return type(v) == "number" and v >= 0 end

-- kind: "int" (positive integer), "int0" (non-negative), "num", "bool",
-- "string", "enum", "paths"
-- default: a value, or a function(cfg) computing it from other fields;
-- nil means required. `max`: every integer field has an upper bound, checked
-- on Lua's 64-bit value before the runtime narrows it to a C int, so nothing
-- wraps (2^40 must not become 0). The bounds keep every product of them
-- (check_sizes) far from 64-bit overflow.
local I32 = 2147483647
M.fields = {
  { "name", "string", nil, "model name, used in generated file headers and checkpoints; without --out, train writes to out/<name> and then needs a plain directory name (letters, digits, '.', '_', '-')" },
  { "tokenizer", "enum", "gpt2", "gpt2 | char | word", values = { "gpt2", "char", "word" } },
  { "data", "paths", false, "default training text: a path or a list of paths/directories, relative to the config file" },
  { "vocab_size", "int", false, "50257 for gpt2; derived from the training text for char and word (leave unset, or it must match the text)", max = 1 << 24 },
  { "emb_dim", "int", nil, "embedding width C", max = 1 << 16 },
  { "n_heads", "int", nil, "attention heads; emb_dim % n_heads == 0", max = 1 << 10 },
  { "n_layers", "int", nil, "transformer blocks", max = 1 << 10 },
  { "context_length", "int", nil, "maximum sequence length (positional embeddings)", max = 1 << 20 },
  { "drop_rate", "num", 0.1, "dropout on embeddings, attention weights and residual branches; 0 <= p < 1" },
  { "qkv_bias", "bool", false, "bias on the fused QKV projection" },
  { "tie_embeddings", "bool", true, "LM head shares the token embedding matrix (as GPT-2)" },
  { "precision", "enum", "fp32", "fp32 | bf16 (matmul operands rounded to bfloat16, fp32 accumulation, fp32 master weights)", values = { "fp32", "bf16" } },
}

M.train_fields = {
  { "batch_size", "int", 8, "sequences per micro-batch B", max = 1 << 16 },
  { "max_length", "int", function(c) return c.context_length end, "tokens per training window T; <= context_length", max = 1 << 20 },
  { "stride", "int", function(c) return c.train.max_length end, "step between window starts; >= 1", max = 1 << 30 },
  { "val_ratio", "num", 0.1, "fraction of the text (by characters, from the end) held out; 0 < r < 1" },
  { "shuffle", "bool", true, "reshuffle the training batches each epoch (seeded)" },
  { "drop_last", "bool", true, "drop the last incomplete batch" },
  { "sampling", "enum", "windows", "windows | random: how training batches are drawn. windows: the windows above (stride, shuffle, drop_last), in epochs; random: every micro-batch takes batch_size window starts uniformly from the whole train split (nanoGPT's get_batch), seeded by (seed, micro-batch index), so stride, shuffle and drop_last do not apply", values = { "windows", "random" } },
  { "seed", "int0", 123, "seed for init, shuffling and dropout", max = math.maxinteger },
  { "lr", "num", 4e-4, "peak learning rate" },
  { "min_lr", "num", function(c) return c.train.lr / 10 end, "learning rate at the end of the cosine decay" },
  { "warmup_steps", "int0", 0, "linear warmup steps", max = I32 },
  { "steps", "int", 1000, "optimizer steps", max = I32 },
  { "weight_decay", "num", 0.1, "AdamW decoupled weight decay (2-D weights and embeddings only)" },
  { "beta1", "num", 0.9, "AdamW beta1; 0 <= b < 1" },
  { "beta2", "num", 0.999, "AdamW beta2; 0 <= b < 1" },
  { "eps", "num", 1e-8, "AdamW epsilon; > 0" },
  { "grad_clip", "num", 1.0, "clip gradients to this global norm; 0 disables" },
  { "grad_accum", "int", 1, "micro-batches per optimizer step", max = 1 << 16 },
  { "eval_interval", "int", 100, "evaluate on the val split every N steps", max = I32 },
  { "eval_steps", "int0", 20, "val batches per periodic evaluation, drawn from a fixed seeded set of windows spread over the whole val split (docs/validation.md); 0: every non-overlapping window", max = 1 << 20 },
}

local function index_of(list)
  local t = {}
  for _, f in ipairs(list) do t[f[1]] = f end
  return t
end
local top_index, train_index = index_of(M.fields), index_of(M.train_fields)

-- ---- sandbox ---------------------------------------------------------------
local SAFE = {
  "assert", "error", "ipairs", "next", "pairs", "pcall", "select", "tonumber",
  "tostring", "type", "unpack", "rawequal", "rawget", "rawlen", "rawset",
  "setmetatable", "getmetatable",
}
local FORBIDDEN = { io = 1, os = 1, require = 1, load = 1, loadfile = 1, dofile = 1,
  debug = 1, package = 1, collectgarbage = 1, loadstring = 1 }

-- raw: `next`, never __pairs
local function copy(t)
  local r = {}
  local k, v = next(t)
  while k ~= nil do
    r[k] = v
    k, v = next(t, k)
  end
  return r
end

-- The instruction hook (runtime/lx.c) stops Lua code, not one long C call.
-- Lua patterns backtrack: a pattern with q repetition items ('*', '+', '-',
-- '?', '%b') can take about (n+1)^(q+1) * #p steps on an n-byte subject, all
-- inside string.find. Configs get pattern functions that refuse a call
-- whose bound exceeds PATTERN_STEPS (counting every such character, even in
-- a set, errs on the safe side). string.rep and friends are bounded by the
-- interpreter's memory cap instead.
local PATTERN_STEPS = 1e8
-- the original, for this file's own fixed patterns
local raw_gsub = string.gsub
local function guard_pattern(name, f)
  return function(s, p, init, plain, ...)
    local ts, tp = type(s), type(p)
    if (ts == "string" or ts == "number") and (tp == "string" or tp == "number") and not (name == "find" and plain) then
      s, p = "" .. s, "" .. p
      local _, q = raw_gsub(p, "[%*%+%-%?]", "")
      local _, b = raw_gsub(p, "%%b", "")
      q = q + b
      if (#p + 1) * (#s + 1.0) ^ (q + 1) > PATTERN_STEPS then
        error(string.format("string.%s: pattern too costly for a config (%d-byte subject, %d repetition items)",
          name, #s, q), 2)
      end
    end
    return f(s, p, init, plain, ...)
  end
end

local function sandbox(chunkname)
  local env = {}
  for _, n in ipairs(SAFE) do env[n] = _G[n] end
  -- finalizers run with hooks off (lgc.c GCTM), so no __gc in configs
  env.setmetatable = function(t, mt)
    if type(mt) == "table" and rawget(mt, "__gc") ~= nil then
      error(chunkname .. ": __gc metamethods are not allowed in configs", 2)
    end
    return setmetatable(t, mt)
  end
  -- this state only loads this config: guard the real string table (strings'
  -- methods use it) and hide it, so a config cannot swap the functions the
  -- validation below calls
  if not M.guarded then
    M.guarded = true
    for _, n in ipairs({ "find", "match", "gmatch", "gsub" }) do string[n] = guard_pattern(n, string[n]) end
    getmetatable("").__metatable = false
  end
  env.math, env.string, env.table, env.utf8 = copy(math), copy(string), copy(table), copy(utf8)
  env.print = function() end
  return setmetatable(env, {
    __index = function(_, k)
      if FORBIDDEN[k] then
        error(string.format("%s: '%s' is not available in configs (sandbox: no io, os, require, load, dofile)",
          chunkname, k), 2)
      end
      error(string.format("%s: unknown global '%s'", chunkname, tostring(k)), 2)
    end,
  })
end

-- A copy of a returned value made with raw access only and without
-- metatables, so validation honours no __index, __pairs, __len or __tostring.
local function rawcopy(v, where, depth)
  if type(v) ~= "table" then return v end
  if depth > 8 then error(where .. ": config tables nest deeper than 8 levels", 0) end
  local r = {}
  local k, x = next(v)
  while k ~= nil do
    r[rawcopy(k, where, depth + 1)] = rawcopy(x, where, depth + 1)
    k, x = next(v, k)
  end
  return r
end

-- Runs config source `src`; returns a plain copy of the table it returns.
-- The limits (memory cap, instruction budget) are the interpreter's, armed
-- by the runtime before this runs (lx_sandbox in runtime/lx.c).
function M.run(src, chunkname)
  -- the config's own errors as one line that names the file: error("...", 0)
  -- carries no position, and a message may hold line breaks
  local function fail(msg)
    msg = msg:gsub("[\r\n]+", " ")
    if msg:sub(1, #chunkname + 1) ~= chunkname .. ":" then msg = chunkname .. ": " .. msg end
    error(msg, 0)
  end
  local fn, err = load(src, "=" .. chunkname, "t", sandbox(chunkname))
  if not fn then fail(err) end
  local ok, t = pcall(fn)
  if not ok then
    -- never converted: a __tostring could loop or lie
    if type(t) ~= "string" then error(chunkname .. ": config raised an error that is not a string (" .. type(t) .. ")", 0) end
    fail(t)
  end
  if type(t) ~= "table" then
    error(chunkname .. ": a config must return a table (got " .. type(t) .. ")", 0)
  end
  return rawcopy(t, chunkname, 1)
end

-- ---- validation --------------------------------------------------------------
-- The fields a `--set` gave in this load (M.load_set): a message about one
-- names the --set, since the file does not hold that value.
local set_fields = {}

local function fail(where, field, rule, v)
  if set_fields[field] then where = where .. ": --set " .. field end
  local got = v == nil and "" or string.format(" (got %s)", type(v) == "string" and string.format("%q", v) or tostring(v))
  error(string.format("%s: field '%s' %s%s", where, field, rule, got), 0)
end

local function check_kind(where, fname, f, v)
  local kind = f[2]
  if kind == "int" or kind == "int0" then
    if kind == "int" and not posint(v) then fail(where, fname, "must be a positive integer", v) end
    if math.type(v) ~= "integer" or v < 0 then fail(where, fname, "must be a non-negative integer", v) end
    if v > f.max then fail(where, fname, string.format("must be at most %d", f.max), v) end
  elseif kind == "num" then
    if type(v) ~= "number" or v ~= v or v == math.huge or v == -math.huge then
      fail(where, fname, "must be a finite number", v)
    end
  elseif kind == "bool" then
    if type(v) ~= "boolean" then fail(where, fname, "must be true or false", v) end
  elseif kind == "string" then
    if type(v) ~= "string" or v == "" then fail(where, fname, "must be a non-empty string", v) end
  elseif kind == "enum" then
    local ok = false
    for _, e in ipairs(f.values) do ok = ok or v == e end
    if not ok then fail(where, fname, "must be one of " .. table.concat(f.values, ", "), v) end
  elseif kind == "paths" then
    if type(v) == "string" then return { v } end
    if type(v) ~= "table" or #v == 0 then fail(where, fname, "must be a path or a non-empty list of paths", v) end
    for i, p in ipairs(v) do
      if type(p) ~= "string" or p == "" then fail(where, fname .. "[" .. i .. "]", "must be a path string", p) end
    end
  end
  return v
end

-- The known field closest to a misspelled one (util_closest in C, shared
-- with the command line's option and command names), or nil
local function closest_field(schema, name)
  if type(name) ~= "string" then return nil end
  local names = {}
  for _, f in ipairs(schema) do names[#names + 1] = f[1] end
  return gptc.closest(name, names)
end

local function apply(where, prefix, schema, index, t, cfg, out)
  for k, v in pairs(t) do
    if not index[k] then
      local near = closest_field(schema, k)
      near = near and prefix .. near
      -- a training setting written at the top level
      if not near and prefix == "" and train_index[k] then near = "train." .. k end
      fail(where, prefix .. tostring(k), "is not a known config field ("
        .. (near and ("did you mean '" .. near .. "'? ") or "") .. "see `gptc help config`)")
    end
  end
  for _, f in ipairs(schema) do
    local k, v = f[1], t[f[1]]
    if v == nil then
      if f[3] == nil then fail(where, prefix .. k, "is required") end
      if type(f[3]) ~= "function" and f[3] ~= false then out[k] = f[3] end
    else
      out[k] = check_kind(where, prefix .. k, f, v)
    end
  end
  -- computed defaults, in schema order, after the explicit fields are in
  for _, f in ipairs(schema) do
    if out[f[1]] == nil and type(f[3]) == "function" then out[f[1]] = f[3](cfg) end
  end
end

-- Validates a raw config table; returns a new table with every default filled.
-- `where` names the config (file path) in messages.
function M.validate(t, where)
  t = rawcopy(t, where, 1)
  local cfg = { train = {} }
  local train = t.train
  if train ~= nil and type(train) ~= "table" then fail(where, "train", "must be a table", train) end
  local top = copy(t)
  top.train = nil
  apply(where, "", M.fields, top_index, top, cfg, cfg)
  apply(where, "train.", M.train_fields, train_index, train or {}, cfg, cfg.train)

  local tr = cfg.train
  if cfg.emb_dim % cfg.n_heads ~= 0 then
    fail(where, "emb_dim", string.format("must be divisible by n_heads (%d)", cfg.n_heads), cfg.emb_dim)
  end
  if cfg.drop_rate < 0 or cfg.drop_rate >= 1 then fail(where, "drop_rate", "must satisfy 0 <= drop_rate < 1", cfg.drop_rate) end
  if tr.max_length > cfg.context_length then
    fail(where, "train.max_length", string.format("must be <= context_length (%d)", cfg.context_length), tr.max_length)
  end
  if tr.val_ratio <= 0 or tr.val_ratio >= 1 then fail(where, "train.val_ratio", "must satisfy 0 < val_ratio < 1", tr.val_ratio) end
  if tr.lr <= 0 then fail(where, "train.lr", "must be > 0", tr.lr) end
  if tr.min_lr < 0 or tr.min_lr > tr.lr then fail(where, "train.min_lr", "must satisfy 0 <= min_lr <= lr", tr.min_lr) end
  if tr.warmup_steps > tr.steps then fail(where, "train.warmup_steps", "must be <= train.steps", tr.warmup_steps) end
  if tr.weight_decay < 0 then fail(where, "train.weight_decay", "must be >= 0", tr.weight_decay) end
  for _, b in ipairs({ "beta1", "beta2" }) do
    if tr[b] < 0 or tr[b] >= 1 then fail(where, "train." .. b, "must satisfy 0 <= " .. b .. " < 1", tr[b]) end
  end
  if tr.eps <= 0 then fail(where, "train.eps", "must be > 0", tr.eps) end
  if tr.grad_clip < 0 then fail(where, "train.grad_clip", "must be >= 0 (0 disables clipping)", tr.grad_clip) end

  if cfg.tokenizer == "gpt2" then
    if cfg.vocab_size and cfg.vocab_size ~= 50257 then
      fail(where, "vocab_size", "must be 50257 for the gpt2 tokenizer", cfg.vocab_size)
    end
    cfg.vocab_size = 50257
  end
  M.check_sizes(cfg, where)
  return cfg
end

-- Every tensor and buffer size (gen/shapes.lua) is a product of the fields;
-- each is bounded above, but their products are not. This bounds the total
-- in floating point, which cannot wrap, from above (generously: every
-- per-layer buffer counted as 32 C-wide rows and 4 T x T attention maps
-- per token), so every integer size derived later fits with room to spare.
-- A char/word vocabulary unknown yet counts as 1; check_memory runs this
-- again once it is known.
M.MAX_ELEMENTS = 2 ^ 46
function M.check_sizes(cfg, where)
  local tr = cfg.train
  local B, T, C, L = tr.batch_size + 0.0, tr.max_length + 0.0, cfg.emb_dim + 0.0, cfg.n_layers + 0.0
  local V, ctx, H = (cfg.vocab_size or 1) + 0.0, cfg.context_length + 0.0, cfg.n_heads + 0.0
  local n = (V + ctx) * C + L * (16 * C * C + 32 * C) + L * B * T * (32 * C + 4 * H * T) + 4 * B * T * V
    + 2 * B * T * tr.grad_accum
  if n > M.MAX_ELEMENTS then
    error(string.format("%s: model too large: emb_dim %d, n_layers %d, context_length %d, vocab_size %d, "
      .. "train.batch_size %d, train.max_length %d and train.grad_accum %d make about %.3g values; "
      .. "the limit is 2^46", where, cfg.emb_dim, cfg.n_layers, cfg.context_length, math.tointeger(V),
      tr.batch_size, tr.max_length, tr.grad_accum, n), 0)
  end
end

-- Rejects shapes whose parameters, grads, AdamW moments and activations would
-- not fit in this machine's memory, before anything is allocated. The CPU
-- backend asks (runtime/cfg.c, cfg_check_memory); loading a config does not,
-- since generating code or training on a GPU needs no such host memory.
function M.check_memory(cfg, where)
  M.check_sizes(cfg, where)
  local mem = require("cpu.layout").derive(cfg).memory
  local total = gptc.mem_total
  -- plus the input and target token batches (int32, grad_accum micro-batches)
  local need = mem.train_bytes + 8 * cfg.train.batch_size * cfg.train.max_length * cfg.train.grad_accum
  if need > total then
    error(string.format("%s: model too large: training needs %.1f GiB (parameters, grads, AdamW moments, activations, batches) " ..
      "but this machine has %.1f GiB; reduce emb_dim, n_layers, vocab, batch_size or max_length",
      where, need / 2 ^ 30, total / 2 ^ 30), 0)
  end
end

-- Loads and validates config source; the entry point the runtime calls.
function M.load(src, chunkname)
  return M.validate(M.run(src, chunkname), chunkname)
end

-- ---- command-line overrides: `--set FIELD=VALUE` ----------------------------
-- `sets` lists { field, value } in command-line order, each value already
-- read as data by runtime/cfg.c (a literal or a bare word, never run). They
-- are applied to the table the file returned, which is then validated like
-- the file itself: an unknown field gets the same "did you mean", a wrong
-- value the same rule, both naming the --set.
function M.load_set(src, chunkname, sets)
  local t = M.run(src, chunkname)
  set_fields = {}
  for _, s in ipairs(sets) do
    local field, v = s[1], s[2]
    local top, sub = field:match("^([^.]+)%.(.+)$")
    if not top then
      t[field] = v
    elseif top == "train" and not sub:find(".", 1, true) then
      if t.train == nil then t.train = {} end
      -- a `train` that is no table is the validation's to name
      if type(t.train) == "table" then t.train[sub] = v end
    else
      local names = {}
      for _, f in ipairs(M.fields) do names[#names + 1] = f[1] end
      for _, f in ipairs(M.train_fields) do names[#names + 1] = "train." .. f[1] end
      local near = gptc.closest(field, names)
      error(string.format("%s: --set %s: field '%s' is not a known config field (only train.NAME is nested; %ssee "
        .. "`gptc help config`)", chunkname, field, field, near and ("did you mean '" .. near .. "'? ") or ""), 0)
    end
    set_fields[field] = true
  end
  return M.validate(t, chunkname)
end

-- ---- serialization: a resolved config as Lua source, re-loadable by M.load ----
local function ser(v)
  if type(v) == "string" then return string.format("%q", v) end
  if math.type(v) == "float" then
    local s = string.format("%.17g", v)
    if not s:find("[%.eEn]") then s = s .. ".0" end
    return s
  end
  return tostring(v)
end

function M.serialize(cfg)
  local out = { "return {" }
  for _, f in ipairs(M.fields) do
    local v = cfg[f[1]]
    if f[1] == "data" then
      v = nil -- machine-specific paths stay out of checkpoints
    end
    if v ~= nil then out[#out + 1] = string.format("  %s = %s,", f[1], ser(v)) end
  end
  out[#out + 1] = "  train = {"
  for _, f in ipairs(M.train_fields) do
    local v = cfg.train[f[1]]
    if v ~= nil then out[#out + 1] = string.format("    %s = %s,", f[1], ser(v)) end
  end
  out[#out + 1] = "  },"
  out[#out + 1] = "}"
  return table.concat(out, "\n") .. "\n"
end

-- The schema as text, for `gptc help config`.
function M.describe()
  local out = { "Config fields (a config is a Lua file returning a table; defaults in brackets):", "" }
  local function row(prefix, f)
    local d = f[3]
    local ds = d == nil and "required" or (type(d) == "function" and "derived") or (d == false and "unset") or tostring(d)
    local max = f.max and f.max < math.maxinteger and string.format("; at most %d", f.max) or ""
    out[#out + 1] = string.format("  %-22s [%s] %s%s", prefix .. f[1], ds, f[4], max)
  end
  for _, f in ipairs(M.fields) do row("", f) end
  out[#out + 1] = "  train = {"
  for _, f in ipairs(M.train_fields) do row("train.", f) end
  out[#out + 1] = "  }"
  out[#out + 1] = "  max_length defaults to context_length, stride to max_length, min_lr to lr/10."
  return table.concat(out, "\n") .. "\n"
end

return M
