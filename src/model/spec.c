/* The model spec (model/spec.h): a recursive-descent parser from text to graph nodes. */
#include "model/spec.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/status.h"

#define SP_MAX_ARGS   5
#define SP_MAX_LAYERS 4096
#define SP_MAX_DEPTH  8  /* nested residual / repeat blocks (a module path stays < 64) */
#define SP_MAX_NAMES  64 /* distinct save:NAME names */

/* What each layer accepts: argument names in positional order, how many are required. */
typedef struct kind_info {
    const char *name;
    sp_layer_kind kind;
    int nreq, nargs;
    const char *args[SP_MAX_ARGS];
    const char *usage;
    int npos;    /* args that may be given by position: the first npos (-1: all) */
    bool no_key; /* only by position (upsample:S and the names) */
} kind_info;

static const kind_info kinds_[] = {
    {"dense",
     SP_LAYER_DENSE,
     1,
     3,
     {"units", "bias", "tie"},
     "dense:UNITS[:bias=0][:tie]",
     1,
     false},
    {"conv2d",
     SP_LAYER_CONV2D,
     2,
     5,
     {"out_channels", "kernel", "stride", "pad", "bias"},
     "conv2d:OUT_CHANNELS:KERNEL[:stride=S][:pad=P][:bias=0]",
     4,
     false},
    {"maxpool", SP_LAYER_MAXPOOL, 1, 2, {"kernel", "stride"}, "maxpool:K[:stride=S]", -1, false},
    {"avgpool", SP_LAYER_AVGPOOL, 1, 2, {"kernel", "stride"}, "avgpool:K[:stride=S]", -1, false},
    {"flatten", SP_LAYER_FLATTEN, 0, 0, {0}, "flatten", -1, false},
    {"relu", SP_LAYER_RELU, 0, 0, {0}, "relu", -1, false},
    {"leaky_relu", SP_LAYER_LEAKY_RELU, 0, 1, {"slope"}, "leaky_relu[:SLOPE]", -1, false},
    {"tanh", SP_LAYER_TANH, 0, 0, {0}, "tanh", -1, false},
    {"sigmoid", SP_LAYER_SIGMOID, 0, 0, {0}, "sigmoid", -1, false},
    {"gelu", SP_LAYER_GELU, 0, 1, {"approximate"}, "gelu[:tanh]", -1, false},
    {"dropout", SP_LAYER_DROPOUT, 1, 1, {"p"}, "dropout:P", -1, false},
    {"batchnorm",
     SP_LAYER_BATCHNORM,
     0,
     2,
     {"eps", "momentum"},
     "batchnorm[:eps=E][:momentum=M]",
     0,
     false},
    {"layernorm", SP_LAYER_LAYERNORM, 0, 1, {"eps"}, "layernorm[:eps=E]", 0, false},
    {"gap", SP_LAYER_GAP, 0, 0, {0}, "gap", -1, false},
    {"upsample", SP_LAYER_UPSAMPLE, 1, 1, {"scale"}, "upsample:S", 1, true},
    {"add", SP_LAYER_ADD, 1, 1, {"name"}, "add:NAME", 1, true},
    {"concat", SP_LAYER_CONCAT, 1, 1, {"name"}, "concat:NAME", 1, true},
    {"embedding", SP_LAYER_EMBEDDING, 2, 2, {"vocab", "dim"}, "embedding:VOCAB:DIM", -1, false},
    {"pos_embedding", SP_LAYER_POS_EMBEDDING, 0, 0, {0}, "pos_embedding", -1, false},
    {"attention",
     SP_LAYER_ATTENTION,
     1,
     2,
     {"heads", "bias"},
     "attention:heads=H[:bias=0]",
     1,
     false},
};
static const int nkinds_ = (int)(sizeof kinds_ / sizeof kinds_[0]);
#define SP_KIND_LIST                                                                               \
    "dense, conv2d, maxpool, avgpool, flatten, relu, leaky_relu, tanh, sigmoid, gelu, dropout, "   \
    "batchnorm, layernorm, gap, upsample, embedding, pos_embedding, attention, save, add, "        \
    "concat, residual(...), repeat:N(...)"

const char *sp_layer_kind_name(sp_layer_kind kind) {
    for (int i = 0; i < nkinds_; ++i)
        if (kinds_[i].kind == kind) return kinds_[i].name;
    return "?";
}

