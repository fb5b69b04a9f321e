/* train: the training loop (AdamW, warmup + cosine schedule, clipping,
 * accumulation, evaluation, checkpoints, signals) and the helpers that eval
 * and sample share (opening a checkpoint as a ready model). */
#ifndef GPTC_TRAIN_H
#define GPTC_TRAIN_H

#include <signal.h>
#include <stdint.h>

#include "backend.h"
#include "cfg.h"
#include "cpu.h"
#include "tok.h"

typedef struct {
  const char *config_path;
  const char *const *sets; /* --set FIELD=VALUE overrides (cfg_load_file_set), n_sets of them */
  int n_sets;
  const char *texts[CFG_MAX_DATA]; /* --text overrides; n_texts == 0 uses cfg.data */
  int n_texts;
  const char *out_dir; /* NULL: out/<config name> */
  const char *init_ckpt;
  int resume;
  long steps; /* 0: config's train.steps */
  int threads;
  int quiet;          /* no progress output (tests) */
  const char *device; /* "cpu" (NULL), "cuda" or "auto" */
  int no_tune;        /* on the CPU, do not tune the GEMMs the host's schedule file lacks (tune.h) */
  int zero;           /* ZeRO-1 under a launcher: each rank keeps its shard of the AdamW moments (dist.h) */
  int dist_bf16;      /* under a launcher: gradients travel between ranks as bf16 (dist.h, --dist-grad bf16) */
} train_opts;

int train_run(const train_opts *o);

/* An ETA as "42s", "3m05s", "1h02m" or "--" (unknown), for progress lines. */
void train_fmt_eta(double sec, char *out, size_t n);

/* Learning rate at 0-based `step`: linear warmup over warmup_steps, then
 * cosine decay from lr to min_lr at train.steps. */
double train_lr(const cfg_train *t, long step);

/* Deterministic GPT-2 init of every tensor (normal(0, init_std) or constant)
 * from `seed`, independent of thread count. */
void train_init_params(const gptc_model *m, float *params, uint64_t seed);
/* The same from a tensor table: params holds n_params floats. */
void train_init_tensors(const gptc_tensor *tensors, int n_tensors, size_t n_params, float *params, uint64_t seed);

/* The one evaluator of training's periodic and final evaluations and of
 * `gptc eval --split`, so those agree bit for bit: the mean loss of `be`'s
 * training-shape forward (B = be->B windows of T = be->T tokens, dropout
 * off) over the windows ids[s : s+T] -> ids[s+1 : s+T+1] for s in starts
 * (n of them, each with s + T < the split's length), in batches of B
 * consecutive starts (the last padded with ignored rows); each batch's mean
 * is weighted by its target count and summed in double in window order.
 * in and tg are (B, T) scratch. *positions gets the targets scored. 0 on
 * success, -1 on a backend failure, 1 when *stop (polled before each batch;
 * may be NULL) became nonzero. */
int train_eval_windows(backend *be, const int32_t *ids, const size_t *starts, size_t n, int32_t *in, int32_t *tg,
                       const volatile sig_atomic_t *stop, double *loss, double *positions);

/* A checkpoint opened for inference: config, tokenizer, and the model on a
 * backend with the checkpoint's weights uploaded. */
typedef struct {
  cfg_t cfg;
  tok_t *tok;
  backend *be;
  cpu_module mod; /* the CPU backend's module (its model's sizes); zeroed on other devices */
  float *params;  /* the weights on the host (train_load_ckpt only; NULL from train_open_ckpt) */
  uint64_t step;
} train_loaded;

/* Opens a checkpoint on the CPU with its weights also on the host. */
int train_load_ckpt(const char *path, train_loaded *out);
/* Opens a checkpoint on `device` (cpu, cuda, auto) for evaluation and sampling. */
int train_open_ckpt(const char *path, const char *device, train_loaded *out);
void train_loaded_free(train_loaded *l);

#endif
