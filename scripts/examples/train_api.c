/*
 * train_api: train a classifier on an HDF5 data file through shardprop's public API, in one
 * process (no MPI needed).
 *
 *   train_api DATA.h5 [EPOCHS [SPEC]]      e.g. train_api blobs.h5 5 dense:32,relu,dense:3
 *
 * DATA.h5 follows shardprop's data file contract (`shardprop synth --kind blobs --n 2000
 * --features 8 --classes 3 --out blobs.h5` writes one). Prints the mean training loss and the
 * accuracy of each epoch; exits 0 when the last epoch's loss is below the first's, 1 when not,
 * 2 on an error.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <shardprop/shardprop.h>

#define CHECK(call)                                                                                \
    do {                                                                                           \
        sp_status st_ = (call);                                                                    \
        if (st_ != SP_OK) {                                                                        \
            fprintf(stderr, "train_api: %s: %s\n", sp_status_name(st_), sp_last_error());          \
            goto fail;                                                                             \
        }                                                                                          \
    } while (0)

int main(int argc, char **argv) {
    if (argc < 2 || argc > 4) {
        fprintf(stderr, "usage: %s DATA.h5 [EPOCHS [SPEC]]\n", argv[0]);
        return 2;
    }
    const char *path = argv[1];
    const int epochs = argc > 2 ? atoi(argv[2]) : 5;
    const char *spec = argc > 3 ? argv[3] : NULL; /* default: an MLP sized to the classes */
    const int batch = 64;
    const uint64_t seed = 1;
    const float lr = 1e-3f;
    if (epochs < 2) {
        fprintf(stderr, "train_api: EPOCHS must be >= 2\n");
        return 2;
    }

    sp_dataset *ds = NULL;
    sp_model *m = NULL;
    sp_optimizer *opt = NULL;
    sp_loader *ld = NULL;
    float *dz = NULL;
    double *rows = NULL;
    int rc = 2;

    /* 1. the data: validated on open (labels in range, shapes, dtypes) */
    CHECK(sp_dataset_open(&ds, path, NULL, NULL));
    const sp_dataset_info *info = sp_dataset_get_info(ds);
    if (info->regression) {
        fprintf(stderr, "train_api: %s holds regression targets; this example classifies\n", path);
        goto fail;
    }
    char line[512];
    sp_dataset_describe(ds, line, sizeof line);
    printf("data: %s\n", line);
    const int classes = (int)info->classes;

    /* 2. the model: input shape from the file, output = one logit per class */
    char default_spec[64];
    if (!spec) {
        snprintf(default_spec, sizeof default_spec, "dense:32,relu,dense:%d", classes);
        spec = default_spec;
    }
    CHECK(sp_model_create(&m, spec, info->sample_shape, info->sample_rank, batch));
    if (sp_model_output_size(m) != (size_t)classes) {
        fprintf(stderr, "train_api: the model gives %zu outputs for %d classes\n",
                sp_model_output_size(m), classes);
        goto fail;
    }
    sp_model_init_params(m, seed);
    printf("model: %s (%zu parameters)\n", sp_model_spec(m), sp_model_num_params(m));

    /* 3. the optimizer over the model's parameter slab */
    sp_opt_config oc = sp_opt_config_defaults(SP_OPT_ADAM);
    CHECK(sp_optim_create(&opt, &oc, sp_model_num_params(m)));

    /* 4. the loader: one process takes whole batches (rank 0 of 1) */
    sp_loader_config lc = {.batch = batch,
                           .rank = 0,
                           .nranks = 1,
                           .seed = seed,
                           .shuffle = true,
                           .cache_mb = 64,
                           .prefetch = true};
    CHECK(sp_loader_create(&ld, ds, &lc));

    dz = malloc(sizeof *dz * (size_t)batch * (size_t)classes); /* d loss / d logits (B, C) */
    rows = malloc(sizeof *rows * (size_t)batch);               /* loss scratch (B) */
    if (!dz || !rows) {
        fprintf(stderr, "train_api: out of memory\n");
        goto fail;
    }

    /* 5. train: forward -> cross-entropy -> backward -> optimizer step */
    double first = 0.0, last = 0.0;
    int64_t step = 0;
    for (int e = 0; e < epochs; ++e) {
        CHECK(sp_loader_start_epoch(ld, e, 0));
        double loss_sum = 0.0;
        int64_t correct_sum = 0, seen = 0;
        for (;;) {
            sp_batch b;
            bool done = false;
            CHECK(sp_loader_next(ld, &b, &done));
            if (done) break;
            const int B = (int)b.count;
            sp_step_ctx ctx = {.training = true, .seed = seed, .step = step, .sample_ids = b.ids};
            const float *z = sp_model_forward(m, b.x, B, &ctx);
            double loss;
            int64_t correct;
            sp_xent_loss(&loss, &correct, dz, rows, z, b.labels, B, classes,
                         1.0f / (float)b.global_count);
            sp_model_zero_grads(m);
            sp_model_backward(m, dz, B, NULL, NULL);
            sp_optim_step(opt, sp_model_params(m), sp_model_grads(m), lr);
            ++step;
            loss_sum += loss;
            correct_sum += correct;
            seen += B;
        }
        const double mean = loss_sum / (double)seen;
        printf("epoch %d loss %.6f accuracy %.4f\n", e + 1, mean,
               (double)correct_sum / (double)seen);
        if (e == 0) first = mean;
        last = mean;
    }
    rc = last < first ? 0 : 1;
    printf("%s: loss %.6f -> %.6f after %lld steps\n", rc == 0 ? "ok" : "NOT DECREASING", first,
           last, (long long)step);

fail:
    free(rows);
    free(dz);
    sp_loader_free(ld);
    sp_optim_free(opt);
    sp_model_free(m);
    sp_dataset_close(ds);
    return rc;
}
