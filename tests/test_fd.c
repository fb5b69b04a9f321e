/* Finite differences: every op's backward, and the whole model's gradient,
 * against central differences of the forward, all in float64. The generator
 * renders the kernels with element type double and exported kernel symbols
 * for a tiny config (V=11, C=8, H=2, L=2, T=7, B=2, qkv_bias on, dropout on),
 * tied and untied, with GEMM blocks smaller than the shapes; the test compiles
 * and loads that source itself, through runtime/model.h's ABI with element
 * type double: the text the generated prelude pastes (GPTC_REAL = real). */
/* before any include: this file's gptc_model has double buffers (cpu.h sees
 * it too; of cpu.h this file calls only cpu_set_threads) */
#define GPTC_REAL double

#include <dlfcn.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "cfg.h"
#include "cpu.h"
#include "lx.h"
#include "model.h"
#include "testutil.h"
#include "util.h"

enum { V = 11, C = 8, H = 2, L = 2, T = 7, B = 2, CTX = 8, BT = B * T };

static const char *CFG =
    "return { name = 'fd-%s', tokenizer = 'char', vocab_size = 11, emb_dim = 8, n_heads = 2, n_layers = 2,"
    " context_length = 8, drop_rate = 0.1, qkv_bias = true, tie_embeddings = %s,"
    " train = { batch_size = 2, max_length = 7 } }";

static void *fd_handle[2];
static const gptc_model *fd_models[2];

/* Renders the double-precision source for the config through the generator
 * (the same path gen_source takes, with opts.real = "double"), compiles it
 * and loads it. */
static const gptc_model *fd_load(int tied) {
  if (fd_models[tied]) return fd_models[tied];
  char src[1024];
  snprintf(src, sizeof src, CFG, tied ? "tied" : "untied", tied ? "true" : "false");
  cfg_t cfg;
  ck_assert_msg(cfg_load_string(src, "fd.lua", &cfg) == 0, "%s", util_errmsg());
  lua_State *Ls = lx_new();
  ck_assert_ptr_nonnull(Ls);
  cfg_push(Ls, &cfg);
  lua_newtable(Ls);
  lua_pushstring(Ls, "double");
  lua_setfield(Ls, -2, "real");
  lua_pushboolean(Ls, 1);
  lua_setfield(Ls, -2, "export_kernels");
  /* 16-byte vectors: the baseline of every x86-64 (and arm64) compiler, as
   * this build is compiled without -march=native */
  lua_pushinteger(Ls, 16);
  lua_setfield(Ls, -2, "vec_bytes");
  /* GEMM blocks smaller than the shapes: every matmul runs several M, N and
   * K blocks with partial edge tiles */
  lua_newtable(Ls);
  lua_pushinteger(Ls, 8);
  lua_setfield(Ls, -2, "MC");
  lua_pushinteger(Ls, 16);
  lua_setfield(Ls, -2, "NC");
  lua_pushinteger(Ls, 5);
  lua_setfield(Ls, -2, "KC");
  /* the tied build copies the rows of A, the untied one reads them in place */
  lua_pushboolean(Ls, tied);
  lua_setfield(Ls, -2, "pack_rows");
  lua_setfield(Ls, -2, "gemm_blocks");
  ck_assert_msg(lx_call(Ls, "cpu.emit", "body", 2, 1) == 0, "%s", util_errmsg());
  size_t n;
  const char *body = lua_tolstring(Ls, -1, &n);
  util_buf full = {0};
  util_buf_printf(&full, "#define GPTC_SOURCE_HASH \"fd\"\n");
  util_buf_add(&full, body, n);
  lua_close(Ls);
  char name[64], cpath[1024], sopath[1024], cmd[4096];
  snprintf(name, sizeof name, "fd_%s.c", tied ? "tied" : "untied");
  snprintf(cpath, sizeof cpath, "%s", tu_write(name, full.data, full.len));
  util_buf_free(&full);
  snprintf(sopath, sizeof sopath, "%s/%s.so", tu_tmpdir(), name);
  const char *cc = getenv("CC");
  snprintf(cmd, sizeof cmd, "%s -O1 -fopenmp -fPIC -shared -Wall -Wextra -Werror -o '%s' '%s' -lm", cc && *cc ? cc : "cc",
           sopath, cpath);
  ck_assert_msg(system(cmd) == 0, "compiling %s failed", cpath);
  fd_handle[tied] = dlopen(sopath, RTLD_NOW | RTLD_LOCAL);
  ck_assert_msg(fd_handle[tied] != NULL, "%s", dlerror());
  const gptc_model *(*get)(void) = (const gptc_model *(*)(void))(uintptr_t)dlsym(fd_handle[tied], "gptc_model_get");
  ck_assert_ptr_nonnull(get);
  fd_models[tied] = get();
  ck_assert_int_eq(fd_models[tied]->abi_version, GPTC_ABI_VERSION);
  return fd_models[tied];
}

