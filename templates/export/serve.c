/* serve: see serve.h.
 *
 * Threads: the main thread runs libevent's loop and owns every evhttp
 * object; it parses and checks requests (json.c), answers the cheap ones
 * and queues completions. Workers pop the queue and generate; their text
 * goes back through job.out under srv.mu, and event_active() on the job's
 * own event wakes the loop to send it (libevent's pthread locking makes
 * that one call safe from another thread). A job is freed on the loop
 * thread once its worker has set done and its reply is sent. */
#include "serve.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/thread.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "json.h"
#include "util.h"

#define SERVE_MAX_STOP 4         /* stop strings per request, as OpenAI */
#define SERVE_MAX_STOP_BYTES 256 /* bytes per stop string */
#define SERVE_DEFAULT_TOKENS 16  /* max_tokens when absent, as OpenAI */

typedef struct serve_job serve_job;
struct serve_job {
  struct evhttp_request *req; /* loop thread only; NULL once answered */
  struct evhttp_connection *conn; /* NULL once the client is gone */
  struct event *wake;         /* made active by the worker when out grows or done */
  char *prompt;
  sample_opts so;
  int stream, n_stop;
  char *stop[SERVE_MAX_STOP];
  char id[32];
  long long created;
  int started; /* stream: headers sent */
  /* worker -> loop, under srv.mu */
  util_buf out; /* continuation text not yet sent */
  int done, failed, cancelled;
  sample_result res;
  /* worker only: the whole continuation, for finding stop strings */
  util_buf text;
  size_t released; /* text[0..released) is in out or sent */
  serve_job *next; /* queue link */
};

static struct {
  const serve_model *m;
  const serve_opts *o;
  struct event_base *base;
  struct evhttp *http;
  struct evhttp_bound_socket *listener;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  serve_job *head, *tail; /* waiting jobs, FIFO */
  int inflight, quit; /* inflight: queued or generating */
  int active; /* jobs not yet freed (loop thread) */
  int unsent; /* completion replies handed to libevent, not yet all written */
  int draining;
  unsigned long long next_id;
  tok_t *tok; /* the loop thread's, for checking prompts */
} srv;

/* ---- replies (loop thread) ------------------------------------------------------ */

static void serve_send(struct evhttp_request *req, int code, const char *reason, util_buf *body) {
  struct evkeyvalq *h = evhttp_request_get_output_headers(req);
  evhttp_add_header(h, "Content-Type", "application/json");
  struct evbuffer *b = evbuffer_new();
  if (b) {
    evbuffer_add(b, body->data ? body->data : "", body->len);
    evbuffer_add(b, "\n", 1);
  }
  evhttp_send_reply(req, code, reason, b);
  if (b) evbuffer_free(b);
}

/* `s` as a JSON string; bytes that are not UTF-8 (a cut-off byte-level
 * token at the very end) become U+FFFD, so the reply stays valid JSON. */
static int serve_json_text(util_buf *b, const char *s, size_t n) {
  util_buf t = {0};
  size_t i = 0;
  int rc = 0;
  while (i < n && !rc) {
    long bad = util_utf8_invalid_at(s + i, n - i);
    size_t good = bad < 0 ? n - i : (size_t)bad;
    rc = util_buf_add(&t, s + i, good);
    if (bad >= 0 && !rc) rc = util_buf_add(&t, "\xEF\xBF\xBD", 3);
    i += good + (bad >= 0);
  }
  if (!rc) rc = json_write_str(b, t.data ? t.data : "", t.len, "text");
  util_buf_free(&t);
  return rc;
}

/* OpenAI's error shape; `param` names the offending field (or NULL). */
static void serve_error(struct evhttp_request *req, int code, const char *reason, const char *param,
                        const char *msg) {
  util_buf b = {0};
  util_buf_printf(&b, "{\"error\":{\"message\":");
  serve_json_text(&b, msg, strlen(msg));
  util_buf_printf(&b, ",\"type\":\"%s\",\"param\":", code >= 500 ? "server_error" : "invalid_request_error");
  if (param) serve_json_text(&b, param, strlen(param));
  else util_buf_printf(&b, "null");
  util_buf_printf(&b, ",\"code\":null}}");
  serve_send(req, code, reason, &b);
  util_buf_free(&b);
}

