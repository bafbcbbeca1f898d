/* shardprop import idx|csv|text: turn other formats into data files. */
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

static double seconds_since_(const struct timespec *t0) {
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0->tv_nsec);
}

static int import_text_(int argc, char **argv) {
    sp_arg_list in = {0};
    const char *out = NULL;
    double vf = 0;
    sp_arg_spec specs[] = {
        {"in", SP_ARG_STRING, &in, "FILE...", "one or more text files, concatenated in this order",
         .required = true, .multi = true},
        {"out", SP_ARG_STRING, &out, "FILE.h5", "output token file", .required = true},
        {"val-fraction", SP_ARG_DOUBLE, &vf, "F",
         "in (0, 1): each file's last F goes to OUT-val.h5 (cut after a newline)",
         .required = false},
    };
    sp_args a = {
        .command = "shardprop import text",
        .description =
            "Convert text files into byte-level token data: a uint8 dataset `tokens` (the\n"
            "files' bytes, concatenated in the order given; chunked, gzip-compressed) with\n"
            "attributes vocab_size = 256, tokenizer = \"bytes\" and sources (the input paths).\n"
            "Train on it with --seq-len T: windows of T tokens, labels the next tokens.\n"
            "--val-fraction F cuts each file after the first newline at or after (1 - F) of\n"
            "its size (at that byte when no newline follows) and writes the tails to a\n"
            "second file: OUT with .h5 replaced by -val.h5 (or -val.h5 appended).\n"
            "A missing file, a directory, a NUL byte (binary data), all files empty, or an\n"
            "output with fewer than 2 tokens is an error; nothing is written then.",
        .specs = specs,
        .nspecs = 3};
    sp_status st = sp_args_parse(&a, argc, argv);
    if (st != SP_OK) return sp_cli_fail(a.command, st);
    if (a.help) {
        sp_args_print_help(&a, stdout);
        return 0;
    }
    if (specs[2].seen && !(vf > 0 && vf < 1)) {
        fprintf(stderr, "%s: error: --val-fraction: %g is not in (0, 1)\n", a.command, vf);
        return 2;
    }
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    sp_text_import res;
    st = sp_import_text(in.v, in.n, out, vf, &res);
    if (st != SP_OK) return sp_cli_fail(a.command, st);
    const double secs = seconds_since_(&t0);
    printf("wrote %s: %lld tokens\n", out, (long long)res.tokens);
    if (res.val_path[0]) printf("wrote %s: %lld tokens\n", res.val_path, (long long)res.val_tokens);
    printf("(%d file%s, %lld bytes, %.2f s)\n", in.n, in.n == 1 ? "" : "s",
           (long long)(res.tokens + res.val_tokens), secs);
    return 0;
}

static void import_usage_(FILE *f) {
    fprintf(f, "usage: shardprop import idx|csv|text [flags]\n\n"
               "  idx   IDX images + labels (MNIST format) -> data file\n"
               "  csv   CSV of numbers -> data file\n"
               "  text  text files -> byte-level token file (train with --seq-len)\n\n"
               "`shardprop import FORMAT --help` lists the flags of each.\n");
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
    if (!strcmp(argv[1], "text")) return import_text_(argc - 1, argv + 1);
    fprintf(stderr, "shardprop import: error: unknown format '%s' (expected idx, csv or text)\n",
            argv[1]);
    return 2;
}
