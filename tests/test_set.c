/* `--set FIELD=VALUE` overrides: every field kind, the refusals (unknown
 * field, wrong type, out of range, values that are Lua code: never run),
 * the effective config in the checkpoint and the generated header, and
 * --resume with overrides (shape refused naming the --set, training fields
 * allowed and logged). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cfg.h"
#include "ckpt.h"
#include "testutil.h"
#include "util.h"

static int load(const char *const *sets, int n, cfg_t *c) {
  return cfg_load_file_set(tu_src("configs/tiny-test.lua"), sets, n, c);
}

START_TEST(set_every_kind) {
  const char *sets[] = {"n_layers=3",          "emb_dim=32",       "train.lr=3e-4", "precision=bf16",
                        "tokenizer='word'",    "qkv_bias=false",   "train.shuffle=false",
                        "name=my-run.v2",      "drop_rate=0.25",   "train.seed=0x10",
                        "train.batch_size=3",  "train.batch_size=5" /* the last one wins */,
                        "data=some/dir/a.txt"};
  cfg_t c, base;
  ck_assert_int_eq(load(NULL, 0, &base), 0);
  ck_assert_msg(load(sets, (int)(sizeof sets / sizeof *sets), &c) == 0, "%s", util_errmsg());
  ck_assert_int_eq(c.n_layers, 3);
  ck_assert_int_eq(c.emb_dim, 32);
  ck_assert(c.train.lr == 3e-4);
  ck_assert(c.train.min_lr == 3e-4 / 10); /* the derived default follows the override */
  ck_assert_int_eq(c.precision, CFG_BF16);
  ck_assert_int_eq(c.tokenizer, CFG_TOK_WORD);
  ck_assert_int_eq(c.qkv_bias, 0);
  ck_assert_int_eq(c.train.shuffle, 0);
  ck_assert_str_eq(c.name, "my-run.v2");
  ck_assert(c.drop_rate == 0.25);
  ck_assert_uint_eq(c.train.seed, 16);
  ck_assert_int_eq(c.train.batch_size, 5);
  /* a --set data path is the user's: relative to the working directory */
  char cwd[1024], want[1200];
  ck_assert_ptr_nonnull(getcwd(cwd, sizeof cwd));
  snprintf(want, sizeof want, "%s/some/dir/a.txt", cwd);
  ck_assert_int_eq(c.n_data, 1);
  ck_assert_str_eq(c.data[0], want);
  /* what was not set is the file's */
  ck_assert_int_eq(c.n_heads, base.n_heads);
  ck_assert_int_eq(c.context_length, base.context_length);
  ck_assert_int_eq(c.train.steps, base.train.steps);
  ck_assert_int_eq(c.tie_embeddings, base.tie_embeddings);
}
END_TEST

