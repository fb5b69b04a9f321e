/* cmd_data: `gptc data`, the data pipeline on its own: loads and tokenizes a
 * config's text (through the token cache), then prints the summary and the
 * first training batch the way the seed notebooks' data loader printouts do. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cfg.h"
#include "cli.h"
#include "cmds.h"
#include "data.h"
#include "util.h"

static const cli_opt cmd_data_opts[] = {
    {"--config", "FILE", "model config (.lua); required"},
    CLI_OPT_SET,
    {"--text", "PATH", "text file, or directory of *.txt files; repeatable; replaces the config's data"},
    {"--batch-size", "N", "override train.batch_size"},
    {"--max-length", "N", "override train.max_length (at most context_length)"},
    {"--stride", "N", "override train.stride"},
    {"--no-shuffle", NULL, "show the first batch in order (train.shuffle = false)"},
    {"--ids", "N", "ids shown per batch row (default 16; 0 shows all)"},
    {NULL, NULL, NULL},
};

static const cli_spec cmd_data_spec = {
    "gptc data --config FILE [--set FIELD=VALUE]... [--text PATH]... [options]",
    "Loads the config's text (or the --text paths), splits it into train and val by characters,\n"
    "tokenizes each split (cached in <cache>/data/<config name>, where <cache> is $GPTC_CACHE or\n"
    "~/.cache/gptc), and prints the counts, how training draws its batches (train.sampling) and how\n"
    "evaluation reads the val split, and the first training batch.",
    cmd_data_opts,
    0,
};

static int cmd_data_digits(long v) {
  int d = v < 0 ? 2 : 1;
  for (v = v < 0 ? -v : v; v >= 10; v /= 10) d++;
  return d;
}

/* Rows of a (B, T) batch, `show` ids each (the rest summarised). */
static void cmd_data_rows(const char *label, const int32_t *m, int B, int T, int show, int width) {
  printf("%s\n", label);
  for (int r = 0; r < B; r++) {
    const int32_t *row = m + (size_t)r * (size_t)T; // (T,)
    printf("  [");
    for (int t = 0; t < T && t < show; t++) printf("%s%*d", t ? " " : "", width, row[t]);
    if (show < T) printf(" ... +%d more", T - show);
    printf("]\n");
  }
}

/* How training draws its batches: the windows loader, or "random" starts. */
static void cmd_data_train_line(const cfg_train *tr, const data_loader *dl, size_t n_starts) {
  if (tr->sampling == CFG_SAMPLE_RANDOM) {
    printf("%-6s random  batch_size %d, max_length %d, window starts uniform over 0..%zu each micro-batch (seed "
           "%llu)\n", "train", dl->B, dl->T, n_starts - 1, (unsigned long long)dl->seed);
    return;
  }
  char order[64] = "in order";
  if (dl->shuffle) snprintf(order, sizeof order, "shuffled (seed %llu)", (unsigned long long)dl->seed);
  printf("%-6s loader  batch_size %d, max_length %d, stride %d, %s, %s\n", "train", dl->B, dl->T, dl->stride, order,
         dl->drop_last ? "drop_last" : "last batch padded");
}

/* How evaluation reads the val split (docs/validation.md). */
static void cmd_data_val_line(const cfg_train *tr, size_t n_val_windows) {
  size_t want = (size_t)tr->eval_steps * (size_t)tr->batch_size;
  if (tr->eval_steps == 0 || want >= n_val_windows)
    printf("%-6s eval    batch_size %d, max_length %d, every one of the %zu windows at each evaluation\n", "val",
           tr->batch_size, tr->max_length, n_val_windows);
  else
    printf("%-6s eval    batch_size %d, max_length %d, eval_steps %d: %zu windows spread over the split (seed %llu), "
           "all %zu at the end\n", "val", tr->batch_size, tr->max_length, tr->eval_steps, want,
           (unsigned long long)tr->seed, n_val_windows);
}

