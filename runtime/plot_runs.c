/* plot_runs: run directories and sweep.json read into plot panels.
 *
 * A run is what `gptc train` leaves in its directory: log.jsonl (one JSON
 * object per step, written by train_log_step) and last.safetensors (whose
 * stored config names the run and sizes its steps). The tokens axis is
 * step * tokens_per_step and the time axis the running sum of the steps'
 * times, tokens_per_step / tokens_per_s, both from the stored config's
 * batch_size * max_length * grad_accum: nothing new is logged for them, and
 * evaluation and checkpoint time are left out of the time axis. */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cfg.h"
#include "ckpt.h"
#include "json.h"
#include "plot.h"
#include "util.h"

/* the directory's last path component, for a run with no checkpoint */
static void plot_basename(const char *dir, char *out, size_t cap) {
  size_t n = strlen(dir);
  while (n > 1 && dir[n - 1] == '/') n--;
  size_t s = n;
  while (s > 0 && dir[s - 1] != '/') s--;
  snprintf(out, cap, "%.*s", (int)(n - s), dir + s);
}

/* name, config hash and tokens per step from DIR/last.safetensors, when it
 * is there and reads; else the directory's name and no tokens per step */
static void plot_run_meta(const char *dir, plot_run *r) {
  char path[PATH_MAX];
  plot_basename(dir, r->name, sizeof r->name);
  if (util_path(path, sizeof path, "%s/last.safetensors", dir) || !util_file_exists(path)) {
    util_errclear();
    return;
  }
  ckpt_meta meta;
  if (ckpt_load_meta(path, &meta)) {
    util_errclear();
    return;
  }
  cfg_t cfg;
  if (!cfg_load_data(meta.config_src, path, &cfg)) {
    snprintf(r->name, sizeof r->name, "%s", cfg.name);
    r->tokens_per_step = (double)cfg_tokens_per_step(&cfg.train);
  }
  char hex[65];
  util_sha256_hex(meta.config_src, strlen(meta.config_src), hex);
  snprintf(r->hash, sizeof r->hash, "%.12s", hex);
  ckpt_meta_free(&meta);
  util_errclear();
}

/* field `key` of a log line: NaN when absent, -1 when not a number */
static int plot_field(const json_val *o, const char *key, double *out, const char *where, size_t line) {
  const json_val *v = json_get(o, key);
  *out = NAN;
  if (!v) return 0;
  if (v->type != JSON_NUM)
    return util_err("%s line %zu: field \"%s\" must be a number, not %s", where, line, key, json_type_name(v->type));
  *out = v->num;
  return 0;
}

static int plot_run_grow(plot_run *r, size_t cap) {
  double **cols[] = {&r->step, &r->loss, &r->val, &r->val_full, &r->tps};
  for (size_t i = 0; i < sizeof cols / sizeof *cols; i++) {
    double *p = util_realloc(*cols[i], cap * sizeof(double), "run log");
    if (!p) return -1;
    *cols[i] = p;
  }
  return 0;
}

