/*
 * The files of a training run: where it starts from (--resume, --init-from), its checkpoints,
 * the final model (--out) and the completion marker. Rank 0 chooses and writes; every rank
 * agrees on the outcome before going on.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/augment.h"
#include "io/checkpoint.h"
#include "train/trainer_impl.h"
#include "util/atomic_file.h"
#include "util/status.h"

/* The loss name a checkpoint records. */
static const char *loss_name_(const trainer *t) {
    return t->xent ? "xent" : "mse";
}

/* What a checkpoint records of the run standing at pos (conf: the configuration's text). */
static sp_train_state state_(const trainer *t, sp_position pos, const char *conf) {
    return (sp_train_state){.step = t->step,
                            .epoch = pos.epoch,
                            .epoch_batch = pos.epoch_batch,
                            .seed = (uint64_t)t->cfg->seed,
                            .config = conf ? conf : "",
                            .world_size = t->size,
                            .threads = t->threads};
}

/* The best so far that checkpoints record (NULL without --keep-best and --early-stop). */
static const sp_ckpt_best *best_(const trainer *t, sp_ckpt_best *b) {
    if (!t->best.on) return NULL;
    *b = (sp_ckpt_best){.metric = t->best.metric,
                        .value = t->best.value,
                        .epoch = t->best.epoch,
                        .epochs_since_best = t->best.since};
    return b;
}

/* Rank 0 writes the model file; everyone agrees on the outcome. */
sp_status sp_run_write_model(trainer *t, const char *path, sp_position pos) {
    sp_status st = SP_OK;
    const double t0 = sp_trace_now(&t->tr);
    if (t->rank == 0) {
        char *conf = sp_train_config_format(t->cfg);
        const sp_train_state ts = state_(t, pos, conf);
        st = sp_ckpt_write(path, t->m, t->opt, loss_name_(t), &ts);
        free(conf);
    }
    st = sp_comm_agree(t->comm, st, NULL);
    sp_trace_span(&t->tr, SP_TR_MODEL_WRITE, -1, t0, sp_trace_now(&t->tr));
    return st;
}

/* Write DIR/step_<step>.h5 (rank 0), agreed; --checkpoint-errors warn turns a failure into a
 * warning. */
sp_status sp_run_checkpoint(trainer *t, sp_position pos) {
    const sp_train_config *c = t->cfg;
    const double t0 = sp_comm_wtime();
    sp_status st = SP_OK;
    char written[4096] = "";
    if (t->rank == 0) {
        char *conf = sp_train_config_format(c);
        const sp_train_state ts = state_(t, pos, conf);
        sp_ckpt_best b;
        st = conf ? sp_ckpt_save_tracked(c->checkpoint_dir, t->step, (int)c->keep, t->m, t->opt,
                                         loss_name_(t), &ts, best_(t, &b), written, sizeof written)
                  : SP_FAIL(SP_ERR_NOMEM, "out of memory");
        free(conf);
    }
    st = sp_comm_agree(t->comm, st, NULL);
    sp_trace_span(&t->tr, SP_TR_CHECKPOINT, -1, t0, sp_trace_now(&t->tr));
    t->last_ckpt_s = sp_comm_wtime() - t0;
    t->last_ckpt_time = sp_comm_wtime();
    if (st != SP_OK && !strcmp(c->checkpoint_errors, "warn")) {
        if (t->talk) {
            if (t->rep.tty) printf("\n");
            fprintf(stderr, "shardprop train: warning: checkpoint at step %lld failed: %s\n",
                    (long long)t->step, sp_last_error());
        }
        return SP_OK;
    }
    if (st == SP_OK && t->talk && !c->quiet && !t->rep.tty)
        printf("checkpoint: %s (%.2f s)\n", written, t->last_ckpt_s);
    return st;
}

/* Write DIR/best.h5 (rank 0), agreed; --checkpoint-errors warn turns a failure into a warning,
 * as for the step checkpoints. */
