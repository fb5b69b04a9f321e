/* Issue 14, configs: integer bounds before narrowing, the sandbox's limits
 * (memory cap, an instruction budget no pcall, metamethod or finalizer
 * escapes, costly patterns), checkpoint configs read as data (lit.c), the
 * stored config checked on --resume, the model name, vocab_size in char
 * configs. Each case failed (or hung) before its fix. */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <lauxlib.h>

#include "cfg.h"
#include "gen.h"
#include "ckpt.h"
#include "lit.h"
#include "lx.h"
#include "testutil.h"
#include "util.h"

#define HEAD "name = 't', tokenizer = 'gpt2', emb_dim = 64, n_heads = 4, n_layers = 2, context_length = 32"

static void expect_err(const char *src, const char *needle) {
  cfg_t c;
  ck_assert_msg(cfg_load_string(src, "x.lua", &c) == -1, "loaded: %s", src);
  ck_assert_msg(strstr(util_errmsg(), needle) != NULL, "message '%s' lacks '%s'", util_errmsg(), needle);
  ck_assert_msg(!strchr(util_errmsg(), '\n'), "message has several lines: %s", util_errmsg());
  ck_assert_msg(!strstr(util_errmsg(), "gen/"), "message leaks internals: %s", util_errmsg());
}

static void expect_data_err(const char *src, const char *needle) {
  cfg_t c;
  ck_assert_msg(cfg_load_data(src, "ck.safetensors (config)", &c) == -1, "loaded: %s", src);
  ck_assert_msg(strstr(util_errmsg(), needle) != NULL, "message '%s' lacks '%s'", util_errmsg(), needle);
  ck_assert_msg(strstr(util_errmsg(), "ck.safetensors (config)") != NULL, "no checkpoint named: %s", util_errmsg());
}

/* ---- items 1, 2, 7, 18: integers bounded as 64-bit values -------------------------- */

START_TEST(int_fields_bounded) {
  expect_err("return { " HEAD ", train = { grad_accum = 1 << 40 } }",
             "x.lua: field 'train.grad_accum' must be at most 65536 (got 1099511627776)");
  expect_err("return { " HEAD ", train = { eval_interval = 1 << 32 } }",
             "field 'train.eval_interval' must be at most 2147483647 (got 4294967296)");
  expect_err("return { name = 't', emb_dim = (1 << 32) + 16, n_heads = 4, n_layers = 2, context_length = 32 }",
             "field 'emb_dim' must be at most 65536 (got 4294967312)");
  expect_err("return { " HEAD ", train = { steps = 1 << 32 } }", "field 'train.steps' must be at most 2147483647");
  expect_err("return { name = 't', emb_dim = 64, n_heads = 4, n_layers = 2, context_length = 1 << 31 }",
             "field 'context_length' must be at most 1048576 (got 2147483648)");
  expect_err("return { " HEAD ", train = { batch_size = 1 << 40 } }", "field 'train.batch_size' must be at most 65536");
  expect_err("return { name = 't', emb_dim = 1 << 40, n_heads = 4, n_layers = 2, context_length = 32 }",
             "field 'emb_dim' must be at most 65536");
  expect_err("return { name = 't', emb_dim = 64, n_heads = 4, n_layers = 1000000000, context_length = 32 }",
             "field 'n_layers' must be at most 1024 (got 1000000000)");
  expect_err("return { " HEAD ", train = { seed = -1 } }", "field 'train.seed' must be a non-negative integer (got -1)");
  /* the largest values still load, unchanged */
  cfg_t c;
  ck_assert_msg(cfg_load_string("return { " HEAD ", train = { steps = 2147483647, eval_interval = 2147483647,"
                                " seed = 9223372036854775807 } }",
                                "x.lua", &c) == 0,
                "%s", util_errmsg());
  ck_assert_int_eq(c.train.steps, 2147483647);
  ck_assert_int_eq(c.train.eval_interval, 2147483647);
  ck_assert_uint_eq(c.train.seed, 9223372036854775807ull);
}
END_TEST

/* defence in depth: with the schema's bound lifted (a patched config.lua
 * through GPTC_GEN_DIR), the C side still refuses to cut a value */
