/* Checkpoint files: see checkpoint.h for the layout and the guarantees. */
#include "io/checkpoint.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "model/spec.h"
#include "util/atomic_file.h"
#include "io/h5.h"
#include "util/mem.h"
#include "util/shape.h"
#include "util/status.h"

#ifndef SHARDPROP_VERSION
#define SHARDPROP_VERSION "unknown"
#endif

enum { MAX_RANK = 4 };

/* ============================================================================================ */
/* Small helpers                                                                                */
/* ============================================================================================ */

/* "step_" + at least 8 digits + ".h5" -> *step. */
static bool parse_step_name_(const char *name, int64_t *step) {
    if (strncmp(name, "step_", 5) != 0) return false;
    const char *d = name + 5;
    size_t nd = 0;
    while (d[nd] >= '0' && d[nd] <= '9') ++nd;
    if (nd < 8 || nd > 18 || strcmp(d + nd, ".h5") != 0) return false;
    int64_t v = 0;
    for (size_t i = 0; i < nd; ++i) v = v * 10 + (d[i] - '0');
    *step = v;
    return true;
}

/* The test-only pause (see SP_CKPT_TEST_PAUSE_ENV). */
static void test_pause_(const char *where, const char *what) {
    /* SHARDPROP_TEST_CKPT_SLOW_MS=ms: sleep half-way through the data, a slow file system (the
     * kill -9 test aims at writes in progress) */
    const char *slow = getenv("SHARDPROP_TEST_CKPT_SLOW_MS");
    if (slow && atoi(slow) > 0 && !strcmp(where, "data")) {
        const int ms = atoi(slow);
        struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
        while (nanosleep(&ts, &ts) != 0) continue;
    }
    const char *v = getenv(SP_CKPT_TEST_PAUSE_ENV);
    if (!v || !*v) return;
    bool hit = strcmp(v, where) == 0 || (strcmp(v, "1") == 0 && strcmp(where, "data") == 0);
    if (!hit) return;
    fprintf(stderr, "shardprop: %s=%s: pid %ld stopped while writing %s\n", SP_CKPT_TEST_PAUSE_ENV,
            v, (long)getpid(), what);
    fflush(stderr);
    raise(SIGSTOP);
}

/* ============================================================================================ */
/* Files of a checkpoint directory, relative to its descriptor                                  */
/* ============================================================================================ */

/* Replace dirfd/name by buf[0, len) with the atomic writer (util/atomic_file.h). pause_data /
 * pause_before_rename: SP_CKPT_TEST_PAUSE_ENV values that stop the writer half-way through the
 * data / after fsync + close, before the rename (NULL: no pause point). */
static sp_status replace_file_at_(int dirfd, const char *dirpath, const char *name, const void *buf,
                                  size_t len, const char *pause_data,
                                  const char *pause_before_rename) {
    sp_afile f;
    SP_CHECK(sp_afile_open_at(&f, dirfd, dirpath, name, "checkpoint"));
    const size_t half = pause_data ? len / 2 : len;
    sp_status st = sp_afile_write(&f, buf, half);
    if (st == SP_OK && pause_data) {
        test_pause_(pause_data, f.shown);
        st = sp_afile_write(&f, (const unsigned char *)buf + half, len - half);
    }
    if (st == SP_OK) st = sp_afile_sync(&f);
    if (st == SP_OK && pause_before_rename) test_pause_(pause_before_rename, f.shown);
    if (st != SP_OK) {
        sp_afile_abort(&f);
        return st;
    }
    return sp_afile_commit(&f);
}

/* mkdir -p with mode 0777 (the umask applies). */
static sp_status mkdir_p_(const char *dir) {
    char *p = strdup(dir);
    if (!p) return SP_FAIL(SP_ERR_NOMEM, "%s: out of memory", dir);
    sp_status st = SP_OK;
    size_t len = strlen(p);
    for (size_t i = 1; i <= len && st == SP_OK; ++i) {
        if (i < len && p[i] != '/') continue;
        char saved = p[i];
        p[i] = '\0';
        struct stat sb;
        /* An existing directory is fine even when mkdir says EACCES/EROFS rather than EEXIST. */
        if (mkdir(p, 0777) != 0 && errno != EEXIST && !(stat(p, &sb) == 0 && S_ISDIR(sb.st_mode)))
            st = SP_FAIL(SP_ERR_IO, "%s: cannot create the checkpoint directory (%s: %s)", dir, p,
                         strerror(errno));
        p[i] = saved;
    }
    free(p);
    return st;
}

/* Open a directory for *at() calls. */
static sp_status open_dir_(const char *dir, int *fd) {
    *fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (*fd < 0) {
        return SP_FAIL(SP_ERR_IO, "%s: cannot open the checkpoint directory (%s)", dir,
                       strerror(errno));
    }
    return SP_OK;
}

/* ============================================================================================ */
/* Building the HDF5 image in memory                                                            */
/* ============================================================================================ */

/* The write context: the first failure wins, later calls do nothing. */
typedef struct {
    const char *path;
    sp_status st;
} wctx_;

static void wfail_(wctx_ *w, const char *obj, const char *attr) {
    if (w->st != SP_OK) return;
    w->st = SP_FAIL(SP_ERR_IO, "%s: cannot build the checkpoint in memory at %s%s%s (HDF5 error)",
                    w->path, obj, attr ? "@" : "", attr ? attr : "");
}

static hid_t str_type_(size_t bytes) {
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, bytes);
    H5Tset_strpad(t, H5T_STR_NULLTERM);
    H5Tset_cset(t, H5T_CSET_UTF8);
    return t;
}

static void w_attr_(wctx_ *w, hid_t obj, const char *objname, const char *name, hid_t file_type,
                    hid_t mem_type, int n, const void *v) {
    if (w->st != SP_OK) return;
    hsize_t dim = (hsize_t)n;
    hid_t s = n < 0 ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, &dim, NULL);
    hid_t a = s < 0 ? -1 : H5Acreate2(obj, name, file_type, s, H5P_DEFAULT, H5P_DEFAULT);
    herr_t e = a < 0 ? -1 : H5Awrite(a, mem_type, v);
    if (a >= 0) H5Aclose(a);
    if (s >= 0) H5Sclose(s);
    if (e < 0) wfail_(w, objname, name);
}

/* Strings are fixed-length (the exact length plus a NUL), UTF-8: a reader never has to trust a
 * variable-length string's terminator, which libhdf5 does not guarantee on damaged files. */
static void w_str_(wctx_ *w, hid_t obj, const char *objname, const char *name, const char *v) {
    const char *p = v ? v : "";
    hid_t t = str_type_(strlen(p) + 1);
    w_attr_(w, obj, objname, name, t, t, -1, p);
    H5Tclose(t);
}

static void w_i64_(wctx_ *w, hid_t obj, const char *objname, const char *name, int64_t v) {
    w_attr_(w, obj, objname, name, H5T_STD_I64LE, H5T_NATIVE_INT64, -1, &v);
}

