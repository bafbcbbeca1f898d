/* shardprop inspect: describe a data file and check it against the contract. */
#include <stdio.h>
#include <string.h>

#include "cli/commands.h"
#include "data/data.h"
#include "data/tools.h"
#include "optim/optim.h"
#include "shardprop/model.h"
#include "io/checkpoint.h"
#include "model/describe.h"
#include "util/args.h"
#include "util/status.h"

/* "(1, 28, 28)" / "(10,)" */
static void print_shape_(const int64_t *s, int rank) {
    printf("(");
    for (int d = 0; d < rank; ++d) printf("%s%lld", d ? ", " : "", (long long)s[d]);
    printf(rank == 1 ? ",)" : ")");
}

static int checkpoint_failed_(sp_status st) {
    printf("validation: FAILED: %s\n", sp_last_error());
    return sp_cli_fail("shardprop inspect", st);
}

/* The model's graph: each layer's inputs, output shape and parameter tensors. */
static void print_layers_(const sp_model *m) {
    printf("  layers (%d, %zu parameters):\n", sp_model_num_layers(m), sp_model_num_params(m));
    sp_model_print_graph(m, stdout, "    ", false);
}

/*
 * A file with a top-level /model group is a checkpoint: its attributes, the model it describes,
 * the optimizer and the training position; then validation: the model is built from the spec
 * and input shape and the parameters (and the optimizer state, if any) are loaded into it.
 */
static int inspect_checkpoint_(const char *path) {
    printf("\n%s has a /model group: described as a checkpoint, not a data file\n", path);
    sp_ckpt_info info;
    sp_status st = sp_ckpt_read_info(path, &info);
    if (st != SP_OK) {
        sp_ckpt_info_free(&info);
        return checkpoint_failed_(st);
    }
    printf("checkpoint:\n  format_version: %d\n  spec: %s\n  input shape: ", info.format_version,
           info.spec);
    print_shape_(info.input_shape, info.input_rank);
    printf("\n  loss: %s\n", info.loss);
    sp_model *m = NULL;
    st = sp_model_create(&m, info.spec, info.input_shape, info.input_rank, 1);
    if (st == SP_OK) {
        print_layers_(m);
        const size_t k = sp_model_output_size(m);
        if (!strcmp(info.loss, "xent"))
            printf("  task: classification, %zu classes\n", k);
        else if (!strcmp(info.loss, "mse"))
            printf("  task: regression, %zu targets\n", k);
        else
            st = SP_FAIL(SP_ERR_DATA, "%s: /model@loss \"%s\" is neither xent nor mse", path,
                         info.loss);
    }
    if (info.has_optimizer) {
        const sp_opt_config *o = &info.opt;
        printf("  optimizer: %s, step %lld", sp_opt_kind_name(o->kind), (long long)info.opt_step);
        if (o->kind == SP_OPT_SGD)
            printf(", momentum %.7g, nesterov %s", (double)o->momentum, o->nesterov ? "yes" : "no");
        else
            printf(", beta1 %.7g, beta2 %.7g, eps %.7g", (double)o->beta1, (double)o->beta2,
                   (double)o->eps);
        printf(", weight_decay %.7g\n", (double)o->weight_decay);
    } else {
        printf("  optimizer: none (a model-only file: use it to predict or to initialize)\n");
    }
    if (info.has_train) {
        const sp_train_state *t = &info.train;
        printf("  train state: step %lld, epoch %lld, epoch_batch %lld, seed %llu\n"
               "  written by: shardprop %s, %d rank%s x %d thread%s\n",
               (long long)t->step, (long long)t->epoch, (long long)t->epoch_batch,
               (unsigned long long)t->seed, info.version, t->world_size,
               t->world_size == 1 ? "" : "s", t->threads, t->threads == 1 ? "" : "s");
        const sp_ckpt_best *b = &info.best;
        if (info.has_best && b->epoch > 0)
            printf("  best so far: %s %.6g at epoch %lld, %lld epoch(s) since\n", b->metric,
                   b->value, (long long)b->epoch, (long long)b->epochs_since_best);
        else if (info.has_best)
            printf("  best so far: no %s yet, %lld epoch(s) validated\n", b->metric,
                   (long long)b->epochs_since_best);
        printf("  config:\n");
        const char *c = t->config && *t->config ? t->config : "(empty)\n";
        for (const char *p = c; *p;) { /* indent each line */
            const char *e = strchr(p, '\n');
            const int len = e ? (int)(e - p) : (int)strlen(p);
            printf("    %.*s\n", len, p);
            p += len + (e ? 1 : 0);
        }
    } else {
        printf("  train state: none\n");
    }
    /* validation: load everything into a model (and optimizer) built from the file itself */
    sp_optimizer *opt = NULL;
    if (st == SP_OK) st = sp_ckpt_load_params(path, m);
    if (st == SP_OK && info.has_optimizer) {
        st = sp_opt_config_check(&info.opt);
        if (st == SP_OK) st = sp_optim_create(&opt, &info.opt, sp_model_num_params(m));
        if (st == SP_OK) st = sp_ckpt_load_optimizer(path, m, opt);
    }
    const bool with_opt = info.has_optimizer;
    sp_optim_free(opt);
    sp_model_free(m);
    sp_ckpt_info_free(&info);
    if (st != SP_OK) return checkpoint_failed_(st);
    printf("validation: OK (the parameters%s load into the model built from the spec)\n",
           with_opt ? " and the optimizer state" : "");
    return 0;
}

