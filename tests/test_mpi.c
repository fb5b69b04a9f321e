/* Data-parallel training under mpirun (runtime/dist.c, dist_mpi.c): N ranks
 * x grad_accum g against one process x grad_accum N*g, bit for bit; resume
 * across rank counts; rank 0 alone writes; the token cache is built once;
 * the faults. Every mpirun runs under timeout(1), one OpenMP thread per
 * rank, oversubscribed on this 2-core machine. */
#include <check.h>
#include <dirent.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ckpt.h"
#include "dist.h"
#include "testutil.h"
#include "util.h"


static const char *cfg(void) { return tu_src("configs/tiny-test.lua"); }

static const char *dir(const char *name) {
  static char b[4][1024];
  static int i;
  char *p = b[i++ & 3];
  snprintf(p, 1024, "%s/%s", tu_tmpdir(), name);
  return p;
}

/* A single process's run (the reference). */
static void single(const char *out, const char *args) {
  tu_run_result r;
  ck_assert_msg(tu_run(&r, NULL, "train --config '%s' --out '%s' --quiet %s", cfg(), out, args) == 0, "%s", r.err);
  tu_run_free(&r);
}

/* np ranks of the same command. */
static void ranks(int np, const char *out, const char *args) {
  tu_run_result r;
  int code = tu_mpi_run(&r, NULL, "-np %d '%s' train --config '%s' --out '%s' --quiet %s", np, GPTC_EXE, cfg(), out, args);
  ck_assert_msg(code == 0, "%d ranks failed (%d): %s", np, code, r.err);
  tu_run_free(&r);
}


/* dropout on, so the per-micro-batch dropout keys are checked too */
#define DROP "--set drop_rate=0.1 --steps 6"

START_TEST(two_ranks_equal_accum_two) {
  const char *a = dir("r2-single"), *b = dir("r2-ranks");
  single(a, DROP " --set train.grad_accum=2");
  tu_run_result r;
  int code = tu_mpi_run(&r, NULL, "-np 2 '%s' train --config '%s' --out '%s' " DROP, GPTC_EXE, cfg(), b);
  ck_assert_msg(code == 0, "%s", r.err);
  /* rank 0 alone speaks: the banner and each progress line once */
  const char *ban = strstr(r.out, "data-parallel: 2 ranks (MPI) | batch 4 = 2 ranks x batch_size 2 x grad_accum 1\n");
  ck_assert_msg(ban && !strstr(ban + 1, "data-parallel:"), "%s", r.out);
  const char *p1 = strstr(r.out, "step 1/6 | loss ");
  ck_assert_msg(p1 && !strstr(p1 + 1, "step 1/6 |") && strstr(p1, " tok/s | batch 4 on 2 ranks | ETA "), "%s", r.out);
  tu_run_free(&r);
  tu_same_run(a, b);
  /* and the job says what it is: ranks and effective batch */
  char path[1200], *log;
  size_t len;
  snprintf(path, sizeof path, "%s/log.jsonl", b);
  ck_assert_int_eq(util_read_file(path, &log, &len), 0);
  ck_assert_msg(strstr(log, "\"ranks\":2,\"batch\":4"), "%s", log);
  free(log);
}
END_TEST

START_TEST(three_ranks_accum_two_equal_accum_six) {
  const char *a = dir("r3-single"), *b = dir("r3-ranks");
  single(a, DROP " --set train.grad_accum=6");
  ranks(3, b, DROP " --set train.grad_accum=2");
  tu_same_run(a, b);
}
END_TEST

/* the global batch stays 4 sequences of 2: 2 ranks x 2, then 1 x 4 */
START_TEST(resume_across_rank_counts) {
  const char *a = dir("rs-straight"), *b = dir("rs-mixed");
  single(a, DROP " --set train.grad_accum=4");
  ranks(2, b, "--set drop_rate=0.1 --steps 2 --set train.grad_accum=2");
  single(b, "--set drop_rate=0.1 --steps 4 --set train.grad_accum=4 --resume");
  ranks(2, b, DROP " --set train.grad_accum=2 --resume");
  tu_same_tensors(a, b, "last.safetensors");
  tu_same_tensors(a, b, "last.opt.safetensors");
}
END_TEST

static int list_dir(const char *d, char *out, size_t cap) {
  DIR *h = opendir(d);
  ck_assert_ptr_nonnull(h);
  char names[32][256];
  int n = 0;
  struct dirent *e;
  while ((e = readdir(h)) && n < 32)
    if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) snprintf(names[n++], 256, "%s", e->d_name);
  closedir(h);
  qsort(names, (size_t)n, sizeof names[0], (int (*)(const void *, const void *))strcmp);
  out[0] = 0;
  for (int i = 0; i < n; i++) snprintf(out + strlen(out), cap - strlen(out), "%s ", names[i]);
  return n;
}

