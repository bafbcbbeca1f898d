#include "train/config.h"

#include "model/spec.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "data/augment.h"
#include "data/data.h"
#include "scale/scaleplan.h"
#include "util/args.h"
#include "util/status.h"

struct sp_train_args {
    char **strings; /* the file's "--key=value" words */
    int n;
    char **argv; /* merged argv: file words, then the command line */
};

static const char *train_description =
    "Train a model on an HDF5 data file, data-parallel over the MPI ranks: each rank "
    "backpropagates its slice of every global batch with OpenMP threads, the gradients are "
    "summed over ranks in buckets overlapped with backward, and every rank makes the same "
    "update. Runs as one process, under mpirun -n P, or under srun. Options may also come from "
    "--config FILE (key = value lines, names without the dashes; flags override the file).";

/* The table: one place for names, defaults (set in config_defaults_), help and ranges. */
#define N_SPECS 64
static int make_specs_(sp_train_config *c, sp_arg_spec *s) {
    int n = 0;
#define STR(name, field, meta, help)                                                               \
    s[n++] = (sp_arg_spec){name, SP_ARG_STRING, &c->field, meta, help, .required = false}
#define INT(name, field, lo, hi, meta, help)                                                       \
    s[n++] = (sp_arg_spec) {                                                                       \
        name, SP_ARG_INT, &c->field, meta, help, .imin = lo, .imax = hi                            \
    }
#define DBL(name, field, lo, hi, meta, help)                                                       \
    s[n++] = (sp_arg_spec) {                                                                       \
        name, SP_ARG_DOUBLE, &c->field, meta, help, .dmin = lo, .dmax = hi                         \
    }
#define FLAG(name, field, help)                                                                    \
    s[n++] = (sp_arg_spec) {                                                                       \
        name, SP_ARG_BOOL, &c->field, NULL, help, .required = false                                \
    }
    STR("config", config_file, "FILE", "read options from FILE (key = value lines)");
    STR("data", data, "TRAIN.h5...",
        "training data (required; datasets X and y, see README): one or more files, glob "
        "patterns ('shards/train-*.h5'), directories (their *.h5) or @LIST (a file of paths, one "
        "a line); one logical set, the files in sorted order, rows concatenated, at most "
        "SHARDPROP_MAX_OPEN_FILES (16) open at a time");
    STR("model", model, "SPEC|@FILE",
        "model spec, e.g. flatten,dense:128,relu,dense:10, or @FILE to read it from FILE (several "
        "lines, # comments; README: the model language) (required)");
    STR("val", val, "VAL.h5...",
        "validation data, evaluated at the end of every epoch (the same forms as --data)");
    STR("loss", loss, "xent|mse", "loss (default: xent for integer labels, mse for float y)");
    STR("augment", augment, "LIST",
        "augment the training images (N, C, H, W), not validation; transforms in order: crop:P "
        "(pad P zeros, random crop back to size), flip (left-right, p 0.5), translate:T (random "
        "shift in [-T, T], zero fill); e.g. crop:2,flip (docs/data.md)");
    STR("x", x_name, "NAME", "path of the inputs in the data files (default X)");
    STR("y", y_name, "NAME", "path of the labels/targets in the data files (default y)");
    INT("seq-len", seq_len, 0, 1 << 20, "T",
        "token data (a 1-D `tokens` dataset, README: language models): train on windows of T "
        "tokens, predicting the next token at every position (default 0: X/y data)");
    INT("epochs", epochs, 0, INT64_MAX, "N", "epochs (default 10)");
    INT("max-steps", max_steps, 0, INT64_MAX, "N",
        "stop after N optimizer steps; 0 writes the initialized model and exits");
    INT("batch", batch, 1, 1 << 24, "B", "global batch size, split over the ranks (default 64)");
    INT("accum-steps", accum_steps, 1, 1 << 24, "K",
        "gradient accumulation: each step's batch B in K micro-steps of B/K samples (K divides "
        "B), one allreduce per step; the memory of B/K samples, the parameters of --batch B "
        "(1e-5; bitwise with --deterministic), except with batch norm, whose statistics are "
        "per micro-step (default 1)");
    STR("optimizer", optimizer, "sgd|adam|adamw", "optimizer (default sgd)");
    DBL("lr", lr, 0, 1e6, "LR", "base learning rate (default 0.01)");
    DBL("momentum", momentum, 0, 0.999999, "M", "SGD momentum (default 0.9)");
    FLAG("nesterov", nesterov, "Nesterov momentum (SGD)");
    DBL("weight-decay", weight_decay, 0, 1e6, "WD",
        "weight decay: L2 on the gradient (sgd, adam), decoupled (adamw) (default 0)");
    DBL("beta1", beta1, 0, 0.999999, "B1", "Adam beta1 (default 0.9)");
    DBL("beta2", beta2, 0, 0.999999999, "B2", "Adam beta2 (default 0.999)");
    DBL("eps", eps, 1e-30, 1, "EPS", "Adam epsilon (default 1e-8)");
    STR("schedule", schedule, "constant|step|cosine", "learning-rate schedule (default constant)");
    INT("warmup-steps", warmup_steps, 0, INT64_MAX, "N", "linear warmup steps (default 0)");
    DBL("lr-gamma", lr_gamma, 1e-12, 1, "G", "step schedule: factor (default 0.1)");
    INT("lr-step-every", lr_step_every, 1, INT64_MAX, "N",
        "step schedule: multiply the rate by --lr-gamma every N steps (default 1000)");
    DBL("min-lr", min_lr, 0, 1e6, "LR", "cosine schedule: final rate (default 0)");
    DBL("clip-norm", clip_norm, 0, 1e30, "C", "clip the global gradient norm to C (0: off)");
    STR("on-nonfinite", on_nonfinite, "stop|skip",
        "a NaN/Inf loss or gradient: stop naming the step and layer (default), or skip the "
        "update on every rank and count it");
    INT("seed", seed, 0, INT64_MAX, "S",
        "seed of the initial weights, the sample order and dropout (default 1)");
    FLAG("no-shuffle", no_shuffle, "keep the file's order in every epoch");
    STR("shuffle", shuffle, "global|shards",
        "epoch order: a permutation of all rows (global, default), or for sets far larger than "
        "the cache the files in a shuffled order, rows shuffled within windows of "
        "--shuffle-window files (shards: a rank reads from a few files at a time)");
    INT("shuffle-window", shuffle_window, 1, 1 << 20, "W",
        "--shuffle shards: files per window whose rows are shuffled together (default 4)");
    INT("threads", threads, 0, 4096, "T",
        "OpenMP threads per rank (default: OMP_NUM_THREADS, else the cores given to the rank)");
    STR("out", out, "MODEL.h5", "write the final model (a checkpoint file) here");
    STR("metrics", metrics, "FILE.jsonl", "append JSON lines: step, epoch and summary events");
    INT("log-every", log_every, 1, INT64_MAX, "N", "log and record metrics every N steps (50)");
    INT("data-cache-mb", data_cache_mb, 0, INT64_MAX, "MB",
        "keep rows read in memory when this rank's working set fits (default 1024)");
    FLAG("no-prefetch", no_prefetch, "read each batch synchronously (no reader thread)");
    INT("max-memory-mb", max_memory_mb, 0, INT64_MAX >> 20, "MB",
        "refuse any single allocation sized from a file, spec or flag above MB (default: half "
        "of physical memory)");
    DBL("bucket-mb", bucket_mb, 0, 1 << 20, "MB",
        "gradient allreduce bucket size; 0: one blocking allreduce after backward (default 4)");
    INT("check-every", check_every, 0, INT64_MAX, "N",
        "compare a checksum of the parameters across ranks every N steps and at the end "
        "(default 1000; 0: only at the end)");
    FLAG("quiet", quiet, "print only errors and the final summary");
    FLAG("dry-run", dry_run, "set up, print the plan (model, buckets, layout) and exit");
    FLAG("json", json, "with --dry-run: print the plan as JSON");
    STR("network", network, "ib100|eth25|eth10|shm|US:GBITS[:GAMMA_NS]",
        "with --dry-run: scaling advice for this network (docs/scaling.md)");
    STR("checkpoint-dir", checkpoint_dir, "DIR", "write checkpoints DIR/step_<8 digits>.h5");
    INT("checkpoint-every", checkpoint_every, 0, INT64_MAX, "N", "checkpoint every N steps");
    DBL("checkpoint-every-minutes", checkpoint_every_minutes, 0, 1e9, "M",
        "checkpoint every M minutes of wall time");
    INT("keep", keep, 0, INT64_MAX, "K", "keep the K newest checkpoints (default 3; 0: all)");
    STR("checkpoint-errors", checkpoint_errors, "fail|warn",
        "on a failed checkpoint write: stop with an error (fail, default) or warn and go on");
    STR("resume", resume, "auto|FILE",
        "resume from FILE, or with auto from DIR/latest when present (else start fresh)");
    STR("init-from", init_from, "FILE", "start a new run from a checkpoint's parameters");
    FLAG("keep-best", keep_best,
         "after each epoch's validation, keep the checkpoint with the best --best-metric so far "
         "as DIR/best.h5 (needs --checkpoint-dir and --val; --out stays the final model)");
    STR("best-metric", best_metric, "val_loss|val_accuracy",
        "what --keep-best and --early-stop compare: val_loss (lower is better, default) or "
        "val_accuracy (higher is better; classification only)");
    INT("early-stop", early_stop, 0, INT64_MAX, "N",
        "stop after N epochs in a row without improving --best-metric (needs --val; 0: off, "
        "default)");
    DBL("max-time", max_time, 0, 1e9, "MIN",
        "checkpoint and stop cleanly after MIN minutes (default: from SLURM_JOB_END_TIME)");
    DBL("collective-timeout", collective_timeout, 0, 1e9, "S",
        "abort the job when a rank waits in a collective longer than S seconds (600; 0: off)");
    STR("trace", trace, "FILE.json",
        "write a timeline of every rank (Chrome trace-event JSON: Perfetto, chrome://tracing)");
    INT("trace-max-events", trace_max_events, 1, (int64_t)1 << 26, "N",
        "--trace: keep at most N events per rank, 32 bytes each (default 262144)");
    FLAG("layer-stats", layer_stats,
         "record per-layer error-signal, gradient, weight and update norms in the metrics file "
         "every --log-every steps and at the end of each epoch (needs --metrics)");
    STR("bn-stats", bn_stats, "global|local",
        "batch norm in training: statistics of the global batch, summed over ranks (global, "
        "default), or of each rank's samples (local: results change with the rank count)");
    FLAG("deterministic", deterministic,
         "bitwise-identical results for any number of ranks and threads (exact fixed-point "
         "gradient sums over micro-batches; see docs/determinism.md)");
    INT("micro-batch", micro_batch, 0, 1 << 24, "M",
        "with --deterministic: samples per micro-batch, the unit of work and of summation "
        "(default 16)");
#undef STR
#undef INT
#undef DBL
#undef FLAG
    return n;
}

