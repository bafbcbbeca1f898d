#define _GNU_SOURCE /* sched_getaffinity */
#include "dist/dist.h"

#include <limits.h>
#include <mpi.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/fixed.h"
#include "util/status.h"

struct sp_comm {
    MPI_Comm comm;
    MPI_Comm comm2; /* a duplicate: the second phase of two-phase reductions (reducer, fixed) */
    int rank, size;
    bool we_initialized;
    /* the watchdog: what this rank is waiting in, since when, at which step */
    pthread_t wd_thread;
    bool wd_running;
    double wd_timeout;
    atomic_int wd_stop;
    atomic_llong wd_since_ns; /* 0: not in a collective */
    _Atomic(const char *) wd_op;
    atomic_llong wd_step;
};

static long long mono_ns_(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Mark the start and the end of a (possibly) blocking collective call. */
static void watch_(sp_comm *c, const char *op) {
    atomic_store(&c->wd_op, op);
    atomic_store(&c->wd_since_ns, mono_ns_());
}
static void unwatch_(sp_comm *c) {
    atomic_store(&c->wd_since_ns, 0);
}

static void *watchdog_main_(void *arg) {
    sp_comm *c = arg;
    const long long limit = (long long)(c->wd_timeout * 1e9);
    while (!atomic_load(&c->wd_stop)) {
        struct timespec nap = {0, 200 * 1000 * 1000};
        nanosleep(&nap, NULL);
        const long long since = atomic_load(&c->wd_since_ns);
        if (!since || mono_ns_() - since < limit) continue;
        fprintf(stderr,
                "shardprop: error: rank %d waited more than %.0f s in %s at step %lld (another "
                "rank stalled or died); aborting the job (--collective-timeout)\n",
                c->rank, c->wd_timeout, atomic_load(&c->wd_op),
                (long long)atomic_load(&c->wd_step));
        fflush(stderr);
        /* The main thread is blocked inside MPI; MPI_Abort from here is the only way out that
         * ends every rank. Should it not return control to the launcher, leave hard. */
        MPI_Abort(c->comm, 3);
        _exit(3);
    }
    return NULL;
}

sp_status sp_watchdog_start(sp_comm *c, double timeout_s) {
    if (timeout_s <= 0 || c->wd_running) return SP_OK;
    c->wd_timeout = timeout_s;
    atomic_store(&c->wd_stop, 0);
    if (pthread_create(&c->wd_thread, NULL, watchdog_main_, c) != 0)
        return SP_FAIL(SP_ERR_INTERNAL, "cannot start the watchdog thread");
    c->wd_running = true;
    return SP_OK;
}

void sp_watchdog_set_step(sp_comm *c, int64_t step) {
    atomic_store(&c->wd_step, (long long)step);
}

void sp_watchdog_stop(sp_comm *c) {
    if (!c->wd_running) return;
    atomic_store(&c->wd_stop, 1);
    pthread_join(c->wd_thread, NULL);
    c->wd_running = false;
}

static sp_status mpi_fail_(int err, const char *what) {
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
    watch_(c, "the step agreement (MPI_Allreduce)");
    int e0 = MPI_Allreduce(MPI_IN_PLACE, v, 1 + SP_AGREE_FLAGS, MPI_INT, MPI_MAX, c->comm);
    unwatch_(c);
    if (e0 != MPI_SUCCESS) return mpi_fail_(e0, "agreement");
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
    watch_(c, "the error agreement (MPI_Bcast)");
    int e1 = MPI_Bcast(&rec, (int)sizeof rec, MPI_BYTE, failed, c->comm);
    unwatch_(c);
    if (e1 != MPI_SUCCESS) return mpi_fail_(e1, "agreement (message)");
    if (c->size > 1)
        return sp_error_set((sp_status)rec.status, "dist", "rank %d: %s", failed, rec.msg);
    return sp_error_set((sp_status)rec.status, "dist", "%s", rec.msg);
}

/* MPI counts are int: move large buffers in chunks */
#define SP_MPI_CHUNK ((size_t)1 << 30)

sp_status sp_comm_bcast_bytes(sp_comm *c, void *buf, size_t n, int root) {
    for (size_t o = 0; o < n; o += SP_MPI_CHUNK) {
        size_t len = n - o < SP_MPI_CHUNK ? n - o : SP_MPI_CHUNK;
        watch_(c, "a broadcast (MPI_Bcast)");
        int e = MPI_Bcast((char *)buf + o, (int)len, MPI_BYTE, root, c->comm);
        unwatch_(c);
        if (e != MPI_SUCCESS) return mpi_fail_(e, "broadcast");
    }
    return SP_OK;
}

sp_status sp_comm_bcast_floats(sp_comm *c, float *buf, size_t n, int root) {
    return sp_comm_bcast_bytes(c, buf, n * sizeof(float), root);
}

sp_status sp_comm_sum_doubles(sp_comm *c, double *buf, int n) {
    watch_(c, "the loss allreduce (MPI_Allreduce)");
    int e = MPI_Allreduce(MPI_IN_PLACE, buf, n, MPI_DOUBLE, MPI_SUM, c->comm);
    unwatch_(c);
    if (e != MPI_SUCCESS) return mpi_fail_(e, "allreduce");
    return SP_OK;
}

sp_status sp_comm_all_equal_u64(sp_comm *c, uint64_t v, bool *equal) {
    uint64_t in[2] = {v, ~v}, out[2];
    watch_(c, "the checksum comparison (MPI_Allreduce)");
    int e = MPI_Allreduce(in, out, 2, MPI_UINT64_T, MPI_MAX, c->comm);
    unwatch_(c);
    if (e != MPI_SUCCESS) return mpi_fail_(e, "checksum comparison");
    /* max(v) == v_min  <=>  max(v) == ~max(~v) */
    *equal = out[0] == ~out[1];
    return SP_OK;
}

sp_status sp_comm_gather_bytes(sp_comm *c, const void *send, size_t n, void *recv, int root) {
    watch_(c, "a gather (MPI_Gather)");
    int e = MPI_Gather(send, (int)n, MPI_BYTE, recv, (int)n, MPI_BYTE, root, c->comm);
    unwatch_(c);
    if (e != MPI_SUCCESS) return mpi_fail_(e, "gather");
    return SP_OK;
}

uint64_t sp_checksum_floats(const float *x, size_t n) {
    const unsigned char *p = (const unsigned char *)x;
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n * sizeof(float); ++i) h = (h ^ p[i]) * 0x100000001b3ULL;
    return h;
}

