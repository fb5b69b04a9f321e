/* cli: the option parser every subcommand uses, so help text, exit codes and
 * usage errors look the same everywhere.
 *
 * Exit codes: 0 success, 1 runtime error, 2 usage error. */
#ifndef GPTC_CLI_H
#define GPTC_CLI_H

typedef struct {
  const char *name; /* "--text" */
  const char *arg;  /* metavar ("FILE"), or NULL for a flag */
  const char *help;
} cli_opt;

/* A row that makes a short option mean a long one: CLI_ALIAS("-o", "--out")
 * in a command's option table, its value the next argument. Not listed in
 * the help (the long option's help mentions it). */
#define CLI_ALIAS(short_name, long_name) {short_name, long_name, NULL}
#define CLI_IS_ALIAS(o) ((o)->name[0] == '-' && (o)->name[1] != '-')

typedef struct {
  const char *usage; /* "gptc tokenize [options]" */
  const char *about; /* one paragraph */
  const cli_opt *opts;
  int max_pos; /* positional arguments allowed */
} cli_spec;

/* `--set FIELD=VALUE`, the same line in every command that takes --config
 * (cfg_load_file_set applies the values). */
#define CLI_OPT_SET                                                                                               \
  {"--set", "FIELD=VALUE", "override a config field (repeatable): --set n_layers=4 --set train.lr=3e-4 --set "    \
                           "precision=bf16; a number, true/false, a quoted or bare string; see gptc help config"}

#define CLI_MAX 128
typedef struct {
  const cli_spec *spec;
  int n;
  const char *name[CLI_MAX];
  const char *val[CLI_MAX];
  int npos;
  const char *pos[CLI_MAX];
} cli_args;

/* Parses argv (argv[0] is the subcommand). Returns 0 to go on, or an exit
 * code the command returns at once: 0 after --help, 2 after a usage error
 * (message printed as "gptc CMD: ..."). */
int cli_parse(const cli_spec *spec, int argc, char **argv, cli_args *a, int *exit_code);
void cli_help(const cli_spec *spec);
const char *cli_get(const cli_args *a, const char *name); /* last value or NULL */
int cli_has(const cli_args *a, const char *name);
int cli_all(const cli_args *a, const char *name, const char **out, int max);
/* Integer/number options: on a bad value prints a usage error and returns -1
 * (the caller returns 2). */
int cli_int(const cli_args *a, const char *name, long lo, long hi, long *out);
int cli_num(const cli_args *a, const char *name, double lo, double hi, double *out);
/* Prints "gptc: <util_errmsg()>" to stderr and returns 1. */
int cli_fail(void);
/* Prints "gptc CMD: <msg>" to stderr and returns 2. */
int cli_usage_err(const cli_args *a, const char *fmt, ...);

#endif
