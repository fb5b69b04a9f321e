/* train: see train.h.
 *
 * One optimizer step = grad_accum micro-batches of (B, T) through the
 * generated forward/backward, then global-norm clipping and the generated
 * AdamW, on the backend the run chose (backend.h). Everything that decides a step's numbers (weights, moments, step,
 * the global micro-batch index that picks the batch and keys dropout) is in
 * the checkpoint, so a resumed run is bit-identical to a straight one. */
#include "train.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend_cpu.h"
#include "ckpt.h"
#include "cuda.h"
#include "data.h"
#include "dist.h"
#include "plot.h"
#include "sample.h"
#include "tune.h"
#include "util.h"

static volatile sig_atomic_t train_stop_signal;

static void train_on_signal(int sig) { train_stop_signal = sig; }

double train_lr(const cfg_train *t, long step) {
  if (t->warmup_steps > 0 && step < t->warmup_steps) return t->lr * (double)(step + 1) / t->warmup_steps;
  long span = t->steps - t->warmup_steps;
  if (span <= 0) return t->lr;
  double p = (double)(step - t->warmup_steps) / (double)span;
  if (p > 1) p = 1;
  return t->min_lr + 0.5 * (1.0 + cos(M_PI * p)) * (t->lr - t->min_lr);
}

void train_init_params(const gptc_model *m, float *params, uint64_t seed) {
  train_init_tensors(m->tensors, m->n_tensors, m->n_params, params, seed);
}

void train_init_tensors(const gptc_tensor *tensors, int n_tensors, size_t n_params, float *params, uint64_t seed) {
  memset(params, 0, n_params * sizeof(float));
  for (int i = 0; i < n_tensors; i++) {
    const gptc_tensor *t = &tensors[i];
    float *p = params + t->offset;
    if (t->init_std == 0) {
      for (size_t k = 0; k < t->numel; k++) p[k] = t->init_value;
      continue;
    }
    /* one stream per tensor, so adding a tensor never shifts the others */
    sample_rng r;
    sample_seed(&r, seed * 0x9E3779B97F4A7C15ull + (uint64_t)i * 0xD1B54A32D192ED03ull + 1);
    for (size_t k = 0; k < t->numel; k += 2) {
      double u1 = sample_uniform(&r), u2 = sample_uniform(&r);
      double rad = sqrt(-2.0 * log(1.0 - u1)); /* 1 - u1 is in (0, 1] */
      p[k] = (float)(t->init_std * rad * cos(2 * M_PI * u2));
      if (k + 1 < t->numel) p[k + 1] = (float)(t->init_std * rad * sin(2 * M_PI * u2));
    }
  }
}

static float *train_alloc(size_t n, const char *what) {
  void *p = NULL;
  size_t bytes = (n ? n : 1) * sizeof(float);
  bytes = (bytes + 63) & ~(size_t)63;
  if (posix_memalign(&p, 64, bytes) != 0) {
    util_err("out of memory: %s needs %zu bytes (%.1f MiB available)", what, bytes,
             util_mem_available() / 1048576.0);
    return NULL;
  }
  memset(p, 0, bytes);
  return p;
}

/* ---- opening checkpoints ---------------------------------------------------- */

/* Opens the checkpoint's config, tokenizer and model on `device`; the
 * weights go to the backend and, when keep_host, stay in l->params. */
static int train_open(const char *path, const char *device, int keep_host, train_loaded *l) {
  memset(l, 0, sizeof *l);
  ckpt_meta meta;
  if (ckpt_load_meta(path, &meta)) return -1;
  int rc = -1;
  char where[1100];
  snprintf(where, sizeof where, "%s (config)", path);
  if (cfg_load_data(meta.config_src, where, &l->cfg)) goto out;
  l->tok = l->cfg.tokenizer == CFG_TOK_GPT2 ? tok_gpt2_new() : tok_from_vocab(l->cfg.tokenizer, meta.vocab, meta.vocab_len);
  if (!l->tok) goto out;
  if (tok_vocab_size(l->tok) != l->cfg.vocab_size) {
    util_err("%s: vocabulary has %d entries but the config says vocab_size %d", path, tok_vocab_size(l->tok),
             l->cfg.vocab_size);
    goto out;
  }
  if (backend_open(&l->cfg, device, &l->be)) goto out;
  backend *b = l->be;
  if (backend_cpu_module(b)) l->mod = *backend_cpu_module(b);
  l->params = train_alloc(b->n_params, "model parameters");
  if (!l->params) goto out;
  if (ckpt_load_params(path, b->tensors, b->n_tensors, b->n_params, l->params, NULL, NULL)) goto out;
  if (ckpt_check_finite(path, b->tensors, b->n_tensors, l->params)) goto out;
  if (b->ops->upload(b, l->params, NULL, NULL)) goto out;
  if (!keep_host) {
    free(l->params);
    l->params = NULL;
  }
  l->step = meta.step;
  rc = 0;
out:
  ckpt_meta_free(&meta);
  if (rc) train_loaded_free(l);
  return rc;
}

int train_load_ckpt(const char *path, train_loaded *l) { return train_open(path, "cpu", 1, l); }

int train_open_ckpt(const char *path, const char *device, train_loaded *l) { return train_open(path, device, 0, l); }

void train_loaded_free(train_loaded *l) {
  if (l->tok) tok_free(l->tok);
  backend_close(l->be); /* the module in l->mod is the backend's */
  free(l->params);
  memset(l, 0, sizeof *l);
}

/* ---- the loop ------------------------------------------------------------------ */

typedef struct {
  cfg_t cfg;
  data_set ds;
  data_loader train_dl;
  /* starts of the periodic evaluation's windows in ds.val (n_val_win), a
   * function of the split and the config only (data_eval_windows) */
  size_t *val_win, n_val_win;
  backend *be;
  /* the weights and AdamW moments on the host (n_params each): the CPU
   * backend's own buffers, or copies for checkpoints when the model runs on
   * a GPU (own_host) */
  float *params, *adam_m, *adam_v;
  int own_host;
  int32_t *inputs, *targets; /* (grad_accum, B, T) */
  uint64_t step, data_pos;
  double best_val;
  int n_texts;     /* the texts as absolute paths, for the checkpoints' "texts" (0: not recorded) */
  char *texts[CFG_MAX_DATA];
  int have_full;   /* val_full is this step's full evaluation (saved with the final checkpoint) */
  double val_full;
  char out[PATH_MAX], last_path[PATH_MAX], best_path[PATH_MAX], log_path[PATH_MAX];
  FILE *log;
  int lock_fd;        /* flock on out/.lock for the whole run (-1: none) */
  int have_good;      /* last_path holds finite weights and moments, saved or resumed by this run */
  uint64_t good_step; /* ... of this step */
  util_buf resume_sets; /* "\"train.lr\":{\"was\":..,\"now\":..}" per --set that changed a field on resume */
  /* data-parallel (dist.h): the launcher's job (NULL: a single process), or
   * dist_local() for a single process with grad_accum > 1; r0: this process
   * writes (rank 0, or the single process); rank of ranks */
  dist *job, *acc;
  int r0, rank, ranks;
} train_state;

