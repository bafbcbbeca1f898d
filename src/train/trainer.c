/*
 * The trainer (train/trainer.h): it sets a run up, walks its epochs, and between every two
 * steps takes the decisions all ranks take together (stop, checkpoint, go on). The step itself
 * is train/step.c; logging, tracing and statistics observe it from here.
 */
#include "train/trainer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "comm/reducer.h"
#include "comm/watchdog.h"
#include "data/augment.h"
#include "io/checkpoint.h"
#include "model/layer_hook.h"
#include "train/batches.h"
#include "train/eval.h"
#include "train/plan.h"
#include "train/trainer_impl.h"
#include "util/mem.h"
#include "util/signals.h"
#include "util/status.h"
#include "util/threads.h"

/* Flags agreed by all ranks at every step boundary (OR over ranks). */
enum {
    FLAG_EPOCH_DONE = SP_BATCH_EPOCH_DONE, /* no more batches in this epoch */
    FLAG_SIGNAL = 1u << 1,                 /* a stop signal arrived on some rank */
    FLAG_CKPT_TIME = 1u << 2,              /* --checkpoint-every-minutes elapsed (rank 0's clock) */
    FLAG_OUT_OF_TIME = 1u << 3 /* --max-time / SLURM_JOB_END_TIME is near (rank 0's clock) */
};

/* Flags agreed by all ranks after a complete epoch's validation (--keep-best, --early-stop). */
enum {
    FLAG_IMPROVED = 1u << 0,  /* the epoch beat the best so far */
    FLAG_EXHAUSTED = 1u << 1, /* --early-stop N epochs went by without improvement */
};

/* ------------------------------------------------------------------ observers of the step */

/* The model's layer hook (set only with --trace or --layer-stats). */
static void on_layer_(void *user, sp_hook_event ev, int layer, const float *dy, size_t n) {
    trainer *t = user;
    sp_trace_layer_event(&t->tr, (int)ev, layer);
    if (t->ls && ev == SP_HOOK_BACKWARD_BEGIN) sp_layer_stats_error_signal(t->ls, layer, dy, n);
}

/* The step's observer point: the gradients are global and not yet clipped. */
static void on_reduced_(void *user, sp_model *m, int64_t step) {
    trainer *t = user;
    if (t->faults.reduced) sp_faults_after_reduce(&t->faults, m, step);
    if (t->ls) sp_layer_stats_before_update(t->ls, m);
}

/* Before a step: the trace's spans of the boundary, the layer statistics' choice of a logging
 * step (the same on every rank: a function of the step), the test-only faults. */
static void before_step_(trainer *t) {
    sp_trace_step_begin(&t->tr, t->step + 1);
    if (t->tr.on) {
        sp_loader_stats io;
        sp_loader_get_stats(t->ld, &io);
        const double td = t->bnd_t0 + (io.io_wait_s - t->bnd_io0);
        sp_trace_span(&t->tr, SP_TR_DATA_WAIT, -1, t->bnd_t0, td);
        sp_trace_span(&t->tr, SP_TR_AGREE, -1, td, t->bnd_t1);
    }
    if (t->ls)
        sp_layer_stats_arm(t->ls, (t->step + 1) % t->cfg->log_every == 0 ||
                                      t->pos.epoch_batch + 1 == t->batches_per_epoch ||
                                      t->step + 1 == t->total_steps);
    if (t->faults.before) sp_faults_before_step(&t->faults, t->step);
}

/* Compare the parameter checksums of all ranks; a mismatch is an error naming the step. */
static sp_status check_params_(trainer *t) {
    const uint64_t h = sp_checksum_floats(sp_model_params(t->m), sp_model_num_params(t->m));
    bool equal = false;
    SP_CHECK(sp_comm_all_equal_u64(t->comm, h, &equal));
    if (!equal)
        return SP_FAIL(SP_ERR_MPI,
                       "parameters differ between ranks at step %lld (checksums disagree): the "
                       "ranks no longer train the same model",
                       (long long)t->step);
    return SP_OK;
}

/* After a step: its time and spans, the layer statistics (collective on logging steps), the
 * checksum comparison, the step line, and the periodic checkpoint. */
