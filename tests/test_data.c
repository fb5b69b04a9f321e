/* Data pipeline: the seeds' windows and batches on the-verdict (ids as in
 * "LLMs from scratch" ch. 2), shuffling, padding, the character split, the
 * directory join, the token cache (reuse, invalidation, corruption) and
 * `gptc data`. Reference ids come from tiktoken's "gpt2" encoding. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data.h"
#include "testutil.h"
#include "util.h"

/* A small model config around a tokenizer; the data fields are what matter. */
static void test_cfg(cfg_t *c, const char *tokenizer, double val_ratio) {
  char src[512];
  snprintf(src, sizeof src,
           "return { name = 'dt', tokenizer = '%s', emb_dim = 16, n_heads = 2, n_layers = 1,"
           " context_length = 16, train = { val_ratio = %.17g } }",
           tokenizer, val_ratio);
  ck_assert_msg(cfg_load_string(src, "dt.lua", c) == 0, "%s", util_errmsg());
}

/* A cache directory of its own for each use. */
static const char *test_cache(const char *name) {
  static char buf[4][1024];
  static int i;
  char *b = buf[i++ & 3];
  snprintf(b, 1024, "%s/cache-%s", tu_tmpdir(), name);
  return b;
}

static int32_t *verdict_ids(size_t *n) {
  char *text;
  size_t len;
  ck_assert_int_eq(util_read_file(tu_src("data/the-verdict.txt"), &text, &len), 0);
  tok_t *t = tok_gpt2_new();
  ck_assert_ptr_nonnull(t);
  int32_t *ids;
  ck_assert_int_eq(tok_encode(t, text, len, 1, &ids, n), 0);
  tok_free(t);
  free(text);
  return ids;
}

static void expect_ids(const int32_t *got, const int32_t *want, size_t n, const char *what) {
  for (size_t i = 0; i < n; i++)
    ck_assert_msg(got[i] == want[i], "%s[%zu]: got %d, want %d", what, i, got[i], want[i]);
}

/* ---- stderr capture (the cache notices) ---- */
static int test_saved_fd = -1;

static void err_begin(void) {
  char path[1024];
  snprintf(path, sizeof path, "%s/.captured", tu_tmpdir());
  fflush(stderr);
  test_saved_fd = dup(2);
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  ck_assert_int_ge(fd, 0);
  dup2(fd, 2);
  close(fd);
}

static char *err_end(void) {
  char path[1024], *s;
  size_t n;
  fflush(stderr);
  dup2(test_saved_fd, 2);
  close(test_saved_fd);
  snprintf(path, sizeof path, "%s/.captured", tu_tmpdir());
  ck_assert_int_eq(util_read_file(path, &s, &n), 0);
  return s;
}

static ino_t test_inode(const char *dir, const char *file) {
  char path[1024];
  struct stat st;
  snprintf(path, sizeof path, "%s/%s", dir, file);
  ck_assert_int_eq(stat(path, &st), 0);
  return st.st_ino;
}

/* ---- windows and batches ---- */

START_TEST(verdict_stride) {
  size_t n;
  int32_t *ids = verdict_ids(&n);
  ck_assert_uint_eq(n, 5145);
  data_loader dl;
  int32_t in[4], tg[4]; // (1, 4)

  ck_assert_int_eq(data_loader_init(&dl, ids, n, 1, 4, 1, 0, 0, 0, "train"), 0);
  ck_assert_uint_eq(dl.n_windows, 5141); /* range(0, 5145 - 4, 1) */
  ck_assert_uint_eq(dl.n_batches, 5141);
  ck_assert_int_eq(data_batch(&dl, 0, 0, in, tg), 1);
  expect_ids(in, (int32_t[]){40, 367, 2885, 1464}, 4, "stride 1 batch 0 inputs");
  expect_ids(tg, (int32_t[]){367, 2885, 1464, 1807}, 4, "stride 1 batch 0 targets");
  ck_assert_int_eq(data_batch(&dl, 0, 1, in, tg), 1);
  expect_ids(in, (int32_t[]){367, 2885, 1464, 1807}, 4, "stride 1 batch 1 inputs");

  ck_assert_int_eq(data_loader_init(&dl, ids, n, 1, 4, 2, 0, 0, 0, "train"), 0);
  ck_assert_uint_eq(dl.n_windows, 2571); /* ceil(5141 / 2) */
  ck_assert_int_eq(data_batch(&dl, 0, 1, in, tg), 1);
  expect_ids(in, (int32_t[]){2885, 1464, 1807, 3619}, 4, "stride 2 batch 1 inputs");
  expect_ids(tg, (int32_t[]){1464, 1807, 3619, 402}, 4, "stride 2 batch 1 targets");

  ck_assert_int_eq(data_loader_init(&dl, ids, n, 1, 4, 4, 0, 0, 0, "train"), 0);
  ck_assert_uint_eq(dl.n_windows, 1286); /* ceil(5141 / 4) */
  ck_assert_int_eq(data_batch(&dl, 0, 1, in, tg), 1);
  expect_ids(in, (int32_t[]){1807, 3619, 402, 271}, 4, "stride 4 batch 1 inputs");
  expect_ids(tg, (int32_t[]){3619, 402, 271, 10899}, 4, "stride 4 batch 1 targets");
  ck_assert_int_eq(data_batch(&dl, 0, 1286, in, tg), -1);
  ck_assert_str_eq(util_errmsg(), "data: batch 1286 out of range (1286 batches)");
  free(ids);
}
END_TEST

