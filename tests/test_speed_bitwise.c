/* The GEMMs with a fused GELU epilogue give, bit for bit, what the unfused ops
 * give: the k-order sum (gen/cpu/schedule.lua's order, one fmaf a k) followed by
 * the model's own GELU kernel (forward: G = GELU(C), C kept; backward: C =
 * sum * GELU'(X)). Forced schedules with edge strips (rows and columns short
 * of the register block, a scalar column tail) and many K blocks check that
 * the epilogue runs exactly once on every element, after the whole sum,
 * wherever a schedule or a rewrite of templates/cpu/gemm.c puts it. */
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

/* The host a source is rendered for: one GEMM schedule forced on every
 * instance (NULL: the heuristic), every kernel exported (the standalone GELU
 * kernels included, which a training build folds into the GEMMs). */
static void host_fill(lua_State *L, const void *arg) {
  const char *schedule = arg;
  lua_pushstring(L, "float");
  lua_setfield(L, -2, "real");
  lua_pushinteger(L, gen_vec_bytes());
  lua_setfield(L, -2, "vec_bytes");
  if (schedule) {
    lua_pushstring(L, schedule);
    lua_setfield(L, -2, "schedule_all");
  }
  lua_pushboolean(L, 1);
  lua_setfield(L, -2, "export_kernels");
}

static int accept_any(void *h, const char *so_path, void *ctx) {
  (void)h, (void)so_path, (void)ctx;
  return 0;
}

/* n values in [-2, 2) from a seeded LCG: wide enough to reach GELU's curved part */
static float *seeded(size_t n, uint64_t *x) {
  float *v = malloc(n * sizeof *v);
  ck_assert_ptr_nonnull(v);
  for (size_t i = 0; i < n; i++) {
    *x = *x * 6364136223846793005ull + 1442695040888963407ull;
    v[i] = (float)((double)(*x >> 40) / (double)(1ull << 22)) - 2.0f;
  }
  return v;
}

typedef void (*gemm_epi_fn)(float *, const float *, const float *, const float *, float *);
typedef void (*gelu_fn)(float *, const float *);

/* Checks every gelu and gelu_grad GEMM instance of config src under schedule
 * (NULL: heuristic); returns how many were checked. */
static int check_config(const char *src_cfg, const char *schedule) {
  cfg_t c;
  ck_assert_msg(cfg_load_string(src_cfg, "t.lua", &c) == 0, "%s", util_errmsg());
  char *src, hash[65];
  size_t len;
  ck_assert_msg(gen_render(&c, "cpu.emit", host_fill, schedule, &src, &len, hash) == 0, "%s", util_errmsg());
  if (schedule) ck_assert_msg(strstr(src, "(forced)"), "the header names the forced schedule %s", schedule);
  cpu_object obj;
  ck_assert_msg(cpu_build(src, len, "cpu", accept_any, NULL, &obj) == 0, "%s", util_errmsg());
  int checked = 0;
  for (const char *p = src; (p = strstr(p, "KERNEL void gemm_")); p++) {
    char name[128], ta, tb, mode[16], epi[16];
    int M, N, K;
    if (sscanf(p, "KERNEL void %127[a-z0-9_](", name) != 1) continue;
    if (sscanf(name, "gemm_%dx%dx%d_%c%c_%15[a-z]_%15[a-z_]", &M, &N, &K, &ta, &tb, mode, epi) != 7) continue;
    int fwd = !strcmp(epi, "gelu"), bwd = !strcmp(epi, "gelu_grad");
    if (!fwd && !bwd) continue;
    gemm_epi_fn fn = (gemm_epi_fn)(uintptr_t)dlsym(obj.handle, name);
    char gname[64];
    snprintf(gname, sizeof gname, "gelu_%d_%s", M * N, fwd ? "forward" : "backward");
    gelu_fn gelu = (gelu_fn)(uintptr_t)dlsym(obj.handle, gname);
    ck_assert_msg(fn && gelu, "%s or %s not exported", name, gname);
    uint64_t x = 11 + (uint64_t)checked;
    size_t mn = (size_t)M * N;
    /* A (M, K) or (K, M), B (K, N) or (N, K), bias (N), C and the reference R (M, N);
     * E (M, N): the GELU output (forward) or the GELU input X (backward) */
    float *A = seeded((size_t)M * K, &x), *B = seeded((size_t)K * N, &x), *bias = seeded((size_t)N, &x);
    float *C = seeded(mn, &x), *E = seeded(mn, &x), *R = malloc(mn * 4), *GR = malloc(mn * 4);
    int bias_mode = !strcmp(mode, "bias"), acc = !strcmp(mode, "acc");
    for (int i = 0; i < M; i++)
      for (int j = 0; j < N; j++) {
        float r = acc ? C[(size_t)i * N + j] : bias_mode ? bias[j] : 0;
        for (int k = 0; k < K; k++) {
          float a = ta == 't' ? A[(size_t)k * M + i] : A[(size_t)i * K + k];
          float b = tb == 't' ? B[(size_t)j * K + k] : B[(size_t)k * N + j];
          r = fmaf(a, b, r);
        }
        R[(size_t)i * N + j] = r;
      }
    memcpy(GR, R, mn * 4);
    fn(C, A, B, bias, E);
    const char *sched = schedule ? schedule : "heuristic";
    if (fwd) {
      gelu(GR, R); /* the unfused GELU of the k-order sums */
      for (size_t i = 0; i < mn; i++) {
        ck_assert_msg(memcmp(&C[i], &R[i], 4) == 0, "%s [%s]: C[%zu] = %.9g, the k-order sum %.9g", name, sched, i,
                      C[i], R[i]);
        ck_assert_msg(memcmp(&E[i], &GR[i], 4) == 0, "%s [%s]: G[%zu] = %.9g, GELU of the sum %.9g", name, sched, i,
                      E[i], GR[i]);
      }
    } else {
      gelu(R, E); /* R *= GELU'(X), the unfused backward; GR keeps the sums */
      for (size_t i = 0; i < mn; i++)
        ck_assert_msg(memcmp(&C[i], &R[i], 4) == 0, "%s [%s]: C[%zu] = %.9g, the sum times GELU' %.9g", name, sched,
                      i, C[i], R[i]);
    }
    /* the epilogue changed most outputs (the GELU's curved part was reached) */
    size_t changed = 0;
    for (size_t i = 0; i < mn; i++) changed += fwd ? E[i] != C[i] : C[i] != GR[i];
    ck_assert_msg(changed > mn / 2, "%s: the epilogue changed %zu of %zu outputs", name, changed, mn);
    free(A), free(B), free(bias), free(C), free(E), free(R), free(GR);
    checked++;
  }
  free(src);
  cpu_object_close(&obj);
  return checked;
}

