/* The loader's window staging under --shuffle shards (loader.c): for several shard layouts,
 * windows, batch sizes, 1-3 ranks, micro-batches, with and without prefetch and from a batch
 * mid-epoch, every batch equals the per-batch reads' batch bitwise; each needed row is read
 * once per epoch, each stage in one ascending pass (one read, or ascending blocks of wide rows);
 * and the memory refusal is one line. */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data/data.h"
#include "h5_writer.h"
#include "testutil.h"
#include "util/mem.h"

static char dir[512];
static char *path_(const char *name) {
    static char buf[16][700];
    static int k = 0;
    k = (k + 1) % 16;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
    return buf[k];
}

enum { F = 3, WIDE = 4096 };

/* Row r of the logical set: X (f) = r*f + e, gzip chunks of 3 rows; y = r % 5. */
static int write_rows_(const char *p, int64_t r0, int64_t n, int f) {
    float *x = malloc((size_t)n * (size_t)f * sizeof(float));
    int32_t *y = malloc((size_t)n * sizeof(int32_t));
    for (int64_t i = 0; i < n; ++i) {
        for (int e = 0; e < f; ++e) x[i * f + e] = (float)((r0 + i) * f + e);
        y[i] = (int32_t)((r0 + i) % 5);
    }
    hid_t h = tw_create(p);
    hsize_t xd[2] = {(hsize_t)n, (hsize_t)f}, yd[1] = {(hsize_t)n};
    int rc = tw_dataset(h, "X", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 2, xd, x, TW_GZIP);
    rc |= tw_dataset(h, "y", H5T_STD_I32LE, H5T_NATIVE_INT32, 1, yd, y, TW_CHUNKED);
    H5Fclose(h);
    free(x);
    free(y);
    return rc;
}

/* Shard files sub/f0.h5 ... holding consecutive rows of the given sizes. */
static void write_layout_(const char *sub, const int64_t *rows, int nf, int f_) {
    mkdir(path_(sub), 0755);
    int64_t r0 = 0;
    for (int f = 0; f < nf; ++f) {
        char name[64];
        snprintf(name, sizeof name, "%s/f%d.h5", sub, f);
        CHECK(write_rows_(path_(name), r0, rows[f], f_) == 0, "write %s", name);
        r0 += rows[f];
    }
}

typedef struct {
    int64_t batch, window, micro;
    bool prefetch;
    bool mid; /* start epoch 0 at batch nbatches / 2 */
} case_;

static int same_batch_(const sp_batch *a, const sp_batch *b, int f) {
    if (a->epoch != b->epoch || a->index != b->index || a->count != b->count ||
        a->global_count != b->global_count || a->first_pos != b->first_pos)
        return 0;
    const size_t c = (size_t)a->count;
    if (memcmp(a->ids, b->ids, c * sizeof(int64_t)) ||
        memcmp(a->x, b->x, c * (size_t)f * sizeof(float)))
        return 0;
    return !a->labels || !memcmp(a->labels, b->labels, c * sizeof(int32_t));
}

/* One configuration on rank r of P: two epochs of the staged loader against the per-batch one.
 * Returns the number of mismatches (0: all good); *multi += stages read in several blocks. */
static int run_case_(sp_dataset *ds_ref, sp_dataset *ds_st, const case_ *k, int r, int P,
                     const char *what, int64_t *multi) {
    const int F_ = (int)sp_dataset_get_info(ds_st)->sample_size;
    sp_loader_config c = {.batch = k->batch,
                          .rank = r,
                          .nranks = P,
                          .seed = 11,
                          .shuffle = true,
                          .cache_mb = 0,
                          .prefetch = k->prefetch,
                          .micro_batch = k->micro,
                          .shuffle_window = k->window};
    sp_loader *ref = NULL, *st = NULL;
    int bad = 0;
    if (sp_loader_create(&ref, ds_ref, &c) != SP_OK || sp_loader_create(&st, ds_st, &c) != SP_OK ||
        sp_loader_set_staging(ref, false) != SP_OK) {
        fprintf(stderr, "%s: %s\n", what, sp_last_error());
        sp_loader_free(ref);
        sp_loader_free(st);
        return 1;
    }
    bad += !sp_loader_staging(st) || sp_loader_staging(ref);
    const int64_t n = sp_dataset_get_info(ds_st)->n, nb = sp_batches_per_epoch(n, k->batch);
    for (int64_t e = 0; e < 2; ++e) {
        const int64_t fb = e == 0 && k->mid ? nb / 2 : 0;
        sp_loader_stats s0, s1;
        sp_loader_stage_stats g0, g1;
        sp_loader_get_stats(st, &s0);
        sp_loader_get_stage_stats(st, &g0);
        if (sp_loader_start_epoch(ref, e, fb) != SP_OK || sp_loader_start_epoch(st, e, fb) != SP_OK)
            return bad + 1;
        int64_t rows = 0, batches = 0;
        for (;;) {
            sp_batch a, b;
            bool da = false, db = false;
            if (sp_loader_next(ref, &a, &da) != SP_OK || sp_loader_next(st, &b, &db) != SP_OK) {
                fprintf(stderr, "%s: %s\n", what, sp_last_error());
                ++bad;
                break;
            }
            if (da || db) {
                bad += da != db;
                break;
            }
            bad += !same_batch_(&a, &b, F_);
            /* and against the file's rows themselves */
            for (int64_t i = 0; i < b.count; ++i)
                for (int f = 0; f < F_; ++f) bad += b.x[i * F_ + f] != (float)(b.ids[i] * F_ + f);
            rows += b.count;
            ++batches;
        }
        sp_loader_get_stats(st, &s1);
        sp_loader_get_stage_stats(st, &g1);
        const uint64_t read = s1.rows_read - s0.rows_read, stages = g1.stages_read - g0.stages_read;
        /* every needed row once; each stage one ascending pass: one read of narrow rows (a
         * block holds 64 KiB of floats), ascending blocks of wide ones */
        const uint64_t blocks = g1.blocks_read - g0.blocks_read;
        *multi += blocks > stages;
        if (batches != nb - fb || read != (uint64_t)rows || g1.descents != 0 ||
            (F_ == F && blocks != stages) || blocks < stages || (rows > 0 && stages == 0) ||
            s1.bytes_read - s0.bytes_read != read * (uint64_t)F_ * sizeof(float)) {
            fprintf(stderr,
                    "%s epoch %lld: batches %lld of %lld, rows %lld read %llu, stages %llu "
                    "blocks %llu descents %llu\n",
                    what, (long long)e, (long long)batches, (long long)(nb - fb), (long long)rows,
                    (unsigned long long)read, (unsigned long long)stages,
                    (unsigned long long)(g1.blocks_read - g0.blocks_read),
                    (unsigned long long)g1.descents);
            ++bad;
        }
    }
    sp_loader_free(ref);
    sp_loader_free(st);
    return bad;
}

