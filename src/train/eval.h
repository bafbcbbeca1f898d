/*
 * eval: a trained model applied to a data set, distributed over the ranks of a communicator —
 * the metrics of `shardprop eval` (and of the trainer's validation pass), and the loading and
 * checking of a checkpoint for use.
 *
 *     sp_model *m; bool xent;
 *     SP_CHECK(sp_eval_load_model("model.h5", (int)((batch + P - 1) / P), &m, &xent));
 *     SP_CHECK(sp_eval_check_data(ds, m, xent, "model.h5"));
 *     sp_loader_config lc = {.batch = batch, .rank = r, .nranks = P, .shuffle = false};
 *     SP_CHECK(sp_loader_create(&ld, ds, &lc));
 *     sp_eval_result res;
 *     SP_CHECK(sp_eval_run(m, ld, comm, xent, (int)sp_model_output_size(m), &res));
 *     ... res.loss, res.accuracy, res.confusion ...
 *     sp_eval_result_free(&res);
 *
 * Exactness: counts (n, correct, per class, the confusion matrix) are int64 sums over ranks and
 * do not depend on the number of ranks. Loss sums are double: each rank adds the row losses of
 * its slices batch by batch (in row order within a batch, as the trainer does), then one sum over
 * ranks — so they agree across rank counts to about 1e-15 relative, not bitwise.
 */
#ifndef SP_TRAIN_EVAL_H
#define SP_TRAIN_EVAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "data/data.h"
#include "comm/comm.h"
#include "shardprop/model.h"
#include "shardprop/status.h"

/* Above this many classes no confusion matrix is kept (C*C int64 on every rank). */
#define SP_EVAL_MAX_CONFUSION 1024

typedef struct sp_eval_result {
    bool xent;       /* classification (softmax cross-entropy) or regression (MSE) */
    int outputs;     /* C classes or T targets */
    int64_t n;       /* samples evaluated, over all ranks (tokens, for a language model) */
    double loss;     /* the trainer's definition: mean cross-entropy per sample, or the mean
                       squared error per element (= mse) */
    double loss_sum; /* sum of the per-sample losses (xent) or squared errors (mse) */
    /* classification (NaN / 0 / NULL for regression) */
    double accuracy; /* correct / n; prediction = argmax of the logits, first max wins */
    int64_t correct;
    int64_t *class_total;   /* (C) samples whose label is c */
    int64_t *class_correct; /* (C) of those, predicted c */
    int64_t *confusion;     /* (C, C) row = true label, column = predicted label; NULL when
                               C > SP_EVAL_MAX_CONFUSION */
    /* regression (NaN / NULL for classification) */
    double mse, mae;                 /* means over all n*T elements */
    double *target_mse, *target_mae; /* (T) means over the n samples, per target */
} sp_eval_result;

/*
 * Evaluate every sample of the loader's data set (one pass, epoch 0 of the loader's order) and
 * fill *out (zeroed first; free with sp_eval_result_free, also after a failure). (collective)
 *
 * m: built for at least the loader's largest slice per rank (max_batch >= min(ceil(batch /
 * nranks), N));
 * outputs = sp_model_output_size(m), or for a language model (output (T, V), token data) V:
 * then every position is evaluated, and n, loss and accuracy are per token. ld: over this rank's slices (rank/nranks of c; shuffle does
 * not matter for the metrics). Classification needs labels in [0, outputs); regression needs T =
 * outputs targets. Every rank walks the same number of global batches (a slice may be empty);
 * every local failure (a read error, a label out of range, a missing y) is agreed with
 * sp_comm_agree before the next collective step, so all ranks return the same status together.
 */
sp_status sp_eval_run(sp_model *m, sp_loader *ld, sp_comm *c, bool xent, int outputs,
                      sp_eval_result *out);

/* Release the arrays of *r (safe on a zeroed or partially filled struct). */
void sp_eval_result_free(sp_eval_result *r);

/*
 * Build the model a checkpoint describes (its spec and input shape) for up to max_batch samples
 * per forward pass and load its parameters (validated: shapes, finite values). *xent: the
 * checkpoint's loss is "xent" (classification) rather than "mse" (regression); any other loss is
 * SP_ERR_DATA. On failure *out is NULL. Not collective (every rank may call it).
 */
sp_status sp_eval_load_model(const char *ckpt_path, int max_batch, sp_model **out, bool *xent);

/*
 * Check a data set against a model loaded from ckpt_path (for the messages): the sample shape
 * equals the model's input shape; and when the data set is labeled: integer labels for a
 * classification model with at most C = outputs classes, float targets for a regression model
 * with T = outputs targets. One line naming the file, the dataset and what differs.
 */
sp_status sp_eval_check_data(const sp_dataset *ds, const sp_model *m, bool xent,
                             const char *ckpt_path);

/*
 * The start of `eval` and `predict`: open the data (`data`: the items of --data, blank-separated,
 * data/data.h sp_dataset_open_items; datasets x and y; y may be absent
 * unless need_labels), build the checkpoint's model for this rank's largest slice of a global
 * batch of `batch` over `ranks` (no larger than the file) and check the two against each other.
 * Not collective: the caller agrees on the status. On failure *m and *ds may be set (free both).
 */
sp_status sp_eval_open(const char *ckpt_path, const char *data, const char *x, const char *y,
                       bool need_labels, int64_t batch, int ranks, sp_model **m, sp_dataset **ds,
                       bool *xent);

#endif
