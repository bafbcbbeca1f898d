/* `shardprop predict`: a trained model's predictions for every sample of a data file. */
#include <stdio.h>
#include <stdlib.h>

#include "cli/commands.h"
#include "cli/common.h"
#include "data/data.h"
#include "train/eval.h"
#include "train/predict.h"
#include "util/status.h"

int sp_cmd_predict(int argc, char **argv) {
    const char *ckpt = NULL, *out = NULL, *x = "X", *y = "y";
    sp_arg_list data_items = {0};
    int64_t batch = 256, threads = 0;
    sp_arg_spec specs[] = {
        {"checkpoint", SP_ARG_STRING, &ckpt, "MODEL.h5",
         "the trained model: a checkpoint or a file written by `train --out`", .required = true},
        {"data", SP_ARG_STRING, &data_items, "IN.h5...",
         "input data: X (N, ...) of the model's input shape, y not needed; files, globs, "
         "directories or @LIST, one logical set in sorted file order (README: data files)",
         .required = true, .multi = true},
        {"out", SP_ARG_STRING, &out, "PRED.h5", "output file (replaced atomically when complete)",
         .required = true},
        {"batch", SP_ARG_INT, &batch, "B",
         "global batch size: samples per forward pass over all ranks (default 256)", .imin = 1,
         .imax = 1 << 24},
        {"x", SP_ARG_STRING, &x, "NAME", "input dataset path in the data file (default X)",
         .required = false},
        {"y", SP_ARG_STRING, &y, "NAME",
         "label/target dataset path (default y); checked against the model when present",
         .required = false},
        {"threads", SP_ARG_INT, &threads, "T",
         "OpenMP threads per rank (default: OMP_NUM_THREADS, else the cores available)", .imin = 0,
         .imax = 4096},
    };
    sp_args a = {
        .command = "shardprop predict",
        .description =
            "Apply a trained model to every sample of a data set and write, in input order\n"
            "(row i = sample i; several files: their rows in sorted file order):\n"
            "  classification model:  probs float32 (N, C), the softmax of the outputs, and\n"
            "                         label int32 (N,), the argmax (attribute classes = C)\n"
            "  regression model:      outputs float32 (N, T)\n"
            "with string attributes checkpoint, spec and data on the file. X gets the file's\n"
            "scale/offset as in training. The output is written to a temporary file renamed\n"
            "into place at the end: a failed run leaves no partial PRED.h5.\n"
            "Under mpirun every rank predicts its share of each batch and rank 0 gathers and\n"
            "writes; the result is the same bits for any number of ranks and threads.",
        .specs = specs,
        .nspecs = (int)(sizeof specs / sizeof specs[0])};
    sp_comm *comm = NULL;
    const int early = sp_cli_mpi_start(&a, argc, argv, &comm);
    if (early >= 0) return early;
    const int rank = sp_comm_rank(comm), ranks = sp_comm_size(comm);
    const int nthreads = sp_set_threads(threads);
    const double t0 = sp_comm_wtime();

    sp_model *m = NULL;
    sp_dataset *ds = NULL;
    bool xent = false;
    char *data = sp_data_items_join(data_items.v, data_items.n);
    sp_status st = data ? sp_eval_open(ckpt, data, x, y, false, batch, ranks, &m, &ds, &xent)
                        : SP_FAIL(SP_ERR_NOMEM, "out of memory");
    st = sp_comm_agree(comm, st, NULL);
    if (st == SP_OK) st = sp_predict_write(m, ds, batch, comm, xent, out, ckpt);
    if (st == SP_OK && rank == 0) {
        const sp_dataset_info *in = sp_dataset_get_info(ds);
        const long long n = (long long)in->n, k = (long long)sp_model_output_size(m);
        if (xent)
            printf("wrote %s: probs (%lld, %lld) float32, label (%lld,) int32", out, n, k, n);
        else
            printf("wrote %s: outputs (%lld, %lld) float32", out, n, k);
        printf("; %lld samples of %s on %d rank%s x %d thread%s in %.2fs\n", n, data, ranks,
               ranks == 1 ? "" : "s", nthreads, nthreads == 1 ? "" : "s", sp_comm_wtime() - t0);
    }
    sp_dataset_close(ds);
    sp_model_free(m);
    free(data);
    return sp_cli_mpi_finish(a.command, comm, st);
}