/* rank 0 writes the run directory (the others would have met its lock);
 * a token cache that is there but bad is rebuilt once, by rank 0, and read
 * by the others only when whole */
START_TEST(rank0_writes_and_builds_the_cache_once) {
  const char *a = dir("w-single"), *b = dir("w-ranks");
  single(a, "--steps 2 --set train.grad_accum=3");
  util_mkdir_p(b);
  char bad[1200];
  snprintf(bad, sizeof bad, "%s/train.tokens", b);
  ck_assert_int_eq(util_write_file_atomic(bad, "not a cache", 11), 0);
  tu_run_result r;
  ck_assert_msg(tu_mpi_run(&r, NULL, "-np 3 '%s' train --config '%s' --out '%s' --quiet --steps 2", GPTC_EXE, cfg(), b) == 0,
                "%s", r.err);
  const char *m = strstr(r.err, "rebuilding it");
  ck_assert_msg(m && !strstr(m + 1, "rebuilding it"), "the cache was not rebuilt exactly once:\n%s", r.err);
  tu_run_free(&r);
  char la[2000], lb[2000];
  list_dir(a, la, sizeof la);
  list_dir(b, lb, sizeof lb);
  ck_assert_str_eq(la, lb);
  char pa[1200], pb[1200], *da, *db;
  size_t na, nb;
  snprintf(pa, sizeof pa, "%s/train.tokens", a);
  snprintf(pb, sizeof pb, "%s/train.tokens", b);
  ck_assert_int_eq(util_read_file(pa, &da, &na), 0);
  ck_assert_int_eq(util_read_file(pb, &db, &nb), 0);
  ck_assert_uint_eq(na, nb);
  ck_assert_msg(!memcmp(da, db, na), "the token caches differ");
  free(da);
  free(db);
  tu_same_tensors(a, b, "last.safetensors");
}
END_TEST

/* a rank whose config differs: every rank stops before anything is built */
START_TEST(config_differs) {
  const char *o = dir("cfg-diff");
  tu_run_result r;
  int code = tu_mpi_run(&r, NULL, "-np 1 '%s' train --config '%s' --out '%s' --quiet : -np 1 '%s' train --config '%s' --out '%s' "
                              "--quiet --set train.lr=0.5", GPTC_EXE, cfg(), o, GPTC_EXE, cfg(), o);
  ck_assert_int_ne(code, 0);
  ck_assert_msg(strstr(r.err, "rank 1's config (SHA-256 of the loaded config) differs from rank 0's"), "%s", r.err);
  char p[1200];
  snprintf(p, sizeof p, "%s/train.tokens", o);
  ck_assert_msg(!util_file_exists(p), "a token cache was built");
  tu_run_free(&r);
}
END_TEST

/* the same relative --text names another file on rank 1 (its own working
 * directory): the text's hash differs and the job stops */
START_TEST(text_differs) {
  const char *o = dir("text-diff"), *d0 = dir("text0"), *d1 = dir("text1");
  util_mkdir_p(d0);
  util_mkdir_p(d1);
  char p[1200];
  const char *t = "It was the best of times, it was the worst of times, it was the age of wisdom, it was the age of "
                  "foolishness, it was the epoch of belief, it was the epoch of incredulity. ";
  util_buf a = {0}, b = {0};
  for (int i = 0; i < 40; i++) util_buf_add(&a, t, strlen(t)), util_buf_add(&b, t, strlen(t));
  util_buf_add(&b, "x", 1);
  snprintf(p, sizeof p, "%s/t.txt", d0);
  util_write_file_atomic(p, a.data, a.len);
  snprintf(p, sizeof p, "%s/t.txt", d1);
  util_write_file_atomic(p, b.data, b.len);
  util_buf_free(&a);
  util_buf_free(&b);
  tu_run_result r;
  int code = tu_mpi_run(&r, NULL, "-np 1 -wdir '%s' '%s' train --config '%s' --out '%s' --text t.txt --steps 2 : -np 1 -wdir '%s' "
                              "'%s' train --config '%s' --out '%s' --text t.txt --steps 2",
                     d0, GPTC_EXE, cfg(), o, d1, GPTC_EXE, cfg(), o);
  ck_assert_int_ne(code, 0);
  ck_assert_msg(strstr(r.err, "gptc: rank 1 of 2: its training text differs from rank 0's"), "%s", r.err);
  snprintf(p, sizeof p, "%s/last.safetensors", o);
  ck_assert_msg(!util_file_exists(p), "a step was saved");
  tu_run_free(&r);
}
END_TEST

