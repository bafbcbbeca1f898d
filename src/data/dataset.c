/* Opening, validating and reading a data file (see the contract in data.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <hdf5_hl.h>

#include "data/dataset_impl.h"
#include "io/h5.h"
#include "util/arith.h"
#include "util/shape.h"
#include "util/mem.h"
#include "util/status.h"

/* The default name of the token dataset (sp_dataset_open_tokens). */
#define SP_TOKENS_NAME_ "tokens"

/* Token ids are read as int32 and must be exact as float32: vocab_size <= 2^24. */
#define SP_VOCAB_MAX_ (1 << 24)

/* The longest `tokenizer` attribute read (a name such as "bytes" or "gpt2"). */
#define SP_TOKENIZER_MAX_ 1024

const char *sp_x_dtype_name(sp_x_dtype t) {
    switch (t) {
    case SP_DTYPE_F32:
        return "float32";
    case SP_DTYPE_F64:
        return "float64";
    case SP_DTYPE_U8:
        return "uint8";
    case SP_DTYPE_U16:
        return "uint16";
    case SP_DTYPE_I32:
        return "int32";
    }
    return "?";
}

/* Open dataset `name`, or fail naming what is there instead. Chunk cache sized for random row
 * reads when `row_reads` (up to `cap` bytes, or the whole dataset when smaller). */
static sp_status open_dataset_(hid_t file, const char *path, const char *name, bool row_reads,
                               size_t cap, hid_t *out) {
    *out = -1;
    if (!sp_h5_exists(file, name))
        return SP_FAIL(SP_ERR_DATA, "%s: dataset '%s': not found in the file", path, name);
    hid_t o = H5Oopen(file, name, H5P_DEFAULT);
    if (o < 0) return SP_FAIL(SP_ERR_DATA, "%s: dataset '%s': cannot be opened", path, name);
    H5I_type_t it = H5Iget_type(o);
    H5Oclose(o);
    if (it != H5I_DATASET)
        return SP_FAIL(SP_ERR_DATA, "%s: dataset '%s': is a %s, not a dataset", path, name,
                       it == H5I_GROUP      ? "group"
                       : it == H5I_DATATYPE ? "named datatype"
                                            : "non-dataset object");
    hid_t d = H5Dopen2(file, name, H5P_DEFAULT);
    if (d < 0) return SP_FAIL(SP_ERR_DATA, "%s: dataset '%s': cannot be opened", path, name);
    if (!row_reads) {
        *out = d;
        return SP_OK;
    }
    hid_t dcpl = H5Dget_create_plist(d);
    hid_t t = H5Dget_type(d), s = H5Dget_space(d);
    if (H5Pget_layout(dcpl) == H5D_CHUNKED) {
        hsize_t chunk[32];
        int r = H5Pget_chunk(dcpl, 32, chunk);
        double chunk_bytes = (double)H5Tget_size(t), total = (double)H5Tget_size(t);
        for (int i = 0; i < r; ++i) chunk_bytes *= (double)chunk[i];
        hssize_t np = H5Sget_simple_extent_npoints(s);
        total *= (double)(np > 0 ? np : 0);
        double nbytes = fmin(fmax(total * 1.05, 1048576.0), (double)cap);
        double nchunks = nbytes / fmax(chunk_bytes, 1.0);
        size_t nslots = (size_t)fmin(fmax(nchunks * 10.0, 521.0), 1e6) | 1;
        hid_t dapl = H5Pcreate(H5P_DATASET_ACCESS);
        H5Pset_chunk_cache(dapl, nslots, (size_t)nbytes, 1.0);
        H5Dclose(d);
        d = H5Dopen2(file, name, dapl);
        H5Pclose(dapl);
    }
    H5Sclose(s);
    H5Tclose(t);
    H5Pclose(dcpl);
    if (d < 0) return SP_FAIL(SP_ERR_DATA, "%s: dataset '%s': cannot be opened", path, name);
    *out = d;
    return SP_OK;
}

/* Rank and dims of a simple dataspace, or an error naming file/dataset. */
static sp_status get_dims_(hid_t d, const char *path, const char *name, int max_rank, int *rank,
                           hsize_t *dims) {
    hid_t s = H5Dget_space(d);
    H5S_class_t c = H5Sget_simple_extent_type(s);
    int r = c == H5S_SIMPLE ? H5Sget_simple_extent_ndims(s) : 0;
    if (r >= 1 && r <= max_rank) H5Sget_simple_extent_dims(s, dims, NULL);
    H5Sclose(s);
    if (c != H5S_SIMPLE)
        return SP_FAIL(SP_ERR_DATA, "%s: dataset '%s': wrong rank: %s dataspace, expected an array",
                       path, name, c == H5S_SCALAR ? "scalar" : "empty");
    *rank = r;
    return SP_OK;
}

/* Is the file still the one that was opened? SP_OK, or an error naming the file, the dataset
 * and what changed. */
static sp_status check_unchanged_(const sp_dataset *ds) {
    if (!ds->watched) return SP_OK;
    struct stat sb;
    const char *what = NULL;
    char detail[160] = "";
    if (stat(ds->path, &sb) != 0) {
        what = "removed";
    } else if ((unsigned long long)sb.st_dev != ds->st_dev ||
               (unsigned long long)sb.st_ino != ds->st_ino) {
        what = "replaced by another file";
    } else if ((long long)sb.st_size < ds->st_size) {
        what = "truncated";
        snprintf(detail, sizeof detail, " (%lld bytes at the start, %lld now)", ds->st_size,
                 (long long)sb.st_size);
    } else if ((long long)sb.st_size != ds->st_size ||
               (long long)sb.st_mtim.tv_sec != ds->st_mtime_s ||
               (long long)sb.st_mtim.tv_nsec != ds->st_mtime_ns) {
        what = "modified";
        snprintf(detail, sizeof detail, " (%lld bytes at the start, %lld now; new mtime)",
                 ds->st_size, (long long)sb.st_size);
    }
    if (!what) return SP_OK;
    return SP_FAIL(SP_ERR_DATA,
                   "%s: dataset '%s': the file was %s while training read it%s; the rows read "
                   "cannot be trusted: restore the file and resume from the last checkpoint",
                   ds->path, ds->x_name, what, detail);
}

/* Read rows [first, first + count) of `d` as mem_type into buf. */
static sp_status read_range_(hid_t d, hid_t mem_type, int64_t first, int64_t count, void *buf,
                             const char *path, const char *name) {
    hid_t fs, ms;
    sp_h5_select_rows(d, first, count, &fs, &ms);
    herr_t e = H5Dread(d, mem_type, ms, fs, H5P_DEFAULT, buf);
    H5Sclose(ms);
    H5Sclose(fs);
    if (e < 0)
        return SP_FAIL(SP_ERR_IO,
                       "%s: dataset '%s': cannot read rows %lld..%lld (damaged file or missing "
                       "compression filter?)",
                       path, name, (long long)first, (long long)(first + count - 1));
    return SP_OK;
}

sp_status sp_h5_read_rows_sorted(hid_t dset, hid_t mem_type, const int64_t *sorted, int64_t n,
                                 void *buf, const char *path, const char *name) {
    if (n == 0) return SP_OK;
    hid_t fs = H5Dget_space(dset);
    int r = H5Sget_simple_extent_ndims(fs);
    hsize_t dims[32], start[32] = {0}, cnt[32];
    H5Sget_simple_extent_dims(fs, dims, NULL);
    size_t row_bytes = H5Tget_size(mem_type);
    for (int i = 1; i < r; ++i) {
        cnt[i] = dims[i];
        row_bytes *= (size_t)dims[i];
    }
    /*
     * Coalesce the sorted ids into runs and read each run with its own H5Dread of a single
     * block. (One read of the OR-ed union of all runs is the obvious alternative, but HDF5 1.10
     * maps an irregular selection onto chunks element by element: measured ~10x slower on
     * gzip-chunked MNIST rows than these per-run reads, which hit the chunk cache.)
     */
    herr_t e = 0;
    int64_t done = 0;
    for (int64_t i = 0; i < n && e >= 0;) {
        int64_t j = i;
        while (j + 1 < n && sorted[j + 1] == sorted[j] + 1) ++j;
        start[0] = (hsize_t)sorted[i];
        cnt[0] = (hsize_t)(j - i + 1);
        e = H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, cnt, NULL);
        hid_t ms = H5Screate_simple(r, cnt, NULL); /* same rank as the file: the fast path */
        if (e >= 0)
            e = H5Dread(dset, mem_type, ms, fs, H5P_DEFAULT,
                        (char *)buf + (size_t)done * row_bytes);
        H5Sclose(ms);
        done += j - i + 1;
        i = j + 1;
    }
    H5Sclose(fs);
    if (e < 0)
        return SP_FAIL(SP_ERR_IO,
                       "%s: dataset '%s': cannot read %lld rows (damaged file or missing "
                       "compression filter?)",
                       path, name, (long long)n);
    return SP_OK;
}

/* The memory limit for a buffer of dataset `name`, naming the file and the dataset. */
static sp_status mem_check_(const sp_dataset *ds, const char *name, size_t bytes,
                            const char *what) {
    char who[600];
    snprintf(who, sizeof who, "%s: dataset '%s'", ds->path, name);
    return sp_mem_check(bytes, who, what);
}

