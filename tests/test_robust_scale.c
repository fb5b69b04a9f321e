/* Cost that must grow linearly (issue 14, items 12 and 13): sampling decodes
 * each new token once and streams exactly what decoding the whole sequence
 * every step streamed; the gpt2 tokenizer encodes long runs exactly with
 * compact state. */
#define _GNU_SOURCE /* open_memstream */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "sample.h"
#include "testutil.h"
#include "tok.h"
#include "tok_internal.h"
#include "util.h"

/* ---- sampling: a scripted model ------------------------------------------------ */

/* The "model" makes script[i] the argmax for generated token i, so greedy
 * sampling replays the script. It also records how many bytes the output
 * held when each generated token was fed back (the text streamed so far). */
typedef struct {
  const int32_t *script;
  int V, calls, n_prompt;
  size_t *out_size; /* open_memstream's size, current after each fflush */
  size_t *seen;     /* (tokens) bytes written after generated token i */
} script_model;

static int script_infer(void *ctx, int token, int pos, float *logits) {
  (void)token, (void)pos;
  script_model *m = ctx;
  int c = m->calls++;
  if (c >= m->n_prompt) m->seen[c - m->n_prompt] = *m->out_size;
  for (int i = 0; i < m->V; i++) logits[i] = 0;
  if (c >= m->n_prompt - 1) logits[m->script[c - (m->n_prompt - 1)]] = 1;
  return 0;
}

/* The streaming rule before the fix, on the whole decoded text: the longest
 * prefix that does not end inside a UTF-8 sequence. */
static size_t ref_complete(const char *s, size_t n) {
  size_t i = n;
  int back = 0;
  while (i > 0 && back < 4 && ((unsigned char)s[i - 1] & 0xC0) == 0x80) i--, back++;
  if (i == 0) return n;
  unsigned char c = (unsigned char)s[i - 1];
  int need = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
  return need == back + 1 || need == 1 ? n : i - 1;
}

static char *decode(tok_t *t, const int32_t *ids, size_t n, size_t *len) {
  char *s;
  ck_assert_msg(tok_decode(t, ids, n, &s, len) == 0, "%s", util_errmsg());
  return s;
}

/* Generates `tokens` tokens replaying `script` after `prompt` and checks:
 * the output is the prompt, then the whole sequence decoded at once past
 * the prompt's text, then a newline; with `stepwise`, the bytes written
 * after every token are what decoding the whole sequence that step gave
 * (quadratic, so for short runs); and the tokenizer decoded each id once. */
static void check_stream(tok_t *t, const char *prompt, const int32_t *script, int tokens, int stepwise) {
  int32_t *pids;
  size_t np;
  ck_assert_msg(sample_prompt_ids(t, prompt, &pids, &np) == 0, "%s", util_errmsg());
  int echo = prompt && *prompt;
  size_t gen_start = echo ? 0 : np, n_all = np + (size_t)tokens;
  int32_t *all = malloc(n_all * sizeof *all);
  memcpy(all, pids, np * sizeof *all);
  memcpy(all + np, script, (size_t)tokens * sizeof *all);

  char *buf = NULL;
  size_t size = 0;
  FILE *f = open_memstream(&buf, &size);
  ck_assert_ptr_nonnull(f);
  size_t *seen = calloc((size_t)tokens, sizeof *seen);
  script_model sm = {script, tok_vocab_size(t), 0, (int)np, &size, seen};
  sample_model m = {script_infer, &sm, tok_vocab_size(t), tokens + (int)np + 8};
  sample_opts o = {tokens, 0, 0.0, 1, 1.0};
  size_t decoded0 = tok_stat_decoded_ids();
  ck_assert_msg(sample_generate(&m, t, prompt, &o, f) == 0, "%s", util_errmsg());
  size_t decoded = tok_stat_decoded_ids() - decoded0;
  ck_assert_int_eq(fclose(f), 0);

  /* each id decoded once: the prompt, then every generated token */
  ck_assert_msg(decoded <= np + (size_t)tokens, "decoded %zu ids for %zu prompt + %d generated", decoded, np, tokens);

  size_t plen = echo ? strlen(prompt) : 0, p0 = 0, tl;
  if (echo) free(decode(t, pids, np, &p0));
  char *text = decode(t, all + gen_start, n_all - gen_start, &tl);
  ck_assert_uint_eq(size, plen + (tl - p0) + 1);
  ck_assert(memcmp(buf, prompt ? prompt : "", plen) == 0);
  ck_assert(memcmp(buf + plen, text + p0, tl - p0) == 0);
  ck_assert_int_eq(buf[size - 1], '\n');

  if (stepwise) {
    size_t printed = p0;
    for (int k = 0; k + 1 < tokens; k++) {
      size_t l;
      char *s = decode(t, all + gen_start, np + (size_t)k + 1 - gen_start, &l);
      size_t ok = ref_complete(s, l);
      if (ok > printed) printed = ok;
      free(s);
      ck_assert_msg(seen[k] == plen + printed - p0, "after token %d: %zu bytes written, expected %zu", k, seen[k],
                    plen + printed - p0);
    }
  }
  free(text);
  free(buf);
  free(seen);
  free(all);
  free(pids);
}

