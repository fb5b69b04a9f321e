local f
f = function() pcall(f) pcall(f) end
f()
