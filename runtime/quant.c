/* quant: see quant.h. */
#include "quant.h"

#include <dlfcn.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gen.h"
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

/* ---- the layout (gen/quant.lua, through gen_q8_derive) ---------------------------- */

static int quant_layout(const cfg_t *cfg, gen_q8_layout *q) {
  if (gen_q8_derive(cfg, q)) return -1;
  if (q->block != QUANT_BLOCK) {
    gen_q8_layout_free(q);
    return util_err("q8 layout: block size is not %d", QUANT_BLOCK);
  }
  return 0;
}

/* One matrix of the layout. */
static void quant_matrix(const gen_q8_mat *m, size_t panel, const float *params, unsigned char *blob) {
  size_t src = m->src, K = m->K, N = m->N, sk = m->sk, sn = m->sn, NB = m->NB, NP = m->NP;
  float *s = (float *)(blob + m->s_off);   /* (NP, NB, panel) */
  int8_t *q = (int8_t *)(blob + m->q_off); /* (NP, K, panel) */
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
  gen_q8_layout Q;
  if (quant_layout(cfg, &Q)) return -1;
  size_t n = Q.bytes;
  void *p = NULL;
  if (posix_memalign(&p, 64, n ? (n + 63) / 64 * 64 : 64)) {
    gen_q8_layout_free(&Q);
    return util_err("out of memory: the q8 weights need %zu bytes", n);
  }
  unsigned char *b = p;
  memset(b, 0, n); /* the panels' padding columns read as zeros */
  for (int i = 0; i < Q.n_copies; i++)
    memcpy(b + Q.copies[i].dst, params + Q.copies[i].src, Q.copies[i].n * sizeof(float));
  for (int i = 0; i < Q.n_mats; i++) quant_matrix(&Q.mats[i], Q.panel, params, b);
  gen_q8_layout_free(&Q);
  *blob = b;
  *bytes = n;
  return 0;
}

/* ---- the inference unit ---------------------------------------------------------- */

int quant_infer_unit(const cfg_t *cfg, int quant, int vec_bytes, const char *suffix, const char *flags, char **src,
                     size_t *len) {
  return gen_infer_source(cfg, quant_name(quant), vec_bytes, suffix, flags, src, len);
}

/* ---- the JIT's q8 model ---------------------------------------------------------- */

int quant_model_open(const cfg_t *cfg, const float *params, quant_model *m) {
  memset(m, 0, sizeof *m);
  char *src = NULL;
  size_t len;
  gen_q8_layout Q;
  int rc = quant_layout(cfg, &Q);
  size_t n_kv = rc ? 0 : Q.n_kv, n_scratch = rc ? 0 : Q.n_scratch;
  if (!rc) gen_q8_layout_free(&Q);
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
