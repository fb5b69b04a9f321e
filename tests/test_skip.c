/* Cases that cannot run on this host are reported to ctest as skipped
 * (exit TU_SKIPPED, CMakeLists.txt's SKIP_RETURN_CODE), never as passed:
 * test_cuda's emulator suite with the emulator unavailable
 * (GPTC_TEST_EMULATOR=off), alone and with another suite picked; and the
 * split of a file into one ctest entry per suite (its ctest: suites line). */
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "testutil.h"
#include "util.h"

/* Runs test_cuda with `env` (and its stdout) in a child shell, bounded by
 * timeout(1); the exit code. */
static int run_test_cuda(const char *env, char **out) {
  char path[1200], cmd[4000];
  snprintf(path, sizeof path, "%s/skip.out", tu_tmpdir());
  snprintf(cmd, sizeof cmd, "cd '%s' && env %s CK_DEFAULT_TIMEOUT=60 timeout 120 ./test_cuda >'%s' 2>&1", GPTC_BINARY_DIR, env,
           path);
  int st = system(cmd);
  ck_assert_int_eq(util_read_file(path, out, &(size_t){0}), 0);
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

START_TEST(missing_emulator_is_skipped) {
  char *out;
  /* the emulator's suite alone: nothing ran, so skipped */
  ck_assert_int_eq(run_test_cuda("GPTC_TEST_EMULATOR=off CK_RUN_SUITE=cuda_emu", &out), TU_SKIPPED);
  ck_assert_msg(strstr(out, "test_cuda: suite cuda_emu SKIPPED: GPTC_TEST_EMULATOR=off\n") != NULL, "%s", out);
  ck_assert_msg(strstr(out, "Checks: 0") != NULL, "%s", out);
  free(out);
  /* another suite picked (its cases left out by tag, to be quick): not skipped */
  ck_assert_int_eq(run_test_cuda("GPTC_TEST_EMULATOR=off CK_RUN_SUITE=cuda_nvrtc_all CK_EXCLUDE_TAGS=nvrtc_compile_all", &out),
                   0);
  ck_assert_msg(!strstr(out, "SKIPPED"), "%s", out);
  free(out);
}
END_TEST

/* ctest lists test_cuda as one entry per suite, each skippable */
START_TEST(suites_are_ctest_entries) {
  char path[1200], cmd[4000], *out;
  size_t n;
  snprintf(path, sizeof path, "%s/ctest.json", tu_tmpdir());
  snprintf(cmd, sizeof cmd, "cd '%s' && timeout 60 ctest --show-only=json-v1 >'%s'", GPTC_BINARY_DIR, path);
  ck_assert_int_eq(system(cmd), 0);
  ck_assert_int_eq(util_read_file(path, &out, &n), 0);
  const char *names[] = {"\"test_cuda.cuda\"", "\"test_cuda.cuda_nvrtc_all\"", "\"test_cuda.cuda_emu\""};
  for (int i = 0; i < 3; i++) ck_assert_msg(strstr(out, names[i]) != NULL, "no %s in ctest's list", names[i]);
  /* the emulator entry's properties: its suite and the skip code */
  const char *e = strstr(out, "\"test_cuda.cuda_emu\""), *end = strstr(e, "\"backtrace\"");
  ck_assert_ptr_nonnull(end);
  const char *env = strstr(e, "\"CK_RUN_SUITE=cuda_emu\""), *skip = strstr(e, "\"SKIP_RETURN_CODE\"");
  ck_assert_msg(env && env < end && skip && skip < end, "%.1500s", e);
  const char *v = strstr(skip, "\"value\"");
  ck_assert_msg(v && v < end && atoi(v + strcspn(v, "0123456789")) == TU_SKIPPED, "%.300s", skip);
  ck_assert_ptr_null(strstr(out, "\"test_cuda\"")); /* no entry running all three at once */
  free(out);
}
END_TEST

int main(void) {
  Suite *s = suite_create("skip");
  TCase *tc = tcase_create("skip");
  tcase_set_timeout(tc, 300);
  tcase_add_test(tc, missing_emulator_is_skipped);
  tcase_add_test(tc, suites_are_ctest_entries);
  suite_add_tcase(s, tc);
  return tu_main(s);
}