/* a NaN on rank 1 at step 3: every rank stops, the message names rank 1,
 * and last.safetensors is step 2's, as a single process saves it */
START_TEST(nan_on_one_rank) {
  const char *a = dir("nan-ref"), *b = dir("nan");
  single(a, "--steps 2 --set train.grad_accum=2 --set train.eval_interval=2");
  tu_run_result r;
  int code = tu_mpi_run(&r, "GPTC_DIST_NAN=1:3", "-np 2 '%s' train --config '%s' --out '%s' --quiet --steps 6 --set "
                                              "train.eval_interval=2", GPTC_EXE, cfg(), b);
  ck_assert_int_ne(code, 0);
  ck_assert_msg(strstr(r.err, "training stopped: loss is nan at step 3 (from a micro-batch of rank 1 of 2); the last good "
                              "checkpoint is"), "%s", r.err);
  tu_run_free(&r);
  tu_same_tensors(a, b, "last.safetensors");
  tu_same_tensors(a, b, "last.opt.safetensors");
}
END_TEST

/* The pid of rank `rank` among mpirun `launcher`'s children. */
static pid_t rank_pid(pid_t launcher, int rank) {
  char want[64];
  snprintf(want, sizeof want, "OMPI_COMM_WORLD_RANK=%d", rank);
  for (int tries = 0; tries < 600; tries++) {
    DIR *d = opendir("/proc");
    struct dirent *e;
    while (d && (e = readdir(d))) {
      pid_t p = (pid_t)atol(e->d_name);
      if (p <= 0) continue;
      char path[300], *data;
      size_t len;
      snprintf(path, sizeof path, "/proc/%d/stat", (int)p);
      if (util_read_file(path, &data, &len)) continue;
      char *rp = strrchr(data, ')');
      int ppid = 0;
      if (rp) sscanf(rp + 2, "%*c %d", &ppid);
      free(data);
      if (ppid != launcher) continue;
      snprintf(path, sizeof path, "/proc/%d/environ", (int)p);
      if (util_read_file(path, &data, &len)) continue;
      int hit = 0;
      for (size_t i = 0; i < len; i += strlen(data + i) + 1)
        if (!strcmp(data + i, want)) hit = 1;
      free(data);
      if (hit) {
        closedir(d);
        return p;
      }
    }
    if (d) closedir(d);
    usleep(50000);
  }
  util_errclear();
  return -1;
}

/* Starts a long 2-rank run in the background; returns mpirun's pid once
 * `run`/log.jsonl has `steps` lines. */
static pid_t start_long(const char *run, int steps, const char *err_path, const char *timeout) {
  pid_t p = fork();
  ck_assert_int_ge(p, 0);
  if (p == 0) {
    setenv("OMP_NUM_THREADS", "1", 1);
    char asan[1200];
    const char *was = getenv("ASAN_OPTIONS");
    snprintf(asan, sizeof asan, "%s%sfast_unwind_on_malloc=0", was ? was : "", was && *was ? ":" : "");
    setenv("ASAN_OPTIONS", asan, 1);
    snprintf(asan, sizeof asan, "suppressions=%s", tu_src("tests/lsan-mpi.supp"));
    setenv("LSAN_OPTIONS", asan, 1);
    setenv("GPTC_DIST_TIMEOUT", timeout, 1);
    if (!freopen(err_path, "w", stderr) || !freopen(err_path, "a", stdout)) _exit(99);
    execlp("mpirun", "mpirun", "--allow-run-as-root", "--oversubscribe", "--bind-to", "none", "-np", "2", GPTC_EXE,
           "train", "--config", cfg(), "--out", run, "--steps", "1000000", "--set", "train.eval_interval=5", (char *)NULL);
    _exit(98);
  }
  char path[1200];
  snprintf(path, sizeof path, "%s/log.jsonl", run);
  for (int i = 0; i < 2400; i++) { /* 120 s at most (ASan, a loaded host) */
    char *data;
    size_t len;
    int lines = 0;
    if (util_read_file(path, &data, &len) == 0) {
      for (size_t k = 0; k < len; k++) lines += data[k] == '\n';
      free(data);
    }
    util_errclear();
    if (lines >= steps) return p;
    usleep(50000);
  }
  kill(p, SIGKILL);
  ck_abort_msg("the background run did not reach step %d", steps);
  return -1;
}

