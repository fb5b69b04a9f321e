/* gptc bench: the harness (runtime/bench.c) on a hand-written benchmark
 * source (tests/fixtures/bench_fixture.c): right variants pass and are
 * timed, a wrong one is caught; statistics, the timing policy, the error
 * measure and escaping on known inputs; then the command on tiny-test and
 * its bad inputs. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "cuda.h"
#include "json.h"
#include "plot.h"
#include "testutil.h"
#include "util.h"

/* ---- the fixture: abi.h pasted in front, as the generator does ---- */

static const gptc_bench *fixture(cpu_object *obj) {
  char *abi, *body;
  size_t abi_len, body_len;
  ck_assert_msg(util_read_file(tu_src("templates/bench/abi.h"), &abi, &abi_len) == 0, "%s", util_errmsg());
  ck_assert_msg(util_read_file(tu_src("tests/fixtures/bench_fixture.c"), &body, &body_len) == 0, "%s",
                util_errmsg());
  util_buf src = {0};
  ck_assert_int_eq(util_buf_add(&src, abi, abi_len) || util_buf_add(&src, body, body_len), 0);
  free(abi);
  free(body);
  const gptc_bench *b;
  ck_assert_msg(bench_open_source(src.data, src.len, "bench-fixture", obj, &b) == 0, "%s", util_errmsg());
  /* the same source again comes from the cache */
  cpu_object again;
  const gptc_bench *b2;
  ck_assert_int_eq(bench_open_source(src.data, src.len, "bench-fixture", &again, &b2), 0);
  ck_assert_int_eq(again.compiled, 0);
  ck_assert_str_eq(again.so_path, obj->so_path);
  cpu_object_close(&again);
  /* a hash that does not match is refused */
  cpu_object bad;
  ck_assert_int_eq(bench_open_source(src.data, src.len, "another-hash", &bad, &b2), -1);
  ck_assert_msg(strstr(util_errmsg(), "content hash") != NULL, "%s", util_errmsg());
  util_buf_free(&src);
  ck_assert_int_eq(b->abi_version, GPTC_BENCH_ABI_VERSION);
  ck_assert_int_eq(b->n_ops, 5);
  return b;
}

