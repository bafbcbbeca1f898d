/*
 * The gradient reducers: a slab summed over the ranks of a communicator in buckets, overlapped
 * with backward (float), or exactly in fixed point (int64 terms, float results: --deterministic).
 */
#ifndef SP_COMM_REDUCER_H
#define SP_COMM_REDUCER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "comm/comm.h"
#include "shardprop/status.h"

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
 * ranks of slab[i]) on every rank (--deterministic's fixed point, kernels/fixed.h).
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

#endif