static uint64_t lcg(uint64_t *s) {
  *s = *s * 6364136223846793005ull + 1442695040888963407ull;
  return *s >> 33;
}

/* A gpt2 script that splits characters across tokens: byte tokens (ids <
 * 256 include lone lead and continuation bytes), pieces of multi-byte text
 * whose characters gpt2 cuts into bytes, and ordinary tokens. */
static int32_t *gpt2_script(tok_t *t, int n, uint64_t seed) {
  const char *mb = "h\xc3\xa9llo \xe2\x86\x92 \xf0\x9f\x98\x80\xf0\x9f\x98\x81 \xe4\xb8\x96\xe7\x95\x8c \xd0\x96";
  int32_t *enc, *s = malloc((size_t)n * sizeof *s);
  size_t ne;
  ck_assert_int_eq(tok_encode(t, mb, strlen(mb), 0, &enc, &ne), 0);
  for (int i = 0; i < n; i++) {
    uint64_t r = lcg(&seed);
    s[i] = r % 3 == 0 ? (int32_t)(r / 3 % 256) : r % 3 == 1 ? enc[r / 3 % ne] : (int32_t)(r / 3 % 50256);
  }
  free(enc);
  return s;
}

START_TEST(test_sample_stream_gpt2) {
  tok_t *t = tok_gpt2_new();
  ck_assert_ptr_nonnull(t);
  int32_t *s = gpt2_script(t, 3000, 7);
  check_stream(t, NULL, s, 3000, 1);
  check_stream(t, "Caf\xc3\xa9 \xf0\x9f\x98\x80", s, 3000, 1);
  /* single-byte tokens only, mostly non-ASCII: lone continuation bytes at
   * the start (the rule's "reached the start of the text" case), lead
   * bytes cut short, characters completed several tokens later */
  int32_t byte_tok[256], bytes[2000];
  for (int32_t id = 0; id < 256; id++) {
    size_t l;
    char *b = decode(t, &id, 1, &l);
    ck_assert_uint_eq(l, 1);
    byte_tok[(unsigned char)b[0]] = id;
    free(b);
  }
  for (int i = 0; i < 5; i++) bytes[i] = byte_tok[0x80 + i];
  uint64_t seed = 11;
  for (int i = 5; i < 2000; i++) {
    uint64_t r = lcg(&seed);
    bytes[i] = byte_tok[r % 8 == 0 ? 'a' : 0x80 + r / 8 % 0x78];
  }
  check_stream(t, NULL, bytes, 2000, 1);
  check_stream(t, "ab", bytes + 5, 1000, 1);
  free(s);
  tok_free(t);
}
END_TEST

/* Random ids of t's vocabulary other than <|endoftext|> (it stops generation). */
static int32_t *any_script(tok_t *t, int n, uint64_t seed) {
  int32_t *s = malloc((size_t)n * sizeof *s);
  for (int i = 0; i < n; i++) {
    do s[i] = (int32_t)(lcg(&seed) % (uint64_t)tok_vocab_size(t));
    while (s[i] == tok_eot(t));
  }
  return s;
}

/* word: the joining space depends on the token and on whether it is the
 * first of the continuation; the prompt's text is not the prompt as typed */
START_TEST(test_sample_stream_word) {
  size_t n;
  char *text;
  ck_assert_int_eq(util_read_file(tu_src("data/the-verdict.txt"), &text, &n), 0);
  tok_t *t = tok_word_new(text, n);
  ck_assert_ptr_nonnull(t);
  int32_t *s = any_script(t, 2000, 3);
  check_stream(t, NULL, s, 2000, 1);
  check_stream(t, "Hello ,  world", s, 2000, 1);
  free(s);
  tok_free(t);
  free(text);
}
END_TEST

