/* The step profile (`gptc bench --profile`, `gptc gen --profile`;
 * templates/cpu/model.c): the profiled source is the plain one with a
 * prof_mark after every kernel call of the training passes and nothing else
 * changed in them, each mark names the kernel just called; the profiled
 * step computes the same loss, bit for bit, and its table counts every call
 * the source makes, with the marked time inside the step's. */
#include <math.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "testutil.h"
#include "util.h"

static char *read_text(const char *path) {
  char *s;
  size_t n;
  ck_assert_msg(util_read_file(path, &s, &n) == 0, "%s", util_errmsg());
  return s;
}

/* DIR/model.c of `gptc gen` on tiny-test (with extra options) */
static char *gen_model(const char *dir, const char *extra) {
  tu_run_result r;
  int code = tu_run(&r, NULL, "gen --config '%s' -o '%s' %s", tu_src("configs/tiny-test.lua"), dir, extra);
  ck_assert_msg(code == 0, "gen %s: exit %d: %s", extra, code, r.err);
  tu_run_free(&r);
  char path[1200];
  snprintf(path, sizeof path, "%s/model.c", dir);
  return read_text(path);
}

/* a copy of the function that starts at the line beginning with `start`,
 * up to its closing "}" line */
static char *function(const char *src, const char *start) {
  const char *a = strstr(src, start);
  ck_assert_msg(a != NULL, "no '%s' in the source", start);
  const char *b = strstr(a, "\n}\n");
  ck_assert_ptr_nonnull(b);
  return strndup(a, (size_t)(b + 3 - a));
}

/* the kernel a line calls: "fn(" at its start, or "if (...) x = fn(" */
static int called(const char *line, char *fn, size_t cap) {
  static regex_t plain, cond;
  static int ready;
  if (!ready) {
    ck_assert_int_eq(regcomp(&plain, "^ *([a-z][a-z0-9_]*)\\(", REG_EXTENDED), 0);
    ck_assert_int_eq(regcomp(&cond, "^ *if \\([^)]*\\) [a-z_]+ = ([a-z][a-z0-9_]*)\\(", REG_EXTENDED), 0);
    ready = 1;
  }
  regmatch_t m[2];
  if (regexec(&plain, line, 2, m, 0) && regexec(&cond, line, 2, m, 0)) return 0;
  int n = (int)(m[1].rm_eo - m[1].rm_so);
  snprintf(fn, cap, "%.*s", n, line + m[1].rm_so);
  /* control flow and the marks themselves are no kernel calls */
  return strcmp(fn, "if") && strcmp(fn, "for") && strcmp(fn, "return") && strncmp(fn, "prof_", 5);
}

/* the profiled source's site names, "pass fn", in id order */
static int site_names(const char *src, char names[][128], int cap) {
  const char *a = strstr(src, "gptc_prof_names[GPTC_PROF_N] = {");
  ck_assert_ptr_nonnull(a);
  const char *end = strstr(a, "};");
  int n = 0;
  for (const char *q = strchr(a, '"'); q && q < end; q = strchr(q, '"')) {
    const char *e = strchr(q + 1, '"');
    ck_assert_int_lt(n, cap);
    snprintf(names[n++], 128, "%.*s", (int)(e - q - 1), q + 1);
    q = e + 1;
  }
  return n;
}

/* Walks the profiled function: every kernel call is followed by a mark
 * whose site is (pass, that kernel), every mark follows a call; returns the
 * function with the marks and prof_start removed. */
static char *strip_marks(const char *fsrc, const char *pass, char names[][128], int n_names) {
  util_buf out = {0};
  char prev_fn[128] = "", prev_line[512] = "";
  int prev_call = 0;
  const char *p = fsrc;
  while (*p) {
    const char *e = strchr(p, '\n');
    size_t len = e ? (size_t)(e - p + 1) : strlen(p);
    char line[4096];
    snprintf(line, sizeof line, "%.*s", (int)len, p);
    int id;
    char tail;
    if (sscanf(line, " prof_mark(%d);%c", &id, &tail) == 2) {
      ck_assert_msg(prev_call, "a mark after a line that calls no kernel: %s", prev_line);
      ck_assert_int_ge(id, 0);
      ck_assert_int_lt(id, n_names);
      char want[256];
      snprintf(want, sizeof want, "%s %s", pass, prev_fn);
      ck_assert_msg(!strcmp(names[id], want), "mark %d is '%s' after a call of %s", id, names[id], want);
      prev_call = 0;
    } else if (strstr(line, "prof_start();")) {
      prev_call = 0;
    } else {
      ck_assert_msg(!prev_call, "the call '%s' has no mark after it", prev_line);
      prev_call = called(line, prev_fn, sizeof prev_fn);
      snprintf(prev_line, sizeof prev_line, "%.500s", line);
      ck_assert_int_eq(util_buf_add(&out, line, strlen(line)), 0);
    }
    p += len;
  }
  ck_assert_msg(!prev_call, "the last call has no mark");
  ck_assert_int_eq(util_buf_add(&out, "", 1), 0);
  return out.data;
}

