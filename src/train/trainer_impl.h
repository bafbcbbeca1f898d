/* Private to src/train/trainer.c and run_files.c: the state of a training run. */
#ifndef SP_TRAIN_TRAINER_IMPL_H
#define SP_TRAIN_TRAINER_IMPL_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "comm/comm.h"
#include "data/data.h"
#include "optim/optim.h"
#include "optim/schedule.h"
#include "train/best.h"
#include "shardprop/model.h"
#include "train/config.h"
#include "train/exchange.h"
#include "train/faults.h"
#include "train/layer_stats.h"
#include "train/report.h"
#include "train/step.h"
#include "train/trace.h"

/* Where a run stands, for checkpoints: the epoch (0-based) and the batches of it done (optimizer
 * steps: with --accum-steps K, a batch is K of the loader's micro-batches). */
typedef struct sp_position {
    int64_t epoch, epoch_batch;
} sp_position;

typedef struct trainer {
    const sp_train_config *cfg;
    sp_comm *comm;
    int rank, size, threads;
    bool talk; /* rank 0 prints */
    /* what the run composes */
    sp_dataset *ds, *vds;
    sp_loader *ld, *vld;
    sp_model *m;
    sp_optimizer *opt;
    sp_schedule sched;
    sp_exchange *x; /* how the gradients cross ranks: float, or --deterministic's fixed point */
    sp_step *stepper;
    bool xent;
    int outputs;   /* classes (xent) or targets (mse); a language model's vocabulary */
    int positions; /* --seq-len T of a language model (a label per position), else 1 */
    /* where the run stands */
    int64_t step, first_step, total_steps, batches_per_epoch;
    /* --accum-steps K: the loader's batches are micro-batches of batch / K samples, K to a step
     * (fewer in an epoch's partial last step); samples: of an epoch */
    int64_t accum, micro_per_epoch, samples;
    sp_position pos;
    double t_start;
    double deadline; /* wall time (sp_comm_wtime) to stop by; 0: none */
    double last_ckpt_time, last_ckpt_s;
    double val_loss, val_acc;  /* the last validation */
    sp_best best;              /* --keep-best / --early-stop: the best epoch so far */
    double compute_s;          /* this epoch's forward + backward + update time of this rank */
    int64_t nonfinite_skipped; /* steps dropped for a non-finite loss or gradient */
    bool skip_nonfinite;       /* --on-nonfinite skip */
    /* the step boundary's timing, for the trace */
    double bnd_t0, bnd_t1;
    double bnd_io0;
    /* what observes the steps */
    FILE *metrics;
    sp_report rep;
    sp_trace tr;        /* --trace timeline; straggler statistics always */
    sp_layer_stats *ls; /* --layer-stats, else NULL */
    sp_faults faults;   /* test-only fault injection */
} trainer;

/* run_files.c: the files of a run, each written by rank 0 and agreed on by every rank. */
sp_status sp_run_choose_start(trainer *t, char *path, size_t cap, bool *resume);
sp_status sp_run_load_start(trainer *t, const char *path, bool resume);
sp_status sp_run_checkpoint(trainer *t, sp_position pos);
sp_status sp_run_write_model(trainer *t, const char *path, sp_position pos);
sp_status sp_run_write_complete_marker(trainer *t);
/* DIR/best.h5 of the run standing at pos (--keep-best); *written: whether it was written (false
 * only when --checkpoint-errors warn turned a failure into a warning). */
sp_status sp_run_write_best(trainer *t, sp_position pos, bool *written);

#endif
