/* test_robust_save: saved work survives kill -9, a second run into the same
 * directory, write errors, over-long paths and a diverged run (issue 14,
 * items 4, 5, 6, 16 and the NaN part of 18). */
#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ckpt.h"
#include "testutil.h"
#include "util.h"

/* ---- helpers -------------------------------------------------------------------- */

/* The tiny model of configs/tiny-test.lua, evaluated and saved every step
 * (eval_interval = 1 is the save interval), so a run of a few dozen steps
 * takes a second or two and is mostly saves. */
static const char *rs_cfg(const char *name, int steps, const char *extra_train) {
  char src[4096];
  snprintf(src, sizeof src,
           "return { name = '%s', tokenizer = 'char', data = '%s', emb_dim = 16, n_heads = 2, n_layers = 2,\n"
           "  context_length = 16, drop_rate = 0.0, qkv_bias = true, tie_embeddings = true,\n"
           "  train = { batch_size = 2, max_length = 16, stride = 16, lr = 1e-3, steps = %d, eval_interval = 1,\n"
           "            eval_steps = 1, %s } }\n",
           name, tu_src("data/the-verdict.txt"), steps, extra_train);
  char fname[256];
  snprintf(fname, sizeof fname, "%s.lua", name);
  static char bufs[4][1024]; /* tu_write_str's own buffers rotate too fast for a whole test */
  static int i;
  char *b = bufs[i++ & 3];
  snprintf(b, 1024, "%s", tu_write_str(fname, src));
  return b;
}

static const char *rs_dir(const char *name) {
  static char bufs[4][1024];
  static int i;
  char *b = bufs[i++ & 3];
  snprintf(b, 1024, "%s/%s", tu_tmpdir(), name);
  return b;
}

static const char *rs_in(const char *dir, const char *file) {
  static char bufs[8][8192];
  static int i;
  char *b = bufs[i++ & 7];
  snprintf(b, 8192, "%s/%s", dir, file);
  return b;
}

/* fork/exec `gptc train` (no shell, so pid is gptc's own), stdout to
 * /dev/null, stderr to err_path. extra is NULL or one more argument. */
static pid_t rs_train(const char *cfg, const char *dir, int resume, const char *extra, const char *extra2,
                      const char *err_path) {
  pid_t pid = fork();
  ck_assert_int_ge(pid, 0);
  if (pid == 0) {
    int null = open("/dev/null", O_WRONLY), err = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (null < 0 || err < 0 || dup2(null, 1) < 0 || dup2(err, 2) < 0) _exit(126);
    const char *av[12] = {"gptc", "train", "--config", cfg, "--out", dir, "--quiet", "--threads", "1"};
    int n = 9;
    if (resume) av[n++] = "--resume";
    if (extra) av[n++] = extra;
    if (extra2) av[n++] = extra2;
    av[n] = NULL;
    execv(GPTC_EXE, (char *const *)av);
    _exit(127);
  }
  return pid;
}

static char *rs_slurp(const char *path) {
  char *d;
  size_t n;
  if (util_read_file(path, &d, &n)) return util_strdup("");
  return d;
}

static int rs_lines(const char *path) {
  char *d;
  size_t n;
  if (util_read_file(path, &d, &n)) return 0;
  int lines = 0;
  for (size_t k = 0; k < n; k++) lines += d[k] == '\n';
  free(d);
  return lines;
}

/* Whether dir holds a temp file of `base` (a save of base in progress). */
static int rs_has_tmp(const char *dir, const char *base) {
  DIR *d = opendir(dir);
  if (!d) return 0;
  struct dirent *e;
  int found = 0;
  while (!found && (e = readdir(d)) != NULL) found = util_is_tmp_of(e->d_name, base);
  closedir(d);
  return found;
}

/* Fails the test when the child ended on its own. */
static void rs_alive(pid_t pid, const char *err_path, const char *when) {
  int st;
  if (waitpid(pid, &st, WNOHANG) == pid) {
    char *e = rs_slurp(err_path);
    ck_abort_msg("gptc train ended (status %d) before %s: %s", st, when, e);
  }
}

/* Every tensor of two safetensors files, bit for bit (metadata such as the
 * random pair tag may differ). */
