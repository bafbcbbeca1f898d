/* shardprop split: random train/validation split of a data file. */
#include <stdio.h>

#include "cli/commands.h"
#include "data/tools.h"
#include "util/args.h"
#include "util/status.h"

int sp_cmd_split(int argc, char **argv) {
    const char *out_train = NULL, *out_val = NULL, *xn = "X", *yn = "y";
    double frac = 0.1;
    int64_t seed = 1;
    bool stratify = false;
    sp_arg_spec specs[] = {
        {"val-fraction", SP_ARG_DOUBLE, &frac, "F",
         "fraction of samples for validation, in (0, 1) (default 0.1)", .dmin = 0, .dmax = 1},
        {"seed", SP_ARG_INT, &seed, "S", "random seed (default 1)", .imin = 0, .imax = INT64_MAX},
        {"out-train", SP_ARG_STRING, &out_train, "A.h5", "training output file", .required = true},
        {"out-val", SP_ARG_STRING, &out_val, "B.h5", "validation output file", .required = true},
        {"stratify", SP_ARG_BOOL, &stratify, NULL, "split each class on its own (classification)",
         .required = false},
        {"x", SP_ARG_STRING, &xn, "NAME", "input dataset path (default X)", .required = false},
        {"y", SP_ARG_STRING, &yn, "NAME", "label/target dataset path (default y)",
         .required = false},
    };
    sp_args a = {
        .command = "shardprop split",
        .positionals = "FILE.h5",
        .description =
            "Split a data file at random into training and validation files: round(F * N)\n"
            "samples go to validation (chosen by the counter RNG from the seed). Both\n"
            "outputs keep the sample order, dtypes, shapes and attributes of X and y.",
        .specs = specs,
        .nspecs = 7,
        .min_positional = 1,
        .max_positional = 1};
    sp_status st = sp_args_parse(&a, argc, argv);
    if (st != SP_OK) return sp_cli_fail(a.command, st);
    if (a.help) {
        sp_args_print_help(&a, stdout);
        return 0;
    }
    int64_t nt = 0, nv = 0;
    st = sp_data_split(a.positional[0], xn, yn, frac, (uint64_t)seed, stratify, out_train, out_val,
                       &nt, &nv);
    if (st != SP_OK) return sp_cli_fail(a.command, st);
    printf("wrote %s: %lld samples\nwrote %s: %lld samples\n", out_train, (long long)nt, out_val,
           (long long)nv);
    return 0;
}
