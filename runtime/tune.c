/* tune: see tune.h. */
#include "tune.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench.h"
#include "gen.h"
#include "schedfile.h"
#include "util.h"

/* how many instances are compiled into one candidates source */
#define TUNE_BATCH 4

typedef struct {
  char fn[96];
  int calls;
  double flops;        /* per call */
  char base[128];      /* the schedule the search starts from ("" = the heuristic) */
  char best[128];      /* the winner so far */
  double best_t, heur_t; /* warm + cold medians, seconds */
  int done;
} tune_item;

/* The training step's GEMM instances (gen/tune.lua), largest share of the step first. */
static int tune_cmp(const void *a, const void *b) {
  const tune_item *x = a, *y = b;
  double u = x->calls * x->flops, v = y->calls * y->flops;
  return u < v ? 1 : u > v ? -1 : strcmp(x->fn, y->fn);
}

static int tune_list(const cfg_t *cfg, tune_item **out, int *n) {
  *out = NULL;
  *n = 0;
  gen_gemm *g;
  int count;
  if (gen_tune_gemms(cfg, &g, &count)) return -1;
  tune_item *it = util_calloc((size_t)(count ? count : 1), sizeof *it, "tune list");
  if (!it) {
    free(g);
    return -1;
  }
  for (int i = 0; i < count; i++) {
    snprintf(it[i].fn, sizeof it[i].fn, "%s", g[i].fn);
    it[i].calls = g[i].calls;
    it[i].flops = g[i].flops;
  }
  free(g);
  qsort(it, (size_t)count, sizeof *it, tune_cmp);
  *out = it;
  *n = count;
  return 0;
}

/* The candidates source for items[0..n): gen/tune.lua's, each searched from its base schedule. */
static int tune_source(const cfg_t *cfg, tune_item *const *items, int n, char **src, size_t *len, char hash[65]) {
  const char **fns = util_calloc((size_t)n + 1, 2 * sizeof *fns, "tune batch"); /* fns[n + 1 + i]: bases */
  if (!fns) return -1;
  for (int i = 0; i < n; i++) fns[i] = items[i]->fn, fns[n + 1 + i] = items[i]->base;
  int rc = gen_tune_source(cfg, fns, fns + n + 1, n, src, len, hash);
  free(fns);
  return rc;
}

static int tune_by_median(const void *a, const void *b) {
  const double *x = a, *y = b;
  return x[0] < y[0] ? -1 : x[0] > y[0];
}

/* Races the k candidates ops[0..k) of item `it` (ops[0]: its base
 * schedule) and keeps the winner in it->best / it->best_t; *base_t is the
 * base's warm + cold time. */
static int tune_race(const gptc_bench_op *const *ops, int k, tune_item *it, double *base_t, FILE *pr) {
  bench_race r;
  if (bench_race_open(&r, ops, k, 1234)) return -1;
  int *alive = util_malloc((size_t)k * sizeof *alive, "tune");
  bench_stats *st = util_calloc((size_t)k, sizeof *st, "tune");
  double(*order)[2] = util_malloc((size_t)k * sizeof *order, "tune");
  if (!alive || !st || !order) goto fail;
  int n = 0;
  for (int i = 0; i < k; i++) {
    if (r.same[i]) alive[n++] = i;
    else if (pr)
      fprintf(pr, "gptc tune: %s: candidate '%s' differs from the heuristic schedule in its bits; not used\n", it->fn,
              ops[i]->what);
  }
  if (!n || !r.same[0]) {
    util_err("%s: its base schedule '%s' does not reproduce the heuristic's bits", it->fn, ops[0]->what);
    goto fail;
  }
  /* every candidate, warm, twice (the check above was the warm-up) */
  bench_timing quick = {0, 2, 0, 2, 0, 0};
  if (bench_race_time(&r, alive, n, &quick, st)) goto fail;
  for (int i = 0; i < n; i++) order[i][0] = st[i].median, order[i][1] = alive[i];
  qsort(order, (size_t)n, sizeof *order, tune_by_median);
  /* the best three and the base, warm and cold */
  int fin[4], m = 0;
  for (int i = 0; i < n && m < 3; i++) fin[m++] = (int)order[i][1];
  int has0 = 0;
  for (int i = 0; i < m; i++) has0 |= fin[i] == 0;
  if (!has0) fin[m++] = 0;
  bench_stats warm[4], cold[4];
  bench_timing tw = {0, 0, 3, 12, 0.05, 0}, tc = {0, 0, 3, 8, 0.05, bench_flush_bytes()};
  if (bench_race_time(&r, fin, m, &tw, warm) || bench_race_time(&r, fin, m, &tc, cold)) goto fail;
  int best = -1;
  for (int i = 0; i < m; i++) {
    double t = warm[i].median + cold[i].median;
    if (fin[i] == 0) *base_t = t;
    if (best < 0 || t < it->best_t) best = fin[i], it->best_t = t;
  }
  snprintf(it->best, sizeof it->best, "%s", ops[best]->what);
  bench_race_close(&r);
  free(alive), free(st), free(order);
  return 0;
fail:
  bench_race_close(&r);
  free(alive), free(st), free(order);
  return -1;
}