static void train_state_free(train_state *s) {
  data_free(&s->ds);
  free(s->val_win);
  for (int i = 0; i < s->n_texts; i++) free(s->texts[i]);
  if (s->own_host) {
    free(s->params);
    free(s->adam_m);
    free(s->adam_v);
  }
  /* (before the backend: dist's buffers are in its memory) */
  if (s->acc != s->job) dist_close(s->acc); /* the job's own closes last, in train_run */
  else if (s->job) dist_unbind(s->job);
  backend_close(s->be);
  free(s->inputs);
  free(s->targets);
  if (s->log) fclose(s->log);
  if (s->lock_fd >= 0) close(s->lock_fd); /* the run is over: another may start */
  util_buf_free(&s->resume_sets);
}

/* "PATH (step N)" of the last checkpoint known to be finite, for messages. */
static const char *train_good(const train_state *s, char *buf, size_t cap) {
  if (!s->have_good) return "(none yet)";
  snprintf(buf, cap, "%s (step %llu)", s->last_path, (unsigned long long)s->good_step);
  return buf;
}

static int train_save(train_state *s, const char *path, int with_moments) {
  /* ZeRO-1: rank 0 gathers every rank's moment shard, and saves what one
   * process would (gm, gv: (n_params) on rank 0, NULL elsewhere) */
  float *gm = NULL, *gv = NULL, *adam_m = s->adam_m, *adam_v = s->adam_v;
  int zero = with_moments && s->acc && s->acc->zero;
  if (zero) {
    size_t n = s->be->n_params;
    if (s->r0 && (!(gm = train_alloc(n, "gathered AdamW first moments")) ||
                  !(gv = train_alloc(n, "gathered AdamW second moments")))) {
      free(gm);
      return -1;
    }
    if (dist_gather_moments(s->acc, gm, gv)) {
      free(gm), free(gv);
      return -1;
    }
    adam_m = gm, adam_v = gv;
  }
  if (!s->r0) { /* rank 0 writes; every rank knows what is on disk */
    if (with_moments && !strcmp(path, s->last_path)) s->have_good = 1, s->good_step = s->step;
    return 0;
  }
  ckpt_meta meta = {0};
  meta.config_src = cfg_serialize(&s->cfg);
  if (!meta.config_src) return -1;
  meta.tokenizer = s->cfg.tokenizer;
  int rc = -1;
  if (s->cfg.tokenizer != CFG_TOK_GPT2 && tok_vocab_save(s->ds.tok, &meta.vocab, &meta.vocab_len)) goto out;
  meta.step = s->step;
  meta.data_pos = s->data_pos;
  meta.seed = s->cfg.train.seed;
  meta.best_val = s->best_val;
  meta.has_val_loss_full = s->have_full;
  meta.n_texts = s->n_texts;
  for (int i = 0; i < s->n_texts; i++) meta.texts[i] = s->texts[i]; /* borrowed: not freed below */
  meta.val_loss_full = s->val_full;
  snprintf(meta.text_hash, sizeof meta.text_hash, "%s", s->ds.text_hash);
  const backend *b = s->be;
  if (b->ops->download(s->be, s->params, with_moments && !zero ? adam_m : NULL, with_moments && !zero ? adam_v : NULL))
    goto out;
  /* a diverged state is never saved: it would replace the last good checkpoint */
  char bad[300], good[PATH_MAX + 40];
  const gptc_tensor *ts = b->tensors;
  int nt = b->n_tensors;
  if (ckpt_nonfinite(ts, nt, s->params, "the weights", bad, sizeof bad) ||
      (with_moments && (ckpt_nonfinite(ts, nt, adam_m, "the AdamW first moments", bad, sizeof bad) ||
                        ckpt_nonfinite(ts, nt, adam_v, "the AdamW second moments", bad, sizeof bad)))) {
    util_err("training stopped: after step %llu %s; not saved; the last good checkpoint is %s",
             (unsigned long long)s->step, bad, train_good(s, good, sizeof good));
    goto out;
  }
  rc = ckpt_save(path, b->tensors, b->n_tensors, b->n_params, s->params, with_moments ? adam_m : NULL,
                 with_moments ? adam_v : NULL, &meta);
  if (rc == 0 && with_moments && !strcmp(path, s->last_path)) {
    s->have_good = 1;
    s->good_step = s->step;
  }
out:
  free(meta.config_src);
  free(meta.vocab);
  free(gm), free(gv);
  return rc;
}

int train_eval_windows(backend *be, const int32_t *ids, const size_t *starts, size_t n, int32_t *in, int32_t *tg,
                       const volatile sig_atomic_t *stop, double *loss, double *positions) {
  size_t B = (size_t)be->B, T = (size_t)be->T;
  gptc_rng rng = {0, 0, 0}; /* train = 0: no dropout */
  double sum = 0, count = 0;
  for (size_t w0 = 0; w0 < n; w0 += B) {
    if (stop && *stop) return 1;
    size_t rows = n - w0 < B ? n - w0 : B;
    for (size_t r = 0; r < B; r++) {
      int32_t *i = in + r * T, *t = tg + r * T; // (T,) row r of (B, T)
      if (r < rows) {
        memcpy(i, ids + starts[w0 + r], T * sizeof *i);
        memcpy(t, ids + starts[w0 + r] + 1, T * sizeof *t);
      } else {
        for (size_t k = 0; k < T; k++) i[k] = 0, t[k] = -1;
      }
    }
    float l;
    if (be->ops->forward(be, in, tg, rng, &l)) return -1;
    /* the kernel's mean is over the batch's targets: weight it by them */
    sum += (double)l * (double)(rows * T);
    count += (double)(rows * T);
  }
  *loss = count > 0 ? sum / count : NAN;
  *positions = count;
  return 0;
}

/* train_eval_windows split over the job's ranks: batch b of the windows is
 * rank b mod N's, and the batches' losses are gathered and weighted in batch
 * order, so the value is bit for bit one process's (one batch's mean comes
 * back from train_eval_windows exactly: its sum / count is l * c / c). */