int plot_run_load(const char *dir, plot_run *r) {
  memset(r, 0, sizeof *r);
  char path[PATH_MAX];
  if (!util_is_dir(dir)) {
    if (util_file_exists(dir)) return util_err("%s: not a run directory (a file; expected a directory from gptc train)", dir);
    return util_err("%s: no such run directory", dir);
  }
  if (util_path(path, sizeof path, "%s/log.jsonl", dir)) return -1;
  if (!util_file_exists(path))
    return util_err("%s: not a run directory (no log.jsonl; expected a directory from gptc train)", dir);
  char *data;
  size_t len;
  if (util_read_file(path, &data, &len)) return -1;
  if (len == 0) {
    free(data);
    return util_err("%s: empty (no step logged yet)", path);
  }
  int rc = -1;
  size_t cap = 0, lineno = 0;
  char *line = data;
  while (line < data + len) {
    char *nl = memchr(line, '\n', (size_t)(data + len - line));
    lineno++;
    if (!nl) { /* a killed run's last, partial line: the complete lines stand */
      for (char *c = line; c < data + len; c++)
        if (*c != ' ' && *c != '\t' && *c != '\r') r->truncated = 1;
      break;
    }
    size_t n = (size_t)(nl - line);
    char *next = nl + 1;
    if (n == 0) {
      line = next;
      continue;
    }
    char where[PATH_MAX + 32];
    snprintf(where, sizeof where, "%s line %zu", path, lineno);
    json_val *v = json_parse(line, n, where);
    if (!v) goto out;
    if (v->type != JSON_OBJ) {
      json_free(v);
      util_err("%s line %zu: not a JSON object (a log line is {\"step\":N,...})", path, lineno);
      goto out;
    }
    /* a record that is not a step (a resume's "resume_set" changes) is no point */
    if (json_get(v, "resume_set")) {
      json_free(v);
      line = next;
      continue;
    }
    if (r->n == cap) {
      cap = cap ? cap * 2 : 256;
      if (plot_run_grow(r, cap)) {
        json_free(v);
        goto out;
      }
    }
    size_t i = r->n;
    int bad = plot_field(v, "step", &r->step[i], path, lineno) || plot_field(v, "loss", &r->loss[i], path, lineno) ||
              plot_field(v, "val_loss", &r->val[i], path, lineno) ||
              plot_field(v, "val_loss_full", &r->val_full[i], path, lineno) ||
              plot_field(v, "tokens_per_s", &r->tps[i], path, lineno);
    json_free(v);
    if (bad) goto out;
    if (isnan(r->step[i])) {
      util_err("%s line %zu: no \"step\" field (a log line is {\"step\":N,...})", path, lineno);
      goto out;
    }
    r->n++;
    line = next;
  }
  if (r->n == 0) {
    util_err("%s: no complete line (a run killed before its first step was logged?)", path);
    goto out;
  }
  plot_run_meta(dir, r);
  rc = 0;
out:
  free(data);
  if (rc) plot_run_free(r);
  return rc;
}

void plot_run_free(plot_run *r) {
  free(r->step);
  free(r->loss);
  free(r->val);
  free(r->val_full);
  free(r->tps);
  memset(r, 0, sizeof *r);
}

/* x of each log line for the chosen axis, into x[r->n] */
static int plot_run_x(const plot_run *r, const char *dir, int mode, double *x) {
  if (mode != PLOT_X_STEP && r->tokens_per_step <= 0)
    return util_err("%s: --x %s needs the run's last.safetensors (its config gives the tokens per step)", dir,
                    mode == PLOT_X_TOKENS ? "tokens" : "time");
  double t = 0;
  for (size_t i = 0; i < r->n; i++) {
    if (mode == PLOT_X_STEP) x[i] = r->step[i];
    else if (mode == PLOT_X_TOKENS) x[i] = r->step[i] * r->tokens_per_step;
    else if (r->tps[i] > 0 && isfinite(r->tps[i])) x[i] = t += r->tokens_per_step / r->tps[i];
    else x[i] = i > 0 && i + 1 == r->n ? t : NAN; /* a final line of its own (val_loss_full) sits at the end */
  }
  return 0;
}

/* The series of one run into p: raw train loss (faint), its EMA, periodic
 * val (line with dots) and the final full val (diamond), all in `color`. */
