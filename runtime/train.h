/* train: the training loop (AdamW, warmup + cosine schedule, clipping,
 * accumulation, evaluation, checkpoints, signals) and the helpers that eval
 * and sample share (opening a checkpoint as a ready model). */
#ifndef GPTC_TRAIN_H
#define GPTC_TRAIN_H

#include <stdint.h>

#include "cfg.h"
#include "cpu.h"
#include "tok.h"

typedef struct {
  const char *config_path;
  const char *texts[CFG_MAX_DATA]; /* --text overrides; n_texts == 0 uses cfg.data */
  int n_texts;
  const char *out_dir; /* NULL: out/<config name> */
  const char *init_ckpt;
  int resume;
  long steps; /* 0: config's train.steps */
  int threads;
  int quiet; /* no progress output (tests) */
} train_opts;

int train_run(const train_opts *o);

/* Learning rate at 0-based `step`: linear warmup over warmup_steps, then
 * cosine decay from lr to min_lr at train.steps. */
double train_lr(const cfg_train *t, long step);

/* Deterministic GPT-2 init of every tensor (normal(0, init_std) or constant)
 * from `seed`, independent of thread count. */
void train_init_params(const gptc_model *m, float *params, uint64_t seed);

/* A checkpoint opened for inference: config, tokenizer, compiled model and
 * its weights. */
typedef struct {
  cfg_t cfg;
  tok_t *tok;
  cpu_module mod;
  float *params;
  uint64_t step;
} train_loaded;

int train_load_ckpt(const char *path, train_loaded *out);
void train_loaded_free(train_loaded *l);

#endif