START_TEST(test_fixture_variants) {
  cpu_object obj;
  const gptc_bench *b = fixture(&obj);
  bench_blas blas;
  int have_blas = bench_blas_open(1, &blas) == 0;
  if (!have_blas) fprintf(stderr, "test_bench: no library baseline: %s\n", blas.why);
  bench_timing t = {1, 3, 0, 0, 0, 0};
  bench_op_result r[5];
  for (int i = 0; i < 5; i++) ck_assert_msg(bench_op_run(&b->ops[i], 42 + i, &t, &r[i]) == 0, "%s", util_errmsg());
  for (int i = 0; i < 5; i++)
    ck_assert_msg(bench_op_lib(&b->ops[i], 42 + i, &t, have_blas ? &blas : NULL, &r[i]) == 0, "%s", util_errmsg());
  for (int i = 0; i < 5; i++) bench_op_free(&r[i]);
  /* ops 0-2: both variants right, checked and timed */
  for (int i = 0; i < 3; i++)
    for (int v = BENCH_SPEC; v <= BENCH_GEN; v++) {
      ck_assert_msg(r[i].v[v].status == BENCH_OK, "op %d %s: status %d err %g", i, bench_var_names[v],
                    r[i].v[v].status, r[i].v[v].err);
      ck_assert_double_le(r[i].v[v].err, BENCH_TOLERANCE);
      ck_assert_int_eq(r[i].v[v].t.n, 3);
      ck_assert_double_gt(r[i].v[v].t.median, 0);
      ck_assert_double_le(r[i].v[v].t.min, r[i].v[v].t.median);
      ck_assert_double_ge(r[i].v[v].t.max, r[i].v[v].t.median);
    }
  /* op 0's generic sums in another order: not bit-equal, within tolerance */
  ck_assert_double_gt(r[0].v[BENCH_SPEC].err, 0);
  /* op 3: the specialized variant skips an element and is not timed */
  ck_assert_int_eq(r[3].v[BENCH_GEN].status, BENCH_OK);
  ck_assert_int_eq(r[3].v[BENCH_SPEC].status, BENCH_MISMATCH);
  ck_assert_double_gt(r[3].v[BENCH_SPEC].err, 1e-3);
  ck_assert_int_eq(r[3].v[BENCH_SPEC].t.n, 0);
  ck_assert_int_eq(r[3].v[BENCH_LIB].status, BENCH_NA);
  ck_assert_int_eq(r[2].v[BENCH_LIB].status, BENCH_NA);
  if (have_blas) {
    /* nt with bias (the library against plain, without it), tn accumulating */
    ck_assert_msg(r[0].v[BENCH_LIB].status == BENCH_OK, "op 0 library err %g", r[0].v[BENCH_LIB].err);
    ck_assert_msg(r[1].v[BENCH_LIB].status == BENCH_OK, "op 1 library err %g", r[1].v[BENCH_LIB].err);
    ck_assert_double_gt(r[1].v[BENCH_LIB].t.median, 0);
    /* op 4's plain adds 1: the library disagrees with it */
    ck_assert_int_eq(r[4].v[BENCH_LIB].status, BENCH_MISMATCH);
    ck_assert_str_ne(blas.corename, "");
  } else {
    ck_assert_int_eq(r[0].v[BENCH_LIB].status, BENCH_NA);
  }
  ck_assert_int_eq(r[4].v[BENCH_SPEC].status, BENCH_OK);

  /* the report counts the mismatches and renders them */
  cfg_t cfg;
  memset(&cfg, 0, sizeof cfg);
  snprintf(cfg.name, sizeof cfg.name, "fixture");
  bench_report rep = {0};
  rep.cfg = &cfg, rep.hash = "bench-fixture", rep.n_ops = 5, rep.ops = r, rep.blas = &blas;
  rep.op_timing = t;
  bench_describe(&rep.machine);
  rep.machine.fma_gflops = 100, rep.machine.copy_gbs = 10;
  ck_assert_int_eq(bench_mismatches(&rep), have_blas ? 2 : 1);
  double rate, frac;
  bench_rate(&rep, &r[0], BENCH_SPEC, &rate, &frac);
  ck_assert_double_eq_tol(rate, b->ops[0].flops / r[0].v[BENCH_SPEC].t.median / 1e9, 1e-9 * rate);
  ck_assert_double_eq_tol(frac, rate / 100, 1e-12);
  bench_rate(&rep, &r[3], BENCH_SPEC, &rate, &frac);
  ck_assert_double_eq(rate, 0);
  util_buf svg = {0};
  ck_assert_int_eq(bench_svg(&rep, &svg), 0);
  ck_assert_ptr_nonnull(strstr(svg.data, "specialized: mismatch"));
  util_buf_free(&svg);
  bench_blas_close(&blas);
  cpu_object_close(&obj);
}
END_TEST

START_TEST(test_stats) {
  double x[] = {5, 1, 4, 2, 3};
  bench_stats s;
  bench_stats_of(x, 5, &s);
  ck_assert_int_eq(s.n, 5);
  ck_assert_double_eq(s.median, 3);
  ck_assert_double_eq(s.min, 1);
  ck_assert_double_eq(s.max, 5);
  ck_assert_double_eq_tol(s.p10, 1.4, 1e-12);
  ck_assert_double_eq_tol(s.p90, 4.6, 1e-12);
  ck_assert_double_eq(x[0], 5); /* the input is left alone */
  double y[] = {4, 1, 3, 2};
  bench_stats_of(y, 4, &s);
  ck_assert_double_eq(s.median, 2.5);
  double z[] = {7};
  bench_stats_of(z, 1, &s);
  ck_assert(s.median == 7 && s.min == 7 && s.max == 7 && s.p10 == 7 && s.p90 == 7);
  bench_stats_of(z, 0, &s);
  ck_assert_int_eq(s.n, 0);
}
END_TEST

static int calls[2], prepares, order_ok = 1, last = -1;
static void count_run(void *ctx, int i) {
  (void)ctx;
  calls[i]++;
  if (i != (last + 1) % *(int *)ctx) order_ok = 0; /* round-robin */
  last = i;
}
static void count_prepare(void *ctx, int i) {
  (void)ctx;
  (void)i;
  prepares++;
}

