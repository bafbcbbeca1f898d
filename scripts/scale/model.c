/*
 * The alpha-beta model's prediction (src/scale/costmodel.c) for a skeleton input file: what
 * scripts/scale/skeleton.c should simulate, and what the trainer would do.
 *
 *   scale_model INPUT NET P MODE [CORES]
 *     INPUT: the skeleton's input (plan.py); NET: a --network name (scale/costmodel.h: ib100,
 *            eth25, eth10, shm, ALPHA_US:GBITS[:GAMMA_NS], shm:ALPHA_US:GBITS:GAMMA_NS)
 *     CORES: the cores the P ranks share (default 0: one core per rank); P > CORES makes the
 *            compute (and a CPU-driven network's allreduce) P / CORES times as long
 *     MODE:  surrogate  overlapped, one message of the ring's bytes per bucket (= skeleton overlap)
 *            blocking   per-bucket blocking allreduce after backward (= skeleton blocking)
 *            ring | rabenseifner   overlapped, that algorithm
 *            libnbc     overlapped, Open MPI 4.1's choice for the trainer's out-of-place
 *                       MPI_Iallreduce (Rabenseifner from 4 ranks and 64 KiB, else binomial)
 *            libnbc-inplace  the same for an in-place one (binomial: the trainer before)
 * Prints one JSON line: step_s, compute_s, comm_s, exposed_s, efficiency, hidden.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "scale/costmodel.h"
#include "shardprop/status.h"

int main(int argc, char **argv) {
    if (argc != 5 && argc != 6) {
        fprintf(stderr, "usage: scale_model INPUT NET P surrogate|blocking|ring|rabenseifner|"
                        "libnbc|libnbc-inplace [CORES]\n");
        return 2;
    }
    sp_net net;
    if (sp_net_parse(argv[2], &net) != SP_OK) {
        fprintf(stderr, "scale_model: %s\n", sp_last_error());
        return 2;
    }
    const int P = atoi(argv[3]);
    net.cores = argc > 5 ? atoi(argv[5]) : 0;
    FILE *f = fopen(argv[1], "r");
    if (!f || P < 1) {
        fprintf(stderr, "scale_model: cannot open %s (or P < 1)\n", argv[1]);
        return 2;
    }
    size_t n = 0, bb = 0;
    double speed = 0, update = 0;
    int nl = 0, nb = 0;
    int ok = fscanf(f, " params %zu bucket_bytes %zu host_speed %lf layers %d", &n, &bb, &speed,
                    &nl) == 4 &&
             nl > 0;
    double *fw = ok ? calloc((size_t)nl, sizeof *fw) : NULL;
    double *bw = ok ? calloc((size_t)nl, sizeof *bw) : NULL;
    long *wo = ok ? calloc((size_t)nl, sizeof *wo) : NULL;
    ok = ok && fw && bw && wo;
    for (int i = 0; ok && i < nl; ++i) {
        int idx;
        ok = fscanf(f, " %d %lf %lf %ld", &idx, &fw[i], &bw[i], &wo[i]) == 4 && idx == i;
    }
    ok = ok && fscanf(f, " update %lf buckets %d", &update, &nb) == 2;
    fclose(f);
    if (!ok) {
        fprintf(stderr, "scale_model: %s: malformed\n", argv[1]);
        return 2;
    }
    const sp_cost_profile prof = {
        .nlayers = nl, .fwd_s = fw, .bwd_s = bw, .w_off = wo, .update_s = update, .nparams = n};
    const char *mode = argv[4];
    sp_cost_step s;
    const bool over = strcmp(mode, "blocking") != 0;
    sp_ar_alg alg = SP_AR_RING_SURROGATE;
    if (!strcmp(mode, "ring"))
        alg = SP_AR_RING;
    else if (!strcmp(mode, "rabenseifner"))
        alg = SP_AR_RABENSEIFNER;
    else if (!strcmp(mode, "libnbc"))
        alg = sp_cost_libnbc_alg(P, (double)bb, false);
    else if (!strcmp(mode, "libnbc-inplace"))
        alg = sp_cost_libnbc_alg(P, (double)bb, true);
    else if (strcmp(mode, "surrogate") && strcmp(mode, "blocking")) {
        fprintf(stderr, "scale_model: unknown mode '%s'\n", mode);
        return 2;
    }
    sp_cost_step_time(&prof, bb, P, &net, alg, over, &s);
    printf("{\"P\": %d, \"network\": \"%s\", \"mode\": \"%s\", \"step_s\": %.9g, "
           "\"compute_s\": %.9g, \"comm_s\": %.9g, \"exposed_s\": %.9g, \"efficiency\": %.6g, "
           "\"hidden\": %.6g, \"buckets\": %d, \"cpu_driven\": %s, \"oversubscription\": %.6g}\n",
           P, net.name, mode, s.step_s, s.compute_s, s.comm_s, s.exposed_s, s.efficiency, s.hidden,
           s.buckets, net.cpu_driven ? "true" : "false", sp_cost_oversubscription(P, &net));
    free(fw), free(bw), free(wo);
    return 0;
}