static void rs_same_tensors(const char *a, const char *b) {
  ckpt_st *x = ckpt_st_open(a), *y = ckpt_st_open(b);
  ck_assert_msg(x && y, "%s", util_errmsg());
  ck_assert_int_eq(ckpt_st_count(x), ckpt_st_count(y));
  for (int i = 0; i < ckpt_st_count(x); i++) {
    const ckpt_st_tensor *t = ckpt_st_at(x, i), *u = ckpt_st_find(y, t->name);
    ck_assert_msg(u != NULL, "%s: no tensor '%s'", b, t->name);
    ck_assert_uint_eq(t->numel, u->numel);
    float *p = malloc(t->numel * sizeof *p), *q = malloc(u->numel * sizeof *q);
    ck_assert(p && q);
    ck_assert_int_eq(ckpt_st_read_f32(x, t, p), 0);
    ck_assert_int_eq(ckpt_st_read_f32(y, u, q), 0);
    ck_assert_msg(memcmp(p, q, t->numel * sizeof *p) == 0, "%s: tensor '%s' differs from %s", b, t->name, a);
    free(p);
    free(q);
  }
  ckpt_st_close(x);
  ckpt_st_close(y);
}

/* The pair tag of a checkpoint file ("" when absent or unreadable). */
static void rs_tag(const char *path, char out[32]) {
  out[0] = '\0';
  if (!util_file_exists(path)) return;
  ckpt_st *st = ckpt_st_open(path);
  const char *t = st ? ckpt_st_meta(st, "pair_tag", NULL) : NULL;
  if (t) snprintf(out, 32, "%s", t);
  ckpt_st_close(st);
}

static uint64_t rs_step(const char *ckpt) {
  ckpt_meta m;
  ck_assert_msg(ckpt_load_meta(ckpt, &m) == 0, "%s", util_errmsg());
  uint64_t s = m.step;
  ckpt_meta_free(&m);
  return s;
}

static void rs_copy(const char *from, const char *to) {
  char *d;
  size_t n;
  ck_assert_msg(util_read_file(from, &d, &n) == 0, "%s", util_errmsg());
  ck_assert_msg(util_write_file_atomic(to, d, n) == 0, "%s", util_errmsg());
  free(d);
}

/* Overwrites the last float of a safetensors file (the last tensor's last
 * element) with x. */
static void rs_poison(const char *path, float x) {
  int fd = open(path, O_WRONLY);
  ck_assert_int_ge(fd, 0);
  struct stat sb;
  ck_assert_int_eq(fstat(fd, &sb), 0);
  ck_assert_int_eq(pwrite(fd, &x, 4, sb.st_size - 4), 4);
  close(fd);
}

/* xorshift64: the kill moments come from a fixed seed */
static uint64_t rs_rng = 0x2545F4914F6CDD1Dull;
static uint32_t rs_rand(uint32_t n) {
  rs_rng ^= rs_rng << 13;
  rs_rng ^= rs_rng >> 7;
  rs_rng ^= rs_rng << 17;
  return (uint32_t)(rs_rng % n);
}

/* ---- kill -9 torture -------------------------------------------------------------- */

#define RS_STEPS 60
#define RS_KILLS 8

/* Waits until the run has logged step `k` (it saves that step next), or
 * until its lock holds its pid when k is 0 (it is starting up). */
static void rs_wait_step(pid_t pid, const char *dir, int k, const char *err_path) {
  char want[32];
  snprintf(want, sizeof want, "%ld\n", (long)pid);
  for (long spins = 0;; spins++) {
    if (k == 0) {
      char *l = rs_slurp(rs_in(dir, ".lock"));
      int ok = !strcmp(l, want);
      free(l);
      if (ok) return;
    } else if (rs_lines(rs_in(dir, "log.jsonl")) >= k) {
      return;
    }
    rs_alive(pid, err_path, "its kill");
    ck_assert_msg(spins < 2000000, "gptc train made no progress to step %d", k);
    usleep(50);
  }
}

static void rs_wait_tmp(pid_t pid, const char *dir, const char *base, const char *err_path) {
  for (long spins = 0; !rs_has_tmp(dir, base); spins++) {
    rs_alive(pid, err_path, "its kill");
    ck_assert_msg(spins < 2000000, "no save of %s seen", base);
  }
}