static sp_status open_x_(sp_dataset *ds) {
    const char *path = ds->path, *name = ds->x_name;
    sp_dataset_info *in = &ds->info;
    SP_CHECK(open_dataset_(ds->file, path, name, true, ds->cache_cap, &ds->dx));
    hid_t t = H5Dget_type(ds->dx);
    H5T_class_t c = H5Tget_class(t);
    size_t sz = H5Tget_size(t);
    const char *tn = sp_h5_type_name(t);
    H5Tclose(t);
    if (c == H5T_INTEGER && sz == 1 && !strcmp(tn, "uint8")) {
        in->x_dtype = SP_DTYPE_U8;
        ds->x_mem_type = H5T_NATIVE_UCHAR;
    } else if (c == H5T_FLOAT && sz == 4) {
        in->x_dtype = SP_DTYPE_F32;
        ds->x_mem_type = H5T_NATIVE_FLOAT;
    } else if (c == H5T_FLOAT && sz == 8) {
        in->x_dtype = SP_DTYPE_F64;
        ds->x_mem_type = H5T_NATIVE_DOUBLE;
    } else {
        return SP_FAIL(SP_ERR_DATA,
                       "%s: dataset '%s': unsupported dtype %s (X must be float32, float64 or "
                       "uint8)",
                       path, name, tn);
    }
    SP_CHECK(get_dims_(ds->dx, path, name, 5, &ds->x_rank, ds->x_dims));
    if (ds->x_rank < 2 || ds->x_rank > 5)
        return SP_FAIL(SP_ERR_DATA,
                       "%s: dataset '%s': wrong rank %d (X must be (N, F) or (N, C, H, W): 2 to 5 "
                       "dimensions)",
                       path, name, ds->x_rank);
    in->n = (int64_t)ds->x_dims[0];
    in->sample_rank = ds->x_rank - 1;
    size_t ss = 1;
    for (int d = 1; d < ds->x_rank; ++d) {
        in->sample_shape[d - 1] = (int64_t)ds->x_dims[d];
        if (ds->x_dims[d] > (hsize_t)INT64_MAX || !sp_size_mul(ss, (size_t)ds->x_dims[d], &ss))
            return SP_FAIL(SP_ERR_DATA, "%s: dataset '%s': sample size overflows size_t", path,
                           name);
    }
    if (ss == 0)
        return SP_FAIL(SP_ERR_DATA, "%s: dataset '%s': empty samples (a sample dimension is 0)",
                       path, name);
    in->sample_size = ss;
    size_t esz = in->x_dtype == SP_DTYPE_U8 ? 1 : in->x_dtype == SP_DTYPE_F32 ? 4 : 8, total;
    if (!sp_size_mul(ss, esz, &in->x_row_bytes) ||
        !sp_size_mul(in->x_row_bytes, (size_t)ds->x_dims[0], &total) ||
        !sp_size_mul(ss * 4, (size_t)ds->x_dims[0], &total) || ds->x_dims[0] > (hsize_t)INT64_MAX)
        return SP_FAIL(SP_ERR_DATA,
                       "%s: dataset '%s': shape too large: its byte size overflows size_t", path,
                       name);
    size_t one;
    if (!sp_size_mul(ss, sizeof(float), &one))
        return SP_FAIL(SP_ERR_DATA, "%s: dataset '%s': sample size overflows size_t", path, name);
    SP_CHECK(mem_check_(ds, name, one, "one sample as float32"));
    bool found;
    in->scale = 1.0;
    in->offset = 0.0;
    double v;
    SP_CHECK(sp_h5_attr_read_double(ds->dx, "scale", &v, &found, path, name));
    if (found) in->scale = v;
    SP_CHECK(sp_h5_attr_read_double(ds->dx, "offset", &v, &found, path, name));
    if (found) in->offset = v;
    if (!isfinite(in->scale) || !isfinite(in->offset))
        return SP_FAIL(SP_ERR_DATA, "%s: dataset '%s': attribute scale or offset is not finite",
                       path, name);
    ds->raw_row_bytes = in->x_row_bytes;
    return SP_OK;
}

static sp_status open_y_(sp_dataset *ds) {
    const char *path = ds->path, *name = ds->y_name;
    sp_dataset_info *in = &ds->info;
    SP_CHECK(open_dataset_(ds->file, path, name, false, 0, &ds->dy));
    hid_t t = H5Dget_type(ds->dy);
    H5T_class_t c = H5Tget_class(t);
    size_t sz = H5Tget_size(t);
    in->y_dtype = sp_h5_type_name(t);
    H5Tclose(t);
    if (c == H5T_INTEGER && (sz == 1 || sz == 2 || sz == 4 || sz == 8))
        in->regression = false;
    else if (c == H5T_FLOAT && (sz == 4 || sz == 8))
        in->regression = true;
    else
        return SP_FAIL(
            SP_ERR_DATA,
            "%s: dataset '%s': unsupported dtype %s (y must be integer labels int8..int64 "
            "/ uint8..uint64, or float32/float64 targets)",
            path, name, in->y_dtype);
    hsize_t dims[32];
    SP_CHECK(get_dims_(ds->dy, path, name, 32, &ds->y_rank, dims));
    if (ds->y_rank < 1 || ds->y_rank > 2 || (!in->regression && ds->y_rank == 2 && dims[1] != 1))
        return SP_FAIL(SP_ERR_DATA, "%s: dataset '%s': wrong rank %d (y must be %s)", path, name,
                       ds->y_rank,
                       in->regression ? "(N, T) or (N,) float targets" : "(N,) integer labels");
    ds->y_dims[0] = dims[0];
    ds->y_dims[1] = ds->y_rank == 2 ? dims[1] : 1;
    if (in->regression) {
        in->targets = (int64_t)ds->y_dims[1];
        if (in->targets == 0)
            return SP_FAIL(SP_ERR_DATA, "%s: dataset '%s': regression targets have T = 0", path,
                           name);
    }
    return SP_OK;
}

/* Read y fully (in blocks) and validate it: labels in range, targets finite. */
static sp_status load_y_(sp_dataset *ds) {
    const char *path = ds->path, *name = ds->y_name;
    sp_dataset_info *in = &ds->info;
    const int64_t n = in->n, block = 1 << 18;
    if (in->regression) {
        size_t bytes, row;
        if (!sp_size_mul((size_t)in->targets, sizeof(float), &row) ||
            !sp_size_mul((size_t)n, row, &bytes))
            return SP_FAIL(SP_ERR_DATA, "%s: dataset '%s': byte size overflows size_t", path, name);
        SP_CHECK(mem_check_(ds, name, bytes, "the targets (read whole at open)"));
        ds->targets = malloc(bytes);
        if (!ds->targets)
            return SP_FAIL(SP_ERR_NOMEM, "%s: dataset '%s': cannot allocate %zu bytes", path, name,
                           bytes);
        for (int64_t f = 0; f < n; f += block) {
            int64_t cnt = n - f < block ? n - f : block;
            float *dst = ds->targets + f * in->targets;
            SP_CHECK(read_range_(ds->dy, H5T_NATIVE_FLOAT, f, cnt, dst, path, name));
            for (int64_t i = 0; i < cnt * in->targets; ++i)
                if (!isfinite(dst[i]))
                    return SP_FAIL(SP_ERR_NUMERIC, "%s: dataset '%s': row %lld: NaN or Inf target",
                                   path, name, (long long)(f + i / in->targets));
        }
        return SP_OK;
    }
    bool found;
    double cattr = 0;
    SP_CHECK(sp_h5_attr_read_double(ds->dy, "classes", &cattr, &found, path, name));
    if (found && !(cattr >= 1 && cattr <= (double)INT32_MAX && cattr == floor(cattr)))
        return SP_FAIL(SP_ERR_DATA,
                       "%s: dataset '%s': attribute 'classes' = %g is not a positive integer", path,
                       name, cattr);
    size_t lbytes;
    SP_CHECK(
        sp_size_mul((size_t)n, sizeof(int32_t), &lbytes)
            ? mem_check_(ds, name, lbytes, "the labels (read whole at open)")
            : SP_FAIL(SP_ERR_DATA, "%s: dataset '%s': byte size overflows size_t", path, name));
    ds->labels = malloc(lbytes);
    int64_t *tmp = malloc((size_t)(n < block ? n : block) * sizeof(int64_t));
    if (!ds->labels || !tmp) {
        free(tmp);
        return SP_FAIL(SP_ERR_NOMEM, "%s: dataset '%s': cannot allocate labels", path, name);
    }
    /* uint64 values above INT64_MAX saturate to INT64_MAX in HDF5's conversion: out of range. */
    int64_t maxl = -1;
    for (int64_t f = 0; f < n; f += block) {
        int64_t cnt = n - f < block ? n - f : block;
        sp_status st = read_range_(ds->dy, H5T_NATIVE_INT64, f, cnt, tmp, path, name);
        if (st != SP_OK) {
            free(tmp);
            return st;
        }
        for (int64_t i = 0; i < cnt; ++i) {
            int64_t l = tmp[i];
            if (l < 0 || (found && l >= (int64_t)cattr) || l >= INT32_MAX) {
                free(tmp);
                if (l < 0)
                    return SP_FAIL(SP_ERR_DATA, "%s: dataset '%s': row %lld: negative label %lld",
                                   path, name, (long long)(f + i), (long long)l);
                return SP_FAIL(SP_ERR_DATA,
                               "%s: dataset '%s': row %lld: label %lld out of range [0, %lld)",
                               path, name, (long long)(f + i), (long long)l,
                               (long long)(found ? (int64_t)cattr : INT32_MAX));
            }
            ds->labels[f + i] = (int32_t)l;
            if (l > maxl) maxl = l;
        }
    }
    free(tmp);
    in->classes = found ? (int64_t)cattr : maxl + 1;
    ds->classes_attr = found ? (int64_t)cattr : 0;
    return SP_OK;
}