static void serve_quoted(util_buf *b, const char *s) { serve_json_text(b, s, strlen(s)); }

/* The fields every completion object starts with. */
static void serve_head(util_buf *b, const serve_job *j) {
  util_buf_printf(b, "{\"id\":\"%s\",\"object\":\"text_completion\",\"created\":%lld,\"model\":", j->id, j->created);
  serve_quoted(b, srv.m->id);
}

static const char *serve_finish(const serve_job *j) {
  return j->res.finish == SAMPLE_LENGTH ? "\"length\"" : "\"stop\"";
}

static void serve_choice(util_buf *b, const char *text, size_t n, const char *finish) {
  util_buf_printf(b, ",\"choices\":[{\"text\":");
  serve_json_text(b, text, n);
  util_buf_printf(b, ",\"index\":0,\"logprobs\":null,\"finish_reason\":%s}]", finish);
}

static void serve_sse(serve_job *j, util_buf *b) {
  struct evbuffer *e = evbuffer_new();
  if (!e) return;
  evbuffer_add_printf(e, "data: %.*s\n\n", (int)b->len, b->data ? b->data : "");
  evhttp_send_reply_chunk(j->req, e);
  evbuffer_free(e);
}

/* Draining ends when no job is left and every reply is written; a reply
 * whose client vanished never reports written, hence the 10 s cap. */
static void serve_maybe_exit(void) {
  if (!srv.draining || srv.active) return;
  struct timeval cap = {10, 0};
  event_base_loopexit(srv.base, srv.unsent ? &cap : NULL);
}

static void serve_written(struct evhttp_request *req, void *arg) {
  (void)req, (void)arg;
  srv.unsent--;
  serve_maybe_exit();
}

/* The job's reply is about to end: count it until libevent has written it. */
static void serve_track(serve_job *j) {
  if (!j->conn) return;
  evhttp_request_set_on_complete_cb(j->req, serve_written, NULL);
  srv.unsent++;
}

/* ---- jobs ------------------------------------------------------------------------ */

static void serve_job_free(serve_job *j) {
  if (j->wake) event_free(j->wake);
  free(j->prompt);
  for (int i = 0; i < j->n_stop; i++) free(j->stop[i]);
  util_buf_free(&j->out);
  util_buf_free(&j->text);
  free(j);
  srv.active--;
  serve_maybe_exit();
}

/* The client went away: its connection is being freed. The request stays
 * ours (libevent detaches it) until the reply call frees it. */
static void serve_on_close(struct evhttp_connection *c, void *arg) {
  (void)c;
  serve_job *j = arg;
  j->conn = NULL;
  pthread_mutex_lock(&srv.mu);
  j->cancelled = 1;
  pthread_mutex_unlock(&srv.mu);
}

/* Loop side of a job: sends what the worker produced; answers and frees
 * the job once the worker is done. */
