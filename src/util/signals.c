#include "util/signals.h"

#include <signal.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t pending_ = 0;

static void on_signal_(int sig) {
    if (sig == SIGINT && pending_ == SIGINT) _exit(130); /* the second Ctrl-C: stop now */
    if (!pending_) pending_ = sig;
    if (sig == SIGINT) {
        static const char msg[] =
            "\nshardprop: interrupt: checkpointing at the next step; press Ctrl-C again to "
            "abort at once\n";
        ssize_t unused = write(STDERR_FILENO, msg, sizeof msg - 1);
        (void)unused;
        pending_ = SIGINT;
    }
}

void sp_signals_install(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal_;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
    /* a file-size limit (ulimit -f) reached while writing a checkpoint: write(2) fails with
     * EFBIG and the error names the file, instead of a death by signal */
    signal(SIGXFSZ, SIG_IGN);
}

int sp_signals_pending(void) {
    return (int)pending_;
}
