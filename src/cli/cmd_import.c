/* shardprop import idx|csv: turn other formats into data files. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cli/commands.h"
#include "data/tools.h"
#include "util/args.h"
#include "util/status.h"

static int import_idx_(int argc, char **argv) {
    const char *images = NULL, *labels = NULL, *out = NULL;
    sp_arg_spec specs[] = {
        {"images", SP_ARG_STRING, &images, "FILE", "IDX images file, gzipped or not",
         .required = true},
        {"labels", SP_ARG_STRING, &labels, "FILE", "IDX labels file, gzipped or not",
         .required = true},
        {"out", SP_ARG_STRING, &out, "FILE.h5", "output data file", .required = true},
    };
    sp_args a = {.command = "shardprop import idx",
                 .description =
                     "Convert IDX files (the MNIST / Fashion-MNIST format) into a data file:\n"
                     "X uint8 (N, 1, rows, cols) with scale = 1/255, y uint8 (N,) with\n"
                     "classes = max label + 1. Both datasets are chunked and gzip-compressed.",
                 .specs = specs,
                 .nspecs = 3};
    sp_status st = sp_args_parse(&a, argc, argv);
    if (st != SP_OK) return sp_cli_fail(a.command, st);
    if (a.help) {
        sp_args_print_help(&a, stdout);
        return 0;
    }
    int64_t n = 0;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    st = sp_import_idx(images, labels, out, &n);
    if (st != SP_OK) return sp_cli_fail(a.command, st);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    printf("wrote %s: %lld samples (%.2f s)\n", out, (long long)n,
           (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec));
    return 0;
}

static int import_csv_(int argc, char **argv) {
    const char *in = NULL, *label = NULL, *out = NULL;
    bool regression = false;
    sp_arg_spec specs[] = {
        {"in", SP_ARG_STRING, &in, "FILE.csv", "comma-separated numbers, header line optional",
         .required = true},
        {"label-column", SP_ARG_STRING, &label, "NAME|INDEX",
         "the label column: a header name or a 0-based index", .required = true},
        {"out", SP_ARG_STRING, &out, "FILE.h5", "output data file", .required = true},
        {"regression", SP_ARG_BOOL, &regression, NULL,
         "the label column is a real-valued target: y float32 (N, 1)", .required = false},
    };
    sp_args a = {.command = "shardprop import csv",
                 .description =
                     "Convert a CSV file of numbers into a data file: X float32 (N, F) from every\n"
                     "column but the label column, y int32 (N,) labels (non-negative integers,\n"
                     "with classes = max + 1) or, with --regression, float32 (N, 1) targets.\n"
                     "A first line with a non-numeric field is a header. Blank lines are skipped;\n"
                     "malformed lines are errors naming the line number (columns count from 0).",
                 .specs = specs,
                 .nspecs = 4};
    sp_status st = sp_args_parse(&a, argc, argv);
    if (st != SP_OK) return sp_cli_fail(a.command, st);
    if (a.help) {
        sp_args_print_help(&a, stdout);
        return 0;
    }
    int64_t n = 0, f = 0;
    st = sp_import_csv(in, label, regression, out, &n, &f);
    if (st != SP_OK) return sp_cli_fail(a.command, st);
    printf("wrote %s: %lld samples, %lld features\n", out, (long long)n, (long long)f);
    return 0;
}

static void import_usage_(FILE *f) {
    fprintf(f, "usage: shardprop import idx|csv [flags]\n\n"
               "  idx   IDX images + labels (MNIST format) -> data file\n"
               "  csv   CSV of numbers -> data file\n\n"
               "`shardprop import idx --help` and `shardprop import csv --help` list the flags.\n");
}

int sp_cmd_import(int argc, char **argv) {
    if (argc < 2) {
        import_usage_(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        import_usage_(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "idx")) return import_idx_(argc - 1, argv + 1);
    if (!strcmp(argv[1], "csv")) return import_csv_(argc - 1, argv + 1);
    fprintf(stderr, "shardprop import: error: unknown format '%s' (expected idx or csv)\n",
            argv[1]);
    return 2;
}
