-- a comment
return { name = 'q\"x\n\65\x41\u{48}\z
   y', tokenizer = "gpt2", emb_dim = 0x40, n_heads = 2; n_layers = 1, context_length = 16,
  drop_rate = -inf, ["qkv_bias"] = false, [1] = 2.5e3, { nan, -0x1p4 },
  train = { lr = .5, seed = 9223372036854775807, steps = 3 } }
