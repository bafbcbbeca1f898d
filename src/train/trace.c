/* The timeline of a training run and the straggler report (see trace.h). */
#include "train/trace.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "model/layer_hook.h"
#include "util/json.h"
#include "util/atomic_file.h"
#include "util/status.h"

static const char *const kind_names_[SP_TR_KINDS] = {
    [SP_TR_DATA_WAIT] = "data wait",
    [SP_TR_AGREE] = "step agreement",
    [SP_TR_STEP] = "step",
    [SP_TR_FORWARD] = "forward",
    [SP_TR_FORWARD_LAYER] = "forward",
    [SP_TR_BACKWARD] = "backward",
    [SP_TR_BACKWARD_LAYER] = "backward",
    [SP_TR_ALLREDUCE_WAIT] = "allreduce wait",
    [SP_TR_ALLREDUCE_BUCKET] = "allreduce bucket",
    [SP_TR_OPTIMIZER] = "optimizer",
    [SP_TR_LAYER_STATS] = "layer stats",
    [SP_TR_CHECKPOINT] = "checkpoint",
    [SP_TR_MODEL_WRITE] = "model write",
    [SP_TR_EVALUATION] = "evaluation",
};
static const char *const kind_cats_[SP_TR_KINDS] = {
    [SP_TR_DATA_WAIT] = "data",
    [SP_TR_AGREE] = "sync",
    [SP_TR_STEP] = "step",
    [SP_TR_FORWARD] = "compute",
    [SP_TR_FORWARD_LAYER] = "layer",
    [SP_TR_BACKWARD] = "compute",
    [SP_TR_BACKWARD_LAYER] = "layer",
    [SP_TR_ALLREDUCE_WAIT] = "sync",
    [SP_TR_ALLREDUCE_BUCKET] = "comm",
    [SP_TR_OPTIMIZER] = "compute",
    [SP_TR_LAYER_STATS] = "compute",
    [SP_TR_CHECKPOINT] = "io",
    [SP_TR_MODEL_WRITE] = "io",
    [SP_TR_EVALUATION] = "eval",
};

enum { TID_MAIN = 0, TID_COMM = 1000, MAX_LANES = 32 };

sp_status sp_trace_init(sp_trace *tr, const char *path, bool root, size_t max_events) {
    memset(tr, 0, sizeof *tr);
    if (!path) return SP_OK;
    if (root) { /* the writer of the end, tried now */
        sp_afile af;
        SP_CHECK(sp_afile_open(&af, path, "trace file"));
        sp_afile_abort(&af);
    }
    if (max_events == 0) max_events = 1;
    tr->ev = malloc(max_events * sizeof *tr->ev);
    if (!tr->ev)
        return SP_FAIL(SP_ERR_NOMEM, "--trace: out of memory for %zu events (%zu MB)", max_events,
                       max_events * sizeof *tr->ev >> 20);
    tr->cap = max_events;
    return SP_OK;
}

void sp_trace_free(sp_trace *tr) {
    free(tr->ev);
    memset(tr, 0, sizeof *tr);
}

sp_status sp_trace_start(sp_trace *tr, sp_comm *c) {
    if (!tr->ev) return SP_OK;
    /* every rank leaves this collective at about the same moment: the common origin */
    SP_CHECK(sp_comm_agree(c, SP_OK, NULL));
    tr->origin = sp_comm_wtime();
    tr->on = true;
    return SP_OK;
}

void sp_trace_push_(sp_trace *tr, int kind, int arg, double t0, double t1) {
    if (tr->n == tr->cap) {
        tr->dropped++;
        return;
    }
    sp_trace_event *e = &tr->ev[tr->n++];
    e->t0 = t0;
    e->t1 = t1 > t0 ? t1 : t0;
    e->step = tr->step;
    e->kind = kind;
    e->arg = arg;
}

void sp_trace_layer_event(sp_trace *tr, int ev, int layer) {
    if (!tr->on) return;
    switch ((sp_hook_event)ev) {
    case SP_HOOK_FORWARD_BEGIN:
    case SP_HOOK_BACKWARD_BEGIN:
        tr->layer_t0 = sp_comm_wtime();
        tr->layer_first = layer;
        break;
    case SP_HOOK_FORWARD_END:
    case SP_HOOK_BACKWARD_END: {
        /* the model runs some neighbours as one fused pass (conv2d+relu+maxpool forward,
         * maxpool+relu backward): begin and end then name different layers */
        const int first = tr->layer_first, arg = first == layer ? layer : first | layer << 16;
        sp_trace_push_(tr, ev == SP_HOOK_FORWARD_END ? SP_TR_FORWARD_LAYER : SP_TR_BACKWARD_LAYER,
                       arg, tr->layer_t0, sp_comm_wtime());
        break;
    }
    }
}

