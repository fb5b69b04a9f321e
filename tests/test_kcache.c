/* The per-kernel compile cache (runtime/cpu.c cpu_load, gen/cpu/emit.lua
 * M.split) and `gptc gen --explain`: a config that changes only n_layers
 * compiles no kernel, one that changes emb_dim compiles exactly the units
 * --explain called new, a damaged object is rebuilt, and the linked units
 * compute what the whole source compiled at once computes, bit for bit. */
#include <dirent.h>
#include <dlfcn.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cpu.h"
#include "gen.h"
#include "testutil.h"
#include "train.h"
#include "util.h"

#define VOCAB 50
#define MAX_UNITS 64

/* A tiny-test-sized config with `top` spliced into its fields (a later
 * duplicate field wins in a Lua table constructor, so `top` overrides). */
static const char *write_cfg(const char *name, const char *top, const char *train) {
  char src[4096];
  snprintf(src, sizeof src,
           "return { name = 'kc', tokenizer = 'char', data = '%s', emb_dim = 16, n_heads = 2, n_layers = 2,\n"
           "  context_length = 16, drop_rate = 0.0, qkv_bias = true, tie_embeddings = true, %s\n"
           "  train = { batch_size = 2, max_length = 16, stride = 16, lr = 1e-3, steps = 4, %s } }\n",
           tu_src("data/the-verdict.txt"), top, train);
  char fname[256];
  snprintf(fname, sizeof fname, "%s.lua", name);
  return tu_write_str(fname, src);
}

static void load_cfg(const char *path, cfg_t *c) {
  ck_assert_msg(cfg_load_file(path, c) == 0, "%s", util_errmsg());
  ck_assert_msg(cfg_set_vocab(c, VOCAB) == 0, "%s", util_errmsg());
}

/* A fresh private cache for this test. */
static void fresh_cache(const char *name, char *obj_dir, size_t n) {
  char cache[1024];
  snprintf(cache, sizeof cache, "%s/%s", tu_tmpdir(), name);
  setenv("GPTC_CACHE", cache, 1);
  snprintf(obj_dir, n, "%s/obj", cache);
}

/* The keys of the objects (KEY.o) in dir, sorted; returns how many. */
static int cmp_key(const void *a, const void *b) { return strcmp(a, b); }
static int objects(const char *dir, char keys[][65], int max) {
  DIR *d = opendir(dir);
  if (!d) return 0;
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d))) {
    size_t l = strlen(e->d_name);
    if (l == 66 && !strcmp(e->d_name + 64, ".o")) {
      ck_assert_int_lt(n, max);
      memcpy(keys[n], e->d_name, 64);
      keys[n++][64] = 0;
    }
  }
  closedir(d);
  qsort(keys, (size_t)n, sizeof keys[0], cmp_key);
  return n;
}

/* `gptc gen --explain` of cfg_path: the units' names, keys and states, and
 * its summary line. Returns the unit count. */
typedef struct {
  char name[128], key[65];
  int cached;
} unit_line;
static int explain(const char *cfg_path, unit_line *u, char *summary, size_t sn) {
  tu_run_result r;
  int code = tu_run(&r, NULL, "gen --config '%s' --vocab-size %d --explain", cfg_path, VOCAB);
  ck_assert_msg(code == 0, "gen --explain failed (%d): %s", code, r.err);
  int n = 0;
  char *save = NULL;
  char *line = strtok_r(r.out, "\n", &save);
  ck_assert_ptr_nonnull(line);
  ck_assert_msg(!strncmp(line, "unit ", 5), "header line: %s", line);
  summary[0] = 0;
  while ((line = strtok_r(NULL, "\n", &save))) {
    char state[16];
    if (sscanf(line, "%127s %64s %15s", u[n].name, u[n].key, state) == 3 && strlen(u[n].key) == 64) {
      ck_assert_msg(!strcmp(state, "cached") || !strcmp(state, "new"), "state '%s' in: %s", state, line);
      u[n].cached = !strcmp(state, "cached");
      ck_assert_int_lt(++n, MAX_UNITS);
    } else {
      snprintf(summary, sn, "%s", line);
    }
  }
  tu_run_free(&r);
  return n;
}

