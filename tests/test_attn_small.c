/* Small-T attention (templates/cpu/attention.c, blocked path) at the shapes
 * whose rows are short: T 64 with head_dim 32 (char's heads) and 64 (gpt2's),
 * and T 37 (no multiple of any block). With qb and kb a whole head the
 * backward runs a head's two passes in one task (the header says so); every
 * schedule, fused or split, gives the same bits, dropout on and off. And each
 * product is the k-order sum of the kernel's own operands, one fmaf a term:
 * out = att . V and dv = att^T . dout (dropout off), dq = ds . K and
 * dk = ds^T . q with ds (the scores' gradient) read back from the backward's
 * scratch; att and ds themselves against a double-precision softmax. */
#include "attntest.h"

/* rng (9, 4), site 6, inputs in [-3, 3) (the softmax far from uniform); the
 * blocked path; whether the header says the backward's passes share a task */
static int run(const shape *s, const char *schedule, att_results *r) {
  static const att_inputs in = {9, 4, 6, 1.5f};
  att_run(s, schedule, &in, r);
  ck_assert_msg(!strstr(r->header_line, "row path"), "%s: the blocked path was expected", r->header_line);
  return strstr(r->header_line, "backward: both passes in one task a head") != NULL;
}

/* the default's results (dropout off) against the k-order sums of its own operands
 * and the double reference. ds of head bh: the backward's scratch after the
 * transposed V (hd rows Tp + 16 apart), (T, Tp) with Tp = T rounded up to 32
 * (gen/cpu/layout.lua att_scratch) */
static void reference(const shape *s, const att_results *r) {
  const int B = s->B, T = s->T, C = s->C, H = s->H, hd = C / H, C3 = 3 * C;
  const int Tp = (T + 31) / 32 * 32, TS = Tp + 16;
  float *qkv0 = seeded((size_t)B * T * C3, 1, 1.5f), *dout0 = seeded((size_t)B * T * C, 2, 1.5f);
  const float *att = r->att[0], *out = r->out[0], *dqkv = r->dqkv[0];
  const double scale = 1 / sqrt((double)hd);
  for (int b = 0; b < B; b++)
    for (int h = 0; h < H; h++) {
      const float *q = qkv0 + (size_t)b * T * C3 + h * hd, *k = q + C, *v = q + 2 * C;
      const float *dy = dout0 + (size_t)b * T * C + h * hd, *w = att + ((size_t)b * H + h) * T * T;
      const float *ds = r->scr[0] + ((size_t)b * H + h) * r->S2 + (size_t)hd * TS;
      const float *dq = dqkv + (size_t)b * T * C3 + h * hd, *dk = dq + C, *dv = dq + 2 * C;
      for (int t = 0; t < T; t++) {
        /* att row t: the causal softmax of the scaled scores, zero past t */
        double sc[64], mx = -INFINITY, sum = 0;
        for (int t2 = 0; t2 <= t; t2++) {
          double a = 0;
          for (int d = 0; d < hd; d++) a += (double)q[(size_t)t * C3 + d] * k[(size_t)t2 * C3 + d];
          sc[t2] = a * scale;
          mx = fmax(mx, sc[t2]);
        }
        for (int t2 = 0; t2 <= t; t2++) sum += exp(sc[t2] - mx);
        /* ds row t: w (dw - w.dw) scale with dw = dout . V, zero past t */
        double dw[64], wdw = 0;
        for (int t2 = 0; t2 <= t; t2++) {
          dw[t2] = 0;
          for (int d = 0; d < hd; d++) dw[t2] += (double)dy[(size_t)t * C + d] * v[(size_t)t2 * C3 + d];
          wdw += w[(size_t)t * T + t2] * dw[t2];
        }
        for (int t2 = 0; t2 < T; t2++) {
          const float got = w[(size_t)t * T + t2], g = ds[(size_t)t * Tp + t2];
          if (t2 > t) {
            ck_assert_msg(got == 0 && g == 0, "att, ds (%d, %d, %d, %d) = %g, %g past t", b, h, t, t2, got, g);
            continue;
          }
          const double want = exp(sc[t2] - mx) / sum, dwant = w[(size_t)t * T + t2] * (dw[t2] - wdw) * scale;
          ck_assert_msg(fabs(got - want) < 1e-6, "att (%d, %d, %d, %d) = %.9g, softmax %.9g", b, h, t, t2, got, want);
          ck_assert_msg(fabs(g - dwant) < 1e-5 * (1 + fabs(dwant)), "ds (%d, %d, %d, %d) = %.9g, reference %.9g", b, h,
                        t, t2, g, dwant);
        }
        /* row t's outputs and gradients: sums in key (query) order, one fmaf a term */
        for (int d = 0; d < hd; d++) {
          float o = 0, gq = 0, gk = 0, gv = 0;
          for (int t2 = 0; t2 <= t; t2++) {
            o = fmaf(w[(size_t)t * T + t2], v[(size_t)t2 * C3 + d], o);
            gq = fmaf(ds[(size_t)t * Tp + t2], k[(size_t)t2 * C3 + d], gq);
          }
          for (int t1 = t; t1 < T; t1++) {
            gk = fmaf(ds[(size_t)t1 * Tp + t], q[(size_t)t1 * C3 + d], gk);
            gv = fmaf(w[(size_t)t1 * T + t], dy[(size_t)t1 * C + d], gv);
          }
          const float got[4] = { out[((size_t)b * T + t) * C + h * hd + d], dq[(size_t)t * C3 + d],
                                 dk[(size_t)t * C3 + d], dv[(size_t)t * C3 + d] };
          const float want[4] = { o, gq, gk, gv };
          static const char *const what[4] = { "out", "dq", "dk", "dv" };
          for (int i = 0; i < 4; i++)
            ck_assert_msg(memcmp(&got[i], &want[i], 4) == 0, "%s (b %d, t %d, h %d, d %d) = %.9g, the k-order sum %.9g",
                          what[i], b, t, h, d, got[i], want[i]);
        }
      }
    }
  free(qkv0), free(dout0);
}