START_TEST(cfg_geti_never_cuts) {
  char *src;
  size_t len;
  ck_assert_int_eq(util_read_file(tu_src("gen/config.lua"), &src, &len), 0);
  const char *from = "\"evaluate on the val split every N steps\", max = I32";
  char *at = strstr(src, from);
  ck_assert_ptr_nonnull(at);
  util_buf b = {0};
  util_buf_add(&b, src, (size_t)(at - src));
  util_buf_printf(&b, "\"evaluate on the val split every N steps\", max = math.maxinteger");
  util_buf_add(&b, at + strlen(from), len - (size_t)(at - src) - strlen(from));
  char dir[1100], path[1200];
  snprintf(dir, sizeof dir, "%s/gendev/gen", tu_tmpdir());
  ck_assert_int_eq(util_mkdir_p(dir), 0);
  snprintf(path, sizeof path, "%s/config.lua", dir);
  ck_assert_int_eq(util_write_file_atomic(path, b.data, b.len), 0);
  util_buf_free(&b);
  free(src);
  snprintf(dir, sizeof dir, "%s/gendev", tu_tmpdir());
  setenv("GPTC_GEN_DIR", dir, 1);
  cfg_t c;
  ck_assert_int_eq(cfg_load_string("return { " HEAD ", train = { eval_interval = 1 << 32 } }", "x.lua", &c), -1);
  ck_assert_str_eq(util_errmsg(), "x.lua: field 'eval_interval' is 4294967296, out of range (at most 2147483647)");
  ck_assert_int_eq(cfg_load_string("return { " HEAD ", train = { eval_interval = 1 << 30 } }", "x.lua", &c), 0);
  ck_assert_int_eq(c.train.eval_interval, 1 << 30);
  unsetenv("GPTC_GEN_DIR");
}
END_TEST

/* products of bounded fields: refused in floating point, before any size is
 * derived (the generator divided by a wrapped 0, "gen/cpu/emit.lua:38") */
START_TEST(size_products_bounded) {
  expect_err("return { name = 't', emb_dim = 65536, n_heads = 1024, n_layers = 1024, context_length = 1048576,"
             " train = { batch_size = 65536, grad_accum = 65536 } }",
             "x.lua: model too large: emb_dim 65536, n_layers 1024, context_length 1048576, vocab_size 50257, "
             "train.batch_size 65536, train.max_length 1048576 and train.grad_accum 65536 make about");
  /* a vocabulary given after loading (gen --vocab-size) is bounded where
   * the sizes are derived */
  cfg_t v;
  ck_assert_int_eq(cfg_load_string("return { name = 'v', tokenizer = 'char', emb_dim = 16, n_heads = 2, n_layers = 1,"
                                   " context_length = 1024, train = { batch_size = 1024 } }",
                                   "v.lua", &v),
                   0);
  ck_assert_int_eq(cfg_set_vocab(&v, 1 << 30), 0);
  char *src = NULL, hash[65];
  size_t len;
  ck_assert_int_eq(gen_source(&v, "cpu", &src, &len, hash), -1);
  ck_assert_msg(strstr(util_errmsg(), "config 'v': model too large: emb_dim 16, n_layers 1, context_length 1024, "
                                      "vocab_size 1073741824") != NULL,
                "%s", util_errmsg());
  /* within the bounds but not this machine's memory: the memory check */
  cfg_t c;
  ck_assert_int_eq(cfg_load_string("return { name = 't', emb_dim = 16384, n_heads = 16, n_layers = 1024,"
                                   " context_length = 1024, train = { batch_size = 1 } }",
                                   "big.lua", &c),
                   0);
  ck_assert_int_eq(cfg_check_memory(&c), -1);
  ck_assert_msg(strstr(util_errmsg(), "big.lua: model too large: training needs") != NULL, "%s", util_errmsg());
}
END_TEST

/* ---- items 8, 10: the sandbox's limits --------------------------------------------- */

