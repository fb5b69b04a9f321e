-- nanoGPT's CPU "baby" recipe for shakespeare_char (its README: --device=cpu
-- --n_layer=4 --n_head=4 --n_embd=128 --block_size=64 --batch_size=12
-- --max_iters=2000 --lr_decay_iters=2000 --dropout=0.0): the same model,
-- schedule, optimizer and batch sampling, to compare the two on 2 CPU cores
-- (docs/validation.md).
return {
  name = "shakespeare-char-baby",
  tokenizer = "char",
  data = "../data/tinyshakespeare.txt",
  emb_dim = 128,
  n_heads = 4,
  n_layers = 4,
  context_length = 64,
  drop_rate = 0.0,
  qkv_bias = false, -- nanoGPT's bias = False
  tie_embeddings = true,
  train = {
    batch_size = 12,
    max_length = 64,
    sampling = "random", -- get_batch: uniform window starts over the train split
    val_ratio = 0.1,
    lr = 1e-3,
    min_lr = 1e-4,
    warmup_steps = 100,
    steps = 2000,
    beta2 = 0.99,
    weight_decay = 0.1,
    grad_clip = 1.0,
    eval_interval = 250,
    eval_steps = 20, -- 240 windows spread over the val split; the end adds a full evaluation
  },
}