static sp_status after_step_(trainer *t, const sp_batch *b, const sp_step_result *r, double lr) {
    const sp_train_config *c = t->cfg;
    const sp_step_times *ts = &r->t;
    t->compute_s += (ts->wait - ts->start) + (ts->end - ts->update);
    sp_trace_compute_end_at(&t->tr, ts->wait);
    if (b->count > 0) sp_trace_span(&t->tr, SP_TR_FORWARD, -1, ts->start, ts->backward);
    sp_trace_span(&t->tr, SP_TR_BACKWARD, -1, ts->backward, ts->wait);
    sp_trace_span(&t->tr, SP_TR_ALLREDUCE_WAIT, -1, ts->wait, ts->reduced);
    sp_trace_buckets(&t->tr, t->x->reducer);
    sp_trace_span(&t->tr, SP_TR_OPTIMIZER, -1, ts->update, ts->end);
    t->step++;
    t->pos.epoch_batch++;
    if (!strcmp(c->bn_stats, "local") && sp_model_num_buffers(t->m)) /* every rank the same */
        SP_CHECK(
            sp_comm_bcast_floats(t->comm, sp_model_buffers(t->m), sp_model_num_buffers(t->m), 0));
    if (t->ls && sp_layer_stats_armed(t->ls)) {
        const double tl = sp_trace_now(&t->tr);
        SP_CHECK(sp_layer_stats_after_update(t->ls, t->m, t->comm, t->metrics, t->step,
                                             t->pos.epoch + 1, lr));
        sp_trace_span(&t->tr, SP_TR_LAYER_STATS, -1, tl, sp_trace_now(&t->tr));
    }
    sp_trace_span(&t->tr, SP_TR_STEP, -1, t->tr.step_t0, sp_trace_now(&t->tr));
    if (c->check_every > 0 && t->step % c->check_every == 0) SP_CHECK(check_params_(t));
    sp_report_step(&t->rep, r, t->step, t->pos.epoch, t->pos.epoch_batch, lr);
    if (c->checkpoint_dir && c->checkpoint_every > 0 && t->step % c->checkpoint_every == 0 &&
        t->step < t->total_steps)
        SP_CHECK(sp_run_checkpoint(t, t->pos));
    return SP_OK;
}

/* ------------------------------------------------------------------ the step boundary */

/* What only rank 0's clock decides (and a signal on any rank); the agreement spreads it. */
static uint32_t boundary_flags_(trainer *t) {
    const sp_train_config *c = t->cfg;
    uint32_t f = sp_signals_pending() ? FLAG_SIGNAL : 0u;
    if (t->rank != 0) return f;
    const double now = sp_comm_wtime();
    if (c->checkpoint_dir && c->checkpoint_every_minutes > 0 &&
        now - t->last_ckpt_time >= c->checkpoint_every_minutes * 60.0)
        f |= FLAG_CKPT_TIME;
    if (t->deadline > 0) {
        /* stop while there is time for two more steps and a checkpoint, with a margin */
        const double per_step =
            t->step > t->first_step ? (now - t->t_start) / (double)(t->step - t->first_step) : 0;
        if (now + 2 * per_step + 2 * t->last_ckpt_s + 5.0 >= t->deadline) f |= FLAG_OUT_OF_TIME;
    }
    return f;
}

/* This rank's next batch, agreed with every rank before the collective step: a rank that failed
 * to read stops everyone, a signal on any rank stops everyone at the same step. */
static sp_status next_batch_(trainer *t, sp_batch *b, uint32_t *flags) {
    *flags = boundary_flags_(t);
    sp_watchdog_set_step(t->comm, t->step + 1);
    t->bnd_t0 = sp_trace_now(&t->tr);
    if (t->tr.on) {
        sp_loader_stats io;
        sp_loader_get_stats(t->ld, &io);
        t->bnd_io0 = io.io_wait_s;
    }
    const sp_status st = sp_next_batch_agreed(t->ld, t->comm, SP_OK, b, flags);
    t->bnd_t1 = sp_trace_now(&t->tr);
    return st;
}

/* The next micro-batch of an optimizer step (sp_step_batches.next), agreed with every rank. A
 * signal or a timer waits for the step's end; the epoch cannot end here (the step's count of
 * micro-batches is a function of its position, the same on every rank). */
static sp_status next_micro_(void *user, sp_batch *b) {
    trainer *t = user;
    uint32_t flags = 0;
    SP_CHECK(sp_next_batch_agreed(t->ld, t->comm, SP_OK, b, &flags));
    if (flags & FLAG_EPOCH_DONE)
        return SP_FAIL(SP_ERR_INTERNAL,
                       "epoch %lld ended inside step %lld: the loader has fewer micro-batches "
                       "than --accum-steps expects",
                       (long long)t->pos.epoch + 1, (long long)t->step + 1);
    return SP_OK;
}

/* The micro-batches of the epoch's optimizer step `epoch_batch` (0-based), whose first is b:
 * K of them, or what is left in the epoch; its global count is that of the whole step. */
static sp_step_batches step_batches_(trainer *t, const sp_batch *b) {
    const int64_t s = t->pos.epoch_batch, B = t->cfg->batch;
    const int64_t left = t->micro_per_epoch - s * t->accum;
    const int64_t rest = t->samples - s * B;
    return (sp_step_batches){.first = b,
                             .count = (int)(left < t->accum ? left : t->accum),
                             .global_count = rest < B ? rest : B,
                             .next = next_micro_,
                             .user = t};
}

