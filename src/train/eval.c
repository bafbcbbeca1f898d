/* Distributed evaluation of a model on a data set (see eval.h). */
#include "train/eval.h"

#include "train/batches.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/fixed.h"
#include "layers/layers.h"
#include "train/batches.h"
#include "io/checkpoint.h"
#include "util/status.h"

void sp_eval_result_free(sp_eval_result *r) {
    if (!r) return;
    free(r->class_total);
    free(r->class_correct);
    free(r->confusion);
    free(r->target_mse);
    free(r->target_mae);
    memset(r, 0, sizeof *r);
}

/* The per-rank accumulators: counts in one int64 block, sums in one double block, so that each
 * is one reduction at the end. The loss is also summed exactly (sp_fix_add_double: the same
 * bits for every layout of ranks and threads, so that --keep-best and --early-stop decide alike
 * on every layout), falling back to the double sum for a loss too large for it. */
enum { LOSS_HI, LOSS_LO, LOSS_INEXACT, LOSS_N }; /* at the end of ints */
typedef struct acc_ {
    int64_t *ints;  /* [n, correct, class_total (C), class_correct (C), confusion (C*C), loss] */
    size_t nints;   /* 2 (regression) or 2 + 2C (+ C*C), + LOSS_N */
    double *sums;   /* [loss_sum, abs_sum, sq per target (T), abs per target (T)] */
    int nsums;      /* 1 (classification) or 2 + 2T */
    double *row;    /* (max_batch) row losses: scratch of the loss functions */
    bool confusion; /* C <= SP_EVAL_MAX_CONFUSION */
} acc_;

static sp_status acc_init_(acc_ *a, bool xent, int outputs, int max_batch) {
    memset(a, 0, sizeof *a);
    const size_t k = (size_t)outputs;
    a->confusion = xent && outputs <= SP_EVAL_MAX_CONFUSION;
    a->nints = (xent ? 2 + 2 * k + (a->confusion ? k * k : 0) : 2) + LOSS_N;
    a->nsums = xent ? 1 : 2 + 2 * outputs;
    a->ints = calloc(a->nints, sizeof *a->ints);
    a->sums = calloc((size_t)a->nsums, sizeof *a->sums);
    a->row = malloc(sizeof *a->row * (size_t)max_batch); /* max_batch: samples x positions */
    if (!a->ints || !a->sums || !a->row)
        return SP_FAIL(SP_ERR_NOMEM, "evaluation: cannot allocate the accumulators (%d outputs)",
                       outputs);
    return SP_OK;
}

static void acc_free_(acc_ *a) {
    free(a->ints);
    free(a->sums);
    free(a->row);
}

/* One batch of this rank: forward, loss and the per-class / per-target tallies (local). */
static sp_status eval_batch_(sp_model *m, const sp_batch *b, bool xent, int C, int T, acc_ *a) {
    const int S = (int)b->count, B = S * T; /* a language model's rows: every position */
    if (S == 0) return SP_OK;
    if (S > sp_model_max_batch(m))
        return SP_FAIL(SP_ERR_INTERNAL,
                       "evaluation: a slice of %d samples exceeds the model's batch of %d", S,
                       sp_model_max_batch(m));
    if (xent ? !b->labels : !b->targets)
        return SP_FAIL(SP_ERR_DATA, "evaluation needs %s: the data set has none",
                       xent ? "integer labels y" : "float targets y");
    if (xent)
        for (int i = 0; i < B; ++i)
            if (b->labels[i] >= C)
                return SP_FAIL(SP_ERR_DATA,
                               "sample %lld: label %d is not one of the model's %d classes",
                               (long long)b->ids[i / T], (int)b->labels[i], C);
    const sp_step_ctx ctx = {.training = false, .sample_ids = b->ids};
    /* (B, C) logits or (B, T) outputs; (S, T, C) logits of a language model */
    const float *z = sp_model_forward(m, b->x, S, &ctx);
    SP_CHECK(sp_model_status(m));
    double loss = 0;
    if (xent) {
        int64_t correct = 0;
        sp_xent_loss(&loss, &correct, NULL, a->row, z, b->labels, B, C, 1.0f);
        int64_t *total = a->ints + 2, *hit = total + C, *conf = hit + C;
        for (int i = 0; i < B; ++i) {
            const float *zi = z + (size_t)i * C;
            int arg = 0; /* the first maximum, as sp_xent_loss counts it */
            for (int j = 1; j < C; ++j)
                if (zi[j] > zi[arg]) arg = j;
            const int y = b->labels[i];
            total[y]++;
            hit[y] += arg == y;
            if (a->confusion) conf[(size_t)y * C + arg]++;
        }
        a->ints[1] += correct;
    } else {
        sp_mse_loss(&loss, NULL, a->row, z, b->targets, B, C, 1.0f);
        double *sq = a->sums + 2, *ab = sq + C;
        for (int i = 0; i < B; ++i)
            for (int t = 0; t < C; ++t) {
                const size_t o = (size_t)i * C + t;
                const double d = (double)(z[o] - b->targets[o]); /* as sp_mse_loss: float diff */
                sq[t] += d * d;
                ab[t] += fabs(d);
                a->sums[1] += fabs(d);
            }
    }
    a->sums[0] += loss;
    int64_t *exact = a->ints + a->nints - LOSS_N;
    for (int i = 0; i < B; ++i) { /* up to 2^31 rows of |loss| < 2^31: no overflow */
        if (fabs(a->row[i]) < 0x1p31)
            sp_fix_add_double(a->row[i], &exact[LOSS_HI], &exact[LOSS_LO]);
        else
            exact[LOSS_INEXACT]++;
    }
    a->ints[0] += B;
    return SP_OK;
}