START_TEST(verdict_batch8) {
  size_t n;
  int32_t *ids = verdict_ids(&n);
  data_loader dl;
  int32_t in[32], tg[32]; // (8, 4)
  ck_assert_int_eq(data_loader_init(&dl, ids, n, 8, 4, 3, 0, 0, 0, "train"), 0);
  ck_assert_uint_eq(dl.n_windows, 1714); /* ceil(5141 / 3) */
  ck_assert_uint_eq(dl.n_batches, 215);  /* ceil(1714 / 8) */
  ck_assert_int_eq(data_batch(&dl, 0, 0, in, tg), 8);
  static const int32_t want[32] = {40,    367,  2885,  1464, 1464, 1807, 3619, 402, 402,  271,  10899,
                                   2138,  2138, 257,   7026, 15632, 15632, 438, 2016, 257,  257,  922,
                                   5891,  1576, 1576,  438,  568,  340,  340,  373,  645,  1049};
  expect_ids(in, want, 32, "batch 0 inputs");
  for (int r = 0; r < 8; r++) expect_ids(tg + 4 * r, ids + 3 * r + 1, 4, "batch 0 targets");

  /* the last batch holds windows 1712 and 1713, then padding */
  ck_assert_int_eq(data_batch(&dl, 0, 214, in, tg), 2);
  expect_ids(in, (int32_t[]){338, 645, 42393, 803, 803, 674, 1611, 286}, 8, "last inputs");
  expect_ids(tg, (int32_t[]){645, 42393, 803, 674, 674, 1611, 286, 1242}, 8, "last targets");
  for (int i = 8; i < 32; i++) {
    ck_assert_int_eq(in[i], 0);
    ck_assert_int_eq(tg[i], -1);
  }

  ck_assert_int_eq(data_loader_init(&dl, ids, n, 8, 4, 3, 0, 1, 0, "train"), 0);
  ck_assert_uint_eq(dl.n_windows, 1714);
  ck_assert_uint_eq(dl.n_batches, 214); /* floor(1714 / 8) */
  ck_assert_int_eq(data_batch(&dl, 0, 213, in, tg), 8);
  ck_assert_int_eq(data_batch(&dl, 0, 214, in, tg), -1);
  free(ids);
}
END_TEST

/* ids[i] = i, so a row's first input names its window: start / stride. */
static int32_t *iota(size_t n) {
  int32_t *ids = malloc(n * sizeof *ids);
  for (size_t i = 0; i < n; i++) ids[i] = (int32_t)i;
  return ids;
}

/* The window order of one epoch, checked to be a permutation of the first
 * `n_used` windows' worth (every window once when nothing is dropped). */
static void epoch_order(const data_loader *dl, uint64_t epoch, size_t *order) {
  int32_t in[8 * 4], tg[8 * 4]; // (B, T) with B <= 8, T = 4
  size_t k = 0;
  for (size_t b = 0; b < dl->n_batches; b++) {
    int rows = data_batch(dl, epoch, b, in, tg);
    ck_assert_int_eq(rows, b + 1 < dl->n_batches || dl->n_windows % 8 == 0 || dl->drop_last
                               ? 8
                               : (int)(dl->n_windows % 8));
    for (int r = 0; r < rows; r++) {
      ck_assert_int_eq(in[r * 4] % dl->stride, 0);
      for (int t = 0; t < 4; t++) {
        ck_assert_int_eq(in[r * 4 + t], in[r * 4] + t);
        ck_assert_int_eq(tg[r * 4 + t], in[r * 4] + t + 1);
      }
      order[k++] = (size_t)in[r * 4] / (size_t)dl->stride;
    }
  }
}

