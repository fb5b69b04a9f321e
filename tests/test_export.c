/* gptc export: the executables give gptc sample's text and logits, run with
 * nothing else installed, and bad input fails cleanly with no file left. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ckpt.h"
#include "gen.h"
#include "testutil.h"
#include "tok.h"
#include "train.h"
#include "util.h"

/* Set once by the fixture (in the parent, before the forked tests). */
static char dir[1024], char_ckpt[1200], char_copy[1300], gpt2_ckpt[1200], char_exe[1200], gpt2_exe[1200];

/* ---- helpers ------------------------------------------------------------------ */


static char *sha256_file(const char *path) {
  char *data;
  size_t n;
  ck_assert_msg(util_read_file(path, &data, &n) == 0, "%s", util_errmsg());
  static char hex[65];
  util_sha256_hex(data, n, hex);
  free(data);
  return hex;
}

static void copy_file(const char *from, const char *to, size_t max) {
  char *data;
  size_t n;
  ck_assert_msg(util_read_file(from, &data, &n) == 0, "%s", util_errmsg());
  FILE *f = fopen(to, "wb");
  ck_assert_ptr_nonnull(f);
  ck_assert_uint_eq(fwrite(data, 1, n < max ? n : max, f), n < max ? n : max);
  fclose(f);
  free(data);
}

/* ---- fixture: two tiny trained models and their executables -------------------- */

static void export_setup(void) {
  snprintf(dir, sizeof dir, "%s", tu_tmpdir());
  tu_run_result r;
  int code = tu_run(&r, NULL, "train --config '%s' --steps 20 --quiet --out '%s/char'",
                    tu_src("configs/tiny-test.lua"), dir);
  ck_assert_msg(code == 0, "train char: %s", r.err);
  tu_run_free(&r);
  char src[2048];
  snprintf(src, sizeof src,
           "return { name = 'tiny-gpt2', tokenizer = 'gpt2', data = '%s', emb_dim = 16, n_heads = 2,\n"
           "  n_layers = 2, context_length = 16, drop_rate = 0.0, qkv_bias = true, tie_embeddings = false,\n"
           "  train = { batch_size = 2, max_length = 16, stride = 16, lr = 3e-3, steps = 3, eval_interval = 3,\n"
           "            eval_steps = 1 } }\n",
           tu_src("data/the-verdict.txt"));
  const char *gcfg = tu_write_str("tiny-gpt2.lua", src);
  code = tu_run(&r, NULL, "train --config '%s' --quiet --out '%s/gpt2'", gcfg, dir);
  ck_assert_msg(code == 0, "train gpt2: %s", r.err);
  tu_run_free(&r);
  snprintf(char_ckpt, sizeof char_ckpt, "%s/char/last.safetensors", dir);
  snprintf(gpt2_ckpt, sizeof gpt2_ckpt, "%s/gpt2/last.safetensors", dir);

  /* the char model is exported from a copy that the standalone test deletes */
  char copy_dir[1200];
  snprintf(copy_dir, sizeof copy_dir, "%s/copy", dir);
  ck_assert_int_eq(util_mkdir_p(copy_dir), 0);
  snprintf(char_copy, sizeof char_copy, "%s/char.safetensors", copy_dir);
  copy_file(char_ckpt, char_copy, (size_t)-1);
  snprintf(char_exe, sizeof char_exe, "%s/char-model", dir);
  snprintf(gpt2_exe, sizeof gpt2_exe, "%s/gpt2-model", dir);
  code = tu_run(&r, NULL, "export --target native --ckpt '%s' -o '%s'", char_copy, char_exe);
  ck_assert_msg(code == 0 && r.out_len == 0 && r.err_len == 0, "export char (%d): %s", code, r.err);
  tu_run_free(&r);
  code = tu_run(&r, NULL, "export --target native --ckpt '%s' --out '%s'", gpt2_ckpt, gpt2_exe);
  ck_assert_msg(code == 0, "export gpt2: %s", r.err);
  tu_run_free(&r);
}

/* ---- --info and --help --------------------------------------------------------- */

/* The parameter count without alignment padding, and the vocabulary size. */
static size_t real_params(const char *ckpt, int *V) {
  ckpt_meta meta;
  cfg_t cfg;
  ck_assert_int_eq(ckpt_load_meta(ckpt, &meta), 0);
  ck_assert_int_eq(cfg_load_string(meta.config_src, "ckpt", &cfg), 0);
  gptc_tensor *ts;
  int n;
  size_t np, sum = 0;
  ck_assert_int_eq(gen_tensors(&cfg, &ts, &n, &np), 0);
  for (int i = 0; i < n; i++) sum += ts[i].numel;
  gen_tensors_free(ts, n);
  *V = cfg.vocab_size;
  ckpt_meta_free(&meta);
  return sum;
}

