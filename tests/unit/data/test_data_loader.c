/* The global order and the per-rank split, and the loader: P = 1, 2, 3 (and more ranks than
 * samples in the last batch) see the same global batches; prefetch equals synchronous reads;
 * the cache never reads a row twice; resuming mid-epoch; errors from the reader thread. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "data/data.h"
#include "data/tools.h"
#include "h5_writer.h"
#include "testutil.h"

static int cmp_i64_(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static void test_order_(void) {
    const int64_t sizes[] = {1, 2, 5, 103, 1000};
    for (int k = 0; k < 5; ++k) {
        int64_t n = sizes[k];
        int64_t *p = malloc((size_t)n * 8), *q = malloc((size_t)n * 8), *s = malloc((size_t)n * 8);
        sp_epoch_order(p, n, 42, 3, true);
        sp_epoch_order(q, n, 42, 3, true);
        CHECK(memcmp(p, q, (size_t)n * 8) == 0, "pure function of (seed, epoch)");
        memcpy(s, p, (size_t)n * 8);
        qsort(s, (size_t)n, 8, cmp_i64_);
        int ok = 1;
        for (int64_t i = 0; i < n; ++i) ok &= s[i] == i;
        CHECK(ok, "n=%lld: a permutation", (long long)n);
        if (n >= 100) {
            sp_epoch_order(q, n, 42, 4, true);
            CHECK(memcmp(p, q, (size_t)n * 8) != 0, "epochs differ");
            sp_epoch_order(q, n, 43, 3, true);
            CHECK(memcmp(p, q, (size_t)n * 8) != 0, "seeds differ");
            int64_t fixed = 0;
            for (int64_t i = 0; i < n; ++i) fixed += p[i] == i;
            CHECK(fixed < n / 10, "shuffled: %lld fixed points", (long long)fixed);
        }
        sp_epoch_order(q, n, 42, 3, false);
        ok = 1;
        for (int64_t i = 0; i < n; ++i) ok &= q[i] == i;
        CHECK(ok, "no shuffle: identity");
        free(p);
        free(q);
        free(s);
    }
    CHECK(sp_batches_per_epoch(103, 10) == 11 && sp_batches_per_epoch(100, 10) == 10 &&
              sp_batches_per_epoch(3, 10) == 1,
          "ceil");
    /* Slices tile each global batch, contiguous, in rank order; counts differ by at most 1. */
    for (int P = 1; P <= 5; ++P)
        for (int64_t b = 0; b < 11; ++b) {
            int64_t next = b * 10, g0 = -1, cmin = 1 << 30, cmax = 0;
            for (int r = 0; r < P; ++r) {
                int64_t pos, c, g;
                sp_rank_slice(103, 10, b, r, P, &pos, &c, &g);
                CHECK(pos == next, "P=%d b=%lld r=%d contiguous", P, (long long)b, r);
                next = pos + c;
                if (g0 < 0) g0 = g;
                CHECK(g == g0 && g == (b < 10 ? 10 : 3), "global count");
                if (c < cmin) cmin = c;
                if (c > cmax) cmax = c;
            }
            CHECK(next == b * 10 + g0 && cmax - cmin <= 1, "tiles the batch");
        }
    int64_t pos, c, g;
    sp_rank_slice(103, 10, 10, 3, 4, &pos, &c, &g);
    CHECK(c == 0 && g == 3, "rank 3 of 4 has no sample in the last batch (count %lld)",
          (long long)c);
}

/* x[i] row = (id*F + f) * 0.5 as float64 gzip chunks; y = id % 4 as uint16. */
static void write_file_(const char *p, int64_t n, int F, int nan_row) {
    double *x = malloc((size_t)n * F * sizeof(double));
    uint16_t *y = malloc((size_t)n * sizeof(uint16_t));
    for (int64_t i = 0; i < n * F; ++i) x[i] = (double)i * 0.5;
    for (int64_t i = 0; i < n; ++i) y[i] = (uint16_t)(i % 4);
    if (nan_row >= 0) x[(int64_t)nan_row * F] = NAN;
    hsize_t xd[2] = {(hsize_t)n, (hsize_t)F}, yd[1] = {(hsize_t)n};
    hid_t f = tw_create(p);
    tw_dataset(f, "X", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 2, xd, x, TW_GZIP);
    tw_dataset(f, "y", H5T_STD_U16LE, H5T_NATIVE_UINT16, 1, yd, y, TW_CHUNKED);
    H5Fclose(f);
    free(x);
    free(y);
}

