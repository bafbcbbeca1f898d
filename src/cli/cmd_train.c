/* `shardprop train`: data-parallel training over MPI (see train/trainer.h). */
#include <stdio.h>

#include "cli/commands.h"
#include "comm/comm.h"
#include "train/config.h"
#include "train/trainer.h"
#include "util/status.h"

int sp_cmd_train(int argc, char **argv) {
    sp_train_config cfg;
    sp_train_args *owned = NULL;
    bool help = false;
    sp_status st = sp_train_config_parse(&cfg, argc, argv, &help, &owned);
    if (st == SP_OK && help) {
        sp_train_print_help(stdout);
        sp_train_args_free(owned);
        return 0;
    }
    if (st == SP_OK) st = sp_train_config_check(&cfg);
    if (st != SP_OK) {
        /* every rank parses the same command line, so every rank stops here alike */
        fprintf(stderr, "shardprop train: error: %s\n", sp_last_error());
        sp_train_args_free(owned);
        return 2;
    }
    sp_comm *comm = NULL;
    st = sp_comm_init(&comm, &argc, &argv);
    if (st != SP_OK) {
        fprintf(stderr, "shardprop train: error: %s\n", sp_last_error());
        sp_train_args_free(owned);
        return 1;
    }
    st = sp_train_run(&cfg, comm);
    if (st != SP_OK && sp_comm_rank(comm) == 0)
        fprintf(stderr, "shardprop train: error: %s\n", sp_last_error());
    sp_comm_finalize(comm);
    sp_train_args_free(owned);
    return st == SP_OK ? 0 : 1;
}
