/* dist: see dist.h. The rank logic every transport shares. */
#include "dist.h"

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util.h"

int dist_env_size(void) {
  /* OpenMPI's mpirun, MPICH's hydra (and Slurm's PMI2), PMIx launchers
   * (Slurm's --mpi=pmix: the size only MPI knows, so 1 means "a launcher") */
  static const char *const sizes[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE"};
  for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
    const char *v = getenv(sizes[i]);
    if (v && atoi(v) > 0) return atoi(v);
  }
  return getenv("PMIX_RANK") || getenv("PMI_RANK") ? 1 : 0;
}

/* The launcher's local rank (the GPU of this rank), where it says it. */
static int dist_env_local_rank(void) {
  static const char *const names[] = {"OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID", "MPI_LOCALRANKID"};
  for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
    const char *v = getenv(names[i]);
    if (v && *v >= '0' && *v <= '9') return atoi(v);
  }
  return -1;
}

int dist_open(dist **out) {
  *out = NULL;
  if (!dist_env_size()) return 0;
  dist *d = util_calloc(1, sizeof *d, "distributed state");
  if (!d) return -1;
  d->timeout_s = 600;
  const char *t = getenv("GPTC_DIST_TIMEOUT");
  if (t && *t) {
    char *end;
    double v = strtod(t, &end);
    if (*end || !(v > 0) || v > 1e6) {
      free(d);
      return util_err("GPTC_DIST_TIMEOUT: must be seconds in (0, 1e6] (got '%s')", t);
    }
    d->timeout_s = v;
  }
  d->nan_rank = -1;
  const char *nan = getenv("GPTC_DIST_NAN");
  if (nan && *nan && sscanf(nan, "%d:%ld", &d->nan_rank, &d->nan_step) != 2) {
    free(d);
    return util_err("GPTC_DIST_NAN: must be RANK:STEP (got '%s')", nan);
  }
  if (dist_mpi_open(d)) {
    free(d);
    return -1;
  }
  /* the launcher's word first, else MPI's (ranks sharing this machine) */
  int local = dist_env_local_rank();
  if (local >= 0) d->local_rank = local;
  *out = d;
  return 0;
}

dist *dist_local(void) {
  dist *d = util_calloc(1, sizeof *d, "distributed state");
  if (d) d->size = 1, d->nan_rank = -1;
  return d;
}

void dist_shards(size_t n, int size, size_t *off) {
  off[0] = 0;
  for (int r = 1; r < size; r++) {
    /* n * r / size without overflow, rounded down to 16 floats (64 bytes) */
    size_t q = n / (size_t)size * (size_t)r + n % (size_t)size * (size_t)r / (size_t)size;
    off[r] = q & ~(size_t)15;
    if (off[r] < off[r - 1]) off[r] = off[r - 1];
  }
  off[size] = n;
}

int dist_backend_ok(const backend *b) {
  const backend_ops *o = b->ops;
  return b->grads && o->vec_alloc && o->vec_free && o->vec_add && o->vec_add_bf16 && o->vec_to_bf16 &&
         o->vec_from_bf16 && o->vec_zero && o->vec_copy;
}