static void config_defaults_(sp_train_config *c) {
    memset(c, 0, sizeof *c);
    c->loss = "auto";
    c->epochs = 10;
    c->max_steps = -1;
    c->batch = 64;
    c->accum_steps = 1;
    c->optimizer = "sgd";
    c->schedule = "constant";
    c->lr = 0.01, c->momentum = 0.9, c->beta1 = 0.9, c->beta2 = 0.999, c->eps = 1e-8;
    c->lr_gamma = 0.1, c->lr_step_every = 1000;
    c->seed = 1;
    c->log_every = 50;
    c->check_every = 1000;
    c->data_cache_mb = 1024;
    c->bucket_mb = 4;
    c->keep = 3;
    c->checkpoint_errors = "fail";
    c->bn_stats = "global";
    c->on_nonfinite = "stop";
    c->collective_timeout = 600;
    c->trace_max_events = (int64_t)1 << 18;
    c->shuffle = "global";
    c->shuffle_window = 4;
}

void sp_train_print_help(FILE *f) {
    sp_train_config c;
    config_defaults_(&c);
    sp_arg_spec specs[N_SPECS];
    sp_args a = {.command = "shardprop train", .description = train_description, .specs = specs};
    a.nspecs = make_specs_(&c, specs);
    sp_args_print_help(&a, f);
}