/* A signal or the time limit: checkpoint where the run stands and stop, on every rank. */
static sp_status stop_early_(trainer *t, uint32_t flags) {
    const sp_train_config *c = t->cfg;
    const char *why = (flags & FLAG_SIGNAL) ? "a signal" : "the time limit";
    if (!c->checkpoint_dir)
        return SP_FAIL(SP_ERR_INTERRUPT,
                       "stopped by %s at step %lld without --checkpoint-dir: the progress since "
                       "the start is lost",
                       why, (long long)t->step);
    SP_CHECK(sp_run_checkpoint(t, t->pos));
    if (t->talk) {
        if (t->rep.tty) printf("\n");
        printf("stopped by %s: checkpointed at step %lld (epoch %lld, batch %lld); resume with "
               "--resume auto --checkpoint-dir %s\n",
               why, (long long)t->step, (long long)t->pos.epoch + 1, (long long)t->pos.epoch_batch,
               c->checkpoint_dir);
        fflush(stdout);
    }
    return SP_OK;
}

/* ------------------------------------------------------------------ epochs */

/* Evaluate the validation set, distributed: the same code as `shardprop eval`. */
static sp_status validate_(trainer *t) {
    sp_eval_result r;
    const double t0 = sp_comm_wtime();
    const sp_status st = sp_eval_run(t->m, t->vld, t->comm, t->xent, t->outputs, &r);
    if (st == SP_OK) {
        t->val_loss = r.loss;
        t->val_acc = t->xent ? r.accuracy : NAN;
    }
    sp_eval_result_free(&r);
    t->compute_s += sp_comm_wtime() - t0;
    sp_trace_span(&t->tr, SP_TR_EVALUATION, -1, t0, sp_trace_now(&t->tr));
    return st;
}

/* Whether --early-stop ended the run with steps left: patience ran out. */
static bool early_stopped_(const trainer *t) {
    return t->best.on && sp_best_exhausted(&t->best, t->cfg->early_stop) &&
           t->step < t->total_steps;
}

/* After the validation of complete epoch t->pos.epoch (1-based: pos has moved on): the best so
 * far, DIR/best.h5 when it improved, and whether --early-stop's patience ran out. Every rank
 * holds the same global validation values; the decisions are agreed anyway, so that no rank
 * writes or stops alone. */
static sp_status track_best_(trainer *t, bool *exhausted) {
    const sp_train_config *c = t->cfg;
    const int64_t epoch = t->pos.epoch;
    const double v = t->best.higher ? t->val_acc : t->val_loss;
    uint32_t flags = sp_best_update(&t->best, v, epoch) ? FLAG_IMPROVED : 0u;
    if (sp_best_exhausted(&t->best, c->early_stop)) flags |= FLAG_EXHAUSTED;
    SP_CHECK(sp_comm_agree(t->comm, SP_OK, &flags));
    *exhausted = (flags & FLAG_EXHAUSTED) != 0;
    if (!(flags & FLAG_IMPROVED) || !c->keep_best) return SP_OK;
    bool written = false;
    SP_CHECK(sp_run_write_best(t, t->pos, &written));
    if (written && t->talk && !c->quiet) {
        printf("epoch %lld: %s %.4f is the best so far: wrote %s/%s\n", (long long)epoch,
               t->best.metric, t->best.value, c->checkpoint_dir, SP_CKPT_BEST_NAME);
        fflush(stdout);
    }
    return SP_OK;
}

static void epoch_begin_(trainer *t) {
    sp_report_epoch_begin(&t->rep, sp_comm_wtime());
    t->compute_s = 0;
    if (t->x->reducer) sp_reducer_reset_stats(t->x->reducer);
}

/* The epoch's line and record, after its validation pass; a complete epoch also counts for the
 * best so far (*exhausted: --early-stop's patience ran out). A run stopped by --max-steps in the
 * middle of an epoch validates too, but that partial epoch counts only once complete (resumed),
 * so an interrupted run takes the same decisions as an uninterrupted one. */
