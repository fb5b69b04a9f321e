/* bf16 on the CPU through its three GEMM paths (runtime/cpu_bf16.h): the
 * pair layout and the portable pair-order micro-kernel against a scalar
 * reference of the documented order, bit for bit, on every host; the
 * AVX512-BF16 and AMX sources generated and compiled on every host; run
 * (against the portable path and against fp32 training) only where the CPU
 * has them, else their suites are reported skipped (exit 77), never passed.
 * Also the one-line error for a forced path the CPU lacks, and `gptc bench`'s
 * bf16 peak lines. */
#include <dlfcn.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "cfg.h"
#include "cpu.h"
#include "cpu_bf16.h"
#include "gen.h"
#include "jit.h"
#include "lx.h"
#include "testutil.h"
#include "util.h"

#include "bf16test.h"

/* 10 AdamW steps of the model under path (this host's vector width): the last loss */
static float train10(const char *prec, const char *path, const char *sched) {
  size_t len;
  cpu_object obj;
  free(bf16_build(prec, (host_opts){gen_vec_bytes(), path, sched}, 0, &obj, &len));
  float loss = train_steps(&obj, 10, NULL, NULL);
  cpu_object_close(&obj);
  return loss;
}

/* ---- the portable path, every host ---------------------------------------------- */

/* Every plain GEMM instance, under the heuristic schedule and a forced one
 * (1- and 3-row strips, one-vector panels, K blocks of 9 made 10 so no pair
 * is split, tiles cut small: every edge strip and K block tail), equals the
 * scalar reference of the pair order bit for bit. */
START_TEST(portable_pair_order) {
  static const char *const scheds[] = {NULL, "mr=3 nv=1 kc=9 mc=9 nc=16", "mr=1 nv=2 kc=4"};
  for (int s = 0; s < 3; s++) {
    size_t len;
    char *src = render_for("bf16", (host_opts){gen_vec_bytes(), "portable", scheds[s]}, &len);
    ck_assert_msg(strstr(src, " * bf16 GEMM path portable"), "the header names the path");
    ck_assert_msg(!strstr(src, "_mm512_dpbf16_ps") && !strstr(src, "_tile_dpbf16ps"), "portable uses neither");
    cpu_object obj;
    ck_assert_msg(cpu_build(src, len, "cpu", accept_any, NULL, &obj) == 0, "%s", util_errmsg());
    gemm_inst g[64];
    int n = plain_gemms(src, g, 64), odd_k = 0;
    ck_assert_msg(n >= 4, "%d plain GEMM instances", n);
    for (int i = 0; i < n; i++) {
      gemm_data d = gemm_data_new(&g[i], 7 + (uint64_t)i);
      float *R = malloc((size_t)g[i].M * g[i].N * 4);
      memcpy(R, d.C, (size_t)g[i].M * g[i].N * 4);
      ref_gemm(g[i].M, g[i].N, g[i].K, g[i].ta, g[i].tb, g[i].mode, d.A, d.B, d.bias, R);
      ((gemm_fn)(uintptr_t)sym(&obj, g[i].name))(d.C, d.A, d.B, d.bias);
      for (size_t e = 0; e < (size_t)g[i].M * g[i].N; e++) {
        ck_assert_msg(bits(d.C[e]) == bits(R[e]), "%s (%s): C[%zu] = %a, the pair-order sum %a", g[i].name,
                      scheds[s] ? scheds[s] : "heuristic", e, d.C[e], R[e]);
      }
      odd_k += g[i].K % 2;
      free(R);
      gemm_data_free(&d);
    }
    ck_assert_msg(odd_k > 0, "no instance with odd K");
    free(src);
    cpu_object_close(&obj);
  }
}
END_TEST

/* The flushes are the order's: one element whose only product is an fp32
 * denormal gives zero, where a plain fmaf gives the denormal. */
