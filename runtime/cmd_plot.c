/* cmd_plot: `gptc plot` — loss curves of one or more run directories as one
 * self-contained SVG (docs/plot.md). */
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cmds.h"
#include "plot.h"
#include "util.h"

static const cli_opt cmd_plot_opts[] = {
    {"--out", "FILE", "the SVG to write (default: loss.svg in the current directory); -o FILE is the same"},
    CLI_ALIAS("-o", "--out"),
    {"--x", "AXIS", "step (default), tokens (step x batch_size x max_length x grad_accum) or time (sum of step times)"},
    {"--log-y", NULL, "logarithmic loss axis"},
    {"--smooth", "N", "EMA span of the train loss curve in steps (default 20; 1: none); the raw loss stays, faint"},
    {NULL, NULL, NULL},
};

static const cli_spec cmd_plot_spec = {
    "gptc plot RUN_DIR [RUN_DIR ...] [-o FILE]",
    "Draws the train loss (smoothed, raw faint), the periodic val loss and the final full-split val loss of\n"
    "each run directory (from its log.jsonl; name and config hash from its last.safetensors), overlaid, as\n"
    "one self-contained SVG. `gptc train` keeps RUN_DIR/loss.svg up to date by itself.",
    cmd_plot_opts, CLI_MAX};

int cmd_plot(int argc, char **argv) {
  cli_args a;
  int code;
  if (cli_parse(&cmd_plot_spec, argc, argv, &a, &code)) return code;
  int rc = 2;
  plot_opts o = {PLOT_X_STEP, cli_has(&a, "--log-y"), 20};
  const char *x = cli_get(&a, "--x");
  long smooth = 20;
  if (a.npos == 0) {
    cli_usage_err(&a, "no run directory given (gptc plot RUN_DIR [RUN_DIR ...])");
    goto out;
  }
  if (x && !strcmp(x, "tokens")) o.x = PLOT_X_TOKENS;
  else if (x && !strcmp(x, "time")) o.x = PLOT_X_TIME;
  else if (x && strcmp(x, "step")) {
    cli_usage_err(&a, "--x: unknown axis '%s' (step, tokens or time)", x);
    goto out;
  }
  if (cli_get(&a, "--smooth") && cli_int(&a, "--smooth", 1, 100000, &smooth)) goto out;
  o.smooth = (int)smooth;
  const char *out = cli_get(&a, "--out");
  if (!out) out = "loss.svg";
  if (!out[0]) {
    cli_usage_err(&a, "--out: empty file name");
    goto out;
  }
  rc = plot_runs_svg(a.pos, a.npos, out, &o) ? cli_fail() : 0;
  if (!rc) printf("wrote %s\n", out);
out:
  return rc;
}
