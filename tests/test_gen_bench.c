/* Benchmark sources (gen/bench.lua, templates/bench/abi.h): the generator
 * renders, for a tiny config, every kernel instance of the training step in
 * its specialized and generic forms; the test compiles and loads that source
 * as `gptc bench` would, then runs every op's two variants from the same
 * inputs and compares what they write, checks each matmul's plain generic
 * GEMM against a naive triple loop, checks the op list itself, and checks
 * that the generic kernels hold no literal shape. */
#include <ctype.h>
#include <dlfcn.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "../templates/bench/abi.h"
#include "cfg.h"
#include "gen.h"
#include "lx.h"
#include "testutil.h"
#include "util.h"

/* tiny-test's shape (V given: char tokenizers derive it from text) */
static const char *CFG_TINY =
    "return { name = 'bench-tiny', tokenizer = 'char', vocab_size = 50, emb_dim = 16, n_heads = 2, n_layers = 2,"
    " context_length = 16, drop_rate = 0.0, qkv_bias = true, tie_embeddings = true,"
    " train = { batch_size = 2, max_length = 16 } }";

/* dropout on, no QKV bias, untied head; hd = 32 takes the specialized
 * attention's blocked (micro-kernel) path, T = 20 leaves partial blocks */
static const char *CFG_DROP =
    "return { name = 'bench-drop', tokenizer = 'char', vocab_size = 29, emb_dim = 64, n_heads = 2, n_layers = 2,"
    " context_length = 24, drop_rate = 0.1, qkv_bias = false, tie_embeddings = false,"
    " train = { batch_size = 2, max_length = 20 } }";

/* rendered only: shapes whose numbers occur nowhere else in the source
 * (B*T = 111, C = 136, 3C = 408, 4C = 544, V = 1013, T = 37, hd = 68) */
static const char *CFG_ODD =
    "return { name = 'bench-odd', tokenizer = 'char', vocab_size = 1013, emb_dim = 136, n_heads = 2, n_layers = 1,"
    " context_length = 37, drop_rate = 0.1, qkv_bias = true, tie_embeddings = true,"
    " train = { batch_size = 3, max_length = 37 } }";

/* header .. body, as gen_source builds a model's source; the caller frees */
static char *render(const char *cfg_src, char hash[65]) {
  cfg_t cfg;
  ck_assert_msg(cfg_load_string(cfg_src, "bench.lua", &cfg) == 0, "%s", util_errmsg());
  lua_State *L = lx_new();
  ck_assert_ptr_nonnull(L);
  cfg_push(L, &cfg);
  lua_newtable(L);
  lua_pushstring(L, "float");
  lua_setfield(L, -2, "real");
  lua_pushinteger(L, gen_vec_bytes());
  lua_setfield(L, -2, "vec_bytes");
  ck_assert_msg(lx_call(L, "bench", "body", 2, 1) == 0, "%s", util_errmsg());
  size_t body_len;
  const char *body = lua_tolstring(L, -1, &body_len);
  util_sha256_hex(body, body_len, hash);
  cfg_push(L, &cfg);
  lua_pushstring(L, hash);
  ck_assert_msg(lx_call(L, "bench", "header", 2, 1) == 0, "%s", util_errmsg());
  size_t head_len;
  const char *head = lua_tolstring(L, -1, &head_len);
  char *src = malloc(head_len + body_len + 1);
  ck_assert_ptr_nonnull(src);
  memcpy(src, head, head_len);
  memcpy(src + head_len, body, body_len);
  src[head_len + body_len] = 0;
  lua_close(L);
  return src;
}

static const gptc_bench *benches[2];