START_TEST(shuffle) {
  int32_t *ids = iota(1000);
  data_loader dl;
  ck_assert_int_eq(data_loader_init(&dl, ids, 1000, 8, 4, 3, 1, 0, 42, "train"), 0);
  ck_assert_uint_eq(dl.n_windows, 332); /* ceil((1000 - 4) / 3) */
  ck_assert_uint_eq(dl.n_batches, 42);
  size_t a[332], b[332], c[332], d[332];
  epoch_order(&dl, 0, a);
  epoch_order(&dl, 0, b);
  epoch_order(&dl, 1, c);
  int seen[332] = {0}, moved = 0;
  for (int i = 0; i < 332; i++) {
    ck_assert_uint_lt(a[i], 332);
    seen[a[i]]++;
    moved += a[i] != (size_t)i;
  }
  for (int i = 0; i < 332; i++) ck_assert_int_eq(seen[i], 1);
  ck_assert_int_gt(moved, 300);
  ck_assert_mem_eq(a, b, sizeof a);
  ck_assert(memcmp(a, c, sizeof a) != 0);
  memset(seen, 0, sizeof seen);
  for (int i = 0; i < 332; i++) seen[c[i]]++;
  for (int i = 0; i < 332; i++) ck_assert_int_eq(seen[i], 1);

  /* another seed, another order; batches can be taken out of order */
  data_loader d2;
  ck_assert_int_eq(data_loader_init(&d2, ids, 1000, 8, 4, 3, 1, 0, 43, "train"), 0);
  epoch_order(&d2, 0, d);
  ck_assert(memcmp(a, d, sizeof a) != 0);
  int32_t in[32], tg[32]; // (8, 4)
  ck_assert_int_eq(data_batch(&dl, 0, 5, in, tg), 8);
  ck_assert_int_eq(in[0], (int32_t)(3 * a[40]));

  /* drop_last: 41 full batches of distinct windows, 4 windows left out */
  ck_assert_int_eq(data_loader_init(&dl, ids, 1000, 8, 4, 3, 1, 1, 42, "train"), 0);
  ck_assert_uint_eq(dl.n_batches, 41);
  epoch_order(&dl, 0, a);
  memset(seen, 0, sizeof seen);
  for (int i = 0; i < 328; i++) ck_assert_int_eq(seen[a[i]]++, 0);
  free(ids);
}
END_TEST

START_TEST(padding_and_short) {
  int32_t *ids = iota(20);
  data_loader dl;
  int32_t in[12], tg[12]; // (3, 4)
  /* 20 ids, T 4, stride 4: windows at 0, 4, 8, 12 -> batches of 3: 2, the last padded */
  ck_assert_int_eq(data_loader_init(&dl, ids, 20, 3, 4, 4, 0, 0, 7, "val"), 0);
  ck_assert_uint_eq(dl.n_windows, 4);
  ck_assert_uint_eq(dl.n_batches, 2);
  ck_assert_int_eq(data_batch(&dl, 0, 1, in, tg), 1);
  expect_ids(in, (int32_t[]){12, 13, 14, 15, 0, 0, 0, 0, 0, 0, 0, 0}, 12, "padded inputs");
  expect_ids(tg, (int32_t[]){13, 14, 15, 16, -1, -1, -1, -1, -1, -1, -1, -1}, 12, "padded targets");
  ck_assert_int_eq(data_loader_init(&dl, ids, 20, 3, 4, 4, 0, 1, 7, "val"), 0);
  ck_assert_uint_eq(dl.n_batches, 1);

  /* exactly T + 1 ids make one window; T ids make none */
  ck_assert_int_eq(data_loader_init(&dl, ids, 5, 1, 4, 4, 0, 0, 7, "val"), 0);
  ck_assert_uint_eq(dl.n_windows, 1);
  ck_assert_int_eq(data_loader_init(&dl, ids, 4, 1, 4, 1, 0, 0, 7, "val"), -1);
  ck_assert_str_eq(util_errmsg(), "val split has 4 tokens, too few for one window of max_length 4 (needs at least 5)");
  ck_assert_int_eq(data_loader_init(&dl, ids, 20, 5, 4, 4, 0, 1, 7, "train"), -1);
  ck_assert_str_eq(util_errmsg(), "train split has 4 windows, too few for one full batch of 5 with drop_last "
                                  "(lower batch_size or set drop_last = false)");
  ck_assert_int_eq(data_loader_init(&dl, ids, 20, 1, 4, 0, 0, 0, 7, "train"), -1);
  ck_assert_str_eq(util_errmsg(), "train loader: batch_size (1), max_length (4) and stride (0) must be >= 1");
  free(ids);
}
END_TEST

/* ---- data_load ---- */

