#define _GNU_SOURCE /* sched_getaffinity */
/* The start-up report of hosts, ranks, threads and core bindings (comm/comm.h). */
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "comm/comm.h"
#include "comm/comm_impl.h"
#include "util/status.h"

#define SP_MAX_CPUS 1024

typedef struct rank_rec {
    char host[MPI_MAX_PROCESSOR_NAME];
    int cpus_online;
    int threads;
    unsigned char mask[SP_MAX_CPUS / 8];
    int nmask;
} rank_rec;

static int popcount_(const unsigned char *m, size_t n) {
    int k = 0;
    for (size_t i = 0; i < n; ++i)
        for (int b = 0; b < 8; ++b) k += (m[i] >> b) & 1;
    return k;
}

sp_status sp_comm_layout_report(sp_comm *c, int threads, char *buf, size_t cap, int *warnings) {
    rank_rec me;
    memset(&me, 0, sizeof me);
    int len = 0;
    char name[MPI_MAX_PROCESSOR_NAME];
    MPI_Get_processor_name(name, &len);
    snprintf(me.host, sizeof me.host, "%s", name);
    me.cpus_online = (int)sysconf(_SC_NPROCESSORS_ONLN);
    me.threads = threads;
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) == 0)
        for (int i = 0; i < SP_MAX_CPUS && i < CPU_SETSIZE; ++i)
            if (CPU_ISSET(i, &set)) me.mask[i / 8] |= (unsigned char)(1u << (i % 8)), me.nmask++;
    rank_rec *all = NULL;
    if (c->rank == 0) {
        all = calloc((size_t)c->size, sizeof *all);
        if (!all) return SP_FAIL(SP_ERR_NOMEM, "out of memory");
    }
    sp_status st = sp_comm_gather_bytes(c, &me, sizeof me, all, 0);
    *warnings = 0;
    if (st != SP_OK || c->rank != 0) {
        free(all);
        return st;
    }
    size_t used = 0;
    buf[0] = '\0';
#define OUT(...)                                                                                   \
    do {                                                                                           \
        if (used < cap) used += (size_t)snprintf(buf + used, cap - used, __VA_ARGS__);             \
    } while (0)
    OUT("layout: %d rank%s x %d thread%s\n", c->size, c->size == 1 ? "" : "s", threads,
        threads == 1 ? "" : "s");
    bool *seen = calloc((size_t)c->size, sizeof *seen);
    for (int r = 0; r < c->size && seen; ++r) {
        if (seen[r]) continue;
        int nranks = 0, nthreads = 0, overlap = 0;
        unsigned char uni[SP_MAX_CPUS / 8] = {0};
        for (int q = r; q < c->size; ++q) {
            if (strcmp(all[q].host, all[r].host)) continue;
            seen[q] = true;
            nranks++;
            nthreads += all[q].threads;
            for (int k = 0; k < SP_MAX_CPUS / 8; ++k) {
                /* a rank running several threads on cores another rank also uses */
                if (uni[k] & all[q].mask[k]) overlap = 1;
                uni[k] |= all[q].mask[k];
            }
        }
        /* the ranks on this host, runs of consecutive ones as ranges: (0-3,8) */
        char list[256];
        size_t ll = 0;
        list[0] = '\0';
        for (int q = r; q < c->size && ll < sizeof list; ++q) {
            if (strcmp(all[q].host, all[r].host)) continue;
            int last = q;
            while (last + 1 < c->size && !strcmp(all[last + 1].host, all[r].host)) ++last;
            ll += (size_t)(last > q
                               ? snprintf(list + ll, sizeof list - ll, "%s%d-%d", ll ? "," : "", q,
                                          last)
                               : snprintf(list + ll, sizeof list - ll, "%s%d", ll ? "," : "", q));
            q = last;
        }
        if (ll >= sizeof list) snprintf(list + sizeof list - 5, 5, ",...");
        OUT("  host %s: %d rank%s (%s), %d thread%s, %d cores online\n", all[r].host, nranks,
            nranks == 1 ? "" : "s", list, nthreads, nthreads == 1 ? "" : "s", all[r].cpus_online);
        if (nthreads > all[r].cpus_online) {
            OUT("  warning: host %s runs %d threads on %d cores (oversubscribed: expect a large "
                "slowdown; lower --threads or the ranks per host)\n",
                all[r].host, nthreads, all[r].cpus_online);
            ++*warnings;
        } else if (overlap && nranks > 1 && nthreads > popcount_(uni, sizeof uni)) {
            OUT("  warning: ranks on host %s are bound to overlapping cores; bind each rank to "
                "its own cores (mpirun --map-by slot:PE=T --bind-to core, or srun "
                "--cpus-per-task=T --cpu-bind=cores)\n",
                all[r].host);
            ++*warnings;
        }
        for (int q = r; q < c->size; ++q)
            if (!strcmp(all[q].host, all[r].host) && all[q].threads > all[q].nmask &&
                all[q].nmask > 0) {
                OUT("  warning: rank %d runs %d threads but is bound to %d core%s\n", q,
                    all[q].threads, all[q].nmask, all[q].nmask == 1 ? "" : "s");
                ++*warnings;
            }
    }
#undef OUT
    free(seen);
    free(all);
    return SP_OK;
}
