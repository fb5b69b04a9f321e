/* dist_nccl: dist.h's transport between GPUs over NCCL, as llm.c does it:
 * MPI starts the ranks and carries rank 0's NCCL unique id and the small
 * host-side collectives (losses, hashes, barriers, abort); NCCL moves the
 * gradient pieces between device buffers. libnccl.so.2 and libcuda.so.1
 * are dlopen'ed (GPTC_LIBNCCL and GPTC_LIBCUDA override them), so gptc
 * starts and trains on CPUs without them; the few NCCL types are declared
 * here. NCCL only moves bytes (sends, receives, broadcasts, never a
 * reduction): the sums are dist.c's, in its fixed order, on the GPU.
 * Tested without a GPU through tests/gpu/emu/fakenccl.c (docs/gpu.md). */
#include <dlfcn.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dist.h"
#include "util.h"

typedef int nccl_result;           /* ncclResult_t: 0 is ncclSuccess */
typedef struct nccl_comm *nccl_comm; /* ncclComm_t */
typedef struct {
  char internal[128]; /* NCCL_UNIQUE_ID_BYTES */
} nccl_id;
enum { NCCL_UINT8 = 1 }; /* ncclDataType_t ncclUint8: fp32 and bf16 alike travel as bytes */

static struct {
  void *lib, *cuda;
  nccl_result (*get_id)(nccl_id *);
  nccl_result (*init_rank)(nccl_comm *, int, nccl_id, int);
  nccl_result (*destroy)(nccl_comm);
  nccl_result (*send)(const void *, size_t, int, int, nccl_comm, void *);
  nccl_result (*recv)(void *, size_t, int, int, nccl_comm, void *);
  nccl_result (*bcast)(const void *, void *, size_t, int, int, nccl_comm, void *);
  nccl_result (*group_start)(void);
  nccl_result (*group_end)(void);
  const char *(*error)(nccl_result);
  int (*sync)(void *); /* cuStreamSynchronize */
} nccl;

typedef struct {
  const dist_transport *mpi; /* the host-side collectives */
  void *mpi_impl;
  nccl_comm comm;
  void *stream; /* the CUDA backend's training stream */
} dist_nccl;

static int dist_nccl_ok(nccl_result r, const char *op) {
  return r == 0 ? 0 : util_err("NCCL %s failed: %s", op, nccl.error ? nccl.error(r) : "error");
}

static int dist_nccl_load(void) {
  if (nccl.lib) return 0;
  const char *path = getenv("GPTC_LIBNCCL");
  if (!path || !*path) path = "libnccl.so.2";
  void *lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (!lib) return util_err("cannot load NCCL %s (%s): install NCCL or train on the CPU", path, dlerror());
  /* the driver the CUDA backend loaded (runtime/cuda.c) */
  const char *drv = getenv("GPTC_LIBCUDA");
  if (!drv || !*drv) drv = "libcuda.so.1";
  void *cuda = dlopen(drv, RTLD_NOW | RTLD_LOCAL);
  if (!cuda) {
    dlclose(lib);
    return util_err("NCCL needs the CUDA driver: cannot load %s (%s)", drv, dlerror());
  }
  struct {
    void *lib;
    const char *name;
    void **fn;
  } syms[] = {
      {lib, "ncclGetUniqueId", (void **)&nccl.get_id},     {lib, "ncclCommInitRank", (void **)&nccl.init_rank},
      {lib, "ncclCommDestroy", (void **)&nccl.destroy},    {lib, "ncclSend", (void **)&nccl.send},
      {lib, "ncclRecv", (void **)&nccl.recv},              {lib, "ncclBroadcast", (void **)&nccl.bcast},
      {lib, "ncclGroupStart", (void **)&nccl.group_start}, {lib, "ncclGroupEnd", (void **)&nccl.group_end},
      {lib, "ncclGetErrorString", (void **)&nccl.error},   {cuda, "cuStreamSynchronize", (void **)&nccl.sync},
  };
  for (size_t i = 0; i < sizeof syms / sizeof *syms; i++) {
    if (!(*syms[i].fn = dlsym(syms[i].lib, syms[i].name))) {
      dlclose(lib);
      dlclose(cuda);
      memset(&nccl, 0, sizeof nccl);
      return util_err("%s: no symbol %s (NCCL 2.7 or newer is needed)", path, syms[i].name);
    }
  }
  nccl.lib = lib, nccl.cuda = cuda;
  return 0;
}

