#include "util/args.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util/status.h"

bool sp_parse_int64(const char *s, int64_t *out) {
    if (!s || !*s) return false;
    errno = 0;
    char *end = NULL;
    long long v = strtoll(s, &end, 10);
    if (errno || *end) return false;
    *out = (int64_t)v;
    return true;
}

bool sp_parse_double(const char *s, double *out) {
    if (!s || !*s) return false;
    errno = 0;
    char *end = NULL;
    double v = strtod(s, &end);
    if (errno == ERANGE && (v == HUGE_VAL || v == -HUGE_VAL)) return false;
    if (*end) return false;
    *out = v;
    return true;
}

static sp_arg_spec *find_spec_(sp_args *a, const char *name, size_t len) {
    for (int i = 0; i < a->nspecs; ++i)
        if (strlen(a->specs[i].name) == len && !strncmp(a->specs[i].name, name, len))
            return &a->specs[i];
    return NULL;
}

static sp_status set_value_(sp_arg_spec *s, const char *v) {
    switch (s->type) {
    case SP_ARG_STRING:
        if (!*v) return SP_FAIL(SP_ERR_ARG, "--%s: empty value", s->name);
        if (s->multi) {
            sp_arg_list *l = s->dest;
            l->one = v;
            l->v = &l->one;
            l->n = 1;
        } else {
            *(const char **)s->dest = v;
        }
        break;
    case SP_ARG_INT: {
        int64_t x;
        if (!sp_parse_int64(v, &x))
            return SP_FAIL(SP_ERR_ARG, "--%s: '%s' is not an integer", s->name, v);
        if (s->imin < s->imax && (x < s->imin || x > s->imax))
            return SP_FAIL(SP_ERR_ARG, "--%s: %lld is out of range [%lld, %lld]", s->name,
                           (long long)x, (long long)s->imin, (long long)s->imax);
        *(int64_t *)s->dest = x;
        break;
    }
    case SP_ARG_DOUBLE: {
        double x;
        if (!sp_parse_double(v, &x) || !isfinite(x))
            return SP_FAIL(SP_ERR_ARG, "--%s: '%s' is not a finite number", s->name, v);
        if (s->dmin < s->dmax && (x < s->dmin || x > s->dmax))
            return SP_FAIL(SP_ERR_ARG, "--%s: %g is out of range [%g, %g]", s->name, x, s->dmin,
                           s->dmax);
        *(double *)s->dest = x;
        break;
    }
    case SP_ARG_BOOL:
        if (!strcmp(v, "true") || !strcmp(v, "1") || !strcmp(v, "yes"))
            *(bool *)s->dest = true;
        else if (!strcmp(v, "false") || !strcmp(v, "0") || !strcmp(v, "no"))
            *(bool *)s->dest = false;
        else
            return SP_FAIL(SP_ERR_ARG, "--%s: '%s' is not a boolean (true/false)", s->name, v);
        break;
    }
    s->seen = true;
    return SP_OK;
}

sp_status sp_args_parse(sp_args *a, int argc, char **argv) {
    a->npositional = 0;
    a->help = false;
    bool flags_done = false;
    for (int i = 1; i < argc; ++i) {
        const char *arg = argv[i];
        if (!flags_done && (!strcmp(arg, "--help") || !strcmp(arg, "-h"))) {
            a->help = true;
            return SP_OK;
        }
        if (!flags_done && !strcmp(arg, "--")) {
            flags_done = true;
            continue;
        }
        if (flags_done || arg[0] != '-' || arg[1] == '\0') {
            if (a->npositional >= a->max_positional ||
                a->npositional >= (int)(sizeof a->positional / sizeof a->positional[0]))
                return SP_FAIL(SP_ERR_ARG, "unexpected argument '%s'", arg);
            a->positional[a->npositional++] = arg;
            continue;
        }
        if (arg[1] != '-')
            return SP_FAIL(SP_ERR_ARG, "unknown option '%s' (flags are --name)", arg);
        const char *name = arg + 2, *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        sp_arg_spec *s = find_spec_(a, name, len);
        if (!s) return SP_FAIL(SP_ERR_ARG, "unknown flag '--%.*s' (see --help)", (int)len, name);
        const char *value;
        if (s->type == SP_ARG_STRING && s->multi && !eq) {
            /* the values: argv[i+1 .. j), up to the next "--" argument */
            int j = i + 1;
            while (j < argc && strncmp(argv[j], "--", 2) != 0) ++j;
            if (j == i + 1)
                return SP_FAIL(SP_ERR_ARG, "--%s needs a value (%s)", s->name,
                               s->metavar ? s->metavar : "VALUE...");
            for (int k = i + 1; k < j; ++k)
                if (!*argv[k]) return SP_FAIL(SP_ERR_ARG, "--%s: empty value", s->name);
            sp_arg_list *l = s->dest;
            l->v = (const char *const *)(argv + i + 1);
            l->n = j - i - 1;
            s->seen = true;
            i = j - 1;
            continue;
        }
        if (eq) {
            value = eq + 1;
        } else if (s->type == SP_ARG_BOOL) {
            value = "true";
        } else {
            if (i + 1 >= argc)
                return SP_FAIL(SP_ERR_ARG, "--%s needs a value (%s)", s->name,
                               s->metavar ? s->metavar : "VALUE");
            value = argv[++i];
        }
        SP_CHECK(set_value_(s, value));
    }
    for (int i = 0; i < a->nspecs; ++i)
        if (a->specs[i].required && !a->specs[i].seen)
            return SP_FAIL(SP_ERR_ARG, "missing required flag --%s", a->specs[i].name);
    if (a->npositional < a->min_positional)
        return SP_FAIL(SP_ERR_ARG, "missing argument %s", a->positionals ? a->positionals : "");
    return SP_OK;
}

void sp_args_print_help(const sp_args *a, FILE *f) {
    fprintf(f, "usage: %s%s%s [flags]\n", a->command, a->positionals ? " " : "",
            a->positionals ? a->positionals : "");
    if (a->description) fprintf(f, "\n%s\n", a->description);
    fprintf(f, "\nflags:\n");
    for (int i = 0; i < a->nspecs; ++i) {
        const sp_arg_spec *s = &a->specs[i];
        char left[64];
        snprintf(left, sizeof left, "--%s%s%s", s->name, s->metavar ? " " : "",
                 s->metavar ? s->metavar : "");
        fprintf(f, "  %-26s %s%s\n", left, s->help ? s->help : "",
                s->required ? " (required)" : "");
    }
    fprintf(f, "  %-26s %s\n", "--help", "print this help");
}

int sp_cli_fail(const char *command, sp_status st) {
    fprintf(stderr, "%s: error: %s\n", command, sp_last_error());
    return st == SP_ERR_ARG ? 2 : 1;
}
