/* bf16test.h: what the bf16 GEMM tests share (test_bf16hw.c: the paths
 * this CPU has; test_bf16emu.c: the hardware paths through the emulated
 * intrinsics of tests/emu_x86/x86emu.h): a small model, its source rendered
 * for a chosen host and bf16 path and built (emulated or not), scalar
 * references of the two documented sum orders, the plain GEMM instances
 * of a source with test data, and AdamW steps through a built model. Static
 * functions: each test binary includes it once. */
#ifndef GPTC_BF16TEST_H
#define GPTC_BF16TEST_H

#include <dlfcn.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "cfg.h"
#include "cpu.h"
#include "gen.h"
#include "lx.h"
#include "testutil.h"
#include "util.h"

/* A small model whose GEMMs have odd M (B T = 39), odd K (V = 67, and 39 for
 * the weight gradients) and N that fill no register block evenly. */
static const char *SMALL =
    "return { name = 'bf16hw', tokenizer = 'char', vocab_size = 67, emb_dim = 36, n_heads = 3, n_layers = 2,"
    " context_length = 16, drop_rate = 0.0, qkv_bias = true, tie_embeddings = false, precision = '%s',"
    " train = { batch_size = 3, max_length = 13 } }";

static __attribute__((unused)) void load_cfg(const char *prec, cfg_t *c) {
  char src[1024];
  snprintf(src, sizeof src, SMALL, prec);
  ck_assert_msg(cfg_load_string(src, "bf16hw.lua", c) == 0, "%s", util_errmsg());
}

/* The host a source is rendered for: vector width, bf16 path, a forced
 * schedule (NULL: the heuristic), every kernel exported */
typedef struct {
  int vec_bytes;
  const char *path, *schedule_all;
} host_opts;

static __attribute__((unused)) void host_fill(lua_State *L, const void *arg) {
  const host_opts *h = arg;
  lua_pushstring(L, "float");
  lua_setfield(L, -2, "real");
  lua_pushinteger(L, h->vec_bytes);
  lua_setfield(L, -2, "vec_bytes");
  lua_pushinteger(L, 2);
  lua_setfield(L, -2, "threads");
  lua_pushstring(L, h->path);
  lua_setfield(L, -2, "bf16_path");
  if (h->schedule_all) {
    lua_pushstring(L, h->schedule_all);
    lua_setfield(L, -2, "schedule_all");
  }
  lua_pushboolean(L, 1);
  lua_setfield(L, -2, "export_kernels");
}

static __attribute__((unused)) char *render_for(const char *prec, host_opts h, size_t *len) {
  cfg_t c;
  load_cfg(prec, &c);
  char *src, hash[65];
  ck_assert_msg(gen_render(&c, GEN_MOD_EMIT, host_fill, &h, &src, len, hash) == 0, "%s", util_errmsg());
  return src;
}

static __attribute__((unused)) int accept_any(void *h, const char *so_path, void *ctx) {
  (void)h, (void)so_path, (void)ctx;
  return 0;
}

/* The source of prec under h, built into *obj: as generated, or (emu) with
 * GPTC_X86_EMU naming tests/emu_x86/x86emu.h, so its AVX512-BF16 and AMX
 * kernels compile and run on any host. Returns the source as rendered. */
static __attribute__((unused)) char *bf16_build(const char *prec, host_opts h, int emu, cpu_object *obj, size_t *len) {
  char *src = render_for(prec, h, len);
  char *text = src;
  size_t n = *len;
  if (emu) {
    /* the header's hash in the text, so the cache keys of the objects built
     * with it change when it does */
    const char *hdr = tu_src("tests/emu_x86/x86emu.h");
    char def[1200], hash[65], *htext;
    size_t hlen;
    ck_assert_msg(util_read_file(hdr, &htext, &hlen) == 0, "%s", util_errmsg());
    util_sha256_hex(htext, hlen, hash);
    free(htext);
    int d = snprintf(def, sizeof def, "/* x86emu.h %s */\n#define GPTC_X86_EMU \"%s\"\n", hash, hdr);
    text = malloc((size_t)d + n);
    ck_assert_ptr_nonnull(text);
    memcpy(text, def, (size_t)d);
    memcpy(text + d, src, n);
    n += (size_t)d;
  }
  ck_assert_msg(cpu_build(text, n, "cpu", accept_any, NULL, obj) == 0, "%s", util_errmsg());
  if (emu) free(text);
  return src;
}