START_TEST(shakespeare_char) {
  cfg_t c;
  ck_assert_int_eq(cfg_load_file(tu_src("configs/shakespeare-char.lua"), &c), 0);
  data_set ds;
  const char *dir = test_cache("shakespeare");
  ck_assert_msg(data_load(&c, NULL, 0, dir, &ds) == 0, "%s", util_errmsg());
  ck_assert_uint_eq(ds.n_chars, 1115394);
  ck_assert_uint_eq(ds.n_chars_train, 1003854); /* floor(0.9 * 1115394) */
  ck_assert_uint_eq(ds.n_train, 1003854);
  ck_assert_uint_eq(ds.n_val, 111540);
  ck_assert_int_eq(tok_vocab_size(ds.tok), 65);
  ck_assert_int_eq(c.vocab_size, 65);
  ck_assert_uint_eq(strlen(ds.text_hash), 64);
  /* "First Citizen:" in sorted-character ids: ' ' = 1, ':' = 10, 'A'.. = 13.., 'a'.. = 39.. */
  expect_ids(ds.train, (int32_t[]){18, 47, 56, 57, 58, 1, 15, 47, 58, 47, 64, 43, 52, 10}, 14, "train");
  int32_t *train = ds.train, *val = ds.val;
  ds.train = ds.val = NULL;
  ino_t ino = test_inode(dir, "train.tokens");
  data_free(&ds);

  /* the second load reads the cache (the file is not rewritten) */
  err_begin();
  ck_assert_int_eq(data_load(&c, NULL, 0, dir, &ds), 0);
  char *err = err_end();
  ck_assert_str_eq(err, "");
  ck_assert(test_inode(dir, "train.tokens") == ino);
  ck_assert_uint_eq(ds.n_train, 1003854);
  ck_assert_mem_eq(ds.train, train, ds.n_train * sizeof *train);
  ck_assert_mem_eq(ds.val, val, ds.n_val * sizeof *val);

  /* header: magic, uint16 ids, the count; size = header + 2 bytes per id */
  char path[1024], *f;
  size_t len;
  snprintf(path, sizeof path, "%s/train.tokens", dir);
  ck_assert_int_eq(util_read_file(path, &f, &len), 0);
  ck_assert_mem_eq(f, "GPTCTOK", 8);
  ck_assert_int_eq(f[16], 2);
  ck_assert_uint_eq(len, 168 + 2 * 1003854u);
  free(f);
  snprintf(path, sizeof path, "%s/vocab.txt", dir);
  ck_assert(util_file_exists(path));
  free(err);
  free(train);
  free(val);
  data_free(&ds);
}
END_TEST

START_TEST(verdict_gpt2_split) {
  cfg_t c;
  ck_assert_int_eq(cfg_load_file(tu_src("configs/verdict-gpt2-small.lua"), &c), 0);
  data_set ds;
  ck_assert_msg(data_load(&c, NULL, 0, test_cache("verdict"), &ds) == 0, "%s", util_errmsg());
  ck_assert_uint_eq(ds.n_chars, 20479);
  ck_assert_uint_eq(ds.n_chars_train, 18431);
  ck_assert_uint_eq(ds.n_train, 4612);
  ck_assert_uint_eq(ds.n_val, 534);
  expect_ids(ds.train, (int32_t[]){40, 367, 2885, 1464}, 4, "train head");
  expect_ids(ds.train + 4608, (int32_t[]){616, 705, 23873, 25011}, 4, "train tail");
  expect_ids(ds.val, (int32_t[]){518, 6, 14707, 588}, 4, "val head");
  ck_assert_int_eq(c.vocab_size, 50257);
  data_free(&ds);
}
END_TEST

START_TEST(utf8_split) {
  char text[101] = "";
  for (int i = 0; i < 10; i++) strcat(text, "a\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80"); /* a é € 😀 */
  const char *path = tu_write_str("multi.txt", text);
  cfg_t c;
  test_cfg(&c, "char", 0.1);
  data_set ds;
  ck_assert_int_eq(data_load(&c, &path, 1, test_cache("utf8"), &ds), 0);
  ck_assert_uint_eq(ds.n_chars, 40);
  ck_assert_uint_eq(ds.n_chars_train, 36);
  ck_assert_uint_eq(ds.n_train, 36);
  ck_assert_uint_eq(ds.n_val, 4);
  ck_assert_int_eq(c.vocab_size, 4);
  expect_ids(ds.val, (int32_t[]){0, 1, 2, 3}, 4, "val");
  data_free(&ds);
}
END_TEST

static const char *make_docs(void) {
  char dir[1024];
  snprintf(dir, sizeof dir, "%s/docs", tu_tmpdir());
  ck_assert_int_eq(util_mkdir_p(dir), 0);
  ck_assert_int_eq(util_mkdir_p(strcat(dir, "/sub.txt")), 0);
  tu_write_str("docs/b.txt", "Second doc here.");
  tu_write_str("docs/a.txt", "Hello world.");
  tu_write_str("docs/c.txt", "Third one, longer, so that the split falls inside it.");
  tu_write_str("docs/notes.md", "not text");
  tu_write_str("docs/.hidden.txt", "hidden");
  static char out[1024];
  snprintf(out, sizeof out, "%s/docs", tu_tmpdir());
  return out;
}

