/*
 * Sizes from outside are never trusted (issue 8): the memory limit of util/mem.h at the model,
 * optimizer, data-file, loader and importer allocation sites; and the in-memory entry points the
 * fuzz targets use (sp_dataset_open_image, sp_train_config_parse_text). Inputs found by fuzzing
 * stay as cases here and in tests/fuzz/regress/.
 */
#include <stdlib.h>
#include <string.h>

#include "data/data.h"
#include "data/tools.h"
#include "optim/optim.h"
#include "shardprop/model.h"
#include "testutil.h"
#include "train/config.h"
#include "util/mem.h"

static bool has_(const char *needle) {
    return strstr(sp_last_error(), needle) != NULL;
}

static void test_model_limits(void) {
    const int64_t vec[1] = {16}, img[3] = {3, 8, 8};
    sp_model *m = NULL;
    /* 10^12 parameters: refused before any allocation (was: aligned_alloc of 8 TB + memset) */
    sp_status st = sp_model_create(&m, "dense:1000000,dense:1000000", vec, 1, 2);
    CHECK(st == SP_ERR_NOMEM && !m && has_("memory limit"), "st %d: %s", st, sp_last_error());
    /* an output of 2 x 10^6 x 10^6 x 8 values: more than the kernels' int indexing allows */
    st = sp_model_create(&m, "conv2d:1000000:1:pad=1000000", img, 3, 2);
    CHECK(st == SP_ERR_SPEC && has_("2^31"), "st %d: %s", st, sp_last_error());
    /* conv weights whose count overflows size_t are an error, not a wrap-around */
    st =
        sp_model_create(&m, "conv2d:1000000:1000000:pad=1000000,conv2d:1000000:1000000", img, 3, 1);
    CHECK(st != SP_OK && !m, "st %d", st);
    /* an input of (2^24)^3 values (was: signed overflow computing its size) */
    const int64_t big[3] = {1 << 24, 1 << 24, 1 << 24};
    st = sp_model_create(&m, "flatten,dense:2", big, 3, 1);
    CHECK(st == SP_ERR_SPEC && has_("input"), "st %d: %s", st, sp_last_error());
    /* the limit is the one set: 4 MB of parameters under a 1 MiB limit, then the default */
    sp_mem_set_limit((size_t)1 << 20);
    const int64_t wide[1] = {1000};
    st = sp_model_create(&m, "dense:1000", wide, 1, 1);
    CHECK(st == SP_ERR_NOMEM && has_("1.0 MiB"), "st %d: %s", st, sp_last_error());
    sp_mem_set_limit(0);
    CHECK(sp_mem_limit() >= ((size_t)64 << 20), "default %zu", sp_mem_limit());
    st = sp_model_create(&m, "dense:1000", wide, 1, 1);
    CHECK(st == SP_OK, "%s", sp_last_error());
    sp_model_free(m);
    /* the optimizer's state too */
    sp_mem_set_limit((size_t)1 << 20);
    sp_opt_config oc = sp_opt_config_defaults(SP_OPT_ADAM);
    sp_optimizer *opt = NULL;
    st = sp_optim_create(&opt, &oc, (size_t)1 << 20);
    CHECK(st == SP_ERR_NOMEM && !opt && has_("memory limit"), "st %d: %s", st, sp_last_error());
    sp_mem_set_limit(0);
}

static void *read_all_(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    *len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    void *b = malloc(*len ? *len : 1);
    if (b && fread(b, 1, *len, f) != *len) {
        free(b);
        b = NULL;
    }
    fclose(f);
    return b;
}

