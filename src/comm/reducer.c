/* The gradient reducers, float and fixed point (comm/reducer.h). */
#include "comm/reducer.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "comm/comm_impl.h"
#include "kernels/fixed.h"
#include "util/status.h"

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
    sp_fix_sum_to_float(r->result + b->begin + (size_t)r->displs[cell], src, summed ? 1 : P, len);
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
        if (r->result)
            sp_fix_sum_to_float(
                r->result, (const int64_t *const[]){(const int64_t *)(void *)r->slab}, 1, r->n);
        return SP_OK;
    }
    sp_comm_watch_(r->c, r->op_blocking);
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
    sp_comm_unwatch_(r->c);
    return e == MPI_SUCCESS ? SP_OK : sp_comm_mpi_fail_(e, "gradient allreduce");
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
    sp_comm_watch_(r->c, r->op_wait);
    /* first every bucket's first operation (a fixed bucket then starts its allgather), then
     * the last ones: the allgathers of early buckets run while later ones are reduced */
    for (int pass = 1; pass <= 2; ++pass)
        for (int i = 0; i < r->nb; ++i) {
            bucket *b = &r->b[i];
            if (b->done || b->phase > pass) continue;
            int flag;
            const int e = test_(r, i, &flag, true);
            if (e != MPI_SUCCESS) {
                sp_comm_unwatch_(r->c);
                return sp_comm_mpi_fail_(e, "gradient allreduce");
            }
            advance_(r, i);
        }
    sp_comm_unwatch_(r->c);
    if (r->err != MPI_SUCCESS) return sp_comm_mpi_fail_(r->err, "gradient allreduce");
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