START_TEST(directory_join) {
  const char *dir = make_docs();
  static const int32_t train[] = {15496, 995, 13, 50256, 12211, 2205, 994, 13, 50256, 22747,
                                  530,   11,  2392, 11,   523,   326,  262, 6626, 8953};
  cfg_t c;
  test_cfg(&c, "gpt2", 0.1);
  data_set ds;
  ck_assert_msg(data_load(&c, &dir, 1, test_cache("dir"), &ds) == 0, "%s", util_errmsg());
  ck_assert_uint_eq(ds.n_chars, 107); /* 12 + 16 + 53 and two 13-character separators */
  ck_assert_uint_eq(ds.n_train, 19);
  expect_ids(ds.train, train, 19, "train");
  ck_assert_uint_eq(ds.n_val, 3);
  expect_ids(ds.val, (int32_t[]){2641, 340, 13}, 3, "val");
  char hash[65];
  memcpy(hash, ds.text_hash, 65);
  data_free(&ds);

  /* the same documents in one file with literal separators: the same ids */
  const char *one = tu_write_str("one.txt", "Hello world.<|endoftext|>Second doc here.<|endoftext|>"
                                            "Third one, longer, so that the split falls inside it.");
  ck_assert_int_eq(data_load(&c, &one, 1, test_cache("one"), &ds), 0);
  ck_assert_str_eq(ds.text_hash, hash);
  ck_assert_uint_eq(ds.n_train, 19);
  expect_ids(ds.train, train, 19, "one-file train");
  data_free(&ds);

  /* several paths are joined in the order given */
  const char *two[] = {tu_write_str("x.txt", "Second doc here."), tu_write_str("y.txt", "Hello world.")};
  ck_assert_int_eq(data_load(&c, two, 2, test_cache("two"), &ds), 0);
  ck_assert_uint_eq(ds.n_chars, 41);
  ck_assert_uint_eq(ds.n_chars_train, 36); /* "Second doc here.<|endoftext|>Hello w" */
  expect_ids(ds.train, (int32_t[]){12211, 2205, 994, 13, 50256, 15496, 266}, 7, "two paths");
  data_free(&ds);

  /* char: documents are joined with nothing */
  test_cfg(&c, "char", 0.1);
  ck_assert_int_eq(data_load(&c, &dir, 1, test_cache("dirchar"), &ds), 0);
  ck_assert_uint_eq(ds.n_chars, 81);
  ck_assert_int_eq(tok_eot(ds.tok), -1);
  data_free(&ds);

  /* word: joined with " <|endoftext|> ", the vocabulary's end-of-text id.
   * Sorted items: , . Hello Second Third doc falls here inside it longer one
   * so split that the world (0..16), then <|endoftext|> 17 and <|unk|> 18;
   * the split cuts "falls" into "fall" and "s" (both unknown). */
  test_cfg(&c, "word", 0.1);
  ck_assert_msg(data_load(&c, &dir, 1, test_cache("dirword"), &ds) == 0, "%s", util_errmsg());
  ck_assert_uint_eq(ds.n_chars, 111);
  ck_assert_int_eq(tok_eot(ds.tok), 17);
  ck_assert_int_eq(c.vocab_size, 19);
  ck_assert_uint_eq(ds.n_train, 19);
  expect_ids(ds.train, (int32_t[]){2, 16, 1, 17, 3, 5, 7, 1, 17, 4, 11, 0, 10, 0, 12, 14, 15, 13, 18}, 19,
             "word train");
  ck_assert_uint_eq(ds.n_val, 4);
  expect_ids(ds.val, (int32_t[]){18, 8, 9, 1}, 4, "word val");
  data_free(&ds);
}
END_TEST

static void expect_load_err(const char *tokenizer, const char *path, const char *want) {
  cfg_t c;
  data_set ds;
  test_cfg(&c, tokenizer, 0.1);
  ck_assert_int_eq(data_load(&c, &path, 1, test_cache("bad"), &ds), -1);
  ck_assert_str_eq(util_errmsg(), want);
  ck_assert_ptr_null(ds.tok);
  ck_assert_ptr_null(ds.train);
}

START_TEST(bad_input) {
  char want[2048], missing[1024];
  snprintf(missing, sizeof missing, "%s/missing.txt", tu_tmpdir());
  snprintf(want, sizeof want, "%s: cannot open: No such file or directory", missing);
  expect_load_err("gpt2", missing, want);

  const char *empty = tu_write("empty.txt", "", 0);
  snprintf(want, sizeof want, "%s: empty text", empty);
  expect_load_err("char", empty, want);

  const char *bad = tu_write("bad.txt", "abc\xff" "def", 7);
  snprintf(want, sizeof want, "%s: invalid UTF-8 at byte offset 3", bad);
  expect_load_err("gpt2", bad, want);
  const char *overlong = tu_write("overlong.txt", "ok \xc0\xaf", 5);
  snprintf(want, sizeof want, "%s: invalid UTF-8 at byte offset 3", overlong);
  expect_load_err("char", overlong, want);

  char dir[1024];
  snprintf(dir, sizeof dir, "%s/nodocs", tu_tmpdir());
  ck_assert_int_eq(util_mkdir_p(dir), 0);
  tu_write_str("nodocs/readme.md", "x");
  snprintf(want, sizeof want, "%s: directory has no *.txt files", dir);
  expect_load_err("gpt2", dir, want);
  tu_write("nodocs/b.txt", "\xe2\x82", 2);
  tu_write_str("nodocs/a.txt", "fine");
  snprintf(want, sizeof want, "%s/b.txt: invalid UTF-8 at byte offset 0", dir);
  expect_load_err("gpt2", dir, want);

  /* a text too short for one window is named by split, count and window */
  const char *tiny = tu_write_str("tiny.txt", "Hello there, world!");
  cfg_t c;
  data_set ds;
  test_cfg(&c, "char", 0.5);
  ck_assert_int_eq(data_load(&c, &tiny, 1, test_cache("tiny"), &ds), 0);
  data_loader dl;
  ck_assert_int_eq(data_loader_init(&dl, ds.train, ds.n_train, 2, 16, 16, 1, 1, 1, "train"), -1);
  ck_assert_str_eq(util_errmsg(), "train split has 9 tokens, too few for one window of max_length 16 "
                                  "(needs at least 17)");
  data_free(&ds);
}
END_TEST

