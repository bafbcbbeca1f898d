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
 *
 * Window staging (--shuffle shards without the row cache, not token data): the epoch order is
 * fixed at sp_loader_start_epoch, so the rows this rank's slices need from each window of W
 * files are known up front. A "stage" is a window (windows shorter than a global batch are
 * merged with their successors until the stage holds one, so a batch touches at most two
 * stages). Each stage's rows are read in one ascending pass of sorted ids into one of two stage
 * slots, and batches are assembled from the slots by memcpy. Only the thread that runs fill_
 * touches the slots: the reader thread with prefetch (which reads the next stage, block by
 * block, whenever no batch job is waiting), the caller's thread without (inline, when a batch
 * first needs a stage).
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

/* One stage slot: the sorted ids of this rank's rows of stage `s` and their X. */
typedef struct {
    int64_t s;       /* stage held, -1 none */
    int64_t m, done; /* rows needed, rows read so far (done == m: staged) */
    int64_t *ids;    /* (stage_cap) ascending */
    float *x;        /* (stage_cap, sample_size) */
} lslot_;

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
    /* window staging (see the top): stages of the epoch [st_pos[s], st_pos[s + 1]) */
    bool stage_on, ahead_ok;
    int64_t nst, stage_cap, stage_blk, stage_b0, fill_next;
    int64_t *st_pos; /* (nfiles + 1) */
    lslot_ slot[2];
    sp_loader_stage_stats sstats;
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

static sp_status fill_staged_(sp_loader *ld, lbuf_ *B);

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
    if (st == SP_OK && ld->stage_on) {
        st = fill_staged_(ld, B); /* its window reads count their rows and bytes */
    } else if (st == SP_OK && !tokens) {
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
    /* here the batch's rows are complete: augment the copy */
    if (st == SP_OK && ld->aug.n > 0) {
        const int64_t *sh = ld->in->sample_shape; /* (C, H, W), checked at creation */
        sp_augment_apply(&ld->aug, B->x, B->ids, count, (int)sh[0], (int)sh[1], (int)sh[2],
                         ld->cfg.seed, ld->epoch);
    }
    if (st != SP_OK) {
        B->st = st;
        snprintf(B->err, sizeof B->err, "%s", sp_last_error());
    }
    ld->fill_next = b + 1;
    pthread_mutex_lock(&ld->mu);
    ld->stats.cache_hits += hits;
    ld->stats.rows_read += misses;
    ld->stats.bytes_read += misses * ld->in->x_row_bytes;
    ld->stats.read_s += now_() - t0;
    pthread_mutex_unlock(&ld->mu);
}

