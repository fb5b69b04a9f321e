-- nanoGPT's default shakespeare_char recipe (config/train_shakespeare_char.py,
-- its "baby GPT"): 6 layers, 6 heads, 384 wide, context 256, batch 64, dropout
-- 0.2, lr 1e-3 cosine to 1e-4 over 5000 steps, warmup 100, beta2 0.99, random
-- batches. Meant for a GPU (or patience): about 10M parameters.
return {
  name = "shakespeare-char-mid",
  tokenizer = "char",
  data = "../data/tinyshakespeare.txt",
  emb_dim = 384,
  n_heads = 6,
  n_layers = 6,
  context_length = 256,
  drop_rate = 0.2,
  qkv_bias = false,
  train = {
    batch_size = 64,
    max_length = 256,
    sampling = "random", -- nanoGPT's get_batch
    lr = 1e-3,
    min_lr = 1e-4,
    warmup_steps = 100,
    steps = 5000,
    beta2 = 0.99,
    weight_decay = 0.1,
    grad_clip = 1.0,
    eval_interval = 250,
    eval_steps = 200,
  },
}
