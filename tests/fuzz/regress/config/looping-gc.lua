setmetatable({}, { __gc = function() while true do end end })
return { name = "x", emb_dim = 8, n_heads = 1, n_layers = 1, context_length = 8 }
