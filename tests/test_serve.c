/* ./model --serve: the OpenAI-style completions server of an exported
 * executable. Its texts equal the command line's for the same seed and
 * options, streamed or not; bad requests get JSON errors naming the field;
 * mutated requests never crash it; it stays correct under concurrent load,
 * frees a worker whose client left, and drains on SIGTERM. All traffic is
 * on 127.0.0.1, every wait is bounded. */
#define _GNU_SOURCE /* memmem */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "json.h"
#include "testutil.h"
#include "util.h"

static char dir[1024], exe[1200], golden_exe[1200];

static void serve_setup(void) {
  snprintf(dir, sizeof dir, "%s", tu_tmpdir());
  tu_run_result r;
  int code = tu_run(&r, NULL, "train --config '%s' --steps 20 --quiet --out '%s/char'",
                    tu_src("configs/tiny-test.lua"), dir);
  ck_assert_msg(code == 0, "train: %s", r.err);
  tu_run_free(&r);
  snprintf(exe, sizeof exe, "%s/model", dir);
  code = tu_run(&r, NULL, "export --ckpt '%s/char/last.safetensors' -o '%s'", dir, exe);
  ck_assert_msg(code == 0, "export: %s", r.err);
  tu_run_free(&r);
  /* the checkpoint tests/ref/serve_openai.py served for the golden transcript */
  snprintf(golden_exe, sizeof golden_exe, "%s/golden-model", dir);
  code = tu_run(&r, NULL, "export --ckpt '%s' -o '%s'", tu_src("tests/golden/serve/tiny-test.safetensors"), golden_exe);
  ck_assert_msg(code == 0, "export golden: %s", r.err);
  tu_run_free(&r);
}

/* ---- the server process ------------------------------------------------------------ */

typedef struct {
  pid_t pid;
  int port;
} server;

/* Starts `exe --serve --port 0 --threads 1 ARGS` and reads the port it
 * prints (30 s at most). */
static server start_exe(const char *program, const char *args) {
  int fd[2];
  ck_assert_int_eq(pipe(fd), 0);
  server s = {0, 0};
  s.pid = fork();
  ck_assert_int_ge(s.pid, 0);
  if (s.pid == 0) {
    dup2(fd[1], 1);
    close(fd[0]);
    close(fd[1]);
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "exec '%s' --serve --port 0 --threads 1 %s", program, args);
    execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
    _exit(127);
  }
  close(fd[1]);
  char line[256];
  size_t n = 0;
  while (n + 1 < sizeof line) {
    struct pollfd p = {fd[0], POLLIN, 0};
    ck_assert_msg(poll(&p, 1, 30000) == 1, "the server printed no port in 30 s");
    ssize_t k = read(fd[0], line + n, 1);
    ck_assert_msg(k == 1, "the server exited before printing its port");
    if (line[n] == '\n') break;
    n++;
  }
  line[n] = 0;
  close(fd[0]);
  const char *colon = strrchr(line, ':');
  ck_assert_msg(!strncmp(line, "listening on http://127.0.0.1:", 30) && colon, "unexpected first line '%s'", line);
  s.port = atoi(colon + 1);
  ck_assert_int_gt(s.port, 0);
  return s;
}

static server start(const char *args) { return start_exe(exe, args); }

/* Waits (60 s at most) for the server to exit; its exit code. */
static int wait_exit(server *s) {
  for (int i = 0; i < 6000; i++) {
    int st;
    pid_t w = waitpid(s->pid, &st, WNOHANG);
    if (w == s->pid) return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    usleep(10000);
  }
  kill(s->pid, SIGKILL);
  waitpid(s->pid, NULL, 0);
  ck_abort_msg("the server did not exit within 60 s");
  return -1;
}

static void stop(server *s) {
  kill(s->pid, SIGTERM);
  ck_assert_int_eq(wait_exit(s), 0);
}

/* ---- a raw HTTP/1.0 client (the reply ends when the server closes) ----------------- */