static void w_i32_(wctx_ *w, hid_t obj, const char *objname, const char *name, int32_t v) {
    w_attr_(w, obj, objname, name, H5T_STD_I32LE, H5T_NATIVE_INT32, -1, &v);
}

static void w_f32_(wctx_ *w, hid_t obj, const char *objname, const char *name, float v) {
    w_attr_(w, obj, objname, name, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, -1, &v);
}

/* Create group `name`, or open it when it exists (the state arrays share their groups). */
static hid_t w_group_(wctx_ *w, hid_t loc, const char *name, const char *shown) {
    if (w->st != SP_OK) return -1;
    hid_t g = H5Lexists(loc, name, H5P_DEFAULT) > 0
                  ? H5Gopen2(loc, name, H5P_DEFAULT)
                  : H5Gcreate2(loc, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (g < 0) wfail_(w, shown, NULL);
    return g;
}

static void w_floats_(wctx_ *w, hid_t loc, const char *name, const char *shown, int rank,
                      const int64_t *shape, const float *data) {
    if (w->st != SP_OK) return;
    hsize_t dims[MAX_RANK];
    for (int d = 0; d < rank; ++d) dims[d] = (hsize_t)shape[d];
    hid_t s = H5Screate_simple(rank, dims, NULL);
    hid_t ds =
        s < 0 ? -1
              : H5Dcreate2(loc, name, H5T_IEEE_F32LE, s, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    herr_t e = ds < 0 ? -1 : H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, data);
    if (ds >= 0) H5Dclose(ds);
    if (s >= 0) H5Sclose(s);
    if (e < 0) wfail_(w, shown, NULL);
}

static void h5close_group_(hid_t g) {
    if (g >= 0) H5Gclose(g);
}

/* An int64 scalar dataset (batch norm's num_batches_tracked, as PyTorch's 0-d tensor). */
static void w_i64_scalar_(wctx_ *w, hid_t loc, const char *name, int64_t v) {
    if (w->st != SP_OK) return;
    hid_t s = H5Screate(H5S_SCALAR);
    hid_t ds =
        s < 0 ? -1 : H5Dcreate2(loc, name, H5T_STD_I64LE, s, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    herr_t e = ds < 0 ? -1 : H5Dwrite(ds, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, &v);
    if (ds >= 0) H5Dclose(ds);
    if (s >= 0) H5Sclose(s);
    if (e < 0) wfail_(w, name, NULL);
}

/* Batch norm's buffers under /model/params/<path>: running_mean, running_var (C), and
 * num_batches_tracked, the tensors PyTorch's state_dict holds besides weight and bias. */
static void w_buffers_(wctx_ *w, hid_t root, const char *group, sp_model *m, int i) {
    size_t off, len;
    int64_t *tracked;
    if (!sp_model_layer_buffers(m, i, &off, &len, &tracked)) return;
    const float *b = sp_model_buffers(m) + off;
    const int64_t n = (int64_t)len;
    char name[160];
    snprintf(name, sizeof name, "%s/running_mean", group);
    w_floats_(w, root, name, name, 1, &n, b);
    snprintf(name, sizeof name, "%s/running_var", group);
    w_floats_(w, root, name, name, 1, &n, b + len);
    snprintf(name, sizeof name, "%s/num_batches_tracked", group);
    w_i64_scalar_(w, root, name, *tracked);
}

/* Write the /model/params/<path>/{weight,bias} (prefix "/model/params"; path the layer's module
 * path, "3" or "3.f.0") or the mirrored /optimizer/state/<path>/{weight,bias}/<state name>
 * arrays of slab `slab`; a layer without a bias (bias=0) has no bias array. */
static void w_slab_(wctx_ *w, hid_t root, const char *prefix, const sp_model *m, const float *slab,
                    const char *state_name) {
    int nl = sp_model_num_layers(m);
    for (int i = 0; i < nl && w->st == SP_OK; ++i) {
        size_t w_off, b_off;
        int w_rank;
        int64_t w_shape[4], b_len;
        if (!sp_model_layer_params(m, i, &w_off, &w_rank, w_shape, &b_off, &b_len)) continue;
        const char *lp = sp_model_layer_path(m, i);
        char group[128], name[160];
        snprintf(group, sizeof group, "%s/%s", prefix, lp);
        hid_t g = w_group_(w, root, group, group);
        if (!state_name) w_str_(w, g, group, "layer", sp_model_layer_name(m, i));
        for (int k = 0; k < (b_len ? 2 : 1) && w->st == SP_OK; ++k) {
            const char *which = k == 0 ? "weight" : "bias";
            snprintf(name, sizeof name, "%s/%s", group, which);
            const float *data = slab + (k == 0 ? w_off : b_off);
            if (state_name) {
                hid_t sg = w_group_(w, root, name, name);
                h5close_group_(sg);
                snprintf(name, sizeof name, "%s/%s/%s", group, which, state_name);
            }
            if (k == 0)
                w_floats_(w, root, name, name, w_rank, w_shape, data);
            else
                w_floats_(w, root, name, name, 1, &b_len, data);
        }
        /* read only: the getters are not const */
        if (!state_name) w_buffers_(w, root, group, (sp_model *)m, i);
        h5close_group_(g);
    }
}

/* Build the whole file in memory; *img (malloc'd) and *len on success. Holds the HDF5 lock. */
static sp_status build_image_(const char *path, const sp_model *m, const sp_optimizer *opt,
                              const char *loss_name, const sp_train_state *ts,
                              const sp_ckpt_best *best, void **img, size_t *len) {
    *img = NULL;
    *len = 0;
    size_t np = sp_model_num_params(m);
    int ns = opt ? sp_optim_num_states(opt) : 0;
    if (opt && sp_optim_size(opt) != np)
        return SP_FAIL(SP_ERR_ARG, "%s: the optimizer holds %zu parameters, the model %zu", path,
                       sp_optim_size(opt), np);
    /* One allocation of the core driver for the arrays plus room for the metadata. */
    size_t est = (np * (size_t)(1 + ns)) * sizeof(float) + ((size_t)1 << 20);
    wctx_ w = {path, SP_OK};
    /* The core driver without a backing store keeps the file in memory, but HDF5 first tries to
     * open the name read-only: give it a name that can never exist (a path through /dev/null, a
     * character device, fails with ENOTDIR), so nothing on disk is ever touched by HDF5. */
    const char *mem_name = "/dev/null/shardprop-checkpoint-in-memory";

    sp_h5_lock();
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl < 0 || H5Pset_fapl_core(fapl, est, 0) < 0) wfail_(&w, "/", NULL);
    hid_t f = w.st == SP_OK ? H5Fcreate(mem_name, H5F_ACC_TRUNC, H5P_DEFAULT, fapl) : -1;
    if (fapl >= 0) H5Pclose(fapl);
    if (f < 0) wfail_(&w, "/", NULL);

    /* /model */
    hid_t g = w_group_(&w, f, "/model", "/model");
    w_str_(&w, g, "/model", "spec", sp_model_spec(m));
    w_attr_(&w, g, "/model", "input_shape", H5T_STD_I64LE, H5T_NATIVE_INT64, sp_model_input_rank(m),
            sp_model_input_shape(m));
    w_str_(&w, g, "/model", "loss", loss_name);
    w_i32_(&w, g, "/model", "format_version", SP_CKPT_FORMAT_VERSION);
    h5close_group_(g);
    g = w_group_(&w, f, "/model/params", "/model/params");
    h5close_group_(g);
    /* The API is const-correct; the model and optimizer getters are not, and are only read. */
    w_slab_(&w, f, "/model/params", m, sp_model_params((sp_model *)m), NULL);

    if (opt) {
        const sp_opt_config *c = sp_optim_config(opt);
        g = w_group_(&w, f, "/optimizer", "/optimizer");
        w_str_(&w, g, "/optimizer", "type", sp_opt_kind_name(c->kind));
        w_f32_(&w, g, "/optimizer", "momentum", c->momentum);
        w_i32_(&w, g, "/optimizer", "nesterov", c->nesterov ? 1 : 0);
        w_f32_(&w, g, "/optimizer", "weight_decay", c->weight_decay);
        w_f32_(&w, g, "/optimizer", "beta1", c->beta1);
        w_f32_(&w, g, "/optimizer", "beta2", c->beta2);
        w_f32_(&w, g, "/optimizer", "eps", c->eps);
        w_i64_(&w, g, "/optimizer", "step", sp_optim_step_count(opt));
        h5close_group_(g);
        if (ns > 0) {
            g = w_group_(&w, f, "/optimizer/state", "/optimizer/state");
            h5close_group_(g);
            for (int s = 0; s < ns; ++s)
                w_slab_(&w, f, "/optimizer/state", m, sp_optim_state((sp_optimizer *)opt, s),
                        sp_optim_state_name(opt, s));
        }
    }

    if (ts) {
        g = w_group_(&w, f, "/train", "/train");
        w_i64_(&w, g, "/train", "step", ts->step);
        w_i64_(&w, g, "/train", "epoch", ts->epoch);
        w_i64_(&w, g, "/train", "epoch_batch", ts->epoch_batch);
        w_attr_(&w, g, "/train", "seed", H5T_STD_U64LE, H5T_NATIVE_UINT64, -1, &ts->seed);
        w_str_(&w, g, "/train", "config", ts->config);
        w_str_(&w, g, "/train", "shardprop_version", SHARDPROP_VERSION);
        w_i32_(&w, g, "/train", "world_size", ts->world_size);
        w_i32_(&w, g, "/train", "threads", ts->threads);
        if (best) {
            w_str_(&w, g, "/train", "best_metric", best->metric);
            w_attr_(&w, g, "/train", "best_value", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, -1,
                    &best->value);
            w_i64_(&w, g, "/train", "best_epoch", best->epoch);
            w_i64_(&w, g, "/train", "epochs_since_best", best->epochs_since_best);
        }
        h5close_group_(g);
    }

    if (w.st == SP_OK && H5Fflush(f, H5F_SCOPE_LOCAL) < 0) wfail_(&w, "/", NULL);
    ssize_t n = w.st == SP_OK ? H5Fget_file_image(f, NULL, 0) : -1;
    if (w.st == SP_OK && n <= 0) wfail_(&w, "/", NULL);
    void *buf = w.st == SP_OK ? malloc((size_t)n) : NULL;
    if (w.st == SP_OK && !buf)
        w.st = SP_FAIL(SP_ERR_NOMEM, "%s: cannot allocate %zd bytes for the checkpoint", path, n);
    if (w.st == SP_OK && H5Fget_file_image(f, buf, (size_t)n) != n) wfail_(&w, "/", NULL);
    if (f >= 0 && H5Fclose(f) < 0) wfail_(&w, "/", NULL);
    sp_h5_unlock();
    if (w.st != SP_OK) {
        free(buf);
        return w.st;
    }
    *img = buf;
    *len = (size_t)n;
    return SP_OK;
}

/* ============================================================================================ */
/* Writing: public functions                                                                    */
/* ============================================================================================ */

sp_status sp_ckpt_write(const char *path, const sp_model *m, const sp_optimizer *opt,
                        const char *loss_name, const sp_train_state *ts) {
    size_t len = strlen(path);
    if (len == 0 || path[len - 1] == '/')
        return SP_FAIL(SP_ERR_ARG, "'%s': a checkpoint path must name a file", path);
    char *dir = strdup(path);
    if (!dir) return SP_FAIL(SP_ERR_NOMEM, "%s: out of memory", path);
    char *slash = strrchr(dir, '/');
    const char *base;
    if (!slash) {
        base = path;
        strcpy(dir, ".");
    } else {
        *slash = '\0';
        base = path + (slash - dir) + 1;
        if (slash == dir) strcpy(dir, "/");
    }
    sp_status st = SP_OK;
    if (strcmp(base, ".") == 0 || strcmp(base, "..") == 0)
        st = SP_FAIL(SP_ERR_ARG, "'%s': a checkpoint path must name a file", path);
    int dirfd = -1;
    if (st == SP_OK) st = open_dir_(dir, &dirfd);
    if (st == SP_OK) st = sp_afile_check_target(dirfd, base, path);
    void *img = NULL;
    size_t n = 0;
    if (st == SP_OK) st = build_image_(path, m, opt, loss_name, ts, NULL, &img, &n);
    if (st == SP_OK) st = replace_file_at_(dirfd, dir, base, img, n, "data", NULL);
    free(img);
    if (dirfd >= 0) close(dirfd);
    free(dir);
    return st;
}

/* Remove ".<latest|best.h5|step file>.tmp-XXXXXXXXXXXX" regular files of ours (best effort). */
static void remove_stale_tmps_(int dirfd) {
    int fd2 = dup(dirfd);
    if (fd2 < 0) return;
    DIR *d = fdopendir(fd2);
    if (!d) {
        close(fd2);
        return;
    }
    rewinddir(d); /* the dup shares its offset with dirfd, which an earlier listing moved */
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t tl;
        if (!sp_afile_is_temp_name(e->d_name, &tl)) continue;
        char target[256];
        if (tl >= sizeof target) continue;
        memcpy(target, e->d_name + 1, tl);
        target[tl] = '\0';
        int64_t step;
        if (strcmp(target, "latest") != 0 && strcmp(target, SP_CKPT_BEST_NAME) != 0 &&
            !parse_step_name_(target, &step))
            continue;
        struct stat st;
        if (fstatat(dirfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
        if (!S_ISREG(st.st_mode) || st.st_uid != geteuid()) continue;
        unlinkat(dirfd, e->d_name, 0);
    }
    closedir(d);
}

typedef struct {
    int64_t step;
    char name[64];
} step_file_;

static int cmp_step_desc_(const void *a, const void *b) {
    int64_t x = ((const step_file_ *)a)->step, y = ((const step_file_ *)b)->step;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* Delete step files beyond the `keep` newest; `current` always stays. */
static sp_status prune_(int dirfd, const char *dir, const char *current, int keep) {
    int fd2 = dup(dirfd);
    DIR *d = fd2 < 0 ? NULL : fdopendir(fd2);
    if (!d) {
        if (fd2 >= 0) close(fd2);
        return SP_FAIL(SP_ERR_IO,
                       "%s: checkpoint %s is complete, but the directory cannot be listed to "
                       "delete old checkpoints (%s)",
                       dir, current, strerror(errno));
    }
    rewinddir(d); /* the dup shares its offset with dirfd, which an earlier listing moved */
    step_file_ *files = NULL;
    size_t n = 0, cap = 0;
    sp_status st = SP_OK;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        int64_t step;
        if (!parse_step_name_(e->d_name, &step) || strcmp(e->d_name, current) == 0) continue;
        if (strlen(e->d_name) >= sizeof files[0].name) continue;
        if (n == cap) {
            size_t nc = cap ? 2 * cap : 64;
            step_file_ *nf = realloc(files, nc * sizeof *nf);
            if (!nf) {
                st = SP_FAIL(SP_ERR_NOMEM, "%s: out of memory listing checkpoints", dir);
                break;
            }
            files = nf;
            cap = nc;
        }
        files[n].step = step;
        strcpy(files[n].name, e->d_name);
        ++n;
    }
    closedir(d);
    if (st == SP_OK && n > 0) {
        qsort(files, n, sizeof *files, cmp_step_desc_);
        bool removed = false;
        /* keep - 1 others besides `current` */
        for (size_t i = (size_t)keep - 1; i < n; ++i) {
            if (unlinkat(dirfd, files[i].name, 0) != 0) {
                if (errno == ENOENT) continue;
                st = SP_FAIL(SP_ERR_IO,
                             "%s/%s: cannot delete this old checkpoint (%s); the new checkpoint "
                             "%s is complete",
                             dir, files[i].name, strerror(errno), current);
                break;
            }
            removed = true;
        }
        if (removed && st == SP_OK) st = sp_fsync_dir(dirfd, dir);
    }
    free(files);
    return st;
}

sp_status sp_ckpt_save(const char *dir, int64_t step, int keep, const sp_model *m,
                       const sp_optimizer *opt, const char *loss_name, const sp_train_state *ts,
                       char *written_path, size_t cap) {
    return sp_ckpt_save_tracked(dir, step, keep, m, opt, loss_name, ts, NULL, written_path, cap);
}

sp_status sp_ckpt_save_tracked(const char *dir, int64_t step, int keep, const sp_model *m,
                               const sp_optimizer *opt, const char *loss_name,
                               const sp_train_state *ts, const sp_ckpt_best *best,
                               char *written_path, size_t cap) {
    if (written_path && cap) written_path[0] = '\0';
    if (step < 0) return SP_FAIL(SP_ERR_ARG, "%s: checkpoint step %lld < 0", dir, (long long)step);
    if (!*dir) return SP_FAIL(SP_ERR_ARG, "checkpoint directory: empty path");
    SP_CHECK(mkdir_p_(dir));
    int dirfd;
    SP_CHECK(open_dir_(dir, &dirfd));
    char name[64], latest[80];
    snprintf(name, sizeof name, "step_%08lld.h5", (long long)step);
    int ll = snprintf(latest, sizeof latest, "%s\n", name);
    char *shown = sp_path_join(dir, name);
    char *shown_latest = sp_path_join(dir, "latest");
    sp_status st =
        (!shown || !shown_latest) ? SP_FAIL(SP_ERR_NOMEM, "%s: out of memory", dir) : SP_OK;
    /* Refuse planted links before doing any work. */
    if (st == SP_OK) st = sp_afile_check_target(dirfd, "latest", shown_latest);
    if (st == SP_OK) st = sp_afile_check_target(dirfd, name, shown);
    if (st == SP_OK) remove_stale_tmps_(dirfd);
    void *img = NULL;
    size_t n = 0;
    if (st == SP_OK) st = build_image_(shown, m, opt, loss_name, ts, ts ? best : NULL, &img, &n);
    if (st == SP_OK) st = replace_file_at_(dirfd, dir, name, img, n, "data", NULL);
    free(img);
    if (st == SP_OK)
        st = replace_file_at_(dirfd, dir, "latest", latest, (size_t)ll, NULL, "latest");
    if (st == SP_OK && written_path && cap) snprintf(written_path, cap, "%s", shown);
    if (st == SP_OK && keep > 0) st = prune_(dirfd, dir, name, keep);
    close(dirfd);
    free(shown);
    free(shown_latest);
    return st;
}

sp_status sp_ckpt_save_best(const char *dir, const sp_model *m, const sp_optimizer *opt,
                            const char *loss_name, const sp_train_state *ts,
                            const sp_ckpt_best *best, char *written_path, size_t cap) {
    if (written_path && cap) written_path[0] = '\0';
    if (!*dir) return SP_FAIL(SP_ERR_ARG, "checkpoint directory: empty path");
    SP_CHECK(mkdir_p_(dir));
    int dirfd;
    SP_CHECK(open_dir_(dir, &dirfd));
    char *shown = sp_path_join(dir, SP_CKPT_BEST_NAME);
    sp_status st = shown ? SP_OK : SP_FAIL(SP_ERR_NOMEM, "%s: out of memory", dir);
    if (st == SP_OK) st = sp_afile_check_target(dirfd, SP_CKPT_BEST_NAME, shown);
    if (st == SP_OK) remove_stale_tmps_(dirfd);
    void *img = NULL;
    size_t n = 0;
    if (st == SP_OK) st = build_image_(shown, m, opt, loss_name, ts, ts ? best : NULL, &img, &n);
    if (st == SP_OK) st = replace_file_at_(dirfd, dir, SP_CKPT_BEST_NAME, img, n, "data", NULL);
    free(img);
    if (st == SP_OK && written_path && cap) snprintf(written_path, cap, "%s", shown);
    close(dirfd);
    free(shown);
    return st;
}

/* Read the first 8 bytes of fd: the HDF5 signature at offset 0 (shardprop writes no user block). */
static bool has_h5_signature_(int fd) {
    static const unsigned char sig[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
    unsigned char b[8];
    ssize_t r = pread(fd, b, 8, 0);
    return r == 8 && memcmp(b, sig, 8) == 0;
}

sp_status sp_ckpt_latest(const char *dir, char *path, size_t cap, bool *found) {
    *found = false;
    if (cap) path[0] = '\0';
    int dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dirfd < 0) {
        if (errno == ENOENT) return SP_OK;
        return SP_FAIL(SP_ERR_IO, "%s: cannot open the checkpoint directory (%s)", dir,
                       strerror(errno));
    }
    sp_status st = SP_OK;
    char buf[300];
    ssize_t len = 0;
    int fd = openat(dirfd, "latest", O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        if (errno == ENOENT) {
            close(dirfd);
            return SP_OK;
        }
        if (errno == ELOOP)
            st = SP_FAIL(SP_ERR_IO, "%s/latest: is a symbolic link; refusing to follow it", dir);
        else
            st = SP_FAIL(SP_ERR_IO, "%s/latest: cannot open (%s)", dir, strerror(errno));
    } else {
        struct stat sb;
        if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode))
            st = SP_FAIL(SP_ERR_IO, "%s/latest: not a regular file", dir);
        else if ((len = pread(fd, buf, sizeof buf - 1, 0)) < 0)
            st = SP_FAIL(SP_ERR_IO, "%s/latest: cannot read (%s)", dir, strerror(errno));
        close(fd);
    }
    if (st == SP_OK) {
        buf[len] = '\0';
        while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r' || buf[len - 1] == ' '))
            buf[--len] = '\0';
        bool ok = len > 0 && len < 256 && buf[0] != '.';
        for (ssize_t i = 0; i < len && ok; ++i) ok = buf[i] > ' ' && buf[i] < 127 && buf[i] != '/';
        if (!ok)
            st = SP_FAIL(SP_ERR_DATA,
                         "%s/latest: does not hold a checkpoint file name (expected e.g. "
                         "\"step_00000100.h5\")",
                         dir);
    }
    if (st == SP_OK) {
        int cf = openat(dirfd, buf, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
        struct stat sb;
        if (cf < 0)
            st = SP_FAIL(SP_ERR_IO, "%s/latest: names %s, which cannot be opened (%s)", dir, buf,
                         errno == ELOOP ? "it is a symbolic link" : strerror(errno));
        else if (fstat(cf, &sb) != 0 || !S_ISREG(sb.st_mode))
            st = SP_FAIL(SP_ERR_IO, "%s/latest: names %s, which is not a regular file", dir, buf);
        else if (!has_h5_signature_(cf))
            st = SP_FAIL(SP_ERR_DATA, "%s/latest: names %s, which is not an HDF5 file", dir, buf);
        if (cf >= 0) close(cf);
    }
    close(dirfd);
    if (st != SP_OK) return st;
    int need = snprintf(path, cap, "%s%s%s", dir, dir[strlen(dir) - 1] == '/' ? "" : "/", buf);
    if (need < 0 || (size_t)need >= cap) {
        if (cap) path[0] = '\0';
        return SP_FAIL(SP_ERR_ARG, "%s/%s: path longer than %zu bytes", dir, buf, cap);
    }
    *found = true;
    return SP_OK;
}

/* ============================================================================================ */
/* Reading                                                                                      */
/* ============================================================================================ */

/* Open a checkpoint for reading; checks existence and signature first for clear messages.
 * Caller holds the HDF5 lock. */
static sp_status open_read_(const char *path, hid_t *f) {
    *f = -1;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) return SP_FAIL(SP_ERR_IO, "%s: cannot open checkpoint (%s)", path, strerror(errno));
    struct stat sb;
    sp_status st = SP_OK;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode))
        st = SP_FAIL(SP_ERR_IO, "%s: not a regular file (wanted a checkpoint)", path);
    else if (!has_h5_signature_(fd))
        st = SP_FAIL(SP_ERR_DATA, "%s: not an HDF5 file (no HDF5 signature), so not a checkpoint",
                     path);
    close(fd);
    if (st != SP_OK) return st;
    *f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (*f < 0)
        return SP_FAIL(SP_ERR_DATA, "%s: HDF5 cannot open this file (damaged or truncated?)", path);
    if (!sp_h5_exists(*f, "/model")) {
        H5Fclose(*f);
        *f = -1;
        return SP_FAIL(SP_ERR_DATA,
                       "%s: no /model group: not a shardprop checkpoint (a data file?)", path);
    }
    return SP_OK;
}