static void test_layouts_(void) {
    /* uneven files; files smaller than a batch (batches span 2+ windows); one file */
    /* and rows of 16 KiB, 4 to a 64 KiB read block: a stage in several ascending blocks */
    static const int64_t la[] = {7, 1, 13, 5, 9, 3}, lb[] = {2, 3, 2, 4, 1, 3, 2, 5}, lc[] = {23},
                         le[] = {9, 14, 6};
    const struct {
        const char *sub;
        const int64_t *rows;
        int nf;
    } lay[] = {{"a", la, 6}, {"b", lb, 8}, {"c", lc, 1}, {"e", le, 3}};
    write_layout_("a", la, 6, F);
    write_layout_("b", lb, 8, F);
    write_layout_("c", lc, 1, F);
    write_layout_("e", le, 3, WIDE);
    const int64_t batches[] = {4, 10}, windows[] = {1, 2, 4}, micros[] = {0, 3};
    int cases = 0, bad_cases = 0;
    int64_t multi = 0;
    for (int l = 0; l < 4; ++l) {
        sp_dataset *ds_ref = NULL, *ds_st = NULL;
        char items[700];
        snprintf(items, sizeof items, "%s", path_(lay[l].sub));
        CHECK(sp_dataset_open_items(&ds_ref, items, NULL, NULL, NULL, 0) == SP_OK &&
                  sp_dataset_open_items(&ds_st, items, NULL, NULL, NULL, 0) == SP_OK,
              "open %s: %s", items, sp_last_error());
        if (!ds_ref || !ds_st) {
            sp_dataset_close(ds_ref);
            sp_dataset_close(ds_st);
            continue;
        }
        for (int bi = 0; bi < 2; ++bi)
            for (int wi = 0; wi < 3; ++wi)
                for (int mi = 0; mi < 2; ++mi)
                    for (int v = 0; v < 4; ++v)
                        for (int P = 1; P <= 3; ++P)
                            for (int r = 0; r < P; ++r) {
                                const case_ k = {batches[bi], windows[wi], micros[mi], v & 1,
                                                 v >= 2};
                                char what[160];
                                snprintf(what, sizeof what,
                                         "layout %s B %lld W %lld micro %lld prefetch %d mid %d "
                                         "rank %d of %d",
                                         lay[l].sub, (long long)k.batch, (long long)k.window,
                                         (long long)k.micro, k.prefetch, k.mid, r, P);
                                const int bad = run_case_(ds_ref, ds_st, &k, r, P, what, &multi);
                                if (bad) fprintf(stderr, "%s: %d mismatches\n", what, bad);
                                bad_cases += bad != 0;
                                ++cases;
                            }
        sp_dataset_close(ds_ref);
        sp_dataset_close(ds_st);
    }
    CHECK(bad_cases == 0, "%d of %d configurations differ from the per-batch reads", bad_cases,
          cases);
    CHECK(multi > 0, "no stage was read in several blocks");
}

/* Staging only without the row cache; its buffers are in sp_loader_memory_bytes; too little
 * memory for them is one line naming the set and the two ways out. */
