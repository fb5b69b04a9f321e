/* test_tune: `gptc tune` and the host's schedule file (runtime/tune.c,
 * runtime/schedfile.c, gen/cpu/schedule.lua) through the CLI, each test with
 * its own cache directory. That every schedule gives the same bits is
 * tests/test_gen.c's schedule_independence. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

static const char *cfg_path(void) { return tu_src("configs/tiny-test.lua"); }

/* a fresh cache directory under the test's temp dir */
static const char *cache(const char *name) {
  static char path[8][1024];
  static int i;
  char *p = path[i++ % 8];
  snprintf(p, 1024, "%s/%s", tu_tmpdir(), name);
  return p;
}

static char *slurp(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  char *s = calloc(1, 1 << 20);
  size_t n = fread(s, 1, (1 << 20) - 1, f);
  s[n] = 0;
  fclose(f);
  return s;
}

/* log.jsonl without its one timing field, tokens_per_s */
static void strip_speed(char *s) {
  char *p;
  while ((p = strstr(s, ",\"tokens_per_s\":"))) {
    char *e = p + 1;
    while (*e && *e != ',' && *e != '}') e++;
    memmove(p, e, strlen(e) + 1);
  }
}

/* the first line of a command's stdout (the schedule file's path) */
static void first_line(const char *out, char *buf, size_t n) {
  snprintf(buf, n, "%s", out);
  buf[strcspn(buf, "\n")] = 0;
}

static int count(const char *s, const char *what) {
  int c = 0;
  for (const char *p = s; (p = strstr(p, what)); p += strlen(what)) c++;
  return c;
}

/* runs gptc with GPTC_CACHE = cache c and GPTC_TUNE unset (tuning on) */
static int run_in(tu_run_result *r, const char *c, const char *args) {
  setenv("GPTC_CACHE", c, 1);
  unsetenv("GPTC_TUNE");
  return tu_run(r, NULL, "%s", args);
}

/* Explicit tuning within a budget: the first batch (the four largest
 * instances) is measured, the rest recorded as not measured; every line is
 * `name schedule # note`, and gen then names the tuned schedules and the file. */
START_TEST(tune_budget_and_file) {
  tu_run_result r;
  const char *c = cache("a");
  char args[2048], path[1024];
  snprintf(args, sizeof args, "tune --config '%s' --budget 0.001 --rounds 1 --min-mflops 0", cfg_path());
  ck_assert_msg(run_in(&r, c, args) == 0, "%s", r.err);
  first_line(r.out, path, sizeof path);
  /* the first group (a batch of four instances for each processor) is measured */
  int measured = -1;
  const char *line2 = strchr(r.out, '\n');
  ck_assert_msg(strstr(path, "/tune/") && line2 && sscanf(line2 + 1, "15 instances (15 GEMM, 0 attention), %d measured", &measured) == 1,
                "%s", r.out);
  ck_assert_msg(measured >= 4 && measured < 15 && measured % 4 == 0, "%d measured", measured);
  ck_assert_msg(strstr(r.err, "round 1: ") && strstr(r.err, "candidate schedules of 4 instances"), "%s", r.err);
  tu_run_free(&r);
  char *file = slurp(path);
  ck_assert_msg(file != NULL, "no schedule file at %s", path);
  ck_assert_int_eq(count(file, "\ngemm_"), 15);
  ck_assert_int_eq(count(file, " mr="), measured);
  ck_assert_int_eq(count(file, " - # not measured: the tuning budget"), 15 - measured);
  ck_assert_msg(strstr(file, "heuristic") && strstr(file, "ms"), "the notes give the times: %s", file);

  /* gen reads the file: the header names each tuned schedule and the file */
  snprintf(args, sizeof args, "gen --config '%s' -o '%s/gen'", cfg_path(), c);
  ck_assert_msg(run_in(&r, c, args) == 0, "%s", r.err);
  tu_run_free(&r);
  char src_path[1200];
  snprintf(src_path, sizeof src_path, "%s/gen/model.c", c);
  char *src = slurp(src_path);
  ck_assert_ptr_nonnull(src);
  ck_assert_msg(strstr(src, path), "the header names the schedule file");
  ck_assert_int_eq(count(src, "(tuned)"), 2 * measured); /* the header's list and each instance's comment */
  ck_assert_int_eq(count(src, "(heuristic)"), 2 * (15 - measured));
  free(src);
  free(file);
}
END_TEST

/* A hand-edited file: a line that is not `name schedule` is skipped with a
 * warning naming the file and line; a schedule that breaks a rule falls back
 * to the heuristic, and the header says why; a valid one is used. Training
 * with the edited schedules gives the heuristic's losses bit for bit. */