static int train_eval_job(train_state *s, const size_t *starts, size_t n, double *loss, double *positions) {
  size_t B = (size_t)s->be->B, T = (size_t)s->be->T, N = (size_t)s->ranks, nb = (n + B - 1) / B;
  size_t per = (nb + N - 1) / N;
  double *mine = util_calloc(per ? per : 1, sizeof(double), "evaluation losses");           // (per)
  double *all = util_calloc(N * (per ? per : 1), sizeof(double), "evaluation losses"); // (N, per)
  int rc = mine && all ? 0 : -1;
  for (size_t i = 0; rc == 0 && i < per; i++) {
    size_t b = i * N + (size_t)s->rank, rows;
    if (b >= nb) break;
    rows = n - b * B < B ? n - b * B : B;
    double pos;
    rc = train_eval_windows(s->be, s->ds.val, starts + b * B, rows, s->inputs, s->targets, NULL, &mine[i], &pos);
  }
  if (rc == 0) rc = dist_allgather(s->job, "gathering the evaluation", mine, (per ? per : 1) * sizeof(double), all);
  double sum = 0, count = 0;
  for (size_t b = 0; rc == 0 && b < nb; b++) {
    size_t rows = n - b * B < B ? n - b * B : B;
    sum += all[(b % N) * (per ? per : 1) + b / N] * (double)(rows * T);
    count += (double)(rows * T);
  }
  *loss = count > 0 ? sum / count : NAN;
  *positions = count;
  free(mine);
  free(all);
  return rc;
}

/* The periodic estimate: the run's fixed window set (s->val_win). */
static double train_eval(train_state *s, int *failed) {
  double loss, pos;
  if (s->job ? train_eval_job(s, s->val_win, s->n_val_win, &loss, &pos)
             : train_eval_windows(s->be, s->ds.val, s->val_win, s->n_val_win, s->inputs, s->targets, NULL, &loss, &pos)) {
    *failed = 1;
    return NAN;
  }
  return loss;
}

/* The JSONL log keeps one line per completed step; the last one gains the
 * final evaluation's "val_loss_full" (train_log_full). A resumed run first
 * drops the lines past the checkpoint and the val_loss_full of an earlier
 * stop, so the log reads as one straight run. */
#define TRAIN_FULL_FIELD ",\"val_loss_full\":"

static int train_open_log(train_state *s) {
  if (!s->r0) return 0; /* rank 0 keeps the log */
  if (s->step > 0 && util_file_exists(s->log_path)) {
    char *data;
    size_t len;
    if (util_read_file(s->log_path, &data, &len)) return -1;
    util_buf keep = {0};
    char *line = data;
    while (line < data + len) {
      char *nl = memchr(line, '\n', (size_t)(data + len - line));
      size_t n = nl ? (size_t)(nl - line) + 1 : (size_t)(data + len - line);
      unsigned long long st;
      if (sscanf(line, "{\"step\":%llu", &st) == 1 && st <= s->step && nl) {
        /* the field is always the last one: ,"val_loss_full":V} */
        const size_t fl = sizeof TRAIN_FULL_FIELD - 1;
        char *f = NULL;
        for (char *p = line; !f && p + fl <= line + n; p++)
          if (!memcmp(p, TRAIN_FULL_FIELD, fl)) f = p;
        if (f) {
          util_buf_add(&keep, line, (size_t)(f - line));
          util_buf_add(&keep, "}\n", 2);
        } else {
          util_buf_add(&keep, line, n);
        }
      }
      line += n;
    }
    int rc = util_write_file_atomic(s->log_path, keep.data ? keep.data : "", keep.len);
    free(data);
    util_buf_free(&keep);
    if (rc) return -1;
  }
  s->log = fopen(s->log_path, s->step > 0 ? "a" : "w");
  if (!s->log) return util_err("%s: cannot open the training log: %s", s->log_path, strerror(errno));
  return 0;
}

/* Appends one step's line; a line the disk refused (full, I/O error) stops
 * the run before anything else is saved, so the log never silently misses
 * steps and the last checkpoint stays the one on disk. */
static int train_log_step(train_state *s, double loss, double lr, double norm, double tps, double val) {
  if (!s->log) return 0; /* a rank other than 0 */
  errno = 0;
  int bad = fprintf(s->log, "{\"step\":%llu,\"loss\":%.9g,\"lr\":%.9g,\"grad_norm\":%.9g,\"tokens_per_s\":%.1f",
                    (unsigned long long)s->step, loss, lr, norm, tps) < 0;
  if (s->job) /* a job's effective batch: ranks x batch_size x grad_accum */
    bad |= fprintf(s->log, ",\"ranks\":%d,\"batch\":%d", s->ranks,
                   s->ranks * s->cfg.train.batch_size * s->cfg.train.grad_accum) < 0;
  if (!isnan(val)) bad |= fprintf(s->log, ",\"val_loss\":%.9g", val) < 0;
  bad |= fprintf(s->log, "}\n") < 0;
  bad |= fflush(s->log) != 0;
  if (!bad && !ferror(s->log)) return 0;
  char good[PATH_MAX + 40];
  return util_err("%s: cannot write the training log: %s; stopped at step %llu, the last good checkpoint is %s",
                  s->log_path, errno ? strerror(errno) : "write error", (unsigned long long)s->step,
                  train_good(s, good, sizeof good));
}

/* Adds ,"val_loss_full":V to the last line when it is this step's (a run
 * stopped before its first step has none: the value is in the checkpoint
 * and on stdout only). The log is rewritten atomically and reopened for
 * appending, so a crash leaves the old log or the new one. */
static int train_log_full(train_state *s) {
  if (!s->log) return 0;
  if (fflush(s->log) != 0 || ferror(s->log))
    return util_err("%s: cannot write the training log: %s", s->log_path, strerror(errno));
  char *data;
  size_t len;
  if (util_read_file(s->log_path, &data, &len)) return -1;
  size_t start = len;
  if (len >= 2 && data[len - 1] == '\n' && data[len - 2] == '}')
    for (start = len - 1; start > 0 && data[start - 1] != '\n';) start--;
  unsigned long long st;
  int rc = 0;
  if (start < len && sscanf(data + start, "{\"step\":%llu,", &st) == 1 && st == s->step) {
    util_buf b = {0};
    if (util_buf_add(&b, data, len - 2) ||
        util_buf_printf(&b, TRAIN_FULL_FIELD "%.9g}\n", s->val_full) ||
        util_write_file_atomic(s->log_path, b.data, b.len))
      rc = -1;
    util_buf_free(&b);
    if (rc == 0) {
      fclose(s->log);
      if (!(s->log = fopen(s->log_path, "a")))
        rc = util_err("%s: cannot open the training log: %s", s->log_path, strerror(errno));
    }
  }
  free(data);
  return rc;
}

