/* The Lua bridge (runtime/gen.h): a Lua error in a config is one line that
 * names the config file, through the C entry and through `gptc`; --set
 * errors keep their order; the typed entries agree with each other (counts,
 * the q8 layout, a template rendered from an environment built in C); the
 * generated CPU source carries runtime/model.h's text verbatim (one ABI
 * text); and no runtime file outside the bridge includes a Lua header. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cfg.h"
#include "gen.h"
#include "testutil.h"
#include "util.h"

static const char *const HEAD =
    "name = 'lb', tokenizer = 'char', vocab_size = 11, emb_dim = 16, n_heads = 2, n_layers = 2, "
    "context_length = 8, train = { batch_size = 2, max_length = 8 }";

/* util_errmsg() after a failed cfg_load_string of src as `name`. */
static const char *load_error(const char *src, const char *name) {
  cfg_t c;
  ck_assert_msg(cfg_load_string(src, name, &c) == -1, "loaded: %s", src);
  return util_errmsg();
}

/* `gptc gen` of a config file written as `name`: exit 1 and exactly one
 * stderr line, "gptc: " + want (want names the file's path). */
static void gen_fails_with(const char *name, const char *src, const char *want_after_path) {
  const char *path = tu_write_str(name, src);
  tu_run_result r;
  int code = tu_run(&r, NULL, "gen --config '%s' -o '%s/out-%s'", path, tu_tmpdir(), name);
  char want[4096];
  snprintf(want, sizeof want, "gptc: %s%s\n", path, want_after_path);
  ck_assert_int_eq(code, 1);
  ck_assert_str_eq(r.err, want);
  ck_assert_str_eq(r.out, "");
  tu_run_free(&r);
}

START_TEST(config_syntax_error_one_line) {
  ck_assert_str_eq(load_error("return { name = 'x', emb_dim = 16\n", "syn.lua"),
                   "syn.lua:2: '}' expected (to close '{' at line 1) near <eof>");
  ck_assert_str_eq(load_error("return { name = = 1 }", "eq.lua"), "eq.lua:1: unexpected symbol near '='");
  gen_fails_with("syn.lua", "return {\n  name = 'x',\n  emb_dim = 16\n", ":4: '}' expected (to close '{' at line 1) near <eof>");
}
END_TEST

START_TEST(config_runtime_error_one_line) {
  char src[1024];
  /* a field computed by a function that fails */
  snprintf(src, sizeof src, "local function width() error('no such width') end\nreturn { %s, drop_rate = width() }",
           HEAD);
  ck_assert_str_eq(load_error(src, "fn.lua"), "fn.lua:1: no such width");
  gen_fails_with("fn.lua", src, ":1: no such width");
  /* arithmetic on nil inside a field's expression */
  snprintf(src, sizeof src, "local t = {}\nreturn { %s, drop_rate = t.rate * 2 }", HEAD);
  ck_assert_str_eq(load_error(src, "nil.lua"), "nil.lua:2: attempt to perform arithmetic on a nil value (field 'rate')");
  /* an error without a position, and one with line breaks: still one line naming the file */
  snprintf(src, sizeof src, "local function pick() error('no position', 0) end\nreturn { %s, drop_rate = pick() }",
           HEAD);
  ck_assert_str_eq(load_error(src, "lvl0.lua"), "lvl0.lua: no position");
  gen_fails_with("lvl0.lua", src, ": no position");
  snprintf(src, sizeof src, "error('first line\\nsecond line\\r\\nthird', 0)");
  ck_assert_str_eq(load_error(src, "nl.lua"), "nl.lua: first line second line third");
  gen_fails_with("nl.lua", src, ": first line second line third");
  /* a non-string error object is named, never converted */
  ck_assert_str_eq(load_error("error({})", "tab.lua"), "tab.lua: config raised an error that is not a string (table)");
}
END_TEST

/* The overrides are read in order: a bad value before a malformed FIELD=VALUE is the error, and a malformed
 * one after good values is. */
START_TEST(set_errors_in_order) {
  cfg_t c;
  char src[512];
  snprintf(src, sizeof src, "return { %s }", HEAD);
  const char *bad_first[] = {"emb_dim=f(", "nofield"};
  ck_assert_int_eq(cfg_load_string_set(src, "s.lua", bad_first, 2, &c), -1);
  ck_assert_str_eq(util_errmsg(), "--set emb_dim: value 'f(' is not a number, a quoted string, true, false or a bare "
                                  "word (letters, digits, '_', '.', '/', '-', ':'); --set values are data and never run");
  const char *good_first[] = {"emb_dim=32", "nofield"};
  ck_assert_int_eq(cfg_load_string_set(src, "s.lua", good_first, 2, &c), -1);
  ck_assert_str_eq(util_errmsg(), "--set nofield: expected FIELD=VALUE, e.g. --set n_layers=4 or --set train.lr=3e-4");
  const char *good[] = {"emb_dim=32", "train.lr=0.5"};
  ck_assert_msg(cfg_load_string_set(src, "s.lua", good, 2, &c) == 0, "%s", util_errmsg());
  ck_assert_int_eq(c.emb_dim, 32);
  ck_assert(c.train.lr == 0.5);
}
END_TEST