START_TEST(tune_file_edited) {
  tu_run_result r;
  const char *c = cache("b");
  char args[2048], path[1024];
  snprintf(args, sizeof args, "tune --config '%s' --budget 0.001 --rounds 1 --min-mflops 0 --quiet", cfg_path());
  ck_assert_msg(run_in(&r, c, args) == 0, "%s", r.err);
  first_line(r.out, path, sizeof path);
  tu_run_free(&r);
  char *file = slurp(path);
  ck_assert_ptr_nonnull(file);
  /* the largest instance, first measured: the LM head's nt product */
  const char *name = "gemm_32x62x16_nt_set";
  ck_assert_msg(strstr(file, name), "%s", file);
  {
    FILE *f = fopen(path, "a");
    ck_assert_ptr_nonnull(f);
    fprintf(f, "this is not an entry\n%s\ngemm_32x16x16_nt_set mr=99 # edited\n%s mr=4 nv=3 kc=5 unroll=4 # edited\n",
            "gemm_32x16x64_nn_bias_residual", name);
    fclose(f);
  }
  free(file);
  snprintf(args, sizeof args, "gen --config '%s' -o '%s/gen'", cfg_path(), c);
  ck_assert_msg(run_in(&r, c, args) == 0, "%s", r.err);
  ck_assert_msg(strstr(r.err, "line ignored: the first word must be a GEMM instance's name"), "%s", r.err);
  ck_assert_msg(strstr(r.err, "line ignored: a schedule ('mr=6 nv=2 ...' or '-') must follow the name"), "%s", r.err);
  ck_assert_msg(strstr(r.err, path), "the warning names the file: %s", r.err);
  tu_run_free(&r);
  char src_path[1200];
  snprintf(src_path, sizeof src_path, "%s/gen/model.c", c);
  char *src = slurp(src_path);
  ck_assert_ptr_nonnull(src);
  ck_assert_msg(strstr(src, "the tuned entry 'mr=99' was refused: mr must be 1 to 16"), "the header says why");
  ck_assert_msg(strstr(src, "mr=4 nv=3 mc=") && strstr(src, "kc=5 pack=0 unroll=4 (tuned)"), "the edited schedule runs");
  free(src);

  /* the same losses, bit for bit, as the heuristics in an empty cache */
  const char *logs[2];
  for (int i = 0; i < 2; i++) {
    const char *cc = i ? cache("b-empty") : c;
    snprintf(args, sizeof args, "train --config '%s' --out '%s/run' --steps 4 --quiet %s", cfg_path(), cc,
             i ? "--no-tune" : "");
    ck_assert_msg(run_in(&r, cc, args) == 0, "%s", r.err);
    tu_run_free(&r);
    char lp[1200];
    snprintf(lp, sizeof lp, "%s/run/log.jsonl", cc);
    logs[i] = slurp(lp);
    ck_assert_ptr_nonnull(logs[i]);
  }
  ck_assert_msg(count(logs[0], "\"loss\"") == 4, "%s", logs[0]);
  strip_speed((char *)logs[0]);
  strip_speed((char *)logs[1]);
  ck_assert_str_eq(logs[0], logs[1]);
  char empty_file[1200];
  snprintf(empty_file, sizeof empty_file, "%s/tune", cache("b-empty"));
  FILE *f = fopen(empty_file, "r");
  ck_assert_msg(f == NULL, "--no-tune wrote %s", empty_file);
  free((void *)logs[0]);
  free((void *)logs[1]);
}
END_TEST

/* train tunes what the file lacks before it starts; instances too small to
 * time are recorded as such (tiny-test's are all below 4 MFLOP a call). */
START_TEST(train_tunes_missing) {
  tu_run_result r;
  const char *c = cache("c");
  char args[2048];
  snprintf(args, sizeof args, "train --config '%s' --out '%s/run' --steps 1", cfg_path(), c);
  ck_assert_msg(run_in(&r, c, args) == 0, "%s", r.err);
  tu_run_free(&r);
  char dir[1100];
  snprintf(dir, sizeof dir, "ls '%s'/tune/*.txt", c);
  ck_assert_msg(system(dir) == 0, "train wrote no schedule file");
  snprintf(args, sizeof args, "tune --config '%s' --missing", cfg_path());
  ck_assert_msg(run_in(&r, c, args) == 0, "%s", r.err);
  ck_assert_msg(strstr(r.out, "15 instances (15 GEMM, 0 attention), 0 measured"), "every instance already has its entry: %s", r.out);
  char path[1024];
  first_line(r.out, path, sizeof path);
  tu_run_free(&r);
  char *file = slurp(path);
  ck_assert_int_eq(count(file, "below the 4e+06 worth timing"), 15);
  free(file);
}
END_TEST

Suite *tune_suite(void);
Suite *tune_suite(void) {
  Suite *s = suite_create("tune");
  TCase *tc = tcase_create("cli");
  tcase_set_timeout(tc, 600);
  tcase_add_test(tc, tune_budget_and_file);
  tcase_add_test(tc, tune_file_edited);
  tcase_add_test(tc, train_tunes_missing);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) { return tu_main(tune_suite()); }
