/* sweep: see sweep.h. */
#include "sweep.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cfg.h"
#include "ckpt.h"
#include "gen.h"
#include "json.h"
#include "plot.h"
#include "train.h"
#include "util.h"

enum { SWEEP_PENDING, SWEEP_RUNNING, SWEEP_DONE, SWEEP_FAILED };
static const char *const sweep_status_name[] = {"pending", "running", "done", "failed"};

typedef struct {
  char name[1024];                        /* "n_layers=2 train.lr=0.001": the varied fields */
  char dir[256];                          /* DIR-relative run directory, filesystem-safe */
  char sets[SWEEP_MAX_GRIDS][300];        /* "FIELD=VALUE" per grid */
  char values[SWEEP_MAX_GRIDS][300];      /* each varied field's effective value as JSON */
  long final_step, tokens_per_step;       /* from the run's effective config */
  int status;                             /* SWEEP_* */
  double params, tps, step_ms, val, wall_s; /* NAN while unknown */
  int val_full;                           /* val is the whole-split val_loss_full (else the last val_loss) */
} sweep_one;

typedef struct {
  sweep_def d;
  char fields[SWEEP_MAX_GRIDS][128];
  char *vals[SWEEP_MAX_GRIDS][SWEEP_MAX_VALUES]; /* into grid_buf[g] */
  int n_vals[SWEEP_MAX_GRIDS];
  char *grid_buf[SWEEP_MAX_GRIDS];
  sweep_one *runs; /* n_runs */
  int n_runs;
} sweep_state;

static void sweep_free(sweep_state *s) {
  for (int g = 0; g < SWEEP_MAX_GRIDS; g++) free(s->grid_buf[g]);
  free(s->runs);
}

/* ---- the definition ------------------------------------------------------ */

/* Splits each --grid into its field and comma-separated values. */
static int sweep_parse_grids(sweep_state *s) {
  const sweep_def *d = &s->d;
  if (d->n_grids < 1) return util_err("--grid: a sweep needs at least one --grid FIELD=V1,V2,...");
  for (int g = 0; g < d->n_grids; g++) {
    const char *vals;
    if (cfg_set_split(d->grids[g], s->fields[g], sizeof s->fields[g], &vals))
      return util_err("--grid %s", util_errmsg() + strlen("--set "));
    for (int h = 0; h < g; h++)
      if (!strcmp(s->fields[g], s->fields[h])) return util_err("--grid %s: field given twice", s->fields[g]);
    if (cfg_set_find(d->sets, d->n_sets, s->fields[g]))
      return util_err("--grid %s: the field is also given by --set; leave one out", s->fields[g]);
    if (!(s->grid_buf[g] = util_strdup(vals))) return -1;
    char *p = s->grid_buf[g];
    for (;;) {
      char *comma = strchr(p, ',');
      if (comma) *comma = '\0';
      if (!*p) return util_err("--grid %s: empty value (values are separated by single commas)", d->grids[g]);
      if (strlen(p) > 200) return util_err("--grid %s: a value is longer than 200 bytes", s->fields[g]);
      if (s->n_vals[g] == SWEEP_MAX_VALUES)
        return util_err("--grid %s: more than %d values", s->fields[g], SWEEP_MAX_VALUES);
      for (int i = 0; i < s->n_vals[g]; i++)
        if (!strcmp(s->vals[g][i], p)) return util_err("--grid %s: value '%s' given twice", s->fields[g], p);
      s->vals[g][s->n_vals[g]++] = p;
      if (!comma) break;
      p = comma + 1;
    }
  }
  return 0;
}

