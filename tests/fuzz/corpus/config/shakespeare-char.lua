-- The default: a small character-level GPT on tinyshakespeare (nanoGPT's
-- shakespeare_char, scaled to train in a few minutes on 2 CPU cores).
return {
  name = "shakespeare-char",
  tokenizer = "char", -- vocabulary = the 65 distinct characters of the text
  data = "../data/tinyshakespeare.txt",
  emb_dim = 128,
  n_heads = 4,
  n_layers = 4,
  context_length = 64,
  drop_rate = 0.1,
  qkv_bias = false,
  tie_embeddings = true,
  train = {
    batch_size = 12,
    max_length = 64,
    stride = 64,
    lr = 1e-3,
    min_lr = 1e-4,
    warmup_steps = 100,
    steps = 6000, -- about 3.5 minutes on 2 cores; validation loss about 1.66 (3000 steps: 1.88)
    beta2 = 0.99,
    weight_decay = 0.1,
    grad_clip = 1.0,
    eval_interval = 250,
    eval_steps = 20,
  },
}
