-- written by tests/ref/golden_torch.py: the model of these golden files
return {
  name = "golden-tied",
  tokenizer = "char",
  vocab_size = 37,
  emb_dim = 24,
  n_heads = 4,
  n_layers = 2,
  context_length = 16,
  drop_rate = 0.0,
  qkv_bias = true,
  tie_embeddings = true,
  train = { batch_size = 3, max_length = 12, lr = 0.003, beta1 = 0.9, beta2 = 0.95, eps = 1e-08, weight_decay = 0.1, grad_clip = 1.0 },
}
