-- schedule: how each GEMM (and attention) instance is blocked on a host. The one place that
-- knows the schedule's fields, their rules, today's heuristics and the
-- variants `gptc tune` races (runtime/tune.c).
--
-- A GEMM problem p = { M, N, K, ta, tb, mode, epi, bf16 } is C (M, N) (=, +=
-- or = bias +) op(A) (M, K) . op(B) (K, N), with bf16 its operands rounded to
-- bfloat16. Its schedule s:
--   mr, nv   register block: mr rows of C by nv vectors of columns (NR = nv x
--            the host's lanes); mr x nv accumulators stay in registers
--   mc, nc   a C tile, what one thread owns whole (best a multiple of mr and NR:
--            a tile's last strip or panel is otherwise a zero-padded edge)
--   kc       the K block: B is packed kc rows at a time
--   pack     A (M, K) only: copy A's rows of a block with a padded stride (1)
--            or read them in place (0); A^T is always packed into strips
--   unroll   unroll of the micro-kernel's k loop (1 = as the compiler likes)
--   packb    B (K, N) only, without a colsum epilogue, fp32: pack each K block of
--            B into NR-column panels (1) or read B's rows in place (0; only a
--            partial panel at the edge is packed); B^T is always packed
--   order    the order the tiles are handed out in: 0 row blocks outer (a
--            thread's consecutive tiles share A's row block), 1 column
--            blocks outer (they share B's column block)
--   pf       software prefetch distance of the micro-kernel, in k: each k
--            step asks for B's panel row k + pf and, once a cache line, A's
--            elements k + pf (0: none, the hardware prefetchers alone)
-- Every schedule sums each element of C in the same order: its first value
-- (0, the bias, or C itself for +=) and then a(i, k) b(k, j) for k = 0, 1, ..,
-- K-1, one fused multiply-add each (bf16: k in pairs, k + 1 before k, each
-- result flushed when denormal; docs/bench-cpu.md has each bf16 path's
-- order, and its K blocks are even). No field changes that order, so every
-- schedule gives the same bits (tests/test_gen.c checks it), whatever the
-- host or the tuning.
--
-- Entry points:
--   name(p)                  "gemm_MxNxK_<ta tb>_<mode>[_<epi>]", the instance's name
--   host(env)                the host facts a schedule depends on
--   default(p, host)         today's heuristics (and the tests' forced blocks)
--   check(p, host, s)        s completed, clamped to the shape, or nil + why
--   parse(str) / str(s)      "mr=6 nv=2 mc=192 nc=256 kc=384 pack=1 unroll=1" (order and pf
--                            only when not 0)
--   neighbours(p, host, s)   s and the variants one field away, for the tuner
--   att_default(a), att_check(a, s), att_parse(str), att_str(s), att_neighbours(a, s)
--                            the same for an attention instance (below)

local M = {}

local FIELDS = { "mr", "nv", "mc", "nc", "kc", "pack", "unroll", "packb", "order", "pf" }
local UNROLLS = { [1] = true, [2] = true, [4] = true, [8] = true }
local PREFETCH = { 0, 4, 8, 16, 32 } -- the distances pf may take (the tuner races the next ones)

local function ceil_div(a, b) return (a + b - 1) // b end
local function round_up(a, b) return ceil_div(a, b) * b end

function M.name(p)
  return string.format("gemm_%dx%dx%d_%s%s_%s%s%s", p.M, p.N, p.K, p.ta and "t" or "n", p.tb and "t" or "n", p.mode,
    p.epi and ("_" .. p.epi) or "", p.bf16 and "_bf16" or "")
end

-- Whether B may be read in place (packb = 0): B (K, N), fp32, no colsum epilogue.
function M.b_in_place_ok(p) return not p.tb and not p.bf16 and p.epi ~= "colsum" end

-- vec_bytes: the vector width; VL: floats (or doubles) a vector; threads:
-- processors the tiles are cut for; regs: vector registers (32 with
-- AVX-512, else 16); rsize: bytes of an element; mr/nv/blocks: forced
-- by a test (opts.mr, opts.nv, opts.gemm_blocks)
function M.host(env)
  return { vec_bytes = env.vec_bytes, VL = env.VL, threads = env.threads, regs = env.vec_bytes >= 64 and 32 or 16,
    rsize = env.RSIZE, mr = env.force_mr, nv = env.force_nv, blocks = env.gemm_blocks }
end

-- Rows of A read in place map to 64 / gcd(64, lda * size / 64) of the 64 L1
-- sets; with fewer than MR sets the rows of a strip evict each other.
local function crowded(p, h, mr)
  local lines = p.K * h.rsize / 64
  local g = 1
  if lines == math.floor(lines) then
    local a, b = 64, math.floor(lines)
    while b ~= 0 do a, b = b, a % b end
    g = a
  end
  return 64 // g < mr
end

-- C tiles up to 256 x 256, split until there are at least four a thread
-- (the tiles are handed out one at a time, so the threads share the work
-- evenly), larger side first. With B^T the packing transposes B once per
-- row block, so those keep all rows (up to 1024) in one block, split the
-- columns and settle for two tiles a thread.
local function tiles(p, h, mr, nr)
  local MC, NC = math.min(round_up(p.M, mr), 256), math.min(round_up(p.N, nr), 256)
  local min_tiles = 4 * h.threads
  if p.tb then
    MC = math.min(round_up(p.M, mr), 1024)
    min_tiles = 2 * h.threads
  end
  while ceil_div(p.M, MC) * ceil_div(p.N, NC) < min_tiles do
    if not p.tb and MC >= NC and MC > 4 * mr then
      MC = round_up(MC // 2, mr)
    elseif NC > 2 * nr then
      NC = round_up(NC // 2, nr)
    elseif MC > 2 * mr then
      MC = round_up(MC // 2, mr)
    else
      break
    end
  end
  return MC, NC
end

-- The heuristic schedule with register block (mr, nv): K in blocks of at
-- most 256, tiles as above, A's rows copied when they crowd the L1 sets.
local function heuristic(p, h, mr, nv)
  local s = { mr = mr, nv = nv, kc = ceil_div(p.K, ceil_div(p.K, 256)), unroll = 1, packb = 1, order = 0, pf = 0 }
  s.mc, s.nc = tiles(p, h, mr, nv * h.VL)
  s.pack = (not p.ta and crowded(p, h, mr)) and 1 or 0
  return s
end

function M.default(p, h)
  local s = heuristic(p, h, h.mr or (h.vec_bytes >= 64 and 8 or 6), h.nv or 2)
  -- tests force tiny blocks so small shapes take every multi-block path
  local f = h.blocks
  if f then
    s.kc, s.mc, s.nc = f.KC, round_up(f.MC, s.mr), round_up(f.NC, s.nv * h.VL)
    if f.pack_rows ~= nil and not p.ta then s.pack = f.pack_rows and 1 or 0 end
  end
  return assert(M.check(p, h, s))
end

-- s with missing fields from the default, clamped to the shape (mc and nc
-- at most the rounded-up M and N, kc at most K), or nil and why it breaks a rule.
function M.check(p, h, s)
  local base
  local out = {}
  for _, f in ipairs(FIELDS) do
    local v = s[f]
    if v == nil then
      base = base or heuristic(p, h, s.mr or h.mr or (h.vec_bytes >= 64 and 8 or 6), s.nv or h.nv or 2)
      v = base[f]
    end
    if math.type(v) ~= "integer" then return nil, f .. " must be an integer" end
    out[f] = v
  end
  if out.mr < 1 or out.mr > 16 then return nil, "mr must be 1 to 16" end
  if out.nv < 1 or out.nv > 4 then return nil, "nv must be 1 to 4" end
  if out.mr * out.nv + 2 > h.regs then
    return nil, string.format("mr x nv (%d) must leave two of the host's %d vector registers", out.mr * out.nv, h.regs)
  end
  local nr = out.nv * h.VL
  if out.mc < 1 or out.nc < 1 or out.kc < 1 then return nil, "mc, nc and kc must be positive" end
  if out.pack ~= 0 and out.pack ~= 1 then return nil, "pack must be 0 or 1" end
  if not UNROLLS[out.unroll] then return nil, "unroll must be 1, 2, 4 or 8" end
  if out.packb ~= 0 and out.packb ~= 1 then return nil, "packb must be 0 or 1" end
  if out.order ~= 0 and out.order ~= 1 then return nil, "order must be 0 or 1" end
  local pf_ok = false
  for _, d in ipairs(PREFETCH) do pf_ok = pf_ok or out.pf == d end
  if not pf_ok then return nil, "pf must be 0, 4, 8, 16 or 32" end
  -- A^T is always packed into strips; with bf16 A's rows too (the copy rounds them)
  if p.ta or p.bf16 then out.pack = 1 end
  -- B^T is transposed as it is packed, bf16 rounded, and colsum gathers its sums while packing
  if not M.b_in_place_ok(p) then out.packb = 1 end
  out.mc = math.min(out.mc, round_up(p.M, out.mr))
  out.nc = math.min(out.nc, round_up(p.N, nr))
  out.kc = math.min(out.kc, p.K)
  -- bf16 sums k in pairs (2j, 2j + 1): a K block must not split one
  if p.bf16 and out.kc < p.K and out.kc % 2 == 1 then out.kc = out.kc + 1 end
  return out
end

function M.str(s)
  return string.format("mr=%d nv=%d mc=%d nc=%d kc=%d pack=%d unroll=%d", s.mr, s.nv, s.mc, s.nc, s.kc, s.pack,
    s.unroll) .. (s.packb ~= 1 and string.format(" packb=%d", s.packb) or "") .. (s.order ~= 0 and string.format(" order=%d", s.order) or "") ..
    (s.pf ~= 0 and string.format(" pf=%d", s.pf) or "")
end

-- "key=value ..." -> a table of integers, or nil and why.
local function parse_fields(str, fields)
  local s, known = {}, {}
  for _, f in ipairs(fields) do known[f] = true end
  for word in str:gmatch("%S+") do
    local key, value = word:match("^(%a+)=(%d+)$")
    if not key then return nil, string.format("'%s' is not field=number", word) end
    if not known[key] then return nil, string.format("'%s' is not a schedule field (%s)", key, table.concat(fields, ", ")) end
    if s[key] then return nil, string.format("'%s' is given twice", key) end
    s[key] = math.tointeger(tonumber(value))
    if not s[key] then return nil, string.format("'%s' is too large", word) end
  end
  return s
end

function M.parse(str) return parse_fields(str, FIELDS) end

-- The register blocks worth racing on a host: the accumulators fill most
-- of the register file in different shapes (tall, square, wide).
local function reg_blocks(h)
  if h.regs >= 32 then return { { 8, 2 }, { 12, 2 }, { 14, 2 }, { 6, 4 }, { 8, 3 } } end
  return { { 6, 2 }, { 4, 3 }, { 3, 4 }, { 5, 2 } }
end

-- s first, then the valid schedules one field away from it: another
-- register block (with that block's heuristic tiles), K blocks, tiles twice
-- or half as tall or wide, packing of A or B flipped, the k loop unrolled, the other
-- tile order, the prefetch distances either side. Duplicates
-- (after clamping) are dropped.
function M.neighbours(p, h, s)
  s = assert(M.check(p, h, s))
  local list, seen = {}, {}
  local function add(t)
    local c = M.check(p, h, t)
    if not c then return end
    local key = M.str(c)
    if seen[key] then return end
    seen[key] = true
    list[#list + 1] = c
  end
  local function with(fields)
    local t = {}
    for k, v in pairs(s) do t[k] = v end
    for k, v in pairs(fields) do t[k] = v end
    return t
  end
  add(s)
  for _, rb in ipairs(reg_blocks(h)) do
    if rb[1] ~= s.mr or rb[2] ~= s.nv then
      local t = heuristic(p, h, rb[1], rb[2])
      t.kc, t.unroll = s.kc, s.unroll
      if not p.ta then t.pack = s.pack end
      add(t)
    end
  end
  for _, kc in ipairs({ 128, 256, 384, 512, 768, 1024 }) do
    if kc ~= s.kc and kc <= p.K and kc >= s.kc // 2 and kc <= 2 * s.kc then add(with({ kc = kc })) end
  end
  if s.kc < p.K and p.K <= 1024 then add(with({ kc = p.K })) end
  local nr = s.nv * h.VL
  add(with({ mc = s.mc * 2 }))
  add(with({ nc = s.nc * 2 }))
  if s.mc >= 2 * s.mr then add(with({ mc = round_up(s.mc // 2, s.mr) })) end
  if s.nc >= 2 * nr then add(with({ nc = round_up(s.nc // 2, nr) })) end
  if not p.ta then add(with({ pack = 1 - s.pack })) end
  if M.b_in_place_ok(p) then add(with({ packb = 1 - s.packb })) end
  add(with({ unroll = s.unroll == 1 and 4 or 1 }))
  -- the other tile order when there are tiles both ways
  if ceil_div(p.M, s.mc) > 1 and ceil_div(p.N, s.nc) > 1 then add(with({ order = 1 - s.order })) end
  -- the prefetch distances next to this one
  for i, d in ipairs(PREFETCH) do
    if d == s.pf then
      if PREFETCH[i - 1] then add(with({ pf = PREFETCH[i - 1] })) end
      if PREFETCH[i + 1] then add(with({ pf = PREFETCH[i + 1] })) end
    end
  end
  return list
end

-- ---- attention ---------------------------------------------------------------
-- The CPU attention of templates/cpu/attention.c (its blocked path: hd whole
-- micro-kernel panels) works in blocks of MR query (or key) rows, MR the
-- host's default register block. A problem a = { B, H, T, hd, MR, threads }
-- ("attention_BxT", the instance's name) has the schedule
--   qb   query blocks a task: a forward (and backward pass 1) task takes qb
--        consecutive blocks of one head, so the head's K and V (transposed
--        or in place) stay in L1/L2 from one block to the next
--   kb   key blocks a task of the backward's pass 2 (dk, dv), likewise
--        keeping the head's q and dout rows and its columns of ds in cache
-- Each output row is still one micro-kernel call over its whole sum, in key
-- (or query) order, whatever the task it falls in: every schedule gives the
-- same bits (tests/test_attn_block.c).
local ATT_FIELDS = { "qb", "kb" }

-- A whole head a task, halved while that would leave under four tasks a
-- thread. Every block of a head reads all of the head's keys up to its own,
-- so each extra group re-reads them from memory (the transposes of all heads,
-- done first, are far beyond L2); only the balance between threads asks for
-- smaller tasks (docs/bench-cpu.md, "Attention blocking": on mid, one thread,
-- 1, 2, 3, 8 and all 43 blocks a task took 470, 318, 285, 195, 167 ms forward).
function M.att_default(a)
  local nblk = ceil_div(a.T, a.MR)
  local b = nblk
  while b > 1 and a.B * a.H * ceil_div(nblk, b) < 4 * a.threads do b = ceil_div(b, 2) end
  return { qb = b, kb = b }
end

-- s completed from the default and clamped to the shape (at most all of a
-- head's blocks), or nil and why it breaks a rule.
function M.att_check(a, s)
  local d = M.att_default(a)
  local nblk = ceil_div(a.T, a.MR)
  local out = {}
  for _, f in ipairs(ATT_FIELDS) do
    local v = s[f]
    if v == nil then v = d[f] end
    if math.type(v) ~= "integer" then return nil, f .. " must be an integer" end
    if v < 1 then return nil, f .. " must be at least 1" end
    out[f] = math.min(v, nblk)
  end
  return out
end

-- s first, then the valid schedules one field away from it, for the tuner:
-- qb or kb of 1, 2, 3, 4, 6, 8, 12 blocks or a whole head.
function M.att_neighbours(a, s)
  s = assert(M.att_check(a, s))
  local list, seen = {}, {}
  local function add(t)
    local c = M.att_check(a, t)
    if not c or seen[M.att_str(c)] then return end
    seen[M.att_str(c)] = true
    list[#list + 1] = c
  end
  add(s)
  for _, v in ipairs({ 1, 2, 3, 4, 6, 8, 12, ceil_div(a.T, a.MR) }) do
    add({ qb = v, kb = s.kb })
    add({ qb = s.qb, kb = v })
  end
  return list
end

function M.att_str(s) return string.format("qb=%d kb=%d", s.qb, s.kb) end

function M.att_parse(str) return parse_fields(str, ATT_FIELDS) end

return M