START_TEST(gen_marks_only) {
  char da[1100], db[1100];
  snprintf(da, sizeof da, "%s/plain", tu_tmpdir());
  snprintf(db, sizeof db, "%s/prof", tu_tmpdir());
  char *plain = gen_model(da, ""), *prof = gen_model(db, "--profile");
  ck_assert_ptr_nonnull(strstr(prof, " * profiled: a timing mark after every kernel call"));
  ck_assert_ptr_null(strstr(plain, "prof_"));
  char names[64][128];
  int n = site_names(prof, names, 64);
  ck_assert_str_eq(names[n - 2], "update gptc_grad_sq_norm");
  ck_assert_str_eq(names[n - 1], "update gptc_adamw");
  const char *fns[2][2] = {{"static real gptc_forward(", "forward"}, {"static void gptc_backward(", "backward"}};
  for (int i = 0; i < 2; i++) {
    char *fa = function(plain, fns[i][0]), *fb = function(prof, fns[i][0]);
    ck_assert_ptr_nonnull(strstr(fb, "prof_start();"));
    char *stripped = strip_marks(fb, fns[i][1], names, n);
    ck_assert_msg(!strcmp(stripped, fa), "%s differs from the plain source beyond its marks", fns[i][1]);
    free(fa);
    free(fb);
    free(stripped);
  }
  /* every site is marked somewhere, and the kernels (all between the header
   * and the passes) are the same text */
  for (int i = 0; i < n - 2; i++) {
    char mark[64];
    snprintf(mark, sizeof mark, "prof_mark(%d);", i);
    ck_assert_msg(strstr(prof, mark) != NULL, "site %d (%s) is never marked", i, names[i]);
  }
  const char *ka = strstr(plain, "#define GPTC_SOURCE_HASH"), *kb = strstr(prof, "#define GPTC_SOURCE_HASH");
  ka = strchr(ka, '\n'), kb = strchr(kb, '\n');
  const char *ea = strstr(ka, "/* ---- the passes"), *eb = strstr(kb, "/* ---- the step profile");
  ck_assert_ptr_nonnull(ea);
  ck_assert_ptr_nonnull(eb);
  ck_assert_int_eq((int)(ea - ka), (int)(eb - kb));
  ck_assert_int_eq(memcmp(ka, kb, (size_t)(ea - ka)), 0);
  /* the eval pass has no marks */
  char *ev = function(prof, "static real gptc_forward_eval(");
  ck_assert_ptr_null(strstr(ev, "prof_"));
  free(ev);
  free(plain);
  free(prof);
}
END_TEST

/* How often a step calls `fn` (NULL: any kernel) in a pass, counted in the
 * plain source: calls inside the layer loop n_layers times. */
static int source_calls(const char *fsrc, const char *fn, int n_layers) {
  int n = 0, in_loop = 0;
  const char *p = fsrc;
  while (*p) {
    const char *e = strchr(p, '\n');
    size_t len = e ? (size_t)(e - p + 1) : strlen(p);
    char line[4096], f[128];
    snprintf(line, sizeof line, "%.*s", (int)len, p);
    if (strstr(line, "  for (int l = ")) in_loop = 1;
    else if (!strncmp(line, "  }", 3)) in_loop = 0;
    else if (called(line, f, sizeof f) && (!fn || !strcmp(f, fn))) n += in_loop ? n_layers : 1;
    p += len;
  }
  return n;
}

