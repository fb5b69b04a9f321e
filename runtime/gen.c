/* gen: see gen.h. The Lua side (gen/shapes.lua, gen/cpu/emit.lua, gen/cuda/emit.lua, gen/bench.lua, gen/tune.lua)
 * does the work; this file moves configs in and tensors and sources out (gen_cfg.c: configs; gen_env.c: the q8
 * layout, the inference step and the export templates). */
#include "gen.h"

#include <lauxlib.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_bf16.h"
#include "lx.h"
#include "schedfile.h"
#include "util.h"

/* the generator's width is the host's: a fact of the machine (util.c), which
 * the tuned-schedule file's key (schedfile.c) needs too */
int gen_vec_bytes(void) { return util_vec_bytes(); }

static int gen_int_field(lua_State *L, int t, const char *k) {
  lua_getfield(L, t, k);
  int v = (int)lua_tointeger(L, -1);
  lua_pop(L, 1);
  return v;
}

int gen_tensors(const cfg_t *cfg, gptc_tensor **tensors, int *n, size_t *n_params) {
  *tensors = NULL;
  *n = 0;
  lua_State *L = lx_new();
  if (!L) return -1;
  cfg_push(L, cfg);
  if (lx_call(L, GEN_MOD_SHAPES, "derive", 1, 1)) {
    lua_close(L);
    return -1;
  }
  int S = lua_gettop(L);
  lua_getfield(L, S, "n_params");
  *n_params = (size_t)lua_tointeger(L, -1);
  lua_pop(L, 1);
  lua_getfield(L, S, "tensors");
  int list = lua_gettop(L);
  int count = (int)lua_rawlen(L, list);
  gptc_tensor *ts = util_calloc((size_t)count, sizeof *ts, "tensor table");
  if (!ts) {
    lua_close(L);
    return -1;
  }
  for (int i = 0; i < count; i++) {
    lua_rawgeti(L, list, i + 1);
    int t = lua_gettop(L);
    lua_getfield(L, t, "name");
    ts[i].name = util_strdup(lua_tostring(L, -1));
    lua_pop(L, 1);
    ts[i].ndim = gen_int_field(L, t, "ndim");
    lua_getfield(L, t, "sizes");
    for (int j = 0; j < ts[i].ndim && j < 2; j++) {
      lua_rawgeti(L, -1, j + 1);
      ts[i].shape[j] = (int)lua_tointeger(L, -1);
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
    lua_getfield(L, t, "offset");
    ts[i].offset = (size_t)lua_tointeger(L, -1);
    lua_getfield(L, t, "numel");
    ts[i].numel = (size_t)lua_tointeger(L, -1);
    lua_getfield(L, t, "decay");
    ts[i].decay = lua_toboolean(L, -1);
    lua_getfield(L, t, "init_std");
    ts[i].init_std = (float)lua_tonumber(L, -1);
    lua_getfield(L, t, "init_value");
    ts[i].init_value = (float)lua_tonumber(L, -1);
    lua_settop(L, list);
    if (!ts[i].name) {
      gen_tensors_free(ts, i);
      lua_close(L);
      return util_err("out of memory: tensor names");
    }
  }
  lua_close(L);
  *tensors = ts;
  *n = count;
  return 0;
}

int gen_n_params(const cfg_t *cfg, size_t *n_params, size_t *n_params_real) {
  lua_State *L = lx_new();
  if (!L) return -1;
  cfg_push(L, cfg);
  int rc = lx_call(L, GEN_MOD_SHAPES, "derive", 1, 1);
  static const char *const key[2] = {"n_params", "n_params_real"};
  size_t *out[2] = {n_params, n_params_real};
  for (int i = 0; i < 2 && rc == 0; i++) {
    lua_getfield(L, -1, key[i]);
    if (!lua_isinteger(L, -1)) rc = util_err("generator: shapes.derive gave no %s", key[i]);
    else if (out[i]) *out[i] = (size_t)lua_tointeger(L, -1);
    lua_pop(L, 1);
  }
  lua_close(L);
  return rc;
}

char *gen_summary(const cfg_t *cfg) {
  lua_State *L = lx_new();
  if (!L) return NULL;
  cfg_push(L, cfg);
  char *s = NULL;
  if (lx_call(L, GEN_MOD_EMIT, "summary", 1, 1) == 0) s = util_strdup(lua_tostring(L, -1));
  lua_close(L);
  return s;
}

void gen_tensors_free(gptc_tensor *tensors, int n) {
  if (!tensors) return;
  for (int i = 0; i < n; i++) free((char *)tensors[i].name);
  free(tensors);
}

void gen_host_opts(lua_State *L) {
  lua_pushstring(L, "float");
  lua_setfield(L, -2, "real");
  lua_pushinteger(L, gen_vec_bytes());
  lua_setfield(L, -2, "vec_bytes");
  lua_pushinteger(L, omp_get_num_procs());
  lua_setfield(L, -2, "threads");
  /* the bf16 GEMM path; a GPTC_BF16_PATH the CPU cannot run is the
   * generator's error, raised only for a bf16 model */
  const char *bf16 = cpu_bf16_path();
  lua_pushstring(L, bf16 ? bf16 : util_errmsg());
  lua_setfield(L, -2, bf16 ? "bf16_path" : "bf16_error");
}

static int gen_profile_on;
void gen_set_profile(int on) { gen_profile_on = on; }

/* The C emitters' options: the host's (gen_host_opts) and the GEMM
 * schedules `gptc tune` measured on it (schedfile.h), by instance name. A
 * file that cannot be read leaves the heuristics, with a warning. */
static void gen_cpu_opts(lua_State *L, const void *arg) {
  (void)arg;
  gen_host_opts(L);
  if (gen_profile_on) {
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, "profile");
  }
  sched_file f;
  if (sched_load(&f)) {
    fprintf(stderr, "gptc: %s (the GEMMs keep their heuristic schedules)\n", util_errmsg());
    return;
  }
  lua_newtable(L);
  int n = 0;
  for (int i = 0; i < f.n; i++)
    if (strcmp(f.e[i].sched, "-")) {
      lua_pushstring(L, f.e[i].sched);
      lua_setfield(L, -2, f.e[i].name);
      n++;
    }
  if (n) {
    lua_setfield(L, -2, "schedules");
    lua_pushfstring(L, "tuned, %s", f.path);
    lua_setfield(L, -2, "schedule_source");
  } else {
    lua_pop(L, 1);
  }
  sched_free(&f);
}