sp_status sp_eval_run(sp_model *m, sp_loader *ld, sp_comm *c, bool xent, int outputs,
                      sp_eval_result *out) {
    memset(out, 0, sizeof *out);
    out->xent = xent;
    out->outputs = outputs;
    out->loss = out->accuracy = out->mse = out->mae = NAN;
    acc_ a;
    /* a language model: (T, outputs) per sample, a label at each of the T positions */
    const size_t per = sp_model_output_size(m);
    const int T = xent && outputs > 0 && per % (size_t)outputs == 0 ? (int)(per / outputs) : 1;
    sp_status st = acc_init_(&a, xent, outputs, sp_model_max_batch(m) * T);
    if (st == SP_OK && (outputs < 1 || per != (size_t)outputs * (size_t)T))
        st = SP_FAIL(SP_ERR_ARG, "evaluation: the model gives %zu outputs, %d expected", per,
                     outputs);
    if (st == SP_OK) st = sp_loader_start_epoch(ld, 0, 0);
    for (;;) {
        sp_batch b;
        uint32_t flags = 0;
        st = sp_next_batch_agreed(ld, c, st, &b, &flags);
        if (st != SP_OK || (flags & SP_BATCH_EPOCH_DONE)) break;
        st = eval_batch_(m, &b, xent, outputs, T, &a);
    }
    if (st == SP_OK) st = sp_comm_sum_int64(c, a.ints, a.nints);
    if (st == SP_OK) st = sp_comm_sum_doubles(c, a.sums, a.nsums);
    if (st != SP_OK) {
        acc_free_(&a);
        return st;
    }
    /* every rank holds the global sums now: fill the result alike everywhere */
    const int64_t n = a.ints[0];
    const size_t k = (size_t)outputs;
    out->n = n;
    const int64_t *exact = a.ints + a.nints - LOSS_N;
    if (exact[LOSS_INEXACT] == 0 && n <= (int64_t)1 << 31)
        a.sums[0] = sp_fix_double_value(exact[LOSS_HI], exact[LOSS_LO]);
    out->loss_sum = a.sums[0];
    if (xent) {
        out->loss = n > 0 ? a.sums[0] / (double)n : NAN;
        out->correct = a.ints[1];
        out->accuracy = n > 0 ? (double)a.ints[1] / (double)n : NAN;
        out->class_total = malloc(k * sizeof(int64_t));
        out->class_correct = malloc(k * sizeof(int64_t));
        if (a.confusion) out->confusion = malloc(k * k * sizeof(int64_t));
        if (out->class_total && out->class_correct && (out->confusion || !a.confusion)) {
            memcpy(out->class_total, a.ints + 2, k * sizeof(int64_t));
            memcpy(out->class_correct, a.ints + 2 + k, k * sizeof(int64_t));
            if (a.confusion) memcpy(out->confusion, a.ints + 2 + 2 * k, k * k * sizeof(int64_t));
        } else {
            st = SP_ERR_NOMEM;
        }
    } else {
        const double ne = (double)n * (double)outputs;
        out->loss = out->mse = n > 0 ? a.sums[0] / ne : NAN;
        out->mae = n > 0 ? a.sums[1] / ne : NAN;
        out->target_mse = malloc(k * sizeof(double));
        out->target_mae = malloc(k * sizeof(double));
        if (out->target_mse && out->target_mae) {
            for (size_t t = 0; t < k; ++t) {
                out->target_mse[t] = n > 0 ? a.sums[2 + t] / (double)n : NAN;
                out->target_mae[t] = n > 0 ? a.sums[2 + k + t] / (double)n : NAN;
            }
        } else {
            st = SP_ERR_NOMEM;
        }
    }
    acc_free_(&a);
    /* an allocation that failed on one rank fails on all: agree once more */
    if (st != SP_OK) st = SP_FAIL(st, "evaluation: out of memory for the results");
    return sp_comm_agree(c, st, NULL);
}

