/* cmd_ckpt: `gptc import` (a Hugging Face GPT-2 directory to a gptc
 * checkpoint) and `gptc export-hf` (the reverse): the command lines; the
 * conversion is ckpt_hf.c. */
#include <stddef.h>

#include "ckpt_hf.h"
#include "cli.h"
#include "cmds.h"

static const cli_opt ckpt_import_opts[] = {
    {"--out", "CKPT", "checkpoint to write (also -o); its parent directory is created"},
    CLI_ALIAS("-o", "--out"),
    {NULL, NULL, NULL},
};

static const cli_spec ckpt_import_spec = {
    "gptc import HF_DIR -o CKPT",
    "Converts a Hugging Face GPT-2 directory (config.json + model.safetensors, as written by\n"
    "save_pretrained of GPT2LMHeadModel or GPT2Model; F32, F16 or BF16) into a gptc checkpoint\n"
    "(F32, step 0, no optimizer moments). The config is derived from config.json: tokenizer gpt2,\n"
    "qkv_bias true, context_length = n_positions, drop_rate = resid_pdrop. Variants whose math\n"
    "differs from GPT-2 (another activation or layer_norm_epsilon, n_inner, ...) are refused.",
    ckpt_import_opts,
    1,
};

int cmd_import(int argc, char **argv) {
  cli_args a;
  int code;
  if (cli_parse(&ckpt_import_spec, argc, argv, &a, &code)) return code;
  const char *out = cli_get(&a, "--out");
  if (a.npos != 1) code = cli_usage_err(&a, "expected one HF_DIR argument");
  else if (!out || !*out) code = cli_usage_err(&a, "option '--out' (-o) is required");
  else code = ckpt_hf_import(a.pos[0], out) ? cli_fail() : 0;
  return code;
}

static const cli_opt ckpt_export_opts[] = {
    {"--out", "DIR", "directory to write (also -o); created if missing, files in it replaced"},
    CLI_ALIAS("-o", "--out"),
    {NULL, NULL, NULL},
};

static const cli_spec ckpt_export_spec = {
    "gptc export-hf CKPT -o DIR",
    "Writes a gptc checkpoint as a Hugging Face GPT-2 directory that transformers'\n"
    "GPT2LMHeadModel.from_pretrained loads: config.json and model.safetensors (F32), plus\n"
    "vocab.json and merges.txt for the gpt2 tokenizer. A model without qkv_bias gets zero\n"
    "c_attn.bias tensors (the same function); an untied one gets lm_head.weight.",
    ckpt_export_opts,
    1,
};

int cmd_export_hf(int argc, char **argv) {
  cli_args a;
  int code;
  if (cli_parse(&ckpt_export_spec, argc, argv, &a, &code)) return code;
  const char *out = cli_get(&a, "--out");
  if (a.npos != 1) code = cli_usage_err(&a, "expected one CKPT argument");
  else if (!out || !*out) code = cli_usage_err(&a, "option '--out' (-o) is required");
  else code = ckpt_hf_export(a.pos[0], out) ? cli_fail() : 0;
  return code;
}
