/* Config loading: the sandbox, every validation rule, defaults, round trip. */
#include <stdlib.h>
#include <string.h>

#include "cfg.h"
#include "testutil.h"
#include "util.h"

static const char *BASE =
    "return { name = 't', tokenizer = 'gpt2', emb_dim = 64, n_heads = 4, n_layers = 2,"
    " context_length = 32, train = { batch_size = 2 } %s }";

/* Loads BASE with `extra` spliced in (a leading comma or top-level override). */
static int load_with(const char *src, cfg_t *c) { return cfg_load_string(src, "x.lua", c); }

static void expect_err(const char *src, const char *needle) {
  cfg_t c;
  ck_assert_int_eq(load_with(src, &c), -1);
  ck_assert_msg(strstr(util_errmsg(), needle) != NULL, "message '%s' lacks '%s'", util_errmsg(), needle);
}

START_TEST(defaults) {
  cfg_t c;
  char src[1024];
  snprintf(src, sizeof src, BASE, "");
  ck_assert_int_eq(load_with(src, &c), 0);
  ck_assert_str_eq(c.name, "t");
  ck_assert_int_eq(c.vocab_size, 50257);
  ck_assert_int_eq(c.train.max_length, 32); /* = context_length */
  ck_assert_int_eq(c.train.stride, 32);     /* = max_length */
  ck_assert_double_eq_tol(c.train.val_ratio, 0.1, 1e-12);
  ck_assert_double_eq_tol(c.train.min_lr, c.train.lr / 10, 1e-15);
  ck_assert_int_eq(c.tie_embeddings, 1);
  ck_assert_int_eq(c.qkv_bias, 0);
  ck_assert_double_eq_tol(c.drop_rate, 0.1, 1e-12);
}
END_TEST