/* Removes the temp files a killed save left in the run directory: only
 * gptc's own names (a file we write + UTIL_TMP_SUFFIX), never anything
 * else, and only while we hold the directory's lock. */
static void train_clean_tmp(const char *dir) {
  static const char *const ours[] = {"last.safetensors", "last.opt.safetensors", "best.safetensors",
                                     "best.opt.safetensors", "log.jsonl", "vocab.txt", "train.tokens", "val.tokens",
                                     "loss.svg"};
  DIR *d = opendir(dir);
  if (!d) return;
  struct dirent *e;
  char path[PATH_MAX];
  while ((e = readdir(d)) != NULL) {
    for (size_t i = 0; i < sizeof ours / sizeof *ours; i++) {
      if (util_is_tmp_of(e->d_name, ours[i]) && !util_path(path, sizeof path, "%s/%s", dir, e->d_name)) {
        unlink(path);
        break;
      }
    }
  }
  closedir(d);
  util_errclear();
}

void train_fmt_eta(double sec, char *out, size_t n) {
  if (!(sec >= 0) || sec > 1e7) snprintf(out, n, "--");
  else if (sec >= 3600) snprintf(out, n, "%dh%02dm", (int)(sec / 3600), (int)fmod(sec / 60, 60));
  else if (sec >= 60) snprintf(out, n, "%dm%02ds", (int)(sec / 60), (int)fmod(sec, 60));
  else snprintf(out, n, "%ds", (int)sec);
}

/* Refuses a checkpoint (--init, --resume) whose stored config does not load
 * as data and pass the schema, or whose model shape differs from the
 * config's; names the field and both values as words. */
static int train_check_shape(const cfg_t *c, const char *path, const train_opts *o) {
  ckpt_meta meta;
  if (ckpt_load_meta(path, &meta)) return -1;
  cfg_t k;
  char where[1100];
  snprintf(where, sizeof where, "%s (config)", path);
  int rc = cfg_load_data(meta.config_src, where, &k);
  ckpt_meta_free(&meta);
  if (rc) return -1;
  enum { NUM, BOOL, TOK };
  struct {
    const char *name;
    int kind;
    long a, b;
  } f[] = {
      {"tokenizer", TOK, c->tokenizer, k.tokenizer},
      {"vocab_size", NUM, c->vocab_size, k.vocab_size},
      {"emb_dim", NUM, c->emb_dim, k.emb_dim},
      {"n_heads", NUM, c->n_heads, k.n_heads},
      {"n_layers", NUM, c->n_layers, k.n_layers},
      {"context_length", NUM, c->context_length, k.context_length},
      {"qkv_bias", BOOL, c->qkv_bias, k.qkv_bias},
      {"tie_embeddings", BOOL, c->tie_embeddings, k.tie_embeddings},
  };
  for (size_t i = 0; i < sizeof f / sizeof *f; i++) {
    if (f[i].a == f[i].b) continue;
    char va[32], vb[32];
    long v[2] = {f[i].b, f[i].a};
    char *out[2] = {vb, va};
    for (int j = 0; j < 2; j++) {
      if (f[i].kind == TOK) snprintf(out[j], 32, "%s", cfg_tokenizer_name((int)v[j]));
      else if (f[i].kind == BOOL) snprintf(out[j], 32, "%s", v[j] ? "true" : "false");
      else snprintf(out[j], 32, "%ld", v[j]);
    }
    const char *set = cfg_set_find(o->sets, o->n_sets, f[i].name);
    if (set)
      return util_err("%s: checkpoint does not fit: field '%s' is %s in the checkpoint but --set %s makes it %s (%s "
                      "keeps the model's shape; train into another --out)",
                      path, f[i].name, vb, set, va, o->resume ? "--resume" : "--init");
    return util_err("%s: checkpoint does not fit config %s: field '%s' is %s in the checkpoint but %s in the config",
                    path, c->path, f[i].name, vb, va);
  }
  return 0;
}

/* --resume with --set: each override that changes a field the checkpoint
 * stored (training fields only: train_check_shape has refused shape
 * changes) is printed and kept in s->resume_sets for a log.jsonl record,
 * so the log says where the run's settings changed. A config file edited
 * between runs changes training fields silently, as before. */
static int train_resume_sets(train_state *s, const train_opts *o) {
  if (!o->n_sets) return 0;
  ckpt_meta meta;
  if (ckpt_load_meta(s->last_path, &meta)) return -1;
  cfg_t k;
  char where[PATH_MAX + 16];
  snprintf(where, sizeof where, "%s (config)", s->last_path);
  int rc = cfg_load_data(meta.config_src, where, &k);
  ckpt_meta_free(&meta);
  for (int i = 0; i < o->n_sets && !rc; i++) {
    char field[128], was[256], now[256];
    const char *value;
    if (cfg_set_split(o->sets[i], field, sizeof field, &value)) return -1;
    /* a field set twice is reported once, with its last value */
    if (cfg_set_find(o->sets, o->n_sets, field) != o->sets[i]) continue;
    /* data paths are not stored in checkpoints (the text hash guards them) */
    if (!strcmp(field, "data")) continue;
    if (cfg_field_json(&k, field, was, sizeof was) || cfg_field_json(&s->cfg, field, now, sizeof now)) return -1;
    if (!strcmp(was, now)) continue;
    if (!o->quiet) printf("resume: --set %s changes %s from %s to %s\n", o->sets[i], field, was, now);
    if (util_buf_printf(&s->resume_sets, "%s\"%s\":{\"was\":%s,\"now\":%s}", s->resume_sets.len ? "," : "", field,
                        was, now))
      return -1;
  }
  return rc;
}

/* An entry as a quoted C-like string for messages: control characters,
 * quotes and backslashes escaped, the rest (UTF-8) as is, long ones cut. */
static void train_quote(const char *p, size_t n, char *out, size_t cap) {
  size_t o = 0;
  out[o++] = '"';
  for (size_t i = 0; i < n && o + 8 < cap; i++) {
    unsigned char c = (unsigned char)p[i];
    if (c == '\n') o += (size_t)snprintf(out + o, cap - o, "\\n");
    else if (c == '\t') o += (size_t)snprintf(out + o, cap - o, "\\t");
    else if (c == '"' || c == '\\') o += (size_t)snprintf(out + o, cap - o, "\\%c", c);
    else if (c < 0x20 || c == 0x7f) o += (size_t)snprintf(out + o, cap - o, "\\x%02x", c);
    else out[o++] = (char)c;
  }
  snprintf(out + o, cap - o, "\"");
}

