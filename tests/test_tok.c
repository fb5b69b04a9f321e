/* Tokenizers: gpt2 against tiktoken's ids (goldens from tests/ref/tok_golden.py),
 * the char and word tokenizers against the seeds' facts and reference
 * outputs, vocabulary blobs, bad input, and the `gptc tokenize` command. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cfg.h"
#include "json.h"
#include "testutil.h"
#include "tok.h"
#include "tok_internal.h"
#include "util.h"

/* ---- helpers ------------------------------------------------------------------ */

static char *slurp(const char *path, size_t *n) {
  char *d;
  size_t len;
  ck_assert_msg(util_read_file(path, &d, &len) == 0, "%s", util_errmsg());
  if (n) *n = len;
  return d;
}

static tok_t *gpt2(void) {
  static tok_t *t;
  if (!t) t = tok_gpt2_new();
  ck_assert_msg(t != NULL, "%s", util_errmsg());
  return t;
}

static size_t n_chars(const char *s, size_t n) {
  size_t k = 0;
  for (size_t i = 0; i < n; i++) k += ((unsigned char)s[i] & 0xC0) != 0x80;
  return k;
}

/* SHA-256 of ids as little-endian int32, the goldens' form. */
static void ids_sha(const int32_t *ids, size_t n, char out[65]) {
  unsigned char *b = malloc(4 * n + 1);
  for (size_t i = 0; i < n; i++)
    for (int k = 0; k < 4; k++) b[4 * i + (size_t)k] = (unsigned char)((uint32_t)ids[i] >> (8 * k));
  util_sha256_hex(b, 4 * n, out);
  free(b);
}

/* Parses "1 2 3" into ids; returns the count. */
static size_t parse_ids(const char *s, int32_t **ids) {
  size_t cap = 16, n = 0;
  *ids = malloc(cap * sizeof **ids);
  char *end;
  for (;;) {
    long v = strtol(s, &end, 10);
    if (end == s) break;
    if (n == cap) *ids = realloc(*ids, (cap *= 2) * sizeof **ids);
    (*ids)[n++] = (int32_t)v;
    s = end;
  }
  return n;
}

/* The JSON string at *p (advanced past it); malloc'ed, NUL-terminated. */
static char *json_str(const char **p, size_t *len) {
  util_buf b = {0};
  long used = json_read_str(*p, strlen(*p), &b, "golden", 0);
  ck_assert_msg(used > 0, "%s", util_errmsg());
  *p += used;
  util_buf_add(&b, "", 1);
  *len = b.len - 1;
  return b.data;
}

/* Next line of a golden file (NUL-terminated in place), skipping comments. */
static char *next_line(char **cur) {
  while (**cur) {
    char *line = *cur, *nl = strchr(line, '\n');
    if (nl)
      *nl = '\0', *cur = nl + 1;
    else
      *cur = line + strlen(line);
    if (line[0] != '#' && line[0]) return line;
  }
  return NULL;
}

static void expect_ids(const int32_t *got, size_t n_got, const int32_t *want, size_t n_want, const char *what) {
  size_t i = 0;
  while (i < n_got && i < n_want && got[i] == want[i]) i++;
  ck_assert_msg(i == n_got && i == n_want, "%s: ids differ at %zu (got %d, want %d; %zu vs %zu ids)", what, i,
                i < n_got ? got[i] : -1, i < n_want ? want[i] : -1, n_got, n_want);
}

static void expect_roundtrip(const tok_t *t, const int32_t *ids, size_t n, const char *text, size_t len,
                             const char *what) {
  char *back;
  size_t blen;
  ck_assert_msg(tok_decode(t, ids, n, &back, &blen) == 0, "%s: %s", what, util_errmsg());
  ck_assert_msg(blen == len && !memcmp(back, text, len), "%s: decode(encode(x)) != x", what);
  ck_assert_int_eq(back[blen], '\0');
  free(back);
}

static void expect_err(int rc, const char *needle) {
  ck_assert_int_eq(rc, -1);
  ck_assert_msg(strstr(util_errmsg(), needle) != NULL, "message '%s' lacks '%s'", util_errmsg(), needle);
}

/* ---- gpt2 ---------------------------------------------------------------------- */

START_TEST(gpt2_verdict) {
  size_t n;
  char *text = slurp(tu_src("data/the-verdict.txt"), &n);
  ck_assert_uint_eq(n_chars(text, n), 20479);
  int32_t *ids;
  size_t k;
  ck_assert_int_eq(tok_encode(gpt2(), text, n, 0, &ids, &k), 0);
  ck_assert_uint_eq(k, 5145);
  static const int32_t head[] = {40, 367, 2885, 1464, 1807, 3619, 402, 271, 10899, 2138, 257, 7026, 15632, 438};
  expect_ids(ids, 14, head, 14, "the-verdict head");
  expect_roundtrip(gpt2(), ids, k, text, n, "the-verdict");
  free(ids);
  free(text);
}
END_TEST

START_TEST(gpt2_special) {
  const char *s = "Hello, do you like tea? <|endoftext|> In the sunlit terracesof someunknownPlace.";
  static const int32_t want[] = {15496, 11,   466,   345,  588,  8887, 30,  220,   50256, 554,
                                 262,   4252, 18250, 8812, 2114, 1659, 617, 34680, 27271, 13};
  int32_t *ids;
  size_t k;
  ck_assert_int_eq(tok_encode(gpt2(), s, strlen(s), 1, &ids, &k), 0);
  expect_ids(ids, k, want, 20, "allow_special");
  expect_roundtrip(gpt2(), ids, k, s, strlen(s), "allow_special");
  free(ids);
  /* not allowed: the same characters are ordinary text */
  ck_assert_int_eq(tok_encode(gpt2(), s, strlen(s), 0, &ids, &k), 0);
  for (size_t i = 0; i < k; i++) ck_assert_int_ne(ids[i], 50256);
  ck_assert_uint_gt(k, 20);
  expect_roundtrip(gpt2(), ids, k, s, strlen(s), "disallowed special");
  free(ids);
  ck_assert_int_eq(tok_eot(gpt2()), 50256);
  ck_assert_int_eq(tok_vocab_size(gpt2()), 50257);
  ck_assert_int_eq(tok_kind(gpt2()), CFG_TOK_GPT2);
}
END_TEST

