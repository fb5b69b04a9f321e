/* testutil: see testutil.h. */
#include "testutil.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "json.h"
#include "util.h"

static char tu_dir[512];

static void tu_cleanup(void) {
  if (tu_dir[0] && getpid() == (pid_t)atol(strrchr(tu_dir, '.') + 1)) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tu_dir);
    if (system(cmd)) { /* best effort */
    }
  }
}

const char *tu_tmpdir(void) {
  if (!tu_dir[0]) {
    snprintf(tu_dir, sizeof tu_dir, "%s/tmp/t.%ld", GPTC_BINARY_DIR, (long)getpid());
    util_mkdir_p(tu_dir);
    atexit(tu_cleanup);
  }
  return tu_dir;
}

static char *tu_slot(void) {
  static char bufs[8][1024];
  static int i;
  return bufs[i++ & 7];
}

const char *tu_src(const char *rel) {
  char *b = tu_slot();
  snprintf(b, 1024, "%s/%s", GPTC_SOURCE_DIR, rel);
  return b;
}

const char *tu_write(const char *name, const void *data, size_t len) {
  char *b = tu_slot();
  snprintf(b, 1024, "%s/%s", tu_tmpdir(), name);
  FILE *f = fopen(b, "wb");
  ck_assert_msg(f != NULL, "cannot write %s", b);
  if (len) ck_assert_uint_eq(fwrite(data, 1, len, f), len);
  fclose(f);
  return b;
}

const char *tu_write_str(const char *name, const char *s) { return tu_write(name, s, strlen(s)); }

/* Runs `shell` with `input` (NULL: /dev/null) on stdin, capturing stdout and
 * stderr into r; the one runner under tu_run, tu_sh and tu_mpi_run. */
static int tu_capture(tu_run_result *r, const char *input, const char *shell) {
  const char *d = tu_tmpdir();
  char in[600], out[600], err[600];
  snprintf(in, sizeof in, "%s/.stdin.%d", d, (int)getpid());
  snprintf(out, sizeof out, "%s/.stdout.%d", d, (int)getpid());
  snprintf(err, sizeof err, "%s/.stderr.%d", d, (int)getpid());
  if (input) {
    FILE *f = fopen(in, "wb");
    ck_assert_msg(f != NULL, "cannot write %s", in);
    fputs(input, f);
    fclose(f);
  }
  size_t n = strlen(shell) + 3 * sizeof out + 32;
  char *cmd = malloc(n);
  ck_assert_ptr_nonnull(cmd);
  snprintf(cmd, n, "( %s ) <%s >%s 2>%s", shell, input ? in : "/dev/null", out, err);
  int st = system(cmd);
  free(cmd);
  memset(r, 0, sizeof *r);
  r->code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  if (util_read_file(out, &r->out, &r->out_len)) r->out = util_strdup("");
  if (util_read_file(err, &r->err, &r->err_len)) r->err = util_strdup("");
  return r->code;
}

int tu_run(tu_run_result *r, const char *input, const char *fmt, ...) {
  char args[8192], cmd[8400];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(args, sizeof args, fmt, ap);
  va_end(ap);
  snprintf(cmd, sizeof cmd, "'%s' %s", GPTC_EXE, args);
  return tu_capture(r, input, cmd);
}

int tu_sh(tu_run_result *r, const char *input, const char *fmt, ...) {
  char cmd[8192];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(cmd, sizeof cmd, fmt, ap);
  va_end(ap);
  return tu_capture(r, input, cmd);
}

void tu_run_free(tu_run_result *r) {
  free(r->out);
  free(r->err);
  r->out = r->err = NULL;
}

static int tu_skipped; /* a suite that was to run was left out (tu_skip) */

void tu_skip(const char *who, const char *suite, const char *why) {
  const char *only = getenv("CK_RUN_SUITE");
  if (only && *only && strcmp(only, suite)) return;
  printf("%s: suite %s SKIPPED: %s\n", who, suite, why);
  fflush(stdout);
  tu_skipped = 1;
}

int tu_main_suites(Suite *const *s, int n) {
  SRunner *sr = srunner_create(s[0]);
  for (int i = 1; i < n; i++) srunner_add_suite(sr, s[i]);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? 1 : tu_skipped ? TU_SKIPPED : 0;
}

int tu_main(Suite *s) { return tu_main_suites(&s, 1); }

void tu_add_case(Suite *s, const char *name, const TTest *t, double timeout_s) {
  TCase *tc = tcase_create(name);
  tcase_set_timeout(tc, timeout_s);
  tcase_add_test(tc, t);
  suite_add_tcase(s, tc);
}

char *tu_log_without_timing(const char *dir) {
  char path[4200], *data;
  size_t len;
  snprintf(path, sizeof path, "%s/log.jsonl", dir);
  ck_assert_msg(util_read_file(path, &data, &len) == 0, "%s", util_errmsg());
  util_buf out = {0};
  for (char *p = data; *p;) {
    char *t = strstr(p, ",\"tokens_per_s\":");
    if (!t) {
      util_buf_add(&out, p, strlen(p));
      break;
    }
    util_buf_add(&out, p, (size_t)(t - p));
    p = t + 16;
    while (*p && *p != ',' && *p != '}') p++;
  }
  util_buf_add(&out, "", 1);
  free(data);
  return out.data;
}

const char *tu_fake_cuda_missing(void) {
  const char *off = getenv("GPTC_TEST_EMULATOR"); /* tests/test_skip.c: the skip path on any host */
  if (off && !strcmp(off, "off")) return "GPTC_TEST_EMULATOR=off";
#if !defined(__x86_64__)
  return "the emulator's context switch is x86-64 only";
#else
  static int cxx = -1; /* whether c++ runs, asked once */
  if (cxx < 0) cxx = system("c++ --version >/dev/null 2>&1") == 0;
  return cxx ? NULL : "no C++ compiler (c++) to build the emulated kernels";
#endif
}