void sp_train_args_free(sp_train_args *a) {
    if (!a) return;
    for (int i = 0; i < a->n; ++i) free(a->strings[i]);
    free(a->strings);
    free(a->argv);
    free(a);
}

static char *trim_(char *s) {
    while (isspace((unsigned char)*s)) ++s;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1])) *--e = '\0';
    return s;
}

/* Read `key = value` lines into "--key=value" words, checking keys against the table. */
static sp_status read_config_stream_(FILE *f, const char *path, const sp_arg_spec *specs,
                                     int nspecs, sp_train_args *a) {
    char line[4096];
    int lineno = 0;
    sp_status st = SP_OK;
    while (st == SP_OK && fgets(line, sizeof line, f)) {
        ++lineno;
        if (!strchr(line, '\n') && !feof(f)) {
            st = SP_FAIL(SP_ERR_ARG, "%s:%d: line too long", path, lineno);
            break;
        }
        char *hash = strchr(line, '#');
        if (hash) *hash = '\0';
        char *s = trim_(line);
        if (!*s) continue;
        char *eq = strchr(s, '=');
        if (!eq) {
            st = SP_FAIL(SP_ERR_ARG, "%s:%d: expected 'key = value', got '%s'", path, lineno, s);
            break;
        }
        *eq = '\0';
        char *key = trim_(s), *val = trim_(eq + 1);
        for (char *p = key; *p; ++p)
            if (*p == '_') *p = '-';
        int k;
        for (k = 0; k < nspecs; ++k)
            if (!strcmp(specs[k].name, key)) break;
        if (k == nspecs || !strcmp(key, "config")) {
            st = SP_FAIL(SP_ERR_ARG, "%s:%d: unknown key '%s' (see shardprop help train)", path,
                         lineno, key);
            break;
        }
        size_t len = strlen(key) + strlen(val) + 4;
        char *word = malloc(len),
             **grown = realloc(a->strings, sizeof(char *) * (size_t)(a->n + 1));
        if (!word || !grown) {
            free(word);
            if (grown) a->strings = grown;
            st = SP_FAIL(SP_ERR_NOMEM, "out of memory");
            break;
        }
        a->strings = grown;
        snprintf(word, len, "--%s=%s", key, val);
        a->strings[a->n++] = word;
    }
    return st;
}

