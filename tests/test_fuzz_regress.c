/* Fuzz regressions: every input under tests/fuzz/regress/<target>/ (each
 * one a crash, leak, hang or broken property a fuzzer found, now fixed) and
 * every seed under tests/fuzz/corpus/<target>/ goes through the same
 * target code and property checks the fuzzer runs (tests/fuzz/fuzz_*.c,
 * compiled in here under other names). A property that breaks aborts the
 * test, and Check reports the signal and the file. */
#include <dirent.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "util.h"

#define LLVMFuzzerTestOneInput fuzz_one_json
#include "fuzz/fuzz_json.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_one_safetensors
#include "fuzz/fuzz_safetensors.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_one_config
#include "fuzz/fuzz_config.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_one_ckptcfg
#include "fuzz/fuzz_ckptcfg.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_one_tok
#include "fuzz/fuzz_tok.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_one_tokcache
#include "fuzz/fuzz_tokcache.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_one_cli
#include "fuzz/fuzz_cli.c"
#undef LLVMFuzzerTestOneInput
#include "fuzz/fuzzutil.c"

typedef int (*fuzz_fn)(const uint8_t *data, size_t size);

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Runs every file of the source tree's `rel` directory (sorted) through
 * fn; returns how many there were. */
static int replay_dir(const char *rel, fuzz_fn fn) {
  char dir[1024];
  snprintf(dir, sizeof dir, "%s/%s", GPTC_SOURCE_DIR, rel);
  setenv("TMPDIR", tu_tmpdir(), 1); /* fuzz_dir() goes under the test's temp dir */
  DIR *d = opendir(dir);
  if (!d) return 0;
  char *names[4096];
  int n = 0;
  for (struct dirent *e; (e = readdir(d)) != NULL && n < 4096;)
    if (e->d_name[0] != '.' && strcmp(e->d_name, "README")) names[n++] = strdup(e->d_name);
  closedir(d);
  qsort(names, (size_t)n, sizeof *names, cmp_str);
  for (int i = 0; i < n; i++) {
    char path[2048], *data;
    size_t len;
    snprintf(path, sizeof path, "%s/%s", dir, names[i]);
    ck_assert_msg(util_read_file(path, &data, &len) == 0, "%s", util_errmsg());
    fprintf(stderr, "replaying %s\n", path); /* names the input if it aborts */
    ck_assert_int_eq(fn((const uint8_t *)data, len), 0);
    free(data);
    free(names[i]);
  }
  return n;
}

/* tests/fuzz/<kind>/<target> through fn. */
static int replay(const char *kind, const char *target, fuzz_fn fn) {
  char rel[256];
  snprintf(rel, sizeof rel, "tests/fuzz/%s/%s", kind, target);
  return replay_dir(rel, fn);
}

/* The seed corpora: every target has one, and each seed passes. */
START_TEST(corpus_json) { ck_assert_int_gt(replay("corpus", "json", fuzz_one_json), 0); }
END_TEST
START_TEST(corpus_safetensors) { ck_assert_int_gt(replay("corpus", "safetensors", fuzz_one_safetensors), 0); }
END_TEST
/* the config target's seeds are also the shipped configs, read in place */
START_TEST(corpus_config) {
  ck_assert_int_gt(replay("corpus", "config", fuzz_one_config), 0);
  ck_assert_int_gt(replay_dir("configs", fuzz_one_config), 0);
}
END_TEST
START_TEST(corpus_ckptcfg) { ck_assert_int_gt(replay("corpus", "ckptcfg", fuzz_one_ckptcfg), 0); }
END_TEST
START_TEST(corpus_tok) { ck_assert_int_gt(replay("corpus", "tok", fuzz_one_tok), 0); }
END_TEST
START_TEST(corpus_tokcache) { ck_assert_int_gt(replay("corpus", "tokcache", fuzz_one_tokcache), 0); }
END_TEST
START_TEST(corpus_cli) { ck_assert_int_gt(replay("corpus", "cli", fuzz_one_cli), 0); }
END_TEST

/* The findings, once fixed: tests/fuzz/regress/<target>/ (empty until a
 * fuzzer finds something; config hangs go to regress/config/). */
START_TEST(regress_all) {
  replay("regress", "json", fuzz_one_json);
  replay("regress", "safetensors", fuzz_one_safetensors);
  replay("regress", "config", fuzz_one_config);
  replay("regress", "ckptcfg", fuzz_one_ckptcfg);
  replay("regress", "tok", fuzz_one_tok);
  replay("regress", "tokcache", fuzz_one_tokcache);
  replay("regress", "cli", fuzz_one_cli);
}
END_TEST

int main(void) {
  Suite *s = suite_create("fuzz_regress");
  TCase *tc = tcase_create("fuzz_regress");
  tcase_set_timeout(tc, 600);
  tcase_add_test(tc, corpus_json);
  tcase_add_test(tc, corpus_safetensors);
  tcase_add_test(tc, corpus_config);
  tcase_add_test(tc, corpus_ckptcfg);
  tcase_add_test(tc, corpus_tok);
  tcase_add_test(tc, corpus_tokcache);
  tcase_add_test(tc, corpus_cli);
  tcase_add_test(tc, regress_all);
  suite_add_tcase(s, tc);
  return tu_main(s);
}