/* Open attribute obj@name, scalar or 1-D; returns its id, type class and element count. */
static sp_status attr_open_(hid_t obj, const char *name, const char *file, const char *objname,
                            hid_t *a, H5T_class_t *cls, hssize_t *npts) {
    *a = -1;
    if (H5Aexists(obj, name) <= 0)
        return SP_FAIL(SP_ERR_DATA, "%s: checkpoint attribute %s@%s is missing", file, objname,
                       name);
    *a = H5Aopen(obj, name, H5P_DEFAULT);
    if (*a < 0)
        return SP_FAIL(SP_ERR_DATA, "%s: cannot open checkpoint attribute %s@%s", file, objname,
                       name);
    hid_t t = H5Aget_type(*a), s = H5Aget_space(*a);
    *cls = H5Tget_class(t);
    *npts = H5Sget_simple_extent_npoints(s);
    H5Sclose(s);
    H5Tclose(t);
    return SP_OK;
}

static sp_status attr_type_err_(hid_t a, const char *file, const char *objname, const char *name,
                                const char *want) {
    hid_t t = H5Aget_type(a), s = H5Aget_space(a);
    sp_status st = SP_FAIL(
        SP_ERR_DATA, "%s: checkpoint attribute %s@%s is %s with %lld value(s); expected %s", file,
        objname, name, sp_h5_type_name(t), (long long)H5Sget_simple_extent_npoints(s), want);
    H5Sclose(s);
    H5Tclose(t);
    H5Aclose(a);
    return st;
}