static int plot_add_run(plot_panel *p, const plot_run *r, const double *x, const char *label, int color, int smooth) {
  char name[PATH_MAX + 400];
  plot_series *raw = plot_panel_add(p, NULL, PLOT_FAINT, color);
  if (!raw) return -1;
  for (size_t i = 0; i < r->n; i++)
    if (!isnan(r->loss[i]) && plot_series_push(raw, x[i], r->loss[i])) return -1;
  if (smooth > 1) snprintf(name, sizeof name, "%s: train (EMA over %d steps)", label, smooth);
  else snprintf(name, sizeof name, "%s: train", label);
  plot_series *ema = plot_panel_add(p, name, PLOT_LINE, color);
  if (!ema) return -1;
  /* EMA with span `smooth` (weight 2/(smooth+1) on the newest step), divided
   * by its weights' sum so the first steps are not pulled toward zero */
  double a = smooth > 1 ? 2.0 / (smooth + 1.0) : 1.0, m = 0, wsum = 0;
  for (size_t i = 0; i < r->n; i++) {
    if (!isfinite(r->loss[i])) continue;
    m = (1 - a) * m + a * r->loss[i];
    wsum = (1 - a) * wsum + a;
    if (plot_series_push(ema, x[i], m / wsum)) return -1;
  }
  snprintf(name, sizeof name, "%s: val (periodic)", label);
  plot_series *val = plot_panel_add(p, name, PLOT_LINE_DOTS, color);
  if (!val) return -1;
  size_t n_full = 0;
  for (size_t i = 0; i < r->n; i++) {
    if (!isnan(r->val[i]) && plot_series_push(val, x[i], r->val[i])) return -1;
    n_full += !isnan(r->val_full[i]);
  }
  if (n_full) {
    snprintf(name, sizeof name, "%s: val (full split, final)", label);
    plot_series *full = plot_panel_add(p, name, PLOT_DIAMONDS, color);
    if (!full) return -1;
    for (size_t i = 0; i < r->n; i++)
      if (!isnan(r->val_full[i]) && plot_series_push(full, x[i], r->val_full[i])) return -1;
  }
  return 0;
}

static const char *plot_x_label(int mode) {
  return mode == PLOT_X_TOKENS ? "tokens trained" : mode == PLOT_X_TIME ? "training time, steps only (s)" : "step";
}

int plot_runs_svg(const char *const *dirs, int n_dirs, const char *out, const plot_opts *o) {
  plot_run *runs = util_calloc((size_t)(n_dirs > 0 ? n_dirs : 1), sizeof *runs, "runs");
  if (!runs) return -1;
  plot_panel p;
  int rc = -1, loaded = 0, panel = 0;
  double *x = NULL;
  for (; loaded < n_dirs; loaded++) {
    if (plot_run_load(dirs[loaded], &runs[loaded])) goto out;
    if (runs[loaded].truncated)
      fprintf(stderr, "gptc: warning: %s/log.jsonl: the last line is incomplete (a killed run?); plotting the %zu "
                      "complete lines\n", dirs[loaded], runs[loaded].n);
  }
  if (plot_panel_init(&p, o->log_y ? "loss (log scale)" : "loss", plot_x_label(o->x), "cross-entropy loss (nats)"))
    goto out;
  panel = 1;
  p.log_y = o->log_y;
  /* two runs that would read the same in the legend also get their directory */
  int same = 0;
  for (int i = 0; i < n_dirs; i++)
    for (int j = i + 1; j < n_dirs; j++)
      same |= !strcmp(runs[i].name, runs[j].name) && !strcmp(runs[i].hash, runs[j].hash);
  for (int i = 0; i < n_dirs; i++) {
    const plot_run *r = &runs[i];
    char label[PATH_MAX + 300];
    int k = snprintf(label, sizeof label, "%s", r->name);
    if (r->hash[0]) k += snprintf(label + k, sizeof label - (size_t)k, " %s", r->hash);
    if (same) snprintf(label + k, sizeof label - (size_t)k, " [%s]", dirs[i]);
    free(x);
    if (!(x = util_malloc(r->n * sizeof *x, "plot x")) || plot_run_x(r, dirs[i], o->x, x) ||
        plot_add_run(&p, r, x, label, i, o->smooth))
      goto out;
  }
  char title[PATH_MAX + 300];
  if (n_dirs == 1)
    snprintf(title, sizeof title, "%s%s%s (%s)", runs[0].name, runs[0].hash[0] ? " " : "", runs[0].hash, dirs[0]);
  else snprintf(title, sizeof title, "%d runs", n_dirs);
  rc = plot_svg_write(out, title, &p, 1, 1);
out:
  free(x);
  if (panel) plot_panel_free(&p);
  for (int i = 0; i < loaded && i < n_dirs; i++) plot_run_free(&runs[i]);
  free(runs);
  return rc;
}