int dist_bind(dist *d, backend *b) {
  size_t n = b->n_params;
  if (d->b == b && d->n == n && d->acc) return 0;
  dist_unbind(d);
  if (!dist_backend_ok(b))
    return util_err("data-parallel training: device %s cannot sum gradients where they are (no vector ops)", b->device);
  const backend_ops *o = b->ops;
  d->b = b;
  d->n = n;
  if (!(d->off = util_calloc((size_t)d->size + 1, sizeof *d->off, "shard table"))) return -1;
  dist_shards(n, d->size, d->off);
  size_t mine = d->off[d->rank + 1] - d->off[d->rank], most = 0, es = d->grad16 ? 2 : 4;
  for (int r = 0; r < d->size; r++)
    if (d->off[r + 1] - d->off[r] > most) most = d->off[r + 1] - d->off[r];
  if (d->zero && (!(d->zm = util_calloc(mine ? mine : 1, sizeof(float), "AdamW first moments (this rank's shard)")) ||
                  !(d->zv = util_calloc(mine ? mine : 1, sizeof(float), "AdamW second moments (this rank's shard)"))))
    return -1;
  if (!(d->acc = o->vec_alloc(b, mine ? mine : 1, 4, "gradient shard")) ||
      !(d->recv = o->vec_alloc(b, d->size > 1 ? (size_t)d->size * (most ? most : 1) : 1, es, "received gradient pieces")))
    return -1;
  if (d->grad16 && d->size > 1 && !(d->send16 = o->vec_alloc(b, n, 2, "bf16 gradients")))
    return -1;
  return 0;
}

void dist_unbind(dist *d) {
  if (d->b) {
    const backend_ops *o = d->b->ops;
    if (d->acc) o->vec_free(d->b, d->acc);
    if (d->recv) o->vec_free(d->b, d->recv);
    if (d->send16) o->vec_free(d->b, d->send16);
  }
  free(d->off), free(d->zm), free(d->zv);
  d->off = NULL, d->acc = d->zm = d->zv = NULL, d->recv = NULL, d->send16 = NULL;
  d->b = NULL, d->n = 0;
}

double dist_step_bytes(const dist *d, int g) {
  if (d->size < 2 || !d->off) return 0;
  size_t mine = d->off[d->rank + 1] - d->off[d->rank];
  return (d->grad16 ? 2.0 : 4.0) * (g + 1.0) * ((double)(d->n - mine) + (double)(d->size - 1) * (double)mine);
}

void dist_close(dist *d) {
  if (!d) return;
  dist_disarm(d);
  dist_unbind(d);
  if (d->t && d->t->close) d->t->close(d);
  free(d);
}

/* ---- the watchdog ---------------------------------------------------------- */

static dist *dist_watched;
static char dist_phase[128];

static void dist_on_alarm(int sig) {
  (void)sig;
  char msg[320];
  dist *d = dist_watched;
  int n = snprintf(msg, sizeof msg,
                   "gptc: rank %d of %d: no answer from the other ranks within %.0f s (%s); a rank died or hangs: "
                   "stopping the job (GPTC_DIST_TIMEOUT sets the limit)\n",
                   d ? d->rank : 0, d ? d->size : 1, d ? d->timeout_s : 0, dist_phase);
  if (n > 0) (void)!write(STDERR_FILENO, msg, (size_t)n < sizeof msg ? (size_t)n : sizeof msg - 1);
  if (d && d->t && d->t->abort) d->t->abort(d, 1);
  _exit(1);
}

void dist_arm(dist *d, const char *phase) {
  if (!d) return;
  snprintf(dist_phase, sizeof dist_phase, "%s", phase);
  dist_watched = d;
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = dist_on_alarm;
  sigaction(SIGALRM, &sa, NULL);
  unsigned s = (unsigned)ceil(d->timeout_s);
  alarm(s ? s : 1);
}

void dist_disarm(dist *d) {
  if (d) alarm(0);
}

void dist_fail(dist *d, const char *msg) {
  fprintf(stderr, "gptc: rank %d of %d: %s\n", d->rank, d->size, msg);
  fflush(stderr);
  d->t->abort(d, 1);
  exit(1);
}

int dist_barrier(dist *d, const char *phase) {
  dist_arm(d, phase);
  int rc = d->t->barrier(d);
  dist_disarm(d);
  return rc;
}