/* the host-side collectives run on the MPI transport underneath */
#define DIST_NCCL_MPI(d, call)                                                                                         \
  do {                                                                                                                 \
    dist_nccl *n_ = (d)->impl;                                                                                         \
    (d)->impl = n_->mpi_impl;                                                                                          \
    call;                                                                                                              \
    (d)->impl = n_;                                                                                                    \
  } while (0)

/* send, recv: device buffers as in dist_transport.exchange */
static int dist_nccl_exchange(dist *d, const void *send, void *recv, size_t es) {
  dist_nccl *n = d->impl;
  size_t mine = d->off[d->rank + 1] - d->off[d->rank];
  const char *s = send;
  char *r = recv;
  int rc = dist_nccl_ok(nccl.group_start(), "group start");
  for (int q = 0; rc == 0 && q < d->size; q++) {
    rc = dist_nccl_ok(nccl.send(s + d->off[q] * es, (d->off[q + 1] - d->off[q]) * es, NCCL_UINT8, q, n->comm, n->stream),
                      "send");
    if (rc == 0) rc = dist_nccl_ok(nccl.recv(r + (size_t)q * mine * es, mine * es, NCCL_UINT8, q, n->comm, n->stream), "recv");
  }
  int end = dist_nccl_ok(nccl.group_end(), "group end (gradient exchange)");
  if (rc || end) return -1;
  return nccl.sync(n->stream) ? util_err("NCCL gradient exchange: the stream failed") : 0;
}

/* every shard broadcast by its owner, in one group */
static int dist_nccl_gather(dist *d, void *buf, size_t es) {
  dist_nccl *n = d->impl;
  char *b = buf;
  int rc = dist_nccl_ok(nccl.group_start(), "group start");
  for (int q = 0; rc == 0 && q < d->size; q++)
    rc = dist_nccl_ok(nccl.bcast(b + d->off[q] * es, b + d->off[q] * es, (d->off[q + 1] - d->off[q]) * es, NCCL_UINT8, q,
                                 n->comm, n->stream), "broadcast");
  int end = dist_nccl_ok(nccl.group_end(), "group end (shard gather)");
  if (rc || end) return -1;
  return nccl.sync(n->stream) ? util_err("NCCL shard gather: the stream failed") : 0;
}

static int dist_nccl_allgather(dist *d, const void *mine, size_t bytes, void *all) {
  int rc;
  DIST_NCCL_MPI(d, rc = n_->mpi->allgather(d, mine, bytes, all));
  return rc;
}

static int dist_nccl_barrier(dist *d) {
  int rc;
  DIST_NCCL_MPI(d, rc = n_->mpi->barrier(d));
  return rc;
}

static void dist_nccl_abort(dist *d, int code) { DIST_NCCL_MPI(d, n_->mpi->abort(d, code)); }

static void dist_nccl_close(dist *d) {
  dist_nccl *n = d->impl;
  if (n->comm) nccl.destroy(n->comm);
  const dist_transport *mpi = n->mpi;
  d->impl = n->mpi_impl;
  d->t = mpi;
  free(n);
  mpi->close(d);
}

static const dist_transport dist_nccl_transport = {
    "NCCL", dist_nccl_exchange, dist_nccl_gather, dist_nccl_allgather, dist_nccl_barrier, dist_nccl_abort, dist_nccl_close,
    NULL, /* gather0: ZeRO-1 runs on the CPU only so far */
};

int dist_nccl_open(dist *d, void *stream) {
  /* the caller made GPU `local rank` current before (the CUDA backend's context) */
  if (!d->t || strcmp(d->t->name, "MPI")) return util_err("NCCL: the ranks must be started through MPI first");
  if (dist_nccl_load()) return -1;
  nccl_id id;
  memset(&id, 0, sizeof id);
  if (d->rank == 0 && dist_nccl_ok(nccl.get_id(&id), "GetUniqueId")) return -1;
  if (dist_share0(d, "sharing the NCCL id", id.internal, sizeof id.internal)) return -1;
  dist_nccl *n = util_calloc(1, sizeof *n, "NCCL state");
  if (!n) return -1;
  dist_arm(d, "NCCL start-up");
  int rc = dist_nccl_ok(nccl.init_rank(&n->comm, d->size, id, d->rank), "CommInitRank");
  dist_disarm(d);
  if (rc) {
    free(n);
    return -1;
  }
  n->mpi = d->t, n->mpi_impl = d->impl, n->stream = stream;
  d->t = &dist_nccl_transport;
  d->impl = n;
  return 0;
}