static sp_status epoch_end_(trainer *t, const sp_loader_stats *io0, bool *exhausted) {
    sp_report_epoch_end(&t->rep, sp_comm_wtime());
    if (t->vld) SP_CHECK(validate_(t));
    sp_reducer_stats rs = {0};
    if (t->x->reducer) sp_reducer_get_stats(t->x->reducer, &rs);
    sp_loader_stats io1;
    sp_loader_get_stats(t->ld, &io1);
    const sp_epoch_stats e = {.val_loss = t->val_loss,
                              .val_acc = t->val_acc,
                              .has_val = t->vld != NULL,
                              .compute_s = t->compute_s,
                              .comm_s = rs.comm_s,
                              .exposed_s = rs.exposed_s,
                              .io_wait_s = io1.io_wait_s - io0->io_wait_s,
                              .read_mb = (double)(io1.bytes_read - io0->bytes_read) / 1048576.0,
                              .read_s = io1.read_s - io0->read_s};
    sp_report_epoch(&t->rep, t->pos.epoch, t->step, &e);
    *exhausted = false;
    if (t->pos.epoch_batch < t->batches_per_epoch) return SP_OK;
    t->pos = (sp_position){t->pos.epoch + 1, 0};
    return t->best.on ? track_best_(t, exhausted) : SP_OK;
}

/* The steps of epoch `epoch`, each behind an agreed boundary. *stop: the run is over (its
 * steps are done, --early-stop ended it, or *early: a signal or the time limit stopped it,
 * checkpointed). */
static sp_status run_epoch_(trainer *t, int64_t epoch, bool *stop, bool *early) {
    const int64_t first = epoch == t->pos.epoch ? t->pos.epoch_batch : 0;
    /* the epoch's reads count from before its start, which may begin prefetching the first
     * batch (only sp_loader_next waits, so io_wait_s is the same either side); the loader counts
     * micro-batches, the position optimizer steps */
    sp_loader_stats io0;
    sp_loader_get_stats(t->ld, &io0);
    SP_CHECK(sp_comm_agree(t->comm, sp_loader_start_epoch(t->ld, epoch, first * t->accum), NULL));
    t->pos = (sp_position){epoch, first};
    epoch_begin_(t);
    for (;;) {
        sp_batch b;
        uint32_t flags;
        SP_CHECK(next_batch_(t, &b, &flags));
        if (flags & (FLAG_SIGNAL | FLAG_OUT_OF_TIME)) {
            *stop = *early = true;
            return stop_early_(t, flags);
        }
        if (flags & FLAG_CKPT_TIME) SP_CHECK(sp_run_checkpoint(t, t->pos));
        if (flags & FLAG_EPOCH_DONE) break;

        before_step_(t);
        const double lr = sp_schedule_lr(&t->sched, t->step);
        sp_step_result r;
        const sp_step_batches in = step_batches_(t, &b);
        SP_CHECK(sp_step_run(t->stepper, &in, t->step, lr, &r));
        if (r.nonfinite)
            SP_CHECK(sp_nonfinite_handle(t->m, t->skip_nonfinite, t->step + 1, r.loss_sum,
                                         r.bad_grad, &r.scan, &t->nonfinite_skipped, t->talk));
        SP_CHECK(after_step_(t, &b, &r, lr));
        if (t->step >= t->total_steps) {
            *stop = true;
            break;
        }
    }
    bool exhausted = false;
    SP_CHECK(epoch_end_(t, &io0, &exhausted));
    if (exhausted) *stop = true;
    return SP_OK;
}

/* ------------------------------------------------------------------ setting up */

/* The data files, and the loss their y asks for. */
static sp_status open_tokens_(trainer *t) {
    const sp_train_config *c = t->cfg;
    if (strcmp(c->loss, "auto") && strcmp(c->loss, "xent"))
        return SP_FAIL(SP_ERR_ARG, "--seq-len: a language model's loss is xent, not %s", c->loss);
    SP_CHECK(sp_dataset_open_tokens_items(&t->ds, c->data, "--data", c->x_name, c->seq_len));
    const sp_dataset_info *di = sp_dataset_get_info(t->ds);
    if (c->val) {
        SP_CHECK(sp_dataset_open_tokens_items(&t->vds, c->val, "--val", c->x_name, c->seq_len));
        const sp_dataset_info *vi = sp_dataset_get_info(t->vds);
        if (vi->classes > di->classes)
            return SP_FAIL(SP_ERR_DATA, "%s: dataset '%s': vocab_size %lld, above %s's %lld",
                           c->val, vi->x_name, (long long)vi->classes, c->data,
                           (long long)di->classes);
    }
    t->xent = true;
    t->outputs = (int)di->classes;
    t->positions = (int)c->seq_len;
    return SP_OK;
}