START_TEST(budget_not_escaped_by_pcall) {
  expect_err("while true do pcall(function() while true do end end) end return {}",
             "x.lua: config ran too long (");
  expect_err("local function f() pcall(f) pcall(f) end f() return {}", "x.lua: config ran too long (");
  /* error handlers (xpcall is not there; pcall in a loop of errors) */
  expect_err("local n = 0 while true do local ok = pcall(error, 'x') n = n + 1 end",
             "x.lua: config ran too long (");
  /* a to-be-closed variable's __close runs under the budget too */
  expect_err("do local x <close> = setmetatable({}, { __close = function() while true do end end }) end return {}",
             "x.lua: config ran too long (");
}
END_TEST

START_TEST(returned_table_read_raw) {
  cfg_t c;
  /* __pairs and __index that loop are not honoured: the raw fields count */
  ck_assert_msg(cfg_load_string("return setmetatable({ " HEAD " }, { __pairs = function() while true do end end,"
                                " __index = function() while true do end end, __len = function() while true do end end })",
                                "x.lua", &c) == 0,
                "%s", util_errmsg());
  ck_assert_int_eq(c.emb_dim, 64);
  ck_assert_int_eq(c.train.batch_size, 8); /* the default: no __index lookup of 'train' */
  /* nor on the train table, nor does __index invent a field */
  ck_assert_msg(cfg_load_string("return { " HEAD ", train = setmetatable({ batch_size = 3 }, { __index = function()"
                                " return 5 end, __pairs = function() while true do end end }) }",
                                "x.lua", &c) == 0,
                "%s", util_errmsg());
  ck_assert_int_eq(c.train.batch_size, 3);
  ck_assert_int_eq(c.train.grad_accum, 1);
  /* a value with a __tostring that loops, in a message */
  expect_err("return { " HEAD ", drop_rate = setmetatable({}, { __tostring = function() while true do end end }) }",
             "field 'drop_rate' must be a finite number (got table");
}
END_TEST

START_TEST(error_objects_not_converted) {
  expect_err("error(setmetatable({}, { __tostring = function() while true do end end }))",
             "x.lua: config raised an error that is not a string (table)");
  expect_err("error(setmetatable({}, { __tostring = function() return 'a lie' end }))",
             "config raised an error that is not a string (table)");
  expect_err("error(42)", "x.lua: config raised an error that is not a string (number)");
}
END_TEST

START_TEST(no_finalizers) {
  /* finalizers run with hooks off: a looping __gc would hang lua_close */
  expect_err("setmetatable({}, { __gc = function() while true do end end }) return {}",
             "x.lua: __gc metamethods are not allowed in configs");
  /* a __gc added after setmetatable never marks the object (Lua 5.4) */
  cfg_t c;
  ck_assert_msg(cfg_load_string("local mt = {} local t = setmetatable({}, mt) mt.__gc = function() while true do end end"
                                " return { " HEAD " }",
                                "x.lua", &c) == 0,
                "%s", util_errmsg());
}
END_TEST

START_TEST(memory_capped) {
  expect_err("local t = {} for i = 1, 100000 do t[i] = string.rep('x', 1 << 20) .. i end return t",
             "x.lua: uses more than 64 MB (memory limit)");
  expect_err("local s = string.rep('x', 1 << 28) return {}", "x.lua: uses more than 64 MB (memory limit)");
  expect_err("local t = {} for i = 1, 1 << 30 do t[i] = i end return {}", "x.lua: uses more than 64 MB (memory limit)");
  /* a config caught the error and went on: still the memory limit */
  expect_err("local t = {} local ok, e = pcall(function() for i = 1, 1 << 30 do t[i] = {} end end) t = nil error(e)",
             "x.lua: uses more than 64 MB (memory limit)");
  /* caught and not raised again: the config's own outcome counts */
  expect_err("local t = {} pcall(function() for i = 1, 1 << 30 do t[i] = {} end end) t = nil return 5",
             "x.lua: a config must return a table (got number)");
}
END_TEST

