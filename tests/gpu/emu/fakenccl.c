/* fakenccl: a stand-in for libnccl.so.2 for tests without a GPU
 * ($GPTC_LIBNCCL names it), beside fakecuda.c: device memory there is host
 * memory, so NCCL's point-to-point calls become MPI's on a duplicate of
 * MPI_COMM_WORLD (the gptc process has joined the job through MPI before).
 * Only what runtime/dist_nccl.c calls is here: ncclGetUniqueId,
 * ncclCommInitRank (it checks that every rank got rank 0's id, as real
 * NCCL needs), ncclCommDestroy, ncclSend, ncclRecv, ncclBroadcast inside
 * ncclGroupStart/ncclGroupEnd (the calls are queued and posted together at
 * the end, as NCCL does: so a rank may send to and receive from every rank
 * in one group), ncclGetErrorString. Streams are ignored (the fake driver
 * runs every call at once). Data travel as bytes (ncclUint8), the only
 * type gptc uses.
 *
 * Fault injection for the tests: FAKENCCL_FAIL=RANK:N makes that rank's
 * N-th group end (1-based) fail (ncclSystemError), as a broken link would.
 *
 * Build: mpicc -O2 -shared -fPIC -o libnccl.so.2 fakenccl.c */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef int ncclResult_t;
enum { NCCL_OK = 0, NCCL_UNHANDLED_CUDA = 1, NCCL_SYSTEM = 2, NCCL_INTERNAL = 3, NCCL_INVALID_ARGUMENT = 4,
       NCCL_INVALID_USAGE = 5 };
enum { NCCL_UINT8 = 1 };

typedef struct {
  char internal[128];
} ncclUniqueId;

typedef struct fake_comm {
  MPI_Comm comm;
  int rank, size;
} fake_comm;
typedef fake_comm *ncclComm_t;

/* one queued point-to-point operation of the open group */
typedef struct {
  int send; /* 1: send, 0: receive */
  void *buf;
  size_t bytes;
  int peer;
  fake_comm *c;
} fake_op;

static fake_op *fake_ops;
static int fake_n, fake_cap, fake_depth, fake_groups;
static char fake_err[200] = "";

const char *ncclGetErrorString(ncclResult_t r) {
  if (fake_err[0]) return fake_err;
  return r == NCCL_OK ? "no error" : r == NCCL_INVALID_ARGUMENT ? "invalid argument" : "fakenccl error";
}

static ncclResult_t fake_fail(ncclResult_t r, const char *msg) {
  snprintf(fake_err, sizeof fake_err, "fakenccl: %s", msg);
  return r;
}

ncclResult_t ncclGetUniqueId(ncclUniqueId *id) {
  memset(id, 0, sizeof *id);
  snprintf(id->internal, sizeof id->internal, "fakenccl id of pid %ld", (long)getpid());
  return NCCL_OK;
}

ncclResult_t ncclCommInitRank(ncclComm_t *out, int nranks, ncclUniqueId id, int rank) {
  int size, me;
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  MPI_Comm_rank(MPI_COMM_WORLD, &me);
  if (nranks != size || rank != me) return fake_fail(NCCL_INVALID_ARGUMENT, "rank or rank count differs from MPI's");
  /* every rank must hold rank 0's id (gptc shares it over MPI) */
  char *all = malloc((size_t)size * sizeof id.internal);
  if (!all) return fake_fail(NCCL_SYSTEM, "out of memory");
  MPI_Allgather(id.internal, (int)sizeof id.internal, MPI_BYTE, all, (int)sizeof id.internal, MPI_BYTE, MPI_COMM_WORLD);
  int same = 1;
  for (int r = 1; r < size; r++) same &= !memcmp(all, all + (size_t)r * sizeof id.internal, sizeof id.internal);
  free(all);
  if (!same) return fake_fail(NCCL_INVALID_ARGUMENT, "the ranks were given different unique ids");
  fake_comm *c = calloc(1, sizeof *c);
  if (!c) return fake_fail(NCCL_SYSTEM, "out of memory");
  MPI_Comm_dup(MPI_COMM_WORLD, &c->comm);
  c->rank = rank, c->size = size;
  *out = c;
  return NCCL_OK;
}

ncclResult_t ncclCommDestroy(ncclComm_t c) {
  if (!c) return NCCL_OK;
  int fin = 0;
  MPI_Finalized(&fin);
  if (!fin) MPI_Comm_free(&c->comm);
  free(c);
  return NCCL_OK;
}