static void golden_cases(tok_t *t) {
  char *file = slurp(tu_src("tests/golden/tok/gpt2_cases.txt"), NULL), *cur = file, *line;
  int cases = 0;
  while ((line = next_line(&cur))) {
    char name[128], sha[65], got_sha[65];
    int special;
    ck_assert_int_eq(sscanf(line, "case %127s %d %64s", name, &special, sha), 3);
    const char *tl = next_line(&cur), *il = next_line(&cur);
    ck_assert(tl && !strncmp(tl, "text ", 5) && il && !strncmp(il, "ids", 3));
    const char *p = tl + 5;
    size_t len;
    char *text = json_str(&p, &len);
    util_sha256_hex(text, len, got_sha);
    ck_assert_msg(!strcmp(sha, got_sha), "%s: golden text read back wrong", name);
    int32_t *want, *ids;
    size_t n_want = parse_ids(il + 3, &want), k;
    ck_assert_msg(tok_encode(t, text, len, special, &ids, &k) == 0, "%s: %s", name, util_errmsg());
    expect_ids(ids, k, want, n_want, name);
    expect_roundtrip(t, ids, k, text, len, name);
    free(ids);
    free(want);
    free(text);
    cases++;
  }
  ck_assert_int_ge(cases, 60);
  free(file);
}

static void golden_corpora(tok_t *t) {
  char *file = slurp(tu_src("tests/golden/tok/gpt2_corpora.txt"), NULL), *cur = file, *line;
  int corpora = 0, synthetic = 0;
  while ((line = next_line(&cur))) {
    char rel[256], sha[65], got[65], all[65];
    size_t nchars, nids, block, len, k;
    char *text = NULL;
    int32_t *ids;
    int is_corpus = !strncmp(line, "corpus ", 7);
    if (is_corpus) {
      ck_assert_int_eq(sscanf(line, "corpus %255s %64s %zu %zu %zu", rel, sha, &nchars, &nids, &block), 5);
      text = slurp(tu_src(rel), &len);
      util_sha256_hex(text, len, got);
      ck_assert_msg(!strcmp(got, sha), "%s differs from the file the goldens were made from", rel);
      ck_assert_uint_eq(n_chars(text, len), nchars);
      corpora++;
    } else {
      ck_assert_msg(!strncmp(line, "synthetic ", 10), "unexpected line '%.40s'", line);
      const char *p = line + 10;
      size_t ul, tl, reps;
      char *unit = json_str(&p, &ul);
      int used;
      ck_assert_int_eq(sscanf(p, " %zu %n", &reps, &used), 1);
      p += used;
      char *tail = json_str(&p, &tl);
      ck_assert_int_eq(sscanf(p, " %zu %64s", &nids, sha), 2);
      len = ul * reps + tl;
      text = malloc(len + 1);
      for (size_t r = 0; r < reps; r++) memcpy(text + r * ul, unit, ul);
      memcpy(text + ul * reps, tail, tl);
      snprintf(rel, sizeof rel, "synthetic case %d", synthetic + 1);
      free(unit);
      free(tail);
      synthetic++;
    }
    size_t look0 = tok_stat_rank_lookups();
    ck_assert_msg(tok_encode(t, text, len, 0, &ids, &k) == 0, "%s: %s", rel, util_errmsg());
    size_t looks = tok_stat_rank_lookups() - look0;
    ck_assert_msg(k == nids, "%s: %zu ids, want %zu", rel, k, nids);
    int32_t *first, *last;
    size_t nf = parse_ids(next_line(&cur) + 5, &first), nl = parse_ids(next_line(&cur) + 4, &last);
    expect_ids(ids, nf, first, nf, rel);
    expect_ids(ids + k - nl, nl, last, nl, rel);
    if (is_corpus) {
      ck_assert_int_eq(sscanf(next_line(&cur), "all %64s", all), 1);
      for (size_t b = 0; b < k; b += block) { /* a mismatch names its block */
        const char *bl = next_line(&cur);
        ids_sha(ids + b, b + block < k ? block : k - b, got);
        ck_assert_msg(bl && !strncmp(bl, "block ", 6) && !strcmp(bl + 6, got), "%s: ids differ in %zu..%zu", rel, b,
                      b + block);
      }
      ids_sha(ids, k, got);
      ck_assert_msg(!strcmp(got, all), "%s: id list hash differs", rel);
    } else {
      ids_sha(ids, k, got);
      ck_assert_msg(!strcmp(got, sha), "%s: id list hash differs", rel);
    }
    /* long single pieces must not be quadratic: each byte starts one pair and
     * one final id, each merge re-ranks at most two pairs, each piece is
     * first looked up whole: at most 5 lookups a byte (a naive merge: n^2/2) */
    ck_assert_msg(looks <= 5 * len + 16, "%s: %zu merge-table lookups for %zu bytes", rel, looks, len);
    expect_roundtrip(t, ids, k, text, len, rel);
    free(first);
    free(last);
    free(ids);
    free(text);
  }
  ck_assert_int_eq(corpora, 2);
  ck_assert_int_ge(synthetic, 8);
  free(file);
}
START_TEST(gpt2_golden_cases) { golden_cases(gpt2()); }
END_TEST

START_TEST(gpt2_golden_corpora) { golden_corpora(gpt2()); }
END_TEST

/* The fallbacks for other systems: PCRE2's interpreter (no JIT) and the
 * classes spelled out in full (PCRE2 tables too old or too new). */
START_TEST(gpt2_fallbacks) {
  tok_t *t = tok_gpt2_new_ex(TOK_GPT2_NO_JIT);
  ck_assert_ptr_nonnull(t);
  ck_assert_ptr_nonnull(strstr(tok_bpe_describe(t), "interpreter"));
  golden_cases(t);
  golden_corpora(t);
  tok_free(t);
  t = tok_gpt2_new_ex(TOK_GPT2_EXPLICIT);
  ck_assert_ptr_nonnull(strstr(tok_bpe_describe(t), "explicit"));
  golden_cases(t);
  tok_free(t);
}
END_TEST

typedef struct {
  uint32_t (*r)[2];
  size_t n;
} ranges;

static int in_ranges(const ranges *c, uint32_t cp) {
  size_t lo = 0, hi = c->n;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    if (c->r[mid][1] < cp)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo < c->n && c->r[lo][0] <= cp;
}

/* Every code point, classified through the pieces the pre-tokenizer cuts,
 * against the classes read out of tiktoken's regex engine. In the chunk
 * "a X 1 X ! X X a" the piece of 'a' runs on into X iff X is a letter, that
 * of '1' iff X is a number, that of '!' iff X is neither nor whitespace
 * (whatever stands around the chunk); the two X are split iff X is
 * whitespace (the lookahead (?!\S) backs off before the 'a'). */
