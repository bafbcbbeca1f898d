/* TEMPORARY */
#include <hdf5.h>
#include <stdio.h>
#include "train/checkpoint.h"
#include "util/h5.h"
#include "util/status.h"
sp_status sp_ckpt_write(const char *path, const sp_model *m, const sp_optimizer *opt,
                        const char *loss_name, const sp_train_state *ts) {
    (void)opt;
    (void)loss_name;
    (void)ts;
    sp_h5_lock();
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (f < 0) {
        sp_h5_unlock();
        return SP_FAIL(SP_ERR_IO, "%s: cannot create", path);
    }
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    const float *p = sp_model_params((sp_model *)m);
    for (int i = 0; i < sp_model_num_layers(m); ++i) {
        size_t w_off, b_off;
        int w_rank;
        int64_t w_shape[4], b_len;
        if (!sp_model_layer_params(m, i, &w_off, &w_rank, w_shape, &b_off, &b_len)) continue;
        hsize_t dims[4];
        for (int d = 0; d < w_rank; ++d) dims[d] = (hsize_t)w_shape[d];
        char name[64];
        snprintf(name, sizeof name, "/model/params/%d/weight", i);
        hid_t s = H5Screate_simple(w_rank, dims, NULL);
        hid_t d = H5Dcreate2(f, name, H5T_IEEE_F32LE, s, lcpl, H5P_DEFAULT, H5P_DEFAULT);
        H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, p + w_off);
        H5Dclose(d);
        H5Sclose(s);
        hsize_t bd = (hsize_t)b_len;
        snprintf(name, sizeof name, "/model/params/%d/bias", i);
        s = H5Screate_simple(1, &bd, NULL);
        d = H5Dcreate2(f, name, H5T_IEEE_F32LE, s, lcpl, H5P_DEFAULT, H5P_DEFAULT);
        H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, p + b_off);
        H5Dclose(d);
        H5Sclose(s);
    }
    H5Pclose(lcpl);
    H5Fclose(f);
    sp_h5_unlock();
    return SP_OK;
}
