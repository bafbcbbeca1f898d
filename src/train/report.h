/*
 * What a training run tells its user: the step lines (or the progress line on a terminal),
 * the epoch lines, the final summary, and the same as JSON records in the --metrics file
 * ("step", "epoch", "summary"; docs/observability.md lists their fields). Rank 0 reports; on
 * other ranks (talk false) every call only keeps the sums, which are global already.
 */
#ifndef SP_TRAIN_REPORT_H
#define SP_TRAIN_REPORT_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "train/step.h"

typedef struct sp_report {
    bool talk;           /* this rank prints and writes the metrics */
    bool tty;            /* a progress line in place instead of step lines */
    bool quiet;          /* errors and the summary only */
    bool xent;           /* cross-entropy: accuracies */
    bool exact;          /* --deterministic: losses also as C99 %a hex, every bit */
    int outputs;         /* the loss is a mean over this many values per sample (mse) */
    int positions;       /* a language model's T: losses and accuracies are per token, also
                            in bits per token (bits per byte for byte-level tokens); else 1 */
    int64_t log_every;   /* a step line every this many steps */
    int64_t total_steps; /* of the run */
    int64_t batches_per_epoch, epochs;
    FILE *metrics; /* NULL: none */
    /* since the last step line, and over the epoch */
    double log_loss, log_n, log_correct, log_t0;
    double ep_loss, ep_n, ep_correct, ep_t0;
    double t_start, last_progress;
    double ep_time, last_loss, last_acc; /* the last epoch's (sp_report_epoch_end) */
} sp_report;

/* Whether rank 0 writes to a person's terminal (under mpirun: the launcher's stdout). */
bool sp_report_stdout_is_terminal(void);

/* The run's steps begin now. */
void sp_report_start(sp_report *r, double now);
void sp_report_epoch_begin(sp_report *r, double now);
/* A step done: step is the number of steps done, batch those of the epoch; lr the rate the
 * step used. A step dropped for a non-finite value does not count in the sums. */
void sp_report_step(sp_report *r, const sp_step_result *res, int64_t step, int64_t epoch,
                    int64_t batch, double lr);
/* The step line of what is left since the last one (at the end of the run). */
void sp_report_flush(sp_report *r, int64_t step, int64_t epoch, double lr);

/* The epoch's steps are done (before its validation pass): its time and mean loss are taken. */
void sp_report_epoch_end(sp_report *r, double now);

/* What an epoch line and record carry besides the report's own sums. */
typedef struct sp_epoch_stats {
    double val_loss, val_acc; /* NaN: no validation */
    bool has_val;             /* --val given */
    double compute_s;         /* this rank's forward + backward + update time */
    double comm_s, exposed_s; /* gradient exchange in flight, and waited for after backward */
    double io_wait_s;         /* waiting for data */
    double read_mb, read_s;   /* this rank's X read from the files (MiB) and time filling batches */
} sp_epoch_stats;

/* The end of epoch `epoch` (0-based) after `step` steps. */
void sp_report_epoch(sp_report *r, int64_t epoch, int64_t step, const sp_epoch_stats *e);

/* The "done:" line and the "summary" record. */
typedef struct sp_run_summary {
    int64_t steps, epochs, nonfinite_skipped;
    double time_s, val_loss, val_acc;
    bool has_val;
    const char *out; /* --out, or NULL */
    int ranks, threads;
    int64_t params;
    /* --keep-best / --early-stop: best_metric NULL when neither is on */
    const char *best_metric; /* "val_loss" | "val_accuracy" */
    double best_value;       /* NaN: no finite value yet */
    int64_t best_epoch;      /* 1-based; 0: none */
    bool early_stopped;      /* --early-stop ended the run with steps left */
} sp_run_summary;
void sp_report_summary(sp_report *r, const sp_run_summary *s);

#endif
