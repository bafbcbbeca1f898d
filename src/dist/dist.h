/*
 * dist: the only module that talks MPI. It reduces byte ranges of a slab and agrees on
 * decisions; it knows nothing of layers, models or files.
 *
 * Collective calls are marked (collective): every rank of the communicator must make them in
 * the same order. A rank that fails locally does not return early from the step: it passes its
 * status to sp_comm_agree, which every rank calls before the next collective step, so all
 * ranks learn of the failure together and stop together — nobody waits forever.
 */
#ifndef SP_DIST_H
#define SP_DIST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shardprop/status.h"

typedef struct sp_comm sp_comm;

/* MPI_Init_thread(MPI_THREAD_FUNNELED) unless MPI is already initialized; checks `provided`.
 * Works as a singleton (no mpirun), under mpirun and under srun. (collective) */
sp_status sp_comm_init(sp_comm **out, int *argc, char ***argv);
/* MPI_Finalize if sp_comm_init initialized MPI. (collective) */
void sp_comm_finalize(sp_comm *c);
/* MPI_Abort the whole job with this exit code: for a rank that cannot reach agreement. */
_Noreturn void sp_comm_abort(sp_comm *c, int code);

int sp_comm_rank(const sp_comm *c);
int sp_comm_size(const sp_comm *c);
double sp_comm_wtime(void);

/*
 * Agree on a status (collective): returns SP_OK on every rank iff every rank passed SP_OK.
 * Otherwise every rank returns the status of the lowest failing rank, whose one-line message
 * becomes sp_last_error() on every rank (so rank 0 can print it once), prefixed "rank R: "
 * when the job has more than one rank. `flags` (may be NULL) are OR-ed over ranks in the same
 * reduction: stop requests and the like.
 */
sp_status sp_comm_agree(sp_comm *c, sp_status local, uint32_t *flags);

/* Broadcast n floats / bytes from root. (collective) */
sp_status sp_comm_bcast_floats(sp_comm *c, float *buf, size_t n, int root);
sp_status sp_comm_bcast_bytes(sp_comm *c, void *buf, size_t n, int root);

/* In-place sum of n doubles over ranks. (collective) */
sp_status sp_comm_sum_doubles(sp_comm *c, double *buf, int n);

/* Whether every rank passed the same value (collective). */
sp_status sp_comm_all_equal_u64(sp_comm *c, uint64_t v, bool *equal);

/* Gather a fixed-size record from every rank to root (recv: size * n bytes on root). */
sp_status sp_comm_gather_bytes(sp_comm *c, const void *send, size_t n, void *recv, int root);

/* FNV-1a 64 of n floats' bytes: equal parameters have equal checksums. */
uint64_t sp_checksum_floats(const float *x, size_t n);

/*
 * The gradient reducer: sums a float slab over ranks in buckets, overlapped with backward.
 *
 * Buckets are contiguous slices of the slab of about bucket_bytes, cut from the END (the last
 * layer's gradients are complete first). During backward the trainer calls
 * sp_reducer_ready(r, begin) whenever every gradient at offsets >= begin is final: each bucket
 * that lies entirely in [begin, n) starts its MPI_Iallreduce at once, and requests in flight are
 * progressed (MPI_Testall). sp_reducer_finish starts what is left and waits. bucket_bytes == 0
 * means one blocking MPI_Allreduce of the whole slab at finish (the no-overlap reference).
 */
typedef struct sp_reducer sp_reducer;
sp_status sp_reducer_create(sp_reducer **out, sp_comm *c, float *slab, size_t n,
                            size_t bucket_bytes);
/* The sums of an int64 slab, exact, delivered as floats: result[i] = sp_fix_to_float(sum over
 * ranks of slab[i]) on every rank (--deterministic's fixed point, util/fixed.h).
 * bucket_bytes counts int64 bytes. Each bucket is cut into P shares; each rank sends every other
 * its share of the bucket (MPI_Isend/Irecv: a pairwise reduce-scatter), sums its own share
 * exactly, converts it, and a float MPI_Iallgatherv (on a second communicator, in bucket order)
 * gives every rank all the floats in place in result: 12 bytes per element through the network
 * where an int64 allreduce moves 16, and each rank converts only its share. bucket_bytes 0:
 * MPI_Reduce_scatter + MPI_Allgatherv at finish. The slab is left as it was. */
sp_status sp_reducer_create_fixed(sp_reducer **out, sp_comm *c, int64_t *slab, float *result,
                                  size_t n, size_t bucket_bytes);
/* Bytes the reducer holds besides the slab (its receive buffer). */
size_t sp_reducer_memory_bytes(const sp_reducer *r);
void sp_reducer_free(sp_reducer *r);
int sp_reducer_num_buckets(const sp_reducer *r);
/* Bucket i covers slab[begin, begin + len): bucket 0 is the last slice of the slab. */
void sp_reducer_bucket(const sp_reducer *r, int i, size_t *begin, size_t *len);
void sp_reducer_begin(sp_reducer *r);               /* a new step: no bucket started */
void sp_reducer_ready(sp_reducer *r, size_t begin); /* (collective over the step) */
sp_status sp_reducer_finish(sp_reducer *r);         /* (collective) */

typedef struct sp_reducer_stats {
    double comm_s;    /* wall time with at least one allreduce of the step in flight */
    double exposed_s; /* time finish spent waiting after backward ended */
    uint64_t steps, bytes;
} sp_reducer_stats;
void sp_reducer_get_stats(const sp_reducer *r, sp_reducer_stats *s);
/* After sp_reducer_finish: when bucket i's MPI_Iallreduce of the last step was posted and when
 * this rank saw it complete (MPI_Test during backward, else MPI_Wait in finish), sp_comm_wtime
 * seconds. False when the bucket did not run on its own (bucket_mb 0, one rank). */
bool sp_reducer_bucket_times(const sp_reducer *r, int i, double *posted, double *done);
void sp_reducer_reset_stats(sp_reducer *r);

/*
 * The collective-timeout watchdog: a thread that notices when this rank has waited in one
 * collective call longer than timeout_s, prints which rank, which operation and which step,
 * and aborts the whole job (MPI_Abort). Every collective of this module is watched. Never a
 * silent hang: a rank that stalls outside collectives is caught by the others, which wait for
 * it inside one. timeout_s <= 0: off.
 */
sp_status sp_watchdog_start(sp_comm *c, double timeout_s);
void sp_watchdog_set_step(sp_comm *c, int64_t step);
void sp_watchdog_stop(sp_comm *c);

/* One line per host for the start-up report, and warnings (oversubscription, ranks bound to
 * overlapping cores) — built on rank 0 into buf. (collective) */
sp_status sp_comm_layout_report(sp_comm *c, int threads, char *buf, size_t cap, int *warnings);

/* In-place sum of n int64 values over ranks (exact; any n: sent in chunks). (collective) */
sp_status sp_comm_sum_int64(sp_comm *c, int64_t *buf, size_t n);

/*
 * Gather blocks of different sizes to root, in rank order: rank r sends n bytes; on root,
 * counts[r] (root's array of size() entries; must equal what rank r sends) bytes of rank r land
 * in recv one after another (recv: sum of counts). counts and recv are ignored on other ranks.
 * The total must stay below 2 GiB (MPI int displacements): SP_ERR_ARG otherwise. (collective)
 */
sp_status sp_comm_gatherv_bytes(sp_comm *c, const void *send, size_t n, void *recv,
                                const size_t *counts, int root);

#endif