/* One batch: renders and compiles its candidates, races each item's. */
static int tune_batch_run(const cfg_t *cfg, tune_item *const *items, int n, int round, FILE *pr) {
  char *src, hash[65];
  size_t len;
  if (tune_source(cfg, items, n, &src, &len, hash)) return -1;
  cpu_object obj;
  const gptc_bench *bench;
  double t0 = util_now();
  int rc = bench_open_source(src, len, hash, &obj, &bench);
  free(src);
  if (rc) return -1;
  if (pr)
    fprintf(pr, "gptc tune: round %d: %d candidate schedules of %d instance%s%s\n", round, bench->n_ops, n,
            n == 1 ? "" : "s", obj.compiled ? " (compiled here)" : "");
  (void)t0;
  for (int i = 0; i < n && !rc; i++) {
    const gptc_bench_op **ops = util_malloc((size_t)bench->n_ops * sizeof *ops, "tune");
    if (!ops) {
      rc = -1;
      break;
    }
    int k = 0;
    for (int j = 0; j < bench->n_ops; j++)
      if (!strcmp(bench->ops[j].kernel, items[i]->fn)) ops[k++] = &bench->ops[j];
    double base_t = 0;
    tune_item *it = items[i];
    double before = it->best_t;
    if (!k) rc = util_err("the candidates source has no candidates of %s", it->fn);
    else rc = tune_race(ops, k, it, &base_t, pr);
    free(ops);
    if (rc) break;
    if (round == 1) it->heur_t = base_t;
    else if (before > 0 && it->best_t > before) it->best_t = before; /* a noisier rerun of the same winner */
    it->done = 1;
    if (pr)
      fprintf(pr, "gptc tune: %-36s %2d candidates: %s  %.3f ms (heuristic %.3f ms, %.2fx)\n", it->fn, k, it->best,
              1e3 * it->best_t / 2, 1e3 * it->heur_t / 2, it->heur_t / it->best_t);
  }
  cpu_object_close(&obj);
  return rc;
}

/* Compiles the sources of n batches at once, one compiler a processor (the
 * objects land in the cache, where tune_batch_run finds them): compiling is
 * most of a tune's time. */
static int tune_precompile(const cfg_t *cfg, tune_item *const *const *batch, const int *len, int n, FILE *pr) {
  double t0 = util_now();
  char *err = NULL;
  int candidates = 0;
#pragma omp parallel for num_threads(n) schedule(dynamic, 1) reduction(+ : candidates)
  for (int i = 0; i < n; i++) {
    char *src, hash[65];
    size_t slen;
    cpu_object obj;
    const gptc_bench *bench;
    int rc = tune_source(cfg, batch[i], len[i], &src, &slen, hash);
    if (!rc) {
      rc = bench_open_source(src, slen, hash, &obj, &bench);
      free(src);
      if (!rc) {
        candidates += bench->n_ops;
        cpu_object_close(&obj);
      }
    }
#pragma omp critical(tune_err)
    if (rc && !err) err = util_strdup(util_errmsg());
  }
  if (err) {
    util_err("%s", err);
    free(err);
    return -1;
  }
  if (pr)
    fprintf(pr, "gptc tune: %d candidate schedules compiled in %.1f s (%d compiler%s at once)\n", candidates,
            util_now() - t0, n, n == 1 ? "" : "s");
  return 0;
}

static void tune_note(const tune_item *it, char *out, size_t n);

/* Runs a batch and merges every measured instance into the file, saved at
 * once: an interrupted tune keeps what it measured. */
static int tune_flush(const cfg_t *cfg, tune_item *const *sel, int ns, int round, FILE *pr, tune_item *const *todo,
                      int m, sched_file *f) {
  int rc = tune_batch_run(cfg, sel, ns, round, pr);
  char note[160];
  for (int j = 0; j < m && !rc; j++)
    if (todo[j]->done) {
      tune_note(todo[j], note, sizeof note);
      rc = sched_set(f, todo[j]->fn, todo[j]->best, note);
    }
  return rc ? rc : sched_save(f);
}

static void tune_note(const tune_item *it, char *out, size_t n) {
  char day[32];
  time_t now = time(NULL);
  struct tm tm;
  strftime(day, sizeof day, "%Y-%m-%d", gmtime_r(&now, &tm));
  snprintf(out, n, "%.3f ms, heuristic %.3f ms (%.2fx; warm + cold / 2), %s", 1e3 * it->best_t / 2,
           1e3 * it->heur_t / 2, it->heur_t / it->best_t, day);
}

