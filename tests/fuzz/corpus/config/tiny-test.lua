-- The smallest useful model, for tests: char-level on the-verdict.
return {
  name = "tiny-test",
  tokenizer = "char",
  data = "../data/the-verdict.txt",
  emb_dim = 16,
  n_heads = 2,
  n_layers = 2,
  context_length = 16,
  drop_rate = 0.0,
  qkv_bias = true,
  tie_embeddings = true,
  train = {
    batch_size = 2,
    max_length = 16,
    stride = 16,
    lr = 1e-3,
    steps = 20,
    eval_interval = 10,
    eval_steps = 2,
  },
}