/* a kernel of the generated source by name (names encode the shapes) */
static void *fd_sym(int tied, const char *fmt, ...) UTIL_PRINTF(2, 3);
static void *fd_sym(int tied, const char *fmt, ...) {
  char sym[128];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(sym, sizeof sym, fmt, ap);
  va_end(ap);
  fd_load(tied);
  void *p = dlsym(fd_handle[tied], sym);
  ck_assert_msg(p != NULL, "kernel %s is not in the generated source", sym);
  return p;
}

/* ---- deterministic test data ---- */
static uint64_t fd_state = 0x9E3779B97F4A7C15ull;
static double fd_rand(void) { /* uniform in [-1, 1) */
  fd_state = fd_state * 6364136223846793005ull + 1442695040888963407ull;
  return (double)(fd_state >> 11) / (double)(1ull << 52) - 1.0;
}
static void fd_fill(double *x, size_t n, double scale) {
  for (size_t i = 0; i < n; i++) x[i] = scale * fd_rand();
}
static double fd_dot(const double *a, const double *b, size_t n) {
  double s = 0;
  for (size_t i = 0; i < n; i++) s += a[i] * b[i];
  return s;
}

/* Central differences of f with respect to x[i] for every i (stride 1) or a
 * sample, against the analytic gradient g. */
typedef double (*fd_fn)(void *ctx);
static int fd_checked;
static void fd_check(const char *what, double *x, size_t n, const double *g, fd_fn f, void *ctx) {
  const double h = 1e-6;
  size_t step = n > 64 ? n / 41 + 1 : 1;
  for (size_t i = 0; i < n; i += step) {
    double x0 = x[i];
    x[i] = x0 + h;
    double fp = f(ctx);
    x[i] = x0 - h;
    double fm = f(ctx);
    x[i] = x0;
    double fd = (fp - fm) / (2 * h);
    double err = fabs(fd - g[i]), scale = fmax(fabs(fd), fabs(g[i]));
    ck_assert_msg(err <= 1e-6 * scale + 1e-8, "%s[%zu]: analytic %.12g, finite difference %.12g", what, i, g[i], fd);
    fd_checked++;
  }
}

static const gptc_rng RNG_ON = {1234, 7, 1};

/* ---- LayerNorm ---- */
typedef void (*ln_fwd_t)(double *, double *, double *, const double *, const double *, const double *);
typedef void (*ln_bwd_t)(double *, double *, double *, const double *, const double *, const double *, const double *,
                         const double *);
typedef struct {
  ln_fwd_t fwd;
  double x[BT * C], w[C], b[C], r[BT * C], out[BT * C], mean[BT], rstd[BT];
} ln_ctx;
static double ln_loss(void *p) {
  ln_ctx *c = p;
  c->fwd(c->out, c->mean, c->rstd, c->x, c->w, c->b);
  return fd_dot(c->out, c->r, BT * C);
}

