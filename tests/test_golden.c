/* The compiled fp32 model against PyTorch: logits, loss, every parameter
 * gradient, and the losses along 10 AdamW steps with gradient clipping, for
 * the two tiny models in tests/golden/model/ (written by
 * tests/ref/golden_torch.py in float64). Evaluation and KV-cache inference
 * are checked against the same logits. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cfg.h"
#include "cpu.h"
#include "testutil.h"
#include "util.h"

typedef struct {
  char dir[1024];
  cfg_t cfg;
  cpu_module mod;
  float *params; /* laid out by the model's tensor table */
  int32_t *in, *tg;
} golden;

/* Reads dir/name, which must hold exactly `n` elements of `size` bytes. */
static void *read_exact(const golden *g, const char *name, size_t n, size_t size) {
  char path[1200];
  snprintf(path, sizeof path, "%s/%s", g->dir, name);
  char *data;
  size_t len;
  ck_assert_msg(util_read_file(path, &data, &len) == 0, "%s", util_errmsg());
  ck_assert_msg(len == n * size, "%s: %zu bytes, expected %zu", path, len, n * size);
  return data;
}

/* Scatters a concatenation of tensors (golden order) into the flat layout. */
static void scatter(const gptc_model *m, const float *packed, float *flat) {
  size_t at = 0;
  for (int i = 0; i < m->n_tensors; i++) {
    memcpy(flat + m->tensors[i].offset, packed + at, m->tensors[i].numel * sizeof(float));
    at += m->tensors[i].numel;
  }
}

static size_t total_numel(const gptc_model *m) {
  size_t n = 0;
  for (int i = 0; i < m->n_tensors; i++) n += m->tensors[i].numel;
  return n;
}

static void golden_open(golden *g, const char *name) {
  snprintf(g->dir, sizeof g->dir, "%s/%s", tu_src("tests/golden/model"), name);
  char path[1200];
  snprintf(path, sizeof path, "%s/config.lua", g->dir);
  ck_assert_msg(cfg_load_file(path, &g->cfg) == 0, "%s", util_errmsg());
  ck_assert_msg(cpu_load(&g->cfg, &g->mod) == 0, "%s", util_errmsg());
  const gptc_model *m = g->mod.model;
  /* the golden tensor list is the model's, in order */
  snprintf(path, sizeof path, "%s/tensors.txt", g->dir);
  char *list;
  size_t len;
  ck_assert_int_eq(util_read_file(path, &list, &len), 0);
  char *line = list;
  for (int i = 0; i < m->n_tensors; i++) {
    char want[256];
    if (m->tensors[i].ndim == 2)
      snprintf(want, sizeof want, "%s %d %d\n", m->tensors[i].name, m->tensors[i].shape[0], m->tensors[i].shape[1]);
    else
      snprintf(want, sizeof want, "%s %d\n", m->tensors[i].name, m->tensors[i].shape[0]);
    ck_assert_msg(!strncmp(line, want, strlen(want)), "tensor %d: golden '%.40s', model '%s'", i, line, want);
    line = strchr(line, '\n');
    ck_assert_ptr_nonnull(line);
    line++;
  }
  ck_assert_int_eq(*line, 0);
  free(list);
  float *packed = read_exact(g, "params.f32", total_numel(m), 4);
  g->params = calloc(m->n_params, 4);
  scatter(m, packed, g->params);
  free(packed);
  size_t bt = (size_t)m->B * m->T;
  g->in = read_exact(g, "inputs.i32", bt, 4);
  g->tg = read_exact(g, "targets.i32", bt, 4);
}

static void golden_close(golden *g) {
  cpu_unload(&g->mod);
  free(g->params);
  free(g->in);
  free(g->tg);
}

/* max |a - b| over n elements, relative to max |b| */
static double rel_err(const float *a, const float *b, size_t n) {
  double err = 0, scale = 0;
  for (size_t i = 0; i < n; i++) {
    err = fmax(err, fabs((double)a[i] - b[i]));
    scale = fmax(scale, fabs((double)b[i]));
  }
  return scale > 0 ? err / scale : err;
}

