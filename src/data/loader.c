/*
 * The batch loader: this rank's slice of each global batch, read from the file (only the rows it
 * needs), optionally through a row cache, optionally prefetched on a background thread.
 *
 * Double buffering with prefetch: batch b is handed out from buf[k] while the reader thread fills
 * buf[k^1] with batch b+1; the next call waits for buf[k^1] and then queues b+2 into buf[k], whose
 * pointers the caller gave up by calling again. At most one job is in flight.
 *
 * Augmentation (cfg.augment) changes the batch buffer after its rows arrived, so it runs where
 * the reads run (the reader thread with prefetch) and the row cache keeps the rows as read.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "data/augment.h"
#include "data/data.h"
#include "io/h5.h"
#include "util/arith.h"
#include "util/mem.h"
#include "util/status.h"

typedef struct {
    int64_t epoch, index, count, global_count, first_pos;
    int64_t *ids;    /* (cmax) */
    float *x;        /* (cmax, sample_size) */
    int32_t *labels; /* (cmax) or NULL; (cmax, T) for token data */
    float *targets;  /* (cmax, T) or NULL */
    bool ready;
    sp_status st;
    char err[1024];
} lbuf_;

struct sp_loader {
    sp_dataset *ds;
    const sp_dataset_info *in;
    sp_loader_config cfg;
    int64_t n, nbatches, cmax, rank_rows;
    int64_t *perm; /* (n) order of the current epoch */
    /* --shuffle shards (cfg.shuffle_window > 0): the rows of each file, and the order's scratch */
    int nfiles;
    int64_t *file_rows, *order_scratch; /* (nfiles), (2 nfiles) */
    int64_t epoch, next_b;
    bool started;
    lbuf_ buf[2];
    int cur; /* buffer that holds / will hold batch next_b */
    /* row cache */
    bool cache_on;
    int64_t cache_rows, cfull;
    float *cache;                  /* (cache_rows, sample_size) */
    uint8_t *present;              /* (cache_rows) */
    size_t cache_bytes, buf_bytes; /* what sp_loader_memory_bytes reports */
    int64_t *miss_ids, *miss_pos;  /* (cmax) */
    float *miss_x;                 /* (cmax, sample_size) */
    sp_augment aug;                /* n = 0: none */
    /* reader thread */
    bool thread_on, quit, busy;
    int job_buf;
    int64_t job_b;
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    sp_loader_stats stats;
};

