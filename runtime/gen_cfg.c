/* gen_cfg: the config's side of the Lua bridge (gen.h): runs a config and its --set overrides through
 * gen/config.lua in a sandboxed state, copies the validated table into a cfg_t and pushes a cfg_t back as
 * the generator's input table (cfg_push). cfg.c reads files and splits --set; nothing here calls it. */
#include "gen.h"

#include <lauxlib.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "json.h"
#include "lit.h"
#include "lx.h"
#include "util.h"

/* gen/config.lua bounds every integer field well inside int; this is the
 * second line: a value that would not fit is an error, never cut. `bad`
 * collects the first failure for gen_cfg_from_table. */
static int gen_cfg_geti(lua_State *L, int t, const char *k, const char *where, int *bad) {
  lua_pushstring(L, k);
  lua_rawget(L, t);
  lua_Integer v = lua_isinteger(L, -1) ? lua_tointeger(L, -1) : 0;
  lua_pop(L, 1);
  if (v < INT_MIN || v > INT_MAX) {
    if (!*bad) util_err("%s: field '%s' is %lld, out of range (at most %d)", where, k, (long long)v, INT_MAX);
    *bad = 1;
    return 0;
  }
  return (int)v;
}

static double gen_cfg_getn(lua_State *L, int t, const char *k) {
  lua_getfield(L, t, k);
  double v = lua_tonumber(L, -1);
  lua_pop(L, 1);
  return v;
}

static int gen_cfg_getb(lua_State *L, int t, const char *k) {
  lua_getfield(L, t, k);
  int v = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return v;
}

static void gen_cfg_gets(lua_State *L, int t, const char *k, char *out, size_t n) {
  lua_getfield(L, t, k);
  const char *s = lua_tostring(L, -1);
  snprintf(out, n, "%s", s ? s : "");
  lua_pop(L, 1);
}

/* Resolves `p` against the directory of the config file. */
static void gen_cfg_resolve(const char *cfgpath, const char *p, char *out, size_t n) {
  const char *slash = cfgpath ? strrchr(cfgpath, '/') : NULL;
  if (p[0] == '/' || !slash) snprintf(out, n, "%s", p);
  else snprintf(out, n, "%.*s/%s", (int)(slash - cfgpath), cfgpath, p);
}

static int gen_cfg_from_table(lua_State *L, int t, const char *path, cfg_t *c) {
  memset(c, 0, sizeof *c);
  int bad = 0;
  const char *where = path ? path : "config";
  snprintf(c->path, sizeof c->path, "%s", path ? path : "");
  gen_cfg_gets(L, t, "name", c->name, sizeof c->name);
  char buf[16];
  gen_cfg_gets(L, t, "tokenizer", buf, sizeof buf);
  c->tokenizer = !strcmp(buf, "char") ? CFG_TOK_CHAR : !strcmp(buf, "word") ? CFG_TOK_WORD : CFG_TOK_GPT2;
  gen_cfg_gets(L, t, "precision", buf, sizeof buf);
  c->precision = !strcmp(buf, "bf16") ? CFG_BF16 : CFG_FP32;
  lua_getfield(L, t, "data");
  if (lua_istable(L, -1)) {
    int n = (int)lua_rawlen(L, -1);
    if (n > CFG_MAX_DATA) {
      lua_pop(L, 1);
      return util_err("%s: field 'data' lists %d paths; at most %d are allowed", path, n, CFG_MAX_DATA);
    }
    for (int i = 1; i <= n; i++) {
      lua_rawgeti(L, -1, i);
      gen_cfg_resolve(path, lua_tostring(L, -1), c->data[c->n_data++], sizeof c->data[0]);
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 1);
  c->vocab_size = gen_cfg_geti(L, t, "vocab_size", where, &bad);
  c->vocab_stated = c->vocab_size > 0;
  /* the listed fields (cfg.h): dst->f from table tab's field "f" */
#define CFG_GET_I(tab, f) gen_cfg_geti(L, tab, f, where, &bad)
#define CFG_GET_N(tab, f) gen_cfg_getn(L, tab, f)
#define CFG_GET_B(tab, f) gen_cfg_getb(L, tab, f)
#define CFG_READ_MODEL(kind, f) c->f = CFG_GET_##kind(t, #f);
#define CFG_READ_TRAIN(kind, f) r->f = CFG_GET_##kind(tr, #f);
  CFG_MODEL_FIELDS(CFG_READ_MODEL)
  lua_getfield(L, t, "train");
  int tr = lua_gettop(L);
  cfg_train *r = &c->train;
  CFG_TRAIN_FIELDS_1(CFG_READ_TRAIN)
  gen_cfg_gets(L, tr, "sampling", buf, sizeof buf);
  r->sampling = !strcmp(buf, "random") ? CFG_SAMPLE_RANDOM : CFG_SAMPLE_WINDOWS;
  lua_getfield(L, tr, "seed");
  r->seed = (uint64_t)lua_tointeger(L, -1);
  lua_pop(L, 1);
  CFG_TRAIN_FIELDS_2(CFG_READ_TRAIN)
  lua_pop(L, 1);
  return bad ? -1 : 0;
}

/* A bare word: what a user types for a string field (--set precision=bf16,
 * --set data=corpus/a.txt). Nothing that reads as Lua code (calls,
 * operators, braces, quotes) passes, so such a value is refused rather
 * than taken for a string that looks like it might run. */
static int gen_cfg_bare_word(const char *v) {
  if (!*v || !strcmp(v, "nil")) return 0;
  for (const char *p = v; *p; p++)
    if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '_' ||
          *p == '.' || *p == '/' || *p == '-' || *p == ':'))
      return 0;
  return 1;
}