static sp_status read_config_file_(const char *path, const sp_arg_spec *specs, int nspecs,
                                   sp_train_args *a) {
    FILE *f = fopen(path, "r");
    if (!f) return SP_FAIL(SP_ERR_ARG, "%s: cannot read config file: %s", path, strerror(errno));
    sp_status st = read_config_stream_(f, path, specs, nspecs, a);
    fclose(f);
    return st;
}

/* Keep a string with the configuration's (freed by sp_train_args_free). */
static sp_status own_string_(sp_train_args *own, char *str) {
    char **grown = realloc(own->strings, sizeof(char *) * (size_t)(own->n + 1));
    if (!grown) {
        free(str);
        return SP_FAIL(SP_ERR_NOMEM, "out of memory");
    }
    own->strings = grown;
    own->strings[own->n++] = str;
    return SP_OK;
}

/* The spec on one line: comments dropped, blanks collapsed (what the stored configuration, one
 * `key = value` per line, can hold). */
static char *one_line_(const char *text) {
    char *line = malloc(strlen(text) + 1);
    if (!line) return NULL;
    size_t k = 0;
    bool blank = false, comment = false;
    for (const char *p = text; *p; ++p) {
        if (*p == '#') comment = true;
        if (*p == '\n') comment = false;
        if (comment || isspace((unsigned char)*p)) {
            blank = k > 0;
            continue;
        }
        if (blank) line[k++] = ' ';
        blank = false;
        line[k++] = *p;
    }
    line[k] = '\0';
    return line;
}

/* --model @FILE: the spec read from FILE (at most 1 MiB) and checked there, so that an error
 * names the file, the line and the column. The model is built from the file's text (the
 * checkpoint's /model/spec keeps it, comments and all); the configuration holds it on one line,
 * so that the one a checkpoint keeps does not need the file. */