static int cmp_i64_(const void *a, const void *b) {
    const int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* The stage holding epoch position p. */
static int64_t stage_of_(const sp_loader *ld, int64_t p) {
    return sp_last_le_i64(ld->st_pos, ld->nst, p);
}

/* Stage boundaries of the epoch: scratch[0..nfiles) is the permuted file order that
 * sp_epoch_order_shards left there; windows of W files, merged until a stage holds a batch. */
static void stages_build_(sp_loader *ld) {
    const int64_t *order = ld->order_scratch, w = ld->cfg.shuffle_window;
    int64_t p = 0, f = 0;
    ld->nst = 0;
    ld->st_pos[0] = 0;
    while (f < ld->nfiles) {
        const int64_t s0 = p;
        while (f < ld->nfiles && (p - s0 < ld->cfg.batch || f % w != 0)) {
            p += ld->file_rows[order[f]];
            ++f;
        }
        ld->st_pos[++ld->nst] = p;
    }
    if (ld->nst == 0) ld->st_pos[++ld->nst] = 0; /* N = 0: one empty stage */
}

/* Put stage s into its slot: the sorted ids of this rank's positions of the stage in the batches
 * from stage_b0 on (resume mid-epoch: nothing before first_batch is read). Nothing read yet. */
static sp_status stage_prepare_(sp_loader *ld, int64_t s) {
    lslot_ *S = &ld->slot[s & 1];
    S->s = -1; /* its ids change below */
    const int64_t a = ld->st_pos[s], e = ld->st_pos[s + 1], B = ld->cfg.batch;
    int64_t b = a / B, m = 0;
    if (b < ld->stage_b0) b = ld->stage_b0;
    for (; b < ld->nbatches && b * B < e; ++b) {
        int64_t pos, cnt, g;
        sp_rank_slice_micro(ld->n, B, ld->cfg.micro_batch, b, ld->cfg.rank, ld->cfg.nranks, &pos,
                            &cnt, &g);
        const int64_t p0 = pos > a ? pos : a, p1 = pos + cnt < e ? pos + cnt : e;
        for (int64_t p = p0; p < p1; ++p) {
            if (m == ld->stage_cap)
                return SP_FAIL(SP_ERR_INTERNAL,
                               "%s: data loader: stage %lld holds more than %lld rows",
                               ld->in->path, (long long)s, (long long)ld->stage_cap);
            S->ids[m++] = ld->perm[p];
        }
    }
    qsort(S->ids, (size_t)m, sizeof(int64_t), cmp_i64_);
    S->s = s;
    S->m = m;
    S->done = 0;
    return SP_OK;
}

/* Read the next block (up to stage_blk rows, ascending ids) of the slot being staged. Its rows
 * and bytes go to the stats, and its time to read_s when `timed` (reads inside fill_ are timed
 * by fill_). On failure the slot is emptied, so the batch that needs it reads it again. */
static sp_status stage_read_block_(sp_loader *ld, lslot_ *S, bool timed) {
    const double t0 = now_();
    int64_t k = S->m - S->done < ld->stage_blk ? S->m - S->done : ld->stage_blk;
    const int64_t *ids = S->ids + S->done;
    const sp_status st =
        sp_dataset_read(ld->ds, ids, k, S->x + (size_t)S->done * ld->in->sample_size, NULL, NULL);
    if (st != SP_OK) {
        S->s = -1;
        return st;
    }
    pthread_mutex_lock(&ld->mu);
    if (S->done == 0)
        ld->sstats.stages_read++;
    else if (ids[0] <= S->ids[S->done - 1])
        ld->sstats.descents++;
    ld->sstats.blocks_read++;
    ld->stats.rows_read += (uint64_t)k;
    ld->stats.bytes_read += (uint64_t)k * ld->in->x_row_bytes;
    if (timed) ld->stats.read_s += now_() - t0;
    pthread_mutex_unlock(&ld->mu);
    S->done += k;
    return SP_OK;
}

/* Make stage s fully staged in its slot. */
static sp_status stage_ready_(sp_loader *ld, int64_t s) {
    lslot_ *S = &ld->slot[s & 1];
    if (S->s != s) SP_CHECK(stage_prepare_(ld, s));
    while (S->done < S->m) SP_CHECK(stage_read_block_(ld, S, false));
    return SP_OK;
}

/* The row of `id` in slot S (its ids are sorted, distinct, and hold id). */
static int64_t slot_row_(const lslot_ *S, int64_t id) {
    return sp_last_le_i64(S->ids, S->m, id);
}

/* X of batch B (its ids set) from the stage slots: positions [first_pos, first_pos + count),
 * from at most two stages. */
static sp_status fill_staged_(sp_loader *ld, lbuf_ *B) {
    const size_t ss = ld->in->sample_size;
    int64_t p = B->first_pos, i = 0;
    const int64_t end = p + B->count;
    while (p < end) {
        const int64_t s = stage_of_(ld, p);
        SP_CHECK(stage_ready_(ld, s));
        const lslot_ *S = &ld->slot[s & 1];
        const int64_t e = end < ld->st_pos[s + 1] ? end : ld->st_pos[s + 1];
        for (; p < e; ++p, ++i) {
            const int64_t r = slot_row_(S, B->ids[i]);
            if (r >= S->m || S->ids[r] != B->ids[i])
                return SP_FAIL(SP_ERR_INTERNAL, "%s: data loader: sample %lld is not in stage %lld",
                               ld->in->path, (long long)B->ids[i], (long long)s);
            memcpy(B->x + (size_t)i * ss, S->x + (size_t)r * ss, ss * sizeof(float));
        }
    }
    return SP_OK;
}

/* Read-ahead on the reader thread: the stage to read a block of next, or -1. The batches from
 * fill_next on need positions >= fill_next * batch, so the stage c holding that position and its
 * successor may be staged (the other slot's older stage is no longer needed). Called with the
 * mutex held; the slots are the reader thread's own. */
static int64_t ahead_stage_(const sp_loader *ld) {
    if (!ld->ahead_ok || ld->fill_next >= ld->nbatches) return -1;
    const int64_t c = stage_of_(ld, ld->fill_next * ld->cfg.batch);
    for (int64_t s = c; s <= c + 1 && s < ld->nst; ++s) {
        const lslot_ *S = &ld->slot[s & 1];
        if (S->s != s || S->done < S->m) return s;
    }
    return -1;
}

/* One block of read-ahead of stage s. A failure stops the read-ahead; the batch that needs the
 * stage reads it again and reports the error. */
static void ahead_block_(sp_loader *ld, int64_t s) {
    lslot_ *S = &ld->slot[s & 1];
    sp_status st = S->s == s ? SP_OK : stage_prepare_(ld, s);
    if (st == SP_OK) st = stage_read_block_(ld, S, true);
    if (st != SP_OK) {
        S->s = -1;
        pthread_mutex_lock(&ld->mu);
        ld->ahead_ok = false;
        pthread_mutex_unlock(&ld->mu);
    }
}

static void *reader_main_(void *arg) {
    sp_loader *ld = arg;
    pthread_mutex_lock(&ld->mu);
    for (;;) {
        int64_t s = -1;
        while (ld->job_buf < 0 && !ld->quit && (s = ahead_stage_(ld)) < 0)
            pthread_cond_wait(&ld->cv, &ld->mu);
        if (ld->quit) break;
        if (ld->job_buf < 0) { /* no batch waits: read ahead one block */
            ld->busy = true;
            pthread_mutex_unlock(&ld->mu);
            ahead_block_(ld, s);
            pthread_mutex_lock(&ld->mu);
            ld->busy = false;
            pthread_cond_broadcast(&ld->cv);
            continue;
        }
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
    ld->ahead_ok = false; /* no read-ahead starts until the next epoch is set up */
    while (ld->job_buf >= 0 || ld->busy) pthread_cond_wait(&ld->cv, &ld->mu);
    pthread_mutex_unlock(&ld->mu);
}

static int cmp_i64_desc_(const void *a, const void *b) {
    return cmp_i64_(b, a);
}

/*
 * Window staging's two slots, sized up front: a stage spans at most R = (the rows of the largest
 * W files) + batch - 1 positions (a window, or windows shorter than a batch merged until they
 * hold one), which overlap at most (R - 1) / batch + 2 batches, each giving this rank at most
 * cmax rows. Off (and nothing allocated) unless --shuffle shards without the row cache and not
 * token data.
 */
static sp_status stages_create_(sp_loader *ld) {
    const sp_dataset_info *in = ld->in;
    if (!ld->file_rows || ld->cache_on || in->seq_len > 0) return SP_OK;
    const int64_t nf = ld->nfiles, w = ld->cfg.shuffle_window < nf ? ld->cfg.shuffle_window : nf;
    int64_t *rows = ld->order_scratch; /* free until the first epoch */
    memcpy(rows, ld->file_rows, (size_t)nf * sizeof(int64_t));
    qsort(rows, (size_t)nf, sizeof(int64_t), cmp_i64_desc_);
    int64_t r = ld->cfg.batch - 1;
    for (int64_t f = 0; f < w; ++f) r += rows[f];
    if (r > ld->n) r = ld->n;
    int64_t cap = r < 1 ? 1 : ((r - 1) / ld->cfg.batch + 2) * ld->cmax;
    if (cap > r) cap = r;
    if (cap > ld->rank_rows) cap = ld->rank_rows;
    if (cap < 1) cap = 1;
    const size_t ss = in->sample_size;
    size_t row, bytes;
    char who[600], what[160];
    snprintf(who, sizeof who, "%s: data loader", in->path);
    snprintf(what, sizeof what, "two window buffers of %lld rows (--shuffle-window %lld)",
             (long long)cap, (long long)ld->cfg.shuffle_window);
    sp_status st = SP_OK;
    if (!sp_size_mul(ss, sizeof(float), &row) || row > SIZE_MAX - sizeof(int64_t))
        st = SP_FAIL(SP_ERR_NOMEM, "%s: a row of %zu samples overflows size_t", who, ss);
    if (st == SP_OK) st = sp_mem_check_n((size_t)cap * 2, row + sizeof(int64_t), &bytes, who, what);
    if (st != SP_OK) /* the size comes from the file set and W, not from a damaged file */
        return SP_FAIL(SP_ERR_NOMEM,
                       "%s: %s need %.1f MiB, more than the memory limit of %.1f MiB; lower "
                       "--shuffle-window or raise --max-memory-mb",
                       who, what, (double)cap * 2.0 * (double)(row + sizeof(int64_t)) / 1048576.0,
                       (double)sp_mem_limit() / 1048576.0);
    ld->st_pos = malloc(((size_t)nf + 2) * sizeof(int64_t));
    bool ok = ld->st_pos != NULL;
    for (int k = 0; k < 2 && ok; ++k) {
        ld->slot[k].s = -1;
        ld->slot[k].ids = malloc((size_t)cap * sizeof(int64_t));
        ld->slot[k].x = malloc((size_t)cap * row);
        ok = ld->slot[k].ids && ld->slot[k].x;
    }
    if (!ok)
        return SP_FAIL(SP_ERR_NOMEM, "%s: cannot allocate two window buffers of %zu bytes", who,
                       bytes);
    ld->stage_cap = cap;
    /* blocks of a rank's batch slice, at least 64 KiB of floats: a batch job queued behind a
     * read-ahead block waits for that block, so a block costs about one per-batch read; the
     * blocks stay ascending, the chunk a block boundary splits stays in the chunk cache, and
     * the dataset's read buffer stays small */
    ld->stage_blk = (int64_t)(((size_t)64 << 10) / row);
    if (ld->stage_blk < ld->cmax) ld->stage_blk = ld->cmax;
    if (ld->stage_blk < 1) ld->stage_blk = 1;
    ld->buf_bytes += bytes + ((size_t)nf + 2) * sizeof(int64_t);
    ld->stage_on = true;
    return SP_OK;
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
    st = stages_create_(ld);
    if (st != SP_OK) {
        sp_loader_free(ld);
        return st;
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
    if (ld->stage_on) {
        stages_build_(ld);
        ld->slot[0].s = ld->slot[1].s = -1;
        ld->stage_b0 = first_batch;
        ld->fill_next = first_batch;
    }
    ld->epoch = epoch;
    ld->next_b = first_batch;
    ld->cur = 0;
    ld->started = true;
    ld->buf[0].ready = ld->buf[1].ready = false;
    if (ld->thread_on && first_batch < ld->nbatches) {
        pthread_mutex_lock(&ld->mu);
        ld->ahead_ok = ld->stage_on;
        pthread_mutex_unlock(&ld->mu);
        submit_(ld, 0, first_batch);
    }
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

bool sp_loader_staging(const sp_loader *ld) {
    return ld->stage_on;
}

sp_status sp_loader_set_staging(sp_loader *ld, bool on) {
    if (on && !ld->slot[0].ids)
        return SP_FAIL(SP_ERR_ARG, "data loader: window staging is not available for this loader");
    wait_idle_(ld);
    ld->stage_on = on;
    ld->started = false; /* the next epoch starts afresh */
    return SP_OK;
}

void sp_loader_get_stage_stats(const sp_loader *ld, sp_loader_stage_stats *st) {
    sp_loader *m = (sp_loader *)ld; /* the mutex guards the counters */
    pthread_mutex_lock(&m->mu);
    *st = ld->sstats;
    pthread_mutex_unlock(&m->mu);
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
    for (int k = 0; k < 2; ++k) {
        free(ld->slot[k].ids);
        free(ld->slot[k].x);
    }
    free(ld->st_pos);
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
