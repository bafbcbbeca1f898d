/*
 * Per-layer forward and backward compute times of a model at a local batch size, measured on
 * this machine, as JSON (the compute that scripts/scale/skeleton.c injects as simulated time).
 *
 *   layer_times SPEC SHAPE BATCH [REPS [THREADS [MOMENTUM]]]
 *     SHAPE: one sample's shape, "784" or "1,28,28"; REPS: best of (default 10);
 *     THREADS: OpenMP threads (default 1: one rank per core); MOMENTUM: SGD's (default 0.9)
 *
 * Method (scale/scaleplan.h): layer i = time(layers 0..i) - time(layers 0..i-1), best of REPS,
 * rescaled to add up to the whole model; the update is one SGD step on all parameters.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "scale_util.h"
#include "shardprop/model.h"
#include "scale/scaleplan.h"
#include "util/threads.h"

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: layer_times SPEC SHAPE BATCH [REPS [THREADS [MOMENTUM]]]\n");
        return 2;
    }
    int64_t shape[3];
    int rank = 0;
    if (!scale_parse_shape("layer_times", argv[2], shape, &rank)) return 2;
    const int B = atoi(argv[3]), reps = argc > 4 ? atoi(argv[4]) : 10;
    const int threads = sp_set_threads(argc > 5 ? atoi(argv[5]) : 1);
    sp_opt_config oc = sp_opt_config_defaults(SP_OPT_SGD);
    oc.momentum = argc > 6 ? (float)atof(argv[6]) : 0.9f;
    if (B < 1 || reps < 1) {
        fprintf(stderr, "layer_times: BATCH and REPS must be >= 1\n");
        return 2;
    }
    sp_layer_times t;
    if (sp_time_layers(argv[1], shape, rank, B, reps, &oc, &t) != SP_OK) {
        fprintf(stderr, "layer_times: %s\n", sp_last_error());
        return 1;
    }
    sp_model *m = NULL;
    if (sp_model_create(&m, argv[1], shape, rank, 1) != SP_OK) {
        fprintf(stderr, "layer_times: %s\n", sp_last_error());
        return 1;
    }
    double f = 0, b = 0;
    for (int i = 0; i < t.nlayers; ++i) f += t.fwd_s[i], b += t.bwd_s[i];
    printf("{\"spec\": \"%s\", \"batch\": %d, \"threads\": %d, \"reps\": %d, \"params\": %zu, "
           "\"forward_s\": %.9g, \"backward_s\": %.9g, \"update_s\": %.9g, \"layers\": [",
           argv[1], B, threads, reps, t.nparams, f, b, t.update_s);
    for (int i = 0; i < t.nlayers; ++i)
        printf("%s{\"index\": %d, \"name\": \"%s\", \"param_offset\": %ld, \"forward_s\": %.9g, "
               "\"backward_s\": %.9g}",
               i ? ", " : "", i, sp_model_layer_name(m, i), t.w_off[i], t.fwd_s[i], t.bwd_s[i]);
    printf("]}\n");
    sp_model_free(m);
    sp_layer_times_free(&t);
    return 0;
}