static void check_info(const char *exe, const char *ckpt, const char *name, const char *tok, int step) {
  tu_run_result r;
  ck_assert_int_eq(tu_sh(&r, NULL, "'%s' --info", exe), 0);
  char want[256];
  const char *lines[7];
  char l0[128], l1[128], l2[128], l3[128], l4[128], l5[128];
  snprintf(l0, sizeof l0, "model: %s\n", name);
  int V;
  snprintf(l1, sizeof l1, "parameters: %zu\n", real_params(ckpt, &V));
  snprintf(l2, sizeof l2, "tokenizer: %s\n", tok);
  snprintf(l3, sizeof l3, "vocab_size: %d\n", V);
  snprintf(l4, sizeof l4, "step: %d\n", step);
  snprintf(l5, sizeof l5, "checkpoint_sha256: %s\n", sha256_file(ckpt));
  lines[0] = l0, lines[1] = l1, lines[2] = l2, lines[3] = l3, lines[4] = l4, lines[5] = l5;
  snprintf(want, sizeof want, "  name = \"%s\",\n", name);
  lines[6] = want;
  for (int i = 0; i < 7; i++) ck_assert_msg(strstr(r.out, lines[i]), "--info lacks '%s':\n%s", lines[i], r.out);
  ck_assert_str_eq(r.err, "");
  tu_run_free(&r);
}

START_TEST(info_fields) {
  check_info(char_exe, char_ckpt, "tiny-test", "char", 20);
  check_info(gpt2_exe, gpt2_ckpt, "tiny-gpt2", "gpt2", 3);
}
END_TEST

START_TEST(help_and_usage_errors) {
  tu_run_result r;
  ck_assert_int_eq(tu_sh(&r, NULL, "'%s' --help", char_exe), 0);
  ck_assert_msg(strstr(r.out, "usage: char-model [options] [PROMPT]"), "%s", r.out);
  const char *opts[] = {"--tokens N", "--temperature T", "--top-k K", "--seed S", "--threads N", "--info"};
  for (int i = 0; i < 6; i++) ck_assert_msg(strstr(r.out, opts[i]), "help lacks %s", opts[i]);
  tu_run_free(&r);
  ck_assert_int_eq(tu_sh(&r, NULL, "'%s' --bogus", char_exe), 2);
  ck_assert_msg(strstr(r.err, "char-model: unknown option '--bogus'"), "%s", r.err);
  tu_run_free(&r);
  ck_assert_int_eq(tu_sh(&r, NULL, "'%s' --temp 0.5 x", char_exe), 2);
  ck_assert_msg(strstr(r.err, "char-model: unknown option '--temp' (did you mean '--temperature'?)"), "%s", r.err);
  tu_run_free(&r);
  ck_assert_int_eq(tu_sh(&r, NULL, "'%s' --temperature -1 x", char_exe), 2);
  ck_assert_msg(strstr(r.err, "--temperature"), "%s", r.err);
  tu_run_free(&r);
  /* a character the vocabulary lacks: one-line runtime error, exit 1 */
  ck_assert_int_eq(tu_sh(&r, NULL, "'%s' 'zebra \xe2\x98\x83'", char_exe), 1);
  ck_assert_msg(!strncmp(r.err, "char-model: ", 12) && strchr(r.err, '\n') == r.err + r.err_len - 1, "%s", r.err);
  tu_run_free(&r);
}
END_TEST

/* ---- same text as gptc sample ----------------------------------------------------- */

typedef struct {
  const char *prompt; /* NULL: none (the start token) */
  const char *opts;
} text_case;

