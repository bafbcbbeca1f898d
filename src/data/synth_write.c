/* Writing a synthetic set (data/synth.h) to a data file, in blocks of rows. */
#include <stdlib.h>

#include "data/tools.h"
#include "io/h5.h"
#include "util/status.h"

sp_status sp_synth_write(const char *out, sp_synth_kind kind, int64_t n, int features, int classes,
                         int outputs, uint64_t seed) {
    if (n < 1) return SP_FAIL(SP_ERR_ARG, "%s: synthetic set needs n >= 1", out);
    if (features < 1) return SP_FAIL(SP_ERR_ARG, "%s: synthetic set needs features >= 1", out);
    const bool reg = kind == SP_SYNTH_REGRESSION;
    /* Validate the parameters once (on an empty range) before creating anything. */
    SP_CHECK(sp_synth_generate(kind, 0, 0, features, classes, outputs, seed, NULL, NULL, NULL));
    const int64_t block = 16384;
    float *x = malloc((size_t)block * (size_t)features * sizeof(float));
    int32_t *labels = reg ? NULL : malloc((size_t)block * sizeof(int32_t));
    float *targets = reg ? malloc((size_t)block * (size_t)outputs * sizeof(float)) : NULL;
    if (!x || (reg ? !targets : !labels)) {
        free(x);
        free(labels);
        free(targets);
        return SP_FAIL(SP_ERR_NOMEM, "%s: out of memory", out);
    }
    sp_h5_lock();
    sp_h5_out o;
    sp_status st = sp_h5_out_create(&o, out);
    if (st == SP_OK) {
        hsize_t xd[2] = {(hsize_t)n, (hsize_t)features}, yd[2] = {(hsize_t)n, (hsize_t)outputs};
        hid_t dx = -1, dy = -1;
        st = sp_h5_create_rows(o.file, "X", H5T_IEEE_F32LE, 2, xd, &dx, out);
        if (st == SP_OK)
            st = sp_h5_create_rows(o.file, "y", reg ? H5T_IEEE_F32LE : H5T_STD_I32LE, reg ? 2 : 1,
                                   yd, &dy, out);
        if (st == SP_OK && !reg) st = sp_h5_attr_write_int64(dy, "classes", classes);
        for (int64_t f = 0; f < n && st == SP_OK; f += block) {
            int64_t cnt = n - f < block ? n - f : block;
            st = sp_synth_generate(kind, f, cnt, features, classes, outputs, seed, x, labels,
                                   targets);
            if (st == SP_OK) st = sp_h5_write_rows(dx, H5T_NATIVE_FLOAT, f, cnt, x, out, "X");
            if (st == SP_OK)
                st = sp_h5_write_rows(dy, reg ? H5T_NATIVE_FLOAT : H5T_NATIVE_INT32, f, cnt,
                                      reg ? (const void *)targets : (const void *)labels, out, "y");
        }
        if (dx >= 0) H5Dclose(dx);
        if (dy >= 0) H5Dclose(dy);
        if (st == SP_OK)
            st = sp_h5_out_commit(&o);
        else
            sp_h5_out_abort(&o);
    }
    sp_h5_unlock();
    free(x);
    free(labels);
    free(targets);
    return st;
}