sp_status sp_run_write_best(trainer *t, sp_position pos, bool *written) {
    const sp_train_config *c = t->cfg;
    const double t0 = sp_trace_now(&t->tr);
    sp_status st = SP_OK;
    if (t->rank == 0) {
        char *conf = sp_train_config_format(c);
        const sp_train_state ts = state_(t, pos, conf);
        sp_ckpt_best b;
        st = conf ? sp_ckpt_save_best(c->checkpoint_dir, t->m, t->opt, loss_name_(t), &ts,
                                      best_(t, &b), NULL, 0)
                  : SP_FAIL(SP_ERR_NOMEM, "out of memory");
        free(conf);
    }
    st = sp_comm_agree(t->comm, st, NULL);
    sp_trace_span(&t->tr, SP_TR_CHECKPOINT, -1, t0, sp_trace_now(&t->tr));
    *written = st == SP_OK;
    if (st != SP_OK && !strcmp(c->checkpoint_errors, "warn")) {
        if (t->talk) fprintf(stderr, "shardprop train: warning: %s\n", sp_last_error());
        return SP_OK;
    }
    return st;
}

/* Resuming with --keep-best or --early-stop: carry on from the best the checkpoint recorded, of
 * the same metric. A checkpoint without one (older, or of a run without these flags) starts
 * the count afresh from the resumed position. */
static sp_status load_best_(trainer *t, const char *path, const sp_ckpt_info *info) {
    if (!t->best.on || !info->has_best) return SP_OK;
    const sp_ckpt_best *b = &info->best;
    if (strcmp(b->metric, t->best.metric))
        return SP_FAIL(SP_ERR_ARG,
                       "%s: the run kept the best %s, this one asks for --best-metric %s: "
                       "resuming needs the same metric (or start a new --checkpoint-dir)",
                       path, b->metric, t->best.metric);
    t->best.value = b->value;
    t->best.epoch = b->epoch;
    t->best.since = b->epochs_since_best;
    return SP_OK;
}

/* A "key = value" line of a stored configuration ("" if absent). */
static void config_value_(const char *conf, const char *key, char *out, size_t cap) {
    out[0] = '\0';
    const size_t kl = strlen(key);
    for (const char *p = conf; p && *p;) {
        const char *eol = strchr(p, '\n');
        if (!strncmp(p, key, kl) && !strncmp(p + kl, " = ", 3)) {
            const char *v = p + kl + 3;
            size_t n = eol ? (size_t)(eol - v) : strlen(v);
            if (n >= cap) n = cap - 1;
            memcpy(out, v, n);
            out[n] = '\0';
            return;
        }
        p = eol ? eol + 1 : NULL;
    }
}

/* The run's augmentation against this one's: the same list (in canonical form; a checkpoint
 * without the key had none), else the data a resumed run sees would not be those it would
 * have seen. */
static sp_status same_augment_(const char *path, const char *stored, const char *mine) {
    char v[SP_AUGMENT_SPEC_MAX], cv[SP_AUGMENT_SPEC_MAX], cm[SP_AUGMENT_SPEC_MAX];
    config_value_(stored, "augment", v, sizeof v);
    sp_augment a, b;
    if (sp_augment_parse(&a, v) != SP_OK) {
        char why[1024];
        snprintf(why, sizeof why, "%s", sp_last_error());
        return SP_FAIL(SP_ERR_DATA, "%s: the stored configuration's %s", path, why);
    }
    SP_CHECK(sp_augment_parse(&b, mine));
    sp_augment_format(&a, cv, sizeof cv);
    sp_augment_format(&b, cm, sizeof cm);
    if (strcmp(cv, cm))
        return SP_FAIL(SP_ERR_ARG,
                       "%s: the run used augment = %s, this one %s: resuming needs the same "
                       "augmentation (the samples it trains on depend on it)",
                       path, cv, cm);
    return SP_OK;
}

/* Resume or init-from: load what the checkpoint holds into this rank (every rank reads the same
 * file; rank 0 chose it). */