/* ---- the documented order, from its definition --------------------------------- */

static __attribute__((unused)) uint32_t bits(float x) {
  uint32_t u;
  memcpy(&u, &x, 4);
  return u;
}
static __attribute__((unused)) float from_bits(uint32_t u) {
  float x;
  memcpy(&x, &u, 4);
  return x;
}
/* a denormal as a zero of its sign (DAZ on an input, FTZ on a result) */
static __attribute__((unused)) float ftz(float x) {
  return (bits(x) & 0x7f800000u) ? x : from_bits(bits(x) & 0x80000000u);
}
/* x rounded to bfloat16, to nearest even, as the hardware reads it (denormals zero) */
static __attribute__((unused)) float ref_bf16(float x) {
  uint32_t u = bits(x);
  u = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
  return ftz(from_bits(u));
}

/* C (M, N) from its start: for each pair (2p, 2p + 1) of k in order, the odd
 * element's product then the even one's, each one FMA flushed to zero when
 * denormal; the start flushed too; k = K (odd K) is a zero. */
static __attribute__((unused)) void ref_gemm(int M, int N, int K, int ta, int tb, int mode, const float *A,
                                             const float *B, const float *bias, float *C) {
  for (int i = 0; i < M; i++)
    for (int j = 0; j < N; j++) {
      float r = ftz(mode == 1 ? C[(size_t)i * N + j] : mode == 2 ? bias[j] : 0);
      for (int k = 0; k < K; k += 2)
        for (int e = 1; e >= 0; e--) {
          float a = 0, b = 0;
          if (k + e < K) {
            a = ref_bf16(ta ? A[(size_t)(k + e) * M + i] : A[(size_t)i * K + k + e]);
            b = ref_bf16(tb ? B[(size_t)j * K + k + e] : B[(size_t)(k + e) * N + j]);
          }
          r = ftz(fmaf(a, b, r));
        }
      C[(size_t)i * N + j] = r;
    }
}

/* The order the Intel SDM documents for tdpbf16ps, one 16-pair (32 k) block
 * per instruction: the even elements' products summed from zero in k order,
 * the odd ones' likewise, then C += (even + odd); every step flushed. The
 * blocks start afresh at each K block of KC (the kernel's, zero padded to
 * 32). Real hardware need not follow it: the AMX case counts the elements
 * that do. */
static __attribute__((unused)) float ref_amx_elem(int M, int N, int K, int KC, int ta, int tb, const float *A,
                                                  const float *B, float start, int i, int j) {
  float r = ftz(start);
  for (int pc = 0; pc < K; pc += KC)
    for (int k0 = pc, ke = pc + KC < K ? pc + KC : K; k0 < ke; k0 += 32) {
      float s[2] = {0, 0};
      for (int k = k0; k < k0 + 32; k += 2)
        for (int e = 0; e < 2; e++) {
          float a = 0, b = 0;
          if (k + e < ke) {
            a = ref_bf16(ta ? A[(size_t)(k + e) * M + i] : A[(size_t)i * K + k + e]);
            b = ref_bf16(tb ? B[(size_t)j * K + k + e] : B[(size_t)(k + e) * N + j]);
          }
          s[e] = ftz(fmaf(a, b, s[e]));
        }
      r = ftz(r + ftz(s[0] + s[1]));
    }
  return r;
}

/* ---- running a source's plain GEMM instances ----------------------------------- */

typedef void (*gemm_fn)(float *, const float *, const float *, const float *);

typedef struct {
  char name[128];
  int M, N, K, KC, ta, tb, mode; /* KC: its schedule's K block */
} gemm_inst;

