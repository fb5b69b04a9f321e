-- placeholder: replaced by the generator's shape derivation
local M = {}
function M.derive(cfg)
  return { memory = { train_bytes = 0 } }
end
return M