static void check_classes(tok_t *t, const ranges *cls, const uint32_t *list, size_t n_list, size_t counts[4]) {
  enum { BATCH = 8192 };
  char *text = malloc(BATCH * 20);
  unsigned char *cut = malloc(BATCH * 20 + 1);
  uint32_t cps[BATCH];
  size_t at[BATCH][4];
  for (size_t next = 0; next < n_list;) {
    size_t n = 0, k = 0;
    while (k < BATCH && next < n_list) {
      uint32_t cp = list[next++];
      char x[4];
      size_t l = (size_t)util_utf8_encode(cp, x);
      const char *lead = "a1!";
      for (int j = 0; j < 3; j++) {
        text[n++] = lead[j];
        at[k][j] = n;
        memcpy(text + n, x, l);
        n += l;
      }
      at[k][3] = n;
      memcpy(text + n, x, l);
      n += l;
      text[n++] = 'a';
      cps[k++] = cp;
    }
    size_t *ends, m;
    ck_assert_msg(tok_bpe_pieces(t, text, n, &ends, &m) == 0, "%s", util_errmsg());
    memset(cut, 0, n + 1);
    for (size_t i = 0; i < m; i++) cut[ends[i]] = 1;
    ck_assert(m && ends[m - 1] == n);
    free(ends);
    for (size_t i = 0; i < k; i++) {
      uint32_t cp = cps[i];
      int L = in_ranges(&cls[0], cp), N = in_ranges(&cls[1], cp), W = in_ranges(&cls[2], cp);
      int want[4] = {!L, !N, L || N || W, W};
      for (int j = 0; j < 4; j++) /* no ck_assert per probe: each one costs a write to Check's pipe */
        if (cut[at[i][j]] != want[j])
          ck_abort_msg("U+%04X: probe %d disagrees with tiktoken (L%d N%d W%d)", cp, j, L, N, W);
      counts[L ? 0 : N ? 1 : W ? 2 : 3]++;
    }
  }
  free(text);
  free(cut);
}

static int valid_cp(long cp) { return cp >= 0 && cp < 0x110000 && !(cp >= 0xD800 && cp <= 0xDFFF); }

START_TEST(gpt2_regex_classes) {
  char *file = slurp(tu_src("tests/golden/tok/classes.txt"), NULL), *cur = file, *line;
  ranges cls[3] = {{0}};
  int c = -1;
  while ((line = next_line(&cur))) {
    char name;
    size_t cnt;
    unsigned a, b;
    if (sscanf(line, "class %c %zu", &name, &cnt) == 2) {
      c = name == 'L' ? 0 : name == 'N' ? 1 : 2;
      cls[c].r = malloc(cnt * sizeof *cls[c].r);
      continue;
    }
    ck_assert_int_eq(sscanf(line, "%x %x", &a, &b), 2);
    cls[c].r[cls[c].n][0] = a;
    cls[c].r[cls[c].n++][1] = b;
  }
  ck_assert(cls[0].n > 600 && cls[1].n > 100 && cls[2].n == 10);
  uint32_t *all = malloc(0x110000 * sizeof *all);
  size_t n_all = 0, counts[4] = {0};
  for (long cp = 0; cp < 0x110000; cp++)
    if (valid_cp(cp)) all[n_all++] = (uint32_t)cp;
  /* the default: PCRE2's own properties where its Unicode version allows */
  check_classes(gpt2(), cls, all, n_all, counts);
  ck_assert_uint_eq(counts[0], 141028); /* Unicode 16 (PCRE2 10.42's tables are Unicode 14) */
  ck_assert_uint_eq(counts[1], 1911);
  ck_assert_uint_eq(counts[2], 25);
  /* every range spelled out (slow to scan): both sides of each range edge
   * and every 61st code point */
  size_t n_some = 0;
  for (int k = 0; k < 3; k++)
    for (size_t i = 0; i < cls[k].n; i++)
      for (long d = -1; d <= 1; d++) {
        if (valid_cp((long)cls[k].r[i][0] + d)) all[n_some++] = (uint32_t)((long)cls[k].r[i][0] + d);
        if (valid_cp((long)cls[k].r[i][1] + d)) all[n_some++] = (uint32_t)((long)cls[k].r[i][1] + d);
      }
  for (long cp = 0; cp < 0x110000; cp += 61)
    if (valid_cp(cp)) all[n_some++] = (uint32_t)cp;
  tok_t *t = tok_gpt2_new_ex(TOK_GPT2_EXPLICIT);
  ck_assert_ptr_nonnull(t);
  check_classes(t, cls, all, n_some, counts);
  tok_free(t);
  free(all);
  for (int k = 0; k < 3; k++) free(cls[k].r);
  free(file);
}
END_TEST

START_TEST(gpt2_bad_input) {
  static const struct {
    const char *s;
    size_t n;
    long at;
  } bad[] = {
      {"abc\xff", 4, 3},    {"\xc0\xaf", 2, 0},         {"ok \xed\xa0\x80", 6, 3}, /* surrogate */
      {"ab\xe2\x82", 4, 2}, {"\xf4\x90\x80\x80", 4, 0},                            /* above U+10FFFF */
      {"x\x80", 2, 1},      {"\xe0\x80\xaf!", 4, 0},                               /* overlong */
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    int32_t *ids = (int32_t *)1;
    size_t k = 7;
    char want[64];
    snprintf(want, sizeof want, "invalid UTF-8 at byte offset %ld", bad[i].at);
    expect_err(tok_encode(gpt2(), bad[i].s, bad[i].n, 0, &ids, &k), want);
    ck_assert_ptr_null(ids);
    ck_assert_uint_eq(k, 0);
  }
  int32_t *ids;
  size_t k;
  ck_assert_int_eq(tok_encode(gpt2(), "", 0, 1, &ids, &k), 0);
  ck_assert_uint_eq(k, 0);
  free(ids);
  /* NUL bytes are text like any other */
  ck_assert_int_eq(tok_encode(gpt2(), "a\0b", 3, 0, &ids, &k), 0);
  expect_roundtrip(gpt2(), ids, k, "a\0b", 3, "NUL");
  free(ids);

  char *text;
  size_t len;
  int32_t out_of_range[] = {15496, 50257};
  expect_err(tok_decode(gpt2(), out_of_range, 2, &text, &len),
             "token id 50257 at position 1 is out of range (vocabulary size 50257)");
  int32_t negative[] = {-1};
  expect_err(tok_decode(gpt2(), negative, 1, &text, &len), "token id -1 at position 0 is out of range");
  /* ids that stop inside a character decode to its first bytes */
  ck_assert_int_eq(tok_encode(gpt2(), "\xe4\xbd\xa0", 3, 0, &ids, &k), 0);
  ck_assert_uint_ge(k, 2);
  ck_assert_int_eq(tok_decode(gpt2(), ids, 1, &text, &len), 0);
  ck_assert(len >= 1 && len < 3 && !memcmp(text, "\xe4\xbd\xa0", len));
  free(text);
  free(ids);
}
END_TEST

