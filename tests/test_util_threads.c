/* util's per-thread state: the error message (util_err / util_errmsg) is
 * each thread's own, so a worker's error never replaces or tears another
 * thread's (runtime/cuda.c compiles NVRTC programs on a pool of threads,
 * tune.c on OpenMP threads, tests/test_cuda.c on two), and util_cache_dir
 * hands each thread its own buffer. The two threads take turns in a fixed
 * order (a mutex and condition variable), so the outcome never depends on
 * scheduling: with one global buffer the first check below fails every
 * time. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "util.h"

typedef struct {
  pthread_mutex_t lock;
  pthread_cond_t cond;
  int turn; /* whose step it is: the steps alternate main, worker, main ... */
  char seen[3][128]; /* what the worker read at its steps */
  const char *dir;   /* the worker's util_cache_dir() */
} relay;

static void wait_turn(relay *r, int step) {
  pthread_mutex_lock(&r->lock);
  while (r->turn != step) pthread_cond_wait(&r->cond, &r->lock);
  pthread_mutex_unlock(&r->lock);
}

static void pass_turn(relay *r) {
  pthread_mutex_lock(&r->lock);
  r->turn++;
  pthread_cond_broadcast(&r->cond);
  pthread_mutex_unlock(&r->lock);
}

static void *worker(void *arg) {
  relay *r = arg;
  wait_turn(r, 1);
  snprintf(r->seen[0], sizeof r->seen[0], "%s", util_errmsg()); /* main's error is not ours */
  util_err("worker: %s failed", "step 1");
  r->dir = util_cache_dir();
  pass_turn(r);
  wait_turn(r, 3);
  snprintf(r->seen[1], sizeof r->seen[1], "%s", util_errmsg()); /* main's second error left ours alone */
  util_errclear();
  pass_turn(r);
  return NULL;
}

START_TEST(errors_are_per_thread) {
  setenv("GPTC_CACHE", "", 1); /* util_cache_dir builds its path in its buffer */
  relay r = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, {""}, NULL};
  pthread_t t;
  ck_assert_int_eq(pthread_create(&t, NULL, worker, &r), 0);
  util_err("main: %s", "first");
  const char *mine = util_cache_dir();
  pass_turn(&r);
  wait_turn(&r, 2);
  ck_assert_str_eq(util_errmsg(), "main: first");
  ck_assert_str_eq(r.seen[0], "unknown error"); /* a new thread starts with no message */
  ck_assert_ptr_ne(mine, r.dir);
  ck_assert_str_eq(mine, r.dir);
  util_err("main: %s", "second\nline");
  pass_turn(&r);
  wait_turn(&r, 4);
  ck_assert_str_eq(r.seen[1], "worker: step 1 failed");
  ck_assert_str_eq(util_errmsg(), "main: second; line"); /* the worker's util_errclear was its own */
  ck_assert_int_eq(pthread_join(t, NULL), 0);
}
END_TEST

int main(void) {
  Suite *s = suite_create("util_threads");
  TCase *tc = tcase_create("errors");
  tcase_add_test(tc, errors_are_per_thread);
  suite_add_tcase(s, tc);
  return tu_main(s);
}