START_TEST(test_timing_policy) {
  bench_stats s[2];
  int k = 1;
  bench_timing fixed = {2, 7, 5, 200, 10.0, 0};
  ck_assert_int_eq(bench_time(k, count_run, count_prepare, &k, &fixed, s), 0);
  ck_assert_int_eq(s[0].n, 7); /* --repeats wins over min_seconds */
  ck_assert_int_eq(calls[0], 9);
  ck_assert_int_eq(prepares, 9);
  bench_timing adaptive = {2, 0, 5, 200, 0, 0};
  calls[0] = 0;
  ck_assert_int_eq(bench_time(k, count_run, NULL, &k, &adaptive, s), 0);
  ck_assert_int_eq(s[0].n, 5); /* at least min_runs */
  bench_timing capped = {0, 0, 5, 50, 100.0, 0};
  calls[0] = 0;
  ck_assert_int_eq(bench_time(k, count_run, NULL, &k, &capped, s), 0);
  ck_assert_int_eq(s[0].n, 50); /* min_seconds not reached: max_runs stops it */
  ck_assert_int_eq(calls[0], 50);
  /* two variants alternate and get the same number of runs */
  k = 2, calls[0] = 0, last = -1;
  ck_assert_int_eq(bench_time(k, count_run, NULL, &k, &fixed, s), 0);
  ck_assert(s[0].n == 7 && s[1].n == 7 && calls[0] == 9 && calls[1] == 9 && order_ok);
  /* cold runs: the same runs and prepares, a flush buffer of twice the last-level cache */
  ck_assert_uint_ge(bench_flush_bytes(), (size_t)64 << 20);
  bench_timing cold = {1, 4, 0, 0, 0, (size_t)1 << 20};
  k = 1, calls[0] = 0, prepares = 0;
  ck_assert_int_eq(bench_time(k, count_run, count_prepare, &k, &cold, s), 0);
  ck_assert(s[0].n == 4 && calls[0] == 5 && prepares == 5);
}
END_TEST

START_TEST(test_rel_diff) {
  float ref[] = {1, -4, 2}, a[] = {1, -4.002f, 2};
  ck_assert_double_eq_tol(bench_rel_diff(a, ref, 3), 0.002 / 4, 1e-6);
  ck_assert_double_eq(bench_rel_diff(ref, ref, 3), 0);
  float zero[] = {0, 0}, small[] = {0, 1e-3f};
  ck_assert_double_eq_tol(bench_rel_diff(small, zero, 2), 1e-3, 1e-9); /* all-zero ref: absolute */
  float nan[] = {1, NAN, 2};
  ck_assert(isinf(bench_rel_diff(nan, ref, 3)));
  ck_assert(isinf(bench_rel_diff(ref, nan, 3)));
}
END_TEST

START_TEST(test_escaping) {
  util_buf x = {0};
  /* the one XML escaper (plot_svg.c) serves the bench chart too */
  ck_assert_int_eq(plot_xml_escape(&x, "a<b>&\"c'\x01"), 0);
  ck_assert_int_eq(util_buf_add(&x, "", 1), 0);
  ck_assert_str_eq(x.data, "a&lt;b&gt;&amp;&quot;c&#39;?");
  util_buf_free(&x);

  /* names with quotes, backslashes, newlines and markup survive JSON and SVG */
  cfg_t cfg;
  memset(&cfg, 0, sizeof cfg);
  snprintf(cfg.name, sizeof cfg.name, "we\"ird\\name\n<x>");
  gptc_bench_buf bufs[] = {{"y", 4, GPTC_BENCH_ZERO, 0, 1}};
  int dims[] = {4};
  const char *names[] = {"N\""};
  gptc_bench_op op = {.kernel = "k\"<&>", .op = "scale", .pass = "forward", .what = "tab\there", .calls = 1,
                      .flops = 4, .bytes = 32, .n_bufs = 1, .bufs = bufs, .n_dims = 1, .dims = dims,
                      .dim_names = names};
  bench_op_result r = {&op, {{BENCH_OK, 0, {3, 1e-3, 1e-3, 1e-3, 1e-3, 1e-3}}, {BENCH_MISMATCH, INFINITY, {0}},
                             {BENCH_NA, 0, {0}}},
                       NULL};
  bench_report rep = {0};
  rep.cfg = &cfg, rep.hash = "h", rep.n_ops = 1, rep.ops = &r, rep.note = "a \"note\"";
  bench_describe(&rep.machine);
  snprintf(rep.machine.cpu, sizeof rep.machine.cpu, "CPU \"quoted\" \\ 100%%");
  rep.machine.fma_gflops = 1, rep.machine.copy_gbs = 1;
  util_buf j = {0};
  ck_assert_int_eq(bench_json(&rep, &j), 0);
  json_val *v = json_parse(j.data, j.len, "bench.json");
  ck_assert_msg(v != NULL, "%s\n%.*s", util_errmsg(), (int)j.len, j.data);
  ck_assert_str_eq(json_get(json_get(v, "config"), "name")->str, cfg.name);
  ck_assert_str_eq(json_get(json_get(v, "machine"), "cpu")->str, rep.machine.cpu);
  const json_val *o = &json_get(v, "ops")->items[0];
  ck_assert_str_eq(json_get(o, "kernel")->str, "k\"<&>");
  ck_assert_str_eq(json_get(o, "what")->str, "tab\there");
  ck_assert_int_eq(json_get(json_get(o, "dims"), "N\"")->i, 4);
  /* an infinite error is written as null, not as invalid JSON */
  ck_assert_int_eq(json_get(json_get(o, "generic"), "rel_err")->type, JSON_NULL);
  ck_assert_str_eq(json_get(json_get(o, "generic"), "check")->str, "mismatch");
  ck_assert_int_eq(json_get(v, "mismatches")->i, 1);
  ck_assert_int_eq(json_get(v, "step")->type, JSON_NULL);
  json_free(v);
  util_buf_free(&j);

  util_buf s = {0};
  ck_assert_int_eq(bench_svg(&rep, &s), 0);
  ck_assert_int_eq(util_buf_add(&s, "", 1), 0);
  ck_assert_ptr_nonnull(strstr(s.data, "k&quot;&lt;&amp;&gt;"));
  ck_assert_ptr_null(strstr(s.data, "<x>"));
  util_buf_free(&s);
}
END_TEST

