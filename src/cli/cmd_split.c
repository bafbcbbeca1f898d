/* shardprop split: random train/validation split of a data file, or its rows as shard files. */
#include <stdio.h>

#include "cli/commands.h"
#include "data/tools.h"
#include "util/args.h"
#include "util/status.h"

int sp_cmd_split(int argc, char **argv) {
    const char *out_train = NULL, *out_val = NULL, *out = NULL, *xn = "X", *yn = "y";
    double frac = 0.1;
    int64_t seed = 1, shards = 0;
    bool stratify = false;
    sp_arg_spec specs[] = {
        {"val-fraction", SP_ARG_DOUBLE, &frac, "F",
         "fraction of samples for validation, in (0, 1) (default 0.1)", .dmin = 0, .dmax = 1},
        {"seed", SP_ARG_INT, &seed, "S", "random seed (default 1)", .imin = 0, .imax = INT64_MAX},
        {"out-train", SP_ARG_STRING, &out_train, "A.h5", "training output file", .required = false},
        {"out-val", SP_ARG_STRING, &out_val, "B.h5", "validation output file", .required = false},
        {"stratify", SP_ARG_BOOL, &stratify, NULL, "split each class on its own (classification)",
         .required = false},
        {"shards", SP_ARG_INT, &shards, "K",
         "instead: write the rows, in order, as K files PREFIX-00000-of-0000K.h5 ... (with --out)",
         .imin = 1, .imax = 99999},
        {"out", SP_ARG_STRING, &out, "PREFIX", "--shards: path prefix of the shard files",
         .required = false},
        {"x", SP_ARG_STRING, &xn, "NAME", "input dataset path (default X)", .required = false},
        {"y", SP_ARG_STRING, &yn, "NAME", "label/target dataset path (default y)",
         .required = false},
    };
    sp_args a = {
        .command = "shardprop split",
        .positionals = "FILE.h5",
        .description =
            "Split a data file at random into training and validation files (--out-train,\n"
            "--out-val): round(F * N) samples go to validation (chosen by the counter RNG from\n"
            "the seed). Both outputs keep the sample order, dtypes, shapes and attributes of X\n"
            "and y.\n"
            "With --shards K --out PREFIX: write the rows instead as K shard files\n"
            "PREFIX-00000-of-0000K.h5 ... in file order, balanced (sizes differ by at most 1),\n"
            "with the same dtypes and attributes; `train --data 'PREFIX-*.h5'` reads them as\n"
            "one set, in the original order. Each file is renamed into place when complete.",
        .specs = specs,
        .nspecs = (int)(sizeof specs / sizeof specs[0]),
        .min_positional = 1,
        .max_positional = 1};
    sp_status st = sp_args_parse(&a, argc, argv);
    if (st != SP_OK) return sp_cli_fail(a.command, st);
    if (a.help) {
        sp_args_print_help(&a, stdout);
        return 0;
    }
    if (shards > 0) {
        if (!out) return sp_cli_fail(a.command, SP_FAIL(SP_ERR_ARG, "--shards needs --out PREFIX"));
        if (out_train || out_val)
            return sp_cli_fail(a.command,
                               SP_FAIL(SP_ERR_ARG, "--shards writes --out PREFIX-*; it excludes "
                                                   "--out-train and --out-val"));
        int64_t most = 0;
        st = sp_data_split_shards(a.positional[0], xn, yn, shards, out, &most);
        if (st != SP_OK) return sp_cli_fail(a.command, st);
        char first[4200], last[4200];
        sp_data_shard_path(out, 0, shards, first, sizeof first);
        sp_data_shard_path(out, shards - 1, shards, last, sizeof last);
        printf("wrote %lld shard%s %s%s%s: at most %lld samples each\n", (long long)shards,
               shards == 1 ? "" : "s", first, shards > 1 ? " .. " : "", shards > 1 ? last : "",
               (long long)most);
        return 0;
    }
    if (out) return sp_cli_fail(a.command, SP_FAIL(SP_ERR_ARG, "--out goes with --shards K"));
    if (!out_train || !out_val)
        return sp_cli_fail(a.command,
                           SP_FAIL(SP_ERR_ARG, "missing required flag --%s (or --shards K)",
                                   out_train ? "out-val" : "out-train"));
    int64_t nt = 0, nv = 0;
    st = sp_data_split(a.positional[0], xn, yn, frac, (uint64_t)seed, stratify, out_train, out_val,
                       &nt, &nv);
    if (st != SP_OK) return sp_cli_fail(a.command, st);
    printf("wrote %s: %lld samples\nwrote %s: %lld samples\n", out_train, (long long)nt, out_val,
           (long long)nv);
    return 0;
}
