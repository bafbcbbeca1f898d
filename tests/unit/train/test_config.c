/* `shardprop train` configuration: flags, --config files (key = value, flags override the file,
 * unknown keys are errors naming the line), cross-field checks, and the resolved configuration
 * being itself a valid config file. */
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "train/config.h"
#include "util/status.h"

static const char *write_file(const char *dir, const char *name, const char *text) {
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
    return path;
}

static sp_status parse(sp_train_config *c, char **argv, int argc, sp_train_args **own) {
    bool help = false;
    return sp_train_config_parse(c, argc, argv, &help, own);
}

int main(void) {
    const char *dir = sp_test_tmpdir("config");
    char file[512];
    snprintf(file, sizeof file, "%s",
             write_file(dir, "run.conf",
                        "# a comment\n"
                        "data = train.h5\n"
                        "model = flatten, dense:10   # trailing comment\n"
                        "epochs = 7\n"
                        "lr = 0.5\n"
                        "nesterov = true\n"
                        "weight_decay = 0.01\n"
                        "\n"));
    sp_train_config c;
    sp_train_args *own = NULL;
    char *argv1[] = {"train", "--config", file, "--lr", "0.25", "--batch=32"};
    sp_status st = parse(&c, argv1, 6, &own);
    CHECK(st == SP_OK, "parse: %s", sp_last_error());
    if (st == SP_OK) {
        CHECK(!strcmp(c.data, "train.h5") && !strcmp(c.model, "flatten, dense:10"), "strings");
        CHECK(c.epochs == 7 && c.batch == 32, "ints from file and flags");
        CHECK(c.lr == 0.25, "the command line overrides the file: lr %g", c.lr);
        CHECK(c.nesterov && c.weight_decay == 0.01, "booleans and underscores in keys");
        CHECK(c.momentum == 0.9 && c.seed == 1 && c.max_steps == -1, "defaults");
        CHECK(sp_train_config_check(&c) == SP_OK, "consistent: %s", sp_last_error());
        /* the resolved configuration parses back to the same values */
        char *text = sp_train_config_format(&c);
        CHECK(text && strstr(text, "lr = 0.25\n") && strstr(text, "epochs = 7\n"), "format:\n%s",
              text ? text : "");
        char resolved[512];
        snprintf(resolved, sizeof resolved, "%s",
                 write_file(dir, "resolved.conf", text ? text : ""));
        sp_train_config c2;
        sp_train_args *own2 = NULL;
        char *argv2[] = {"train", "--config", resolved};
        CHECK(parse(&c2, argv2, 3, &own2) == SP_OK && c2.lr == 0.25 && c2.epochs == 7 &&
                  c2.nesterov && !strcmp(c2.model, c.model),
              "round trip: %s", sp_last_error());
        sp_train_args_free(own2);
        free(text);
    }
    sp_train_args_free(own);

    /* errors name the file and line, or the flag */
    const char *bad = write_file(dir, "bad.conf", "data = a.h5\nlearning_rate = 3\n");
    char badp[512];
    snprintf(badp, sizeof badp, "%s", bad);
    char *argv3[] = {"train", "--config", badp};
    own = NULL;
    st = parse(&c, argv3, 3, &own);
    CHECK(st == SP_ERR_ARG && strstr(sp_last_error(), "bad.conf:2") &&
              strstr(sp_last_error(), "unknown key 'learning-rate'"),
          "unknown key: %s", sp_last_error());
    sp_train_args_free(own);
    const char *noeq = write_file(dir, "noeq.conf", "epochs 3\n");
    char noeqp[512];
    snprintf(noeqp, sizeof noeqp, "%s", noeq);
    char *argv4[] = {"train", "--config", noeqp};
    own = NULL;
    st = parse(&c, argv4, 3, &own);
    CHECK(st == SP_ERR_ARG && strstr(sp_last_error(), "noeq.conf:1") &&
              strstr(sp_last_error(), "key = value"),
          "missing '=': %s", sp_last_error());
    sp_train_args_free(own);
    char *argv5[] = {"train", "--config", "/nonexistent/x.conf"};
    own = NULL;
    st = parse(&c, argv5, 3, &own);
    CHECK(st == SP_ERR_ARG && strstr(sp_last_error(), "/nonexistent/x.conf"), "missing file: %s",
          sp_last_error());
    sp_train_args_free(own);
    char *argv6[] = {"train", "--data", "a.h5", "--model", "dense:3", "--epochs", "-1"};
    own = NULL;
    st = parse(&c, argv6, 7, &own);
    CHECK(st == SP_ERR_ARG && strstr(sp_last_error(), "epochs"), "out of range: %s",
          sp_last_error());
    sp_train_args_free(own);
    char *argv7[] = {"train", "--data", "a.h5", "--model", "dense:3", "--frobnicate"};
    own = NULL;
    st = parse(&c, argv7, 6, &own);
    CHECK(st == SP_ERR_ARG && strstr(sp_last_error(), "frobnicate"), "unknown flag: %s",
          sp_last_error());
    sp_train_args_free(own);
    /* cross-field checks */
    char *argv8[] = {"train", "--data", "a.h5", "--model", "dense:3", "--checkpoint-every", "5"};
    own = NULL;
    CHECK(parse(&c, argv8, 7, &own) == SP_OK && sp_train_config_check(&c) == SP_ERR_ARG &&
              strstr(sp_last_error(), "--checkpoint-dir"),
          "checkpoint-every without a directory: %s", sp_last_error());
    sp_train_args_free(own);
    char *argv9[] = {"train", "--model", "dense:3"};
    own = NULL;
    CHECK(parse(&c, argv9, 3, &own) == SP_OK && sp_train_config_check(&c) == SP_ERR_ARG &&
              strstr(sp_last_error(), "--data"),
          "missing --data: %s", sp_last_error());
    sp_train_args_free(own);
    char *argv10[] = {"train", "--data", "a.h5", "--model", "dense:3", "--loss", "hinge"};
    own = NULL;
    CHECK(parse(&c, argv10, 7, &own) == SP_OK && sp_train_config_check(&c) == SP_ERR_ARG &&
              strstr(sp_last_error(), "hinge"),
          "bad loss: %s", sp_last_error());
    sp_train_args_free(own);
    char *argv11[] = {"train", "--data", "a.h5", "--model", "dense:3", "--on-nonfinite", "ignore"};
    own = NULL;
    CHECK(parse(&c, argv11, 7, &own) == SP_OK && sp_train_config_check(&c) == SP_ERR_ARG &&
              strstr(sp_last_error(), "--on-nonfinite must be stop or skip, got 'ignore'"),
          "bad --on-nonfinite: %s", sp_last_error());
    sp_train_args_free(own);
    char *argv12[] = {"train", "--data", "a.h5", "--model", "dense:3"};
    own = NULL;
    CHECK(parse(&c, argv12, 5, &own) == SP_OK && !strcmp(c.on_nonfinite, "stop"),
          "--on-nonfinite defaults to stop");
    sp_train_args_free(own);
    return sp_test_summary("config");
}