#define SP_CKPT_MAX_STR_BYTES (16 << 20)

/* A string attribute (variable- or fixed-length) -> *out (malloc'd). */
static sp_status r_str_(hid_t obj, const char *name, const char *file, const char *objname,
                        char **out) {
    hid_t a;
    H5T_class_t c;
    hssize_t np;
    SP_CHECK(attr_open_(obj, name, file, objname, &a, &c, &np));
    if (c != H5T_STRING || np != 1) return attr_type_err_(a, file, objname, name, "one string");
    hid_t t = H5Aget_type(a);
    sp_status st = SP_OK;
    if (H5Tis_variable_str(t) > 0) {
        /* shardprop writes fixed-length strings; a variable-length one is refused rather than
         * read, since libhdf5 may hand back an unterminated buffer for a damaged file */
        st = SP_FAIL(SP_ERR_DATA,
                     "%s: checkpoint attribute %s@%s is a variable-length string; shardprop "
                     "checkpoints store fixed-length strings",
                     file, objname, name);
    } else {
        /* The size comes from the file: a spec, a loss name or a config file is far below
         * this; H5Tget_size gives 0 on error. */
        size_t sz = H5Tget_size(t);
        if (sz == 0 || sz > SP_CKPT_MAX_STR_BYTES) {
            H5Tclose(t);
            H5Aclose(a);
            return SP_FAIL(SP_ERR_DATA,
                           "%s: checkpoint attribute %s@%s is a string of %zu bytes; expected "
                           "1 to %d",
                           file, objname, name, sz, SP_CKPT_MAX_STR_BYTES);
        }
        char *p = calloc(1, sz + 1);
        hid_t mt = H5Tcopy(t);
        H5Tset_strpad(mt, H5T_STR_NULLTERM);
        H5Tset_size(mt, sz + 1);
        if (!p)
            st = SP_FAIL(SP_ERR_NOMEM, "%s: out of memory", file);
        else if (H5Aread(a, mt, p) < 0)
            st = SP_FAIL(SP_ERR_DATA, "%s: cannot read checkpoint attribute %s@%s", file, objname,
                         name);
        H5Tclose(mt);
        if (st == SP_OK)
            *out = p;
        else
            free(p);
    }
    H5Tclose(t);
    H5Aclose(a);
    return st;
}

