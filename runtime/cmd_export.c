/* cmd_export: `gptc export` — a checkpoint as one self-contained executable
 * (export.h). */
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cmds.h"
#include "export.h"
#include "util.h"

static const cli_opt cmd_export_opts[] = {
    {"--ckpt", "CKPT", "checkpoint (.safetensors) to export (required)"},
    {"--out", "FILE", "executable to write (also -o); replaced atomically, never left half-written"},
    CLI_ALIAS("-o", "--out"),
    {NULL, NULL, NULL},
};

static const cli_spec cmd_export_spec = {
    "gptc export --ckpt CKPT -o FILE",
    "Writes one executable holding the checkpoint's inference code (C generated for its exact shape,\n"
    "with a KV cache, compiled by $CC with the JIT's flags: -O3 -march=native -fopenmp, no -ffast-math),\n"
    "its weights and its tokenizer. At run time it needs only libc, libm and the OpenMP runtime (PCRE2\n"
    "is linked in statically), and a CPU with this machine's instruction set (-march=native):\n"
    "  FILE \"prompt\" [--tokens N] [--temperature T] [--top-k K] [--seed S] [--threads N]\n"
    "streams the same text `gptc sample` gives for the same options; FILE --info describes the model.\n"
    "Exporting needs a C compiler and libpcre2-dev (libpcre2-8.a), no source tree.",
    cmd_export_opts, 0};

int cmd_export(int argc, char **argv) {
  cli_args a;
  int code;
  if (cli_parse(&cmd_export_spec, argc, argv, &a, &code)) return code;
  const char *ckpt = cli_get(&a, "--ckpt"), *out = cli_get(&a, "--out");
  if (!ckpt || !*ckpt) code = cli_usage_err(&a, "option '--ckpt' is required");
  else if (!out || !*out) code = cli_usage_err(&a, "option '--out' (-o) is required");
  else code = export_program(ckpt, out) ? cli_fail() : 0;
  return code;
}