/* The parser's state: the text (comments blanked), the cursor, the nodes so far, the names. */
typedef struct parser {
    const char *src; /* the spec as given, for positions */
    char *s;         /* a copy with comments replaced by blanks */
    size_t pos;
    sp_layer_spec *nodes;
    int n, cap, depth;
    struct {
        char name[32];
        int node;
    } names[SP_MAX_NAMES];
    int nnames;
} parser;

/* Trim blanks in place; returns the start. */
static char *trim_(char *s) {
    while (isspace((unsigned char)*s)) ++s;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1])) *--e = '\0';
    return s;
}

static void where_(const parser *P, size_t at, int *line, int *col) {
    *line = 1, *col = 1;
    for (size_t i = 0; i < at && P->src[i]; ++i) {
        if (P->src[i] == '\n')
            ++*line, *col = 1;
        else
            ++*col;
    }
}

/* "model spec: layer 3.f.1 'conv2d:8' (line 2, column 5): what (expected usage)" */
static sp_status bad_(const sp_layer_spec *L, const kind_info *k, const char *what) {
    char at[48];
    if (L->line > 1)
        snprintf(at, sizeof at, "line %d, column %d", L->line, L->column);
    else
        snprintf(at, sizeof at, "column %d", L->column);
    if (k)
        return SP_FAIL(SP_ERR_SPEC, "model spec: layer %s '%s' (%s): %s (expected %s)", L->path,
                       L->text, at, what, k->usage);
    return SP_FAIL(SP_ERR_SPEC, "model spec: layer %s '%s' (%s): %s", L->path, L->text, at, what);
}

/* An error at the cursor, outside any one layer: "model spec: at column 12 (near '...'): ..." */
static sp_status bad_at_(const parser *P, size_t at, const char *what) {
    int line, col;
    where_(P, at, &line, &col);
    char near[40];
    if (at >= strlen(P->src))
        snprintf(near, sizeof near, "the end of the spec");
    else
        snprintf(near, sizeof near, "'%.20s'", P->src + at);
    for (char *c = near; *c; ++c)
        if (*c == '\n') *c = ' ';
    if (line > 1)
        return SP_FAIL(SP_ERR_SPEC, "model spec: at line %d, column %d (near %s): %s", line, col,
                       near, what);
    return SP_FAIL(SP_ERR_SPEC, "model spec: at column %d (near %s): %s", col, near, what);
}

static bool valid_name_(const char *s) {
    if (!(isalpha((unsigned char)*s) || *s == '_') || strlen(s) > 31) return false;
    for (; *s; ++s)
        if (!(isalnum((unsigned char)*s) || *s == '_')) return false;
    return true;
}

