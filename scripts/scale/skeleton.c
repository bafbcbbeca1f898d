/*
 * The communication skeleton of one shardprop training step, for SMPI (SimGrid): compile with
 * smpicc, run with smpirun (scripts/scale/run.sh). Every rank does what the trainer does, with
 * the compute replaced by simulated time and the data by shared dummy buffers:
 *
 *   forward                          smpi_execute_flops(fwd * host speed)
 *   backward, last layer first       per layer: its time, then every gradient bucket that lies
 *                                    entirely at or above the layer's first parameter starts
 *   finish                           start the rest, wait for all
 *   loss sums                        MPI_Allreduce of 3 doubles
 *   update                           the optimizer's time
 *
 * Modes: `overlap` simulates each bucket's overlapped ring allreduce by a bandwidth-equivalent
 * surrogate (one Isend/Irecv of 2(P-1)/P of the bucket to/from the ring neighbours: the ring's
 * bytes, one latency; SMPI's own MPI_Iallreduce is a naive all-to-all past ~48 ranks).
 * `blocking` runs one MPI_Allreduce per bucket after backward (the no-overlap bound; Open MPI's
 * algorithms with --cfg=smpi/coll-selector:ompi, a no-op commutative op: the sum costs nothing).
 *
 * Input (written by plan.py from `shardprop train --dry-run --json` and layer_times):
 *   params N  bucket_bytes S  host_speed F
 *   layers L, then L lines "i forward_s backward_s first_param|-1"
 *   update U
 *   buckets K, then K lines "k offset floats"
 * The skeleton re-derives the trainer's plan from N and S and refuses an input that differs.
 * Output (rank 0): one JSON line with the step time, compute, communication and the plan used.
 *
 * usage: skeleton INPUT overlap|blocking [STEPS]
 */
#include <mpi.h>
#include <smpi/smpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct layer {
    double fwd, bwd;
    long w_off;
} layer;

typedef struct bucket {
    size_t begin, len;
    int ready_after; /* the layer whose backward completes it */
} bucket;

typedef struct plan {
    size_t n, bucket_bytes;
    double speed, update;
    int nl, nb;
    layer *l;
    bucket *b;
} plan;

static int fail_(const char *path, const char *what) {
    fprintf(stderr, "skeleton: %s: %s\n", path, what);
    return 1;
}

static int read_plan_(const char *path, plan *p) {
    FILE *f = fopen(path, "r");
    if (!f) return fail_(path, "cannot open");
    memset(p, 0, sizeof *p);
    int ok = fscanf(f, " params %zu bucket_bytes %zu host_speed %lf layers %d", &p->n,
                    &p->bucket_bytes, &p->speed, &p->nl) == 4 &&
             p->nl > 0 && p->speed > 0;
    if (ok) p->l = calloc((size_t)p->nl, sizeof *p->l);
    for (int i = 0; ok && i < p->nl; ++i) {
        int idx;
        ok = p->l &&
             fscanf(f, " %d %lf %lf %ld", &idx, &p->l[i].fwd, &p->l[i].bwd, &p->l[i].w_off) == 4 &&
             idx == i;
    }
    ok = ok && fscanf(f, " update %lf buckets %d", &p->update, &p->nb) == 2 && p->nb >= 0;
    if (ok) p->b = calloc((size_t)(p->nb ? p->nb : 1), sizeof *p->b);
    for (int k = 0; ok && k < p->nb; ++k) {
        int idx;
        ok = p->b && fscanf(f, " %d %zu %zu", &idx, &p->b[k].begin, &p->b[k].len) == 3 && idx == k;
    }
    fclose(f);
    if (!ok) return fail_(path, "malformed (see the comment at the top of skeleton.c)");
    /* the trainer's plan (sp_reducer_create): slices of bucket_bytes from the end, bucket 0 last */
    size_t per = p->bucket_bytes / sizeof(float);
    if (per == 0 || per > p->n) per = p->n ? p->n : 1;
    const int nb = p->n ? (int)((p->n + per - 1) / per) : 0;
    if (nb != p->nb) return fail_(path, "bucket count differs from the trainer's plan");
    size_t end = p->n;
    for (int k = 0; k < nb; ++k) {
        const size_t l = end < per ? end : per;
        if (p->b[k].begin != end - l || p->b[k].len != l)
            return fail_(path, "a bucket differs from the trainer's plan");
        end -= l;
        /* started after the highest layer whose first parameter is at or below its begin */
        p->b[k].ready_after = 0;
        for (int i = p->nl - 1; i >= 0; --i)
            if (p->l[i].w_off >= 0 && (size_t)p->l[i].w_off <= p->b[k].begin) {
                p->b[k].ready_after = i;
                break;
            }
    }
    return 0;
}

static void noop_(void *in, void *inout, int *len, MPI_Datatype *t) {
    (void)in, (void)inout, (void)len, (void)t;
}

static void compute_(const plan *p, double seconds) {
    if (seconds > 0) smpi_execute_flops(seconds * p->speed);
}