/* An odd model: C = 45, so the MLP's 4C = 180 columns end in a partial vector
 * (a scalar tail) and most register blocks leave edge strips; T x B = 37 x 3
 * rows. */
static const char *ODD =
    "return { name = 'odd', tokenizer = 'char', vocab_size = 30, emb_dim = 45, n_heads = 3, n_layers = 1,"
    " context_length = 40, drop_rate = 0.0, qkv_bias = true, train = { batch_size = 3, max_length = 37 } }";

START_TEST(gelu_epilogue_forced_schedules) {
  static const char *const forced[] = {
      "mr=5 nv=1 kc=7 pack=1 order=1",           /* 111 rows: an edge strip of 1; K = 45 in 7 blocks */
      "mr=3 nv=3 kc=33 pack=0 unroll=2 packb=0 pf=32", /* 180 = 7 x 24 + 12: a vector and a scalar
                                                     * tail; B read in place, its edge panel packed */
  };
  for (size_t f = 0; f < sizeof forced / sizeof *forced; f++)
    ck_assert_int_ge(check_config(ODD, forced[f]), 2);
}
END_TEST

/* The baby recipe's own instances (768 x 512 x 128 forward, its gradient) under
 * this host's heuristic schedule (one K block: K whole). */
START_TEST(gelu_epilogue_baby) {
  char *cfg;
  size_t len;
  ck_assert_int_eq(util_read_file(tu_src("configs/shakespeare-char-baby.lua"), &cfg, &len), 0);
  /* a char config needs its vocabulary: fix it rather than reading the corpus */
  char *pos = strstr(cfg, "tokenizer = \"char\",");
  ck_assert_ptr_nonnull(pos);
  char buf[4096];
  snprintf(buf, sizeof buf, "%.*s vocab_size = 65,%s", (int)(pos - cfg + 19), cfg, pos + 19);
  free(cfg);
  ck_assert_int_ge(check_config(buf, NULL), 2);
}
END_TEST

int main(void) {
  Suite *s = suite_create("speed_bitwise");
  TCase *tc = tcase_create("gelu_epilogue");
  tcase_set_timeout(tc, 300);
  tcase_add_test(tc, gelu_epilogue_forced_schedules);
  tcase_add_test(tc, gelu_epilogue_baby);
  suite_add_tcase(s, tc);
  return tu_main(s);
}