/* The plain GEMM instances of src (no fused epilogue), at most cap; each
 * one's K block from the comment above it ("K blocks of KC"). */
static __attribute__((unused)) int plain_gemms(const char *src, gemm_inst *g, int cap) {
  int n = 0;
  for (const char *p = src; n < cap && (p = strstr(p, "KERNEL void gemm_")); p++) {
    char ta, tb, mode[16], want[160];
    gemm_inst *x = &g[n];
    const char *kb = NULL;
    for (const char *q = src; (q = strstr(q, "K blocks of ")) && q < p; q++) kb = q;
    if (!kb || sscanf(kb, "K blocks of %d", &x->KC) != 1) continue;
    if (sscanf(p, "KERNEL void %127[a-z0-9_](", x->name) != 1) continue;
    if (sscanf(x->name, "gemm_%dx%dx%d_%c%c_%15[a-z0-9]", &x->M, &x->N, &x->K, &ta, &tb, mode) != 6) continue;
    snprintf(want, sizeof want, "gemm_%dx%dx%d_%c%c_%s_bf16", x->M, x->N, x->K, ta, tb, mode);
    if (strcmp(x->name, want)) continue;
    x->ta = ta == 't', x->tb = tb == 't';
    x->mode = !strcmp(mode, "acc") ? 1 : !strcmp(mode, "bias") ? 2 : 0;
    n++;
  }
  return n;
}

typedef struct {
  float *A, *B, *C, *bias;
} gemm_data;

/* Uniform values in [-0.5, 0.5) with, every 37th, a value whose bf16 is
 * denormal (the DAZ on input) and, every 41st, one whose products with
 * ordinary values land among the fp32 denormals (the FTZ on a result). */
static __attribute__((unused)) gemm_data gemm_data_new(const gemm_inst *g, uint64_t seed) {
  gemm_data d;
  size_t sizes[] = {(size_t)g->M * g->K, (size_t)g->K * g->N, (size_t)g->M * g->N, (size_t)g->N};
  float **all[] = {&d.A, &d.B, &d.C, &d.bias};
  uint64_t x = seed;
  for (int t = 0; t < 4; t++) {
    *all[t] = malloc(sizes[t] * 4);
    ck_assert_ptr_nonnull(*all[t]);
    for (size_t i = 0; i < sizes[t]; i++) {
      x = x * 6364136223846793005ull + 1442695040888963407ull;
      float u = (float)((double)(x >> 40) / (double)(1ull << 24)) - 0.5f;
      (*all[t])[i] = i % 37 == 5 ? u * 1e-39f : i % 41 == 7 ? u * 1e-37f : u;
    }
  }
  return d;
}

static __attribute__((unused)) void gemm_data_free(gemm_data *d) { free(d->A), free(d->B), free(d->C), free(d->bias); }

static __attribute__((unused)) void *sym(cpu_object *o, const char *name) {
  void *f = dlsym(o->handle, name);
  ck_assert_msg(f != NULL, "%s not exported", name);
  return f;
}

/* Instance g run by a reference object and by the object under test on the
 * same seeded data: ref and got (M, N), start the C both began from. */
typedef struct {
  gemm_data d; /* got is d.C */
  float *ref, *start;
} gemm_pair;

static __attribute__((unused)) gemm_pair gemm_pair_run(const gemm_inst *g, cpu_object *ref, cpu_object *obj,
                                                        uint64_t seed) {
  gemm_pair p = {gemm_data_new(g, seed), NULL, NULL};
  size_t mn = (size_t)g->M * g->N;
  p.ref = malloc(mn * 4), p.start = malloc(mn * 4);
  ck_assert(p.ref && p.start);
  memcpy(p.ref, p.d.C, mn * 4);
  memcpy(p.start, p.d.C, mn * 4);
  ((gemm_fn)(uintptr_t)sym(ref, g->name))(p.ref, p.d.A, p.d.B, p.d.bias);
  ((gemm_fn)(uintptr_t)sym(obj, g->name))(p.d.C, p.d.A, p.d.B, p.d.bias);
  return p;
}