/* Start bucket k: the surrogate's send to the right neighbour and receive from the left. */
static void start_(const plan *p, int k, char *buf, int P, int rank, MPI_Request *req) {
    const size_t bytes = p->b[k].len * sizeof(float);
    const int m = (int)((double)bytes * 2.0 * (P - 1) / P);
    MPI_Irecv(buf, m, MPI_BYTE, (rank + P - 1) % P, k, MPI_COMM_WORLD, &req[2 * k]);
    MPI_Isend(buf, m, MPI_BYTE, (rank + 1) % P, k, MPI_COMM_WORLD, &req[2 * k + 1]);
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int rank, P;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &P);
    if (argc < 3 || (strcmp(argv[2], "overlap") && strcmp(argv[2], "blocking"))) {
        if (rank == 0) fprintf(stderr, "usage: skeleton INPUT overlap|blocking [STEPS]\n");
        MPI_Finalize();
        return 2;
    }
    const int overlap = !strcmp(argv[2], "overlap");
    const int steps = argc > 3 ? atoi(argv[3]) : 2;
    plan p;
    if (read_plan_(argv[1], &p)) {
        MPI_Abort(MPI_COMM_WORLD, 1);
        return 1;
    }
    size_t maxb = 1;
    for (int k = 0; k < p.nb; ++k)
        if (p.b[k].len * sizeof(float) > maxb) maxb = p.b[k].len * sizeof(float);
    /* one shared buffer for everything: 2x a bucket covers the surrogate's 2(P-1)/P */
    char *buf = SMPI_SHARED_MALLOC(2 * maxb);
    MPI_Request *req = malloc(sizeof *req * 2 * (size_t)(p.nb ? p.nb : 1));
    int *started = calloc((size_t)(p.nb ? p.nb : 1), sizeof *started);
    MPI_Op noop;
    MPI_Op_create(noop_, 1, &noop);
    double fwd = 0, bwd = 0;
    for (int i = 0; i < p.nl; ++i) fwd += p.l[i].fwd, bwd += p.l[i].bwd;
    const double compute = fwd + bwd + p.update;

    /* the communication alone, each bucket by itself (for the hidden fraction) */
    double comm = 0, sums[3] = {0, 0, 0};
    for (int k = 0; k < p.nb && P > 1; ++k) {
        MPI_Barrier(MPI_COMM_WORLD);
        const double t0 = MPI_Wtime();
        if (overlap) {
            start_(&p, k, buf, P, rank, req);
            MPI_Waitall(2, &req[2 * k], MPI_STATUSES_IGNORE);
        } else {
            MPI_Allreduce(buf, buf, (int)p.b[k].len, MPI_FLOAT, noop, MPI_COMM_WORLD);
        }
        comm += MPI_Wtime() - t0;
    }
    MPI_Barrier(MPI_COMM_WORLD);
    double t0 = MPI_Wtime();
    MPI_Allreduce(MPI_IN_PLACE, sums, 3, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    comm += MPI_Wtime() - t0;

    double step = 0, exposed = 0;
    for (int s = 0; s < steps; ++s) {
        MPI_Barrier(MPI_COMM_WORLD);
        t0 = MPI_Wtime();
        compute_(&p, fwd);
        int next = 0;
        memset(started, 0, sizeof *started * (size_t)(p.nb ? p.nb : 1));
        for (int i = p.nl - 1; i >= 0; --i) {
            compute_(&p, p.l[i].bwd);
            if (!overlap || P == 1 || p.l[i].w_off < 0) continue;
            while (next < p.nb && p.b[next].begin >= (size_t)p.l[i].w_off)
                start_(&p, next++, buf, P, rank, req);
        }
        const double t_bwd = MPI_Wtime();
        if (P > 1) {
            if (overlap) {
                while (next < p.nb) start_(&p, next++, buf, P, rank, req);
                MPI_Waitall(2 * p.nb, req, MPI_STATUSES_IGNORE);
            } else {
                for (int k = 0; k < p.nb; ++k)
                    MPI_Allreduce(buf, buf, (int)p.b[k].len, MPI_FLOAT, noop, MPI_COMM_WORLD);
            }
        }
        MPI_Allreduce(MPI_IN_PLACE, sums, 3, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
        exposed = MPI_Wtime() - t_bwd;
        compute_(&p, p.update);
        step = MPI_Wtime() - t0;
    }
    if (rank == 0) {
        printf("{\"P\": %d, \"mode\": \"%s\", \"step_s\": %.9g, \"compute_s\": %.9g, "
               "\"comm_s\": %.9g, \"exposed_s\": %.9g, \"efficiency\": %.6g, \"hidden\": %.6g, "
               "\"params\": %zu, \"buckets\": [",
               P, argv[2], step, compute, comm, exposed, compute / step,
               comm > 0 ? 1 - exposed / comm : 1.0, p.n);
        for (int k = 0; k < p.nb; ++k)
            printf("%s{\"index\": %d, \"offset\": %zu, \"floats\": %zu, \"bytes\": %zu, "
                   "\"ready_after_layer\": %d}",
                   k ? ", " : "", k, p.b[k].begin, p.b[k].len, p.b[k].len * sizeof(float),
                   p.b[k].ready_after);
        printf("]}\n");
        fflush(stdout);
    }
    MPI_Op_free(&noop);
    SMPI_SHARED_FREE(buf);
    free(req), free(started), free(p.l), free(p.b);
    MPI_Finalize();
    return 0;
}