/* ------------------------------------------------------------------ the gradient reducer */

typedef struct bucket {
    size_t begin, len;
    MPI_Request req;
    bool started, done;
    int phase;             /* in flight: 1 the fixed-point exchange of shares, 2 the last one */
    size_t share;          /* fixed: where this rank's slots for the bucket sit in recv */
    double t_post, t_done; /* when its first operation was posted; when it was seen complete */
} bucket;

struct sp_reducer {
    sp_comm *c;
    char *slab;
    char *recv;     /* the buckets' results (n elements; overlapped mode with >1 rank), copied back
                   into slab as each completes: see start_bucket_; fixed: per bucket, P - 1
                   slots of this rank's share, the other ranks' terms in rank order (bucket_bytes
                   0: one slot, the sums) */
    size_t n, elem; /* elements, bytes per element */
    MPI_Datatype type;
    /* fixed (sp_reducer_create_fixed): the int64 sums land in result as floats */
    float *result;
    int *counts, *displs; /* (nb, size): how each bucket is shared out among the ranks */
    MPI_Request *p2p;     /* (nb, 2 size): fixed, the exchange of the shares (see start_bucket_) */
    const int64_t **srcs; /* (size): fixed, what convert_share_ adds up */
    size_t recv_bytes;    /* what recv and the arrays above hold */
    int err;              /* the first MPI error of a non-blocking call of this step */
    const char *op_blocking, *op_wait; /* what the watchdog reports */
    bool blocking;
    int nb;
    bucket *b;
    int next; /* buckets are started in order 0, 1, ... (end of the slab first) */
    int in_flight;
    double t_first_start, t_all_done;
    sp_reducer_stats st;
};