/* renders, compiles with the flags gptc uses (no -ffast-math) and loads */
static const gptc_bench *load(int which) {
  if (benches[which]) return benches[which];
  char hash[65];
  char *src = render(which ? CFG_DROP : CFG_TINY, hash);
  char name[64], cpath[1024], sopath[1024], cmd[4096];
  snprintf(name, sizeof name, "bench_%d.c", which);
  snprintf(cpath, sizeof cpath, "%s", tu_write(name, src, strlen(src)));
  free(src);
  snprintf(sopath, sizeof sopath, "%s/%s.so", tu_tmpdir(), name);
  const char *cc = getenv("CC");
  snprintf(cmd, sizeof cmd,
           "%s -O2 -march=native -fopenmp -fPIC -shared -Wall -Wextra -Werror -o '%s' '%s' -lm",
           cc && *cc ? cc : "cc", sopath, cpath);
  ck_assert_msg(system(cmd) == 0, "compiling %s failed", cpath);
  void *h = dlopen(sopath, RTLD_NOW | RTLD_LOCAL);
  ck_assert_msg(h != NULL, "%s", dlerror());
  gptc_bench_get_fn get = (gptc_bench_get_fn)(uintptr_t)dlsym(h, GPTC_BENCH_SYMBOL);
  ck_assert_ptr_nonnull(get);
  const gptc_bench *b = get();
  ck_assert_int_eq(b->abi_version, GPTC_BENCH_ABI_VERSION);
  ck_assert_str_eq(b->hash, hash);
  ck_assert_str_eq(b->config_name, which ? "bench-drop" : "bench-tiny");
  /* nothing else is exported */
  ck_assert_ptr_null(dlsym(h, "gptc_adamw"));
  ck_assert_ptr_null(dlsym(h, "gptc_philox4x32_10"));
  benches[which] = b;
  return b;
}

/* ---- deterministic buffers ---- */
static uint64_t rng_state;
static double uniform(void) { /* [0, 1) */
  rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
  return (double)(rng_state >> 11) / (double)(1ull << 53);
}

static void fill(const gptc_bench_buf *d, void *p) {
  float *f = p;
  int32_t *ids = p;
  for (size_t i = 0; i < d->numel; i++) switch (d->init) {
    case GPTC_BENCH_RANDN: {
      double u1 = uniform(), u2 = uniform();
      f[i] = (float)(sqrt(-2 * log(1 - u1)) * cos(2 * M_PI * u2));
      break;
    }
    case GPTC_BENCH_POSITIVE: f[i] = (float)(0.5 + uniform()); break;
    case GPTC_BENCH_IDS: ids[i] = (int32_t)(uniform() * d->ids_below); break;
    default: f[i] = 0; break;
    }
}

/* max |a - ref| / max |ref| over n floats */
static double rel_diff(const float *a, const float *ref, size_t n) {
  double d = 0, m = 0;
  for (size_t i = 0; i < n; i++) {
    double e = fabs((double)a[i] - ref[i]);
    if (!(e <= d)) d = e; /* NaN sticks */
    if (fabs(ref[i]) > m) m = fabs(ref[i]);
  }
  return m > 0 ? d / m : d;
}

typedef struct {
  int n;
  void *bufs[16], *snap[16], *first[16];
  size_t bytes[16];
} bench_bufs;

static void bufs_alloc(bench_bufs *s, const gptc_bench_op *op) {
  ck_assert_int_le(op->n_bufs, 16);
  s->n = op->n_bufs;
  for (int i = 0; i < s->n; i++) {
    s->bytes[i] = op->bufs[i].numel * 4;
    s->bufs[i] = malloc(s->bytes[i]);
    s->snap[i] = malloc(s->bytes[i]);
    s->first[i] = malloc(s->bytes[i]);
    ck_assert(s->bufs[i] && s->snap[i] && s->first[i]);
    fill(&op->bufs[i], s->snap[i]);
  }
}

static void bufs_restore(bench_bufs *s) {
  for (int i = 0; i < s->n; i++) memcpy(s->bufs[i], s->snap[i], s->bytes[i]);
}

static void bufs_free(bench_bufs *s) {
  for (int i = 0; i < s->n; i++) {
    free(s->bufs[i]);
    free(s->snap[i]);
    free(s->first[i]);
  }
}

/* op(A) . op(B) (+ C) in double, from the snapshot */
static void naive_gemm(const gptc_bench_op *op, const bench_bufs *s, float *out) {
  const float *A = s->snap[op->a_buf], *B = s->snap[op->b_buf], *C0 = s->snap[op->c_buf];
  for (int i = 0; i < op->M; i++)
    for (int j = 0; j < op->N; j++) {
      double acc = op->accumulate ? C0[(size_t)i * op->N + j] : 0;
      for (int k = 0; k < op->K; k++) {
        double a = op->ta ? A[(size_t)k * op->M + i] : A[(size_t)i * op->K + k];
        double b = op->tb ? B[(size_t)j * op->K + k] : B[(size_t)k * op->N + j];
        acc += a * b;
      }
      out[(size_t)i * op->N + j] = (float)acc;
    }
}

/* Every op: generic and specialized from the same inputs write the same
 * outputs; matmuls: plain against the naive product. */