int dist_check_same(dist *d, const char *what, const char *value) {
  enum { W = 80 };
  char mine[W] = {0};
  snprintf(mine, W, "%s", value);
  char *all = util_calloc((size_t)d->size, W, "rank values"); // (size, W)
  if (!all) return -1;
  char phase[96];
  snprintf(phase, sizeof phase, "comparing the ranks' %s", what);
  dist_arm(d, phase);
  int rc = d->t->allgather(d, mine, W, all);
  dist_disarm(d);
  for (int r = 1; rc == 0 && r < d->size; r++)
    if (memcmp(all, all + (size_t)r * W, W))
      rc = util_err("rank %d's %s differs from rank 0's (%.12s... vs %.12s...): every rank must run the same config, "
                    "text and options", r, what, all + (size_t)r * W, all);
  free(all);
  return rc;
}

int dist_allgather(dist *d, const char *phase, const void *mine, size_t bytes, void *all) {
  dist_arm(d, phase);
  int rc = d->t->allgather(d, mine, bytes, all);
  dist_disarm(d);
  return rc;
}

int dist_share0(dist *d, const char *phase, char *buf, size_t n) {
  char *all = util_calloc((size_t)d->size, n, "rank 0's value"); // (size, n)
  if (!all) return -1;
  dist_arm(d, phase);
  int rc = d->t->allgather(d, buf, n, all);
  dist_disarm(d);
  if (rc == 0) memcpy(buf, all, n);
  free(all);
  return rc;
}

/* ---- the step ---------------------------------------------------------------- */