static double now_(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Cache slot of sample `id` (only ids of this rank's slices are ever asked for). */
static int64_t slot_(const sp_loader *ld, int64_t id) {
    if (ld->cfg.shuffle) return id;
    int64_t b = id / ld->cfg.batch, pos, cnt, g;
    sp_rank_slice_micro(ld->n, ld->cfg.batch, ld->cfg.micro_batch, b, ld->cfg.rank, ld->cfg.nranks,
                        &pos, &cnt, &g);
    return b * ld->cfull + (id - pos);
}

/* Fill buf[k] with global batch b of the current epoch. Runs on the reader thread (prefetch) or
 * the caller's thread (synchronous). */
static void fill_(sp_loader *ld, int k, int64_t b) {
    lbuf_ *B = &ld->buf[k];
    const double t0 = now_();
    const size_t ss = ld->in->sample_size;
    int64_t pos, count, g;
    sp_rank_slice_micro(ld->n, ld->cfg.batch, ld->cfg.micro_batch, b, ld->cfg.rank, ld->cfg.nranks,
                        &pos, &count, &g);
    B->epoch = ld->epoch;
    B->index = b;
    B->count = count;
    B->global_count = g;
    B->first_pos = pos;
    B->st = SP_OK;
    memcpy(B->ids, ld->perm + pos, (size_t)count * sizeof(int64_t));
    /* token data: the windows and their labels come from one read of the token runs */
    const bool tokens = ld->in->seq_len > 0;
    sp_status st = tokens ? sp_dataset_read(ld->ds, B->ids, count, B->x, B->labels, NULL)
                          : sp_dataset_read(ld->ds, B->ids, count, NULL, B->labels, B->targets);
    uint64_t hits = 0, misses = tokens ? (uint64_t)count : 0;
    if (st == SP_OK && !tokens) {
        int64_t m = 0;
        for (int64_t i = 0; i < count; ++i) {
            int64_t id = B->ids[i];
            if (ld->cache_on && ld->present[slot_(ld, id)]) {
                memcpy(B->x + (size_t)i * ss, ld->cache + (size_t)slot_(ld, id) * ss,
                       ss * sizeof(float));
                ++hits;
            } else {
                ld->miss_ids[m] = id;
                ld->miss_pos[m++] = i;
            }
        }
        misses = (uint64_t)m;
        if (m == count && !ld->cache_on) {
            st = sp_dataset_read(ld->ds, B->ids, count, B->x, NULL, NULL);
        } else if (m > 0) {
            st = sp_dataset_read(ld->ds, ld->miss_ids, m, ld->miss_x, NULL, NULL);
            for (int64_t j = 0; j < m && st == SP_OK; ++j) {
                const float *src = ld->miss_x + (size_t)j * ss;
                memcpy(B->x + (size_t)ld->miss_pos[j] * ss, src, ss * sizeof(float));
                if (ld->cache_on) {
                    int64_t s = slot_(ld, ld->miss_ids[j]);
                    memcpy(ld->cache + (size_t)s * ss, src, ss * sizeof(float));
                    ld->present[s] = 1;
                }
            }
        }
    }
    if (st == SP_OK && ld->aug.n > 0) {
        const int64_t *sh = ld->in->sample_shape; /* (C, H, W), checked at creation */
        sp_augment_apply(&ld->aug, B->x, B->ids, count, (int)sh[0], (int)sh[1], (int)sh[2],
                         ld->cfg.seed, ld->epoch);
    }
    if (st != SP_OK) {
        B->st = st;
        snprintf(B->err, sizeof B->err, "%s", sp_last_error());
    }
    pthread_mutex_lock(&ld->mu);
    ld->stats.cache_hits += hits;
    ld->stats.rows_read += misses;
    ld->stats.bytes_read += misses * ld->in->x_row_bytes;
    ld->stats.read_s += now_() - t0;
    pthread_mutex_unlock(&ld->mu);
}

static void *reader_main_(void *arg) {
    sp_loader *ld = arg;
    pthread_mutex_lock(&ld->mu);
    for (;;) {
        while (ld->job_buf < 0 && !ld->quit) pthread_cond_wait(&ld->cv, &ld->mu);
        if (ld->quit) break;
        int k = ld->job_buf;
        int64_t b = ld->job_b;
        ld->job_buf = -1;
        ld->busy = true;
        pthread_mutex_unlock(&ld->mu);
        fill_(ld, k, b);
        pthread_mutex_lock(&ld->mu);
        ld->buf[k].ready = true;
        ld->busy = false;
        pthread_cond_broadcast(&ld->cv);
    }
    pthread_mutex_unlock(&ld->mu);
    return NULL;
}

static void submit_(sp_loader *ld, int k, int64_t b) {
    pthread_mutex_lock(&ld->mu);
    ld->buf[k].ready = false;
    ld->job_buf = k;
    ld->job_b = b;
    pthread_cond_broadcast(&ld->cv);
    pthread_mutex_unlock(&ld->mu);
}

static void wait_idle_(sp_loader *ld) {
    if (!ld->thread_on) return;
    pthread_mutex_lock(&ld->mu);
    while (ld->job_buf >= 0 || ld->busy) pthread_cond_wait(&ld->cv, &ld->mu);
    pthread_mutex_unlock(&ld->mu);
}

sp_status sp_loader_create(sp_loader **out, sp_dataset *ds, const sp_loader_config *cfg) {
    *out = NULL;
    const sp_dataset_info *in = sp_dataset_get_info(ds);
    if (cfg->batch < 1)
        return SP_FAIL(SP_ERR_ARG, "data loader: batch size must be >= 1 (got %lld)",
                       (long long)cfg->batch);
    if (cfg->nranks < 1 || cfg->rank < 0 || cfg->rank >= cfg->nranks)
        return SP_FAIL(SP_ERR_ARG, "data loader: rank %d is not in [0, %d)", cfg->rank,
                       cfg->nranks);
    sp_augment aug;
    SP_CHECK(sp_augment_parse(&aug, cfg->augment));
    SP_CHECK(sp_augment_check_shape(&aug, in));
    sp_loader *ld = calloc(1, sizeof *ld);
    if (!ld) return SP_FAIL(SP_ERR_NOMEM, "data loader: out of memory");
    ld->ds = ds;
    ld->in = in;
    ld->cfg = *cfg;
    ld->cfg.augment = NULL; /* the caller's string may go; ld->aug holds the parsed list */
    ld->aug = aug;
    ld->n = in->n;
    ld->nbatches = sp_batches_per_epoch(in->n, cfg->batch);
    ld->cmax = sp_rank_slice_max(cfg->batch, cfg->micro_batch, cfg->nranks);
    if (ld->cmax > ld->n) ld->cmax = ld->n;
    ld->job_buf = -1;
    pthread_mutex_init(&ld->mu, NULL);
    pthread_cond_init(&ld->cv, NULL);
    for (int64_t b = 0; b < ld->nbatches; ++b) {
        int64_t pos, cnt, g;
        sp_rank_slice_micro(ld->n, cfg->batch, cfg->micro_batch, b, cfg->rank, cfg->nranks, &pos,
                            &cnt, &g);
        if (b == 0) ld->cfull = cnt;
        ld->rank_rows += cnt;
    }
    const size_t ss = in->sample_size, c = (size_t)ld->cmax;
    /* labels per sample: 1, or T for token data (the next token at every position) */
    const size_t lw = in->seq_len > 0 ? (size_t)in->seq_len : 1;
    size_t xbytes, pbytes;
    bool ok = sp_size_mul(c, ss * sizeof(float), &xbytes);
    /* the order (N) and three batch buffers, sized from the file: checked against the limit */
    char who[600];
    snprintf(who, sizeof who, "%s: data loader", in->path);
    sp_status st = SP_OK;
    if (!ok || !sp_size_mul(xbytes, 3, &xbytes))
        st = SP_FAIL(SP_ERR_NOMEM, "%s: batch of %zu samples overflows size_t", who, c);
    if (st == SP_OK) st = sp_mem_check(xbytes, who, "three batch buffers");
    if (st == SP_OK && in->seq_len > 0)
        st = sp_mem_check_n(c * 2, lw * sizeof(int32_t), NULL, who, "two label buffers");
    if (st == SP_OK) st = sp_mem_check_n((size_t)ld->n, sizeof(int64_t), &pbytes, who, "the order");
    if (st != SP_OK) {
        sp_loader_free(ld);
        return st;
    }
    xbytes /= 3;
    /* the order, the miss lists and 3 batches of X, 2 of ids and labels (or targets) */
    ld->buf_bytes = pbytes + 4 * c * sizeof(int64_t) + 3 * xbytes +
                    (in->labeled ? 2 * c * (in->regression ? (size_t)in->targets * 4 : lw * 4) : 0);
    ld->perm = malloc((size_t)ld->n * sizeof(int64_t));
    if (cfg->shuffle && cfg->shuffle_window > 0) {
        ld->nfiles = sp_dataset_nfiles(ds);
        ld->file_rows = malloc((size_t)ld->nfiles * sizeof(int64_t));
        ld->order_scratch = malloc((size_t)ld->nfiles * 2 * sizeof(int64_t));
        ok = ok && ld->file_rows && ld->order_scratch;
        for (int f = 0; ok && f < ld->nfiles; ++f) ld->file_rows[f] = sp_dataset_file_rows(ds, f);
    }
    ld->miss_ids = malloc(c * sizeof(int64_t));
    ld->miss_pos = malloc(c * sizeof(int64_t));
    ld->miss_x = ok ? malloc(xbytes) : NULL;
    ok = ok && ld->perm && ld->miss_ids && ld->miss_pos && ld->miss_x;
    for (int k = 0; k < 2 && ok; ++k) {
        lbuf_ *B = &ld->buf[k];
        B->ids = malloc(c * sizeof(int64_t));
        B->x = malloc(xbytes);
        if (in->labeled && !in->regression)
            B->labels = malloc(c * lw * sizeof(int32_t));
        else if (in->labeled)
            B->targets = malloc(c * (size_t)in->targets * sizeof(float));
        ok = B->ids && B->x && (B->labels || B->targets || !in->labeled);
    }
    if (!ok) {
        sp_loader_free(ld);
        return SP_FAIL(SP_ERR_NOMEM, "%s: data loader: cannot allocate batch buffers", in->path);
    }
    /* The cache holds the rank's working set or nothing; none for token data (data.h). */
    ld->cache_rows = cfg->shuffle ? ld->n : ld->rank_rows;
    size_t need, budget;
    if (cfg->cache_mb > 0 && in->seq_len == 0 &&
        sp_size_mul(cfg->cache_mb, (size_t)1 << 20, &budget) &&
        sp_size_mul((size_t)ld->cache_rows, ss * sizeof(float), &need) && need <= budget) {
        ld->cache = malloc(need ? need : 1); /* pages are committed as rows arrive */
        ld->present = calloc((size_t)ld->cache_rows + 1, 1);
        ld->cache_on = ld->cache && ld->present;
        ld->cache_bytes = ld->cache_on ? need + (size_t)ld->cache_rows + 1 : 0;
        if (!ld->cache_on) {
            free(ld->cache);
            free(ld->present);
            ld->cache = NULL;
            ld->present = NULL;
        }
    }
    if (cfg->prefetch) {
        if (pthread_create(&ld->th, NULL, reader_main_, ld) != 0) {
            sp_loader_free(ld);
            return SP_FAIL(SP_ERR_INTERNAL, "data loader: cannot start the reader thread");
        }
        ld->thread_on = true;
    }
    *out = ld;
    return SP_OK;
}

sp_status sp_loader_start_epoch(sp_loader *ld, int64_t epoch, int64_t first_batch) {
    if (epoch < 0 || first_batch < 0)
        return SP_FAIL(SP_ERR_ARG, "data loader: bad epoch %lld / first batch %lld",
                       (long long)epoch, (long long)first_batch);
    wait_idle_(ld);
    if (ld->file_rows)
        sp_epoch_order_shards(ld->perm, ld->file_rows, ld->nfiles, ld->cfg.shuffle_window,
                              ld->cfg.seed, epoch, ld->order_scratch);
    else
        sp_epoch_order(ld->perm, ld->n, ld->cfg.seed, epoch, ld->cfg.shuffle);
    ld->epoch = epoch;
    ld->next_b = first_batch;
    ld->cur = 0;
    ld->started = true;
    ld->buf[0].ready = ld->buf[1].ready = false;
    if (ld->thread_on && first_batch < ld->nbatches) submit_(ld, 0, first_batch);
    return SP_OK;
}

sp_status sp_loader_next(sp_loader *ld, sp_batch *out, bool *done) {
    *done = false;
    if (!ld->started) return SP_FAIL(SP_ERR_ARG, "data loader: sp_loader_start_epoch not called");
    if (ld->next_b >= ld->nbatches) {
        *done = true;
        return SP_OK;
    }
    const int k = ld->cur;
    lbuf_ *B = &ld->buf[k];
    double t0 = now_();
    if (ld->thread_on) {
        pthread_mutex_lock(&ld->mu);
        while (!B->ready) pthread_cond_wait(&ld->cv, &ld->mu);
        pthread_mutex_unlock(&ld->mu);
    } else {
        fill_(ld, k, ld->next_b);
    }
    double waited = now_() - t0;
    pthread_mutex_lock(&ld->mu);
    ld->stats.io_wait_s += waited;
    pthread_mutex_unlock(&ld->mu);
    if (B->st != SP_OK) {
        ld->next_b = ld->nbatches; /* the epoch ends here */
        return SP_FAIL(B->st, "%s", B->err);
    }
    out->epoch = B->epoch;
    out->index = B->index;
    out->count = B->count;
    out->global_count = B->global_count;
    out->first_pos = B->first_pos;
    out->ids = B->ids;
    out->x = B->x;
    out->labels = B->labels;
    out->targets = B->targets;
    ld->next_b++;
    ld->cur = k ^ 1;
    if (ld->thread_on && ld->next_b < ld->nbatches) submit_(ld, ld->cur, ld->next_b);
    return SP_OK;
}

void sp_loader_get_stats(const sp_loader *ld, sp_loader_stats *st) {
    sp_loader *m = (sp_loader *)ld; /* the mutex guards the counters */
    pthread_mutex_lock(&m->mu);
    *st = ld->stats;
    pthread_mutex_unlock(&m->mu);
}

uint64_t sp_loader_bytes_per_epoch(const sp_loader *ld) {
    return (uint64_t)ld->rank_rows * (uint64_t)ld->in->x_row_bytes;
}

bool sp_loader_cache_enabled(const sp_loader *ld) {
    return ld->cache_on;
}

void sp_loader_memory_bytes(const sp_loader *ld, size_t *cache, size_t *buffers) {
    *cache = ld->cache_bytes;
    *buffers = ld->buf_bytes;
}

void sp_loader_free(sp_loader *ld) {
    if (!ld) return;
    if (ld->thread_on) {
        pthread_mutex_lock(&ld->mu);
        ld->quit = true;
        pthread_cond_broadcast(&ld->cv);
        pthread_mutex_unlock(&ld->mu);
        pthread_join(ld->th, NULL);
    }
    pthread_mutex_destroy(&ld->mu);
    pthread_cond_destroy(&ld->cv);
    for (int k = 0; k < 2; ++k) {
        free(ld->buf[k].ids);
        free(ld->buf[k].x);
        free(ld->buf[k].labels);
        free(ld->buf[k].targets);
    }
    free(ld->perm);
    free(ld->file_rows);
    free(ld->order_scratch);
    free(ld->miss_ids);
    free(ld->miss_pos);
    free(ld->miss_x);
    free(ld->cache);
    free(ld->present);
    free(ld);
}
