-- run.sh's bench: GPT-2 small at context 1024, batch 16 (nanoGPT's
-- shape), bf16, without dropout, on random-ish text for 25 steps.
return {
  name = "bench-gpt2-bf16",
  tokenizer = "gpt2",
  data = "../../data/tinyshakespeare.txt",
  emb_dim = 768,
  n_heads = 12,
  n_layers = 12,
  context_length = 1024,
  drop_rate = 0.0,
  qkv_bias = false,
  tie_embeddings = true,
  precision = "bf16",
  train = { batch_size = 16, max_length = 1024, lr = 6e-4, steps = 25, eval_interval = 1000, eval_steps = 1 },
}