/* --init from a char or word model: an id must mean the same character or
 * word in the new text as in the checkpoint, not only be one of as many
 * (the shape check compares vocab_size alone). */
static int train_check_init_vocab(const char *path, const tok_t *now) {
  if (tok_kind(now) == CFG_TOK_GPT2) return 0;
  ckpt_meta meta;
  if (ckpt_load_meta(path, &meta)) return -1;
  /* (another tokenizer kind is the shape check's to name) */
  int same_kind = meta.tokenizer == tok_kind(now), rc = 0;
  tok_t *was = same_kind ? tok_from_vocab(meta.tokenizer, meta.vocab, meta.vocab_len) : NULL;
  if (same_kind && !was) rc = util_err("%s: metadata 'vocab': %s", path, util_errmsg());
  else if (was && strcmp(tok_vocab_hash(was), tok_vocab_hash(now))) {
    int n = tok_vocab_size(was) < tok_vocab_size(now) ? tok_vocab_size(was) : tok_vocab_size(now);
    char a[96], b[96];
    size_t la, lb;
    for (int i = 0; i <= n && !rc; i++) {
      const char *ea = tok_entry(was, i, &la), *eb = tok_entry(now, i, &lb);
      if (ea && eb && la == lb && !memcmp(ea, eb, la)) continue;
      if (ea) train_quote(ea, la, a, sizeof a);
      else snprintf(a, sizeof a, "(none)");
      if (eb) train_quote(eb, lb, b, sizeof b);
      else snprintf(b, sizeof b, "(none)");
      rc = util_err("%s: the checkpoint's %s vocabulary differs from the training text's: entry %d is %s in the "
                    "checkpoint but %s in the text (--init needs the same vocabulary)",
                    path, cfg_tokenizer_name(meta.tokenizer), i, a, b);
    }
  }
  if (was) tok_free(was);
  ckpt_meta_free(&meta);
  return rc;
}

/* Every rank's config and options against rank 0's (before anything is
 * built: a rank with another config would build another cache). */
static int train_check_ranks(train_state *s, const train_opts *o) {
  char *src = cfg_serialize(&s->cfg), hash[65];
  if (!src) return -1;
  util_sha256_hex(src, strlen(src), hash);
  free(src);
  util_buf b = {0};
  util_buf_printf(&b, "out=%s steps=%ld resume=%d init=%s", s->out, o->steps, o->resume, o->init_ckpt ? o->init_ckpt : "-");
  if (o->zero) util_buf_printf(&b, " zero");
  for (int i = 0; i < o->n_sets; i++) util_buf_printf(&b, " set=%s", o->sets[i]);
  for (int i = 0; i < o->n_texts; i++) util_buf_printf(&b, " text=%s", o->texts[i]);
  char opts[65];
  util_sha256_hex(b.data ? b.data : "", b.len, opts);
  util_buf_free(&b);
  if (dist_check_same(s->job, "config (SHA-256 of the loaded config)", hash)) return -1;
  if (dist_check_same(s->job, "options (SHA-256 of --out, --steps, --resume, --init, --zero, --set, --text)", opts))
    return -1;
  /* one transport for the job: every rank on the same device, the same gradient type */
  char dev[64];
  snprintf(dev, sizeof dev, "%s/%s", o->device ? o->device : "cpu", o->dist_bf16 ? "bf16" : "fp32");
  return dist_check_same(s->job, "--device/--dist-grad", dev);
}