static void test_dataset_image(const char *dir) {
    char path[1024];
    snprintf(path, sizeof path, "%s/blobs.h5", dir);
    CHECK(sp_synth_write(path, SP_SYNTH_BLOBS, 20000, 3, 4, 1, 7) == SP_OK, "%s", sp_last_error());
    size_t len = 0;
    unsigned char *img = read_all_(path, &len);
    CHECK(img != NULL, "read %s", path);
    if (!img) return;
    sp_dataset *a = NULL, *b = NULL;
    CHECK(sp_dataset_open(&a, path, NULL, NULL) == SP_OK, "%s", sp_last_error());
    CHECK(sp_dataset_open_image(&b, img, len, "mem.h5", NULL, NULL) == SP_OK, "%s",
          sp_last_error());
    if (a && b) {
        const sp_dataset_info *ia = sp_dataset_get_info(a), *ib = sp_dataset_get_info(b);
        CHECK(ia->n == ib->n && ia->sample_size == ib->sample_size && ia->classes == ib->classes &&
                  !strcmp(ib->path, "mem.h5"),
              "n %lld/%lld", (long long)ia->n, (long long)ib->n);
        int64_t ids[3] = {19999, 0, 5};
        float xa[9], xb[9];
        int32_t la[3], lb[3];
        CHECK(sp_dataset_read(a, ids, 3, xa, la, NULL) == SP_OK &&
                  sp_dataset_read(b, ids, 3, xb, lb, NULL) == SP_OK,
              "%s", sp_last_error());
        CHECK(!memcmp(xa, xb, sizeof xa) && !memcmp(la, lb, sizeof la), "image rows differ");
    }
    sp_dataset_close(a);
    sp_dataset_close(b);
    /* not HDF5, truncated: errors */
    CHECK(sp_dataset_open_image(&b, "hello", 5, NULL, NULL, NULL) == SP_ERR_DATA && !b &&
              has_("(file image): not an HDF5 file"),
          "%s", sp_last_error());
    CHECK(sp_dataset_open_image(&b, img, len / 2, "half.h5", NULL, NULL) != SP_OK && !b, "half");
    /* 20000 labels (80 KB) under a 64 KiB limit: refused naming the file and y */
    sp_mem_set_limit((size_t)64 << 10);
    sp_status st = sp_dataset_open_image(&b, img, len, "mem.h5", NULL, NULL);
    CHECK(st == SP_ERR_NOMEM && has_("mem.h5: dataset 'y'") && has_("memory limit"), "st %d: %s",
          st, sp_last_error());
    sp_mem_set_limit(0);
    free(img);
}

static void test_idx_header(const char *dir) {
    char lab[1024], im[1024], out[1024];
    snprintf(lab, sizeof lab, "%s/lab.idx", dir);
    snprintf(im, sizeof im, "%s/im.idx", dir);
    snprintf(out, sizeof out, "%s/idx.h5", dir);
    /* images claiming 1000 x 1000 x 1000 bytes in a 16-byte file */
    FILE *f = fopen(im, "wb");
    fwrite("\x00\x00\x08\x03\x00\x00\x03\xe8\x00\x00\x03\xe8\x00\x00\x03\xe8", 1, 16, f);
    fclose(f);
    f = fopen(lab, "wb");
    fwrite("\x00\x00\x08\x01\x00\x00\x03\xe8", 1, 8, f);
    fclose(f);
    sp_mem_set_limit((size_t)64 << 20);
    sp_status st = sp_import_idx(im, lab, out, NULL);
    CHECK(st == SP_ERR_NOMEM && has_("IDX images") && has_("memory limit"), "st %d: %s", st,
          sp_last_error());
    sp_mem_set_limit(0);
    /* within the limit, the buffer grows with the data: a clean "truncated" error */
    st = sp_import_idx(im, lab, out, NULL);
    CHECK(st == SP_ERR_DATA && has_("truncated: 0 of 1000000000"), "st %d: %s", st,
          sp_last_error());
}

static void test_config_text(const char *dir) {
    const char *text = "# run\ndata = a.h5\nmodel = dense:2\nlr = 0.5\nno_shuffle = true\n";
    sp_train_config c1, c2;
    sp_train_args *o1 = NULL, *o2 = NULL;
    CHECK(sp_train_config_parse_text(&c1, text, strlen(text), "t.conf", &o1) == SP_OK, "%s",
          sp_last_error());
    char path[1024];
    snprintf(path, sizeof path, "%s/t.conf", dir);
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
    char *argv[] = {"train", "--config", path, NULL};
    bool help;
    CHECK(sp_train_config_parse(&c2, 3, argv, &help, &o2) == SP_OK, "%s", sp_last_error());
    char *a = sp_train_config_format(&c1), *b = sp_train_config_format(&c2);
    CHECK(a && b && !strcmp(a, b) && c1.lr == 0.5 && c1.no_shuffle, "text and file differ");
    free(a);
    free(b);
    sp_train_args_free(o1);
    sp_train_args_free(o2);
    CHECK(sp_train_config_parse_text(&c1, "", 0, "e.conf", &o1) == SP_OK && c1.batch == 64, "%s",
          sp_last_error());
    sp_train_args_free(o1);
    CHECK(sp_train_config_parse_text(&c1, "\nbogus = 1\n", 11, "u.conf", &o1) == SP_ERR_ARG &&
              has_("u.conf:2: unknown key 'bogus'"),
          "%s", sp_last_error());
    sp_train_args_free(o1);
}

int main(void) {
    const char *dir = sp_test_tmpdir("limits");
    test_model_limits();
    test_dataset_image(dir);
    test_idx_header(dir);
    test_config_text(dir);
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    sp_test_run(cmd, NULL);
    return sp_test_summary("limits");
}
