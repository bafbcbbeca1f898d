/* `shardprop eval`: the metrics of a trained model on a labeled data set, distributed over MPI. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli/commands.h"
#include "cli/common.h"
#include "data/data.h"
#include "train/eval.h"
#include "util/json.h"
#include "util/status.h"

/* Print the confusion matrix on the terminal only up to this many classes (the metrics file
 * always has it when it was computed). */
enum { PRINT_CONFUSION_MAX = 32, PRINT_TARGETS_MAX = 32 };

typedef struct {
    const char *ckpt, *data, *metrics, *x, *y;
    int64_t batch, threads;
} eval_args_;

static void print_result_(const eval_args_ *o, const sp_model *m, const sp_eval_result *r,
                          int ranks, int threads, double secs) {
    printf("model: %s (%s, %zu parameters)\n", sp_model_spec(m),
           r->xent ? "classification, loss xent" : "regression, loss mse", sp_model_num_params(m));
    printf("evaluated %lld samples of %s on %d rank%s x %d thread%s in %.2fs\n", (long long)r->n,
           o->data, ranks, ranks == 1 ? "" : "s", threads, threads == 1 ? "" : "s", secs);
    const int k = r->outputs;
    if (!r->xent) {
        printf("loss %.6f  mse %.6f  mae %.6f\n", r->loss, r->mse, r->mae);
        if (k > 1 && k <= PRINT_TARGETS_MAX) {
            printf("per target:\n  %6s %12s %12s\n", "target", "mse", "mae");
            for (int t = 0; t < k; ++t)
                printf("  %6d %12.6f %12.6f\n", t, r->target_mse[t], r->target_mae[t]);
        }
        return;
    }
    printf("loss %.6f  accuracy %.6f (%lld/%lld)\n", r->loss, r->accuracy, (long long)r->correct,
           (long long)r->n);
    printf("per-class accuracy:\n  %6s %10s %10s %9s\n", "class", "samples", "correct", "accuracy");
    for (int c = 0; c < k; ++c) {
        printf("  %6d %10lld %10lld ", c, (long long)r->class_total[c],
               (long long)r->class_correct[c]);
        if (r->class_total[c] > 0)
            printf("%9.4f\n", (double)r->class_correct[c] / (double)r->class_total[c]);
        else
            printf("%9s\n", "-");
    }
    if (!r->confusion) {
        printf("confusion matrix: not computed for %d classes (more than %d)\n", k,
               SP_EVAL_MAX_CONFUSION);
        return;
    }
    if (k > PRINT_CONFUSION_MAX) {
        printf("confusion matrix: %d x %d, in the metrics file (--metrics)\n", k, k);
        return;
    }
    printf("confusion matrix (rows: true class, columns: predicted class):\n  %6s", "");
    for (int c = 0; c < k; ++c) printf(" %7d", c);
    printf("\n");
    for (int t = 0; t < k; ++t) {
        printf("  %6d", t);
        for (int c = 0; c < k; ++c) printf(" %7lld", (long long)r->confusion[(size_t)t * k + c]);
        printf("\n");
    }
}

static void write_metrics_(FILE *f, const eval_args_ *o, const sp_model *m, const sp_eval_result *r,
                           int ranks, int threads, double secs) {
    sp_json j;
    sp_json_begin(&j, f);
    sp_json_str(&j, "event", "eval");
    sp_json_str(&j, "checkpoint", o->ckpt);
    sp_json_str(&j, "data", o->data);
    sp_json_str(&j, "spec", sp_model_spec(m));
    sp_json_str(&j, "task", r->xent ? "classification" : "regression");
    sp_json_num(&j, "loss", r->loss);
    sp_json_num(&j, "accuracy", r->accuracy); /* null for regression */
    sp_json_int(&j, "n", r->n);
    const size_t k = (size_t)r->outputs;
    if (r->xent) {
        sp_json_int(&j, "correct", r->correct);
        sp_json_int(&j, "classes", r->outputs);
        double acc[SP_EVAL_MAX_CONFUSION];
        if (k <= SP_EVAL_MAX_CONFUSION) {
            for (size_t c = 0; c < k; ++c)
                acc[c] = r->class_total[c] > 0
                             ? (double)r->class_correct[c] / (double)r->class_total[c]
                             : NAN;
            sp_json_num_array(&j, "class_accuracy", acc, k);
        }
        sp_json_int_array(&j, "class_total", r->class_total, k);
        sp_json_int_array(&j, "class_correct", r->class_correct, k);
        if (r->confusion) sp_json_int_matrix(&j, "confusion", r->confusion, k, k);
    } else {
        sp_json_num(&j, "mse", r->mse);
        sp_json_num(&j, "mae", r->mae);
        sp_json_int(&j, "targets", r->outputs);
        sp_json_num_array(&j, "target_mse", r->target_mse, k);
        sp_json_num_array(&j, "target_mae", r->target_mae, k);
    }
    sp_json_int(&j, "ranks", ranks);
    sp_json_int(&j, "threads", threads);
    sp_json_num(&j, "time_s", secs);
    sp_json_end(&j);
}