static void check_same_text(const char *exe, const char *ckpt, const text_case *cases, int n) {
  for (int i = 0; i < n; i++) {
    tu_run_result a, b;
    char pa[600] = "", pb[600] = "";
    if (cases[i].prompt) {
      snprintf(pa, sizeof pa, "--prompt '%s'", cases[i].prompt);
      snprintf(pb, sizeof pb, "'%s'", cases[i].prompt);
    }
    ck_assert_msg(tu_run(&a, NULL, "sample --ckpt '%s' %s %s", ckpt, pa, cases[i].opts) == 0, "%s", a.err);
    ck_assert_msg(tu_sh(&b, NULL, "'%s' %s %s", exe, pb, cases[i].opts) == 0, "%s", b.err);
    ck_assert_msg(a.out_len > 1, "case %d: no text", i);
    ck_assert_msg(a.out_len == b.out_len && !memcmp(a.out, b.out, a.out_len),
                  "case %d (%s %s): gptc sample gave\n%s\nthe executable gave\n%s", i,
                  cases[i].prompt ? cases[i].prompt : "(none)", cases[i].opts, a.out, b.out);
    ck_assert_str_eq(b.err, "");
    tu_run_free(&a);
    tu_run_free(&b);
  }
}

START_TEST(same_text_char) {
  static const text_case cases[] = {
      {"The ", "--tokens 12 --seed 1"},                                 /* defaults: T 0.8, top-k 200 */
      {"The ", "--tokens 12 --seed 7 --temperature 1.3 --top-k 0"},    /* all tokens */
      {"I had", "--tokens 12 --seed 3 --temperature 0"},                /* greedy */
      {"a", "--tokens 100 --seed 42 --temperature 0.9 --top-k 5"},     /* rebuilds the cache 12 times */
      {NULL, "--tokens 40 --seed 11"},                                  /* start token, not echoed */
      {"It was the only one of his pictures, I think, ", "--tokens 20 --seed 5"}, /* prompt > context */
      {"x", "--tokens 1 --seed 9 --threads 1"},
  };
  check_same_text(char_exe, char_ckpt, cases, (int)(sizeof cases / sizeof cases[0]));
}
END_TEST

START_TEST(same_text_gpt2) {
  static const text_case cases[] = {
      {"I HAD always thought", "--tokens 10 --seed 1"},
      {"H\xc3\xa9llo w\xc3\xb6rld \xe2\x98\x83 \xe2\x80\x94 caf\xc3\xa9", "--tokens 40 --seed 2 --top-k 50"}, /* UTF-8, rebuilds */
      {"Jack Gisburn", "--tokens 30 --seed 3 --temperature 0"},
      {"<|endoftext|>The", "--tokens 20 --seed 4 --temperature 1.5 --top-k 0"},
      {NULL, "--tokens 20 --seed 5"},
  };
  check_same_text(gpt2_exe, gpt2_ckpt, cases, (int)(sizeof cases / sizeof cases[0]));
}
END_TEST

START_TEST(prompt_from_stdin) {
  tu_run_result a, b;
  ck_assert_int_eq(tu_sh(&a, NULL, "'%s' 'I had' --seed 8 --tokens 30", gpt2_exe), 0);
  ck_assert_int_eq(tu_sh(&b, "I had", "'%s' --seed 8 --tokens 30", gpt2_exe), 0);
  ck_assert_str_eq(a.out, b.out);
  ck_assert_int_eq(strncmp(a.out, "I had", 5), 0);
  tu_run_free(&a);
  tu_run_free(&b);
}
END_TEST

/* ---- logits against gptc's own compiled model ---------------------------------------- */

static double logits_diff(const char *exe, const char *ckpt, const char *prompt, size_t *n_tokens) {
  char path[1200];
  snprintf(path, sizeof path, "%s/logits.%d", dir, (int)getpid());
  tu_run_result r;
  ck_assert_msg(tu_sh(&r, NULL, "'%s' --dump-logits '%s' '%s'", exe, path, prompt) == 0, "%s", r.err);
  tu_run_free(&r);
  char *data;
  size_t len;
  ck_assert_int_eq(util_read_file(path, &data, &len), 0);
  train_loaded l;
  ck_assert_msg(train_load_ckpt(ckpt, &l) == 0, "%s", util_errmsg());
  const gptc_model *m = l.mod.model;
  int32_t *ids;
  size_t n;
  ck_assert_int_eq(tok_encode(l.tok, prompt, strlen(prompt), 1, &ids, &n), 0);
  ck_assert_uint_eq(len, n * (size_t)m->vocab_size * sizeof(float));
  float *kv = calloc(m->n_kv, sizeof(float)), *scratch = calloc(m->n_infer_scratch + 1, sizeof(float));
  float *logits = calloc((size_t)m->vocab_size, sizeof(float));
  const float *got = (const float *)(const void *)data;
  double worst = 0;
  for (size_t i = 0; i < n; i++) {
    m->infer(l.params, kv, scratch, ids[i], (int)i, logits);
    for (int v = 0; v < m->vocab_size; v++) {
      float g = got[i * (size_t)m->vocab_size + (size_t)v];
      ck_assert_msg(isfinite(logits[v]) && isfinite(g), "token %zu: logit %d is %g vs %g", i, v, logits[v], g);
      double d = fabs((double)logits[v] - g);
      if (d > worst) worst = d;
    }
  }
  free(kv);
  free(scratch);
  free(logits);
  free(ids);
  free(data);
  train_loaded_free(&l);
  *n_tokens = n;
  return worst;
}

