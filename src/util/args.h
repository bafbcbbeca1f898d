/*
 * Command-line flags for the subcommands: `--name value` and `--name=value`, boolean switches,
 * int64 and double values with range checks, and a --help text generated from the same table.
 *
 *     const char *out = NULL; int64_t n = 1000; bool verbose = false;
 *     sp_arg_spec specs[] = {
 *         {"out", SP_ARG_STRING, &out, "FILE", "output file", .required = true},
 *         {"n", SP_ARG_INT, &n, "N", "number of samples", .imin = 1, .imax = INT64_MAX},
 *         {"verbose", SP_ARG_BOOL, &verbose, NULL, "print more", .required = false},
 *     };
 *     sp_args a = {.command = "shardprop synth", .specs = specs, .nspecs = 3};
 *     sp_status st = sp_args_parse(&a, argc, argv);   // argv[0] is the subcommand name
 *
 *     sp_arg_list in = {0};  // {"in", SP_ARG_STRING, &in, "FILE...", "inputs", .multi = true}
 *
 * Errors (unknown flag, missing value, bad number, out of range, missing required flag,
 * too many positional arguments) are SP_ERR_ARG with one line naming the flag. A flag may be
 * given once; a later occurrence overrides an earlier one. `--` ends the flags.
 */
#ifndef SP_UTIL_ARGS_H
#define SP_UTIL_ARGS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "shardprop/status.h"

typedef enum {
    SP_ARG_STRING, /* dest: const char ** (points into argv); with .multi an sp_arg_list * */
    SP_ARG_INT,    /* dest: int64_t *, checked against [imin, imax] when imin < imax */
    SP_ARG_DOUBLE, /* dest: double *, finite, checked against [dmin, dmax] when dmin < dmax */
    SP_ARG_BOOL    /* dest: bool *; `--name` sets true, `--name=true|false|1|0|yes|no` */
} sp_arg_type;

/*
 * The values of a multi-valued string flag (SP_ARG_STRING with .multi = true): `--name A B C`
 * takes every argument after the flag up to the next one that starts with "--" (at least one);
 * `--name=A` takes A alone. The values point into argv, in the order given.
 * (A flag kind of its own would be cleaner, but switches over sp_arg_type elsewhere, e.g.
 * train/config.c, would need a case for it.)
 */
typedef struct sp_arg_list {
    const char *const *v; /* (n): into argv, or &one */
    int n;
    const char *one; /* the value of `--name=A` */
} sp_arg_list;

typedef struct sp_arg_spec {
    const char *name; /* without the leading "--" */
    sp_arg_type type;
    void *dest;
    const char *metavar; /* shown in --help ("FILE", "N"); NULL for booleans */
    const char *help;    /* one line; the default is appended by the caller if wanted */
    bool required;
    bool multi; /* SP_ARG_STRING only: one or more values into an sp_arg_list (above) */
    int64_t imin, imax;
    double dmin, dmax;
    bool seen; /* out: set when the flag was given */
} sp_arg_spec;

typedef struct sp_args {
    const char *command;     /* "shardprop split", for messages and --help */
    const char *positionals; /* usage of positional arguments ("FILE.h5"), NULL if none */
    const char *description; /* a paragraph for --help, may be NULL */
    sp_arg_spec *specs;
    int nspecs;
    int min_positional, max_positional;
    /* out */
    const char *positional[8];
    int npositional;
    bool help; /* --help or -h was given: print sp_args_print_help and exit 0 */
} sp_args;

/* Parse argv[1..argc-1] (argv[0] is the command name). Stops at --help. */
sp_status sp_args_parse(sp_args *a, int argc, char **argv);

/* The --help text: usage line, description, every flag with its metavar and help. */
void sp_args_print_help(const sp_args *a, FILE *f);

/* Helpers the parser uses, public for other callers (e.g. a spec file): strict whole-string
 * conversions. */
bool sp_parse_int64(const char *s, int64_t *out);
bool sp_parse_double(const char *s, double *out);

/* The usual CLI ending: print the error as one line "<command>: error: <message>" and return 2
 * for argument errors, 1 otherwise. */
int sp_cli_fail(const char *command, sp_status st);

#endif
