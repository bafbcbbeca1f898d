#include "dist/costmodel.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/status.h"

/* Presets: per-message latency as an application sees it (MPI software included) and the
 * link's data rate. "shm" is this machine's shared memory, measured by measure_net.sh
 * (docs/scaling.md, "Parameters"). */
static const struct {
    const char *name;
    double alpha_us, gbits;
} nets_[] = {
    {"ib100", 1.0, 100.0},
    {"eth25", 10.0, 25.0},
    {"eth10", 25.0, 10.0},
    {"shm", 0.35, 30.0},
};

sp_status sp_net_parse(const char *s, sp_net *out) {
    memset(out, 0, sizeof *out);
    if (!s || !*s) return SP_FAIL(SP_ERR_ARG, "--network: empty");
    for (size_t i = 0; i < sizeof nets_ / sizeof nets_[0]; ++i) {
        if (strcmp(s, nets_[i].name) != 0) continue;
        snprintf(out->name, sizeof out->name, "%s", nets_[i].name);
        out->alpha = nets_[i].alpha_us * 1e-6;
        out->beta = 8.0 / (nets_[i].gbits * 1e9);
        return SP_OK;
    }
    char *end = NULL;
    const double a = strtod(s, &end);
    if (end != s && *end == ':') {
        char *end2 = NULL;
        const double g = strtod(end + 1, &end2);
        if (end2 != end + 1 && *end2 == '\0' && isfinite(a) && a >= 0 && isfinite(g) && g > 0) {
            snprintf(out->name, sizeof out->name, "%g us, %g Gb/s", a, g);
            out->alpha = a * 1e-6;
            out->beta = 8.0 / (g * 1e9);
            return SP_OK;
        }
    }
    return SP_FAIL(SP_ERR_ARG,
                   "--network '%s': expected ib100, eth25, eth10, shm or ALPHA_US:GBITS "
                   "(e.g. 2:200)",
                   s);
}

const char *sp_ar_alg_name(sp_ar_alg a) {
    switch (a) {
    case SP_AR_RING:
        return "ring";
    case SP_AR_RDB:
        return "recursive doubling";
    case SP_AR_RABENSEIFNER:
        return "Rabenseifner";
    case SP_AR_BINOMIAL:
        return "binomial reduce+bcast";
    case SP_AR_RING_SURROGATE:
        return "ring surrogate";
    }
    return "unknown";
}

static double log2ceil_(int P) {
    int k = 0;
    while ((1 << k) < P) ++k;
    return (double)k;
}

double sp_cost_allreduce(sp_ar_alg a, int P, double n, const sp_net *net) {
    if (P <= 1 || n <= 0) return 0;
    const double al = net->alpha, be = net->beta, lg = log2ceil_(P);
    const double frac = 2.0 * (double)(P - 1) / (double)P;
    switch (a) {
    case SP_AR_RING:
        return 2.0 * (P - 1) * al + frac * n * be;
    case SP_AR_RDB:
        return lg * (al + n * be);
    case SP_AR_RABENSEIFNER:
        return 2.0 * lg * al + frac * n * be;
    case SP_AR_BINOMIAL:
        return 2.0 * lg * (al + n * be);
    case SP_AR_RING_SURROGATE:
        return al + frac * n * be;
    }
    return 0;
}