/* splitmix64: the seeded sample of --random, the same on every machine */
static uint64_t sweep_rand(uint64_t *x) {
  uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static int sweep_cmp_long(const void *a, const void *b) {
  long x = *(const long *)a, y = *(const long *)b;
  return (x > y) - (x < y);
}

/* A run directory's name: the varied FIELD=VALUE joined by ',', anything
 * but letters, digits, '.', '_', '-', '=' and ',' replaced by '_'. */
static void sweep_dirname(const sweep_state *s, const sweep_one *r, char *out, size_t cap) {
  size_t o = 0;
  for (int g = 0; g < s->d.n_grids && o + 1 < cap; g++) {
    if (g) out[o++] = ',';
    for (const char *p = r->sets[g]; *p && o + 1 < cap; p++) {
      char c = *p;
      int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
               c == '-' || c == '=';
      out[o++] = ok ? c : '_';
    }
  }
  out[o] = '\0';
  if (out[0] == '.') out[0] = '_';
}

static long sweep_params_of(const cfg_t *c);

/* Every run of the grid (or of the sample), each run's config loaded and
 * validated exactly as its child will load it: a bad value or combination
 * is named before anything runs. */
static int sweep_plan(sweep_state *s) {
  const sweep_def *d = &s->d;
  long total = 1;
  for (int g = 0; g < d->n_grids; g++) {
    total *= s->n_vals[g];
    if (total > SWEEP_MAX_RUNS) return util_err("--grid: more than %d combinations", SWEEP_MAX_RUNS);
  }
  long n = d->random > 0 && d->random < total ? d->random : total;
  long *pick = util_malloc((size_t)total * sizeof *pick, "sweep runs"); /* (total) combination indices */
  if (!pick) return -1;
  for (long i = 0; i < total; i++) pick[i] = i;
  if (d->random > 0) { /* a seeded partial Fisher-Yates, then grid order */
    uint64_t x = (uint64_t)d->seed;
    for (long i = 0; i < n; i++) {
      long j = i + (long)(sweep_rand(&x) % (uint64_t)(total - i));
      long t = pick[i];
      pick[i] = pick[j];
      pick[j] = t;
    }
    qsort(pick, (size_t)n, sizeof *pick, sweep_cmp_long);
  }
  s->runs = util_calloc((size_t)n, sizeof *s->runs, "sweep runs");
  if (!s->runs) {
    free(pick);
    return -1;
  }
  s->n_runs = (int)n;
  const char *sets[SWEEP_MAX_SETS + SWEEP_MAX_GRIDS];
  int rc = 0;
  for (int i = 0; i < s->n_runs && !rc; i++) {
    sweep_one *r = &s->runs[i];
    long k = pick[i];
    int ns = 0;
    for (int j = 0; j < d->n_sets; j++) sets[ns++] = d->sets[j];
    /* the last grid varies fastest */
    size_t o = 0;
    for (int g = d->n_grids - 1; g >= 0; g--) {
      snprintf(r->sets[g], sizeof r->sets[g], "%s=%s", s->fields[g], s->vals[g][k % s->n_vals[g]]);
      k /= s->n_vals[g];
    }
    for (int g = 0; g < d->n_grids; g++) {
      sets[ns++] = r->sets[g];
      o += (size_t)snprintf(r->name + o, sizeof r->name - o, "%s%s", g ? " " : "", r->sets[g]);
    }
    sweep_dirname(s, r, r->dir, sizeof r->dir);
    for (int j = 0; j < i; j++)
      if (!strcmp(s->runs[j].dir, r->dir)) {
        rc = util_err("--grid: runs '%s' and '%s' would share the directory %s; use values that differ in letters or "
                      "digits", s->runs[j].name, r->name, r->dir);
        break;
      }
    cfg_t c;
    if (rc) break;
    if (cfg_load_file_set(d->config, sets, ns, &c)) {
      rc = util_err("run '%s': %s", r->name, util_errmsg());
      break;
    }
    for (int g = 0; g < d->n_grids && !rc; g++) rc = cfg_field_json(&c, s->fields[g], r->values[g], sizeof r->values[g]);
    r->final_step = d->steps > 0 ? d->steps : c.train.steps;
    r->tokens_per_step = (long)cfg_tokens_per_step(&c.train);
    r->params = r->tps = r->step_ms = r->val = r->wall_s = NAN;
  }
  free(pick);
  return rc;
}

/* ---- the runs' numbers, from their directories ------------------------- */

/* Parameters of a model: gen/shapes.lua's count (no padding), -1 on error. */
static long sweep_params_of(const cfg_t *c) {
  size_t n;
  return gen_n_params(c, NULL, &n) ? -1 : (long)n;
}

static int sweep_cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* Status from the run's last checkpoint; parameters from the config it
 * stores (the vocabulary is known there); tokens/s (the median over its
 * steps), step time and the final val loss from its log.jsonl. */
static void sweep_collect(const sweep_state *s, sweep_one *r) {
  char path[PATH_MAX];
  r->params = r->tps = r->step_ms = r->val = NAN;
  r->val_full = 0;
  ckpt_meta meta;
  if (!util_path(path, sizeof path, "%s/%s/last.safetensors", s->d.dir, r->dir) && util_file_exists(path) &&
      ckpt_load_meta(path, &meta) == 0) {
    if ((long)meta.step >= r->final_step) r->status = SWEEP_DONE;
    else if (r->status == SWEEP_DONE) r->status = SWEEP_PENDING;
    cfg_t c;
    if (cfg_load_data(meta.config_src, path, &c) == 0) {
      long p = sweep_params_of(&c);
      if (p > 0) r->params = (double)p;
    }
    ckpt_meta_free(&meta);
  } else if (r->status == SWEEP_DONE) {
    r->status = SWEEP_PENDING;
  }
  /* the log through the one log.jsonl reader (plot.h) */
  plot_run lg;
  memset(&lg, 0, sizeof lg);
  if (util_path(path, sizeof path, "%s/%s", s->d.dir, r->dir) || plot_run_load(path, &lg)) {
    util_errclear();
    return;
  }
  size_t n_tps = 0;
  double *tps = util_malloc((lg.n ? lg.n : 1) * sizeof *tps, "tokens/s"); /* (n_tps) tokens_per_s of each step line */
  for (size_t i = 0; i < lg.n && tps; i++) {
    if (!isnan(lg.tps[i]) && !isnan(lg.loss[i])) tps[n_tps++] = lg.tps[i];
    if (!isnan(lg.val_full[i])) r->val = lg.val_full[i], r->val_full = 1;
    else if (!isnan(lg.val[i]) && !r->val_full) r->val = lg.val[i];
  }
  util_errclear();
  if (n_tps) {
    qsort(tps, n_tps, sizeof *tps, sweep_cmp_double);
    r->tps = tps[n_tps / 2];
    if (r->tps > 0) r->step_ms = 1000.0 * (double)r->tokens_per_step / r->tps;
  }
  free(tps);
  plot_run_free(&lg);
}

/* ---- sweep.json and sweep.md -------------------------------------------- */

static int sweep_jnum(util_buf *b, const char *key, double x) {
  if (isnan(x)) return 0;
  return util_buf_printf(b, ",\"%s\":", key) || json_write_num(b, x, key);
}

static int sweep_jstrs(util_buf *b, const char *key, const char *const *v, int n) {
  int rc = util_buf_printf(b, ",\"%s\":[", key);
  for (int i = 0; i < n && !rc; i++)
    rc = (i && util_buf_add(b, ",", 1)) || json_write_str(b, v[i], strlen(v[i]), key);
  return rc || util_buf_add(b, "]", 1);
}

static int sweep_write_json(const sweep_state *s) {
  const sweep_def *d = &s->d;
  util_buf b = {0};
  const char *fields[SWEEP_MAX_GRIDS];
  for (int g = 0; g < d->n_grids; g++) fields[g] = s->fields[g];
  int rc = util_buf_add(&b, "{\"config\":", 10) || json_write_str(&b, d->config, strlen(d->config), "--config") ||
           sweep_jstrs(&b, "fields", fields, d->n_grids) || sweep_jstrs(&b, "grid", d->grids, d->n_grids) ||
           sweep_jstrs(&b, "set", d->sets, d->n_sets) ||
           util_buf_printf(&b, ",\"steps\":%ld,\"random\":%ld,\"seed\":%ld,\"runs\":[", d->steps, d->random, d->seed);
  for (int i = 0; i < s->n_runs && !rc; i++) {
    const sweep_one *r = &s->runs[i];
    rc = util_buf_printf(&b, "%s{\"name\":", i ? "," : "") ||
         json_write_str(&b, r->name, strlen(r->name), "run name") || util_buf_add(&b, ",\"dir\":", 7) ||
         json_write_str(&b, r->dir, strlen(r->dir), "run dir") || util_buf_add(&b, ",\"values\":{", 11);
    for (int g = 0; g < d->n_grids && !rc; g++)
      rc = (g && util_buf_add(&b, ",", 1)) || json_write_str(&b, s->fields[g], strlen(s->fields[g]), "field") ||
           util_buf_printf(&b, ":%s", r->values[g]);
    rc = rc || util_buf_printf(&b, "},\"status\":\"%s\"", sweep_status_name[r->status]) ||
         (!isnan(r->params) && util_buf_printf(&b, ",\"params\":%.0f", r->params)) || sweep_jnum(&b, "tokens_per_s", r->tps) ||
         sweep_jnum(&b, "step_ms", r->step_ms) || (r->val_full && sweep_jnum(&b, "val_loss_full", r->val)) ||
         (!r->val_full && sweep_jnum(&b, "val_loss", r->val)) || sweep_jnum(&b, "wall_s", r->wall_s) ||
         util_buf_add(&b, "}", 1);
  }
  rc = rc || util_buf_add(&b, "]}\n", 3);
  char path[PATH_MAX];
  if (!rc && util_path(path, sizeof path, "%s/sweep.json", d->dir)) rc = -1;
  if (!rc) rc = util_write_file_atomic(path, b.data, b.len);
  util_buf_free(&b);
  return rc;
}

/* Order of the table: finished runs by val loss, best first; then the rest
 * in grid order. */
static const sweep_state *sweep_sort_state;
static int sweep_cmp_runs(const void *a, const void *b) {
  const sweep_one *x = &sweep_sort_state->runs[*(const int *)a], *y = &sweep_sort_state->runs[*(const int *)b];
  int fx = x->status == SWEEP_DONE && !isnan(x->val), fy = y->status == SWEEP_DONE && !isnan(y->val);
  if (fx != fy) return fy - fx;
  if (fx && x->val != y->val) return x->val < y->val ? -1 : 1;
  return (x > y) - (x < y);
}

static void sweep_cell(util_buf *b, const char *fmt, double x) {
  if (isnan(x)) util_buf_printf(b, " - |");
  else util_buf_printf(b, fmt, x);
}

static int sweep_write_md(const sweep_state *s) {
  const sweep_def *d = &s->d;
  util_buf b = {0};
  util_buf_printf(&b, "# sweep of %s\n\n", d->config);
  for (int g = 0; g < d->n_grids; g++) util_buf_printf(&b, "%s`--grid %s`", g ? " " : "", d->grids[g]);
  for (int i = 0; i < d->n_sets; i++) util_buf_printf(&b, " `--set %s`", d->sets[i]);
  if (d->steps) util_buf_printf(&b, " `--steps %ld`", d->steps);
  if (d->random) util_buf_printf(&b, " `--random %ld --seed %ld`", d->random, d->seed);
  util_buf_printf(&b, "\n\n|");
  for (int g = 0; g < d->n_grids; g++) util_buf_printf(&b, " %s |", s->fields[g]);
  util_buf_printf(&b, " parameters | tokens/s | step ms | val loss | wall s | status |\n|");
  for (int g = 0; g < d->n_grids + 6; g++) util_buf_printf(&b, " --- |");
  util_buf_printf(&b, "\n");
  int *order = util_malloc((size_t)s->n_runs * sizeof *order, "sweep table"); /* (n_runs) run indices */
  if (!order) {
    util_buf_free(&b);
    return -1;
  }
  for (int i = 0; i < s->n_runs; i++) order[i] = i;
  sweep_sort_state = s;
  qsort(order, (size_t)s->n_runs, sizeof *order, sweep_cmp_runs);
  int partial = 0;
  for (int i = 0; i < s->n_runs; i++) {
    const sweep_one *r = &s->runs[order[i]];
    util_buf_printf(&b, "|");
    for (int g = 0; g < d->n_grids; g++) util_buf_printf(&b, " %s |", strchr(r->sets[g], '=') + 1);
    sweep_cell(&b, " %.0f |", r->params);
    sweep_cell(&b, " %.0f |", r->tps);
    sweep_cell(&b, " %.2f |", r->step_ms);
    if (isnan(r->val)) util_buf_printf(&b, " - |");
    else util_buf_printf(&b, " %.4f%s |", r->val, r->val_full ? "" : "*");
    partial |= !isnan(r->val) && !r->val_full;
    sweep_cell(&b, " %.1f |", r->wall_s);
    util_buf_printf(&b, " %s |\n", sweep_status_name[r->status]);
  }
  free(order);
  if (partial)
    util_buf_printf(&b, "\n\\* the run's last `val_loss` (train.eval_steps batches): its log has no whole-split "
                        "`val_loss_full`.\n");
  util_buf_printf(&b, "\ntokens/s: the median over the run's steps; step ms: tokens per step / that.\n");
  char path[PATH_MAX];
  int rc = b.data ? 0 : util_err("sweep.md: out of memory");
  if (!rc && util_path(path, sizeof path, "%s/sweep.md", d->dir)) rc = -1;
  if (!rc) rc = util_write_file_atomic(path, b.data, b.len);
  util_buf_free(&b);
  return rc;
}

int sweep_draw(const char *dir) {
  /* the chart is a view of sweep.json: one that cannot be drawn (a run's log
   * unreadable mid-write) must not stop the runs, so it is a warning here and
   * --report draws it again */
  if (plot_sweep_svg(dir) == 0) return 0;
  fprintf(stderr, "gptc sweep: warning: %s/sweep.svg not drawn: %s\n", dir, util_errmsg());
  util_errclear();
  return 0;
}

static int sweep_write(const sweep_state *s) {
  return sweep_write_json(s) || sweep_write_md(s) || sweep_draw(s->d.dir) ? -1 : 0;
}

/* ---- a stored definition ------------------------------------------------ */

static int sweep_same_strs(const json_val *v, const char *const *want, int n) {
  if (!v || v->type != JSON_ARR || (int)v->len != n) return 0;
  for (int i = 0; i < n; i++)
    if (v->items[i].type != JSON_STR || strcmp(v->items[i].str, want[i])) return 0;
  return 1;
}

static long sweep_jlong(const json_val *v, const char *key) {
  const json_val *x = json_get(v, key);
  return x && x->type == JSON_NUM && x->is_int ? (long)x->i : -1;
}

/* Reads DIR/sweep.json (NULL when there is none: *absent = 1). */
static json_val *sweep_read_json(const char *dir, int *absent) {
  char path[PATH_MAX];
  *absent = 0;
  if (util_path(path, sizeof path, "%s/sweep.json", dir)) return NULL;
  if (!util_file_exists(path)) {
    *absent = 1;
    return NULL;
  }
  char *data;
  size_t len;
  if (util_read_file(path, &data, &len)) return NULL;
  json_val *v = json_parse(data, len, path);
  free(data);
  if (v && v->type != JSON_OBJ) {
    json_free(v);
    util_err("%s: not a sweep.json (not an object)", path);
    return NULL;
  }
  return v;
}

/* A sweep DIR holds one sweep: another config or grid is refused, naming
 * what differs. Wall times of earlier sessions carry over. */
static int sweep_check_same(sweep_state *s, const json_val *old) {
  const sweep_def *d = &s->d;
  const json_val *c = json_get(old, "config");
  const char *what = NULL;
  if (!c || c->type != JSON_STR || strcmp(c->str, d->config)) what = "--config";
  else if (!sweep_same_strs(json_get(old, "grid"), d->grids, d->n_grids)) what = "--grid";
  else if (!sweep_same_strs(json_get(old, "set"), d->sets, d->n_sets)) what = "--set";
  else if (sweep_jlong(old, "steps") != d->steps) what = "--steps";
  else if (sweep_jlong(old, "random") != d->random || sweep_jlong(old, "seed") != d->seed) what = "--random/--seed";
  if (what)
    return util_err("%s/sweep.json: this directory holds another sweep (its %s differs); rerun it as it was "
                    "(gptc sweep --report %s shows it) or choose another --out", d->dir, what, d->dir);
  const json_val *runs = json_get(old, "runs");
  for (size_t i = 0; runs && runs->type == JSON_ARR && i < runs->len; i++) {
    const json_val *dir = json_get(&runs->items[i], "dir"), *w = json_get(&runs->items[i], "wall_s"),
                   *st = json_get(&runs->items[i], "status");
    if (!dir || dir->type != JSON_STR) continue;
    for (int k = 0; k < s->n_runs; k++) {
      if (strcmp(s->runs[k].dir, dir->str)) continue;
      if (w && w->type == JSON_NUM) s->runs[k].wall_s = w->num;
      if (st && st->type == JSON_STR && !strcmp(st->str, "failed")) s->runs[k].status = SWEEP_FAILED;
    }
  }
  return 0;
}

/* ---- running ------------------------------------------------------------- */

static volatile sig_atomic_t sweep_stop, sweep_child;

/* Ctrl-C or SIGTERM: the child (which saves and exits) gets it too, then
 * the sweep writes its tables and stops. */
static void sweep_on_signal(int sig) {
  sweep_stop = sig;
  if (sweep_child > 0) kill((pid_t)sweep_child, sig);
}

/* What the progress line needs while a run trains: where it is in the
 * sweep and how long the finished runs took. */
typedef struct {
  int index, n_runs;  /* this run is index + 1 of n_runs */
  int left_after;     /* runs still to train after this one */
  double avg_run_s;   /* mean wall time of the runs finished in this sweep (0: none yet) */
  int tty;            /* stdout is a terminal: one line rewritten in place */
} sweep_progress;

/* The last step the run has logged (its RUN/log.jsonl's last complete step
 * line; 0 when none): read from the file's tail only, so a long run's log
 * costs the same as a short one's. */
static long sweep_logged_step(const char *path) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  char buf[4096 + 1];
  off_t size = lseek(fd, 0, SEEK_END), at = size > 4096 ? size - 4096 : 0;
  ssize_t n = size > 0 ? pread(fd, buf, (size_t)(size - at), at) : 0;
  close(fd);
  if (n <= 0) return 0;
  buf[n] = 0;
  long step = 0;
  /* complete lines only: a line is complete when its newline is there */
  for (char *line = buf, *nl; (nl = strchr(line, '\n')) != NULL; line = nl + 1) {
    long st;
    if (sscanf(line, "{\"step\":%ld", &st) == 1) step = st;
  }
  return step;
}