START_TEST(rules) {
  expect_err("return { tokenizer = 'gpt2', emb_dim = 64, n_heads = 4, n_layers = 2, context_length = 32 }",
             "field 'name' is required");
  expect_err("return { name='t', emb_dim = 66, n_heads = 4, n_layers = 2, context_length = 32 }",
             "field 'emb_dim' must be divisible by n_heads (4) (got 66)");
  expect_err("return { name='t', emb_dim = -64, n_heads = 4, n_layers = 2, context_length = 32 }",
             "field 'emb_dim' must be a positive integer (got -64)");
  expect_err("return { name='t', emb_dim = 64.5, n_heads = 4, n_layers = 2, context_length = 32 }",
             "field 'emb_dim' must be a positive integer");
  expect_err("return { name='t', emb_dim = 64, n_heads = 4, n_layers = 0, context_length = 32 }",
             "field 'n_layers' must be a positive integer (got 0)");
  expect_err("return { name='t', emb_dim = 64, n_heads = 4, n_layers = 2, context_length = 32,"
             " train = { max_length = 64 } }",
             "field 'train.max_length' must be <= context_length (32) (got 64)");
  expect_err("return { name='t', emb_dim = 64, n_heads = 4, n_layers = 2, context_length = 32,"
             " train = { stride = 0 } }",
             "field 'train.stride' must be a positive integer (got 0)");
  expect_err("return { name='t', emb_dim = 64, n_heads = 4, n_layers = 2, context_length = 32, drop_rate = 1 }",
             "field 'drop_rate' must satisfy 0 <= drop_rate < 1");
  expect_err("return { name='t', emb_dim = 64, n_heads = 4, n_layers = 2, context_length = 32,"
             " train = { val_ratio = 0 } }",
             "field 'train.val_ratio' must satisfy 0 < val_ratio < 1");
  expect_err("return { name='t', emb_dim = 64, n_heads = 4, n_layers = 2, context_length = 32,"
             " train = { val_ratio = 1 } }",
             "field 'train.val_ratio' must satisfy 0 < val_ratio < 1");
  expect_err("return { name='t', emb_dim = 64, n_heads = 4, n_layers = 2, context_length = 32, emb_dm = 3 }",
             "field 'emb_dm' is not a known config field");
  expect_err("return { name='t', emb_dim = 64, n_heads = 4, n_layers = 2, context_length = 32,"
             " train = { bach_size = 3 } }",
             "field 'train.bach_size' is not a known config field (did you mean 'train.batch_size'? see");
  /* a suggestion only for a near miss, and only among the fields of the same table */
  expect_err("return { name='t', emb_dim = 64, n_heads = 4, n_layers = 2, context_length = 32, n_layer = 3 }",
             "field 'n_layer' is not a known config field (did you mean 'n_layers'? see `gptc help config`)");
  expect_err("return { name='t', emb_dim = 64, n_heads = 4, n_layers = 2, context_length = 32, lr = 3 }",
             "field 'lr' is not a known config field (did you mean 'train.lr'? see `gptc help config`)");
  expect_err("return { name='t', emb_dim = 64, n_heads = 4, n_layers = 2, context_length = 32, LR = 3 }",
             "field 'LR' is not a known config field (see `gptc help config`)");
  expect_err("return { name='t', emb_dim = 64, n_heads = 4, n_layers = 2, context_length = 32,"
             " train = { N_Heads = 3 } }",
             "field 'train.N_Heads' is not a known config field (see `gptc help config`)");
  expect_err("return { name='t', emb_dim = 64, n_heads = 4, n_layers = 2, context_length = 32, emb_dimension = 3 }",
             "field 'emb_dimension' is not a known config field (see `gptc help config`)");
  expect_err("return { name='t', emb_dim = 64, n_heads = 4, n_layers = 2, context_length = 32, [1] = 3 }",
             "field '1' is not a known config field (see `gptc help config`)");
  expect_err("return { name='t', tokenizer = 'bpe', emb_dim = 64, n_heads = 4, n_layers = 2, context_length = 32 }",
             "field 'tokenizer' must be one of gpt2, char, word (got \"bpe\")");
  expect_err("return { name='t', vocab_size = 100, emb_dim = 64, n_heads = 4, n_layers = 2, context_length = 32 }",
             "field 'vocab_size' must be 50257 for the gpt2 tokenizer (got 100)");
  expect_err("return { name='t', emb_dim = 64, n_heads = 4, n_layers = 2, context_length = 32, qkv_bias = 1 }",
             "field 'qkv_bias' must be true or false (got 1)");
  expect_err("return 42", "a config must return a table (got number)");
  expect_err("return {", "x.lua:1:");
}
END_TEST

START_TEST(sandbox) {
  expect_err("os.execute('touch /tmp/gptc-pwned') return {}", "'os' is not available in configs");
  expect_err("local f = io.open('/etc/passwd') return {}", "'io' is not available in configs");
  expect_err("local m = require('os') return {}", "'require' is not available in configs");
  expect_err("load('return 1')() return {}", "'load' is not available in configs");
  expect_err("dofile('/etc/passwd') return {}", "'dofile' is not available in configs");
  expect_err("while true do end", "config ran too long");
  ck_assert(!util_file_exists("/tmp/gptc-pwned"));
  /* computing values is allowed */
  cfg_t c;
  ck_assert_int_eq(load_with("local C = 2^6 // 1 return { name='t', emb_dim = math.tointeger(C),"
                             " n_heads = 4, n_layers = 2, context_length = 32 }",
                             &c),
                   0);
  ck_assert_int_eq(c.emb_dim, 64);
}
END_TEST

START_TEST(roundtrip) {
  cfg_t a, b;
  ck_assert_int_eq(cfg_load_file(tu_src("configs/shakespeare-char.lua"), &a), 0);
  char *s = cfg_serialize(&a);
  ck_assert_ptr_nonnull(s);
  ck_assert_int_eq(cfg_load_string(s, "serialized", &b), 0);
  ck_assert_int_eq(a.emb_dim, b.emb_dim);
  ck_assert_int_eq(a.train.batch_size, b.train.batch_size);
  ck_assert(a.train.lr == b.train.lr);
  ck_assert(a.train.min_lr == b.train.min_lr);
  ck_assert_uint_eq(a.train.seed, b.train.seed);
  free(s);
}
END_TEST

