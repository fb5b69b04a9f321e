/* dist_bench: `gptc bench --ranks` (dist_bench.c). */
#ifndef GPTC_DIST_BENCH_H
#define GPTC_DIST_BENCH_H

#include "cfg.h"

/* Under a launcher: `repeats` (0: 10) data-parallel steps of cfg's model on
 * every rank; rank 0 prints the step time, the gradient exchange's time and
 * share, the bytes moved and the bandwidth as a markdown row. */
int dist_bench(const cfg_t *cfg, int repeats);

#endif