static sp_status read_model_file_(sp_train_config *c, sp_train_args *own) {
    if (!c->model || c->model[0] != '@') return SP_OK;
    const char *path = c->model + 1;
    enum { MAX = 1 << 20 };
    FILE *f = fopen(path, "r");
    if (!f) return SP_FAIL(SP_ERR_ARG, "--model @%s: cannot read it: %s", path, strerror(errno));
    char *text = malloc(MAX + 1);
    const size_t n = text ? fread(text, 1, MAX + 1, f) : 0;
    const bool err = ferror(f);
    fclose(f);
    sp_status st = SP_OK;
    if (!text)
        st = SP_FAIL(SP_ERR_NOMEM, "out of memory");
    else if (err)
        st = SP_FAIL(SP_ERR_IO, "--model @%s: read error", path);
    else if (n > MAX)
        st = SP_FAIL(SP_ERR_ARG, "--model @%s: larger than 1 MiB", path);
    else if (memchr(text, '\0', n))
        st = SP_FAIL(SP_ERR_ARG, "--model @%s: not a text file (holds a NUL byte)", path);
    if (st != SP_OK) {
        free(text);
        return st;
    }
    text[n] = '\0';
    sp_layer_spec *L = NULL;
    int nl = 0;
    if (sp_spec_parse(text, &L, &nl) != SP_OK) {
        char why[1024]; /* the parser's message, before SP_FAIL reuses its buffer */
        snprintf(why, sizeof why, "%s", sp_last_error());
        free(text);
        return SP_FAIL(SP_ERR_SPEC, "--model @%s: %s", path, why);
    }
    free(L);
    c->model_file = path;
    c->model_text = text;
    SP_CHECK(own_string_(own, text));
    char *line = one_line_(text);
    if (!line) return SP_FAIL(SP_ERR_NOMEM, "out of memory");
    c->model = line;
    return own_string_(own, line);
}

/* Defaults that depend on other flags, resolved once so that the stored configuration (the
 * checkpoints' /train config) holds the value used. */
static void resolve_(sp_train_config *c) {
    if (c->deterministic && c->micro_batch == 0) c->micro_batch = SP_DET_DEFAULT_MICRO_BATCH;
    if ((c->keep_best || c->early_stop > 0) && !c->best_metric) c->best_metric = "val_loss";
}

sp_status sp_train_config_parse(sp_train_config *cfg, int argc, char **argv, bool *help,
                                sp_train_args **owned) {
    config_defaults_(cfg);
    *help = false;
    *owned = NULL;
    sp_arg_spec specs[N_SPECS];
    sp_args a = {.command = "shardprop train", .description = train_description, .specs = specs};
    a.nspecs = make_specs_(cfg, specs);
    sp_train_args *own = calloc(1, sizeof *own);
    if (!own) return SP_FAIL(SP_ERR_NOMEM, "out of memory");
    *owned = own;
    /* find --config first: the file comes before the command line, which overrides it */
    const char *file = NULL;
    for (int i = 1; i < argc; ++i) {
        if (!strcmp(argv[i], "--")) break;
        if (!strcmp(argv[i], "--config") && i + 1 < argc)
            file = argv[i + 1];
        else if (!strncmp(argv[i], "--config=", 9))
            file = argv[i] + 9;
    }
    if (file) SP_CHECK(read_config_file_(file, specs, a.nspecs, own));
    own->argv = calloc((size_t)(argc + own->n + 1), sizeof(char *));
    if (!own->argv) return SP_FAIL(SP_ERR_NOMEM, "out of memory");
    int n = 0;
    own->argv[n++] = argv[0];
    for (int i = 0; i < own->n; ++i) own->argv[n++] = own->strings[i];
    for (int i = 1; i < argc; ++i) {
        own->argv[n++] = argv[i];
        if (!strcmp(argv[i], "--")) {
            while (++i < argc) own->argv[n++] = argv[i];
            break;
        }
        /* --data A B C (an unquoted glob): one value, the items blank-separated as in a file */
        if (strcmp(argv[i], "--data") && strcmp(argv[i], "--val")) continue;
        int j = i + 1;
        while (j < argc && strncmp(argv[j], "--", 2)) ++j;
        if (j - i <= 2) continue;
        char *joined = sp_data_items_join((const char *const *)argv + i + 1, j - i - 1);
        if (!joined) return SP_FAIL(SP_ERR_NOMEM, "out of memory");
        SP_CHECK(own_string_(own, joined));
        own->argv[n++] = joined;
        i = j - 1;
    }
    SP_CHECK(sp_args_parse(&a, n, own->argv));
    *help = a.help;
    resolve_(cfg);
    return read_model_file_(cfg, own);
}

