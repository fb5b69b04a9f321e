/* attntest: the harness test_attn_block.c and test_attn_small.c share. One
 * attention instance (templates/cpu/attention.c) of a one-layer model is
 * rendered for this host with a forced schedule, compiled from its own
 * compilation unit as gptc compiles it, and called directly; inputs are
 * seeded, scratch and outputs start as NaN so a value read before it is
 * written, or an output left unwritten, shows. */
#ifndef GPTC_ATTNTEST_H
#define GPTC_ATTNTEST_H

#include <dlfcn.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cfg.h"
#include "cpu.h"
#include "gen.h"
#include "lx.h"
#include "testutil.h"
#include "util.h"

/* gptc_rng of templates/cpu/prelude.c, passed by value to the kernels */
typedef struct {
  uint64_t seed;
  uint64_t offset;
  int train;
} rng_t;
typedef void (*att_fwd_fn)(float *out, float *att, const float *qkv, float *scratch, rng_t rng, uint32_t site);
typedef void (*att_bwd_fn)(float *dqkv, const float *dout, const float *qkv, const float *att, float *scratch,
                           rng_t rng, uint32_t site);

typedef struct {
  int B, T, C, H;
  double p; /* drop_rate */
} shape;

/* The host a source is rendered for: one attention schedule forced (NULL:
 * the heuristic), every kernel exported. */
static __attribute__((unused)) void att_host_fill(lua_State *L, const void *arg) {
  const char *schedule = arg;
  lua_pushstring(L, "float");
  lua_setfield(L, -2, "real");
  lua_pushinteger(L, gen_vec_bytes());
  lua_setfield(L, -2, "vec_bytes");
  if (schedule) {
    lua_pushstring(L, schedule);
    lua_setfield(L, -2, "att_schedule");
  }
  lua_pushboolean(L, 1);
  lua_setfield(L, -2, "export_kernels");
}

static __attribute__((unused)) int att_accept_any(void *h, const char *so_path, void *ctx) {
  (void)h, (void)so_path, (void)ctx;
  return 0;
}

/* n values in amp x [-2, 2) from a seeded LCG */
static __attribute__((unused)) float *seeded(size_t n, uint64_t x, float amp) {
  float *v = malloc(n * sizeof *v);
  ck_assert_ptr_nonnull(v);
  for (size_t i = 0; i < n; i++) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    v[i] = amp * ((float)((double)(x >> 40) / (double)(1ull << 22)) - 2.0f);
  }
  return v;
}

/* n NaNs */
static __attribute__((unused)) float *nans(size_t n) {
  float *v = malloc(n * sizeof *v);
  ck_assert_ptr_nonnull(v);
  for (size_t i = 0; i < n; i++) v[i] = NAN;
  return v;
}

/* the number after `key` in src (a "S=123" comment), or 0 */
static __attribute__((unused)) long att_after(const char *src, const char *key) {
  const char *p = strstr(src, key);
  return p ? strtol(p + strlen(key), NULL, 10) : 0;
}

/* One attention instance, built: its header line (the schedule and where it
 * came from), its scratch per head (forward S, backward S2) and its entry
 * points; close obj when done. */
typedef struct {
  char header_line[256];
  long S, S2;
  cpu_object obj;
  att_fwd_fn fwd;
  att_bwd_fn bwd;
} att_kernel;

