/* `gptc sweep`: a 2x2 grid on tiny-test end to end (sweep.json and sweep.md
 * against the runs' own logs and checkpoints), a sweep killed after its
 * second run resuming without re-running finished runs, --report, and the
 * refusals (another grid in the same DIR, bad values before anything runs,
 * --jobs > 1). */
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ckpt.h"
#include "json.h"
#include "testutil.h"
#include "util.h"

#define GRID "--grid n_layers=1,2 --grid train.lr=1e-3,2e-3 --set train.eval_interval=2 --steps 4"

static json_val *read_json(const char *dir) {
  char path[1200], *data;
  size_t len;
  snprintf(path, sizeof path, "%s/sweep.json", dir);
  if (util_read_file(path, &data, &len)) return NULL;
  json_val *v = json_parse(data, len, path);
  free(data);
  return v;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* One run's numbers from its own directory, independently of the sweep:
 * the step lines, the median tokens/s and the last val_loss. */
typedef struct {
  int steps;
  double tps, val, full;
} run_log;

static run_log read_run(const char *dir, const char *run) {
  char path[1400], *data;
  size_t len;
  snprintf(path, sizeof path, "%s/%s/log.jsonl", dir, run);
  ck_assert_msg(util_read_file(path, &data, &len) == 0, "%s", util_errmsg());
  run_log r = {0, NAN, NAN, NAN};
  double tps[64];
  for (char *line = strtok(data, "\n"); line; line = strtok(NULL, "\n")) {
    json_val *v = json_parse(line, strlen(line), path);
    ck_assert_msg(v, "%s", util_errmsg());
    const json_val *st = json_get(v, "step"), *t = json_get(v, "tokens_per_s"), *vl = json_get(v, "val_loss");
    ck_assert_ptr_nonnull(st);
    ck_assert_int_eq(st->i, r.steps + 1); /* no step twice: a resumed run continued where it stopped */
    ck_assert_int_lt(r.steps, 64);
    tps[r.steps++] = t->num;
    if (vl) r.val = vl->num;
    const json_val *fl = json_get(v, "val_loss_full");
    if (fl) r.full = fl->num;
    json_free(v);
  }
  free(data);
  qsort(tps, (size_t)r.steps, sizeof *tps, cmp_double);
  r.tps = tps[r.steps / 2];
  return r;
}

/* sweep.json against the runs: every run done, its values, its numbers the
 * ones its own log and checkpoint give; returns the run count. */
static int check_sweep(const char *dir) {
  json_val *v = read_json(dir);
  ck_assert_msg(v, "%s", util_errmsg());
  const json_val *fields = json_get(v, "fields"), *runs = json_get(v, "runs");
  ck_assert_str_eq(json_get(v, "config")->str, tu_src("configs/tiny-test.lua"));
  ck_assert_uint_eq(fields->len, 2);
  ck_assert_str_eq(fields->items[0].str, "n_layers");
  ck_assert_str_eq(fields->items[1].str, "train.lr");
  ck_assert_uint_eq(runs->len, 4);
  static const char *const names[] = {"n_layers=1 train.lr=1e-3", "n_layers=1 train.lr=2e-3",
                                      "n_layers=2 train.lr=1e-3", "n_layers=2 train.lr=2e-3"};
  static const char *const dirs[] = {"n_layers=1,train.lr=1e-3", "n_layers=1,train.lr=2e-3",
                                     "n_layers=2,train.lr=1e-3", "n_layers=2,train.lr=2e-3"};
  for (int i = 0; i < 4; i++) {
    const json_val *r = &runs->items[i], *vals = json_get(r, "values");
    ck_assert_str_eq(json_get(r, "name")->str, names[i]);
    ck_assert_str_eq(json_get(r, "dir")->str, dirs[i]);
    ck_assert_str_eq(json_get(r, "status")->str, "done");
    int layers = 1 + i / 2;
    ck_assert_int_eq(json_get(vals, "n_layers")->i, layers);
    ck_assert(json_get(vals, "train.lr")->num == (i % 2 ? 2e-3 : 1e-3));
    /* tiny-test: V=62 C=16 ctx=16, tied, qkv_bias: 62*16 + 16*16 + 2*16 embeddings and final norm, per block
     * 12*C*C + 13*C */
    ck_assert_int_eq(json_get(r, "params")->i, 62 * 16 + 16 * 16 + 2 * 16 + layers * (12 * 16 * 16 + 13 * 16));
    run_log l = read_run(dir, dirs[i]);
    ck_assert_int_eq(l.steps, 4);
    ck_assert(json_get(r, "tokens_per_s")->num == l.tps);
    ck_assert(fabs(json_get(r, "step_ms")->num - 1000.0 * 2 * 16 / l.tps) <= 1e-9 * json_get(r, "step_ms")->num);
    /* the run's whole-split validation, as its log and its checkpoint have it */
    ck_assert(!isnan(l.full));
    ck_assert_ptr_nonnull(json_get(r, "val_loss_full"));
    ck_assert(json_get(r, "val_loss_full")->num == l.full);
    ck_assert(json_get(r, "wall_s")->num > 0);
    char path[1400];
    snprintf(path, sizeof path, "%s/%s/last.safetensors", dir, dirs[i]);
    ckpt_meta meta;
    ck_assert_int_eq(ckpt_load_meta(path, &meta), 0);
    ck_assert_uint_eq(meta.step, 4);
    ck_assert(meta.has_val_loss_full);
    ck_assert(fabs(meta.val_loss_full - l.full) <= 1e-8 * fabs(l.full)); /* the log has it to %.9g */
    ckpt_meta_free(&meta);
  }
  json_free(v);
  return 4;
}

/* sweep.md: a row per run, the lowest val loss first. */
static void check_table(const char *dir) {
  char path[1400], *md;
  size_t len;
  snprintf(path, sizeof path, "%s/sweep.md", dir);
  ck_assert_int_eq(util_read_file(path, &md, &len), 0);
  ck_assert_msg(strstr(md, "| n_layers | train.lr | parameters | tokens/s | step ms | val loss | wall s | status |\n"),
                "%s", md);
  json_val *v = read_json(dir);
  const json_val *runs = json_get(v, "runs");
  double last = -INFINITY;
  for (size_t i = 0; i < runs->len; i++) {
    const json_val *r = &runs->items[i];
    char row[256];
    snprintf(row, sizeof row, "| %d | %s | %lld |", (int)json_get(json_get(r, "values"), "n_layers")->i,
             strchr(strchr(json_get(r, "name")->str, ' ') + 1, '=') + 1, (long long)json_get(r, "params")->i);
    char *at = strstr(md, row);
    ck_assert_msg(at, "no row '%s' in %s", row, md);
    char val[32];
    snprintf(val, sizeof val, "| %.4f |", json_get(r, "val_loss_full")->num); /* whole split: no star */
    char *eol = strchr(at, '\n');
    ck_assert_msg(strstr(at, val) && strstr(at, val) < eol, "row '%s' lacks %s", row, val);
  }
  /* best first: the rows' val losses ascend */
  for (char *p = strstr(md, "| --- |"); p && (p = strchr(p, '\n')) && p[1] == '|'; p++) {
    /* the val loss cell: after the row's 6th bar (two field cells, parameters, tokens/s, step ms) */
    char *s = p + 1;
    for (int bar = 1; bar < 6; bar++) s = strchr(s + 1, '|');
    double x = atof(s + 1);
    ck_assert_msg(x >= last, "table not sorted by val loss: %s", md);
    last = x;
  }
  json_free(v);
  free(md);
}

/* sweep.svg: a well-formed SVG (a real XML parser, xmllint) naming every run
 * of the sweep: one val-loss series each in the first panel. */
static void check_chart(const char *dir) {
  char cmd[1500], *svg;
  size_t n;
  snprintf(cmd, sizeof cmd, "xmllint --noout '%s/sweep.svg'", dir);
  ck_assert_msg(system(cmd) == 0, "%s/sweep.svg is not well-formed XML", dir);
  snprintf(cmd, sizeof cmd, "%s/sweep.svg", dir);
  ck_assert_int_eq(util_read_file(cmd, &svg, &n), 0);
  const char *names[] = {"n_layers=1 train.lr=1e-3", "n_layers=1 train.lr=2e-3", "n_layers=2 train.lr=1e-3",
                         "n_layers=2 train.lr=2e-3"};
  for (int i = 0; i < 4; i++) ck_assert_msg(strstr(svg, names[i]), "sweep.svg lacks run %s", names[i]);
  ck_assert_msg(strstr(svg, "n_layers") && strstr(svg, "train.lr"), "sweep.svg lacks a panel per varied field");
  free(svg);
}

START_TEST(sweep_2x2) {
  char dir[1200];
  snprintf(dir, sizeof dir, "%s/s2x2", tu_tmpdir());
  tu_run_result r;
  tu_run(&r, NULL, "sweep --config '%s' " GRID " --out '%s'", tu_src("configs/tiny-test.lua"), dir);
  ck_assert_msg(r.code == 0, "%s%s", r.out, r.err);
  ck_assert_msg(strstr(r.out, "sweep: run 1/4 n_layers=1 train.lr=1e-3: training | run ETA -- | sweep ETA --\n"), "%s",
                r.out);
  ck_assert_msg(strstr(r.out, "sweep: run 4/4 n_layers=2 train.lr=2e-3: training | run ETA "), "%s", r.out);
  tu_run_free(&r);
  check_sweep(dir);
  check_table(dir);
  check_chart(dir);

  /* --report redraws the same table and json from the run directories */
  char path[1300], *md0, *md1, *js0, *js1;
  size_t l0, l1, j0, j1;
  snprintf(path, sizeof path, "%s/sweep.md", dir);
  ck_assert_int_eq(util_read_file(path, &md0, &l0), 0);
  unlink(path);
  snprintf(path, sizeof path, "%s/sweep.json", dir);
  ck_assert_int_eq(util_read_file(path, &js0, &j0), 0);
  ck_assert_int_eq(tu_run(&r, NULL, "sweep --report '%s'", dir), 0);
  tu_run_free(&r);
  ck_assert_int_eq(util_read_file(path, &js1, &j1), 0);
  snprintf(path, sizeof path, "%s/sweep.md", dir);
  ck_assert_int_eq(util_read_file(path, &md1, &l1), 0);
  ck_assert_uint_eq(l0, l1);
  ck_assert_int_eq(memcmp(md0, md1, l0), 0);
  ck_assert_uint_eq(j0, j1);
  ck_assert_int_eq(memcmp(js0, js1, j0), 0);
  free(md0), free(md1), free(js0), free(js1);
  /* ... and the chart */
  snprintf(path, sizeof path, "%s/sweep.svg", dir);
  unlink(path);
  ck_assert_int_eq(tu_run(&r, NULL, "sweep --report '%s'", dir), 0);
  tu_run_free(&r);
  check_chart(dir);

  /* the same DIR with another grid: refused, naming what differs */
  ck_assert_int_eq(tu_run(&r, NULL, "sweep --config '%s' --grid n_layers=1,3 --grid train.lr=1e-3,2e-3 --set "
                                    "train.eval_interval=2 --steps 4 --out '%s'",
                          tu_src("configs/tiny-test.lua"), dir), 1);
  ck_assert_msg(strstr(r.err, "/sweep.json: this directory holds another sweep (its --grid differs)"), "%s", r.err);
  tu_run_free(&r);
  ck_assert_int_eq(tu_run(&r, NULL, "sweep --config '%s' " GRID " --set train.seed=7 --out '%s'",
                          tu_src("configs/tiny-test.lua"), dir), 1);
  ck_assert_msg(strstr(r.err, "(its --set differs)"), "%s", r.err);
  tu_run_free(&r);
}
END_TEST

static int count_done(const char *dir) {
  json_val *v = read_json(dir);
  if (!v) return 0;
  const json_val *runs = json_get(v, "runs");
  int n = 0;
  for (size_t i = 0; runs && i < runs->len; i++) {
    const json_val *st = json_get(&runs->items[i], "status");
    n += st && st->type == JSON_STR && !strcmp(st->str, "done");
  }
  json_free(v);
  return n;
}

START_TEST(sweep_killed_resumes) {
  char dir[1200];
  snprintf(dir, sizeof dir, "%s/skill", tu_tmpdir());
  const char *cfg = tu_src("configs/tiny-test.lua");
  pid_t pid = fork();
  ck_assert_int_ge(pid, 0);
  if (pid == 0) {
    int null = open("/dev/null", 1);
    dup2(null, 1);
    dup2(null, 2);
    execl(GPTC_EXE, "gptc", "sweep", "--config", cfg, "--grid", "n_layers=1,2", "--grid", "train.lr=1e-3,2e-3", "--set",
          "train.eval_interval=2", "--steps", "4", "--out", dir, (char *)NULL);
    _exit(127);
  }
  /* wait, from the files, until the second run is recorded done */
  int st, exited = 0;
  while (count_done(dir) < 2) {
    ck_assert_msg(waitpid(pid, &st, WNOHANG) == 0, "the sweep exited before its second run was done");
    usleep(2000);
  }
  kill(pid, SIGTERM);
  ck_assert_int_eq(waitpid(pid, &st, 0), pid);
  exited = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  int done = count_done(dir);
  ck_assert_msg(done < 4, "the sweep finished before it was stopped (runs this fast leave no window)");
  ck_assert_int_eq(exited, 1); /* "sweep stopped by signal 15; rerun the same command to continue" */

  /* the finished runs' logs and checkpoints, to compare after the rerun */
  static const char *const dirs[] = {"n_layers=1,train.lr=1e-3", "n_layers=1,train.lr=2e-3",
                                     "n_layers=2,train.lr=1e-3", "n_layers=2,train.lr=2e-3"};
  struct stat before[4];
  char *logs[4] = {0};
  size_t lens[4];
  for (int i = 0; i < done; i++) {
    char path[1400];
    snprintf(path, sizeof path, "%s/%s/log.jsonl", dir, dirs[i]);
    ck_assert_int_eq(util_read_file(path, &logs[i], &lens[i]), 0);
    snprintf(path, sizeof path, "%s/%s/last.safetensors", dir, dirs[i]);
    ck_assert_int_eq(stat(path, &before[i]), 0);
  }
  tu_run_result r;
  tu_run(&r, NULL, "sweep --config '%s' " GRID " --out '%s'", cfg, dir);
  ck_assert_msg(r.code == 0, "%s%s", r.out, r.err);
  for (int i = 0; i < done; i++) {
    char want[200];
    snprintf(want, sizeof want, "sweep: run %d/4 ", i + 1);
    char *at = strstr(r.out, want);
    ck_assert_msg(at && !strncmp(strchr(at + strlen(want), ':'), ": done already, skipped\n", 24), "%s", r.out);
    char path[1400], *now;
    size_t n;
    snprintf(path, sizeof path, "%s/%s/log.jsonl", dir, dirs[i]);
    ck_assert_int_eq(util_read_file(path, &now, &n), 0);
    ck_assert_uint_eq(n, lens[i]);
    ck_assert_int_eq(memcmp(now, logs[i], n), 0);
    free(now);
    free(logs[i]);
    struct stat after;
    snprintf(path, sizeof path, "%s/%s/last.safetensors", dir, dirs[i]);
    ck_assert_int_eq(stat(path, &after), 0);
    ck_assert(after.st_mtim.tv_sec == before[i].st_mtim.tv_sec && after.st_mtim.tv_nsec == before[i].st_mtim.tv_nsec);
    ck_assert(after.st_ino == before[i].st_ino); /* never rewritten (saves replace the file) */
  }
  tu_run_free(&r);
  /* every run done, each log one straight run of 4 steps (read_run checks) */
  ck_assert_int_eq(check_sweep(dir), 4);
}
END_TEST

START_TEST(sweep_refusals) {
  const char *cfg = tu_src("configs/tiny-test.lua");
  char dir[1200];
  snprintf(dir, sizeof dir, "%s/sbad", tu_tmpdir());
  static const struct {
    const char *args, *msg;
    int code;
  } bad[] = {
      {"--grid n_layers=1,x", "gptc: run 'n_layers=x': ", 1},
      {"--grid n_layer=1,2", "--set n_layer: field 'n_layer' is not a known config field (did you mean 'n_layers'?", 1},
      {"--grid 'train.lr=1e-3,os.exit(1)'", "--set train.lr: value 'os.exit(1)' is not a number", 1},
      {"--grid n_layers=1,,2", "--grid n_layers=1,,2: empty value", 1},
      {"--grid n_layers=1,1", "--grid n_layers: value '1' given twice", 1},
      {"--grid n_layers=1 --set n_layers=2", "--grid n_layers: the field is also given by --set", 1},
      {"--grid n_heads=2,3", "run 'n_heads=3': ", 1},
      {"--grid n_layers=1,2 --jobs 2", "option '--jobs' must be 1", 2},
      {"--grid n_layers=1,2 --seed 3", "option '--seed' needs '--random K'", 2},
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    tu_run_result r;
    int code = tu_run(&r, NULL, "sweep --config '%s' %s --out '%s'", cfg, bad[i].args, dir);
    ck_assert_msg(code == bad[i].code, "%s: exit %d: %s", bad[i].args, code, r.err);
    ck_assert_msg(strstr(r.err, bad[i].msg), "%s: got '%s', want '%s'", bad[i].args, r.err, bad[i].msg);
    ck_assert_msg(!util_file_exists(dir), "%s: the sweep directory was made", bad[i].args); /* nothing ran */
    tu_run_free(&r);
  }
}
END_TEST

/* --random K --seed S: K distinct runs of the grid, the same ones for the
 * same seed (the plan is checked, not trained: a bad value in the sample
 * is named before anything runs). */
START_TEST(sweep_random_plan) {
  const char *cfg = tu_src("configs/tiny-test.lua");
  char dir[1200];
  snprintf(dir, sizeof dir, "%s/srand", tu_tmpdir());
  tu_run_result r;
  ck_assert_int_eq(tu_run(&r, NULL, "sweep --config '%s' --grid n_layers=1,2 --grid train.seed=1,2,3 --random 2 "
                                    "--seed 5 --steps 1 --out '%s'", cfg, dir), 0);
  tu_run_free(&r);
  json_val *v = read_json(dir);
  const json_val *runs = json_get(v, "runs");
  ck_assert_uint_eq(runs->len, 2);
  ck_assert_str_ne(json_get(&runs->items[0], "dir")->str, json_get(&runs->items[1], "dir")->str);
  ck_assert_int_eq(json_get(v, "random")->i, 2);
  ck_assert_int_eq(json_get(v, "seed")->i, 5);
  /* the same command again: the same runs, both done already */
  ck_assert_int_eq(tu_run(&r, NULL, "sweep --config '%s' --grid n_layers=1,2 --grid train.seed=1,2,3 --random 2 "
                                    "--seed 5 --steps 1 --out '%s'", cfg, dir), 0);
  ck_assert_msg(strstr(r.out, "run 1/2 ") && strstr(r.out, "run 2/2 ") && !strstr(r.out, "training"), "%s", r.out);
  tu_run_free(&r);
  json_free(v);
}
END_TEST

/* The progress of a training run, read from its log while it runs (it said
 * "run ETA --" until a whole run had finished): in a file, one line per
 * tenth of the run, the step rising, with an ETA. */
START_TEST(sweep_progress_lines) {
  char dir[1200];
  snprintf(dir, sizeof dir, "%s/sprog", tu_tmpdir());
  tu_run_result r;
  /* a run long enough to be seen training (10000 tiny steps, no evaluation until the end; one
   * thread: OpenMP's spinning threads crawl when another test holds the other core) */
  ck_assert_int_eq(tu_run(&r, NULL,
                          "sweep --config '%s' --grid n_layers=1 --set train.steps=10000 --set "
                          "train.eval_interval=10000 --threads 1 --out '%s'",
                          tu_src("configs/tiny-test.lua"), dir), 0);
  int lines = 0;
  long last = 0;
  for (const char *p = r.out; (p = strstr(p, "sweep: run 1/1 n_layers=1: step ")) != NULL; p++) {
    long step, total;
    char eta[32];
    ck_assert_int_eq(sscanf(p, "sweep: run 1/1 n_layers=1: step %ld/%ld | run ETA %31s", &step, &total, eta), 3);
    ck_assert_int_eq(total, 10000);
    ck_assert_int_gt(step, last); /* one line per tenth: the step only rises */
    ck_assert_str_ne(eta, "--");
    last = step, lines++;
  }
  ck_assert_msg(lines >= 1 && lines <= 10, "%d progress lines in:\n%s", lines, r.out);
  ck_assert_msg(strstr(r.out, "sweep: run 1/1 n_layers=1: done in "), "%s", r.out);
  tu_run_free(&r);
}
END_TEST

int main(void) {
  Suite *s = suite_create("sweep");
  TCase *tc = tcase_create("sweep");
  tcase_set_timeout(tc, 600);
  tcase_add_test(tc, sweep_refusals);
  tcase_add_test(tc, sweep_2x2);
  tcase_add_test(tc, sweep_killed_resumes);
  tcase_add_test(tc, sweep_random_plan);
  tcase_add_test(tc, sweep_progress_lines);
  suite_add_tcase(s, tc);
  return tu_main(s);
}
