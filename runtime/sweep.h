/* sweep: `gptc sweep`, a grid (or seeded random sample) of config overrides
 * trained one run after another, each run a normal training directory
 * under the sweep's DIR, trained by this same gptc binary as a child
 * process. DIR/sweep.json holds the sweep's definition and every run's
 * numbers; DIR/sweep.md the table, best first. Rerunning the same sweep
 * skips finished runs and resumes interrupted ones. docs/sweep.md. */
#ifndef GPTC_SWEEP_H
#define GPTC_SWEEP_H

#define SWEEP_MAX_GRIDS 8
#define SWEEP_MAX_VALUES 64
#define SWEEP_MAX_RUNS 4096
#define SWEEP_MAX_SETS 64

typedef struct {
  const char *config;                  /* --config FILE */
  const char *grids[SWEEP_MAX_GRIDS];  /* "FIELD=V1,V2,..." as given */
  int n_grids;
  const char *sets[SWEEP_MAX_SETS];    /* --set FIELD=VALUE, the same for every run */
  int n_sets;
  long steps;                          /* --steps N for every run; 0: each run's train.steps */
  long random;                         /* --random K: K seeded samples of the grid; 0: the whole grid */
  long seed;                           /* --seed S for --random */
  long threads;                        /* --threads for the runs; 0: the runs' default */
  const char *dir;                     /* --out DIR */
} sweep_def;

/* Checks the definition and every run's config, then trains the runs that
 * are not finished, writing sweep.json and sweep.md after each. Returns 0
 * when every run is done, -1 with util_err otherwise (a failed run, an
 * interrupted sweep: rerunning the same command continues). */
int sweep_run(const sweep_def *d);

/* Rebuilds DIR/sweep.json, sweep.md (and the chart) from DIR's run
 * directories and the definition in DIR/sweep.json. */
int sweep_report(const char *dir);

/* Draws DIR/sweep.svg from DIR/sweep.json (plot_sweep_svg) after each run; a
 * chart that cannot be drawn is a warning, never a stopped sweep. */
int sweep_draw(const char *dir);

#endif