sp_status sp_train_config_parse_text(sp_train_config *cfg, const char *text, size_t len,
                                     const char *name, sp_train_args **owned) {
    config_defaults_(cfg);
    *owned = NULL;
    sp_arg_spec specs[N_SPECS];
    sp_args a = {.command = "shardprop train", .description = train_description, .specs = specs};
    a.nspecs = make_specs_(cfg, specs);
    sp_train_args *own = calloc(1, sizeof *own);
    if (!own) return SP_FAIL(SP_ERR_NOMEM, "out of memory");
    *owned = own;
    if (len > 0) { /* fmemopen may refuse a zero size: empty text is an empty file */
        FILE *f = fmemopen((void *)text, len, "r");
        if (!f)
            return SP_FAIL(SP_ERR_NOMEM, "%s: cannot read config text: %s", name, strerror(errno));
        sp_status st = read_config_stream_(f, name, specs, a.nspecs, own);
        fclose(f);
        SP_CHECK(st);
    }
    own->argv = calloc((size_t)own->n + 2, sizeof(char *));
    if (!own->argv) return SP_FAIL(SP_ERR_NOMEM, "out of memory");
    int n = 0;
    own->argv[n++] = "train";
    for (int i = 0; i < own->n; ++i) own->argv[n++] = own->strings[i];
    SP_CHECK(sp_args_parse(&a, n, own->argv));
    resolve_(cfg);
    return SP_OK;
}

sp_status sp_train_config_check(const sp_train_config *c) {
    if (!c->data) return SP_FAIL(SP_ERR_ARG, "--data TRAIN.h5 is required");
    if (!c->model) return SP_FAIL(SP_ERR_ARG, "--model SPEC is required");
    if (strcmp(c->loss, "auto") && strcmp(c->loss, "xent") && strcmp(c->loss, "mse"))
        return SP_FAIL(SP_ERR_ARG, "--loss must be xent or mse, got '%s'", c->loss);
    if (strcmp(c->checkpoint_errors, "fail") && strcmp(c->checkpoint_errors, "warn"))
        return SP_FAIL(SP_ERR_ARG, "--checkpoint-errors must be fail or warn, got '%s'",
                       c->checkpoint_errors);
    if (strcmp(c->on_nonfinite, "stop") && strcmp(c->on_nonfinite, "skip"))
        return SP_FAIL(SP_ERR_ARG, "--on-nonfinite must be stop or skip, got '%s'",
                       c->on_nonfinite);
    if ((c->checkpoint_every > 0 || c->checkpoint_every_minutes > 0) && !c->checkpoint_dir)
        return SP_FAIL(SP_ERR_ARG, "--checkpoint-every needs --checkpoint-dir DIR");
    if (c->resume && !strcmp(c->resume, "auto") && !c->checkpoint_dir)
        return SP_FAIL(SP_ERR_ARG, "--resume auto needs --checkpoint-dir DIR");
    if (c->resume && c->init_from)
        return SP_FAIL(SP_ERR_ARG, "--resume and --init-from exclude each other");
    if (c->json && !c->dry_run) return SP_FAIL(SP_ERR_ARG, "--json goes with --dry-run");
    if (c->layer_stats && !c->metrics)
        return SP_FAIL(SP_ERR_ARG, "--layer-stats writes to the metrics file: add --metrics FILE");
    if (strcmp(c->bn_stats, "global") && strcmp(c->bn_stats, "local"))
        return SP_FAIL(SP_ERR_ARG, "--bn-stats must be global or local, got '%s'", c->bn_stats);
    if (strcmp(c->shuffle, "global") && strcmp(c->shuffle, "shards"))
        return SP_FAIL(SP_ERR_ARG, "--shuffle must be global or shards, got '%s'", c->shuffle);
    if (c->no_shuffle && !strcmp(c->shuffle, "shards"))
        return SP_FAIL(SP_ERR_ARG, "--no-shuffle and --shuffle shards exclude each other");
    if (c->micro_batch > 0 && !c->deterministic)
        return SP_FAIL(SP_ERR_ARG, "--micro-batch goes with --deterministic");
    if (c->keep_best && !c->checkpoint_dir)
        return SP_FAIL(SP_ERR_ARG, "--keep-best writes DIR/best.h5: add --checkpoint-dir DIR");
    if (c->keep_best && !c->val)
        return SP_FAIL(SP_ERR_ARG, "--keep-best compares validation results: add --val VAL.h5");
    if (c->early_stop > 0 && !c->val)
        return SP_FAIL(SP_ERR_ARG, "--early-stop watches validation results: add --val VAL.h5");
    if (c->best_metric && !c->keep_best && c->early_stop == 0)
        return SP_FAIL(SP_ERR_ARG, "--best-metric goes with --keep-best or --early-stop");
    if (c->best_metric && strcmp(c->best_metric, "val_loss") &&
        strcmp(c->best_metric, "val_accuracy"))
        return SP_FAIL(SP_ERR_ARG, "--best-metric must be val_loss or val_accuracy, got '%s'",
                       c->best_metric);
    if (c->accum_steps < 1 || c->batch % c->accum_steps)
        return SP_FAIL(SP_ERR_ARG,
                       "--accum-steps %lld must be >= 1 and divide --batch %lld (each step's "
                       "batch comes in micro-steps of batch / K samples)",
                       (long long)c->accum_steps, (long long)c->batch);
    /* the micro-batches of a step are then those of the whole batch: the same exact sums */
    if (c->deterministic && c->accum_steps > 1 && c->micro_batch > 0 &&
        (c->batch / c->accum_steps) % c->micro_batch)
        return SP_FAIL(SP_ERR_ARG,
                       "--deterministic --accum-steps %lld: --micro-batch %lld must divide the "
                       "micro-step's batch %lld / %lld = %lld",
                       (long long)c->accum_steps, (long long)c->micro_batch, (long long)c->batch,
                       (long long)c->accum_steps, (long long)(c->batch / c->accum_steps));
    if (c->network) SP_CHECK(sp_train_check_network(c->network, c->dry_run));
    if (c->augment) { /* the sizes are checked against the data when the loader is made */
        sp_augment a;
        const sp_status st = sp_augment_parse(&a, c->augment);
        if (st != SP_OK) {
            char why[1024];
            snprintf(why, sizeof why, "%s", sp_last_error());
            return SP_FAIL(st, "--%s", why);
        }
    }
    return SP_OK;
}