/* Parse one argument value for k->args[a] into the layer; name arguments go to *name. */
static sp_status set_arg_(sp_layer_spec *L, const kind_info *k, int a, const char *val,
                          char *name) {
    char msg[160];
    const char *arg = k->args[a];
    char *end = NULL;
    errno = 0;
    if (!strcmp(arg, "name")) {
        if (!valid_name_(val)) {
            snprintf(msg, sizeof msg,
                     "'%.40s' is not a name (letters, digits and _, not starting with a digit, "
                     "at most 31)",
                     val);
            return bad_(L, k, msg);
        }
        snprintf(name, 32, "%s", val);
        return SP_OK;
    }
    if (!strcmp(arg, "approximate")) { /* nn.GELU(approximate='none' | 'tanh') */
        if (strcmp(val, "tanh") && strcmp(val, "none")) {
            snprintf(msg, sizeof msg, "approximate must be tanh or none, got '%.40s'", val);
            return bad_(L, k, msg);
        }
        L->tanh = !strcmp(val, "tanh");
        return SP_OK;
    }
    if (!strcmp(arg, "slope") || !strcmp(arg, "p") || !strcmp(arg, "eps") ||
        !strcmp(arg, "momentum")) {
        double v = strtod(val, &end);
        if (!*val || *end || errno || !isfinite(v)) {
            snprintf(msg, sizeof msg, "%s must be a number, got '%s'", arg, val);
            return bad_(L, k, msg);
        }
        if (!strcmp(arg, "p")) {
            if (!(v >= 0.0 && v < 1.0)) {
                snprintf(msg, sizeof msg, "dropout probability must be in [0, 1), got %s", val);
                return bad_(L, k, msg);
            }
            L->p = (float)v;
        } else if (!strcmp(arg, "eps")) {
            if (!(v > 0.0 && v < 1.0)) {
                snprintf(msg, sizeof msg, "eps must be in (0, 1), got %s", val);
                return bad_(L, k, msg);
            }
            L->eps = (float)v;
        } else if (!strcmp(arg, "momentum")) {
            if (!(v >= 0.0 && v <= 1.0)) {
                snprintf(msg, sizeof msg, "momentum must be in [0, 1], got %s", val);
                return bad_(L, k, msg);
            }
            L->momentum = (float)v;
        } else {
            L->slope = (float)v;
        }
        return SP_OK;
    }
    long v = strtol(val, &end, 10);
    const bool flag = !strcmp(arg, "bias") || !strcmp(arg, "tie");
    const long lo = (!strcmp(arg, "pad") || flag) ? 0 : 1, hi = flag ? 1 : 1000000;
    if (!*val || *end || errno || v < lo || v > hi) {
        if (flag)
            snprintf(msg, sizeof msg, "%s must be 0 or 1, got '%s'", arg, val);
        else
            snprintf(msg, sizeof msg, "%s must be an integer %s, got '%s'", arg,
                     lo ? ">= 1" : ">= 0", val);
        return bad_(L, k, msg);
    }
    if (!strcmp(arg, "units"))
        L->units = (int)v;
    else if (!strcmp(arg, "out_channels"))
        L->out_channels = (int)v;
    else if (!strcmp(arg, "kernel"))
        L->kernel = (int)v;
    else if (!strcmp(arg, "stride"))
        L->stride = (int)v;
    else if (!strcmp(arg, "pad"))
        L->pad = (int)v;
    else if (!strcmp(arg, "scale"))
        L->scale = (int)v;
    else if (!strcmp(arg, "vocab"))
        L->vocab = (int)v;
    else if (!strcmp(arg, "dim"))
        L->units = (int)v;
    else if (!strcmp(arg, "heads"))
        L->heads = (int)v;
    else if (!strcmp(arg, "tie"))
        L->tie = v != 0;
    else if (flag)
        L->bias = v != 0;
    return SP_OK;
}

/* One layer item `name[:arg...]` (tok: its text, trimmed, NUL-terminated, writable) into L,
 * whose path, text and position are set. save:NAME and the names of add/concat go to *name. */
static sp_status parse_layer_(char *tok, sp_layer_spec *L, const kind_info **kind, char *name) {
    *kind = NULL;
    if (!*tok) return bad_(L, NULL, "empty layer (two commas in a row, or a trailing comma?)");
    char *fields[16];
    int nf = 0;
    for (char *save = NULL, *f = strtok_r(tok, ":", &save); f; f = strtok_r(NULL, ":", &save)) {
        if (nf == 16) return bad_(L, NULL, "too many arguments");
        fields[nf++] = trim_(f);
    }
    if (nf == 0 || tok[0] == ':') return bad_(L, NULL, "missing layer name");
    static const kind_info save_ = {"save", SP_LAYER_ADD, 1, 1, {"name"}, "save:NAME", 1, true};
    const kind_info *k = !strcmp(fields[0], "save") ? &save_ : NULL;
    for (int i = 0; i < nkinds_ && !k; ++i)
        if (!strcmp(fields[0], kinds_[i].name)) k = &kinds_[i];
    if (!k) {
        char msg[320];
        if (!strcmp(fields[0], "residual") || !strcmp(fields[0], "repeat"))
            snprintf(msg, sizeof msg, "'%s' needs a block in parentheses (expected %s)", fields[0],
                     fields[0][1] == 'e' && fields[0][2] == 's' ? "residual(f) or residual(f | g)"
                                                                : "repeat:N(...)");
        else
            snprintf(msg, sizeof msg, "unknown layer '%.40s' (expected one of " SP_KIND_LIST ")",
                     fields[0]);
        return bad_(L, NULL, msg);
    }
    *kind = k;
    L->kind = k->kind;
    L->slope = 0.01f;
    L->eps = 1e-5f;
    L->momentum = 0.1f;
    L->bias = true;
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
            if (a < k->nargs && k->no_key) {
                snprintf(msg, sizeof msg, "'%s' is given by position only", key);
                return bad_(L, k, msg);
            }
            if (a == k->nargs) {
                snprintf(msg, sizeof msg, "unknown argument '%.40s'", key);
                return bad_(L, k, msg);
            }
            keyword_seen = true;
        } else if (k->kind == SP_LAYER_DENSE && !strcmp(fields[f], "tie")) {
            a = 2, val = "1"; /* the flag alone: dense:V:tie */
        } else {
            if (keyword_seen) return bad_(L, k, "a positional argument after a key=value one");
            a = npos++;
            val = fields[f];
            if (a >= k->nargs) return bad_(L, k, "too many arguments");
            if (k->npos >= 0 && a >= k->npos) {
                snprintf(msg, sizeof msg, "'%s' is given as %s=VALUE", k->args[a], k->args[a]);
                return bad_(L, k, msg);
            }
        }
        if (given[a]) {
            snprintf(msg, sizeof msg, "argument '%s' given twice", k->args[a]);
            return bad_(L, k, msg);
        }
        given[a] = true;
        SP_CHECK(set_arg_(L, k, a, val, name));
    }
    for (int a = 0; a < k->nreq; ++a)
        if (!given[a]) {
            char msg[160];
            snprintf(msg, sizeof msg, "missing %s", k->args[a]);
            return bad_(L, k, msg);
        }
    if (k->kind == SP_LAYER_CONV2D && !given[2]) L->stride = 1;
    if (k->kind == SP_LAYER_DENSE && L->tie) { /* GPT-2's output projection has no bias */
        if (given[1] && L->bias) return bad_(L, k, "a tied projection has no bias");
        L->bias = false;
    }
    if ((k->kind == SP_LAYER_MAXPOOL || k->kind == SP_LAYER_AVGPOOL) && !given[1])
        L->stride = L->kernel;
    return SP_OK;
}