static sp_status open_failed_(const sp_dataset *ds) {
    if (ds->info.seq_len > 0)
        return SP_FAIL(SP_ERR_DATA,
                       "%s: cannot open as HDF5 (damaged or truncated file?) for token dataset "
                       "'%s'",
                       ds->path, ds->x_name);
    return SP_FAIL(SP_ERR_DATA,
                   "%s: cannot open as HDF5 (damaged or truncated file?) for datasets '%s' and "
                   "'%s'",
                   ds->path, ds->x_name, ds->y_name);
}

/* Is `name` a dataset of `file`? Its number of elements into *count (may be NULL). */
static bool is_dataset_(hid_t file, const char *name, int64_t *count) {
    if (!sp_h5_exists(file, name)) return false;
    hid_t o = H5Oopen(file, name, H5P_DEFAULT);
    if (o < 0) return false;
    const bool ok = H5Iget_type(o) == H5I_DATASET;
    if (ok && count) {
        hid_t s = H5Dget_space(o);
        hssize_t np = s < 0 ? -1 : H5Sget_simple_extent_npoints(s);
        if (s >= 0) H5Sclose(s);
        *count = np;
    }
    H5Oclose(o);
    return ok;
}

/* Validate the open file ds->file (caller holds the lock). */
static sp_status validate_locked_(sp_dataset *ds, unsigned flags) {
    int64_t ntok = 0;
    if (!sp_h5_exists(ds->file, ds->x_name) && is_dataset_(ds->file, SP_TOKENS_NAME_, &ntok))
        return SP_FAIL(SP_ERR_DATA,
                       "%s: dataset '%s' not found; the file holds token data ('%s', %lld tokens): "
                       "train it with --seq-len T",
                       ds->path, ds->x_name, SP_TOKENS_NAME_, (long long)ntok);
    SP_CHECK(open_x_(ds));
    if ((flags & SP_DATASET_Y_OPTIONAL) && !sp_h5_exists(ds->file, ds->y_name)) {
        ds->info.labeled = false; /* X only: prediction on unlabeled data */
        if (ds->info.n == 0)
            return SP_FAIL(SP_ERR_DATA, "%s: dataset '%s': no samples (N = 0)", ds->path,
                           ds->x_name);
        return SP_OK;
    }
    ds->info.labeled = true;
    SP_CHECK(open_y_(ds));
    if (ds->y_dims[0] != ds->x_dims[0])
        return SP_FAIL(SP_ERR_DATA,
                       "%s: datasets '%s' and '%s' disagree on N: %s has %llu samples, %s has %llu",
                       ds->path, ds->x_name, ds->y_name, ds->x_name,
                       (unsigned long long)ds->x_dims[0], ds->y_name,
                       (unsigned long long)ds->y_dims[0]);
    if (ds->info.n == 0)
        return SP_FAIL(SP_ERR_DATA, "%s: dataset '%s': no samples (N = 0)", ds->path, ds->x_name);
    return load_y_(ds);
}

/* Remember the file as opened (stat before H5Fopen), for check_unchanged_. */
static void watch_(sp_dataset *ds) {
    struct stat sb;
    if (stat(ds->path, &sb) == 0) {
        ds->watched = true;
        ds->st_dev = (unsigned long long)sb.st_dev, ds->st_ino = (unsigned long long)sb.st_ino;
        ds->st_size = (long long)sb.st_size;
        ds->st_mtime_s = (long long)sb.st_mtim.tv_sec, ds->st_mtime_ns = sb.st_mtim.tv_nsec;
    }
}

/* A dataset with its names set and no file yet. */
static sp_status dataset_new_(sp_dataset **out, const char *path, const char *x_name,
                              const char *y_name) {
    sp_dataset *ds = calloc(1, sizeof *ds);
    *out = NULL;
    if (!ds) return SP_FAIL(SP_ERR_NOMEM, "%s: out of memory", path);
    ds->file = ds->dx = ds->dy = -1;
    ds->cache_cap = (size_t)64 << 20;
    ds->path = strdup(path);
    ds->x_name = strdup(x_name);
    ds->y_name = strdup(y_name);
    if (!ds->path || !ds->x_name || !ds->y_name) {
        sp_dataset_close(ds);
        return SP_FAIL(SP_ERR_NOMEM, "%s: out of memory", path);
    }
    ds->info.path = ds->path;
    ds->info.x_name = ds->x_name;
    ds->info.y_name = ds->y_name;
    *out = ds;
    return SP_OK;
}

sp_status sp_dataset_open(sp_dataset **out, const char *path, const char *x_name,
                          const char *y_name) {
    return sp_dataset_open_ex(out, path, x_name, y_name, 0);
}

/* One file with its chunk cache bound (x_name, y_name not NULL). */
static sp_status open_file_(sp_dataset **out, const char *path, const char *x_name,
                            const char *y_name, unsigned flags, size_t cache_cap) {
    *out = NULL;
    char what[512];
    if (flags & SP_DATASET_Y_OPTIONAL)
        snprintf(what, sizeof what, "dataset '%s'", x_name);
    else
        snprintf(what, sizeof what, "datasets '%s' and '%s'", x_name, y_name);
    SP_CHECK(sp_h5_check_file(path, what));
    sp_dataset *ds;
    SP_CHECK(dataset_new_(&ds, path, x_name, y_name));
    ds->cache_cap = cache_cap;
    watch_(ds);
    sp_h5_lock();
    ds->file = H5Fopen(ds->path, H5F_ACC_RDONLY, H5P_DEFAULT);
    sp_status st = ds->file < 0 ? open_failed_(ds) : validate_locked_(ds, flags);
    sp_h5_unlock();
    if (st != SP_OK) {
        sp_dataset_close(ds);
        return st;
    }
    *out = ds;
    return SP_OK;
}

static sp_status open_tokens_file_(sp_dataset **out, const char *path, const char *name,
                                   int64_t seq_len, size_t cache_cap);

sp_status sp_dataset_open_ex(sp_dataset **out, const char *path, const char *x_name,
                             const char *y_name, unsigned flags) {
    const char *one[1] = {path};
    return sp_dataset_open_files(out, one, 1, x_name, y_name, flags);
}

sp_status sp_dataset_open_tokens(sp_dataset **out, const char *path, const char *name,
                                 int64_t seq_len) {
    const char *one[1] = {path};
    return sp_dataset_open_tokens_files(out, one, 1, name, seq_len);
}

/* ------------------------------------------------------------------ several files as one */

/* The HDF5 chunk cache of X a single file gets; several files share it (parts_new_). */
#define SP_CHUNK_CACHE_TOTAL_ ((size_t)64 << 20)

/* The most files of a dataset open at once: SHARDPROP_MAX_OPEN_FILES, else 16. */
static int max_open_files_(void) {
    const char *e = getenv("SHARDPROP_MAX_OPEN_FILES");
    long v = e && *e ? strtol(e, NULL, 10) : 16;
    return v < 1 ? 1 : v > 1 << 20 ? 1 << 20 : (int)v;
}

static void close_handles_locked_(sp_dataset *part) {
    if (part->dx >= 0) H5Dclose(part->dx);
    if (part->dy >= 0) H5Dclose(part->dy);
    if (part->file >= 0) H5Fclose(part->file);
    part->file = part->dx = part->dy = -1;
}

/* Part p's handles, opened again when closed; the least recently used open part is closed first
 * when max_open are open. A file that changed since the dataset was opened is refused before it
 * is reopened. */
