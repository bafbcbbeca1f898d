/*
 * Private to src/comm/: the communicator's state, shared by comm.c, reducer.c, layout.c and
 * watchdog.c. Nothing outside this folder sees MPI types.
 */
#ifndef SP_COMM_IMPL_H
#define SP_COMM_IMPL_H

#include <mpi.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "comm/comm.h"
#include "shardprop/status.h"

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

/* Mark the start and the end of a (possibly) blocking collective call, for the watchdog
 * (watchdog.c): op names it in the message of a rank that waited too long. */
void sp_comm_watch_(sp_comm *c, const char *op);
void sp_comm_unwatch_(sp_comm *c);

/* SP_ERR_MPI with MPI's own message for err: "MPI: <what> failed: <message>". */
sp_status sp_comm_mpi_fail_(int err, const char *what);

#endif