static __attribute__((unused)) void gemm_pair_free(gemm_pair *p) {
  free(p->ref), free(p->start);
  gemm_data_free(&p->d);
}

/* what element (r, c) of instance g starts from: 0, the bias or C itself */
static __attribute__((unused)) float gemm_pair_start(const gemm_inst *g, const gemm_pair *p, int r, int c) {
  return g->mode == 1 ? p->start[(size_t)r * g->N + c] : g->mode == 2 ? p->d.bias[c] : 0;
}

/* AMX's bound against the portable path for element (r, c) (docs/bench-cpu.md):
 * 2 K 2^-24 (|start| + sum_k |a_k b_k|) + 2^-126, a and b rounded to bf16 */
static __attribute__((unused)) double amx_bound(const gemm_inst *g, const gemm_pair *p, int r, int c) {
  const int M = g->M, N = g->N, K = g->K;
  double mag = fabs(gemm_pair_start(g, p, r, c));
  for (int k = 0; k < K; k++)
    mag += fabs((double)ref_bf16(g->ta ? p->d.A[(size_t)k * M + r] : p->d.A[(size_t)r * K + k]) *
                ref_bf16(g->tb ? p->d.B[(size_t)c * K + k] : p->d.B[(size_t)k * N + c]));
  return 2.0 * K * 0x1p-24 * mag + 0x1p-126;
}

/* AdamW steps of a built model, from the same seeded start: the last loss;
 * with state, a malloc'ed copy of what a checkpoint holds (parameters, then
 * AdamW's m and v: 3 n_params floats, *n of them) */
typedef struct {
  float *params, *grads, *acts, *ga, *m, *v;
  int32_t *in, *tg;
} run_bufs;

static __attribute__((unused)) float train_steps(cpu_object *obj, int steps, float **state, size_t *n) {
  const gptc_model *m = ((gptc_model_get_fn)(uintptr_t)sym(obj, "gptc_model_get"))();
  run_bufs b = {calloc(m->n_params, 4), calloc(m->n_params, 4), calloc(m->n_acts, 4), calloc(m->n_grad_acts, 4),
                calloc(m->n_params, 4), calloc(m->n_params, 4), calloc((size_t)m->B * m->T, 4),
                calloc((size_t)m->B * m->T, 4)};
  uint64_t x = 42;
  for (int i = 0; i < m->n_tensors; i++) {
    const gptc_tensor *t = &m->tensors[i];
    for (size_t j = 0; j < t->numel; j++) {
      x = x * 6364136223846793005ull + 1442695040888963407ull;
      float u = (float)((double)(x >> 40) / (double)(1ull << 24)) - 0.5f;
      b.params[t->offset + j] = t->init_std > 0 ? u * 4 * t->init_std * 3 : t->init_value + 0.1f * u;
    }
  }
  for (int i = 0; i < m->B * m->T; i++) {
    b.in[i] = (i * 37 + 5) % m->vocab_size;
    b.tg[i] = (i * 13 + 1) % m->vocab_size;
  }
  float loss = 0;
  for (int t = 1; t <= steps; t++) {
    gptc_rng rng = {7, (uint64_t)t, 1};
    memset(b.grads, 0, m->n_params * 4);
    loss = m->forward(b.params, b.acts, b.in, b.tg, rng);
    m->backward(b.params, b.grads, b.acts, b.ga, b.in, b.tg, rng, 1.0f);
    m->adamw(b.params, b.grads, b.m, b.v, (gptc_adamw_args){1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 1.0f, t});
  }
  if (state) {
    *n = 3 * m->n_params;
    *state = malloc(*n * 4);
    ck_assert_ptr_nonnull(*state);
    memcpy(*state, b.params, m->n_params * 4);
    memcpy(*state + m->n_params, b.m, m->n_params * 4);
    memcpy(*state + 2 * m->n_params, b.v, m->n_params * 4);
  }
  free(b.params), free(b.grads), free(b.acts), free(b.ga), free(b.m), free(b.v), free(b.in), free(b.tg);
  return loss;
}

#endif