/* header .. body for `module`'s fn ("body", or "split", which also returns
 * the units table); -1 with util_err and L closed. */
static int gen_render_in(lua_State *L, const cfg_t *cfg, const char *module, const char *fn, gen_opts_fn *fill,
                         const void *arg, char **src, size_t *len, char hash[65]) {
  *src = NULL;
  *len = 0;
  cfg_push(L, cfg);
  int cfg_idx = lua_gettop(L);
  lua_newtable(L);
  fill(L, arg);
  int opts_idx = lua_gettop(L);

  int split = !strcmp(fn, "split");
  lua_pushvalue(L, cfg_idx);
  lua_pushvalue(L, opts_idx);
  if (lx_call(L, module, fn, 2, split ? 2 : 1)) {
    lua_close(L);
    return -1;
  }
  if (split) lua_insert(L, -2); /* units below the body */
  size_t body_len;
  const char *body = lua_tolstring(L, -1, &body_len);
  util_sha256_hex(body, body_len, hash);

  lua_pushvalue(L, cfg_idx);
  lua_pushstring(L, hash);
  lua_pushvalue(L, opts_idx);
  if (lx_call(L, module, "header", 3, 1)) {
    lua_close(L);
    return -1;
  }
  size_t head_len;
  const char *head = lua_tolstring(L, -1, &head_len);
  char *out = util_malloc(head_len + body_len + 1, "generated source");
  if (!out) {
    lua_close(L);
    return -1;
  }
  memcpy(out, head, head_len);
  memcpy(out + head_len, body, body_len);
  out[head_len + body_len] = 0;
  *src = out;
  *len = head_len + body_len;
  return 0; /* with "split", the stack ends units, body, head */
}

