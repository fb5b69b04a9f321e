/* tune: `gptc tune`, the search for each GEMM instance's fastest schedule on
 * this host (gen/cpu/schedule.lua defines the schedules, gen/tune.lua renders
 * the candidates, bench.c races them, schedfile.c keeps the winners).
 *
 * For each GEMM instance of a config's training step, largest share of the
 * step first: its heuristic schedule and every valid schedule one field away
 * (register block, K block, tile height or width, packing, unroll) are
 * compiled as one source, checked to give the heuristic's bits exactly, and
 * timed: all of them warm (a round each, twice), then the best three and
 * the heuristic warm and cold (caches flushed before each run) until each
 * has run at least three times. The fastest by warm + cold median wins;
 * with rounds = 2 the search goes on from each winner that beat the
 * heuristic. Winners are merged into the host's file after every batch, so
 * an interrupted tune keeps what it measured. */
#ifndef GPTC_TUNE_H
#define GPTC_TUNE_H

#include <stdio.h>

#include "cfg.h"

typedef struct {
  double budget_s; /* stop starting new batches after this long (<= 0: no limit) */
  int rounds;      /* 1, or 2: search again around each winner */
  int all;         /* 1: every instance; 0: those without an entry in the file */
  double min_flops; /* smaller instances (per call) keep the heuristic: OpenMP's start-up
                     * noise there is larger than any schedule's effect */
  FILE *progress;  /* progress lines, or NULL */
} tune_opts;

typedef struct {
  int instances, measured, improved, skipped; /* of the step's GEMM and attention instances */
  int attention;                               /* how many of the instances are attention's */
  double seconds;
  char path[4200]; /* the host's schedule file */
} tune_result;

int tune_run(const cfg_t *cfg, const tune_opts *o, tune_result *r);

/* Before train and bench on the CPU: tunes the instances the host's file does
 * not name yet, within `budget_s` (those left are recorded as not
 * measured, keeping the heuristic). Nothing when $GPTC_TUNE is "off" or "0". */
int tune_ensure(const cfg_t *cfg, double budget_s, FILE *progress);

#define TUNE_MIN_FLOPS 4e6
#define TUNE_AUTO_BUDGET 60.0

#endif