typedef struct {
    int64_t nb;
    int64_t *ids; /* concatenation of the batches' ids */
    float *x;
    int32_t *lab;
    int64_t *count; /* per batch */
    int64_t *gcount;
    int64_t total;
} epoch_rec_;

static void record_(sp_loader *ld, const sp_dataset_info *in, int64_t epoch, int64_t first,
                    epoch_rec_ *r) {
    memset(r, 0, sizeof *r);
    const int64_t n = in->n, F = (int64_t)in->sample_size;
    r->ids = malloc((size_t)n * 8);
    r->x = malloc((size_t)(n * F) * 4);
    r->lab = malloc((size_t)n * 4);
    r->count = malloc(1000 * 8);
    r->gcount = malloc(1000 * 8);
    CHECK(sp_loader_start_epoch(ld, epoch, first) == SP_OK, "start");
    sp_batch b;
    bool done = false;
    int64_t expect = first;
    while (sp_loader_next(ld, &b, &done) == SP_OK && !done) {
        CHECK(b.index == expect++ && b.epoch == epoch, "batch order");
        memcpy(r->ids + r->total, b.ids, (size_t)b.count * 8);
        memcpy(r->x + r->total * F, b.x, (size_t)(b.count * F) * 4);
        memcpy(r->lab + r->total, b.labels, (size_t)b.count * 4);
        r->count[r->nb] = b.count;
        r->gcount[r->nb++] = b.global_count;
        r->total += b.count;
    }
    CHECK(done, "ends with done: %s", sp_last_error());
}

static void free_rec_(epoch_rec_ *r) {
    free(r->ids);
    free(r->x);
    free(r->lab);
    free(r->count);
    free(r->gcount);
}

static void test_ranks_(const char *p) {
    sp_dataset *ds;
    CHECK(sp_dataset_open(&ds, p, NULL, NULL) == SP_OK, "%s", sp_last_error());
    const sp_dataset_info *in = sp_dataset_get_info(ds);
    const int64_t n = in->n, F = (int64_t)in->sample_size, B = 10;
    /* The single-rank reference, epoch 2, shuffled. */
    sp_loader_config c1 = {.batch = B,
                           .rank = 0,
                           .nranks = 1,
                           .seed = 7,
                           .shuffle = true,
                           .cache_mb = 0,
                           .prefetch = false};
    sp_loader *ld;
    CHECK(sp_loader_create(&ld, ds, &c1) == SP_OK, "%s", sp_last_error());
    epoch_rec_ ref;
    record_(ld, in, 2, 0, &ref);
    sp_loader_free(ld);
    CHECK(ref.nb == 11 && ref.total == n && ref.count[10] == 3, "P=1: %lld batches",
          (long long)ref.nb);
    int bad = 0;
    for (int64_t i = 0; i < n; ++i) {
        for (int64_t f = 0; f < F; ++f)
            if (ref.x[i * F + f] != (float)((double)(ref.ids[i] * F + f) * 0.5)) ++bad;
        if (ref.lab[i] != ref.ids[i] % 4) ++bad;
    }
    CHECK(bad == 0, "rows and labels match their ids (%d bad)", bad);

    for (int P = 2; P <= 4; ++P) {
        epoch_rec_ rec[4];
        for (int r = 0; r < P; ++r) {
            sp_loader_config c = c1;
            c.rank = r;
            c.nranks = P;
            c.prefetch = r % 2 == 0;
            c.cache_mb = r == 1 ? 64 : 0;
            CHECK(sp_loader_create(&ld, ds, &c) == SP_OK, "%s", sp_last_error());
            record_(ld, in, 2, 0, &rec[r]);
            sp_loader_free(ld);
        }
        /* Batch by batch: the ranks' slices, concatenated in rank order, are the P=1 batch. */
        int64_t off[4] = {0}, refoff = 0;
        int mism = 0, zero = 0;
        for (int64_t b = 0; b < ref.nb; ++b) {
            int64_t got = 0;
            for (int r = 0; r < P; ++r) {
                CHECK(rec[r].nb == ref.nb && rec[r].gcount[b] == ref.gcount[b], "global count");
                int64_t c = rec[r].count[b];
                zero += c == 0;
                if (memcmp(rec[r].ids + off[r], ref.ids + refoff + got, (size_t)c * 8) ||
                    memcmp(rec[r].x + off[r] * F, ref.x + (refoff + got) * F,
                           (size_t)(c * F) * 4) ||
                    memcmp(rec[r].lab + off[r], ref.lab + refoff + got, (size_t)c * 4))
                    ++mism;
                off[r] += c;
                got += c;
            }
            CHECK(got == ref.count[b], "P=%d batch %lld: %lld of %lld samples", P, (long long)b,
                  (long long)got, (long long)ref.count[b]);
            refoff += ref.count[b];
        }
        CHECK(mism == 0, "P=%d: %d slices differ from the single-rank batch", P, mism);
        if (P == 4) CHECK(zero == 1, "P=4: one rank has 0 samples in the last batch (%d)", zero);
        for (int r = 0; r < P; ++r) free_rec_(&rec[r]);
    }
    free_rec_(&ref);
    sp_dataset_close(ds);
}