static void serve_wake(evutil_socket_t fd, short what, void *arg) {
  (void)fd, (void)what;
  serve_job *j = arg;
  pthread_mutex_lock(&srv.mu);
  util_buf piece = j->out;
  memset(&j->out, 0, sizeof j->out);
  int done = j->done;
  pthread_mutex_unlock(&srv.mu);
  util_buf b = {0};
  if (j->stream && j->conn && piece.len) {
    serve_head(&b, j);
    serve_choice(&b, piece.data, piece.len, "null");
    util_buf_printf(&b, "}");
    serve_sse(j, &b);
  }
  util_buf_free(&piece);
  b.len = 0;
  if (!done) {
    util_buf_free(&b);
    return;
  }
  if (j->conn) evhttp_connection_set_closecb(j->conn, NULL, NULL);
  serve_track(j);
  if (j->stream) {
    if (j->conn && !j->failed) {
      serve_head(&b, j);
      serve_choice(&b, "", 0, serve_finish(j));
      util_buf_printf(&b, "}");
      serve_sse(j, &b);
      b.len = 0;
      util_buf_printf(&b, "[DONE]");
      serve_sse(j, &b);
    }
    evhttp_send_reply_end(j->req); /* frees a detached request too */
  } else if (j->failed) {
    serve_error(j->req, 500, "Internal Server Error", NULL, "generation failed (see the server's log)");
  } else {
    serve_head(&b, j);
    serve_choice(&b, j->text.data ? j->text.data : "", j->released, serve_finish(j));
    util_buf_printf(&b, ",\"usage\":{\"prompt_tokens\":%d,\"completion_tokens\":%d,\"total_tokens\":%d}}",
                    j->res.prompt_tokens, j->res.completion_tokens,
                    j->res.prompt_tokens + j->res.completion_tokens);
    serve_send(j->req, 200, "OK", &b);
  }
  util_buf_free(&b);
  serve_job_free(j);
}

/* ---- workers ---------------------------------------------------------------------- */

/* Hands text[released..upto) to the loop. */
static int serve_release(serve_job *j, size_t upto) {
  int rc = 0;
  if (upto <= j->released) return 0;
  if (!j->stream) return j->released = upto, 0; /* sent whole from text at the end */
  pthread_mutex_lock(&srv.mu);
  rc = util_buf_add(&j->out, j->text.data + j->released, upto - j->released);
  event_active(j->wake, 0, 0);
  pthread_mutex_unlock(&srv.mu);
  j->released = upto;
  return rc;
}

/* sample_sink.text: stops at the first stop string (which is not sent) and
 * holds back a tail that could still become one, never splitting a UTF-8
 * character; stops too when the client has gone. */
static int serve_text(void *arg, const char *s, size_t n) {
  serve_job *j = arg;
  pthread_mutex_lock(&srv.mu);
  int gone = j->cancelled;
  pthread_mutex_unlock(&srv.mu);
  if (gone) return 1;
  if (util_buf_add(&j->text, s, n)) return -1;
  const char *t = j->text.data;
  size_t len = j->text.len, from = j->released > SERVE_MAX_STOP_BYTES ? j->released - SERVE_MAX_STOP_BYTES : 0;
  size_t hit = len, hold = 0;
  for (int i = 0; i < j->n_stop; i++) {
    size_t sl = strlen(j->stop[i]);
    for (size_t p = from; p + sl <= len && p < hit; p++)
      if (!memcmp(t + p, j->stop[i], sl)) {
        hit = p;
        break;
      }
    for (size_t h = sl - 1 < len ? sl - 1 : len; h > hold; h--)
      if (!memcmp(t + len - h, j->stop[i], h)) {
        hold = h;
        break;
      }
  }
  if (hit < len) {
    if (serve_release(j, hit)) return -1;
    j->text.len = hit;
    return 1;
  }
  size_t upto = len - hold;
  while (upto > j->released && upto < len && ((unsigned char)t[upto] & 0xC0) == 0x80) upto--;
  return serve_release(j, upto) ? -1 : 0;
}

static void serve_generate(serve_job *j, void *ctx, tok_t *tok) {
  const sample_model sm = {srv.m->infer, ctx, srv.m->vocab_size, srv.m->context_length};
  const sample_sink sink = {NULL, serve_text, j};
  int rc = sample_run(&sm, tok, j->prompt, &j->so, &sink, &j->res);
  if (rc) fprintf(stderr, "serve: %s: %s\n", j->id, util_errmsg());
  else if (j->res.finish != SAMPLE_STOPPED) rc = serve_release(j, j->text.len);
  pthread_mutex_lock(&srv.mu);
  j->failed = rc != 0;
  j->done = 1;
  srv.inflight--;
  event_active(j->wake, 0, 0); /* the last touch: the loop may free j from here on */
  pthread_mutex_unlock(&srv.mu);
}