static sp_status reducer_create_(sp_reducer **out, sp_comm *c, void *slab, size_t n, size_t elem,
                                 MPI_Datatype type, size_t bucket_bytes, float *result) {
    *out = NULL;
    sp_reducer *r = calloc(1, sizeof *r);
    if (!r) return SP_FAIL(SP_ERR_NOMEM, "out of memory");
    r->c = c, r->slab = slab, r->n = n, r->elem = elem, r->type = type;
    r->result = result;
    r->op_blocking = result ? "the integer gradient reduce-scatter and float allgather"
                            : "the gradient allreduce (MPI_Allreduce)";
    r->op_wait = result ? "the integer gradient exchange or float allgather (MPI_Wait on a bucket)"
                        : "the gradient allreduce (MPI_Wait on a bucket)";
    r->blocking = bucket_bytes == 0;
    size_t per = bucket_bytes / elem;
    if (per == 0 || per > n) per = n ? n : 1;
    if (per > (size_t)INT_MAX) per = (size_t)INT_MAX; /* one MPI call per bucket */
    r->nb = n ? (int)((n + per - 1) / per) : 0;
    r->b = calloc((size_t)(r->nb ? r->nb : 1), sizeof *r->b);
    if (!r->b) {
        free(r);
        return SP_FAIL(SP_ERR_NOMEM, "out of memory");
    }
    /* bucket 0 is the tail of the slab: the gradients backward completes first */
    size_t end = n;
    for (int i = 0; i < r->nb; ++i) {
        size_t len = end < per ? end : per;
        r->b[i].begin = end - len;
        r->b[i].len = len;
        end -= len;
    }
    const bool many = c && c->size > 1 && n > 0; /* c: NULL in plan-only tests */
    if (result && many) {
        /* each bucket in P nearly equal shares, in rank order; recv holds what this rank gets */
        const size_t P = (size_t)c->size, cells = (size_t)r->nb * P;
        r->counts = malloc(cells * sizeof *r->counts);
        r->displs = malloc(cells * sizeof *r->displs);
        r->p2p = malloc(2 * cells * sizeof *r->p2p);
        size_t mine = 0;
        for (int i = 0; r->counts && r->displs && i < r->nb; ++i) {
            int *cnt = r->counts + (size_t)i * P, *dsp = r->displs + (size_t)i * P, o = 0;
            for (size_t k = 0; k < P; ++k) {
                cnt[k] = (int)(r->b[i].len / P + (k < r->b[i].len % P));
                dsp[k] = o;
                o += cnt[k];
            }
            r->b[i].share = mine;
            mine += (r->blocking ? 1 : P - 1) * (size_t)cnt[c->rank];
        }
        r->recv_bytes =
            mine * elem + 2 * cells * (sizeof(int) + sizeof(MPI_Request)) + P * sizeof *r->srcs;
        r->recv = malloc((mine ? mine : 1) * elem);
        r->srcs = malloc(P * sizeof *r->srcs);
        if (!r->counts || !r->displs || !r->p2p || !r->recv || !r->srcs) {
            sp_reducer_free(r);
            return SP_FAIL(SP_ERR_NOMEM, "out of memory for the exchange buffers");
        }
    } else if (!r->blocking && many) {
        r->recv_bytes = n * elem;
        r->recv = malloc(n * elem);
        if (!r->recv) {
            free(r->b);
            free(r);
            return SP_FAIL(SP_ERR_NOMEM, "out of memory (%zu MB for the allreduce receive buffer)",
                           n * elem >> 20);
        }
    }
    *out = r;
    return SP_OK;
}

sp_status sp_reducer_create(sp_reducer **out, sp_comm *c, float *slab, size_t n,
                            size_t bucket_bytes) {
    return reducer_create_(out, c, slab, n, sizeof(float), MPI_FLOAT, bucket_bytes, NULL);
}

sp_status sp_reducer_create_fixed(sp_reducer **out, sp_comm *c, int64_t *slab, float *result,
                                  size_t n, size_t bucket_bytes) {
    return reducer_create_(out, c, slab, n, sizeof(int64_t), MPI_INT64_T, bucket_bytes, result);
}

