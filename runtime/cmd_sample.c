/* cmd_sample: `gptc sample` — KV-cache generation from a checkpoint,
 * streamed to stdout as it is produced. */
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cmds.h"
#include "quant.h"
#include "sample.h"
#include "train.h"
#include "util.h"

static const cli_opt cmd_sample_opts[] = {
    {"--ckpt", "CKPT", "checkpoint (.safetensors) to sample from (required)"},
    {"--prompt", "TEXT", "text to continue (default: <|endoftext|>, or a newline for char models)"},
    {"--tokens", "N", "tokens to generate (default 300); stops early at <|endoftext|>"},
    {"--temperature", "T", "softmax temperature; 0 = greedy (default 0.8)"},
    {"--top-k", "K", "sample among the K most likely tokens; 0 = all (default 200)"},
    {"--top-p", "P", "sample among the most likely tokens whose probability adds up to P; 1 = all (default 1)"},
    {"--seed", "S", "sampling seed (default 1337): same seed, same text"},
    {"--threads", "N", "CPU threads (default: all cores)"},
    {"--device", "NAME", "cpu (default), cuda, or auto (cuda when a usable GPU is present)"},
    {"--quant", "KIND", "f32 (default) or q8: int8 mat-vec weights, the step of `gptc export --quant q8` (CPU only)"},
    {NULL, NULL, NULL},
};

static const cli_spec cmd_sample_spec = {
    "gptc sample --ckpt CKPT [--prompt TEXT] [--tokens N] [--temperature T] [--top-k K] [--top-p P] [--seed S]\n"
    "            [--quant f32|q8]",
    "Generates text with the checkpoint's model, one token at a time through a KV cache. When the context\n"
    "fills up, the oldest half is dropped and the cache rebuilt from the newer half.",
    cmd_sample_opts, 0};

/* sample_infer_fn over a backend: gptc sample and exported executables run
 * the one generation loop (sample_generate), so they give the same text */
static int cmd_sample_infer(void *ctx, int token, int pos, float *logits) {
  backend *m = ctx;
  return m->ops->infer(m, token, pos, logits);
}

/* --quant q8: the weights quantized and the inference step compiled as
 * `gptc export --quant q8` does (quant.h), so the text is the export's */
static int cmd_sample_q8(const char *ckpt, const char *prompt, const sample_opts *o) {
  train_loaded l;
  if (train_load_ckpt(ckpt, &l)) return -1;
  quant_model q;
  int rc = quant_model_open(&l.cfg, l.params, &q);
  if (!rc) {
    sample_model sm = {quant_model_infer, &q, l.cfg.vocab_size, l.cfg.context_length};
    rc = sample_generate(&sm, l.tok, prompt, o, stdout);
    quant_model_close(&q);
  }
  train_loaded_free(&l);
  return rc;
}

static int cmd_sample_run(const char *ckpt, const char *prompt, const sample_opts *o, const char *device) {
  train_loaded l;
  if (train_open_ckpt(ckpt, device, &l)) return -1;
  backend *m = l.be;
  int rc = m->ops->alloc(m, BACKEND_INFER);
  if (!rc) {
    sample_model sm = {cmd_sample_infer, m, m->vocab_size, m->context_length};
    rc = sample_generate(&sm, l.tok, prompt, o, stdout);
  }
  train_loaded_free(&l);
  return rc;
}

int cmd_sample(int argc, char **argv) {
  cli_args a;
  int code;
  if (cli_parse(&cmd_sample_spec, argc, argv, &a, &code)) return code;
  const char *ckpt = cli_get(&a, "--ckpt");
  if (!ckpt) return cli_usage_err(&a, "option '--ckpt' is required");
  sample_opts sa = SAMPLE_OPTS_DEFAULT;
  long v;
  if (cli_int(&a, "--tokens", 1, 1000000, &v)) return 2;
  if (cli_has(&a, "--tokens")) sa.tokens = (int)v;
  if (cli_int(&a, "--top-k", 0, 100000000, &v)) return 2;
  if (cli_has(&a, "--top-k")) sa.top_k = (int)v;
  if (cli_int(&a, "--seed", 0, 0x7fffffffffffffffL, &v)) return 2;
  if (cli_has(&a, "--seed")) sa.seed = (uint64_t)v;
  if (cli_num(&a, "--temperature", 0, 100, &sa.temperature)) return 2;
  if (cli_num(&a, "--top-p", 0, 1, &sa.top_p)) return 2;
  long threads = 0;
  if (cli_int(&a, "--threads", 1, 4096, &threads)) return 2;
  if (threads) cpu_set_threads((int)threads);
  const char *device = cli_get(&a, "--device");
  if (device && strcmp(device, "cpu") && strcmp(device, "cuda") && strcmp(device, "auto"))
    return cli_usage_err(&a, "option '--device' must be cpu, cuda or auto (got '%s')", device);
  const char *qs = cli_get(&a, "--quant");
  int quant = QUANT_F32;
  if (qs && quant_parse("--quant", qs, &quant)) return cli_usage_err(&a, "%s", util_errmsg());
  if (quant == QUANT_Q8 && device && strcmp(device, "cpu"))
    return cli_usage_err(&a, "option '--quant q8' runs on the CPU only (got --device %s)", device);
  if (quant == QUANT_Q8) return cmd_sample_q8(ckpt, cli_get(&a, "--prompt"), &sa) ? cli_fail() : 0;
  return cmd_sample_run(ckpt, cli_get(&a, "--prompt"), &sa, device) ? cli_fail() : 0;
}