static void *serve_worker(void *arg) {
  (void)arg;
  void *ctx = srv.m->worker_new(srv.o->parallel);
  tok_t *tok = ctx ? srv.m->tok_new() : NULL;
  if (!tok) fprintf(stderr, "serve: a worker cannot start: %s\n", util_errmsg());
  for (;;) {
    pthread_mutex_lock(&srv.mu);
    while (!srv.head && !srv.quit) pthread_cond_wait(&srv.cv, &srv.mu);
    serve_job *j = srv.head;
    if (!j) {
      pthread_mutex_unlock(&srv.mu);
      break;
    }
    srv.head = j->next;
    if (!srv.head) srv.tail = NULL;
    pthread_mutex_unlock(&srv.mu);
    if (tok) {
      serve_generate(j, ctx, tok);
    } else {
      pthread_mutex_lock(&srv.mu);
      j->failed = j->done = 1;
      srv.inflight--;
      event_active(j->wake, 0, 0);
      pthread_mutex_unlock(&srv.mu);
    }
  }
  if (tok) tok_free(tok);
  if (ctx) srv.m->worker_free(ctx);
  return NULL;
}

/* ---- requests (loop thread) ---------------------------------------------------------- */

/* A JSON number field as an integer in [lo, hi]; absent or null keeps *out.
 * 0, or -1 with the message in err. */
static int serve_int(const json_val *body, const char *key, long long lo, long long hi, long long *out, char *err,
                     size_t n) {
  const json_val *v = json_get(body, key);
  if (!v || v->type == JSON_NULL) return 0;
  if (v->type != JSON_NUM || !v->is_int || v->i < lo || v->i > hi) {
    snprintf(err, n, "%s must be an integer in [%lld, %lld]", key, lo, hi);
    return -1;
  }
  *out = v->i;
  return 0;
}

static int serve_num(const json_val *body, const char *key, double lo, double hi, double *out, char *err, size_t n) {
  const json_val *v = json_get(body, key);
  if (!v || v->type == JSON_NULL) return 0;
  if (v->type != JSON_NUM || !(v->num >= lo && v->num <= hi)) {
    snprintf(err, n, "%s must be a number in [%g, %g]", key, lo, hi);
    return -1;
  }
  *out = v->num;
  return 0;
}

/* A string field as C text: no NUL inside. */
static const char *serve_cstr(const json_val *v) {
  return v && v->type == JSON_STR && strlen(v->str) == v->len ? v->str : NULL;
}

/* Fills j from the request body; -1 with the field in *param and the
 * message in err. */