static void check_forward_backward(const char *name) {
  golden g;
  golden_open(&g, name);
  const gptc_model *m = g.mod.model;
  size_t bt = (size_t)m->B * m->T, V = (size_t)m->vocab_size;
  float *acts = calloc(m->n_acts, 4), *grads = calloc(m->n_params, 4), *ga = calloc(m->n_grad_acts, 4);
  gptc_rng rng = {123, 0, 1};
  float loss = m->forward(g.params, acts, g.in, g.tg, rng);
  float *want_loss = read_exact(&g, "loss.f32", 1, 4);
  ck_assert_msg(fabsf(loss - *want_loss) <= 1e-5f, "%s loss %.7f, torch %.7f", name, loss, *want_loss);
  float *want_logits = read_exact(&g, "logits.f32", bt * V, 4);
  double e = rel_err(acts + m->logits_offset, want_logits, bt * V);
  ck_assert_msg(e <= 1e-4, "%s logits: max relative error %.3g", name, e);

  m->backward(g.params, grads, acts, ga, g.in, g.tg, rng, 1.0f);
  float *packed = read_exact(&g, "grads.f32", total_numel(m), 4);
  float *want = calloc(m->n_params, 4);
  scatter(m, packed, want);
  double worst = 0;
  for (int i = 0; i < m->n_tensors; i++) {
    const gptc_tensor *t = &m->tensors[i];
    double te = rel_err(grads + t->offset, want + t->offset, t->numel);
    ck_assert_msg(te <= 1e-4, "%s d%s: max relative error %.3g", name, t->name, te);
    worst = fmax(worst, te);
  }
  printf("%s: loss error %.2g, logits %.2g, worst gradient %.2g (relative to each tensor's max)\n", name,
         fabs(loss - *want_loss), e, worst);

  /* evaluation at (B, context_length): the golden rows padded with ignored
   * positions give the same loss and, causally, the same logits */
  int eT = m->eval_T, T = m->T;
  int32_t *ein = calloc((size_t)m->eval_B * eT, 4), *etg = calloc((size_t)m->eval_B * eT, 4);
  for (int b = 0; b < m->eval_B; b++)
    for (int t = 0; t < eT; t++) {
      ein[b * eT + t] = t < T ? g.in[b * T + t] : (b + 3 * t) % m->vocab_size;
      etg[b * eT + t] = t < T ? g.tg[b * T + t] : -1;
    }
  float *ea = calloc(m->n_eval_acts, 4);
  float el = m->forward_eval(g.params, ea, ein, etg);
  ck_assert_msg(fabsf(el - *want_loss) <= 1e-5f, "%s eval loss %.7f, torch %.7f", name, el, *want_loss);
  for (int b = 0; b < m->B; b++) {
    e = rel_err(ea + m->eval_logits_offset + (size_t)b * eT * V, want_logits + (size_t)b * T * V, (size_t)T * V);
    ck_assert_msg(e <= 1e-4, "%s eval logits row %d: max relative error %.3g", name, b, e);
  }
  /* KV-cache inference, token by token along the last row */
  float *kv = calloc(m->n_kv, 4), *scr = calloc(m->n_infer_scratch, 4), *lg = malloc(V * 4);
  int b = m->B - 1;
  for (int t = 0; t < T; t++) {
    m->infer(g.params, kv, scr, g.in[b * T + t], t, lg);
    e = rel_err(lg, want_logits + ((size_t)b * T + t) * V, V);
    ck_assert_msg(e <= 1e-4, "%s infer position %d: max relative error %.3g", name, t, e);
  }
  free(kv), free(scr), free(lg), free(ea), free(ein), free(etg);
  free(acts), free(grads), free(ga), free(want_loss), free(want_logits), free(packed), free(want);
  golden_close(&g);
}

/* 10 AdamW steps with clipping to global norm 1.0 (grad_scale =
 * min(1, 1 / (norm + 1e-6)), as torch.nn.utils.clip_grad_norm_). */
static void check_steps(const char *name) {
  golden g;
  golden_open(&g, name);
  const gptc_model *m = g.mod.model;
  const cfg_train *tr = &g.cfg.train;
  float *acts = calloc(m->n_acts, 4), *grads = calloc(m->n_params, 4), *ga = calloc(m->n_grad_acts, 4);
  float *mo = calloc(m->n_params, 4), *vo = calloc(m->n_params, 4);
  float *want = read_exact(&g, "steps.f32", 11, 4);
  gptc_rng rng = {1, 0, 1};
  int clipped = 0;
  for (int step = 0; step <= 10; step++) {
    float loss = m->forward(g.params, acts, g.in, g.tg, rng);
    ck_assert_msg(fabsf(loss - want[step]) <= 1e-5f, "%s after %d AdamW steps: loss %.7f, torch %.7f", name, step,
                  loss, want[step]);
    if (step == 10) break;
    memset(grads, 0, m->n_params * 4);
    m->backward(g.params, grads, acts, ga, g.in, g.tg, rng, 1.0f);
    double norm = sqrt(m->grad_sq_norm(grads));
    double scale = tr->grad_clip / (norm + 1e-6);
    clipped += scale < 1;
    gptc_adamw_args a = {(float)tr->lr, (float)tr->beta1, (float)tr->beta2, (float)tr->eps,
                         (float)tr->weight_decay, (float)(scale < 1 ? scale : 1), step + 1};
    m->adamw(g.params, grads, mo, vo, a);
  }
  ck_assert_int_gt(clipped, 0); /* the clipping path ran */
  free(want), free(acts), free(grads), free(ga), free(mo), free(vo);
  golden_close(&g);
}

START_TEST(tied_forward_backward) { check_forward_backward("golden-tied"); }
END_TEST
START_TEST(untied_forward_backward) { check_forward_backward("golden-untied"); }
END_TEST
START_TEST(tied_adamw_steps) { check_steps("golden-tied"); }
END_TEST
START_TEST(untied_adamw_steps) { check_steps("golden-untied"); }
END_TEST

int main(void) {
  Suite *s = suite_create("golden");
  TCase *tc = tcase_create("golden");
  tcase_set_timeout(tc, 600);
  tcase_add_test(tc, tied_forward_backward);
  tcase_add_test(tc, untied_forward_backward);
  tcase_add_test(tc, tied_adamw_steps);
  tcase_add_test(tc, untied_adamw_steps);
  suite_add_tcase(s, tc);
  return tu_main(s);
}
