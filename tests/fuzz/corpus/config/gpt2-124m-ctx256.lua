-- GPT-2 small with the context shortened to 256, as the seeds' chapter 5
-- trains it on the-verdict (batch 2, lr 4e-4, weight decay 0.1, 10 epochs).
return {
  name = "gpt2-124m-ctx256",
  tokenizer = "gpt2",
  data = "../data/the-verdict.txt",
  vocab_size = 50257,
  emb_dim = 768,
  n_heads = 12,
  n_layers = 12,
  context_length = 256,
  drop_rate = 0.1,
  qkv_bias = false,
  tie_embeddings = true,
  train = {
    batch_size = 2,
    max_length = 256,
    stride = 256,
    lr = 4e-4,
    min_lr = 4e-4,
    weight_decay = 0.1,
    steps = 90, -- 10 epochs of the 9 training batches
    eval_interval = 5,
    eval_steps = 1,
  },
}