static int count_new(const unit_line *u, int n) {
  int k = 0;
  for (int i = 0; i < n; i++) k += !u[i].cached;
  return k;
}

static int has_key(char keys[][65], int n, const char *key) {
  for (int i = 0; i < n; i++)
    if (!strcmp(keys[i], key)) return 1;
  return 0;
}

/* cpu_load in this process; the model's n_layers and emb_dim checked. */
static void load(const char *cfg_path, cpu_module *m) {
  cfg_t c;
  load_cfg(cfg_path, &c);
  ck_assert_msg(cpu_load(&c, m) == 0, "%s", util_errmsg());
  ck_assert_int_eq(m->model->n_layers, c.n_layers);
  ck_assert_int_eq(m->model->emb_dim, c.emb_dim);
}

/* The mean loss of one dropout-free forward at fixed weights and tokens. */
static float probe_loss(const gptc_model *m) {
  float *p = calloc(m->n_params, sizeof *p), *acts = calloc(m->n_acts, sizeof *acts);
  int n = m->B * m->T;
  int32_t *in = calloc((size_t)n, sizeof *in), *tg = calloc((size_t)n, sizeof *tg);
  train_init_params(m, p, 11);
  for (int i = 0; i < n; i++) {
    in[i] = (i * 7) % VOCAB;
    tg[i] = (i * 13 + 1) % VOCAB;
  }
  gptc_rng rng = {1, 0, 0};
  float loss = m->forward(p, acts, in, tg, rng);
  free(p);
  free(acts);
  free(in);
  free(tg);
  return loss;
}

/* ---- the cache across configs --------------------------------------------------- */