/* An integer attribute: scalar (n_max = 1) or a 1-D array of 1..n_max values (*n). */
static sp_status r_ints_(hid_t obj, const char *name, const char *file, const char *objname,
                         hid_t mem_type, void *out, int n_max, int *n) {
    hid_t a;
    H5T_class_t c;
    hssize_t np;
    SP_CHECK(attr_open_(obj, name, file, objname, &a, &c, &np));
    if (c != H5T_INTEGER || np < 1 || np > n_max)
        return attr_type_err_(a, file, objname, name,
                              n_max == 1 ? "one integer" : "a short array of integers");
    sp_status st = SP_OK;
    if (H5Aread(a, mem_type, out) < 0)
        st =
            SP_FAIL(SP_ERR_DATA, "%s: cannot read checkpoint attribute %s@%s", file, objname, name);
    H5Aclose(a);
    if (n) *n = (int)np;
    return st;
}

static sp_status r_i64_(hid_t obj, const char *name, const char *file, const char *objname,
                        int64_t *out) {
    return r_ints_(obj, name, file, objname, H5T_NATIVE_INT64, out, 1, NULL);
}

static sp_status r_f32_(hid_t obj, const char *name, const char *file, const char *objname,
                        float *out) {
    hid_t a;
    H5T_class_t c;
    hssize_t np;
    SP_CHECK(attr_open_(obj, name, file, objname, &a, &c, &np));
    if ((c != H5T_FLOAT && c != H5T_INTEGER) || np != 1)
        return attr_type_err_(a, file, objname, name, "one number");
    sp_status st = SP_OK;
    if (H5Aread(a, H5T_NATIVE_FLOAT, out) < 0)
        st =
            SP_FAIL(SP_ERR_DATA, "%s: cannot read checkpoint attribute %s@%s", file, objname, name);
    H5Aclose(a);
    return st;
}