char *sp_train_config_format(const sp_train_config *cfg) {
    sp_train_config c = *cfg;
    sp_arg_spec specs[N_SPECS];
    const int n = make_specs_(&c, specs);
    size_t cap = 8192, used = 0;
    char *out = malloc(cap);
    if (!out) return NULL;
    out[0] = '\0';
    for (int i = 0; i < n; ++i) {
        const sp_arg_spec *s = &specs[i];
        char val[1100];
        switch (s->type) {
        case SP_ARG_STRING: {
            const char *v = *(const char **)s->dest;
            if (!v || !strcmp(s->name, "config")) continue;
            snprintf(val, sizeof val, "%s", v);
            break;
        }
        case SP_ARG_INT:
            if (*(int64_t *)s->dest < 0) continue; /* unset (max-steps) */
            snprintf(val, sizeof val, "%lld", (long long)*(int64_t *)s->dest);
            break;
        case SP_ARG_DOUBLE: {
            /* the shortest form that reads back as the same double */
            const double v = *(double *)s->dest;
            for (int prec = 6; prec <= 17; ++prec) {
                snprintf(val, sizeof val, "%.*g", prec, v);
                if (strtod(val, NULL) == v) break;
            }
            break;
        }
        case SP_ARG_BOOL:
            snprintf(val, sizeof val, "%s", *(bool *)s->dest ? "true" : "false");
            break;
        }
        size_t need = strlen(s->name) + strlen(val) + 5;
        if (used + need >= cap) {
            char *grown = realloc(out, cap * 2 + need);
            if (!grown) {
                free(out);
                return NULL;
            }
            out = grown, cap = cap * 2 + need;
        }
        used += (size_t)snprintf(out + used, cap - used, "%s = %s\n", s->name, val);
    }
    return out;
}
