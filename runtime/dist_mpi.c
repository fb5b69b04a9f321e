/* dist_mpi: dist.h's transport over MPI (OpenMPI in CI; any MPI-3 library).
 * The collectives only move bytes: every sum is done by dist.c in its fixed
 * order, never by an MPI reduction (whose order MPI does not promise). */
#include "dist.h"

#include <limits.h>
#include <stdlib.h>

#include "util.h"

#ifdef GPTC_HAVE_MPI
#include <mpi.h>

typedef struct {
  int *cnt, *dsp, *rcnt, *rdsp; /* (size) each: shard counts and offsets; my shard from each rank */
} dist_mpi;

static int dist_mpi_ok(int rc, const char *op) {
  if (rc == MPI_SUCCESS) return 0;
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, msg, &len);
  return util_err("MPI %s failed: %.*s", op, len, msg);
}

/* the int counts MPI wants, from d->off (MPI counts are int: a shard or
 * offset past INT_MAX floats is refused, not truncated) */
static int dist_mpi_counts(dist *d) {
  dist_mpi *m = d->impl;
  if (m->cnt) return 0;
  size_t sz = (size_t)d->size;
  if (!(m->cnt = util_calloc(4 * sz, sizeof(int), "MPI counts"))) return -1;
  m->dsp = m->cnt + sz, m->rcnt = m->cnt + 2 * sz, m->rdsp = m->cnt + 3 * sz;
  if (d->n > INT_MAX)
    return util_err("MPI: %zu parameters exceed the %d floats one MPI call can address", d->n, INT_MAX);
  size_t mine = d->off[d->rank + 1] - d->off[d->rank];
  for (int q = 0; q < d->size; q++) {
    m->cnt[q] = (int)(d->off[q + 1] - d->off[q]);
    m->dsp[q] = (int)d->off[q];
    m->rcnt[q] = (int)mine;
    m->rdsp[q] = (int)(mine * (size_t)q);
  }
  return 0;
}

/* fp32, or bf16 moved as opaque 16-bit words (MPI never adds them) */
static MPI_Datatype dist_mpi_type(size_t esize) { return esize == 2 ? MPI_UINT16_T : MPI_FLOAT; }

static int dist_mpi_exchange(dist *d, const void *send, void *recv, size_t esize) {
  dist_mpi *m = d->impl;
  if (dist_mpi_counts(d)) return -1;
  MPI_Datatype t = dist_mpi_type(esize);
  return dist_mpi_ok(MPI_Alltoallv(send, m->cnt, m->dsp, t, recv, m->rcnt, m->rdsp, t, MPI_COMM_WORLD),
                     "Alltoallv (gradient exchange)");
}

static int dist_mpi_gather(dist *d, void *buf, size_t esize) {
  dist_mpi *m = d->impl;
  if (dist_mpi_counts(d)) return -1;
  return dist_mpi_ok(MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, buf, m->cnt, m->dsp, dist_mpi_type(esize),
                                    MPI_COMM_WORLD),
                     "Allgatherv (gradient shards)");
}

static int dist_mpi_gather0(dist *d, const float *mine, float *all) {
  dist_mpi *m = d->impl;
  if (dist_mpi_counts(d)) return -1;
  return dist_mpi_ok(MPI_Gatherv(mine, m->cnt[d->rank], MPI_FLOAT, all, m->cnt, m->dsp, MPI_FLOAT, 0, MPI_COMM_WORLD),
                     "Gatherv (AdamW moment shards)");
}

static int dist_mpi_allgather(dist *d, const void *mine, size_t bytes, void *all) {
  (void)d;
  if (bytes > INT_MAX) return util_err("MPI Allgather: %zu bytes is too many for one call", bytes);
  return dist_mpi_ok(MPI_Allgather(mine, (int)bytes, MPI_BYTE, all, (int)bytes, MPI_BYTE, MPI_COMM_WORLD), "Allgather");
}

static int dist_mpi_barrier(dist *d) {
  (void)d;
  return dist_mpi_ok(MPI_Barrier(MPI_COMM_WORLD), "Barrier");
}

static void dist_mpi_abort(dist *d, int code) {
  (void)d;
  MPI_Abort(MPI_COMM_WORLD, code);
  exit(code);
}

static void dist_mpi_close(dist *d) {
  dist_mpi *m = d->impl;
  if (m) free(m->cnt);
  free(m);
  d->impl = NULL;
  int fin = 0;
  MPI_Finalized(&fin);
  if (!fin) MPI_Finalize();
}

static const dist_transport dist_mpi_transport = {
    "MPI", dist_mpi_exchange, dist_mpi_gather, dist_mpi_allgather, dist_mpi_barrier, dist_mpi_abort, dist_mpi_close,
    dist_mpi_gather0,
};

int dist_mpi_open(dist *d) {
  int init = 0;
  MPI_Initialized(&init);
  if (!init && MPI_Init(NULL, NULL) != MPI_SUCCESS) return util_err("MPI_Init failed: cannot join the launcher's job");
  /* errors come back as codes, so they get gptc's one-line message */
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  MPI_Comm_rank(MPI_COMM_WORLD, &d->rank);
  MPI_Comm_size(MPI_COMM_WORLD, &d->size);
  MPI_Comm local;
  d->local_rank = 0;
  if (MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, d->rank, MPI_INFO_NULL, &local) == MPI_SUCCESS) {
    MPI_Comm_rank(local, &d->local_rank);
    MPI_Comm_free(&local);
  }
  if (!(d->impl = util_calloc(1, sizeof(dist_mpi), "MPI state"))) return -1;
  d->t = &dist_mpi_transport;
  return 0;
}

#else

int dist_mpi_open(dist *d) {
  (void)d;
  return util_err("this gptc was built without MPI (install libopenmpi-dev and rebuild): it cannot join the "
                  "launcher's %d-rank job", dist_env_size());
}

#endif
