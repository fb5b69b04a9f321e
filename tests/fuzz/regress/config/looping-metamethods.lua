return setmetatable({}, { __index = function() while true do end end, __pairs = function() while true do end end })