START_TEST(portable_flushes) {
  size_t len;
  char *src = render_for("bf16", (host_opts){gen_vec_bytes(), "portable", NULL}, &len);
  cpu_object obj;
  ck_assert_msg(cpu_build(src, len, "cpu", accept_any, NULL, &obj) == 0, "%s", util_errmsg());
  gemm_inst g[64];
  int n = plain_gemms(src, g, 64), done = 0;
  for (int i = 0; i < n && !done; i++) {
    if (g[i].mode != 0 || g[i].ta || g[i].tb) continue;
    gemm_data d = gemm_data_new(&g[i], 1);
    memset(d.A, 0, (size_t)g[i].M * g[i].K * 4);
    memset(d.B, 0, (size_t)g[i].K * g[i].N * 4);
    d.A[0] = 0x1p-70f, d.B[0] = 0x1p-70f; /* C[0][0] = 2^-140: an fp32 denormal */
    d.A[1] = 0x1p-60f, d.B[1 * g[i].N + 1] = 3.0f;
    ((gemm_fn)(uintptr_t)sym(&obj, g[i].name))(d.C, d.A, d.B, d.bias);
    ck_assert_msg(fmaf(d.A[0], d.B[0], 0) != 0, "2^-140 is representable (a denormal)");
    ck_assert_msg(bits(d.C[0]) == 0, "C[0][0] = %a: the denormal result is flushed", d.C[0]);
    ck_assert_msg(d.C[1] == 0x1p-60f * 3.0f, "C[0][1] = %a", d.C[1]);
    gemm_data_free(&d);
    done = 1;
  }
  ck_assert_msg(done, "no plain nn GEMM to probe");
  free(src);
  cpu_object_close(&obj);
}
END_TEST

/* The hardware sources are generated and compiled on every host (they cannot
 * run here unless the CPU has the feature): each names its path in the
 * header, uses its instruction, and without the instruction set's flags stops
 * at a clear #error rather than silently computing another way. */
START_TEST(hw_sources_compile) {
  static const char *const paths[] = {"avx512bf16", "amx"};
  static const char *const insn[] = {"_mm512_dpbf16_ps(", "_tile_dpbf16ps("};
  const char *cc = jit_cc(0);
  for (int p = 0; p < 2; p++) {
    size_t len;
    char *src = render_for("bf16", (host_opts){64, paths[p], NULL}, &len);
    char want[64];
    snprintf(want, sizeof want, " * bf16 GEMM path %s", paths[p]);
    ck_assert_msg(strstr(src, want), "the header names %s", paths[p]);
    ck_assert_msg(strstr(src, insn[p]), "%s source without %s", paths[p], insn[p]);
    ck_assert_msg(p == 0 || strstr(src, "_mm512_dpbf16_ps("), "amx falls back to vdpbf16ps");
    char name[32];
    snprintf(name, sizeof name, "%s.c", paths[p]);
    const char *file = tu_write(name, src, len);
    tu_run_result r;
    int rc = tu_sh(&r, NULL,
                   "timeout -k 5 300 %s -O1 -fopenmp -fPIC -Wall -Werror -mavx512f -mfma -mavx512bf16 -mamx-tile "
                   "-mamx-bf16 -mprefer-vector-width=512 -c '%s' -o '%s.o'",
                   cc, file, file);
    ck_assert_msg(rc == 0, "%s: %.2000s", paths[p], r.err);
    tu_run_free(&r);
    rc = tu_sh(&r, NULL, "timeout -k 5 300 %s -O1 -fopenmp -fPIC -mavx2 -mfma -c '%s' -o '%s.o'", cc, file, file);
    ck_assert_msg(rc != 0 && strstr(r.err, p ? "use AMX (tdpbf16ps)" : "use AVX512-BF16 (vdpbf16ps)"),
                  "%s without its flags: rc %d, %.2000s", paths[p], rc, r.err);
    tu_run_free(&r);
    free(src);
  }
}
END_TEST