/* One progress line for the run that trains: its step, its ETA from its own
 * rate so far, and the sweep's (this run's rest plus the runs after it at
 * the finished runs' mean, or at this run's projected time before any run
 * finished). */
static void sweep_show(const sweep_progress *p, const sweep_one *r, long step0, long step, double elapsed) {
  char eta_run[32] = "--", eta_all[32] = "--";
  if (step > step0 && elapsed > 0 && r->final_step > 0) {
    double per = elapsed / (double)(step - step0), rest = per * (double)(r->final_step - step);
    double whole = per * (double)(r->final_step - step0);
    train_fmt_eta(rest, eta_run, sizeof eta_run);
    train_fmt_eta(rest + p->left_after * (p->avg_run_s > 0 ? p->avg_run_s : whole), eta_all, sizeof eta_all);
  }
  printf("%ssweep: run %d/%d %s: step %ld/%ld | run ETA %s | sweep ETA %s%s", p->tty ? "\r" : "", p->index + 1,
         p->n_runs, r->name, step, r->final_step, eta_run, eta_all, p->tty ? "   " : "\n");
  fflush(stdout);
}

/* Trains one run: `gptc train` (this binary) with the sweep's and the run's
 * --set, its output appended to RUN/train.out. Returns the exit status. */
static int sweep_child_run(const sweep_state *s, const sweep_one *r, int resume, const sweep_progress *p,
                           int *status) {
  const sweep_def *d = &s->d;
  char out[PATH_MAX], log[PATH_MAX], steps[32], threads[32];
  if (util_path(out, sizeof out, "%s/%s", d->dir, r->dir) || util_mkdir_p(out) ||
      util_path(log, sizeof log, "%s/train.out", out))
    return -1;
  const char *argv[16 + 2 * (SWEEP_MAX_SETS + SWEEP_MAX_GRIDS)];
  int n = 0;
  argv[n++] = "gptc";
  argv[n++] = "train";
  argv[n++] = "--config";
  argv[n++] = d->config;
  for (int i = 0; i < d->n_sets; i++) argv[n++] = "--set", argv[n++] = d->sets[i];
  for (int g = 0; g < d->n_grids; g++) argv[n++] = "--set", argv[n++] = r->sets[g];
  argv[n++] = "--out";
  argv[n++] = out;
  if (d->steps) {
    snprintf(steps, sizeof steps, "%ld", d->steps);
    argv[n++] = "--steps", argv[n++] = steps;
  }
  if (d->threads) {
    snprintf(threads, sizeof threads, "%ld", d->threads);
    argv[n++] = "--threads", argv[n++] = threads;
  }
  argv[n++] = "--quiet";
  if (resume) argv[n++] = "--resume";
  argv[n] = NULL;
  int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) return util_err("%s: %s", log, strerror(errno));
  fflush(NULL);
  pid_t pid = fork();
  if (pid < 0) {
    close(fd);
    return util_err("cannot start a training run: fork: %s", strerror(errno));
  }
  if (pid == 0) {
    /* a sweep killed outright takes its run with it (the run saves on SIGTERM) */
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    dup2(fd, 1);
    dup2(fd, 2);
    execv("/proc/self/exe", (char *const *)argv);
    dprintf(2, "gptc sweep: cannot run /proc/self/exe: %s\n", strerror(errno));
    _exit(127);
  }
  close(fd);
  sweep_child = pid;
  /* wait, showing the run's progress from its log: every 2 s on a terminal
   * (rewritten in place); into a file, once per tenth of the run's steps */
  char logp[PATH_MAX];
  int have_log = !util_path(logp, sizeof logp, "%s/log.jsonl", out);
  long step0 = have_log && resume ? sweep_logged_step(logp) : 0, shown = -1, shown_tenth = 0, first = -1;
  double last_show = util_now(), t_first = 0;
  int st;
  for (;;) {
    pid_t w = waitpid(pid, &st, WNOHANG);
    if (w == pid) break;
    if (w < 0 && errno != EINTR) {
      sweep_child = 0;
      return util_err("waiting for run %s: %s", r->name, strerror(errno));
    }
    struct timespec ts = {0, 200 * 1000 * 1000};
    nanosleep(&ts, NULL); /* a signal cuts it short: it reaches the child through sweep_on_signal */
    double now = util_now();
    if (!have_log || (p->tty && now - last_show < 2.0)) continue;
    long step = sweep_logged_step(logp);
    long tenth = r->final_step > 0 ? step * 10 / r->final_step : 0;
    /* the rate is measured from the first step seen, not from the start
     * (compiling and tokenizing are no steps) */
    if (step > step0 && first < 0) first = step, t_first = now;
    if (step > step0 && step != shown && (p->tty || tenth > shown_tenth)) {
      sweep_show(p, r, first, step, now - t_first);
      shown = step, shown_tenth = tenth, last_show = now;
    }
  }
  if (p->tty && shown >= 0) printf("\n");
  sweep_child = 0;
  *status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  return 0;
}

