/* testutil: helpers shared by the Check suites. */
#ifndef GPTC_TESTUTIL_H
#define GPTC_TESTUTIL_H

#include <check.h>
#include <stddef.h>

/* Path under the source tree, e.g. tu_src("data/the-verdict.txt"). Static buffer rotation (8). */
const char *tu_src(const char *rel);
/* A fresh temp directory for this test process (removed at exit). */
const char *tu_tmpdir(void);
/* Writes `data` to tmpdir/name and returns the path (static rotation). */
const char *tu_write(const char *name, const void *data, size_t len);
const char *tu_write_str(const char *name, const char *s);

/* Runs `GPTC_EXE args` through the shell (stdin from /dev/null unless
 * `input` is given), capturing stdout and stderr. Returns the exit code. */
typedef struct {
  int code;
  char *out, *err;
  size_t out_len, err_len;
} tu_run_result;
int tu_run(tu_run_result *r, const char *input, const char *fmt, ...);
/* Like tu_run, for any shell command. */
int tu_sh(tu_run_result *r, const char *input, const char *fmt, ...);
void tu_run_free(tu_run_result *r);

/* DIR/log.jsonl without its tokens_per_s fields (the only ones timing
 * changes), for comparing two runs; caller frees. */
char *tu_log_without_timing(const char *dir);

/* Runs a suite and returns the process exit code: 0 if all passed, 1 if
 * one failed, else TU_SKIPPED when tu_skip left out a suite that was to run. */
int tu_main(Suite *s);
/* Adds test t to s as a tcase of its own, named name (so CK_RUN_CASE can pick
 * it), with a timeout of timeout_s seconds. */
void tu_add_case(Suite *s, const char *name, const TTest *t, double timeout_s);
/* The same for several suites (CK_RUN_SUITE picks one: CMakeLists.txt
 * makes each its own ctest entry when the file has a ctest: suites line). */
int tu_main_suites(Suite *const *s, int n);

/* ctest's SKIP_RETURN_CODE (CMakeLists.txt): the test is reported skipped. */
#define TU_SKIPPED 77
/* Records that `suite` (of test `who`) cannot run here, for `why`, and
 * prints so: unless CK_RUN_SUITE picks another suite, the exit code is then
 * TU_SKIPPED rather than 0, so ctest never counts the missing cases passed. */
void tu_skip(const char *who, const char *suite, const char *why);

/* The host emulator of the CUDA driver (tests/gpu/emu): builds the fake
 * libcuda once per process and points gptc at it (GPTC_LIBCUDA, a compute
 * capability 8.0 device; the emulated modules cached in this process's
 * $GPTC_CACHE/cuda even where a test moves GPTC_CACHE). Fails the calling test, naming `who` (the test
 * binary) and the reason, when it cannot run here: main() asks
 * tu_fake_cuda_missing first and leaves the emulator cases out (tu_skip). */
void tu_fake_cuda(const char *who);
/* NULL when the emulator can run on this machine, else why not
 * ($GPTC_TEST_EMULATOR=off: as if it could not). */
const char *tu_fake_cuda_missing(void);

/* mpirun with what this machine needs (--allow-run-as-root, --oversubscribe,
 * one OpenMP thread per rank, a timeout; `env`: assignments put before it or
 * NULL); `fmt` is what follows mpirun's options ("-np N EXE args" or an MPMD
 * list). A timeout fails the test. Returns the exit status. */
int tu_mpi_run(tu_run_result *r, const char *env, const char *fmt, ...);
/* The tensor bytes (past the JSON header) of `file` in runs a and b are equal. */
void tu_same_tensors(const char *a, const char *b, const char *file);
/* Two runs are the same: last, last.opt and best tensors bitwise, and log.jsonl
 * without timing and without a job's ranks/batch fields. */
void tu_same_run(const char *a, const char *b);

/* The JSON document in file `path` (parsed by runtime/json.c; the test fails
 * when it cannot be read or parsed); json_free it. */
struct json_val *tu_read_json(const char *path);
/* The number o[key]; the test fails when it is missing or not a number. */
double tu_json_num(const struct json_val *o, const char *key);

#endif