START_TEST(reuse_across_configs) {
  char obj[1100];
  fresh_cache("reuse", obj, sizeof obj);
  const char *a = write_cfg("a", "", "");
  const char *layers = write_cfg("layers", "n_layers = 3,", "");
  const char *lr = write_cfg("lr", "", "lr = 3e-4, steps = 9,");
  const char *wide = write_cfg("wide", "emb_dim = 32,", "");
  static unit_line u[MAX_UNITS], v[MAX_UNITS];
  static char before[MAX_UNITS * 2][65], after[MAX_UNITS * 2][65];
  char summary[256];

  /* an empty cache: every unit is new, and --explain compiles nothing */
  int n = explain(a, u, summary, sizeof summary);
  ck_assert_int_ge(n, 8);
  ck_assert_str_eq(u[n - 1].name, "model");
  ck_assert_int_eq(count_new(u, n), n);
  char want[256];
  snprintf(want, sizeof want, "%d new, 0 cached; the linked model is new", n);
  ck_assert_str_eq(summary, want);
  ck_assert_int_eq(objects(obj, before, MAX_UNITS * 2), 0);

  /* the first load compiles every unit, each to the object --explain named */
  cpu_module m;
  load(a, &m);
  ck_assert_int_eq(m.n_units, n);
  ck_assert_int_eq(m.units_compiled, n);
  ck_assert_int_eq(m.compiled, 1);
  int nb = objects(obj, before, MAX_UNITS * 2);
  ck_assert_int_eq(nb, n);
  for (int i = 0; i < n; i++) ck_assert_msg(has_key(before, nb, u[i].key), "no object for unit %s", u[i].name);
  float loss_a = probe_loss(m.model);
  cpu_unload(&m);
  n = explain(a, u, summary, sizeof summary);
  snprintf(want, sizeof want, "0 new, %d cached; the linked model is cached", n);
  ck_assert_str_eq(summary, want);

  /* only n_layers changed: every kernel is cached, only the glue is new */
  n = explain(layers, u, summary, sizeof summary);
  ck_assert_int_eq(count_new(u, n), 1);
  ck_assert_str_eq(u[n - 1].name, "model");
  ck_assert_int_eq(u[n - 1].cached, 0);
  load(layers, &m);
  ck_assert_int_eq(m.units_compiled, 1);
  cpu_unload(&m);
  int na = objects(obj, after, MAX_UNITS * 2);
  ck_assert_int_eq(na, nb + 1);
  ck_assert(has_key(after, na, u[n - 1].key)); /* the one new object is the glue's */

  /* only training fields changed (lr is an argument of AdamW, steps the
   * loop's): the same source, nothing compiled or linked */
  n = explain(lr, u, summary, sizeof summary);
  ck_assert_int_eq(count_new(u, n), 0);
  load(lr, &m);
  ck_assert_int_eq(m.units_compiled, 0);
  ck_assert_int_eq(m.compiled, 0);
  cpu_unload(&m);

  /* emb_dim changed: exactly the units --explain called new are compiled,
   * and the loss kernel (its shapes are B*T and V) is reused */
  nb = objects(obj, before, MAX_UNITS * 2);
  n = explain(wide, u, summary, sizeof summary);
  int fresh = count_new(u, n);
  ck_assert_int_gt(fresh, 1);
  ck_assert_int_lt(fresh, n);
  int loss_cached = 0;
  for (int i = 0; i < n; i++) loss_cached |= !strncmp(u[i].name, "crossentropy_", 13) && u[i].cached;
  ck_assert_msg(loss_cached, "the cross-entropy kernel does not depend on emb_dim, yet it is new");
  load(wide, &m);
  ck_assert_int_eq(m.units_compiled, fresh);
  cpu_unload(&m);
  na = objects(obj, after, MAX_UNITS * 2);
  ck_assert_int_eq(na, nb + fresh);
  /* the objects that appeared are those of the units called new */
  int appeared = 0;
  for (int i = 0; i < na; i++) {
    if (has_key(before, nb, after[i])) continue;
    appeared++;
    int named = 0;
    for (int j = 0; j < n; j++) named |= !u[j].cached && !strcmp(u[j].key, after[i]);
    ck_assert_msg(named, "object %s was compiled but --explain did not call it new", after[i]);
  }
  ck_assert_int_eq(appeared, fresh);
  n = explain(wide, v, summary, sizeof summary);
  ck_assert_int_eq(count_new(v, n), 0);

  /* a damaged kernel object (flipped bytes, or cut short) is rebuilt, not
   * linked: --explain calls it new, and a load that must link compiles it */
  n = explain(a, u, summary, sizeof summary);
  ck_assert_int_eq(count_new(u, n), 0);
  for (int round = 0; round < 2; round++) {
    const unit_line *k = &u[round];
    char path[1300], so_dir[1200];
    snprintf(path, sizeof path, "%s/%s.o", obj, k->key);
    char *data;
    size_t len;
    ck_assert_int_eq(util_read_file(path, &data, &len), 0);
    if (round == 0) {
      for (size_t i = len / 2; i < len / 2 + 32 && i < len; i++) data[i] ^= 0x5a;
    } else {
      len /= 2;
    }
    ck_assert_int_eq(util_write_file_atomic(path, data, len), 0);
    free(data);
    n = explain(a, v, summary, sizeof summary);
    ck_assert_int_eq(count_new(v, n), 1);
    ck_assert_str_eq(v[round].name, k->name);
    ck_assert_int_eq(v[round].cached, 0);
    /* the linked model is still whole and sealed, so a load would not need
     * the object: remove the model so it must link again */
    snprintf(so_dir, sizeof so_dir, "%s/../cpu", obj);
    DIR *d = opendir(so_dir);
    ck_assert_ptr_nonnull(d);
    struct dirent *e;
    while ((e = readdir(d))) {
      size_t l = strlen(e->d_name);
      if (l > 3 && !strcmp(e->d_name + l - 3, ".so")) {
        char so[1500];
        snprintf(so, sizeof so, "%s/%s", so_dir, e->d_name);
        unlink(so);
      }
    }
    closedir(d);
    load(a, &m);
    ck_assert_int_eq(m.units_compiled, 1);
    float loss = probe_loss(m.model);
    ck_assert_mem_eq(&loss, &loss_a, sizeof loss);
    cpu_unload(&m);
    ck_assert_int_eq(util_cache_verify(path, NULL, NULL), 0);
    n = explain(a, v, summary, sizeof summary);
    ck_assert_int_eq(count_new(v, n), 0);
  }
}
END_TEST

