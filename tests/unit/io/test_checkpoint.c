/* Checkpoint files (src/io/checkpoint.c): round trips, refusals with clear messages, the
 * checkpoint directory (latest, keep), symlink and umask safety, write failures and kill -9 in
 * the middle of a write (through the SHARDPROP_TEST_CKPT_PAUSE hook).
 *
 * Runs as root in CI: permission bits do not stop root, so the permission test drops to the
 * "nobody" user in a forked child (or uses chmod 0500 when not root); a full disk is simulated
 * with RLIMIT_FSIZE (which binds root too: write(2) fails with EFBIG).
 *
 * `test_checkpoint --export FILE SPEC SHAPE` writes a checkpoint (after 3 Adam steps) and prints
 * the input/output of a forward pass and one more Adam step, for tests/torch/ckpt_torch.py. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <math.h>
#include <pwd.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "optim/optim.h"
#include "shardprop/model.h"
#include "testutil.h"
#include "io/checkpoint.h"
#include "io/h5.h"
#include "util/status.h"

static const char *conv_spec = "conv2d:4:3:pad=1,relu,maxpool:2,flatten,dense:5";
static const int64_t conv_shape[3] = {1, 6, 6};
static const char *config_text = "model = conv2d:4:3:pad=1,relu,maxpool:2,flatten,dense:5\n"
                                 "optimizer = adam\nlr = 0.01\nseed = 42\n";

/* ---- helpers ---------------------------------------------------------------------------------- */

/* snprintf into an array, exiting on truncation (test paths are short). */
#define FMT(buf, ...)                                                                              \
    do {                                                                                           \
        if (snprintf(buf, sizeof buf, __VA_ARGS__) >= (int)sizeof buf) {                           \
            fprintf(stderr, "test path too long\n");                                               \
            exit(2);                                                                               \
        }                                                                                          \
    } while (0)

static sp_model *make_model_(const char *spec, const int64_t *shape, int rank, uint64_t seed) {
    sp_model *m = NULL;
    sp_status st = sp_model_create(&m, spec, shape, rank, 8);
    CHECK(st == SP_OK, "model %s: %s", spec, sp_last_error());
    if (st == SP_OK) sp_model_init_params(m, seed);
    return m;
}

static sp_optimizer *make_opt_(sp_opt_kind kind, const sp_model *m, int steps, uint64_t seed) {
    sp_opt_config c = sp_opt_config_defaults(kind);
    if (kind == SP_OPT_SGD) c.momentum = 0.9f;
    sp_optimizer *o = NULL;
    size_t n = sp_model_num_params(m);
    CHECK(sp_optim_create(&o, &c, n) == SP_OK, "optim: %s", sp_last_error());
    float *g = malloc(n * sizeof *g);
    float *p = malloc(n * sizeof *p);
    for (int k = 0; k < steps; ++k) {
        sp_test_fill(g, n, seed + (uint64_t)k, -1.0f, 1.0f);
        sp_test_fill(p, n, seed + 100, -1.0f, 1.0f);
        sp_optim_step(o, p, g, 0.01f);
    }
    free(g);
    free(p);
    return o;
}

static sp_train_state train_state_(int64_t step) {
    sp_train_state ts = {step, 2, 17, 0xfedcba9876543210ull, config_text, 4, 3};
    return ts;
}

/* The sorted names in dir (without . and ..), space separated. */
static void list_dir_(const char *dir, char *out, size_t cap) {
    char names[64][128];
    int n = 0;
    DIR *d = opendir(dir);
    out[0] = '\0';
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d)) && n < 64) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        FMT(names[n], "%s", e->d_name);
        ++n;
    }
    closedir(d);
    qsort(names, (size_t)n, sizeof names[0], (int (*)(const void *, const void *))strcmp);
    size_t k = 0;
    for (int i = 0; i < n && k < cap; ++i)
        k += (size_t)snprintf(out + k, cap - k, "%s%s", i ? " " : "", names[i]);
}

static void write_text_(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (!f) return;
    fputs(text, f);
    fclose(f);
}

static bool file_is_(const char *path, const char *text) {
    char buf[256] = {0};
    FILE *f = fopen(path, "r");
    if (!f) return false;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    return strcmp(buf, text) == 0;
}

static bool contains_(const char *s, const char *sub) {
    return strstr(s, sub) != NULL;
}

static char *join_(const char *a, const char *b) {
    static char buf[4][1024];
    static int k = 0;
    k = (k + 1) % 4;
    if (snprintf(buf[k], sizeof buf[k], "%s/%s", a, b) >= (int)sizeof buf[k]) exit(2);
    return buf[k];
}

/* ---- round trip ------------------------------------------------------------------------------ */