static void test_memory_(void) {
    static const int64_t ld_rows[] = {300, 300, 200};
    write_layout_("d", ld_rows, 3, F);
    sp_dataset *ds = NULL;
    CHECK(sp_dataset_open_items(&ds, path_("d"), NULL, NULL, NULL, 0) == SP_OK, "open: %s",
          sp_last_error());
    if (!ds) return;
    sp_loader_config c = {
        .batch = 8, .nranks = 1, .seed = 1, .shuffle = true, .cache_mb = 0, .shuffle_window = 2};
    sp_loader *ld = NULL;
    size_t cache = 0, staged = 0, plain = 0;
    CHECK(sp_loader_create(&ld, ds, &c) == SP_OK && sp_loader_staging(ld), "staged: %s",
          sp_last_error());
    if (ld) sp_loader_memory_bytes(ld, &cache, &staged);
    sp_loader_free(ld);
    ld = NULL;
    c.cache_mb = 64; /* the working set fits the cache: today's per-batch path */
    CHECK(sp_loader_create(&ld, ds, &c) == SP_OK && !sp_loader_staging(ld) &&
              sp_loader_cache_enabled(ld),
          "cached: %s", sp_last_error());
    if (ld) sp_loader_memory_bytes(ld, &cache, &plain);
    sp_loader_free(ld);
    ld = NULL;
    /* two slots of the largest 2 files' 600 rows + a batch, each row 3 floats and an id */
    CHECK(staged >= plain + 2 * 600 * (F * sizeof(float) + sizeof(int64_t)),
          "staged buffers %zu, per-batch %zu", staged, plain);
    c.cache_mb = 0;
    sp_mem_set_limit(8192); /* the order (6 KiB) and batches fit, the windows do not */
    const sp_status st = sp_loader_create(&ld, ds, &c);
    const char *msg = sp_last_error();
    CHECK(st == SP_ERR_NOMEM && !ld && strstr(msg, path_("d")) && strstr(msg, "window buffers") &&
              strstr(msg, "lower --shuffle-window") && strstr(msg, "--max-memory-mb") &&
              !strchr(msg, '\n'),
          "refusal: %s", msg);
    sp_mem_set_limit(0);
    sp_loader_free(ld);
    sp_dataset_close(ds);
}

/* A file removed mid-epoch: the staged read that needs it (read ahead or inline) fails with the
 * dataset's one line naming it, sp_loader_next returns that error, and the epoch ends. */
static void test_removed_(void) {
    static const int64_t lf[] = {5, 6, 5, 7, 5, 6, 5, 7, 5, 6};
    for (int pre = 0; pre < 2; ++pre) {
        write_layout_("f", lf, 10, F);
        setenv("SHARDPROP_MAX_OPEN_FILES", "2", 1); /* files are closed and reopened */
        sp_dataset *ds = NULL;
        CHECK(sp_dataset_open_items(&ds, path_("f"), NULL, NULL, NULL, 0) == SP_OK, "open: %s",
              sp_last_error());
        unsetenv("SHARDPROP_MAX_OPEN_FILES");
        if (!ds) return;
        sp_loader_config c = {.batch = 4,
                              .nranks = 1,
                              .seed = 3,
                              .shuffle = true,
                              .prefetch = pre,
                              .shuffle_window = 1};
        sp_loader *ld = NULL;
        CHECK(sp_loader_create(&ld, ds, &c) == SP_OK && sp_loader_start_epoch(ld, 0, 0) == SP_OK,
              "create: %s", sp_last_error());
        sp_batch b;
        bool done = false;
        CHECK(ld && sp_loader_next(ld, &b, &done) == SP_OK && !done, "first batch: %s",
              sp_last_error());
        /* the reader idle first (its read-ahead finished), then the files gone, then the epoch
         * restarted at batch 1: the stat before a reopen sees the removal (an unlink racing
         * H5Fopen on the reader thread would leave HDF5's per-thread error stack behind) */
        CHECK(sp_loader_set_staging(ld, true) == SP_OK, "%s", sp_last_error());
        for (int f = 0; f < 10; ++f) {
            char name[64];
            snprintf(name, sizeof name, "f/f%d.h5", f);
            unlink(path_(name));
        }
        CHECK(sp_loader_start_epoch(ld, 0, 1) == SP_OK, "%s", sp_last_error());
        sp_status st = SP_OK;
        int calls = 0;
        while (ld && calls++ < 100 && (st = sp_loader_next(ld, &b, &done)) == SP_OK && !done) {
        }
        const char *msg = sp_last_error();
        CHECK(st == SP_ERR_DATA && strstr(msg, ".h5") && strstr(msg, "removed") &&
                  !strchr(msg, '\n'),
              "prefetch %d: st %d after %d calls: %s", pre, (int)st, calls, msg);
        done = false;
        CHECK(ld && sp_loader_next(ld, &b, &done) == SP_OK && done, "the epoch ends");
        sp_loader_free(ld);
        sp_dataset_close(ds);
    }
}

int main(void) {
    snprintf(dir, sizeof dir, "%s", sp_test_tmpdir("data_stage"));
    test_layouts_();
    test_memory_();
    test_removed_();
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", dir);
    return sp_test_summary("data_stage");
}
