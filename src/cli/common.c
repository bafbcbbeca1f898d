#define _GNU_SOURCE /* sched_getaffinity */
#include "cli/common.h"

#include <omp.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>

int sp_cli_mpi_start(sp_args *a, int argc, char **argv, sp_comm **comm) {
    *comm = NULL;
    sp_status st = sp_args_parse(a, argc, argv);
    if (st == SP_OK && a->help) {
        sp_args_print_help(a, stdout);
        return 0;
    }
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", st != SP_OK ? sp_last_error() : "");
    if (sp_comm_init(comm, &argc, &argv) != SP_OK) {
        fprintf(stderr, "%s: error: %s\n", a->command, sp_last_error());
        return 1;
    }
    if (st != SP_OK) { /* the same on every rank: say it once */
        if (sp_comm_rank(*comm) == 0) fprintf(stderr, "%s: error: %s\n", a->command, msg);
        sp_comm_finalize(*comm);
        *comm = NULL;
        return 2;
    }
    return -1;
}

int sp_cli_mpi_finish(const char *command, sp_comm *comm, sp_status st) {
    if (st != SP_OK && sp_comm_rank(comm) == 0) {
        fflush(stdout);
        fprintf(stderr, "%s: error: %s\n", command, sp_last_error());
    }
    sp_comm_finalize(comm);
    return st == SP_OK ? 0 : 1;
}