START_TEST(gpt2_vocab_blob) {
  char *blob, hash[65];
  size_t n;
  ck_assert_int_eq(tok_vocab_save(gpt2(), &blob, &n), 0);
  ck_assert_uint_eq(n, 4);
  ck_assert_str_eq(blob, "gpt2");
  util_sha256_hex("gpt2", 4, hash);
  ck_assert_str_eq(tok_vocab_hash(gpt2()), hash);
  tok_t *t = tok_from_vocab(CFG_TOK_GPT2, blob, n);
  ck_assert_ptr_nonnull(t);
  ck_assert_str_eq(tok_vocab_hash(t), hash);
  ck_assert_int_eq(tok_vocab_size(t), 50257);
  tok_free(t);
  expect_err(tok_from_vocab(CFG_TOK_CHAR, blob, n) ? 0 : -1, "vocabulary is for the gpt2 tokenizer, expected char");
  free(blob);
}
END_TEST

/* ---- char ---------------------------------------------------------------------- */

/* charcorpus / wordcorpus lines of simple_cases.txt for `rel`. */
static void simple_corpus(const char *kind, const char *rel, size_t *nvocab, size_t *nids, char sha[65]) {
  char *file = slurp(tu_src("tests/golden/tok/simple_cases.txt"), NULL), *cur = file, *line, pat[300];
  snprintf(pat, sizeof pat, "%scorpus %s ", kind, rel);
  int found = 0;
  while ((line = next_line(&cur)))
    if (!strncmp(line, pat, strlen(pat))) found = sscanf(line + strlen(pat), "%zu %zu %64s", nvocab, nids, sha) == 3;
  ck_assert_msg(found, "no %s line in simple_cases.txt", pat);
  free(file);
}

START_TEST(char_corpora) {
  const char *rels[] = {"data/tinyshakespeare.txt", "data/the-verdict.txt"};
  for (int r = 0; r < 2; r++) {
    size_t n, nvocab, nids, k;
    char *text = slurp(tu_src(rels[r]), &n), sha[65], got[65];
    simple_corpus("char", rels[r], &nvocab, &nids, sha);
    tok_t *t = tok_char_new(text, n);
    ck_assert_msg(t != NULL, "%s", util_errmsg());
    ck_assert_int_eq(tok_vocab_size(t), (int)nvocab);
    ck_assert_int_eq(tok_eot(t), -1);
    ck_assert_int_eq(tok_kind(t), CFG_TOK_CHAR);
    int32_t *ids;
    ck_assert_int_eq(tok_encode(t, text, n, 0, &ids, &k), 0);
    ck_assert_uint_eq(k, nids);
    ids_sha(ids, k, got);
    ck_assert_str_eq(got, sha);
    expect_roundtrip(t, ids, k, text, n, rels[r]);
    if (r == 0) {
      ck_assert_uint_eq(k, 1115394);
      ck_assert_int_eq(tok_vocab_size(t), 65);
      ck_assert_int_eq(ids[0], 18); /* "First": 'F' has 18 characters below it */
    }
    free(ids);
    free(text);
    tok_free(t);
  }
}
END_TEST

START_TEST(char_golden) {
  char *file = slurp(tu_src("tests/golden/tok/simple_cases.txt"), NULL), *cur = file, *line;
  while ((line = next_line(&cur)) && strncmp(line, "charvocab ", 10)) {
  }
  ck_assert_ptr_nonnull(line);
  size_t nvocab, len, k;
  int used;
  ck_assert_int_eq(sscanf(line, "charvocab %zu %n", &nvocab, &used), 1);
  const char *p = line + used;
  char *text = json_str(&p, &len);
  tok_t *t = tok_char_new(text, len);
  ck_assert_ptr_nonnull(t);
  ck_assert_int_eq(tok_vocab_size(t), (int)nvocab);
  int32_t *want, *ids;
  size_t n_want = parse_ids(next_line(&cur) + 3, &want);
  ck_assert_int_eq(tok_encode(t, text, len, 0, &ids, &k), 0);
  expect_ids(ids, k, want, n_want, "charvocab");
  expect_roundtrip(t, ids, k, text, len, "charvocab");
  free(ids);
  free(want);
  free(text);
  tok_free(t);
  free(file);
}
END_TEST

START_TEST(char_errors) {
  const char *v = "abc \xc3\xa9"; /* a b c space é */
  tok_t *t = tok_char_new(v, strlen(v));
  ck_assert_ptr_nonnull(t);
  ck_assert_int_eq(tok_vocab_size(t), 5);
  int32_t *ids;
  size_t k;
  expect_err(tok_encode(t, "abd", 3, 0, &ids, &k),
             "char tokenizer: unknown character U+0064 'd' at character 2 (byte offset 2)");
  expect_err(tok_encode(t, "\xc3\xa9 z", 4, 0, &ids, &k),
             "unknown character U+007A 'z' at character 2 (byte offset 3)");
  expect_err(tok_encode(t, "a\xf0\x9f\x98\x80", 5, 0, &ids, &k),
             "unknown character U+1F600 '\xf0\x9f\x98\x80' at character 1 (byte offset 1)");
  expect_err(tok_encode(t, "ab\n", 3, 0, &ids, &k), "unknown character U+000A at character 2 (byte offset 2)");
  ck_assert_ptr_null(strchr(util_errmsg(), '\n'));
  expect_err(tok_encode(t, "a\xe2\x28\xa1", 4, 0, &ids, &k), "invalid UTF-8 at byte offset 1");
  char *text;
  size_t len;
  int32_t bad[] = {0, 4, 5};
  expect_err(tok_decode(t, bad, 3, &text, &len), "token id 5 at position 2 is out of range (vocabulary size 5)");
  int32_t good[] = {4, 0, 3};
  ck_assert_int_eq(tok_decode(t, good, 3, &text, &len), 0);
  ck_assert_str_eq(text, "\xc3\xa9 c");
  free(text);
  tok_free(t);
  expect_err(tok_char_new("", 0) ? 0 : -1, "char vocabulary: the text is empty");
  expect_err(tok_char_new("ab\xfe", 3) ? 0 : -1, "char vocabulary: invalid UTF-8 at byte offset 2");
}
END_TEST

/* ---- word ---------------------------------------------------------------------- */