static void skip_blanks_(parser *P) {
    while (isspace((unsigned char)P->s[P->pos])) ++P->pos;
}

/* A new node at the end of the list (its fields zero), or NULL when the graph is too large. */
static sp_layer_spec *push_(parser *P) {
    if (P->n == SP_MAX_LAYERS) return NULL;
    if (P->n == P->cap) {
        const int cap = P->cap ? 2 * P->cap : 16;
        sp_layer_spec *g = realloc(P->nodes, (size_t)cap * sizeof *g);
        if (!g) return NULL;
        P->nodes = g, P->cap = cap;
    }
    sp_layer_spec *L = &P->nodes[P->n++];
    memset(L, 0, sizeof *L);
    return L;
}

static sp_status too_large_(parser *P) {
    if (P->n == SP_MAX_LAYERS)
        return SP_FAIL(SP_ERR_SPEC, "model spec: more than %d layers (after repeat)",
                       SP_MAX_LAYERS);
    return SP_FAIL(SP_ERR_NOMEM, "model spec: out of memory");
}

static int find_name_(const parser *P, const char *name) {
    for (int i = P->nnames - 1; i >= 0; --i)
        if (!strcmp(P->names[i].name, name)) return P->names[i].node;
    return SP_SPEC_NONE;
}

static sp_status parse_seq_(parser *P, int in, const char *prefix, int *out);

/* attention at path P as GPT-2 has it: P.qkv (a dense of 3C units), the causal core at P, and
 * P.proj (a dense of C units), each fed by the one before; *cur moves to P.proj. */
static sp_status push_attention_(parser *P, const sp_layer_spec *A, int *cur) {
    static const char *const part[3] = {".qkv", "", ".proj"};
    for (int e = 0; e < 3; ++e) {
        if (strlen(A->path) + strlen(part[e]) >= sizeof A->path)
            return bad_at_(P, P->pos, "blocks nested too deep (module path too long)");
        sp_layer_spec *N = push_(P);
        if (!N) return too_large_(P);
        *N = *A;
        snprintf(N->path, sizeof N->path, "%s%s", A->path, part[e]);
        N->in[0] = *cur;
        if (e != 1) {
            N->kind = SP_LAYER_DENSE;
            N->units_x = e == 0 ? 3 : 1;
        }
        *cur = P->n - 1;
    }
    return SP_OK;
}

/* The path of item `index` of a sequence: "3", or prefix "3.f" + ".3". */
static bool item_path_(char *path, size_t size, const char *prefix, int index) {
    int w =
        *prefix ? snprintf(path, size, "%s.%d", prefix, index) : snprintf(path, size, "%d", index);
    return w > 0 && (size_t)w < size;
}

/* A block item: `residual(f [| g])` or `repeat:N(seq)` (head: its text before the '(', trimmed;
 * the cursor is on the '('). The value flowing out goes to *cur. */