static sp_status open_data_(trainer *t) {
    const sp_train_config *c = t->cfg;
    t->positions = 1;
    if (c->seq_len > 0) return open_tokens_(t);
    SP_CHECK(sp_dataset_open_items(&t->ds, c->data, "--data", c->x_name, c->y_name, 0));
    const sp_dataset_info *di = sp_dataset_get_info(t->ds);
    if (c->val) {
        SP_CHECK(sp_dataset_open_items(&t->vds, c->val, "--val", c->x_name, c->y_name, 0));
        const sp_dataset_info *vi = sp_dataset_get_info(t->vds);
        SP_CHECK(sp_dataset_check_input_shape(t->vds, di->sample_shape, di->sample_rank));
        if (vi->regression != di->regression || (vi->regression && vi->targets != di->targets))
            return SP_FAIL(SP_ERR_DATA, "%s: dataset '%s': its targets do not match %s's", c->val,
                           vi->y_name, c->data);
    }
    /* the loss follows y: integer labels -> cross-entropy, float targets -> MSE */
    t->xent = !strcmp(c->loss, "auto") ? !di->regression : !strcmp(c->loss, "xent");
    if (t->xent && di->regression)
        return SP_FAIL(SP_ERR_DATA, "%s: dataset '%s': --loss xent needs integer labels, y is %s",
                       c->data, di->y_name, di->y_dtype);
    if (!t->xent && !di->regression)
        return SP_FAIL(SP_ERR_DATA,
                       "%s: dataset '%s': --loss mse needs float targets (N, T), y holds integer "
                       "labels",
                       c->data, di->y_name);
    t->outputs = (int)(t->xent ? di->classes : di->targets);
    if (di->sample_rank != 1 && di->sample_rank != 3)
        return SP_FAIL(SP_ERR_DATA,
                       "%s: dataset '%s': samples of rank %d; shardprop models take (N, F) or "
                       "(N, C, H, W)",
                       c->data, di->x_name, di->sample_rank);
    return SP_OK;
}

/* A language model gives (T, V) per window of T tokens, V the data's vocabulary, and its
 * embeddings take every token id of the data. */
static sp_status check_language_model_(trainer *t) {
    const sp_train_config *c = t->cfg;
    const int n = sp_model_num_layers(t->m);
    int64_t shape[3];
    const int rank = sp_model_layer_out_shape(t->m, n - 1, shape);
    if (rank != 2 || shape[0] != c->seq_len || shape[1] != t->outputs)
        return SP_FAIL(SP_ERR_SPEC,
                       "model spec: a language model on %s (vocab_size %d, --seq-len %lld) must "
                       "end with (T, V) = (%lld, %d) logits, one row per position; end the model "
                       "with dense:%d (or dense:%d:tie)",
                       c->data, t->outputs, (long long)c->seq_len, (long long)c->seq_len,
                       t->outputs, t->outputs, t->outputs);
    for (int i = 0; i < n; ++i) {
        size_t w_off, b_off;
        int w_rank;
        int64_t w_shape[4], b_len;
        if (strcmp(sp_model_layer_name(t->m, i), "embedding") ||
            !sp_model_layer_params(t->m, i, &w_off, &w_rank, w_shape, &b_off, &b_len))
            continue;
        if (w_shape[0] < t->outputs)
            return SP_FAIL(
                SP_ERR_SPEC, "model spec: layer %s embeds %lld token ids but %s has vocab_size %d",
                sp_model_layer_path(t->m, i), (long long)w_shape[0], c->data, t->outputs);
    }
    return SP_OK;
}

/* The model for this rank's largest slice, its optimizer and learning-rate schedule. */
static sp_status build_model_(trainer *t) {
    const sp_train_config *c = t->cfg;
    const sp_dataset_info *di = sp_dataset_get_info(t->ds);
    /* with --accum-steps K the model holds a micro-batch: this rank's largest slice of B / K */
    const int64_t local_max = sp_rank_slice_max(c->batch / c->accum_steps,
                                                c->deterministic ? c->micro_batch : 0, t->size);
    const sp_status st = sp_model_create(&t->m, c->model_text ? c->model_text : c->model,
                                         di->sample_shape, di->sample_rank, (int)local_max);
    if (st != SP_OK && c->model_file) { /* name the file whose lines the message counts */
        char why[1024];
        snprintf(why, sizeof why, "%s", sp_last_error());
        return SP_FAIL(st, "--model @%s: %s", c->model_file, why);
    }
    SP_CHECK(st);
    if (t->positions > 1)
        SP_CHECK(check_language_model_(t));
    else if (sp_model_output_size(t->m) != (size_t)t->outputs)
        return SP_FAIL(SP_ERR_SPEC,
                       "model spec: the last layer gives %zu outputs but %s has %d %s; end the "
                       "model with dense:%d",
                       sp_model_output_size(t->m), c->data, t->outputs,
                       t->xent ? "classes" : "targets", t->outputs);
    sp_opt_kind kind;
    SP_CHECK(sp_opt_kind_parse(c->optimizer, &kind));
    sp_opt_config oc = sp_opt_config_defaults(kind);
    oc.momentum = (float)c->momentum;
    oc.nesterov = c->nesterov;
    oc.weight_decay = (float)c->weight_decay;
    oc.beta1 = (float)c->beta1, oc.beta2 = (float)c->beta2, oc.eps = (float)c->eps;
    if (kind != SP_OPT_SGD) oc.momentum = 0, oc.nesterov = false;
    SP_CHECK(sp_opt_config_check(&oc));
    SP_CHECK(sp_optim_create(&t->opt, &oc, sp_model_num_params(t->m)));

    t->batches_per_epoch = sp_batches_per_epoch(di->n, c->batch);
    t->accum = c->accum_steps;
    t->micro_per_epoch = sp_batches_per_epoch(di->n, c->batch / c->accum_steps);
    t->samples = di->n;
    t->total_steps = t->batches_per_epoch * c->epochs;
    if (c->max_steps >= 0 && c->max_steps < t->total_steps) t->total_steps = c->max_steps;
    SP_CHECK(sp_sched_kind_parse(c->schedule, &t->sched.kind));
    t->sched.base_lr = c->lr;
    t->sched.warmup_steps = c->warmup_steps;
    t->sched.step_every = c->lr_step_every;
    t->sched.gamma = c->lr_gamma;
    t->sched.total_steps = t->total_steps > c->warmup_steps ? t->total_steps : c->warmup_steps + 1;
    t->sched.min_lr = c->min_lr;
    return SP_OK;
}

