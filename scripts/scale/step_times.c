/*
 * Wall time of whole training steps (forward, backward, SGD update) of a model at a local batch,
 * as JSON: the compute of one rank as it is when several run at once (scripts/scale/real_check.sh
 * starts it as P concurrent processes: they share the L3 cache and memory bandwidth, and past the
 * core count the cores).
 *
 *   step_times SPEC SHAPE BATCH [STEPS [WARMUP]]
 *     SHAPE: one sample's shape, "784" or "1,28,28"; STEPS: timed steps (default 60) after WARMUP
 *     (default 10). One thread. Prints the medians: forward_s, backward_s, update_s, step_s.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "scale_util.h"
#include "shardprop/model.h"
#include "shardprop/optim.h"
#include "util/threads.h"

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: step_times SPEC SHAPE BATCH [STEPS [WARMUP]]\n");
        return 2;
    }
    int64_t shape[3];
    int rank = 0;
    if (!scale_parse_shape("step_times", argv[2], shape, &rank)) return 2;
    const int B = atoi(argv[3]), steps = argc > 4 ? atoi(argv[4]) : 60,
              warm = argc > 5 ? atoi(argv[5]) : 10;
    if (B < 1 || steps < 1 || warm < 0) {
        fprintf(stderr, "step_times: BATCH and STEPS must be >= 1, WARMUP >= 0\n");
        return 2;
    }
    sp_set_threads(1);
    sp_model *m = NULL;
    sp_optimizer *opt = NULL;
    sp_opt_config oc = sp_opt_config_defaults(SP_OPT_SGD);
    oc.momentum = 0.9f;
    if (sp_model_create(&m, argv[1], shape, rank, B) != SP_OK ||
        sp_optim_create(&opt, &oc, sp_model_num_params(m)) != SP_OK) {
        fprintf(stderr, "step_times: %s\n", sp_last_error());
        sp_model_free(m);
        return 1;
    }
    sp_model_init_params(m, 7);
    const size_t nin = (size_t)B * sp_model_input_size(m),
                 nout = (size_t)B * sp_model_output_size(m);
    float *x = malloc(nin * sizeof *x), *dy = malloc(nout * sizeof *dy);
    double *t = malloc(4 * (size_t)steps * sizeof *t);
    if (!x || !dy || !t) {
        fprintf(stderr, "step_times: out of memory\n");
        return 1;
    }
    for (size_t i = 0; i < nin; ++i) x[i] = (float)((i * 2654435761u) % 1000) / 1000.0f - 0.5f;
    for (size_t i = 0; i < nout; ++i) dy[i] = (float)((i * 40503u) % 1000) / 1e6f;
    const sp_step_ctx ctx = {.training = true, .seed = 7};
    for (int s = 0; s < warm + steps; ++s) {
        const double t0 = bench_now();
        sp_model_forward(m, x, B, &ctx);
        const double t1 = bench_now();
        sp_model_zero_grads(m);
        sp_model_backward(m, dy, B, NULL, NULL);
        const double t2 = bench_now();
        sp_optim_step(opt, sp_model_params(m), sp_model_grads(m), 1e-6f);
        const double t3 = bench_now();
        if (s < warm) continue;
        const int k = s - warm;
        t[k] = t1 - t0, t[steps + k] = t2 - t1, t[2 * steps + k] = t3 - t2,
        t[3 * steps + k] = t3 - t0;
    }
    printf("{\"spec\": \"%s\", \"batch\": %d, \"steps\": %d, \"forward_s\": %.9g, "
           "\"backward_s\": %.9g, \"update_s\": %.9g, \"step_s\": %.9g}\n",
           argv[1], B, steps, scale_median(t, steps), scale_median(t + steps, steps),
           scale_median(t + 2 * steps, steps), scale_median(t + 3 * steps, steps));
    free(x), free(dy), free(t);
    sp_optim_free(opt);
    sp_model_free(m);
    return 0;
}
