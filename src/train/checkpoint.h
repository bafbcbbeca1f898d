/* TEMPORARY until the checkpoint module lands */
#ifndef SP_TRAIN_CHECKPOINT_H
#define SP_TRAIN_CHECKPOINT_H
#include <stdint.h>
#include "optim/optim.h"
#include "shardprop/model.h"
typedef struct sp_train_state {
    int64_t step, epoch, epoch_batch;
    uint64_t seed;
    const char *config;
    int world_size, threads;
} sp_train_state;
sp_status sp_ckpt_write(const char *path, const sp_model *m, const sp_optimizer *opt,
                        const char *loss_name, const sp_train_state *ts);
#endif
