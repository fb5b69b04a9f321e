/* cmd_eval: `gptc eval` — mean cross-entropy of a checkpoint on a text over
 * non-overlapping context-length windows (the seeds' calc_loss_loader with
 * max_length = stride = context_length), every window counted once; with
 * --split, on the checkpoint's own run's split of its own text through
 * train_eval_windows, the evaluator of training's val_loss_full. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cmds.h"
#include "ckpt.h"
#include "data.h"
#include "train.h"
#include "util.h"

static const cli_opt cmd_eval_opts[] = {
    {"--ckpt", "CKPT", "checkpoint (.safetensors) to evaluate (required)"},
    {"--text", "PATH", "UTF-8 text to evaluate on (required without --split); with --split: the run's training text, "
                       "a file or a directory of *.txt (repeatable, in the run's order; default: the paths the "
                       "checkpoint records)"},
    {"--split", "NAME", "val or train: the checkpoint's own split of --text (its config's val_ratio and tokenizer; "
                        "the text must be the run's: its SHA-256 is checked), in max_length windows"},
    {"--threads", "N", "CPU threads (default: all cores)"},
    {"--device", "NAME", "cpu (default), cuda, or auto (cuda when a usable GPU is present)"},
    {NULL, NULL, NULL},
};

static const cli_spec cmd_eval_spec = {
    "gptc eval --ckpt CKPT --text FILE | gptc eval --ckpt CKPT --split val|train [--text PATH...]",
    "Prints the mean cross-entropy over every target position of the windows ids[i:i+T] -> ids[i+1:i+T+1],\n"
    "i = 0, T, 2T, ... while i < len - T (T = context_length); the last line is `loss <value>`.\n"
    "With --split, T is the checkpoint's train.max_length and the ids are its run's split of the text, so\n"
    "`--split val` on a run's last.safetensors gives its val_loss_full bit for bit (same device and threads;\n"
    "docs/validation.md); the last line is `loss <value>` with 9 significant digits, the line before it\n"
    "holds the exact double in hex.",
    cmd_eval_opts, 0};

static int cmd_eval_run(const char *ckpt, const char *text_path, const char *device) {
  char *text;
  size_t len;
  if (util_read_text(text_path, &text, &len)) return -1;
  train_loaded l;
  if (train_open_ckpt(ckpt, device, &l)) {
    free(text);
    return -1;
  }
  int32_t *ids = NULL;
  size_t n = 0;
  int rc = -1;
  int32_t *in = NULL, *tg = NULL;
  if (tok_encode(l.tok, text, len, 1, &ids, &n)) goto out;
  backend *m = l.be;
  int B = m->eval_B, T = m->eval_T;
  if (n <= (size_t)T) {
    util_err("%s: %zu tokens is too short for one window of context_length %d + 1", text_path, n, T);
    goto out;
  }
  /* windows start at i = kT while kT < n - T: k < ceil((n - T) / T) = floor((n - 1) / T) */
  size_t n_windows = (n - 1) / (size_t)T;
  in = util_malloc((size_t)B * T * sizeof(int32_t), "input batch");
  tg = util_malloc((size_t)B * T * sizeof(int32_t), "target batch");
  if (!in || !tg || m->ops->alloc(m, BACKEND_EVAL)) goto out;
  double sum = 0, count = 0;
  for (size_t w0 = 0; w0 < n_windows; w0 += (size_t)B) {
    size_t valid = 0;
    for (int b = 0; b < B; b++) {
      size_t w = w0 + (size_t)b;
      for (int t = 0; t < T; t++) {
        if (w < n_windows) {
          in[b * T + t] = ids[w * T + t];
          tg[b * T + t] = ids[w * T + t + 1];
          valid++;
        } else {
          in[b * T + t] = 0;
          tg[b * T + t] = -1;
        }
      }
    }
    float loss;
    if (m->ops->forward_eval(m, in, tg, &loss)) goto out;
    sum += (double)loss * (double)valid;
    count += (double)valid;
  }
  double mean = sum / count;
  printf("windows %zu | tokens %zu | positions %.0f | perplexity %.4f\n", n_windows, n, count, exp(mean));
  printf("loss %.6f\n", mean);
  rc = 0;
