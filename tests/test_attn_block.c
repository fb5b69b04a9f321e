/* The CPU attention's schedule (gen/cpu/schedule.lua att_*: qb query blocks a
 * forward / backward-pass-1 task, kb key blocks a pass-2 task) moves work
 * between tasks and nothing else: forced schedules, edge shapes included
 * (T no multiple of the block, T = 1, head_dim no multiple of the vector or
 * panel width), give the default schedule's forward and backward outputs bit
 * for bit, with dropout on and off; and the default equals the k-order
 * reference (one fmaf a key, in key order) for the sums the design fixes:
 * out = weights . V and dv = weights^T . dout. `gptc tune` races the
 * candidates and picks one, which gen then uses. */
#include "attntest.h"

/* rng (7, 3), site 5, inputs in [-2, 2); the header names the schedule and
 * where it came from */
static void run(const shape *s, const char *schedule, att_results *r) {
  static const att_inputs in = {7, 3, 5, 1};
  att_run(s, schedule, &in, r);
  const int nr = 2 * gen_vec_bytes() / 4, blocked = (s->C / s->H) % nr == 0;
  ck_assert_msg(strstr(r->header_line, !blocked ? "none: row path" : schedule ? ", forced" : ", heuristic"), "header: %s",
                r->header_line);
}

/* The default against the reference (rng.train 0: no dropout): att rows a
 * causal softmax (zero past t), out and dv the k-order fmaf sums of the
 * kernel's own weights (bitwise, blocked path only: the row path pairs its
 * terms), dq and dk the softmax backward in double (to 1e-4). */
static void reference(const shape *s, const att_results *r, int blocked) {
  const int B = s->B, T = s->T, C = s->C, H = s->H, hd = C / H, C3 = 3 * C;
  const float *qkv0 = seeded((size_t)B * T * C3, 1, 1), *dout0 = seeded((size_t)B * T * C, 2, 1);
  const float *att = r->att[0], *out = r->out[0], *dqkv = r->dqkv[0];
  double *ds = malloc((size_t)T * T * sizeof *ds);
  ck_assert_ptr_nonnull(ds);
  const double scale = 1 / sqrt((double)hd);
  for (int b = 0; b < B; b++)
    for (int h = 0; h < H; h++) {
      const float *q = qkv0 + (size_t)b * T * C3 + h * hd, *k = q + C, *v = q + 2 * C;
      const float *dy = dout0 + (size_t)b * T * C + h * hd, *w = att + ((size_t)b * H + h) * T * T;
      for (int t = 0; t < T; t++) {
        double mx = -INFINITY, sum = 0, sc[T];
        for (int t2 = 0; t2 <= t; t2++) {
          double a = 0;
          for (int d = 0; d < hd; d++) a += (double)q[(size_t)t * C3 + d] * k[(size_t)t2 * C3 + d];
          sc[t2] = a * scale;
          mx = fmax(mx, sc[t2]);
        }
        for (int t2 = 0; t2 <= t; t2++) sum += exp(sc[t2] - mx);
        for (int t2 = 0; t2 < T; t2++) {
          const float got = w[(size_t)t * T + t2];
          if (t2 > t) ck_assert_msg(got == 0, "att (%d, %d, %d, %d) = %g past t", b, h, t, t2, got);
          else
            ck_assert_msg(fabs(got - exp(sc[t2] - mx) / sum) < 1e-6, "att (%d, %d, %d, %d) = %.9g, softmax %.9g",
                          b, h, t, t2, got, exp(sc[t2] - mx) / sum);
        }
        /* out row t: sum over t2 <= t of w[t2] v[t2], in key order */
        for (int d = 0; d < hd; d++) {
          float o = 0;
          for (int t2 = 0; t2 <= t; t2++) o = fmaf(w[(size_t)t * T + t2], v[(size_t)t2 * C3 + d], o);
          const float got = out[((size_t)b * T + t) * C + h * hd + d];
          if (blocked)
            ck_assert_msg(memcmp(&got, &o, 4) == 0, "out (%d, %d, %d) = %.9g, the k-order sum %.9g", b, t, h * hd + d,
                          got, o);
          else
            ck_assert_msg(fabsf(got - o) <= 1e-5f * (1 + fabsf(o)), "out (%d, %d, %d) = %.9g, the sum %.9g", b, t,
                          h * hd + d, got, o);
        }
        /* ds row t: w (dw - w.dw) scale, dw = dy . v */
        double dw[T], wdw = 0;
        for (int t2 = 0; t2 <= t; t2++) {
          dw[t2] = 0;
          for (int d = 0; d < hd; d++) dw[t2] += (double)dy[(size_t)t * C + d] * v[(size_t)t2 * C3 + d];
          wdw += w[(size_t)t * T + t2] * dw[t2];
        }
        for (int t2 = 0; t2 < T; t2++) ds[(size_t)t * T + t2] = t2 <= t ? w[(size_t)t * T + t2] * (dw[t2] - wdw) * scale : 0;
      }
      const float *dq = dqkv + (size_t)b * T * C3 + h * hd, *dk = dq + C, *dv = dq + 2 * C;
      for (int t = 0; t < T; t++)
        for (int d = 0; d < hd; d++) {
          double rq = 0, rk = 0;
          float rv = 0;
          for (int t2 = 0; t2 <= t; t2++) rq += ds[(size_t)t * T + t2] * k[(size_t)t2 * C3 + d];
          /* dk, dv row t (as a key): sums over the queries t' >= t, in query order */
          for (int t1 = t; t1 < T; t1++) {
            rk += ds[(size_t)t1 * T + t] * q[(size_t)t1 * C3 + d];
            rv = fmaf(w[(size_t)t1 * T + t], dy[(size_t)t1 * C + d], rv);
          }
          const float gq = dq[(size_t)t * C3 + d], gk = dk[(size_t)t * C3 + d], gv = dv[(size_t)t * C3 + d];
          ck_assert_msg(fabs(gq - rq) <= 1e-4 * (1 + fabs(rq)), "dq (%d, %d, %d) = %.9g, reference %.9g", b, t, h * hd + d,
                        gq, rq);
          ck_assert_msg(fabs(gk - rk) <= 1e-4 * (1 + fabs(rk)), "dk (%d, %d, %d) = %.9g, reference %.9g", b, t, h * hd + d,
                        gk, rk);
          if (blocked)
            ck_assert_msg(memcmp(&gv, &rv, 4) == 0, "dv (%d, %d, %d) = %.9g, the k-order sum %.9g", b, t, h * hd + d, gv,
                          rv);
          else
            ck_assert_msg(fabsf(gv - rv) <= 1e-5f * (1 + fabsf(rv)), "dv (%d, %d, %d) = %.9g, the sum %.9g", b, t,
                          h * hd + d, gv, rv);
        }
    }
  free(ds), free((void *)qkv0), free((void *)dout0);
}