/* bf16 training on the portable path: within 2e-2 (relative) of fp32 after 10
 * AdamW steps, not equal to it, and the same bits under another schedule. */
START_TEST(portable_training) {
  float fp32 = train10("fp32", "portable", NULL), bf = train10("bf16", "portable", NULL);
  float other = train10("bf16", "portable", "mr=3 nv=1 kc=9 unroll=2");
  ck_assert_msg(fabsf(bf - fp32) <= 2e-2f * fabsf(fp32), "bf16 %.9g, fp32 %.9g", bf, fp32);
  ck_assert_msg(bf != fp32, "bf16 gave fp32's loss bit for bit: nothing was rounded");
  ck_assert_msg(bits(bf) == bits(other), "another schedule: %.9g vs %.9g", other, bf);
}
END_TEST

/* GPTC_BF16_PATH: an unknown path, and a path this CPU lacks, are one-line
 * errors naming the variable and the rule; fp32 models do not care. */
START_TEST(forced_path_errors) {
  const char *cfg = tu_write_str("m.lua", "return { name = 'm', tokenizer = 'char', vocab_size = 65, emb_dim = 16,"
                                          " n_heads = 2, n_layers = 1, context_length = 16 }");
  tu_run_result r;
  int rc = tu_run(&r, NULL, "gen --config '%s' --precision bf16 -o '%s/g0'", cfg, tu_tmpdir());
  ck_assert_msg(rc == 0, "%s", r.err);
  tu_run_free(&r);
  /* GPTC_BF16_PATH must come before the binary: tu_run quotes the path */
  rc = tu_sh(&r, NULL, "GPTC_BF16_PATH=fast '%s' gen --config '%s' --precision bf16 -o '%s/g1'", GPTC_EXE, cfg,
             tu_tmpdir());
  ck_assert_msg(rc != 0, "an unknown path was accepted");
  ck_assert_str_eq(r.err, "gptc: GPTC_BF16_PATH='fast' is not a bf16 path (portable, avx512bf16 or amx)\n");
  tu_run_free(&r);
  static const char *const paths[] = {"avx512bf16", "amx"};
  int missing = 0;
  for (int p = 0; p < 2; p++) {
    char why[160];
    if (cpu_bf16_has(paths[p], why, sizeof why) == 1) continue;
    missing++;
    rc = tu_sh(&r, NULL, "GPTC_BF16_PATH=%s '%s' gen --config '%s' --precision bf16 -o '%s/g2'", paths[p],
               GPTC_EXE, cfg, tu_tmpdir());
    char want[300];
    snprintf(want, sizeof want, "gptc: GPTC_BF16_PATH=%s: %s\n", paths[p], why);
    ck_assert_msg(rc != 0, "%s was forced on a CPU without it", paths[p]);
    ck_assert_str_eq(r.err, want);
    tu_run_free(&r);
    rc = tu_sh(&r, NULL, "GPTC_BF16_PATH=%s '%s' gen --config '%s' --precision fp32 -o '%s/g3'", paths[p],
               GPTC_EXE, cfg, tu_tmpdir());
    ck_assert_msg(rc == 0, "fp32 with GPTC_BF16_PATH=%s: %s", paths[p], r.err);
    tu_run_free(&r);
  }
  /* on a host with both, the unknown name above is the test */
  (void)missing;
}
END_TEST

/* ---- the hardware paths, where the CPU has them --------------------------------- */

/* vdpbf16ps sums in the portable kernel's documented order: every plain GEMM
 * instance gives the same bits, and so does bf16 training. */