static int train_setup(train_state *s, const train_opts *o) {
  if (cfg_load_file_set(o->config_path, o->sets, o->n_sets, &s->cfg)) return -1;
  cfg_t *c = &s->cfg;
  if (!o->out_dir) {
    if (cfg_default_out(c, s->out, sizeof s->out)) return -1;
  } else if (util_path(s->out, sizeof s->out, "%s", o->out_dir))
    return util_err("--out: %s", util_errmsg());
  if (util_path(s->last_path, sizeof s->last_path, "%s/last.safetensors", s->out) ||
      util_path(s->best_path, sizeof s->best_path, "%s/best.safetensors", s->out) ||
      util_path(s->log_path, sizeof s->log_path, "%s/log.jsonl", s->out))
    return util_err("--out: %s", util_errmsg());
  if (o->resume && o->init_ckpt) return util_err("--resume and --init exclude each other");
  if (o->zero && !s->job)
    return util_err("--zero: shards the AdamW moments over the ranks of an MPI job: run it under mpirun -np N "
                    "(docs/distributed.md)");
  if (o->dist_bf16 && !s->job)
    return util_err("--dist-grad bf16: sets how gradients travel between the ranks of an MPI job: run it under mpirun "
                    "-np N (docs/distributed.md)");
  if (o->resume && !util_file_exists(s->last_path))
    return util_err("%s: no checkpoint to resume from (train without --resume first)", s->last_path);
  /* under a launcher: the same config and options on every rank, then the
   * others wait while rank 0 prepares the run directory, the token cache
   * and the kernels, so nothing is built twice or read half-written */
  char text0[65] = "";
  if (s->job && train_check_ranks(s, o)) return -1;
  if (!s->r0 && dist_share0(s->job, "waiting for rank 0 to prepare the run", text0, sizeof text0)) return -1;
  if (s->r0) {
    if (util_mkdir_p(s->out)) return -1;
    /* one run per directory: two would overwrite each other's checkpoints */
    if ((s->lock_fd = util_lock_dir(s->out, "gptc train")) < 0) return -1;
    if (!o->resume && util_file_exists(s->last_path))
      return util_err("%s exists: pass --resume to continue that run, or choose another --out (saved work is never "
                      "overwritten)", s->last_path);
    train_clean_tmp(s->out);
  }
  if (!o->n_texts && !c->n_data)
    return util_err("%s: no training text: pass --text FILE or set the config's 'data' field", c->path);

  if (s->r0 ? data_load(c, o->n_texts ? o->texts : NULL, o->n_texts, s->out, &s->ds)
            : data_load_run(c, o->n_texts ? o->texts : NULL, o->n_texts, s->out, text0, "(rank 0's run)", &s->ds))
    return s->r0 ? -1
                 : util_err("its training text differs from rank 0's: %s", util_errmsg());
  /* where the text is, for `gptc eval --split` (a hint: the hash decides);
   * a path that does not resolve or is not UTF-8 records none */
  int n_paths = o->n_texts ? o->n_texts : c->n_data;
  for (int i = 0; i < n_paths; i++) {
    char *abs = realpath(o->n_texts ? o->texts[i] : c->data[i], NULL);
    if (!abs || util_utf8_invalid_at(abs, strlen(abs)) >= 0) {
      free(abs);
      break;
    }
    s->texts[s->n_texts++] = abs;
  }
  if (s->n_texts < n_paths) {
    for (int i = 0; i < s->n_texts; i++) free(s->texts[i]);
    s->n_texts = 0;
  }
  /* before the model is compiled: a checkpoint that cannot fit fails fast */
  if (o->init_ckpt && (train_check_shape(c, o->init_ckpt, o) || train_check_init_vocab(o->init_ckpt, s->ds.tok)))
    return -1;
  const cfg_train *tr = &c->train;
  /* "random" draws any start of the split: the loader only checks that one
   * window fits (stride 1, no shuffle, no drop) */
  int rnd = tr->sampling == CFG_SAMPLE_RANDOM;
  if (data_loader_init(&s->train_dl, s->ds.train, s->ds.n_train, tr->batch_size, tr->max_length,
                       rnd ? 1 : tr->stride, rnd ? 0 : tr->shuffle, rnd ? 0 : tr->drop_last, tr->seed, "train"))
    return -1;
  /* eval_steps * batch_size windows spread over the val split (0: all) */
  if (!(s->val_win = data_eval_windows(s->ds.n_val, tr->max_length, (size_t)tr->eval_steps * (size_t)tr->batch_size,
                                       tr->seed, "val", &s->n_val_win)))
    return -1;
  if (s->train_dl.n_batches == 0)
    return util_err("train split: %zu windows make no full batch of %d (lower train.batch_size or set drop_last = false)",
                    s->train_dl.n_windows, tr->batch_size);

  /* the GEMM schedules of this host (tune.h), before the model is generated */
  if (!o->no_tune && (!o->device || !strcmp(o->device, "cpu")) &&
      tune_ensure(c, TUNE_AUTO_BUDGET, o->quiet ? NULL : stderr))
    return -1;
  /* one rank per GPU: this rank's is its local rank (on the CPU, unused) */
  if (s->job) cuda_use_device(s->job->local_rank);
  if (backend_open(c, o->device, &s->be)) return -1;
  backend *m = s->be;
  /* --zero: the moments live in shards (dist.h), never whole on a rank */
  if (m->ops->alloc(m, BACKEND_TRAIN | (o->zero ? BACKEND_NO_MOMENTS : 0))) return -1;
  size_t BT = (size_t)m->B * (size_t)m->T * (size_t)tr->grad_accum;
  if (m->host_params) {
    s->params = m->host_params, s->adam_m = m->host_m, s->adam_v = m->host_v;
  } else {
    s->own_host = 1;
    if (!(s->params = train_alloc(m->n_params, "parameters")) ||
        !(s->adam_m = train_alloc(m->n_params, "AdamW first moments")) ||
        !(s->adam_v = train_alloc(m->n_params, "AdamW second moments")))
      return -1;
  }
  s->inputs = util_malloc(BT * sizeof(int32_t), "input batch");
  s->targets = util_malloc(BT * sizeof(int32_t), "target batch");
  if (!s->inputs || !s->targets) return -1;

  s->best_val = INFINITY;
  if (o->resume) {
    uint64_t cut;
    int fixed = ckpt_resume_pair(s->last_path, &cut);
    if (fixed < 0) return -1;
    ckpt_meta meta;
    if (ckpt_load_meta(s->last_path, &meta)) return -1;
    if (fixed && cut)
      fprintf(stderr, "gptc: resuming from step %llu: the save of step %llu was interrupted\n",
              (unsigned long long)meta.step, (unsigned long long)cut);
    else if (fixed)
      fprintf(stderr, "gptc: resuming from step %llu: the next save was interrupted\n", (unsigned long long)meta.step);
    s->step = meta.step;
    s->data_pos = meta.data_pos;
    s->best_val = meta.best_val;
    int same_text = !meta.text_hash[0] || !strcmp(meta.text_hash, s->ds.text_hash);
    ckpt_meta_free(&meta);
    if (!same_text)
      return util_err("%s: the training text changed since this checkpoint; resume needs the same text (use --init "
                      "to fine-tune on new text)", s->last_path);
    if (train_check_shape(c, s->last_path, o) || train_resume_sets(s, o)) return -1;
    if (ckpt_load_params(s->last_path, m->tensors, m->n_tensors, m->n_params, s->params, s->adam_m, s->adam_v))
      return -1;
    char bad[300];
    if (ckpt_nonfinite(m->tensors, m->n_tensors, s->params, "the weights", bad, sizeof bad) ||
        (s->adam_m && ckpt_nonfinite(m->tensors, m->n_tensors, s->adam_m, "the AdamW first moments", bad, sizeof bad)) ||
        (s->adam_v && ckpt_nonfinite(m->tensors, m->n_tensors, s->adam_v, "the AdamW second moments", bad, sizeof bad)))
      return util_err("%s: cannot resume: %s (the run had diverged when this was saved); restart it, or --init from "
                      "an earlier checkpoint", s->last_path, bad);
    s->have_good = 1;
    s->good_step = s->step;
  } else if (o->init_ckpt) {
    if (ckpt_load_params(o->init_ckpt, m->tensors, m->n_tensors, m->n_params, s->params, NULL, NULL) ||
        ckpt_check_finite(o->init_ckpt, m->tensors, m->n_tensors, s->params))
      return -1;
  } else {
    train_init_tensors(m->tensors, m->n_tensors, m->n_params, s->params, c->train.seed);
  }
  if (m->ops->upload(m, s->params, o->resume ? s->adam_m : NULL, o->resume ? s->adam_v : NULL)) return -1;
  if (train_open_log(s)) return -1;
  if (s->resume_sets.len && s->log) { /* after the trim: the record stays with its step */
    errno = 0;
    if (fprintf(s->log, "{\"step\":%llu,\"resume_set\":{%s}}\n", (unsigned long long)s->step, s->resume_sets.data) < 0 ||
        fflush(s->log) != 0)
      return util_err("%s: cannot write the training log: %s", s->log_path, errno ? strerror(errno) : "write error");
  }
  if (s->job && s->r0) {
    snprintf(text0, sizeof text0, "%s", s->ds.text_hash);
    if (dist_share0(s->job, "releasing the other ranks", text0, sizeof text0)) return -1;
  }
  if (s->job || tr->grad_accum > 1) {
    /* the ordered sum over micro-batches (dist.h), where the gradients are */
    if (!dist_backend_ok(m))
      return util_err("--device %s: cannot sum gradients in order on this device (data-parallel training and "
                      "grad_accum > 1 need it)", m->device);
    /* a GPU's gradients travel over NCCL on its training stream (MPI keeps the small collectives) */
    if (s->job && m->stream && dist_nccl_open(s->job, m->stream)) return -1;
    if (!s->job && !(s->acc = dist_local())) return -1;
    if (!s->acc) s->acc = s->job;
    s->acc->zero = o->zero;
    s->acc->grad16 = o->dist_bf16;
    if (dist_bind(s->acc, m)) return -1;
  }
  if (o->zero) {
    if (!s->acc || !m->ops->adamw_range || s->adam_m)
      return util_err("--zero: device %s cannot shard the AdamW moments (ZeRO-1 runs on the CPU)", m->device);
    /* ZeRO-1 resumes only the rank's slice of the moments */
    size_t lo = s->acc->off[s->rank], hi = s->acc->off[s->rank + 1];
    if (o->resume) {
      if (ckpt_load_moments_range(s->last_path, m->tensors, m->n_tensors, m->n_params, lo, hi, s->acc->zm, s->acc->zv))
        return -1;
      for (size_t i = 0; i < hi - lo; i++)
        if (!isfinite(s->acc->zm[i]) || !isfinite(s->acc->zv[i]))
          return util_err("%s: cannot resume: the AdamW moments are not finite at parameter %zu (the run had diverged "
                          "when this was saved); restart it, or --init from an earlier checkpoint", s->last_path, lo + i);
    }
  }
  return 0;
}