/* an op far past the copy bandwidth (data in cache) does not stretch the
 * chart's axis: it stops at 200%, the bar is cut and labelled with its value */
START_TEST(test_svg_axis_cap) {
  cfg_t cfg;
  memset(&cfg, 0, sizeof cfg);
  snprintf(cfg.name, sizeof cfg.name, "cap");
  gptc_bench_buf bufs[] = {{"y", 4, GPTC_BENCH_ZERO, 0, 1}};
  int dims[] = {4};
  const char *names[] = {"N"};
  gptc_bench_op ops[2] = {
      {.kernel = "adamw_like", .op = "adamw", .pass = "update", .what = "", .calls = 1, .flops = 1, .bytes = 4.21e9,
       .n_bufs = 1, .bufs = bufs, .n_dims = 1, .dims = dims, .dim_names = names},
      {.kernel = "gemm_like", .op = "matmul", .pass = "forward", .what = "", .calls = 1, .flops = 0.8e9, .bytes = 1,
       .compute_bound = 1, .n_bufs = 1, .bufs = bufs, .n_dims = 1, .dims = dims, .dim_names = names},
  };
  bench_op_result r[2];
  memset(r, 0, sizeof r);
  for (int i = 0; i < 2; i++) {
    r[i].op = &ops[i];
    r[i].v[BENCH_SPEC] = (bench_var){BENCH_OK, 0, {3, 1, 1, 1, 1, 1}}; /* 1 s a call */
    r[i].v[BENCH_GEN] = (bench_var){BENCH_NA, 0, {0}};
    r[i].v[BENCH_LIB] = (bench_var){BENCH_NA, 0, {0}};
  }
  bench_report rep = {0};
  rep.cfg = &cfg, rep.hash = "h", rep.n_ops = 2, rep.ops = r;
  bench_describe(&rep.machine);
  rep.machine.fma_gflops = 1, rep.machine.copy_gbs = 1; /* 421% and 80% of peak */
  util_buf s = {0};
  ck_assert_int_eq(bench_svg(&rep, &s), 0);
  ck_assert_int_eq(util_buf_add(&s, "", 1), 0);
  ck_assert_ptr_nonnull(strstr(s.data, ">200%</text>"));
  ck_assert_ptr_null(strstr(s.data, ">250%</text>"));
  ck_assert_ptr_null(strstr(s.data, ">400%</text>"));
  ck_assert_ptr_nonnull(strstr(s.data, ">421.0%</text>"));
  ck_assert_ptr_nonnull(strstr(s.data, ">80.0%</text>"));
  ck_assert_ptr_nonnull(strstr(s.data, "bars past the axis are cut"));
  util_buf_free(&s);
  /* without such an op the axis fits the data */
  rep.n_ops = 1, rep.ops = &r[1];
  ck_assert_int_eq(bench_svg(&rep, &s), 0);
  ck_assert_int_eq(util_buf_add(&s, "", 1), 0);
  ck_assert_ptr_null(strstr(s.data, ">200%</text>"));
  ck_assert_ptr_null(strstr(s.data, "bars past the axis are cut"));
  util_buf_free(&s);
}
END_TEST