START_TEST(op_layernorm) {
  static ln_ctx c;
  c.fwd = (ln_fwd_t)fd_sym(1, "layernorm_%dx%d_forward", BT, C);
  ln_bwd_t bwd = (ln_bwd_t)fd_sym(1, "layernorm_%dx%d_backward_acc", BT, C);
  fd_fill(c.x, BT * C, 2);
  fd_fill(c.w, C, 1);
  fd_fill(c.b, C, 1);
  fd_fill(c.r, BT * C, 1);
  ln_loss(&c);
  double dx[BT * C], dw[C], db[C];
  /* the _acc variant adds: start from a known value and subtract it */
  for (int i = 0; i < BT * C; i++) dx[i] = 0.5;
  memset(dw, 0, sizeof dw);
  memset(db, 0, sizeof db);
  bwd(dx, dw, db, c.r, c.x, c.mean, c.rstd, c.w);
  for (int i = 0; i < BT * C; i++) dx[i] -= 0.5;
  fd_check("layernorm dinp", c.x, BT * C, dx, ln_loss, &c);
  fd_check("layernorm dweight", c.w, C, dw, ln_loss, &c);
  fd_check("layernorm dbias", c.b, C, db, ln_loss, &c);
  /* the plain variant overwrites dinp */
  ln_bwd_t set = (ln_bwd_t)fd_sym(1, "layernorm_%dx%d_backward", BT, C);
  double dx2[BT * C];
  for (int i = 0; i < BT * C; i++) dx2[i] = 1e9;
  set(dx2, dw, db, c.r, c.x, c.mean, c.rstd, c.w);
  for (int i = 0; i < BT * C; i++) ck_assert_double_eq_tol(dx2[i], dx[i], 1e-12);
}
END_TEST

/* ---- matmul: x (BT, C) . W (C, 3C) + b, and the tied LM head x . wte^T ---- */
typedef void (*gemm_t)(double *, const double *, const double *, const double *);
typedef void (*gemm_db_t)(double *, const double *, const double *, const double *, double *);
typedef struct {
  gemm_t fwd;
  int m, n, k;
  double x[BT * 4 * C], w[4 * C * V], b[4 * C], r[BT * 4 * C], out[BT * 4 * C];
} mm_ctx;
static double mm_loss(void *p) {
  mm_ctx *c = p;
  c->fwd(c->out, c->x, c->w, c->b);
  return fd_dot(c->out, c->r, (size_t)c->m * c->n);
}

START_TEST(op_matmul) {
  static mm_ctx c;
  c.fwd = (gemm_t)fd_sym(1, "gemm_%dx%dx%d_nn_bias", BT, 3 * C, C);
  c.m = BT, c.n = 3 * C, c.k = C;
  fd_fill(c.x, BT * C, 1);
  fd_fill(c.w, C * 3 * C, 1);
  fd_fill(c.b, 3 * C, 1);
  fd_fill(c.r, BT * 3 * C, 1);
  double dx[BT * C], dw[C * 3 * C], db[3 * C];
  for (int i = 0; i < C * 3 * C; i++) dw[i] = 0.25;
  for (int i = 0; i < 3 * C; i++) db[i] = -0.25;
  ((gemm_t)fd_sym(1, "gemm_%dx%dx%d_nt_set", BT, C, 3 * C))(dx, c.r, c.w, NULL);
  /* the weight gradient also sums the bias gradient */
  ((gemm_db_t)fd_sym(1, "gemm_%dx%dx%d_tn_acc_colsum", C, 3 * C, BT))(dw, c.x, c.r, NULL, db);
  for (int i = 0; i < C * 3 * C; i++) dw[i] -= 0.25;
  for (int i = 0; i < 3 * C; i++) db[i] += 0.25;
  fd_check("matmul dinp", c.x, BT * C, dx, mm_loss, &c);
  fd_check("matmul dweight", c.w, C * 3 * C, dw, mm_loss, &c);
  fd_check("matmul dbias", c.b, 3 * C, db, mm_loss, &c);

  /* LM head: logits (BT, V) = x (BT, C) . wte (V, C)^T */
  static mm_ctx h;
  h.fwd = (gemm_t)fd_sym(1, "gemm_%dx%dx%d_nt_set", BT, V, C);
  h.m = BT, h.n = V, h.k = C;
  fd_fill(h.x, BT * C, 1);
  fd_fill(h.w, V * C, 1);
  fd_fill(h.r, BT * V, 1);
  double hx[BT * C], hw[V * C];
  memset(hw, 0, sizeof hw);
  ((gemm_t)fd_sym(1, "gemm_%dx%dx%d_nn_set", BT, C, V))(hx, h.r, h.w, NULL);
  ((gemm_t)fd_sym(1, "gemm_%dx%dx%d_tn_acc", V, C, BT))(hw, h.r, h.x, NULL);
  fd_check("lm head dinp", h.x, BT * C, hx, mm_loss, &h);
  fd_check("lm head dweight", h.w, V * C, hw, mm_loss, &h);
}
END_TEST