/* A long char-model run (50k tokens; the old loop decoded 1.25e9 ids): the
 * whole output equals the sequence decoded at once, each id decoded once. */
START_TEST(test_sample_stream_long) {
  const char *alpha = "ab\n \xc3\xa9\xe2\x86\x92\xf0\x9f\x98\x80";
  tok_t *t = tok_char_new(alpha, strlen(alpha));
  ck_assert_ptr_nonnull(t);
  int32_t *s = any_script(t, 50000, 5);
  check_stream(t, NULL, s, 50000, 0);
  check_stream(t, "a\xf0\x9f\x98\x80", s, 50000, 0);
  free(s);
  tok_free(t);
}
END_TEST

/* ---- gpt2 BPE on long pieces -------------------------------------------------- */

/* The rank of bytes s[0..n) (ASCII of one regex class, so one piece): its
 * id when it is a token, else -1 (a piece that is no token encodes to 2+). */
static int32_t ref_rank(tok_t *t, const char *s, size_t n) {
  int32_t *ids;
  size_t k;
  ck_assert_int_eq(tok_encode(t, s, n, 0, &ids, &k), 0);
  int32_t r = k == 1 ? ids[0] : -1;
  free(ids);
  return r;
}

/* tiktoken's byte-pair merge, written plainly (O(n^2)): parts start as single
 * bytes; while some adjacent pair makes a token, merge the pair of lowest
 * rank, the leftmost among equals. A piece that is a token is taken whole. */
static size_t ref_bpe(tok_t *t, const char *s, size_t n, int32_t *out) {
  int32_t whole = ref_rank(t, s, n);
  if (whole >= 0) return out[0] = whole, 1;
  size_t *st = malloc((n + 1) * sizeof *st), m = n; /* part i is s[st[i]..st[i+1]) */
  int32_t *pr = malloc(n * sizeof *pr);             /* rank of merging part i with i+1 */
  for (size_t i = 0; i <= n; i++) st[i] = i;
  for (size_t i = 0; i + 1 < m; i++) pr[i] = ref_rank(t, s + i, 2);
  for (;;) {
    size_t best = m;
    for (size_t i = 0; i + 1 < m; i++)
      if (pr[i] >= 0 && (best == m || pr[i] < pr[best])) best = i;
    if (best == m) break;
    memmove(st + best + 1, st + best + 2, (m - best - 1) * sizeof *st);
    memmove(pr + best + 1, pr + best + 2, (m > best + 2 ? m - best - 2 : 0) * sizeof *pr);
    m--;
    if (best + 1 < m) pr[best] = ref_rank(t, s + st[best], st[best + 2] - st[best]);
    if (best > 0) pr[best - 1] = ref_rank(t, s + st[best - 1], st[best + 1] - st[best - 1]);
  }
  for (size_t i = 0; i < m; i++) out[i] = ref_rank(t, s + st[i], st[i + 1] - st[i]);
  free(st);
  free(pr);
  return m;
}

/* tok_encode against the plain merge, piece by piece (pieces from the
 * regex, which the merge does not change). */
static void check_bpe(tok_t *t, const char *text, size_t n, const char *what) {
  size_t *ends, np, k;
  int32_t *ids, *ref = malloc((n + 1) * sizeof *ref);
  ck_assert_int_eq(tok_bpe_pieces(t, text, n, &ends, &np), 0);
  ck_assert_int_eq(tok_encode(t, text, n, 0, &ids, &k), 0);
  size_t r = 0, at = 0;
  for (size_t p = 0; p < np; p++) {
    r += ref_bpe(t, text + at, ends[p] - at, ref + r);
    at = ends[p];
  }
  ck_assert_msg(k == r, "%s: %zu ids, the plain merge gives %zu", what, k, r);
  for (size_t i = 0; i < k; i++)
    ck_assert_msg(ids[i] == ref[i], "%s: id %zu is %d, the plain merge gives %d", what, i, ids[i], ref[i]);
  free(ids);
  free(ref);
  free(ends);
}

/* Long pieces of one class: runs of one letter of every length mod 4 (the
 * run's tokens hinge on it), words over 2 and 26 letters, digits,
 * punctuation, whitespace; a few thousand bytes, so the min-tree has
 * several levels of blocks. */
