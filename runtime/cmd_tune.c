/* cmd_tune: `gptc tune`, measures the fastest schedule of each GEMM of a
 * config's training step on this host (tune.h) and keeps them in the host's
 * schedule file (schedfile.h), which every later generation for this host reads. */
#include <stdio.h>
#include <string.h>

#include "cfg.h"
#include "cli.h"
#include "cmds.h"
#include "data.h"
#include "tune.h"

static const cli_opt cmd_tune_opts[] = {
    {"--config", "FILE", "model config (.lua); required"},
    CLI_OPT_SET,
    {"--budget", "SECONDS", "start no new batch of instances after this long (default: no limit)"},
    {"--rounds", "N", "1: the heuristic and its neighbours; 2 (default): again around each winner"},
    {"--min-mflops", "X", "instances of fewer MFLOP a call keep the heuristic (default 4: below that, thread start-up noise wins)"},
    {"--missing", NULL, "only the instances the host's file does not name yet (what train and bench do)"},
    {"--vocab-size", "N", "vocabulary size for char/word configs (default: derived from the config's text)"},
    {"--quiet", NULL, "no progress lines"},
    {NULL, NULL, NULL},
};

static const cli_spec cmd_tune_spec = {
    "gptc tune --config FILE [--set FIELD=VALUE]... [--budget SECONDS] [--rounds 1|2] [--missing] [--min-mflops X] [--vocab-size N]",
    "Finds the fastest schedule of each GEMM of the config's training step on this machine: for each\n"
    "instance (largest share of the step first) its heuristic schedule and the variants one field away\n"
    "(register block, K block, tile height and width, packing of A and B, unroll, tile order, prefetch distance;\n"
    "gen/cpu/schedule.lua) are "
    "compiled, checked to give the heuristic's results bit for bit, and timed warm and cold. The winners\n"
    "go to $GPTC_CACHE/tune/<host>.txt (a readable file, keyed by CPU model, processor count, vector\n"
    "width and gptc version), which gen, train, eval, sample and bench use from then on; the generated\n"
    "source's header names each GEMM's schedule and where it came from. Attention instances likewise:\n"
    "query and key blocks a task (qb, kb), timed as forward then backward. train and bench tune the\n"
    "instances missing from the file themselves, within 60 s (--no-tune, or GPTC_TUNE=off, skips that).",
    cmd_tune_opts,
    0,
};

int cmd_tune(int argc, char **argv) {
  cli_args a;
  int code;
  if (cli_parse(&cmd_tune_spec, argc, argv, &a, &code)) return code;
  const char *path = cli_get(&a, "--config");
  if (!path || !path[0]) return cli_usage_err(&a, "option '--config FILE' is required");
  double budget = 0;
  if (cli_has(&a, "--budget") && cli_num(&a, "--budget", 0, 1e9, &budget)) return 2;
  double min_mflops = TUNE_MIN_FLOPS / 1e6;
  if (cli_has(&a, "--min-mflops") && cli_num(&a, "--min-mflops", 0, 1e12, &min_mflops)) return 2;
  long rounds = 2, vocab = 0;
  if (cli_has(&a, "--rounds") && cli_int(&a, "--rounds", 1, 2, &rounds)) return 2;
  if (cli_has(&a, "--vocab-size") && cli_int(&a, "--vocab-size", 1, 1L << 30, &vocab)) return 2;
  const char *sets[CLI_MAX];
  int n_sets = cli_all(&a, "--set", sets, CLI_MAX);
  cfg_t cfg;
  if (cfg_load_file_set(path, sets, n_sets, &cfg)) return cli_fail();
  if (vocab ? cfg_set_vocab(&cfg, (int)vocab) : data_derive_vocab(&cfg)) return cli_fail();
  tune_opts o = {budget, (int)rounds, !cli_has(&a, "--missing"), min_mflops * 1e6,
                 cli_has(&a, "--quiet") ? NULL : stderr};
  tune_result r;
  if (tune_run(&cfg, &o, &r)) return cli_fail();
  printf("%s\n%d instances (%d GEMM, %d attention), %d measured, %d faster than the heuristic%s\n", r.path,
         r.instances, r.instances - r.attention, r.attention, r.measured, r.improved,
         r.skipped ? ", the rest not measured (budget)" : "");
  return 0;
}