/* Pushes the value of one --set: a Lua literal read as data (lit.c: a
 * number, a quoted string, true or false), or else a bare word as a
 * string. Tables are refused: the only list field is `data`, and it takes
 * one path here. A relative --set data path is the user's, so it is made
 * absolute against the working directory (the config's own paths resolve
 * against the config file's directory). */
static int gen_cfg_set_push(lua_State *L, const char *field, const char *v) {
  char where[300];
  snprintf(where, sizeof where, "--set %s", field);
  int top = lua_gettop(L);
  if (!strcmp(v, "nil"))
    return util_err("--set %s: nil cannot be set from the command line (leave the field out of the config to get its "
                    "default)", field);
  if (strchr(v, '{'))
    return util_err("--set %s: tables are not accepted (%s)", field,
                    !strcmp(field, "data") ? "give one path: --set data=FILE" : "set one field: --set train.lr=3e-4");
  if (lit_push(L, v, strlen(v), where) == 0) {
    util_errclear();
  } else if (gen_cfg_bare_word(v)) {
    lua_settop(L, top);
    lua_pushstring(L, v);
  } else {
    lua_settop(L, top);
    return util_err("--set %s: value '%.200s' is not a number, a quoted string, true, false or a bare word "
                    "(letters, digits, '_', '.', '/', '-', ':'); --set values are data and never run", field, v);
  }
  if (!strcmp(field, "data") && lua_type(L, -1) == LUA_TSTRING) {
    const char *p = lua_tostring(L, -1);
    char cwd[PATH_MAX];
    if (p[0] && p[0] != '/' && getcwd(cwd, sizeof cwd)) {
      lua_pushfstring(L, "%s/%s", cwd, p);
      lua_remove(L, -2);
    }
  }
  return 0;
}

/* Runs config source `src` in a sandboxed state with the overrides (config.lua's load_set when there are any)
 * and leaves the validated table on L's top; src NULL reads the overrides only. */
static int gen_cfg_load_into(lua_State *L, const char *src, const char *name, const char *const *fields,
                             const char *const *values, int n_sets) {
  if (src) {
    lua_pushstring(L, src);
    lua_pushstring(L, name);
  }
  if (n_sets == 0) return src ? lx_call(L, GEN_MOD_CONFIG, "load", 2, 1) : 0;
  lua_createtable(L, n_sets, 0);
  for (int i = 0; i < n_sets; i++) {
    lua_createtable(L, 2, 0);
    lua_pushstring(L, fields[i]);
    lua_rawseti(L, -2, 1);
    if (gen_cfg_set_push(L, fields[i], values[i])) return -1;
    lua_rawseti(L, -2, 2);
    lua_rawseti(L, -2, i + 1);
  }
  return src ? lx_call(L, GEN_MOD_CONFIG, "load_set", 3, 1) : 0;
}

int gen_cfg_load(const char *src, const char *name, const char *const *fields, const char *const *values, int n_sets,
                 cfg_t *cfg) {
  lua_State *L = lx_new();
  if (!L) return -1;
  lx_sandbox(L, name);
  int rc = gen_cfg_load_into(L, src, name, fields, values, n_sets);
  if (rc == 0 && src) rc = gen_cfg_from_table(L, lua_gettop(L), name, cfg);
  lua_close(L);
  return rc;
}

