/*
 * `shardprop train --dry-run`: the plan of a run, printed by rank 0 after setting up and
 * before the first step: the configuration, the model's layers and output shapes, the memory
 * a rank holds, the gradient buckets in the order they are exchanged, and (--network) the
 * scaling advice. --json prints the same as one JSON object.
 */
#ifndef SP_TRAIN_PLAN_H
#define SP_TRAIN_PLAN_H

#include <stdbool.h>
#include <stddef.h>

#include "data/data.h"
#include "optim/optim.h"
#include "shardprop/model.h"
#include "train/config.h"
#include "train/exchange.h"
#include "train/step.h"

/* What a run set up, as the plan reports it. */
typedef struct sp_train_setup {
    const sp_train_config *cfg;
    sp_model *m;
    const sp_optimizer *opt;
    const sp_exchange *x;
    const sp_step *step;
    sp_loader *ld, *vld; /* vld: NULL without --val */
    int ranks, threads;
} sp_train_setup;

/* Print the plan to stdout (json: as one JSON line). */
void sp_train_plan_print(const sp_train_setup *s, bool json);

#endif