/* Train with a save every step; kill -9 at pseudo-random moments (during
 * startup, in the middle of a step, and while the weights or the moments
 * are being written); after each kill --resume must succeed (and say so
 * when it had to fall back to the previous pair); the resumed run must end
 * bit-identical to a straight one, with no temp files left. */
START_TEST(kill9_torture) {
  const char *cfg = rs_cfg("kill9", RS_STEPS, "");
  char straight[1024], dir[1024];
  snprintf(straight, sizeof straight, "%s", rs_dir("kill9-straight"));
  snprintf(dir, sizeof dir, "%s", rs_dir("kill9-killed"));
  char errp[1200];
  snprintf(errp, sizeof errp, "%s/kill9.err", tu_tmpdir());
  tu_run_result r;
  ck_assert_msg(tu_run(&r, NULL, "train --config '%s' --out '%s' --quiet --threads 1", cfg, straight) == 0, "%s",
                r.err);
  tu_run_free(&r);

  char last[1200], opt[1200], tag_w[32], tag_o[32];
  snprintf(last, sizeof last, "%s/last.safetensors", dir);
  snprintf(opt, sizeof opt, "%s/last.opt.safetensors", dir);
  int restored = 0;
  for (int i = 0; i < RS_KILLS; i++) {
    int have = util_file_exists(last);
    uint64_t s = have ? rs_step(last) : 0;
    pid_t pid = rs_train(cfg, dir, have, NULL, NULL, errp);
    int mode = i % 4, k = (int)s + 1 + (int)rs_rand(4);
    if (mode == 0) { /* starting up: lock taken, loading text, model, checkpoint */
      rs_wait_step(pid, dir, 0, errp);
      usleep(rs_rand(20000));
    } else if (mode == 1) { /* writing the weights (the moments are already renamed in) */
      rs_wait_step(pid, dir, k, errp);
      rs_wait_tmp(pid, dir, "last.safetensors", errp);
      for (volatile uint32_t n = rs_rand(20000); n > 0; n--) {
      }
    } else if (mode == 2) { /* anywhere in the step after step k */
      rs_wait_step(pid, dir, k, errp);
      usleep(rs_rand(40000));
    } else { /* writing the moments */
      rs_wait_step(pid, dir, k, errp);
      rs_wait_tmp(pid, dir, "last.opt.safetensors", errp);
      for (volatile uint32_t n = rs_rand(2000000); n > 0; n--) {
      }
    }
    ck_assert_int_eq(kill(pid, SIGKILL), 0);
    int st;
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    if (!(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL)) {
      char *e = rs_slurp(errp);
      ck_abort_msg("kill %d (mode %d): gptc train ended with status %d before the kill: %s", i, mode, st, e);
    }
    if (!util_file_exists(last)) continue; /* killed before its first save: the next run starts afresh */

    /* --resume must work now: a run to the checkpoint's own step loads
     * everything (and puts back the pair if a save was cut) and stops */
    rs_tag(last, tag_w);
    rs_tag(opt, tag_o);
    int cut = strcmp(tag_w, tag_o) != 0;
    s = rs_step(last);
    ck_assert_msg(tu_run(&r, NULL, "train --config '%s' --out '%s' --resume --steps %llu --quiet --threads 1", cfg,
                         dir, (unsigned long long)s) == 0,
                  "kill %d (mode %d): --resume failed: %s", i, mode, r.err);
    if (cut) {
      char want[64];
      snprintf(want, sizeof want, "gptc: resuming from step %llu: the ", (unsigned long long)s);
      ck_assert_msg(strstr(r.err, want) && strstr(r.err, " was interrupted\n"), "kill %d: %s", i, r.err);
      restored++;
    } else {
      ck_assert_str_eq(r.err, "");
    }
    tu_run_free(&r);
    rs_tag(opt, tag_o);
    ck_assert_str_eq(tag_w, tag_o); /* the pair on disk matches again */
  }
  ck_assert_msg(tu_run(&r, NULL, "train --config '%s' --out '%s' --resume --quiet --threads 1", cfg, dir) == 0, "%s",
                r.err);
  tu_run_free(&r);
  fprintf(stderr, "kill9_torture: %d kills, %d interrupted saves put back\n", RS_KILLS, restored);

  ck_assert_uint_eq(rs_step(last), RS_STEPS);
  rs_same_tensors(rs_in(straight, "last.safetensors"), last);
  rs_same_tensors(rs_in(straight, "last.opt.safetensors"), opt);
  rs_same_tensors(rs_in(straight, "best.safetensors"), rs_in(dir, "best.safetensors"));
  char *la = tu_log_without_timing(straight), *lb = tu_log_without_timing(dir);
  ck_assert_str_eq(la, lb);
  free(la);
  free(lb);
  DIR *d = opendir(dir);
  ck_assert(d != NULL);
  struct dirent *e;
  while ((e = readdir(d)) != NULL)
    ck_assert_msg(!strstr(e->d_name, ".tmp") && !strstr(e->d_name, ".prev"), "left behind: %s", e->d_name);
  closedir(d);
}
END_TEST