/* Prefetch vs synchronous, cache statistics, resume. */
static void test_prefetch_cache_(const char *p) {
    sp_dataset *ds;
    CHECK(sp_dataset_open(&ds, p, NULL, NULL) == SP_OK, "%s", sp_last_error());
    const sp_dataset_info *in = sp_dataset_get_info(ds);
    sp_loader_config c = {.batch = 16,
                          .rank = 1,
                          .nranks = 2,
                          .seed = 3,
                          .shuffle = true,
                          .cache_mb = 0,
                          .prefetch = false};
    sp_loader *ls, *lp;
    CHECK(sp_loader_create(&ls, ds, &c) == SP_OK, "sync");
    for (int64_t e = 0; e < 3; ++e) {
        epoch_rec_ a, b;
        record_(ls, in, e, 0, &a);
        sp_loader_free(ls);
        c.prefetch = true;
        CHECK(sp_loader_create(&lp, ds, &c) == SP_OK, "prefetch");
        record_(lp, in, e, 0, &b);
        CHECK(a.nb == b.nb && a.total == b.total, "same batches");
        CHECK(memcmp(a.ids, b.ids, (size_t)a.total * 8) == 0 &&
                  memcmp(a.x, b.x, (size_t)(a.total * (int64_t)in->sample_size) * 4) == 0 &&
                  memcmp(a.lab, b.lab, (size_t)a.total * 4) == 0 &&
                  memcmp(a.count, b.count, (size_t)a.nb * 8) == 0,
              "epoch %lld: prefetch equals synchronous", (long long)e);
        /* Resume mid-epoch at batch 4: the rest of the same epoch. */
        epoch_rec_ r;
        record_(lp, in, e, 4, &r);
        int64_t skip = 0;
        for (int64_t k = 0; k < 4; ++k) skip += a.count[k];
        CHECK(r.nb == a.nb - 4 && r.total == a.total - skip &&
                  memcmp(r.ids, a.ids + skip, (size_t)r.total * 8) == 0,
              "resume at batch 4");
        /* Abandon an epoch half way (a prefetch in flight) and restart. */
        sp_batch bb;
        bool done;
        CHECK(sp_loader_start_epoch(lp, e, 0) == SP_OK, "restart");
        CHECK(sp_loader_next(lp, &bb, &done) == SP_OK && !done, "first");
        sp_loader_free(lp);
        c.prefetch = false;
        CHECK(sp_loader_create(&ls, ds, &c) == SP_OK, "sync");
        free_rec_(&a);
        free_rec_(&b);
        free_rec_(&r);
    }
    sp_loader_free(ls);

    /* Cache: with shuffling the working set is all N rows; every row is read at most once. */
    const uint64_t rowb = in->x_row_bytes;
    for (int shuffle = 0; shuffle < 2; ++shuffle)
        for (int pf = 0; pf < 2; ++pf) {
            sp_loader_config cc = {.batch = 16,
                                   .rank = 0,
                                   .nranks = shuffle ? 1 : 3,
                                   .seed = 5,
                                   .shuffle = shuffle,
                                   .cache_mb = 16,
                                   .prefetch = pf};
            sp_loader *lc;
            CHECK(sp_loader_create(&lc, ds, &cc) == SP_OK, "cache");
            CHECK(sp_loader_cache_enabled(lc), "cache on");
            uint64_t per_epoch = sp_loader_bytes_per_epoch(lc);
            epoch_rec_ e0, e1;
            record_(lc, in, 0, 0, &e0);
            sp_loader_stats s0, s1;
            sp_loader_get_stats(lc, &s0);
            CHECK(s0.rows_read == (uint64_t)e0.total && s0.bytes_read == per_epoch &&
                      s0.cache_hits == 0,
                  "epoch 0 reads its rows once: %llu rows, %llu bytes (%llu expected)",
                  (unsigned long long)s0.rows_read, (unsigned long long)s0.bytes_read,
                  (unsigned long long)per_epoch);
            CHECK(per_epoch == (uint64_t)e0.total * rowb, "bytes per epoch");
            record_(lc, in, 1, 0, &e1);
            sp_loader_get_stats(lc, &s1);
            CHECK(s1.rows_read == s0.rows_read && s1.cache_hits == (uint64_t)e1.total,
                  "shuffle %d: epoch 1 reads %llu new rows", shuffle,
                  (unsigned long long)(s1.rows_read - s0.rows_read));
            int bad = 0;
            for (int64_t i = 0; i < e1.total; ++i)
                for (size_t f = 0; f < in->sample_size; ++f)
                    if (e1.x[i * (int64_t)in->sample_size + (int64_t)f] !=
                        (float)((double)(e1.ids[i] * (int64_t)in->sample_size + (int64_t)f) * 0.5))
                        ++bad;
            CHECK(bad == 0, "cached rows are right (%d bad)", bad);
            free_rec_(&e0);
            free_rec_(&e1);
            sp_loader_free(lc);
        }
    /* Without a cache, or with one too small, every epoch reads its rows again. */
    sp_loader_config cn = {.batch = 16,
                           .rank = 0,
                           .nranks = 1,
                           .seed = 5,
                           .shuffle = true,
                           .cache_mb = 0,
                           .prefetch = true};
    sp_loader *ln;
    CHECK(sp_loader_create(&ln, ds, &cn) == SP_OK, "no cache");
    CHECK(!sp_loader_cache_enabled(ln), "cache off");
    epoch_rec_ r0, r1;
    record_(ln, in, 0, 0, &r0);
    record_(ln, in, 1, 0, &r1);
    sp_loader_stats sn;
    sp_loader_get_stats(ln, &sn);
    CHECK(sn.rows_read == (uint64_t)(2 * in->n) && sn.cache_hits == 0, "rows read %llu",
          (unsigned long long)sn.rows_read);
    free_rec_(&r0);
    free_rec_(&r1);
    sp_loader_free(ln);
    sp_dataset_close(ds);
}