START_TEST(patterns_bounded) {
  expect_err("string.find(string.rep('a', 40), string.rep('a*', 30) .. 'b') return {}",
             "string.find: pattern too costly for a config (40-byte subject, 30 repetition items)");
  expect_err("local s = string.rep('a', 60) s:match(string.rep('a-', 20) .. 'b') return {}",
             "string.match: pattern too costly for a config (60-byte subject, 20 repetition items)");
  expect_err("for _ in ('x'):rep(5000):gmatch('x*x*x*y') do end return {}", "string.gmatch: pattern too costly");
  expect_err("local s = ('a'):rep(30) return { name = s:gsub('a?a?a?a?a?a?a?a?b', '') }", "string.gsub: pattern too costly");
  /* ordinary use still works, also on long subjects without repetitions */
  cfg_t c;
  ck_assert_msg(cfg_load_string("local s = ('x'):rep(100000) .. 'tail' local a, b = s:find('tail') "
                                "local n = ('gpt-small'):match('^(%a+)%-') "
                                "return { name = n .. a, emb_dim = 64, n_heads = 4, n_layers = 2, context_length = 32 }",
                                "x.lua", &c) == 0,
                "%s", util_errmsg());
  ck_assert_str_eq(c.name, "gpt100001");
  /* the string metatable is hidden, so the real string table stays out of reach */
  expect_err("getmetatable('').__index.format = nil return {}", "attempt to index a boolean value");
}
END_TEST

/* ---- item 17: the name stays one component under out/ ------------------------------- */

START_TEST(name_rule) {
  const char *bad[] = {"../../../escaped_name", "a/b", ".hidden", "..", "-rf", "a b", "x\\ny"};
  char src[400], out[200];
  cfg_t c;
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    snprintf(src, sizeof src, "return { name = '%s', emb_dim = 64, n_heads = 4, n_layers = 2, context_length = 32 }",
             bad[i]);
    ck_assert_int_eq(cfg_load_string(src, "x.lua", &c), 0); /* names stay free elsewhere */
    ck_assert_msg(cfg_default_out(&c, out, sizeof out) == -1, "accepted '%s'", bad[i]);
    ck_assert_str_eq(util_errmsg(), "x.lua: field 'name' must be 1 to 100 letters, digits, '.', '_' or '-', not "
                                    "starting with '.' or '-', to name the default output directory out/<name> "
                                    "(pass --out DIR to keep this name)");
  }
  char longname[102];
  memset(longname, 'a', 101);
  longname[101] = '\0';
  snprintf(src, sizeof src, "return { name = '%s', emb_dim = 64, n_heads = 4, n_layers = 2, context_length = 32 }",
           longname);
  ck_assert_int_eq(cfg_load_string(src, "x.lua", &c), 0);
  ck_assert_int_eq(cfg_default_out(&c, out, sizeof out), -1);
  longname[100] = '\0';
  snprintf(src, sizeof src, "return { name = '%s', emb_dim = 64, n_heads = 4, n_layers = 2, context_length = 32 }",
           longname);
  ck_assert_int_eq(cfg_load_string(src, "x.lua", &c), 0);
  ck_assert_int_eq(cfg_default_out(&c, out, sizeof out), 0);
  ck_assert_int_eq(cfg_load_string("return { name = 'gpt2-124m_v1.2', emb_dim = 64, n_heads = 4, n_layers = 2,"
                                   " context_length = 32 }",
                                   "x.lua", &c),
                   0);
  ck_assert_int_eq(cfg_default_out(&c, out, sizeof out), 0);
  ck_assert_str_eq(out, "out/gpt2-124m_v1.2");
  /* through the command line: refused at once, nothing created outside out/ */
  const char *cfgp = tu_write_str("esc.lua", "return { name = '../../esc-name', tokenizer = 'char', emb_dim = 16,"
                                             " n_heads = 2, n_layers = 1, context_length = 16 }");
  tu_run_result r;
  ck_assert_int_eq(tu_run(&r, NULL, "train --config '%s' --text '%s' --steps 1 --quiet", cfgp,
                          tu_src("data/the-verdict.txt")),
                   1);
  ck_assert_msg(strstr(r.err, "field 'name' must be 1 to 100 letters") != NULL, "%s", r.err);
  tu_run_free(&r);
  struct stat st;
  ck_assert_int_ne(stat("../esc-name", &st), 0);
}
END_TEST

/* ---- item 18: vocab_size in a char config is checked, not ignored ------------------- */

