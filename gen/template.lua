-- template: a small text template engine for the kernel templates.
--
-- A template is text with embedded Lua:
--   * a line whose first non-blank character is '%' is a Lua statement
--     (loops, ifs, locals); '%%' at that place emits a literal '%' line;
--   * '{{expr}}' inside any other line is replaced by tostring(expr).
-- Each template compiles once to a Lua function; every template line becomes
-- exactly one line of that function, so Lua's own error positions
-- ("templates/cpu/x.c:12: ...") name the template file and line.

local M = {}

local cache = {}

-- A Lua long-bracket literal for `s` that cannot be closed by its content.
local function quote(s)
  local eq = ""
  while (s .. "]"):find("]" .. eq .. "]", 1, true) do eq = eq .. "=" end
  -- a leading newline would be dropped by the long-string syntax
  return "[" .. eq .. "[" .. (s:sub(1, 1) == "\n" and "\n" or "") .. s .. "]" .. eq .. "]"
end

-- Translates one text line into a Lua statement that appends it to _o.
local function text_line(line, name, lineno)
  local parts, pos = {}, 1
  while true do
    local s, e = line:find("{{", pos, true)
    if not s then break end
    local close = line:find("}}", e + 1, true)
    if not close then error(string.format("%s:%d: '{{' without a closing '}}'", name, lineno), 0) end
    local expr = line:sub(e + 1, close - 1)
    if not expr:find("%S") then error(string.format("%s:%d: empty '{{}}'", name, lineno), 0) end
    if s > pos then parts[#parts + 1] = quote(line:sub(pos, s - 1)) end
    parts[#parts + 1] = "_v(" .. expr .. ", " .. quote(expr) .. ")"
    pos = close + 2
  end
  if pos <= #line then parts[#parts + 1] = quote(line:sub(pos)) end
  parts[#parts + 1] = '"\\n"'
  return "_o[#_o+1]=" .. table.concat(parts, "..") .. ";"
end

-- Compiles template text into a function(env) -> string. `name` is used in
-- error messages (the template's path).
function M.compile(name, text)
  local lines = {}
  local n = 0
  for line in (text .. (text:sub(-1) == "\n" and "" or "\n")):gmatch("(.-)\n") do
    n = n + 1
    local stmt = line:match("^%s*%%(.*)$")
    if stmt and stmt:sub(1, 1) == "%" then
      lines[n] = text_line((line:gsub("^(%s*)%%%%", "%1%%")), name, n)
    elseif stmt then
      lines[n] = stmt
    else
      lines[n] = text_line(line, name, n)
    end
  end
  -- the prologue shares line 1 so template line numbers stay exact; _ENV is
  -- a parameter so one compiled chunk serves every environment
  local src = "local _v, _cat, _ENV = ...; local _o = {}; " .. table.concat(lines, "\n") .. "\nreturn _cat(_o)"
  local fn, err = load(src, "=" .. name, "t")
  if not fn then error(err, 0) end
  local function value(v, expr)
    if v == nil then error(string.format("{{%s}} is nil", expr), 2) end
    if math.type(v) == "float" and v == math.floor(v) and math.abs(v) < 2 ^ 53 then
      return string.format("%d", v)
    end
    return tostring(v)
  end
  return function(env)
    local ok, out = pcall(fn, value, table.concat, env)
    if not ok then error(out, 0) end
    return out
  end
end

-- Renders the template file `name` (read through gptc.read) with `env`;
-- globals not in env (math, string, ipairs...) come from the base library.
function M.render(name, env)
  local t = cache[name]
  if not t then
    t = M.compile(name, gptc.read(name))
    cache[name] = t
  end
  return t(setmetatable(env or {}, { __index = _G }))
end

return M