void sp_trace_buckets(sp_trace *tr, const sp_reducer *r) {
    if (!tr->on || !r) return;
    const int nb = sp_reducer_num_buckets(r);
    for (int i = 0; i < nb; ++i) {
        double a, b;
        if (sp_reducer_bucket_times(r, i, &a, &b))
            sp_trace_push_(tr, SP_TR_ALLREDUCE_BUCKET, i, a, b);
    }
}

/* ------------------------------------------------------------------ the straggler line */

static int cmp_double_(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static sp_status straggler_(sp_trace *tr, sp_comm *c, FILE *metrics, bool talk) {
    const int size = sp_comm_size(c), rank = sp_comm_rank(c);
    double mine[2] = {tr->compute_s, (double)tr->compute_steps};
    double *all = NULL;
    sp_status st = SP_OK;
    if (rank == 0 && !(all = malloc(sizeof(double) * 2 * (size_t)size)))
        st = SP_FAIL(SP_ERR_NOMEM, "out of memory");
    st = sp_comm_agree(c, st, NULL);
    if (st == SP_OK) st = sp_comm_gather_bytes(c, mine, sizeof mine, all, 0);
    if (st != SP_OK || rank != 0) {
        free(all);
        return st;
    }
    double *ms = malloc(sizeof(double) * (size_t)size), *sorted = NULL;
    if (ms) sorted = malloc(sizeof(double) * (size_t)size);
    if (!ms || !sorted) {
        free(all), free(ms);
        return SP_FAIL(SP_ERR_NOMEM, "out of memory");
    }
    int slow = 0, fast = 0;
    bool any = false;
    for (int r = 0; r < size; ++r) {
        ms[r] = all[2 * r + 1] > 0 ? 1e3 * all[2 * r] / all[2 * r + 1] : 0;
        sorted[r] = ms[r];
        any = any || all[2 * r + 1] > 0;
        if (ms[r] > ms[slow]) slow = r;
        if (ms[r] < ms[fast]) fast = r;
    }
    qsort(sorted, (size_t)size, sizeof *sorted, cmp_double_);
    const double median =
        size % 2 ? sorted[size / 2] : 0.5 * (sorted[size / 2 - 1] + sorted[size / 2]);
    const double pct = median > 0 ? 100.0 * (ms[slow] - median) / median : 0;
    const double pct_fast = ms[fast] > 0 ? 100.0 * (ms[slow] - ms[fast]) / ms[fast] : 0;
    if (any && size > 1) {
        if (talk) {
            printf("straggler: rank %d is %.1f%% slower than the median (compute %.3g ms/step vs "
                   "%.3g; fastest rank %d %.3g, %.1f%% faster)\n",
                   slow, pct, ms[slow], median, fast, ms[fast], pct_fast);
            fflush(stdout);
        }
        if (metrics) {
            sp_json j;
            sp_json_begin(&j, metrics);
            sp_json_str(&j, "event", "straggler");
            sp_json_int(&j, "rank", slow);
            sp_json_num(&j, "compute_ms_per_step", ms[slow]);
            sp_json_num(&j, "median_ms_per_step", median);
            sp_json_num(&j, "slower_than_median_pct", pct);
            sp_json_int(&j, "fastest_rank", fast);
            sp_json_num(&j, "fastest_ms_per_step", ms[fast]);
            sp_json_num_array(&j, "ranks_ms_per_step", ms, (size_t)size);
            sp_json_end(&j);
        }
    }
    free(all), free(ms), free(sorted);
    return SP_OK;
}

/* ------------------------------------------------------------------ the JSON file */

typedef struct rank_info {
    uint64_t n, dropped;
    double origin;
} rank_info;

static void meta_(FILE *f, bool *first, int pid, int tid, const char *what, const char *name) {
    fprintf(f,
            "%s\n{\"ph\": \"M\", \"pid\": %d, \"tid\": %d, \"name\": \"%s\", \"args\": {\"name\": ",
            *first ? "" : ",", pid, tid, what);
    sp_json_write_string(f, name);
    fputs("}}", f);
    *first = false;
}

static void sort_meta_(FILE *f, int pid, int tid, const char *what, int index) {
    fprintf(f,
            ",\n{\"ph\": \"M\", \"pid\": %d, \"tid\": %d, \"name\": \"%s\", \"args\": "
            "{\"sort_index\": %d}}",
            pid, tid, what, index);
}

/* One rank's events: metadata, then the spans (comm spans spread over lanes). */
static void write_rank_(FILE *f, bool *first, int rank, const rank_info *ri,
                        const sp_trace_event *ev, const sp_model *m, const sp_reducer *r,
                        size_t elem) {
    char name[128];
    snprintf(name, sizeof name, "rank %d", rank);
    meta_(f, first, rank, TID_MAIN, "process_name", name);
    sort_meta_(f, rank, TID_MAIN, "process_sort_index", rank);
    meta_(f, first, rank, TID_MAIN, "thread_name", "main");
    sort_meta_(f, rank, TID_MAIN, "thread_sort_index", 0);
    double lane_end[MAX_LANES];
    int lanes = 0;
    const int nlayers = sp_model_num_layers(m), nb = r ? sp_reducer_num_buckets(r) : 0;
    for (uint64_t i = 0; i < ri->n; ++i) {
        const sp_trace_event *e = &ev[i];
        if (e->kind < 0 || e->kind >= SP_TR_KINDS) continue;
        int tid = TID_MAIN;
        if (e->kind == SP_TR_ALLREDUCE_BUCKET) {
            /* buckets start in order: the first lane free at the start, else a new one */
            int k = 0;
            while (k < lanes && lane_end[k] > e->t0) ++k;
            if (k == lanes) {
                if (lanes < MAX_LANES) {
                    snprintf(name, sizeof name, k ? "comm %d" : "comm", k);
                    meta_(f, first, rank, TID_COMM + k, "thread_name", name);
                    sort_meta_(f, rank, TID_COMM + k, "thread_sort_index", 1 + k);
                    ++lanes;
                } else {
                    k = MAX_LANES - 1;
                }
            }
            lane_end[k] = e->t1;
            tid = TID_COMM + k;
        }
        const bool layer = e->kind == SP_TR_FORWARD_LAYER || e->kind == SP_TR_BACKWARD_LAYER;
        const int l0 = layer ? e->arg & 0xffff : 0, l1 = layer && e->arg >> 16 ? e->arg >> 16 : l0;
        if (layer && l0 == l1) {
            snprintf(name, sizeof name, "%s %d %s", kind_names_[e->kind], l0,
                     l0 < nlayers ? sp_model_layer_name(m, l0) : "?");
        } else if (layer) { /* a fused group: "forward 0-2 conv2d+relu+maxpool" */
            const int lo = l0 < l1 ? l0 : l1, hi = l0 < l1 ? l1 : l0;
            int len = snprintf(name, sizeof name, "%s %d-%d ", kind_names_[e->kind], lo, hi);
            for (int l = lo; l <= hi && len > 0 && (size_t)len < sizeof name; ++l)
                len += snprintf(name + len, sizeof name - (size_t)len, "%s%s", l > lo ? "+" : "",
                                l < nlayers ? sp_model_layer_name(m, l) : "?");
        } else if (e->kind == SP_TR_ALLREDUCE_BUCKET)
            snprintf(name, sizeof name, "allreduce bucket %d", e->arg);
        else
            snprintf(name, sizeof name, "%s", kind_names_[e->kind]);
        fprintf(f,
                ",\n{\"ph\": \"X\", \"pid\": %d, \"tid\": %d, \"name\": \"%s\", \"cat\": \"%s\", "
                "\"ts\": %.3f, \"dur\": %.3f, \"args\": {\"step\": %lld",
                rank, tid, name, kind_cats_[e->kind], (e->t0 - ri->origin) * 1e6,
                (e->t1 - e->t0) * 1e6, (long long)e->step);
        if (layer && l0 == l1) fprintf(f, ", \"layer\": %d", l0);
        if (layer && l0 != l1)
            fprintf(f, ", \"layer\": %d, \"last_layer\": %d", l0 < l1 ? l0 : l1, l0 < l1 ? l1 : l0);
        if (e->kind == SP_TR_ALLREDUCE_BUCKET) {
            fprintf(f, ", \"bucket\": %d", e->arg);
            if (e->arg >= 0 && e->arg < nb) {
                size_t b0, len;
                sp_reducer_bucket(r, e->arg, &b0, &len);
                fprintf(f, ", \"bytes\": %zu", len * elem);
            }
        }
        fputs("}}", f);
    }
}

static sp_status write_file_(const char *path, int size, const rank_info *ri,
                             const sp_trace_event *ev, const sp_model *m, const sp_reducer *r,
                             size_t elem, size_t cap) {
    sp_afile af;
    SP_CHECK(sp_afile_open(&af, path, "trace file"));
    const int fd = dup(af.fd);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (!f) {
        const sp_status st =
            SP_FAIL(SP_ERR_IO, "%s: cannot create the trace file (%s)", path, strerror(errno));
        if (fd >= 0) close(fd);
        sp_afile_abort(&af);
        return st;
    }
    fprintf(f,
            "{\"displayTimeUnit\": \"ms\", \"otherData\": {\"tool\": \"shardprop\", "
            "\"ranks\": %d, \"max_events_per_rank\": %zu, \"dropped_events\": [",
            size, cap);
    for (int q = 0; q < size; ++q)
        fprintf(f, "%s%llu", q ? ", " : "", (unsigned long long)ri[q].dropped);
    fputs("]},\n\"traceEvents\": [", f);
    bool first = true;
    size_t off = 0;
    for (int q = 0; q < size; ++q) {
        write_rank_(f, &first, q, &ri[q], ev + off, m, r, elem);
        off += ri[q].n;
    }
    fputs("\n]}\n", f);
    const bool bad = ferror(f) != 0;
    if (fclose(f) != 0 || bad) {
        sp_afile_abort(&af);
        return SP_FAIL(SP_ERR_IO, "%s: cannot write the trace file", path);
    }
    return sp_afile_commit(&af);
}

sp_status sp_trace_finish(sp_trace *tr, sp_comm *c, const char *path, const sp_model *m,
                          const sp_reducer *r, size_t elem, FILE *metrics, bool talk) {
    SP_CHECK(straggler_(tr, c, metrics, talk));
    if (!tr->ev || !path) return SP_OK;
    tr->on = false;
    const int size = sp_comm_size(c), rank = sp_comm_rank(c);
    rank_info mine = {tr->n, tr->dropped, tr->origin};
    rank_info *ri = NULL;
    size_t *counts = NULL;
    sp_trace_event *all = NULL;
    sp_status st = SP_OK;
    if (rank == 0) {
        ri = calloc((size_t)size, sizeof *ri);
        counts = calloc((size_t)size, sizeof *counts);
        if (!ri || !counts) st = SP_FAIL(SP_ERR_NOMEM, "out of memory");
    }
    st = sp_comm_agree(c, st, NULL);
    if (st == SP_OK) st = sp_comm_gather_bytes(c, &mine, sizeof mine, ri, 0);
    size_t total = 0;
    if (st == SP_OK && rank == 0) {
        for (int q = 0; q < size; ++q) counts[q] = ri[q].n * sizeof *tr->ev, total += ri[q].n;
        all = malloc((total ? total : 1) * sizeof *all);
        if (!all) st = SP_FAIL(SP_ERR_NOMEM, "--trace: out of memory gathering %zu events", total);
    }
    if (st == SP_OK) st = sp_comm_agree(c, st, NULL);
    if (st == SP_OK) st = sp_comm_gatherv_bytes(c, tr->ev, tr->n * sizeof *tr->ev, all, counts, 0);
    if (st == SP_OK && rank == 0) {
        st = write_file_(path, size, ri, all, m, r, elem, tr->cap);
        uint64_t dropped = 0;
        for (int q = 0; q < size; ++q) dropped += ri[q].dropped;
        if (st == SP_OK && talk) {
            printf("trace: %zu events from %d rank%s written to %s", total, size,
                   size == 1 ? "" : "s", path);
            if (dropped)
                printf(" (%llu more dropped: the cap is %zu events per rank; raise "
                       "--trace-max-events)",
                       (unsigned long long)dropped, tr->cap);
            printf("\n");
            fflush(stdout);
        }
    }
    free(ri), free(counts), free(all);
    return sp_comm_agree(c, st, NULL);
}