static int cmd_data_run(cfg_t *cfg, const char **texts, int n_texts, int show) {
  char dir[4096];
  if (data_cache_dir(cfg, dir, sizeof dir)) return cli_fail();
  data_set ds;
  if (data_load(cfg, n_texts ? texts : NULL, n_texts, dir, &ds)) return cli_fail();
  const cfg_train *tr = &cfg->train;
  data_loader tl, vl;
  if (data_loader_init(&tl, ds.train, ds.n_train, tr->batch_size, tr->max_length, tr->stride, tr->shuffle,
                       tr->drop_last, tr->seed, "train") ||
      data_loader_init(&vl, ds.val, ds.n_val, tr->batch_size, tr->max_length, tr->stride, 0, 0, tr->seed, "val")) {
    data_free(&ds);
    return cli_fail();
  }
  size_t cells = (size_t)tl.B * (size_t)tl.T;
  int32_t *in = util_malloc(cells * sizeof *in, "batch inputs");    // (B, T)
  int32_t *tg = util_malloc(cells * sizeof *tg, "batch targets");   // (B, T)
  int random = tr->sampling == CFG_SAMPLE_RANDOM, rows = -1;
  if (in && tg && random) {
    data_random_batch(&tl, 0, in, tg, NULL);
    rows = tl.B;
  } else if (in && tg)
    rows = data_batch(&tl, 0, 0, in, tg);
  if (rows < 0) {
    free(in);
    free(tg);
    data_free(&ds);
    return cli_fail();
  }

  printf("%-12s %s (%s)\n", "config", cfg->name, cfg->path);
  printf("%-12s %s\n", "tokenizer", cfg_tokenizer_name(cfg->tokenizer));
  if (n_texts)
    for (int i = 0; i < n_texts; i++) printf("%-12s %s\n", i ? "" : "text", texts[i]);
  else
    for (int i = 0; i < cfg->n_data; i++) printf("%-12s %s\n", i ? "" : "text", cfg->data[i]);
  printf("%-12s %zu\n", "chars", ds.n_chars);
  printf("%-12s %zu\n", "tokens", ds.n_train + ds.n_val);
  printf("%-12s %d\n", "vocab size", tok_vocab_size(ds.tok));
  printf("%-12s %s\n", "cache", dir);
  printf("\n%-6s %12s %12s %12s %12s\n", "split", "chars", "tokens", "windows", "batches");
  /* random sampling has no epochs: its windows are the possible starts, 0 .. n - T - 1 */
  size_t n_starts = ds.n_train - (size_t)tl.T; /* data_loader_init refused a split without a window */
  if (random)
    printf("%-6s %12zu %12zu %12zu %12s\n", "train", ds.n_chars_train, ds.n_train, n_starts, "-");
  else
    printf("%-6s %12zu %12zu %12zu %12zu\n", "train", ds.n_chars_train, ds.n_train, tl.n_windows, tl.n_batches);
  /* val: the non-overlapping windows the full evaluation scores */
  size_t nvw = data_full_windows(ds.n_val, tr->max_length);
  printf("%-6s %12zu %12zu %12zu %12zu\n", "val", ds.n_chars - ds.n_chars_train, ds.n_val, nvw,
         (nvw + (size_t)tr->batch_size - 1) / (size_t)tr->batch_size);
  printf("\n");
  cmd_data_train_line(tr, &tl, n_starts);
  cmd_data_val_line(tr, nvw);

  if (random) printf("\nfirst training batch (micro-batch 0): inputs and targets (%d, %d)", tl.B, tl.T);
  else printf("\nfirst training batch (epoch 0, batch 0): inputs and targets (%d, %d)", tl.B, tl.T);
  if (rows < tl.B) printf(", rows %d to %d are padding (input 0, target -1)", rows, tl.B - 1);
  printf("\n");
  int width = cmd_data_digits(tok_vocab_size(ds.tok) - 1);
  if (rows < tl.B && width < 2) width = 2; /* room for the -1 padding targets */
  int n_show = show > 0 && show < tl.T ? show : tl.T;
  cmd_data_rows("inputs:", in, tl.B, tl.T, n_show, width);
  cmd_data_rows("targets:", tg, tl.B, tl.T, n_show, width);
  free(in);
  free(tg);
  data_free(&ds);
  return 0;
}

int cmd_data(int argc, char **argv) {
  cli_args a;
  int code;
  if (cli_parse(&cmd_data_spec, argc, argv, &a, &code)) return code;
  const char *path = cli_get(&a, "--config");
  if (!path || !path[0]) return cli_usage_err(&a, "option '--config FILE' is required");
  const char *texts[CLI_MAX];
  int n_texts = cli_all(&a, "--text", texts, CLI_MAX);
  for (int i = 0; i < n_texts; i++)
    if (!texts[i][0]) return cli_usage_err(&a, "option '--text' needs a non-empty PATH");
  long bs = 0, ml = 0, st = 0, show = 16;
  if (cli_int(&a, "--batch-size", 1, 1L << 20, &bs) || cli_int(&a, "--stride", 1, 1L << 30, &st) ||
      cli_int(&a, "--ids", 0, 1L << 30, &show))
    return 2;
  const char *sets[CLI_MAX];
  int n_sets = cli_all(&a, "--set", sets, CLI_MAX);
  cfg_t cfg;
  if (cfg_load_file_set(path, sets, n_sets, &cfg)) return cli_fail();
  if (cli_int(&a, "--max-length", 1, cfg.context_length, &ml)) return 2;
  if (bs) cfg.train.batch_size = (int)bs;
  if (ml) cfg.train.max_length = (int)ml;
  if (st) cfg.train.stride = (int)st;
  if (cli_has(&a, "--no-shuffle")) cfg.train.shuffle = 0;
  return cmd_data_run(&cfg, texts, n_texts, (int)show);
}