/*
 * Token data (a dataset `tokens` and no X): the file itself, since inspect has no --seq-len.
 * Opened with windows of 1 token, so every token is validated by the summary (histogram) and the
 * first tokens are read as windows 0, 1, ... of that.
 */
static int inspect_tokens_(const char *const *paths, int npaths) {
    sp_dataset *ds = NULL;
    sp_status st = sp_dataset_open_tokens_files(&ds, paths, npaths, NULL, 1);
    sp_dataset_summary sum = {0};
    /* the first tokens: window i of 1 token is token i, its label token i + 1 */
    float x[64];
    int32_t next[64];
    int64_t head[64], nhead = 0;
    if (st == SP_OK) st = sp_dataset_summarize(ds, &sum);
    if (st == SP_OK) {
        const sp_dataset_info *in = sp_dataset_get_info(ds);
        int64_t ids[64];
        const int64_t nw = in->n < 63 ? in->n : 63;
        for (int64_t i = 0; i < nw; ++i) ids[i] = i;
        st = sp_dataset_read(ds, ids, nw, x, next, NULL);
        for (int64_t i = 0; i < nw; ++i) head[i] = (int64_t)x[i];
        head[nw] = next[nw - 1];
        nhead = nw + 1;
    }
    if (st != SP_OK) {
        printf("validation: FAILED: %s\n", sp_last_error());
        sp_dataset_summary_free(&sum);
        sp_dataset_close(ds);
        return sp_cli_fail("shardprop inspect", st);
    }
    const sp_dataset_info *in = sp_dataset_get_info(ds);
    const int64_t V = in->classes, ntok = in->tokens;
    const bool bytes = in->tokenizer && !strcmp(in->tokenizer, "bytes") && V <= 256;
    int64_t used = 0;
    for (int64_t v = 0; v < V; ++v) used += sum.class_counts[v] > 0;
    printf("\ntoken data (%s: windows of --seq-len T tokens, labels the next tokens):\n",
           in->x_name);
    printf("  tokens: %lld, %s\n  vocab_size: %lld\n  tokenizer: %s\n", (long long)ntok,
           sp_x_dtype_name(in->x_dtype), (long long)V, in->tokenizer ? in->tokenizer : "(none)");
    printf("  token ids: min %.0f, max %.0f, mean %.6g; %lld of the %lld ids occur\n", sum.x_min,
           sum.x_max, sum.x_mean, (long long)used, (long long)V);
    /* the 5 most frequent ids (ties: the lower id first) */
    printf("  most frequent:");
    int64_t top[5];
    int ntop = 0;
    for (; ntop < 5 && ntop < used; ++ntop) {
        int64_t best = -1;
        for (int64_t v = 0; v < V; ++v) {
            bool taken = false;
            for (int k = 0; k < ntop; ++k) taken |= top[k] == v;
            if (!taken && sum.class_counts[v] > 0 &&
                (best < 0 || sum.class_counts[v] > sum.class_counts[best]))
                best = v;
        }
        top[ntop] = best;
        printf("%s %lld", ntop ? "," : "", (long long)best);
        if (bytes) {
            const char c = (char)best;
            putchar(' ');
            sp_fprint_escaped(stdout, &c, 1, 1);
        }
        printf(" %.1f%%", 100.0 * (double)sum.class_counts[best] / (double)ntok);
    }
    printf("\n  start:");
    if (bytes) {
        char text[64];
        for (int64_t i = 0; i < nhead; ++i) text[i] = (char)head[i];
        putchar(' ');
        sp_fprint_escaped(stdout, text, (size_t)nhead, 64);
        if (ntok > nhead) printf("...");
    } else {
        for (int64_t i = 0; i < nhead && i < 16; ++i) printf(" %lld", (long long)head[i]);
        if (ntok > 16) printf(" ...");
    }
    printf("\n  windows (N = (tokens - 1) / T):");
    const int64_t Ts[5] = {64, 128, 256, 512, 1024};
    int shown = 0;
    for (int k = 0; k < 5; ++k) {
        /* each file's windows (its tokens - 1 are its windows of 1 token) */
        int64_t nw = 0;
        for (int f = 0; f < sp_dataset_nfiles(ds); ++f) nw += sp_dataset_file_rows(ds, f) / Ts[k];
        if (nw >= 1)
            printf("%s T=%lld: N=%lld", shown++ ? "," : "", (long long)Ts[k], (long long)nw);
    }
    if (!shown) printf(" T=1: N=%lld (fewer than 65 tokens)", (long long)(ntok - 1));
    printf("\nvalidation: OK\n");
    sp_dataset_summary_free(&sum);
    sp_dataset_close(ds);
    return 0;
}