void plot_train_update(const char *dir) {
  static char warned[PATH_MAX]; /* one warning per run directory, not one per evaluation */
  char out[PATH_MAX];
  plot_opts o = {PLOT_X_STEP, 0, 20};
  const char *dirs[] = {dir};
  if (util_path(out, sizeof out, "%s/loss.svg", dir) || plot_runs_svg(dirs, 1, out, &o)) {
    if (strcmp(warned, dir)) {
      fprintf(stderr, "gptc: warning: cannot draw %s/loss.svg (training goes on): %s\n", dir, util_errmsg());
      snprintf(warned, sizeof warned, "%s", dir);
    }
    util_errclear();
  }
}

/* ---- sweeps ---- */

/* a field's value as category text */
static void plot_value_text(const json_val *v, char *out, size_t cap) {
  if (!v) snprintf(out, cap, "(none)");
  else if (v->type == JSON_STR) snprintf(out, cap, "%s", v->str);
  else if (v->type == JSON_BOOL) snprintf(out, cap, "%s", v->boolean ? "true" : "false");
  else if (v->type == JSON_NUM) snprintf(out, cap, "%g", v->num);
  else snprintf(out, cap, "(%s)", json_type_name(v->type));
}

/* the panel of final full val loss against field `f` */
static int plot_sweep_field(plot_panel *p, const json_val *runs, const char *f) {
  char title[300];
  snprintf(title, sizeof title, "final val loss vs %s", f);
  if (plot_panel_init(p, title, f, "val loss (full split)")) return -1;
  int numeric = 1, positive = 1;
  double lo = INFINITY, hi = -INFINITY;
  for (size_t i = 0; i < runs->len; i++) {
    const json_val *v = json_get(json_get(&runs->items[i], "values"), f);
    if (!v) continue;
    if (v->type != JSON_NUM) numeric = 0;
    else {
      positive &= v->num > 0;
      lo = v->num < lo ? v->num : lo;
      hi = v->num > hi ? v->num : hi;
    }
  }
  p->log_x = numeric && positive && lo < hi && hi / lo >= 20; /* learning rates: decades apart */
  plot_series *s = plot_panel_add(p, "runs with a final val loss", PLOT_POINTS, 0);
  if (!s) return -1;
  for (size_t i = 0; i < runs->len; i++) {
    const json_val *run = &runs->items[i], *v = json_get(json_get(run, "values"), f);
    const json_val *loss = json_get(run, "val_loss_full");
    double x;
    if (numeric) x = v ? v->num : NAN;
    else {
      char text[300];
      plot_value_text(v, text, sizeof text);
      int c = plot_panel_cat(p, text);
      if (c < 0) return -1;
      x = c;
    }
    if (loss && loss->type == JSON_NUM && plot_series_push(s, x, loss->num)) return -1;
  }
  return 0;
}