static void check_variants(const gptc_bench *b) {
  rng_state = 0x9E3779B97F4A7C15ull;
  for (int o = 0; o < b->n_ops; o++) {
    const gptc_bench_op *op = &b->ops[o];
    bench_bufs s;
    bufs_alloc(&s, op);
    bufs_restore(&s);
    op->generic(s.bufs, op->dims);
    for (int i = 0; i < s.n; i++) memcpy(s.first[i], s.bufs[i], s.bytes[i]);
    bufs_restore(&s);
    op->specialized(s.bufs, op->dims);
    int outs = 0;
    for (int i = 0; i < s.n; i++) {
      if (!op->bufs[i].out) continue;
      outs++;
      double d = rel_diff(s.first[i], s.bufs[i], op->bufs[i].numel);
      ck_assert_msg(d <= 1e-4, "%s: %s generic vs specialized: relative difference %g", op->kernel, op->bufs[i].name,
                    d);
    }
    ck_assert_msg(outs > 0, "%s writes no buffer", op->kernel);
    if (op->gemm) {
      ck_assert_ptr_nonnull(op->plain);
      float *ref = malloc(s.bytes[op->c_buf]);
      ck_assert_ptr_nonnull(ref);
      naive_gemm(op, &s, ref);
      bufs_restore(&s);
      op->plain(s.bufs, op->dims);
      double d = rel_diff(s.bufs[op->c_buf], ref, (size_t)op->M * op->N);
      ck_assert_msg(d <= 1e-4, "%s: plain GEMM vs naive: relative difference %g", op->kernel, d);
      free(ref);
    }
    bufs_free(&s);
  }
}

START_TEST(variants_tiny) { check_variants(load(0)); }
END_TEST

START_TEST(variants_dropout) { check_variants(load(1)); }
END_TEST

static const gptc_bench_op *find_op(const gptc_bench *b, const char *kernel) {
  for (int i = 0; i < b->n_ops; i++)
    if (!strcmp(b->ops[i].kernel, kernel)) return &b->ops[i];
  return NULL;
}

/* The tiny config's training step, kernel by kernel (B*T = 32, C = 16,
 * V = 50, L = 2): forward, backward in reverse, AdamW. */