/* Forced schedules against the default, then the default against the reference */
static void check_shape(const shape *s) {
  static const char *const forced[] = {
      "qb=1 kb=1",      /* one block a task: the old split */
      "qb=2 kb=3",      /* groups that end short of T */
      "qb=1000 kb=7",   /* a whole head a task (clamped) */
  };
  att_results def;
  run(s, NULL, &def);
  for (size_t f = 0; f < sizeof forced / sizeof *forced; f++) {
    att_results r;
    run(s, forced[f], &r);
    att_same_results(s, &r, &def, forced[f]);
    att_results_free(&r);
  }
  /* the blocked path needs head_dim a whole number of the micro-kernel's
   * panels: NR = 2 vectors (16 floats with AVX2, 32 with AVX-512) */
  const int hd = s->C / s->H, nr = 2 * gen_vec_bytes() / 4;
  reference(s, &def, hd % nr == 0);
  att_results_free(&def);
}

/* T 37: no multiple of the 6- or 8-row blocks; head_dim 32; dropout 0.1 (on
 * and off) */
START_TEST(odd_T_dropout) {
  shape s = { 2, 37, 64, 2, 0.1 };
  check_shape(&s);
}
END_TEST

/* T = 1: one query, one key, one partial block */
START_TEST(one_position) {
  shape s = { 3, 1, 64, 2, 0.0 };
  check_shape(&s);
}
END_TEST

/* head_dim 12: no multiple of 8, so the row path (one task a head) */
START_TEST(head_dim_12) {
  shape s = { 2, 20, 36, 3, 0.1 };
  check_shape(&s);
}
END_TEST

/* head_dim 64 (mid's) over 4 panels, T 64 */
START_TEST(head_dim_64) {
  shape s = { 2, 64, 128, 2, 0.0 };
  check_shape(&s);
}
END_TEST

