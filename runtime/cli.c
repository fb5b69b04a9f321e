/* cli: see cli.h. */
#include "cli.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

static const char *cli_cmdname(const cli_spec *s) {
  static char buf[64];
  const char *u = s->usage;
  size_t n = strcspn(u, " [");
  if (!strncmp(u, "gptc ", 5)) n = 5 + strcspn(u + 5, " [");
  snprintf(buf, sizeof buf, "%.*s", (int)n, u);
  return buf;
}

void cli_help(const cli_spec *s) {
  printf("usage: %s\n", s->usage);
  if (s->about) printf("\n%s\n", s->about);
  printf("\noptions:\n");
  for (const cli_opt *o = s->opts; o && o->name; o++) {
    if (CLI_IS_ALIAS(o)) continue;
    char left[64];
    snprintf(left, sizeof left, "%s%s%s", o->name, o->arg ? " " : "", o->arg ? o->arg : "");
    printf("  %-24s %s\n", left, o->help);
  }
  printf("  %-24s %s\n", "-h, --help", "show this help");
}

int cli_usage_err(const cli_args *a, const char *fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  fprintf(stderr, "%s: %s (see '%s --help')\n", cli_cmdname(a->spec), msg, cli_cmdname(a->spec));
  return 2;
}

int cli_parse(const cli_spec *spec, int argc, char **argv, cli_args *a, int *code) {
  memset(a, 0, sizeof *a);
  a->spec = spec;
  for (int i = 1; i < argc; i++) {
    const char *arg = argv[i];
    if (!strcmp(arg, "-h") || !strcmp(arg, "--help")) {
      cli_help(spec);
      return *code = 0, 1;
    }
    /* a short alias ("-o") is its long option (CLI_ALIAS) */
    for (const cli_opt *o = spec->opts; arg[0] == '-' && arg[1] != '-' && o && o->name; o++)
      if (CLI_IS_ALIAS(o) && !strcmp(o->name, arg)) {
        arg = o->arg;
        break;
      }
    if (arg[0] == '-' && arg[1] == '-' && arg[2]) {
      const char *eq = strchr(arg, '=');
      size_t n = eq ? (size_t)(eq - arg) : strlen(arg);
      const cli_opt *o = spec->opts;
      for (; o && o->name; o++)
        if (strlen(o->name) == n && !strncmp(o->name, arg, n)) break;
      if (!o || !o->name) {
        const char *names[CLI_MAX];
        int nn = 0;
        for (o = spec->opts; o && o->name && nn < CLI_MAX; o++)
          if (!CLI_IS_ALIAS(o)) names[nn++] = o->name;
        char given[256];
        snprintf(given, sizeof given, "%.*s", (int)n, arg);
        const char *near = util_closest(given, names, nn);
        if (near) return *code = cli_usage_err(a, "unknown option '%s' (did you mean '%s'?)", given, near), 1;
        return *code = cli_usage_err(a, "unknown option '%s'", given), 1;
      }
      const char *val = NULL;
      if (o->arg) {
        if (eq) val = eq + 1;
        else if (i + 1 < argc) val = argv[++i];
        else return *code = cli_usage_err(a, "option '%s' needs a value %s", o->name, o->arg), 1;
      } else if (eq) {
        return *code = cli_usage_err(a, "option '%s' takes no value", o->name), 1;
      }
      if (a->n == CLI_MAX) return *code = cli_usage_err(a, "too many options"), 1;
      a->name[a->n] = o->name;
      a->val[a->n++] = val ? val : "";
    } else {
      if (a->npos >= spec->max_pos || a->npos == CLI_MAX)
        return *code = cli_usage_err(a, "unexpected argument '%s'", arg), 1;
      a->pos[a->npos++] = arg;
    }
  }
  return 0;
}

const char *cli_get(const cli_args *a, const char *name) {
  for (int i = a->n - 1; i >= 0; i--)
    if (!strcmp(a->name[i], name)) return a->val[i];
  return NULL;
}

int cli_has(const cli_args *a, const char *name) { return cli_get(a, name) != NULL; }

int cli_all(const cli_args *a, const char *name, const char **out, int max) {
  int k = 0;
  for (int i = 0; i < a->n && k < max; i++)
    if (!strcmp(a->name[i], name)) out[k++] = a->val[i];
  return k;
}

int cli_int(const cli_args *a, const char *name, long lo, long hi, long *out) {
  const char *v = cli_get(a, name);
  if (!v) return 0;
  char *end;
  errno = 0;
  long x = strtol(v, &end, 10);
  if (errno || end == v || *end || x < lo || x > hi) {
    cli_usage_err(a, "option '%s' must be an integer in [%ld, %ld] (got '%s')", name, lo, hi, v);
    return -1;
  }
  *out = x;
  return 0;
}

int cli_num(const cli_args *a, const char *name, double lo, double hi, double *out) {
  const char *v = cli_get(a, name);
  if (!v) return 0;
  char *end;
  errno = 0;
  double x = strtod(v, &end);
  if (errno || end == v || *end || !(x >= lo && x <= hi)) {
    cli_usage_err(a, "option '%s' must be a number in [%g, %g] (got '%s')", name, lo, hi, v);
    return -1;
  }
  *out = x;
  return 0;
}

int cli_fail(void) {
  fprintf(stderr, "gptc: %s\n", util_errmsg());
  return 1;
}