size_t sp_reducer_memory_bytes(const sp_reducer *r) {
    return r->recv_bytes;
}

void sp_reducer_free(sp_reducer *r) {
    if (!r) return;
    free(r->recv);
    free(r->counts);
    free(r->displs);
    free(r->p2p);
    free(r->srcs);
    free(r->b);
    free(r);
}

int sp_reducer_num_buckets(const sp_reducer *r) {
    return r->nb;
}

void sp_reducer_bucket(const sp_reducer *r, int i, size_t *begin, size_t *len) {
    *begin = r->b[i].begin;
    *len = r->b[i].len;
}

void sp_reducer_begin(sp_reducer *r) {
    r->next = 0;
    r->in_flight = 0;
    r->err = MPI_SUCCESS;
    r->t_first_start = r->t_all_done = 0;
    for (int i = 0; i < r->nb; ++i) r->b[i].started = r->b[i].done = false;
}

static void note_err_(sp_reducer *r, int e) {
    if (e != MPI_SUCCESS && r->err == MPI_SUCCESS) r->err = e;
}

/* Fixed: this rank's share of bucket i, summed exactly in int64 (in any order: integers), to
 * result as floats: the same conversion whichever rank owns an element, so every rank ends with
 * the same bits. summed: recv slot 0 holds the sums (MPI_Reduce_scatter); else the slots hold the
 * other ranks' terms in rank order (slot_ below) and this rank's own are in the slab. */
static size_t slot_(int j, int me) {
    return (size_t)(j - (j > me));
}

static void convert_share_(sp_reducer *r, int i, bool summed) {
    const bucket *b = &r->b[i];
    const int P = r->c->size, me = r->c->rank;
    const size_t cell = (size_t)i * (size_t)P + (size_t)me;
    const size_t len = (size_t)r->counts[cell];
    const int64_t *in = (const int64_t *)(void *)r->recv + b->share;
    const int64_t **src = r->srcs;
    src[0] = summed ? in : (const int64_t *)(void *)r->slab + b->begin + (size_t)r->displs[cell];
    for (int j = 0; j < P && !summed; ++j)
        if (j != me) src[1 + slot_(j, me)] = in + (size_t)slot_(j, me) * len;
    sp_fix_sum_to_float_n(r->result + b->begin + (size_t)r->displs[cell], src, summed ? 1 : P, len);
}

/* Fixed, phase 2: every rank's float share to every rank, in place in result. */
static int allgather_(sp_reducer *r, int i, MPI_Request *req) {
    const bucket *b = &r->b[i];
    const size_t P = (size_t)r->c->size;
    const int *cnt = r->counts + (size_t)i * P, *dsp = r->displs + (size_t)i * P;
    if (!req)
        return MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, r->result + b->begin, cnt, dsp,
                              MPI_FLOAT, r->c->comm);
    return MPI_Iallgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, r->result + b->begin, cnt, dsp,
                           MPI_FLOAT, r->c->comm2, req);
}