/* The last line of RUN/train.out, for the message of a failed run. */
static void sweep_last_line(const char *dir, const sweep_one *r, char *out, size_t cap) {
  char path[PATH_MAX], *data;
  size_t len;
  out[0] = '\0';
  if (util_path(path, sizeof path, "%s/%s/train.out", dir, r->dir) || util_read_file(path, &data, &len)) {
    util_errclear();
    return;
  }
  while (len && data[len - 1] == '\n') len--;
  size_t start = len;
  while (start && data[start - 1] != '\n') start--;
  snprintf(out, cap, "%.*s", (int)(len - start), data + start);
  free(data);
}

static int sweep_load(sweep_state *s, int check_old) {
  if (sweep_parse_grids(s) || sweep_plan(s)) return -1;
  int absent;
  json_val *old = sweep_read_json(s->d.dir, &absent);
  if (!old && !absent) return -1;
  int rc = old && check_old ? sweep_check_same(s, old) : 0;
  json_free(old);
  for (int i = 0; i < s->n_runs && !rc; i++) sweep_collect(s, &s->runs[i]);
  return rc;
}

int sweep_run(const sweep_def *def) {
  sweep_state s;
  memset(&s, 0, sizeof s);
  s.d = *def;
  /* every run checked before the directory is made */
  if (sweep_load(&s, 1) || util_mkdir_p(s.d.dir)) {
    sweep_free(&s);
    return -1;
  }
  /* one sweep per directory at a time */
  int lock = util_lock_dir(s.d.dir, "gptc sweep");
  if (lock < 0) {
    sweep_free(&s);
    return -1;
  }
  struct sigaction sa, old_int, old_term;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = sweep_on_signal; /* no SA_RESTART: waitpid returns EINTR, and waits again */
  sigaction(SIGINT, &sa, &old_int);
  sigaction(SIGTERM, &sa, &old_term);
  sweep_stop = 0;
  int todo = 0, done_now = 0, failed = 0, rc = sweep_write(&s);
  for (int i = 0; i < s.n_runs; i++) todo += s.runs[i].status != SWEEP_DONE;
  double spent = 0;
  for (int i = 0; i < s.n_runs && !rc && !sweep_stop; i++) {
    sweep_one *r = &s.runs[i];
    if (r->status == SWEEP_DONE) {
      printf("sweep: run %d/%d %s: done already, skipped\n", i + 1, s.n_runs, r->name);
      continue;
    }
    char path[PATH_MAX];
    int resume = !util_path(path, sizeof path, "%s/%s/last.safetensors", s.d.dir, r->dir) && util_file_exists(path);
    char eta_run[32] = "--", eta_all[32] = "--";
    if (done_now) {
      train_fmt_eta(spent / done_now, eta_run, sizeof eta_run);
      train_fmt_eta(spent / done_now * (todo - done_now), eta_all, sizeof eta_all);
    }
    printf("sweep: run %d/%d %s: %s | run ETA %s | sweep ETA %s\n", i + 1, s.n_runs, r->name,
           resume ? "resuming" : "training", eta_run, eta_all);
    fflush(stdout);
    r->status = SWEEP_RUNNING;
    if ((rc = sweep_write(&s))) break;
    double t0 = util_now();
    int status = 0;
    sweep_progress prog = {i, s.n_runs, todo - done_now - failed - 1, done_now ? spent / done_now : 0,
                           isatty(STDOUT_FILENO)};
    if ((rc = sweep_child_run(&s, r, resume, &prog, &status))) break;
    double dt = util_now() - t0;
    r->wall_s = (isnan(r->wall_s) ? 0 : r->wall_s) + dt;
    r->status = SWEEP_PENDING;
    sweep_collect(&s, r);
    if (status != 0) {
      char last[512];
      sweep_last_line(s.d.dir, r, last, sizeof last);
      r->status = SWEEP_FAILED;
      failed++;
      printf("sweep: run %d/%d %s failed (exit %d): %s (see %s/%s/train.out)\n", i + 1, s.n_runs, r->name, status,
             last, s.d.dir, r->dir);
    } else if (r->status == SWEEP_DONE) {
      spent += dt, done_now++;
      printf("sweep: run %d/%d %s: done in %.1f s, val %.4f\n", i + 1, s.n_runs, r->name, dt, r->val);
    }
    fflush(stdout);
    if (sweep_write(&s)) rc = -1;
  }
  sigaction(SIGINT, &old_int, NULL);
  sigaction(SIGTERM, &old_term, NULL);
  if (!rc && sweep_write(&s)) rc = -1;
  if (!rc && sweep_stop)
    rc = util_err("sweep stopped by signal %d; rerun the same command to continue (finished runs are kept)",
                  (int)sweep_stop);
  else if (!rc && failed)
    rc = util_err("%d of %d runs failed (their train.out says why; rerunning the sweep retries them)", failed,
                  s.n_runs);
  if (!rc) printf("sweep: %d runs done; %s/sweep.md\n", s.n_runs, s.d.dir);
  close(lock);
  sweep_free(&s);
  return rc;
}

