/* shardprop synth: write a synthetic data set. */
#include <stdio.h>

#include "cli/commands.h"
#include "data/tools.h"
#include "util/args.h"
#include "util/status.h"

int sp_cmd_synth(int argc, char **argv) {
    const char *kind_s = NULL, *out = NULL;
    int64_t n = 0, features = 2, classes = 3, outputs = 1, seed = 1;
    sp_arg_spec specs[] = {
        {"kind", SP_ARG_STRING, &kind_s, "blobs|spirals|regression", "which set", .required = true},
        {"n", SP_ARG_INT, &n, "N", "number of samples", .required = true, .imin = 1,
         .imax = INT64_MAX / 4},
        {"features", SP_ARG_INT, &features, "F", "features per sample (default 2; spirals need 2)",
         .imin = 1, .imax = 1 << 20},
        {"classes", SP_ARG_INT, &classes, "C", "classes for blobs/spirals (default 3)", .imin = 2,
         .imax = 1 << 20},
        {"outputs", SP_ARG_INT, &outputs, "T", "regression targets per sample (default 1)",
         .imin = 1, .imax = 1 << 20},
        {"seed", SP_ARG_INT, &seed, "S", "random seed (default 1)", .imin = 0, .imax = INT64_MAX},
        {"out", SP_ARG_STRING, &out, "FILE.h5", "output data file", .required = true},
    };
    sp_args a = {.command = "shardprop synth",
                 .description =
                     "Write a synthetic data set: X float32 (N, F); y int32 labels with `classes`\n"
                     "(blobs: Gaussian clusters; spirals: interleaved 2-D spiral arms) or float32\n"
                     "(N, T) targets (regression: tanh of a random linear map plus noise).\n"
                     "Every sample is a pure function of (seed, index).",
                 .specs = specs,
                 .nspecs = 7};
    sp_status st = sp_args_parse(&a, argc, argv);
    if (st != SP_OK) return sp_cli_fail(a.command, st);
    if (a.help) {
        sp_args_print_help(&a, stdout);
        return 0;
    }
    sp_synth_kind kind;
    st = sp_synth_kind_parse(kind_s, &kind);
    if (st == SP_OK)
        st =
            sp_synth_write(out, kind, n, (int)features, (int)classes, (int)outputs, (uint64_t)seed);
    if (st != SP_OK) return sp_cli_fail(a.command, st);
    printf("wrote %s: %lld samples, %lld features\n", out, (long long)n, (long long)features);
    return 0;
}