static void load_tiny(cfg_t *c) {
  ck_assert_msg(cfg_load_file(tu_src("configs/tiny-test.lua"), c) == 0, "%s", util_errmsg());
  c->vocab_size = 11;
}

START_TEST(counts_agree) {
  cfg_t c;
  load_tiny(&c);
  gptc_tensor *ts;
  int n;
  size_t np, np2, real, sum = 0;
  ck_assert_int_eq(gen_tensors(&c, &ts, &n, &np), 0);
  for (int i = 0; i < n; i++) sum += ts[i].numel;
  gen_tensors_free(ts, n);
  ck_assert_int_eq(gen_n_params(&c, &np2, &real), 0);
  ck_assert_uint_eq(np2, np);
  ck_assert_uint_eq(real, sum); /* n_params_real: the tensors without padding */
  ck_assert_uint_ge(np, real);
  /* tiny-test with V = 11, C = 16, L = 2, ctx = 16, tied, qkv_bias: the GPT-2 count */
  size_t C = 16, V = 11, L = 2, ctx = 16;
  ck_assert_uint_eq(real, V * C + ctx * C + L * (2 * C + C * 3 * C + 3 * C + C * C + C + 2 * C + C * 4 * C + 4 * C +
                                                 4 * C * C + C) + 2 * C);
}
END_TEST

START_TEST(q8_layout_in_bounds) {
  cfg_t c;
  load_tiny(&c);
  gen_q8_layout q;
  ck_assert_msg(gen_q8_derive(&c, &q) == 0, "%s", util_errmsg());
  ck_assert_uint_eq(q.block, 32);
  ck_assert_int_gt(q.n_mats, 0);
  ck_assert_int_gt(q.n_copies, 0);
  size_t floats = 0;
  for (int i = 0; i < q.n_copies; i++) {
    ck_assert_uint_le(q.copies[i].dst + q.copies[i].n * 4, q.bytes);
    floats += q.copies[i].n;
  }
  for (int i = 0; i < q.n_mats; i++) {
    const gen_q8_mat *m = &q.mats[i];
    ck_assert_uint_eq(m->NB, (m->K + 31) / 32);
    ck_assert_uint_eq(m->NP, (m->N + q.panel - 1) / q.panel);
    ck_assert_uint_le(m->s_off + m->NP * m->NB * q.panel * 4, m->q_off);
    ck_assert_uint_le(m->q_off + m->NP * m->K * q.panel, q.bytes);
    floats += m->K * m->N;
  }
  /* every parameter is in the blob: copied or quantized, and the tied wte both (the embedding rows in f32, the
   * head in q8) */
  size_t real;
  ck_assert_int_eq(gen_n_params(&c, NULL, &real), 0);
  ck_assert(c.tie_embeddings);
  ck_assert_uint_eq(floats, real + 11 * 16);
  gen_q8_layout_free(&q);
}
END_TEST

/* An environment built in C renders a template: a tree with the real gen/ and one template, through GPTC_GEN_DIR. */
START_TEST(env_renders_template) {
  char dir[1024], path[1100];
  snprintf(dir, sizeof dir, "%s/gendir", tu_tmpdir());
  snprintf(path, sizeof path, "%s/templates", dir);
  ck_assert_int_eq(util_mkdir_p(path), 0);
  snprintf(path, sizeof path, "%s/gen", dir);
  ck_assert_int_eq(symlink(tu_src("gen"), path), 0);
  snprintf(path, sizeof path, "%s/templates/t.txt", dir);
  const char *tmpl = "C={{S.dims.C}} name={{cfg.name}} target={{target}} x86={{tostring(x86)}} n={{#items}}\n"
                     "% for _, v in ipairs(items) do\n"
                     "{{v.name}}:{{v.id}}:{{tostring(v.check)}}\n"
                     "% end\n";
  ck_assert_int_eq(util_write_file_atomic(path, tmpl, strlen(tmpl)), 0);
  setenv("GPTC_GEN_DIR", dir, 1);
  cfg_t c;
  load_tiny(&c);
  gen_env *e = gen_env_new(&c);
  ck_assert_msg(e != NULL, "%s", util_errmsg());
  ck_assert_int_eq(gen_env_len(e, "items"), 0);
  gen_env_str(e, "target", "native");
  gen_env_bool(e, "x86", 1);
  gen_env_append(e, "items");
  gen_env_item_str(e, "name", "a");
  gen_env_item_int(e, "id", 7);
  gen_env_item_str(e, "check", NULL); /* left out */
  gen_env_append(e, "items");
  gen_env_item_str(e, "name", "b");
  gen_env_item_int(e, "id", -1);
  gen_env_item_str(e, "check", "avx2");
  ck_assert_int_eq(gen_env_len(e, "items"), 2);
  char *out;
  size_t len;
  ck_assert_msg(gen_env_render(e, "templates/t.txt", &out, &len) == 0, "%s", util_errmsg());
  ck_assert_str_eq(out, "C=16 name=tiny-test target=native x86=true n=2\na:7:nil\nb:-1:avx2\n");
  ck_assert_uint_eq(len, strlen(out));
  free(out);
  /* a template error is one line naming the template */
  ck_assert_int_eq(gen_env_render(e, "templates/missing.txt", &out, &len), -1);
  ck_assert_ptr_null(strchr(util_errmsg(), '\n'));
  ck_assert_msg(strstr(util_errmsg(), "templates/missing.txt"), "%s", util_errmsg());
  gen_env_free(e);
  unsetenv("GPTC_GEN_DIR");
}
END_TEST

