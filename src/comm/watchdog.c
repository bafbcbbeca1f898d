/* The collective-timeout watchdog (comm/watchdog.h). */
#include "comm/watchdog.h"

#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "comm/comm_impl.h"
#include "util/status.h"

static long long mono_ns_(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

void sp_comm_watch_(sp_comm *c, const char *op) {
    atomic_store(&c->wd_op, op);
    atomic_store(&c->wd_since_ns, mono_ns_());
}
void sp_comm_unwatch_(sp_comm *c) {
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