int dist_step(dist *d, backend *b, const backend_step *s, double *loss, double *norm, int *stop_sig, int *stop_rank,
              int *bad_rank) {
  const backend_ops *o = b->ops;
  int size = d->size, rank = d->rank, g = s->n_micro, ng = size * g;
  size_t bt = (size_t)b->B * (size_t)b->T, n = b->n_params;
  size_t lo = d->off ? d->off[rank] : 0, sh = d->off ? d->off[rank + 1] - lo : 0, es = d->grad16 ? 2 : 4;
  /* (in b's memory) grads: (n) this micro-batch's gradient, then the step's;
   * acc: (sh) the sum of my shard; recv: (size, sh) the round's pieces */
  float *grads = b->grads;
  *loss = 0, *norm = 0, *bad_rank = -1;
  if (d->b != b || d->n != n) return util_err("dist: not bound to this model (dist_bind)");
  double *mine = util_calloc((size_t)g + 1, sizeof(double), "step losses");        // (g + 1)
  double *all = util_calloc((size_t)size * (size_t)(g + 1), sizeof(double), "losses"); // (size, g + 1)
  int rc = -1;
  if (!mine || !all) goto out;
  if (o->vec_zero(b, d->acc, (sh ? sh : 1) * sizeof(float))) goto out;
  for (int k = 0; k < g; k++) {
    int j = dist_micro(rank, size, k);
    gptc_rng rng = {s->seed, s->offset + (uint64_t)j, s->dropout};
    const int32_t *in = s->inputs + (size_t)k * bt, *tg = s->targets + (size_t)k * bt;
    float l;
    if (o->zero_grads(b) || o->forward(b, in, tg, rng, &l) || o->backward(b, in, tg, rng, 1.0f / ng)) goto out;
    if (d->nan_rank == rank && d->nan_step == (long)s->adamw.t) {
      const float nan = NAN;
      l = NAN;
      if (o->vec_copy(b, grads, &nan, sizeof nan, 1)) goto out;
    }
    mine[k] = l;
    if (size == 1) {
      if (o->vec_add(b, d->acc, grads, n)) goto out;
      continue;
    }
    /* the owner adds round k's pieces in rank order: global micro-batches
     * k*size + 0, k*size + 1, ... in turn, as one process would */
    double t0 = util_now();
    if (d->grad16 && o->vec_to_bf16(b, d->send16, grads, n)) goto out;
    dist_arm(d, "exchanging gradients");
    int e = d->t->exchange(d, d->grad16 ? (const void *)d->send16 : grads, d->recv, es);
    dist_disarm(d);
    d->comm_s += util_now() - t0;
    if (e) goto out;
    for (int q = 0; q < size; q++) {
      const char *p = (const char *)d->recv + (size_t)q * sh * es;
      if (d->grad16 ? o->vec_add_bf16(b, d->acc, (const uint16_t *)p, sh) : o->vec_add(b, d->acc, (const float *)p, sh))
        goto out;
    }
  }
  /* my summed shard into the vector every rank gathers (bf16: the rounded
   * sum, which the owner widens like every other rank) */
  if (d->grad16 && size > 1 ? o->vec_to_bf16(b, d->send16 + lo, d->acc, sh)
                            : o->vec_copy(b, grads + lo, d->acc, sh * sizeof(float), 0))
    goto out;
  mine[g] = *stop_sig;
  double t0 = util_now();
  dist_arm(d, "gathering gradients and losses");
  int e = size > 1 && (d->t->gather_shards(d, d->grad16 ? (void *)d->send16 : grads, es) ||
                       d->t->allgather(d, mine, (size_t)(g + 1) * sizeof(double), all));
  dist_disarm(d);
  d->comm_s += util_now() - t0;
  if (e || (d->grad16 && size > 1 && o->vec_from_bf16(b, grads, d->send16, n))) goto out;
  if (size == 1) memcpy(all, mine, (size_t)(g + 1) * sizeof(double));
  for (int j = 0; j < ng; j++) {
    float l = (float)all[(size_t)(j % size) * (size_t)(g + 1) + (size_t)(j / size)];
    if (!isfinite(l) && *bad_rank < 0) *bad_rank = j % size;
    *loss += l / ng;
  }
  *stop_sig = 0, *stop_rank = -1;
  for (int q = 0; q < size && !*stop_sig; q++)
    if (all[(size_t)q * (size_t)(g + 1) + (size_t)g] != 0) *stop_sig = (int)all[(size_t)q * (size_t)(g + 1) + (size_t)g], *stop_rank = q;
  double sq;
  if (o->grad_sq_norm(b, &sq)) goto out;
  *norm = sqrt(sq);
  rc = 0;
  if (!isfinite(*loss) || !isfinite(*norm)) goto out;
  gptc_adamw_args a = s->adamw;
  a.grad_scale = s->grad_clip > 0 && *norm > s->grad_clip ? (float)(s->grad_clip / (*norm + 1e-6)) : 1.0f;
  if (!d->zero) {
    rc = o->adamw(b, a);
    goto out;
  }
  /* ZeRO-1: this rank's shard of the update, then every shard to every rank */
  if (!o->adamw_range || !b->host_params) {
    rc = util_err("--zero: device %s cannot update a shard of the weights (ZeRO-1 runs on the CPU)", b->device);
    goto out;
  }
  if ((rc = o->adamw_range(b, a, lo, lo + sh, d->zm, d->zv)) || size == 1) goto out;
  t0 = util_now();
  dist_arm(d, "gathering the updated weights");
  rc = d->t->gather_shards(d, b->host_params, sizeof(float));
  dist_disarm(d);
  d->comm_s += util_now() - t0;
out:
  free(mine);
  free(all);
  return rc;
}

/* ---- ZeRO-1's moments ------------------------------------------------------- */

int dist_gather_moments(dist *d, float *m, float *v) {
  size_t lo = d->off[d->rank], sh = d->off[d->rank + 1] - lo;
  if (d->size == 1 || !d->t) {
    if (m) memcpy(m, d->zm, sh * sizeof(float)), memcpy(v, d->zv, sh * sizeof(float));
    return 0;
  }
  if (!d->t->gather0) return util_err("--zero: the %s transport cannot gather the moments", d->t->name);
  dist_arm(d, "gathering the AdamW moments for the checkpoint");
  int rc = d->t->gather0(d, d->zm, m) || d->t->gather0(d, d->zv, v) ? -1 : 0;
  dist_disarm(d);
  return rc;
}
