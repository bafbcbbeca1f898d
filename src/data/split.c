/* Splitting a data file into train and validation files (see tools.h). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "data/dataset_impl.h"
#include "data/tools.h"
#include "io/h5.h"
#include "util/rng.h"
#include "util/status.h"

/* In-place Fisher-Yates of ids[0..n) keyed by (seed, stream, position). */
static void shuffle_(int64_t *ids, int64_t n, uint64_t seed, uint64_t stream) {
    for (int64_t i = n - 1; i > 0; --i) {
        int64_t j = (int64_t)sp_rng_below(seed, stream, (uint64_t)i, (uint64_t)i + 1);
        int64_t t = ids[i];
        ids[i] = ids[j];
        ids[j] = t;
    }
}

/* Copy rows ids[0..n) (increasing) of src dataset into a new dataset of `file`, same dtype, same
 * sample shape, same attributes, in blocks of about 8 MiB. */
static sp_status copy_rows_(hid_t src, const char *in_path, const char *name, hid_t file,
                            const char *out_path, const int64_t *ids, int64_t n) {
    hid_t ft = H5Dget_type(src), mt = H5Tget_native_type(ft, H5T_DIR_ASCEND);
    hid_t sp = H5Dget_space(src);
    int rank = H5Sget_simple_extent_ndims(sp);
    hsize_t dims[32];
    H5Sget_simple_extent_dims(sp, dims, NULL);
    H5Sclose(sp);
    size_t row = H5Tget_size(mt);
    for (int d = 1; d < rank; ++d) row *= (size_t)dims[d]; /* validated by sp_dataset_open */
    dims[0] = (hsize_t)n;
    hid_t dst = -1;
    sp_status st = sp_h5_create_rows(file, name, ft, rank, dims, &dst, out_path);
    if (st == SP_OK) st = sp_h5_attr_copy_all(src, dst);
    int64_t block = (int64_t)((8u << 20) / (row ? row : 1));
    if (block < 1) block = 1;
    void *buf = st == SP_OK ? malloc((size_t)(block < n ? block : n) * row) : NULL;
    if (st == SP_OK && !buf) st = SP_FAIL(SP_ERR_NOMEM, "%s: out of memory", out_path);
    for (int64_t f = 0; f < n && st == SP_OK; f += block) {
        int64_t cnt = n - f < block ? n - f : block;
        st = sp_h5_read_rows_sorted(src, mt, ids + f, cnt, buf, in_path, name);
        if (st == SP_OK) st = sp_h5_write_rows(dst, mt, f, cnt, buf, out_path, name);
    }
    free(buf);
    if (dst >= 0) H5Dclose(dst);
    H5Tclose(mt);
    H5Tclose(ft);
    return st;
}

static sp_status write_part_(sp_dataset *ds, const char *out, const int64_t *ids, int64_t n,
                             sp_h5_out *o) {
    SP_CHECK(sp_h5_out_create(o, out));
    sp_status st = copy_rows_(ds->dx, ds->path, ds->x_name, o->file, out, ids, n);
    if (st == SP_OK) st = copy_rows_(ds->dy, ds->path, ds->y_name, o->file, out, ids, n);
    if (st != SP_OK) sp_h5_out_abort(o);
    return st;
}

