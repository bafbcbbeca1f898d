#include "train/batches.h"

sp_status sp_next_batch_agreed(sp_loader *ld, sp_comm *c, sp_status pending, sp_batch *b,
                               uint32_t *flags) {
    bool done = false;
    sp_status st = pending == SP_OK ? sp_loader_next(ld, b, &done) : pending;
    *flags = (*flags & ~SP_BATCH_EPOCH_DONE) | (done ? SP_BATCH_EPOCH_DONE : 0u);
    return sp_comm_agree(c, st, flags);
}