static void test_round_trip(const char *tmp) {
    sp_model *m = make_model_(conv_spec, conv_shape, 3, 11);
    sp_optimizer *o = make_opt_(SP_OPT_ADAM, m, 3, 5);
    if (!m || !o) return;
    sp_train_state ts = train_state_(3);
    const char *path = join_(tmp, "rt.h5");
    sp_status st = sp_ckpt_write(path, m, o, "xent", &ts);
    CHECK(st == SP_OK, "write: %s", sp_last_error());

    sp_ckpt_info info;
    st = sp_ckpt_read_info(path, &info);
    CHECK(st == SP_OK, "read_info: %s", sp_last_error());
    CHECK(info.format_version == 1, "format %d", info.format_version);
    CHECK(info.spec && !strcmp(info.spec, conv_spec), "spec %s", info.spec);
    CHECK(info.loss && !strcmp(info.loss, "xent"), "loss %s", info.loss);
    CHECK(info.input_rank == 3 && info.input_shape[0] == 1 && info.input_shape[1] == 6 &&
              info.input_shape[2] == 6,
          "input shape");
    CHECK(info.has_optimizer && info.opt.kind == SP_OPT_ADAM && info.opt_step == 3 &&
              info.opt.beta1 == 0.9f && info.opt.beta2 == 0.999f && info.opt.eps == 1e-8f,
          "optimizer info");
    CHECK(info.has_train && info.train.step == 3 && info.train.epoch == 2 &&
              info.train.epoch_batch == 17 && info.train.seed == 0xfedcba9876543210ull &&
              info.train.world_size == 4 && info.train.threads == 3,
          "train info");
    CHECK(info.train.config && !strcmp(info.train.config, config_text), "config '%s'",
          info.train.config);
    CHECK(info.version && !strcmp(info.version, SHARDPROP_VERSION), "version %s", info.version);
    sp_ckpt_info_free(&info);

    /* Into a fresh model (spec written differently but equivalent) and a fresh optimizer. */
    sp_model *m2 = make_model_("conv2d:4:3:stride=1:pad=1,relu,maxpool:2:stride=2,flatten,dense:5",
                               conv_shape, 3, 99);
    sp_optimizer *o2 = make_opt_(SP_OPT_ADAM, m, 0, 0);
    if (!m2 || !o2) return;
    size_t n = sp_model_num_params(m);
    st = sp_ckpt_load_params(path, m2);
    CHECK(st == SP_OK, "load params: %s", sp_last_error());
    CHECK(!memcmp(sp_model_params(m), sp_model_params(m2), n * sizeof(float)), "params differ");
    st = sp_ckpt_load_optimizer(path, m2, o2);
    CHECK(st == SP_OK, "load optimizer: %s", sp_last_error());
    CHECK(sp_optim_step_count(o2) == 3, "step count %lld", (long long)sp_optim_step_count(o2));
    for (int s = 0; s < 2; ++s)
        CHECK(!memcmp(sp_optim_state(o, s), sp_optim_state(o2, s), n * sizeof(float)),
              "state %d differs", s);

    /* A different optimizer or hyper-parameters: refused, listing what differs. */
    sp_optimizer *sgd = make_opt_(SP_OPT_SGD, m, 0, 0);
    st = sp_ckpt_load_optimizer(path, m2, sgd);
    CHECK(st == SP_ERR_ARG && contains_(sp_last_error(), "adam") &&
              contains_(sp_last_error(), "sgd"),
          "sgd vs adam: %s", sp_last_error());
    sp_optim_free(sgd);
    sp_opt_config c = sp_opt_config_defaults(SP_OPT_ADAM);
    c.beta1 = 0.8f;
    sp_optimizer *o3 = NULL;
    CHECK(sp_optim_create(&o3, &c, n) == SP_OK, "create");
    st = sp_ckpt_load_optimizer(path, m2, o3);
    CHECK(st == SP_ERR_ARG && contains_(sp_last_error(), "beta1 0.899999976 in the checkpoint vs "
                                                         "0.800000012 now"),
          "beta1: %s", sp_last_error());
    CHECK(sp_optim_step_count(o3) == 0, "failed load changed the optimizer");
    sp_optim_free(o3);

    /* SGD with momentum; SGD without state; no optimizer and no train state at all. */
    sp_optimizer *sm = make_opt_(SP_OPT_SGD, m, 2, 9);
    const char *p2 = join_(tmp, "sgd.h5");
    CHECK(sp_ckpt_write(p2, m, sm, "mse", NULL) == SP_OK, "write sgd: %s", sp_last_error());
    sp_optimizer *sm2 = make_opt_(SP_OPT_SGD, m, 0, 0);
    CHECK(sp_ckpt_load_optimizer(p2, m2, sm2) == SP_OK, "load sgd: %s", sp_last_error());
    CHECK(!memcmp(sp_optim_state(sm, 0), sp_optim_state(sm2, 0), n * sizeof(float)) &&
              sp_optim_step_count(sm2) == 2,
          "sgd state");
    CHECK(sp_ckpt_read_info(p2, &info) == SP_OK && !info.has_train && info.has_optimizer,
          "sgd info: %s", sp_last_error());
    sp_ckpt_info_free(&info);
    sp_optim_free(sm);
    sp_optim_free(sm2);

    sp_opt_config plain = sp_opt_config_defaults(SP_OPT_SGD);
    sp_optimizer *pl = NULL, *pl2 = NULL;
    sp_optim_create(&pl, &plain, n);
    sp_optim_create(&pl2, &plain, n);
    sp_optim_step(pl, sp_model_params(m2), sp_model_grads(m2), 0.0f);
    const char *p3 = join_(tmp, "plain.h5");
    CHECK(sp_ckpt_write(p3, m, pl, "xent", &ts) == SP_OK, "write plain: %s", sp_last_error());
    CHECK(sp_ckpt_load_optimizer(p3, m2, pl2) == SP_OK && sp_optim_step_count(pl2) == 1,
          "plain sgd: %s", sp_last_error());
    sp_optim_free(pl);
    sp_optim_free(pl2);

    const char *p4 = join_(tmp, "model_only.h5");
    CHECK(sp_ckpt_write(p4, m, NULL, NULL, NULL) == SP_OK, "write model only: %s", sp_last_error());
    CHECK(sp_ckpt_read_info(p4, &info) == SP_OK && !info.has_train && !info.has_optimizer &&
              !strcmp(info.loss, ""),
          "model-only info: %s", sp_last_error());
    sp_ckpt_info_free(&info);
    CHECK(sp_ckpt_load_params(p4, m2) == SP_OK, "load model only: %s", sp_last_error());
    st = sp_ckpt_load_optimizer(p4, m2, o2);
    CHECK(st == SP_ERR_DATA && contains_(sp_last_error(), "no /optimizer"), "no optimizer: %s",
          sp_last_error());

    /* Overwriting an existing file keeps working (rename over it). */
    CHECK(sp_ckpt_write(p4, m, o, "xent", &ts) == SP_OK, "overwrite: %s", sp_last_error());
    sp_optim_free(o);
    sp_optim_free(o2);
    sp_model_free(m);
    sp_model_free(m2);
}