START_TEST(bench_profile_counts) {
  char dir[1100], pj[1200], qj[1200];
  snprintf(dir, sizeof dir, "%s/plain2", tu_tmpdir());
  snprintf(pj, sizeof pj, "%s/prof.json", tu_tmpdir());
  snprintf(qj, sizeof qj, "%s/plain.json", tu_tmpdir());
  char *plain = gen_model(dir, "");
  tu_run_result r;
  const char *cfg = tu_src("configs/tiny-test.lua");
  int code = tu_run(&r, NULL, "bench --config '%s' --threads 1 --repeats 3 --no-tune --profile --json '%s'", cfg, pj);
  ck_assert_msg(code == 0, "exit %d: %s\n%s", code, r.err, r.out);
  ck_assert_ptr_nonnull(strstr(r.out, "\nprofile: "));
  ck_assert_ptr_nonnull(strstr(r.out, "\nby kind: matmul "));
  tu_run_free(&r);
  code = tu_run(&r, NULL, "bench --config '%s' --threads 1 --repeats 3 --no-tune --json '%s'", cfg, qj);
  ck_assert_msg(code == 0, "exit %d: %s", code, r.err);
  ck_assert_ptr_null(strstr(r.out, "\nprofile: "));
  tu_run_free(&r);

  json_val *p = tu_read_json(pj), *q = tu_read_json(qj);
  const json_val *ps = json_get(p, "step"), *qs = json_get(q, "step");
  /* the marks change no result: the same steps give the same loss, bit for bit */
  ck_assert_msg(tu_json_num(ps, "loss") == tu_json_num(qs, "loss"), "loss %.9g profiled, %.9g plain", tu_json_num(ps, "loss"),
                tu_json_num(qs, "loss"));
  ck_assert_ptr_null(json_get(qs, "profile"));
  const json_val *prof = json_get(ps, "profile"), *sites = json_get(prof, "sites");
  ck_assert_int_eq(sites->type, JSON_ARR);
  char *fwd = function(plain, "static real gptc_forward("), *bwd = function(plain, "static void gptc_backward(");
  double marked = 0;
  int n_fwd = 0, n_bwd = 0;
  for (size_t i = 0; i < sites->len; i++) {
    const json_val *s = &sites->items[i];
    const char *pass = json_get(s, "pass")->str, *fn = json_get(s, "kernel")->str;
    double calls = tu_json_num(s, "calls_per_step"), ms = tu_json_num(s, "ms_per_step");
    int want = !strcmp(pass, "forward") ? source_calls(fwd, fn, 2)
               : !strcmp(pass, "backward") ? source_calls(bwd, fn, 2)
                                           : 1; /* update: the norm and AdamW once a step */
    ck_assert_msg(want > 0, "site %s %s is not called by the source", pass, fn);
    ck_assert_msg(calls == want, "%s %s: %g calls a step, the source makes %d", pass, fn, calls, want);
    ck_assert_double_ge(ms, 0);
    marked += ms;
    n_fwd += !strcmp(pass, "forward") ? want : 0;
    n_bwd += !strcmp(pass, "backward") ? want : 0;
  }
  /* and every call the passes make is counted in some site */
  ck_assert_int_eq(n_fwd, source_calls(fwd, NULL, 2));
  ck_assert_int_eq(n_bwd, source_calls(bwd, NULL, 2));
  ck_assert_int_gt(n_fwd, 0);
  /* the marks lie inside the step: their sum and the rest are the step */
  double step = tu_json_num(prof, "ms_per_step"), rest = tu_json_num(prof, "rest_ms_per_step");
  ck_assert_double_gt(step, 0);
  ck_assert_double_ge(rest, 0);
  ck_assert_double_le(fabs(marked + rest - step), 1e-9 * step + 1e-12);
  free(fwd);
  free(bwd);
  free(plain);
  json_free(p);
  json_free(q);
}
END_TEST

START_TEST(profile_usage_errors) {
  const char *cfg = tu_src("configs/tiny-test.lua");
  const char *cases[][2] = {
      {"bench --config '%s' --profile --ops-only", "'--profile' profiles the training step"},
      {"bench --config '%s' --profile --device cuda", "'--profile' times the CPU step's kernels"},
      {"gen --config '%s' --profile --device cuda -o /nonexistent/x", "option '--profile' is for --device cpu"},
  };
  for (int i = 0; i < 3; i++) {
    tu_run_result r;
    int code = tu_run(&r, NULL, cases[i][0], cfg);
    ck_assert_msg(code == 2, "'%s': exit %d", cases[i][0], code);
    ck_assert_msg(strstr(r.err, cases[i][1]) != NULL, "'%s': %s", cases[i][0], r.err);
    tu_run_free(&r);
  }
}
END_TEST

int main(void) {
  Suite *s = suite_create("profile");
  tu_add_case(s, "gen_marks_only", gen_marks_only, 120);
  tu_add_case(s, "bench_profile_counts", bench_profile_counts, 300);
  tu_add_case(s, "profile_usage_errors", profile_usage_errors, 60);
  return tu_main(s);
}