START_TEST(shipped_configs) {
  static const char *names[] = {"gpt2-124m", "gpt2-124m-ctx256", "shakespeare-char", "shakespeare-char-mid",
                                "verdict-gpt2-small", "tiny-test"};
  for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
    char rel[256];
    snprintf(rel, sizeof rel, "configs/%s.lua", names[i]);
    cfg_t c;
    ck_assert_msg(cfg_load_file(tu_src(rel), &c) == 0, "%s: %s", rel, util_errmsg());
    ck_assert_int_ge(c.n_data, 1);
    ck_assert_msg(util_file_exists(c.data[0]), "%s: data %s missing", rel, c.data[0]);
  }
  cfg_t c;
  ck_assert_int_eq(cfg_load_file(tu_src("configs/gpt2-124m.lua"), &c), 0);
  ck_assert_int_eq(c.vocab_size, 50257);
  ck_assert_int_eq(c.emb_dim, 768);
  ck_assert_int_eq(c.n_heads, 12);
  ck_assert_int_eq(c.n_layers, 12);
  ck_assert_int_eq(c.context_length, 1024);
  ck_assert_int_eq(c.qkv_bias, 0);
  ck_assert_double_eq_tol(c.drop_rate, 0.1, 1e-12);
  ck_assert_int_eq(cfg_load_file(tu_src("configs/shakespeare-char.lua"), &c), 0);
  ck_assert_int_eq(c.tokenizer, CFG_TOK_CHAR);
  ck_assert_int_eq(c.n_layers, 4);
  ck_assert_int_eq(c.n_heads, 4);
  ck_assert_int_eq(c.emb_dim, 128);
  ck_assert_int_eq(c.context_length, 64);
  ck_assert_int_eq(c.train.batch_size, 12);
  ck_assert_int_eq(cfg_load_file(tu_src("configs/shakespeare-char-mid.lua"), &c), 0);
  ck_assert_int_eq(c.n_layers, 6);
  ck_assert_int_eq(c.emb_dim, 384);
  ck_assert_int_eq(c.context_length, 256);
  ck_assert_int_eq(c.train.batch_size, 64);
  ck_assert_double_eq_tol(c.drop_rate, 0.2, 1e-12);
}
END_TEST

START_TEST(missing_file) {
  cfg_t c;
  ck_assert_int_eq(cfg_load_file("/nonexistent/cfg.lua", &c), -1);
  ck_assert_str_eq(util_errmsg(), "config /nonexistent/cfg.lua: cannot open: No such file or directory");
}
END_TEST

START_TEST(cli_help_config) {
  tu_run_result r;
  ck_assert_int_eq(tu_run(&r, NULL, "help config"), 0);
  ck_assert_ptr_nonnull(strstr(r.out, "train.batch_size"));
  ck_assert_ptr_nonnull(strstr(r.out, "emb_dim"));
  tu_run_free(&r);
  ck_assert_int_eq(tu_run(&r, NULL, "no-such-command"), 2);
  ck_assert_ptr_nonnull(strstr(r.err, "unknown command 'no-such-command'"));
  tu_run_free(&r);
  ck_assert_int_eq(tu_run(&r, NULL, "--help"), 0);
  ck_assert_ptr_nonnull(strstr(r.out, "tokenize"));
  tu_run_free(&r);
}
END_TEST

/* util_closest: abbreviations, one edit for short names, two for long ones,
 * neighbour swaps as one edit, leading dashes not counted, ties to the first */