START_TEST(logits_match) {
  size_t n;
  double d = logits_diff(char_exe, char_ckpt, "I had always th", &n);
  ck_assert_uint_eq(n, 15);
  ck_assert_msg(d <= 1e-5, "char model: max |logit difference| %g", d);
  d = logits_diff(gpt2_exe, gpt2_ckpt, "I HAD always thought Jack Gisburn rather a cheap genius", &n);
  ck_assert_uint_ge(n, 8);
  ck_assert_msg(d <= 1e-5, "gpt2 model: max |logit difference| %g", d);
}
END_TEST

/* ---- self-contained ------------------------------------------------------------- */

START_TEST(standalone) {
  tu_run_result a, b;
  /* no pcre2, lua or gptc library: only libc, libm and the OpenMP runtime */
  const char *exes[] = {char_exe, gpt2_exe};
  for (int i = 0; i < 2; i++) {
    ck_assert_int_eq(tu_sh(&a, NULL, "ldd '%s'", exes[i]), 0);
    ck_assert_msg(!strstr(a.out, "pcre") && !strstr(a.out, "lua") && !strstr(a.out, "gptc") &&
                      !strstr(a.out, "not found") && strstr(a.out, "libc.so"),
                  "%s", a.out);
    tu_run_free(&a);
    /* the weights start on a page boundary (mapped straight from the file) */
    ck_assert_int_eq(tu_sh(&a, NULL, "nm '%s' | grep ' export_weights$'", exes[i]), 0);
    ck_assert_msg(strtoull(a.out, NULL, 16) % 4096 == 0, "%s", a.out);
    tu_run_free(&a);
  }
  /* the checkpoint it came from deleted, empty environment, another cwd */
  ck_assert_int_eq(tu_run(&a, NULL, "sample --ckpt '%s' --prompt 'The ' --tokens 40 --seed 21", char_ckpt), 0);
  ck_assert_int_eq(unlink(char_copy), 0);
  ck_assert_int_eq(tu_sh(&b, NULL, "cd / && env -i '%s' 'The ' --tokens 40 --seed 21", char_exe), 0);
  ck_assert_str_eq(a.out, b.out);
  tu_run_free(&a);
  tu_run_free(&b);
  ck_assert_int_eq(tu_run(&a, NULL, "sample --ckpt '%s' --prompt 'I had' --tokens 20 --seed 22", gpt2_ckpt), 0);
  ck_assert_int_eq(tu_sh(&b, NULL, "cd / && env -i '%s' 'I had' --tokens 20 --seed 22", gpt2_exe), 0);
  ck_assert_str_eq(a.out, b.out);
  tu_run_free(&a);
  tu_run_free(&b);
}
END_TEST

/* ---- bad input ---------------------------------------------------------------------- */

/* `prefix` (environment or a shell wrapper) + gptc export: exit 1, one
 * "gptc: " line containing `want`, no `out`, no temp directory left. */
static void expect_fail(const char *prefix, const char *ckpt, const char *out, const char *want) {
  tu_run_result r;
  int code = tu_sh(&r, NULL, "%s '%s' export --ckpt '%s' -o '%s'", prefix, GPTC_EXE, ckpt, out);
  ck_assert_msg(code == 1, "exit %d for %s: %s", code, out, r.err);
  ck_assert_msg(!strncmp(r.err, "gptc: ", 6) && strchr(r.err, '\n') == r.err + r.err_len - 1,
                "not one 'gptc: ' line: %s", r.err);
  ck_assert_msg(strstr(r.err, want), "message lacks '%s': %s", want, r.err);
  tu_run_free(&r);
  struct stat st;
  ck_assert_msg(stat(out, &st) != 0 || S_ISDIR(st.st_mode), "%s was written", out);
  char bad[1100];
  snprintf(bad, sizeof bad, "%s/bad", dir);
  ck_assert_int_eq(tu_sh(&r, NULL, "ls -A '%s' | grep -c gptc-export", bad), 1); /* no match */
  tu_run_free(&r);
}