static sp_status acquire_(sp_dataset *ds, int p) {
    sp_dataset *part = ds->parts[p];
    part->used = ++ds->tick;
    if (part->file >= 0) return SP_OK;
    SP_CHECK(check_unchanged_(part));
    sp_h5_lock();
    if (ds->nopen >= ds->max_open) {
        int lru = -1;
        for (int i = 0; i < ds->nparts; ++i)
            if (i != p && ds->parts[i]->file >= 0 &&
                (lru < 0 || ds->parts[i]->used < ds->parts[lru]->used))
                lru = i;
        if (lru >= 0) {
            close_handles_locked_(ds->parts[lru]);
            --ds->nopen;
        }
    }
    sp_status st = SP_OK;
    part->file = H5Fopen(part->path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (part->file < 0)
        st = open_failed_(part);
    else
        st = open_dataset_(part->file, part->path, part->x_name, true, part->cache_cap, &part->dx);
    if (st != SP_OK) {
        close_handles_locked_(part);
    } else {
        ++ds->nopen;
        ++ds->reopens;
        if (ds->nopen > ds->peak_open) ds->peak_open = ds->nopen;
    }
    sp_h5_unlock();
    return st;
}

static bool same_shape_(const sp_dataset_info *a, const sp_dataset_info *b) {
    if (a->sample_rank != b->sample_rank) return false;
    for (int d = 0; d < a->sample_rank; ++d)
        if (a->sample_shape[d] != b->sample_shape[d]) return false;
    return true;
}

/* Part q against the first part f: everything a row's meaning depends on must agree. The
 * message names both files. */
static sp_status check_part_(const sp_dataset *f, const sp_dataset *q) {
    const sp_dataset_info *a = &f->info, *b = &q->info;
    const char *xn = a->x_name, *yn = a->y_name;
    if (a->x_dtype != b->x_dtype)
        return SP_FAIL(SP_ERR_DATA, "%s: dataset '%s': dtype %s differs from %s's %s", q->path, xn,
                       sp_x_dtype_name(b->x_dtype), f->path, sp_x_dtype_name(a->x_dtype));
    if (!same_shape_(a, b)) {
        char sa[160], sb[160];
        sp_shape_str_compact(sa, sizeof sa, a->sample_shape, a->sample_rank);
        sp_shape_str_compact(sb, sizeof sb, b->sample_shape, b->sample_rank);
        return SP_FAIL(SP_ERR_DATA, "%s: dataset '%s': sample shape %s differs from %s's %s",
                       q->path, xn, sb, f->path, sa);
    }
    if (a->seq_len > 0) {
        if (a->classes != b->classes)
            return SP_FAIL(SP_ERR_DATA, "%s: dataset '%s': vocab_size %lld differs from %s's %lld",
                           q->path, xn, (long long)b->classes, f->path, (long long)a->classes);
        const char *ta = a->tokenizer ? a->tokenizer : "(none)",
                   *tb = b->tokenizer ? b->tokenizer : "(none)";
        if (strcmp(ta, tb))
            return SP_FAIL(SP_ERR_DATA,
                           "%s: dataset '%s': tokenizer '%.64s' differs from %s's '%.64s'", q->path,
                           xn, tb, f->path, ta);
        return SP_OK;
    }
    if (a->scale != b->scale || a->offset != b->offset)
        return SP_FAIL(SP_ERR_DATA,
                       "%s: dataset '%s': scale %.9g, offset %.9g differ from %s's %.9g, %.9g",
                       q->path, xn, b->scale, b->offset, f->path, a->scale, a->offset);
    if (a->labeled != b->labeled)
        return SP_FAIL(SP_ERR_DATA, "%s: dataset '%s': %s, but %s has it",
                       a->labeled ? q->path : f->path, yn, "not in the file",
                       a->labeled ? f->path : q->path);
    if (!a->labeled) return SP_OK;
    if (a->regression != b->regression)
        return SP_FAIL(SP_ERR_DATA, "%s: dataset '%s': %s %s, but %s holds %s %s", q->path, yn,
                       b->y_dtype, b->regression ? "targets" : "labels", f->path, a->y_dtype,
                       a->regression ? "targets" : "labels");
    if (a->regression && a->targets != b->targets)
        return SP_FAIL(SP_ERR_DATA, "%s: dataset '%s': %lld targets per sample, %s has %lld",
                       q->path, yn, (long long)b->targets, f->path, (long long)a->targets);
    if (!a->regression && f->classes_attr != q->classes_attr) {
        char va[32] = "absent", vb[32] = "absent";
        if (f->classes_attr) snprintf(va, sizeof va, "%lld", (long long)f->classes_attr);
        if (q->classes_attr) snprintf(vb, sizeof vb, "%lld", (long long)q->classes_attr);
        return SP_FAIL(SP_ERR_DATA, "%s: dataset '%s': attribute 'classes' %s differs from %s's %s",
                       q->path, yn, vb, f->path, va);
    }
    return SP_OK;
}

/* The logical dataset over parts[0..n), already opened and checked: info from the first part,
 * N the sum, classes the attribute or the largest of the parts'. Takes the parts. */
static sp_status assemble_(sp_dataset **out, sp_dataset **parts, int n, int max_open) {
    char desc[600];
    snprintf(desc, sizeof desc, "%s .. %s (%d files)", parts[0]->path, parts[n - 1]->path, n);
    sp_dataset *ds;
    sp_status st = dataset_new_(&ds, desc, parts[0]->x_name, parts[0]->y_name);
    if (st != SP_OK) {
        for (int i = 0; i < n; ++i) sp_dataset_close(parts[i]);
        free(parts);
        return st;
    }
    ds->parts = parts;
    ds->nparts = n;
    ds->max_open = max_open;
    ds->part_first = malloc(((size_t)n + 1) * sizeof(int64_t));
    ds->pcount = malloc(((size_t)n + 1) * sizeof(int64_t));
    if (!ds->part_first || !ds->pcount) {
        sp_dataset_close(ds);
        return SP_FAIL(SP_ERR_NOMEM, "%s: out of memory", desc);
    }
    sp_dataset_info *in = &ds->info;
    *in = parts[0]->info;
    in->path = ds->path;
    in->x_name = ds->x_name;
    in->y_name = ds->y_name;
    int64_t total = 0, tokens = 0, classes = 0;
    for (int i = 0; i < n; ++i) {
        ds->part_first[i] = total;
        total += parts[i]->info.n;
        tokens += parts[i]->info.tokens;
        if (parts[i]->info.classes > classes) classes = parts[i]->info.classes;
        if (parts[i]->file >= 0) ++ds->nopen;
    }
    ds->part_first[n] = total;
    ds->peak_open = ds->nopen;
    in->n = total;
    in->tokens = tokens;
    if (in->labeled && !in->regression) in->classes = classes;
    *out = ds;
    return SP_OK;
}

/* Open paths[0..n) one after the other as single files, checking each against the first and
 * keeping at most max_open of them open (y read, only X's handles kept). */
static sp_status open_parts_(sp_dataset **out, const char *const *paths, int n, const char *x,
                             const char *y, unsigned flags, int64_t seq_len) {
    *out = NULL;
    if (n < 1) return SP_FAIL(SP_ERR_ARG, "no data file given");
    if (n == 1)
        return seq_len > 0 ? open_tokens_file_(out, paths[0], x, seq_len, SP_CHUNK_CACHE_TOTAL_)
                           : open_file_(out, paths[0], x, y, flags, SP_CHUNK_CACHE_TOTAL_);
    const int max_open = max_open_files_();
    /* the open files share one file's chunk cache (a floor of 256 KiB each: a few chunks) */
    size_t cap = SP_CHUNK_CACHE_TOTAL_ / (size_t)(n < max_open ? n : max_open);
    if (cap < ((size_t)256 << 10)) cap = (size_t)256 << 10;
    sp_dataset **parts = calloc((size_t)n, sizeof *parts);
    if (!parts) return SP_FAIL(SP_ERR_NOMEM, "%s: out of memory", paths[0]);
    sp_status st = SP_OK;
    int64_t total = 0;
    for (int i = 0; i < n && st == SP_OK; ++i) {
        st = seq_len > 0 ? open_tokens_file_(&parts[i], paths[i], x, seq_len, cap)
                         : open_file_(&parts[i], paths[i], x, y, flags, cap);
        if (st == SP_OK && i > 0) st = check_part_(parts[0], parts[i]);
        if (st == SP_OK && parts[i]->info.n > INT64_MAX - total)
            st = SP_FAIL(SP_ERR_DATA, "%s: the files hold more than 2^63 rows", paths[i]);
        if (st == SP_OK) total += parts[i]->info.n;
        if (st == SP_OK && i >= max_open) { /* the first max_open stay open */
            sp_h5_lock();
            close_handles_locked_(parts[i]);
            sp_h5_unlock();
        } else if (st == SP_OK && parts[i]->dy >= 0) { /* y is in memory: only X is read again */
            sp_h5_lock();
            H5Dclose(parts[i]->dy);
            parts[i]->dy = -1;
            sp_h5_unlock();
        }
    }
    if (st != SP_OK) {
        for (int i = 0; i < n; ++i) sp_dataset_close(parts[i]);
        free(parts);
        return st;
    }
    return assemble_(out, parts, n, max_open);
}

sp_status sp_dataset_open_files(sp_dataset **out, const char *const *paths, int npaths,
                                const char *x_name, const char *y_name, unsigned flags) {
    return open_parts_(out, paths, npaths, x_name ? x_name : "X", y_name ? y_name : "y", flags, 0);
}

sp_status sp_dataset_open_tokens_files(sp_dataset **out, const char *const *paths, int npaths,
                                       const char *name, int64_t seq_len) {
    *out = NULL;
    if (!name) name = SP_TOKENS_NAME_;
    if (seq_len < 1)
        return SP_FAIL(SP_ERR_ARG, "%s: dataset '%s': --seq-len must be >= 1 (got %lld)",
                       npaths > 0 ? paths[0] : "(no file)", name, (long long)seq_len);
    return open_parts_(out, paths, npaths, name, name, 0, seq_len);
}

sp_status sp_dataset_open_items(sp_dataset **out, const char *items, const char *flag,
                                const char *x_name, const char *y_name, unsigned flags) {
    *out = NULL;
    sp_path_list l;
    SP_CHECK(sp_data_paths_expand_words(items, flag, &l));
    sp_status st = sp_dataset_open_files(out, (const char *const *)l.v, l.n, x_name, y_name, flags);
    sp_path_list_free(&l);
    return st;
}

sp_status sp_dataset_open_tokens_items(sp_dataset **out, const char *items, const char *flag,
                                       const char *name, int64_t seq_len) {
    *out = NULL;
    sp_path_list l;
    SP_CHECK(sp_data_paths_expand_words(items, flag, &l));
    sp_status st = sp_dataset_open_tokens_files(out, (const char *const *)l.v, l.n, name, seq_len);
    sp_path_list_free(&l);
    return st;
}

int sp_dataset_nfiles(const sp_dataset *ds) {
    return ds->parts ? ds->nparts : 1;
}

const char *sp_dataset_file_path(const sp_dataset *ds, int i) {
    return ds->parts ? ds->parts[i]->path : ds->path;
}

int64_t sp_dataset_file_rows(const sp_dataset *ds, int i) {
    return ds->parts ? ds->parts[i]->info.n : ds->info.n;
}

void sp_dataset_handle_stats(const sp_dataset *ds, int *open_now, int *peak, int64_t *reopens) {
    const int one = ds->file >= 0 ? 1 : 0;
    *open_now = ds->parts ? ds->nopen : one;
    *peak = ds->parts ? ds->peak_open : one;
    *reopens = ds->parts ? ds->reopens : 0;
}

/* The checks sp_h5_check_file makes on a file: the HDF5 signature at 0, 512, 1024, ... */
static bool has_signature_(const void *image, size_t len) {
    static const unsigned char sig[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
    bool ok = false;
    for (size_t off = 0; !ok && len >= 8 && off <= len - 8; off = off ? off * 2 : 512)
        ok = memcmp((const char *)image + off, sig, 8) == 0;
    return ok;
}

sp_status sp_dataset_open_image(sp_dataset **out, const void *image, size_t len, const char *name,
                                const char *x_name, const char *y_name) {
    *out = NULL;
    if (!x_name) x_name = "X";
    if (!y_name) y_name = "y";
    if (!name) name = "(file image)";
    if (!has_signature_(image, len))
        return SP_FAIL(SP_ERR_DATA,
                       "%s: not an HDF5 file (no HDF5 signature; wanted datasets '%s' and '%s')",
                       name, x_name, y_name);
    sp_dataset *ds;
    SP_CHECK(dataset_new_(&ds, name, x_name, y_name));
    sp_h5_lock();
    /* flags 0: HDF5 copies the image, read-only; the caller's buffer is not kept */
    ds->file = H5LTopen_file_image((void *)image, len, 0);
    sp_status st = ds->file < 0 ? open_failed_(ds) : validate_locked_(ds, 0);
    sp_h5_unlock();
    if (st != SP_OK) {
        sp_dataset_close(ds);
        return st;
    }
    *out = ds;
    return SP_OK;
}

/* The optional `tokenizer` attribute of the token dataset: one fixed-length string of at most
 * SP_TOKENIZER_MAX_ bytes, into ds->tokenizer. A variable-length string is refused rather than
 * read (libhdf5 does not guarantee its terminator for a damaged file; see io/checkpoint.c). */
static sp_status read_tokenizer_(sp_dataset *ds) {
    const char *path = ds->path, *name = ds->x_name;
    if (H5Aexists(ds->dx, "tokenizer") <= 0) return SP_OK;
    hid_t a = H5Aopen(ds->dx, "tokenizer", H5P_DEFAULT);
    if (a < 0)
        return SP_FAIL(SP_ERR_DATA, "%s: dataset '%s': cannot open attribute 'tokenizer'", path,
                       name);
    hid_t t = H5Aget_type(a), s = H5Aget_space(a);
    const hssize_t np = H5Sget_simple_extent_npoints(s);
    const size_t sz = H5Tget_size(t);
    sp_status st = SP_OK;
    if (H5Tget_class(t) != H5T_STRING || np != 1) {
        st = SP_FAIL(SP_ERR_DATA,
                     "%s: dataset '%s': attribute 'tokenizer' must be one string (is %s, %lld "
                     "values)",
                     path, name, sp_h5_type_name(t), (long long)np);
    } else if (H5Tis_variable_str(t) > 0) {
        st = SP_FAIL(SP_ERR_DATA,
                     "%s: dataset '%s': attribute 'tokenizer' is a variable-length string; store "
                     "a fixed-length one (h5py: attrs['tokenizer'] = numpy.bytes_('bytes'))",
                     path, name);
    } else if (sz == 0 || sz > SP_TOKENIZER_MAX_) {
        st = SP_FAIL(SP_ERR_DATA,
                     "%s: dataset '%s': attribute 'tokenizer' is a string of %zu bytes; expected "
                     "1 to %d",
                     path, name, sz, SP_TOKENIZER_MAX_);
    } else {
        ds->tokenizer = calloc(1, sz + 1);
        hid_t mt = H5Tcopy(t);
        H5Tset_strpad(mt, H5T_STR_NULLTERM);
        H5Tset_size(mt, sz + 1);
        if (!ds->tokenizer)
            st = SP_FAIL(SP_ERR_NOMEM, "%s: out of memory", path);
        else if (H5Aread(a, mt, ds->tokenizer) < 0)
            st = SP_FAIL(SP_ERR_DATA, "%s: dataset '%s': cannot read attribute 'tokenizer'", path,
                         name);
        H5Tclose(mt);
        ds->info.tokenizer = ds->tokenizer;
    }
    H5Sclose(s);
    H5Tclose(t);
    H5Aclose(a);
    return st;
}

/* Validate the token dataset of the open file ds->file for windows of T tokens (caller holds
 * the lock). Reads only metadata: the dataset's type and shape and its attributes. */
static sp_status validate_tokens_locked_(sp_dataset *ds, int64_t T) {
    const char *path = ds->path, *name = ds->x_name;
    sp_dataset_info *in = &ds->info;
    if (!sp_h5_exists(ds->file, name) && is_dataset_(ds->file, "X", NULL))
        return SP_FAIL(SP_ERR_DATA,
                       "%s: dataset '%s': not found in the file; the file holds samples ('X'): "
                       "train it without --seq-len",
                       path, name);
    SP_CHECK(open_dataset_(ds->file, path, name, true, ds->cache_cap, &ds->dx));
    hid_t t = H5Dget_type(ds->dx);
    const H5T_class_t c = H5Tget_class(t);
    const size_t sz = H5Tget_size(t);
    const bool sgn = c == H5T_INTEGER && H5Tget_sign(t) == H5T_SGN_2;
    const char *tn = sp_h5_type_name(t);
    H5Tclose(t);
    size_t esz = sz;
    if (c == H5T_INTEGER && sz == 1 && !sgn)
        in->x_dtype = SP_DTYPE_U8;
    else if (c == H5T_INTEGER && sz == 2 && !sgn)
        in->x_dtype = SP_DTYPE_U16;
    else if (c == H5T_INTEGER && sz == 4 && sgn)
        in->x_dtype = SP_DTYPE_I32;
    else
        return SP_FAIL(SP_ERR_DATA,
                       "%s: dataset '%s': unsupported dtype %s (token ids must be uint8, uint16 or "
                       "int32)",
                       path, name, tn);
    in->y_dtype = tn;
    ds->x_mem_type = H5T_NATIVE_INT32;
    int rank = 0;
    hsize_t dims[32];
    SP_CHECK(get_dims_(ds->dx, path, name, 32, &rank, dims));
    if (rank != 1) {
        int64_t shape[8];
        for (int d = 0; d < rank && d < 8; ++d) shape[d] = (int64_t)dims[d];
        char sh[160];
        sp_shape_str_compact(sh, sizeof sh, shape, rank < 8 ? rank : 8);
        return SP_FAIL(SP_ERR_DATA,
                       "%s: dataset '%s': wrong rank %d, shape %s (token data is 1-D: (tokens,))",
                       path, name, rank, sh);
    }
    if (dims[0] > (hsize_t)INT64_MAX)
        return SP_FAIL(SP_ERR_DATA, "%s: dataset '%s': %llu tokens overflow int64", path, name,
                       (unsigned long long)dims[0]);
    const int64_t ntok = (int64_t)dims[0];
    in->tokens = ntok;
    bool found;
    double v = 0;
    SP_CHECK(sp_h5_attr_read_double(ds->dx, "vocab_size", &v, &found, path, name));
    if (!found)
        return SP_FAIL(SP_ERR_DATA,
                       "%s: dataset '%s': attribute 'vocab_size' not found (an integer: the number "
                       "of token ids, 256 for bytes)",
                       path, name);
    if (!(v >= 1 && v <= SP_VOCAB_MAX_ && v == floor(v)))
        return SP_FAIL(SP_ERR_DATA,
                       "%s: dataset '%s': attribute 'vocab_size' = %g is not an integer in [1, %d]",
                       path, name, v, SP_VOCAB_MAX_);
    SP_CHECK(read_tokenizer_(ds));
    /* (ntok - 1) / T windows; T >= 1 */
    if (ntok < 2 || (ntok - 1) / T < 1)
        return SP_FAIL(SP_ERR_DATA,
                       "%s: dataset '%s': %lld tokens are too few for one window: --seq-len %lld "
                       "needs at least %llu tokens",
                       path, name, (long long)ntok, (long long)T, (unsigned long long)T + 1ull);
    size_t one;
    if (!sp_size_mul((size_t)T, esz, &in->x_row_bytes) || !sp_size_mul((size_t)T, 4, &one) ||
        !sp_size_mul((size_t)T + 1, 4, &ds->raw_row_bytes))
        return SP_FAIL(SP_ERR_DATA, "%s: dataset '%s': --seq-len %lld overflows size_t", path, name,
                       (long long)T);
    SP_CHECK(mem_check_(ds, name, one, "one window as float32"));
    in->n = (ntok - 1) / T;
    in->seq_len = T;
    in->sample_rank = 1;
    in->sample_shape[0] = T;
    in->sample_size = (size_t)T;
    in->scale = 1.0;
    in->offset = 0.0;
    in->classes = (int64_t)v;
    in->labeled = true;
    in->regression = false;
    in->targets = 0;
    return SP_OK;
}

/* The checks of sp_dataset_open_tokens before the file is opened; *ds a new dataset. */
static sp_status tokens_new_(sp_dataset **ds, const char *path, const char *name, int64_t seq_len) {
    *ds = NULL;
    if (seq_len < 1)
        return SP_FAIL(SP_ERR_ARG, "%s: dataset '%s': --seq-len must be >= 1 (got %lld)", path,
                       name, (long long)seq_len);
    SP_CHECK(dataset_new_(ds, path, name, name));
    (*ds)->info.seq_len = seq_len; /* token data from here on (open_failed_'s message) */
    return SP_OK;
}

/* One token file with its chunk cache bound (name not NULL). */
static sp_status open_tokens_file_(sp_dataset **out, const char *path, const char *name,
                                   int64_t seq_len, size_t cache_cap) {
    *out = NULL;
    if (seq_len >= 1) {
        char what[512];
        snprintf(what, sizeof what, "token dataset '%s'", name);
        SP_CHECK(sp_h5_check_file(path, what));
    }
    sp_dataset *ds;
    SP_CHECK(tokens_new_(&ds, path, name, seq_len));
    ds->cache_cap = cache_cap;
    watch_(ds);
    sp_h5_lock();
    ds->file = H5Fopen(ds->path, H5F_ACC_RDONLY, H5P_DEFAULT);
    sp_status st = ds->file < 0 ? open_failed_(ds) : validate_tokens_locked_(ds, seq_len);
    sp_h5_unlock();
    if (st != SP_OK) {
        sp_dataset_close(ds);
        return st;
    }
    *out = ds;
    return SP_OK;
}

sp_status sp_dataset_open_tokens_image(sp_dataset **out, const void *image, size_t len,
                                       const char *name, const char *tokens_name, int64_t seq_len) {
    *out = NULL;
    if (!tokens_name) tokens_name = SP_TOKENS_NAME_;
    if (!name) name = "(file image)";
    if (seq_len >= 1 && !has_signature_(image, len))
        return SP_FAIL(SP_ERR_DATA,
                       "%s: not an HDF5 file (no HDF5 signature; wanted token dataset '%s')", name,
                       tokens_name);
    sp_dataset *ds;
    SP_CHECK(tokens_new_(&ds, name, tokens_name, seq_len));
    sp_h5_lock();
    ds->file = H5LTopen_file_image((void *)image, len, 0);
    sp_status st = ds->file < 0 ? open_failed_(ds) : validate_tokens_locked_(ds, seq_len);
    sp_h5_unlock();
    if (st != SP_OK) {
        sp_dataset_close(ds);
        return st;
    }
    *out = ds;
    return SP_OK;
}

bool sp_dataset_is_token_file(const char *path, const char *x_name) {
    if (!x_name) x_name = "X";
    struct stat sb;
    if (stat(path, &sb) != 0 || !S_ISREG(sb.st_mode)) return false;
    sp_h5_lock();
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    const bool yes = f >= 0 && !sp_h5_exists(f, x_name) && is_dataset_(f, SP_TOKENS_NAME_, NULL);
    if (f >= 0) H5Fclose(f);
    sp_h5_unlock();
    return yes;
}

const sp_dataset_info *sp_dataset_get_info(const sp_dataset *ds) {
    return &ds->info;
}

sp_status sp_dataset_check_input_shape(const sp_dataset *ds, const int64_t *shape, int rank) {
    const sp_dataset_info *in = &ds->info;
    bool ok = rank == in->sample_rank;
    for (int d = 0; ok && d < rank; ++d) ok = shape[d] == in->sample_shape[d];
    if (ok) return SP_OK;
    char a[160], b[160];
    sp_shape_str_compact(a, sizeof a, in->sample_shape, in->sample_rank);
    sp_shape_str_compact(b, sizeof b, shape, rank < 0 ? 0 : rank > 8 ? 8 : rank);
    return SP_FAIL(SP_ERR_DATA,
                   "%s: dataset '%s': sample shape %s does not match the model input shape %s",
                   in->path, in->x_name, a, b);
}

void sp_dataset_close(sp_dataset *ds) {
    if (!ds) return;
    for (int i = 0; i < ds->nparts; ++i) sp_dataset_close(ds->parts[i]);
    free(ds->parts);
    free(ds->part_first);
    free(ds->pcount);
    free(ds->pids);
    free(ds->porder);
    free(ds->px);
    free(ds->ptargets);
    free(ds->plabels);
    sp_h5_lock();
    if (ds->dx >= 0) H5Dclose(ds->dx);
    if (ds->dy >= 0) H5Dclose(ds->dy);
    if (ds->file >= 0) H5Fclose(ds->file);
    sp_h5_unlock();
    free(ds->labels);
    free(ds->targets);
    free(ds->sorted);
    free(ds->pairs);
    free(ds->raw);
    free(ds->tokenizer);
    free(ds->path);
    free(ds->x_name);
    free(ds->y_name);
    free(ds);
}

/* Convert one row of X from the file's dtype to float32 x*scale + offset. Returns the index of
 * the first non-finite result, or -1. */
static int64_t convert_row_(const sp_dataset *ds, const void *raw, float *dst) {
    const sp_dataset_info *in = &ds->info;
    const size_t n = in->sample_size;
    const double s = in->scale, o = in->offset;
    const bool ident = s == 1.0 && o == 0.0;
    switch (in->x_dtype) {
    case SP_DTYPE_U8: {
        const uint8_t *r = raw;
        float lut[256];
        for (int v = 0; v < 256; ++v) lut[v] = (float)((double)v * s + o);
        for (size_t i = 0; i < n; ++i) dst[i] = lut[r[i]];
        break;
    }
    case SP_DTYPE_F32: {
        const float *r = raw;
        if (ident)
            memcpy(dst, r, n * sizeof(float));
        else
            for (size_t i = 0; i < n; ++i) dst[i] = (float)((double)r[i] * s + o);
        break;
    }
    case SP_DTYPE_F64: {
        const double *r = raw;
        for (size_t i = 0; i < n; ++i) dst[i] = (float)(r[i] * s + o);
        break;
    }
    case SP_DTYPE_U16:
    case SP_DTYPE_I32: /* token data only, converted by read_windows_ */
        memset(dst, 0, n * sizeof(float));
        break;
    }
    for (size_t i = 0; i < n; ++i)
        if (!isfinite(dst[i])) return (int64_t)i;
    return -1;
}

static sp_status nonfinite_(const sp_dataset *ds, int64_t row, int64_t elem, float v) {
    return SP_FAIL(SP_ERR_NUMERIC, "%s: dataset '%s': row %lld: %s at element %lld", ds->path,
                   ds->x_name, (long long)row, isnan(v) ? "NaN" : "Inf (or overflow of float32)",
                   (long long)elem);
}

typedef struct {
    int64_t id, idx;
} id_pair_;

static int cmp_pair_(const void *a, const void *b) {
    const id_pair_ *p = a, *q = b;
    if (p->id != q->id) return p->id < q->id ? -1 : 1;
    return (p->idx > q->idx) - (p->idx < q->idx);
}

static sp_status reserve_(sp_dataset *ds, int64_t n) {
    if ((size_t)n <= ds->cap) return SP_OK;
    size_t cap = (size_t)n, raw_bytes;
    if (!sp_size_mul(cap, ds->raw_row_bytes, &raw_bytes) || cap > SIZE_MAX / 16)
        return SP_FAIL(SP_ERR_NOMEM, "%s: dataset '%s': read of %lld rows overflows size_t",
                       ds->path, ds->x_name, (long long)n);
    SP_CHECK(mem_check_(ds, ds->x_name, raw_bytes, "the read buffer"));
    free(ds->sorted);
    free(ds->pairs);
    free(ds->raw);
    ds->sorted = malloc(cap * sizeof(int64_t));
    ds->pairs = malloc(cap * sizeof(id_pair_));
    ds->raw = malloc(raw_bytes ? raw_bytes : 1);
    if (!ds->sorted || !ds->pairs || !ds->raw) {
        free(ds->sorted);
        free(ds->pairs);
        free(ds->raw);
        ds->sorted = NULL;
        ds->pairs = NULL;
        ds->raw = NULL;
        ds->cap = 0;
        return SP_FAIL(SP_ERR_NOMEM, "%s: dataset '%s': cannot allocate a read buffer of %zu bytes",
                       ds->path, ds->x_name, raw_bytes);
    }
    ds->cap = cap;
    return SP_OK;
}

/* Read tokens [first, first + count) of the token dataset as int32 into buf (lock held). */
static sp_status read_tokens_(const sp_dataset *ds, int64_t first, int64_t count, int32_t *buf) {
    hid_t fs = H5Dget_space(ds->dx);
    const hsize_t start = (hsize_t)first, cnt = (hsize_t)count;
    herr_t e = H5Sselect_hyperslab(fs, H5S_SELECT_SET, &start, NULL, &cnt, NULL);
    hid_t ms = H5Screate_simple(1, &cnt, NULL);
    if (e >= 0) e = H5Dread(ds->dx, H5T_NATIVE_INT32, ms, fs, H5P_DEFAULT, buf);
    H5Sclose(ms);
    H5Sclose(fs);
    if (e < 0)
        return SP_FAIL(SP_ERR_IO,
                       "%s: dataset '%s': cannot read tokens %lld..%lld (damaged file or missing "
                       "compression filter?)",
                       ds->path, ds->x_name, (long long)first, (long long)(first + count - 1));
    return SP_OK;
}

static sp_status bad_token_(const sp_dataset *ds, int32_t v, int64_t pos) {
    return SP_FAIL(SP_ERR_DATA,
                   "%s: dataset '%s': token %lld at position %lld is out of range [0, %lld) "
                   "(vocab_size)",
                   ds->path, ds->x_name, (long long)v, (long long)pos, (long long)ds->info.classes);
}

/*
 * Token data: windows ids[0..n) (n >= 1) -> x (n, T) token ids as floats and/or labels (n, T) the
 * tokens one position later. The unique ids, sorted, are read in runs of consecutive windows: a
 * run of k windows from window a is the k T + 1 tokens [a T, (a + k) T + 1), since neighbouring
 * windows share their boundary token. Every token read is checked against vocab_size.
 */
static sp_status read_windows_(sp_dataset *ds, const int64_t *ids, int64_t n, float *x,
                               int32_t *labels) {
    const int64_t T = ds->info.seq_len, vocab = ds->info.classes;
    SP_CHECK(reserve_(ds, n));
    id_pair_ *pairs = ds->pairs;
    for (int64_t i = 0; i < n; ++i) pairs[i] = (id_pair_){ids[i], i};
    qsort(pairs, (size_t)n, sizeof *pairs, cmp_pair_);
    int64_t u = 0;
    for (int64_t i = 0; i < n; ++i)
        if (i == 0 || pairs[i].id != pairs[i - 1].id) ds->sorted[u++] = pairs[i].id;
    int32_t *tok = ds->raw; /* (u (T + 1)) at most */
    sp_status st = SP_OK;
    sp_h5_lock();
    size_t done = 0;
    for (int64_t i = 0; i < u && st == SP_OK;) {
        int64_t j = i;
        while (j + 1 < u && ds->sorted[j + 1] == ds->sorted[j] + 1) ++j;
        const int64_t count = (j - i + 1) * T + 1;
        st = read_tokens_(ds, ds->sorted[i] * T, count, tok + done);
        done += (size_t)count;
        i = j + 1;
    }
    sp_h5_unlock();
    /* after the read, failed or not: a changed file explains a failure, and makes a success
     * suspect */
    const sp_status changed = check_unchanged_(ds);
    SP_CHECK(changed);
    SP_CHECK(st);
    /* Scatter: unique window k starts at token offset off of tok (T further on within a run,
     * T + 1 at a new run); a duplicate copies the caller position before it. */
    size_t off = 0;
    for (int64_t i = 0; i < n; ++i) {
        const int64_t id = pairs[i].id, dst = pairs[i].idx;
        if (i > 0 && id == pairs[i - 1].id) {
            const int64_t src = pairs[i - 1].idx;
            if (x) memcpy(x + dst * T, x + src * T, (size_t)T * sizeof(float));
            if (labels) memcpy(labels + dst * T, labels + src * T, (size_t)T * sizeof(int32_t));
            continue;
        }
        if (i > 0) off += (size_t)(id == pairs[i - 1].id + 1 ? T : T + 1);
        const int32_t *w = tok + off;
        for (int64_t k = 0; k <= T; ++k)
            if (w[k] < 0 || w[k] >= vocab) return bad_token_(ds, w[k], id * T + k);
        if (x)
            for (int64_t k = 0; k < T; ++k) x[dst * T + k] = (float)w[k];
        if (labels) memcpy(labels + dst * T, w + 1, (size_t)T * sizeof(int32_t));
    }
    return SP_OK;
}

/* Move the read scratch (sorted ids, pairs, raw rows) from one dataset to another: the parts
 * borrow the whole's while they read, so memory does not grow with the number of files. */
static void move_scratch_(sp_dataset *from, sp_dataset *to) {
    to->sorted = from->sorted;
    to->pairs = from->pairs;
    to->raw = from->raw;
    to->cap = from->cap;
    from->sorted = NULL;
    from->pairs = NULL;
    from->raw = NULL;
    from->cap = 0;
}

/* The part that holds logical row `id`. */
static int part_of_(const sp_dataset *ds, int64_t id) {
    return (int)sp_last_le_i64(ds->part_first, ds->nparts, id);
}

static sp_status reserve_parts_(sp_dataset *ds, int64_t n) {
    if ((size_t)n <= ds->pcap) return SP_OK;
    const sp_dataset_info *in = &ds->info;
    const size_t cap = (size_t)n, lw = in->seq_len > 0 ? (size_t)in->seq_len : 1;
    size_t xb, tb, lb;
    if (!sp_size_mul(cap, in->sample_size * sizeof(float), &xb) ||
        !sp_size_mul(cap, (size_t)in->targets * sizeof(float), &tb) ||
        !sp_size_mul(cap, lw * sizeof(int32_t), &lb) || cap > SIZE_MAX / 16)
        return SP_FAIL(SP_ERR_NOMEM, "%s: dataset '%s': read of %lld rows overflows size_t",
                       ds->path, ds->x_name, (long long)n);
    SP_CHECK(mem_check_(ds, ds->x_name, xb, "the read buffer"));
    free(ds->pids);
    free(ds->porder);
    free(ds->px);
    free(ds->ptargets);
    free(ds->plabels);
    ds->pids = malloc(cap * sizeof(int64_t));
    ds->porder = malloc(cap * sizeof(int64_t));
    ds->px = malloc(xb ? xb : 1);
    ds->ptargets = malloc(tb ? tb : 1);
    ds->plabels = malloc(lb ? lb : 1);
    ds->pcap = cap;
    if (!ds->pids || !ds->porder || !ds->px || !ds->ptargets || !ds->plabels) {
        ds->pcap = 0;
        return SP_FAIL(SP_ERR_NOMEM, "%s: dataset '%s': cannot allocate a read buffer of %zu bytes",
                       ds->path, ds->x_name, xb);
    }
    return SP_OK;
}

/*
 * Several files: the ids grouped by the part that holds them (in caller order within a part),
 * each part read with its local ids (rows sorted and coalesced there, messages naming its file)
 * and scattered back to the caller's positions. A part's file is opened only when its X (or its
 * tokens) is read.
 */
static sp_status read_parts_(sp_dataset *ds, const int64_t *ids, int64_t n, float *x,
                             int32_t *labels, float *targets) {
    const sp_dataset_info *in = &ds->info;
    if (n == 0) return SP_OK;
    SP_CHECK(reserve_parts_(ds, n));
    const int np = ds->nparts;
    int64_t *cnt = ds->pcount;
    memset(cnt, 0, ((size_t)np + 1) * sizeof(int64_t));
    for (int64_t i = 0; i < n; ++i) ++cnt[part_of_(ds, ids[i]) + 1];
    for (int p = 0; p < np; ++p) cnt[p + 1] += cnt[p]; /* cnt[p]: offset of part p */
    for (int64_t i = 0; i < n; ++i) {
        const int p = part_of_(ds, ids[i]);
        const int64_t k = cnt[p]++;
        ds->pids[k] = ids[i] - ds->part_first[p];
        ds->porder[k] = i;
    }
    /* cnt[p] is now the end of part p, so part p spans [p ? cnt[p - 1] : 0, cnt[p]) */
    const size_t ss = in->sample_size, lw = in->seq_len > 0 ? (size_t)in->seq_len : 1,
                 nt = (size_t)in->targets;
    const bool file_read = x || (in->seq_len > 0 && labels);
    for (int p = 0; p < np; ++p) {
        const int64_t b = p ? cnt[p - 1] : 0, m = cnt[p] - b;
        if (m == 0) continue;
        if (file_read) SP_CHECK(acquire_(ds, p));
        move_scratch_(ds, ds->parts[p]);
        const sp_status st =
            sp_dataset_read(ds->parts[p], ds->pids + b, m, x ? ds->px : NULL,
                            labels ? ds->plabels : NULL, targets ? ds->ptargets : NULL);
        move_scratch_(ds->parts[p], ds);
        SP_CHECK(st);
        for (int64_t k = 0; k < m; ++k) {
            const size_t dst = (size_t)ds->porder[b + k];
            if (x) memcpy(x + dst * ss, ds->px + (size_t)k * ss, ss * sizeof(float));
            if (labels)
                memcpy(labels + dst * lw, ds->plabels + (size_t)k * lw, lw * sizeof(int32_t));
            if (targets)
                memcpy(targets + dst * nt, ds->ptargets + (size_t)k * nt, nt * sizeof(float));
        }
    }
    return SP_OK;
}

sp_status sp_dataset_read(sp_dataset *ds, const int64_t *ids, int64_t n, float *x, int32_t *labels,
                          float *targets) {
    const sp_dataset_info *in = &ds->info;
    if (n < 0) return SP_FAIL(SP_ERR_ARG, "%s: negative read count %lld", ds->path, (long long)n);
    for (int64_t i = 0; i < n; ++i)
        if (ids[i] < 0 || ids[i] >= in->n)
            return SP_FAIL(SP_ERR_ARG, "%s: dataset '%s': sample index %lld out of range [0, %lld)",
                           ds->path, ds->x_name, (long long)ids[i], (long long)in->n);
    if (ds->parts) return read_parts_(ds, ids, n, x, labels, targets);
    if (in->seq_len > 0) {
        if (targets)
            return SP_FAIL(SP_ERR_ARG,
                           "%s: dataset '%s': targets requested from token data (its labels are "
                           "the next tokens)",
                           ds->path, ds->x_name);
        return n == 0 || (!x && !labels) ? SP_OK : read_windows_(ds, ids, n, x, labels);
    }
    if ((labels || targets) && !in->labeled)
        return SP_FAIL(SP_ERR_ARG, "%s: dataset '%s': not in the file (unlabeled data)", ds->path,
                       ds->y_name);
    if (labels) {
        if (in->regression)
            return SP_FAIL(SP_ERR_ARG, "%s: dataset '%s': labels requested from regression targets",
                           ds->path, ds->y_name);
        for (int64_t i = 0; i < n; ++i) labels[i] = ds->labels[ids[i]];
    }
    if (targets) {
        if (!in->regression)
            return SP_FAIL(SP_ERR_ARG, "%s: dataset '%s': targets requested from class labels",
                           ds->path, ds->y_name);
        const int64_t t = in->targets;
        for (int64_t i = 0; i < n; ++i)
            memcpy(targets + i * t, ds->targets + ids[i] * t, (size_t)t * sizeof(float));
    }
    if (!x || n == 0) return SP_OK;
    SP_CHECK(reserve_(ds, n));
    id_pair_ *pairs = ds->pairs;
    for (int64_t i = 0; i < n; ++i) pairs[i] = (id_pair_){ids[i], i};
    qsort(pairs, (size_t)n, sizeof *pairs, cmp_pair_);
    int64_t u = 0;
    for (int64_t i = 0; i < n; ++i)
        if (i == 0 || pairs[i].id != pairs[i - 1].id) ds->sorted[u++] = pairs[i].id;
    sp_h5_lock();
    sp_status st = sp_h5_read_rows_sorted(ds->dx, ds->x_mem_type, ds->sorted, u, ds->raw, ds->path,
                                          ds->x_name);
    sp_h5_unlock();
    /* after the read, failed or not: a changed file explains a failure, and makes a success
     * suspect */
    const sp_status changed = check_unchanged_(ds);
    SP_CHECK(changed);
    SP_CHECK(st);
    /* Scatter: unique row k goes to every caller position holding its id. */
    const size_t ss = in->sample_size, rb = in->x_row_bytes;
    int64_t k = -1;
    for (int64_t i = 0; i < n; ++i) {
        float *dst = x + (size_t)pairs[i].idx * ss;
        if (i > 0 && pairs[i].id == pairs[i - 1].id) {
            memcpy(dst, x + (size_t)pairs[i - 1].idx * ss, ss * sizeof(float));
            continue;
        }
        ++k;
        int64_t bad = convert_row_(ds, (const char *)ds->raw + (size_t)k * rb, dst);
        if (bad >= 0) return nonfinite_(ds, pairs[i].id, bad, dst[bad]);
    }
    return SP_OK;
}

void sp_dataset_describe(const sp_dataset *ds, char *buf, size_t cap) {
    const sp_dataset_info *in = &ds->info;
    if (in->seq_len > 0) {
        snprintf(buf, cap, "%s: %lld tokens %s, vocab_size %lld%s%.64s%s, windows of %lld: N=%lld",
                 in->path, (long long)in->tokens, sp_x_dtype_name(in->x_dtype),
                 (long long)in->classes, in->tokenizer ? " (" : "",
                 in->tokenizer ? in->tokenizer : "", in->tokenizer ? ")" : "",
                 (long long)in->seq_len, (long long)in->n);
        return;
    }
    char shape[160];
    sp_shape_str_compact(shape, sizeof shape, in->sample_shape, in->sample_rank);
    if (!in->labeled)
        snprintf(buf, cap, "%s: N=%lld, %s %s %s scale=%g offset=%g, no %s (unlabeled)", in->path,
                 (long long)in->n, in->x_name, sp_x_dtype_name(in->x_dtype), shape, in->scale,
                 in->offset, in->y_name);
    else if (in->regression)
        snprintf(buf, cap, "%s: N=%lld, %s %s %s scale=%g offset=%g, %s %s %lld targets", in->path,
                 (long long)in->n, in->x_name, sp_x_dtype_name(in->x_dtype), shape, in->scale,
                 in->offset, in->y_name, in->y_dtype, (long long)in->targets);
    else
        snprintf(buf, cap, "%s: N=%lld, %s %s %s scale=%g offset=%g, %s %s %lld classes", in->path,
                 (long long)in->n, in->x_name, sp_x_dtype_name(in->x_dtype), shape, in->scale,
                 in->offset, in->y_name, in->y_dtype, (long long)in->classes);
}

/* Token data: every token of the file, in blocks of 1 Mi tokens: min, max, mean and the
 * histogram over vocab_size; a token out of range is an error naming its position. */
static sp_status summarize_tokens_(sp_dataset *ds, sp_dataset_summary *out) {
    const sp_dataset_info *in = &ds->info;
    const int64_t ntok = in->tokens, vocab = in->classes, block = 1 << 20;
    SP_CHECK(mem_check_(ds, ds->x_name, (size_t)vocab * sizeof(int64_t), "the token histogram"));
    int64_t *hist = calloc((size_t)vocab, sizeof(int64_t));
    int32_t *buf = malloc((size_t)(ntok < block ? ntok : block) * sizeof(int32_t));
    if (!hist || !buf) {
        free(hist);
        free(buf);
        return SP_FAIL(SP_ERR_NOMEM, "%s: out of memory", ds->path);
    }
    int64_t mn = INT64_MAX, mx = -1;
    double sum = 0;
    sp_status st = SP_OK;
    for (int64_t f = 0; f < ntok && st == SP_OK; f += block) {
        const int64_t cnt = ntok - f < block ? ntok - f : block;
        sp_h5_lock();
        st = read_tokens_(ds, f, cnt, buf);
        sp_h5_unlock();
        for (int64_t i = 0; i < cnt && st == SP_OK; ++i) {
            const int32_t v = buf[i];
            if (v < 0 || v >= vocab) {
                st = bad_token_(ds, v, f + i);
                break;
            }
            hist[v]++;
            sum += v;
            if (v < mn) mn = v;
            if (v > mx) mx = v;
        }
    }
    free(buf);
    if (st == SP_OK) st = check_unchanged_(ds);
    if (st != SP_OK) {
        free(hist);
        return st;
    }
    out->x_min = (double)mn;
    out->x_max = (double)mx;
    out->x_mean = sum / (double)ntok;
    out->class_counts = hist;
    return SP_OK;
}

/* Several files: each part summarized on its own (its file opened for the time), combined. */
static sp_status summarize_parts_(sp_dataset *ds, sp_dataset_summary *out) {
    const sp_dataset_info *in = &ds->info;
    const bool hist = in->seq_len > 0 || (in->labeled && !in->regression);
    if (hist) {
        SP_CHECK(mem_check_(ds, ds->y_name, (size_t)in->classes * sizeof(int64_t),
                            "the class histogram"));
        out->class_counts = calloc((size_t)in->classes, sizeof(int64_t));
        if (!out->class_counts) return SP_FAIL(SP_ERR_NOMEM, "%s: out of memory", ds->path);
    }
    out->x_min = out->y_min = INFINITY;
    out->x_max = out->y_max = -INFINITY;
    double xs = 0, ys = 0, xw = 0, yw = 0;
    for (int p = 0; p < ds->nparts; ++p) {
        sp_dataset *part = ds->parts[p];
        const sp_dataset_info *pi = &part->info;
        sp_dataset_summary s;
        sp_status st = acquire_(ds, p);
        move_scratch_(ds, part);
        if (st == SP_OK) st = sp_dataset_summarize(part, &s);
        move_scratch_(part, ds);
        if (st != SP_OK) {
            sp_dataset_summary_free(out);
            return st;
        }
        /* means weighted by the values each part averaged over */
        const double w =
            in->seq_len > 0 ? (double)pi->tokens : (double)pi->n * (double)pi->sample_size;
        xs += s.x_mean * w;
        xw += w;
        out->x_min = fmin(out->x_min, s.x_min);
        out->x_max = fmax(out->x_max, s.x_max);
        if (in->regression) {
            const double v = (double)pi->n * (double)pi->targets;
            ys += s.y_mean * v;
            yw += v;
            out->y_min = fmin(out->y_min, s.y_min);
            out->y_max = fmax(out->y_max, s.y_max);
        }
        if (hist && s.class_counts)
            for (int64_t c = 0; c < pi->classes; ++c) out->class_counts[c] += s.class_counts[c];
        sp_dataset_summary_free(&s);
    }
    out->x_mean = xs / xw;
    if (in->regression) {
        out->y_mean = ys / yw;
    } else {
        out->y_min = out->y_max = out->y_mean = 0;
    }
    return SP_OK;
}

sp_status sp_dataset_summarize(sp_dataset *ds, sp_dataset_summary *out) {
    memset(out, 0, sizeof *out);
    const sp_dataset_info *in = &ds->info;
    if (ds->parts) return summarize_parts_(ds, out);
    if (in->seq_len > 0) return summarize_tokens_(ds, out);
    const size_t ss = in->sample_size, rb = in->x_row_bytes;
    int64_t block = (int64_t)((8u << 20) / rb);
    if (block < 1) block = 1;
    if (block > in->n) block = in->n;
    SP_CHECK(reserve_(ds, block));
    float *row = malloc(ss * sizeof(float));
    if (!row) return SP_FAIL(SP_ERR_NOMEM, "%s: out of memory", ds->path);
    double mn = INFINITY, mx = -INFINITY, sum = 0;
    sp_status st = SP_OK;
    for (int64_t f = 0; f < in->n && st == SP_OK; f += block) {
        int64_t cnt = in->n - f < block ? in->n - f : block;
        sp_h5_lock();
        st = read_range_(ds->dx, ds->x_mem_type, f, cnt, ds->raw, ds->path, ds->x_name);
        sp_h5_unlock();
        for (int64_t i = 0; i < cnt && st == SP_OK; ++i) {
            int64_t bad = convert_row_(ds, (const char *)ds->raw + (size_t)i * rb, row);
            if (bad >= 0) {
                st = nonfinite_(ds, f + i, bad, row[bad]);
                break;
            }
            double rs = 0;
            for (size_t j = 0; j < ss; ++j) {
                rs += row[j];
                if (row[j] < mn) mn = row[j];
                if (row[j] > mx) mx = row[j];
            }
            sum += rs;
        }
    }
    free(row);
    if (st != SP_OK) return st;
    out->x_min = mn;
    out->x_max = mx;
    out->x_mean = sum / ((double)in->n * (double)ss);
    if (in->regression) {
        double ymn = INFINITY, ymx = -INFINITY, ys = 0;
        size_t nt = (size_t)in->n * (size_t)in->targets;
        for (size_t i = 0; i < nt; ++i) {
            double v = ds->targets[i];
            ys += v;
            if (v < ymn) ymn = v;
            if (v > ymx) ymx = v;
        }
        out->y_min = ymn;
        out->y_max = ymx;
        out->y_mean = ys / (double)nt;
    } else if (in->labeled) {
        SP_CHECK(mem_check_(ds, ds->y_name, (size_t)in->classes * sizeof(int64_t),
                            "the class histogram"));
        out->class_counts = calloc((size_t)in->classes, sizeof(int64_t));
        if (!out->class_counts) return SP_FAIL(SP_ERR_NOMEM, "%s: out of memory", ds->path);
        for (int64_t i = 0; i < in->n; ++i) out->class_counts[ds->labels[i]]++;
    }
    return SP_OK;
}

void sp_dataset_summary_free(sp_dataset_summary *s) {
    free(s->class_counts);
    s->class_counts = NULL;
}
