/* The communicator: start-up, agreement, broadcasts and small sums (comm/comm.h). */
#include "comm/comm.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm/comm_impl.h"
#include "comm/watchdog.h"
#include "util/status.h"

sp_status sp_comm_mpi_fail_(int err, const char *what) {
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(err, msg, &len);
    return SP_FAIL(SP_ERR_MPI, "MPI: %s failed: %s", what, msg);
}

sp_status sp_comm_init(sp_comm **out, int *argc, char ***argv) {
    *out = NULL;
    sp_comm *c = calloc(1, sizeof *c);
    if (!c) return SP_FAIL(SP_ERR_NOMEM, "out of memory");
    int inited = 0;
    MPI_Initialized(&inited);
    if (!inited) {
        int provided = 0;
        /* FUNNELED: only the main thread calls MPI; OpenMP threads and the data reader never do */
        if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
            free(c);
            return SP_FAIL(SP_ERR_MPI, "MPI_Init_thread failed");
        }
        c->we_initialized = true;
        if (provided < MPI_THREAD_FUNNELED) {
            free(c);
            return SP_FAIL(SP_ERR_MPI,
                           "the MPI library provides thread level %d, shardprop needs "
                           "MPI_THREAD_FUNNELED",
                           provided);
        }
    }
    c->comm = MPI_COMM_WORLD;
    /* errors come back as codes, so a failing call becomes a status we can agree on */
    MPI_Comm_set_errhandler(c->comm, MPI_ERRORS_RETURN);
    /* Every rank is here, so this collective cannot be left waiting for a rank that failed.
     * Non-blocking collectives must start in the same order on every rank of a communicator: a
     * fixed-point bucket starts its allgather when its exchange of shares completes, which is not
     * in the same place relative to other buckets' starts everywhere; on comm2 the allgathers
     * are ordered among themselves (by bucket) and apart from everything on comm. */
    if (MPI_Comm_dup(c->comm, &c->comm2) != MPI_SUCCESS) {
        free(c);
        return SP_FAIL(SP_ERR_MPI, "MPI_Comm_dup failed");
    }
    MPI_Comm_rank(c->comm, &c->rank);
    MPI_Comm_size(c->comm, &c->size);
    *out = c;
    return SP_OK;
}

void sp_comm_finalize(sp_comm *c) {
    if (!c) return;
    sp_watchdog_stop(c);
    MPI_Comm_free(&c->comm2);
    if (c->we_initialized) MPI_Finalize();
    free(c);
}

_Noreturn void sp_comm_abort(sp_comm *c, int code) {
    fflush(stdout);
    fflush(stderr);
    MPI_Abort(c ? c->comm : MPI_COMM_WORLD, code);
    _Exit(code); /* MPI_Abort does not return; keep the compiler and the reader sure of it */
}

int sp_comm_rank(const sp_comm *c) {
    return c->rank;
}
int sp_comm_size(const sp_comm *c) {
    return c->size;
}
double sp_comm_wtime(void) {
    return MPI_Wtime();
}

sp_status sp_comm_agree(sp_comm *c, sp_status local, uint32_t *flags) {
    /* one MAX reduction: word 0 = INT_MAX - (lowest failing rank), 0 when no rank failed;
     * words 1..SP_AGREE_FLAGS = each flag bit, so MAX is an OR */
    enum { SP_AGREE_FLAGS = 16 };
    int v[1 + SP_AGREE_FLAGS];
    v[0] = local != SP_OK ? INT_MAX - c->rank : 0;
    for (int i = 0; i < SP_AGREE_FLAGS; ++i) v[1 + i] = flags ? (int)((*flags >> i) & 1u) : 0;
    sp_comm_watch_(c, "the step agreement (MPI_Allreduce)");
    int e0 = MPI_Allreduce(MPI_IN_PLACE, v, 1 + SP_AGREE_FLAGS, MPI_INT, MPI_MAX, c->comm);
    sp_comm_unwatch_(c);
    if (e0 != MPI_SUCCESS) return sp_comm_mpi_fail_(e0, "agreement");
    if (flags) {
        *flags = 0;
        for (int i = 0; i < SP_AGREE_FLAGS; ++i) *flags |= (uint32_t)v[1 + i] << i;
    }
    if (v[0] == 0) return SP_OK;
    const int failed = INT_MAX - v[0];
    /* the failing rank's status and message travel to everyone */
    struct {
        int status;
        char msg[1000];
    } rec;
    memset(&rec, 0, sizeof rec);
    if (c->rank == failed) {
        rec.status = (int)local;
        snprintf(rec.msg, sizeof rec.msg, "%s", sp_last_error());
    }
    sp_comm_watch_(c, "the error agreement (MPI_Bcast)");
    int e1 = MPI_Bcast(&rec, (int)sizeof rec, MPI_BYTE, failed, c->comm);
    sp_comm_unwatch_(c);
    if (e1 != MPI_SUCCESS) return sp_comm_mpi_fail_(e1, "agreement (message)");
    if (c->size > 1)
        return sp_error_set((sp_status)rec.status, "comm", "rank %d: %s", failed, rec.msg);
    return sp_error_set((sp_status)rec.status, "comm", "%s", rec.msg);
}

