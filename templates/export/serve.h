/* serve: `./model --serve`, an HTTP/1.1 server speaking OpenAI's completions
 * API (POST /v1/completions, GET /v1/models, GET /health) over libevent's
 * evhttp. Generation runs on N worker threads, each with its own KV cache,
 * through sample.c's loop, so a request's text is the command line's for
 * the same prompt, seed and options. See docs/serve.md. */
#ifndef GPTC_SERVE_H
#define GPTC_SERVE_H

#include <stddef.h>

#include "sample.h"
#include "tok.h"

typedef struct {
  const char *id; /* the model's name in responses and /v1/models */
  int vocab_size, context_length;
  sample_infer_fn infer;
  /* one worker's model state (KV cache, scratch), made on the worker's own
   * thread (nworkers lets it share out the cores); NULL after util_err */
  void *(*worker_new)(int nworkers);
  void (*worker_free)(void *ctx);
  tok_t *(*tok_new)(void); /* a tokenizer per thread: NULL after util_err */
} serve_model;

typedef struct {
  const char *host;
  int port;       /* 0: any free port (printed) */
  int parallel;   /* worker threads */
  int queue;      /* requests that may wait for a worker; more get 503 */
  int max_tokens; /* the largest max_tokens a request may ask */
  size_t max_body; /* request body bytes; more get 413 */
} serve_opts;

/* Listens, prints "listening on http://HOST:PORT" to stdout, and serves
 * until SIGTERM or SIGINT, which stop new connections, let the requests in
 * flight finish, and return 0. -1 after util_err if it cannot start. */
int serve_run(const serve_model *m, const serve_opts *o);

#endif