out:
  free(text);
  free(ids);
  free(in);
  free(tg);
  train_loaded_free(&l);
  return rc;
}

/* --split: the run's text split as training split it, verified by hash,
 * then every non-overlapping max_length window of the split. */
static int cmd_eval_split(const char *ckpt, const char *split, const char *const *texts, int n_texts,
                          const char *device) {
  ckpt_meta meta;
  if (ckpt_load_meta(ckpt, &meta)) return -1;
  cfg_t cfg;
  data_set ds = {0};
  train_loaded l = {0};
  size_t *win = NULL, n_win = 0;
  int32_t *in = NULL, *tg = NULL;
  int rc = -1;
  char where[1100], dir[4096];
  snprintf(where, sizeof where, "%s (config)", ckpt);
  if (cfg_load_data(meta.config_src, where, &cfg)) goto out;
  if (!meta.text_hash[0]) {
    util_err("%s: metadata 'text_hash' is empty (not written by gptc train): --split needs the run's text hash; "
             "use --text alone", ckpt);
    goto out;
  }
  if (n_texts == 0 && meta.n_texts == 0) {
    util_err("%s: the checkpoint does not record where its text is: pass it with --text", ckpt);
    goto out;
  }
  if (n_texts == 0) texts = (const char *const *)meta.texts, n_texts = meta.n_texts;
  if (data_cache_dir(&cfg, dir, sizeof dir) ||
      data_load_run(&cfg, texts, n_texts, dir, meta.text_hash, ckpt, &ds) ||
      train_open_ckpt(ckpt, device, &l))
    goto out;
  int val = !strcmp(split, "val");
  const int32_t *ids = val ? ds.val : ds.train;
  size_t n = val ? ds.n_val : ds.n_train;
  backend *m = l.be;
  /* the training shape (B, T = batch_size, max_length): the forward the run evaluated with */
  if (!(win = data_eval_windows(n, m->T, 0, 0, split, &n_win))) goto out;
  in = util_malloc((size_t)m->B * m->T * sizeof(int32_t), "input batch");  // (B, T)
  tg = util_malloc((size_t)m->B * m->T * sizeof(int32_t), "target batch"); // (B, T)
  if (!in || !tg || m->ops->alloc(m, BACKEND_TRAIN)) goto out;
  double loss, pos;
  if (train_eval_windows(m, ids, win, n_win, in, tg, NULL, &loss, &pos)) goto out;
  printf("split %s | windows %zu of %d | tokens %zu | positions %.0f | perplexity %.4f | exact %a\n", split, n_win,
         m->T, n, pos, exp(loss), loss);
  printf("loss %.9g\n", loss);
  rc = 0;
out:
  ckpt_meta_free(&meta);
  data_free(&ds);
  if (l.be) train_loaded_free(&l);
  free(win);
  free(in);
  free(tg);
  return rc;
}

int cmd_eval(int argc, char **argv) {
  cli_args a;
  int code;
  if (cli_parse(&cmd_eval_spec, argc, argv, &a, &code)) return code;
  const char *ckpt = cli_get(&a, "--ckpt"), *text = cli_get(&a, "--text"), *split = cli_get(&a, "--split");
  if (!ckpt) return cli_usage_err(&a, "option '--ckpt' is required");
  if (split && strcmp(split, "val") && strcmp(split, "train"))
    return cli_usage_err(&a, "option '--split' must be val or train (got '%s')", split);
  if (!text && !split) return cli_usage_err(&a, "option '--text' is required (or --split)");
  long threads = 0;
  if (cli_int(&a, "--threads", 1, 4096, &threads)) return 2;
  if (threads) cpu_set_threads((int)threads);
  const char *device = cli_get(&a, "--device");
  if (device && strcmp(device, "cpu") && strcmp(device, "cuda") && strcmp(device, "auto"))
    return cli_usage_err(&a, "option '--device' must be cpu, cuda or auto (got '%s')", device);
  if (split) {
    const char *texts[CFG_MAX_DATA];
    int n = cli_all(&a, "--text", texts, CFG_MAX_DATA);
    return cmd_eval_split(ckpt, split, texts, n, device) ? cli_fail() : 0;
  }
  return cmd_eval_run(ckpt, text, device) ? cli_fail() : 0;
}