sp_status sp_run_load_start(trainer *t, const char *path, bool resume) {
    const sp_train_config *c = t->cfg;
    SP_CHECK(sp_ckpt_load_params(path, t->m));
    if (!resume) return SP_OK;
    sp_ckpt_info info;
    sp_status st = sp_ckpt_read_info(path, &info);
    if (st == SP_OK && (!info.has_train || !info.has_optimizer))
        st = SP_FAIL(SP_ERR_DATA,
                     "%s: not a training checkpoint (no /train or /optimizer): use --init-from "
                     "to start a new run from its parameters",
                     path);
    if (st == SP_OK && strcmp(info.loss, loss_name_(t)))
        st = SP_FAIL(SP_ERR_ARG, "%s: the run used --loss %s, this one %s", path, info.loss,
                     loss_name_(t));
    if (st == SP_OK && info.train.seed != (uint64_t)c->seed)
        st = SP_FAIL(SP_ERR_ARG,
                     "%s: the run used --seed %llu, this one %lld: resuming needs the same seed "
                     "(the data order and dropout depend on it)",
                     path, (unsigned long long)info.train.seed, (long long)c->seed);
    if (st == SP_OK) {
        char v[64], mine[64];
        /* a --deterministic run continues only with its micro-batch size (the sums depend on
         * it); config_value_ gives "" for checkpoints older than the flag */
        const char *keys[] = {"batch",   "no-shuffle",     "data",
                              "shuffle", "shuffle-window", "micro-batch"};
        char *conf = sp_train_config_format(c);
        for (int k = 0; k < (c->deterministic ? 6 : 5) && st == SP_OK && conf; ++k) {
            /* the window matters only to --shuffle shards */
            if (!strcmp(keys[k], "shuffle-window") && strcmp(c->shuffle, "shards")) continue;
            config_value_(info.train.config, keys[k], v, sizeof v);
            /* a checkpoint from before --shuffle used the global order */
            if (!v[0] && !strcmp(keys[k], "shuffle")) snprintf(v, sizeof v, "global");
            config_value_(conf, keys[k], mine, sizeof mine);
            if (v[0] && strcmp(v, mine))
                st = SP_FAIL(SP_ERR_ARG,
                             "%s: the run used %s = %s, this one %s: resuming needs the same "
                             "value",
                             path, keys[k], v, mine);
        }
        if (st == SP_OK && !conf) st = SP_FAIL(SP_ERR_NOMEM, "out of memory");
        if (st == SP_OK) st = same_augment_(path, info.train.config, c->augment);
        free(conf);
    }
    if (st == SP_OK) st = load_best_(t, path, &info);
    if (st == SP_OK) st = sp_ckpt_load_optimizer(path, t->m, t->opt);
    if (st == SP_OK) {
        t->step = info.train.step;
        t->pos = (sp_position){info.train.epoch, info.train.epoch_batch};
    }
    sp_ckpt_info_free(&info);
    return st;
}

/* Which checkpoint to start from (rank 0 decides; every rank gets the path). "" = fresh. */
sp_status sp_run_choose_start(trainer *t, char *path, size_t cap, bool *resume) {
    const sp_train_config *c = t->cfg;
    sp_status st = SP_OK;
    path[0] = '\0';
    *resume = c->resume != NULL;
    if (t->rank == 0) {
        if (c->resume && !strcmp(c->resume, "auto")) {
            bool found = false;
            st = sp_ckpt_latest(c->checkpoint_dir, path, cap, &found);
            if (st == SP_OK && !found) path[0] = '\0';
        } else if (c->resume || c->init_from) {
            snprintf(path, cap, "%s", c->resume ? c->resume : c->init_from);
        }
    }
    SP_CHECK(sp_comm_agree(t->comm, st, NULL));
    return sp_comm_bcast_bytes(t->comm, path, cap, 0);
}

sp_status sp_run_write_complete_marker(trainer *t) {
    sp_status st = SP_OK;
    if (t->rank == 0 && t->cfg->checkpoint_dir) {
        char path[4096], line[32];
        snprintf(path, sizeof path, "%s/COMPLETE", t->cfg->checkpoint_dir);
        const int n = snprintf(line, sizeof line, "%lld\n", (long long)t->step);
        st = sp_afile_write_file(path, line, (size_t)n, "completion marker");
    }
    st = sp_comm_agree(t->comm, st, NULL);
    /* --checkpoint-errors warn: the marker is part of checkpointing; --out still gets written */
    if (st != SP_OK && !strcmp(t->cfg->checkpoint_errors, "warn")) {
        if (t->talk) fprintf(stderr, "shardprop train: warning: %s\n", sp_last_error());
        return SP_OK;
    }
    return st;
}