/* --explain --device cuda lists NVRTC programs (tests/test_kcache_cuda.c
 * checks them); a bad --compile is a usage error */
START_TEST(explain_cuda) {
  char obj[1100];
  fresh_cache("cuda", obj, sizeof obj);
  const char *a = write_cfg("a", "", "");
  tu_run_result r;
  int code = tu_run(&r, NULL, "gen --config '%s' --vocab-size %d --explain --device cuda --compile 80", a, VOCAB);
  ck_assert_int_eq(code, 2);
  ck_assert_msg(strstr(r.err, "--compile") != NULL, "%s", r.err);
  tu_run_free(&r);
#ifdef GPTC_HAVE_NVRTC
  code = tu_run(&r, NULL, "gen --config '%s' --vocab-size %d --explain --device cuda --compile sm_80", a, VOCAB);
  ck_assert_msg(code == 0, "%s", r.err);
  ck_assert_msg(strstr(r.out, "optimizer ") && strstr(r.out, " new, 0 cached (NVRTC programs for sm_80)\n"), "%s",
                r.out);
  tu_run_free(&r);
#endif
  /* and -o is not needed with --explain, but is without it */
  code = tu_run(&r, NULL, "gen --config '%s' --vocab-size %d", a, VOCAB);
  ck_assert_int_eq(code, 2);
  ck_assert_msg(strstr(r.err, "-o DIR") != NULL, "%s", r.err);
  tu_run_free(&r);
}
END_TEST

/* ---- the units against the whole source ------------------------------------------- */

static void *xcalloc(size_t n, size_t s) {
  void *p = calloc(n ? n : 1, s);
  ck_assert_ptr_nonnull(p);
  return p;
}

#define SAME(a, b, n, what) ck_assert_msg(memcmp((a), (b), (n) * sizeof *(a)) == 0, "%s differ", what)

/* Every entry point of the two builds on the same inputs, compared bitwise:
 * training forward (dropout on) and backward, the gradient norm, AdamW,
 * evaluation and KV-cache inference. */