/* A NaN row found by the reader thread comes back from sp_loader_next with its row index. */
static void test_errors_(const char *dir) {
    char p[600];
    snprintf(p, sizeof p, "%s/nan.h5", dir);
    write_file_(p, 50, 3, 37);
    sp_dataset *ds;
    CHECK(sp_dataset_open(&ds, p, NULL, NULL) == SP_OK, "%s", sp_last_error());
    for (int pf = 0; pf < 2; ++pf) {
        sp_loader_config c = {.batch = 8,
                              .rank = 0,
                              .nranks = 1,
                              .seed = 1,
                              .shuffle = false,
                              .cache_mb = 0,
                              .prefetch = pf};
        sp_loader *ld;
        CHECK(sp_loader_create(&ld, ds, &c) == SP_OK, "create");
        CHECK(sp_loader_start_epoch(ld, 0, 0) == SP_OK, "start");
        sp_batch b;
        bool done = false;
        sp_status st = SP_OK;
        int nb = 0;
        while ((st = sp_loader_next(ld, &b, &done)) == SP_OK && !done) ++nb;
        CHECK(st == SP_ERR_NUMERIC && nb == 4, "prefetch %d: error at batch 4 (got %d, %s)", pf, nb,
              sp_last_error());
        CHECK(strstr(sp_last_error(), "row 37") && strstr(sp_last_error(), p), "%s",
              sp_last_error());
        sp_loader_free(ld);
    }
    sp_loader_config bad = {.batch = 0, .rank = 0, .nranks = 1};
    sp_loader *ld = NULL;
    CHECK(sp_loader_create(&ld, ds, &bad) == SP_ERR_ARG && !ld, "batch 0");
    bad.batch = 4;
    bad.rank = 2;
    bad.nranks = 2;
    CHECK(sp_loader_create(&ld, ds, &bad) == SP_ERR_ARG && !ld, "rank out of range");
    sp_dataset_close(ds);
}

int main(void) {
    char dir[512], p[600];
    snprintf(dir, sizeof dir, "%s", sp_test_tmpdir("data_loader"));
    test_order_();
    snprintf(p, sizeof p, "%s/d.h5", dir);
    write_file_(p, 103, 3, -1);
    test_ranks_(p);
    test_prefetch_cache_(p);
    test_errors_(dir);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", dir);
    return sp_test_summary("data_loader");
}
