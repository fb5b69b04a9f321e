/* gen_env: the bridge's entries for exported programs (gen.h): the q8 weight layout (gen/quant.lua), the
 * inference step as a program's unit (emit.infer_body in templates/export/model.c) and the environment the
 * templates/export/ files render with. quant.c and export.c hold the logic; this file moves the values. */
#include "gen.h"

#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#include "lx.h"
#include "util.h"

/* ---- the q8 layout ----------------------------------------------------------------- */

static size_t gen_q8_field(lua_State *L, int t, const char *k) {
  lua_getfield(L, t, k);
  size_t v = (size_t)lua_tointeger(L, -1);
  lua_pop(L, 1);
  return v;
}

int gen_q8_derive(const cfg_t *cfg, gen_q8_layout *q) {
  memset(q, 0, sizeof *q);
  lua_State *L = lx_new();
  if (!L) return -1;
  cfg_push(L, cfg);
  if (lx_call(L, GEN_MOD_QUANT, "for_cfg", 1, 1)) {
    lua_close(L);
    return util_err("q8 layout: %s", util_errmsg());
  }
  int Q = lua_gettop(L);
  q->bytes = gen_q8_field(L, Q, "bytes");
  q->panel = gen_q8_field(L, Q, "panel");
  q->block = gen_q8_field(L, Q, "block");
  q->n_kv = gen_q8_field(L, Q, "n_kv");
  q->n_scratch = gen_q8_field(L, Q, "n_scratch");
  lua_getfield(L, Q, "copies");
  int nc = (int)lua_rawlen(L, -1);
  lua_getfield(L, Q, "mats");
  int nm = (int)lua_rawlen(L, -1);
  q->copies = util_calloc((size_t)nc + 1, sizeof *q->copies, "q8 layout");
  q->mats = util_calloc((size_t)nm + 1, sizeof *q->mats, "q8 layout");
  if (!q->copies || !q->mats) {
    lua_close(L);
    gen_q8_layout_free(q);
    return -1;
  }
  for (int i = 0; i < nc; i++) {
    lua_rawgeti(L, Q + 1, i + 1);
    gen_q8_copy *c = &q->copies[i];
    c->dst = gen_q8_field(L, -1, "dst"), c->src = gen_q8_field(L, -1, "src"), c->n = gen_q8_field(L, -1, "n");
    lua_pop(L, 1);
  }
  for (int i = 0; i < nm; i++) {
    lua_rawgeti(L, Q + 2, i + 1);
    gen_q8_mat *m = &q->mats[i];
    m->src = gen_q8_field(L, -1, "src"), m->K = gen_q8_field(L, -1, "K"), m->N = gen_q8_field(L, -1, "N");
    m->sk = gen_q8_field(L, -1, "sk"), m->sn = gen_q8_field(L, -1, "sn");
    m->NB = gen_q8_field(L, -1, "NB"), m->NP = gen_q8_field(L, -1, "NP");
    m->s_off = gen_q8_field(L, -1, "s_off"), m->q_off = gen_q8_field(L, -1, "q_off");
    lua_pop(L, 1);
  }
  q->n_copies = nc;
  q->n_mats = nm;
  lua_close(L);
  return 0;
}

void gen_q8_layout_free(gen_q8_layout *q) {
  free(q->copies);
  free(q->mats);
  memset(q, 0, sizeof *q);
}

/* ---- the inference step ------------------------------------------------------------ */

int gen_infer_source(const cfg_t *cfg, const char *quant, int vec_bytes, const char *suffix, const char *flags,
                     char **src, size_t *len) {
  *src = NULL;
  lua_State *L = lx_new();
  if (!L) return -1;
  int rc = -1;
  cfg_push(L, cfg);
  lua_newtable(L);
  lua_pushstring(L, "float");
  lua_setfield(L, -2, "real");
  lua_pushinteger(L, vec_bytes);
  lua_setfield(L, -2, "vec_bytes");
  lua_pushstring(L, quant);
  lua_setfield(L, -2, "quant");
  if (lx_call(L, GEN_MOD_EMIT, "infer_body", 2, 1)) {
    util_err("the generator rejects this model: %s", util_errmsg());
    goto out;
  }
  int body = lua_gettop(L);
  lua_pushstring(L, "templates/export/model.c");
  lua_newtable(L);
  lua_pushvalue(L, body);
  lua_setfield(L, -2, "infer_src");
  lua_newtable(L);
  lua_pushstring(L, suffix);
  lua_setfield(L, -2, "suffix");
  if (flags) {
    lua_pushstring(L, flags);
    lua_setfield(L, -2, "flags");
  }
  lua_setfield(L, -2, "variant");
  lua_pushstring(L, GPTC_VERSION);
  lua_setfield(L, -2, "version");
  if (lx_call(L, GEN_MOD_TEMPLATE, "render", 2, 1)) goto out;
  size_t n;
  const char *s = lua_tolstring(L, -1, &n);
  if (!(*src = util_malloc(n + 1, "inference source"))) goto out;
  memcpy(*src, s, n + 1);
  *len = n;
  rc = 0;
out:
  lua_close(L);
  return rc;
}

