/* The flag parser's multi-valued string flags (.multi): every argument up to the next "--"
 * argument, `--name=A` alone, the errors; single-valued flags around them unchanged. */
#include <string.h>

#include "testutil.h"
#include "util/args.h"

typedef struct {
    sp_arg_list in;
    const char *out;
    double f;
    sp_status st;
} parsed_;

static parsed_ parse_(int argc, const char **argv) {
    parsed_ p = {.out = NULL, .f = 0};
    sp_arg_spec specs[] = {
        {"in", SP_ARG_STRING, &p.in, "FILE...", "inputs", .required = true, .multi = true},
        {"out", SP_ARG_STRING, &p.out, "FILE", "output", .required = true},
        {"f", SP_ARG_DOUBLE, &p.f, "F", "a number", .required = false},
    };
    sp_args a = {.command = "test", .specs = specs, .nspecs = 3};
    p.st = sp_args_parse(&a, argc, (char **)argv);
    return p;
}

int main(void) {
    {
        const char *argv[] = {"cmd", "--in", "a", "b", "-c", "--out", "o", "--f", "0.5"};
        parsed_ p = parse_(9, argv);
        CHECK(p.st == SP_OK && p.in.n == 3 && !strcmp(p.in.v[0], "a") && !strcmp(p.in.v[1], "b") &&
                  !strcmp(p.in.v[2], "-c") && !strcmp(p.out, "o") && p.f == 0.5,
              "three values up to --out: %s", sp_last_error());
    }
    {
        const char *argv[] = {"cmd", "--out=o", "--in", "x"};
        parsed_ p = parse_(4, argv);
        CHECK(p.st == SP_OK && p.in.n == 1 && !strcmp(p.in.v[0], "x"), "last flag");
    }
    {
        const char *argv[] = {"cmd", "--in=x", "--out", "o"};
        parsed_ p = parse_(4, argv);
        CHECK(p.st == SP_OK && p.in.n == 1 && !strcmp(p.in.v[0], "x"), "--in=x");
    }
    {
        const char *argv[] = {"cmd", "--in=x", "y", "--out", "o"};
        parsed_ p = parse_(5, argv);
        CHECK(p.st == SP_ERR_ARG && strstr(sp_last_error(), "unexpected argument 'y'"), "%s",
              sp_last_error());
    }
    {
        const char *argv[] = {"cmd", "--in", "--out", "o"};
        parsed_ p = parse_(4, argv);
        CHECK(p.st == SP_ERR_ARG && !strcmp(sp_last_error(), "--in needs a value (FILE...)"), "%s",
              sp_last_error());
    }
    {
        const char *argv[] = {"cmd", "--out", "o", "--in"};
        parsed_ p = parse_(4, argv);
        CHECK(p.st == SP_ERR_ARG && strstr(sp_last_error(), "--in needs a value"), "at the end");
    }
    {
        const char *argv[] = {"cmd", "--in", "a", "", "--out", "o"};
        parsed_ p = parse_(6, argv);
        CHECK(p.st == SP_ERR_ARG && strstr(sp_last_error(), "--in: empty value"), "%s",
              sp_last_error());
    }
    {
        const char *argv[] = {"cmd", "--in", "a", "--in", "b", "c", "--out", "o"};
        parsed_ p = parse_(8, argv);
        CHECK(p.st == SP_OK && p.in.n == 2 && !strcmp(p.in.v[0], "b"), "a later --in overrides");
    }
    {
        const char *argv[] = {"cmd", "--out", "o"};
        parsed_ p = parse_(3, argv);
        CHECK(p.st == SP_ERR_ARG && strstr(sp_last_error(), "missing required flag --in"), "%s",
              sp_last_error());
    }
    return sp_test_summary("args");
}