/* ---- refusals ---------------------------------------------------------------------------------- */

/* Open a written checkpoint with HDF5 and damage it with `fn`. */
static void edit_(const char *path, void (*fn)(hid_t)) {
    sp_h5_lock();
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    CHECK(f >= 0, "reopen %s", path);
    if (f >= 0) {
        fn(f);
        H5Fclose(f);
    }
    sp_h5_unlock();
}

static void bad_bias_shape_(hid_t f) {
    H5Ldelete(f, "/model/params/4/bias", H5P_DEFAULT);
    hsize_t d = 3;
    float z[3] = {0};
    hid_t s = H5Screate_simple(1, &d, NULL);
    hid_t ds = H5Dcreate2(f, "/model/params/4/bias", H5T_IEEE_F32LE, s, H5P_DEFAULT, H5P_DEFAULT,
                          H5P_DEFAULT);
    H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, z);
    H5Dclose(ds);
    H5Sclose(s);
}

static void drop_loss_(hid_t f) {
    H5Adelete_by_name(f, "/model", "loss", H5P_DEFAULT);
}

static void drop_weight_(hid_t f) {
    H5Ldelete(f, "/model/params/0/weight", H5P_DEFAULT);
}

static void int_spec_(hid_t f) {
    H5Adelete_by_name(f, "/model", "spec", H5P_DEFAULT);
    sp_h5_attr_write_int64(H5Gopen2(f, "/model", H5P_DEFAULT), "spec", 3);
}

