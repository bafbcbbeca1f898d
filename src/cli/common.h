/* Helpers shared by the commands that run a model under MPI (eval, predict). */
#ifndef SP_CLI_COMMON_H
#define SP_CLI_COMMON_H

#include <stdint.h>

#include "comm/comm.h"
#include "shardprop/status.h"
#include "util/args.h"
#include "util/threads.h"

/*
 * The start of an MPI command: parse the flags (every rank parses the same command line); on
 * --help print it and return 0 without starting MPI; otherwise start MPI (*comm). A flag error is
 * printed by rank 0 only and every rank returns 2. Returns -1 when the command should go on.
 */
int sp_cli_mpi_start(sp_args *a, int argc, char **argv, sp_comm **comm);

/* The end of an MPI command: rank 0 prints "<command>: error: <message>" when st != SP_OK;
 * MPI is finalized; returns the exit status (0, or 1 after an error). */
int sp_cli_mpi_finish(const char *command, sp_comm *comm, sp_status st);

#endif