/* waits for pid at most 60 s (then kills it and fails) */
static int wait_bounded(pid_t p) {
  for (int i = 0; i < 1200; i++) {
    int st;
    if (waitpid(p, &st, WNOHANG) == p) return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    usleep(50000);
  }
  kill(p, SIGKILL);
  waitpid(p, NULL, 0);
  ck_abort_msg("mpirun did not end within 60 s");
  return -1;
}

static char *read_text(const char *path) {
  char *data;
  size_t len;
  ck_assert_msg(util_read_file(path, &data, &len) == 0, "%s", util_errmsg());
  return data;
}

/* Ctrl-C (SIGINT) to rank 1 alone: both ranks stop at the same step, rank 0
 * saves it, exit status 0, and the run resumes */
/* The step of run/last.safetensors. */
static long saved_step(const char *run) {
  char p[1200];
  snprintf(p, sizeof p, "%s/last.safetensors", run);
  ckpt_meta m;
  ck_assert_msg(ckpt_load_meta(p, &m) == 0, "%s", util_errmsg());
  long st = (long)m.step;
  ckpt_meta_free(&m);
  return st;
}

/* run/last.safetensors is whole and exactly what one process with the same
 * global batch has after as many steps (the schedule follows the config's
 * train.steps, not --steps, so a shorter reference run is the same run) */
static void intact(const char *run, const char *ref_name) {
  long st = saved_step(run);
  ck_assert_int_gt(st, 0);
  const char *ref = dir(ref_name);
  char args[200];
  snprintf(args, sizeof args, "--steps %ld --set train.grad_accum=2 --set train.eval_interval=5", st);
  single(ref, args);
  tu_same_tensors(ref, run, "last.safetensors");
  tu_same_tensors(ref, run, "last.opt.safetensors");
}

/* Ctrl-C (SIGINT) to rank 1 alone: both ranks stop at the same step, rank 0
 * saves it, exit status 0 */
START_TEST(sigint_to_one_rank) {
  const char *o = dir("sigint"), *e = dir("sigint.err");
  pid_t p = start_long(o, 3, e, "60");
  pid_t r1 = rank_pid(p, 1);
  ck_assert_int_gt(r1, 0);
  kill(r1, SIGINT);
  ck_assert_int_eq(wait_bounded(p), 0);
  char *err = read_text(e), want[100];
  snprintf(want, sizeof want, "stopped by signal 2 on rank 1 of 2 at step %ld; saved ", saved_step(o));
  ck_assert_msg(strstr(err, want), "%s", err);
  free(err);
  intact(o, "sigint-ref");
}
END_TEST

/* a rank killed outright: the launcher stops the job and names the rank;
 * the last checkpoint is whole */
START_TEST(rank_dies) {
  const char *o = dir("dies"), *e = dir("dies.err");
  pid_t p = start_long(o, 7, e, "60");
  pid_t r1 = rank_pid(p, 1);
  ck_assert_int_gt(r1, 0);
  kill(r1, SIGKILL);
  ck_assert_int_ne(wait_bounded(p), 0);
  char *err = read_text(e);
  ck_assert_msg(strstr(err, "rank 1") && strstr(err, "signal 9"), "%s", err);
  free(err);
  intact(o, "dies-ref");
}
END_TEST

/* a rank that hangs (stopped): the other gives up after GPTC_DIST_TIMEOUT
 * with a message naming the wait, and the job ends; the checkpoint is whole */
START_TEST(rank_hangs) {
  const char *o = dir("hangs"), *e = dir("hangs.err");
  single(dir("hangs-warm"), "--steps 1"); /* the kernels compiled: no start-up wait near the limit */
  pid_t p = start_long(o, 6, e, "15"); /* the limit covers rank 0's start-up too: not too tight */
  pid_t r1 = rank_pid(p, 1);
  ck_assert_int_gt(r1, 0);
  kill(r1, SIGSTOP);
  int code = wait_bounded(p);
  kill(r1, SIGKILL);
  ck_assert_int_ne(code, 0);
  char *err = read_text(e);
  ck_assert_msg(strstr(err, "gptc: rank 0 of 2: no answer from the other ranks within 15 s ("), "%s", err);
  free(err);
  intact(o, "hangs-ref");
}
END_TEST