/* The files of a set: their number, and each one's rows (the first 5 and the last when more). */
static void print_files_(const sp_dataset *ds) {
    const int n = sp_dataset_nfiles(ds);
    printf("\nfiles: %d, one logical set in this order, rows concatenated\n", n);
    for (int i = 0; i < n; ++i) {
        if (n > 6 && i == 5) {
            printf("  ... (%d more)\n", n - 6);
            i = n - 1;
        }
        printf("  %s: N=%lld\n", sp_dataset_file_path(ds, i),
               (long long)sp_dataset_file_rows(ds, i));
    }
}

static int inspect_data_(const char *const *paths, int npaths, const char *xn, const char *yn) {
    sp_dataset *ds = NULL;
    sp_status st = sp_dataset_open_files(&ds, paths, npaths, xn, yn, 0);
    sp_dataset_summary sum = {0};
    if (st == SP_OK) st = sp_dataset_summarize(ds, &sum);
    if (st != SP_OK) {
        printf("validation: FAILED: %s\n", sp_last_error());
        sp_dataset_close(ds);
        fprintf(stderr, "shardprop inspect: error: %s\n", sp_last_error());
        return 1;
    }
    const sp_dataset_info *in = sp_dataset_get_info(ds);
    if (npaths > 1) print_files_(ds);
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

static int inspect_file_(const char *path, const char *xn, const char *yn);

int sp_cmd_inspect(int argc, char **argv) {
    const char *xn = "X", *yn = "y";
    sp_arg_spec specs[] = {
        {"x", SP_ARG_STRING, &xn, "NAME", "input dataset path (default X)", .required = false},
        {"y", SP_ARG_STRING, &yn, "NAME", "label/target dataset path (default y)",
         .required = false},
    };
    sp_args a = {.command = "shardprop inspect",
                 .positionals = "FILE.h5 | ITEM...",
                 .description =
                     "List the groups, datasets (shape, dtype, chunks, filters) and attributes of\n"
                     "an HDF5 file, then check it against the data file contract: class histogram\n"
                     "or target statistics, min/max/mean of X after scale/offset, and\n"
                     "\"validation: OK\" or \"validation: FAILED: <reason>\" (exit status 1).\n"
                     "A checkpoint (a file with a /model group, e.g. from `train --out`) is\n"
                     "described instead: spec, input shape, loss, format version, every layer's\n"
                     "output and parameter shapes, the optimizer (type, hyper-parameters, step),\n"
                     "the training position (step, epoch, batch in the epoch, seed, ranks,\n"
                     "threads, version) and the stored configuration; it is validated by loading\n"
                     "the parameters (and optimizer state) into a model built from its spec.\n"
                     "A token file (a dataset `tokens` and no X, e.g. from `import text`) is\n"
                     "described by itself: token count, dtype, vocab_size, tokenizer, id range,\n"
                     "the most frequent ids, the first tokens (as text for byte tokens) and the\n"
                     "number of windows for a few --seq-len values; every token is validated.\n"
                     "--x and --y apply to data files only.\n"
                     "Several files (up to 8 items: files, quoted globs, directories, @LIST, as\n"
                     "for `train --data`) are inspected as the one logical set training reads:\n"
                     "the files and their N, the total N, shape, dtype, classes and the\n"
                     "statistics over all rows, after checking every file against the first.",
                 .specs = specs,
                 .nspecs = 2,
                 .min_positional = 1,
                 .max_positional = 8};
    sp_status st = sp_args_parse(&a, argc, argv);
    if (st != SP_OK) return sp_cli_fail(a.command, st);
    if (a.help) {
        sp_args_print_help(&a, stdout);
        return 0;
    }
    sp_path_list files = {0};
    st = sp_data_paths_expand(a.positional, a.npositional, NULL, &files);
    if (st != SP_OK && a.npositional == 1 && !strpbrk(a.positional[0], "*?[@")) {
        /* one path that is not there: the describer says so, as it always did */
        return inspect_file_(a.positional[0], xn, yn);
    }
    if (st != SP_OK) {
        printf("validation: FAILED: %s\n", sp_last_error());
        return sp_cli_fail(a.command, st);
    }
    if (files.n > 1) {
        const char *const *v = (const char *const *)files.v;
        const int rc = sp_dataset_is_token_file(v[0], xn) ? inspect_tokens_(v, files.n)
                                                          : inspect_data_(v, files.n, xn, yn);
        sp_path_list_free(&files);
        return rc;
    }
    /* one file: described whole (a checkpoint, token or data file); a missing one is left to
     * the describer, whose message says it was to be inspected */
    const char *path = files.n == 1 ? files.v[0] : a.positional[0];
    const int rc = inspect_file_(path, xn, yn);
    sp_path_list_free(&files);
    return rc;
}

static int inspect_file_(const char *path, const char *xn, const char *yn) {
    bool has_model = false;
    sp_status st = sp_h5_describe_file(path, stdout, &has_model);
    if (st != SP_OK) {
        printf("validation: FAILED: %s\n", sp_last_error());
        return sp_cli_fail("shardprop inspect", st);
    }
    if (has_model) return inspect_checkpoint_(path);
    if (sp_dataset_is_token_file(path, xn)) return inspect_tokens_(&path, 1);
    return inspect_data_(&path, 1, xn, yn);
}