START_TEST(char_vocab_size_checked) {
  cfg_t c;
  ck_assert_int_eq(cfg_load_string("return { name = 't', tokenizer = 'char', vocab_size = 3, emb_dim = 16, n_heads = 2,"
                                   " n_layers = 1, context_length = 16 }",
                                   "v.lua", &c),
                   0);
  ck_assert_int_eq(cfg_set_vocab(&c, 62), -1);
  ck_assert_str_eq(util_errmsg(), "v.lua: field 'vocab_size' is 3 but the char tokenizer finds 62 in the text "
                                  "(leave it unset to derive it)");
  ck_assert_int_eq(cfg_set_vocab(&c, 3), 0);
  ck_assert_int_eq(cfg_load_string("return { name = 't', tokenizer = 'char', emb_dim = 16, n_heads = 2,"
                                   " n_layers = 1, context_length = 16 }",
                                   "v.lua", &c),
                   0);
  ck_assert_int_eq(cfg_set_vocab(&c, 62), 0);
  ck_assert_int_eq(c.vocab_size, 62);
  /* derived, not stated: another text may give another size */
  ck_assert_int_eq(cfg_set_vocab(&c, 70), 0);
  ck_assert_int_eq(c.vocab_size, 70);
}
END_TEST

/* ---- item 9: a checkpoint's config is data ------------------------------------------- */

START_TEST(lit_values) {
  lua_State *L = lx_new();
  ck_assert_ptr_nonnull(L);
  ck_assert_int_eq(lit_push(L, "64", 2, "--set emb_dim"), 0);
  ck_assert(lua_isinteger(L, -1) && lua_tointeger(L, -1) == 64);
  ck_assert_int_eq(lit_push(L, " -0x10 ", 7, "v"), 0);
  ck_assert(lua_isinteger(L, -1) && lua_tointeger(L, -1) == -16);
  ck_assert_int_eq(lit_push(L, "1.5e-3", 6, "v"), 0);
  ck_assert(!lua_isinteger(L, -1) && lua_tonumber(L, -1) == 1.5e-3);
  ck_assert_int_eq(lit_push(L, "-inf", 4, "v"), 0);
  ck_assert(lua_tonumber(L, -1) == -HUGE_VAL);
  ck_assert_int_eq(lit_push(L, "nan", 3, "v"), 0);
  ck_assert(lua_tonumber(L, -1) != lua_tonumber(L, -1));
  ck_assert_int_eq(lit_push(L, "9223372036854775808", 19, "v"), 0); /* as Lua: a float */
  ck_assert(!lua_isinteger(L, -1) && lua_tonumber(L, -1) == 9223372036854775808.0);
  const char *s = "'a\\n\\\"\\065\\x42\\u{48}\\z   c\\\nd\\0e'";
  ck_assert_int_eq(lit_push(L, s, strlen(s), "v"), 0);
  size_t n;
  const char *v = lua_tolstring(L, -1, &n);
  ck_assert_uint_eq(n, 11);
  ck_assert(memcmp(v, "a\n\"ABHc\nd\0e", 11) == 0);
  s = "return { x = { 1, 2, [4] = true; }, ['y z'] = false, [1.0] = 'one', -- note\n }";
  ck_assert_int_eq(lit_push(L, s, strlen(s), "v"), 0);
  ck_assert_int_eq(lua_getfield(L, -1, "x"), LUA_TTABLE);
  ck_assert_int_eq(lua_rawgeti(L, -1, 2), LUA_TNUMBER);
  ck_assert_int_eq(lua_rawgeti(L, -2, 3), LUA_TNIL);
  lua_pop(L, 2);
  ck_assert_int_eq(lua_rawgeti(L, -1, 4), LUA_TBOOLEAN);
  lua_pop(L, 2);
  ck_assert_int_eq(lua_rawgeti(L, -1, 1), LUA_TSTRING);
  lua_settop(L, 0);
  struct {
    const char *src, *msg;
  } bad[] = {
      {"", "v: line 1: expected a value near the end"},
      {"return {", "v: line 1: expected a value near the end"},
      {"return (function() while true do end end)()", "v: line 1: expected a value near '(function()'"},
      {"while true do end return {}", "v: line 1: expected a value near 'while'"},
      {"return {\n name = os.exit() }", "v: line 2: expected a value near 'os.exit()'"},
      {"return { name = 'x' .. 'y' }", "v: line 1: expected ',' or '}' near '..'"},
      {"return { a = 1, a = 2 }", "v: line 1: key 'a' appears twice"},
      {"return { 1, [1] = 2 }", "v: line 1: a key appears twice"},
      {"return { a = nil }", "expected a value near 'nil'"},
      {"return { a = ... }", "v: line 1: malformed number"},
      {"return { a = 1 + 2 }", "expected ',' or '}' near '+'"},
      {"return { a = [[long]] }", "expected a value near '[[long]]'"},
      {"return {} {}", "expected the end near '{}'"},
      {"'abc", "v: line 1: unfinished string"},
      {"'\\q'", "invalid escape sequence"},
      {"'\\300'", "decimal escape above 255"},
      {"0x", "malformed number"},
      {"{{{{{{{{{{{{{{{{{{{{}}}}}}}}}}}}}}}}}}}}", "tables nest too deep"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    ck_assert_msg(lit_push(L, bad[i].src, strlen(bad[i].src), "v") == -1, "parsed: %s", bad[i].src);
    ck_assert_msg(strstr(util_errmsg(), bad[i].msg) != NULL, "%s: message '%s' lacks '%s'", bad[i].src, util_errmsg(),
                  bad[i].msg);
    ck_assert_int_eq(lua_gettop(L), 0);
  }
  lua_close(L);
}
END_TEST

START_TEST(ckpt_config_roundtrip) {
  const char *files[] = {"configs/shakespeare-char.lua", "configs/gpt2-124m.lua", "configs/tiny-test.lua"};
  for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
    cfg_t a, b;
    ck_assert_int_eq(cfg_load_file(tu_src(files[i]), &a), 0);
    if (!a.vocab_size) ck_assert_int_eq(cfg_set_vocab(&a, 65), 0);
    char *s = cfg_serialize(&a);
    ck_assert_msg(cfg_load_data(s, "ck (config)", &b) == 0, "%s", util_errmsg());
    char *t = cfg_serialize(&b);
    ck_assert_str_eq(s, t); /* every field, to the last bit of the floats */
    free(s);
    free(t);
  }
}
END_TEST

