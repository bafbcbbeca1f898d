#include "model/spec.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/status.h"

#define SP_MAX_ARGS   4
#define SP_MAX_LAYERS 4096

/* What each layer accepts: argument names in positional order, how many are required. */
typedef struct kind_info {
    const char *name;
    sp_layer_kind kind;
    int nreq, nargs;
    const char *args[SP_MAX_ARGS];
    const char *usage;
} kind_info;

static const kind_info kinds_[] = {
    {"dense", SP_LAYER_DENSE, 1, 1, {"units"}, "dense:UNITS"},
    {"conv2d",
     SP_LAYER_CONV2D,
     2,
     4,
     {"out_channels", "kernel", "stride", "pad"},
     "conv2d:OUT_CHANNELS:KERNEL[:stride=S][:pad=P]"},
    {"maxpool", SP_LAYER_MAXPOOL, 1, 2, {"kernel", "stride"}, "maxpool:K[:stride=S]"},
    {"avgpool", SP_LAYER_AVGPOOL, 1, 2, {"kernel", "stride"}, "avgpool:K[:stride=S]"},
    {"flatten", SP_LAYER_FLATTEN, 0, 0, {0}, "flatten"},
    {"relu", SP_LAYER_RELU, 0, 0, {0}, "relu"},
    {"leaky_relu", SP_LAYER_LEAKY_RELU, 0, 1, {"slope"}, "leaky_relu[:SLOPE]"},
    {"tanh", SP_LAYER_TANH, 0, 0, {0}, "tanh"},
    {"sigmoid", SP_LAYER_SIGMOID, 0, 0, {0}, "sigmoid"},
    {"gelu", SP_LAYER_GELU, 0, 0, {0}, "gelu"},
    {"dropout", SP_LAYER_DROPOUT, 1, 1, {"p"}, "dropout:P"},
};
static const int nkinds_ = (int)(sizeof kinds_ / sizeof kinds_[0]);

const char *sp_layer_kind_name(sp_layer_kind kind) {
    for (int i = 0; i < nkinds_; ++i)
        if (kinds_[i].kind == kind) return kinds_[i].name;
    return "?";
}

/* Trim blanks in place; returns the start. */
static char *trim_(char *s) {
    while (isspace((unsigned char)*s)) ++s;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1])) *--e = '\0';
    return s;
}

static sp_status bad_(int index, const char *text, const kind_info *k, const char *what) {
    if (k)
        return SP_FAIL(SP_ERR_SPEC, "model spec: layer %d '%s': %s (expected %s)", index, text,
                       what, k->usage);
    return SP_FAIL(SP_ERR_SPEC, "model spec: layer %d '%s': %s", index, text, what);
}

/* Parse one argument value for k->args[a] into the layer. */
static sp_status set_arg_(sp_layer_spec *L, const kind_info *k, int a, const char *val, int index) {
    char msg[160];
    const char *name = k->args[a];
    char *end = NULL;
    errno = 0;
    if (!strcmp(name, "slope") || !strcmp(name, "p")) {
        double v = strtod(val, &end);
        if (!*val || *end || errno || !isfinite(v)) {
            snprintf(msg, sizeof msg, "%s must be a number, got '%s'", name, val);
            return bad_(index, L->text, k, msg);
        }
        if (!strcmp(name, "p")) {
            if (!(v >= 0.0 && v < 1.0)) {
                snprintf(msg, sizeof msg, "dropout probability must be in [0, 1), got %s", val);
                return bad_(index, L->text, k, msg);
            }
            L->p = (float)v;
        } else {
            L->slope = (float)v;
        }
        return SP_OK;
    }
    long v = strtol(val, &end, 10);
    const long lo = !strcmp(name, "pad") ? 0 : 1;
    if (!*val || *end || errno || v < lo || v > 1000000) {
        snprintf(msg, sizeof msg, "%s must be an integer %s, got '%s'", name, lo ? ">= 1" : ">= 0",
                 val);
        return bad_(index, L->text, k, msg);
    }
    if (!strcmp(name, "units"))
        L->units = (int)v;
    else if (!strcmp(name, "out_channels"))
        L->out_channels = (int)v;
    else if (!strcmp(name, "kernel"))
        L->kernel = (int)v;
    else if (!strcmp(name, "stride"))
        L->stride = (int)v;
    else if (!strcmp(name, "pad"))
        L->pad = (int)v;
    return SP_OK;
}

