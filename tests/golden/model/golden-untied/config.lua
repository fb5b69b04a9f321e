-- written by tests/ref/golden_torch.py: the model of these golden files
return {
  name = "golden-untied",
  tokenizer = "char",
  vocab_size = 29,
  emb_dim = 32,
  n_heads = 1,
  n_layers = 2,
  context_length = 20,
  drop_rate = 0.0,
  qkv_bias = false,
  tie_embeddings = false,
  train = { batch_size = 2, max_length = 20, lr = 0.003, beta1 = 0.9, beta2 = 0.95, eps = 1e-08, weight_decay = 0.1, grad_clip = 1.0 },
}