START_TEST(ckpt_config_never_runs) {
  expect_data_err("while true do end return {}", "ck.safetensors (config): line 1: expected a value near 'while'");
  expect_data_err("return setmetatable({}, { __index = function() while true do end end })",
                  "expected a value near 'setmetatable'");
  expect_data_err("return {", "expected a value near the end");
  /* data that parses goes through the schema, bounds included */
  expect_data_err("return { name = 't', emb_dim = 64, n_heads = 4, n_layers = 1000000000, context_length = 32 }",
                  "ck.safetensors (config): field 'n_layers' must be at most 1024 (got 1000000000)");
  expect_data_err("return { name = 't', emb_dim = 64, n_heads = 4, n_layers = 2, context_length = 32, drop_rate = nan }",
                  "field 'drop_rate' must be a finite number (got ");
  expect_data_err("return { name = 't', emb_dim = 64, n_heads = 4, n_layers = 2, context_length = 32, train = 7 }",
                  "field 'train' must be a table (got 7)");
  expect_data_err("return { name = 't', emb_dim = 64, n_heads = 4, n_layers = 2, context_length = 32, x = { y = 1 } }",
                  "field 'x' is not a known config field");
  /* a large literal meets the memory cap */
  size_t n = 70u << 20;
  char *big = malloc(n + 32);
  ck_assert_ptr_nonnull(big);
  strcpy(big, "return { name = '");
  memset(big + 17, 'x', n);
  strcpy(big + 17 + n, "' }");
  expect_data_err(big, "ck.safetensors (config): uses more than 64 MB (memory limit)");
  free(big);
}
END_TEST

/* ---- the commands that read a checkpoint's config ---------------------------------- */