START_TEST(set_refusals) {
  static const struct {
    const char *set, *msg;
  } bad[] = {
      {"n_layer=3", "configs/tiny-test.lua: --set n_layer: field 'n_layer' is not a known config field (did you mean "
                    "'n_layers'? see `gptc help config`)"},
      {"train.lrr=1", "--set train.lrr: field 'train.lrr' is not a known config field (did you mean 'train.lr'?"},
      {"lr=1e-3", "--set lr: field 'lr' is not a known config field (did you mean 'train.lr'?"},
      {"trian.lr=1", "--set trian.lr: field 'trian.lr' is not a known config field (only train.NAME is nested; did "
                     "you mean 'train.lr'?"},
      {"n_layers=abc", "configs/tiny-test.lua: --set n_layers: field 'n_layers' must be a positive integer (got \"abc\")"},
      {"n_layers=2.5", "--set n_layers: field 'n_layers' must be a positive integer (got 2.5)"},
      {"n_layers=0", "--set n_layers: field 'n_layers' must be a positive integer (got 0)"},
      {"n_layers=5000", "--set n_layers: field 'n_layers' must be at most 1024 (got 5000)"},
      {"train.lr=-1", "--set train.lr: field 'train.lr' must be > 0 (got -1)"},
      {"train.lr=fast", "--set train.lr: field 'train.lr' must be a finite number (got \"fast\")"},
      {"qkv_bias=yes", "--set qkv_bias: field 'qkv_bias' must be true or false (got \"yes\")"},
      {"precision=fp16", "--set precision: field 'precision' must be one of fp32, bf16 (got \"fp16\")"},
      {"train=3", "--set train: field 'train' must be a table (got 3)"},
      {"n_layers", "--set n_layers: expected FIELD=VALUE"},
      {"=3", "FIELD must be a config field name"},
      {"9x=3", "--set 9x: FIELD must be a config field name"},
      {"n_layers=nil", "--set n_layers: nil cannot be set from the command line"},
      {"data={'a.txt'}", "--set data: tables are not accepted (give one path: --set data=FILE)"},
      {"train.lr=os.exit(1)", "--set train.lr: value 'os.exit(1)' is not a number, a quoted string, true, false or "
                              "a bare word"},
      {"n_layers=(function() while true do end end)()", "--set n_layers: value '(function() while true do end "
                                                        "end)()' is not a number"},
      {"name=a..b", "--set name: field 'name' must be"}, /* a bare word string, never concatenated */
      {"n_layers=1+1", "--set n_layers: value '1+1' is not a number"},
      {"name=\"unterminated", "--set name: value '\"unterminated' is not a number"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    cfg_t c;
    const char *sets[] = {bad[i].set};
    int rc = load(sets, 1, &c);
    if (!strcmp(bad[i].set, "name=a..b")) { /* "a..b" is a fine name: it loads as that string */
      ck_assert_int_eq(rc, 0);
      ck_assert_str_eq(c.name, "a..b");
      continue;
    }
    ck_assert_msg(rc == -1, "--set %s loaded", bad[i].set);
    ck_assert_msg(strstr(util_errmsg(), bad[i].msg), "--set %s: got '%s', want '%s'", bad[i].set, util_errmsg(),
                  bad[i].msg);
  }
}
END_TEST

/* Lua code as a value is refused by the command, before the config runs:
 * os.exit(3) would end the process with 3. */
START_TEST(set_code_not_run) {
  tu_run_result r;
  const char *out = tu_tmpdir();
  tu_run(&r, NULL, "gen --config '%s' --set 'n_layers=os.exit(3)' -o '%s/g'", tu_src("configs/tiny-test.lua"), out);
  ck_assert_int_eq(r.code, 1);
  ck_assert_str_eq(r.err, "gptc: --set n_layers: value 'os.exit(3)' is not a number, a quoted string, true, false or a "
                          "bare word (letters, digits, '_', '.', '/', '-', ':'); --set values are data and never run\n");
  tu_run_free(&r);
  tu_run(&r, NULL, "train --config '%s' --set 'train.steps=(function() os.exit(3) end)()' --out '%s/t' --quiet",
         tu_src("configs/tiny-test.lua"), out);
  ck_assert_int_eq(r.code, 1);
  ck_assert_msg(strstr(r.err, "--set train.steps: value '(function() os.exit(3) end)()' is not a number"), "%s", r.err);
  char t[1200];
  snprintf(t, sizeof t, "%s/t", out);
  ck_assert_int_eq(util_file_exists(t), 0); /* refused before the run directory was made */
  tu_run_free(&r);
}
END_TEST

START_TEST(set_in_help) {
  const char *cmds[] = {"train", "gen", "data", "bench", "tune", "sweep"};
  for (size_t i = 0; i < sizeof cmds / sizeof *cmds; i++) {
    tu_run_result r;
    ck_assert_int_eq(tu_run(&r, NULL, "%s --help", cmds[i]), 0);
    ck_assert_msg(strstr(r.out, "--set FIELD=VALUE"), "gptc %s --help: %s", cmds[i], r.out);
    tu_run_free(&r);
  }
}
END_TEST

/* gptc data loads through the overrides: the loaders show them. */
START_TEST(set_data_command) {
  tu_run_result r;
  ck_assert_int_eq(tu_run(&r, NULL, "data --config '%s' --set train.batch_size=3 --set train.max_length=8",
                          tu_src("configs/tiny-test.lua")), 0);
  ck_assert_msg(strstr(r.out, "train  loader  batch_size 3, max_length 8, stride 16,"), "%s", r.out);
  ck_assert_msg(strstr(r.out, "inputs and targets (3, 8)"), "%s", r.out);
  tu_run_free(&r);
  ck_assert_int_eq(tu_run(&r, NULL, "data --config '%s' --set train.max_length=17", tu_src("configs/tiny-test.lua")), 1);
  ck_assert_msg(strstr(r.err, "--set train.max_length: field 'train.max_length' must be <= context_length (16) (got 17)"),
                "%s", r.err);
  tu_run_free(&r);
}
END_TEST

/* The generated header shows the effective shape. */
START_TEST(set_gen_header) {
  tu_run_result r;
  const char *out = tu_tmpdir();
  ck_assert_int_eq(tu_run(&r, NULL, "gen --config '%s' --set n_layers=3 --set emb_dim=32 --set n_heads=4 -o '%s/gh'",
                          tu_src("configs/tiny-test.lua"), out), 0);
  tu_run_free(&r);
  char path[1200], *src;
  size_t len;
  snprintf(path, sizeof path, "%s/gh/model.c", out);
  ck_assert_int_eq(util_read_file(path, &src, &len), 0);
  ck_assert_msg(strstr(src, " * V=62 C=32 H=4 head_dim=8 L=3 context_length=16 "), "%.400s", src);
  free(src);
}
END_TEST

static void stored_cfg(const char *dir, cfg_t *k, uint64_t *step) {
  char path[1200];
  snprintf(path, sizeof path, "%s/last.safetensors", dir);
  ckpt_meta meta;
  ck_assert_msg(ckpt_load_meta(path, &meta) == 0, "%s", util_errmsg());
  ck_assert_msg(cfg_load_data(meta.config_src, path, k) == 0, "%s", util_errmsg());
  *step = meta.step;
  ckpt_meta_free(&meta);
}

/* The checkpoint stores the effective config; --resume refuses a shape
 * --set (naming it) and allows, prints and logs training-field ones. */
START_TEST(set_checkpoint_and_resume) {
  char dir[1200];
  snprintf(dir, sizeof dir, "%s/run", tu_tmpdir());
  const char *cfg = tu_src("configs/tiny-test.lua");
  tu_run_result r;
  ck_assert_int_eq(tu_run(&r, NULL,
                          "train --config '%s' --set n_layers=1 --set train.lr=0.002 --set train.steps=2 --set "
                          "train.eval_interval=2 --set name=renamed --out '%s' --quiet",
                          cfg, dir), 0);
  tu_run_free(&r);
  cfg_t k;
  uint64_t step;
  stored_cfg(dir, &k, &step);
  ck_assert_uint_eq(step, 2);
  ck_assert_int_eq(k.n_layers, 1);
  ck_assert(k.train.lr == 0.002);
  ck_assert_int_eq(k.train.steps, 2);
  ck_assert_int_eq(k.train.eval_interval, 2);
  ck_assert_str_eq(k.name, "renamed");
  ck_assert_int_eq(k.emb_dim, 16); /* the file's */

  char logp[1300], *log0, *log1;
  size_t len0, len1;
  snprintf(logp, sizeof logp, "%s/log.jsonl", dir);
  ck_assert_int_eq(util_read_file(logp, &log0, &len0), 0);

  /* a shape override on resume: refused, naming the --set; nothing changes */
  ck_assert_int_eq(tu_run(&r, NULL, "train --config '%s' --set n_layers=2 --set train.steps=4 --out '%s' --resume",
                          cfg, dir), 1);
  ck_assert_msg(strstr(r.err, "last.safetensors: checkpoint does not fit: field 'n_layers' is 1 in the checkpoint but "
                              "--set n_layers=2 makes it 2 (--resume keeps the model's shape; train into another --out)"),
                "%s", r.err);
  tu_run_free(&r);
  ck_assert_int_eq(util_read_file(logp, &log1, &len1), 0);
  ck_assert_uint_eq(len0, len1);
  ck_assert_int_eq(memcmp(log0, log1, len0), 0);
  free(log1);
  stored_cfg(dir, &k, &step);
  ck_assert_uint_eq(step, 2);

  /* training fields on resume: allowed, printed and logged */
  ck_assert_int_eq(tu_run(&r, NULL,
                          "train --config '%s' --set n_layers=1 --set train.lr=0.003 --set train.steps=4 --set "
                          "train.eval_interval=2 --set name=renamed --out '%s' --resume",
                          cfg, dir), 0);
  ck_assert_msg(strstr(r.out, "resume: --set train.lr=0.003 changes train.lr from 0.002 to 0.003\n"
                              "resume: --set train.steps=4 changes train.steps from 2 to 4\n"),
                "%s", r.out);
  ck_assert_msg(!strstr(r.out, "changes n_layers"), "%s", r.out); /* unchanged fields are not listed */
  tu_run_free(&r);
  stored_cfg(dir, &k, &step);
  ck_assert_uint_eq(step, 4);
  ck_assert(k.train.lr == 0.003);
  ck_assert_int_eq(k.train.steps, 4);
  ck_assert_int_eq(util_read_file(logp, &log1, &len1), 0);
  /* the first run's lines, the record at the resume step, then steps 3 and 4 */
  /* (the first run's whole-split val_loss_full, on its last line, goes: the log reads as one straight run) */
  char *full = strstr(log0, ",\"val_loss_full\":");
  ck_assert_ptr_nonnull(full);
  char *close = strchr(full, '}');
  memmove(full, close, strlen(close) + 1);
  len0 = strlen(log0);
  ck_assert_uint_gt(len1, len0);
  ck_assert_int_eq(memcmp(log0, log1, len0), 0);
  const char *rec = "{\"step\":2,\"resume_set\":{\"train.lr\":{\"was\":0.002,\"now\":0.003},"
                    "\"train.steps\":{\"was\":2,\"now\":4}}}\n{\"step\":3,";
  ck_assert_msg(!strncmp(log1 + len0, rec, strlen(rec)), "%s", log1 + len0);
  ck_assert_msg(strstr(log1, "\n{\"step\":4,"), "%s", log1);
  free(log0);
  free(log1);
}
END_TEST

int main(void) {
  Suite *s = suite_create("set");
  TCase *tc = tcase_create("set");
  tcase_set_timeout(tc, 600);
  tcase_add_test(tc, set_every_kind);
  tcase_add_test(tc, set_refusals);
  tcase_add_test(tc, set_code_not_run);
  tcase_add_test(tc, set_in_help);
  tcase_add_test(tc, set_gen_header);
  tcase_add_test(tc, set_data_command);
  tcase_add_test(tc, set_checkpoint_and_resume);
  suite_add_tcase(s, tc);
  return tu_main(s);
}