static void test_refusals(const char *tmp) {
    sp_model *m = make_model_(conv_spec, conv_shape, 3, 11);
    if (!m) return;
    const char *path = join_(tmp, "ref.h5");
    CHECK(sp_ckpt_write(path, m, NULL, "xent", NULL) == SP_OK, "write: %s", sp_last_error());

    sp_model *other =
        make_model_("conv2d:5:3:pad=1,relu,maxpool:2,flatten,dense:5", conv_shape, 3, 1);
    sp_status st = sp_ckpt_load_params(path, other);
    CHECK(st == SP_ERR_SPEC && contains_(sp_last_error(), conv_spec) &&
              contains_(sp_last_error(), "conv2d:5:3:pad=1") && contains_(sp_last_error(), path),
          "other spec: %s", sp_last_error());
    int64_t big[3] = {1, 8, 8};
    sp_model *bigm = make_model_(conv_spec, big, 3, 1);
    st = sp_ckpt_load_params(path, bigm);
    CHECK(st == SP_ERR_SPEC && contains_(sp_last_error(), "(1, 6, 6)") &&
              contains_(sp_last_error(), "(1, 8, 8)"),
          "other input shape: %s", sp_last_error());
    int64_t flat = 36;
    sp_model *flatm = make_model_("dense:5", &flat, 1, 1);
    st = sp_ckpt_load_params(path, flatm);
    CHECK(st == SP_ERR_SPEC, "flat model: %s", sp_last_error());

    /* A damaged file: wrong dataset shape, all or nothing. */
    sp_model *m2 = make_model_(conv_spec, conv_shape, 3, 77);
    size_t n = sp_model_num_params(m2);
    float *before = malloc(n * sizeof *before);
    memcpy(before, sp_model_params(m2), n * sizeof *before);
    const char *bad = join_(tmp, "bad_shape.h5");
    CHECK(sp_ckpt_write(bad, m, NULL, "xent", NULL) == SP_OK, "write");
    edit_(bad, bad_bias_shape_);
    st = sp_ckpt_load_params(bad, m2);
    CHECK(st == SP_ERR_DATA && contains_(sp_last_error(), "/model/params/4/bias") &&
              contains_(sp_last_error(), "(3,)") && contains_(sp_last_error(), "(5,)"),
          "bad shape: %s", sp_last_error());
    CHECK(!memcmp(before, sp_model_params(m2), n * sizeof *before), "failed load changed params");

    const char *nw = join_(tmp, "no_weight.h5");
    CHECK(sp_ckpt_write(nw, m, NULL, "xent", NULL) == SP_OK, "write");
    edit_(nw, drop_weight_);
    st = sp_ckpt_load_params(nw, m2);
    CHECK(st == SP_ERR_DATA && contains_(sp_last_error(), "/model/params/0/weight is missing"),
          "no weight: %s", sp_last_error());

    const char *nl = join_(tmp, "no_loss.h5");
    CHECK(sp_ckpt_write(nl, m, NULL, "xent", NULL) == SP_OK, "write");
    edit_(nl, drop_loss_);
    sp_ckpt_info info;
    st = sp_ckpt_read_info(nl, &info);
    sp_ckpt_info_free(&info);
    CHECK(st == SP_ERR_DATA && contains_(sp_last_error(), "/model@loss is missing"), "no loss: %s",
          sp_last_error());

    const char *is = join_(tmp, "int_spec.h5");
    CHECK(sp_ckpt_write(is, m, NULL, "xent", NULL) == SP_OK, "write");
    edit_(is, int_spec_);
    st = sp_ckpt_read_info(is, &info);
    sp_ckpt_info_free(&info);
    CHECK(st == SP_ERR_DATA && contains_(sp_last_error(), "/model@spec is int64") &&
              contains_(sp_last_error(), "expected one string"),
          "int spec: %s", sp_last_error());

    /* NaN in the parameters. */
    sp_model_params(m)[3] = NAN;
    const char *nan = join_(tmp, "nan.h5");
    CHECK(sp_ckpt_write(nan, m, NULL, "xent", NULL) == SP_OK, "write");
    st = sp_ckpt_load_params(nan, m2);
    CHECK(st == SP_ERR_NUMERIC && contains_(sp_last_error(), "/model/params/0/weight holds NaN"),
          "nan: %s", sp_last_error());

    /* Not a checkpoint at all. */
    const char *txt = join_(tmp, "text.h5");
    write_text_(txt, "this is not HDF5\n");
    st = sp_ckpt_load_params(txt, m2);
    CHECK(st == SP_ERR_DATA && contains_(sp_last_error(), "not an HDF5 file"), "text: %s",
          sp_last_error());
    st = sp_ckpt_read_info(join_(tmp, "missing.h5"), &info);
    sp_ckpt_info_free(&info);
    CHECK(st == SP_ERR_IO && contains_(sp_last_error(), "missing.h5") &&
              contains_(sp_last_error(), "No such file"),
          "missing: %s", sp_last_error());
    const char *data = join_(tmp, "data.h5");
    sp_h5_lock();
    hid_t f = H5Fcreate(data, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    H5Gclose(H5Gcreate2(f, "X", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
    H5Fclose(f);
    sp_h5_unlock();
    st = sp_ckpt_read_info(data, &info);
    sp_ckpt_info_free(&info);
    CHECK(st == SP_ERR_DATA && contains_(sp_last_error(), "no /model group"), "no model: %s",
          sp_last_error());

    free(before);
    sp_model_free(m);
    sp_model_free(m2);
    sp_model_free(other);
    sp_model_free(bigm);
    sp_model_free(flatm);
}

/* ---- the checkpoint directory ------------------------------------------------------------------ */

static sp_status save_(const char *dir, int64_t step, int keep, const sp_model *m,
                       const sp_optimizer *o) {
    sp_train_state ts = train_state_(step);
    char written[1024];
    sp_status st = sp_ckpt_save(dir, step, keep, m, o, "xent", &ts, written, sizeof written);
    if (st == SP_OK) {
        char want[1024];
        FMT(want, "%s/step_%08lld.h5", dir, (long long)step);
        CHECK(!strcmp(written, want), "written %s", written);
    }
    return st;
}

static void test_directory(const char *tmp, sp_model *m, sp_optimizer *o) {
    char dir[1024], list[4096], path[1024];
    FMT(dir, "%s/runs/a/ckpt", tmp); /* parents created too */
    bool found = true;
    CHECK(sp_ckpt_latest(dir, path, sizeof path, &found) == SP_OK && !found,
          "latest of a missing dir: %s", sp_last_error());
    for (int s = 1; s <= 5; ++s)
        CHECK(save_(dir, s, 2, m, o) == SP_OK, "save %d: %s", s, sp_last_error());
    list_dir_(dir, list, sizeof list);
    CHECK(!strcmp(list, "latest step_00000004.h5 step_00000005.h5"), "listing: %s", list);
    CHECK(file_is_(join_(dir, "latest"), "step_00000005.h5\n"), "latest content");
    CHECK(sp_ckpt_latest(dir, path, sizeof path, &found) == SP_OK && found &&
              !strcmp(path, join_(dir, "step_00000005.h5")),
          "latest: %s %s", path, sp_last_error());
    char small[8];
    CHECK(sp_ckpt_latest(dir, small, sizeof small, &found) == SP_ERR_ARG && !found, "cap");

    /* keep <= 0 keeps all; a larger keep later prunes down to it. */
    char dir2[1024];
    FMT(dir2, "%s/all", tmp);
    for (int s = 1; s <= 4; ++s) CHECK(save_(dir2, s * 10, 0, m, o) == SP_OK, "save");
    list_dir_(dir2, list, sizeof list);
    CHECK(!strcmp(list, "latest step_00000010.h5 step_00000020.h5 step_00000030.h5 "
                        "step_00000040.h5"),
          "keep all: %s", list);
    /* Resumed from step 20 in the same directory: the file just written always stays. */
    CHECK(save_(dir2, 25, 2, m, o) == SP_OK, "save 25");
    list_dir_(dir2, list, sizeof list);
    CHECK(!strcmp(list, "latest step_00000025.h5 step_00000040.h5"), "keep after resume: %s", list);
    CHECK(file_is_(join_(dir2, "latest"), "step_00000025.h5\n"), "latest 25");

    /* latest naming a missing file, or garbage: errors that say so. */
    char dir3[1024];
    FMT(dir3, "%s/broken", tmp);
    mkdir(dir3, 0777);
    write_text_(join_(dir3, "latest"), "step_00000007.h5\n");
    sp_status st = sp_ckpt_latest(dir3, path, sizeof path, &found);
    CHECK(st == SP_ERR_IO && !found && contains_(sp_last_error(), "names step_00000007.h5") &&
              contains_(sp_last_error(), "No such file"),
          "dangling latest: %s", sp_last_error());
    write_text_(join_(dir3, "latest"), "../../etc/passwd\n");
    st = sp_ckpt_latest(dir3, path, sizeof path, &found);
    CHECK(st == SP_ERR_DATA && contains_(sp_last_error(), "does not hold a checkpoint file name"),
          "bad latest: %s", sp_last_error());
    write_text_(join_(dir3, "latest"), "text.txt\n");
    write_text_(join_(dir3, "text.txt"), "hello\n");
    st = sp_ckpt_latest(dir3, path, sizeof path, &found);
    CHECK(st == SP_ERR_DATA && contains_(sp_last_error(), "not an HDF5 file"), "latest text: %s",
          sp_last_error());
}

/* ---- security ---------------------------------------------------------------------------------- */

static void test_symlinks(const char *tmp, sp_model *m, sp_optimizer *o) {
    char dir[1024], victim[1024], list[4096], path[1024];
    FMT(dir, "%s/sym", tmp);
    FMT(victim, "%s/victim.txt", tmp);
    CHECK(save_(dir, 5, 0, m, o) == SP_OK, "save 5: %s", sp_last_error());
    write_text_(victim, "victim\n");

    /* A link planted at the next step file: refused, nothing written anywhere. */
    CHECK(symlink(victim, join_(dir, "step_00000006.h5")) == 0, "symlink");
    sp_status st = save_(dir, 6, 0, m, o);
    CHECK(st == SP_ERR_IO && contains_(sp_last_error(), "step_00000006.h5: is a symbolic link"),
          "link at step: %s", sp_last_error());
    CHECK(file_is_(victim, "victim\n"), "victim changed");
    CHECK(file_is_(join_(dir, "latest"), "step_00000005.h5\n"), "latest changed");
    unlink(join_(dir, "step_00000006.h5"));

    /* A dangling link at the step file: its target must not be created. */
    char ghost[1024];
    FMT(ghost, "%s/ghost.h5", tmp);
    CHECK(symlink(ghost, join_(dir, "step_00000006.h5")) == 0, "symlink");
    CHECK(save_(dir, 6, 0, m, o) == SP_ERR_IO, "dangling link accepted");
    CHECK(access(ghost, F_OK) != 0, "the dangling link's target was created");
    unlink(join_(dir, "step_00000006.h5"));

    /* A link planted at latest: refused by save and by latest. */
    unlink(join_(dir, "latest"));
    CHECK(symlink(victim, join_(dir, "latest")) == 0, "symlink");
    st = save_(dir, 6, 0, m, o);
    CHECK(st == SP_ERR_IO && contains_(sp_last_error(), "latest: is a symbolic link"),
          "link at latest: %s", sp_last_error());
    CHECK(file_is_(victim, "victim\n"), "victim changed");
    list_dir_(dir, list, sizeof list);
    CHECK(!strcmp(list, "latest step_00000005.h5"), "listing after refusals: %s", list);
    bool found = true;
    st = sp_ckpt_latest(dir, path, sizeof path, &found);
    CHECK(st == SP_ERR_IO && !found && contains_(sp_last_error(), "symbolic link"),
          "latest link: %s", sp_last_error());
    unlink(join_(dir, "latest"));

    /* sp_ckpt_write refuses a link too. */
    CHECK(symlink(victim, join_(tmp, "out_link.h5")) == 0, "symlink");
    st = sp_ckpt_write(join_(tmp, "out_link.h5"), m, o, "xent", NULL);
    CHECK(st == SP_ERR_IO && contains_(sp_last_error(), "symbolic link"), "write link: %s",
          sp_last_error());
    CHECK(file_is_(victim, "victim\n"), "victim changed");
}

static void test_umask(const char *tmp, sp_model *m, sp_optimizer *o) {
    char dir[1024];
    FMT(dir, "%s/umask", tmp);
    mode_t old = umask(077);
    CHECK(save_(dir, 1, 0, m, o) == SP_OK, "save: %s", sp_last_error());
    struct stat sb;
    CHECK(stat(join_(dir, "step_00000001.h5"), &sb) == 0 && (sb.st_mode & 07777) == 0600,
          "mode %o with umask 077", (unsigned)(sb.st_mode & 07777));
    CHECK(stat(join_(dir, "latest"), &sb) == 0 && (sb.st_mode & 07777) == 0600, "latest mode %o",
          (unsigned)(sb.st_mode & 07777));
    CHECK(stat(dir, &sb) == 0 && (sb.st_mode & 07777) == 0700, "dir mode %o",
          (unsigned)(sb.st_mode & 07777));
    umask(022);
    CHECK(save_(dir, 2, 0, m, o) == SP_OK, "save: %s", sp_last_error());
    CHECK(stat(join_(dir, "step_00000002.h5"), &sb) == 0 && (sb.st_mode & 07777) == 0644,
          "mode %o with umask 022", (unsigned)(sb.st_mode & 07777));
    CHECK(stat(join_(dir, "latest"), &sb) == 0 && (sb.st_mode & 07777) == 0644, "latest mode %o",
          (unsigned)(sb.st_mode & 07777));
    umask(old);
}

/* ---- failures ---------------------------------------------------------------------------------- */

/* Run fn in a child; returns the child's exit status (fn's sp_status, or 100+ on a failed check). */
static int in_child_(sp_status (*fn)(const char *dir, sp_model *m, sp_optimizer *o),
                     const char *dir, sp_model *m, sp_optimizer *o, char *msg, size_t cap) {
    int pfd[2];
    if (pipe(pfd) != 0) return -1;
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        close(pfd[0]);
        sp_status st = fn(dir, m, o);
        const char *e = sp_last_error();
        if (write(pfd[1], e, strlen(e)) < 0) _exit(99);
        _exit((int)st);
    }
    close(pfd[1]);
    ssize_t n = read(pfd[0], msg, cap - 1);
    msg[n > 0 ? n : 0] = '\0';
    close(pfd[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static sp_status save7_(const char *dir, sp_model *m, sp_optimizer *o) {
    sp_train_state ts = train_state_(7);
    return sp_ckpt_save(dir, 7, 2, m, o, "xent", &ts, NULL, 0);
}

static sp_status save7_as_nobody_(const char *dir, sp_model *m, sp_optimizer *o) {
    if (geteuid() == 0) {
        struct passwd *pw = getpwnam("nobody");
        uid_t uid = pw ? pw->pw_uid : 65534;
        gid_t gid = pw ? pw->pw_gid : 65534;
        if (setgid(gid) != 0 || setuid(uid) != 0) _exit(101);
    }
    return save7_(dir, m, o);
}

static sp_status save7_small_fsize_(const char *dir, sp_model *m, sp_optimizer *o) {
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit rl = {4096, 4096};
    if (setrlimit(RLIMIT_FSIZE, &rl) != 0) _exit(102);
    return save7_(dir, m, o);
}

/* The directory holds exactly step 5 and latest -> 5, loadable, with no temporary files. */
static void check_intact_(const char *dir, sp_model *m, const char *what) {
    char list[4096], path[1024];
    list_dir_(dir, list, sizeof list);
    CHECK(!strcmp(list, "latest step_00000005.h5"), "%s: listing %s", what, list);
    bool found = false;
    CHECK(sp_ckpt_latest(dir, path, sizeof path, &found) == SP_OK && found &&
              contains_(path, "step_00000005.h5"),
          "%s: latest %s", what, sp_last_error());
    sp_model *m2 = make_model_(conv_spec, conv_shape, 3, 3);
    CHECK(m2 && sp_ckpt_load_params(path, m2) == SP_OK &&
              !memcmp(sp_model_params(m), sp_model_params(m2),
                      sp_model_num_params(m) * sizeof(float)),
          "%s: load %s", what, sp_last_error());
    sp_model_free(m2);
}

static void test_failures(const char *tmp, sp_model *m, sp_optimizer *o) {
    char msg[1024];
    /* A directory path through a regular file: ENOTDIR. */
    char file[1024], under[1024];
    FMT(file, "%s/plainfile", tmp);
    write_text_(file, "x\n");
    FMT(under, "%s/ckpt", file);
    sp_status st = save_(under, 1, 0, m, o);
    CHECK(st == SP_ERR_IO && contains_(sp_last_error(), "Not a directory") &&
              contains_(sp_last_error(), under),
          "under a file: %s", sp_last_error());
    st = save_(file, 1, 0, m, o);
    CHECK(st == SP_ERR_IO && contains_(sp_last_error(), "Not a directory"), "a file as dir: %s",
          sp_last_error());
    st = sp_ckpt_write(join_(under, "x.h5"), m, o, "xent", NULL);
    CHECK(st == SP_ERR_IO && contains_(sp_last_error(), "Not a directory"), "write under file: %s",
          sp_last_error());

    /* Permission denied (as "nobody" when root; chmod 0500 always). */
    char dir[1024];
    FMT(dir, "%s/perm", tmp);
    CHECK(save_(dir, 5, 2, m, o) == SP_OK, "save 5: %s", sp_last_error());
    chmod(dir, 0555);
    int rc = in_child_(save7_as_nobody_, dir, m, o, msg, sizeof msg);
    CHECK(rc == SP_ERR_IO && contains_(msg, "Permission denied") &&
              contains_(msg, "step_00000007.h5"),
          "permission: rc %d: %s", rc, msg);
    chmod(dir, 0755);
    check_intact_(dir, m, "after EACCES");

    /* Disk full, simulated with RLIMIT_FSIZE: write(2) fails with EFBIG part-way. */
    rc = in_child_(save7_small_fsize_, dir, m, o, msg, sizeof msg);
    CHECK(rc == SP_ERR_IO && contains_(msg, "cannot write the checkpoint") &&
              contains_(msg, "File too large"),
          "fsize: rc %d: %s", rc, msg);
    check_intact_(dir, m, "after EFBIG");
}

/* ---- kill -9 in the middle of a write ---------------------------------------------------------- */

/* Fork a writer of step 6 that stops itself at `where`; returns its pid (stopped) or -1. */
static pid_t stopped_writer_(const char *dir, sp_model *m, sp_optimizer *o, const char *where) {
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        setenv(SP_CKPT_TEST_PAUSE_ENV, where, 1);
        sp_train_state ts = train_state_(6);
        sp_status st = sp_ckpt_save(dir, 6, 2, m, o, "xent", &ts, NULL, 0);
        _exit(st == SP_OK ? 50 : 51); /* not reached when killed */
    }
    int status = 0;
    if (waitpid(pid, &status, WUNTRACED) != pid || !WIFSTOPPED(status)) {
        CHECK(false, "writer did not stop at %s (status %d)", where, status);
        return -1;
    }
    return pid;
}

static void kill_(pid_t pid) {
    kill(pid, SIGKILL);
    int status;
    waitpid(pid, &status, 0);
}

/* The temporary file names in dir (names starting with '.'). */
static int tmp_names_(const char *dir, char names[][128], int max) {
    int n = 0;
    DIR *d = opendir(dir);
    if (!d) return 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < max)
        if (e->d_name[0] == '.' && strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            if (snprintf(names[n], 128, "%s", e->d_name) >= 128) continue;
            ++n;
        }
    closedir(d);
    return n;
}

static bool random_suffix_(const char *name, const char *prefix) {
    size_t lp = strlen(prefix);
    if (strncmp(name, prefix, lp) != 0 || strlen(name) != lp + 12) return false;
    char pid[32];
    FMT(pid, "%ld", (long)getpid());
    for (size_t i = lp; i < lp + 12; ++i) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')))
            return false;
    }
    return true;
}

static void test_kill(const char *tmp, sp_model *m, sp_optimizer *o) {
    char dir[1024], list[4096], names[8][128];
    FMT(dir, "%s/kill", tmp);
    CHECK(save_(dir, 5, 2, m, o) == SP_OK, "save 5: %s", sp_last_error());

    /* Killed half-way through the data of step 6: no step_00000006.h5, latest -> 5. */
    pid_t a = stopped_writer_(dir, m, o, "data");
    if (a < 0) return;
    CHECK(access(join_(dir, "step_00000006.h5"), F_OK) != 0, "partial file under its final name");
    kill_(a);
    int n = tmp_names_(dir, names, 8);
    CHECK(n == 1 && random_suffix_(names[0], ".step_00000006.h5.tmp-"), "temp name %s",
          n ? names[0] : "(none)");
    char first[128];
    FMT(first, "%s", n ? names[0] : "");
    struct stat sb;
    CHECK(stat(join_(dir, first), &sb) == 0 && sb.st_size > 0, "the temp file holds data");
    /* latest and step 5 intact (ignoring the temp file in the listing). */
    char path[1024];
    bool found = false;
    CHECK(sp_ckpt_latest(dir, path, sizeof path, &found) == SP_OK && found &&
              contains_(path, "step_00000005.h5"),
          "latest after kill: %s", sp_last_error());

    /* A second killed writer: its save first removed the stale temp file of the first one,
     * and its own temp name is another, unpredictable one. */
    pid_t b = stopped_writer_(dir, m, o, "1");
    if (b < 0) return;
    kill_(b);
    n = tmp_names_(dir, names, 8);
    CHECK(n == 1 && strcmp(names[0], first) != 0 &&
              random_suffix_(names[0], ".step_00000006.h5.tmp-"),
          "second temp name %s vs %s", n ? names[0] : "(none)", first);

    /* Killed after step 6 is in place but before latest is renamed: latest still -> 5, and
     * both files are complete. */
    pid_t c = stopped_writer_(dir, m, o, "latest");
    if (c < 0) return;
    kill_(c);
    CHECK(file_is_(join_(dir, "latest"), "step_00000005.h5\n"), "latest moved before rename");
    n = tmp_names_(dir, names, 8);
    CHECK(n == 1 && random_suffix_(names[0], ".latest.tmp-"), "latest temp left: %s",
          n ? names[0] : "(none)");
    list_dir_(dir, list, sizeof list);
    CHECK(contains_(list, " latest step_00000005.h5 step_00000006.h5"), "listing %s", list);
    sp_model *m2 = make_model_(conv_spec, conv_shape, 3, 3);
    CHECK(m2 && sp_ckpt_load_params(join_(dir, "step_00000006.h5"), m2) == SP_OK,
          "step 6 complete: %s", sp_last_error());
    CHECK(m2 && sp_ckpt_load_params(join_(dir, "step_00000005.h5"), m2) == SP_OK,
          "step 5 complete: %s", sp_last_error());
    sp_model_free(m2);

    /* The next save removes the stale temp files of killed writers. */
    CHECK(save_(dir, 7, 2, m, o) == SP_OK, "save 7: %s", sp_last_error());
    list_dir_(dir, list, sizeof list);
    CHECK(!strcmp(list, "latest step_00000006.h5 step_00000007.h5"), "after cleanup: %s", list);
    /* A dot file that is not ours stays. */
    write_text_(join_(dir, ".notes"), "mine\n");
    CHECK(save_(dir, 8, 2, m, o) == SP_OK, "save 8: %s", sp_last_error());
    list_dir_(dir, list, sizeof list);
    CHECK(!strcmp(list, ".notes latest step_00000007.h5 step_00000008.h5"), "foreign dot file: %s",
          list);
}

/* ---- --export for tests/torch/ckpt_torch.py ------------------------------------------------- */

static void print_floats_(const char *tag, const float *x, size_t n) {
    printf("%s %zu", tag, n);
    for (size_t i = 0; i < n; ++i) printf(" %.9g", (double)x[i]);
    printf("\n");
}

static int export_(const char *path, const char *spec, const char *shape_arg) {
    int64_t shape[3];
    int rank = 0;
    for (const char *p = shape_arg; *p && rank < 3;) {
        shape[rank++] = strtoll(p, (char **)&p, 10);
        if (*p == ',') ++p;
    }
    sp_model *m = make_model_(spec, shape, rank, 1234);
    if (!m) return 1;
    size_t np = sp_model_num_params(m);
    sp_opt_config c = sp_opt_config_defaults(SP_OPT_ADAM);
    c.weight_decay = 0.01f;
    sp_optimizer *o = NULL;
    if (sp_optim_create(&o, &c, np) != SP_OK) return 1;
    float *g = malloc(np * sizeof *g);
    for (int k = 0; k < 3; ++k) {
        sp_test_fill(g, np, 50 + (uint64_t)k, -1.0f, 1.0f);
        sp_optim_step(o, sp_model_params(m), g, 0.01f);
    }
    sp_train_state ts = train_state_(3);
    if (sp_ckpt_write(path, m, o, "xent", &ts) != SP_OK) {
        fprintf(stderr, "export: %s\n", sp_last_error());
        return 1;
    }
    const int B = 4;
    size_t in = sp_model_input_size(m), out = sp_model_output_size(m);
    float *x = malloc((size_t)B * in * sizeof *x);
    sp_test_fill(x, (size_t)B * in, 77, -1.0f, 1.0f);
    sp_step_ctx ctx = {false, 0, 0, NULL};
    const float *y = sp_model_forward(m, x, B, &ctx);
    printf("batch %d\n", B);
    print_floats_("input", x, (size_t)B * in);
    print_floats_("output", y, (size_t)B * out);
    /* One more Adam step from the checkpoint, for the optimizer-state check. */
    sp_test_fill(g, np, 60, -1.0f, 1.0f);
    sp_optim_step(o, sp_model_params(m), g, 0.01f);
    printf("lr %.9g\n", 0.01);
    print_floats_("grad", g, np);
    print_floats_("params_after", sp_model_params(m), np);
    free(g);
    free(x);
    sp_optim_free(o);
    sp_model_free(m);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 5 && !strcmp(argv[1], "--export")) return export_(argv[2], argv[3], argv[4]);
    const char *tmp = sp_test_tmpdir("checkpoint");
    char tmpdir[1024];
    FMT(tmpdir, "%s", tmp);
    chmod(tmpdir, 0755); /* the "nobody" child must reach its subdirectories */
    test_round_trip(tmpdir);
    test_refusals(tmpdir);
    sp_model *m = make_model_(conv_spec, conv_shape, 3, 21);
    sp_optimizer *o = m ? make_opt_(SP_OPT_ADAM, m, 2, 8) : NULL;
    if (m && o) {
        test_directory(tmpdir, m, o);
        test_symlinks(tmpdir, m, o);
        test_umask(tmpdir, m, o);
        test_failures(tmpdir, m, o);
        test_kill(tmpdir, m, o);
    }
    sp_optim_free(o);
    sp_model_free(m);
    int rc = sp_test_summary("checkpoint");
    if (rc == 0) {
        char cmd[1200];
        FMT(cmd, "rm -rf '%s'", tmpdir);
        sp_test_run(cmd, NULL);
    }
    return rc;
}