static sp_status r_f64_(hid_t obj, const char *name, const char *file, const char *objname,
                        double *out) {
    hid_t a;
    H5T_class_t c;
    hssize_t np;
    SP_CHECK(attr_open_(obj, name, file, objname, &a, &c, &np));
    if (c != H5T_FLOAT || np != 1) return attr_type_err_(a, file, objname, name, "one float");
    sp_status st = SP_OK;
    if (H5Aread(a, H5T_NATIVE_DOUBLE, out) < 0)
        st =
            SP_FAIL(SP_ERR_DATA, "%s: cannot read checkpoint attribute %s@%s", file, objname, name);
    H5Aclose(a);
    return st;
}

static sp_status int_range_(int64_t v, int64_t lo, int64_t hi, const char *file, const char *obj,
                            const char *name) {
    if (v < lo || v > hi)
        return SP_FAIL(SP_ERR_DATA,
                       "%s: checkpoint attribute %s@%s = %lld is out of range [%lld, %lld]", file,
                       obj, name, (long long)v, (long long)lo, (long long)hi);
    return SP_OK;
}

/* Fill *info from an open file; caller holds the lock. */
static sp_status read_info_(hid_t f, const char *path, sp_ckpt_info *info) {
    hid_t g = H5Gopen2(f, "/model", H5P_DEFAULT);
    if (g < 0) return SP_FAIL(SP_ERR_DATA, "%s: cannot open /model", path);
    int64_t fv = 0;
    sp_status st = r_i64_(g, "format_version", path, "/model", &fv);
    if (st == SP_OK && fv != SP_CKPT_FORMAT_VERSION)
        st = SP_FAIL(SP_ERR_DATA,
                     "%s: checkpoint format_version %lld; this shardprop reads version %d%s", path,
                     (long long)fv, SP_CKPT_FORMAT_VERSION,
                     fv > SP_CKPT_FORMAT_VERSION ? " (written by a newer shardprop?)" : "");
    info->format_version = (int)fv;
    if (st == SP_OK) st = r_str_(g, "spec", path, "/model", &info->spec);
    if (st == SP_OK)
        st = r_ints_(g, "input_shape", path, "/model", H5T_NATIVE_INT64, info->input_shape,
                     MAX_RANK, &info->input_rank);
    if (st == SP_OK) st = r_str_(g, "loss", path, "/model", &info->loss);
    H5Gclose(g);
    if (st != SP_OK) return st;

    info->has_optimizer = sp_h5_exists(f, "/optimizer");
    if (info->has_optimizer) {
        g = H5Gopen2(f, "/optimizer", H5P_DEFAULT);
        if (g < 0) return SP_FAIL(SP_ERR_DATA, "%s: cannot open /optimizer", path);
        char *type = NULL;
        int64_t nest = 0;
        const char *o = "/optimizer";
        st = r_str_(g, "type", path, o, &type);
        if (st == SP_OK && sp_opt_kind_parse(type, &info->opt.kind) != SP_OK)
            st = SP_FAIL(SP_ERR_DATA, "%s: /optimizer@type '%s' is not sgd, adam or adamw", path,
                         type);
        free(type);
        if (st == SP_OK) st = r_f32_(g, "momentum", path, o, &info->opt.momentum);
        if (st == SP_OK) st = r_i64_(g, "nesterov", path, o, &nest);
        if (st == SP_OK) st = int_range_(nest, 0, 1, path, o, "nesterov");
        info->opt.nesterov = nest != 0;
        if (st == SP_OK) st = r_f32_(g, "weight_decay", path, o, &info->opt.weight_decay);
        if (st == SP_OK) st = r_f32_(g, "beta1", path, o, &info->opt.beta1);
        if (st == SP_OK) st = r_f32_(g, "beta2", path, o, &info->opt.beta2);
        if (st == SP_OK) st = r_f32_(g, "eps", path, o, &info->opt.eps);
        if (st == SP_OK) st = r_i64_(g, "step", path, o, &info->opt_step);
        if (st == SP_OK) st = int_range_(info->opt_step, 0, INT64_MAX, path, o, "step");
        H5Gclose(g);
        if (st != SP_OK) return st;
    }

    info->has_train = sp_h5_exists(f, "/train");
    if (info->has_train) {
        g = H5Gopen2(f, "/train", H5P_DEFAULT);
        if (g < 0) return SP_FAIL(SP_ERR_DATA, "%s: cannot open /train", path);
        const char *o = "/train";
        sp_train_state *t = &info->train;
        int64_t ws = 0, th = 0;
        char *cfg = NULL;
        st = r_i64_(g, "step", path, o, &t->step);
        if (st == SP_OK) st = int_range_(t->step, 0, INT64_MAX, path, o, "step");
        if (st == SP_OK) st = r_i64_(g, "epoch", path, o, &t->epoch);
        if (st == SP_OK) st = int_range_(t->epoch, 0, INT64_MAX, path, o, "epoch");
        if (st == SP_OK) st = r_i64_(g, "epoch_batch", path, o, &t->epoch_batch);
        if (st == SP_OK) st = int_range_(t->epoch_batch, 0, INT64_MAX, path, o, "epoch_batch");
        if (st == SP_OK) st = r_ints_(g, "seed", path, o, H5T_NATIVE_UINT64, &t->seed, 1, NULL);
        if (st == SP_OK) st = r_str_(g, "config", path, o, &cfg);
        t->config = cfg;
        if (st == SP_OK) st = r_str_(g, "shardprop_version", path, o, &info->version);
        if (st == SP_OK) st = r_i64_(g, "world_size", path, o, &ws);
        if (st == SP_OK) st = int_range_(ws, 0, INT32_MAX, path, o, "world_size");
        if (st == SP_OK) st = r_i64_(g, "threads", path, o, &th);
        if (st == SP_OK) st = int_range_(th, 0, INT32_MAX, path, o, "threads");
        t->world_size = (int)ws;
        t->threads = (int)th;
        /* the best so far: optional (older files, runs without --keep-best or --early-stop) */
        if (st == SP_OK && H5Aexists(g, "best_metric") > 0) {
            sp_ckpt_best *b = &info->best;
            char *bm = NULL;
            info->has_best = true;
            st = r_str_(g, "best_metric", path, o, &bm);
            b->metric = bm;
            if (st == SP_OK) st = r_f64_(g, "best_value", path, o, &b->value);
            if (st == SP_OK) st = r_i64_(g, "best_epoch", path, o, &b->epoch);
            if (st == SP_OK) st = int_range_(b->epoch, 0, INT64_MAX, path, o, "best_epoch");
            if (st == SP_OK) st = r_i64_(g, "epochs_since_best", path, o, &b->epochs_since_best);
            if (st == SP_OK)
                st = int_range_(b->epochs_since_best, 0, INT64_MAX, path, o, "epochs_since_best");
        }
        H5Gclose(g);
    }
    return st;
}