static void start_bucket_(sp_reducer *r, int i) {
    bucket *b = &r->b[i];
    b->t_post = MPI_Wtime();
    if (r->next == 0 || r->t_first_start == 0) r->t_first_start = b->t_post;
    if (r->result) {
        /* fixed, phase 1: each rank sends every other rank its share of the bucket's terms
         * and receives theirs of its own share (pairwise, point to point: Open MPI's
         * MPI_Ireduce_scatter (libnbc) reduces the whole bucket on rank 0 and then scatters,
         * into a buffer it allocates per call). Then (advance_) the sums and the allgather. */
        const int P = r->c->size, me = r->c->rank;
        const int *cnt = r->counts + (size_t)i * (size_t)P,
                  *dsp = r->displs + (size_t)i * (size_t)P;
        MPI_Request *q = r->p2p + (size_t)i * 2 * (size_t)P;
        int64_t *in = (int64_t *)(void *)r->recv + b->share;
        const int64_t *terms = (const int64_t *)(void *)r->slab + b->begin;
        const int tag = i & 0x7fff; /* both sides post in bucket order: tags could even repeat */
        for (int j = 0; j < P; ++j) {
            q[2 * j] = q[2 * j + 1] = MPI_REQUEST_NULL;
            if (j == me) continue;
            if (cnt[me] > 0)
                note_err_(r, MPI_Irecv(in + slot_(j, me) * (size_t)cnt[me], cnt[me], MPI_INT64_T, j,
                                       tag, r->c->comm, &q[2 * j]));
            if (cnt[j] > 0)
                note_err_(r, MPI_Isend(terms + dsp[j], cnt[j], MPI_INT64_T, j, tag, r->c->comm,
                                       &q[2 * j + 1]));
        }
        b->phase = 1;
    } else {
        /* Out of place on purpose: Open MPI's libnbc (4.x) runs every MPI_IN_PLACE MPI_Iallreduce
         * as a binomial reduce + broadcast, which moves each bucket 2 log2(P) times; out of place
         * it picks Rabenseifner (reduce-scatter + allgather) for P >= 4 and buckets >= 64 KiB
         * (docs/scaling.md). The price: one gradient-sized buffer and a copy per bucket. */
        note_err_(r, MPI_Iallreduce(r->slab + b->begin * r->elem, r->recv + b->begin * r->elem,
                                    (int)b->len, r->type, MPI_SUM, r->c->comm, &b->req));
        b->phase = 2;
    }
    b->started = true;
    r->in_flight++;
}

/* Bucket i's operation in flight has completed: start its next one, or finish it. */
static void advance_(sp_reducer *r, int i) {
    bucket *b = &r->b[i];
    if (b->phase == 1) {
        convert_share_(r, i, false);
        note_err_(r, allgather_(r, i, &b->req));
        b->phase = 2;
        return;
    }
    if (!r->result)
        memcpy(r->slab + b->begin * r->elem, r->recv + b->begin * r->elem, b->len * r->elem);
    b->done = true;
    b->t_done = MPI_Wtime();
    if (--r->in_flight == 0 && r->next == r->nb) r->t_all_done = b->t_done;
}

/* Bucket i's operation in flight: done yet? (wait: until it is) */
static int test_(sp_reducer *r, int i, int *flag, bool wait) {
    bucket *b = &r->b[i];
    if (b->phase == 1) {
        const int n = 2 * r->c->size;
        MPI_Request *q = r->p2p + (size_t)i * (size_t)n;
        *flag = 1;
        return wait ? MPI_Waitall(n, q, MPI_STATUSES_IGNORE)
                    : MPI_Testall(n, q, flag, MPI_STATUSES_IGNORE);
    }
    *flag = 1;
    return wait ? MPI_Wait(&b->req, MPI_STATUS_IGNORE) : MPI_Test(&b->req, flag, MPI_STATUS_IGNORE);
}

/* Let MPI move the requests in flight along. The allgathers start in bucket order (comm2's
 * order must be the same on every rank): an exchange is not tested while an earlier one is
 * still running. */
static void progress_(sp_reducer *r) {
    bool earlier_running = false;
    for (int i = 0; i < r->next; ++i) {
        if (r->b[i].done || (r->b[i].phase == 1 && earlier_running)) continue;
        int flag = 0;
        note_err_(r, test_(r, i, &flag, false));
        if (flag)
            advance_(r, i);
        else if (r->b[i].phase == 1)
            earlier_running = true;
    }
}

void sp_reducer_ready(sp_reducer *r, size_t begin) {
    if (r->blocking || r->c->size == 1) return;
    while (r->next < r->nb && r->b[r->next].begin >= begin) start_bucket_(r, r->next++);
    progress_(r);
}