int gen_render(const cfg_t *cfg, const char *module, gen_opts_fn *fill, const void *arg, char **src, size_t *len,
               char hash[65]) {
  lua_State *L = lx_new();
  if (!L) return -1;
  if (gen_render_in(L, cfg, module, "body", fill, arg, src, len, hash)) return -1;
  lua_close(L);
  return 0;
}

int gen_source(const cfg_t *cfg, const char *device, char **src, size_t *len, char hash[65]) {
  *src = NULL;
  *len = 0;
  if (strcmp(device, "cpu") != 0) {
    if (!strcmp(device, "cuda")) return gen_cuda_source(cfg, NULL, src, len, hash);
    return util_err("device '%s' is not known (use cpu or cuda)", device);
  }
  return gen_render(cfg, GEN_MOD_EMIT, gen_cpu_opts, NULL, src, len, hash);
}

int gen_bench_source(const cfg_t *cfg, char **src, size_t *len, char hash[65]) {
  return gen_render(cfg, GEN_MOD_BENCH, gen_cpu_opts, NULL, src, len, hash);
}

void gen_units_free(gen_unit *units, int n) {
  if (!units) return;
  for (int i = 0; i < n; i++) {
    free(units[i].name);
    free(units[i].src);
  }
  free(units);
}

int gen_units(const cfg_t *cfg, char **src, size_t *len, char hash[65], gen_unit **units, int *n) {
  return gen_units_render(cfg, GEN_MOD_EMIT, gen_cpu_opts, NULL, 1, src, len, hash, units, n);
}

int gen_units_render(const cfg_t *cfg, const char *module, gen_opts_fn *fill, const void *arg, int glue_header,
                     char **src, size_t *len, char hash[65], gen_unit **units, int *n) {
  *units = NULL;
  *n = 0;
  lua_State *L = lx_new();
  if (!L) return -1;
  if (gen_render_in(L, cfg, module, "split", fill, arg, src, len, hash)) return -1;
  int head = lua_gettop(L), list = head - 2;
  size_t head_len;
  const char *h = lua_tolstring(L, head, &head_len);
  int count = (int)lua_rawlen(L, list);
  gen_unit *u = util_calloc((size_t)(count ? count : 1), sizeof *u, "compilation units");
  int rc = u ? 0 : -1;
  for (int i = 0; !rc && i < count; i++) {
    lua_rawgeti(L, list, i + 1);
    lua_getfield(L, -1, "name");
    lua_getfield(L, -2, "src");
    size_t sl;
    const char *s = lua_tolstring(L, -1, &sl);
    /* the glue (last) carries the header: the config, hash and schedules */
    size_t pre = glue_header && i == count - 1 ? head_len : 0;
    u[i].name = util_strdup(lua_tostring(L, -2));
    u[i].src = util_malloc(pre + sl + 1, "compilation unit");
    if (!u[i].name || !u[i].src) {
      rc = util_err("out of memory: compilation units");
    } else {
      memcpy(u[i].src, h, pre);
      memcpy(u[i].src + pre, s, sl + 1);
      u[i].len = pre + sl;
    }
    lua_pop(L, 3);
  }
  lua_close(L);
  if (rc) {
    gen_units_free(u, count);
    free(*src);
    *src = NULL;
    return -1;
  }
  *units = u;
  *n = count;
  return 0;
}

/* ---- CUDA sources (gen/cuda/emit.lua) ---- */

static void gen_cuda_opts_fill(lua_State *L, const void *arg) {
  const gen_cuda_opts *opts = arg;
  lua_pushboolean(L, !(opts && opts->unfused));
  lua_setfield(L, -2, "fuse");
  lua_pushinteger(L, opts ? opts->tile : 0);
  lua_setfield(L, -2, "tile");
}