static void word_check(tok_t *t, const char *s, int special, const int32_t *want, size_t n_want, const char *decoded) {
  int32_t *ids;
  size_t k;
  ck_assert_msg(tok_encode(t, s, strlen(s), special, &ids, &k) == 0, "%s", util_errmsg());
  expect_ids(ids, k, want, n_want, s);
  char *text;
  size_t len;
  ck_assert_int_eq(tok_decode(t, ids, k, &text, &len), 0);
  ck_assert_str_eq(text, decoded);
  ck_assert_uint_eq(len, strlen(decoded));
  free(text);
  free(ids);
}

START_TEST(word_verdict) {
  size_t n;
  char *text = slurp(tu_src("data/the-verdict.txt"), &n);
  tok_t *plain = tok_word_new_ex(text, n, 0), *t = tok_word_new(text, n);
  ck_assert(plain && t);
  ck_assert_int_eq(tok_vocab_size(plain), 1130);
  ck_assert_int_eq(tok_vocab_size(t), 1132);
  ck_assert_int_eq(tok_eot(t), 1130);
  ck_assert_int_eq(tok_eot(plain), -1);
  int32_t *ids;
  size_t k;
  ck_assert_int_eq(tok_encode(t, text, n, 0, &ids, &k), 0);
  ck_assert_uint_eq(k, 4690);
  for (size_t i = 0; i < k; i++) ck_assert_int_lt(ids[i], 1130); /* every word is known */
  free(ids);

  static const int32_t v1[] = {1, 56, 2,  850, 988, 602, 533,  746, 5,   1126, 596,
                               5, 1,  67, 7,   38,  851, 1108, 754, 793, 7};
  word_check(plain, "\"It's the last he painted, you know,\"\n           Mrs. Gisburn said with pardonable pride.", 0,
             v1, 21, "\" It' s the last he painted, you know,\" Mrs. Gisburn said with pardonable pride.");
  static const int32_t v2[] = {1131, 5,  355,  1126, 628, 975, 7,   1131, 999, 6,    115,
                               1131, 10, 1130, 55,   988, 956, 984, 722,  988, 1131, 7};
  const char *s2 = "Hello, do you like tea. Is this-- a test? <|endoftext|> In the sunlit terraces of the palace.";
  word_check(
      t, s2, 1, v2, 22,
      "<|unk|>, do you like tea. <|unk|> this -- a <|unk|>? <|endoftext|> In the sunlit terraces of the <|unk|>.");
  /* disallowed, <|endoftext|> is a word the text does not have */
  int32_t v3[22];
  memcpy(v3, v2, sizeof v3);
  v3[13] = 1131;
  word_check(t, s2, 0, v3, 22,
             "<|unk|>, do you like tea. <|unk|> this -- a <|unk|>? <|unk|> In the sunlit terraces of the <|unk|>.");
  /* no <|unk|> in the plain vocabulary: an unknown word is an error */
  expect_err(tok_encode(plain, "the xylophone", 13, 0, &ids, &k),
             "word tokenizer: unknown word \"xylophone\" at byte offset 4 (the vocabulary has no <|unk|>)");
  tok_free(plain);
  tok_free(t);
  free(text);
}
END_TEST

START_TEST(word_golden) {
  char *file = slurp(tu_src("tests/golden/tok/simple_cases.txt"), NULL), *cur = file, *line;
  tok_t *t = NULL;
  int cases = 0;
  while ((line = next_line(&cur))) {
    const char *p;
    size_t len, n;
    int used;
    if (!strncmp(line, "wordvocab ", 10)) {
      size_t nvocab;
      ck_assert_int_eq(sscanf(line, "wordvocab %zu %n", &nvocab, &used), 1);
      p = line + used;
      char *text = json_str(&p, &len);
      t = tok_word_new(text, len);
      ck_assert_ptr_nonnull(t);
      ck_assert_int_eq(tok_vocab_size(t), (int)nvocab);
      free(text);
    } else if (!strncmp(line, "word ", 5)) {
      char name[64];
      ck_assert_int_eq(sscanf(line, "word %63s %n", name, &used), 1);
      p = line + used;
      char *text = json_str(&p, &len);
      int32_t *want;
      size_t n_want = parse_ids(next_line(&cur) + 3, &want);
      p = next_line(&cur) + 8;
      char *decoded = json_str(&p, &n);
      word_check(t, text, 0, want, n_want, decoded);
      free(want);
      free(text);
      free(decoded);
      cases++;
    } else if (!strncmp(line, "wordcorpus ", 11)) {
      char rel[256], sha[65], got[65];
      size_t nvocab, nids, k;
      ck_assert_int_eq(sscanf(line, "wordcorpus %255s %zu %zu %64s", rel, &nvocab, &nids, sha), 4);
      char *text = slurp(tu_src(rel), &n);
      tok_t *w = tok_word_new(text, n);
      ck_assert_int_eq(tok_vocab_size(w), (int)nvocab);
      int32_t *ids;
      ck_assert_int_eq(tok_encode(w, text, n, 0, &ids, &k), 0);
      ck_assert_uint_eq(k, nids);
      ids_sha(ids, k, got);
      ck_assert_msg(!strcmp(got, sha), "%s: word ids differ from the reference", rel);
      free(ids);
      free(text);
      tok_free(w);
    }
  }
  ck_assert_int_ge(cases, 7);
  tok_free(t);
  free(file);
}
END_TEST

START_TEST(word_errors) {
  expect_err(tok_word_new("", 0) ? 0 : -1, "word vocabulary: the text is empty");
  expect_err(tok_word_new(" \n\t ", 4) ? 0 : -1, "word vocabulary: the text has no words");
  expect_err(tok_word_new("ok \xc3", 4) ? 0 : -1, "word vocabulary: invalid UTF-8 at byte offset 3");
  const char *v = "b a, a <|endoftext|> <|unk|>";
  tok_t *t = tok_word_new(v, strlen(v));
  ck_assert_ptr_nonnull(t);
  /* the specials in the text do not become words: a b , then the two specials */
  ck_assert_int_eq(tok_vocab_size(t), 5);
  ck_assert_int_eq(tok_eot(t), 3);
  char *text;
  size_t len;
  int32_t bad[] = {5};
  expect_err(tok_decode(t, bad, 1, &text, &len), "token id 5 at position 0 is out of range (vocabulary size 5)");
  tok_free(t);
}
END_TEST

/* ---- vocabulary blobs -------------------------------------------------------- */