START_TEST(test_bpe_long_pieces) {
  tok_t *t = tok_gpt2_new();
  ck_assert_ptr_nonnull(t);
  enum { N = 3000 };
  char *s = malloc(N + 8);
  for (int extra = 0; extra < 4; extra++) {
    memset(s, 'a', N + (size_t)extra);
    check_bpe(t, s, N + (size_t)extra, "a run");
  }
  const char *alphabets[] = {"ab", "abcdefghijklmnopqrstuvwxyz", "eeeeeeeeeeetaoinshrdlu", "0123456789", "!?=-.",
                             " ", "xX", "Zz"};
  uint64_t seed = 1;
  for (size_t a = 0; a < sizeof alphabets / sizeof *alphabets; a++) {
    size_t al = strlen(alphabets[a]);
    for (size_t i = 0; i < N; i++) s[i] = alphabets[a][lcg(&seed) % al];
    check_bpe(t, s, N, alphabets[a]);
  }
  for (size_t i = 0; i < N; i++) s[i] = "abracadabra"[i % 11];
  check_bpe(t, s, N, "abracadabra");
  /* ordinary text: many short pieces (the tree of one block) */
  size_t n;
  char *v;
  ck_assert_int_eq(util_read_file(tu_src("data/the-verdict.txt"), &v, &n), 0);
  size_t cut = 0;
  for (size_t i = 0; i < n && i < 4000; i++)
    if ((unsigned char)v[i] < 0x80) v[cut++] = v[i]; /* ref_rank needs ASCII substrings */
  check_bpe(t, v, cut, "the-verdict");
  free(v);
  free(s);
  tok_free(t);
}
END_TEST

static long child_maxrss_kb(void) {
  struct rusage u;
  ck_assert_int_eq(getrusage(RUSAGE_CHILDREN, &u), 0);
  return u.ru_maxrss;
}

/* `gptc tokenize` on 16 MB of one letter (one piece): the ids are exact
 * (aa merges first, then aa+aa -> aaaa, then aa+a -> aaa, as the ranks
 * aa < aaaa < aaa have it; the 100k run in the goldens agrees), and the
 * process grows by less than 14 bytes a byte of input over a tiny run
 * (it was 28: the merge kept 40 bytes a byte). */
START_TEST(test_bpe_one_letter_16mb) {
  tok_t *t = tok_gpt2_new();
  ck_assert_ptr_nonnull(t);
  int32_t a4 = ref_rank(t, "aaaa", 4), a3 = ref_rank(t, "aaa", 3);
  ck_assert(a4 >= 0 && a3 >= 0);
  tu_run_result r;
  ck_assert_int_eq(tu_run(&r, NULL, "tokenize --text '%s'", tu_write_str("tiny.txt", "a")), 0);
  tu_run_free(&r);
  long tiny = child_maxrss_kb();
  size_t n = (16u << 20) + 3;
  char *s = malloc(n);
  memset(s, 'a', n);
  const char *path = tu_write("a16m.txt", s, n);
  free(s);
  ck_assert_msg(tu_run(&r, NULL, "tokenize --text '%s'", path) == 0, "%s", r.err);
  long big = child_maxrss_kb();
  util_buf want = {0};
  for (size_t i = 0; i < n / 4; i++) ck_assert_int_eq(util_buf_printf(&want, i ? " %d" : "%d", a4), 0);
  ck_assert_int_eq(util_buf_printf(&want, " %d\n", a3), 0);
  ck_assert_uint_eq(r.out_len, want.len);
  ck_assert(memcmp(r.out, want.data, want.len) == 0);
  ck_assert_msg((double)(big - tiny) * 1024 < 14.0 * (double)n, "tokenize grew by %ld KB for %zu bytes", big - tiny, n);
  util_buf_free(&want);
  tu_run_free(&r);
  tok_free(t);
}
END_TEST

Suite *robust_scale_suite(void) {
  Suite *s = suite_create("robust_scale");
  TCase *c = tcase_create("sample");
  tcase_add_test(c, test_sample_stream_gpt2);
  tcase_add_test(c, test_sample_stream_word);
  tcase_add_test(c, test_sample_stream_long);
  suite_add_tcase(s, c);
  c = tcase_create("bpe");
  tcase_add_test(c, test_bpe_long_pieces);
  tcase_add_test(c, test_bpe_one_letter_16mb);
  suite_add_tcase(s, c);
  return s;
}

int main(void) { return tu_main(robust_scale_suite()); }