int plot_sweep_svg(const char *sweep_dir) {
  char path[PATH_MAX], out[PATH_MAX];
  if (util_path(path, sizeof path, "%s/sweep.json", sweep_dir) ||
      util_path(out, sizeof out, "%s/sweep.svg", sweep_dir))
    return -1;
  char *text;
  size_t len;
  if (util_read_file(path, &text, &len)) return -1;
  json_val *doc = json_parse(text, len, path);
  free(text);
  if (!doc) return -1;
  int rc = -1, n_panels = 0;
  plot_panel *panels = NULL;
  const json_val *runs = json_get(doc, "runs"), *fields = json_get(doc, "fields");
  if (doc->type != JSON_OBJ) {
    util_err("%s: not a JSON object", path);
    goto out;
  }
  if (!runs || runs->type != JSON_ARR) {
    util_err("%s: field \"runs\" must be an array of runs", path);
    goto out;
  }
  if (fields && fields->type != JSON_ARR) {
    util_err("%s: field \"fields\" must be an array of field names", path);
    goto out;
  }
  size_t n_fields = fields ? fields->len : 0;
  for (size_t i = 0; i < n_fields; i++)
    if (fields->items[i].type != JSON_STR) {
      util_err("%s: fields[%zu] must be a string (a config field name)", path, i);
      goto out;
    }
  for (size_t i = 0; i < runs->len; i++) {
    const json_val *r = &runs->items[i], *name = json_get(r, "name"), *dir = json_get(r, "dir");
    if (r->type != JSON_OBJ || !name || name->type != JSON_STR || !dir || dir->type != JSON_STR) {
      util_err("%s: runs[%zu] must be an object with string fields \"name\" and \"dir\"", path, i);
      goto out;
    }
  }
  if (!(panels = util_calloc(1 + n_fields, sizeof *panels, "sweep panels"))) goto out;
  if (plot_panel_init(&panels[0], "val loss per run", "step", "val loss")) goto out;
  n_panels = 1;
  for (size_t i = 0; i < runs->len; i++) {
    const json_val *r = &runs->items[i], *st = json_get(r, "status");
    const char *name = json_get(r, "name")->str, *dir = json_get(r, "dir")->str;
    char run_dir[PATH_MAX], label[600];
    if (dir[0] == '/' ? util_path(run_dir, sizeof run_dir, "%s", dir)
                      : util_path(run_dir, sizeof run_dir, "%s/%s", sweep_dir, dir))
      goto out;
    snprintf(label, sizeof label, "%s%s%s%s", name, st && st->type == JSON_STR && strcmp(st->str, "done") ? " (" : "",
             st && st->type == JSON_STR && strcmp(st->str, "done") ? st->str : "",
             st && st->type == JSON_STR && strcmp(st->str, "done") ? ")" : "");
    plot_run run;
    if (plot_run_load(run_dir, &run)) { /* a pending run has no log yet: in the legend, without a curve */
      util_errclear();
      if (!plot_panel_add(&panels[0], label, PLOT_LINE_DOTS, (int)i)) goto out;
      continue;
    }
    plot_series *s = plot_panel_add(&panels[0], label, PLOT_LINE_DOTS, (int)i);
    int bad = !s;
    for (size_t j = 0; !bad && j < run.n; j++)
      if (!isnan(run.val[j])) bad = plot_series_push(s, run.step[j], run.val[j]) != 0;
    plot_series *full = bad ? NULL : plot_panel_add(&panels[0], NULL, PLOT_DIAMONDS, (int)i);
    bad |= !full;
    for (size_t j = 0; !bad && j < run.n; j++)
      if (!isnan(run.val_full[j])) bad = plot_series_push(full, run.step[j], run.val_full[j]) != 0;
    plot_run_free(&run);
    if (bad) goto out;
  }
  for (size_t f = 0; f < n_fields; f++) {
    int bad = plot_sweep_field(&panels[n_panels], runs, fields->items[f].str);
    n_panels++; /* freed at out either way: a failed init leaves it zeroed */
    if (bad) goto out;
  }
  const json_val *cfgp = json_get(doc, "config");
  char title[PATH_MAX + 64];
  snprintf(title, sizeof title, "sweep of %s: %zu runs", cfgp && cfgp->type == JSON_STR ? cfgp->str : sweep_dir,
           runs->len);
  rc = plot_svg_write(out, title, panels, n_panels, n_panels > 1 ? 2 : 1);
out:
  for (int i = 0; i < n_panels; i++) plot_panel_free(&panels[i]);
  free(panels);
  json_free(doc);
  return rc;
}