/* ---- the token cache ---- */

static void load_verdict(const char *dir, data_set *ds, char **err) {
  cfg_t c;
  ck_assert_int_eq(cfg_load_file(tu_src("configs/verdict-gpt2-small.lua"), &c), 0);
  err_begin();
  int rc = data_load(&c, NULL, 0, dir, ds);
  *err = err_end();
  ck_assert_msg(rc == 0, "%s", util_errmsg());
}

static void expect_verdict(const data_set *ds) {
  ck_assert_uint_eq(ds->n_train, 4612);
  ck_assert_uint_eq(ds->n_val, 534);
  expect_ids(ds->train, (int32_t[]){40, 367, 2885, 1464}, 4, "train head");
  expect_ids(ds->train + 4608, (int32_t[]){616, 705, 23873, 25011}, 4, "train tail");
  expect_ids(ds->val, (int32_t[]){518, 6, 14707, 588}, 4, "val head");
}

/* Rewrites a cache file with `edit` applied to its bytes. */
static void damage(const char *dir, const char *file, void (*edit)(char *f, size_t *len)) {
  char path[1024], *f;
  size_t len;
  snprintf(path, sizeof path, "%s/%s", dir, file);
  ck_assert_int_eq(util_read_file(path, &f, &len), 0);
  edit(f, &len);
  FILE *o = fopen(path, "wb");
  ck_assert_uint_eq(fwrite(f, 1, len, o), len);
  fclose(o);
  free(f);
}
static void flip_id(char *f, size_t *len) {
  (void)len;
  f[168 + 2 * 100] ^= 0x01;
}
static void truncate_ids(char *f, size_t *len) {
  (void)f;
  *len -= 2;
}
static void truncate_header(char *f, size_t *len) {
  (void)f;
  *len = 100;
}
static void flip_magic(char *f, size_t *len) {
  (void)len;
  f[0] = 'X';
}