/* ---- attention with dropout on the weights ---- */
typedef void (*att_fwd_t)(double *, double *, const double *, double *, gptc_rng, uint32_t);
typedef void (*att_bwd_t)(double *, const double *, const double *, const double *, double *, gptc_rng, uint32_t);
typedef struct {
  att_fwd_t fwd;
  gptc_rng rng;
  double qkv[BT * 3 * C], r[BT * C], out[BT * C], att[B * H * T * T], scratch[8192];
} att_ctx;
static double att_loss(void *p) {
  att_ctx *c = p;
  c->fwd(c->out, c->att, c->qkv, c->scratch, c->rng, 4);
  return fd_dot(c->out, c->r, BT * C);
}

START_TEST(op_attention) {
  static att_ctx c;
  c.fwd = (att_fwd_t)fd_sym(1, "attention_%dx%d_forward", B, T);
  att_bwd_t bwd = (att_bwd_t)fd_sym(1, "attention_%dx%d_backward", B, T);
  for (int train = 0; train <= 1; train++) {
    c.rng = RNG_ON;
    c.rng.train = train;
    fd_fill(c.qkv, BT * 3 * C, 1.5);
    fd_fill(c.r, BT * C, 1);
    att_loss(&c);
    /* stored weights: causal rows that sum to 1 */
    for (int bh = 0; bh < B * H; bh++)
      for (int t = 0; t < T; t++) {
        double s = 0;
        for (int t2 = 0; t2 < T; t2++) {
          double w = c.att[(bh * T + t) * T + t2];
          if (t2 > t) ck_assert(w == 0);
          s += w;
        }
        ck_assert_double_eq_tol(s, 1, 1e-12);
      }
    double d[BT * 3 * C];
    static double scratch[16384];
    bwd(d, c.r, c.qkv, c.att, scratch, c.rng, 4);
    fd_check(train ? "attention dqkv (dropout)" : "attention dqkv", c.qkv, BT * 3 * C, d, att_loss, &c);
  }
}
END_TEST

/* ---- GELU ---- */
typedef void (*ew_t)(double *, const double *);
typedef struct {
  ew_t fwd;
  double x[BT * 4 * C], r[BT * 4 * C], out[BT * 4 * C];
} gelu_ctx;
static double gelu_loss(void *p) {
  gelu_ctx *c = p;
  c->fwd(c->out, c->x);
  return fd_dot(c->out, c->r, BT * 4 * C);
}

START_TEST(op_gelu) {
  static gelu_ctx c;
  c.fwd = (ew_t)fd_sym(1, "gelu_%d_forward", BT * 4 * C);
  fd_fill(c.x, BT * 4 * C, 4);
  fd_fill(c.r, BT * 4 * C, 1);
  gelu_loss(&c);
  /* spot values of the tanh approximation */
  double xs[BT * 4 * C] = {-3, -1, -0.5, 0, 0.5, 1, 3}, ys[BT * 4 * C];
  c.fwd(ys, xs);
  /* torch.nn.functional.gelu(x, approximate="tanh") in float64 */
  const double want[7] = {-0.0036373920817729943, -0.15880800939172324, -0.15428599017485606, 0,
                          0.34571400982514394, 0.8411919906082768, 2.996362607918227};
  for (int i = 0; i < 7; i++) ck_assert_double_eq_tol(ys[i], want[i], 1e-14);
  double d[BT * 4 * C];
  memcpy(d, c.r, sizeof d);
  ((ew_t)fd_sym(1, "gelu_%d_backward", BT * 4 * C))(d, c.x);
  fd_check("gelu", c.x, BT * 4 * C, d, gelu_loss, &c);
}
END_TEST

