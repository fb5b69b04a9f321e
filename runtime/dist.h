/* dist: data-parallel training over several processes (ranks), independent
 * of the transport that carries the bytes (dist_mpi.c: MPI on CPUs;
 * dist_nccl.c: NCCL between GPUs, MPI only to start). docs/distributed.md.
 *
 * What this module decides, the same on every transport:
 * - which micro-batches a rank trains: of a step's N x g global
 *   micro-batches, global micro-batch j goes to rank j mod N as its local
 *   micro-batch j / N (dist_micro);
 * - the shard of the flat parameter vector each rank owns (dist_shards):
 *   contiguous, 16-float aligned, in rank order;
 * - the reduction order: every micro-batch's gradient is computed into a
 *   zeroed buffer, and the owner of a shard adds the N x g gradients in
 *   global micro-batch order, 0 + t_0 + t_1 + ... + t_{Ng-1}, which is
 *   exactly what one process with grad_accum N x g does (dist_step). So N
 *   ranks x grad_accum g give, bit for bit, the weights of 1 process x
 *   grad_accum N x g;
 * - the logged loss (the per-micro-batch losses gathered and summed in
 *   global order), the gradient norm and AdamW (on the whole gathered
 *   gradient, on every rank, identical);
 * - fault messages: which rank, and why (dist_fail, the watchdog).
 *
 * The sums run where the gradients are, through the backend's vec ops
 * (backend.h): host loops on the CPU, CUDA kernels on a GPU, in the same
 * order; the transport moves the bytes (host memory for MPI, device
 * memory for NCCL). With bf16 gradients (`--dist-grad bf16`) every piece
 * travels as bf16 (rounded to nearest even), the owner adds the pieces in
 * fp32 in the same order, and the summed shard travels back as bf16 too,
 * which every rank (owner included) widens to fp32: the bytes moved halve,
 * every rank still holds identical weights, and two runs are bitwise
 * equal (no longer equal to one process, whose gradients never travel).
 *
 * Without a launcher (no OMPI_COMM_WORLD_SIZE, PMI_SIZE, PMIX_RANK ... in
 * the environment) dist_open gives NULL and nothing here runs: `gptc train`
 * is the single process it always was. */
#ifndef GPTC_DIST_H
#define GPTC_DIST_H

#include <stddef.h>
#include <stdint.h>

#include "backend.h"

typedef struct dist dist;

/* The bytes a transport moves. Every op is collective (all ranks call it in
 * the same order) and returns 0, or -1 with util_err set. */
typedef struct {
  const char *name; /* "MPI", "NCCL" */
  /* send: the full (n) vector of `esize`-byte elements (4: fp32, 2: bf16);
   * piece q = [off[q], off[q+1]) goes to rank q. recv: (size, my shard)
   * every rank's piece of my shard, in rank order */
  int (*exchange)(dist *d, const void *send, void *recv, size_t esize);
  /* buf: (n) `esize`-byte elements on every rank; afterwards every shard
   * holds its owner's values */
  int (*gather_shards)(dist *d, void *buf, size_t esize);
  /* mine: (bytes) from this rank; all: (size, bytes) every rank's, in rank order */
  int (*allgather)(dist *d, const void *mine, size_t bytes, void *all);
  int (*barrier)(dist *d);
  /* ends every rank now (after a one-sided failure); does not return */
  void (*abort)(dist *d, int code);
  void (*close)(dist *d);
  /* ZeRO-1's checkpoints. mine: (my shard) of an (n) vector; all: (n) on
   * rank 0, which receives every shard in place (NULL on the others) */
  int (*gather0)(dist *d, const float *mine, float *all);
} dist_transport;

struct dist {
  int rank, size, local_rank;
  const dist_transport *t;
  void *impl;
  size_t n;                /* floats in the parameter vector (set by dist_bind) */
  size_t *off;             /* (size + 1) shard boundaries */
  /* in the bound backend's memory (dist_bind): */
  backend *b;
  float *acc;              /* (my shard) the ordered sum */
  void *recv;              /* (size, max shard) received pieces, fp32 or bf16 */
  uint16_t *send16;        /* (n) bf16: the pieces sent, then the gathered sums (grad16) */
  int grad16;              /* gradients travel as bf16 (`gptc train --dist-grad bf16`) */
  double timeout_s;        /* per collective (GPTC_DIST_TIMEOUT, default 600 s) */
  /* fault injection for the tests (GPTC_DIST_NAN=RANK:STEP): that rank's
   * gradient and loss are NaN at that step (1-based); -1: none */
  int nan_rank;
  long nan_step;
  double comm_s; /* seconds spent in the step's exchange and gather, summed (gptc bench --ranks) */
  /* ZeRO-1 (`gptc train --zero`): this rank keeps the AdamW moments of its
   * shard only, updates that shard of the weights and all-gathers them */
  int zero;
  float *zm, *zv; /* (my shard) each: the moments of [off[rank], off[rank + 1]) when zero */
};