/* s holds "#define GPTC_REAL real\n" + model.h's whole text exactly once, and no other gptc_model definition. */
static void has_model_h(const char *s, const char *what) {
  char *abi;
  size_t n;
  ck_assert_int_eq(util_read_file(tu_src("runtime/model.h"), &abi, &n), 0);
  util_buf want = {0};
  util_buf_printf(&want, "#define GPTC_REAL real\n%s", abi);
  const char *hit = strstr(s, want.data);
  ck_assert_msg(hit != NULL, "%s lacks runtime/model.h's text", what);
  ck_assert_msg(strstr(hit + 1, want.data) == NULL, "%s pastes runtime/model.h twice", what);
  int defs = 0;
  for (const char *p = s; (p = strstr(p, "} gptc_model;")); p++) defs++;
  ck_assert_int_eq(defs, 1);
  util_buf_free(&want);
  free(abi);
}

START_TEST(prelude_pastes_model_h) {
  for (int bf16 = 0; bf16 < 2; bf16++) {
    char out[1100], path[1200];
    snprintf(out, sizeof out, "%s/gen-%d", tu_tmpdir(), bf16);
    tu_run_result r;
    int code = tu_run(&r, NULL, "gen --config '%s' --precision %s -o '%s'", tu_src("configs/tiny-test.lua"),
                      bf16 ? "bf16" : "fp32", out);
    ck_assert_msg(code == 0, "gen: %s", r.err);
    tu_run_free(&r);
    snprintf(path, sizeof path, "%s/model.c", out);
    char *src;
    size_t n;
    ck_assert_int_eq(util_read_file(path, &src, &n), 0);
    has_model_h(src, path);
    free(src);
  }
  /* every separately compiled unit has the prelude, so the ABI too */
  cfg_t c;
  load_tiny(&c);
  char *src, hash[65];
  size_t len;
  gen_unit *u;
  int n;
  ck_assert_msg(gen_units(&c, &src, &len, hash, &u, &n) == 0, "%s", util_errmsg());
  ck_assert_int_gt(n, 1);
  for (int i = 0; i < n; i++) has_model_h(u[i].src, u[i].name);
  gen_units_free(u, n);
  free(src);
}
END_TEST

/* Only the bridge's files include a Lua header (in addition to the behaviour above: the boundary stays one). */
START_TEST(only_the_bridge_includes_lua) {
  static const char *const bridge[] = {"gen.c", "gen_cfg.c", "gen_env.c", "lx.c", "lx.h", "lit.c", "lit.h", NULL};
  DIR *d = opendir(tu_src("runtime"));
  ck_assert_ptr_nonnull(d);
  int seen = 0;
  for (struct dirent *de; (de = readdir(d));) {
    size_t k = strlen(de->d_name);
    if (k < 3 || (strcmp(de->d_name + k - 2, ".c") && strcmp(de->d_name + k - 2, ".h"))) continue;
    char rel[512];
    snprintf(rel, sizeof rel, "runtime/%s", de->d_name);
    char *s;
    size_t n;
    ck_assert_int_eq(util_read_file(tu_src(rel), &s, &n), 0);
    int uses = strstr(s, "#include <lua.h>") || strstr(s, "#include <lauxlib.h>") || strstr(s, "#include <lualib.h>") ||
               strstr(s, "#include \"lx.h\"") || strstr(s, "#include \"lit.h\"") || strstr(s, "lua_State");
    free(s);
    int allowed = 0;
    for (int i = 0; bridge[i]; i++) allowed |= !strcmp(de->d_name, bridge[i]);
    ck_assert_msg(!uses || allowed, "%s uses Lua outside the bridge (runtime/gen.h)", rel);
    seen += uses;
  }
  closedir(d);
  ck_assert_int_ge(seen, 5); /* the bridge itself was found */
}
END_TEST

int main(void) {
  Suite *s = suite_create("luabridge");
  TCase *tc = tcase_create("luabridge");
  tcase_set_timeout(tc, 300);
  tcase_add_test(tc, config_syntax_error_one_line);
  tcase_add_test(tc, config_runtime_error_one_line);
  tcase_add_test(tc, set_errors_in_order);
  tcase_add_test(tc, counts_agree);
  tcase_add_test(tc, q8_layout_in_bounds);
  tcase_add_test(tc, env_renders_template);
  tcase_add_test(tc, prelude_pastes_model_h);
  tcase_add_test(tc, only_the_bridge_includes_lua);
  suite_add_tcase(s, tc);
  return tu_main(s);
}