static sp_status parse_layer_(char *tok, int index, sp_layer_spec *L) {
    memset(L, 0, sizeof *L);
    snprintf(L->text, sizeof L->text, "%s", tok);
    if (!*tok)
        return bad_(index, "", NULL, "empty layer (two commas in a row, or a trailing comma?)");
    char *fields[16];
    int nf = 0;
    for (char *save = NULL, *f = strtok_r(tok, ":", &save); f; f = strtok_r(NULL, ":", &save)) {
        if (nf == 16) return bad_(index, L->text, NULL, "too many arguments");
        fields[nf++] = trim_(f);
    }
    if (nf == 0 || tok[0] == ':') return bad_(index, L->text, NULL, "missing layer name");
    const kind_info *k = NULL;
    for (int i = 0; i < nkinds_; ++i)
        if (!strcmp(fields[0], kinds_[i].name)) k = &kinds_[i];
    if (!k) {
        char msg[256];
        snprintf(msg, sizeof msg,
                 "unknown layer '%.40s' (expected one of dense, conv2d, maxpool, avgpool, "
                 "flatten, relu, leaky_relu, tanh, sigmoid, gelu, dropout)",
                 fields[0]);
        return bad_(index, L->text, NULL, msg);
    }
    L->kind = k->kind;
    L->slope = 0.01f;
    bool given[SP_MAX_ARGS] = {false};
    bool keyword_seen = false;
    int npos = 0;
    for (int f = 1; f < nf; ++f) {
        char msg[160];
        char *eq = strchr(fields[f], '=');
        int a;
        const char *val;
        if (eq) {
            *eq = '\0';
            const char *key = trim_(fields[f]);
            val = trim_(eq + 1);
            for (a = 0; a < k->nargs; ++a)
                if (!strcmp(key, k->args[a])) break;
            if (a == k->nargs) {
                snprintf(msg, sizeof msg, "unknown argument '%.40s'", key);
                return bad_(index, L->text, k, msg);
            }
            keyword_seen = true;
        } else {
            if (keyword_seen)
                return bad_(index, L->text, k, "a positional argument after a key=value one");
            a = npos++;
            val = fields[f];
            if (a >= k->nargs) return bad_(index, L->text, k, "too many arguments");
        }
        if (given[a]) {
            snprintf(msg, sizeof msg, "argument '%s' given twice", k->args[a]);
            return bad_(index, L->text, k, msg);
        }
        given[a] = true;
        SP_CHECK(set_arg_(L, k, a, val, index));
    }
    for (int a = 0; a < k->nreq; ++a)
        if (!given[a]) {
            char msg[160];
            snprintf(msg, sizeof msg, "missing %s", k->args[a]);
            return bad_(index, L->text, k, msg);
        }
    if (k->kind == SP_LAYER_CONV2D && !given[2]) L->stride = 1;
    if ((k->kind == SP_LAYER_MAXPOOL || k->kind == SP_LAYER_AVGPOOL) && !given[1])
        L->stride = L->kernel;
    return SP_OK;
}

sp_status sp_spec_parse(const char *spec, sp_layer_spec **layers, int *n) {
    *layers = NULL;
    *n = 0;
    if (!spec)
        return SP_FAIL(SP_ERR_SPEC, "model spec: missing (e.g. --model dense:128,relu,dense:10)");
    size_t len = strlen(spec);
    char *copy = malloc(len + 1);
    if (!copy) return SP_FAIL(SP_ERR_NOMEM, "model spec: out of memory");
    memcpy(copy, spec, len + 1);
    if (!*trim_(copy)) {
        free(copy);
        return SP_FAIL(SP_ERR_SPEC, "model spec: empty (e.g. --model dense:128,relu,dense:10)");
    }
    int cap = 1;
    for (const char *p = spec; *p; ++p) cap += (*p == ',');
    if (cap > SP_MAX_LAYERS) {
        free(copy);
        return SP_FAIL(SP_ERR_SPEC, "model spec: %d layers, more than the limit of %d", cap,
                       SP_MAX_LAYERS);
    }
    sp_layer_spec *L = calloc((size_t)cap, sizeof *L);
    if (!L) {
        free(copy);
        return SP_FAIL(SP_ERR_NOMEM, "model spec: out of memory");
    }
    /* split on commas by hand: strtok would merge empty layers */
    int count = 0;
    char *start = copy;
    for (char *p = copy;; ++p) {
        if (*p == ',' || *p == '\0') {
            const bool last = (*p == '\0');
            *p = '\0';
            sp_status st = parse_layer_(trim_(start), count, &L[count]);
            if (st != SP_OK) {
                free(copy);
                free(L);
                return st;
            }
            ++count;
            if (last) break;
            start = p + 1;
        }
    }
    free(copy);
    *layers = L;
    *n = count;
    return SP_OK;
}
