/*
 * The timeline of a training run (--trace FILE.json) and the straggler report.
 *
 * Each rank records spans (begin, end, kind, step, layer or bucket) into one array allocated at
 * the start (max_events entries; later events are counted as dropped, never stored): nothing
 * is written and nothing allocated while training. At the end rank 0 gathers every rank's
 * events (sp_comm_gatherv_bytes) and writes one Chrome trace-event JSON file atomically
 * (FILE.tmp.<pid>, then rename): pid = rank, tid 0 = the main thread, tids 1000 + k = "comm"
 * lanes holding the per-bucket allreduce spans (posted -> seen complete; overlapping buckets go
 * to separate lanes). Times are microseconds from a start agreed across ranks: each rank reads
 * its clock as it leaves one collective call (sp_trace_start), so the ranks' origins differ by
 * about one message latency.
 *
 * With tracing off every recording call is one predictable branch (sp_trace_now returns 0 and
 * reads no clock). The straggler statistics are always kept: two clock reads per step.
 *
 * Only the calling (main) thread records; OpenMP worker threads inside the kernels are not
 * traced (their work shows as the layer span that runs them).
 */
#ifndef SP_TRAIN_TRACE_H
#define SP_TRAIN_TRACE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "comm/comm.h"
#include "comm/reducer.h"
#include "shardprop/model.h"
#include "shardprop/status.h"

/* What a span is. The names in the JSON file are in trace.c (kind_names_). */
typedef enum sp_trace_kind {
    SP_TR_DATA_WAIT,        /* waiting for this rank's batch from the loader */
    SP_TR_AGREE,            /* the step agreement (a fast rank waits here for a slow one) */
    SP_TR_STEP,             /* one optimizer step, from after the agreement to the update */
    SP_TR_FORWARD,          /* forward + loss of the local batch */
    SP_TR_FORWARD_LAYER,    /* arg = layer, or first | last << 16 for a fused group */
    SP_TR_BACKWARD,         /* backward of the local batch (buckets start inside) */
    SP_TR_BACKWARD_LAYER,   /* arg = layer, or first | last << 16 for a fused group */
    SP_TR_ALLREDUCE_WAIT,   /* sp_reducer_finish: waiting for the gradients of every rank */
    SP_TR_ALLREDUCE_BUCKET, /* arg = bucket; on a "comm" lane */
    SP_TR_OPTIMIZER,        /* clipping + the optimizer step */
    SP_TR_LAYER_STATS,      /* --layer-stats on a logging step */
    SP_TR_CHECKPOINT,       /* writing a checkpoint (rank 0) and agreeing on it */
    SP_TR_MODEL_WRITE,      /* writing --out */
    SP_TR_EVALUATION,       /* the validation pass at the end of an epoch */
    SP_TR_KINDS
} sp_trace_kind;

typedef struct sp_trace_event {
    double t0, t1; /* sp_comm_wtime seconds */
    int64_t step;  /* the step (1-based) it belongs to; between steps, the last step done */
    int32_t kind, arg;
} sp_trace_event;

typedef struct sp_trace {
    bool on;
    sp_trace_event *ev;
    size_t n, cap;
    uint64_t dropped;
    double origin; /* sp_comm_wtime at the agreed start */
    int64_t step;
    double layer_t0; /* begin of the layer in progress (layers run one after another) */
    int layer_first; /* its index (a fused group: the first of its layers) */
    /* straggler statistics, kept with tracing off too */
    double step_t0, compute_s;
    int64_t compute_steps;
} sp_trace;

/* Default cap of events per rank (32 bytes each). */
#define SP_TRACE_DEFAULT_MAX_EVENTS ((size_t)1 << 18)

/* Zero *tr; with a path, allocate room for max_events events, and on the root rank check now
 * that the file can be created next to path (an error at the end of a long run would be late). */
sp_status sp_trace_init(sp_trace *tr, const char *path, bool root, size_t max_events);
void sp_trace_free(sp_trace *tr);

/* The agreed origin of the timeline (collective): call at the same point on every rank. */
sp_status sp_trace_start(sp_trace *tr, sp_comm *c);

void sp_trace_push_(sp_trace *tr, int kind, int arg, double t0, double t1);

/* The clock when tracing, else 0 without reading it. */
static inline double sp_trace_now(const sp_trace *tr) {
    return tr->on ? sp_comm_wtime() : 0.0;
}
/* Record [t0, t1] (from sp_trace_now) as a span of `kind`. */
static inline void sp_trace_span(sp_trace *tr, sp_trace_kind kind, int arg, double t0, double t1) {
    if (tr->on) sp_trace_push_(tr, (int)kind, arg, t0, t1);
}

/* Straggler bookkeeping: the step's own work runs from sp_trace_step_begin (after the step
 * agreement) to sp_trace_compute_end (before waiting on the gradient allreduce). */
static inline void sp_trace_step_begin(sp_trace *tr, int64_t step) {
    tr->step = step;
    tr->step_t0 = sp_comm_wtime();
}
static inline void sp_trace_compute_end_at(sp_trace *tr, double t) {
    tr->compute_s += t - tr->step_t0;
    tr->compute_steps++;
}
static inline void sp_trace_compute_end(sp_trace *tr) {
    sp_trace_compute_end_at(tr, sp_comm_wtime());
}

/* Per-layer spans, from the model's layer hook (ev: sp_hook_event). */
void sp_trace_layer_event(sp_trace *tr, int ev, int layer);

/* After sp_reducer_finish: one span per bucket of the step on the comm lanes (r may be NULL). */
void sp_trace_buckets(sp_trace *tr, const sp_reducer *r);

/*
 * The end of the run (collective): gathers every rank's mean compute time per step; rank 0
 * prints the straggler line when talk (more than one rank and at least one step) and appends a
 * "straggler" record to metrics (may be NULL). With tracing on, rank 0 then gathers the events
 * and writes `path` atomically (m: layer names; r: the gradient buckets, elem bytes each
 * element, or NULL). Agreed: a failed write is an error on every rank.
 */
sp_status sp_trace_finish(sp_trace *tr, sp_comm *c, const char *path, const sp_model *m,
                          const sp_reducer *r, size_t elem, FILE *metrics, bool talk);

#endif
