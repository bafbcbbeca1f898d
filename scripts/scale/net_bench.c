/*
 * Ping-pong and allreduce timings for the alpha-beta model (scripts/scale/measure_net.sh).
 *
 *   mpirun -n P scale_net_bench [MAX_BYTES]
 *
 * Prints one line per measurement on rank 0: "KIND BYTES MEDIAN MIN" (seconds), where KIND is
 *   pingpong    half the round trip between ranks 0 and 1 (the others wait in a barrier)
 *   allreduce   blocking MPI_Allreduce of floats (MPI_SUM), as Open MPI chooses
 *   iallreduce  MPI_Iallreduce(MPI_IN_PLACE) + MPI_Wait: the trainer's call before it went out
 *               of place (Open MPI 4.1: binomial at any P)
 *   iallreduce_oop  MPI_Iallreduce(send, recv) + MPI_Wait + the copy of recv back into send:
 *               the trainer's reducer today
 *   sum         no communication: every rank adds BYTES of floats into as many (fb[i] += rb[i]),
 *               all at once: the reduction arithmetic alone, for comparison with the fitted gamma
 * Sizes: 8 B x 4^k up to 512 KiB, then doubling (1, 2, 4, 8, 16 MiB: the gradient buckets).
 * over repetitions: the median and the fastest (the machine may be shared and oversubscribed: the
 * minimum is what the hardware can do, the median what a run sees).
 */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "scale_util.h"

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int rank, P;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &P);
    const size_t max = argc > 1 ? (size_t)atoll(argv[1]) : (size_t)16 << 20;
    char *buf = malloc(max ? max : 1), *rbuf = malloc(max ? max : 1);
    float *fb = (float *)buf, *rb = (float *)rbuf;
    memset(buf, 0, max ? max : 1);
    memset(rbuf, 0, max ? max : 1);
    enum { MAXREP = 200 };
    double t[MAXREP];
    for (size_t m = 8; m <= max; m *= m >= 524288 ? 2 : 4) {
        /* fewer repetitions for big messages: about 64 MB moved per size, 5..200 */
        int reps = (int)((64u << 20) / m);
        reps = reps < 5 ? 5 : reps > MAXREP ? MAXREP : reps;
        for (int kind = 0; kind < 5; ++kind) {
            if (kind > 0 && m < 4) continue;
            const int count = (int)(m / sizeof(float));
            for (int r = 0; r < reps; ++r) {
                MPI_Barrier(MPI_COMM_WORLD);
                const double t0 = MPI_Wtime();
                if (kind == 0) {
                    if (rank == 0) {
                        MPI_Send(buf, (int)m, MPI_BYTE, 1, 0, MPI_COMM_WORLD);
                        MPI_Recv(buf, (int)m, MPI_BYTE, 1, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
                    } else if (rank == 1) {
                        MPI_Recv(buf, (int)m, MPI_BYTE, 0, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
                        MPI_Send(buf, (int)m, MPI_BYTE, 0, 0, MPI_COMM_WORLD);
                    }
                } else if (kind == 1) {
                    MPI_Allreduce(MPI_IN_PLACE, fb, count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
                } else if (kind == 2) {
                    MPI_Request req;
                    MPI_Iallreduce(MPI_IN_PLACE, fb, count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD,
                                   &req);
                    MPI_Wait(&req, MPI_STATUS_IGNORE);
                } else if (kind == 4) {
                    for (int i = 0; i < count; ++i) fb[i] += rb[i];
                } else {
                    MPI_Request req;
                    MPI_Iallreduce(fb, rb, count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD, &req);
                    MPI_Wait(&req, MPI_STATUS_IGNORE);
                    memcpy(fb, rb, (size_t)count * sizeof(float));
                }
                t[r] = (MPI_Wtime() - t0) / (kind == 0 ? 2 : 1);
            }
            /* rank 0's view; for the collectives, the slowest rank's */
            double mine[2], worst[2];
            mine[1] = scale_median(t, reps); /* sorts t */
            mine[0] = t[0];
            MPI_Reduce(mine, worst, 2, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
            if (rank == 0) {
                static const char *names[] = {"pingpong", "allreduce", "iallreduce",
                                              "iallreduce_oop", "sum"};
                const double *v = kind == 0 ? mine : worst;
                printf("%s %zu %.9g %.9g\n", names[kind], m, v[1], v[0]);
                fflush(stdout);
            }
        }
    }
    free(buf), free(rbuf);
    MPI_Finalize();
    return 0;
}