/* The loaders, the gradient exchange and the step, and what observes the steps. */
static sp_status build_run_(trainer *t) {
    const sp_train_config *c = t->cfg;
    sp_loader_config lc = {.batch = c->batch / c->accum_steps,
                           .rank = t->rank,
                           .nranks = t->size,
                           .seed = (uint64_t)c->seed,
                           .shuffle = !c->no_shuffle,
                           .cache_mb = (size_t)c->data_cache_mb,
                           .prefetch = !c->no_prefetch,
                           .micro_batch = c->deterministic ? c->micro_batch : 0,
                           .shuffle_window = strcmp(c->shuffle, "shards") ? 0 : c->shuffle_window,
                           .augment = c->augment};
    SP_CHECK(sp_loader_create(&t->ld, t->ds, &lc));
    if (t->vds) { /* validation measures the model on the data as they are */
        lc.micro_batch = 0;
        lc.shuffle = false;
        lc.augment = NULL;
        SP_CHECK(sp_loader_create(&t->vld, t->vds, &lc));
    }
    /* the one choice of how gradients cross ranks; the step does not know which */
    const size_t bucket_bytes = (size_t)(c->bucket_mb * 1024.0 * 1024.0);
    SP_CHECK(c->deterministic
                 ? sp_exchange_fixed_create(&t->x, t->m, t->comm, c->micro_batch, bucket_bytes)
                 : sp_exchange_float_create(&t->x, t->m, t->comm, bucket_bytes));
    sp_faults_from_env(&t->faults, t->rank);
    const bool observe_reduced = c->layer_stats || t->faults.reduced;
    const sp_step_config sc = {.xent = t->xent,
                               .outputs = t->outputs,
                               .positions = t->positions,
                               .clip_norm = c->clip_norm,
                               .seed = (uint64_t)c->seed,
                               .on_reduced = observe_reduced ? on_reduced_ : NULL,
                               .user = t};
    SP_CHECK(sp_step_create(&t->stepper, t->m, t->opt, t->x, &sc));
    /* batch norm's statistics: of the global batch (summed through the exchange), or each
     * rank's own (--bn-stats local; the running statistics are then rank 0's, as DDP's) */
    if (strcmp(c->bn_stats, "local")) sp_model_set_allsum(t->m, sp_exchange_allsum, t->x);
    SP_CHECK(sp_trace_init(&t->tr, c->trace, t->rank == 0, (size_t)c->trace_max_events));
    if (c->layer_stats) SP_CHECK(sp_layer_stats_create(&t->ls, t->m, t->rank == 0));
    if (c->trace || c->layer_stats) sp_model_set_layer_hook(t->m, on_layer_, t);
    if (c->metrics && t->rank == 0) {
        t->metrics = fopen(c->metrics, "a");
        if (!t->metrics)
            return SP_FAIL(SP_ERR_IO, "%s: cannot open the metrics file for appending", c->metrics);
    }
    t->rep = (sp_report){.talk = t->talk,
                         .tty = sp_report_stdout_is_terminal(),
                         .quiet = c->quiet,
                         .xent = t->xent,
                         .exact = c->deterministic,
                         .outputs = t->outputs,
                         .positions = t->positions,
                         .log_every = c->log_every,
                         .total_steps = t->total_steps,
                         .batches_per_epoch = t->batches_per_epoch,
                         .epochs = c->epochs,
                         .metrics = t->metrics};
    return SP_OK;
}

