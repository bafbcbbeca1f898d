/* shardprop: data-parallel neural-network training for HPC machines. */
#include <stdio.h>
#include <string.h>

#include "cli/commands.h"

static int cmd_version(int argc, char **argv) {
    (void)argc;
    (void)argv;
    printf("shardprop %s\n", SHARDPROP_VERSION);
    return 0;
}

static const sp_command sp_commands[] = {
    {"train", sp_cmd_train, "train a model, data-parallel over MPI ranks"},
    {"eval", sp_cmd_eval, "evaluate a trained model on a labeled data file (loss, accuracy, ...)"},
    {"predict", sp_cmd_predict, "write a trained model's predictions for a data file"},
    {"generate", sp_cmd_generate, "sample text from a trained language model"},
    {"demo", sp_cmd_demo, "train a classifier on in-memory two spirals (needs no data)"},
    {"version", cmd_version, "print the version"},
    {"import", sp_cmd_import, "convert IDX (MNIST), CSV or text files into a data file"},
    {"synth", sp_cmd_synth, "write a synthetic data set (blobs, spirals, regression)"},
    {"inspect", sp_cmd_inspect, "describe a data file or a checkpoint and validate it"},
    {"split", sp_cmd_split, "split a data file into training and validation files"},
};
static const int sp_ncommands = (int)(sizeof sp_commands / sizeof sp_commands[0]);

static void usage(FILE *f) {
    fprintf(f, "usage: shardprop <command> [options]\n\ncommands:\n");
    for (int i = 0; i < sp_ncommands; ++i)
        fprintf(f, "  %-10s %s\n", sp_commands[i].name, sp_commands[i].summary);
    fprintf(f, "  %-10s %s\n", "help", "`shardprop help <command>` documents a command's flags");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *name = argv[1];
    if (!strcmp(name, "--help") || !strcmp(name, "-h")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(name, "--version")) return cmd_version(argc - 1, argv + 1);
    if (!strcmp(name, "help")) {
        if (argc < 3) {
            usage(stdout);
            return 0;
        }
        for (int i = 0; i < sp_ncommands; ++i)
            if (!strcmp(argv[2], sp_commands[i].name)) {
                char *hargv[] = {argv[2], "--help", NULL};
                return sp_commands[i].run(2, hargv);
            }
        fprintf(stderr, "shardprop: no command '%s' (see `shardprop --help`)\n", argv[2]);
        return 2;
    }
    for (int i = 0; i < sp_ncommands; ++i)
        if (!strcmp(name, sp_commands[i].name)) return sp_commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "shardprop: no command '%s' (see `shardprop --help`)\n", name);
    return 2;
}