/* the shard table: in order, 16-float aligned, covering [0, n) */
START_TEST(shards_and_assignment) {
  size_t off[9];
  static const size_t ns[] = {0, 1, 15, 16, 17, 1000, 124439808};
  for (size_t t = 0; t < sizeof ns / sizeof *ns; t++)
    for (int size = 1; size <= 8; size++) {
      dist_shards(ns[t], size, off);
      ck_assert_uint_eq(off[0], 0);
      ck_assert_uint_eq(off[size], ns[t]);
      for (int r = 1; r < size; r++) {
        ck_assert_uint_eq(off[r] % 16, 0);
        ck_assert_uint_ge(off[r], off[r - 1]);
        ck_assert_uint_le(off[r], ns[t]);
      }
    }
  dist_shards(1000, 3, off);
  ck_assert_uint_eq(off[1], 320);
  ck_assert_uint_eq(off[2], 656);
  /* every global micro-batch of a step once, rank j mod N */
  int seen[12] = {0};
  for (int r = 0; r < 3; r++)
    for (int k = 0; k < 4; k++) {
      int j = dist_micro(r, 3, k);
      ck_assert_int_eq(j % 3, r);
      seen[j]++;
    }
  for (int j = 0; j < 12; j++) ck_assert_int_eq(seen[j], 1);
  /* NCCL starts only over ranks MPI started */
  dist *d = dist_local();
  ck_assert_int_eq(dist_nccl_open(d, 0), -1);
  ck_assert_str_eq(util_errmsg(), "NCCL: the ranks must be started through MPI first");
  dist_close(d);
}
END_TEST

/* without a launcher gptc never initialises MPI: an MPI that would fail to
 * start (a transport that does not exist) changes nothing; under mpirun the
 * same setting fails */
START_TEST(no_launcher_no_mpi) {
  const char *a = dir("plain"), *b = dir("plain-bogus");
  single(a, "--steps 2");
  tu_run_result r;
  setenv("OMPI_MCA_pml", "no_such_pml", 1);
  int code = tu_run(&r, NULL, "train --config '%s' --out '%s' --quiet --steps 2", cfg(), b);
  unsetenv("OMPI_MCA_pml");
  ck_assert_msg(code == 0, "%s", r.err);
  tu_run_free(&r);
  tu_same_tensors(a, b, "last.safetensors");
  code = tu_mpi_run(&r, "OMPI_MCA_pml=no_such_pml", "-np 1 '%s' train --config '%s' --out '%s' --quiet --steps 2", GPTC_EXE,
                 cfg(), dir("plain-mpi"));
  ck_assert_int_ne(code, 0);
  tu_run_free(&r);
}
END_TEST

/* the bench's row: ranks, step, exchange, share, bytes, bandwidth */
START_TEST(bench_ranks) {
  tu_run_result r;
  int code = tu_mpi_run(&r, NULL, "-np 2 '%s' bench --ranks --config '%s' --repeats 3", GPTC_EXE, cfg());
  ck_assert_msg(code == 0, "%s", r.err);
  ck_assert_msg(strstr(r.out, "| ranks | step ms | exchange ms | share | MB moved per rank per step | GB/s |"), "%s", r.out);
  const char *row = strstr(r.out, "\n| 2 | ");
  ck_assert_msg(row, "%s", r.out);
  double step, ex, share, mb, gbs;
  ck_assert_int_eq(sscanf(row, "\n| 2 | %lf | %lf | %lf%% | %lf | %lf |", &step, &ex, &share, &mb, &gbs), 5);
  ck_assert(step > 0 && ex > 0 && ex <= step && share > 0 && share <= 100);
  /* 2 ranks: each sends the other's half and receives its own half's piece, then the gather: 4 x (n/2) floats */
  ck_assert_msg(mb > 0.01 && mb < 1, "%g MB", mb);
  tu_run_free(&r);
  ck_assert_int_ne(tu_run(&r, NULL, "bench --ranks --config '%s'", cfg()), 0);
  ck_assert_msg(strstr(r.err, "--ranks: run it under an MPI launcher"), "%s", r.err);
  tu_run_free(&r);
}
END_TEST

int main(void) {
  Suite *s = suite_create("mpi");
  tu_add_case(s, "shards", shards_and_assignment, 300);
  tu_add_case(s, "no_mpi", no_launcher_no_mpi, 300);
  tu_add_case(s, "bench", bench_ranks, 300);
  tu_add_case(s, "two_ranks", two_ranks_equal_accum_two, 300);
  tu_add_case(s, "three_ranks", three_ranks_accum_two_equal_accum_six, 300);
  tu_add_case(s, "resume", resume_across_rank_counts, 300);
  tu_add_case(s, "writes", rank0_writes_and_builds_the_cache_once, 300);
  tu_add_case(s, "config_differs", config_differs, 300);
  tu_add_case(s, "text_differs", text_differs, 300);
  tu_add_case(s, "nan", nan_on_one_rank, 300);
  tu_add_case(s, "sigint", sigint_to_one_rank, 300);
  tu_add_case(s, "dies", rank_dies, 300);
  tu_add_case(s, "hangs", rank_hangs, 300);
  return tu_main(s);
}
