-- GPT-2 small (124M), the seeds' GPT_CONFIG_124M. Use with `gptc import` of
-- the released weights for fine-tuning, or train from scratch on a GPU.
return {
  name = "gpt2-124m",
  tokenizer = "gpt2",
  data = "../data/the-verdict.txt",
  vocab_size = 50257,
  emb_dim = 768,
  n_heads = 12,
  n_layers = 12,
  context_length = 1024,
  drop_rate = 0.1,
  qkv_bias = false,
  tie_embeddings = true,
  train = {
    batch_size = 2,
    max_length = 256,
    stride = 256,
    lr = 4e-4,
    weight_decay = 0.1,
    steps = 100,
    eval_interval = 5,
    eval_steps = 5,
  },
}
