#include "scale/scaleplan.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "scale/costmodel.h"
#include "util/status.h"

static double clock_(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void fill_(float *x, size_t n, uint32_t seed) {
    uint32_t s = seed * 2654435761u + 1u;
    for (size_t i = 0; i < n; ++i) {
        s = s * 1664525u + 1013904223u;
        x[i] = (float)((double)(s >> 8) / 16777216.0 - 0.5);
    }
}

/* Best-of-reps forward and backward time of the model made of the first k layers of spec. */
static sp_status time_prefix_(const char *spec, int k, const int64_t *shape, int rank, int B,
                              int reps, double *tf, double *tb) {
    char *pre = strdup(spec);
    if (!pre) return SP_FAIL(SP_ERR_NOMEM, "out of memory");
    char *p = pre;
    for (int i = 0; i < k && p; ++i) {
        p = strchr(p, ',');
        if (p && i + 1 < k) ++p;
    }
    if (p) *p = '\0';
    sp_model *m = NULL;
    sp_status st = sp_model_create(&m, pre, shape, rank, B);
    free(pre);
    if (st != SP_OK) return st;
    sp_model_init_params(m, 7);
    const size_t nin = (size_t)B * sp_model_input_size(m),
                 nout = (size_t)B * sp_model_output_size(m);
    float *x = malloc(nin * sizeof *x), *dy = malloc(nout * sizeof *dy);
    if (!x || !dy) {
        free(x), free(dy), sp_model_free(m);
        return SP_FAIL(SP_ERR_NOMEM, "out of memory");
    }
    fill_(x, nin, 1), fill_(dy, nout, 2);
    const sp_step_ctx ctx = {.training = true, .seed = 7};
    *tf = *tb = INFINITY;
    for (int r = 0; r < reps + 1; ++r) { /* the first run warms the caches up */
        const double t0 = clock_();
        sp_model_forward(m, x, B, &ctx);
        const double t1 = clock_();
        sp_model_zero_grads(m);
        const double t2 = clock_();
        sp_model_backward(m, dy, B, NULL, NULL);
        const double t3 = clock_();
        if (r == 0) continue;
        if (t1 - t0 < *tf) *tf = t1 - t0;
        if (t3 - t2 < *tb) *tb = t3 - t2;
    }
    free(x), free(dy), sp_model_free(m);
    return SP_OK;
}

void sp_layer_times_free(sp_layer_times *t) {
    if (!t) return;
    free(t->fwd_s), free(t->bwd_s), free(t->w_off);
    memset(t, 0, sizeof *t);
}

sp_status sp_time_layers(const char *spec, const int64_t *shape, int rank, int B, int reps,
                         const sp_opt_config *oc, sp_layer_times *out) {
    memset(out, 0, sizeof *out);
    sp_model *full = NULL;
    SP_CHECK(sp_model_create(&full, spec, shape, rank, B));
    const int n = sp_model_num_layers(full);
    out->nlayers = n, out->batch = B, out->nparams = sp_model_num_params(full);
    out->fwd_s = calloc((size_t)n, sizeof(double));
    out->bwd_s = calloc((size_t)n, sizeof(double));
    out->w_off = calloc((size_t)n, sizeof(long));
    double *cf = calloc((size_t)n + 1, sizeof(double)), *cb = calloc((size_t)n + 1, sizeof(double));
    sp_status st = SP_OK;
    if (!out->fwd_s || !out->bwd_s || !out->w_off || !cf || !cb)
        st = SP_FAIL(SP_ERR_NOMEM, "out of memory");
    for (int i = 0; i < n && st == SP_OK; ++i) {
        size_t w_off = 0, b_off = 0;
        int w_rank = 0;
        int64_t w_shape[4], b_len = 0;
        out->w_off[i] = sp_model_layer_params(full, i, &w_off, &w_rank, w_shape, &b_off, &b_len)
                            ? (long)w_off
                            : -1;
        st = time_prefix_(spec, i + 1, shape, rank, B, reps, &cf[i + 1], &cb[i + 1]);
    }
    if (st == SP_OK) {
        double sf = 0, sb = 0;
        for (int i = 0; i < n; ++i) {
            out->fwd_s[i] = fmax(0, cf[i + 1] - cf[i]);
            out->bwd_s[i] = fmax(0, cb[i + 1] - cb[i]);
            sf += out->fwd_s[i], sb += out->bwd_s[i];
        }
        for (int i = 0; i < n; ++i) {
            if (sf > 0) out->fwd_s[i] *= cf[n] / sf;
            if (sb > 0) out->bwd_s[i] *= cb[n] / sb;
        }
    }
    if (st == SP_OK && oc) {
        sp_optimizer *opt = NULL;
        st = sp_optim_create(&opt, oc, out->nparams);
        if (st == SP_OK) {
            float *g = sp_model_grads(full);
            fill_(g, out->nparams, 3);
            out->update_s = INFINITY;
            for (int r = 0; r < reps + 1; ++r) {
                const double t0 = clock_();
                sp_optim_step(opt, sp_model_params(full), g, 1e-6f);
                const double dt = clock_() - t0;
                if (r > 0 && dt < out->update_s) out->update_s = dt;
            }
            sp_optim_free(opt);
        }
    }
    free(cf), free(cb);
    sp_model_free(full);
    if (st != SP_OK) sp_layer_times_free(out);
    return st;
}

/* ---------------------------------------------------------------- advice */

#define MAX_P 1024

static const double bucket_choices_mb_[] = {0.25, 0.5, 1, 2, 4, 8, 16, 32, 64};

static void profile_(const sp_layer_times *t, sp_cost_profile *p) {
    *p = (sp_cost_profile){.nlayers = t->nlayers,
                           .fwd_s = t->fwd_s,
                           .bwd_s = t->bwd_s,
                           .w_off = t->w_off,
                           .update_s = t->update_s,
                           .nparams = t->nparams};
}

sp_status sp_scale_advice(FILE *f, const sp_model *m, const char *network, int64_t global_batch,
                          double bucket_mb, const sp_opt_config *oc) {
    sp_net net;
    SP_CHECK(sp_net_parse(network, &net));
    /* a CPU-driven network is one node: its ranks share this machine's cores */
    int max_p = MAX_P;
    if (net.cpu_driven) {
        const long nc = sysconf(_SC_NPROCESSORS_ONLN);
        net.cores = nc > 0 ? (int)nc : 1;
        max_p = 4 * net.cores;
    }
    const size_t cur_bytes = (size_t)(bucket_mb * 1048576.0);
    fprintf(f,
            "scaling advice for network %s (alpha %.3g us, %.3g Gb/s, gamma %.3g ns/B; cost model "
            "of docs/scaling.md,\n  compute timed here per rank at the local batch, global batch "
            "%lld, buckets of %g MB):\n",
            net.name, net.alpha * 1e6, 8e-9 / net.beta, net.gamma * 1e9, (long long)global_batch,
            bucket_mb);
    if (net.cpu_driven)
        fprintf(f,
                "  CPU-driven: the allreduce runs on the %d cores that compute, so overlap hides "
                "nothing (step = compute + allreduce);\n  P > %d ranks share the cores: compute "
                "and allreduce take P/%d times as long\n",
                net.cores, net.cores, net.cores);
    fprintf(f, "  %5s %6s %9s %9s %9s %6s %8s %6s %7s %-7s\n", "P", "local", "compute", "allred.",
            "step", "eff", "best MB", "eff", "ompi4.1", "bound");
    int best90_cur = 0, best90_best = 0, blk_p = 0;
    double blk_eff = 0, dflt_eff = 0;
    sp_cost_step blk;
    double best90_mb = 0;
    sp_layer_times lt = {0};
    int64_t timed_b = -1;
    for (int P = 1; P <= max_p && P <= global_batch; P *= 2) {
        const int64_t b = (global_batch + P - 1) / P;
        if (b != timed_b) {
            sp_layer_times_free(&lt);
            SP_CHECK(sp_time_layers(sp_model_spec(m), sp_model_input_shape(m),
                                    sp_model_input_rank(m), (int)b, 3, oc, &lt));
            timed_b = b;
        }
        sp_cost_profile prof;
        profile_(&lt, &prof);
        sp_cost_step cur, dflt, best = {.step_s = INFINITY};
        sp_cost_step_time(&prof, cur_bytes, P, &net, SP_AR_RABENSEIFNER, cur_bytes > 0, &cur);
        /* Open MPI 4.1's own choice for the trainer's (out-of-place) MPI_Iallreduce */
        sp_cost_step_time(&prof, cur_bytes, P, &net,
                          sp_cost_libnbc_alg(P, (double)cur_bytes, false), cur_bytes > 0, &dflt);
        double best_mb = bucket_choices_mb_[0];
        for (size_t k = 0; k < sizeof bucket_choices_mb_ / sizeof bucket_choices_mb_[0]; ++k) {
            sp_cost_step s;
            const size_t bytes = (size_t)(bucket_choices_mb_[k] * 1048576.0);
            sp_cost_step_time(&prof, bytes, P, &net, SP_AR_RABENSEIFNER, true, &s);
            if (s.step_s < best.step_s * 0.999) best = s, best_mb = bucket_choices_mb_[k];
            if (bytes >= prof.nparams * sizeof(float)) break; /* larger buckets: the same plan */
        }
        /* comm-bound: the allreduces take longer than what could hide them (backward; on a
         * CPU-driven network nothing hides them: longer than the compute) */
        double bwd = 0;
        for (int i = 0; i < lt.nlayers; ++i) bwd += lt.bwd_s[i];
        const bool comm_bound =
            best.comm_s >
            (net.cpu_driven ? best.compute_s : bwd * sp_cost_oversubscription(P, &net));
        char mb[16] = "-";
        if (P > 1) snprintf(mb, sizeof mb, "%g", best_mb);
        fprintf(f, "  %5d %6lld %8.2fms %7.2fms %7.2fms %5.1f%% %8s %5.1f%% %6.1f%% %-7s\n", P,
                (long long)b, cur.compute_s * 1e3, cur.comm_s * 1e3, cur.step_s * 1e3,
                100 * cur.efficiency, mb, 100 * best.efficiency, 100 * dflt.efficiency,
                P == 1       ? "-"
                : comm_bound ? "comm"
                             : "compute");
        /* CPU-driven: nothing overlaps, so one blocking allreduce (Open MPI's best algorithm)
         * may beat the overlapped buckets (libnbc's binomial below 4 ranks) */
        if (net.cpu_driven && P > 1 && P <= net.cores) {
            sp_cost_step_time(&prof, 0, P, &net, SP_AR_RABENSEIFNER, false, &blk);
            blk_p = P, blk_eff = blk.efficiency, dflt_eff = dflt.efficiency;
        }
        /* the largest P up to which every P keeps >= 90 % */
        if (cur.efficiency >= 0.9 && best90_cur == P / 2) best90_cur = P;
        if (best.efficiency >= 0.9 && best90_best == P / 2) best90_best = P, best90_mb = best_mb;
    }
    sp_layer_times_free(&lt);
    if (blk_p > 0)
        fprintf(f,
                "  CPU-driven, %d ranks: --bucket-mb 0 (one blocking MPI_Allreduce after backward) "
                "%.1f%% efficiency,\n  %g MB buckets with Open MPI 4.1's MPI_Iallreduce %.1f%%\n",
                blk_p, 100 * blk_eff, bucket_mb, 100 * dflt_eff);
    fprintf(f,
            "  largest P at >= 90%% efficiency (every P up to it): %d with %g MB buckets, %d with "
            "%g MB buckets\n"
            "  (eff: overlapped Rabenseifner/ring allreduce;\n   ompi4.1: Open MPI 4.1's default "
            "for the trainer's MPI_Iallreduce: Rabenseifner from 4 ranks and 64 KiB buckets,\n"
            "   else a binomial reduce+bcast;\n   bound: comm when the "
            "allreduces take longer than backward (CPU-driven: than the compute), so no overlap "
            "can hide them)\n",
            best90_cur, bucket_mb, best90_best, best90_mb);
    return SP_OK;
}

sp_status sp_train_check_network(const char *network, bool dry_run) {
    if (!dry_run) return SP_FAIL(SP_ERR_ARG, "--network goes with --dry-run");
    sp_net net;
    return sp_net_parse(network, &net);
}