/* ---- residual with dropout on the branch ---- */
typedef void (*res_fwd_t)(double *, const double *, gptc_rng, uint32_t);
typedef void (*res_bwd_t)(double *, const double *, gptc_rng, uint32_t);
typedef struct {
  res_fwd_t fwd;
  double x[BT * C], branch[BT * C], r[BT * C], out[BT * C];
} res_ctx;
static double res_loss(void *p) {
  res_ctx *c = p;
  memcpy(c->out, c->branch, sizeof c->out);
  c->fwd(c->out, c->x, RNG_ON, 2);
  return fd_dot(c->out, c->r, BT * C);
}

START_TEST(op_residual) {
  static res_ctx c;
  c.fwd = (res_fwd_t)fd_sym(1, "residual_%d_forward", BT * C);
  fd_fill(c.x, BT * C, 1);
  fd_fill(c.branch, BT * C, 1);
  fd_fill(c.r, BT * C, 1);
  res_loss(&c);
  /* inverted dropout: each output is x, or x + branch / (1 - p) */
  int dropped = 0;
  for (int i = 0; i < BT * C; i++) {
    double kept = c.x[i] + c.branch[i] / 0.9;
    ck_assert(fabs(c.out[i] - c.x[i]) < 1e-15 || fabs(c.out[i] - kept) < 1e-12);
    dropped += fabs(c.out[i] - c.x[i]) < 1e-15;
  }
  ck_assert_int_gt(dropped, 0);
  ck_assert_int_lt(dropped, BT * C / 2);
  double db[BT * C];
  ((res_bwd_t)fd_sym(1, "residual_%d_backward", BT * C))(db, c.r, RNG_ON, 2);
  fd_check("residual dbranch", c.branch, BT * C, db, res_loss, &c);
  fd_check("residual dx", c.x, BT * C, c.r, res_loss, &c); /* skip path: identity */
}
END_TEST

/* ---- embeddings with dropout ---- */
typedef void (*emb_fwd_t)(double *, const double *, const double *, const int32_t *, gptc_rng);
typedef void (*emb_bwd_t)(double *, double *, double *, const int32_t *, gptc_rng);
typedef struct {
  emb_fwd_t fwd;
  int32_t ids[BT];
  double wte[V * C], wpe[CTX * C], r[BT * C], out[BT * C];
} emb_ctx;
static double emb_loss(void *p) {
  emb_ctx *c = p;
  c->fwd(c->out, c->wte, c->wpe, c->ids, RNG_ON);
  return fd_dot(c->out, c->r, BT * C);
}

START_TEST(op_embed) {
  static emb_ctx c;
  c.fwd = (emb_fwd_t)fd_sym(1, "embed_%dx%d_forward", B, T);
  for (int i = 0; i < BT; i++) c.ids[i] = (i * 7) % 4; /* repeated ids: the scatter must add */
  fd_fill(c.wte, V * C, 1);
  fd_fill(c.wpe, CTX * C, 1);
  fd_fill(c.r, BT * C, 1);
  emb_loss(&c);
  double dwte[V * C], dwpe[CTX * C], d[BT * C];
  memset(dwte, 0, sizeof dwte);
  memset(dwpe, 0, sizeof dwpe);
  memcpy(d, c.r, sizeof d);
  ((emb_bwd_t)fd_sym(1, "embed_%dx%d_backward", B, T))(dwte, dwpe, d, c.ids, RNG_ON);
  fd_check("embed dwte", c.wte, V * C, dwte, emb_loss, &c);
  fd_check("embed dwpe", c.wpe, CTX * C, dwpe, emb_loss, &c);
}
END_TEST

