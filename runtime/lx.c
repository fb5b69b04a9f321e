/* lx: see lx.h. */
#include "lx.h"

#include <lauxlib.h>
#include <stdlib.h>
#include <lualib.h>
#include <string.h>

#include "embed.h"
#include "util.h"

static int lx_read(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  const char *data;
  size_t len;
  int owned;
  if (embed_get(name, &data, &len, &owned)) return luaL_error(L, "%s", util_errmsg());
  lua_pushlstring(L, data, len);
  if (owned) free((void *)data);
  return 1;
}

/* package.searchers entry: module "a.b" -> gen/a/b.lua */
static int lx_searcher(lua_State *L) {
  const char *mod = luaL_checkstring(L, 1);
  char name[512];
  snprintf(name, sizeof name, "gen/%s.lua", mod);
  for (char *p = name + 4; *p; p++)
    if (*p == '.' && strcmp(p, ".lua") != 0) *p = '/';
  const char *data;
  size_t len;
  int owned;
  if (embed_get(name, &data, &len, &owned)) {
    lua_pushfstring(L, "no embedded file '%s'", name);
    return 1;
  }
  char chunk[600];
  snprintf(chunk, sizeof chunk, "@%s", name);
  int rc = luaL_loadbuffer(L, data, len, chunk);
  if (owned) free((void *)data);
  if (rc != LUA_OK) return lua_error(L);
  lua_pushstring(L, name);
  return 2;
}

/* gptc.closest(name, {candidates}) -> the candidate util_closest picks, or nil */
static int lx_closest(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  int n = (int)luaL_len(L, 2);
  if (n > 256) n = 256;
  const char *cands[256];
  for (int i = 0; i < n; i++) {
    lua_rawgeti(L, 2, i + 1);
    cands[i] = lua_tostring(L, -1); /* the table keeps the strings alive */
    lua_pop(L, 1);
    if (!cands[i]) return luaL_error(L, "gptc.closest: candidate %d is not a string", i + 1);
  }
  const char *best = util_closest(name, cands, n);
  if (best) lua_pushstring(L, best);
  else lua_pushnil(L);
  return 1;
}

lua_State *lx_new(void) {
  lua_State *L = luaL_newstate();
  if (!L) {
    util_err("out of memory: cannot create the Lua interpreter");
    return NULL;
  }
  luaL_openlibs(L);
  /* searchers: keep the preload searcher, replace file searchers with ours */
  lua_getglobal(L, "package");
  lua_newtable(L);
  lua_getfield(L, -2, "searchers");
  lua_rawgeti(L, -1, 1);
  lua_rawseti(L, -3, 1);
  lua_pop(L, 1);
  lua_pushcfunction(L, lx_searcher);
  lua_rawseti(L, -2, 2);
  lua_setfield(L, -2, "searchers");
  lua_pop(L, 1);

  lua_newtable(L);
  lua_pushcfunction(L, lx_read);
  lua_setfield(L, -2, "read");
  lua_pushcfunction(L, lx_closest);
  lua_setfield(L, -2, "closest");
  lua_pushstring(L, GPTC_VERSION);
  lua_setfield(L, -2, "version");
  lua_pushinteger(L, (lua_Integer)util_mem_total());
  lua_setfield(L, -2, "mem_total");
  lua_setglobal(L, "gptc");
  return L;
}

static int lx_traceback(lua_State *L) {
  /* keep only the message: callers print one line */
  if (!lua_isstring(L, 1)) lua_pushstring(L, "(error object is not a string)");
  return 1;
}

int lx_call(lua_State *L, const char *module, const char *fn, int nargs, int nres) {
  int base = lua_gettop(L) - nargs;
  lua_pushcfunction(L, lx_traceback);
  lua_getglobal(L, "require");
  lua_pushstring(L, module);
  if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
    util_err("generator: %s", lua_tostring(L, -1));
    lua_settop(L, base);
    return -1;
  }
  lua_getfield(L, -1, fn);
  lua_remove(L, -2);
  if (!lua_isfunction(L, -1)) {
    util_err("generator: %s.%s is not a function", module, fn);
    lua_settop(L, base);
    return -1;
  }
  /* stack: args..., handler, fn -> handler, fn, args... */
  lua_insert(L, base + 1);
  lua_insert(L, base + 1);
  if (lua_pcall(L, nargs, nres, base + 1) != LUA_OK) {
    util_err("%s", lua_tostring(L, -1));
    lua_settop(L, base);
    return -1;
  }
  lua_remove(L, base + 1); /* the handler */
  return 0;
}