void sp_ckpt_info_free(sp_ckpt_info *info) {
    if (!info) return;
    free(info->spec);
    free(info->loss);
    free((char *)info->train.config);
    free((char *)info->best.metric);
    free(info->version);
    memset(info, 0, sizeof *info);
}

sp_status sp_ckpt_read_info(const char *path, sp_ckpt_info *info) {
    memset(info, 0, sizeof *info);
    sp_h5_lock();
    hid_t f;
    sp_status st = open_read_(path, &f);
    if (st == SP_OK) {
        st = read_info_(f, path, info);
        H5Fclose(f);
    }
    sp_h5_unlock();
    return st;
}

/* The checkpoint's model must be m's: same spec and input shape. */
static sp_status check_model_(const char *path, const sp_ckpt_info *info, const sp_model *m) {
    if (!sp_spec_same(info->spec, sp_model_spec(m)))
        return SP_FAIL(SP_ERR_SPEC,
                       "%s: the checkpoint's model spec \"%s\" differs from this model's \"%s\"",
                       path, info->spec, sp_model_spec(m));
    int rank = sp_model_input_rank(m);
    const int64_t *shape = sp_model_input_shape(m);
    bool same = info->input_rank == rank;
    for (int d = 0; same && d < rank; ++d) same = info->input_shape[d] == shape[d];
    if (!same) {
        char a[96], b[96];
        sp_shape_str(a, sizeof a, info->input_shape, info->input_rank);
        sp_shape_str(b, sizeof b, shape, rank);
        return SP_FAIL(SP_ERR_SPEC,
                       "%s: the checkpoint's input shape %s differs from this model's %s", path, a,
                       b);
    }
    return SP_OK;
}

/* Read float dataset `name` of exactly `shape` into dst; rejects NaN/Inf. */
static sp_status r_floats_(hid_t f, const char *path, const char *name, int rank,
                           const int64_t *shape, float *dst) {
    if (!sp_h5_exists(f, name))
        return SP_FAIL(SP_ERR_DATA, "%s: checkpoint dataset %s is missing", path, name);
    hid_t ds = H5Dopen2(f, name, H5P_DEFAULT);
    if (ds < 0) return SP_FAIL(SP_ERR_DATA, "%s: cannot open checkpoint dataset %s", path, name);
    hid_t t = H5Dget_type(ds), s = H5Dget_space(ds);
    int r = H5Sget_simple_extent_ndims(s);
    hsize_t dims[8] = {0};
    if (r > 0 && r <= 8) H5Sget_simple_extent_dims(s, dims, NULL);
    bool same = r == rank;
    for (int d = 0; same && d < rank; ++d) same = dims[d] == (hsize_t)shape[d];
    sp_status st = SP_OK;
    if (H5Tget_class(t) != H5T_FLOAT) {
        st = SP_FAIL(SP_ERR_DATA, "%s: checkpoint dataset %s is %s; expected float32", path, name,
                     sp_h5_type_name(t));
    } else if (!same) {
        char a[128], b[128];
        int64_t fd[8];
        int rr = r < 0 ? 0 : r > 8 ? 8 : r;
        for (int d = 0; d < rr; ++d) fd[d] = (int64_t)dims[d];
        sp_shape_str(a, sizeof a, fd, rr);
        sp_shape_str(b, sizeof b, shape, rank);
        st = SP_FAIL(SP_ERR_DATA, "%s: checkpoint dataset %s has shape %s; the model needs %s",
                     path, name, a, b);
    } else if (H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, dst) < 0) {
        st = SP_FAIL(SP_ERR_DATA, "%s: cannot read checkpoint dataset %s", path, name);
    } else {
        size_t n = 1;
        for (int d = 0; d < rank; ++d) n *= (size_t)shape[d];
        for (size_t i = 0; i < n; ++i)
            if (!isfinite(dst[i])) {
                st = SP_FAIL(SP_ERR_NUMERIC, "%s: checkpoint dataset %s holds %s at element %zu",
                             path, name, isnan(dst[i]) ? "NaN" : "Inf", i);
                break;
            }
    }
    H5Sclose(s);
    H5Tclose(t);
    H5Dclose(ds);
    return st;
}

/* An int64 scalar dataset. */
static sp_status r_i64_scalar_(hid_t f, const char *path, const char *name, int64_t *v) {
    if (!sp_h5_exists(f, name))
        return SP_FAIL(SP_ERR_DATA, "%s: checkpoint dataset %s is missing", path, name);
    hid_t ds = H5Dopen2(f, name, H5P_DEFAULT);
    if (ds < 0) return SP_FAIL(SP_ERR_DATA, "%s: cannot open checkpoint dataset %s", path, name);
    hid_t t = H5Dget_type(ds), s = H5Dget_space(ds);
    sp_status st = SP_OK;
    if (H5Tget_class(t) != H5T_INTEGER || H5Sget_simple_extent_npoints(s) != 1)
        st = SP_FAIL(SP_ERR_DATA, "%s: checkpoint dataset %s is not one integer", path, name);
    else if (H5Dread(ds, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) < 0)
        st = SP_FAIL(SP_ERR_DATA, "%s: cannot read checkpoint dataset %s", path, name);
    else if (*v < 0)
        st = SP_FAIL(SP_ERR_DATA, "%s: checkpoint dataset %s is negative (%lld)", path, name,
                     (long long)*v);
    H5Sclose(s);
    H5Tclose(t);
    H5Dclose(ds);
    return st;
}