/* Everything that can fail locally before the first collective step; agreed by the caller. */
static sp_status setup_local_(trainer *t) {
    SP_CHECK(open_data_(t));
    if (t->best.higher && !t->xent)
        return SP_FAIL(SP_ERR_ARG,
                       "--best-metric val_accuracy needs classes (integer labels); %s has float "
                       "targets (mse): use --best-metric val_loss",
                       t->cfg->data);
    SP_CHECK(build_model_(t));
    return build_run_(t);
}

/* What a run starts from, where it runs, and what it prints before the first step. */
static sp_status start_(trainer *t, bool *done) {
    const sp_train_config *c = t->cfg;
    *done = false;
    /* the same initial parameters everywhere: seeded init (or a checkpoint), broadcast anyway,
     * verified */
    sp_model_init_params(t->m, (uint64_t)c->seed);
    char start[4096];
    bool resume = false;
    SP_CHECK(sp_run_choose_start(t, start, sizeof start, &resume));
    if (start[0]) SP_CHECK(sp_comm_agree(t->comm, sp_run_load_start(t, start, resume), NULL));
    SP_CHECK(sp_comm_bcast_floats(t->comm, sp_model_params(t->m), sp_model_num_params(t->m), 0));
    SP_CHECK(check_params_(t));
    t->first_step = t->step;

    char layout[8192];
    int warnings = 0;
    SP_CHECK(sp_comm_layout_report(t->comm, t->threads, layout, sizeof layout, &warnings));
    if (c->dry_run) {
        if (t->rank == 0) {
            const sp_train_setup s = {.cfg = c,
                                      .m = t->m,
                                      .opt = t->opt,
                                      .x = t->x,
                                      .step = t->stepper,
                                      .ld = t->ld,
                                      .vld = t->vld,
                                      .ranks = t->size,
                                      .threads = t->threads};
            sp_train_plan_print(&s, c->json);
            if (!c->json) fputs(layout, stdout);
        }
        *done = true;
        return SP_OK;
    }
    /* where the run starts from is worth a line even in --quiet runs (job logs) */
    if (t->talk && start[0]) {
        printf("%s %s: step %lld, epoch %lld, batch %lld of the epoch\n",
               resume ? "resuming from" : "initialized from", start, (long long)t->step,
               (long long)t->pos.epoch + 1, (long long)t->pos.epoch_batch);
        fflush(stdout);
    }
    if (t->talk && (!c->quiet || warnings)) {
        char line[512];
        sp_dataset_describe(t->ds, line, sizeof line);
        printf("data: %s\n", line);
        if (t->vds) {
            sp_dataset_describe(t->vds, line, sizeof line);
            printf("validation: %s\n", line);
        }
        sp_augment aug;
        if (c->augment && sp_augment_parse(&aug, c->augment) == SP_OK && aug.n > 0) {
            sp_augment_format(&aug, line, sizeof line);
            printf("augment: %s (the training batches only)\n", line);
        }
        printf("model: %s (%zu parameters), loss %s, optimizer %s lr %g, batch %lld", c->model,
               sp_model_num_params(t->m), t->xent ? "xent" : "mse", c->optimizer, c->lr,
               (long long)c->batch);
        if (c->accum_steps > 1)
            printf(" in %lld micro-steps of %lld", (long long)c->accum_steps,
                   (long long)(c->batch / c->accum_steps));
        printf(" (%lld per rank at most)\n", (long long)sp_model_max_batch(t->m));
        printf("reading %.1f MB per epoch per rank (rank 0), %lld steps in %lld epochs\n",
               (double)sp_loader_bytes_per_epoch(t->ld) / 1e6, (long long)t->total_steps,
               (long long)c->epochs);
        fputs(layout, stdout);
        fflush(stdout);
    }
    if (c->max_steps == 0) {
        if (c->out) SP_CHECK(sp_run_write_model(t, c->out, (sp_position){0, 0}));
        if (t->talk && !c->quiet)
            printf("max-steps 0: wrote the initialized model%s%s\n", c->out ? " to " : "",
                   c->out ? c->out : "");
        *done = true;
    }
    return SP_OK;
}