/* A copy of checkpoint `src` (and its moments) whose stored config is `config`. */
static const char *craft(const char *src, const char *name, const char *config) {
  static char out[4][1100];
  static int k;
  char *dst = out[k++ % 4];
  snprintf(dst, 1100, "%s/%s.safetensors", tu_tmpdir(), name);
  ckpt_st *st = ckpt_st_open(src);
  ck_assert_msg(st != NULL, "%s", util_errmsg());
  static const char *keys[] = {"format",   "gptc_format", "config", "tokenizer", "vocab",   "step",
                               "data_pos", "seed",        "best_val", "text_hash", "pair_tag"};
  ckpt_st_kv kv[16];
  int nk = 0;
  for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) {
    size_t len;
    const char *v = ckpt_st_meta(st, keys[i], &len);
    if (!strcmp(keys[i], "config")) v = config, len = strlen(config);
    if (v) kv[nk++] = (ckpt_st_kv){keys[i], v, len};
  }
  int n = ckpt_st_count(st);
  ckpt_st_out *t = calloc((size_t)n, sizeof *t);
  for (int i = 0; i < n; i++) {
    const ckpt_st_tensor *x = ckpt_st_at(st, i);
    float *d = malloc((x->numel ? x->numel : 1) * sizeof(float));
    ck_assert_int_eq(ckpt_st_read_f32(st, x, d), 0);
    t[i].name = x->name;
    t[i].ndim = x->ndim;
    memcpy(t[i].shape, x->shape, sizeof t[i].shape);
    t[i].data = d;
  }
  ck_assert_msg(ckpt_st_write(dst, kv, nk, t, n) == 0, "%s", util_errmsg());
  for (int i = 0; i < n; i++) free((void *)t[i].data);
  free(t);
  ckpt_st_close(st);
  /* the moments travel unchanged */
  char *so = ckpt_opt_path(src), *dopt = ckpt_opt_path(dst);
  char *data;
  size_t len;
  if (util_read_file(so, &data, &len) == 0) {
    ck_assert_int_eq(util_write_file_atomic(dopt, data, len), 0);
    free(data);
  }
  free(so);
  free(dopt);
  return dst;
}

static const char *trained(void) {
  static char dir[1100];
  if (dir[0]) return dir;
  snprintf(dir, sizeof dir, "%s/tiny", tu_tmpdir());
  tu_run_result r;
  ck_assert_msg(tu_run(&r, NULL, "train --config '%s' --out '%s' --steps 2 --quiet", tu_src("configs/tiny-test.lua"),
                       dir) == 0,
                "%s", r.err);
  tu_run_free(&r);
  return dir;
}

START_TEST(commands_read_ckpt_config_as_data) {
  char last[1200];
  snprintf(last, sizeof last, "%s/last.safetensors", trained());
  const char *loop = craft(last, "loop", "while true do end return {}");
  const char *verdict = tu_src("data/the-verdict.txt");
  char cmd[5][1400];
  snprintf(cmd[0], sizeof cmd[0], "sample --ckpt '%s' --tokens 4", loop);
  snprintf(cmd[1], sizeof cmd[1], "eval --ckpt '%s' --text '%s'", loop, verdict);
  snprintf(cmd[2], sizeof cmd[2], "export --ckpt '%s' -o '%s/loop.exe'", loop, tu_tmpdir());
  snprintf(cmd[3], sizeof cmd[3], "export-hf '%s' -o '%s/loop-hf'", loop, tu_tmpdir());
  snprintf(cmd[4], sizeof cmd[4], "train --config '%s' --out '%s/loop-init' --init '%s' --steps 1 --quiet",
           tu_src("configs/tiny-test.lua"), tu_tmpdir(), loop);
  for (int i = 0; i < 5; i++) {
    tu_run_result r;
    int code = tu_run(&r, NULL, "%s", cmd[i]);
    ck_assert_msg(code == 1, "%s: exit %d: %s", cmd[i], code, r.err);
    ck_assert_msg(strstr(r.err, "loop.safetensors") && strstr(r.err, "expected a value near 'while'"), "%s: %s", cmd[i],
                  r.err);
    tu_run_free(&r);
  }
  /* a huge model recorded in a checkpoint is refused before anything is allocated */
  const char *huge = craft(last, "huge", "return { name = 'h', tokenizer = 'char', vocab_size = 62, emb_dim = 16,"
                                         " n_heads = 2, n_layers = 1000000000, context_length = 16 }");
  tu_run_result r;
  ck_assert_int_eq(tu_run(&r, NULL, "sample --ckpt '%s' --tokens 4", huge), 1);
  ck_assert_msg(strstr(r.err, "field 'n_layers' must be at most 1024 (got 1000000000)"), "%s", r.err);
  tu_run_free(&r);
}
END_TEST

