/* ckpt: checkpoints as safetensors files (Hugging Face GPT-2 tensor names
 * and layouts), plus a sibling file with the AdamW moments. */
#ifndef GPTC_CKPT_H
#define GPTC_CKPT_H

#include <stddef.h>
#include <stdint.h>

#include "cfg.h"
#include "model.h"

typedef struct {
  char *config_src;   /* resolved config as Lua source (cfg_serialize) */
  int tokenizer;      /* CFG_TOK_* */
  char *vocab;        /* tok_vocab_save blob (char/word), NULL for gpt2 */
  size_t vocab_len;
  uint64_t step;      /* optimizer steps done */
  uint64_t data_pos;  /* global micro-batch index of the next batch */
  uint64_t seed;
  double best_val;    /* best val loss so far (inf if none) */
  char text_hash[65]; /* SHA-256 of the training text ("" if unknown) */
  /* the end-of-training evaluation over every non-overlapping window of
   * the val split (docs/validation.md), stored as "val_loss_full" only when
   * has_val_loss_full (a zeroed meta has none) */
  int has_val_loss_full;
  double val_loss_full;
  /* the run's training texts as absolute paths (metadata "texts", a JSON
   * array), so `gptc eval --split` finds them; text_hash still decides
   * whether what is found there is the run's text. n_texts 0: not recorded */
  int n_texts;
  char *texts[CFG_MAX_DATA];
} ckpt_meta;

/* Writes params (laid out by tensors) to `path` atomically (temp, fsync,
 * rename, dir fsync); when m and v are non-NULL also writes them to
 * `path` with ".opt" inserted before ".safetensors" (same atomicity), and
 * keeps the previous moments as that name + ".prev" until the new weights
 * are in place, so kill -9 at any instant leaves a pair that
 * ckpt_resume_pair can restore. */
int ckpt_save(const char *path, const gptc_tensor *tensors, int n_tensors, size_t n_params, const float *params,
              const float *m, const float *v, const ckpt_meta *meta);
/* Before resuming from `path`: when a save was interrupted between its
 * renames (ckpt.c's save protocol), puts back the moments file that pairs
 * with the weights on disk. Returns 0 when the pair on disk already matches
 * (or none matches: ckpt_load_params then says why), 1 when it restored the
 * pair (*interrupted = the step of the interrupted save, 0 if unknown), -1
 * on error. */
int ckpt_resume_pair(const char *path, uint64_t *interrupted);
/* Reads only the metadata (to build the config and the model first). */
int ckpt_load_meta(const char *path, ckpt_meta *meta);
/* Reads every tensor into params, checking names, dtypes (F32), shapes and
 * offsets against `tensors`; m and v (optional) from the sibling file. */
int ckpt_load_params(const char *path, const gptc_tensor *tensors, int n_tensors, size_t n_params, float *params,
                     float *m, float *v);
/* The AdamW moments of the flat elements [lo, hi) alone, from path's
 * moments file (checked as ckpt_load_params checks it, pair tag included):
 * m, v: (hi - lo) each, m[i - lo]; elements of no tensor are 0. One tensor
 * at a time passes through memory (a ZeRO-1 rank's resume, dist.h). */
int ckpt_load_moments_range(const char *path, const gptc_tensor *tensors, int n_tensors, size_t n_params, size_t lo,
                            size_t hi, float *m, float *v);
void ckpt_meta_free(ckpt_meta *meta);
/* The first non-finite value in a buffer laid out by `tensors`, as "WHAT of
 * tensor 'name' hold nan|inf" into out: 1 when there is one, 0 when all are
 * finite (a run that diverged must neither be saved nor loaded). */
int ckpt_nonfinite(const gptc_tensor *tensors, int n_tensors, const float *base, const char *what, char *out,
                   size_t cap);
/* -1 with util_err naming path and the tensor when the loaded weights are
 * not all finite: such a model samples one token forever or scores nan. */
int ckpt_check_finite(const char *path, const gptc_tensor *tensors, int n_tensors, const float *params);

/* The moments file of a checkpoint: "<base>.opt.safetensors" for
 * "<base>.safetensors", else path + ".opt.safetensors". Caller frees. A
 * checkpoint saved without moments (e.g. by `gptc import`) has none. */
char *ckpt_opt_path(const char *path);

/* ---- safetensors files in general (ckpt_st.c; Hugging Face import and export) ----
 * ckpt_st_open validates the whole header first (length, JSON, dtypes,
 * shapes, offsets inside the file, contiguous and matching dtype x shape),
 * so no later read can go out of bounds. */
enum { CKPT_F32, CKPT_F16, CKPT_BF16, CKPT_OTHER };
#define CKPT_MAX_DIMS 8

typedef struct {
  const char *name;    /* valid until ckpt_st_close */
  int dtype;           /* CKPT_F32/F16/BF16; CKPT_OTHER is valid but not readable */
  char dtype_name[12]; /* as in the file, e.g. "BF16" */
  int ndim;
  uint64_t shape[CKPT_MAX_DIMS];
  uint64_t numel;
  uint64_t begin, end; /* byte range within the data section */
} ckpt_st_tensor;

typedef struct ckpt_st ckpt_st;

ckpt_st *ckpt_st_open(const char *path);
int ckpt_st_count(const ckpt_st *st);
const ckpt_st_tensor *ckpt_st_at(const ckpt_st *st, int i); /* in file order */
const ckpt_st_tensor *ckpt_st_find(const ckpt_st *st, const char *name);
/* A __metadata__ value (NULL when absent); *len gets its length if len != NULL. */
const char *ckpt_st_meta(const ckpt_st *st, const char *key, size_t *len);
/* Reads a tensor as F32 (F16 and BF16 are widened exactly). */
int ckpt_st_read_f32(ckpt_st *st, const ckpt_st_tensor *t, float *out);
void ckpt_st_close(ckpt_st *st);

typedef struct {
  const char *name;
  int ndim; /* 0 .. CKPT_MAX_DIMS */
  uint64_t shape[CKPT_MAX_DIMS];
  const float *data; /* numel F32 values */
} ckpt_st_out;

typedef struct {
  const char *key;
  const char *val; /* UTF-8, len bytes (may hold NUL) */
  size_t len;
} ckpt_st_kv;

/* Writes an F32 safetensors file atomically (temp, fsync, rename, dir
 * fsync), streaming the tensors without copying them. */
int ckpt_st_write(const char *path, const ckpt_st_kv *meta, int n_meta, const ckpt_st_out *t, int n);

/* For ckpt.c's checkpoints, which check more before the tail: ckpt_st_open
 * without the check of the bytes after the last tensor, and that check;
 * ckpt_st_write that stops before the rename (util_write_segs_atomic's
 * tmp_out) when tmp_out is not NULL; "[d0, d1]" for a shape. */
ckpt_st *ckpt_st_open_lax(const char *path);
int ckpt_st_check_tail(const ckpt_st *st);
int ckpt_st_emit(const char *path, const ckpt_st_kv *meta, int n_meta, const ckpt_st_out *t, int n, char **tmp_out);
void ckpt_shape_str(char *out, size_t cap, int ndim, const uint64_t *shape);

#endif
