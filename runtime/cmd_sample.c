/* cmd_sample: `gptc sample` — KV-cache generation from a checkpoint,
 * streamed to stdout as it is produced. */
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cmds.h"
#include "sample.h"
#include "train.h"
#include "util.h"

static const cli_opt cmd_sample_opts[] = {
    {"--ckpt", "CKPT", "checkpoint (.safetensors) to sample from (required)"},
    {"--prompt", "TEXT", "text to continue (default: <|endoftext|>, or a newline for char models)"},
    {"--tokens", "N", "tokens to generate (default 300); stops early at <|endoftext|>"},
    {"--temperature", "T", "softmax temperature; 0 = greedy (default 0.8)"},
    {"--top-k", "K", "sample among the K most likely tokens; 0 = all (default 200)"},
    {"--seed", "S", "sampling seed (default 1337): same seed, same text"},
    {"--threads", "N", "CPU threads (default: all cores)"},
    {"--device", "NAME", "cpu (default), cuda, or auto (cuda when a usable GPU is present)"},
    {NULL, NULL, NULL},
};

static const cli_spec cmd_sample_spec = {
    "gptc sample --ckpt CKPT [--prompt TEXT] [--tokens N] [--temperature T] [--top-k K] [--seed S]",
    "Generates text with the checkpoint's model, one token at a time through a KV cache. When the context\n"
    "fills up, the oldest half is dropped and the cache rebuilt from the newer half.",
    cmd_sample_opts, 0};

/* Length of the longest prefix of s[0..n) that does not end inside a UTF-8
 * sequence, so streamed output never splits a character. */
static size_t cmd_sample_complete(const char *s, size_t n) {
  size_t i = n;
  int back = 0;
  while (i > 0 && back < 4 && ((unsigned char)s[i - 1] & 0xC0) == 0x80) i--, back++;
  if (i == 0) return n;
  unsigned char c = (unsigned char)s[i - 1];
  int need = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
  return need == back + 1 || need == 1 ? n : i - 1;
}

typedef struct {
  int tokens, top_k;
  double temperature;
  uint64_t seed;
} cmd_sample_args;

static int cmd_sample_run(const char *ckpt, const char *prompt, const cmd_sample_args *sa, const char *device) {
  train_loaded l;
  if (train_open_ckpt(ckpt, device, &l)) return -1;
  backend *m = l.be;
  int V = m->vocab_size, ctx = m->context_length, eot = tok_eot(l.tok);
  int rc = -1;
  int32_t *ids = NULL, *seq = NULL;
  size_t n_prompt = 0;
  float *logits = NULL;
  double *work = NULL;
  char *text = NULL;
  if (prompt && *prompt) {
    if (tok_encode(l.tok, prompt, strlen(prompt), 1, &ids, &n_prompt)) goto out;
  } else {
    ids = util_malloc(sizeof(int32_t), "prompt");
    if (!ids) goto out;
    if (eot >= 0) ids[0] = eot;
    else if (tok_encode(l.tok, "\n", 1, 0, &seq, &n_prompt) == 0 && n_prompt == 1) ids[0] = seq[0];
    else ids[0] = 0;
    free(seq);
    seq = NULL;
    n_prompt = 1;
  }
  size_t cap = n_prompt + (size_t)sa->tokens;
  seq = util_malloc(cap * sizeof(int32_t), "token sequence");
  logits = util_malloc((size_t)V * sizeof(float), "logits");
  work = util_malloc((size_t)V * sizeof(double), "sampling buffer");
  if (!seq || !logits || !work || m->ops->alloc(m, BACKEND_INFER)) goto out;
  memcpy(seq, ids, n_prompt * sizeof(int32_t));
  size_t n = n_prompt;
  /* the prompt's tail that fits the context feeds the cache */
  size_t start = n > (size_t)ctx ? n - (size_t)ctx : 0;
  int pos = 0;
  for (size_t i = start; i < n; i++)
    if (m->ops->infer(m, seq[i], pos++, logits)) goto out;
  int skip_prompt_text = !(prompt && *prompt); /* the synthetic start token is not echoed */
  size_t printed = 0, gen_start = skip_prompt_text ? n_prompt : 0;
  if (!skip_prompt_text) {
    fputs(prompt, stdout);
    size_t tl;
    if (tok_decode(l.tok, seq, n, &text, &tl)) goto out;
    printed = tl;
    free(text);
    text = NULL;
  }
  fflush(stdout);
  sample_rng r;
  sample_seed(&r, sa->seed);
  for (int k = 0; k < sa->tokens; k++) {
    int next = sample_next(logits, V, sa->temperature, sa->top_k, &r, work);
    if (next == eot) break;
    seq[n++] = next;
    size_t tl;
    if (tok_decode(l.tok, seq + gen_start, n - gen_start, &text, &tl)) goto out;
    size_t ok = cmd_sample_complete(text, tl);
    if (ok > printed) {
      fwrite(text + printed, 1, ok - printed, stdout);
      fflush(stdout);
      printed = ok;
    }
    free(text);
    text = NULL;
    if (k + 1 == sa->tokens) break;
    if (pos == ctx) {
      /* context full: keep the newer half and rebuild the cache from it */
      int keep = ctx / 2;
      pos = 0;
      for (size_t i = n - (size_t)keep; i < n - 1; i++)
        if (m->ops->infer(m, seq[i], pos++, logits)) goto out;
    }
    if (m->ops->infer(m, next, pos++, logits)) goto out;
  }
  {
    size_t tl;
    if (tok_decode(l.tok, seq + gen_start, n - gen_start, &text, &tl)) goto out;
    if (tl > printed) fwrite(text + printed, 1, tl - printed, stdout);
  }
  printf("\n");
  rc = 0;
out:
  free(ids);
  free(seq);
  free(logits);
  free(work);
  free(text);
  train_loaded_free(&l);
  return rc;
}

int cmd_sample(int argc, char **argv) {
  cli_args a;
  int code;
  if (cli_parse(&cmd_sample_spec, argc, argv, &a, &code)) return code;
  const char *ckpt = cli_get(&a, "--ckpt");
  if (!ckpt) return cli_usage_err(&a, "option '--ckpt' is required");
  cmd_sample_args sa = {300, 200, 0.8, 1337};
  long v;
  if (cli_int(&a, "--tokens", 1, 1000000, &v)) return 2;
  if (cli_has(&a, "--tokens")) sa.tokens = (int)v;
  if (cli_int(&a, "--top-k", 0, 100000000, &v)) return 2;
  if (cli_has(&a, "--top-k")) sa.top_k = (int)v;
  if (cli_int(&a, "--seed", 0, 0x7fffffffffffffffL, &v)) return 2;
  if (cli_has(&a, "--seed")) sa.seed = (uint64_t)v;
  if (cli_num(&a, "--temperature", 0, 100, &sa.temperature)) return 2;
  long threads = 0;
  if (cli_int(&a, "--threads", 1, 4096, &threads)) return 2;
  if (threads) cpu_set_threads((int)threads);
  const char *device = cli_get(&a, "--device");
  if (device && strcmp(device, "cpu") && strcmp(device, "cuda") && strcmp(device, "auto"))
    return cli_usage_err(&a, "option '--device' must be cpu, cuda or auto (got '%s')", device);
  return cmd_sample_run(ckpt, cli_get(&a, "--prompt"), &sa, device) ? cli_fail() : 0;
}