int sp_cmd_eval(int argc, char **argv) {
    eval_args_ o = {.x = "X", .y = "y", .batch = 256, .threads = 0};
    sp_arg_list data_items = {0};
    sp_arg_spec specs[] = {
        {"checkpoint", SP_ARG_STRING, &o.ckpt, "MODEL.h5",
         "the trained model: a checkpoint or a file written by `train --out`", .required = true},
        {"data", SP_ARG_STRING, &data_items, "TEST.h5...",
         "labeled data (X and y) to evaluate on: files, globs, directories or @LIST, one logical "
         "set (README: data files)",
         .required = true, .multi = true},
        {"metrics", SP_ARG_STRING, &o.metrics, "FILE.jsonl",
         "append one JSON line {\"event\": \"eval\", \"loss\", \"accuracy\", \"n\", ...}",
         .required = false},
        {"batch", SP_ARG_INT, &o.batch, "B",
         "global batch size: samples per forward pass over all ranks (default 256)", .imin = 1,
         .imax = 1 << 24},
        {"x", SP_ARG_STRING, &o.x, "NAME", "input dataset path in the data file (default X)",
         .required = false},
        {"y", SP_ARG_STRING, &o.y, "NAME", "label/target dataset path (default y)",
         .required = false},
        {"threads", SP_ARG_INT, &o.threads, "T",
         "OpenMP threads per rank (default: OMP_NUM_THREADS, else the cores available)", .imin = 0,
         .imax = 4096},
    };
    sp_args a = {
        .command = "shardprop eval",
        .description =
            "Evaluate a trained model on a labeled data file. The model (spec, input shape,\n"
            "loss) comes from the checkpoint; the data must match it: the same sample shape, and\n"
            "integer labels (at most C classes) for a classification model, float targets\n"
            "(T per sample) for a regression model.\n"
            "Prints (rank 0) the loss and accuracy, the per-class accuracy and the confusion\n"
            "matrix (rows: true class, columns: predicted), or for regression the MSE and MAE\n"
            "(per target too). The loss is the trainer's: mean cross-entropy per sample, or mean\n"
            "squared error per element — so evaluating the validation file reproduces training's\n"
            "val_loss and val_accuracy.\n"
            "Under mpirun every rank evaluates its share of each batch; counts are summed\n"
            "exactly, so the accuracy and the confusion matrix do not depend on the ranks.",
        .specs = specs,
        .nspecs = (int)(sizeof specs / sizeof specs[0])};
    sp_comm *comm = NULL;
    const int early = sp_cli_mpi_start(&a, argc, argv, &comm);
    if (early >= 0) return early;
    const int rank = sp_comm_rank(comm), ranks = sp_comm_size(comm);
    const int threads = sp_set_threads(o.threads);
    const double t0 = sp_comm_wtime();

    /* everything that can fail locally, then one agreement */
    sp_model *m = NULL;
    sp_dataset *ds = NULL;
    sp_loader *ld = NULL;
    FILE *mf = NULL;
    bool xent = false;
    char *data = sp_data_items_join(data_items.v, data_items.n);
    o.data = data;
    sp_status st =
        data ? sp_eval_open(o.ckpt, o.data, o.x, o.y, true, o.batch, ranks, &m, &ds, &xent)
             : SP_FAIL(SP_ERR_NOMEM, "out of memory");
    if (st == SP_OK) {
        const sp_loader_config lc = {.batch = o.batch,
                                     .rank = rank,
                                     .nranks = ranks,
                                     .shuffle = false,
                                     .cache_mb = 0,
                                     .prefetch = true};
        st = sp_loader_create(&ld, ds, &lc);
    }
    if (st == SP_OK && rank == 0 && o.metrics) {
        mf = fopen(o.metrics, "a");
        if (!mf)
            st = SP_FAIL(SP_ERR_IO, "%s: cannot open the metrics file for appending", o.metrics);
    }
    st = sp_comm_agree(comm, st, NULL);
    sp_eval_result r = {0};
    if (st == SP_OK) st = sp_eval_run(m, ld, comm, xent, (int)sp_model_output_size(m), &r);
    if (st == SP_OK && rank == 0) {
        const double secs = sp_comm_wtime() - t0;
        print_result_(&o, m, &r, ranks, threads, secs);
        if (mf) write_metrics_(mf, &o, m, &r, ranks, threads, secs);
        fflush(stdout);
    }
    sp_eval_result_free(&r);
    if (mf) fclose(mf);
    sp_loader_free(ld);
    sp_dataset_close(ds);
    sp_model_free(m);
    free(data);
    return sp_cli_mpi_finish(a.command, comm, st);
}
