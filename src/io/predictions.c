/* The predictions file (io/predictions.h). Every call takes the HDF5 lock (a loader's reader
 * thread may use HDF5 at the same time). */
#include "io/predictions.h"

#include <stdlib.h>
#include <string.h>

#include "io/h5.h"
#include "util/status.h"

struct sp_pred_file {
    sp_h5_out o;
    hid_t d_main, d_label; /* probs or outputs; label (classification) */
    bool xent;
    const char *path;
};

static sp_status w_str_attr_(hid_t obj, const char *name, const char *v, const char *path) {
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, H5T_VARIABLE);
    H5Tset_cset(t, H5T_CSET_UTF8);
    hid_t s = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(obj, name, t, s, H5P_DEFAULT, H5P_DEFAULT);
    herr_t e = a < 0 ? -1 : H5Awrite(a, t, &v);
    if (a >= 0) H5Aclose(a);
    H5Sclose(s);
    H5Tclose(t);
    if (e < 0) return SP_FAIL(SP_ERR_IO, "%s: cannot write attribute '%s'", path, name);
    return SP_OK;
}

static void close_datasets_(sp_pred_file *w) {
    if (w->d_main >= 0) H5Dclose(w->d_main);
    if (w->d_label >= 0) H5Dclose(w->d_label);
    w->d_main = w->d_label = -1;
}

sp_status sp_pred_file_create(sp_pred_file **out, const char *path, int64_t n, int k, bool xent,
                              const char *ckpt, const char *spec, const char *data) {
    sp_pred_file *w = calloc(1, sizeof *w);
    *out = NULL;
    if (!w) return SP_FAIL(SP_ERR_NOMEM, "%s: out of memory", path);
    w->d_main = w->d_label = -1;
    w->xent = xent;
    w->path = path;
    sp_h5_lock();
    sp_status st = sp_h5_out_create(&w->o, path);
    const hsize_t dims[2] = {(hsize_t)n, (hsize_t)k};
    if (st == SP_OK)
        st = sp_h5_create_rows(w->o.file, xent ? "probs" : "outputs", H5T_IEEE_F32LE, 2, dims,
                               &w->d_main, path);
    if (st == SP_OK && xent)
        st = sp_h5_create_rows(w->o.file, "label", H5T_STD_I32LE, 1, dims, &w->d_label, path);
    if (st == SP_OK && xent) st = sp_h5_attr_write_int64(w->d_label, "classes", k);
    if (st == SP_OK) st = w_str_attr_(w->o.file, "checkpoint", ckpt, path);
    if (st == SP_OK) st = w_str_attr_(w->o.file, "spec", spec, path);
    if (st == SP_OK) st = w_str_attr_(w->o.file, "data", data, path);
    if (st != SP_OK) {
        close_datasets_(w);
        sp_h5_out_abort(&w->o);
        free(w);
    } else {
        *out = w;
    }
    sp_h5_unlock();
    return st;
}

sp_status sp_pred_file_write(sp_pred_file *w, int64_t first, int64_t count, const float *main,
                             const int32_t *label) {
    sp_h5_lock();
    sp_status st = sp_h5_write_rows(w->d_main, H5T_NATIVE_FLOAT, first, count, main, w->path,
                                    w->xent ? "probs" : "outputs");
    if (st == SP_OK && w->xent)
        st = sp_h5_write_rows(w->d_label, H5T_NATIVE_INT32, first, count, label, w->path, "label");
    sp_h5_unlock();
    return st;
}

sp_status sp_pred_file_commit(sp_pred_file *w) {
    sp_h5_lock();
    close_datasets_(w);
    sp_status st = sp_h5_out_commit(&w->o);
    sp_h5_unlock();
    free(w);
    return st;
}

void sp_pred_file_abort(sp_pred_file *w) {
    if (!w) return;
    sp_h5_lock();
    close_datasets_(w);
    sp_h5_out_abort(&w->o);
    sp_h5_unlock();
    free(w);
}
