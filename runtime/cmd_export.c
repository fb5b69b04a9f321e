/* cmd_export: `gptc export` — a checkpoint as one self-contained executable
 * (export.h). */
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cmds.h"
#include "export.h"
#include "quant.h"
#include "util.h"

static const cli_opt cmd_export_opts[] = {
    {"--ckpt", "CKPT", "checkpoint (.safetensors) to export (required)"},
    {"--out", "FILE", "executable to write (also -o); replaced atomically, never left half-written"},
    {"--quant", "KIND", "f32 (default) or q8: the mat-vecs' weights as int8 with one scale per 32 (docs/export.md)"},
    {NULL, NULL, NULL},
};

static const cli_spec cmd_export_spec = {
    "gptc export --ckpt CKPT -o FILE [--quant f32|q8]",
    "Writes one executable holding the checkpoint's inference code (C generated for its exact shape,\n"
    "with a KV cache, compiled by $CC with the JIT's flags: -O3 -march=native -fopenmp, no -ffast-math),\n"
    "its weights and its tokenizer. At run time it needs only libc, libm and the OpenMP runtime (PCRE2\n"
    "is linked in statically), and a CPU with this machine's instruction set (-march=native):\n"
    "  FILE \"prompt\" [--tokens N] [--temperature T] [--top-k K] [--seed S] [--threads N]\n"
    "streams the same text `gptc sample` gives for the same options (`gptc sample --quant q8` for a q8\n"
    "export); FILE --info describes the model; FILE --eval TEXT prints the loss as `gptc eval` does.\n"
    "Exporting needs a C compiler and libpcre2-dev (libpcre2-8.a), no source tree.",
    cmd_export_opts, 0};

/* cli.c parses long options only; the documented "-o X" is "--out X". */
int cmd_export(int argc, char **argv) {
  char **av = util_calloc((size_t)argc + 1, sizeof *av, "arguments");
  if (!av) return cli_fail();
  for (int i = 0; i < argc; i++) av[i] = !strcmp(argv[i], "-o") ? "--out" : argv[i];
  cli_args a;
  int code;
  if (cli_parse(&cmd_export_spec, argc, av, &a, &code)) {
    free(av);
    return code;
  }
  const char *ckpt = cli_get(&a, "--ckpt"), *out = cli_get(&a, "--out"), *qs = cli_get(&a, "--quant");
  int quant = QUANT_F32;
  if (!ckpt || !*ckpt) code = cli_usage_err(&a, "option '--ckpt' is required");
  else if (!out || !*out) code = cli_usage_err(&a, "option '--out' (-o) is required");
  else if (qs && quant_parse("--quant", qs, &quant)) code = cli_usage_err(&a, "%s", util_errmsg());
  else code = export_program_quant(ckpt, out, quant) ? cli_fail() : 0;
  free(av);
  return code;
}