static int dial(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  ck_assert_int_ge(fd, 0);
  struct timeval tv = {30, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_port = htons((uint16_t)port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ck_assert_msg(connect(fd, (struct sockaddr *)&a, sizeof a) == 0, "connect: %s", strerror(errno));
  return fd;
}

static void send_all(int fd, const char *p, size_t n) {
  while (n) {
    ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
    if (k <= 0) return; /* the server may close early (413, a malformed request) */
    p += k;
    n -= (size_t)k;
  }
}

typedef struct {
  int status;
  char *body; /* after the headers, NUL-terminated */
  char *raw;
  size_t len;
} reply;

/* Reads until the server closes (or 30 s without a byte); status 0 when no
 * status line came back. */
static reply read_reply(int fd) {
  util_buf b = {0};
  char chunk[65536];
  ssize_t k;
  while ((k = recv(fd, chunk, sizeof chunk, 0)) > 0) ck_assert_int_eq(util_buf_add(&b, chunk, (size_t)k), 0);
  util_buf_add(&b, "", 1);
  close(fd);
  reply r = {0, NULL, b.data, b.len - 1};
  sscanf(b.data, "HTTP/1.%*d %d", &r.status);
  char *end = strstr(b.data, "\r\n\r\n");
  r.body = end ? end + 4 : b.data + r.len;
  return r;
}

static reply http(int port, const char *method, const char *path, const char *body) {
  int fd = dial(port);
  char head[512];
  size_t n = body ? strlen(body) : 0;
  snprintf(head, sizeof head, "%s %s HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
           "Content-Length: %zu\r\n\r\n", method, path, n);
  send_all(fd, head, strlen(head));
  if (n) send_all(fd, body, n);
  return read_reply(fd);
}

static reply post(int port, const char *body) { return http(port, "POST", "/v1/completions", body); }

static void reply_free(reply *r) { free(r->raw); }

static json_val *parse(const char *s) {
  json_val *v = json_parse(s, strlen(s), "reply");
  ck_assert_msg(v, "%s: %s", util_errmsg(), s);
  return v;
}

static const char *str_at(const json_val *v, const char *k) {
  const json_val *x = json_get(v, k);
  ck_assert_msg(x && x->type == JSON_STR, "no string '%s'", k);
  return x->str;
}

static const json_val *choice(const json_val *v) {
  const json_val *c = json_get(v, "choices");
  ck_assert_msg(c && c->type == JSON_ARR && c->len == 1, "no choices[1]");
  return &c->items[0];
}

/* A completion's text, checking the reply's shape; *finish gets its
 * finish_reason (caller frees both). */
static char *complete(int port, const char *body, char **finish) {
  reply r = post(port, body);
  ck_assert_msg(r.status == 200, "status %d for %s: %s", r.status, body, r.body);
  json_val *v = parse(r.body);
  ck_assert_str_eq(str_at(v, "object"), "text_completion");
  ck_assert_str_eq(str_at(v, "model"), "tiny-test");
  ck_assert(!strncmp(str_at(v, "id"), "cmpl-", 5));
  const json_val *c = choice(v);
  ck_assert_ptr_nonnull(json_get(c, "logprobs"));
  ck_assert_int_eq(json_get(c, "logprobs")->type, JSON_NULL);
  ck_assert_int_eq((int)json_get(c, "index")->i, 0);
  const json_val *u = json_get(v, "usage");
  ck_assert_ptr_nonnull(u);
  ck_assert_int_eq(json_get(u, "total_tokens")->i, json_get(u, "prompt_tokens")->i + json_get(u, "completion_tokens")->i);
  char *text = util_strdup(str_at(c, "text"));
  if (finish) *finish = util_strdup(str_at(c, "finish_reason"));
  json_free(v);
  reply_free(&r);
  return text;
}

/* The SSE events of a streamed reply: the concatenated text, the final
 * finish_reason; checks the [DONE] end. */
static char *stream_text(const char *body, char **finish) {
  util_buf t = {0};
  util_buf_add(&t, "", 0);
  const char *p = body;
  int done = 0;
  *finish = NULL;
  while ((p = strstr(p, "data: "))) {
    p += 6;
    const char *e = strstr(p, "\n\n");
    ck_assert_msg(e, "an event without its blank line: %s", p);
    ck_assert_msg(!done, "data after [DONE]");
    if (!strncmp(p, "[DONE]", 6)) {
      done = 1;
    } else {
      json_val *v = json_parse(p, (size_t)(e - p), "event");
      ck_assert_msg(v, "%s", util_errmsg());
      ck_assert_str_eq(str_at(v, "object"), "text_completion");
      const json_val *c = choice(v);
      const char *s = str_at(c, "text");
      util_buf_add(&t, s, strlen(s));
      const json_val *f = json_get(c, "finish_reason");
      if (f->type == JSON_STR) {
        ck_assert_msg(!*finish, "two finish_reasons");
        *finish = util_strdup(f->str);
      }
      json_free(v);
    }
    p = e;
  }
  ck_assert_msg(done, "the stream has no [DONE]: %s", body);
  ck_assert_msg(*finish, "the stream has no finish_reason");
  util_buf_add(&t, "", 1);
  return t.data;
}

/* The command line's text for the same options (prompt echoed, then a
 * newline): what the server's text must be. */
static char *cli_text(const char *prompt, const char *opts) {
  char path[1300], cmd[4096];
  snprintf(path, sizeof path, "%s/cli.out", dir);
  snprintf(cmd, sizeof cmd, "timeout 60 '%s' --threads 1 %s '%s' >'%s'", exe, opts, prompt, path);
  ck_assert_int_eq(system(cmd), 0);
  char *out;
  size_t n;
  ck_assert_int_eq(util_read_file(path, &out, &n), 0);
  size_t pl = strlen(prompt);
  ck_assert_msg(n > pl && !strncmp(out, prompt, pl) && out[n - 1] == '\n', "unexpected CLI output '%s'", out);
  out[n - 1] = 0;
  char *text = util_strdup(out + pl);
  free(out);
  return text;
}

/* ---- texts ---------------------------------------------------------------------------- */

static const struct {
  const char *cli, *json;
} same[] = {
    {"--seed 7 --tokens 60", "\"seed\":7,\"max_tokens\":60"},
    {"--seed 3 --tokens 50 --temperature 0", "\"seed\":3,\"max_tokens\":50,\"temperature\":0"},
    {"--seed 11 --tokens 80 --temperature 1.3 --top-k 5", "\"seed\":11,\"max_tokens\":80,\"temperature\":1.3,\"top_k\":5"},
    {"--seed 5 --tokens 70 --top-p 0.6 --top-k 0", "\"seed\":5,\"max_tokens\":70,\"top_p\":0.6,\"top_k\":0"},
};

START_TEST(test_plain_and_stream_equal_cli) {
  server s = start("--parallel 2");
  for (size_t i = 0; i < sizeof same / sizeof same[0]; i++) {
    char *want = cli_text("I had", same[i].cli);
    char body[512], *finish, *sfinish;
    snprintf(body, sizeof body, "{\"model\":\"tiny-test\",\"prompt\":\"I had\",%s}", same[i].json);
    char *got = complete(s.port, body, &finish);
    ck_assert_msg(!strcmp(got, want), "%s: server '%s' vs CLI '%s'", same[i].cli, got, want);
    ck_assert_str_eq(finish, "length");
    snprintf(body, sizeof body, "{\"prompt\":\"I had\",\"stream\":true,%s}", same[i].json);
    reply r = post(s.port, body);
    ck_assert_int_eq(r.status, 200);
    ck_assert_ptr_nonnull(strstr(r.raw, "Content-Type: text/event-stream"));
    char *st = stream_text(r.body, &sfinish);
    ck_assert_msg(!strcmp(st, want), "%s: stream '%s' vs CLI '%s'", same[i].cli, st, want);
    ck_assert_str_eq(sfinish, "length");
    free(st), free(sfinish), free(got), free(finish), free(want);
    reply_free(&r);
  }
  /* top_p changes the draw: the cut is real */
  char *a = cli_text("I had", "--seed 5 --tokens 70 --top-k 0");
  char *b = cli_text("I had", "--seed 5 --tokens 70 --top-k 0 --top-p 0.6");
  ck_assert_str_ne(a, b);
  /* top_p 1 is no cut; a tiny top_p keeps only the most likely token: greedy */
  char *c = cli_text("I had", "--seed 5 --tokens 70 --top-k 0 --top-p 1");
  char *d = cli_text("I had", "--seed 5 --tokens 70 --top-p 0.000001");
  char *e = cli_text("I had", "--tokens 70 --temperature 0");
  ck_assert_str_eq(a, c);
  ck_assert_str_eq(d, e);
  /* gptc sample --top-p runs the same loop */
  tu_run_result r;
  ck_assert_int_eq(tu_run(&r, NULL, "sample --ckpt '%s/char/last.safetensors' --threads 1 --prompt 'I had' --seed 5 "
                                    "--tokens 70 --top-k 0 --top-p 0.6", dir), 0);
  char *want = util_strdup(r.out);
  want[strlen(want) - 1] = 0;
  ck_assert_str_eq(want + 5, b);
  tu_run_free(&r);
  free(a), free(b), free(c), free(d), free(e), free(want);
  stop(&s);
}
END_TEST

/* stop: the text ends before the first occurrence of any stop string. */
START_TEST(test_stop) {
  server s = start("");
  char *full = cli_text("I had", "--seed 7 --tokens 60");
  ck_assert_int_ge(strlen(full), 40);
  char stop1[3] = {full[30], full[31], 0}; /* occurs by position 30 at the latest */
  const char *hit = strstr(full, stop1);
  char *want = util_strdup(full);
  want[hit - full] = 0;
  for (int stream = 0; stream < 2; stream++) {
    char body[512], *finish, *got;
    snprintf(body, sizeof body, "{\"prompt\":\"I had\",\"seed\":7,\"max_tokens\":60,\"stream\":%s,\"stop\":[\"%s\",\"QQQ\"]}",
             stream ? "true" : "false", stop1);
    if (stream) {
      reply r = post(s.port, body);
      got = stream_text(r.body, &finish);
      reply_free(&r);
    } else {
      got = complete(s.port, body, &finish);
    }
    ck_assert_msg(!strcmp(got, want), "stop '%s': '%s' vs '%s'", stop1, got, want);
    ck_assert_str_eq(finish, "stop");
    free(got), free(finish);
  }
  free(want), free(full);
  stop(&s);
}
END_TEST

START_TEST(test_models_health) {
  server s = start("");
  reply r = http(s.port, "GET", "/health", NULL);
  ck_assert_int_eq(r.status, 200);
  json_val *v = parse(r.body);
  ck_assert_str_eq(str_at(v, "status"), "ok");
  json_free(v), reply_free(&r);
  r = http(s.port, "GET", "/v1/models", NULL);
  ck_assert_int_eq(r.status, 200);
  v = parse(r.body);
  ck_assert_str_eq(str_at(v, "object"), "list");
  const json_val *d = json_get(v, "data");
  ck_assert(d && d->type == JSON_ARR && d->len == 1);
  ck_assert_str_eq(str_at(&d->items[0], "id"), "tiny-test");
  ck_assert_str_eq(str_at(&d->items[0], "object"), "model");
  json_free(v), reply_free(&r);
  stop(&s);
}
END_TEST

/* ---- errors ----------------------------------------------------------------------------- */

static void expect_error(int port, const char *method, const char *path, const char *body, int status,
                         const char *param, const char *words) {
  reply r = http(port, method, path, body);
  ck_assert_msg(r.status == status, "%s %s %.80s: status %d, want %d (%s)", method, path, body ? body : "", r.status,
                status, r.body);
  json_val *v = parse(r.body);
  const json_val *e = json_get(v, "error");
  ck_assert_msg(e && e->type == JSON_OBJ, "no error object: %s", r.body);
  const json_val *p = json_get(e, "param");
  if (param) ck_assert_msg(p && p->type == JSON_STR && !strcmp(p->str, param), "param: %s", r.body);
  else ck_assert_msg(p && p->type == JSON_NULL, "param: %s", r.body);
  ck_assert_msg(strstr(str_at(e, "message"), words), "message lacks '%s': %s", words, r.body);
  json_free(v), reply_free(&r);
}

START_TEST(test_errors) {
  server s = start("--max-tokens 100 --max-body 2048");
  expect_error(s.port, "POST", "/v1/completions", "{\"prompt\":", 400, NULL, "invalid JSON at byte 10");
  expect_error(s.port, "POST", "/v1/completions", "[1,2]", 400, NULL, "JSON object");
  expect_error(s.port, "POST", "/v1/completions", "{\"max_tokens\":5}", 400, "prompt", "prompt is required");
  expect_error(s.port, "POST", "/v1/completions", "{\"prompt\":5}", 400, "prompt", "must be a string");
  expect_error(s.port, "POST", "/v1/completions", "{\"prompt\":\"a\\u0000b\"}", 400, "prompt", "NUL");
  expect_error(s.port, "POST", "/v1/completions", "{\"prompt\":\"I had\",\"max_tokens\":101}", 400, "max_tokens",
               "[1, 100]");
  expect_error(s.port, "POST", "/v1/completions", "{\"prompt\":\"I had\",\"max_tokens\":0}", 400, "max_tokens",
               "max_tokens");
  expect_error(s.port, "POST", "/v1/completions", "{\"prompt\":\"I had\",\"temperature\":\"hot\"}", 400,
               "temperature", "temperature must be a number");
  expect_error(s.port, "POST", "/v1/completions", "{\"prompt\":\"I had\",\"top_p\":1.5}", 400, "top_p", "top_p");
  expect_error(s.port, "POST", "/v1/completions", "{\"prompt\":\"I had\",\"seed\":-1}", 400, "seed", "seed");
  expect_error(s.port, "POST", "/v1/completions", "{\"prompt\":\"I had\",\"stream\":1}", 400, "stream", "stream");
  expect_error(s.port, "POST", "/v1/completions", "{\"prompt\":\"I had\",\"stop\":[\"a\",\"b\",\"c\",\"d\",\"e\"]}",
               400, "stop", "at most 4");
  /* the context is 16 tokens (characters) */
  expect_error(s.port, "POST", "/v1/completions", "{\"prompt\":\"I had always thought Jack\"}", 400, "prompt",
               "more than the context length 16");
  char big[3000];
  snprintf(big, sizeof big, "{\"prompt\":\"%*s\"}", 2900, "x");
  expect_error(s.port, "POST", "/v1/completions", big, 413, "body", "more than the limit 2048");
  expect_error(s.port, "GET", "/v1/completions", NULL, 405, NULL, "use POST");
  expect_error(s.port, "POST", "/health", "{}", 405, NULL, "use GET");
  expect_error(s.port, "GET", "/v2/nothing", NULL, 404, NULL, "no such path: /v2/nothing");
  /* a second server on the same port, a host that is no address: one-line errors */
  char cmd[1600];
  snprintf(cmd, sizeof cmd, "'%s' --serve --port %d --threads 1 2>&1 | grep -q 'cannot listen on 127.0.0.1 port %d: "
           "Address already in use'", exe, s.port, s.port);
  ck_assert_int_eq(system(cmd), 0);
  snprintf(cmd, sizeof cmd, "timeout 30 '%s' --serve --host no..such..host --port 0 2>&1 | grep -q \"^model: "
           "--host 'no..such..host': not an address to listen on\"", exe);
  ck_assert_int_eq(system(cmd), 0);
  snprintf(cmd, sizeof cmd, "'%s' --port 9 'I had' 2>&1 | grep -q \"option '--port' needs --serve\"", exe);
  ck_assert_int_eq(system(cmd), 0);
  snprintf(cmd, sizeof cmd, "'%s' --port 9 'I had' >/dev/null 2>&1", exe);
  ck_assert_int_eq(WEXITSTATUS(system(cmd)), 2);
  /* still serving */
  char *t = complete(s.port, "{\"prompt\":\"I had\",\"max_tokens\":5}", NULL);
  ck_assert_int_eq(strlen(t), 5);
  free(t);
  stop(&s);
}
END_TEST

/* ---- fuzz ---------------------------------------------------------------------------------- */

static const char *const seeds_req[] = {
    "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 61\r\n\r\n"
    "{\"prompt\":\"I had\",\"max_tokens\":3,\"stop\":[\"a\"],\"stream\":true}",
    "POST /v1/completions HTTP/1.0\r\nContent-Length: 45\r\n\r\n{\"prompt\":\"I\",\"max_tokens\":2,\"temperature\":0}",
    "GET /v1/models HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    "GET /health HTTP/1.0\r\n\r\n",
    "POST /v1/completions HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n{\"prompt\":\"I\",\"m\r\n"
    "e\r\nax_tokens\":1}\r\n0\r\n\r\n",
};

START_TEST(test_fuzz) {
  server s = start("--max-tokens 8 --parallel 2");
  uint64_t x = 0x9E3779B97F4A7C15ull;
  int answered = 0;
  for (int i = 0; i < 3000; i++) {
    const char *base = seeds_req[i % 5];
    size_t n = strlen(base);
    char buf[512];
    memcpy(buf, base, n);
    /* a few byte flips, a cut, or an inserted run of bytes */
    int edits = 1 + (int)((x >> 60) & 3);
    for (int e = 0; e < edits; e++) {
      x = x * 6364136223846793005ull + 1442695040888963407ull;
      size_t at = (size_t)((x >> 33) % n);
      switch ((x >> 20) & 3) {
      case 0: buf[at] = (char)(x >> 8); break;
      case 1: n = at + 1; break;
      case 2:
        if (n + 8 < sizeof buf) {
          memmove(buf + at + 8, buf + at, n - at);
          memset(buf + at, (int)(char)(x >> 12), 8);
          n += 8;
        }
        break;
      default: buf[at] = "{}[]\":,\\\r\n 0-9"[(x >> 40) % 15]; break;
      }
    }
    int fd = dial(s.port);
    send_all(fd, buf, n);
    shutdown(fd, SHUT_WR); /* a request cut short ends here, not at a timeout */
    reply r = read_reply(fd);
    answered += r.status != 0;
    reply_free(&r);
    if (i % 500 == 499) {
      int st;
      ck_assert_msg(waitpid(s.pid, &st, WNOHANG) == 0, "the server died after fuzz request %d", i);
    }
  }
  ck_assert_int_gt(answered, 100);
  char *t = complete(s.port, "{\"prompt\":\"I had\",\"max_tokens\":5,\"seed\":7}", NULL);
  char *want = cli_text("I had", "--seed 7 --tokens 5");
  ck_assert_str_eq(t, want);
  free(t), free(want);
  stop(&s);
}
END_TEST

/* ---- load ------------------------------------------------------------------------------------ */

#define LOAD_N 200
#define LOAD_CONC 8
#define LOAD_SEEDS 5
static int load_port;
static char *load_want[LOAD_SEEDS];
static double load_first[LOAD_N], load_total[LOAD_N];
static int load_ok[LOAD_N];

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void *load_thread(void *arg) {
  int w = (int)(intptr_t)arg;
  for (int i = w; i < LOAD_N; i += LOAD_CONC) {
    int stream = i % 2, seed = i % LOAD_SEEDS;
    char body[256], head[256];
    snprintf(body, sizeof body, "{\"prompt\":\"I had\",\"max_tokens\":40,\"seed\":%d,\"stream\":%s}", seed,
             stream ? "true" : "false");
    snprintf(head, sizeof head, "POST /v1/completions HTTP/1.0\r\nContent-Length: %zu\r\n\r\n", strlen(body));
    double t0 = now_s();
    int fd = dial(load_port);
    send_all(fd, head, strlen(head));
    send_all(fd, body, strlen(body));
    util_buf b = {0};
    char chunk[4096];
    ssize_t k;
    load_first[i] = -1;
    while ((k = recv(fd, chunk, sizeof chunk, 0)) > 0) {
      util_buf_add(&b, chunk, (size_t)k);
      util_buf_add(&b, "", 1);
      b.len--;
      if (load_first[i] < 0 && strstr(b.data, "\"text\":\"") && (!stream || strstr(b.data, "data: {")))
        load_first[i] = now_s() - t0;
    }
    close(fd);
    load_total[i] = now_s() - t0;
    util_buf_add(&b, "", 1);
    char *body_at = b.data ? strstr(b.data, "\r\n\r\n") : NULL;
    if (body_at && !strncmp(b.data, "HTTP/1.", 7) && strstr(b.data, " 200 ")) {
      char *text = NULL, *finish = NULL;
      if (stream) {
        text = stream_text(body_at + 4, &finish);
      } else {
        json_val *v = json_parse(body_at + 4, strlen(body_at + 4), "reply");
        if (v) text = util_strdup(str_at(choice(v), "text"));
        json_free(v);
      }
      load_ok[i] = text && !strcmp(text, load_want[seed]);
      free(text), free(finish);
    }
    free(b.data);
  }
  return NULL;
}

static int cmp_d(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

START_TEST(test_load) {
  server s = start("--parallel 2 --queue 16");
  load_port = s.port;
  for (int i = 0; i < LOAD_SEEDS; i++) {
    char opts[64];
    snprintf(opts, sizeof opts, "--seed %d --tokens 40", i);
    load_want[i] = cli_text("I had", opts);
  }
  pthread_t th[LOAD_CONC];
  double t0 = now_s();
  for (int i = 0; i < LOAD_CONC; i++) ck_assert_int_eq(pthread_create(&th[i], NULL, load_thread, (void *)(intptr_t)i), 0);
  for (int i = 0; i < LOAD_CONC; i++) pthread_join(th[i], NULL);
  double wall = now_s() - t0;
  int ok = 0;
  for (int i = 0; i < LOAD_N; i++) ok += load_ok[i];
  ck_assert_msg(ok == LOAD_N, "%d of %d responses complete and correct", ok, LOAD_N);
  /* numbers for docs/serve.md, not assertions: the machine is shared */
  double first[LOAD_N / 2];
  for (int i = 0; i < LOAD_N / 2; i++) first[i] = load_first[2 * i + 1];
  qsort(first, LOAD_N / 2, sizeof(double), cmp_d);
  printf("serve load: %d requests, %d concurrent, --parallel 2: %.1f requests/s, %.0f tokens/s, first token p50 %.1f ms "
         "p99 %.1f ms (streamed)\n",
         LOAD_N, LOAD_CONC, LOAD_N / wall, LOAD_N * 40 / wall, 1e3 * first[LOAD_N / 4], 1e3 * first[LOAD_N / 2 * 99 / 100]);
  for (int i = 0; i < LOAD_SEEDS; i++) free(load_want[i]);
  stop(&s);
}
END_TEST

/* ---- busy, disconnect, drain --------------------------------------------------------------------- */

/* Reads from fd until `needle` has arrived (30 s at most). */
static void read_until(int fd, util_buf *b, const char *needle) {
  char chunk[4096];
  while (!(b->data && memmem(b->data, b->len, needle, strlen(needle)))) {
    ssize_t k = recv(fd, chunk, sizeof chunk, 0);
    ck_assert_msg(k > 0, "the stream ended before '%s'", needle);
    util_buf_add(b, chunk, (size_t)k);
  }
}

static int open_stream(int port, int max_tokens) {
  char body[256], head[256];
  snprintf(body, sizeof body, "{\"prompt\":\"I had\",\"max_tokens\":%d,\"seed\":1,\"stream\":true}", max_tokens);
  snprintf(head, sizeof head, "POST /v1/completions HTTP/1.0\r\nContent-Length: %zu\r\n\r\n", strlen(body));
  int fd = dial(port);
  send_all(fd, head, strlen(head));
  send_all(fd, body, strlen(body));
  return fd;
}

/* --parallel 1 --queue 0: a second request while one streams gets 503; the
 * streaming client leaves, and its worker is free for the next request. */
START_TEST(test_busy_and_disconnect) {
  server s = start("--parallel 1 --queue 0 --max-tokens 1000000");
  int fd = open_stream(s.port, 1000000);
  util_buf b = {0};
  read_until(fd, &b, "data: {");
  expect_error(s.port, "POST", "/v1/completions", "{\"prompt\":\"I had\",\"max_tokens\":3}", 503, NULL, "busy");
  close(fd); /* mid-stream */
  util_buf_free(&b);
  int status = 0;
  for (int i = 0; i < 300 && status != 200; i++) {
    reply r = post(s.port, "{\"prompt\":\"I had\",\"max_tokens\":3}");
    status = r.status;
    ck_assert_msg(status == 200 || status == 503, "status %d", status);
    reply_free(&r);
    if (status != 200) usleep(100000);
  }
  ck_assert_msg(status == 200, "the worker stayed busy 30 s after its client left");
  stop(&s);
}
END_TEST

/* SIGTERM while a request streams: it ends complete, new connections are
 * refused, the server exits 0. */
START_TEST(test_sigterm_drains) {
  server s = start("--max-tokens 100000");
  int fd = open_stream(s.port, 3000);
  util_buf b = {0};
  read_until(fd, &b, "data: {");
  kill(s.pid, SIGTERM);
  read_until(fd, &b, "data: [DONE]");
  close(fd);
  util_buf_add(&b, "", 1);
  char *finish, *text = stream_text(strstr(b.data, "\r\n\r\n") + 4, &finish);
  ck_assert_str_eq(finish, "length");
  ck_assert_int_eq(strlen(text), 3000); /* a char model: a character per token */
  char *want = cli_text("I had", "--seed 1 --tokens 3000");
  ck_assert_str_eq(text, want);
  free(text), free(finish), free(want), util_buf_free(&b);
  ck_assert_int_eq(wait_exit(&s), 0);
}
END_TEST

/* ---- the openai client's transcript ----------------------------------------------------------- */

/* tests/golden/serve/openai.json: what the `openai` package got from this
 * server (tests/ref/serve_openai.py); the same requests, sent again, give
 * the same texts and finish reasons. */
START_TEST(test_openai_golden) {
  char *data;
  size_t n;
  ck_assert_int_eq(util_read_file(tu_src("tests/golden/serve/openai.json"), &data, &n), 0);
  json_val *g = json_parse(data, n, "openai.json");
  ck_assert_msg(g, "%s", util_errmsg());
  const json_val *reqs = json_get(g, "requests");
  ck_assert(reqs && reqs->type == JSON_ARR && reqs->len >= 6);
  server s = start_exe(golden_exe, "");
  int streamed = 0, stopped = 0;
  for (size_t i = 0; i < reqs->len; i++) {
    const json_val *q = &reqs->items[i];
    const char *body = str_at(q, "body");
    json_val *b = parse(body);
    int stream = json_get(b, "stream")->boolean;
    json_free(b);
    char *text, *finish;
    if (stream) {
      reply r = post(s.port, body);
      ck_assert_int_eq(r.status, 200);
      text = stream_text(r.body, &finish);
      reply_free(&r);
    } else {
      text = complete(s.port, body, &finish);
    }
    ck_assert_msg(!strcmp(text, str_at(q, "text")), "%s: '%s' vs the openai client's '%s'", body, text,
                  str_at(q, "text"));
    ck_assert_str_eq(finish, str_at(q, "finish_reason"));
    streamed += stream;
    stopped += !strcmp(finish, "stop");
    free(text), free(finish);
  }
  ck_assert_int_ge(streamed, 2);
  ck_assert_int_ge(stopped, 2);
  json_free(g);
  free(data);
  stop(&s);
}
END_TEST

int main(void) {
  Suite *s = suite_create("serve");
  TCase *tc = tcase_create("serve");
  tcase_set_timeout(tc, 300);
  tcase_add_unchecked_fixture(tc, serve_setup, NULL);
  tcase_add_test(tc, test_plain_and_stream_equal_cli);
  tcase_add_test(tc, test_stop);
  tcase_add_test(tc, test_models_health);
  tcase_add_test(tc, test_errors);
  tcase_add_test(tc, test_fuzz);
  tcase_add_test(tc, test_load);
  tcase_add_test(tc, test_busy_and_disconnect);
  tcase_add_test(tc, test_sigterm_drains);
  tcase_add_test(tc, test_openai_golden);
  suite_add_tcase(s, tc);
  return tu_main(s);
}