int gen_cfg_field_json(const cfg_t *cfg, const char *field, char *out, size_t cap) {
  lua_State *L = lx_new();
  if (!L) return -1;
  cfg_push(L, cfg);
  const char *dot = strchr(field, '.');
  if (dot) {
    lua_pushlstring(L, field, (size_t)(dot - field));
    lua_rawget(L, -2);
    if (!lua_istable(L, -1)) {
      lua_close(L);
      return util_err("config field '%s' is not known", field);
    }
    field = dot + 1;
  }
  lua_getfield(L, -1, field);
  int rc = 0;
  if (lua_isinteger(L, -1)) snprintf(out, cap, "%lld", (long long)lua_tointeger(L, -1));
  else if (lua_type(L, -1) == LUA_TNUMBER) { /* the shortest form that reads back: 0.003, not 0.0030000000000000001 */
    util_buf b = {0};
    rc = json_write_num(&b, lua_tonumber(L, -1), field);
    if (!rc) snprintf(out, cap, "%.*s", (int)b.len, b.data);
    util_buf_free(&b);
  } else if (lua_isboolean(L, -1)) snprintf(out, cap, "%s", lua_toboolean(L, -1) ? "true" : "false");
  else if (lua_type(L, -1) == LUA_TSTRING) {
    util_buf b = {0};
    size_t n;
    const char *s = lua_tolstring(L, -1, &n);
    rc = json_write_str(&b, s, n, field);
    if (!rc) snprintf(out, cap, "%.*s", (int)b.len, b.data);
    util_buf_free(&b);
  } else rc = util_err("config field '%s' is not known", field);
  lua_close(L);
  return rc;
}

/* A checkpoint is data: its config is parsed as a table literal (lit.c),
 * never run, and then checked by the same schema as a config file. Running
 * it in the sandbox would be bounded too, but a checkpoint comes from
 * anywhere and only ever holds what cfg_serialize wrote, so the interpreter
 * gets no chance to run anything a crafted file brings. The validation's
 * own state still has the config limits. */
int gen_cfg_load_data(const char *src, const char *name, cfg_t *cfg) {
  lua_State *L = lx_new();
  if (!L) return -1;
  lx_sandbox(L, name);
  int rc = lit_push(L, src, strlen(src), name);
  if (rc == 0) {
    lua_pushstring(L, name);
    rc = lx_call(L, GEN_MOD_CONFIG, "validate", 2, 1);
  }
  if (rc == 0) rc = gen_cfg_from_table(L, lua_gettop(L), name, cfg);
  lua_close(L);
  return rc;
}

/* The struct -> Lua copy every entry starts from (lx.h). It keeps the cfg_ name it had in cfg.c: the tests that
 * drive the generator's Lua directly call it. */
void cfg_push(lua_State *L, const cfg_t *c) {
  lua_newtable(L);
  lua_pushstring(L, c->name);
  lua_setfield(L, -2, "name");
  lua_pushstring(L, cfg_tokenizer_name(c->tokenizer));
  lua_setfield(L, -2, "tokenizer");
  lua_pushstring(L, c->precision == CFG_BF16 ? "bf16" : "fp32");
  lua_setfield(L, -2, "precision");
#define CFG_PUSHI(tab, f)        \
  lua_pushinteger(L, (tab)->f); \
  lua_setfield(L, -2, #f)
#define CFG_PUSHN(tab, f)       \
  lua_pushnumber(L, (tab)->f); \
  lua_setfield(L, -2, #f)
#define CFG_PUSHB(tab, f)        \
  lua_pushboolean(L, (tab)->f); \
  lua_setfield(L, -2, #f)
  if (c->vocab_size > 0) {
    CFG_PUSHI(c, vocab_size);
  }
#define CFG_PUSH_MODEL(kind, f) CFG_PUSH##kind(c, f);
#define CFG_PUSH_TRAIN(kind, f) CFG_PUSH##kind(r, f);
  CFG_MODEL_FIELDS(CFG_PUSH_MODEL)
  lua_newtable(L);
  const cfg_train *r = &c->train;
  CFG_TRAIN_FIELDS_1(CFG_PUSH_TRAIN)
  lua_pushstring(L, r->sampling == CFG_SAMPLE_RANDOM ? "random" : "windows");
  lua_setfield(L, -2, "sampling");
  lua_pushinteger(L, (lua_Integer)r->seed);
  lua_setfield(L, -2, "seed");
  CFG_TRAIN_FIELDS_2(CFG_PUSH_TRAIN)
  lua_setfield(L, -2, "train");
}

int gen_cfg_check_memory(const cfg_t *cfg) {
  lua_State *L = lx_new();
  if (!L) return -1;
  cfg_push(L, cfg);
  lua_pushstring(L, cfg->path[0] ? cfg->path : cfg->name);
  int rc = lx_call(L, GEN_MOD_CONFIG, "check_memory", 2, 0);
  lua_close(L);
  return rc;
}

char *gen_cfg_serialize(const cfg_t *cfg) {
  lua_State *L = lx_new();
  if (!L) return NULL;
  cfg_push(L, cfg);
  char *out = NULL;
  if (lx_call(L, GEN_MOD_CONFIG, "serialize", 1, 1) == 0) out = util_strdup(lua_tostring(L, -1));
  lua_close(L);
  return out;
}

char *gen_cfg_describe(void) {
  lua_State *L = lx_new();
  if (!L) return NULL;
  char *out = NULL;
  if (lx_call(L, GEN_MOD_CONFIG, "describe", 0, 1) == 0) out = util_strdup(lua_tostring(L, -1));
  lua_close(L);
  return out;
}