int sweep_report(const char *dir) {
  int absent;
  json_val *old = sweep_read_json(dir, &absent);
  if (!old) return absent ? util_err("%s/sweep.json: no sweep in this directory", dir) : -1;
  /* a running sweep rewrites the same files */
  int lock = util_lock_dir(dir, "gptc sweep");
  if (lock < 0) {
    json_free(old);
    return -1;
  }
  sweep_state s;
  memset(&s, 0, sizeof s);
  s.d.dir = dir;
  const json_val *c = json_get(old, "config"), *grid = json_get(old, "grid"), *set = json_get(old, "set");
  int bad = !c || c->type != JSON_STR || !grid || grid->type != JSON_ARR || grid->len > SWEEP_MAX_GRIDS || !set ||
            set->type != JSON_ARR || set->len > SWEEP_MAX_SETS;
  for (size_t i = 0; !bad && i < grid->len; i++) bad = grid->items[i].type != JSON_STR;
  for (size_t i = 0; !bad && i < set->len; i++) bad = set->items[i].type != JSON_STR;
  if (bad) {
    json_free(old);
    return util_err("%s/sweep.json: no sweep definition (fields config, grid, set)", dir);
  }
  s.d.config = c->str;
  for (size_t i = 0; i < grid->len; i++) s.d.grids[s.d.n_grids++] = grid->items[i].str;
  for (size_t i = 0; i < set->len; i++) s.d.sets[s.d.n_sets++] = set->items[i].str;
  s.d.steps = sweep_jlong(old, "steps");
  s.d.random = sweep_jlong(old, "random");
  s.d.seed = sweep_jlong(old, "seed");
  int rc = s.d.steps < 0 || s.d.random < 0 ? util_err("%s/sweep.json: steps, random and seed must be integers", dir)
                                            : 0;
  if (!rc) rc = sweep_parse_grids(&s) || sweep_plan(&s) || sweep_check_same(&s, old) ? -1 : 0;
  for (int i = 0; i < s.n_runs && !rc; i++) sweep_collect(&s, &s.runs[i]);
  /* --report is asked for the chart: here a chart that fails is an error */
  if (!rc) rc = sweep_write_json(&s) || sweep_write_md(&s) || plot_sweep_svg(s.d.dir) ? -1 : 0;
  if (!rc) printf("%s/sweep.md\n%s/sweep.json\n%s/sweep.svg\n", dir, dir, dir);
  close(lock);
  sweep_free(&s);
  json_free(old);
  return rc;
}