sp_ar_alg sp_cost_ompi_blocking_alg(int P, double n) {
    /* coll_tuned_decision_fixed.c of Open MPI 4.1, commutative branch; 2 = nonoverlapping
     * (reduce + bcast), 3 = recursive doubling, 4 = ring, 5 = segmented ring, 6 = Rabenseifner */
    int alg;
    if (P < 4)
        alg = n < 8        ? 4
              : n < 4096   ? 3
              : n < 8192   ? 4
              : n < 16384  ? 3
              : n < 65536  ? 4
              : n < 262144 ? 5
                           : 6;
    else if (P < 8)
        alg = n < 16 ? 4 : n < 8192 ? 3 : 6;
    else if (P < 16)
        alg = n < 8192 ? 3 : 6;
    else if (P < 32)
        alg = n < 64 ? 5 : n < 4096 ? 3 : 6;
    else if (P < 64)
        alg = n < 128 ? 5 : 6;
    else if (P < 128)
        alg = n < 262144 ? 3 : 6;
    else if (P < 256)
        alg = n < 131072 ? 2 : n < 262144 ? 3 : 6;
    else if (P < 512)
        alg = n < 4096 ? 2 : 6;
    else if (P < 2048)
        alg = n < 2048 ? 2 : n < 16384 ? 3 : 6;
    else if (P < 4096)
        alg = n < 2048 ? 2 : n < 4096 ? 5 : n < 16384 ? 3 : 6;
    else
        alg = n < 2048 ? 2 : n < 16384 ? 5 : n < 32768 ? 3 : 6;
    switch (alg) {
    case 2:
        return SP_AR_BINOMIAL;
    case 3:
        return SP_AR_RDB;
    case 4:
    case 5:
        return SP_AR_RING;
    default:
        return SP_AR_RABENSEIFNER;
    }
}

sp_ar_alg sp_cost_libnbc_alg(int P, double n, bool inplace) {
    if (P < 4 || n < 65536 || inplace) return SP_AR_BINOMIAL;
    return SP_AR_RABENSEIFNER;
}

int sp_cost_bucket_plan(size_t n, size_t bucket_bytes, size_t *begin, size_t *len, int cap) {
    size_t per = bucket_bytes / sizeof(float);
    if (per == 0 || per > n) per = n ? n : 1;
    const int nb = n ? (int)((n + per - 1) / per) : 0;
    size_t end = n;
    for (int i = 0; i < nb && i < cap; ++i) {
        const size_t l = end < per ? end : per;
        begin[i] = end - l;
        len[i] = l;
        end -= l;
    }
    return nb;
}

/* When backward (started at 0) has made every gradient at offsets >= begin final: after the
 * highest layer whose parameters start at or below begin (the trainer's on_grad_ready hook). */
static double ready_time_(const sp_cost_profile *p, size_t begin) {
    double t = 0;
    for (int i = p->nlayers - 1; i >= 0; --i) {
        t += p->bwd_s[i];
        if (p->w_off[i] >= 0 && (size_t)p->w_off[i] <= begin) return t;
    }
    return t;
}

void sp_cost_step_time(const sp_cost_profile *p, size_t bucket_bytes, int P, const sp_net *net,
                       sp_ar_alg alg, bool overlap, sp_cost_step *out) {
    memset(out, 0, sizeof *out);
    double fwd = 0, bwd = 0;
    for (int i = 0; i < p->nlayers; ++i) fwd += p->fwd_s[i], bwd += p->bwd_s[i];
    out->compute_s = fwd + bwd + p->update_s;
    const size_t bb = bucket_bytes ? bucket_bytes : p->nparams * sizeof(float);
    out->buckets = sp_cost_bucket_plan(p->nparams, bb, NULL, NULL, 0);
    double comm = 0, end = overlap ? 0 : bwd; /* end: when the network is free */
    size_t e = p->nparams;
    for (int k = 0; k < out->buckets && P > 1; ++k) {
        const size_t per = bb / sizeof(float) ? bb / sizeof(float) : 1;
        const size_t l = e < per ? e : per;
        const size_t b0 = e - l;
        e = b0;
        const double n = (double)l * sizeof(float);
        const double c = overlap ? sp_cost_allreduce(alg, P, n, net)
                                 : sp_cost_allreduce(sp_cost_ompi_blocking_alg(P, n), P, n, net);
        const double ready = overlap ? ready_time_(p, b0) : bwd;
        end = (end > ready ? end : ready) + c;
        comm += c;
    }
    const double loss_sum = sp_cost_allreduce(SP_AR_RDB, P, 3 * sizeof(double), net);
    comm += loss_sum;
    out->comm_s = comm;
    out->step_s = fwd + (end > bwd ? end : bwd) + loss_sum + p->update_s;
    out->exposed_s = out->step_s - out->compute_s;
    out->efficiency = out->step_s > 0 ? out->compute_s / out->step_s : 1;
    out->hidden = comm > 0 ? 1.0 - out->exposed_s / comm : 1;
}