static sp_status parse_block_(parser *P, char *head, size_t at, const char *path, int *cur) {
    sp_layer_spec where = {0};
    snprintf(where.path, sizeof where.path, "%s", path);
    snprintf(where.text, sizeof where.text, "%.60s(", head);
    where_(P, at, &where.line, &where.column);
    long reps = 0;
    const bool residual = !strcmp(head, "residual");
    if (!residual) {
        char *colon = strchr(head, ':'), *end = NULL;
        if (!colon || strncmp(head, "repeat", (size_t)(colon - head)) ||
            (size_t)(colon - head) != 6 || !*trim_(colon + 1))
            return bad_(&where, NULL,
                        "only residual(...) and repeat:N(...) take a block in parentheses");
        errno = 0;
        reps = strtol(trim_(colon + 1), &end, 10);
        if (*end || errno || reps < 1 || reps > SP_MAX_LAYERS)
            return bad_(&where, NULL, "repeat count must be an integer in [1, 4096]");
    }
    if (++P->depth > SP_MAX_DEPTH) return bad_(&where, NULL, "blocks nested more than 8 deep");
    ++P->pos; /* '(' */
    const int x = *cur;
    if (residual) {
        char sub[80];
        int f = x, g = x;
        snprintf(sub, sizeof sub, "%s.f", path);
        SP_CHECK(parse_seq_(P, x, sub, &f));
        if (f == x) return bad_(&where, NULL, "the residual branch f has no layers");
        if (P->s[P->pos] == '|') {
            ++P->pos;
            snprintf(sub, sizeof sub, "%s.g", path);
            SP_CHECK(parse_seq_(P, x, sub, &g));
        }
        if (P->s[P->pos] != ')')
            return bad_at_(P, P->pos, "expected ')' or '|' to continue the residual block");
        sp_layer_spec *J = push_(P);
        if (!J) return too_large_(P);
        *J = where;
        snprintf(J->text, sizeof J->text, "residual");
        J->kind = SP_LAYER_ADD;
        J->in[0] = f, J->in[1] = g;
        *cur = P->n - 1;
    } else {
        const size_t body = P->pos;
        for (long r = 0; r < reps; ++r) {
            char sub[80];
            snprintf(sub, sizeof sub, "%s.%ld", path, r);
            P->pos = body;
            SP_CHECK(parse_seq_(P, *cur, sub, cur));
            if (P->s[P->pos] != ')')
                return bad_at_(P, P->pos, "expected ')' to close the repeat block");
            if (r == 0 && *cur == x) return bad_(&where, NULL, "the repeated block has no layers");
        }
    }
    ++P->pos; /* ')' */
    --P->depth;
    return SP_OK;
}

/* seq := item { ',' item }, starting from the value `in`; the last value goes to *out. Stops
 * at the end of the text or before a ')' or '|' (the caller checks which it expected). */
static sp_status parse_seq_(parser *P, int in, const char *prefix, int *out) {
    int cur = in;
    for (int index = 0;; ++index) {
        char path[64];
        if (!item_path_(path, sizeof path, prefix, index))
            return bad_at_(P, P->pos, "blocks nested too deep (module path too long)");
        skip_blanks_(P);
        const size_t at = P->pos;
        size_t end = at;
        while (P->s[end] && !strchr(",()|", P->s[end])) ++end;
        const char stop = P->s[end];
        P->s[end] = '\0';
        char *tok = trim_(P->s + at);
        if (stop == '(') {
            char head[64];
            snprintf(head, sizeof head, "%s", tok);
            P->s[end] = stop;
            P->pos = end;
            SP_CHECK(parse_block_(P, head, at, path, &cur));
            skip_blanks_(P);
        } else {
            sp_layer_spec L = {0};
            snprintf(L.path, sizeof L.path, "%s", path);
            where_(P, at, &L.line, &L.column);
            const kind_info *k = NULL;
            char name[32] = "";
            char item[256]; /* parse_layer_ cuts its text up; a repeat parses it again */
            const int w = snprintf(item, sizeof item, "%s", tok);
            snprintf(L.text, sizeof L.text, "%s", tok);
            sp_status st = w < (int)sizeof item ? parse_layer_(item, &L, &k, name)
                                                : bad_(&L, NULL, "more than 255 characters");
            P->s[end] = stop;
            P->pos = end;
            if (st != SP_OK) return st;
            if (!strcmp(k->name, "save")) {
                if (P->nnames == SP_MAX_NAMES && find_name_(P, name) == SP_SPEC_NONE)
                    return bad_(&L, k, "more than 64 names");
                int slot = P->nnames;
                for (int i = 0; i < P->nnames; ++i)
                    if (!strcmp(P->names[i].name, name)) slot = i;
                if (slot == P->nnames) P->nnames++;
                snprintf(P->names[slot].name, sizeof P->names[slot].name, "%s", name);
                P->names[slot].node = cur;
            } else {
                L.in[0] = cur, L.in[1] = SP_SPEC_NONE;
                if (k->kind == SP_LAYER_ADD || k->kind == SP_LAYER_CONCAT) {
                    L.in[1] = find_name_(P, name);
                    if (L.in[1] == SP_SPEC_NONE) {
                        char msg[128];
                        snprintf(msg, sizeof msg, "no value saved as '%s' before it (save:%s)",
                                 name, name);
                        return bad_(&L, k, msg);
                    }
                }
                if (k->kind == SP_LAYER_ATTENTION) {
                    SP_CHECK(push_attention_(P, &L, &cur));
                } else {
                    sp_layer_spec *N = push_(P);
                    if (!N) return too_large_(P);
                    *N = L;
                    cur = P->n - 1;
                }
            }
        }
        if (P->s[P->pos] != ',') break;
        ++P->pos;
    }
    *out = cur;
    return SP_OK;
}

