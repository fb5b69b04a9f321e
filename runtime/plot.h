/* plot: loss curves as self-contained SVG 1.1 (no scripts, no external
 * references, the style embedded), drawn by hand: plot_svg.c draws panels of
 * series, plot_runs.c reads run directories and sweep.json into them.
 *
 * Every series is one <path> whose vertices are its finite points in order
 * (NaN and inf are skipped, never printed; on a log axis so are values <= 0),
 * so a reader can count a series' points from its path. Markers sit on the
 * vertices through <marker> definitions; points-only series have no stroke. */
#ifndef GPTC_PLOT_H
#define GPTC_PLOT_H

#include <stddef.h>

#include "util.h"

enum {
  PLOT_LINE,       /* solid line */
  PLOT_FAINT,      /* thin, translucent line (raw values under a smoothed one) */
  PLOT_LINE_DOTS,  /* dashed line with a dot on every point */
  PLOT_POINTS,     /* a dot on every point, no line */
  PLOT_DIAMONDS,   /* a large diamond on every point, no line */
};

typedef struct {
  char *name;    /* legend and <title> text (escaped on output); NULL: not in the legend */
  int style;     /* PLOT_* */
  int color;     /* palette index (wraps) */
  double *x, *y; /* [n] each */
  size_t n, cap;
} plot_series;

typedef struct {
  char *title, *xlabel, *ylabel;
  int log_x, log_y;
  char **cats; /* [n_cats]: a categorical x axis (x values are indices 0..n_cats-1); NULL: numeric */
  int n_cats;
  plot_series *s; /* [n] */
  int n;
} plot_panel;

/* Building panels; every function returns -1 (or NULL) after util_err. */
int plot_panel_init(plot_panel *p, const char *title, const char *xlabel, const char *ylabel);
plot_series *plot_panel_add(plot_panel *p, const char *name, int style, int color);
int plot_series_push(plot_series *s, double x, double y);
/* The index of category `name` on p's x axis, added when new. */
int plot_panel_cat(plot_panel *p, const char *name);
void plot_panel_free(plot_panel *p);

/* Draws the panels in a grid of `cols` columns as one SVG document,
 * written atomically to `path`. */
int plot_svg_write(const char *path, const char *title, const plot_panel *panels, int n_panels, int cols);

/* XML text with & < > " ' escaped, control characters and invalid UTF-8 as
 * '?', appended to out. */
int plot_xml_escape(util_buf *out, const char *s);

/* ---- runs (plot_runs.c) ---- */

enum { PLOT_X_STEP, PLOT_X_TOKENS, PLOT_X_TIME };

typedef struct {
  int x;      /* PLOT_X_* */
  int log_y;
  int smooth; /* EMA span in logged steps; <= 1: no smoothing */
} plot_opts;

/* One run directory's log.jsonl, one entry per complete line; absent fields
 * are NaN. Name, config hash and tokens per step come from last.safetensors
 * when it is there (else the directory's last component, "", 0). */
typedef struct {
  char name[256];
  char hash[13];          /* first 12 hex digits of SHA-256(stored config source) */
  double tokens_per_step; /* batch_size * max_length * grad_accum; 0 when unknown */
  size_t n;
  double *step, *loss, *val, *val_full, *tps; /* [n] each */
  int truncated; /* the last line had no newline (a killed run) and was left out */
} plot_run;

/* -1 after util_err: not a directory, no log.jsonl (not a run), a log with no
 * complete line, a line that is not a JSON object with numeric step and loss. */
int plot_run_load(const char *dir, plot_run *r);
void plot_run_free(plot_run *r);

/* `gptc plot`: the runs overlaid into `out`. Warns on stderr once per
 * truncated log. */
int plot_runs_svg(const char *const *dirs, int n_dirs, const char *out, const plot_opts *o);

/* DIR/loss.svg for a training run, default options. Never fails: training
 * calls it after each evaluation's save; a failure prints one warning per
 * directory on stderr and clears the error. */
void plot_train_update(const char *dir);

/* DIR/sweep.svg from DIR/sweep.json (docs/plot.md has the format): val loss
 * per run against steps, then final val_loss_full against each varied field. */
int plot_sweep_svg(const char *sweep_dir);

#endif