sp_status sp_eval_load_model(const char *ckpt_path, int max_batch, sp_model **out, bool *xent) {
    *out = NULL;
    sp_ckpt_info info;
    sp_status st = sp_ckpt_read_info(ckpt_path, &info);
    if (st == SP_OK) {
        if (!strcmp(info.loss, "xent"))
            *xent = true;
        else if (!strcmp(info.loss, "mse"))
            *xent = false;
        else
            st = SP_FAIL(SP_ERR_DATA,
                         "%s: checkpoint attribute /model@loss is \"%s\"; expected \"xent\" "
                         "(classification) or \"mse\" (regression)",
                         ckpt_path, info.loss);
    }
    sp_model *m = NULL;
    if (st == SP_OK) {
        st = sp_model_create(&m, info.spec, info.input_shape, info.input_rank, max_batch);
        if (st != SP_OK) {
            char why[1024]; /* the message buffer is about to be rewritten */
            snprintf(why, sizeof why, "%s", sp_last_error());
            st = SP_FAIL(st, "%s: the checkpoint's model \"%s\" cannot be built: %s", ckpt_path,
                         info.spec, why);
        }
    }
    if (st == SP_OK) st = sp_ckpt_load_params(ckpt_path, m);
    sp_ckpt_info_free(&info);
    if (st != SP_OK) {
        sp_model_free(m);
        return st;
    }
    *out = m;
    return SP_OK;
}

sp_status sp_eval_check_data(const sp_dataset *ds, const sp_model *m, bool xent,
                             const char *ckpt_path) {
    const sp_dataset_info *in = sp_dataset_get_info(ds);
    SP_CHECK(sp_dataset_check_input_shape(ds, sp_model_input_shape(m), sp_model_input_rank(m)));
    if (!in->labeled) return SP_OK;
    const int64_t k = (int64_t)sp_model_output_size(m);
    if (xent && in->regression)
        return SP_FAIL(SP_ERR_DATA,
                       "%s: dataset '%s': holds %s regression targets, but %s is a classification "
                       "model (loss xent, %lld classes): it needs integer labels",
                       in->path, in->y_name, in->y_dtype, ckpt_path, (long long)k);
    if (!xent && !in->regression)
        return SP_FAIL(SP_ERR_DATA,
                       "%s: dataset '%s': holds integer class labels, but %s is a regression "
                       "model (loss mse, %lld targets): it needs float targets",
                       in->path, in->y_name, ckpt_path, (long long)k);
    if (xent && in->classes > k)
        return SP_FAIL(SP_ERR_DATA,
                       "%s: dataset '%s': %lld classes, but the model of %s has %lld outputs",
                       in->path, in->y_name, (long long)in->classes, ckpt_path, (long long)k);
    if (!xent && in->targets != k)
        return SP_FAIL(SP_ERR_DATA,
                       "%s: dataset '%s': %lld targets per sample, but the model of %s has %lld "
                       "outputs",
                       in->path, in->y_name, (long long)in->targets, ckpt_path, (long long)k);
    return SP_OK;
}

sp_status sp_eval_open(const char *ckpt_path, const char *data, const char *x, const char *y,
                       bool need_labels, int64_t batch, int ranks, sp_model **m, sp_dataset **ds,
                       bool *xent) {
    *m = NULL;
    SP_CHECK(sp_dataset_open_items(ds, data, "--data", x, y, SP_DATASET_Y_OPTIONAL));
    const int64_t n = sp_dataset_get_info(*ds)->n, per = (batch + ranks - 1) / ranks;
    SP_CHECK(sp_eval_load_model(ckpt_path, (int)(per < n ? per : n), m, xent));
    if (need_labels && !sp_dataset_get_info(*ds)->labeled)
        return SP_FAIL(SP_ERR_DATA,
                       "%s: dataset '%s': not found; eval needs labels or targets (for unlabeled "
                       "data use `shardprop predict`)",
                       data, y);
    return sp_eval_check_data(*ds, *m, *xent, ckpt_path);
}