int tune_run(const cfg_t *cfg, const tune_opts *o, tune_result *r) {
  memset(r, 0, sizeof *r);
  double t0 = util_now();
  tune_item *items;
  int n;
  if (tune_list(cfg, &items, &n)) return -1;
  sched_file f;
  if (sched_load(&f)) {
    free(items);
    return -1;
  }
  snprintf(r->path, sizeof r->path, "%s", f.path);
  r->instances = n;
  for (int i = 0; i < n; i++) r->attention += !strncmp(items[i].fn, "attention_", 10);
  tune_item **todo = util_malloc((size_t)(n ? n : 1) * sizeof *todo, "tune");
  if (!todo) {
    free(items);
    sched_free(&f);
    return -1;
  }
  int m = 0, small = 0;
  for (int i = 0; i < n; i++) {
    if (!o->all && sched_find(&f, items[i].fn)) continue;
    if (items[i].flops < o->min_flops) {
      char note[160];
      snprintf(note, sizeof note, "not measured: %.2g flops a call, below the %.2g worth timing", items[i].flops,
               o->min_flops);
      if (sched_set(&f, items[i].fn, "-", note)) {
        free(items), free(todo), sched_free(&f);
        return -1;
      }
      small++;
      continue;
    }
    todo[m++] = &items[i];
  }
  if (small && !m && sched_save(&f)) {
    free(items), free(todo), sched_free(&f);
    return -1;
  }
  FILE *pr = o->progress;
  if (pr && m)
    fprintf(pr, "gptc tune: %d of %d GEMM and attention instances of %s to measure on this host; schedules go to %s\n", m, n,
            cfg->name, f.path);
  int rc = 0, procs = omp_get_num_procs();
  tune_item **sel = util_malloc((size_t)(m ? m : 1) * sizeof *sel, "tune");
  if (!sel) rc = -1;
  for (int round = 1; round <= (o->rounds > 1 ? 2 : 1) && !rc && !r->skipped; round++) {
    /* this round's instances: all in round 1, then those whose winner beat the heuristic */
    int ns = 0;
    for (int i = 0; i < m; i++) {
      tune_item *it = todo[i];
      if (round == 1) it->base[0] = 0;
      else if (!it->done || it->best_t >= it->heur_t) continue;
      else snprintf(it->base, sizeof it->base, "%s", it->best);
      sel[ns++] = it;
    }
    /* groups of one batch a processor: compiled at once, then raced one by one */
    for (int g = 0; g < ns && !rc; g += procs * TUNE_BATCH) {
      /* the first group always runs: a budget bounds the tuning, it does not skip it */
      if (g && o->budget_s > 0 && util_now() - t0 > o->budget_s) {
        r->skipped = 1;
        break;
      }
      tune_item *const *batch[256];
      int len[256], nb = 0;
      for (int i = g; i < ns && i < g + procs * TUNE_BATCH && nb < 256; i += TUNE_BATCH) {
        batch[nb] = sel + i;
        len[nb++] = ns - i < TUNE_BATCH ? ns - i : TUNE_BATCH;
      }
      rc = tune_precompile(cfg, batch, len, nb, pr);
      for (int j = 0; j < nb && !rc; j++) rc = tune_flush(cfg, batch[j], len[j], round, pr, todo, m, &f);
    }
  }
  free(sel);
  /* the instances the budget left keep the heuristic, recorded so that
   * later runs do not stop to tune them again (gptc tune measures them) */
  int left = 0;
  for (int i = 0; i < m && !rc; i++) {
    if (todo[i]->done) {
      r->measured++;
      if (todo[i]->best_t < todo[i]->heur_t) r->improved++;
    } else if (!sched_find(&f, todo[i]->fn)) {
      char note[160];
      snprintf(note, sizeof note, "not measured: the tuning budget (%.0f s) ran out; `gptc tune` measures it",
               o->budget_s);
      rc = sched_set(&f, todo[i]->fn, "-", note);
      left++;
    }
  }
  if (left && !rc) rc = sched_save(&f);
  r->skipped = left;
  r->seconds = util_now() - t0;
  if (pr && m && !rc)
    fprintf(pr, "gptc tune: %d instance%s measured in %.0f s, %d faster than the heuristic%s\n", r->measured,
            r->measured == 1 ? "" : "s", r->seconds, r->improved,
            left ? "; the rest keep the heuristic (budget)" : "");
  free(todo);
  free(items);
  sched_free(&f);
  return rc;
}

int tune_ensure(const cfg_t *cfg, double budget_s, FILE *progress) {
  const char *env = getenv("GPTC_TUNE");
  if (env && (!strcmp(env, "off") || !strcmp(env, "0"))) return 0;
  tune_opts o = {budget_s, 1, 0, TUNE_MIN_FLOPS, progress};
  tune_result r;
  return tune_run(cfg, &o, &r);
}