START_TEST(closest) {
  static const char *const opts[] = {"--config", "--steps", "--temperature", "--top-k", "--threads", "--text"};
  ck_assert_str_eq(util_closest("--temp", opts, 6), "--temperature");
  ck_assert_str_eq(util_closest("--top", opts, 6), "--top-k");
  ck_assert_str_eq(util_closest("--step", opts, 6), "--steps");
  ck_assert_str_eq(util_closest("--confg", opts, 6), "--config");
  ck_assert_str_eq(util_closest("--CONFIG", opts, 6), "--config");
  ck_assert_str_eq(util_closest("--tex", opts, 6), "--text");   /* the start of --text only */
  ck_assert_ptr_null(util_closest("--te", opts, 6));             /* too short to guess */
  ck_assert_ptr_null(util_closest("--t", opts, 6));
  ck_assert_ptr_null(util_closest("--thread-count", opts, 6)); /* 5 edits */
  ck_assert_ptr_null(util_closest("--help", opts, 6));         /* 2 edits from --text: too many for 4 */
  static const char *const cmds[] = {"train", "sample", "eval", "export", "export-hf"};
  ck_assert_str_eq(util_closest("trian", cmds, 5), "train");  /* a swap is one edit */
  ck_assert_str_eq(util_closest("exprot", cmds, 5), "export");
  ck_assert_str_eq(util_closest("export-h", cmds, 5), "export-hf");
  ck_assert_str_eq(util_closest("sampel", cmds, 5), "sample");
  ck_assert_str_eq(util_closest("evl", cmds, 5), "eval");
  ck_assert_ptr_null(util_closest("xyzzy", cmds, 5));
  ck_assert_ptr_null(util_closest("tr", cmds, 5));
  ck_assert_ptr_null(util_closest("exp", cmds, 5)); /* the start of two */
  static const char *const fields[] = {"emb_dim", "n_heads", "n_layers", "batch_size"};
  ck_assert_str_eq(util_closest("n_layer", fields, 4), "n_layers");
  ck_assert_str_eq(util_closest("bach_sise", fields, 4), "batch_size"); /* two edits in a long name */
  ck_assert_ptr_null(util_closest("bch_sise", fields, 4));             /* three */
  static const char *const tie[] = {"abcx", "abcy"};
  ck_assert_str_eq(util_closest("abcz", tie, 2), "abcx");
  char longname[100];
  memset(longname, 'a', 99), longname[99] = 0;
  static const char *const a65[] = {"aaa"};
  ck_assert_ptr_null(util_closest(longname, a65, 1));
}
END_TEST

START_TEST(cli_did_you_mean) {
  tu_run_result r;
  ck_assert_int_eq(tu_run(&r, NULL, "trian"), 2);
  ck_assert_str_eq(r.err, "gptc: unknown command 'trian' (did you mean 'train'? see 'gptc --help')\n");
  tu_run_free(&r);
  ck_assert_int_eq(tu_run(&r, NULL, "sample --temp 0.5"), 2);
  ck_assert_str_eq(r.err,
                   "gptc sample: unknown option '--temp' (did you mean '--temperature'?) (see 'gptc sample --help')\n");
  tu_run_free(&r);
  ck_assert_int_eq(tu_run(&r, NULL, "train --confg=x.lua"), 2);
  ck_assert_str_eq(r.err,
                   "gptc train: unknown option '--confg' (did you mean '--config'?) (see 'gptc train --help')\n");
  tu_run_free(&r);
  ck_assert_int_eq(tu_run(&r, NULL, "help confg"), 2);
  ck_assert_str_eq(r.err, "gptc help: unknown topic 'confg' (did you mean 'config'? a command name or 'config')\n");
  tu_run_free(&r);
  ck_assert_int_eq(tu_run(&r, NULL, "train --zzz"), 2);
  ck_assert_str_eq(r.err, "gptc train: unknown option '--zzz' (see 'gptc train --help')\n");
  tu_run_free(&r);
}
END_TEST

int main(void) {
  Suite *s = suite_create("cfg");
  TCase *tc = tcase_create("cfg");
  tcase_add_test(tc, defaults);
  tcase_add_test(tc, rules);
  tcase_add_test(tc, sandbox);
  tcase_add_test(tc, roundtrip);
  tcase_add_test(tc, shipped_configs);
  tcase_add_test(tc, missing_file);
  tcase_add_test(tc, cli_help_config);
  tcase_add_test(tc, closest);
  tcase_add_test(tc, cli_did_you_mean);
  suite_add_tcase(s, tc);
  return tu_main(s);
}
