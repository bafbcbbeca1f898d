/* shardprop inspect: describe a data file and check it against the contract. */
#include <stdio.h>

#include "cli/commands.h"
#include "data/data.h"
#include "data/tools.h"
#include "util/args.h"
#include "util/status.h"

/* A file with a top-level /model group is a checkpoint, not a data file. */
static int inspect_checkpoint_(const char *path) {
    printf("not a data file: %s has a /model group (a checkpoint); describing checkpoints is not "
           "implemented yet\n",
           path);
    return 1;
}

static int inspect_data_(const char *path, const char *xn, const char *yn) {
    sp_dataset *ds = NULL;
    sp_status st = sp_dataset_open(&ds, path, xn, yn);
    sp_dataset_summary sum = {0};
    if (st == SP_OK) st = sp_dataset_summarize(ds, &sum);
    if (st != SP_OK) {
        printf("validation: FAILED: %s\n", sp_last_error());
        sp_dataset_close(ds);
        fprintf(stderr, "shardprop inspect: error: %s\n", sp_last_error());
        return 1;
    }
    const sp_dataset_info *in = sp_dataset_get_info(ds);
    printf("\ndata:\n  N: %lld\n  %s: %s, sample shape (", (long long)in->n, in->x_name,
           sp_x_dtype_name(in->x_dtype));
    for (int d = 0; d < in->sample_rank; ++d)
        printf("%s%lld", d ? "," : "", (long long)in->sample_shape[d]);
    printf("), %zu values per sample, scale %.9g, offset %.9g\n", in->sample_size, in->scale,
           in->offset);
    printf("  %s after scale/offset: min %.6g, max %.6g, mean %.6g\n", in->x_name, sum.x_min,
           sum.x_max, sum.x_mean);
    if (in->regression) {
        printf("  %s: %s regression targets, T = %lld: min %.6g, max %.6g, mean %.6g\n", in->y_name,
               in->y_dtype, (long long)in->targets, sum.y_min, sum.y_max, sum.y_mean);
    } else {
        printf("  %s: %s labels, classes: %lld\n  class histogram:\n", in->y_name, in->y_dtype,
               (long long)in->classes);
        for (int64_t c = 0; c < in->classes; ++c)
            printf("    %lld: %lld\n", (long long)c, (long long)sum.class_counts[c]);
    }
    printf("validation: OK\n");
    sp_dataset_summary_free(&sum);
    sp_dataset_close(ds);
    return 0;
}

int sp_cmd_inspect(int argc, char **argv) {
    const char *xn = "X", *yn = "y";
    sp_arg_spec specs[] = {
        {"x", SP_ARG_STRING, &xn, "NAME", "input dataset path (default X)", .required = false},
        {"y", SP_ARG_STRING, &yn, "NAME", "label/target dataset path (default y)",
         .required = false},
    };
    sp_args a = {.command = "shardprop inspect",
                 .positionals = "FILE.h5",
                 .description =
                     "List the groups, datasets (shape, dtype, chunks, filters) and attributes of\n"
                     "an HDF5 file, then check it against the data file contract: class histogram\n"
                     "or target statistics, min/max/mean of X after scale/offset, and\n"
                     "\"validation: OK\" or \"validation: FAILED: <reason>\" (exit status 1).",
                 .specs = specs,
                 .nspecs = 2,
                 .min_positional = 1,
                 .max_positional = 1};
    sp_status st = sp_args_parse(&a, argc, argv);
    if (st != SP_OK) return sp_cli_fail(a.command, st);
    if (a.help) {
        sp_args_print_help(&a, stdout);
        return 0;
    }
    const char *path = a.positional[0];
    bool has_model = false;
    st = sp_h5_describe_file(path, stdout, &has_model);
    if (st != SP_OK) {
        printf("validation: FAILED: %s\n", sp_last_error());
        return sp_cli_fail(a.command, st);
    }
    if (has_model) return inspect_checkpoint_(path);
    return inspect_data_(path, xn, yn);
}