/* ---- the command ---- */

START_TEST(test_cli_tiny) {
  char jpath[1100], spath[1100];
  snprintf(jpath, sizeof jpath, "%s/tiny.json", tu_tmpdir());
  snprintf(spath, sizeof spath, "%s/tiny.svg", tu_tmpdir());
  tu_run_result r;
  int code = tu_run(&r, NULL, "bench --config '%s' --threads 1 --repeats 3 --json '%s' --chart '%s'",
                    tu_src("configs/tiny-test.lua"), jpath, spath);
  ck_assert_msg(code == 0, "exit %d: %s\n%s", code, r.err, r.out);
  ck_assert_ptr_nonnull(strstr(r.out, "specialized"));
  ck_assert_ptr_nonnull(strstr(r.out, "ms/step"));
  json_val *v = tu_read_json(jpath);
  const json_val *m = json_get(v, "machine");
  ck_assert_ptr_nonnull(m);
  ck_assert_int_eq(json_get(m, "cpu")->type, JSON_STR);
  ck_assert_int_eq((int)tu_json_num(m, "threads"), 1);
  ck_assert_double_gt(tu_json_num(m, "fma_peak_gflops"), 0);
  ck_assert_double_gt(tu_json_num(m, "copy_gbs"), 0);
  ck_assert_ptr_nonnull(json_get(m, "compiler"));
  const json_val *lib = json_get(m, "library");
  ck_assert_ptr_nonnull(lib);
  int have_lib = json_get(lib, "available")->boolean;
  ck_assert_str_eq(json_get(json_get(v, "config"), "name")->str, "tiny-test");
  ck_assert_int_eq((int)tu_json_num(v, "mismatches"), 0);

  char *svg;
  size_t svg_len;
  ck_assert_int_eq(util_read_file(spath, &svg, &svg_len), 0);
  while (svg_len && (svg[svg_len - 1] == '\n' || svg[svg_len - 1] == ' ')) svg[--svg_len] = 0;
  ck_assert_int_eq(strncmp(svg, "<svg", 4), 0);
  ck_assert_int_eq(strcmp(svg + svg_len - 6, "</svg>"), 0);

  const json_val *ops = json_get(v, "ops");
  ck_assert_msg(ops && ops->type == JSON_ARR && ops->len >= 10, "too few ops");
  int matmuls = 0;
  for (size_t i = 0; i < ops->len; i++) {
    const json_val *o = &ops->items[i];
    const char *kernel = json_get(o, "kernel")->str;
    ck_assert_msg(strstr(svg, kernel) != NULL, "%s not in the chart", kernel);
    for (int k = 0; k < 2; k++) {
      const json_val *var = json_get(o, k ? "generic" : "specialized");
      ck_assert_msg(var != NULL, "%s: no %s", kernel, k ? "generic" : "specialized");
      ck_assert_str_eq(json_get(var, "check")->str, "ok");
      ck_assert_double_le(tu_json_num(var, "rel_err"), 1e-4);
      ck_assert_double_gt(tu_json_num(var, "median_ms"), 0);
      ck_assert_int_eq((int)tu_json_num(var, "runs"), 3);
    }
    if (!strcmp(json_get(o, "op")->str, "matmul")) {
      matmuls++;
      const json_val *l = json_get(o, "library");
      ck_assert_msg(l != NULL, "%s: no library entry", kernel);
      ck_assert_str_eq(json_get(l, "check")->str, have_lib ? "ok" : "n/a");
      if (have_lib) ck_assert_double_gt(tu_json_num(l, "median_ms"), 0);
    }
  }
  ck_assert_int_gt(matmuls, 0);
  const json_val *step = json_get(v, "step");
  ck_assert_msg(step && step->type == JSON_OBJ, "no step section");
  ck_assert_double_gt(tu_json_num(step, "ms_per_step"), 0);
  ck_assert_double_gt(tu_json_num(step, "tokens_per_s"), 0);
  ck_assert_double_gt(tu_json_num(step, "mfu"), 0);
  ck_assert_double_gt(tu_json_num(step, "peak_rss_bytes"), 0);
  ck_assert_double_gt(tu_json_num(json_get(step, "model_bytes"), "total"), 0);
  ck_assert_ptr_nonnull(strstr(r.out, "caches:  warm"));
  ck_assert(!json_get(json_get(v, "settings"), "cold")->boolean);
  free(svg);
  json_free(v);
  tu_run_free(&r);

  /* --cold: the settings say so and name the flush; every check still passes */
  code = tu_run(&r, NULL, "bench --config '%s' --threads 1 --repeats 2 --ops-only --cold --json '%s'",
                tu_src("configs/tiny-test.lua"), jpath);
  ck_assert_msg(code == 0, "exit %d: %s\n%s", code, r.err, r.out);
  ck_assert_ptr_nonnull(strstr(r.out, "caches:  cold ("));
  v = tu_read_json(jpath);
  const json_val *set = json_get(v, "settings");
  ck_assert(json_get(set, "cold")->boolean);
  ck_assert_double_eq(tu_json_num(set, "flush_bytes"), (double)bench_flush_bytes());
  ck_assert_int_eq((int)tu_json_num(v, "mismatches"), 0);
  json_free(v);
  tu_run_free(&r);
}
END_TEST

