/* cmd_sweep: `gptc sweep`, the command line of sweep.h. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "cmds.h"
#include "sweep.h"

static const cli_opt cmd_sweep_opts[] = {
    {"--config", "FILE", "model config (.lua); required unless --report"},
    {"--grid", "FIELD=V1,V2,...", "a config field and its values (repeatable: every combination runs)"},
    CLI_OPT_SET,
    {"--steps", "N", "stop each run after step N (the schedule still spans train.steps)"},
    {"--out", "DIR", "the sweep's directory: one run directory each, sweep.json, sweep.md (default: sweeps/<config "
                     "file name>)"},
    {"--random", "K", "K runs sampled from the grid (seeded by --seed) instead of all of them"},
    {"--seed", "S", "seed of --random (default 1)"},
    {"--jobs", "N", "runs at once; only 1 (one after another) is implemented"},
    {"--threads", "N", "CPU threads of each run (default: all cores)"},
    {"--report", "DIR", "rewrite DIR/sweep.md and sweep.json from its run directories, and stop"},
    {NULL, NULL, NULL},
};

static const cli_spec cmd_sweep_spec = {
    "gptc sweep --config FILE --grid FIELD=V1,V2,... [--grid ...] [--set FIELD=VALUE]... [--steps N] [--out DIR]\n"
    "                  [--random K --seed S] [--jobs 1] | gptc sweep --report DIR",
    "Trains every combination of the --grid values (or --random K of them), one after another, each as\n"
    "`gptc train --config FILE --set ... --out DIR/RUN --quiet` with its output in DIR/RUN/train.out.\n"
    "Every run's config is checked before the first starts. After each run DIR/sweep.md (a table, best\n"
    "final val loss first) and DIR/sweep.json are rewritten. Rerunning the same command skips finished\n"
    "runs and resumes interrupted ones; another grid or config in the same DIR is refused. Ctrl-C stops\n"
    "the current run (it saves) and the sweep.",
    cmd_sweep_opts, 0};

int cmd_sweep(int argc, char **argv) {
  cli_args a;
  int code;
  if (cli_parse(&cmd_sweep_spec, argc, argv, &a, &code)) return code;
  const char *report = cli_get(&a, "--report");
  if (report) {
    if (cli_has(&a, "--config") || cli_has(&a, "--grid") || cli_has(&a, "--set"))
      return cli_usage_err(&a, "option '--report DIR' reads the sweep's definition from DIR/sweep.json; give it alone");
    return sweep_report(report) ? cli_fail() : 0;
  }
  sweep_def d;
  memset(&d, 0, sizeof d);
  d.config = cli_get(&a, "--config");
  if (!d.config || !d.config[0]) return cli_usage_err(&a, "option '--config FILE' is required");
  const char *all[CLI_MAX];
  d.n_grids = cli_all(&a, "--grid", all, CLI_MAX);
  if (d.n_grids == 0) return cli_usage_err(&a, "option '--grid FIELD=V1,V2,...' is required");
  if (d.n_grids > SWEEP_MAX_GRIDS) return cli_usage_err(&a, "at most %d --grid options", SWEEP_MAX_GRIDS);
  memcpy(d.grids, all, (size_t)d.n_grids * sizeof *all);
  d.n_sets = cli_all(&a, "--set", all, CLI_MAX);
  if (d.n_sets > SWEEP_MAX_SETS) return cli_usage_err(&a, "at most %d --set options", SWEEP_MAX_SETS);
  memcpy(d.sets, all, (size_t)d.n_sets * sizeof *all);
  long jobs = 1;
  d.seed = 1;
  if (cli_int(&a, "--steps", 1, 1000000000, &d.steps) || cli_int(&a, "--random", 1, SWEEP_MAX_RUNS, &d.random) ||
      cli_int(&a, "--seed", 0, 0x7fffffffL, &d.seed) || cli_int(&a, "--jobs", 1, 4096, &jobs) ||
      cli_int(&a, "--threads", 1, 4096, &d.threads))
    return 2;
  if (jobs > 1)
    return cli_usage_err(&a, "option '--jobs' must be 1: runs go one after another (parallel runs are not "
                             "implemented; --threads sets each run's threads)");
  if (cli_has(&a, "--seed") && !d.random) return cli_usage_err(&a, "option '--seed' needs '--random K'");
  if (!d.random) d.seed = 0;
  char dir[1024];
  d.dir = cli_get(&a, "--out");
  if (!d.dir) {
    /* sweeps/<config file name without .lua> */
    const char *base = strrchr(d.config, '/');
    base = base ? base + 1 : d.config;
    size_t n = strlen(base);
    if (n > 4 && !strcmp(base + n - 4, ".lua")) n -= 4;
    snprintf(dir, sizeof dir, "sweeps/%.*s", (int)n, base);
    d.dir = dir;
  }
  if (!d.dir[0]) return cli_usage_err(&a, "option '--out' needs a non-empty DIR");
  return sweep_run(&d) ? cli_fail() : 0;
}