/* MPI counts are int: move large buffers in chunks */
#define SP_MPI_CHUNK ((size_t)1 << 30)

sp_status sp_comm_bcast_bytes(sp_comm *c, void *buf, size_t n, int root) {
    for (size_t o = 0; o < n; o += SP_MPI_CHUNK) {
        size_t len = n - o < SP_MPI_CHUNK ? n - o : SP_MPI_CHUNK;
        sp_comm_watch_(c, "a broadcast (MPI_Bcast)");
        int e = MPI_Bcast((char *)buf + o, (int)len, MPI_BYTE, root, c->comm);
        sp_comm_unwatch_(c);
        if (e != MPI_SUCCESS) return sp_comm_mpi_fail_(e, "broadcast");
    }
    return SP_OK;
}

sp_status sp_comm_bcast_floats(sp_comm *c, float *buf, size_t n, int root) {
    return sp_comm_bcast_bytes(c, buf, n * sizeof(float), root);
}

sp_status sp_comm_sum_doubles(sp_comm *c, double *buf, int n) {
    sp_comm_watch_(c, "the loss allreduce (MPI_Allreduce)");
    int e = MPI_Allreduce(MPI_IN_PLACE, buf, n, MPI_DOUBLE, MPI_SUM, c->comm);
    sp_comm_unwatch_(c);
    if (e != MPI_SUCCESS) return sp_comm_mpi_fail_(e, "allreduce");
    return SP_OK;
}

sp_status sp_comm_all_equal_u64(sp_comm *c, uint64_t v, bool *equal) {
    uint64_t in[2] = {v, ~v}, out[2];
    sp_comm_watch_(c, "the checksum comparison (MPI_Allreduce)");
    int e = MPI_Allreduce(in, out, 2, MPI_UINT64_T, MPI_MAX, c->comm);
    sp_comm_unwatch_(c);
    if (e != MPI_SUCCESS) return sp_comm_mpi_fail_(e, "checksum comparison");
    /* max(v) == v_min  <=>  max(v) == ~max(~v) */
    *equal = out[0] == ~out[1];
    return SP_OK;
}

sp_status sp_comm_gather_bytes(sp_comm *c, const void *send, size_t n, void *recv, int root) {
    sp_comm_watch_(c, "a gather (MPI_Gather)");
    int e = MPI_Gather(send, (int)n, MPI_BYTE, recv, (int)n, MPI_BYTE, root, c->comm);
    sp_comm_unwatch_(c);
    if (e != MPI_SUCCESS) return sp_comm_mpi_fail_(e, "gather");
    return SP_OK;
}

uint64_t sp_checksum_floats(const float *x, size_t n) {
    const unsigned char *p = (const unsigned char *)x;
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n * sizeof(float); ++i) h = (h ^ p[i]) * 0x100000001b3ULL;
    return h;
}

sp_status sp_comm_sum_int64(sp_comm *c, int64_t *buf, size_t n) {
    const size_t chunk = (size_t)INT_MAX / 2;
    for (size_t o = 0; o < n; o += chunk) {
        const size_t len = n - o < chunk ? n - o : chunk;
        sp_comm_watch_(c, "a count allreduce (MPI_Allreduce)");
        const int e = MPI_Allreduce(MPI_IN_PLACE, buf + o, (int)len, MPI_INT64_T, MPI_SUM, c->comm);
        sp_comm_unwatch_(c);
        if (e != MPI_SUCCESS) return sp_comm_mpi_fail_(e, "allreduce (int64)");
    }
    return SP_OK;
}

sp_status sp_comm_gatherv_bytes(sp_comm *c, const void *send, size_t n, void *recv,
                                const size_t *counts, int root) {
    /* every rank checks its own size, root the total; agreed before the collective */
    sp_status st = n <= (size_t)INT_MAX ? SP_OK
                                        : SP_FAIL(SP_ERR_ARG,
                                                  "gather: %zu bytes from rank %d "
                                                  "exceed the 2 GiB limit of one call",
                                                  n, c->rank);
    int *cnt = NULL, *displ = NULL;
    if (c->rank == root && st == SP_OK) {
        cnt = malloc(sizeof(int) * (size_t)c->size);
        displ = malloc(sizeof(int) * (size_t)c->size);
        if (!cnt || !displ) st = SP_FAIL(SP_ERR_NOMEM, "gather: out of memory");
        size_t total = 0;
        for (int r = 0; r < c->size && st == SP_OK; ++r) {
            if (counts[r] > (size_t)INT_MAX - total)
                st = SP_FAIL(SP_ERR_ARG, "gather: more than 2 GiB in one call");
            else
                cnt[r] = (int)counts[r], displ[r] = (int)total, total += counts[r];
        }
    }
    st = sp_comm_agree(c, st, NULL);
    if (st == SP_OK) {
        sp_comm_watch_(c, "a gather (MPI_Gatherv)");
        const int e =
            MPI_Gatherv(send, (int)n, MPI_BYTE, recv, cnt, displ, MPI_BYTE, root, c->comm);
        sp_comm_unwatch_(c);
        if (e != MPI_SUCCESS) st = sp_comm_mpi_fail_(e, "gather");
    }
    free(cnt);
    free(displ);
    return st;
}
