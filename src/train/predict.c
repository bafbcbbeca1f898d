/* Distributed prediction into an HDF5 file (see predict.h). */
#include "train/predict.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "train/batches.h"
#include "io/predictions.h"
#include "util/status.h"

/*
 * Rows [first, first + g) from the gathered raw outputs z (g, k). Classification: softmax into
 * probs (g, k) — log-sum-exp around the max, in double as sp_xent_loss — and the argmax of the
 * logits (first max wins, as eval counts it) into label (g).
 */
static sp_status write_rows_(sp_pred_file *w, int64_t first, int64_t g, const float *z, int k,
                             bool xent, float *probs, int32_t *label) {
    if (xent) {
        for (int64_t i = 0; i < g; ++i) {
            const float *zi = z + (size_t)i * k;
            float *pi = probs + (size_t)i * k;
            int arg = 0;
            for (int j = 1; j < k; ++j)
                if (zi[j] > zi[arg]) arg = j;
            const float m = zi[arg];
            double se = 0.0;
            for (int j = 0; j < k; ++j) se += exp((double)(zi[j] - m));
            const double lse = (double)m + log(se);
            for (int j = 0; j < k; ++j) pi[j] = (float)exp((double)zi[j] - lse);
            label[i] = arg;
        }
    }
    return sp_pred_file_write(w, first, g, xent ? probs : z, label);
}

sp_status sp_predict_write(sp_model *m, sp_dataset *ds, int64_t batch, sp_comm *c, bool xent,
                           const char *out_path, const char *ckpt_path) {
    const int rank = sp_comm_rank(c), P = sp_comm_size(c);
    const sp_dataset_info *in = sp_dataset_get_info(ds);
    const int k = (int)sp_model_output_size(m);
    int64_t per_rank = (batch + P - 1) / P; /* the largest slice of a rank */
    if (per_rank > in->n) per_rank = in->n;
    sp_status st = SP_OK;
    if (batch < 1 || per_rank > sp_model_max_batch(m))
        st = SP_FAIL(SP_ERR_ARG,
                     "predict: a batch of %lld over %d ranks needs a model built for "
                     "%lld samples, it has %d",
                     (long long)batch, P, (long long)per_rank, sp_model_max_batch(m));
    sp_loader *ld = NULL;
    const sp_loader_config lc = {.batch = batch,
                                 .rank = rank,
                                 .nranks = P,
                                 .seed = 0,
                                 .shuffle = false, /* file order: global batch b = rows [bB, ..) */
                                 .cache_mb = 0,
                                 .prefetch = true};
    if (st == SP_OK) st = sp_loader_create(&ld, ds, &lc);
    /* rank 0: the gathered batch, its probabilities and labels, the byte count of each rank */
    float *gz = NULL, *probs = NULL;
    int32_t *label = NULL;
    size_t *counts = NULL;
    sp_pred_file *w = NULL;
    const int64_t gmax = batch < in->n ? batch : in->n;
    if (st == SP_OK && rank == 0) {
        gz = malloc(sizeof(float) * (size_t)gmax * (size_t)k);
        probs = xent ? malloc(sizeof(float) * (size_t)gmax * (size_t)k) : NULL;
        label = xent ? malloc(sizeof(int32_t) * (size_t)gmax) : NULL;
        counts = malloc(sizeof(size_t) * (size_t)P);
        if (!gz || !counts || (xent && (!probs || !label)))
            st = SP_FAIL(SP_ERR_NOMEM, "predict: cannot allocate a batch of %lld x %d outputs",
                         (long long)gmax, k);
        if (st == SP_OK)
            st = sp_pred_file_create(&w, out_path, in->n, k, xent, ckpt_path, sp_model_spec(m),
                                     in->path);
    }
    if (st == SP_OK) st = sp_loader_start_epoch(ld, 0, 0);
    for (;;) {
        sp_batch b;
        uint32_t flags = 0;
        /* a failure anywhere (read, write) stops all */
        st = sp_next_batch_agreed(ld, c, st, &b, &flags);
        if (st != SP_OK || (flags & SP_BATCH_EPOCH_DONE)) break;
        const float *z = NULL;
        if (b.count > 0) {
            const sp_step_ctx ctx = {.training = false, .sample_ids = b.ids};
            z = sp_model_forward(m, b.x, (int)b.count, &ctx);
        }
        if (rank == 0)
            for (int r = 0; r < P; ++r) {
                int64_t pos, cnt, g;
                sp_rank_slice(in->n, batch, b.index, r, P, &pos, &cnt, &g);
                counts[r] = (size_t)cnt * (size_t)k * sizeof(float);
            }
        st =
            sp_comm_gatherv_bytes(c, z, (size_t)b.count * (size_t)k * sizeof(float), gz, counts, 0);
        if (st != SP_OK) break; /* agreed inside */
        if (rank == 0)
            st = write_rows_(w, b.index * batch, b.global_count, gz, k, xent, probs, label);
    }
    if (st == SP_OK) { /* every rank got here with SP_OK: the walk ended on an agreed "done" */
        if (rank == 0) st = sp_pred_file_commit(w);
        w = NULL;
        st = sp_comm_agree(c, st, NULL);
    }
    sp_pred_file_abort(w); /* after a failure: removes the temporary file */
    sp_loader_free(ld);
    free(gz);
    free(probs);
    free(label);
    free(counts);
    return st;
}
