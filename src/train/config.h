/*
 * The configuration of `shardprop train`: every flag, its default and its meaning in one
 * table, readable from the command line and from a `--config FILE` of `key = value` lines
 * (the same names without dashes; `#` starts a comment; command-line flags override the file;
 * unknown keys are errors naming the file and line).
 */
#ifndef SP_TRAIN_CONFIG_H
#define SP_TRAIN_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "shardprop/status.h"

typedef struct sp_train_config {
    /* data and model */
    const char *data, *val, *model, *loss, *x_name, *y_name;
    const char *augment; /* --augment LIST (data/augment.h) for the training data, or NULL */
    int64_t data_cache_mb;
    int64_t seq_len; /* > 0: token data, windows of seq_len tokens (a language model) */
    bool no_shuffle, no_prefetch;
    const char *shuffle;    /* "global" or "shards" (data/data.h sp_epoch_order_shards) */
    int64_t shuffle_window; /* --shuffle shards: files per window */
    /* length */
    int64_t epochs, max_steps, batch;
    int64_t accum_steps; /* K: each step's batch in K micro-steps of batch / K (gradient
                            accumulation; 1: none) */
    /* optimization */
    const char *optimizer, *schedule;
    double lr, momentum, weight_decay, beta1, beta2, eps, clip_norm, lr_gamma, min_lr;
    bool nesterov;
    int64_t warmup_steps, lr_step_every;
    /* run */
    int64_t seed, threads, log_every, check_every, max_memory_mb;
    double bucket_mb;
    const char *out, *metrics, *config_file, *on_nonfinite;
    bool quiet, dry_run, json;
    const char *network; /* --dry-run advice (scale/scaleplan.h) */
    /* checkpoints and resume */
    const char *checkpoint_dir, *resume, *init_from, *checkpoint_errors;
    int64_t checkpoint_every, keep;
    /* --keep-best, --early-stop N (0: off); best_metric is resolved to "val_loss" when either
     * comes without it, and stays NULL otherwise */
    bool keep_best;
    int64_t early_stop;
    const char *best_metric;
    double checkpoint_every_minutes, max_time, collective_timeout;
    /* seeing what happened: --trace, --trace-max-events, --layer-stats */
    const char *trace;
    int64_t trace_max_events;
    bool layer_stats;
    /* --deterministic (train/deterministic.c); micro_batch is resolved to the default by the
     * parsers when --deterministic comes without it */
    bool deterministic;
    int64_t micro_batch;
    const char *bn_stats; /* "global" (batch norm's statistics summed over ranks) or "local" */
    /* --model @FILE: model is the file's spec on one line (for the stored configuration),
     * model_text the file's text (the model is built from it, so errors name its lines) and
     * model_file the path; both NULL for a spec given inline */
    const char *model_text, *model_file;
} sp_train_config;

/* --micro-batch when --deterministic is given without it. */
#define SP_DET_DEFAULT_MICRO_BATCH 16

/* Owns the strings read from a config file. */
typedef struct sp_train_args sp_train_args;

/* Parse argv (argv[0] = "train") into *cfg, reading --config first if given. *help is set for
 * --help (the text is printed by sp_train_print_help). Errors: SP_ERR_ARG, one line. */
sp_status sp_train_config_parse(sp_train_config *cfg, int argc, char **argv, bool *help,
                                sp_train_args **owned);
void sp_train_args_free(sp_train_args *a);

/* The same for the text of a config file alone (len bytes, as read from a file; no command
 * line): defaults, then the file's keys. `name` stands for the file in messages. For the fuzz
 * target and tests; *owned must be freed with sp_train_args_free whatever the result. */
sp_status sp_train_config_parse_text(sp_train_config *cfg, const char *text, size_t len,
                                     const char *name, sp_train_args **owned);
void sp_train_print_help(FILE *f);

/* Cross-field checks (a loss name, an optimizer name, ranges that depend on each other). */
sp_status sp_train_config_check(const sp_train_config *cfg);

/* The resolved configuration as "key = value\n" lines, in the table's order (malloc'd). It is
 * itself a valid --config file. */
char *sp_train_config_format(const sp_train_config *cfg);

#endif
