/* A tiny HDF5 writer for the data tests: files built directly with the HDF5 API (the way h5py or
 * a simulation would write them), independent of shardprop's own writers. */
#ifndef SP_TEST_H5_WRITER_H
#define SP_TEST_H5_WRITER_H

#include <hdf5.h>
#include <stdio.h>

enum { TW_CONTIGUOUS = 0, TW_CHUNKED = 1, TW_GZIP = 2 };

/* Create dataset `name` (intermediate groups created) of `ftype`, write `data` (in `mtype`) unless
 * NULL. Returns 0 on success. */
static inline int tw_dataset(hid_t f, const char *name, hid_t ftype, hid_t mtype, int rank,
                             const hsize_t *dims, const void *data, int layout) {
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    if (layout != TW_CONTIGUOUS) {
        hsize_t chunk[8];
        for (int d = 0; d < rank; ++d) chunk[d] = dims[d] ? dims[d] : 1;
        chunk[0] = dims[0] > 3 ? 3 : (dims[0] ? dims[0] : 1); /* small chunks: runs cross them */
        H5Pset_chunk(dcpl, rank, chunk);
        if (layout == TW_GZIP) {
            H5Pset_shuffle(dcpl);
            H5Pset_deflate(dcpl, 6);
        }
    }
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    hid_t s = H5Screate_simple(rank, dims, NULL);
    hid_t d = H5Dcreate2(f, name, ftype, s, lcpl, dcpl, H5P_DEFAULT);
    int rc = d < 0;
    if (!rc && data) rc = H5Dwrite(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0;
    if (d >= 0) H5Dclose(d);
    H5Sclose(s);
    H5Pclose(lcpl);
    H5Pclose(dcpl);
    if (rc) fprintf(stderr, "tw_dataset: cannot write %s\n", name);
    return rc;
}

/* A scalar attribute on object `obj`, of file type `ftype` holding v (converted). */
static inline int tw_attr(hid_t f, const char *obj, const char *attr, hid_t ftype, double v) {
    hid_t o = H5Oopen(f, obj, H5P_DEFAULT);
    hid_t s = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(o, attr, ftype, s, H5P_DEFAULT, H5P_DEFAULT);
    int rc = a < 0 || H5Awrite(a, H5T_NATIVE_DOUBLE, &v) < 0;
    if (a >= 0) H5Aclose(a);
    H5Sclose(s);
    H5Oclose(o);
    return rc;
}

static inline hid_t tw_create(const char *path) {
    return H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
}

#endif