/* the default, then schedules fused (a whole head) and split, bitwise; then the
 * default against the reference */
static void check_shape(const shape *s) {
  static const char *const forced[] = {
      "qb=1000 kb=1000", /* a whole head a task: both backward passes in it */
      "qb=1 kb=1",       /* a block a task, the passes apart */
      "qb=1000 kb=2",    /* whole heads forward and in pass 1, pass 2 split */
  };
  ck_assert_int_le(s->T, 64);
  att_results def;
  run(s, NULL, &def);
  for (size_t f = 0; f < sizeof forced / sizeof *forced; f++) {
    att_results r;
    int fused = run(s, forced[f], &r);
    ck_assert_msg(fused == (f == 0), "[%s]: the header %s the passes fused", forced[f], fused ? "calls" : "does not call");
    att_same_results(s, &r, &def, forced[f]);
    att_results_free(&r);
  }
  reference(s, &def);
  att_results_free(&def);
}

/* char's heads: T 64, head_dim 32 (4 heads of 128) */
START_TEST(char_heads) {
  shape s = { 2, 64, 128, 4, 0.0 };
  check_shape(&s);
}
END_TEST

/* gpt2's head_dim 64 at T 64, dropout 0.1 on and off */
START_TEST(head_dim_64_dropout) {
  shape s = { 2, 64, 128, 2, 0.1 };
  check_shape(&s);
}
END_TEST

/* T 37: partial query and key blocks and a partial vector in every row's end */
START_TEST(odd_T) {
  shape s = { 3, 37, 64, 2, 0.1 };
  check_shape(&s);
}
END_TEST

int main(void) {
  Suite *s = suite_create("attn_small");
  TCase *tc = tcase_create("small_T");
  tcase_set_timeout(tc, 300);
  tcase_add_test(tc, char_heads);
  tcase_add_test(tc, head_dim_64_dropout);
  tcase_add_test(tc, odd_T);
  suite_add_tcase(s, tc);
  return tu_main(s);
}
