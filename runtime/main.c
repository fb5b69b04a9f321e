/* gptc: command-line entry point; dispatches to the subcommands in cmds.h. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cfg.h"
#include "cmds.h"
#include "util.h"

typedef struct {
  const char *name;
  int (*fn)(int, char **);
  const char *about;
} main_cmd;

static const main_cmd main_cmds[] = {
    {"train", cmd_train, "train a model from a config on text (CPU, or CUDA with --device)"},
    {"sample", cmd_sample, "generate text from a checkpoint"},
    {"eval", cmd_eval, "mean cross-entropy of a checkpoint on a text"},
    {"gen", cmd_gen, "write the generated, shape-specialized sources for a config"},
    {"data", cmd_data, "tokenize a config's text and print the data summary and first batch"},
    {"tokenize", cmd_tokenize, "encode text to token ids, or decode ids (--decode)"},
    {"import", cmd_import, "convert a Hugging Face GPT-2 directory to a gptc checkpoint"},
    {"export", cmd_export, "write a checkpoint as one static executable that generates text (any x86-64 or aarch64)"},
    {"export-hf", cmd_export_hf, "write a checkpoint as a Hugging Face GPT-2 directory"},
    {"tune", cmd_tune, "find the fastest GEMM schedules of a config on this machine"},
    {"sweep", cmd_sweep, "train a grid of config overrides, one run each, and tabulate them"},
    {"bench", cmd_bench, "benchmark a config's kernels (vs generic and BLAS) and its training step"},
    {"plot", cmd_plot, "draw the loss curves of run directories as one SVG"},
    {"help", cmd_help, "help on a command, or `gptc help config` for every config field"},
    {NULL, NULL, NULL},
};

/* the command (or `extra`, when not NULL) a mistyped name most likely meant */
static const char *main_closest(const char *given, const char *extra) {
  const char *names[64];
  int n = 0;
  if (extra) names[n++] = extra;
  for (const main_cmd *c = main_cmds; c->name && n < 64; c++) names[n++] = c->name;
  return util_closest(given, names, n);
}

static void main_usage(FILE *f) {
  fprintf(f,
          "usage: gptc COMMAND [options]\n\n"
          "gptc %s: generates shape-specialized C for a GPT config, compiles it, trains,\n"
          "evaluates and samples.\n\ncommands:\n",
          GPTC_VERSION);
  for (const main_cmd *c = main_cmds; c->name; c++) fprintf(f, "  %-10s %s\n", c->name, c->about);
  fprintf(f, "\n'gptc COMMAND --help' lists each command's options.\n");
}

int cmd_help(int argc, char **argv) {
  if (argc < 2) {
    main_usage(stdout);
    return 0;
  }
  if (!strcmp(argv[1], "config")) {
    char *s = cfg_describe();
    if (!s) return 1;
    fputs(s, stdout);
    free(s);
    return 0;
  }
  for (const main_cmd *c = main_cmds; c->name; c++) {
    if (!strcmp(c->name, argv[1]) && c->fn != cmd_help) {
      char *av[] = {argv[1], "--help", NULL};
      return c->fn(2, av);
    }
  }
  const char *near = main_closest(argv[1], "config");
  if (near)
    fprintf(stderr, "gptc help: unknown topic '%s' (did you mean '%s'? a command name or 'config')\n", argv[1], near);
  else fprintf(stderr, "gptc help: unknown topic '%s' (a command name or 'config')\n", argv[1]);
  return 2;
}

static int main_dispatch(int argc, char **argv) {
  if (argc < 2) {
    main_usage(stderr);
    return 2;
  }
  if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
    main_usage(stdout);
    return 0;
  }
  if (!strcmp(argv[1], "--version")) {
    printf("gptc %s\n", GPTC_VERSION);
    return 0;
  }
  for (const main_cmd *c = main_cmds; c->name; c++)
    if (!strcmp(c->name, argv[1])) return c->fn(argc - 1, argv + 1);
  const char *near = main_closest(argv[1], NULL);
  if (near) fprintf(stderr, "gptc: unknown command '%s' (did you mean '%s'? see 'gptc --help')\n", argv[1], near);
  else fprintf(stderr, "gptc: unknown command '%s' (see 'gptc --help')\n", argv[1]);
  return 2;
}

/* Output that never reached its file (a full disk, a closed pipe, /dev/full)
 * is a failure: stdio only reports it when the buffer is flushed, so check
 * at the end, before exit() would flush and drop the error. */
int main(int argc, char **argv) {
  int rc = main_dispatch(argc, argv);
  errno = 0;
  int bad = ferror(stdout);
  if ((fclose(stdout) != 0 || bad) && rc == 0) { /* a failed command has said what failed */
    fprintf(stderr, "gptc: cannot write the output to standard output: %s\n", errno ? strerror(errno) : "write error");
    return 1;
  }
  return rc;
}
