#include "scale/costmodel.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/status.h"

/* The "shm" preset: this machine (2 cores), the medians of 6 runs of scripts/scale/measure_net.sh
 * on a quiet machine (docs/scaling.md §3) */
#define SHM_ALPHA_US 0.28
#define SHM_GBITS    27.0
#define SHM_GAMMA_NS 0.21

/* Presets: per-message latency as an application sees it (MPI software included), the link's
 * data rate and the reduction cost. The cluster presets leave gamma at 0: their NICs move the
 * bytes and the sum is small next to it (docs/scaling.md §8). "shm" is this machine's shared
 * memory, CPU-driven, measured by measure_net.sh (medians over 1-16 MiB, 2 ranks; docs/scaling.md
 * §3). */
static const struct {
    const char *name;
    double alpha_us, gbits, gamma_ns;
    bool cpu;
} nets_[] = {
    {"ib100", 1.0, 100.0, 0, false},
    {"eth25", 10.0, 25.0, 0, false},
    {"eth10", 25.0, 10.0, 0, false},
    {"shm", SHM_ALPHA_US, SHM_GBITS, SHM_GAMMA_NS, true},
};

/* "A:G" or "A:G:C" (three non-negative numbers, G > 0); the rest of s must be empty. */
static bool parse_custom_(const char *s, double *a, double *g, double *c) {
    char *end = NULL;
    *c = 0;
    *a = strtod(s, &end);
    if (end == s || *end != ':' || !isfinite(*a) || *a < 0) return false;
    s = end + 1;
    *g = strtod(s, &end);
    if (end == s || !isfinite(*g) || *g <= 0) return false;
    if (*end == '\0') return true;
    if (*end != ':') return false;
    s = end + 1;
    *c = strtod(s, &end);
    return end != s && *end == '\0' && isfinite(*c) && *c >= 0;
}

sp_status sp_net_parse(const char *s, sp_net *out) {
    memset(out, 0, sizeof *out);
    if (!s || !*s) return SP_FAIL(SP_ERR_ARG, "--network: empty");
    for (size_t i = 0; i < sizeof nets_ / sizeof nets_[0]; ++i) {
        if (strcmp(s, nets_[i].name) != 0) continue;
        snprintf(out->name, sizeof out->name, "%s", nets_[i].name);
        out->alpha = nets_[i].alpha_us * 1e-6;
        out->beta = 8.0 / (nets_[i].gbits * 1e9);
        out->gamma = nets_[i].gamma_ns * 1e-9;
        out->cpu_driven = nets_[i].cpu;
        return SP_OK;
    }
    const bool shm = strncmp(s, "shm:", 4) == 0;
    double a, g, c;
    if (parse_custom_(shm ? s + 4 : s, &a, &g, &c) &&
        (!shm || strchr(s + 4, ':') != strrchr(s, ':'))) {
        snprintf(out->name, sizeof out->name, "%s%g us, %g Gb/s, %g ns/B", shm ? "shm " : "", a, g,
                 c);
        out->alpha = a * 1e-6;
        out->beta = 8.0 / (g * 1e9);
        out->gamma = c * 1e-9;
        out->cpu_driven = shm;
        return SP_OK;
    }
    return SP_FAIL(SP_ERR_ARG,
                   "--network '%s': expected ib100, eth25, eth10, shm, ALPHA_US:GBITS[:GAMMA_NS] "
                   "(e.g. 2:200) or shm:ALPHA_US:GBITS:GAMMA_NS",
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
    const double al = net->alpha, be = net->beta, ga = net->gamma, lg = log2ceil_(P);
    const double frac = 2.0 * (double)(P - 1) / (double)P;
    switch (a) {
    case SP_AR_RING:
        return 2.0 * (P - 1) * al + frac * n * be + 0.5 * frac * n * ga;
    case SP_AR_RDB:
        return lg * (al + n * be + n * ga);
    case SP_AR_RABENSEIFNER:
        return 2.0 * lg * al + frac * n * be + 0.5 * frac * n * ga;
    case SP_AR_BINOMIAL:
        return 2.0 * lg * (al + n * be) + lg * n * ga;
    case SP_AR_RING_SURROGATE:
        return al + frac * n * be + 0.5 * frac * n * ga;
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

double sp_cost_oversubscription(int P, const sp_net *net) {
    return net->cores > 0 && P > net->cores ? (double)P / (double)net->cores : 1.0;
}

void sp_cost_step_time(const sp_cost_profile *p, size_t bucket_bytes, int P, const sp_net *net,
                       sp_ar_alg alg, bool overlap, sp_cost_step *out) {
    memset(out, 0, sizeof *out);
    /* os: ranks time-sharing a core; cpu: the allreduce runs on the compute core (no overlap) */
    const double os = sp_cost_oversubscription(P, net), comm_os = net->cpu_driven ? os : 1.0;
    /* a binomial tree keeps at most half of the ranks busy in a round */
    const double cbin = net->cpu_driven ? sp_cost_oversubscription((P + 1) / 2, net) : 1.0;
    const bool cpu = net->cpu_driven;
    double fwd = 0, bwd = 0;
    for (int i = 0; i < p->nlayers; ++i) fwd += os * p->fwd_s[i], bwd += os * p->bwd_s[i];
    const double update = os * p->update_s;
    out->compute_s = fwd + bwd + update;
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
        const sp_ar_alg a = overlap ? alg : sp_cost_ompi_blocking_alg(P, n);
        const double c = sp_cost_allreduce(a, P, n, net) * (a == SP_AR_BINOMIAL ? cbin : comm_os);
        /* CPU-driven: a bucket's allreduce cannot start before the core is free of backward */
        const double ready = overlap && !cpu ? os * ready_time_(p, b0) : bwd;
        end = (end > ready ? end : ready) + c;
        comm += c;
    }
    const double loss_sum = comm_os * sp_cost_allreduce(SP_AR_RDB, P, 3 * sizeof(double), net);
    comm += loss_sum;
    out->comm_s = comm;
    out->step_s = fwd + (end > bwd ? end : bwd) + loss_sum + update;
    out->exposed_s = out->step_s - out->compute_s;
    out->efficiency = out->step_s > 0 ? out->compute_s / out->step_s : 1;
    out->hidden = comm > 0 ? 1.0 - out->exposed_s / comm : 1;
}
