/*
 * The trainer: the only place that knows the model, the optimizer, the data and the
 * communicator, and composes them into data-parallel training steps.
 *
 * One step: this rank's slice of global batch b arrives from the loader; all ranks agree that
 * it did (or stop together); forward; the loss turns outputs into the error at the output,
 * scaled by 1 / (samples in the global batch); backward passes the blame down layer by layer,
 * and each bucket of the gradient slab starts its allreduce as soon as backward completes it;
 * after the last bucket every rank holds the gradient of the mean loss of the whole global
 * batch, clips it, and makes the same optimizer update.
 */
#ifndef SP_TRAIN_TRAINER_H
#define SP_TRAIN_TRAINER_H

#include "comm/comm.h"
#include "train/config.h"

/* Run `shardprop train` as configured. (collective over the communicator) Returns SP_OK or
 * the agreed error, whose message rank 0 has not yet printed. */
sp_status sp_train_run(const sp_train_config *cfg, sp_comm *comm);

#endif