ncclResult_t ncclGroupStart(void) {
  fake_depth++;
  return NCCL_OK;
}

/* Posts every queued operation, then waits for them all. */
static ncclResult_t fake_flush(void) {
  ncclResult_t rc = NCCL_OK;
  MPI_Request *req = calloc((size_t)(fake_n ? fake_n : 1), sizeof *req);
  if (!req) rc = fake_fail(NCCL_SYSTEM, "out of memory");
  for (int i = 0; rc == NCCL_OK && i < fake_n; i++) {
    fake_op *o = &fake_ops[i];
    if (o->bytes > (size_t)1 << 30) {
      rc = fake_fail(NCCL_INVALID_ARGUMENT, "a message over 1 GiB (not emulated)");
      break;
    }
    int e = o->send ? MPI_Isend(o->buf, (int)o->bytes, MPI_BYTE, o->peer, 0, o->c->comm, &req[i])
                    : MPI_Irecv(o->buf, (int)o->bytes, MPI_BYTE, o->peer, 0, o->c->comm, &req[i]);
    if (e != MPI_SUCCESS) rc = fake_fail(NCCL_SYSTEM, "MPI point-to-point failed");
  }
  if (rc == NCCL_OK && MPI_Waitall(fake_n, req, MPI_STATUSES_IGNORE) != MPI_SUCCESS)
    rc = fake_fail(NCCL_SYSTEM, "MPI wait failed");
  free(req);
  fake_n = 0;
  return rc;
}

ncclResult_t ncclGroupEnd(void) {
  if (fake_depth < 1) return fake_fail(NCCL_INVALID_USAGE, "group end without a group start");
  if (--fake_depth) return NCCL_OK;
  const char *fail = getenv("FAKENCCL_FAIL");
  int rank = -1, nth = 0;
  if (fake_n && fail && sscanf(fail, "%d:%d", &rank, &nth) == 2 && rank == fake_ops[0].c->rank && ++fake_groups == nth) {
    fake_n = 0;
    return fake_fail(NCCL_SYSTEM, "injected failure (FAKENCCL_FAIL): the link to the other ranks is down");
  }
  return fake_flush();
}

static ncclResult_t fake_queue(int send, const void *buf, size_t count, int type, int peer, ncclComm_t c) {
  if (!c || peer < 0 || peer >= c->size) return fake_fail(NCCL_INVALID_ARGUMENT, "peer out of range");
  if (type != NCCL_UINT8) return fake_fail(NCCL_INVALID_ARGUMENT, "only ncclUint8 is emulated");
  if (fake_n == fake_cap) {
    int cap = fake_cap ? 2 * fake_cap : 64;
    fake_op *o = realloc(fake_ops, (size_t)cap * sizeof *o);
    if (!o) return fake_fail(NCCL_SYSTEM, "out of memory");
    fake_ops = o, fake_cap = cap;
  }
  fake_ops[fake_n++] = (fake_op){send, (void *)buf, count, peer, c};
  return fake_depth ? NCCL_OK : fake_flush();
}

ncclResult_t ncclSend(const void *buf, size_t count, int type, int peer, ncclComm_t c, void *stream) {
  (void)stream;
  return fake_queue(1, buf, count, type, peer, c);
}

ncclResult_t ncclRecv(void *buf, size_t count, int type, int peer, ncclComm_t c, void *stream) {
  (void)stream;
  return fake_queue(0, buf, count, type, peer, c);
}

/* root sends its buffer to every other rank (in place when send == recv) */
ncclResult_t ncclBroadcast(const void *send, void *recv, size_t count, int type, int root, ncclComm_t c, void *stream) {
  (void)stream;
  if (!c || root < 0 || root >= c->size) return fake_fail(NCCL_INVALID_ARGUMENT, "root out of range");
  if (c->rank != root) return fake_queue(0, recv, count, type, root, c);
  if (send != recv) memmove(recv, send, count);
  ncclResult_t rc = NCCL_OK;
  fake_depth++; /* one group of sends, even outside the caller's */
  for (int q = 0; q < c->size && rc == NCCL_OK; q++)
    if (q != root) rc = fake_queue(1, recv, count, type, q, c);
  fake_depth--;
  return rc == NCCL_OK && !fake_depth ? fake_flush() : rc;
}
