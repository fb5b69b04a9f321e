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
void tu_run_free(tu_run_result *r);

/* DIR/log.jsonl without its tokens_per_s fields (the only ones timing
 * changes), for comparing two runs; caller frees. */
char *tu_log_without_timing(const char *dir);

/* Runs a suite and returns the process exit code (0 if all passed). */
int tu_main(Suite *s);

/* The host emulator of the CUDA driver (tests/gpu/emu): builds the fake
 * libcuda once per process and points gptc at it (GPTC_LIBCUDA, a compute
 * capability 8.0 device). 0 when it cannot run here, the reason printed
 * with `who` (the test's name) first. */
int tu_fake_cuda(const char *who);

#endif