static int serve_parse(serve_job *j, const json_val *body, const char **param, char *err, size_t n) {
  if (body->type != JSON_OBJ) {
    *param = NULL;
    snprintf(err, n, "the request body must be a JSON object");
    return -1;
  }
  const json_val *model = json_get(body, "model");
  *param = "model";
  if (model && model->type != JSON_NULL && model->type != JSON_STR) return snprintf(err, n, "model must be a string"), -1;
  *param = "prompt";
  const json_val *p = json_get(body, "prompt");
  if (p && p->type == JSON_ARR && p->len == 1) p = &p->items[0]; /* ["text"], as the openai client may send */
  const char *prompt = serve_cstr(p);
  if (!p) return snprintf(err, n, "prompt is required"), -1;
  if (!prompt) return snprintf(err, n, "prompt must be a string without NUL characters"), -1;
  int32_t *ids = NULL;
  size_t nid = 0;
  if (tok_encode(srv.tok, prompt, strlen(prompt), 1, &ids, &nid)) {
    snprintf(err, n, "prompt: %s", util_errmsg());
    return -1;
  }
  free(ids);
  if (nid > (size_t)srv.m->context_length) {
    snprintf(err, n, "prompt has %zu tokens, more than the context length %d", nid, srv.m->context_length);
    return -1;
  }
  long long v = SERVE_DEFAULT_TOKENS;
  if (srv.o->max_tokens < v) v = srv.o->max_tokens;
  *param = "max_tokens";
  if (serve_int(body, "max_tokens", 1, srv.o->max_tokens, &v, err, n)) return -1;
  j->so.tokens = (int)v;
  v = j->so.top_k;
  *param = "top_k";
  if (serve_int(body, "top_k", 0, 100000000, &v, err, n)) return -1;
  j->so.top_k = (int)v;
  v = (long long)j->so.seed;
  *param = "seed";
  if (serve_int(body, "seed", 0, 0x7fffffffffffffffLL, &v, err, n)) return -1;
  j->so.seed = (uint64_t)v;
  *param = "temperature";
  if (serve_num(body, "temperature", 0, 100, &j->so.temperature, err, n)) return -1;
  *param = "top_p";
  if (serve_num(body, "top_p", 0, 1, &j->so.top_p, err, n)) return -1;
  *param = "stream";
  const json_val *s = json_get(body, "stream");
  if (s && s->type != JSON_NULL && s->type != JSON_BOOL) return snprintf(err, n, "stream must be true or false"), -1;
  j->stream = s && s->type == JSON_BOOL && s->boolean;
  *param = "stop";
  s = json_get(body, "stop");
  if (s && s->type != JSON_NULL) {
    const json_val *list = s->type == JSON_ARR ? s->items : s;
    size_t count = s->type == JSON_ARR ? s->len : 1;
    if ((s->type != JSON_ARR && s->type != JSON_STR) || count > SERVE_MAX_STOP) {
      snprintf(err, n, "stop must be a string or a list of at most %d strings", SERVE_MAX_STOP);
      return -1;
    }
    for (size_t i = 0; i < count; i++) {
      const char *t = serve_cstr(&list[i]);
      if (!t || !*t || strlen(t) > SERVE_MAX_STOP_BYTES) {
        snprintf(err, n, "stop strings must be non-empty, at most %d bytes, without NUL", SERVE_MAX_STOP_BYTES);
        return -1;
      }
      if (!(j->stop[j->n_stop] = strdup(t))) return snprintf(err, n, "out of memory"), -1;
      j->n_stop++;
    }
  }
  if (!(j->prompt = strdup(prompt))) return *param = NULL, snprintf(err, n, "out of memory"), -1;
  return 0;
}

static void serve_completion(struct evhttp_request *req) {
  struct evbuffer *in = evhttp_request_get_input_buffer(req);
  size_t len = evbuffer_get_length(in);
  char err[512];
  if (len > srv.o->max_body) {
    snprintf(err, sizeof err, "the request body has %zu bytes, more than the limit %zu (--max-body)", len,
             srv.o->max_body);
    {
    serve_error(req, 413, "Payload Too Large", "body", err);
    return;
  }
  }
  const char *text = len ? (const char *)evbuffer_pullup(in, -1) : "";
  json_val *body = json_parse(text, len, "request body");
  if (!body) {
    serve_error(req, 400, "Bad Request", NULL, util_errmsg());
    return;
  }
  serve_job *j = calloc(1, sizeof *j);
  if (!j) {
    json_free(body);
    {
    serve_error(req, 500, "Internal Server Error", NULL, "out of memory");
    return;
  }
  }
  srv.active++;
  j->so = (sample_opts)SAMPLE_OPTS_DEFAULT;
  const char *param;
  int bad = serve_parse(j, body, &param, err, sizeof err);
  json_free(body);
  if (bad) {
    serve_error(req, 400, "Bad Request", param, err);
    {
    serve_job_free(j);
    return;
  }
  }
  pthread_mutex_lock(&srv.mu);
  int full = srv.inflight >= srv.o->parallel + srv.o->queue;
  pthread_mutex_unlock(&srv.mu);
  if (full) {
    snprintf(err, sizeof err, "the server is busy: %d requests run or wait already (--parallel, --queue); retry later",
             srv.o->parallel + srv.o->queue);
    serve_error(req, 503, "Service Unavailable", NULL, err);
    {
    serve_job_free(j);
    return;
  }
  }
  if (!(j->wake = event_new(srv.base, -1, 0, serve_wake, j))) {
    serve_error(req, 500, "Internal Server Error", NULL, "out of memory");
    {
    serve_job_free(j);
    return;
  }
  }
  snprintf(j->id, sizeof j->id, "cmpl-%llx", ++srv.next_id);
  j->created = (long long)time(NULL);
  j->req = req;
  j->conn = evhttp_request_get_connection(req);
  evhttp_connection_set_closecb(j->conn, serve_on_close, j);
  if (j->stream) {
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Content-Type", "text/event-stream");
    evhttp_add_header(h, "Cache-Control", "no-cache");
    evhttp_send_reply_start(req, 200, "OK");
  }
  pthread_mutex_lock(&srv.mu);
  if (srv.tail) srv.tail->next = j;
  else srv.head = j;
  srv.tail = j;
  srv.inflight++;
  pthread_cond_signal(&srv.cv);
  pthread_mutex_unlock(&srv.mu);
}

