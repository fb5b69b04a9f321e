/* dist_bench: `gptc bench --ranks` under a launcher: what the gradient
 * exchange of dist.h costs per training step on this machine and network
 * (docs/distributed.md has the table for this host and the paper estimate
 * for bigger ones). */
#include "dist_bench.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "backend_cpu.h"
#include "dist.h"
#include "train.h"
#include "util.h"

int dist_bench(const cfg_t *cfg, int repeats) {
  dist *d;
  if (dist_open(&d)) return -1;
  if (!d) return util_err("--ranks: run it under an MPI launcher (mpirun -np N gptc bench --ranks --config FILE)");
  backend *b = NULL;
  int32_t *in = NULL, *tg = NULL; // (B, T) each: one micro-batch of seeded ids
  int rc = -1;
  if (backend_cpu_open(cfg, &b) || b->ops->alloc(b, BACKEND_TRAIN) || dist_bind(d, b)) goto out;
  train_init_tensors(b->tensors, b->n_tensors, b->n_params, b->host_params, cfg->train.seed);
  size_t bt = (size_t)b->B * (size_t)b->T;
  in = util_malloc(bt * sizeof *in, "bench inputs");
  tg = util_malloc(bt * sizeof *tg, "bench targets");
  if (!in || !tg) goto out;
  uint64_t x = cfg->train.seed * 2654435761u + 1;
  for (size_t i = 0; i < bt; i++) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    in[i] = (int32_t)((x >> 33) % (uint64_t)b->vocab_size);
    tg[i] = (int32_t)((x >> 13) % (uint64_t)b->vocab_size);
  }
  int n = repeats > 0 ? repeats : 10;
  double step_s = 0, comm_s = 0;
  for (int it = -1; it < n; it++) { /* one untimed warm-up step */
    backend_step s = {in, tg, 1, cfg->train.seed, (uint64_t)(it + 1) * (uint64_t)d->size, 0,
                      {1e-4f, 0.9f, 0.95f, 1e-8f, 0.0f, 1.0f, it + 2}, 1.0};
    double loss, norm, t0 = util_now(), c0 = d->comm_s;
    int sig = 0, sr, bad;
    if (dist_barrier(d, "the benchmark's step") || dist_step(d, b, &s, &loss, &norm, &sig, &sr, &bad)) goto out;
    if (it >= 0) step_s += util_now() - t0, comm_s += d->comm_s - c0;
  }
  /* the slowest rank's numbers are the job's */
  double mine[2] = {step_s / n, comm_s / n}, *all = util_calloc((size_t)d->size * 2, sizeof(double), "bench times");
  if (!all || dist_allgather(d, "gathering the timings", mine, sizeof mine, all)) {
    free(all);
    goto out;
  }
  double st = 0, cm = 0;
  for (int r = 0; r < d->size; r++) st = fmax(st, all[2 * r]), cm = fmax(cm, all[2 * r + 1]);
  free(all);
  /* bytes this rank sends and receives per step: its pieces of the others'
   * shards and theirs of its own (exchange), then the shards (gather) */
  double moved = dist_step_bytes(d, 1);
  if (d->rank == 0) {
    printf("gptc bench --ranks: %s | %.2fM parameters | %d ranks (%s) | batch %d x %d tokens per rank | %d steps\n",
           cfg->name, b->n_params / 1e6, d->size, d->t->name, b->B, b->T, n);
    printf("| ranks | step ms | exchange ms | share | MB moved per rank per step | GB/s |\n");
    printf("| --- | --- | --- | --- | --- | --- |\n");
    printf("| %d | %.2f | %.2f | %.1f%% | %.2f | %.2f |\n", d->size, st * 1e3, cm * 1e3, st > 0 ? 100 * cm / st : 0,
           moved / 1e6, cm > 0 ? moved / cm / 1e9 : 0);
    fflush(stdout);
  }
  rc = 0;
out:
  free(in);
  free(tg);
  dist_unbind(d); /* its buffers are b's */
  backend_close(b);
  if (rc) dist_fail(d, util_errmsg());
  dist_close(d);
  return rc;
}