int gen_cuda_source(const cfg_t *cfg, const gen_cuda_opts *opts, char **src, size_t *len, char hash[65]) {
  return gen_render(cfg, GEN_MOD_EMIT_CUDA, gen_cuda_opts_fill, opts, src, len, hash);
}

int gen_cuda_units(const cfg_t *cfg, const gen_cuda_opts *opts, char **src, size_t *len, char hash[65],
                   gen_unit **units, int *n) {
  if (gen_units_render(cfg, GEN_MOD_EMIT_CUDA, gen_cuda_opts_fill, opts, 0, src, len, hash, units, n)) return -1;
  /* each unit is its own module: it carries its own content hash, which
   * the loaded module's gptc_source_hash must match */
  for (int i = 0; i < *n; i++) {
    gen_unit *u = &(*units)[i];
    char h[65], head[256];
    util_sha256_hex(u->src, u->len, h);
    int hl = snprintf(head, sizeof head, "/* gptc CUDA kernel unit %.100s (a program of its own) */\n"
                      "#define GPTC_SOURCE_HASH \"%s\"\n", u->name, h);
    char *t = util_malloc((size_t)hl + u->len + 1, "CUDA kernel unit");
    if (!t) {
      gen_units_free(*units, *n);
      free(*src);
      *units = NULL, *src = NULL, *n = 0;
      return -1;
    }
    memcpy(t, head, (size_t)hl);
    memcpy(t + hl, u->src, u->len + 1);
    free(u->src);
    u->src = t;
    u->len += (size_t)hl;
  }
  return 0;
}

/* ---- gemm tuning (gen/tune.lua) ---- */

int gen_tune_gemms(const cfg_t *cfg, gen_gemm **list, int *n) {
  *list = NULL;
  *n = 0;
  lua_State *L = lx_new();
  if (!L) return -1;
  cfg_push(L, cfg);
  lua_newtable(L);
  gen_host_opts(L);
  if (lx_call(L, GEN_MOD_TUNE, "gemms", 2, 1)) {
    lua_close(L);
    return -1;
  }
  int count = (int)lua_rawlen(L, -1);
  gen_gemm *g = util_calloc((size_t)(count ? count : 1), sizeof *g, "tune list");
  if (!g) {
    lua_close(L);
    return -1;
  }
  for (int i = 0; i < count; i++) {
    lua_rawgeti(L, -1, i + 1);
    lua_getfield(L, -1, "fn");
    snprintf(g[i].fn, sizeof g[i].fn, "%s", lua_tostring(L, -1));
    lua_getfield(L, -2, "calls");
    g[i].calls = (int)lua_tointeger(L, -1);
    lua_getfield(L, -3, "flops");
    g[i].flops = lua_tonumber(L, -1);
    lua_pop(L, 4);
  }
  lua_close(L);
  *list = g;
  *n = count;
  return 0;
}

typedef struct {
  const char *const *fns, *const *bases;
  int n;
} gen_tune_batch;

/* the host's options plus opts.tune = { { fn, base }, ... } */
static void gen_tune_fill(lua_State *L, const void *arg) {
  const gen_tune_batch *b = arg;
  gen_host_opts(L);
  lua_newtable(L);
  for (int i = 0; i < b->n; i++) {
    lua_newtable(L);
    lua_pushstring(L, b->fns[i]);
    lua_setfield(L, -2, "fn");
    lua_pushstring(L, b->bases[i]);
    lua_setfield(L, -2, "base");
    lua_rawseti(L, -2, i + 1);
  }
  lua_setfield(L, -2, "tune");
}

int gen_tune_source(const cfg_t *cfg, const char *const *fns, const char *const *bases, int n, char **src, size_t *len,
                    char hash[65]) {
  gen_tune_batch b = {fns, bases, n};
  return gen_render(cfg, GEN_MOD_TUNE, gen_tune_fill, &b, src, len, hash);
}
