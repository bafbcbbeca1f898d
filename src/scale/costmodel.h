/*
 * The alpha-beta cost model of the gradient allreduce and of its overlap with backward
 * (docs/scaling.md derives every formula). Pure arithmetic: no MPI, no clocks.
 *
 * A message of m bytes between two ranks costs alpha + m * beta; summing m bytes into a buffer
 * costs m * gamma (the reduction arithmetic on the CPU). Per allreduce of n bytes over P ranks:
 *   ring                2(P-1) alpha + 2 (P-1)/P n beta + (P-1)/P n gamma
 *   recursive doubling  log2(P) (alpha + n beta + n gamma)
 *   Rabenseifner        2 log2(P) alpha + 2 (P-1)/P n beta + (P-1)/P n gamma
 *                       (reduce-scatter by recursive halving, allgather by recursive doubling)
 *   binomial            2 log2(P) (alpha + n beta) + log2(P) n gamma
 *                       (reduce to rank 0, then broadcast; the root sums log2(P) times n bytes)
 *   ring surrogate      alpha + 2 (P-1)/P n beta + (P-1)/P n gamma
 *                       (what scripts/scale/ simulates: the ring's bytes in one message)
 * log2 is rounded up for P that are not powers of two. gamma is 0 for the cluster presets
 * (a NIC moves the bytes, the core only sums, at several GB/s: docs/scaling.md §8).
 *
 * A CPU-driven network (cpu_driven, e.g. "shm": shared memory of one node) moves and sums the
 * bytes on the cores that compute: nothing overlaps, an allreduce adds its whole cost to the
 * step. Oversubscription: when P ranks share cores < P cores, every rank's compute, and on a
 * CPU-driven network its communication, takes P / cores times as long (cores = 0: a core per
 * rank); a binomial tree's allreduce keeps at most ceil(P/2) ranks busy per round and takes
 * ceil(P/2) / cores times as long when that exceeds 1.
 */
#ifndef SP_SCALE_COSTMODEL_H
#define SP_SCALE_COSTMODEL_H

#include <stdbool.h>
#include <stddef.h>

#include "shardprop/status.h"

typedef struct sp_net {
    char name[80];
    double alpha;    /* seconds per message */
    double beta;     /* seconds per byte (1 / bandwidth) */
    double gamma;    /* seconds per byte summed (the reduction arithmetic) */
    bool cpu_driven; /* communication runs on the compute cores: no overlap (shared memory) */
    int cores;       /* cores the ranks share, 0: one per rank; set by the caller, not parsed */
} sp_net;

/* "ib100" (100 Gb/s, 1 us), "eth25" (25 Gb/s, 10 us), "eth10" (10 Gb/s, 25 us), "shm" (shared
 * memory of one machine, CPU-driven, alpha beta gamma measured by scripts/scale/measure_net.sh),
 * "ALPHA_US:GBITS[:GAMMA_NS]" (e.g. "2:200", "2:200:0.1"; gamma in ns per byte, default 0) or
 * "shm:ALPHA_US:GBITS:GAMMA_NS" (a CPU-driven network with those parameters, what
 * measure_net.sh prints). cores is left 0. SP_ERR_ARG naming the choices otherwise. */
sp_status sp_net_parse(const char *s, sp_net *out);

typedef enum {
    SP_AR_RING,
    SP_AR_RDB, /* recursive doubling */
    SP_AR_RABENSEIFNER,
    SP_AR_BINOMIAL,
    SP_AR_RING_SURROGATE
} sp_ar_alg;

const char *sp_ar_alg_name(sp_ar_alg a);
double sp_cost_allreduce(sp_ar_alg a, int P, double bytes, const sp_net *net);

/* The algorithm of a blocking MPI_Allreduce of a commutative op: Open MPI 4.1's fixed decision
 * (coll/tuned), which SMPI 3.32 copies as --cfg=smpi/coll-selector:ompi. Its segmented ring
 * counts as the ring, its reduce+broadcast as the binomial. */
sp_ar_alg sp_cost_ompi_blocking_alg(int P, double bytes);
/* The algorithm of Open MPI 4.1's MPI_Iallreduce (coll/libnbc, default selection): binomial for
 * fewer than 4 ranks, under 64 KiB or MPI_IN_PLACE (which the trainer uses), else Rabenseifner. */
sp_ar_alg sp_cost_libnbc_alg(int P, double bytes, bool inplace);

/* The trainer's bucket plan (as sp_reducer_create): slices of bucket_bytes cut from the end of
 * n floats, bucket 0 last. Writes at most cap buckets; returns the count (0 for n == 0). */
int sp_cost_bucket_plan(size_t n, size_t bucket_bytes, size_t *begin, size_t *len, int cap);

/* One training step of one rank at a given local batch. */
typedef struct sp_cost_profile {
    int nlayers;
    const double *fwd_s, *bwd_s; /* (nlayers) compute time of each layer */
    const long *w_off;           /* (nlayers) layer's first parameter in the slab, -1: none */
    double update_s;             /* optimizer step (and any other per-step work after backward) */
    size_t nparams;
} sp_cost_profile;

typedef struct sp_cost_step {
    double compute_s; /* forward + backward + update */
    double comm_s;    /* sum of the gradient allreduces (and the loss sum) */
    double step_s;
    double exposed_s;  /* step - compute: communication nobody hid */
    double efficiency; /* compute / step */
    double hidden;     /* 1 - exposed / comm: the fraction of communication hidden */
    int buckets;
} sp_cost_step;

/* Step time at P ranks with buckets of bucket_bytes (0: one bucket of everything).
 * overlap: bucket k's allreduce (algorithm alg) starts when backward has passed the layers it
 * covers (last layer first) and the network is done with bucket k-1; the step ends with
 * max(backward, last allreduce), then an allreduce of 3 doubles (the loss sums, recursive
 * doubling) and the update. !overlap: every bucket after backward, one after the other, with
 * Open MPI's blocking choice (alg ignored). P == 1: no communication at all.
 * net->cpu_driven: step = F + B + sum_k T(n_k) + T_loss + U (alg with overlap, Open MPI's
 * blocking choice without): nothing is hidden. net->cores > 0 and P > cores: compute times
 * P / cores, and a CPU-driven allreduce as the header comment says. */
/* P / net->cores when the P ranks outnumber the cores (net->cores > 0), else 1. */
double sp_cost_oversubscription(int P, const sp_net *net);

void sp_cost_step_time(const sp_cost_profile *p, size_t bucket_bytes, int P, const sp_net *net,
                       sp_ar_alg alg, bool overlap, sp_cost_step *out);

#endif