/* A schedule that breaks a rule is refused with the field and the rule. */
START_TEST(bad_schedule) {
  cfg_t c;
  ck_assert_msg(cfg_load_string("return { name = 'att', tokenizer = 'char', vocab_size = 30, emb_dim = 64, n_heads = 2,"
                                " n_layers = 1, context_length = 16, train = { batch_size = 2, max_length = 16 } }",
                                "t.lua", &c) == 0,
                "%s", util_errmsg());
  static const char *const bad[][2] = {
      { "qb=0", "qb must be at least 1" },
      { "mr=6", "'mr' is not a schedule field (qb, kb)" },
      { "qb=2 qb=3", "'qb' is given twice" },
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    char *src, hash[65];
    size_t len;
    ck_assert_int_ne(gen_render(&c, GEN_MOD_EMIT, att_host_fill, bad[i][0], &src, &len, hash), 0);
    (void)src, (void)len;
    ck_assert_msg(strstr(util_errmsg(), bad[i][1]), "'%s': %s", bad[i][0], util_errmsg());
  }
}
END_TEST

/* `gptc tune` races the attention schedules: tiny-test with head_dim 16 and
 * T 64, where --min-mflops 1.2 leaves every GEMM out (at most 1.05 MFLOP a
 * call) and only the attention (1.6 MFLOP forward and backward) is measured.
 * Its candidates (att_neighbours) are compiled, checked bitwise against the
 * heuristic and timed; the winner is one of them, gen uses it and the header
 * says so. */
START_TEST(tuner_picks_one) {
  const char *cache = tu_write_str("keep", "");
  char dir[1100], args[2048];
  snprintf(dir, sizeof dir, "%s-cache", cache);
  setenv("GPTC_CACHE", dir, 1);
  unsetenv("GPTC_TUNE");
  const char *set = "--set emb_dim=32 --set context_length=64 --set train.max_length=64 --set train.stride=64";
  snprintf(args, sizeof args, "tune --config '%s' %s --rounds 1 --min-mflops 1.2", tu_src("configs/tiny-test.lua"),
           set);
  tu_run_result r;
  ck_assert_msg(tu_run(&r, NULL, "%s", args) == 0, "%s", r.err);
  /* every candidate reproduced the heuristic's bits (else a 'differs' line) */
  ck_assert_msg(!strstr(r.err, "differs from the heuristic"), "%s", r.err);
  int cands = 0;
  const char *line = strstr(r.err, "attention_2x64 ");
  ck_assert_msg(line && sscanf(line, "attention_2x64 %d candidates", &cands) == 1, "%s", r.err);
  /* qb and kb of 1, 2, 3, 4, 6, 8 (and 11, a whole head: clamped) blocks of 6 (AVX2) or 8 rows */
  ck_assert_msg(cands >= 9, "%d candidates: %s", cands, r.err);
  /* the summary counts the attention instance as one, not as a GEMM */
  ck_assert_msg(strstr(r.out, "\n16 instances (15 GEMM, 1 attention), "), "%s", r.out);
  char path[1024];
  snprintf(path, sizeof path, "%s", r.out);
  path[strcspn(path, "\n")] = 0;
  tu_run_free(&r);
  char *file;
  size_t len;
  ck_assert_int_eq(util_read_file(path, &file, &len), 0);
  const char *e = strstr(file, "\nattention_2x64 ");
  int qb = 0, kb = 0;
  ck_assert_msg(e && sscanf(e, "\nattention_2x64 qb=%d kb=%d #", &qb, &kb) == 2, "%s", file);
  ck_assert_msg(qb >= 1 && kb >= 1 && strstr(e, "heuristic"), "%s", e);
  /* the GEMMs were left out, each with its reason */
  ck_assert_msg(strstr(file, "below the 1.2e+06 worth timing"), "%s", file);
  free(file);
  snprintf(args, sizeof args, "gen --config '%s' %s -o '%s/gen'", tu_src("configs/tiny-test.lua"), set, dir);
  ck_assert_msg(tu_run(&r, NULL, "%s", args) == 0, "%s", r.err);
  tu_run_free(&r);
  char src_path[1200], want[64];
  snprintf(src_path, sizeof src_path, "%s/gen/model.c", dir);
  ck_assert_int_eq(util_read_file(src_path, &file, &len), 0);
  snprintf(want, sizeof want, "qb=%d kb=%d, tuned", qb, kb);
  ck_assert_msg(strstr(file, want), "the header names the tuned schedule %s", want);
  free(file);
}
END_TEST

int main(void) {
  Suite *s = suite_create("attn_block");
  TCase *tc = tcase_create("forced");
  tcase_set_timeout(tc, 300);
  tcase_add_test(tc, odd_T_dropout);
  tcase_add_test(tc, one_position);
  tcase_add_test(tc, head_dim_12);
  tcase_add_test(tc, head_dim_64);
  tcase_add_test(tc, bad_schedule);
  suite_add_tcase(s, tc);
  TCase *tt = tcase_create("tune");
  tcase_set_timeout(tt, 600);
  tcase_add_test(tt, tuner_picks_one);
  suite_add_tcase(s, tt);
  return tu_main(s);
}