static void serve_request(struct evhttp_request *req, void *arg) {
  (void)arg;
  const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
  const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
  int cmd = evhttp_request_get_command(req);
  if (!path) {
    serve_error(req, 400, "Bad Request", NULL, "the request has no path");
    return;
  }
  int get = cmd == EVHTTP_REQ_GET, post = cmd == EVHTTP_REQ_POST;
  char err[512];
  if (!strcmp(path, "/health") || !strcmp(path, "/v1/models")) {
    if (!get) {
    serve_error(req, 405, "Method Not Allowed", NULL, "use GET for this path");
    return;
  }
    util_buf b = {0};
    if (path[1] == 'h') {
      util_buf_printf(&b, "{\"status\":\"%s\"}", srv.draining ? "draining" : "ok");
    } else {
      util_buf_printf(&b, "{\"object\":\"list\",\"data\":[{\"id\":");
      serve_quoted(&b, srv.m->id);
      util_buf_printf(&b, ",\"object\":\"model\",\"created\":0,\"owned_by\":\"gptc\"}]}");
    }
    serve_send(req, 200, "OK", &b);
    {
    util_buf_free(&b);
    return;
  }
  }
  if (strcmp(path, "/v1/completions")) {
    snprintf(err, sizeof err, "no such path: %.200s (the server has /v1/completions, /v1/models, /health)", path);
    {
    serve_error(req, 404, "Not Found", NULL, err);
    return;
  }
  }
  if (!post) {
    serve_error(req, 405, "Method Not Allowed", NULL, "use POST for /v1/completions");
    return;
  }
  if (srv.draining) {
    serve_error(req, 503, "Service Unavailable", NULL, "the server is shutting down");
    return;
  }
  serve_completion(req);
}

/* SIGTERM / SIGINT: no new connections; exit once the jobs in flight end. */
static void serve_on_signal(evutil_socket_t sig, short what, void *arg) {
  (void)sig, (void)what, (void)arg;
  if (srv.draining) return;
  srv.draining = 1;
  if (srv.listener) evhttp_del_accept_socket(srv.http, srv.listener);
  srv.listener = NULL;
  fprintf(stderr, "serve: draining %d request(s), then exiting\n", srv.active);
  serve_maybe_exit();
}

/* libevent's own warnings (a client's malformed request, a resolver
 * failure we report ourselves) are not the server's errors. */
static void serve_log(int severity, const char *msg) {
  if (severity >= EVENT_LOG_ERR) fprintf(stderr, "serve: libevent: %s\n", msg);
}

/* --host must name an address of this machine's: checked here for a
 * clear message (libevent's bind would only say it failed). */