/* ---- softmax cross-entropy ---- */
typedef double (*ce_fwd_t)(const double *, double *, double *, const int32_t *);
typedef void (*ce_bwd_t)(double *, const double *, const int32_t *, float);
typedef struct {
  ce_fwd_t fwd;
  int32_t targets[BT];
  double logits[BT * V], lse[BT], losses[BT];
} ce_ctx;
static double ce_loss(void *p) {
  ce_ctx *c = p;
  return c->fwd(c->logits, c->lse, c->losses, c->targets);
}

START_TEST(op_crossentropy) {
  static ce_ctx c;
  c.fwd = (ce_fwd_t)fd_sym(1, "crossentropy_%dx%d_forward", BT, V);
  for (int i = 0; i < BT; i++) c.targets[i] = i % 3 == 2 ? -1 : (i * 5) % V;
  fd_fill(c.logits, BT * V, 3);
  double loss = ce_loss(&c);
  /* reference: mean over the valid rows of logsumexp - logit[target] */
  double ref = 0;
  int n = 0;
  for (int r = 0; r < BT; r++) {
    if (c.targets[r] < 0) continue;
    double s = 0;
    for (int v = 0; v < V; v++) s += exp(c.logits[r * V + v]);
    ref += log(s) - c.logits[r * V + c.targets[r]];
    n++;
  }
  ck_assert_double_eq_tol(loss, ref / n, 1e-12);
  double g[BT * V];
  memcpy(g, c.logits, sizeof g);
  ((ce_bwd_t)fd_sym(1, "crossentropy_%dx%d_backward", BT, V))(g, c.lse, c.targets, 1.0f);
  fd_check("cross-entropy dlogits", c.logits, BT * V, g, ce_loss, &c);
  /* all targets ignored: loss 0 and zero gradient */
  for (int i = 0; i < BT; i++) c.targets[i] = -1;
  ck_assert(ce_loss(&c) == 0);
  memcpy(g, c.logits, sizeof g);
  ((ce_bwd_t)fd_sym(1, "crossentropy_%dx%d_backward", BT, V))(g, c.lse, c.targets, 1.0f);
  for (int i = 0; i < BT * V; i++) ck_assert(g[i] == 0);
}
END_TEST

/* ---- the whole model ---- */
typedef struct {
  const gptc_model *m;
  double *params, *acts;
  int32_t in[BT], tg[BT];
  gptc_rng rng;
} model_ctx;
static double model_loss(void *p) {
  model_ctx *c = p;
  return c->m->forward(c->params, c->acts, c->in, c->tg, c->rng);
}

static void model_setup(model_ctx *c, int tied) {
  c->m = fd_load(tied);
  const gptc_model *m = c->m;
  c->params = calloc(m->n_params, sizeof(double));
  c->acts = calloc(m->n_acts, sizeof(double));
  for (int i = 0; i < m->n_tensors; i++) {
    const gptc_tensor *t = &m->tensors[i];
    for (size_t j = 0; j < t->numel; j++)
      c->params[t->offset + j] = t->init_std > 0 ? 0.5 * fd_rand() : t->init_value + 0.3 * fd_rand();
  }
  for (int i = 0; i < BT; i++) {
    c->in[i] = (i * 3 + 1) % V;
    c->tg[i] = i == 4 ? -1 : (i * 5 + 2) % V;
  }
  c->rng = RNG_ON;
}

static void model_grad(int tied) {
  model_ctx c;
  model_setup(&c, tied);
  const gptc_model *m = c.m;
  double *grads = calloc(m->n_params, sizeof(double)), *ga = calloc(m->n_grad_acts, sizeof(double));
  double loss = model_loss(&c);
  ck_assert(isfinite(loss) && loss > 0);
  m->backward(c.params, grads, c.acts, ga, c.in, c.tg, c.rng, 1.0f);
  for (int i = 0; i < m->n_tensors; i++) {
    const gptc_tensor *t = &m->tensors[i];
    char what[128];
    snprintf(what, sizeof what, "model d%s", t->name);
    fd_check(what, c.params + t->offset, t->numel, grads + t->offset, model_loss, &c);
  }
  /* backward accumulates: two half-scaled passes equal one full pass */
  double *g2 = calloc(m->n_params, sizeof(double));
  for (int rep = 0; rep < 2; rep++) {
    model_loss(&c);
    m->backward(c.params, g2, c.acts, ga, c.in, c.tg, c.rng, 0.5f);
  }
  for (size_t i = 0; i < m->n_params; i++) ck_assert_double_eq_tol(g2[i], grads[i], 1e-12 * (1 + fabs(grads[i])));
  free(g2);
  free(grads);
  free(ga);
  free(c.params);
  free(c.acts);
}

