/* Internal to src/data: the dataset's HDF5 handles, for the tools (split, summarize) that need
 * raw access. Callers hold sp_h5_lock() around every use of the hid_t fields. */
#ifndef SP_DATA_DATASET_IMPL_H
#define SP_DATA_DATASET_IMPL_H

#include <hdf5.h>

#include "data/data.h"

struct sp_dataset {
    sp_dataset_info info;
    char *path, *x_name, *y_name;
    hid_t file, dx, dy;
    hid_t x_mem_type; /* native type X is read as (uint8, float, double; int32 for tokens) */
    int x_rank;       /* 1 + sample_rank */
    hsize_t x_dims[5];
    int y_rank;
    hsize_t y_dims[2];
    int32_t *labels; /* (n) classification labels, read at open */
    float *targets;  /* (n, T) regression targets, read at open */
    /* scratch, reused across reads */
    int64_t *sorted; /* (cap) sorted unique ids */
    void *pairs;     /* (cap) (id, caller index) pairs, sorted by id */
    void *raw;       /* (cap, raw_row_bytes) */
    size_t cap;
    size_t raw_row_bytes; /* read buffer per id: x_row_bytes; (T + 1) int32 for token data */
    /* token data (info.seq_len > 0): dx is the 1-D token dataset (x_name == y_name), read as
     * int32; nothing is read at open */
    char *tokenizer; /* the `tokenizer` attribute, or NULL */
    /* the file as opened (stat before H5Fopen), checked after every read of X: a file truncated,
     * rewritten or replaced while training reads it is an error, not silent garbage (HDF5's sec2
     * driver returns zeros for bytes past the end of a truncated file) */
    bool watched;
    unsigned long long st_dev, st_ino;
    long long st_size, st_mtime_s, st_mtime_ns;
    int64_t classes_attr; /* the `classes` attribute of y, 0 when absent */
    size_t cache_cap;     /* HDF5 chunk cache of X at most, bytes */
    /* Several files (sp_dataset_open_files with more than one): each file is a dataset of its
     * own (parts, validated alone and against parts[0]) and this one is their concatenation:
     * info describes the whole, path names the set, the handles above stay closed (-1), and
     * reads go to the parts. NULL for one file, which the fields above describe. */
    sp_dataset **parts;  /* (nparts) */
    int64_t *part_first; /* (nparts + 1) first logical row of each part, then N */
    int nparts;
    uint64_t used; /* a part: when its handles were last needed (the tick of the whole) */
    uint64_t tick; /* the whole: counts handle uses, for the least recently used part */
    int max_open, nopen, peak_open; /* parts with open HDF5 files: bound, now, most */
    int64_t reopens;                /* opens of a part after its first */
    /* scratch of a read over parts, reused across reads */
    int64_t *pcount;        /* (nparts + 1) ids per part, then their offsets */
    int64_t *pids, *porder; /* (pcap) local ids grouped by part, and their caller positions */
    float *px, *ptargets;   /* (pcap, sample_size), (pcap, targets) */
    int32_t *plabels;       /* (pcap, T or 1) */
    size_t pcap;
};

/*
 * Read rows `sorted[0..n)` (strictly increasing) of dataset `dset` (dims[0] rows of
 * row_elems elements) into `buf` as `mem_type`, with one H5Dread per run of consecutive ids.
 */
sp_status sp_h5_read_rows_sorted(hid_t dset, hid_t mem_type, const int64_t *sorted, int64_t n,
                                 void *buf, const char *path, const char *name);

#endif
