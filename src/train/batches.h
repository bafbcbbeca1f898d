/* Walking a loader's batches in step with every rank. */
#ifndef SP_TRAIN_BATCHES_H
#define SP_TRAIN_BATCHES_H

#include <stdint.h>

#include "data/data.h"
#include "comm/comm.h"

/* Set in *flags when the epoch has no more batches (on every rank at once: every rank has the
 * same number of global batches). Callers may use the other bits for their own decisions. */
#define SP_BATCH_EPOCH_DONE 1u

/*
 * The next batch of this rank, agreed with every rank (collective). `pending` is the caller's
 * status so far: when it is not SP_OK no batch is read, and the failure is agreed on. *flags
 * comes in with the caller's own bits (OR-ed over ranks) and goes out with SP_BATCH_EPOCH_DONE
 * when the epoch ended. Returns the agreed status: a rank that failed to read (or failed
 * earlier) stops everyone, with its message.
 */
sp_status sp_next_batch_agreed(sp_loader *ld, sp_comm *c, sp_status pending, sp_batch *b,
                               uint32_t *flags);

#endif
