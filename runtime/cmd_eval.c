/* cmd_eval: `gptc eval` — mean cross-entropy of a checkpoint on a text over
 * non-overlapping context-length windows (the seeds' calc_loss_loader with
 * max_length = stride = context_length), every window counted once. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cmds.h"
#include "train.h"
#include "util.h"

static const cli_opt cmd_eval_opts[] = {
    {"--ckpt", "CKPT", "checkpoint (.safetensors) to evaluate (required)"},
    {"--text", "FILE", "UTF-8 text to evaluate on (required)"},
    {"--threads", "N", "CPU threads (default: all cores)"},
    {"--device", "NAME", "cpu (default), cuda, or auto (cuda when a usable GPU is present)"},
    {NULL, NULL, NULL},
};

static const cli_spec cmd_eval_spec = {
    "gptc eval --ckpt CKPT --text FILE",
    "Prints the mean cross-entropy over every target position of the windows ids[i:i+T] -> ids[i+1:i+T+1],\n"
    "i = 0, T, 2T, ... while i < len - T (T = context_length); the last line is `loss <value>`.",
    cmd_eval_opts, 0};

static int cmd_eval_run(const char *ckpt, const char *text_path, const char *device) {
  char *text;
  size_t len;
  if (util_read_file(text_path, &text, &len)) return -1;
  if (len == 0) {
    free(text);
    return util_err("%s: empty text", text_path);
  }
  long bad = util_utf8_invalid_at(text, len);
  if (bad >= 0) {
    free(text);
    return util_err("%s: invalid UTF-8 at byte offset %ld", text_path, bad);
  }
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

int cmd_eval(int argc, char **argv) {
  cli_args a;
  int code;
  if (cli_parse(&cmd_eval_spec, argc, argv, &a, &code)) return code;
  const char *ckpt = cli_get(&a, "--ckpt"), *text = cli_get(&a, "--text");
  if (!ckpt) return cli_usage_err(&a, "option '--ckpt' is required");
  if (!text) return cli_usage_err(&a, "option '--text' is required");
  long threads = 0;
  if (cli_int(&a, "--threads", 1, 4096, &threads)) return 2;
  if (threads) cpu_set_threads((int)threads);
  const char *device = cli_get(&a, "--device");
  if (device && strcmp(device, "cpu") && strcmp(device, "cuda") && strcmp(device, "auto"))
    return cli_usage_err(&a, "option '--device' must be cpu, cuda or auto (got '%s')", device);
  return cmd_eval_run(ckpt, text, device) ? cli_fail() : 0;
}
