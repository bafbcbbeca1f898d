/* `shardprop train --data` with several items (files, an unquoted glob's words, a config file's
 * blank-separated value) and --shuffle global|shards: what the configuration holds, and that the
 * stored configuration parses back to it. */
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "train/config.h"
#include "util/status.h"

static sp_status parse_(sp_train_config *c, char **argv, int argc, sp_train_args **own) {
    bool help = false;
    return sp_train_config_parse(c, argc, argv, &help, own);
}

int main(void) {
    const char *dir = sp_test_tmpdir("config_data");
    sp_train_config c;
    sp_train_args *own = NULL;
    /* the words of --data and --val, up to the next flag, are one blank-separated value */
    char *argv1[] = {"train", "--data", "s/b.h5", "s/a.h5",    "--model", "dense:2",
                     "--val", "v1.h5",  "v2.h5",  "--shuffle", "shards"};
    CHECK(parse_(&c, argv1, 11, &own) == SP_OK, "parse: %s", sp_last_error());
    CHECK(c.data && !strcmp(c.data, "s/b.h5 s/a.h5"), "data '%s'", c.data ? c.data : "");
    CHECK(c.val && !strcmp(c.val, "v1.h5 v2.h5"), "val '%s'", c.val ? c.val : "");
    CHECK(!strcmp(c.shuffle, "shards") && c.shuffle_window == 4, "shuffle %s window %lld",
          c.shuffle, (long long)c.shuffle_window);
    CHECK(sp_train_config_check(&c) == SP_OK, "check: %s", sp_last_error());
    char *text = sp_train_config_format(&c);
    CHECK(text && strstr(text, "data = s/b.h5 s/a.h5\n") && strstr(text, "shuffle = shards\n") &&
              strstr(text, "shuffle-window = 4\n"),
          "format:\n%s", text ? text : "");
    /* the stored configuration reads back the same */
    char path[600];
    snprintf(path, sizeof path, "%s/stored.conf", dir);
    FILE *f = fopen(path, "w");
    if (f) {
        fputs(text ? text : "", f);
        fclose(f);
    }
    free(text);
    sp_train_config c2;
    sp_train_args *own2 = NULL;
    char *argv2[] = {"train", "--config", path};
    CHECK(parse_(&c2, argv2, 3, &own2) == SP_OK && !strcmp(c2.data, "s/b.h5 s/a.h5") &&
              !strcmp(c2.shuffle, "shards"),
          "read back: %s", sp_last_error());
    sp_train_args_free(own2);
    sp_train_args_free(own);
    /* one word stays one word; --data=A too */
    char *argv3[] = {"train", "--data=one two.h5", "--model", "dense:2"};
    CHECK(parse_(&c, argv3, 4, &own) == SP_OK && !strcmp(c.data, "one two.h5"), "--data=");
    CHECK(!strcmp(c.shuffle, "global"), "default shuffle %s", c.shuffle);
    sp_train_args_free(own);
    /* bad modes and conflicts */
    char *argv4[] = {"train", "--data", "a.h5", "--model", "dense:2", "--shuffle", "rows"};
    CHECK(parse_(&c, argv4, 7, &own) == SP_OK, "parse 4");
    CHECK(sp_train_config_check(&c) == SP_ERR_ARG && strstr(sp_last_error(), "global or shards"),
          "--shuffle rows: %s", sp_last_error());
    sp_train_args_free(own);
    char *argv5[] = {"train",   "--data",    "a.h5",   "--model",
                     "dense:2", "--shuffle", "shards", "--no-shuffle"};
    CHECK(parse_(&c, argv5, 8, &own) == SP_OK, "parse 5");
    CHECK(sp_train_config_check(&c) == SP_ERR_ARG && strstr(sp_last_error(), "exclude"),
          "--no-shuffle --shuffle shards: %s", sp_last_error());
    sp_train_args_free(own);
    char *argv6[] = {"train", "--data", "a.h5", "--model", "dense:2", "--shuffle-window", "0"};
    CHECK(parse_(&c, argv6, 7, &own) == SP_ERR_ARG, "--shuffle-window 0");
    sp_train_args_free(own);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", dir);
    return sp_test_summary("config_data");
}
