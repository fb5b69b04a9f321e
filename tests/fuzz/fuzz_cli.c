/* fuzz_cli: the option parser of gptc's subcommands and of the exported
 * executable's main (templates/export/main.c: cli_parse, then cli_int and
 * cli_num on its options with the same ranges). The input is argv, its
 * words separated by NUL bytes. Properties: parsing ends in "go on", help
 * (exit 0) or a usage error (exit 2); each parsed name is an option of the
 * spec and takes a value exactly when the spec says so; cli_int and cli_num
 * return values inside their ranges. Output goes to /dev/null. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "fuzz.h"

static const cli_opt fuzz_opts[] = {
    {"--tokens", "N", "tokens"},
    {"--temperature", "T", "temperature"},
    {"--top-k", "K", "top-k"},
    {"--seed", "S", "seed"},
    {"--threads", "N", "threads"},
    {"--info", NULL, "info"},
    {"--dump-logits", "FILE", "dump"},
    {"--text", "FILE", "a repeatable option"},
    {NULL, NULL, NULL},
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static int quiet;
  if (!quiet) {
    quiet = 1;
    if (!freopen("/dev/null", "w", stdout)) fuzz_fail("cannot silence stdout");
  }
  if (size < 1) return 0;
  char *buf = malloc(size + 1);
  char **argv = malloc((size + 2) * sizeof *argv);
  if (!buf || !argv) fuzz_fail("out of memory");
  memcpy(buf, data + 1, size - 1);
  buf[size - 1] = '\0';
  int argc = 0;
  argv[argc++] = "prog";
  for (size_t i = 0; i < size - 1; i += strlen(buf + i) + 1) argv[argc++] = buf + i;
  argv[argc] = NULL;

  const cli_spec spec = {"prog [options] [PROMPT]", "about", fuzz_opts, data[0] % 4};
  cli_args a;
  int code = -1;
  if (cli_parse(&spec, argc, argv, &a, &code)) {
    if (code != 0 && code != 2) fuzz_fail("cli_parse stopped with exit code %d", code);
  } else {
    if (a.n < 0 || a.n > CLI_MAX || a.npos < 0 || a.npos > spec.max_pos) fuzz_fail("counts out of range");
    for (int i = 0; i < a.n; i++) {
      const cli_opt *o = fuzz_opts;
      while (o->name && o->name != a.name[i]) o++;
      if (!o->name) fuzz_fail("parsed a name not in the spec");
      if (!a.val[i] || (!o->arg && a.val[i][0])) fuzz_fail("option %s: bad value", o->name);
    }
    const char *all[CLI_MAX];
    int k = cli_all(&a, "--text", all, CLI_MAX);
    if (k && all[k - 1] != cli_get(&a, "--text")) fuzz_fail("cli_get is not the last value");
    if (cli_has(&a, "--info") != (cli_get(&a, "--info") != NULL)) fuzz_fail("cli_has disagrees with cli_get");
    long v = -7;
    int rc = cli_int(&a, "--tokens", 1, 1000000, &v);
    if (rc == 0 && cli_has(&a, "--tokens") && (v < 1 || v > 1000000)) fuzz_fail("--tokens %ld accepted", v);
    rc = cli_int(&a, "--seed", 0, 0x7fffffffffffffffL, &v);
    if (rc == 0 && cli_has(&a, "--seed") && v < 0) fuzz_fail("--seed %ld accepted", v);
    rc = cli_int(&a, "--threads", 1, 4096, &v);
    if (rc == 0 && cli_has(&a, "--threads") && (v < 1 || v > 4096)) fuzz_fail("--threads %ld accepted", v);
    double t = -1;
    rc = cli_num(&a, "--temperature", 0, 100, &t);
    if (rc == 0 && cli_has(&a, "--temperature") && !(t >= 0 && t <= 100)) fuzz_fail("--temperature %g accepted", t);
  }
  free(argv);
  free(buf);
  return 0;
}