START_TEST(model_tied) { model_grad(1); }
END_TEST

START_TEST(model_untied) { model_grad(0); }
END_TEST

/* Evaluation and KV-cache inference compute the same function as the
 * training forward (dropout off): causal, so positions past T do not change
 * the logits of the first T, and the cached steps reproduce every position. */
START_TEST(eval_and_infer_match_forward) {
  for (int tied = 0; tied <= 1; tied++) {
    model_ctx c;
    model_setup(&c, tied);
    const gptc_model *m = c.m;
    ck_assert_int_eq(m->eval_T, CTX);
    c.rng.train = 0;
    model_loss(&c);
    const double *logits = c.acts + m->logits_offset; /* (B, T, V) */
    double *ea = calloc(m->n_eval_acts, sizeof(double));
    int32_t ein[B * CTX], etg[B * CTX];
    for (int b = 0; b < B; b++)
      for (int t = 0; t < CTX; t++) {
        ein[b * CTX + t] = t < T ? c.in[b * T + t] : (b + t) % V;
        etg[b * CTX + t] = t < T ? c.tg[b * T + t] : 1;
      }
    double el = m->forward_eval(c.params, ea, ein, etg);
    ck_assert(isfinite(el));
    const double *elog = ea + m->eval_logits_offset; /* (B, CTX, V) */
    for (int b = 0; b < B; b++)
      for (int t = 0; t < T; t++)
        for (int v = 0; v < V; v++)
          ck_assert_double_eq_tol(elog[(b * CTX + t) * V + v], logits[(b * T + t) * V + v], 1e-12);
    double *kv = calloc(m->n_kv, sizeof(double)), *scr = calloc(m->n_infer_scratch, sizeof(double));
    double step[V];
    for (int b = 0; b < B; b++)
      for (int t = 0; t < CTX; t++) {
        m->infer(c.params, kv, scr, ein[b * CTX + t], t, step);
        for (int v = 0; v < V; v++) ck_assert_double_eq_tol(step[v], elog[(b * CTX + t) * V + v], 1e-12);
      }
    /* bad ids give NaN instead of reading out of bounds */
    m->infer(c.params, kv, scr, V, 0, step);
    ck_assert(isnan(step[0]));
    m->infer(c.params, kv, scr, 0, CTX, step);
    ck_assert(isnan(step[0]));
    c.in[3] = V;
    ck_assert(isnan(model_loss(&c)));
    c.in[3] = -1;
    ck_assert(isnan(model_loss(&c)));
    free(kv);
    free(scr);
    free(ea);
    free(c.params);
    free(c.acts);
  }
}
END_TEST

/* compiled once in the parent process, before Check forks each test. One
 * thread: the thousands of tiny forward passes would spend their time in
 * OpenMP barriers (results do not depend on the thread count). */
static void fd_setup(void) {
  cpu_set_threads(1);
  fd_load(0);
  fd_load(1);
}

int main(void) {
  Suite *s = suite_create("fd");
  TCase *tc = tcase_create("fd");
  tcase_set_timeout(tc, 600);
  tcase_add_unchecked_fixture(tc, fd_setup, NULL);
  tcase_add_test(tc, op_layernorm);
  tcase_add_test(tc, op_matmul);
  tcase_add_test(tc, op_attention);
  tcase_add_test(tc, op_gelu);
  tcase_add_test(tc, op_residual);
  tcase_add_test(tc, op_embed);
  tcase_add_test(tc, op_crossentropy);
  tcase_add_test(tc, model_tied);
  tcase_add_test(tc, model_untied);
  tcase_add_test(tc, eval_and_infer_match_forward);
  suite_add_tcase(s, tc);
  return tu_main(s);
}