static tok_t *reload(const tok_t *t) {
  char *blob;
  size_t n;
  ck_assert_int_eq(tok_vocab_save(t, &blob, &n), 0);
  ck_assert_uint_eq(strlen(blob), n);
  char hash[65];
  util_sha256_hex(blob, n, hash);
  ck_assert_str_eq(tok_vocab_hash(t), hash);
  tok_t *u = tok_from_vocab(tok_kind(t), blob, n);
  ck_assert_msg(u != NULL, "%s", util_errmsg());
  char *again;
  size_t m;
  ck_assert_int_eq(tok_vocab_save(u, &again, &m), 0);
  ck_assert(m == n && !memcmp(blob, again, n));
  ck_assert_str_eq(tok_vocab_hash(u), tok_vocab_hash(t));
  ck_assert_int_eq(tok_vocab_size(u), tok_vocab_size(t));
  ck_assert_int_eq(tok_eot(u), tok_eot(t));
  free(blob);
  free(again);
  return u;
}

START_TEST(vocab_roundtrip) {
  /* entries that need escaping: quote, backslash, controls, DEL, C1, U+2028 */
  const char *v = "ab\"\\\n\t\x01\x7f\xc2\x85\xc2\xa0\xe2\x80\xa8\xe2\x80\xa9\xf0\x9f\x98\x80\xe4\xb8\xad/";
  tok_t *c = tok_char_new(v, strlen(v));
  ck_assert_ptr_nonnull(c);
  char *blob;
  size_t n;
  ck_assert_int_eq(tok_vocab_save(c, &blob, &n), 0);
  ck_assert_str_eq(blob, "gptc-vocab char 1\n"
                         "\"\\u0001\"\n\"\\t\"\n\"\\n\"\n\"\\\"\"\n\"/\"\n\"\\\\\"\n\"a\"\n\"b\"\n"
                         "\"\\u007f\"\n\"\\u0085\"\n\"\xc2\xa0\"\n\"\\u2028\"\n\"\\u2029\"\n"
                         "\"\xe4\xb8\xad\"\n\"\xf0\x9f\x98\x80\"\n");
  free(blob);
  tok_t *c2 = reload(c);
  int32_t *a, *b;
  size_t ka, kb;
  ck_assert_int_eq(tok_encode(c, v, strlen(v), 0, &a, &ka), 0);
  ck_assert_int_eq(tok_encode(c2, v, strlen(v), 0, &b, &kb), 0);
  expect_ids(b, kb, a, ka, "char reload");
  expect_roundtrip(c2, b, kb, v, strlen(v), "char reload");
  free(a);
  free(b);
  tok_free(c);
  tok_free(c2);

  size_t tn;
  char *text = slurp(tu_src("data/the-verdict.txt"), &tn);
  tok_t *w = tok_word_new(text, tn), *w2 = reload(w);
  ck_assert_int_eq(tok_encode(w, text, tn, 1, &a, &ka), 0);
  ck_assert_int_eq(tok_encode(w2, text, tn, 1, &b, &kb), 0);
  expect_ids(b, kb, a, ka, "word reload");
  tok_t *p = tok_word_new_ex(text, tn, 0), *p2 = reload(p);
  ck_assert_int_eq(tok_vocab_size(p2), 1130);
  ck_assert_int_eq(tok_eot(p2), -1);
  ck_assert_int_eq(tok_vocab_save(w, &blob, &n), 0);
  ck_assert(!strncmp(blob, "gptc-vocab word 1\n\"!\"\n", 22));
  ck_assert(n > 30 && !strcmp(blob + n - 26, "\"<|endoftext|>\"\n\"<|unk|>\"\n"));
  ck_assert_str_ne(tok_vocab_hash(w), tok_vocab_hash(p));
  free(blob);
  free(a);
  free(b);
  tok_free(w);
  tok_free(w2);
  tok_free(p);
  tok_free(p2);
  free(text);
}
END_TEST

static void bad_blob(int kind, const char *blob, const char *needle) {
  tok_t *t = tok_from_vocab(kind, blob, strlen(blob));
  ck_assert_msg(t == NULL, "blob accepted: %s", blob);
  ck_assert_msg(strstr(util_errmsg(), needle) != NULL, "message '%s' lacks '%s'", util_errmsg(), needle);
}

START_TEST(vocab_bad_blobs) {
  bad_blob(CFG_TOK_CHAR, "", "vocabulary: the first line must be 'gptc-vocab char 1'");
  bad_blob(CFG_TOK_CHAR, "gptc-vocab char 1", "the first line must be");
  bad_blob(CFG_TOK_CHAR, "gptc-vocab word 1\n\"a\"\n", "vocabulary is for the word tokenizer, expected char");
  bad_blob(CFG_TOK_WORD, "gptc-vocab char 1\n\"a\"\n", "vocabulary is for the char tokenizer, expected word");
  bad_blob(CFG_TOK_CHAR, "gptc-vocab char 2\n\"a\"\n", "unsupported format version");
  bad_blob(CFG_TOK_CHAR, "gptc-vocab char 1\n", "vocabulary has no entries");
  bad_blob(CFG_TOK_CHAR, "gptc-vocab char 1\n\"b\"\n\"a\"\n", "vocabulary line 3: char entries must be in ascending");
  bad_blob(CFG_TOK_CHAR, "gptc-vocab char 1\n\"a\"\n\"a\"\n", "vocabulary line 3: char entries must be in ascending");
  bad_blob(CFG_TOK_CHAR, "gptc-vocab char 1\n\"ab\"\n",
           "vocabulary line 2: a char entry must be exactly one character");
  bad_blob(CFG_TOK_CHAR, "gptc-vocab char 1\n\"a\"", "vocabulary line 2: expected a newline after the entry");
  bad_blob(CFG_TOK_CHAR, "gptc-vocab char 1\n\"a\" \n", "vocabulary line 2: expected a newline");
  bad_blob(CFG_TOK_CHAR, "gptc-vocab char 1\na\n",
           "vocabulary line 2: invalid JSON at byte 18: unexpected 'a', expected a string");
  bad_blob(CFG_TOK_CHAR, "gptc-vocab char 1\n\"a\n", "vocabulary line 2: invalid JSON at byte 20: control character");
  bad_blob(CFG_TOK_CHAR, "gptc-vocab char 1\n\"\\q\"\n", "vocabulary line 2: invalid JSON at byte 19: invalid escape");
  bad_blob(CFG_TOK_CHAR, "gptc-vocab char 1\n\"\\u12\"\n",
           "vocabulary line 2: invalid JSON at byte 23: \\u escape needs 4 hex digits");
  bad_blob(CFG_TOK_CHAR, "gptc-vocab char 1\n\"\\ud800\"\n",
           "vocabulary line 2: invalid JSON at byte 19: high surrogate not followed by a \\u low surrogate");
  bad_blob(CFG_TOK_CHAR, "gptc-vocab char 1\n\"\\udc00x\"\n",
           "vocabulary line 2: invalid JSON at byte 19: lone low surrogate");
  bad_blob(CFG_TOK_CHAR, "gptc-vocab char 1\n\"a\xff\"\n", "vocabulary: invalid UTF-8 at byte offset 20");
  bad_blob(CFG_TOK_CHAR, "gptc-vocab char 1\n\"abc", "vocabulary line 2: invalid JSON at byte 18: unterminated string");
  bad_blob(CFG_TOK_WORD, "gptc-vocab word 1\n\"a\"\n\"b\"\n\"a\"\n", "vocabulary line 4: duplicate word entry");
  bad_blob(CFG_TOK_WORD, "gptc-vocab word 1\n\"\"\n", "vocabulary line 2: a word entry cannot be empty");
  bad_blob(CFG_TOK_WORD, "gptc-vocab word 1\n\"a b\"\n", "vocabulary line 2: a word entry cannot contain whitespace");
  bad_blob(CFG_TOK_WORD, "gpt2", "vocabulary is for the gpt2 tokenizer, expected word");
  /* escaped astral characters are one code point */
  const char *astral = "gptc-vocab char 1\n\"\\u00e9\"\n\"\\ud83d\\ude00\"\n";
  tok_t *t = tok_from_vocab(CFG_TOK_CHAR, astral, strlen(astral));
  ck_assert_msg(t != NULL, "%s", util_errmsg());
  int32_t *ids;
  size_t k;
  ck_assert_int_eq(tok_encode(t, "\xf0\x9f\x98\x80\xc3\xa9", 6, 0, &ids, &k), 0);
  ck_assert(k == 2 && ids[0] == 1 && ids[1] == 0);
  free(ids);
  tok_free(t);
}
END_TEST

