/*
 * The trainer: the only place that knows the model, the optimizer, the data and the
 * communicator, and composes them into data-parallel training steps.
 *
 * Between two steps: this rank's slice of global batch b arrives from the loader, and all
 * ranks agree that it did, or stop, or checkpoint, together. Then one step (train/step.h):
 * forward; the loss turns outputs into the error at the output, scaled by 1 / (samples in the
 * global batch); backward passes the blame down layer by layer while the buckets of final
 * gradients cross the ranks (train/exchange.h); every rank then holds the gradient of the mean
 * loss of the whole global batch, clips it, and makes the same optimizer update. Logging,
 * tracing, layer statistics and checkpoints observe the step from the trainer.
 */
#ifndef SP_TRAIN_TRAINER_H
#define SP_TRAIN_TRAINER_H

#include "comm/comm.h"
#include "train/config.h"

/* Run `shardprop train` as configured. (collective over the communicator) Returns SP_OK or
 * the agreed error, whose message rank 0 has not yet printed. */
sp_status sp_train_run(const sp_train_config *cfg, sp_comm *comm);

#endif