sp_status sp_spec_parse(const char *spec, sp_layer_spec **nodes, int *n) {
    *nodes = NULL;
    *n = 0;
    if (!spec)
        return SP_FAIL(SP_ERR_SPEC, "model spec: missing (e.g. --model dense:128,relu,dense:10)");
    parser P = {.src = spec};
    const size_t len = strlen(spec);
    P.s = malloc(len + 1);
    if (!P.s) return SP_FAIL(SP_ERR_NOMEM, "model spec: out of memory");
    memcpy(P.s, spec, len + 1);
    bool comment = false; /* comments become blanks: positions stay those of spec */
    for (char *c = P.s; *c; ++c) {
        if (*c == '#') comment = true;
        if (*c == '\n') comment = false;
        if (comment) *c = ' ';
    }
    sp_status st = SP_OK;
    char *probe = malloc(len + 1);
    if (!probe) st = SP_FAIL(SP_ERR_NOMEM, "model spec: out of memory");
    if (st == SP_OK) {
        memcpy(probe, P.s, len + 1);
        if (!*trim_(probe))
            st = SP_FAIL(SP_ERR_SPEC, "model spec: empty (e.g. --model dense:128,relu,dense:10)");
    }
    free(probe);
    int last = SP_SPEC_INPUT; /* the output: always the last node (a save only names it) */
    if (st == SP_OK) st = parse_seq_(&P, SP_SPEC_INPUT, "", &last);
    if (st == SP_OK && P.s[P.pos] == ')')
        st = bad_at_(&P, P.pos, "a ')' without its '('");
    else if (st == SP_OK && P.s[P.pos] == '|')
        st = bad_at_(&P, P.pos, "a '|' outside a residual(...) block");
    else if (st == SP_OK && P.n == 0)
        st = SP_FAIL(SP_ERR_SPEC, "model spec: no layers (only save:NAME items)");
    free(P.s);
    if (st != SP_OK) {
        free(P.nodes);
        return st;
    }
    *nodes = P.nodes;
    *n = P.n;
    return SP_OK;
}

bool sp_spec_same(const char *a, const char *b) {
    if (strcmp(a, b) == 0) return true;
    sp_layer_spec *la = NULL, *lb = NULL;
    int na = 0, nb = 0;
    bool same =
        sp_spec_parse(a, &la, &na) == SP_OK && sp_spec_parse(b, &lb, &nb) == SP_OK && na == nb;
    for (int i = 0; same && i < na; ++i) {
        const sp_layer_spec *x = &la[i], *y = &lb[i];
        same = x->kind == y->kind && x->units == y->units && x->out_channels == y->out_channels &&
               x->kernel == y->kernel && x->stride == y->stride && x->pad == y->pad &&
               x->scale == y->scale && x->bias == y->bias && x->slope == y->slope && x->p == y->p &&
               x->eps == y->eps && x->momentum == y->momentum && x->vocab == y->vocab &&
               x->heads == y->heads && x->units_x == y->units_x && x->tie == y->tie &&
               x->tanh == y->tanh && x->in[0] == y->in[0] && x->in[1] == y->in[1] &&
               !strcmp(x->path, y->path);
    }
    free(la);
    free(lb);
    sp_error_clear(); /* a failed parse is reported as a mismatch */
    return same;
}