START_TEST(op_list_tiny) {
  const gptc_bench *b = load(0);
  static const struct {
    const char *kernel, *op, *pass;
    int calls;
  } want[] = {
      {"embed_2x16_forward", "embedding", "forward", 1},
      {"layernorm_32x16_forward", "layernorm", "forward", 5},
      {"gemm_32x48x16_nn_bias", "matmul", "forward", 2},
      {"attention_2x16_forward", "attention", "forward", 2},
      {"gemm_32x16x16_nn_bias_residual", "matmul", "forward", 2},
      {"gemm_32x64x16_nn_bias_gelu", "matmul", "forward", 2},
      {"gemm_32x16x64_nn_bias_residual", "matmul", "forward", 2},
      {"gemm_32x50x16_nt_set", "matmul", "forward", 1},
      {"crossentropy_32x50_forward", "crossentropy", "forward", 1},
      {"crossentropy_32x50_backward", "crossentropy", "backward", 1},
      {"gemm_32x16x50_nn_set", "matmul", "backward", 1},
      {"gemm_50x16x32_tn_acc", "matmul", "backward", 1},
      {"layernorm_32x16_backward", "layernorm", "backward", 1},
      {"residual_512_backward", "residual", "backward", 4},
      {"gemm_32x64x16_nt_set_gelu_grad", "matmul", "backward", 2},
      {"gemm_64x16x32_tn_acc_colsum", "matmul", "backward", 2},
      {"gemm_32x16x64_nt_set", "matmul", "backward", 2},
      {"gemm_16x64x32_tn_acc_colsum", "matmul", "backward", 2},
      {"layernorm_32x16_backward_acc", "layernorm", "backward", 4},
      {"gemm_32x16x16_nt_set", "matmul", "backward", 2},
      {"gemm_16x16x32_tn_acc_colsum", "matmul", "backward", 2},
      {"attention_2x16_backward", "attention", "backward", 2},
      {"gemm_32x16x48_nt_set", "matmul", "backward", 2},
      {"gemm_16x48x32_tn_acc_colsum", "matmul", "backward", 2},
      {"embed_2x16_backward", "embedding", "backward", 1},
      {"gptc_adamw", "adamw", "update", 1},
  };
  int n = (int)(sizeof want / sizeof want[0]);
  ck_assert_int_eq(b->n_ops, n);
  for (int i = 0; i < n; i++) {
    const gptc_bench_op *op = &b->ops[i];
    ck_assert_str_eq(op->kernel, want[i].kernel);
    ck_assert_str_eq(op->op, want[i].op);
    ck_assert_str_eq(op->pass, want[i].pass);
    ck_assert_int_eq(op->calls, want[i].calls);
    ck_assert(op->specialized && op->generic && op->what && op->what[0]);
    ck_assert(op->flops > 0 && op->bytes > 0);
    ck_assert_int_eq(op->compute_bound, !strcmp(op->op, "matmul") || !strcmp(op->op, "attention"));
    ck_assert_int_eq(op->gemm, !strcmp(op->op, "matmul"));
    if (op->gemm) {
      ck_assert(op->flops == 2.0 * op->M * op->N * op->K);
      ck_assert_int_eq(op->n_dims, 3);
      ck_assert_int_eq(op->dims[0], op->M);
      ck_assert_int_eq(op->dims[1], op->N);
      ck_assert_int_eq(op->dims[2], op->K);
      ck_assert_int_eq((int)op->bufs[op->c_buf].numel, op->M * op->N);
      ck_assert_int_eq((int)op->bufs[op->a_buf].numel, op->M * op->K);
      ck_assert_int_eq((int)op->bufs[op->b_buf].numel, op->K * op->N);
      ck_assert_int_eq(op->accumulate, strstr(op->kernel, "_acc") != NULL);
    }
  }
  /* shapes and buffers of a few */
  const gptc_bench_op *fc = find_op(b, "gemm_32x64x16_nn_bias_gelu");
  ck_assert(fc->M == 32 && fc->N == 64 && fc->K == 16 && !fc->ta && !fc->tb && !fc->accumulate);
  ck_assert_int_eq(fc->n_bufs, 5);
  ck_assert_str_eq(fc->bufs[3].name, "bias");
  ck_assert_str_eq(fc->bufs[4].name, "G");
  ck_assert_int_eq(fc->bufs[4].out, 1);
  ck_assert_ptr_nonnull(strstr(fc->what, "h.*.mlp.c_fc"));
  ck_assert_ptr_nonnull(strstr(fc->what, "GELU"));
  const gptc_bench_op *dw = find_op(b, "gemm_50x16x32_tn_acc");
  ck_assert(dw->M == 50 && dw->N == 16 && dw->K == 32 && dw->ta && !dw->tb && dw->accumulate);
  ck_assert_int_eq(dw->bufs[dw->c_buf].out, 1);
  const gptc_bench_op *att = find_op(b, "attention_2x16_forward");
  ck_assert(att->flops == 2.0 * 2 * 16 * 17 / 2 * 8 * 2 * 2);
  ck_assert(find_op(b, "attention_2x16_backward")->flops == 2 * att->flops);
  ck_assert_int_eq(att->n_dims, 5);
  ck_assert_str_eq(att->dim_names[4], "hd");
  ck_assert_int_eq(att->dims[4], 8);
  const gptc_bench_op *emb = find_op(b, "embed_2x16_forward");
  ck_assert_str_eq(emb->bufs[3].name, "inputs");
  ck_assert_int_eq(emb->bufs[3].init, GPTC_BENCH_IDS);
  ck_assert_int_eq(emb->bufs[3].ids_below, 50);
  const gptc_bench_op *ln = find_op(b, "layernorm_32x16_backward_acc");
  ck_assert_str_eq(ln->bufs[6].name, "rstd");
  ck_assert_int_eq(ln->bufs[6].init, GPTC_BENCH_POSITIVE);
  const gptc_bench_op *ce = find_op(b, "crossentropy_32x50_backward");
  ck_assert_int_eq(ce->bufs[2].init, GPTC_BENCH_IDS);
  ck_assert_int_eq(ce->bufs[0].out, 1);
}
END_TEST

/* the untied, bias-free config has lm_head's own GEMMs and no QKV bias */
START_TEST(op_list_dropout) {
  const gptc_bench *b = load(1);
  ck_assert_ptr_nonnull(find_op(b, "gemm_40x192x64_nn_set"));       /* c_attn, no bias */
  ck_assert_ptr_nonnull(find_op(b, "gemm_64x192x40_tn_acc"));       /* its weight gradient: no column sums */
  ck_assert_ptr_nonnull(find_op(b, "gemm_29x64x40_tn_acc"));        /* lm_head's weight gradient */
  ck_assert_int_eq(find_op(b, "residual_2560_backward")->calls, 4); /* two per layer */
  ck_assert_int_eq(find_op(b, "layernorm_40x64_forward")->calls, 5);
}
END_TEST