START_TEST(json_strings) {
  /* every byte value that valid UTF-8 allows, through write and read */
  util_buf in = {0}, js = {0}, back = {0};
  for (uint32_t cp = 0; cp < 0x800; cp++) {
    char u[4];
    util_buf_add(&in, u, (size_t)util_utf8_encode(cp, u));
  }
  util_buf_add(&in, "\xe2\x80\xa8\xe2\x80\xa9\xef\xbf\xbf\xf4\x8f\xbf\xbf", 13);
  ck_assert_int_eq(json_write_str_line(&js, in.data, in.len, "x"), 0);
  ck_assert_ptr_null(memchr(js.data, '\n', js.len));
  ck_assert_int_eq(json_read_str(js.data, js.len, &back, "x", 0), (long)js.len);
  ck_assert(back.len == in.len && !memcmp(back.data, in.data, in.len));
  util_buf_free(&in);
  util_buf_free(&js);
  util_buf_free(&back);
}
END_TEST

/* Random byte strings, mostly valid UTF-8 (random code points of every
 * length) with stray bytes mixed in: invalid input is rejected at the same
 * offset util_utf8_invalid_at names, valid input round-trips through every
 * tokenizer. */
START_TEST(fuzz_roundtrip) {
  uint64_t x = 0x9E3779B97F4A7C15ULL;
  char buf[512];
  int valid = 0;
  for (int round = 0; round < 3000; round++) {
    size_t n = 0, want = 1 + round % 200;
    while (n < want) {
      x ^= x << 13, x ^= x >> 7, x ^= x << 17;
      uint32_t r = (uint32_t)(x >> 20), cp;
      switch (r % 8) {
      case 0: cp = r % 0x80; break;
      case 1: cp = 0x80 + r % 0x780; break;
      case 2: cp = 0x800 + r % 0xF800; break;
      case 3: cp = 0x10000 + r % 0x100000; break;
      case 4: cp = " \t\n'"[r % 4]; break;
      default: cp = 'a' + r % 26; break;
      }
      if (cp >= 0xD800 && cp <= 0xDFFF) cp = '-';
      n += (size_t)util_utf8_encode(cp, buf + n);
    }
    if (round % 4 == 0) buf[(x >> 8) % n] = (char)(x >> 40); /* a stray byte, maybe invalid */
    int32_t *ids;
    size_t k;
    long bad = util_utf8_invalid_at(buf, n);
    if (bad >= 0) {
      char msg[64];
      snprintf(msg, sizeof msg, "invalid UTF-8 at byte offset %ld", bad);
      expect_err(tok_encode(gpt2(), buf, n, round & 1, &ids, &k), msg);
      continue;
    }
    valid++;
    ck_assert_int_eq(tok_encode(gpt2(), buf, n, round & 1, &ids, &k), 0);
    expect_roundtrip(gpt2(), ids, k, buf, n, "gpt2 fuzz");
    free(ids);
    tok_t *c = tok_char_new(buf, n);
    ck_assert_int_eq(tok_encode(c, buf, n, 0, &ids, &k), 0);
    expect_roundtrip(c, ids, k, buf, n, "char fuzz");
    free(ids);
    tok_free(c);
  }
  ck_assert_int_gt(valid, 2000);
}
END_TEST

/* ---- the tokenize command ------------------------------------------------------ */

START_TEST(cli_roundtrip) {
  tu_run_result r;
  const char *verdict = tu_src("data/the-verdict.txt");
  ck_assert_int_eq(tu_run(&r, NULL, "tokenize --text '%s'", verdict), 0);
  int32_t *ids;
  size_t k = parse_ids(r.out, &ids);
  ck_assert_uint_eq(k, 5145);
  ck_assert_int_eq(ids[0], 40);
  ck_assert_ptr_eq(strchr(r.out, '\n'), r.out + r.out_len - 1); /* one line */
  const char *idfile = tu_write("verdict.ids", r.out, r.out_len);
  tu_run_free(&r);
  free(ids);
  ck_assert_int_eq(tu_run(&r, NULL, "tokenize --decode --text '%s'", idfile), 0);
  size_t n;
  char *text = slurp(verdict, &n);
  ck_assert(r.out_len == n && !memcmp(r.out, text, n));
  free(text);
  tu_run_free(&r);

  ck_assert_int_eq(tu_run(&r, "Hello, do you like tea? <|endoftext|> In", "tokenize --allow-special"), 0);
  ck_assert_str_eq(r.out, "15496 11 466 345 588 8887 30 220 50256 554\n");
  tu_run_free(&r);
  ck_assert_int_eq(tu_run(&r, "15496 11\n 50256\t995", "tokenize --decode --tokenizer gpt2"), 0);
  ck_assert_str_eq(r.out, "Hello,<|endoftext|> world");
  tu_run_free(&r);

  /* char: the input is its own vocabulary; sorted " ", "a", "b" */
  ck_assert_int_eq(tu_run(&r, "ba ab", "tokenize --tokenizer char"), 0);
  ck_assert_str_eq(r.out, "2 1 0 1 2\n");
  tu_run_free(&r);
  const char *vf = tu_write_str("vocab.txt", "ba ab");
  ck_assert_int_eq(tu_run(&r, "2 1 0 1 2 2", "tokenize --tokenizer char --decode --vocab-from '%s'", vf), 0);
  ck_assert_str_eq(r.out, "ba abb");
  tu_run_free(&r);
  ck_assert_int_eq(tu_run(&r, "abc", "tokenize --tokenizer char --vocab-from '%s'", vf), 1);
  ck_assert_str_eq(r.err, "gptc: stdin: char tokenizer: unknown character U+0063 'c' at character 2 (byte offset 2)\n");
  tu_run_free(&r);

  const char *wf = tu_write_str("words.txt", "Hello, world. It's here!");
  ck_assert_int_eq(
      tu_run(&r, "It's a world! <|endoftext|>", "tokenize --tokenizer word --vocab-from '%s' --allow-special", wf), 0);
  ck_assert_str_eq(r.out, "5 1 7 10 8 0 9\n"); /* ! ' , . Hello It here s world, then the specials */
  tu_run_free(&r);
  ck_assert_int_eq(tu_run(&r, "5 1 7 10 8 0 9", "tokenize --tokenizer word --decode --vocab-from '%s'", wf), 0);
  ck_assert_str_eq(r.out, "It' s <|unk|> world! <|endoftext|>");
  tu_run_free(&r);
}
END_TEST

