/*
 * comm: the only module that talks MPI. It agrees on decisions, broadcasts, and sums byte
 * ranges of a slab (reducer.h); it knows nothing of layers, models or files.
 *
 * Collective calls are marked (collective): every rank of the communicator must make them in
 * the same order. A rank that fails locally does not return early from the step: it passes its
 * status to sp_comm_agree, which every rank calls before the next collective step, so all
 * ranks learn of the failure together and stop together — nobody waits forever.
 */
#ifndef SP_COMM_COMM_H
#define SP_COMM_COMM_H

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
