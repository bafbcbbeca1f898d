/* `shardprop demo`: the whole idea in one screen, on data made in memory.
 *
 * Two interleaved spirals, a small MLP, Adam. Each step: forward the batch, measure the error
 * at the output (softmax cross-entropy), pass the blame back layer by layer, and move each
 * weight against its share of it. */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "data/synth.h"
#include "layers/layers.h"
#include "optim/optim.h"
#include "shardprop/model.h"
#include "util/args.h"
#include "util/rng.h"
#include "util/status.h"

int sp_cmd_demo(int argc, char **argv) {
    int64_t n = 2000, epochs = 30, batch = 32, seed = 1, threads = 0;
    double lr = 0.01;
    const char *spec = "dense:64,relu,dense:64,relu,dense:2";
    bool quiet = false;
    sp_arg_spec specs[] = {
        {"n", SP_ARG_INT, &n, "N", "samples (default 2000)", .imin = 10, .imax = 10000000},
        {"epochs", SP_ARG_INT, &epochs, "E", "epochs (default 30)", .imin = 1, .imax = 100000},
        {"batch", SP_ARG_INT, &batch, "B", "batch size (default 32)", .imin = 1, .imax = 65536},
        {"lr", SP_ARG_DOUBLE, &lr, "LR", "Adam learning rate (default 0.01)", .dmin = 0,
         .dmax = 10},
        {"seed", SP_ARG_INT, &seed, "S",
         "seed of the data, the initial weights and the order (default 1)", .imin = 0,
         .imax = INT64_MAX},
        {"threads", SP_ARG_INT, &threads, "T", "OpenMP threads (default: OMP_NUM_THREADS or all)",
         .imin = 1, .imax = 4096},
        {"model", SP_ARG_STRING, &spec, "SPEC",
         "model spec (default dense:64,relu,dense:64,relu,dense:2)", .required = false},
        {"quiet", SP_ARG_BOOL, &quiet, NULL, "print only the final line", .required = false},
    };
    sp_args a = {.command = "shardprop demo",
                 .description =
                     "Train a classifier on two spirals generated in memory (no data files, no "
                     "MPI), printing the loss and accuracy per epoch; exit 0 if it reaches 99% "
                     "training accuracy.",
                 .specs = specs,
                 .nspecs = (int)(sizeof specs / sizeof specs[0])};
    sp_status st = sp_args_parse(&a, argc, argv);
    if (st != SP_OK) return sp_cli_fail(a.command, st);
    if (a.help) {
        sp_args_print_help(&a, stdout);
        return 0;
    }
    if (threads > 0) omp_set_num_threads((int)threads);

    /* the data: two spirals, 2 features, 2 classes */
    float *x = malloc((size_t)n * 2 * sizeof(float));
    int32_t *y = malloc((size_t)n * sizeof(int32_t));
    int64_t *order = malloc((size_t)n * sizeof(int64_t));
    float *xb = malloc((size_t)batch * 2 * sizeof(float));
    int32_t *yb = malloc((size_t)batch * sizeof(int32_t));
    float *dz = malloc((size_t)batch * 2 * sizeof(float));
    double *rows = malloc((size_t)batch * sizeof(double));
    if (!x || !y || !order || !xb || !yb || !dz || !rows) {
        fprintf(stderr, "shardprop demo: out of memory\n");
        return 1;
    }
    int rc = 1;
    sp_model *m = NULL;
    sp_optimizer *opt = NULL;
    const int64_t shape[1] = {2};
    sp_opt_config oc = {.kind = SP_OPT_ADAM, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f};
    if (sp_synth_generate(SP_SYNTH_SPIRALS, 0, n, 2, 2, 0, (uint64_t)seed, x, y, NULL) != SP_OK ||
        sp_model_create(&m, spec, shape, 1, (int)batch) != SP_OK ||
        sp_optim_create(&opt, &oc, sp_model_num_params(m)) != SP_OK) {
        fprintf(stderr, "shardprop demo: %s\n", sp_last_error());
        goto done;
    }
    if (sp_model_output_size(m) != 2) {
        fprintf(stderr, "shardprop demo: the model must end with 2 outputs (two classes)\n");
        goto done;
    }
    sp_model_init_params(m, (uint64_t)seed);
    if (!quiet)
        printf(
            "demo: two spirals, %lld samples, model %s (%zu parameters), Adam lr %g, %d threads\n",
            (long long)n, spec, sp_model_num_params(m), lr, omp_get_max_threads());

    double acc = 0;
    for (int64_t epoch = 0; epoch < epochs; ++epoch) {
        /* a fresh order each epoch: Fisher-Yates driven by the counter-based RNG */
        for (int64_t i = 0; i < n; ++i) order[i] = i;
        for (int64_t i = n - 1; i > 0; --i) {
            int64_t j =
                (int64_t)sp_rng_below((uint64_t)seed, SP_STREAM_ORDER + ((uint64_t)epoch << 8),
                                      (uint64_t)i, (uint64_t)i + 1);
            int64_t t = order[i];
            order[i] = order[j], order[j] = t;
        }
        double loss = 0;
        int64_t correct = 0;
        for (int64_t b0 = 0; b0 < n; b0 += batch) {
            const int B = (int)(n - b0 < batch ? n - b0 : batch);
            for (int i = 0; i < B; ++i) {
                const int64_t s = order[b0 + i];
                xb[2 * i] = x[2 * s], xb[2 * i + 1] = x[2 * s + 1], yb[i] = y[s];
            }
            sp_step_ctx ctx = {.training = true,
                               .seed = (uint64_t)seed,
                               .step = b0 / batch,
                               .sample_ids = order + b0};
            /* forward: the network's guess */
            const float *z = sp_model_forward(m, xb, B, &ctx);
            /* the error at the output: softmax minus the truth, for the mean loss */
            double ls;
            int64_t hits;
            sp_xent_loss(&ls, &hits, dz, rows, z, yb, B, 2, 1.0f / (float)B);
            /* backward: blame flows from the output down, each weight takes its share */
            sp_model_zero_grads(m);
            sp_model_backward(m, dz, B, NULL, NULL);
            /* each weight moves against its share of the blame */
            sp_optim_step(opt, sp_model_params(m), sp_model_grads(m), (float)lr);
            loss += ls;
            correct += hits;
        }
        acc = (double)correct / (double)n;
        if (!quiet)
            printf("epoch %3lld  loss %.4f  train accuracy %.4f\n", (long long)epoch + 1,
                   loss / (double)n, acc);
    }
    /* final accuracy of the trained model on the whole set, in evaluation mode */
    int64_t correct = 0;
    double loss = 0;
    for (int64_t b0 = 0; b0 < n; b0 += batch) {
        const int B = (int)(n - b0 < batch ? n - b0 : batch);
        sp_step_ctx ctx = {.training = false};
        const float *z = sp_model_forward(m, x + 2 * b0, B, &ctx);
        double ls;
        int64_t hits;
        sp_xent_loss(&ls, &hits, NULL, rows, z, y + b0, B, 2, 1.0f);
        correct += hits;
        loss += ls;
    }
    acc = (double)correct / (double)n;
    printf("demo: final training accuracy %.4f, loss %.4f (%s the 0.99 target)\n", acc,
           loss / (double)n, acc >= 0.99 ? "meets" : "misses");
    rc = acc >= 0.99 ? 0 : 1;
done:
    sp_optim_free(opt);
    sp_model_free(m);
    free(x), free(y), free(order), free(xb), free(yb), free(dz), free(rows);
    return rc;
}