/* After the final save: one evaluation over every non-overlapping window of
 * the val split (train_eval_windows, as `gptc eval --split val`), printed,
 * logged and saved into last.safetensors as val_loss_full. A signal during
 * it skips it (the checkpoint is saved already); the first signal, which
 * may have ended the run, is kept for the closing message. */
static int train_final_eval(train_state *s, int quiet) {
  sig_atomic_t first = train_stop_signal;
  train_stop_signal = 0;
  size_t n = 0, *win = data_eval_windows(s->ds.n_val, s->cfg.train.max_length, 0, 0, "val", &n); // (n,) starts
  if (!win) return -1;
  if (!quiet) {
    printf("final evaluation: %zu windows of %d tokens over the val split ...\n", n, s->cfg.train.max_length);
    fflush(stdout);
  }
  double loss, pos;
  /* a job's ranks evaluate together, so a signal does not skip it there */
  int r = s->job ? train_eval_job(s, win, n, &loss, &pos)
                 : train_eval_windows(s->be, s->ds.val, win, n, s->inputs, s->targets, &train_stop_signal, &loss, &pos);
  free(win);
  int stopped = train_stop_signal;
  train_stop_signal = first;
  if (r < 0) return -1;
  if (r > 0 || stopped) {
    fprintf(stderr, "gptc: final evaluation skipped (signal %d); %s is saved without val_loss_full (`gptc eval "
                    "--split val` computes it)\n", (int)stopped, s->last_path);
    return 0;
  }
  s->have_full = 1;
  s->val_full = loss;
  if (train_save(s, s->last_path, 1) || train_log_full(s)) return -1;
  if (!quiet) {
    printf("val_loss_full %.9g (step %llu, %.0f positions)\n", loss, (unsigned long long)s->step, pos);
    fflush(stdout);
  }
  return 0;
}