void tu_fake_cuda(const char *who) {
  static int ready;
  if (ready) return;
  const char *missing = tu_fake_cuda_missing();
  ck_assert_msg(missing == NULL, "%s: the CUDA emulator cannot run here: %s", who, missing);
  char dir[1000], lib[1100], cmd[4000];
  snprintf(dir, sizeof dir, "%s/fakecuda", tu_tmpdir());
  snprintf(lib, sizeof lib, "%s/libcuda.so.1", dir);
  ck_assert_int_eq(util_mkdir_p(dir), 0);
  snprintf(cmd, sizeof cmd, "cc -O2 -shared -fPIC -DEMU_HEADER='\"%s\"' -o '%s' '%s' -ldl", tu_src("tests/gpu/emu/emu.h"),
           lib, tu_src("tests/gpu/emu/fakecuda.c"));
  ck_assert_msg(system(cmd) == 0, "%s: building the fake driver failed: %s", who, cmd);
  setenv("GPTC_LIBCUDA", lib, 1);
  setenv("FAKECUDA_CC", "80", 1);
  /* the emulated modules stay in the suite's cache when a test moves GPTC_CACHE */
  snprintf(dir, sizeof dir, "%s/cuda", util_cache_dir());
  ck_assert_int_eq(util_mkdir_p(dir), 0);
  setenv("FAKECUDA_SO_DIR", dir, 1);
  ready = 1;
}

/* ---- data-parallel runs (test_mpi.c, test_zero.c) ---------------------------------- */

/* mpirun as root needs --allow-run-as-root; 3 ranks on 2 cores need
 * --oversubscribe. `launch` is what follows mpirun's own options: "-np N
 * EXE args" or an MPMD list "-np 1 EXE a : -np 1 EXE b" (EXE: gptc). */
int tu_mpi_run(tu_run_result *r, const char *env, const char *fmt, ...) {
  char launch[8192], cmd[16384];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(launch, sizeof launch, fmt, ap);
  va_end(ap);
  /* under build/test-asan.sh: OpenMPI's own allocations outlive MPI_Finalize;
   * full stacks let tests/lsan-mpi.supp name its libraries (and only those) */
  snprintf(cmd, sizeof cmd,
           "ASAN_OPTIONS=\"${ASAN_OPTIONS:+$ASAN_OPTIONS:}fast_unwind_on_malloc=0\" LSAN_OPTIONS=suppressions='%s' %s "
           "OMP_NUM_THREADS=1 timeout -k 5 120 mpirun --allow-run-as-root --oversubscribe --bind-to none %s",
           tu_src("tests/lsan-mpi.supp"), env ? env : "", launch);
  tu_capture(r, NULL, cmd);
  ck_assert_msg(r->code != 124 && r->code != 137, "mpirun timed out: %s\n%s", launch, r->err);
  return r->code;
}

/* The tensor bytes of a safetensors file (after its JSON header): the
 * header holds the config, whose grad_accum differs between the runs. */
static char *tu_tensor_bytes(const char *run, const char *file, size_t *n) {
  char path[1200], *data;
  size_t len;
  snprintf(path, sizeof path, "%s/%s", run, file);
  ck_assert_msg(util_read_file(path, &data, &len) == 0, "%s", util_errmsg());
  ck_assert_uint_ge(len, 8);
  uint64_t h = 0;
  for (int i = 7; i >= 0; i--) h = h << 8 | (uint8_t)data[i];
  ck_assert_uint_le(8 + h, len);
  *n = len - 8 - h;
  char *t = malloc(*n + 1);
  memcpy(t, data + 8 + h, *n);
  free(data);
  return t;
}

void tu_same_tensors(const char *a, const char *b, const char *file) {
  size_t na, nb;
  char *ta = tu_tensor_bytes(a, file, &na), *tb = tu_tensor_bytes(b, file, &nb);
  ck_assert_uint_eq(na, nb);
  ck_assert_uint_gt(na, 1000);
  ck_assert_msg(!memcmp(ta, tb, na), "%s differs between %s and %s", file, a, b);
  free(ta);
  free(tb);
}

/* log.jsonl without timing and without the ranks/batch fields a job adds */
static char *tu_log_of(const char *run) {
  char *l = tu_log_without_timing(run);
  for (char *p; (p = strstr(l, ",\"ranks\":"));) {
    char *e = strstr(p, ",\"batch\":");
    ck_assert_ptr_nonnull(e);
    e += 9;
    while (*e >= '0' && *e <= '9') e++;
    memmove(p, e, strlen(e) + 1);
  }
  return l;
}

void tu_same_run(const char *a, const char *b) {
  tu_same_tensors(a, b, "last.safetensors");
  tu_same_tensors(a, b, "last.opt.safetensors");
  tu_same_tensors(a, b, "best.safetensors");
  char *la = tu_log_of(a), *lb = tu_log_of(b);
  ck_assert_msg(strstr(la, "\"loss\":") && strstr(la, "val_loss_full"), "%s", la);
  ck_assert_str_eq(la, lb);
  free(la);
  free(lb);
}

json_val *tu_read_json(const char *path) {
  char *text;
  size_t n;
  ck_assert_msg(util_read_file(path, &text, &n) == 0, "%s", util_errmsg());
  json_val *v = json_parse(text, n, path);
  ck_assert_msg(v != NULL, "%s", util_errmsg());
  free(text);
  return v;
}

double tu_json_num(const json_val *o, const char *key) {
  const json_val *v = json_get(o, key);
  ck_assert_msg(v && v->type == JSON_NUM, "'%s' is not a number", key);
  return v->num;
}
