/* Tokenizer throughput on one thread: gpt2 (cold = fresh piece cache, warm =
 * cache filled by a previous run), char and word on tinyshakespeare, and
 * gpt2 on generated CJK text where nearly every piece is new. Median of
 * RUNS runs each. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tok.h"
#include "tok_internal.h"
#include "util.h"

#define RUNS 5

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double median(double *v) {
  qsort(v, RUNS, sizeof *v, cmp_double);
  return v[RUNS / 2];
}

static void row(const char *task, size_t bytes, size_t tokens, double s) {
  printf("%-34s %8.2f %9zu %10.4f %9.1f\n", task, (double)bytes / 1e6, tokens, s, (double)bytes / 1e6 / s);
}

static void die(const char *what) {
  fprintf(stderr, "bench_tok: %s: %s\n", what, util_errmsg());
  exit(1);
}

/* Encodes RUNS times; cold: a new tokenizer (empty cache) for every run. */
static void bench_encode(const char *task, tok_t *(*make)(const char *, size_t), const char *text, size_t n, int cold) {
  double t[RUNS];
  size_t k = 0;
  tok_t *tok = make(text, n);
  if (!tok) die(task);
  int32_t *ids;
  if (!cold && tok_encode(tok, text, n, 0, &ids, &k) == 0) free(ids); /* fill the cache */
  for (int r = 0; r < RUNS; r++) {
    if (cold) {
      tok_free(tok);
      if (!(tok = make(text, n))) die(task);
    }
    double t0 = util_now();
    if (tok_encode(tok, text, n, 0, &ids, &k)) die(task);
    t[r] = util_now() - t0;
    free(ids);
  }
  row(task, n, k, median(t));
  tok_free(tok);
}

static void bench_decode(const char *task, tok_t *(*make)(const char *, size_t), const char *text, size_t n) {
  tok_t *tok = make(text, n);
  int32_t *ids;
  size_t k, len = 0;
  if (!tok || tok_encode(tok, text, n, 0, &ids, &k)) die(task);
  double t[RUNS];
  for (int r = 0; r < RUNS; r++) {
    char *back;
    double t0 = util_now();
    if (tok_decode(tok, ids, k, &back, &len)) die(task);
    t[r] = util_now() - t0;
    if (len != n || memcmp(back, text, n)) {
      fprintf(stderr, "bench_tok: %s: decode does not give the text back\n", task);
      exit(1);
    }
    free(back);
  }
  row(task, n, k, median(t));
  free(ids);
  tok_free(tok);
}

static tok_t *make_gpt2(const char *s, size_t n) {
  (void)s, (void)n;
  return tok_gpt2_new();
}

/* ~1 MB of CJK "sentences": random ideographs, a few kana, punctuation, digits. */
static char *cjk_text(size_t *n) {
  util_buf b = {0};
  uint64_t x = 88172645463325252ULL;
  while (b.len < 1000000) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    uint32_t r = (uint32_t)(x >> 32), cp;
    switch (r % 16) {
    case 0: cp = 0x3002; break;                 /* 。 */
    case 1: cp = 0xFF0C; break;                 /* ， */
    case 2: cp = 0x3041 + (r >> 8) % 86; break; /* hiragana */
    case 3: cp = '0' + (r >> 8) % 10; break;
    default: cp = 0x4E00 + (r >> 8) % 0x5000; break;
    }
    char u[4];
    util_buf_add(&b, u, (size_t)util_utf8_encode(cp, u));
  }
  *n = b.len;
  return b.data;
}

int main(void) {
  char *text;
  size_t n;
  if (util_read_file(GPTC_SOURCE_DIR "/data/tinyshakespeare.txt", &text, &n)) die("tinyshakespeare");

  double t[RUNS];
  for (int r = 0; r < RUNS; r++) {
    double t0 = util_now();
    tok_t *g = tok_gpt2_new();
    if (!g) die("gpt2 tables");
    t[r] = util_now() - t0;
    if (r == RUNS - 1) printf("gpt2 pre-tokenizer: %s\n", tok_bpe_describe(g));
    tok_free(g);
  }
  printf("gpt2 tables load: %.1f ms (median of %d)\n\n", 1e3 * median(t), RUNS);

  printf("%-34s %8s %9s %10s %9s\n", "task (one thread)", "MB", "tokens", "median s", "MB/s");
  bench_encode("gpt2 encode tinyshakespeare, cold", make_gpt2, text, n, 1);
  bench_encode("gpt2 encode tinyshakespeare, warm", make_gpt2, text, n, 0);
  bench_decode("gpt2 decode tinyshakespeare", make_gpt2, text, n);
  size_t cn;
  char *cjk = cjk_text(&cn);
  bench_encode("gpt2 encode random CJK, cold", make_gpt2, cjk, cn, 1);
  free(cjk);
  bench_encode("char encode tinyshakespeare", tok_char_new, text, n, 0);
  bench_decode("char decode tinyshakespeare", tok_char_new, text, n);
  bench_encode("word encode tinyshakespeare", tok_word_new, text, n, 0);
  /* word decode is lossy (whitespace), so it is timed without the check */
  tok_t *w = tok_word_new(text, n);
  int32_t *ids;
  size_t k, len;
  if (!w || tok_encode(w, text, n, 0, &ids, &k)) die("word");
  for (int r = 0; r < RUNS; r++) {
    char *back;
    double t0 = util_now();
    if (tok_decode(w, ids, k, &back, &len)) die("word decode");
    t[r] = util_now() - t0;
    free(back);
  }
  row("word decode tinyshakespeare", len, k, median(t));
  free(ids);
  tok_free(w);
  free(text);
  return 0;
}
