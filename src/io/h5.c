#include "io/h5.h"
#include "util/arith.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/status.h"

static pthread_mutex_t sp_h5_mutex_;
static pthread_once_t sp_h5_once_ = PTHREAD_ONCE_INIT;

static void h5_init_(void) {
    pthread_mutexattr_t at;
    pthread_mutexattr_init(&at);
    pthread_mutexattr_settype(&at, PTHREAD_MUTEX_RECURSIVE);
    pthread_mutex_init(&sp_h5_mutex_, &at);
    pthread_mutexattr_destroy(&at);
    H5open();
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

void sp_h5_lock(void) {
    pthread_once(&sp_h5_once_, h5_init_);
    pthread_mutex_lock(&sp_h5_mutex_);
    /* A thread-safe HDF5 keeps the error-printing setting per thread: silence it here too. */
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

void sp_h5_unlock(void) {
    pthread_mutex_unlock(&sp_h5_mutex_);
}

sp_status sp_h5_check_file(const char *path, const char *what) {
    struct stat st;
    if (stat(path, &st) != 0)
        return SP_FAIL(SP_ERR_IO, "%s: cannot open data file (%s) for %s", path, strerror(errno),
                       what);
    if (!S_ISREG(st.st_mode))
        return SP_FAIL(SP_ERR_IO, "%s: not a regular file (wanted %s)", path, what);
    FILE *f = fopen(path, "rb");
    if (!f)
        return SP_FAIL(SP_ERR_IO, "%s: cannot read data file (%s) for %s", path, strerror(errno),
                       what);
    static const unsigned char sig[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
    bool ok = false;
    for (long off = 0; !ok && off + 8 <= (long)st.st_size; off = off ? off * 2 : 512) {
        unsigned char buf[8];
        if (fseek(f, off, SEEK_SET) != 0 || fread(buf, 1, 8, f) != 8) break;
        ok = memcmp(buf, sig, 8) == 0;
    }
    fclose(f);
    if (!ok)
        return SP_FAIL(SP_ERR_DATA, "%s: not an HDF5 file (no HDF5 signature; wanted %s)", path,
                       what);
    return SP_OK;
}

bool sp_h5_exists(hid_t loc, const char *path) {
    size_t len = strlen(path);
    if (len == 0) return false;
    char *buf = malloc(len + 1);
    if (!buf) return false;
    memcpy(buf, path, len + 1);
    bool ok = true;
    /* Check each prefix "a", "a/b", ... so that a missing group answers "no". */
    for (size_t i = 1; i <= len && ok; ++i) {
        if (i == len || buf[i] == '/') {
            char saved = buf[i];
            buf[i] = '\0';
            if (!(i == 1 && buf[0] == '/')) ok = H5Lexists(loc, buf, H5P_DEFAULT) > 0;
            buf[i] = saved;
        }
    }
    free(buf);
    return ok;
}

const char *sp_h5_type_name(hid_t type) {
    H5T_class_t c = H5Tget_class(type);
    size_t size = H5Tget_size(type);
    switch (c) {
    case H5T_INTEGER: {
        bool sgn = H5Tget_sign(type) == H5T_SGN_2;
        switch (size) {
        case 1:
            return sgn ? "int8" : "uint8";
        case 2:
            return sgn ? "int16" : "uint16";
        case 4:
            return sgn ? "int32" : "uint32";
        case 8:
            return sgn ? "int64" : "uint64";
        default:
            return "integer (unusual size)";
        }
    }
    case H5T_FLOAT:
        return size == 2   ? "float16"
               : size == 4 ? "float32"
               : size == 8 ? "float64"
                           : "float (unusual size)";
    case H5T_STRING:
        return "string";
    case H5T_COMPOUND:
        return "compound";
    case H5T_ENUM:
        return "enum";
    case H5T_ARRAY:
        return "array";
    case H5T_VLEN:
        return "variable-length";
    case H5T_OPAQUE:
        return "opaque";
    case H5T_BITFIELD:
        return "bitfield";
    case H5T_REFERENCE:
        return "reference";
    case H5T_TIME:
        return "time";
    default:
        return "unknown";
    }
}

sp_status sp_h5_attr_read_double(hid_t obj, const char *attr, double *out, bool *found,
                                 const char *file, const char *objname) {
    *found = false;
    htri_t ex = H5Aexists(obj, attr);
    if (ex <= 0) return SP_OK;
    hid_t a = H5Aopen(obj, attr, H5P_DEFAULT);
    if (a < 0)
        return SP_FAIL(SP_ERR_DATA, "%s: dataset '%s': cannot open attribute '%s'", file, objname,
                       attr);
    hid_t t = H5Aget_type(a), s = H5Aget_space(a);
    H5T_class_t c = H5Tget_class(t);
    hssize_t npts = H5Sget_simple_extent_npoints(s);
    sp_status st = SP_OK;
    if ((c != H5T_INTEGER && c != H5T_FLOAT) || npts != 1)
        st = SP_FAIL(SP_ERR_DATA,
                     "%s: dataset '%s': attribute '%s' must be one number (is %s, %lld values)",
                     file, objname, attr, sp_h5_type_name(t), (long long)npts);
    else if (H5Aread(a, H5T_NATIVE_DOUBLE, out) < 0)
        st = SP_FAIL(SP_ERR_DATA, "%s: dataset '%s': cannot read attribute '%s'", file, objname,
                     attr);
    else
        *found = true;
    H5Sclose(s);
    H5Tclose(t);
    H5Aclose(a);
    return st;
}

static sp_status attr_write_(hid_t obj, const char *attr, hid_t type, const void *v) {
    if (H5Aexists(obj, attr) > 0) H5Adelete(obj, attr);
    hid_t s = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(obj, attr, type, s, H5P_DEFAULT, H5P_DEFAULT);
    herr_t e = a < 0 ? -1 : H5Awrite(a, type, v);
    if (a >= 0) H5Aclose(a);
    H5Sclose(s);
    if (e < 0) return SP_FAIL(SP_ERR_IO, "cannot write attribute '%s'", attr);
    return SP_OK;
}

sp_status sp_h5_attr_write_double(hid_t obj, const char *attr, double v) {
    return attr_write_(obj, attr, H5T_NATIVE_DOUBLE, &v);
}

sp_status sp_h5_attr_write_int64(hid_t obj, const char *attr, int64_t v) {
    return attr_write_(obj, attr, H5T_NATIVE_INT64, &v);
}

typedef struct {
    hid_t dst;
    sp_status st;
} attr_copy_ctx_;

static herr_t attr_copy_one_(hid_t loc, const char *name, const H5A_info_t *info, void *op) {
    (void)info;
    attr_copy_ctx_ *ctx = op;
    hid_t a = H5Aopen(loc, name, H5P_DEFAULT);
    if (a < 0) goto fail;
    hid_t t = H5Aget_type(a), s = H5Aget_space(a);
    hssize_t npts = H5Sget_simple_extent_npoints(s);
    size_t bytes = (size_t)(npts > 0 ? npts : 1) * H5Tget_size(t);
    void *buf = calloc(1, bytes ? bytes : 1);
    herr_t e = buf ? H5Aread(a, t, buf) : -1;
    if (e >= 0) {
        if (H5Aexists(ctx->dst, name) > 0) H5Adelete(ctx->dst, name);
        hid_t b = H5Acreate2(ctx->dst, name, t, s, H5P_DEFAULT, H5P_DEFAULT);
        e = b < 0 ? -1 : H5Awrite(b, t, buf);
        if (b >= 0) H5Aclose(b);
        if (H5Tdetect_class(t, H5T_VLEN) > 0 || H5Tis_variable_str(t) > 0)
            H5Dvlen_reclaim(t, s, H5P_DEFAULT, buf);
    }
    free(buf);
    H5Sclose(s);
    H5Tclose(t);
    H5Aclose(a);
    if (e < 0) goto fail;
    return 0;
fail:
    ctx->st = SP_FAIL(SP_ERR_IO, "cannot copy attribute '%s'", name);
    return -1;
}

sp_status sp_h5_attr_copy_all(hid_t src, hid_t dst) {
    attr_copy_ctx_ ctx = {dst, SP_OK};
    hsize_t idx = 0;
    H5Aiterate2(src, H5_INDEX_NAME, H5_ITER_NATIVE, &idx, attr_copy_one_, &ctx);
    return ctx.st;
}

sp_status sp_h5_out_create(sp_h5_out *o, const char *path) {
    o->file = -1;
    SP_CHECK(sp_afile_open(&o->af, path, "output file"));
    /* HDF5 opens the temporary file by name; the writer checks before its rename that the name
     * still holds the file it created */
    errno = 0;
    o->file = H5Fcreate(sp_afile_tmp_path(&o->af), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (o->file < 0) {
        const sp_status st = SP_FAIL(SP_ERR_IO, "%s: cannot create the output file (%s)", path,
                                     errno ? strerror(errno) : "HDF5 error");
        sp_afile_abort(&o->af);
        return st;
    }
    return SP_OK;
}

sp_status sp_h5_out_commit(sp_h5_out *o) {
    const herr_t e = H5Fclose(o->file);
    o->file = -1;
    if (e < 0) {
        const sp_status st =
            SP_FAIL(SP_ERR_IO, "%s: cannot finish writing the output file", o->af.shown);
        sp_afile_abort(&o->af);
        return st;
    }
    return sp_afile_commit(&o->af);
}

void sp_h5_out_abort(sp_h5_out *o) {
    if (o->file >= 0) H5Fclose(o->file);
    o->file = -1;
    sp_afile_abort(&o->af);
}

sp_status sp_h5_create_rows(hid_t file, const char *name, hid_t file_type, int rank,
                            const hsize_t *dims, hid_t *out, const char *path) {
    *out = -1;
    if (rank < 1 || rank > 8)
        return SP_FAIL(SP_ERR_ARG, "%s: dataset '%s': bad rank %d", path, name, rank);
    size_t row_bytes = H5Tget_size(file_type);
    bool any_zero = false;
    for (int d = 0; d < rank; ++d) any_zero |= dims[d] == 0;
    for (int d = 1; d < rank; ++d)
        if (!sp_size_mul(row_bytes, (size_t)dims[d], &row_bytes))
            return SP_FAIL(SP_ERR_DATA, "%s: dataset '%s': sample size overflows size_t", path,
                           name);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    if (!any_zero && row_bytes < ((size_t)1 << 30)) {
        hsize_t chunk[8];
        hsize_t rows = row_bytes >= 131072 ? 1 : 131072 / row_bytes;
        chunk[0] = rows < dims[0] ? rows : dims[0];
        for (int d = 1; d < rank; ++d) chunk[d] = dims[d];
        H5Pset_chunk(dcpl, rank, chunk);
        if (H5Tget_size(file_type) > 1) H5Pset_shuffle(dcpl);
        if (H5Zfilter_avail(H5Z_FILTER_DEFLATE) > 0) H5Pset_deflate(dcpl, 4);
    }
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    hid_t space = H5Screate_simple(rank, dims, NULL);
    hid_t d = H5Dcreate2(file, name, file_type, space, lcpl, dcpl, H5P_DEFAULT);
    H5Sclose(space);
    H5Pclose(lcpl);
    H5Pclose(dcpl);
    if (d < 0) return SP_FAIL(SP_ERR_IO, "%s: dataset '%s': cannot create", path, name);
    *out = d;
    return SP_OK;
}

void sp_h5_select_rows(hid_t dset, int64_t first, int64_t count, hid_t *fs, hid_t *ms) {
    *fs = H5Dget_space(dset);
    int rank = H5Sget_simple_extent_ndims(*fs);
    if (rank < 1 || rank > 32) rank = 1; /* HDF5 allows at most 32 dimensions */
    hsize_t dims[32], start[32] = {0}, cnt[32];
    H5Sget_simple_extent_dims(*fs, dims, NULL);
    start[0] = (hsize_t)first;
    cnt[0] = (hsize_t)count;
    for (int d = 1; d < rank; ++d) cnt[d] = dims[d];
    H5Sselect_hyperslab(*fs, H5S_SELECT_SET, start, NULL, cnt, NULL);
    /* a memory space of the file's rank: HDF5 copies a same-shaped selection far faster than
     * one mapped onto a 1-D buffer */
    *ms = H5Screate_simple(rank, cnt, NULL);
}

sp_status sp_h5_write_rows(hid_t dset, hid_t mem_type, int64_t first, int64_t count,
                           const void *buf, const char *path, const char *name) {
    if (count == 0) return SP_OK;
    hid_t fs, ms;
    sp_h5_select_rows(dset, first, count, &fs, &ms);
    herr_t e = H5Dwrite(dset, mem_type, ms, fs, H5P_DEFAULT, buf);
    H5Sclose(ms);
    H5Sclose(fs);
    if (e < 0)
        return SP_FAIL(SP_ERR_IO, "%s: dataset '%s': cannot write rows %lld..%lld", path, name,
                       (long long)first, (long long)(first + count - 1));
    return SP_OK;
}
