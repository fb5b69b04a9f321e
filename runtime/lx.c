/* lx: see lx.h. */
#include "lx.h"

#include <lauxlib.h>
#include <stdlib.h>
#include <lualib.h>
#include <string.h>
#include <time.h>

#include "embed.h"
#include "util.h"

#define LX_HOOK_STEP 1000

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

/* ---- limits: memory cap and instruction budget ---------------------------------
 *
 * Every state gets its own allocator with a hard cap, so a config that builds
 * a table of 1 MB strings fails at the cap instead of taking the machine.
 * The bookkeeping lives in an lx_limits allocated beside the state. It must
 * outlive every free lua_close makes, so the allocator frees it itself right
 * after the state's main block, which Lua 5.4 allocates first (osize is
 * LUA_TTHREAD) and frees last (close_state). */
typedef struct {
  size_t used, cap;
  void *main_block;
  long long budget, count; /* instructions; budget 0 = unlimited */
  double t0;               /* thread CPU seconds when the budget was armed */
  int spent, oom;          /* spent: 1 instructions, 2 time */
  char where[1200];
} lx_limits;

static void *lx_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  lx_limits *lim = ud;
  size_t old = ptr ? osize : 0;
  if (nsize == 0) {
    int last = ptr && ptr == lim->main_block;
    lim->used -= old;
    free(ptr);
    if (last) free(lim); /* the state is gone */
    return NULL;
  }
  if (nsize > old && nsize - old > lim->cap - lim->used) {
    lim->oom = 1;
    return NULL; /* Lua collects and retries, then raises "not enough memory" */
  }
  void *p = realloc(ptr, nsize);
  if (!p) {
    lim->oom = 1;
    return NULL;
  }
  lim->used = lim->used - old + nsize;
  if (!ptr && !lim->main_block) lim->main_block = p;
  return p;
}

static lx_limits *lx_lim(lua_State *L) {
  void *ud;
  lua_getallocf(L, &ud);
  return ud;
}

static double lx_cpu_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static const char *lx_spent_msg(int spent) {
  return spent == 2 ? "config ran too long (time limit)" : "config ran too long (instruction limit)";
}

/* The count hook. Instructions alone do not bound the time: a few of them
 * can raise a costly error each (pcall recursion at the C stack's limit), so
 * the CPU time counts too. Once either is spent the hook re-arms itself to
 * fire on every instruction, so a pcall that swallows the error gets another
 * at its caller's next instruction: no Lua code runs on past the budget. */
static void lx_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  lx_limits *lim = lx_lim(L);
  if (!lim->budget) return;
  if (!lim->spent) {
    lim->count += LX_HOOK_STEP;
    if (lim->count >= lim->budget) lim->spent = 1;
    else if (lx_cpu_seconds() - lim->t0 > LX_CFG_SECONDS) lim->spent = 2;
    else return;
    lua_sethook(L, lx_hook, LUA_MASKCOUNT, 1);
  }
  lua_pushfstring(L, "%s: %s", lim->where, lx_spent_msg(lim->spent));
  lua_error(L);
}

void lx_sandbox(lua_State *L, const char *where) {
  lx_limits *lim = lx_lim(L);
  snprintf(lim->where, sizeof lim->where, "%s", where);
  lim->cap = lim->used + LX_CFG_MEM;
  lim->budget = LX_CFG_INSTRUCTIONS;
  lim->count = 0;
  lim->t0 = lx_cpu_seconds();
  lua_sethook(L, lx_hook, LUA_MASKCOUNT, LX_HOOK_STEP);
}

/* An error outside any protected call (a bug, or memory running out while
 * a state is set up): say so on one line before Lua aborts. */
static int lx_panic(lua_State *L) {
  fprintf(stderr, "gptc: internal error in the Lua interpreter: %s\n",
          lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "(no message)");
  return 0;
}

lua_State *lx_new(void) {
  lx_limits *lim = calloc(1, sizeof *lim);
  if (lim) lim->cap = LX_GEN_MEM;
  lua_State *L = lim ? lua_newstate(lx_alloc, lim) : NULL;
  if (!L) {
    if (lim && !lim->main_block) free(lim);
    util_err("out of memory: cannot create the Lua interpreter");
    return NULL;
  }
  lua_atpanic(L, lx_panic);
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
  /* keep only the message: callers print one line; a number is not
   * converted either (lua_isstring would accept it and convert in place) */
  if (lua_type(L, 1) != LUA_TSTRING) lua_pushstring(L, "(error object is not a string)");
  return 1;
}

/* The message for a failed protected call: the limits speak first (a pcall
 * may have caught their error and raised another); the error object is
 * never converted (no __tostring). */
static void lx_error(lua_State *L, int status) {
  lx_limits *lim = lx_lim(L);
  /* a memory error caught by a pcall and raised again is a runtime error
   * holding Lua's message; a refusal that a collection then made good is no
   * error at all, so the flag alone does not decide */
  int mem = status == LUA_ERRMEM;
  if (!mem && lim->oom && lua_type(L, -1) == LUA_TSTRING) {
    size_t n, k = strlen("not enough memory");
    const char *m = lua_tolstring(L, -1, &n);
    mem = n >= k && !strcmp(m + n - k, "not enough memory"); /* with or without a position */
  }
  if (lim->spent) util_err("%s: %s", lim->where, lx_spent_msg(lim->spent));
  else if (mem) util_err("%s: uses more than %zu MB (memory limit)", lim->where[0] ? lim->where : "generator",
                              (lim->budget ? (size_t)LX_CFG_MEM : lim->cap) >> 20);
  else util_err("%s", lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "(error object is not a string)");
}

int lx_pcall(lua_State *L, int nargs, int nres) {
  int base = lua_gettop(L) - nargs; /* the function's slot */
  lua_pushcfunction(L, lx_traceback);
  lua_insert(L, base);
  int status = lua_pcall(L, nargs, nres, base);
  if (status != LUA_OK) {
    lx_error(L, status);
    lua_settop(L, base - 1);
    return -1;
  }
  lua_remove(L, base); /* the handler */
  return 0;
}

int lx_call(lua_State *L, const char *module, const char *fn, int nargs, int nres) {
  int base = lua_gettop(L) - nargs;
  lua_getglobal(L, "require");
  lua_pushstring(L, module);
  int status = lua_pcall(L, 1, 1, 0);
  if (status != LUA_OK) {
    lx_error(L, status);
    if (!lx_lim(L)->spent && status != LUA_ERRMEM) {
      char msg[2048];
      snprintf(msg, sizeof msg, "%s", util_errmsg());
      util_err("generator: %s", msg);
    }
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
  lua_insert(L, base + 1); /* fn, args... */
  return lx_pcall(L, nargs, nres);
}