START_TEST(cache_corruption) {
  const char *dir = test_cache("corrupt");
  data_set ds;
  char *err, want[2048];
  load_verdict(dir, &ds, &err);
  expect_verdict(&ds);
  data_free(&ds);
  free(err);

  static const struct {
    const char *file;
    void (*edit)(char *, size_t *);
    const char *why;
  } cases[] = {
      {"train.tokens", flip_id, "checksum mismatch"},
      {"val.tokens", truncate_ids, "size does not match its header"},
      {"train.tokens", truncate_header, "shorter than its header"},
      {"val.tokens", flip_magic, "not a token cache file"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    damage(dir, cases[i].file, cases[i].edit);
    load_verdict(dir, &ds, &err);
    snprintf(want, sizeof want, "gptc: token cache %s/%s: %s; rebuilding it\n", dir, cases[i].file, cases[i].why);
    ck_assert_str_eq(err, want);
    expect_verdict(&ds);
    data_free(&ds);
    free(err);
    /* rebuilt: the next load is silent */
    load_verdict(dir, &ds, &err);
    ck_assert_str_eq(err, "");
    expect_verdict(&ds);
    data_free(&ds);
    free(err);
  }
}
END_TEST

START_TEST(cache_invalidation) {
  const char *dir = test_cache("inval");
  const char *path = tu_write_str("story.txt", "abcabcabcabcabcabcabcabcabcabc"); /* 30 chars */
  cfg_t c;
  data_set ds;
  test_cfg(&c, "char", 0.1);
  ck_assert_int_eq(data_load(&c, &path, 1, dir, &ds), 0);
  ck_assert_uint_eq(ds.n_train, 27);
  expect_ids(ds.train, (int32_t[]){0, 1, 2, 0}, 4, "first text");
  data_free(&ds);
  ino_t train_ino = test_inode(dir, "train.tokens"), vocab_ino = test_inode(dir, "vocab.txt");

  /* unchanged: reused */
  ck_assert_int_eq(data_load(&c, &path, 1, dir, &ds), 0);
  data_free(&ds);
  ck_assert(test_inode(dir, "train.tokens") == train_ino);
  ck_assert(test_inode(dir, "vocab.txt") == vocab_ino);

  /* same length and vocabulary, other text: rebuilt silently */
  path = tu_write_str("story.txt", "cbacbacbacbacbacbacbacbacbacba");
  err_begin();
  ck_assert_int_eq(data_load(&c, &path, 1, dir, &ds), 0);
  char *err = err_end();
  ck_assert_str_eq(err, "");
  free(err);
  expect_ids(ds.train, (int32_t[]){2, 1, 0, 2}, 4, "second text");
  data_free(&ds);
  ck_assert(test_inode(dir, "train.tokens") != train_ino);
  ck_assert(test_inode(dir, "vocab.txt") == vocab_ino);
  train_ino = test_inode(dir, "train.tokens");

  /* another split of the same text: rebuilt */
  test_cfg(&c, "char", 0.5);
  ck_assert_int_eq(data_load(&c, &path, 1, dir, &ds), 0);
  ck_assert_uint_eq(ds.n_train, 15);
  ck_assert_uint_eq(ds.n_val, 15);
  data_free(&ds);
  ck_assert(test_inode(dir, "train.tokens") != train_ino);

  /* a new character changes the vocabulary and its blob */
  path = tu_write_str("story.txt", "cbacbacbacbacbacbacbacbacbacbd");
  ck_assert_int_eq(data_load(&c, &path, 1, dir, &ds), 0);
  ck_assert_int_eq(c.vocab_size, 4);
  expect_ids(ds.val + 11, (int32_t[]){0, 2, 1, 3}, 4, "new vocabulary");
  data_free(&ds);
  ck_assert(test_inode(dir, "vocab.txt") != vocab_ino);
}
END_TEST

/* ---- gptc data ---- */

/* `gptc data` on a "random" config shows what training draws: the starts
 * range, no epochs, and micro-batch 0 exactly as data_random_batch gives it
 * (it showed the windows loader's batch, which training never uses). */
START_TEST(cli_random_sampling) {
  tu_run_result r;
  setenv("GPTC_CACHE", test_cache("cli_random"), 1);
  ck_assert_int_eq(tu_run(&r, NULL, "data --config '%s' --set train.sampling=random --ids 16",
                          tu_src("configs/tiny-test.lua")), 0);
  static const char *lines[] = {
      "train         18431        18431        18415            -\n", /* starts 0 .. 18431 - 16 - 1 */
      "train  random  batch_size 2, max_length 16, window starts uniform over 0..18414 each micro-batch (seed 123)\n",
      "first training batch (micro-batch 0): inputs and targets (2, 16)\n",
  };
  for (size_t i = 0; i < sizeof lines / sizeof *lines; i++)
    ck_assert_msg(strstr(r.out, lines[i]) != NULL, "output lacks '%s':\n%s", lines[i], r.out);
  /* the printed rows are training's micro-batch 0 */
  cfg_t c;
  ck_assert_int_eq(cfg_load_file(tu_src("configs/tiny-test.lua"), &c), 0);
  data_set ds;
  ck_assert_msg(data_load(&c, NULL, 0, test_cache("cli_random_ref"), &ds) == 0, "%s", util_errmsg());
  data_loader dl;
  ck_assert_int_eq(data_loader_init(&dl, ds.train, ds.n_train, 2, 16, 16, 1, 1, c.train.seed, "train"), 0);
  int32_t in[32], tg[32];
  data_random_batch(&dl, 0, in, tg, NULL);
  char want[512];
  size_t o = (size_t)snprintf(want, sizeof want, "inputs:\n");
  for (int b = 0; b < 2; b++) {
    o += (size_t)snprintf(want + o, sizeof want - o, "  [");
    for (int t = 0; t < 16; t++) o += (size_t)snprintf(want + o, sizeof want - o, "%s%2d", t ? " " : "", in[b * 16 + t]);
    o += (size_t)snprintf(want + o, sizeof want - o, "]\n");
  }
  ck_assert_msg(strstr(r.out, want) != NULL, "want\n%s\nin\n%s", want, r.out);
  data_free(&ds);
  tu_run_free(&r);
}
END_TEST

START_TEST(cli) {
  tu_run_result r;
  setenv("GPTC_CACHE", test_cache("cli"), 1);
  ck_assert_int_eq(tu_run(&r, NULL, "data --config '%s'", tu_src("configs/tiny-test.lua")), 0);
  ck_assert_str_eq(r.err, "");
  static const char *lines[] = {
      "tokenizer    char\n",
      "chars        20479\n",
      "tokens       20479\n",
      "vocab size   62\n",
      "split         chars       tokens      windows      batches\n",
      "train         18431        18431         1151          575\n", /* drop_last */
      "val            2048         2048          127           64\n", /* padded */
      "train  loader  batch_size 2, max_length 16, stride 16, shuffled (seed 123), drop_last\n",
      "val    eval    batch_size 2, max_length 16, eval_steps 2: 4 windows spread over the split (seed 123), all 127 "
      "at the end\n",
      "first training batch (epoch 0, batch 0): inputs and targets (2, 16)\n",
  };
  for (size_t i = 0; i < sizeof lines / sizeof *lines; i++)
    ck_assert_msg(strstr(r.out, lines[i]) != NULL, "output lacks '%s':\n%s", lines[i], r.out);
  tu_run_free(&r);

  /* the seeds' printout: batch 8, max_length 4, stride 4, in order */
  ck_assert_int_eq(tu_run(&r, NULL, "data --config '%s' --batch-size 8 --max-length 4 --stride 4 --no-shuffle",
                          tu_src("configs/verdict-gpt2-small.lua")),
                   0);
  ck_assert_msg(strstr(r.out, "inputs:\n"
                              "  [   40   367  2885  1464]\n"
                              "  [ 1807  3619   402   271]\n"
                              "  [10899  2138   257  7026]\n"
                              "  [15632   438  2016   257]\n"
                              "  [  922  5891  1576   438]\n"
                              "  [  568   340   373   645]\n"
                              "  [ 1049  5975   284   502]\n"
                              "  [  284  3285   326    11]\n"
                              "targets:\n"
                              "  [  367  2885  1464  1807]\n") != NULL,
                "%s", r.out);
  tu_run_free(&r);

  /* --text replaces the config's data; --ids shortens the rows */
  const char *dir = make_docs();
  ck_assert_int_eq(tu_run(&r, NULL,
                          "data --config '%s' --text '%s' --batch-size 1 --max-length 2 --stride 2 --ids 1 "
                          "--no-shuffle",
                          tu_src("configs/verdict-gpt2-small.lua"), dir),
                   0);
  ck_assert_msg(strstr(r.out, "chars        107\n") && strstr(r.out, "  [15496 ... +1 more]\n"), "%s", r.out);
  tu_run_free(&r);

  ck_assert_int_eq(tu_run(&r, NULL, "data --help"), 0);
  for (const char *o = "--config\0--text\0--batch-size\0--max-length\0--stride\0--no-shuffle\0--ids\0"; *o;
       o += strlen(o) + 1)
    ck_assert_msg(strstr(r.out, o) != NULL, "help lacks %s", o);
  tu_run_free(&r);

  ck_assert_int_eq(tu_run(&r, NULL, "data --bogus"), 2);
  ck_assert_str_eq(r.err, "gptc data: unknown option '--bogus' (see 'gptc data --help')\n");
  tu_run_free(&r);
  ck_assert_int_eq(tu_run(&r, NULL, "data"), 2);
  ck_assert_str_eq(r.err, "gptc data: option '--config FILE' is required (see 'gptc data --help')\n");
  tu_run_free(&r);
  ck_assert_int_eq(tu_run(&r, NULL, "data --config '%s' --max-length 17", tu_src("configs/tiny-test.lua")), 2);
  ck_assert_str_eq(r.err, "gptc data: option '--max-length' must be an integer in [1, 16] (got '17') "
                          "(see 'gptc data --help')\n");
  tu_run_free(&r);

  char missing[1024], want[2048];
  snprintf(missing, sizeof missing, "%s/missing.txt", tu_tmpdir());
  ck_assert_int_eq(tu_run(&r, NULL, "data --config '%s' --text '%s'", tu_src("configs/tiny-test.lua"), missing), 1);
  snprintf(want, sizeof want, "gptc: %s: cannot open: No such file or directory\n", missing);
  ck_assert_str_eq(r.err, want);
  tu_run_free(&r);
  ck_assert_int_eq(tu_run(&r, NULL, "data --config /nonexistent/cfg.lua"), 1);
  ck_assert_str_eq(r.err, "gptc: config /nonexistent/cfg.lua: cannot open: No such file or directory\n");
  tu_run_free(&r);
  const char *tiny = tu_write_str("short.txt", "Too short.");
  ck_assert_int_eq(tu_run(&r, NULL, "data --config '%s' --text '%s'", tu_src("configs/tiny-test.lua"), tiny), 1);
  ck_assert_str_eq(r.err, "gptc: train split has 9 tokens, too few for one window of max_length 16 "
                          "(needs at least 17)\n");
  tu_run_free(&r);
}
END_TEST

int main(void) {
  Suite *s = suite_create("data");
  TCase *tc = tcase_create("data");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, verdict_stride);
  tcase_add_test(tc, verdict_batch8);
  tcase_add_test(tc, shuffle);
  tcase_add_test(tc, padding_and_short);
  tcase_add_test(tc, shakespeare_char);
  tcase_add_test(tc, verdict_gpt2_split);
  tcase_add_test(tc, utf8_split);
  tcase_add_test(tc, directory_join);
  tcase_add_test(tc, bad_input);
  tcase_add_test(tc, cache_corruption);
  tcase_add_test(tc, cache_invalidation);
  tcase_add_test(tc, cli);
  tcase_add_test(tc, cli_random_sampling);
  suite_add_tcase(s, tc);
  return tu_main(s);
}
