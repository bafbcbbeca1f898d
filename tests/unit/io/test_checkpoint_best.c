/* The best-so-far record of checkpoints (io/checkpoint.h, sp_ckpt_best): written by
 * sp_ckpt_save_tracked and sp_ckpt_save_best, read back exactly (the value as float64, every
 * bit), absent from files written without it, refused when half there or mistyped; best.h5
 * survives --keep pruning and its temporary files of killed writers are cleaned up. */
#include <fcntl.h>
#include <hdf5.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/checkpoint.h"
#include "optim/optim.h"
#include "shardprop/model.h"
#include "testutil.h"
#include "util/status.h"

static char dir[256];

static sp_train_state state_(int64_t step) {
    return (sp_train_state){.step = step,
                            .epoch = 3,
                            .epoch_batch = 0,
                            .seed = 9,
                            .config = "seed = 9\n",
                            .world_size = 1,
                            .threads = 1};
}

static void test_round_trip(sp_model *m, sp_optimizer *o) {
    const sp_train_state ts = state_(12);
    /* a value with every mantissa bit in use: float64 keeps it exactly */
    const sp_ckpt_best b = {
        .metric = "val_loss", .value = 1.0 / 3.0, .epoch = 2, .epochs_since_best = 1};
    char written[512];
    sp_status st = sp_ckpt_save_tracked(dir, 12, 2, m, o, "xent", &ts, &b, written, sizeof written);
    CHECK(st == SP_OK, "save_tracked: %s", sp_last_error());
    sp_ckpt_info info;
    st = sp_ckpt_read_info(written, &info);
    CHECK(st == SP_OK && info.has_best && !strcmp(info.best.metric, "val_loss") &&
              info.best.value == 1.0 / 3.0 && info.best.epoch == 2 &&
              info.best.epochs_since_best == 1 && info.train.step == 12,
          "the record reads back exactly: %s", st == SP_OK ? "values differ" : sp_last_error());
    sp_ckpt_info_free(&info);

    /* no best yet: NaN and epoch 0 are kept as such */
    const sp_ckpt_best none = {.metric = "val_accuracy", .value = NAN};
    st = sp_ckpt_save_best(dir, m, o, "xent", &ts, &none, written, sizeof written);
    CHECK(st == SP_OK && strstr(written, "/best.h5"), "save_best: %s", sp_last_error());
    st = sp_ckpt_read_info(written, &info);
    CHECK(st == SP_OK && info.has_best && isnan(info.best.value) && info.best.epoch == 0 &&
              !strcmp(info.best.metric, "val_accuracy"),
          "no best yet reads back: %s", sp_last_error());
    sp_ckpt_info_free(&info);

    /* without it (sp_ckpt_save, sp_ckpt_write): no record, as files older than it */
    char plain[512];
    st = sp_ckpt_save(dir, 13, 2, m, o, "xent", &ts, plain, sizeof plain);
    CHECK(st == SP_OK, "save: %s", sp_last_error());
    st = sp_ckpt_read_info(plain, &info);
    CHECK(st == SP_OK && info.has_train && !info.has_best, "a plain checkpoint has no record");
    sp_ckpt_info_free(&info);

    /* --keep 2 pruning leaves best.h5; a stale temporary of a killed best.h5 writer goes */
    char stale[600];
    snprintf(stale, sizeof stale, "%s/.best.h5.tmp-AbCdEf123456", dir);
    const int fd = open(stale, O_CREAT | O_WRONLY, 0600);
    if (fd >= 0) close(fd);
    for (int64_t s = 14; s <= 16; ++s)
        CHECK(sp_ckpt_save(dir, s, 2, m, o, "xent", &ts, NULL, 0) == SP_OK, "save %lld: %s",
              (long long)s, sp_last_error());
    char best[600];
    snprintf(best, sizeof best, "%s/best.h5", dir);
    CHECK(access(best, F_OK) == 0, "best.h5 survives --keep pruning");
    CHECK(access(stale, F_OK) != 0, "a stale .best.h5.tmp-* is removed");
}

/* Half a record, or a mistyped value: refused naming the attribute. */
static void test_refusals(sp_model *m, sp_optimizer *o) {
    const sp_train_state ts = state_(20);
    char path[600];
    snprintf(path, sizeof path, "%s/half.h5", dir);
    const sp_ckpt_best b = {.metric = "val_loss", .value = 0.5, .epoch = 1};
    CHECK(sp_ckpt_save_tracked(dir, 20, 0, m, o, "xent", &ts, &b, NULL, 0) == SP_OK, "save: %s",
          sp_last_error());
    char step_file[600];
    snprintf(step_file, sizeof step_file, "%s/step_00000020.h5", dir);
    const char *edits[] = {"best_epoch", "best_value"};
    for (int k = 0; k < 2; ++k) {
        hid_t f = H5Fopen(step_file, H5F_ACC_RDWR, H5P_DEFAULT);
        hid_t g = f < 0 ? -1 : H5Gopen2(f, "/train", H5P_DEFAULT);
        if (k == 0) {
            H5Adelete(g, "best_epoch");
        } else {
            /* best_value as a string */
            H5Adelete(g, "best_value");
            hid_t t = H5Tcopy(H5T_C_S1), s = H5Screate(H5S_SCALAR);
            H5Tset_size(t, 4);
            hid_t a = H5Acreate2(g, "best_value", t, s, H5P_DEFAULT, H5P_DEFAULT);
            H5Awrite(a, t, "0.5");
            H5Aclose(a), H5Sclose(s), H5Tclose(t);
            /* and best_epoch back, so that only the type is wrong */
            int64_t e = 1;
            s = H5Screate(H5S_SCALAR);
            a = H5Acreate2(g, "best_epoch", H5T_STD_I64LE, s, H5P_DEFAULT, H5P_DEFAULT);
            H5Awrite(a, H5T_NATIVE_INT64, &e);
            H5Aclose(a), H5Sclose(s);
        }
        if (g >= 0) H5Gclose(g);
        if (f >= 0) H5Fclose(f);
        sp_ckpt_info info;
        const sp_status st = sp_ckpt_read_info(step_file, &info);
        CHECK(st == SP_ERR_DATA && strstr(sp_last_error(), edits[k]),
              "%s damaged: refused naming it: %s", edits[k], sp_last_error());
        sp_ckpt_info_free(&info);
    }
}

int main(void) {
    snprintf(dir, sizeof dir, "%s", sp_test_tmpdir("checkpoint_best"));
    const int64_t shape[1] = {4};
    sp_model *m = NULL;
    CHECK(sp_model_create(&m, "dense:3", shape, 1, 2) == SP_OK, "model: %s", sp_last_error());
    sp_optimizer *o = NULL;
    if (m) {
        sp_model_init_params(m, 1);
        const sp_opt_config c = sp_opt_config_defaults(SP_OPT_ADAM);
        CHECK(sp_optim_create(&o, &c, sp_model_num_params(m)) == SP_OK, "optim: %s",
              sp_last_error());
    }
    if (m && o) {
        test_round_trip(m, o);
        test_refusals(m, o);
    }
    sp_optim_free(o);
    sp_model_free(m);
    return sp_test_summary("checkpoint_best");
}