START_TEST(bad_input) {
  char bad[1100], out[1200], p[1200], q[1200];
  snprintf(bad, sizeof bad, "%s/bad", dir);
  ck_assert_int_eq(util_mkdir_p(bad), 0);
  snprintf(out, sizeof out, "%s/model", bad);

  snprintf(p, sizeof p, "%s/none.safetensors", bad);
  expect_fail("", p, out, "none.safetensors");
  snprintf(p, sizeof p, "%s/corrupt.safetensors", bad);
  copy_file(tu_src("configs/tiny-test.lua"), p, (size_t)-1);
  expect_fail("", p, out, "corrupt.safetensors");
  snprintf(p, sizeof p, "%s/truncated.safetensors", bad);
  struct stat st;
  ck_assert_int_eq(stat(char_ckpt, &st), 0);
  copy_file(char_ckpt, p, (size_t)st.st_size - 100);
  expect_fail("", p, out, "truncated.safetensors");

  /* a shape the generator's rules reject (emb_dim not divisible by n_heads) */
  ckpt_meta meta;
  ck_assert_int_eq(ckpt_load_meta(char_ckpt, &meta), 0);
  cfg_t cfg;
  ck_assert_int_eq(cfg_load_string(meta.config_src, "ckpt", &cfg), 0);
  gptc_tensor *ts;
  int nt;
  size_t np;
  ck_assert_int_eq(gen_tensors(&cfg, &ts, &nt, &np), 0);
  float *zeros = calloc(np, sizeof(float));
  char *bad_src = util_strdup(meta.config_src);
  char *c = strstr(bad_src, "n_heads = 2");
  ck_assert_ptr_nonnull(c);
  c[10] = '3';
  free(meta.config_src);
  meta.config_src = bad_src;
  snprintf(p, sizeof p, "%s/heads.safetensors", bad);
  ck_assert_int_eq(ckpt_save(p, ts, nt, np, zeros, NULL, NULL, &meta), 0);
  expect_fail("", p, out, "divisible by n_heads");
  free(zeros);
  gen_tensors_free(ts, nt);
  ckpt_meta_free(&meta);

  /* unwritable outputs */
  snprintf(q, sizeof q, "%s/nodir/model", bad);
  expect_fail("", char_ckpt, q, "nodir");
  snprintf(p, sizeof p, "%s/afile", bad);
  copy_file(tu_src("configs/tiny-test.lua"), p, (size_t)-1);
  snprintf(q, sizeof q, "%s/afile/model", bad);
  expect_fail("", char_ckpt, q, "afile");
  expect_fail("", char_ckpt, bad, "is a directory");

  /* no compiler; an existing output stays as it was */
  FILE *f = fopen(out, "wb");
  fputs("old", f);
  fclose(f);
  tu_run_result r;
  ck_assert_int_eq(tu_sh(&r, NULL, "CC=/nonexistent/cc '%s' export --ckpt '%s' -o '%s'", GPTC_EXE, char_ckpt, out), 1);
  ck_assert_msg(strstr(r.err, "gptc: C compiler '/nonexistent/cc' does not run"), "%s", r.err);
  tu_run_free(&r);
  char *old;
  size_t n;
  ck_assert_int_eq(util_read_file(out, &old, &n), 0);
  ck_assert_str_eq(old, "old");
  free(old);
  unlink(out);

  /* a full disk: writes past 256 KiB fail (EFBIG, as ENOSPC would) */
  expect_fail("trap '' XFSZ; ulimit -f 512;", gpt2_ckpt, out,
              "model: cannot write weights.bin in the build directory: File too large");

  /* usage */
  ck_assert_int_eq(tu_run(&r, NULL, "export -o '%s'", out), 2);
  ck_assert_msg(strstr(r.err, "--ckpt"), "%s", r.err);
  tu_run_free(&r);
}
END_TEST

int main(void) {
  Suite *s = suite_create("export");
  TCase *tc = tcase_create("export");
  tcase_set_timeout(tc, 600);
  tcase_add_unchecked_fixture(tc, export_setup, NULL);
  tcase_add_test(tc, info_fields);
  tcase_add_test(tc, help_and_usage_errors);
  tcase_add_test(tc, same_text_char);
  tcase_add_test(tc, same_text_gpt2);
  tcase_add_test(tc, prompt_from_stdin);
  tcase_add_test(tc, logits_match);
  tcase_add_test(tc, bad_input);
  tcase_add_test(tc, standalone);
  suite_add_tcase(s, tc);
  return tu_main(s);
}