START_TEST(avx512bf16_equals_portable) {
  static const char *const scheds[] = {NULL, "mr=3 nv=1 kc=9 mc=9 nc=16"};
  for (int s = 0; s < 2; s++) {
    size_t len[2];
    char *src[2] = {render_for("bf16", (host_opts){64, "portable", scheds[s]}, &len[0]),
                    render_for("bf16", (host_opts){64, "avx512bf16", scheds[s]}, &len[1])};
    cpu_object obj[2];
    for (int v = 0; v < 2; v++) ck_assert_msg(cpu_build(src[v], len[v], "cpu", accept_any, NULL, &obj[v]) == 0, "%s", util_errmsg());
    gemm_inst g[64];
    int n = plain_gemms(src[1], g, 64);
    ck_assert_msg(n >= 4, "%d plain GEMM instances", n);
    for (int i = 0; i < n; i++) {
      gemm_data d = gemm_data_new(&g[i], 11 + (uint64_t)i);
      size_t mn = (size_t)g[i].M * g[i].N;
      float *C0 = malloc(mn * 4);
      memcpy(C0, d.C, mn * 4);
      ((gemm_fn)(uintptr_t)sym(&obj[0], g[i].name))(C0, d.A, d.B, d.bias);
      ((gemm_fn)(uintptr_t)sym(&obj[1], g[i].name))(d.C, d.A, d.B, d.bias);
      for (size_t e = 0; e < mn; e++)
        ck_assert_msg(bits(d.C[e]) == bits(C0[e]), "%s: vdpbf16ps %a, portable %a at %zu", g[i].name, d.C[e], C0[e], e);
      free(C0);
      gemm_data_free(&d);
    }
    for (int v = 0; v < 2; v++) free(src[v]), cpu_object_close(&obj[v]);
  }
  float port = train10("bf16", "portable", NULL), hw = train10("bf16", "avx512bf16", NULL);
  float fp32 = train10("fp32", "portable", NULL);
  ck_assert_msg(bits(hw) == bits(port), "training: vdpbf16ps %.9g, portable %.9g", hw, port);
  ck_assert_msg(fabsf(hw - fp32) <= 2e-2f * fabsf(fp32), "bf16 %.9g, fp32 %.9g", hw, fp32);
}
END_TEST

/* AMX: tdpbf16ps documents another order (ref_amx_elem) and hardware may not
 * follow it, so it is held to a bound against the portable path, not to bits:
 * |C_amx - C_portable| <= 2 K 2^-24 sum_k |a_k b_k| + 2^-126 for each element
 * (two fp32 sums of the same K + 1 terms in different orders each stay within
 * K 2^-24 sum |terms| of the exact sum; the flushes add at most 2^-126). */
START_TEST(amx_within_tolerance) {
  size_t len[2];
  char *src[2] = {render_for("bf16", (host_opts){64, "portable", NULL}, &len[0]),
                  render_for("bf16", (host_opts){64, "amx", NULL}, &len[1])};
  cpu_object obj[2];
  for (int v = 0; v < 2; v++) ck_assert_msg(cpu_build(src[v], len[v], "cpu", accept_any, NULL, &obj[v]) == 0, "%s", util_errmsg());
  gemm_inst g[64];
  int n = plain_gemms(src[1], g, 64);
  size_t sdm = 0, total = 0;
  ck_assert_msg(n >= 4, "%d plain GEMM instances", n);
  for (int i = 0; i < n; i++) {
    gemm_pair q = gemm_pair_run(&g[i], &obj[0], &obj[1], 13 + (uint64_t)i);
    int M = g[i].M, N = g[i].N, K = g[i].K;
    for (int r = 0; r < M; r++)
      for (int c = 0; c < N; c++) {
        const size_t e = (size_t)r * N + c;
        double tol = amx_bound(&g[i], &q, r, c), diff = fabs((double)q.d.C[e] - q.ref[e]);
        ck_assert_msg(diff <= tol, "%s: C[%d][%d] amx %a, portable %a (tolerance %g)", g[i].name, r, c, q.d.C[e],
                      q.ref[e], tol);
        float want = ref_amx_elem(M, N, K, g[i].KC, g[i].ta, g[i].tb, q.d.A, q.d.B, gemm_pair_start(&g[i], &q, r, c),
                                  r, c);
        sdm += bits(want) == bits(q.d.C[e]);
        total++;
      }
    gemm_pair_free(&q);
  }
  /* for the record (docs/bench-cpu.md): how closely this CPU follows the SDM's order */
  printf("bf16hw_amx: %zu of %zu elements equal the SDM pseudocode's order bit for bit\n", sdm, total);
  for (int v = 0; v < 2; v++) free(src[v]), cpu_object_close(&obj[v]);
  float hw = train10("bf16", "amx", NULL), fp32 = train10("fp32", "portable", NULL);
  ck_assert_msg(fabsf(hw - fp32) <= 2e-2f * fabsf(fp32), "amx bf16 %.9g, fp32 %.9g", hw, fp32);
}
END_TEST