static int ident_char(char c) { return isalnum((unsigned char)c) || c == '_'; }

/* true when `num` occurs in s[0, n) as a whole number token */
static int has_number(const char *s, size_t n, const char *num) {
  size_t k = strlen(num);
  for (size_t i = 0; i + k <= n; i++) {
    if (memcmp(s + i, num, k)) continue;
    int before = i > 0 && ident_char(s[i - 1]);
    int after = i + k < n && ident_char(s[i + k]);
    if (!before && !after) return 1;
  }
  return 0;
}

/* The function definitions in [p, end) whose name starts with `prefix`: a
 * line at column 0 naming `prefix...(`, up to the next closing brace at
 * column 0. Each goes to fn; returns how many. */
static int each_function(const char *p, const char *end, const char *prefix,
                         void (*fn)(const char *name, const char *body, size_t n, void *ctx), void *ctx) {
  int count = 0;
  size_t plen = strlen(prefix);
  while (p < end) {
    const char *eol = memchr(p, '\n', (size_t)(end - p));
    if (!eol) break;
    const char *name = NULL;
    if (!strncmp(p, "KERNEL ", 7) || !strncmp(p, "GPTC_INLINE ", 12) || !strncmp(p, "static ", 7)) {
      for (const char *q = p + 1; q + plen < eol && !name; q++) {
        if (strncmp(q, prefix, plen) || ident_char(q[-1])) continue;
        const char *r = q;
        while (r < eol && ident_char(*r)) r++;
        if (r < eol && *r == '(') name = q;
      }
    }
    if (!name) {
      p = eol + 1;
      continue;
    }
    const char *close = strstr(eol, "\n}\n");
    ck_assert_ptr_nonnull(close);
    char fname[128];
    size_t len = (size_t)(strchr(name, '(') - name);
    snprintf(fname, sizeof fname, "%.*s", (int)len, name);
    fn(fname, p, (size_t)(close + 2 - p), ctx);
    count++;
    p = close + 3;
  }
  return count;
}

static const char *const ODD_DIMS[] = {"111", "136", "408", "544", "1013", "37", "68", "15096"};

static void no_literal_dims(const char *name, const char *body, size_t n, void *ctx) {
  (void)ctx;
  for (size_t i = 0; i < sizeof ODD_DIMS / sizeof ODD_DIMS[0]; i++)
    ck_assert_msg(!has_number(body, n, ODD_DIMS[i]), "%s holds the literal shape %s", name, ODD_DIMS[i]);
}

static void has_literal_m(const char *name, const char *body, size_t n, void *ctx) {
  (void)name;
  *(int *)ctx += has_number(body, n, "111");
}

/* No generic kernel (nor anything it inlines) holds a shape of the config as
 * a number: the shapes reach it only through gd. The specialized GEMMs of
 * the same source do hold them, so the check can see them. */
START_TEST(generic_has_no_literal_shapes) {
  char hash[65];
  char *src = render(CFG_ODD, hash);
  const char *gen = strstr(src, "/* ==== generic kernels");
  const char *end = strstr(src, "/* ==== thunks");
  ck_assert(gen && end && gen < end);
  int n = each_function(gen, end, "generic_", no_literal_dims, NULL);
  ck_assert_int_ge(n, 20);
  int gemms = each_function(gen, end, "generic_gemm_", no_literal_dims, NULL);
  ck_assert_int_ge(gemms, 10);
  /* the loop bounds do read gd */
  ck_assert_ptr_nonnull(strstr(gen, "tile < (((gd.M + "));
  ck_assert_ptr_nonnull(strstr(gen, "for (int r = 0; r < gd.N; r++)"));
  int spec = 0;
  ck_assert_int_ge(each_function(src, gen, "gemm_111x", has_literal_m, &spec), 3);
  ck_assert_int_ge(spec, 3);
  free(src);
}
END_TEST

/* compiled once in the parent process, before Check forks each test */
static void setup(void) {
  load(0);
  load(1);
}

int main(void) {
  Suite *s = suite_create("gen_bench");
  TCase *tc = tcase_create("gen_bench");
  tcase_set_timeout(tc, 600);
  tcase_add_unchecked_fixture(tc, setup, NULL);
  tcase_add_test(tc, op_list_tiny);
  tcase_add_test(tc, op_list_dropout);
  tcase_add_test(tc, variants_tiny);
  tcase_add_test(tc, variants_dropout);
  tcase_add_test(tc, generic_has_no_literal_shapes);
  suite_add_tcase(s, tc);
  return tu_main(s);
}