static int serve_check_host(const char *host) {
  struct addrinfo hints, *ai = NULL;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  int rc = getaddrinfo(host, NULL, &hints, &ai);
  if (ai) freeaddrinfo(ai);
  if (rc) return util_err("--host '%s': not an address to listen on (%s)", host, gai_strerror(rc));
  return 0;
}

int serve_run(const serve_model *m, const serve_opts *o) {
  memset(&srv, 0, sizeof srv);
  srv.m = m;
  srv.o = o;
  signal(SIGPIPE, SIG_IGN); /* a client gone mid-reply is an error return, not a kill */
  event_set_log_callback(serve_log);
  if (serve_check_host(o->host)) return -1;
  if (evthread_use_pthreads()) return util_err("--serve: libevent has no thread support");
  pthread_mutex_init(&srv.mu, NULL);
  pthread_cond_init(&srv.cv, NULL);
  pthread_t *th = NULL;
  struct event *sig_term = NULL, *sig_int = NULL;
  int rc = -1, started = 0;
  if (!(srv.tok = m->tok_new())) goto out;
  if (!(srv.base = event_base_new()) || !(srv.http = evhttp_new(srv.base))) {
    util_err("--serve: cannot start the event loop");
    goto out;
  }
  evhttp_set_gencb(srv.http, serve_request, NULL);
  evhttp_set_allowed_methods(srv.http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD | EVHTTP_REQ_PUT |
                                           EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS | EVHTTP_REQ_PATCH);
  /* libevent's own cap, past which it closes with a bare 413; the JSON 413
   * naming the limit comes from serve_completion below it */
  evhttp_set_max_body_size(srv.http, (ev_ssize_t)(o->max_body * 4 + 4096));
  evhttp_set_max_headers_size(srv.http, 64 * 1024);
  evhttp_set_timeout(srv.http, 60); /* idle or half-sent requests */
  errno = 0;
  if (!(srv.listener = evhttp_bind_socket_with_handle(srv.http, o->host, (ev_uint16_t)o->port))) {
    util_err("--serve: cannot listen on %s port %d: %s", o->host, o->port, errno ? strerror(errno) : "bind failed");
    goto out;
  }
  struct sockaddr_storage sa;
  socklen_t sl = sizeof sa;
  int port = o->port;
  if (!getsockname(evhttp_bound_socket_get_fd(srv.listener), (struct sockaddr *)&sa, &sl))
    port = ntohs(sa.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&sa)->sin6_port
                                          : ((struct sockaddr_in *)&sa)->sin_port);
  sig_term = evsignal_new(srv.base, SIGTERM, serve_on_signal, NULL);
  sig_int = evsignal_new(srv.base, SIGINT, serve_on_signal, NULL);
  if (!sig_term || !sig_int || event_add(sig_term, NULL) || event_add(sig_int, NULL)) {
    util_err("--serve: cannot install the signal handlers");
    goto out;
  }
  if (!(th = calloc((size_t)o->parallel, sizeof *th))) {
    util_err("--serve: out of memory");
    goto out;
  }
  for (; started < o->parallel; started++)
    if (pthread_create(&th[started], NULL, serve_worker, NULL)) {
      util_err("--serve: cannot start worker thread %d", started + 1);
      goto out;
    }
  printf("listening on http://%s:%d\n", o->host, port);
  fflush(stdout);
  rc = event_base_dispatch(srv.base) < 0 ? util_err("--serve: the event loop failed") : 0;
out:
  pthread_mutex_lock(&srv.mu);
  srv.quit = 1;
  pthread_cond_broadcast(&srv.cv);
  pthread_mutex_unlock(&srv.mu);
  for (int i = 0; i < started; i++) pthread_join(th[i], NULL);
  free(th);
  if (sig_term) event_free(sig_term);
  if (sig_int) event_free(sig_int);
  if (srv.http) evhttp_free(srv.http);
  if (srv.base) event_base_free(srv.base);
  if (srv.tok) tok_free(srv.tok);
  pthread_mutex_destroy(&srv.mu);
  pthread_cond_destroy(&srv.cv);
  return rc;
}