static __attribute__((unused)) void att_build(const shape *s, const char *schedule, att_kernel *k) {
  char text[512];
  snprintf(text, sizeof text,
           "return { name = 'att', tokenizer = 'char', vocab_size = 30, emb_dim = %d, n_heads = %d, n_layers = 1,"
           " context_length = %d, drop_rate = %g, qkv_bias = false, train = { batch_size = %d, max_length = %d } }",
           s->C, s->H, s->T, s->p, s->B, s->T);
  cfg_t c;
  ck_assert_msg(cfg_load_string(text, "t.lua", &c) == 0, "%s", util_errmsg());
  char *src, hash[65];
  size_t len;
  gen_unit *units;
  int nu;
  ck_assert_msg(gen_units_render(&c, GEN_MOD_EMIT, att_host_fill, schedule, 1, &src, &len, hash, &units, &nu) == 0,
                "%s", util_errmsg());
  /* the header names the instance's schedule and where it came from */
  char fn[64];
  snprintf(fn, sizeof fn, "attention_%dx%d", s->B, s->T);
  const char *h = strstr(src, " * attention schedules");
  ck_assert_ptr_nonnull(h);
  h = strstr(h, fn);
  ck_assert_ptr_nonnull(h);
  snprintf(k->header_line, sizeof k->header_line, "%.*s", (int)strcspn(h, "\n"), h);
  /* the scratch per head, forward and backward (their kernels' comments) */
  k->S = att_after(src, "scratch (B, H, S=");
  k->S2 = att_after(src, "grad scratch (B, H, S=");
  ck_assert_msg(k->S > 0 && k->S2 > 0, "no scratch sizes in the source");
  /* only the attention instance's own compilation unit (gen/cpu/emit.lua M.split: the
   * prelude, the micro-kernel and the kernel), compiled as gptc compiles it */
  const gen_unit *u = NULL;
  for (int i = 0; i < nu; i++)
    if (!strcmp(units[i].name, fn)) u = &units[i];
  ck_assert_msg(u != NULL, "no compilation unit %s", fn);
  ck_assert_msg(cpu_build(u->src, u->len, "cpu", att_accept_any, NULL, &k->obj) == 0, "%s", util_errmsg());
  char name[96];
  snprintf(name, sizeof name, "%s_forward", fn);
  k->fwd = (att_fwd_fn)(uintptr_t)dlsym(k->obj.handle, name);
  snprintf(name, sizeof name, "%s_backward", fn);
  k->bwd = (att_bwd_fn)(uintptr_t)dlsym(k->obj.handle, name);
  ck_assert_msg(k->fwd && k->bwd, "%s_forward or _backward not exported", fn);
  free(src);
  gen_units_free(units, nu);
}

/* What a run feeds the kernels: the rng's seed and offset, the dropout site,
 * and the inputs' amplitude (qkv seeded 1, dout seeded 2). */
typedef struct {
  uint64_t seed, offset;
  uint32_t site;
  float amp;
} att_inputs;

/* One schedule's results for rng.train 0 and 1: out (B, T, C) and att
 * (B, H, T, T) of the forward, dqkv (B, T, 3C) of the backward and the
 * backward's scratch (B, H, S2) after it; the instance's header line. */
typedef struct {
  float *out[2], *att[2], *dqkv[2], *scr[2];
  long S2;
  char header_line[256];
} att_results;

static __attribute__((unused)) void att_run(const shape *s, const char *schedule, const att_inputs *in,
                                            att_results *r) {
  att_kernel k;
  att_build(s, schedule, &k);
  snprintf(r->header_line, sizeof r->header_line, "%s", k.header_line);
  r->S2 = k.S2;
  const size_t BT = (size_t)s->B * s->T, heads = (size_t)s->B * s->H;
  float *qkv = seeded(BT * 3 * s->C, 1, in->amp), *dout = seeded(BT * s->C, 2, in->amp);
  for (int train = 0; train < 2; train++) {
    rng_t rng = {in->seed, in->offset, train};
    float *scr = nans(heads * (size_t)(k.S > k.S2 ? k.S : k.S2));
    r->out[train] = nans(BT * s->C);
    r->att[train] = nans(heads * s->T * s->T);
    r->dqkv[train] = nans(BT * 3 * s->C);
    k.fwd(r->out[train], r->att[train], qkv, scr, rng, in->site);
    free(scr);
    r->scr[train] = nans(heads * (size_t)k.S2);
    k.bwd(r->dqkv[train], dout, qkv, r->att[train], r->scr[train], rng, in->site);
  }
  free(qkv), free(dout);
  cpu_object_close(&k.obj);
}

static __attribute__((unused)) void att_results_free(att_results *r) {
  for (int i = 0; i < 2; i++) free(r->out[i]), free(r->att[i]), free(r->dqkv[i]), free(r->scr[i]);
}

/* a and b (n floats) bit for bit */
static __attribute__((unused)) void same(const float *a, const float *b, size_t n, const char *what,
                                         const char *sched, int train) {
  for (size_t i = 0; i < n; i++)
    ck_assert_msg(memcmp(&a[i], &b[i], 4) == 0, "%s [%s, train %d]: [%zu] = %.9g, the default's %.9g", what, sched,
                  train, i, a[i], b[i]);
}

/* schedule sched's out, att and dqkv equal the default's bit for bit (with
 * dropout on too when the shape has it) */
static __attribute__((unused)) void att_same_results(const shape *s, const att_results *r, const att_results *def,
                                                     const char *sched) {
  const size_t BT = (size_t)s->B * s->T, natt = (size_t)s->B * s->H * s->T * s->T;
  for (int train = 0; train < (s->p > 0 ? 2 : 1); train++) {
    same(r->out[train], def->out[train], BT * s->C, "out", sched, train);
    same(r->att[train], def->att[train], natt, "att", sched, train);
    same(r->dqkv[train], def->dqkv[train], BT * 3 * s->C, "dqkv", sched, train);
  }
}

#endif
