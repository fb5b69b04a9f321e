/* sample: next-token choice from logits (greedy, temperature, top-k) with a
 * seeded generator, and the generation loop around it, shared by `gptc
 * sample` and exported executables so both give the same text for the same
 * seed. Nothing here needs the compiled-model ABI (model.h): an exported
 * executable compiles this file next to the generated inference code. */
#ifndef GPTC_SAMPLE_H
#define GPTC_SAMPLE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "tok.h"

typedef struct {
  uint64_t s;
} sample_rng;

void sample_seed(sample_rng *r, uint64_t seed);
uint64_t sample_u64(sample_rng *r);
/* Uniform in [0, 1) with 53 random bits. */
double sample_uniform(sample_rng *r);
/* temperature 0 -> argmax (lowest id among ties); top_k 0 -> all tokens;
 * top_p < 1 keeps the most likely tokens whose probability reaches top_p
 * (nucleus sampling; 1 = all, the draw unchanged). `work` holds 2V doubles. */
int sample_next(const float *logits, int V, double temperature, int top_k, double top_p, sample_rng *r,
                double *work);

/* ---- generation ------------------------------------------------------------ */

typedef struct {
  int tokens;         /* tokens to generate; stops early at <|endoftext|> */
  int top_k;          /* 0 = all tokens */
  double temperature; /* 0 = greedy */
  uint64_t seed;
  double top_p; /* 1 = no nucleus cut */
} sample_opts;

/* The defaults of `gptc sample` and of exported executables. */
#define SAMPLE_OPTS_DEFAULT {300, 200, 0.8, 1337, 1.0}

/* Batch-1 KV-cache step: feeds `token` at `pos` (positions < pos are
 * cached) and writes the (V) logits; 0, or -1 with util_err (a device
 * error). `ctx` is the caller's model: a backend, or an exported
 * executable's weights, KV cache and scratch. */
typedef int (*sample_infer_fn)(void *ctx, int token, int pos, float *logits);

typedef struct {
  sample_infer_fn infer;
  void *ctx;
  int vocab_size, context_length;
} sample_model;

/* The token ids generation starts from: the encoded prompt (special tokens
 * allowed), or for an empty/NULL prompt one start token: <|endoftext|>,
 * else a newline (char models), else id 0. *ids is malloc'ed. */
int sample_prompt_ids(tok_t *tok, const char *prompt, int32_t **ids, size_t *n);

/* Generates o->tokens tokens after `prompt` and streams the text to `out`:
 * the prompt itself first (the synthetic start token is not echoed), then
 * the continuation as it is produced, never splitting a UTF-8 character,
 * then a newline. The prompt's tail that fits the context feeds the cache;
 * when the context is full the oldest half is dropped and the cache rebuilt
 * from the newer half. -1 with util_err on a tokenizer, inference, memory
 * or write error. */
int sample_generate(const sample_model *m, tok_t *tok, const char *prompt, const sample_opts *o, FILE *out);

/* Where sample_run's continuation goes. begin (optional) runs once the
 * prompt is in the cache, before the first token; text gets the
 * continuation in pieces that never split a UTF-8 character (but for the
 * very end of a cut-off text) and answers 0 to go on, 1 to stop now, -1
 * on an error (util_err set). */
typedef struct {
  int (*begin)(void *arg);
  int (*text)(void *arg, const char *s, size_t n);
  void *arg;
} sample_sink;

enum { SAMPLE_LENGTH, SAMPLE_EOT, SAMPLE_STOPPED }; /* why generation ended */

typedef struct {
  int prompt_tokens, completion_tokens;
  int finish; /* SAMPLE_LENGTH: o->tokens reached; SAMPLE_EOT; SAMPLE_STOPPED: the sink said stop */
} sample_result;

/* The loop behind sample_generate: the continuation only (no prompt echo,
 * no final newline) to `sink`. */
int sample_run(const sample_model *m, tok_t *tok, const char *prompt, const sample_opts *o, const sample_sink *sink,
               sample_result *res);

/* The mean cross-entropy of the text in file `path` over every
 * non-overlapping window ids[i:i+T] -> ids[i+1:i+T+1], i = 0, T, 2T, ...
 * while i < n - T (T = context_length), as `gptc eval --text` counts them;
 * each window runs through m's KV-cache step from position 0, the loss of
 * each position in double. Prints `gptc eval`'s two lines to `out`. -1
 * with util_err on an unreadable, empty, non-UTF-8 or too-short text. */
int sample_eval(const sample_model *m, tok_t *tok, const char *path, FILE *out);

#endif