/* Rank count the launcher set in the environment; 0 without a launcher. */
int dist_env_size(void);
/* Joins the launcher's job (MPI_Init) when there is one; *out = NULL when
 * there is none (the single process, nothing initialised). */
int dist_open(dist **out);
/* The one-rank state a single process with grad_accum > 1 steps through
 * (no transport): its micro-batches are summed in the same order. */
dist *dist_local(void);
/* Sizes the buffers for b's parameter vector (b->n_params floats), in b's
 * memory (its vec ops; set d->grad16 before). dist_unbind frees them: call
 * it before b closes. */
int dist_bind(dist *d, backend *b);
void dist_unbind(dist *d);
void dist_close(dist *d);
/* Bytes this rank sends and receives in a step of g micro-batches: each
 * round's exchange and the gather of the summed shards each move
 * (n - mine) + (size - 1) mine elements of 4 bytes (2 with grad16). 0 on one rank. */
double dist_step_bytes(const dist *d, int g);

/* Shard boundaries of n floats over `size` ranks: off[0] = 0, off[size] = n,
 * the rest multiples of 16 in order. */
void dist_shards(size_t n, int size, size_t *off);
/* The global index (within its step) of rank's local micro-batch k. */
static inline int dist_micro(int rank, int size, int k) { return k * size + rank; }

/* One optimizer step of the whole job: g = s->n_micro local micro-batches
 * (s->inputs holds rank's, in local order; s->offset is the step's first
 * global micro-batch), the ordered reduction, norm, clipping, AdamW.
 * dist_local() is the single process with grad_accum g > 1 (a step of one
 * micro-batch in all goes through the backend's own step, unchanged). *loss and *norm as backend_step's,
 * identical on every rank. *stop_sig and *stop_rank: in: this rank's
 * pending signal (0: none); out: the first rank (in rank order) that has
 * one, and its signal. *bad_rank: the rank whose micro-batch loss was the
 * first non-finite one (-1: none). d must be bound to b (dist_bind). */
int dist_step(dist *d, backend *b, const backend_step *s, double *loss, double *norm, int *stop_sig, int *stop_rank,
              int *bad_rank);
/* The backend can run dist_step (it has the vec ops). */
int dist_backend_ok(const backend *b);

/* ZeRO-1: every rank's moment shards into rank 0's m and v (n floats
 * each; NULL on the other ranks), as one process holds them (checkpoints). */
int dist_gather_moments(dist *d, float *m, float *v);

/* Every rank's `what` (a short string, e.g. the config's hash) against rank
 * 0's; on a difference every rank fails with a message naming the first
 * rank that differs. */
int dist_check_same(dist *d, const char *what, const char *value);
/* Every rank's `bytes` (mine) into all: (size, bytes), in rank order. */
int dist_allgather(dist *d, const char *phase, const void *mine, size_t bytes, void *all);
/* Rank 0's n bytes of buf into every rank's buf (a collective: the other
 * ranks wait here for rank 0, under the watchdog, `phase` naming the wait). */
int dist_share0(dist *d, const char *phase, char *buf, size_t n);
/* A collective barrier under the watchdog. */
int dist_barrier(dist *d, const char *phase);

/* The watchdog: a collective that does not finish in d->timeout_s ends
 * this rank with "rank R of N: no answer from the other ranks within S s
 * (PHASE)" (and so, through the launcher, the job). */
void dist_arm(dist *d, const char *phase);
void dist_disarm(dist *d);

/* A failure on this rank alone: prints "gptc: rank R of N: MSG" and ends
 * the whole job through the transport. */
void dist_fail(dist *d, const char *msg);

/* Transports: dist_mpi.c and dist_nccl.c. */
int dist_mpi_open(dist *d);
/* NCCL over the ranks MPI started (rank 0's unique id shared through MPI):
 * replaces d's transport; buffers are then device pointers, and NCCL's
 * sends and receives run on `stream` (the backend's training stream). */
int dist_nccl_open(dist *d, void *stream);

#endif