/* ---- the export templates' environment --------------------------------------------- */

/* A state whose stack holds: 1 the environment table, 2 the current list item (nil before an append). */
struct gen_env {
  lua_State *L;
};

enum { GEN_ENV = 1, GEN_ENV_ITEM = 2 };

gen_env *gen_env_new(const cfg_t *cfg) {
  gen_env *e = util_calloc(1, sizeof *e, "template environment");
  if (!e) return NULL;
  if (!(e->L = lx_new())) {
    free(e);
    return NULL;
  }
  lua_State *L = e->L;
  lua_newtable(L); /* GEN_ENV */
  lua_pushnil(L);  /* GEN_ENV_ITEM */
  cfg_push(L, cfg);
  lua_pushvalue(L, -1);
  lua_setfield(L, GEN_ENV, "cfg");
  if (lx_call(L, GEN_MOD_SHAPES, "derive", 1, 1)) {
    gen_env_free(e);
    return NULL;
  }
  lua_setfield(L, GEN_ENV, "S");
  return e;
}

void gen_env_free(gen_env *e) {
  if (!e) return;
  lua_close(e->L);
  free(e);
}

void gen_env_str(gen_env *e, const char *key, const char *v) {
  lua_pushstring(e->L, v);
  lua_setfield(e->L, GEN_ENV, key);
}

void gen_env_int(gen_env *e, const char *key, long long v) {
  lua_pushinteger(e->L, (lua_Integer)v);
  lua_setfield(e->L, GEN_ENV, key);
}

void gen_env_bool(gen_env *e, const char *key, int v) {
  lua_pushboolean(e->L, v);
  lua_setfield(e->L, GEN_ENV, key);
}

void gen_env_append(gen_env *e, const char *list) {
  lua_State *L = e->L;
  if (lua_getfield(L, GEN_ENV, list) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_setfield(L, GEN_ENV, list);
  }
  lua_newtable(L);
  lua_pushvalue(L, -1);
  lua_rawseti(L, -3, (lua_Integer)lua_rawlen(L, -3) + 1);
  lua_replace(L, GEN_ENV_ITEM);
  lua_pop(L, 1);
}

void gen_env_item_str(gen_env *e, const char *key, const char *v) {
  if (!v) return;
  lua_pushstring(e->L, v);
  lua_setfield(e->L, GEN_ENV_ITEM, key);
}

void gen_env_item_int(gen_env *e, const char *key, long long v) {
  lua_pushinteger(e->L, (lua_Integer)v);
  lua_setfield(e->L, GEN_ENV_ITEM, key);
}

int gen_env_len(gen_env *e, const char *list) {
  lua_getfield(e->L, GEN_ENV, list);
  int n = lua_istable(e->L, -1) ? (int)lua_rawlen(e->L, -1) : 0;
  lua_pop(e->L, 1);
  return n;
}

int gen_env_render(gen_env *e, const char *name, char **src, size_t *len) {
  lua_State *L = e->L;
  *src = NULL;
  lua_pushstring(L, name);
  lua_pushvalue(L, GEN_ENV);
  if (lx_call(L, GEN_MOD_TEMPLATE, "render", 2, 1)) return -1;
  size_t n;
  const char *s = lua_tolstring(L, -1, &n);
  *src = util_malloc(n + 1, "rendered template");
  if (*src) {
    memcpy(*src, s, n + 1);
    *len = n;
  }
  lua_pop(L, 1);
  return *src ? 0 : -1;
}