static void compare(const gptc_model *x, const gptc_model *y) {
  ck_assert_uint_eq(x->n_params, y->n_params);
  ck_assert_uint_eq(x->n_acts, y->n_acts);
  ck_assert_str_eq(x->hash, y->hash);
  const gptc_model *ms[2] = {x, y};
  size_t np = x->n_params;
  int n = x->B * x->T, ne = x->eval_B * x->eval_T;
  int32_t *in = xcalloc((size_t)n, sizeof *in), *tg = xcalloc((size_t)n, sizeof *tg);
  int32_t *ein = xcalloc((size_t)ne, sizeof *ein), *etg = xcalloc((size_t)ne, sizeof *etg);
  for (int i = 0; i < n; i++) {
    in[i] = (int32_t)((i * 2654435761u) % VOCAB);
    tg[i] = i % 9 == 4 ? -1 : (int32_t)((i * 40503u + 7) % VOCAB); /* some ignored */
  }
  for (int i = 0; i < ne; i++) {
    ein[i] = (i * 5 + 3) % VOCAB;
    etg[i] = (i * 11 + 2) % VOCAB;
  }
  float *p[2], *g[2], *acts[2], *gacts[2], *eacts[2], *mm[2], *vv[2], *kv[2], *scr[2], *logits[2];
  float loss[2], eloss[2];
  double norm[2];
  for (int k = 0; k < 2; k++) {
    const gptc_model *m = ms[k];
    p[k] = xcalloc(np, sizeof(float));
    g[k] = xcalloc(np, sizeof(float));
    mm[k] = xcalloc(np, sizeof(float));
    vv[k] = xcalloc(np, sizeof(float));
    acts[k] = xcalloc(m->n_acts, sizeof(float));
    gacts[k] = xcalloc(m->n_grad_acts, sizeof(float));
    eacts[k] = xcalloc(m->n_eval_acts, sizeof(float));
    kv[k] = xcalloc(m->n_kv, sizeof(float));
    scr[k] = xcalloc(m->n_infer_scratch, sizeof(float));
    logits[k] = xcalloc((size_t)m->vocab_size * 4, sizeof(float));
    train_init_params(m, p[k], 5);
    gptc_rng rng = {42, 3, 1};
    loss[k] = m->forward(p[k], acts[k], in, tg, rng);
    m->backward(p[k], g[k], acts[k], gacts[k], in, tg, rng, 0.5f);
    norm[k] = m->grad_sq_norm(g[k]);
    gptc_adamw_args a = {1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 1.0f, 1};
    m->adamw(p[k], g[k], mm[k], vv[k], a);
    eloss[k] = m->forward_eval(p[k], eacts[k], ein, etg);
    for (int t = 0; t < 4; t++) m->infer(p[k], kv[k], scr[k], (t * 17 + 1) % VOCAB, t, logits[k] + (size_t)t * VOCAB);
  }
  ck_assert_msg(loss[0] == loss[0] && loss[0] > 0, "loss %g", (double)loss[0]);
  ck_assert_mem_eq(&loss[0], &loss[1], sizeof loss[0]);
  SAME(acts[0], acts[1], x->n_acts, "activations (and dlogits)");
  SAME(g[0], g[1], np, "gradients");
  ck_assert_mem_eq(&norm[0], &norm[1], sizeof norm[0]);
  SAME(p[0], p[1], np, "parameters after AdamW");
  SAME(mm[0], mm[1], np, "AdamW m");
  SAME(vv[0], vv[1], np, "AdamW v");
  ck_assert_mem_eq(&eloss[0], &eloss[1], sizeof eloss[0]);
  SAME(eacts[0], eacts[1], x->n_eval_acts, "evaluation activations");
  SAME(logits[0], logits[1], (size_t)VOCAB * 4, "inference logits");
  for (int k = 0; k < 2; k++) {
    free(p[k]);
    free(g[k]);
    free(mm[k]);
    free(vv[k]);
    free(acts[k]);
    free(gacts[k]);
    free(eacts[k]);
    free(kv[k]);
    free(scr[k]);
    free(logits[k]);
  }
  free(in);
  free(tg);
  free(ein);
  free(etg);
}

/* The config's units linked (cpu_load) against its whole source compiled as
 * one translation unit (cpu_build, as before the per-kernel cache). */
static void check_bitwise(const char *name, const char *top) {
  char obj[1100];
  fresh_cache(name, obj, sizeof obj);
  cfg_t c;
  load_cfg(write_cfg(name, top, ""), &c);
  char *src;
  size_t len;
  char hash[65];
  ck_assert_msg(gen_source(&c, "cpu", &src, &len, hash) == 0, "%s", util_errmsg());
  cpu_object whole;
  ck_assert_msg(cpu_build(src, len, "whole", NULL, NULL, &whole) == 0, "%s", util_errmsg());
  free(src);
  gptc_model_get_fn get = (gptc_model_get_fn)(uintptr_t)dlsym(whole.handle, "gptc_model_get");
  ck_assert_ptr_nonnull(get);
  cpu_module units;
  ck_assert_msg(cpu_load(&c, &units) == 0, "%s", util_errmsg());
  ck_assert_int_gt(units.n_units, 8);
  ck_assert_ptr_ne(get(), units.model);
  ck_assert_str_eq(get()->hash, hash);
  compare(get(), units.model);
  cpu_unload(&units);
  cpu_object_close(&whole);
}

/* dropout on, a GEMM whose K spans several K blocks and tiles that share
 * packed rows (emb_dim 64: K = 256 in the MLP's projection) */
START_TEST(units_match_whole_source) { check_bitwise("bits", "emb_dim = 64, n_heads = 4, drop_rate = 0.1,"); }
END_TEST


int main(void) {
  Suite *s = suite_create("kcache");
  TCase *t = tcase_create("kcache");
  tcase_set_timeout(t, 600);
  tcase_add_test(t, reuse_across_configs);
  tcase_add_test(t, explain_cuda);
  tcase_add_test(t, units_match_whole_source);
  suite_add_tcase(s, t);
  return tu_main(s);
}