/* The end of a run whose steps are all done: the final checks, files and summary. */
static sp_status finish_(trainer *t, int64_t epochs) {
    const sp_train_config *c = t->cfg;
    sp_report_flush(&t->rep, t->step, epochs - 1,
                    sp_schedule_lr(&t->sched, t->step > 0 ? t->step - 1 : 0));
    SP_CHECK(check_params_(t));
    const double total = sp_comm_wtime() - t->t_start;
    /* the final state, so that --resume auto on a finished run has nothing left to do */
    if (c->checkpoint_dir) {
        SP_CHECK(sp_run_checkpoint(t, t->pos));
        SP_CHECK(sp_run_write_complete_marker(t));
    }
    if (c->out) SP_CHECK(sp_run_write_model(t, c->out, t->pos));
    const sp_run_summary s = {.steps = t->step,
                              .epochs = epochs,
                              .nonfinite_skipped = t->nonfinite_skipped,
                              .time_s = total,
                              .val_loss = t->val_loss,
                              .val_acc = t->val_acc,
                              .has_val = t->vld != NULL,
                              .out = c->out,
                              .ranks = t->size,
                              .threads = t->threads,
                              .params = (int64_t)sp_model_num_params(t->m),
                              .best_metric = t->best.on ? t->best.metric : NULL,
                              .best_value = t->best.value,
                              .best_epoch = t->best.epoch,
                              .early_stopped = early_stopped_(t)};
    sp_report_summary(&t->rep, &s);
    return SP_OK;
}

static sp_status train_(trainer *t) {
    const sp_train_config *c = t->cfg;
    SP_CHECK(sp_comm_agree(t->comm, setup_local_(t), NULL));
    bool done;
    SP_CHECK(start_(t, &done));
    if (done) return SP_OK;

    SP_CHECK(sp_watchdog_start(t->comm, c->collective_timeout));
    SP_CHECK(sp_trace_start(&t->tr, t->comm));
    t->t_start = t->last_ckpt_time = sp_comm_wtime();
    sp_report_start(&t->rep, t->t_start);
    /* a resumed run whose patience had run out has nothing left to do, as a finished one */
    bool stop = t->step >= t->total_steps || early_stopped_(t), early = false;
    int64_t epoch = t->pos.epoch;
    for (; epoch < c->epochs && !stop; ++epoch) {
        SP_CHECK(run_epoch_(t, epoch, &stop, &early));
        if (early) break;
    }
    sp_watchdog_stop(t->comm);
    if (early) return SP_OK;
    if (early_stopped_(t) && t->talk) {
        if (t->rep.tty) printf("\n");
        printf("early stop: no improvement of %s for %lld epochs", t->best.metric,
               (long long)t->best.since);
        if (t->best.epoch > 0)
            printf(" (best %.4f at epoch %lld)\n", t->best.value, (long long)t->best.epoch);
        else
            printf(" (no finite value yet)\n");
        fflush(stdout);
    }
    return finish_(t, epoch);
}

static void free_trainer_(trainer *t) {
    sp_loader_free(t->ld);
    sp_loader_free(t->vld);
    sp_dataset_close(t->ds);
    sp_dataset_close(t->vds);
    sp_step_free(t->stepper);
    sp_exchange_free(t->x);
    sp_optim_free(t->opt);
    sp_model_free(t->m);
    sp_trace_free(&t->tr);
    sp_layer_stats_free(t->ls);
    if (t->metrics) fclose(t->metrics);
}

sp_status sp_train_run(const sp_train_config *cfg, sp_comm *comm) {
    /* from here on a stop signal is a request, handled at the first step boundary */
    sp_signals_install();
    if (cfg->max_memory_mb > 0) sp_mem_set_limit((size_t)cfg->max_memory_mb << 20);
    trainer t;
    memset(&t, 0, sizeof t);
    t.cfg = cfg;
    t.comm = comm;
    t.rank = sp_comm_rank(comm);
    t.size = sp_comm_size(comm);
    t.threads = sp_set_threads(cfg->threads);
    t.talk = t.rank == 0;
    t.skip_nonfinite = cfg->on_nonfinite && !strcmp(cfg->on_nonfinite, "skip");
    t.val_loss = t.val_acc = NAN;
    t.best = sp_best_init(cfg->keep_best || cfg->early_stop > 0 ? cfg->best_metric : NULL);
    /* the time limit: --max-time, else the end of the SLURM allocation (less a margin for the
     * shutdown); rank 0's clock decides, the step agreement tells the others */
    if (cfg->max_time > 0) {
        t.deadline = sp_comm_wtime() + cfg->max_time * 60.0;
    } else {
        const char *end = getenv("SLURM_JOB_END_TIME");
        const long long e = end ? atoll(end) : 0;
        if (e > 0) t.deadline = sp_comm_wtime() + (double)(e - (long long)time(NULL)) - 30.0;
    }
    sp_status st = train_(&t);
    /* the straggler line, and the --trace file (collective; every rank got here together) */
    if (st == SP_OK && t.m && !cfg->dry_run)
        st = sp_trace_finish(&t.tr, comm, cfg->trace, t.m, t.x->reducer, t.x->elem_bytes, t.metrics,
                             t.talk);
    free_trainer_(&t);
    return st;
}
