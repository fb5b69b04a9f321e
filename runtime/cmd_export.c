/* cmd_export: `gptc export` — a checkpoint as one self-contained executable
 * (export.h). */
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cmds.h"
#include "export.h"
#include "export_target.h"
#include "quant.h"
#include "util.h"

static const cli_opt cmd_export_opts[] = {
    {"--ckpt", "CKPT", "checkpoint (.safetensors) to export (required)"},
    {"--out", "FILE", "executable to write (also -o); replaced atomically, never left half-written"},
    {"--target", "T", "machines it runs on: portable (default), native, x86-64-v2, x86-64-v3, x86-64-v4, aarch64"},
    {"--quant", "KIND", "f32 (default) or q8: the mat-vecs' weights as int8 with one scale per 32 (docs/export.md)"},
    CLI_ALIAS("-o", "--out"),
    {NULL, NULL, NULL},
};

static const cli_spec cmd_export_spec = {
    "gptc export --ckpt CKPT -o FILE [--target T] [--quant f32|q8]",
    "Writes one executable holding the checkpoint's inference code (C generated for its exact shape,\n"
    "with a KV cache, compiled by $CC with -O3 -fopenmp, no -ffast-math), its weights and its tokenizer:\n"
    "  FILE \"prompt\" [--tokens N] [--temperature T] [--top-k K] [--seed S] [--threads N]\n"
    "streams the text for those options (`gptc sample --quant q8` gives a q8 export's text); FILE --info\n"
    "describes the model and the kernels it runs; FILE --eval TEXT prints the loss as `gptc eval` does.\n"
    "Targets (docs/export.md):\n"
    "  portable   (default) a static executable for any x86-64-v2 CPU: the inference step compiled for\n"
    "             x86-64-v2 (SSE4.2), v3 (AVX2+FMA) and v4 (AVX-512), the widest the CPU supports picked\n"
    "             at start-up (GPTC_KERNELS=x86-64-v2 forces a narrower one); on aarch64 hosts = aarch64\n"
    "  native     this machine's instruction set (-march=native), linked against the shared libc, libm\n"
    "             and libgomp: the same logits and text as `gptc sample`, bit for bit\n"
    "  x86-64-v2, x86-64-v3, x86-64-v4   static, one instruction-set level only\n"
    "  aarch64    static, for any arm64 Linux, compiled by $GPTC_CC_AARCH64 (default aarch64-linux-gnu-gcc;\n"
    "             a gpt2-tokenizer model also needs libpcre2-8.a for arm64)\n"
    "Exporting needs a C compiler, glibc's static libraries and libpcre2-dev, no source tree.",
    cmd_export_opts, 0};

int cmd_export(int argc, char **argv) {
  cli_args a;
  int code;
  if (cli_parse(&cmd_export_spec, argc, argv, &a, &code)) return code;
  const char *ckpt = cli_get(&a, "--ckpt"), *out = cli_get(&a, "--out"), *qs = cli_get(&a, "--quant");
  const export_target *t;
  int quant = QUANT_F32;
  if (!ckpt || !*ckpt) code = cli_usage_err(&a, "option '--ckpt' is required");
  else if (!out || !*out) code = cli_usage_err(&a, "option '--out' (-o) is required");
  else if (export_target_find(cli_get(&a, "--target"), &t)) code = cli_usage_err(&a, "%s", util_errmsg());
  else if (qs && quant_parse("--quant", qs, &quant)) code = cli_usage_err(&a, "%s", util_errmsg());
  else code = export_program(ckpt, out, t->name, quant) ? cli_fail() : 0;
  return code;
}