/* `gptc bench` reports a bf16 peak line for each path: measured where the CPU
 * has it, "not available on this CPU" (with why) where not. */
START_TEST(bench_bf16_peaks) {
  tu_run_result r;
  int rc = tu_run(&r, NULL, "bench --peaks");
  ck_assert_msg(rc == 0, "%s", r.err);
  static const char *const paths[] = {"avx512bf16", "amx"};
  static const char *const label[] = {"bf16 vdpbf16ps peak", "bf16 AMX tdpbf16ps peak"};
  for (int p = 0; p < 2; p++) {
    char why[160], want[300];
    const char *line = strstr(r.out, label[p]);
    ck_assert_msg(line != NULL, "no '%s' line in\n%s", label[p], r.out);
    if (cpu_bf16_has(paths[p], why, sizeof why) == 1) {
      double g = 0;
      ck_assert_msg(sscanf(strchr(line, ':') + 1, "%lf GFLOP/s", &g) == 1 && g > 0, "%s", line);
    } else {
      snprintf(want, sizeof want, "%s: not available on this CPU (%s)\n", label[p], why);
      ck_assert_msg(!strncmp(line, want, strlen(want)), "want '%s', got\n%s", want, r.out);
    }
  }
  tu_run_free(&r);
}
END_TEST

/* ctest: suites bf16hw bf16hw_avx512bf16 bf16hw_amx */
int main(void) {
  Suite *s = suite_create("bf16hw");
  TCase *tc = tcase_create("portable");
  tcase_set_timeout(tc, 600);
  tcase_add_test(tc, portable_pair_order);
  tcase_add_test(tc, portable_flushes);
  tcase_add_test(tc, portable_training);
  tcase_add_test(tc, forced_path_errors);
  tcase_add_test(tc, bench_bf16_peaks);
  suite_add_tcase(s, tc);
  TCase *compile = tcase_create("compile");
  tcase_set_timeout(compile, 600);
  tcase_add_test(compile, hw_sources_compile);
  suite_add_tcase(s, compile);
  Suite *avx = suite_create("bf16hw_avx512bf16"), *amx = suite_create("bf16hw_amx");
  char why[160];
  if (cpu_bf16_has("avx512bf16", why, sizeof why) == 1) {
    TCase *t = tcase_create("avx512bf16");
    tcase_set_timeout(t, 600);
    tcase_add_test(t, avx512bf16_equals_portable);
    suite_add_tcase(avx, t);
  } else {
    tu_skip("test_bf16hw", "bf16hw_avx512bf16", why);
  }
  if (cpu_bf16_has("amx", why, sizeof why) == 1) {
    TCase *t = tcase_create("amx");
    tcase_set_timeout(t, 600);
    tcase_add_test(t, amx_within_tolerance);
    suite_add_tcase(amx, t);
  } else {
    tu_skip("test_bf16hw", "bf16hw_amx", why);
  }
  Suite *suites[] = {s, avx, amx};
  return tu_main_suites(suites, 3);
}