/* ---- item 15: --resume checks the stored config ------------------------------------- */

START_TEST(resume_checks_stored_config) {
  char last[1200], dir[1100], path[1200];
  snprintf(last, sizeof last, "%s/last.safetensors", trained());
  const struct {
    const char *config, *msg;
  } cases[] = {
      {"return {", "last.safetensors (config): line 1: expected a value near the end"},
      {"return { name = 'tiny-test', tokenizer = 'word', vocab_size = 62, emb_dim = 16, n_heads = 2, n_layers = 2,"
       " context_length = 16, qkv_bias = true }",
       "field 'tokenizer' is word in the checkpoint but char in the config"},
      {"return { name = 'tiny-test', tokenizer = 'char', vocab_size = 62, emb_dim = 16, n_heads = 2, n_layers = 2,"
       " context_length = 16, qkv_bias = false }",
       "field 'qkv_bias' is false in the checkpoint but true in the config"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    snprintf(dir, sizeof dir, "%s/resume-%zu", tu_tmpdir(), i);
    ck_assert_int_eq(util_mkdir_p(dir), 0);
    const char *c = craft(last, "crafted", cases[i].config);
    snprintf(path, sizeof path, "%s/last.safetensors", dir);
    ck_assert_int_eq(rename(c, path), 0);
    char *co = ckpt_opt_path(c), *po = ckpt_opt_path(path);
    rename(co, po);
    free(co);
    free(po);
    tu_run_result r;
    int code = tu_run(&r, NULL, "train --config '%s' --out '%s' --steps 3 --resume --quiet",
                      tu_src("configs/tiny-test.lua"), dir);
    ck_assert_msg(code == 1, "case %zu: exit %d: %s", i, code, r.err);
    ck_assert_msg(strstr(r.err, cases[i].msg) != NULL, "case %zu: '%s' lacks '%s'", i, r.err, cases[i].msg);
    tu_run_free(&r);
  }
  /* the unchanged checkpoint still resumes */
  snprintf(dir, sizeof dir, "%s/resume-ok", tu_tmpdir());
  ck_assert_int_eq(util_mkdir_p(dir), 0);
  char *src_cfg;
  {
    ckpt_meta m;
    ck_assert_int_eq(ckpt_load_meta(last, &m), 0);
    src_cfg = util_strdup(m.config_src);
    ckpt_meta_free(&m);
  }
  const char *c = craft(last, "same", src_cfg);
  free(src_cfg);
  snprintf(path, sizeof path, "%s/last.safetensors", dir);
  ck_assert_int_eq(rename(c, path), 0);
  char *co = ckpt_opt_path(c), *po = ckpt_opt_path(path);
  ck_assert_int_eq(rename(co, po), 0);
  free(co);
  free(po);
  tu_run_result r;
  ck_assert_msg(tu_run(&r, NULL, "train --config '%s' --out '%s' --steps 3 --resume --quiet",
                       tu_src("configs/tiny-test.lua"), dir) == 0,
                "%s", r.err);
  tu_run_free(&r);
}
END_TEST

int main(void) {
  Suite *s = suite_create("robust_cfg");
  TCase *tc = tcase_create("core");
  tcase_add_test(tc, int_fields_bounded);
  tcase_add_test(tc, cfg_geti_never_cuts);
  tcase_add_test(tc, size_products_bounded);
  tcase_add_test(tc, budget_not_escaped_by_pcall);
  tcase_add_test(tc, returned_table_read_raw);
  tcase_add_test(tc, error_objects_not_converted);
  tcase_add_test(tc, no_finalizers);
  tcase_add_test(tc, memory_capped);
  tcase_add_test(tc, patterns_bounded);
  tcase_add_test(tc, name_rule);
  tcase_add_test(tc, char_vocab_size_checked);
  tcase_add_test(tc, lit_values);
  tcase_add_test(tc, ckpt_config_roundtrip);
  tcase_add_test(tc, ckpt_config_never_runs);
  tcase_add_test(tc, commands_read_ckpt_config_as_data);
  tcase_add_test(tc, resume_checks_stored_config);
  suite_add_tcase(s, tc);
  return tu_main(s);
}
