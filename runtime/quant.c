/* quant: see quant.h. */
#include "quant.h"

#include <dlfcn.h>
#include <lauxlib.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gen.h"
#include "lx.h"
#include "util.h"

int quant_parse(const char *opt, const char *s, int *quant) {
  if (!strcmp(s, "f32")) *quant = QUANT_F32;
  else if (!strcmp(s, "q8")) *quant = QUANT_Q8;
  else return util_err("option '%s' must be f32 or q8 (got '%s')", opt, s);
  return 0;
}

const char *quant_name(int quant) { return quant == QUANT_Q8 ? "q8" : "f32"; }

float quant_q8_block(const float *v, size_t vs, int n, int8_t *q, size_t qs) {
  float amax = 0;
  for (int i = 0; i < n; i++) amax = fmaxf(amax, fabsf(v[i * vs]));
  if (amax == 0) {
    for (int i = 0; i < n; i++) q[i * qs] = 0;
    return 0;
  }
  /* rounding amax / 127 to float may land below it (or on 0 for a
   * subnormal amax): step up until amax / s <= 127, so no value needs
   * clamping and every error stays within s / 2 */
  float s = (float)((double)amax / 127.0);
  while (s == 0 || (double)amax / s > 127.0) s = nextafterf(s, INFINITY);
  /* in double: w / s is exact enough that rounding never picks the far
   * neighbour of a value just below a half */
  for (int i = 0; i < n; i++) q[i * qs] = (int8_t)lround((double)v[i * vs] / s);
  return s;
}

/* ---- the layout (gen/quant.lua) ------------------------------------------------ */

static size_t quant_field(lua_State *L, int t, const char *k) {
  lua_getfield(L, t, k);
  size_t v = (size_t)lua_tointeger(L, -1);
  lua_pop(L, 1);
  return v;
}

/* Pushes quant.for_cfg(cfg). */
static int quant_layout(lua_State *L, const cfg_t *cfg) {
  cfg_push(L, cfg);
  if (lx_call(L, "quant", "for_cfg", 1, 1)) return util_err("q8 layout: %s", util_errmsg());
  if (quant_field(L, -1, "block") != QUANT_BLOCK) return util_err("q8 layout: block size is not %d", QUANT_BLOCK);
  return 0;
}

/* One matrix (a gen/quant.lua `mats` entry on the top of L's stack). */
static void quant_matrix(lua_State *L, size_t panel, const float *params, unsigned char *blob) {
  size_t src = quant_field(L, -1, "src"), K = quant_field(L, -1, "K"), N = quant_field(L, -1, "N");
  size_t sk = quant_field(L, -1, "sk"), sn = quant_field(L, -1, "sn"), NB = quant_field(L, -1, "NB");
  size_t NP = quant_field(L, -1, "NP");
  float *s = (float *)(blob + quant_field(L, -1, "s_off"));   /* (NP, NB, panel) */
  int8_t *q = (int8_t *)(blob + quant_field(L, -1, "q_off")); /* (NP, K, panel) */
  for (size_t p = 0; p < NP; p++)
    for (size_t c = 0; c < panel && p * panel + c < N; c++) {
      size_t n = p * panel + c;
      for (size_t kb = 0; kb < NB; kb++) {
        size_t k0 = kb * QUANT_BLOCK, rows = K - k0 < QUANT_BLOCK ? K - k0 : QUANT_BLOCK;
        s[(p * NB + kb) * panel + c] = quant_q8_block(params + src + n * sn + k0 * sk, sk, (int)rows,
                                                      q + (p * K + k0) * panel + c, panel);
      }
    }
}

int quant_q8_pack(const cfg_t *cfg, const float *params, unsigned char **blob, size_t *bytes) {
  *blob = NULL;
  lua_State *L = lx_new();
  if (!L) return -1;
  int rc = -1;
  if (quant_layout(L, cfg)) goto out;
  int Q = lua_gettop(L);
  size_t n = quant_field(L, Q, "bytes"), panel = quant_field(L, Q, "panel");
  void *p = NULL;
  if (posix_memalign(&p, 64, n ? (n + 63) / 64 * 64 : 64)) {
    util_err("out of memory: the q8 weights need %zu bytes", n);
    goto out;
  }
  unsigned char *b = p;
  memset(b, 0, n); /* the panels' padding columns read as zeros */
  lua_getfield(L, Q, "copies");
  for (int i = 1, c = (int)lua_rawlen(L, -1); i <= c; i++) {
    lua_rawgeti(L, -1, i);
    memcpy(b + quant_field(L, -1, "dst"), params + quant_field(L, -1, "src"), quant_field(L, -1, "n") * sizeof(float));
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  lua_getfield(L, Q, "mats");
  for (int i = 1, c = (int)lua_rawlen(L, -1); i <= c; i++) {
    lua_rawgeti(L, -1, i);
    quant_matrix(L, panel, params, b);
    lua_pop(L, 1);
  }
  *blob = b;
  *bytes = n;
  rc = 0;
out:
  lua_close(L);
  return rc;
}

/* ---- the inference unit ---------------------------------------------------------- */

int quant_infer_unit(const cfg_t *cfg, int quant, int vec_bytes, const char *suffix, const char *flags, char **src,
                     size_t *len) {
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
  lua_pushstring(L, quant_name(quant));
  lua_setfield(L, -2, "quant");
  if (lx_call(L, "cpu.emit", "infer_body", 2, 1)) {
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
  if (lx_call(L, "template", "render", 2, 1)) goto out;
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

/* ---- the JIT's q8 model ---------------------------------------------------------- */

int quant_model_open(const cfg_t *cfg, const float *params, quant_model *m) {
  memset(m, 0, sizeof *m);
  char *src = NULL;
  size_t len;
  lua_State *L = lx_new();
  if (!L) return -1;
  int rc = quant_layout(L, cfg);
  size_t n_kv = rc ? 0 : quant_field(L, -1, "n_kv"), n_scratch = rc ? 0 : quant_field(L, -1, "n_scratch");
  lua_close(L);
  if (rc || quant_q8_pack(cfg, params, &m->blob, &m->bytes) || quant_infer_unit(cfg, QUANT_Q8, gen_vec_bytes(), "", NULL, &src, &len))
    goto fail;
  m->kv = util_malloc(n_kv * sizeof(float) + 1, "KV cache");                /* (L, 2, ctx, C) */
  m->scratch = util_malloc((n_scratch + 1) * sizeof(float), "inference scratch");
  if (!m->kv || !m->scratch || cpu_build(src, len, "infer", NULL, NULL, &m->obj)) goto fail;
  if (!(m->infer = (quant_infer_fn *)dlsym(m->obj.handle, "export_infer"))) {
    util_err("%s: no export_infer in the compiled inference step", m->obj.so_path);
    goto fail;
  }
  free(src);
  return 0;
fail:
  free(src);
  quant_model_close(m);
  return -1;
}

int quant_model_infer(void *ctx, int token, int pos, float *logits) {
  quant_model *m = ctx;
  m->infer((const float *)m->blob, m->kv, m->scratch, token, pos, logits);
  return 0;
}

void quant_model_close(quant_model *m) {
  cpu_object_close(&m->obj);
  free(m->blob);
  free(m->kv);
  free(m->scratch);
  memset(m, 0, sizeof *m);
}