/* One rank, or fixed with bucket_mb 0: everything now, blocking. */
static sp_status finish_blocking_(sp_reducer *r) {
    if (r->c->size == 1) {
        if (r->result) sp_fix_to_float_n(r->result, (const int64_t *)(void *)r->slab, r->n);
        return SP_OK;
    }
    watch_(r->c, r->op_blocking);
    int e = MPI_SUCCESS;
    if (!r->result)
        e = MPI_Allreduce(MPI_IN_PLACE, r->slab, (int)r->n, r->type, MPI_SUM, r->c->comm);
    for (int i = 0; r->result && i < r->nb && e == MPI_SUCCESS; ++i) {
        e = MPI_Reduce_scatter(r->slab + r->b[i].begin * r->elem, r->recv + r->b[i].share * r->elem,
                               r->counts + (size_t)i * (size_t)r->c->size, r->type, MPI_SUM,
                               r->c->comm);
        if (e != MPI_SUCCESS) break;
        convert_share_(r, i, true);
        e = allgather_(r, i, NULL);
    }
    unwatch_(r->c);
    return e == MPI_SUCCESS ? SP_OK : mpi_fail_(e, "gradient allreduce");
}

sp_status sp_reducer_finish(sp_reducer *r) {
    const double t0 = MPI_Wtime();
    r->st.steps++;
    r->st.bytes += r->n * r->elem + (r->result ? r->n * sizeof(float) : 0);
    if (r->n == 0) return SP_OK;
    if (r->blocking || r->c->size == 1) {
        sp_status st = finish_blocking_(r);
        const double dt = MPI_Wtime() - t0;
        if (r->c->size > 1) r->st.comm_s += dt, r->st.exposed_s += dt;
        return st;
    }
    while (r->next < r->nb) start_bucket_(r, r->next++);
    watch_(r->c, r->op_wait);
    /* first every bucket's first operation (a fixed bucket then starts its allgather), then
     * the last ones: the allgathers of early buckets run while later ones are reduced */
    for (int pass = 1; pass <= 2; ++pass)
        for (int i = 0; i < r->nb; ++i) {
            bucket *b = &r->b[i];
            if (b->done || b->phase > pass) continue;
            int flag;
            const int e = test_(r, i, &flag, true);
            if (e != MPI_SUCCESS) {
                unwatch_(r->c);
                return mpi_fail_(e, "gradient allreduce");
            }
            advance_(r, i);
        }
    unwatch_(r->c);
    if (r->err != MPI_SUCCESS) return mpi_fail_(r->err, "gradient allreduce");
    const double t1 = MPI_Wtime();
    if (r->t_all_done == 0) r->t_all_done = t1;
    r->st.exposed_s += t1 - t0;
    r->st.comm_s += r->t_all_done - r->t_first_start;
    return SP_OK;
}

bool sp_reducer_bucket_times(const sp_reducer *r, int i, double *posted, double *done) {
    if (r->blocking || r->c->size == 1 || i < 0 || i >= r->nb || !r->b[i].started || !r->b[i].done)
        return false;
    *posted = r->b[i].t_post;
    *done = r->b[i].t_done;
    return true;
}

void sp_reducer_get_stats(const sp_reducer *r, sp_reducer_stats *s) {
    *s = r->st;
}

void sp_reducer_reset_stats(sp_reducer *r) {
    memset(&r->st, 0, sizeof r->st);
}

/* ------------------------------------------------------------------ layout report */

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
        OUT("  host %s: %d rank%s, %d threads, %d cores online\n", all[r].host, nranks,
            nranks == 1 ? "" : "s", nthreads, all[r].cpus_online);
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

/* ------------------------------------------------ small reductions for evaluation (eval.c) */

sp_status sp_comm_sum_int64(sp_comm *c, int64_t *buf, size_t n) {
    const size_t chunk = (size_t)INT_MAX / 2;
    for (size_t o = 0; o < n; o += chunk) {
        const size_t len = n - o < chunk ? n - o : chunk;
        watch_(c, "a count allreduce (MPI_Allreduce)");
        const int e = MPI_Allreduce(MPI_IN_PLACE, buf + o, (int)len, MPI_INT64_T, MPI_SUM, c->comm);
        unwatch_(c);
        if (e != MPI_SUCCESS) return mpi_fail_(e, "allreduce (int64)");
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
        watch_(c, "a gather (MPI_Gatherv)");
        const int e =
            MPI_Gatherv(send, (int)n, MPI_BYTE, recv, cnt, displ, MPI_BYTE, root, c->comm);
        unwatch_(c);
        if (e != MPI_SUCCESS) st = mpi_fail_(e, "gather");
    }
    free(cnt);
    free(displ);
    return st;
}