/* exits `want` (1: runtime error, 2: usage error) with one line on stderr */
static void expect_fail(int want, const char *needle, const char *fmt, const char *a1, const char *a2) {
  tu_run_result r;
  char args[4096];
  snprintf(args, sizeof args, fmt, a1, a2);
  int code = tu_run(&r, NULL, "%s", args);
  ck_assert_msg(code == want, "'%s': exit %d, want %d: %s", args, code, want, r.err);
  ck_assert_msg(strstr(r.err, needle) != NULL, "'%s': '%s' not in: %s", args, needle, r.err);
  char *nl = strchr(r.err, '\n');
  ck_assert_msg(nl && nl[1] == 0, "'%s': not one line: %s", args, r.err);
  tu_run_free(&r);
}

START_TEST(test_cli_bad) {
  const char *tiny = tu_src("configs/tiny-test.lua");
  const char *bad = tu_write_str("bad.lua", "return { name = 'bad', emb_dim = -3 }");
  char dir[1100], json[1200], svg[1200];
  snprintf(dir, sizeof dir, "%s/bad-out", tu_tmpdir());
  util_mkdir_p(dir);
  snprintf(json, sizeof json, "%s/x.json", dir);
  snprintf(svg, sizeof svg, "%s/x.svg", dir);
  expect_fail(2, "--config", "bench%s%s", "", "");
  expect_fail(1, "missing.lua", "bench --config %s/missing.lua%s", tu_tmpdir(), "");
  expect_fail(1, "emb_dim", "bench --config '%s'%s", bad, "");
  expect_fail(2, "--device", "bench --config '%s' --device tpu%s", tiny, "");
  expect_fail(2, "--threads", "bench --config '%s' --threads 0%s", tiny, "");
  expect_fail(2, "--repeats", "bench --config '%s' --repeats x%s", tiny, "");
  expect_fail(1, "does not exist", "bench --config '%s' --json /nonexistent-dir/x.json%s", tiny, "");
  expect_fail(1, "is a directory", "bench --config '%s' --chart '%s'", tiny, dir);
  /* a good --json with a bad --chart: nothing is written */
  char args[4096];
  snprintf(args, sizeof args, "bench --config '%s' --json '%s' --chart /nonexistent-dir/x.svg", tiny, json);
  expect_fail(1, "--chart", "%s%s", args, "");
  ck_assert(!util_file_exists(json) && !util_file_exists(svg));
  if (cuda_probe() != 0) expect_fail(1, "--device cuda", "bench --config '%s' --device cuda%s", tiny, "");
  expect_fail(2, "--device cuda", "bench --config '%s' --device cuda --ops-only%s", tiny, "");
}
END_TEST

static Suite *bench_suite(void) {
  Suite *s = suite_create("bench");
  TCase *tc = tcase_create("harness");
  tcase_add_test(tc, test_fixture_variants);
  tcase_add_test(tc, test_stats);
  tcase_add_test(tc, test_timing_policy);
  tcase_add_test(tc, test_rel_diff);
  tcase_add_test(tc, test_escaping);
  tcase_add_test(tc, test_svg_axis_cap);
  suite_add_tcase(s, tc);
  TCase *cli = tcase_create("cli");
  tcase_set_timeout(cli, 300);
  tcase_add_test(cli, test_cli_tiny);
  tcase_add_test(cli, test_cli_bad);
  suite_add_tcase(s, cli);
  return s;
}

int main(void) { return tu_main(bench_suite()); }
