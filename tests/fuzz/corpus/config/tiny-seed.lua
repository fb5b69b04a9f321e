return {
  name = "fuzz-seed",
  tokenizer = "char",
  emb_dim = 8, n_heads = 1, n_layers = 1, context_length = 8,
  drop_rate = 0.0, qkv_bias = true, tie_embeddings = true,
  train = { batch_size = 1, max_length = 8, stride = 8, lr = 1e-3, steps = 1, eval_interval = 1, eval_steps = 1 },
}