START_TEST(cli_errors) {
  tu_run_result r;
  ck_assert_int_eq(tu_run(&r, NULL, "tokenize --text /nonexistent/x.txt"), 1);
  ck_assert(!strncmp(r.err, "gptc: /nonexistent/x.txt: cannot open", 37) &&
            strchr(r.err, '\n') == r.err + r.err_len - 1);
  tu_run_free(&r);
  ck_assert_int_eq(tu_run(&r, NULL, "tokenize"), 1); /* stdin is /dev/null */
  ck_assert_str_eq(r.err, "gptc: stdin: empty input\n");
  tu_run_free(&r);
  const char *empty = tu_write("empty.txt", "", 0);
  ck_assert_int_eq(tu_run(&r, NULL, "tokenize --text '%s'", empty), 1);
  ck_assert(strstr(r.err, "empty.txt: empty input\n") != NULL);
  tu_run_free(&r);
  const char *bad = tu_write("bad.txt", "fine\xc3(", 6);
  ck_assert_int_eq(tu_run(&r, NULL, "tokenize --text '%s'", bad), 1);
  ck_assert(strstr(r.err, "bad.txt: invalid UTF-8 at byte offset 4\n") != NULL);
  tu_run_free(&r);
  ck_assert_int_eq(tu_run(&r, NULL, "tokenize --tokenizer char --text '%s'", bad), 1);
  ck_assert(strstr(r.err, "bad.txt: invalid UTF-8 at byte offset 4\n") != NULL);
  tu_run_free(&r);
  ck_assert_int_eq(tu_run(&r, "1 2 x3", "tokenize --decode"), 1);
  ck_assert_str_eq(r.err, "gptc: stdin: token 3 ('x3' at byte offset 4) is not an integer id\n");
  tu_run_free(&r);
  ck_assert_int_eq(tu_run(&r, "1 50257", "tokenize --decode"), 1);
  ck_assert_str_eq(r.err, "gptc: stdin: token id 50257 at position 1 is out of range (vocabulary size 50257)\n");
  tu_run_free(&r);
  ck_assert_int_eq(tu_run(&r, " \n", "tokenize --decode"), 1);
  ck_assert_str_eq(r.err, "gptc: stdin: no token ids in the input\n");
  tu_run_free(&r);

  ck_assert_int_eq(tu_run(&r, "x", "tokenize --tokenizer bpe"), 2);
  ck_assert(strstr(r.err, "'--tokenizer' must be gpt2, char or word (got 'bpe')") != NULL);
  tu_run_free(&r);
  ck_assert_int_eq(tu_run(&r, "x", "tokenize --bogus"), 2);
  ck_assert(strstr(r.err, "unknown option '--bogus'") != NULL);
  tu_run_free(&r);
  ck_assert_int_eq(tu_run(&r, "1", "tokenize --tokenizer char --decode"), 2);
  ck_assert(strstr(r.err, "--decode with the char tokenizer needs --vocab-from FILE") != NULL);
  tu_run_free(&r);
  ck_assert_int_eq(tu_run(&r, "x", "tokenize --vocab-from x.txt"), 2);
  ck_assert(strstr(r.err, "'--vocab-from' applies to the char and word tokenizers only") != NULL);
  tu_run_free(&r);
  ck_assert_int_eq(tu_run(&r, "x", "tokenize --tokenizer char --allow-special"), 2);
  tu_run_free(&r);
  ck_assert_int_eq(tu_run(&r, "x", "tokenize --tokenizer word --vocab-from /nonexistent/v.txt"), 1);
  ck_assert(!strncmp(r.err, "gptc: /nonexistent/v.txt: cannot open", 37));
  tu_run_free(&r);
  ck_assert_int_eq(tu_run(&r, NULL, "tokenize --help"), 0);
  const char *opts[] = {"--tokenizer", "--vocab-from", "--allow-special", "--text", "--decode", "--help"};
  for (int i = 0; i < 6; i++) ck_assert_msg(strstr(r.out, opts[i]) != NULL, "--help lacks %s", opts[i]);
  tu_run_free(&r);
}
END_TEST

static Suite *tok_suite(void) {
  Suite *s = suite_create("tok");
  TCase *c = tcase_create("tok");
  tcase_set_timeout(c, 300);
  tcase_add_test(c, gpt2_verdict);
  tcase_add_test(c, gpt2_special);
  tcase_add_test(c, gpt2_golden_cases);
  tcase_add_test(c, gpt2_golden_corpora);
  tcase_add_test(c, gpt2_fallbacks);
  tcase_add_test(c, gpt2_regex_classes);
  tcase_add_test(c, gpt2_bad_input);
  tcase_add_test(c, gpt2_vocab_blob);
  tcase_add_test(c, char_corpora);
  tcase_add_test(c, char_golden);
  tcase_add_test(c, char_errors);
  tcase_add_test(c, word_verdict);
  tcase_add_test(c, word_golden);
  tcase_add_test(c, word_errors);
  tcase_add_test(c, vocab_roundtrip);
  tcase_add_test(c, vocab_bad_blobs);
  tcase_add_test(c, json_strings);
  tcase_add_test(c, fuzz_roundtrip);
  tcase_add_test(c, cli_roundtrip);
  tcase_add_test(c, cli_errors);
  suite_add_tcase(s, c);
  return s;
}

int main(void) { return tu_main(tok_suite()); }