/* Read the mirrored arrays under `prefix` ("/model/params" or "/optimizer/state") into slab;
 * with buf (the params), the batch-norm buffers into buf and tracked (one per layer) too. */
static sp_status r_slab_(hid_t f, const char *path, const char *prefix, sp_model *m,
                         const char *state_name, float *slab, float *buf, int64_t *tracked) {
    int nl = sp_model_num_layers(m);
    for (int i = 0; i < nl; ++i) {
        size_t w_off, b_off;
        int w_rank;
        int64_t w_shape[4], b_len;
        if (!sp_model_layer_params(m, i, &w_off, &w_rank, w_shape, &b_off, &b_len)) continue;
        const char *lp = sp_model_layer_path(m, i), *sep = state_name ? "/" : "",
                   *sn = state_name ? state_name : "";
        char name[192];
        snprintf(name, sizeof name, "%s/%s/weight%s%s", prefix, lp, sep, sn);
        SP_CHECK(r_floats_(f, path, name, w_rank, w_shape, slab + w_off));
        if (b_len) {
            snprintf(name, sizeof name, "%s/%s/bias%s%s", prefix, lp, sep, sn);
            SP_CHECK(r_floats_(f, path, name, 1, &b_len, slab + b_off));
        }
        size_t off, len;
        int64_t *t;
        if (!buf || !sp_model_layer_buffers(m, i, &off, &len, &t)) continue;
        const int64_t n = (int64_t)len;
        snprintf(name, sizeof name, "%s/%s/running_mean", prefix, lp);
        SP_CHECK(r_floats_(f, path, name, 1, &n, buf + off));
        snprintf(name, sizeof name, "%s/%s/running_var", prefix, lp);
        SP_CHECK(r_floats_(f, path, name, 1, &n, buf + off + len));
        snprintf(name, sizeof name, "%s/%s/num_batches_tracked", prefix, lp);
        SP_CHECK(r_i64_scalar_(f, path, name, &tracked[i]));
    }
    return SP_OK;
}

sp_status sp_ckpt_load_params(const char *path, sp_model *m) {
    const size_t np = sp_model_num_params(m), nb = sp_model_num_buffers(m);
    const int nl = sp_model_num_layers(m);
    float *tmp = malloc((np + nb + 1) * sizeof *tmp);
    int64_t *tracked = calloc((size_t)nl, sizeof *tracked);
    if (!tmp || !tracked) {
        free(tmp);
        free(tracked);
        return SP_FAIL(SP_ERR_NOMEM, "%s: cannot allocate %zu parameters", path, np);
    }
    sp_ckpt_info info;
    memset(&info, 0, sizeof info);
    sp_h5_lock();
    hid_t f;
    sp_status st = open_read_(path, &f);
    if (st == SP_OK) {
        st = read_info_(f, path, &info);
        if (st == SP_OK) st = check_model_(path, &info, m);
        if (st == SP_OK) st = r_slab_(f, path, "/model/params", m, NULL, tmp, tmp + np, tracked);
        H5Fclose(f);
    }
    sp_h5_unlock();
    if (st == SP_OK) { /* all or nothing: the model is untouched on any error */
        memcpy(sp_model_params(m), tmp, np * sizeof *tmp);
        memcpy(sp_model_buffers(m), tmp + np, nb * sizeof *tmp);
        for (int i = 0; i < nl; ++i) {
            size_t off, len;
            int64_t *t;
            if (sp_model_layer_buffers(m, i, &off, &len, &t)) *t = tracked[i];
        }
    }
    sp_ckpt_info_free(&info);
    free(tmp);
    free(tracked);
    return st;
}

/* List the hyper-parameters that differ (those `kind` uses); "" when none. */
static void opt_diff_(char *buf, size_t cap, const sp_opt_config *file, const sp_opt_config *run) {
    size_t k = 0;
    buf[0] = '\0';
#define SP_DIFF_(field)                                                                            \
    if (file->field != run->field && k < cap)                                                      \
        k += (size_t)snprintf(buf + k, cap - k, "%s%s %.9g in the checkpoint vs %.9g now",         \
                              k ? ", " : "", #field, (double)file->field, (double)run->field);
    if (file->kind == SP_OPT_SGD) {
        SP_DIFF_(momentum)
        SP_DIFF_(nesterov)
    } else {
        SP_DIFF_(beta1)
        SP_DIFF_(beta2)
        SP_DIFF_(eps)
    }
    SP_DIFF_(weight_decay)
#undef SP_DIFF_
}

sp_status sp_ckpt_load_optimizer(const char *path, const sp_model *m, sp_optimizer *opt) {
    size_t np = sp_model_num_params(m);
    if (sp_optim_size(opt) != np)
        return SP_FAIL(SP_ERR_ARG, "%s: the optimizer holds %zu parameters, the model %zu", path,
                       sp_optim_size(opt), np);
    int ns = sp_optim_num_states(opt);
    float *tmp = NULL;
    size_t bytes = 0;
    if (ns > 0)
        SP_CHECK(sp_mem_check_n((size_t)ns * np, sizeof *tmp, &bytes, path,
                                "the optimizer state being loaded"));
    if (ns > 0 && !(tmp = malloc(bytes)))
        return SP_FAIL(SP_ERR_NOMEM, "%s: cannot allocate the optimizer state", path);
    sp_ckpt_info info;
    memset(&info, 0, sizeof info);
    sp_h5_lock();
    hid_t f;
    sp_status st = open_read_(path, &f);
    if (st == SP_OK) {
        st = read_info_(f, path, &info);
        if (st == SP_OK) st = check_model_(path, &info, m);
        if (st == SP_OK && !info.has_optimizer)
            st = SP_FAIL(SP_ERR_DATA,
                         "%s: no /optimizer group: this checkpoint holds no "
                         "optimizer state (use it to initialize, not to resume)",
                         path);
        const sp_opt_config *run = sp_optim_config(opt);
        if (st == SP_OK && info.opt.kind != run->kind)
            st = SP_FAIL(SP_ERR_ARG, "%s: the checkpoint's optimizer is %s, this run's is %s", path,
                         sp_opt_kind_name(info.opt.kind), sp_opt_kind_name(run->kind));
        if (st == SP_OK) {
            char diff[512];
            opt_diff_(diff, sizeof diff, &info.opt, run);
            if (diff[0])
                st = SP_FAIL(SP_ERR_ARG, "%s: the optimizer's hyper-parameters differ: %s", path,
                             diff);
        }
        for (int s = 0; s < ns && st == SP_OK; ++s)
            st = r_slab_(f, path, "/optimizer/state", (sp_model *)m, sp_optim_state_name(opt, s),
                         tmp + (size_t)s * np, NULL, NULL);
        H5Fclose(f);
    }
    sp_h5_unlock();
    if (st == SP_OK) {
        for (int s = 0; s < ns; ++s)
            memcpy(sp_optim_state(opt, s), tmp + (size_t)s * np, np * sizeof *tmp);
        sp_optim_set_step_count(opt, info.opt_step);
    }
    sp_ckpt_info_free(&info);
    free(tmp);
    return st;
}