sp_status sp_data_split(const char *in, const char *x_name, const char *y_name, double val_fraction,
                        uint64_t seed, bool stratify, const char *out_train, const char *out_val,
                        int64_t *n_train, int64_t *n_val) {
    if (!(val_fraction > 0 && val_fraction < 1))
        return SP_FAIL(SP_ERR_ARG, "split: validation fraction %g is not in (0, 1)", val_fraction);
    sp_dataset *ds;
    SP_CHECK(sp_dataset_open(&ds, in, x_name, y_name));
    const sp_dataset_info *info = sp_dataset_get_info(ds);
    const int64_t n = info->n;
    sp_status st = SP_OK;
    if (stratify && info->regression)
        st = SP_FAIL(SP_ERR_ARG, "%s: dataset '%s': cannot stratify regression targets", in,
                     info->y_name);
    int64_t *ids = malloc((size_t)n * sizeof(int64_t));
    uint8_t *is_val = calloc((size_t)n, 1);
    if (st == SP_OK && (!ids || !is_val)) st = SP_FAIL(SP_ERR_NOMEM, "%s: out of memory", in);
    const uint64_t stream = (uint64_t)SP_STREAM_SPLIT << 8;
    if (st == SP_OK && !stratify) {
        for (int64_t i = 0; i < n; ++i) ids[i] = i;
        shuffle_(ids, n, seed, stream);
        int64_t nv = llround(val_fraction * (double)n);
        for (int64_t i = 0; i < nv; ++i) is_val[ids[i]] = 1;
    } else if (st == SP_OK) {
        /* Each class on its own: its ids in file order, shuffled, the first round(f * count)
         * go to validation. */
        for (int64_t c = 0; c < info->classes; ++c) {
            int64_t m = 0;
            for (int64_t i = 0; i < n; ++i)
                if (ds->labels[i] == c) ids[m++] = i;
            shuffle_(ids, m, seed, stream + 1 + ((uint64_t)c << 32));
            int64_t nv = llround(val_fraction * (double)m);
            for (int64_t i = 0; i < nv; ++i) is_val[ids[i]] = 1;
        }
    }
    int64_t nv = 0;
    for (int64_t i = 0; st == SP_OK && i < n; ++i) nv += is_val[i];
    if (st == SP_OK && (nv == 0 || nv == n))
        st = SP_FAIL(SP_ERR_ARG, "%s: validation fraction %g of N = %lld leaves an empty %s set",
                     in, val_fraction, (long long)n, nv == 0 ? "validation" : "training");
    if (st == SP_OK) {
        /* ids: the training ids, then the validation ids, each in file order. */
        int64_t a = 0, b = n - nv;
        for (int64_t i = 0; i < n; ++i) ids[is_val[i] ? b++ : a++] = i;
        sp_h5_out ot, ov;
        sp_h5_lock();
        st = write_part_(ds, out_train, ids, n - nv, &ot);
        if (st == SP_OK) {
            st = write_part_(ds, out_val, ids + (n - nv), nv, &ov);
            if (st != SP_OK) sp_h5_out_abort(&ot);
        }
        if (st == SP_OK) {
            st = sp_h5_out_commit(&ot);
            if (st == SP_OK)
                st = sp_h5_out_commit(&ov);
            else
                sp_h5_out_abort(&ov);
        }
        sp_h5_unlock();
    }
    free(ids);
    free(is_val);
    sp_dataset_close(ds);
    if (st == SP_OK) {
        if (n_train) *n_train = n - nv;
        if (n_val) *n_val = nv;
    }
    return st;
}

bool sp_data_shard_path(const char *prefix, int64_t i, int64_t k, char *buf, size_t cap) {
    const int n = snprintf(buf, cap, "%s-%05lld-of-%05lld.h5", prefix, (long long)i, (long long)k);
    return n > 0 && (size_t)n < cap;
}

sp_status sp_data_split_shards(const char *in, const char *x_name, const char *y_name, int64_t k,
                               const char *prefix, int64_t *rows_max) {
    sp_dataset *ds;
    SP_CHECK(sp_dataset_open(&ds, in, x_name, y_name));
    const int64_t n = sp_dataset_get_info(ds)->n;
    sp_status st = SP_OK;
    char path[4200];
    if (k < 1 || k > n)
        st = SP_FAIL(SP_ERR_ARG, "%s: --shards %lld: must be in [1, N = %lld]", in, (long long)k,
                     (long long)n);
    else if (!sp_data_shard_path(prefix, k - 1, k, path, sizeof path))
        st = SP_FAIL(SP_ERR_ARG, "--out %s: path too long", prefix);
    /* file i: rows [first, first + n/k + (i < n%k)), in file order */
    const int64_t base = st == SP_OK ? n / k : 0, rem = st == SP_OK ? n % k : 0;
    int64_t *ids = st == SP_OK ? malloc((size_t)(base + 1) * sizeof(int64_t)) : NULL;
    if (st == SP_OK && !ids) st = SP_FAIL(SP_ERR_NOMEM, "%s: out of memory", in);
    int64_t first = 0;
    for (int64_t i = 0; i < k && st == SP_OK; ++i) {
        const int64_t m = base + (i < rem ? 1 : 0);
        for (int64_t j = 0; j < m; ++j) ids[j] = first + j;
        sp_data_shard_path(prefix, i, k, path, sizeof path);
        sp_h5_out o;
        sp_h5_lock();
        st = write_part_(ds, path, ids, m, &o);
        if (st == SP_OK) st = sp_h5_out_commit(&o);
        sp_h5_unlock();
        first += m;
    }
    free(ids);
    sp_dataset_close(ds);
    if (st == SP_OK && rows_max) *rows_max = base + (rem ? 1 : 0);
    return st;
}