/* The states a kill between the save's renames leaves, made by hand: the
 * old weights with the new moments (old ones kept as .prev), and the old
 * weights with no moments file but .prev. Both resume from the old step,
 * say so, and end equal to a straight run. */
START_TEST(resume_puts_back_the_previous_pair) {
  const char *cfg = rs_cfg("pair", 4, "");
  char straight[1024], dir[1024], keep[1024];
  snprintf(straight, sizeof straight, "%s", rs_dir("pair-straight"));
  snprintf(dir, sizeof dir, "%s", rs_dir("pair-cut"));
  snprintf(keep, sizeof keep, "%s", rs_dir("pair-keep"));
  tu_run_result r;
  ck_assert_msg(tu_run(&r, NULL, "train --config '%s' --out '%s' --quiet --threads 1", cfg, straight) == 0, "%s",
                r.err);
  tu_run_free(&r);
  for (int variant = 0; variant < 2; variant++) {
    char cmd[2600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' '%s'", dir, keep);
    ck_assert_int_eq(system(cmd), 0);
    ck_assert_int_eq(util_mkdir_p(keep), 0);
    ck_assert_msg(tu_run(&r, NULL, "train --config '%s' --out '%s' --steps 2 --quiet --threads 1", cfg, dir) == 0,
                  "%s", r.err);
    tu_run_free(&r);
    rs_copy(rs_in(dir, "last.safetensors"), rs_in(keep, "w"));
    rs_copy(rs_in(dir, "last.opt.safetensors"), rs_in(keep, "o"));
    ck_assert_msg(tu_run(&r, NULL, "train --config '%s' --out '%s' --steps 3 --resume --quiet --threads 1", cfg, dir) ==
                      0,
                  "%s", r.err);
    tu_run_free(&r);
    /* the save of step 3 cut after its moments were renamed in (variant 0)
     * or before (variant 1) */
    rs_copy(rs_in(keep, "w"), rs_in(dir, "last.safetensors"));
    rs_copy(rs_in(keep, "o"), rs_in(dir, "last.opt.safetensors.prev"));
    if (variant == 1) ck_assert_int_eq(unlink(rs_in(dir, "last.opt.safetensors")), 0);
    ck_assert_msg(tu_run(&r, NULL, "train --config '%s' --out '%s' --resume --quiet --threads 1", cfg, dir) == 0, "%s",
                  r.err);
    ck_assert_str_eq(r.err, variant ? "gptc: resuming from step 2: the next save was interrupted\n"
                                    : "gptc: resuming from step 2: the save of step 3 was interrupted\n");
    tu_run_free(&r);
    rs_same_tensors(rs_in(straight, "last.safetensors"), rs_in(dir, "last.safetensors"));
    rs_same_tensors(rs_in(straight, "last.opt.safetensors"), rs_in(dir, "last.opt.safetensors"));
    ck_assert(!util_file_exists(rs_in(dir, "last.opt.safetensors.prev")));
  }
}
END_TEST

/* ---- the run lock ------------------------------------------------------------------- */

START_TEST(second_run_into_same_dir_fails) {
  const char *cfg = rs_cfg("lock", 100000, "");
  char dir[1024], errp[1200];
  snprintf(dir, sizeof dir, "%s", rs_dir("lock"));
  snprintf(errp, sizeof errp, "%s/lock.err", tu_tmpdir());
  pid_t pid = rs_train(cfg, dir, 0, NULL, NULL, errp);
  rs_wait_step(pid, dir, 2, errp); /* step 1 is saved */
  tu_run_result r;
  ck_assert_int_eq(tu_run(&r, NULL, "train --config '%s' --out '%s' --steps 2 --quiet", cfg, dir), 1);
  char want[1400];
  snprintf(want, sizeof want, "gptc: %s: another gptc train (pid %ld) is using this directory; wait for it or choose "
                              "another one\n", dir, (long)pid);
  ck_assert_str_eq(r.err, want);
  tu_run_free(&r);
  /* --resume too, once the first run has saved */
  ck_assert_int_eq(tu_run(&r, NULL, "train --config '%s' --out '%s' --resume --quiet", cfg, dir), 1);
  ck_assert_str_eq(r.err, want);
  tu_run_free(&r);
  ck_assert_int_eq(kill(pid, SIGTERM), 0);
  int st;
  ck_assert_int_eq(waitpid(pid, &st, 0), pid);
  ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  /* the lock went with the run */
  uint64_t s = rs_step(rs_in(dir, "last.safetensors"));
  ck_assert_msg(tu_run(&r, NULL, "train --config '%s' --out '%s' --resume --steps %llu --quiet", cfg, dir,
                       (unsigned long long)s + 1) == 0,
                "%s", r.err);
  tu_run_free(&r);
}
END_TEST

/* Only gptc's own temp names are removed at start; anything else stays. */
START_TEST(stale_temp_files_removed_at_start) {
  const char *cfg = rs_cfg("stale", 2, "");
  const char *dir = rs_dir("stale");
  ck_assert_int_eq(util_mkdir_p(dir), 0);
  static const char *const gone[] = {"last.safetensors.tmpAb12Cd", "last.opt.safetensors.tmp000000",
                                     "best.safetensors.tmpzzzzzz", "log.jsonl.tmpQ1w2E3", "train.tokens.tmpabcdef"};
  static const char *const kept[] = {"last.safetensors.tmpAb12C", "notes.txt.tmpAb12Cd", "last.safetensors.tmp-b12Cd",
                                     "mine.tmp"};
  for (size_t i = 0; i < sizeof gone / sizeof *gone; i++) tu_write_str(rs_in("stale", gone[i]), "x");
  for (size_t i = 0; i < sizeof kept / sizeof *kept; i++) tu_write_str(rs_in("stale", kept[i]), "x");
  tu_run_result r;
  ck_assert_msg(tu_run(&r, NULL, "train --config '%s' --out '%s' --quiet", cfg, dir) == 0, "%s", r.err);
  tu_run_free(&r);
  for (size_t i = 0; i < sizeof gone / sizeof *gone; i++)
    ck_assert_msg(!util_file_exists(rs_in(dir, gone[i])), "%s was not removed", gone[i]);
  for (size_t i = 0; i < sizeof kept / sizeof *kept; i++)
    ck_assert_msg(util_file_exists(rs_in(dir, kept[i])), "%s was removed", kept[i]);
}
END_TEST

/* ---- paths ------------------------------------------------------------------------ */

START_TEST(long_out_paths) {
  const char *cfg = rs_cfg("longpath", 1, "");
  char seg[201], path[6000];
  memset(seg, 'p', 200);
  seg[200] = '\0';
  /* 1,000+ bytes: valid for the OS, so it must be used exactly as given */
  int n = snprintf(path, sizeof path, "%s", rs_dir("long"));
  for (int i = 0; i < 5; i++) n += snprintf(path + n, sizeof path - (size_t)n, "/%s", seg);
  ck_assert_int_gt(n, 1024);
  tu_run_result r;
  ck_assert_msg(tu_run(&r, NULL, "train --config '%s' --out '%s' --quiet", cfg, path) == 0, "%s", r.err);
  tu_run_free(&r);
  ck_assert_uint_eq(rs_step(rs_in(path, "last.safetensors")), 1);
  /* past PATH_MAX: an error naming the path, nothing written */
  n = snprintf(path, sizeof path, "%s", rs_dir("longer"));
  for (int i = 0; i < 21; i++) n += snprintf(path + n, sizeof path - (size_t)n, "/%s", seg);
  ck_assert_int_eq(tu_run(&r, NULL, "train --config '%s' --out '%s' --quiet", cfg, path), 1);
  char want[300];
  snprintf(want, sizeof want, "gptc: --out: path too long: %.60s... is ", path);
  ck_assert_msg(!strncmp(r.err, want, strlen(want)) && strstr(r.err, " bytes, the limit is 4095\n"), "%s", r.err);
  tu_run_free(&r);
  ck_assert(!util_file_exists(rs_dir("longer")));
}
END_TEST

/* ---- write errors ------------------------------------------------------------------- */

START_TEST(log_write_error_stops_the_run) {
  const char *cfg = rs_cfg("full", 30, "");
  const char *dir = rs_dir("full");
  ck_assert_int_eq(util_mkdir_p(dir), 0);
  ck_assert_int_eq(symlink("/dev/full", rs_in(dir, "log.jsonl")), 0);
  tu_run_result r;
  ck_assert_int_eq(tu_run(&r, NULL, "train --config '%s' --out '%s' --quiet", cfg, dir), 1);
  char want[1400];
  snprintf(want, sizeof want, "gptc: %s/log.jsonl: cannot write the training log: No space left on device; stopped at "
                              "step 1, the last good checkpoint is (none yet)\n", dir);
  ck_assert_str_eq(r.err, want);
  tu_run_free(&r);
  ck_assert(!util_file_exists(rs_in(dir, "last.safetensors")));
}
END_TEST

/* Runs gptc with stdout on /dev/full; returns the exit code, stderr in err. */
static int rs_to_full(char *err, size_t cap, const char *const *args) {
  char errp[1200];
  snprintf(errp, sizeof errp, "%s/full.err", tu_tmpdir());
  pid_t pid = fork();
  ck_assert_int_ge(pid, 0);
  if (pid == 0) {
    int full = open("/dev/full", O_WRONLY), e = open(errp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (full < 0 || e < 0 || dup2(full, 1) < 0 || dup2(e, 2) < 0) _exit(126);
    execv(GPTC_EXE, (char *const *)args);
    _exit(127);
  }
  int st;
  ck_assert_int_eq(waitpid(pid, &st, 0), pid);
  char *d = rs_slurp(errp);
  snprintf(err, cap, "%s", d);
  free(d);
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

START_TEST(stdout_write_errors_fail) {
  const char *cfg = rs_cfg("stdout", 2, "");
  const char *dir = rs_dir("stdout");
  tu_run_result r;
  ck_assert_msg(tu_run(&r, NULL, "train --config '%s' --out '%s' --quiet", cfg, dir) == 0, "%s", r.err);
  tu_run_free(&r);
  char ck[1200];
  snprintf(ck, sizeof ck, "%s/last.safetensors", dir);
  const char *eval[] = {"gptc", "eval", "--ckpt", ck, "--text", tu_src("data/the-verdict.txt"), NULL};
  const char *sample[] = {"gptc", "sample", "--ckpt", ck, "--tokens", "20", "--prompt", "I", NULL};
  const char *help[] = {"gptc", "help", "config", NULL};
  const char *version[] = {"gptc", "--version", NULL};
  const char *const *cmds[] = {eval, sample, help, version};
  char err[4096];
  for (size_t i = 0; i < sizeof cmds / sizeof *cmds; i++) {
    ck_assert_int_eq(rs_to_full(err, sizeof err, cmds[i]), 1);
    if (cmds[i] == sample) /* sample checks its own writes, and says so once */
      ck_assert_str_eq(err, "gptc: writing the generated text failed (output closed or full)\n");
    else ck_assert_str_eq(err, "gptc: cannot write the output to standard output: No space left on device\n");
  }
}
END_TEST

/* ---- a diverged run ------------------------------------------------------------------ */

/* lr 1e39 is inf in float: step 1's loss is finite but its update makes the
 * weights inf/nan. That state must not be saved, and the message must not
 * call a non-finite file "the last good checkpoint". */
START_TEST(nonfinite_weights_never_saved) {
  const char *cfg = rs_cfg("inf", 5, "lr = 1e39, min_lr = 1e39, grad_clip = 0.0,");
  const char *dir = rs_dir("inf");
  tu_run_result r;
  ck_assert_int_eq(tu_run(&r, NULL, "train --config '%s' --out '%s' --quiet", cfg, dir), 1);
  ck_assert_msg(strstr(r.err, "gptc: training stopped: after step 1 the weights of tensor '") &&
                    strstr(r.err, "; not saved; the last good checkpoint is (none yet)\n"),
                "%s", r.err);
  tu_run_free(&r);
  ck_assert(!util_file_exists(rs_in(dir, "last.safetensors")));
  ck_assert(!util_file_exists(rs_in(dir, "best.safetensors")));
}
END_TEST

START_TEST(resume_refuses_nonfinite_checkpoints) {
  const char *cfg = rs_cfg("nanres", 4, "");
  const char *dir = rs_dir("nanres");
  char w[1200], o[1200];
  snprintf(w, sizeof w, "%s/last.safetensors", dir);
  snprintf(o, sizeof o, "%s/last.opt.safetensors", dir);
  tu_run_result r;
  ck_assert_msg(tu_run(&r, NULL, "train --config '%s' --out '%s' --steps 2 --quiet", cfg, dir) == 0, "%s", r.err);
  tu_run_free(&r);
  rs_copy(w, rs_in(tu_tmpdir(), "nanres.w"));
  rs_copy(o, rs_in(tu_tmpdir(), "nanres.o"));
  rs_poison(w, NAN);
  char want[1400];
  snprintf(want, sizeof want, "gptc: %s: cannot resume: the weights of tensor '", w);
  ck_assert_int_eq(tu_run(&r, NULL, "train --config '%s' --out '%s' --resume --quiet", cfg, dir), 1);
  ck_assert_msg(!strncmp(r.err, want, strlen(want)) && strstr(r.err, "' hold nan (the run had diverged"), "%s", r.err);
  tu_run_free(&r);
  rs_copy(rs_in(tu_tmpdir(), "nanres.w"), w);
  rs_poison(o, INFINITY);
  snprintf(want, sizeof want, "gptc: %s: cannot resume: the AdamW second moments of tensor '", w);
  ck_assert_int_eq(tu_run(&r, NULL, "train --config '%s' --out '%s' --resume --quiet", cfg, dir), 1);
  ck_assert_msg(!strncmp(r.err, want, strlen(want)) && strstr(r.err, "' hold inf (the run had diverged"), "%s", r.err);
  tu_run_free(&r);
  /* the refused checkpoint is untouched; the good one resumes */
  ck_assert_uint_eq(rs_step(w), 2);
  rs_copy(rs_in(tu_tmpdir(), "nanres.o"), o);
  ck_assert_msg(tu_run(&r, NULL, "train --config '%s' --out '%s' --resume --quiet", cfg, dir) == 0, "%s", r.err);
  tu_run_free(&r);
  ck_assert_uint_eq(rs_step(w), 4);
}
END_TEST

int main(void) {
  Suite *s = suite_create("robust_save");
  /* one case per test, so CK_RUN_CASE can run one */
  const struct {
    const char *name;
    const TTest *test;
  } cases[] = {
      {"kill9_torture", kill9_torture},
      {"resume_puts_back_the_previous_pair", resume_puts_back_the_previous_pair},
      {"second_run_into_same_dir_fails", second_run_into_same_dir_fails},
      {"stale_temp_files_removed_at_start", stale_temp_files_removed_at_start},
      {"long_out_paths", long_out_paths},
      {"log_write_error_stops_the_run", log_write_error_stops_the_run},
      {"stdout_write_errors_fail", stdout_write_errors_fail},
      {"nonfinite_weights_never_saved", nonfinite_weights_never_saved},
      {"resume_refuses_nonfinite_checkpoints", resume_refuses_nonfinite_checkpoints},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    TCase *tc = tcase_create(cases[i].name);
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, cases[i].test);
    suite_add_tcase(s, tc);
  }
  return tu_main(s);
}