int train_run(const train_opts *o) {
  train_state s;
  memset(&s, 0, sizeof s);
  s.lock_fd = -1;
  if (o->threads > 0) cpu_set_threads(o->threads);
  /* under mpirun/srun: join the job (dist.h); without a launcher, NULL */
  if (dist_open(&s.job)) return -1;
  s.rank = s.job ? s.job->rank : 0;
  s.ranks = s.job ? s.job->size : 1;
  s.r0 = s.rank == 0;
  if (train_setup(&s, o)) {
    dist *job = s.job;
    train_state_free(&s);
    if (job) dist_fail(job, util_errmsg()); /* ends every rank */
    return -1;
  }
  const cfg_t *c = &s.cfg;
  const cfg_train *tr = &c->train;
  backend *m = s.be;
  long total = o->steps > 0 ? o->steps : tr->steps;
  size_t tokens_per_step = (size_t)m->B * m->T * tr->grad_accum * (size_t)s.ranks;
  int quiet = o->quiet || !s.r0; /* rank 0 speaks for the job */
  int tty = !quiet && isatty(STDOUT_FILENO);

  if (!quiet) {
    size_t n_real = 0;
    for (int i = 0; i < m->n_tensors; i++) n_real += m->tensors[i].numel;
    char per[64];
    if (tr->sampling == CFG_SAMPLE_RANDOM) snprintf(per, sizeof per, "random batches");
    else snprintf(per, sizeof per, "%zu batches/epoch", s.train_dl.n_batches);
    printf("gptc train: %s | %.2fM parameters | vocab %d | %zu train / %zu val tokens | %s | %s\n", c->name,
           n_real / 1e6, c->vocab_size, s.ds.n_train, s.ds.n_val, per, m->about);
    if (s.job) {
      printf("data-parallel: %d ranks (%s) | batch %d = %d ranks x batch_size %d x grad_accum %d\n", s.ranks,
             s.job->t->name, s.ranks * tr->batch_size * tr->grad_accum, s.ranks, tr->batch_size, tr->grad_accum);
      printf("gradients between ranks: %s | %.0f bytes sent and received per step by rank 0\n",
             s.job->grad16 ? "bf16" : "fp32", dist_step_bytes(s.job, tr->grad_accum));
    }
    if (s.acc && s.acc->zero) {
      size_t most = 0; /* the largest shard: the optimizer state of the fullest rank */
      for (int r = 0; r < s.ranks; r++)
        if (s.acc->off[r + 1] - s.acc->off[r] > most) most = s.acc->off[r + 1] - s.acc->off[r];
      printf("ZeRO-1: AdamW moments sharded over %d ranks | optimizer state %zu bytes per rank (at most; %zu unsharded)\n",
             s.ranks, 2 * most * sizeof(float), 2 * m->n_params * sizeof(float));
    }
    if (s.step > 0) printf("resuming at step %llu from %s\n", (unsigned long long)s.step, s.last_path);
    fflush(stdout);
  }

  struct sigaction sa, old_int, old_term;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = train_on_signal;
  sigaction(SIGINT, &sa, &old_int);
  sigaction(SIGTERM, &sa, &old_term);
  train_stop_signal = 0;

  int rc = 0;
  double t_start = util_now(), val = NAN;
  uint64_t first_step = s.step;
  /* under a launcher the ranks stop together: at the step where the
   * exchange shows a rank's signal (stop_rank) */
  int stop = 0, stop_rank = -1;
  while ((long)s.step < total && !(s.job ? stop : train_stop_signal)) {
    double t0 = util_now();
    size_t bt = (size_t)m->B * (size_t)m->T;
    backend_step st = {s.inputs, s.targets, tr->grad_accum, tr->seed, s.data_pos, c->drop_rate > 0, {0, 0, 0, 0, 0, 0, 0},
                       tr->grad_clip};
    uint64_t first = s.data_pos;
    s.data_pos += (uint64_t)tr->grad_accum * (uint64_t)s.ranks;
    for (int micro = 0; micro < tr->grad_accum; micro++) {
      uint64_t g = first + (uint64_t)dist_micro(s.rank, s.ranks, micro);
      if (tr->sampling == CFG_SAMPLE_RANDOM)
        data_random_batch(&s.train_dl, g, s.inputs + micro * bt, s.targets + micro * bt, NULL);
      else
        data_batch(&s.train_dl, g / s.train_dl.n_batches, g % s.train_dl.n_batches, s.inputs + micro * bt,
                   s.targets + micro * bt);
    }
    double lr = train_lr(tr, (long)s.step);
    st.adamw = (gptc_adamw_args){(float)lr, (float)tr->beta1, (float)tr->beta2, (float)tr->eps,
                                 (float)tr->weight_decay, 1.0f, (int)s.step + 1};
    double loss, norm;
    int bad_rank = -1;
    stop = train_stop_signal;
    if (s.acc && (s.ranks > 1 || tr->grad_accum > 1 || s.acc->zero) /* --zero: the shard's AdamW is dist_step's */
            ? dist_step(s.acc, m, &st, &loss, &norm, &stop, &stop_rank, &bad_rank)
            : m->ops->train_step(m, &st, &loss, &norm)) {
      rc = -1;
      break;
    }
    if (s.job && stop) train_stop_signal = stop;
    if (!isfinite(loss) || !isfinite(norm)) {
      char good[PATH_MAX + 40], who[64] = "";
      if (s.job && bad_rank >= 0) snprintf(who, sizeof who, " (from a micro-batch of rank %d of %d)", bad_rank, s.ranks);
      util_err("training stopped: %s is %s at step %llu%s; the last good checkpoint is %s",
               isfinite(loss) ? "gradient norm" : "loss", isnan(isfinite(loss) ? norm : loss) ? "nan" : "inf",
               (unsigned long long)s.step + 1, who, train_good(&s, good, sizeof good));
      rc = -1;
      break;
    }
    s.step++;
    double dt = util_now() - t0, tps = tokens_per_step / dt;

    int do_eval = s.step % (uint64_t)tr->eval_interval == 0 || (long)s.step == total;
    double step_val = NAN;
    if (do_eval) {
      int failed = 0;
      step_val = val = train_eval(&s, &failed);
      if (failed) {
        rc = -1;
        break;
      }
    }
    if (train_log_step(&s, loss, lr, norm, tps, step_val)) {
      rc = -1;
      break;
    }

    if (do_eval) {
      if (!isnan(step_val) && step_val < s.best_val) {
        s.best_val = step_val;
        if (train_save(&s, s.best_path, 0)) {
          rc = -1;
          break;
        }
      }
      if (train_save(&s, s.last_path, 1)) {
        rc = -1;
        break;
      }
      if (s.r0) plot_train_update(s.out); /* RUN_DIR/loss.svg; a failure warns once, never stops the run */
    }
    if (!quiet) {
      double el = util_now() - t_start, eta = el / (double)(s.step - first_step) * (double)(total - (long)s.step);
      char etas[32], vals[32] = "";
      train_fmt_eta(eta, etas, sizeof etas);
      if (!isnan(val)) snprintf(vals, sizeof vals, " | val %.4f", val);
      char job[64] = ""; /* a job's line says its effective batch */
      if (s.job) snprintf(job, sizeof job, " | batch %d on %d ranks", s.ranks * tr->batch_size * tr->grad_accum, s.ranks);
      if (tty) {
        printf("\rstep %llu/%ld | loss %.4f%s | lr %.2e | %.0f tok/s%s | ETA %s   ", (unsigned long long)s.step, total,
               loss, vals, lr, tps, job, etas);
        if (do_eval) printf("\n");
        fflush(stdout);
      } else if (do_eval || s.step % 10 == 0 || s.step == 1) {
        printf("step %llu/%ld | loss %.4f%s | lr %.2e | %.0f tok/s%s | ETA %s\n", (unsigned long long)s.step, total,
               loss, vals, lr, tps, job, etas);
        fflush(stdout);
      }
    }
  }
  int saved = 0;
  if (rc == 0 && (s.step > first_step || !util_file_exists(s.last_path))) {
    /* the final state (or the state at Ctrl-C) is always saved; an
     * evaluation step's save of this very state already did it */
    if (!(s.have_good && s.good_step == s.step && s.step > first_step)) rc = train_save(&s, s.last_path, 1);
    saved = rc == 0;
  }
  if (tty) printf("\n");
  /* then the full evaluation of that state, saved into it (a run that did
   * no step has nothing new to evaluate: `gptc eval --split val` does it) */
  if (saved) rc = train_final_eval(&s, quiet);
  /* the chart with the final full val on it */
  if (saved && rc == 0 && s.r0) plot_train_update(s.out);
  if (rc == 0 && !quiet) {
    char on[48] = "";
    if (s.job && stop_rank >= 0) snprintf(on, sizeof on, " on rank %d of %d", stop_rank, s.ranks);
    if (train_stop_signal)
      printf("stopped by signal %d%s at step %llu; saved %s (continue with --resume)\n", (int)train_stop_signal, on,
             (unsigned long long)s.step, s.last_path);
    else
      printf("done: step %llu | best val %.4f | saved %s\n", (unsigned long long)s.step, s.best_val, s.last_path);
  }
  sigaction(SIGINT, &old_int, NULL);
  sigaction(SIGTERM, &old_term, NULL);
  dist *job = s.job;
  train_state_free(&s);
  if (job && rc) dist_fail(job, util_errmsg()); /* a failure on one rank ends every rank */
  dist_close(job);
  return rc;
}
