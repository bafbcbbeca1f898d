#include "train/trainer.h"

#include <errno.h>
#include <math.h>
#include <omp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "comm/comm.h"
#include "comm/reducer.h"
#include "comm/watchdog.h"
#include "data/data.h"
#include "layers/layers.h"
#include "model/layer_hook.h"
#include "optim/clip.h"
#include "optim/optim.h"
#include "optim/schedule.h"
#include "shardprop/model.h"
#include "train/batches.h"
#include "io/checkpoint.h"
#include "train/deterministic.h"
#include "train/eval.h"
#include "train/layer_stats.h"
#include "train/trace.h"
#include "train/nonfinite.h"
#include "scale/scaleplan.h"
#include "util/atomic_file.h"
#include "util/json.h"
#include "util/mem.h"
#include "util/signals.h"
#include "util/threads.h"
#include "util/status.h"

typedef struct trainer {
    const sp_train_config *cfg;
    sp_comm *comm;
    int rank, size, threads;
    sp_dataset *ds, *vds;
    sp_loader *ld, *vld;
    sp_model *m;
    sp_optimizer *opt;
    sp_schedule sched;
    sp_reducer *red;
    sp_det *det; /* --deterministic, else NULL */
    bool xent;
    int outputs; /* classes (xent) or targets (mse) */
    float *dz;   /* (local batch, outputs) error at the output */
    double *rows;
    FILE *metrics;
    bool tty, talk; /* rank 0 prints; progress in place on a terminal */
    int64_t step, total_steps, batches_per_epoch;
    double t_start;
    /* accumulators since the last log line and over the epoch */
    double log_loss, log_n, log_correct, log_t0;
    double ep_loss, ep_n, ep_correct, ep_t0, ep_compute;
    double compute_s;   /* forward + backward + update time of this rank */
    int64_t first_step; /* step at the start of this process (after a resume) */
    double deadline;    /* wall time (sp_comm_wtime) to stop by; 0: none */
    double last_ckpt_time, last_ckpt_s;
    double last_progress;
    sp_trace tr;               /* --trace timeline; straggler statistics always */
    sp_layer_stats *ls;        /* --layer-stats, else NULL */
    bool skip_nonfinite;       /* --on-nonfinite skip */
    int64_t nonfinite_skipped; /* steps dropped for a non-finite loss or gradient */
} trainer;

static double now_(void) {
    return sp_comm_wtime();
}

/* The backward hook: gradients at offsets >= begin are final; their buckets may go. */
static void on_grad_ready_(void *user, size_t begin) {
    sp_reducer_ready((sp_reducer *)user, begin);
}

/* The model's layer hook (set only with --trace or --layer-stats). */
static void on_layer_(void *user, sp_hook_event ev, int layer, const float *dy, size_t n) {
    trainer *t = user;
    sp_trace_layer_event(&t->tr, (int)ev, layer);
    if (t->ls && ev == SP_HOOK_BACKWARD_BEGIN) sp_layer_stats_error_signal(t->ls, layer, dy, n);
}

/* Forward + loss (+ backward and the overlapped allreduce when training) of one batch.
 * Every rank calls this for every global batch, with count possibly 0. */
static sp_status run_batch_(trainer *t, const sp_batch *b, bool training, double sums[3]) {
    const int B = (int)b->count;
    const double t0 = now_();
    sp_step_ctx ctx = {.training = training,
                       .seed = (uint64_t)t->cfg->seed,
                       .step = t->step,
                       .sample_ids = b->ids};
    double loss_sum = 0;
    int64_t correct = 0;
    /* the mean over the global batch: every rank scales by the same global count */
    const float scale = t->xent ? 1.0f / (float)b->global_count
                                : 1.0f / ((float)b->global_count * (float)t->outputs);
    float *dz = training ? t->dz : NULL;
    if (B > 0) {
        const double tf = sp_trace_now(&t->tr);
        const float *z = sp_model_forward(t->m, b->x, B, &ctx);
        if (t->xent)
            sp_xent_loss(&loss_sum, &correct, dz, t->rows, z, b->labels, B, t->outputs, scale);
        else
            sp_mse_loss(&loss_sum, dz, t->rows, z, b->targets, B, t->outputs, scale);
        sp_trace_span(&t->tr, SP_TR_FORWARD, -1, tf, sp_trace_now(&t->tr));
    }
    if (training) {
        sp_reducer_begin(t->red);
        const double tb = sp_trace_now(&t->tr);
        /* overwrites the gradient slab (zero when this rank has no samples of the batch) */
        sp_model_backward_fresh(t->m, dz, B, on_grad_ready_, t->red);
        const double tw = sp_trace_now(&t->tr);
        sp_trace_span(&t->tr, SP_TR_BACKWARD, -1, tb, tw);
        sp_trace_compute_end(&t->tr);
        t->compute_s += now_() - t0;
        SP_CHECK(sp_reducer_finish(t->red));
        sp_trace_span(&t->tr, SP_TR_ALLREDUCE_WAIT, -1, tw, sp_trace_now(&t->tr));
        sp_trace_buckets(&t->tr, t->red);
    } else {
        t->compute_s += now_() - t0;
    }
    sums[0] = loss_sum, sums[1] = (double)correct, sums[2] = (double)B;
    return SP_OK;
}

/* Evaluate a whole data set, distributed: each rank its slices, sums exact over ranks. */
/* Evaluate a whole data set, distributed: the same code as `shardprop eval`. */
static sp_status evaluate_(trainer *t, sp_loader *ld, double *loss, double *acc) {
    sp_eval_result r;
    const double t0 = now_();
    sp_status st = sp_eval_run(t->m, ld, t->comm, t->xent, t->outputs, &r);
    if (st == SP_OK) {
        *loss = r.loss;
        *acc = t->xent ? r.accuracy : NAN;
    }
    sp_eval_result_free(&r);
    t->compute_s += now_() - t0;
    sp_trace_span(&t->tr, SP_TR_EVALUATION, -1, t0, sp_trace_now(&t->tr));
    return st;
}

static void fmt_eta_(char *buf, size_t cap, double s) {
    if (!isfinite(s) || s < 0) s = 0;
    long v = (long)(s + 0.5);
    if (v >= 3600)
        snprintf(buf, cap, "%ld:%02ld:%02ld", v / 3600, v / 60 % 60, v % 60);
    else
        snprintf(buf, cap, "%ld:%02ld", v / 60, v % 60);
}

/* --deterministic: a number with every bit (C99 %a), so that runs can be compared exactly. */
static void json_hex_(sp_json *j, const char *key, double v) {
    char h[64];
    snprintf(h, sizeof h, "%a", v);
    sp_json_str(j, key, h);
}

static void log_step_(trainer *t, int64_t epoch, bool force) {
    const sp_train_config *c = t->cfg;
    if (!force && t->step % c->log_every != 0) return;
    if (t->log_n <= 0) return;
    const double dt = now_() - t->log_t0;
    const double loss = t->log_loss / (t->log_n * (t->xent ? 1 : t->outputs));
    const double acc = t->log_correct / t->log_n;
    const double sps = dt > 0 ? t->log_n / dt : 0;
    const double lr = sp_schedule_lr(&t->sched, t->step > 0 ? t->step - 1 : 0);
    if (t->talk && !t->tty && !c->quiet) {
        printf("step %lld/%lld  epoch %lld  loss %.4f", (long long)t->step,
               (long long)t->total_steps, (long long)epoch + 1, loss);
        if (t->xent) printf("  accuracy %.4f", acc);
        printf("  lr %.4g  %.0f samples/s\n", lr, sps);
        fflush(stdout);
    }
    if (t->metrics) {
        sp_json j;
        sp_json_begin(&j, t->metrics);
        sp_json_str(&j, "event", "step");
        sp_json_int(&j, "step", t->step);
        sp_json_int(&j, "epoch", epoch + 1);
        sp_json_num(&j, "loss", loss);
        if (c->deterministic) json_hex_(&j, "loss_hex", loss);
        if (t->xent)
            sp_json_num(&j, "accuracy", acc);
        else
            sp_json_null(&j, "accuracy");
        sp_json_num(&j, "lr", lr);
        sp_json_num(&j, "samples_per_s", sps);
        sp_json_end(&j);
    }
    t->log_loss = t->log_n = t->log_correct = 0;
    t->log_t0 = now_();
}

/* Is rank 0 writing to a person's terminal? Under mpirun the ranks' stdout is a pseudo-terminal
 * that the launcher made even when the launcher itself writes to a file (a SLURM log), so ask
 * about the launcher's stdout instead. */
static bool stdout_is_terminal_(void) {
    if (!isatty(STDOUT_FILENO)) return false;
    if (!getenv("OMPI_COMM_WORLD_SIZE") && !getenv("PMI_RANK") && !getenv("PMIX_RANK") &&
        !getenv("SLURM_PROCID"))
        return true;
    char path[64], link[256];
    snprintf(path, sizeof path, "/proc/%d/fd/1", (int)getppid());
    const ssize_t n = readlink(path, link, sizeof link - 1);
    if (n <= 0) return false;
    link[n] = '\0';
    return !strncmp(link, "/dev/pts/", 9) || !strncmp(link, "/dev/tty", 8);
}

static void progress_(trainer *t, int64_t epoch, int64_t batch_done) {
    if (!t->talk || !t->tty || t->cfg->quiet) return;
    /* at most a few updates a second, and always the last batch of the epoch */
    const double now = now_();
    if (now - t->last_progress < 0.25 && batch_done < t->batches_per_epoch) return;
    t->last_progress = now;
    const double dt = now_() - t->ep_t0;
    const double sps = dt > 0 ? t->ep_n / dt : 0;
    const double loss = t->ep_n > 0 ? t->ep_loss / (t->ep_n * (t->xent ? 1 : t->outputs)) : NAN;
    const double per_step = t->step > 0 ? (now_() - t->t_start) / (double)t->step : 0;
    char eta[32];
    fmt_eta_(eta, sizeof eta, per_step * (double)(t->total_steps - t->step));
    printf("\repoch %lld  %lld/%lld  loss %.4f", (long long)epoch + 1, (long long)batch_done,
           (long long)t->batches_per_epoch, loss);
    if (t->xent) printf("  acc %.4f", t->ep_n > 0 ? t->ep_correct / t->ep_n : 0.0);
    printf("  %.0f samples/s  ETA %s   ", sps, eta);
    fflush(stdout);
}

/* Compare the parameter checksums of all ranks; a mismatch is an error naming the step. */
static sp_status check_params_(trainer *t) {
    const uint64_t h = sp_checksum_floats(sp_model_params(t->m), sp_model_num_params(t->m));
    bool equal = false;
    SP_CHECK(sp_comm_all_equal_u64(t->comm, h, &equal));
    if (!equal)
        return SP_FAIL(SP_ERR_MPI,
                       "parameters differ between ranks at step %lld (checksums disagree): the "
                       "ranks no longer train the same model",
                       (long long)t->step);
    return SP_OK;
}

/* Rank 0 writes the model file; everyone agrees on the outcome. */
static sp_status write_model_(trainer *t, const char *path, int64_t epoch, int64_t epoch_batch) {
    sp_status st = SP_OK;
    const double t0 = sp_trace_now(&t->tr);
    if (t->rank == 0) {
        char *conf = sp_train_config_format(t->cfg);
        sp_train_state ts = {.step = t->step,
                             .epoch = epoch,
                             .epoch_batch = epoch_batch,
                             .seed = (uint64_t)t->cfg->seed,
                             .config = conf ? conf : "",
                             .world_size = t->size,
                             .threads = t->threads};
        st = sp_ckpt_write(path, t->m, t->opt, t->xent ? "xent" : "mse", &ts);
        free(conf);
    }
    st = sp_comm_agree(t->comm, st, NULL);
    sp_trace_span(&t->tr, SP_TR_MODEL_WRITE, -1, t0, sp_trace_now(&t->tr));
    return st;
}

/* Everything that can fail locally before the first collective step; agreed by the caller. */
static sp_status setup_local_(trainer *t) {
    const sp_train_config *c = t->cfg;
    SP_CHECK(sp_dataset_open(&t->ds, c->data, c->x_name, c->y_name));
    const sp_dataset_info *di = sp_dataset_get_info(t->ds);
    if (c->val) {
        SP_CHECK(sp_dataset_open(&t->vds, c->val, c->x_name, c->y_name));
        const sp_dataset_info *vi = sp_dataset_get_info(t->vds);
        SP_CHECK(sp_dataset_check_input_shape(t->vds, di->sample_shape, di->sample_rank));
        if (vi->regression != di->regression || (vi->regression && vi->targets != di->targets))
            return SP_FAIL(SP_ERR_DATA, "%s: dataset '%s': its targets do not match %s's", c->val,
                           vi->y_name, c->data);
    }
    /* the loss follows y: integer labels -> cross-entropy, float targets -> MSE */
    t->xent = !strcmp(c->loss, "auto") ? !di->regression : !strcmp(c->loss, "xent");
    if (t->xent && di->regression)
        return SP_FAIL(SP_ERR_DATA, "%s: dataset '%s': --loss xent needs integer labels, y is %s",
                       c->data, di->y_name, di->y_dtype);
    if (!t->xent && !di->regression)
        return SP_FAIL(SP_ERR_DATA,
                       "%s: dataset '%s': --loss mse needs float targets (N, T), y holds integer "
                       "labels",
                       c->data, di->y_name);
    t->outputs = (int)(t->xent ? di->classes : di->targets);
    if (di->sample_rank != 1 && di->sample_rank != 3)
        return SP_FAIL(SP_ERR_DATA,
                       "%s: dataset '%s': samples of rank %d; shardprop models take (N, F) or "
                       "(N, C, H, W)",
                       c->data, di->x_name, di->sample_rank);
    const int64_t local_max =
        sp_rank_slice_max(c->batch, c->deterministic ? c->micro_batch : 0, t->size);
    SP_CHECK(sp_model_create(&t->m, c->model, di->sample_shape, di->sample_rank, (int)local_max));
    if (sp_model_output_size(t->m) != (size_t)t->outputs)
        return SP_FAIL(SP_ERR_SPEC,
                       "model spec: the last layer gives %zu outputs but %s has %d %s; end the "
                       "model with dense:%d",
                       sp_model_output_size(t->m), c->data, t->outputs,
                       t->xent ? "classes" : "targets", t->outputs);
    t->dz = malloc(sizeof(float) * (size_t)local_max * (size_t)t->outputs);
    t->rows = malloc(sizeof(double) * (size_t)local_max);
    if (!t->dz || !t->rows) return SP_FAIL(SP_ERR_NOMEM, "out of memory");

    sp_opt_kind kind;
    SP_CHECK(sp_opt_kind_parse(c->optimizer, &kind));
    sp_opt_config oc = sp_opt_config_defaults(kind);
    oc.momentum = (float)c->momentum;
    oc.nesterov = c->nesterov;
    oc.weight_decay = (float)c->weight_decay;
    oc.beta1 = (float)c->beta1, oc.beta2 = (float)c->beta2, oc.eps = (float)c->eps;
    if (kind != SP_OPT_SGD) oc.momentum = 0, oc.nesterov = false;
    SP_CHECK(sp_opt_config_check(&oc));
    SP_CHECK(sp_optim_create(&t->opt, &oc, sp_model_num_params(t->m)));

    t->batches_per_epoch = sp_batches_per_epoch(di->n, c->batch);
    t->total_steps = t->batches_per_epoch * c->epochs;
    if (c->max_steps >= 0 && c->max_steps < t->total_steps) t->total_steps = c->max_steps;
    SP_CHECK(sp_sched_kind_parse(c->schedule, &t->sched.kind));
    t->sched.base_lr = c->lr;
    t->sched.warmup_steps = c->warmup_steps;
    t->sched.step_every = c->lr_step_every;
    t->sched.gamma = c->lr_gamma;
    t->sched.total_steps = t->total_steps > c->warmup_steps ? t->total_steps : c->warmup_steps + 1;
    t->sched.min_lr = c->min_lr;
    SP_CHECK(sp_schedule_check(&t->sched));

    sp_loader_config lc = {.batch = c->batch,
                           .rank = t->rank,
                           .nranks = t->size,
                           .seed = (uint64_t)c->seed,
                           .shuffle = !c->no_shuffle,
                           .cache_mb = (size_t)c->data_cache_mb,
                           .prefetch = !c->no_prefetch,
                           .micro_batch = c->deterministic ? c->micro_batch : 0};
    SP_CHECK(sp_loader_create(&t->ld, t->ds, &lc));
    if (c->deterministic)
        SP_CHECK(sp_det_create(&t->det, t->m, c->micro_batch, t->xent, t->outputs, t->comm,
                               (size_t)(c->bucket_mb * 1024.0 * 1024.0)));
    if (t->vds) {
        lc.micro_batch = 0;
        lc.shuffle = false;
        SP_CHECK(sp_loader_create(&t->vld, t->vds, &lc));
    }
    /* --deterministic reduces through its own reducer: this one's buffer would go unused */
    const size_t bucket_bytes = (size_t)(c->bucket_mb * 1024.0 * 1024.0);
    SP_CHECK(sp_reducer_create(&t->red, t->comm, sp_model_grads(t->m), sp_model_num_params(t->m),
                               t->det ? 0 : bucket_bytes));
    SP_CHECK(sp_trace_init(&t->tr, c->trace, t->rank == 0, (size_t)c->trace_max_events));
    if (c->layer_stats) SP_CHECK(sp_layer_stats_create(&t->ls, t->m, t->rank == 0));
    if (c->trace || c->layer_stats) sp_model_set_layer_hook(t->m, on_layer_, t);
    if (c->metrics && t->rank == 0) {
        t->metrics = fopen(c->metrics, "a");
        if (!t->metrics)
            return SP_FAIL(SP_ERR_IO, "%s: cannot open the metrics file for appending", c->metrics);
    }
    return SP_OK;
}

/* What a rank holds, in bytes: the --dry-run breakdown (peak RSS adds the code, the MPI and
 * HDF5 libraries and the thread stacks). */
typedef struct memory_plan {
    size_t params, grads, activations, optimizer, allreduce, data_cache, data_buffers, total;
} memory_plan;

static memory_plan memory_plan_(trainer *t) {
    memory_plan p;
    const size_t np = sp_model_num_params(t->m);
    p.params = p.grads = np * sizeof(float);
    p.activations = sp_model_memory_bytes(t->m) - 2 * np * sizeof(float);
    p.optimizer = (size_t)sp_optim_num_states(t->opt) * np * sizeof(float);
    p.allreduce = t->det ? sp_det_memory_bytes(t->det) : sp_reducer_memory_bytes(t->red);
    sp_loader_memory_bytes(t->ld, &p.data_cache, &p.data_buffers);
    if (t->vld) {
        size_t c, b;
        sp_loader_memory_bytes(t->vld, &c, &b);
        p.data_cache += c, p.data_buffers += b;
    }
    p.total = p.params + p.grads + p.activations + p.optimizer + p.allreduce + p.data_cache +
              p.data_buffers;
    return p;
}

static void print_plan_(trainer *t, bool json) {
    sp_model *m = t->m;
    /* the buckets that will run: --deterministic's int64 ones (with one rank, those it would
     * run on more) */
    sp_reducer *red = t->det ? sp_det_buckets(t->det) : t->red;
    const size_t elem = red == t->red ? sizeof(float) : sizeof(int64_t);
    const int nb = sp_reducer_num_buckets(red);
    const memory_plan mp = memory_plan_(t);
    if (json) {
        printf("{\"spec\": ");
        sp_json_write_string(stdout, sp_model_spec(m));
        printf(", \"flops_per_sample_forward\": %.6g, \"memory_bytes_per_rank\": %zu",
               sp_model_flops_per_sample(m),
               sp_model_memory_bytes(m) + mp.allreduce +
                   (size_t)sp_optim_num_states(t->opt) * sp_model_num_params(m) * sizeof(float));
        printf(", \"memory\": {\"params\": %zu, \"grads\": %zu, \"activations\": %zu, "
               "\"optimizer\": %zu, \"allreduce\": %zu, \"data_cache\": %zu, "
               "\"data_buffers\": %zu, \"total\": %zu}",
               mp.params, mp.grads, mp.activations, mp.optimizer, mp.allreduce, mp.data_cache,
               mp.data_buffers, mp.total);
        printf(", \"params\": %zu, \"ranks\": %d, \"threads\": %d, \"batch\": %lld, "
               "\"bucket_mb\": %g, \"layers\": [",
               sp_model_num_params(m), t->size, t->threads, (long long)t->cfg->batch,
               t->cfg->bucket_mb);
        for (int i = 0; i < sp_model_num_layers(m); ++i) {
            int64_t sh[3];
            const int r = sp_model_layer_out_shape(m, i, sh);
            size_t w_off = 0, b_off = 0;
            int w_rank;
            int64_t w_shape[4], b_len = 0;
            const bool has = sp_model_layer_params(m, i, &w_off, &w_rank, w_shape, &b_off, &b_len);
            size_t np = 0;
            if (has) {
                np = (size_t)b_len;
                size_t wn = 1;
                for (int d = 0; d < w_rank; ++d) wn *= (size_t)w_shape[d];
                np += wn;
            }
            printf("%s{\"index\": %d, \"name\": \"%s\", \"out_shape\": [", i ? ", " : "", i,
                   sp_model_layer_name(m, i));
            for (int d = 0; d < r; ++d) printf("%s%lld", d ? ", " : "", (long long)sh[d]);
            printf("], \"params\": %zu, \"param_offset\": %zu}", np, has ? w_off : 0);
        }
        printf("], \"buckets\": [");
        for (int i = 0; i < nb; ++i) {
            size_t b0, len;
            sp_reducer_bucket(red, i, &b0, &len);
            printf("%s{\"index\": %d, \"offset\": %zu, \"floats\": %zu, \"bytes\": %zu}",
                   i ? ", " : "", i, b0, len, len * elem);
        }
        printf("]}\n");
        return;
    }
    char *conf = sp_train_config_format(t->cfg);
    printf("configuration:\n");
    for (const char *p = conf; p && *p;) {
        const char *eol = strchr(p, '\n');
        printf("  %.*s\n", (int)(eol ? eol - p : (ptrdiff_t)strlen(p)), p);
        p = eol ? eol + 1 : NULL;
    }
    free(conf);
    const double fps = sp_model_flops_per_sample(m);
    const int64_t local = sp_model_max_batch(m);
    printf("model %s: %zu parameters, %.3g MFLOP per sample forward (~%.3g forward+backward)\n",
           sp_model_spec(m), sp_model_num_params(m), fps / 1e6, 3 * fps / 1e6);
    printf("memory per rank: %.1f MB = parameters %.1f + gradients %.1f + activations and work "
           "buffers for %lld samples %.1f + optimizer state %.1f + %s %.1f + data cache %.1f + "
           "data batch buffers %.1f\n",
           (double)mp.total / 1e6, (double)mp.params / 1e6, (double)mp.grads / 1e6,
           (long long)local, (double)mp.activations / 1e6, (double)mp.optimizer / 1e6,
           t->det ? "fixed-point sums and exchange buffers" : "allreduce receive buffer",
           (double)mp.allreduce / 1e6, (double)mp.data_cache / 1e6, (double)mp.data_buffers / 1e6);
    for (int i = 0; i < sp_model_num_layers(m); ++i) {
        int64_t sh[3];
        const int r = sp_model_layer_out_shape(m, i, sh);
        printf("  %2d %-10s -> (", i, sp_model_layer_name(m, i));
        for (int d = 0; d < r; ++d) printf("%s%lld", d ? ", " : "", (long long)sh[d]);
        printf(")\n");
    }
    printf("gradient buckets (%d, allreduced last layer first):\n", nb);
    for (int i = 0; i < nb; ++i) {
        size_t b0, len;
        sp_reducer_bucket(red, i, &b0, &len);
        printf("  bucket %d: %s [%zu, %zu), %.2f MB\n", i, red == t->red ? "floats" : "int64 sums",
               b0, b0 + len, (double)(len * elem) / 1048576.0);
    }
    if (t->cfg->network && sp_scale_advice(stdout, m, t->cfg->network, t->cfg->batch,
                                           t->cfg->bucket_mb, sp_optim_config(t->opt)) != SP_OK)
        printf("no scaling advice: %s\n", sp_last_error());
}

static void free_trainer_(trainer *t) {
    sp_loader_free(t->ld);
    sp_loader_free(t->vld);
    sp_dataset_close(t->ds);
    sp_dataset_close(t->vds);
    sp_reducer_free(t->red);
    sp_det_free(t->det);
    sp_optim_free(t->opt);
    sp_model_free(t->m);
    free(t->dz);
    free(t->rows);
    sp_trace_free(&t->tr);
    sp_layer_stats_free(t->ls);
    if (t->metrics) fclose(t->metrics);
}

/* Flags agreed by all ranks at every step boundary (OR over ranks). */
enum {
    FLAG_EPOCH_DONE = SP_BATCH_EPOCH_DONE, /* no more batches in this epoch */
    FLAG_SIGNAL = 1u << 1,                 /* a stop signal arrived on some rank */
    FLAG_CKPT_TIME = 1u << 2,              /* --checkpoint-every-minutes elapsed (rank 0's clock) */
    FLAG_OUT_OF_TIME = 1u << 3 /* --max-time / SLURM_JOB_END_TIME is near (rank 0's clock) */
};

/* Where the run stands, for checkpoints. */
typedef struct position {
    int64_t epoch, epoch_batch;
} position;

/* Write DIR/step_<step>.h5 (rank 0), agreed; --checkpoint-errors warn turns a failure into a
 * warning. */
static sp_status checkpoint_(trainer *t, position pos) {
    const sp_train_config *c = t->cfg;
    const double t0 = now_();
    sp_status st = SP_OK;
    char written[4096] = "";
    if (t->rank == 0) {
        char *conf = sp_train_config_format(c);
        sp_train_state ts = {.step = t->step,
                             .epoch = pos.epoch,
                             .epoch_batch = pos.epoch_batch,
                             .seed = (uint64_t)c->seed,
                             .config = conf ? conf : "",
                             .world_size = t->size,
                             .threads = t->threads};
        st = conf ? sp_ckpt_save(c->checkpoint_dir, t->step, (int)c->keep, t->m, t->opt,
                                 t->xent ? "xent" : "mse", &ts, written, sizeof written)
                  : SP_FAIL(SP_ERR_NOMEM, "out of memory");
        free(conf);
    }
    st = sp_comm_agree(t->comm, st, NULL);
    sp_trace_span(&t->tr, SP_TR_CHECKPOINT, -1, t0, sp_trace_now(&t->tr));
    t->last_ckpt_s = now_() - t0;
    t->last_ckpt_time = now_();
    if (st != SP_OK && !strcmp(c->checkpoint_errors, "warn")) {
        if (t->talk) {
            if (t->tty) printf("\n");
            fprintf(stderr, "shardprop train: warning: checkpoint at step %lld failed: %s\n",
                    (long long)t->step, sp_last_error());
        }
        return SP_OK;
    }
    if (st == SP_OK && t->talk && !c->quiet && !t->tty)
        printf("checkpoint: %s (%.2f s)\n", written, t->last_ckpt_s);
    return st;
}

/* Decisions only rank 0's clock makes; the agreement spreads them. */
static uint32_t clock_flags_(trainer *t) {
    const sp_train_config *c = t->cfg;
    if (t->rank != 0) return 0;
    uint32_t f = 0;
    const double now = now_();
    if (c->checkpoint_dir && c->checkpoint_every_minutes > 0 &&
        now - t->last_ckpt_time >= c->checkpoint_every_minutes * 60.0)
        f |= FLAG_CKPT_TIME;
    if (t->deadline > 0) {
        /* stop while there is time for two more steps and a checkpoint, with a margin */
        const double per_step =
            t->step > t->first_step ? (now - t->t_start) / (double)(t->step - t->first_step) : 0;
        if (now + 2 * per_step + 2 * t->last_ckpt_s + 5.0 >= t->deadline) f |= FLAG_OUT_OF_TIME;
    }
    return f;
}

/* Test-only fault injection (documented in the README's testing section):
 * SHARDPROP_TEST_STALL_RANK=r and SHARDPROP_TEST_STALL_STEP=s make rank r sleep for an hour
 * inside step s; SHARDPROP_TEST_STEP_DELAY_MS=ms slows every step down. */
static void test_hooks_(trainer *t) {
    static int stall_rank = -2, delay_ms = -1;
    static long long stall_step = -1;
    if (stall_rank == -2) {
        const char *r = getenv("SHARDPROP_TEST_STALL_RANK"),
                   *s = getenv("SHARDPROP_TEST_STALL_STEP"),
                   *d = getenv("SHARDPROP_TEST_STEP_DELAY_MS");
        stall_rank = r ? atoi(r) : -1;
        stall_step = s ? atoll(s) : -1;
        delay_ms = d ? atoi(d) : 0;
    }
    if (stall_rank == t->rank && stall_step == t->step + 1) {
        fprintf(stderr, "rank %d: test hook: stalling in step %lld\n", t->rank,
                (long long)t->step + 1);
        sleep(3600);
    }
    if (delay_ms > 0) {
        /* the whole delay, even when a signal interrupts it (as a long step would) */
        struct timespec ts = {delay_ms / 1000, (long)(delay_ms % 1000) * 1000000L};
        while (nanosleep(&ts, &ts) != 0) continue;
    }
}

/* A "key = value" line of a stored configuration ("" if absent). */
static void config_value_(const char *conf, const char *key, char *out, size_t cap) {
    out[0] = '\0';
    const size_t kl = strlen(key);
    for (const char *p = conf; p && *p;) {
        const char *eol = strchr(p, '\n');
        if (!strncmp(p, key, kl) && !strncmp(p + kl, " = ", 3)) {
            const char *v = p + kl + 3;
            size_t n = eol ? (size_t)(eol - v) : strlen(v);
            if (n >= cap) n = cap - 1;
            memcpy(out, v, n);
            out[n] = '\0';
            return;
        }
        p = eol ? eol + 1 : NULL;
    }
}

/* Resume or init-from: load what the checkpoint holds into this rank (every rank reads the same
 * file; rank 0 chose it). */
static sp_status load_start_(trainer *t, const char *path, bool resume, position *pos) {
    const sp_train_config *c = t->cfg;
    SP_CHECK(sp_ckpt_load_params(path, t->m));
    if (!resume) return SP_OK;
    sp_ckpt_info info;
    sp_status st = sp_ckpt_read_info(path, &info);
    if (st == SP_OK && (!info.has_train || !info.has_optimizer))
        st = SP_FAIL(SP_ERR_DATA,
                     "%s: not a training checkpoint (no /train or /optimizer): use --init-from "
                     "to start a new run from its parameters",
                     path);
    if (st == SP_OK && strcmp(info.loss, t->xent ? "xent" : "mse"))
        st = SP_FAIL(SP_ERR_ARG, "%s: the run used --loss %s, this one %s", path, info.loss,
                     t->xent ? "xent" : "mse");
    if (st == SP_OK && info.train.seed != (uint64_t)c->seed)
        st = SP_FAIL(SP_ERR_ARG,
                     "%s: the run used --seed %llu, this one %lld: resuming needs the same seed "
                     "(the data order and dropout depend on it)",
                     path, (unsigned long long)info.train.seed, (long long)c->seed);
    if (st == SP_OK) {
        char v[64], mine[64];
        /* a --deterministic run continues only with its micro-batch size (the sums depend on
         * it); config_value_ gives "" for checkpoints older than the flag */
        const char *keys[] = {"batch", "no-shuffle", "data", "micro-batch"};
        char *conf = sp_train_config_format(c);
        for (int k = 0; k < (c->deterministic ? 4 : 3) && st == SP_OK && conf; ++k) {
            config_value_(info.train.config, keys[k], v, sizeof v);
            config_value_(conf, keys[k], mine, sizeof mine);
            if (v[0] && strcmp(v, mine))
                st = SP_FAIL(SP_ERR_ARG,
                             "%s: the run used %s = %s, this one %s: resuming needs the same "
                             "value",
                             path, keys[k], v, mine);
        }
        free(conf);
    }
    if (st == SP_OK) st = sp_ckpt_load_optimizer(path, t->m, t->opt);
    if (st == SP_OK) {
        t->step = info.train.step;
        pos->epoch = info.train.epoch;
        pos->epoch_batch = info.train.epoch_batch;
    }
    sp_ckpt_info_free(&info);
    return st;
}

/* Which checkpoint to start from (rank 0 decides; every rank gets the path). "" = fresh. */
static sp_status choose_start_(trainer *t, char *path, size_t cap, bool *resume) {
    const sp_train_config *c = t->cfg;
    sp_status st = SP_OK;
    path[0] = '\0';
    *resume = c->resume != NULL;
    if (t->rank == 0) {
        if (c->resume && !strcmp(c->resume, "auto")) {
            bool found = false;
            st = sp_ckpt_latest(c->checkpoint_dir, path, cap, &found);
            if (st == SP_OK && !found) path[0] = '\0';
        } else if (c->resume || c->init_from) {
            snprintf(path, cap, "%s", c->resume ? c->resume : c->init_from);
        }
    }
    SP_CHECK(sp_comm_agree(t->comm, st, NULL));
    return sp_comm_bcast_bytes(t->comm, path, cap, 0);
}

static sp_status write_complete_marker_(trainer *t) {
    sp_status st = SP_OK;
    if (t->rank == 0 && t->cfg->checkpoint_dir) {
        char path[4096], line[32];
        snprintf(path, sizeof path, "%s/COMPLETE", t->cfg->checkpoint_dir);
        const int n = snprintf(line, sizeof line, "%lld\n", (long long)t->step);
        st = sp_afile_write_file(path, line, (size_t)n, "completion marker");
    }
    st = sp_comm_agree(t->comm, st, NULL);
    /* --checkpoint-errors warn: the marker is part of checkpointing; --out still gets written */
    if (st != SP_OK && !strcmp(t->cfg->checkpoint_errors, "warn")) {
        if (t->talk) fprintf(stderr, "shardprop train: warning: %s\n", sp_last_error());
        return SP_OK;
    }
    return st;
}

static void epoch_report_(trainer *t, int64_t epoch, double ep_time, double last_loss,
                          double last_acc, double val_loss, double val_acc,
                          const sp_loader_stats *ls0) {
    const sp_train_config *c = t->cfg;
    sp_reducer_stats rs;
    sp_reducer_get_stats(t->det && sp_det_reducer(t->det) ? sp_det_reducer(t->det) : t->red, &rs);
    sp_loader_stats ls1;
    sp_loader_get_stats(t->ld, &ls1);
    if (!t->talk) return;
    if (t->tty && !c->quiet) printf("\n");
    if (!c->quiet) {
        printf("epoch %lld/%lld  loss %.4f", (long long)epoch + 1, (long long)c->epochs, last_loss);
        if (t->xent) printf("  accuracy %.4f", last_acc);
        if (t->vld) {
            printf("  val_loss %.4f", val_loss);
            if (t->xent) printf("  val_accuracy %.4f", val_acc);
        }
        printf("  %.1fs  %.0f samples/s\n", ep_time, t->ep_n / ep_time);
        fflush(stdout);
    }
    if (t->metrics) {
        sp_json j;
        sp_json_begin(&j, t->metrics);
        sp_json_str(&j, "event", "epoch");
        sp_json_int(&j, "epoch", epoch + 1);
        sp_json_int(&j, "step", t->step);
        sp_json_num(&j, "loss", last_loss);
        if (c->deterministic) json_hex_(&j, "loss_hex", last_loss);
        sp_json_num(&j, "accuracy", last_acc);
        sp_json_num(&j, "val_loss", val_loss);
        sp_json_num(&j, "val_accuracy", val_acc);
        sp_json_num(&j, "time_s", ep_time);
        sp_json_num(&j, "samples_per_s", t->ep_n / ep_time);
        sp_json_num(&j, "compute_s", t->compute_s);
        sp_json_num(&j, "comm_s", rs.comm_s);
        sp_json_num(&j, "comm_hidden_fraction",
                    rs.comm_s > 0 ? 1.0 - rs.exposed_s / rs.comm_s : NAN);
        sp_json_num(&j, "io_wait_s", ls1.io_wait_s - ls0->io_wait_s);
        sp_json_end(&j);
    }
}

static sp_status train_(trainer *t) {
    const sp_train_config *c = t->cfg;
    SP_CHECK(sp_comm_agree(t->comm, setup_local_(t), NULL));

    /* the same initial parameters everywhere: seeded init (or a checkpoint), broadcast anyway,
     * verified */
    sp_model_init_params(t->m, (uint64_t)c->seed);
    position pos = {0, 0};
    char start[4096];
    bool resume = false;
    SP_CHECK(choose_start_(t, start, sizeof start, &resume));
    if (start[0]) SP_CHECK(sp_comm_agree(t->comm, load_start_(t, start, resume, &pos), NULL));
    SP_CHECK(sp_comm_bcast_floats(t->comm, sp_model_params(t->m), sp_model_num_params(t->m), 0));
    SP_CHECK(check_params_(t));
    t->first_step = t->step;

    char layout[8192];
    int warnings = 0;
    SP_CHECK(sp_comm_layout_report(t->comm, t->threads, layout, sizeof layout, &warnings));
    if (c->dry_run) {
        if (t->rank == 0) {
            print_plan_(t, c->json);
            if (!c->json) fputs(layout, stdout);
        }
        return SP_OK;
    }
    /* where the run starts from is worth a line even in --quiet runs (job logs) */
    if (t->talk && start[0]) {
        printf("%s %s: step %lld, epoch %lld, batch %lld of the epoch\n",
               resume ? "resuming from" : "initialized from", start, (long long)t->step,
               (long long)pos.epoch + 1, (long long)pos.epoch_batch);
        fflush(stdout);
    }
    if (t->talk && (!c->quiet || warnings)) {
        char line[512];
        sp_dataset_describe(t->ds, line, sizeof line);
        printf("data: %s\n", line);
        if (t->vds) {
            sp_dataset_describe(t->vds, line, sizeof line);
            printf("validation: %s\n", line);
        }
        printf("model: %s (%zu parameters), loss %s, optimizer %s lr %g, batch %lld (%lld per "
               "rank at most)\n",
               c->model, sp_model_num_params(t->m), t->xent ? "xent" : "mse", c->optimizer, c->lr,
               (long long)c->batch, (long long)sp_model_max_batch(t->m));
        printf("reading %.1f MB per epoch per rank (rank 0), %lld steps in %lld epochs\n",
               (double)sp_loader_bytes_per_epoch(t->ld) / 1e6, (long long)t->total_steps,
               (long long)c->epochs);
        fputs(layout, stdout);
        fflush(stdout);
    }
    if (c->max_steps == 0) {
        if (c->out) SP_CHECK(write_model_(t, c->out, 0, 0));
        if (t->talk && !c->quiet)
            printf("max-steps 0: wrote the initialized model%s%s\n", c->out ? " to " : "",
                   c->out ? c->out : "");
        return SP_OK;
    }
    SP_CHECK(sp_watchdog_start(t->comm, c->collective_timeout));
    SP_CHECK(sp_trace_start(&t->tr, t->comm));
    t->t_start = now_();
    t->log_t0 = t->t_start;
    t->last_ckpt_time = t->t_start;
    double last_loss = NAN, last_acc = NAN, val_loss = NAN, val_acc = NAN;
    bool stop = t->step >= t->total_steps, stopped_early = false;
    int64_t epoch = pos.epoch;
    position cur = pos; /* where the run stands after the last step */
    for (; epoch < c->epochs && !stop; ++epoch) {
        const int64_t first = epoch == pos.epoch ? pos.epoch_batch : 0;
        SP_CHECK(sp_comm_agree(t->comm, sp_loader_start_epoch(t->ld, epoch, first), NULL));
        t->ep_loss = t->ep_n = t->ep_correct = 0;
        t->ep_t0 = now_();
        t->compute_s = 0;
        sp_loader_stats ls0;
        sp_loader_get_stats(t->ld, &ls0);
        sp_reducer_reset_stats(t->red);
        if (t->det && sp_det_reducer(t->det)) sp_reducer_reset_stats(sp_det_reducer(t->det));
        int64_t done_batches = first;
        for (;;) {
            sp_batch b;
            uint32_t flags = (sp_signals_pending() ? FLAG_SIGNAL : 0u) | clock_flags_(t);
            /* agree before the collective step: a rank that failed to read stops everyone, a
             * signal on any rank stops everyone at the same step */
            sp_watchdog_set_step(t->comm, t->step + 1);
            sp_loader_stats io0 = {0};
            const double ta = sp_trace_now(&t->tr);
            if (t->tr.on) sp_loader_get_stats(t->ld, &io0);
            SP_CHECK(sp_next_batch_agreed(t->ld, t->comm, SP_OK, &b, &flags));
            const double tz = sp_trace_now(&t->tr);
            const position here = {epoch, done_batches};
            if (flags & (FLAG_SIGNAL | FLAG_OUT_OF_TIME)) {
                if (!c->checkpoint_dir)
                    return SP_FAIL(SP_ERR_INTERRUPT,
                                   "stopped by %s at step %lld without --checkpoint-dir: the "
                                   "progress since the start is lost",
                                   (flags & FLAG_SIGNAL) ? "a signal" : "the time limit",
                                   (long long)t->step);
                SP_CHECK(checkpoint_(t, here));
                if (t->talk) {
                    if (t->tty) printf("\n");
                    printf("stopped by %s: checkpointed at step %lld (epoch %lld, batch %lld); "
                           "resume with --resume auto --checkpoint-dir %s\n",
                           (flags & FLAG_SIGNAL) ? "a signal" : "the time limit",
                           (long long)t->step, (long long)epoch + 1, (long long)done_batches,
                           c->checkpoint_dir);
                    fflush(stdout);
                }
                stopped_early = true;
                stop = true;
                break;
            }
            if (flags & FLAG_CKPT_TIME) SP_CHECK(checkpoint_(t, here));
            if (flags & FLAG_EPOCH_DONE) break;
            sp_trace_step_begin(&t->tr, t->step + 1);
            if (t->tr.on) {
                sp_loader_stats io1;
                sp_loader_get_stats(t->ld, &io1);
                const double td = ta + (io1.io_wait_s - io0.io_wait_s);
                sp_trace_span(&t->tr, SP_TR_DATA_WAIT, -1, ta, td);
                sp_trace_span(&t->tr, SP_TR_AGREE, -1, td, tz);
            }
            if (t->ls)
                sp_layer_stats_arm(t->ls, (t->step + 1) % c->log_every == 0 ||
                                              done_batches + 1 == t->batches_per_epoch ||
                                              t->step + 1 == t->total_steps);
            test_hooks_(t);
            double s[4];
            if (t->det) {
                const sp_step_ctx ctx = {.training = true,
                                         .seed = (uint64_t)c->seed,
                                         .step = t->step,
                                         .sample_ids = b.ids};
                SP_CHECK(sp_det_step(t->det, t->comm, &b, &ctx, s, &t->compute_s));
                double r0, r1;
                sp_det_reduce_times(t->det, &r0, &r1);
                sp_trace_compute_end_at(&t->tr, r0);
                if (t->tr.on) sp_trace_span(&t->tr, SP_TR_ALLREDUCE_WAIT, -1, r0, r1);
                if (sp_det_reducer(t->det)) sp_trace_buckets(&t->tr, sp_det_reducer(t->det));
            } else {
                SP_CHECK(run_batch_(t, &b, true, s));
            }
            /* the reduced gradient, one pass (src/train/nonfinite.c); the verdict travels with
             * the loss sums (under --deterministic those are global already), so every rank
             * takes the same decision */
            sp_nonfinite_test_hook(t->m, t->rank, t->step + 1);
            sp_nonfinite_scan nf;
            sp_nonfinite_scan_grads(t->m, &nf);
            s[3] = nf.first_layer >= 0;
            if (t->det)
                SP_CHECK(sp_comm_sum_doubles(t->comm, s + 3, 1));
            else
                SP_CHECK(sp_comm_sum_doubles(t->comm, s, 4));
            const bool dropped = !isfinite(s[0]) || s[3] > 0;
            if (dropped)
                SP_CHECK(sp_nonfinite_handle(t->m, t->skip_nonfinite, t->step + 1, s[0], s[3] > 0,
                                             &nf, &t->nonfinite_skipped, t->talk));
            const double t0 = now_();
            float *g = sp_model_grads(t->m);
            if (t->ls) sp_layer_stats_before_update(t->ls, t->m);
            if (c->clip_norm > 0 && !dropped)
                sp_clip_grad_norm(g, sp_model_num_params(t->m), c->clip_norm);
            const double lr = sp_schedule_lr(&t->sched, t->step);
            if (!dropped) sp_optim_step(t->opt, sp_model_params(t->m), g, (float)lr);
            t->compute_s += now_() - t0;
            sp_trace_span(&t->tr, SP_TR_OPTIMIZER, -1, t0, sp_trace_now(&t->tr));
            t->step++;
            if (t->ls && sp_layer_stats_armed(t->ls)) {
                const double tl = sp_trace_now(&t->tr);
                SP_CHECK(sp_layer_stats_after_update(t->ls, t->m, t->comm, t->metrics, t->step,
                                                     epoch + 1, lr));
                sp_trace_span(&t->tr, SP_TR_LAYER_STATS, -1, tl, sp_trace_now(&t->tr));
            }
            sp_trace_span(&t->tr, SP_TR_STEP, -1, t->tr.step_t0, sp_trace_now(&t->tr));
            done_batches++;
            cur = (position){epoch, done_batches};
            if (!dropped) {
                t->log_loss += s[0], t->log_correct += s[1], t->log_n += s[2];
                t->ep_loss += s[0], t->ep_correct += s[1], t->ep_n += s[2];
            }
            if (c->check_every > 0 && t->step % c->check_every == 0) SP_CHECK(check_params_(t));
            if (t->talk) {
                log_step_(t, epoch, false);
                progress_(t, epoch, done_batches);
            }
            if (c->checkpoint_dir && c->checkpoint_every > 0 &&
                t->step % c->checkpoint_every == 0 && t->step < t->total_steps)
                SP_CHECK(checkpoint_(t, (position){epoch, done_batches}));
            if (t->step >= t->total_steps) {
                stop = true;
                break;
            }
        }
        if (stopped_early) break;
        const double ep_time = now_() - t->ep_t0;
        last_loss = t->ep_n > 0 ? t->ep_loss / (t->ep_n * (t->xent ? 1 : t->outputs)) : NAN;
        last_acc = t->xent && t->ep_n > 0 ? t->ep_correct / t->ep_n : NAN;
        if (t->vld) SP_CHECK(evaluate_(t, t->vld, &val_loss, &val_acc));
        epoch_report_(t, epoch, ep_time, last_loss, last_acc, val_loss, val_acc, &ls0);
        if (cur.epoch == epoch && cur.epoch_batch >= t->batches_per_epoch)
            cur = (position){epoch + 1, 0};
    }
    sp_watchdog_stop(t->comm);
    if (stopped_early) return SP_OK;
    if (t->talk && t->log_n > 0) log_step_(t, epoch - 1, true);
    SP_CHECK(check_params_(t));
    const double total = now_() - t->t_start;
    /* the final state, so that --resume auto on a finished run has nothing left to do */
    if (c->checkpoint_dir) {
        SP_CHECK(checkpoint_(t, cur));
        SP_CHECK(write_complete_marker_(t));
    }
    if (c->out) SP_CHECK(write_model_(t, c->out, cur.epoch, cur.epoch_batch));
    if (t->talk) {
        printf("done: %lld steps in %.1fs, final loss %.4f", (long long)t->step, total, last_loss);
        if (t->xent) printf(", accuracy %.4f", last_acc);
        if (t->vld && t->xent) printf(", val_accuracy %.4f", val_acc);
        if (c->out) printf("; model written to %s", c->out);
        if (t->nonfinite_skipped)
            printf("; %lld steps skipped (non-finite)", (long long)t->nonfinite_skipped);
        printf("\n");
        if (t->metrics) {
            sp_json j;
            sp_json_begin(&j, t->metrics);
            sp_json_str(&j, "event", "summary");
            sp_json_int(&j, "steps", t->step);
            sp_json_int(&j, "epochs", epoch);
            sp_json_num(&j, "time_s", total);
            sp_json_num(&j, "loss", last_loss);
            sp_json_num(&j, "accuracy", last_acc);
            sp_json_num(&j, "val_loss", val_loss);
            sp_json_num(&j, "val_accuracy", val_acc);
            sp_json_int(&j, "ranks", t->size);
            sp_json_int(&j, "threads", t->threads);
            sp_json_int(&j, "params", (int64_t)sp_model_num_params(t->m));
            sp_json_int(&j, "nonfinite_skipped", t->nonfinite_skipped);
            sp_json_end(&j);
        }
    }
    return SP_OK;
}

sp_status sp_train_run(const sp_train_config *cfg, sp_comm *comm) {
    /* from here on a stop signal is a request, handled at the first step boundary */
    sp_signals_install();
    if (cfg->max_memory_mb > 0) sp_mem_set_limit((size_t)cfg->max_memory_mb << 20);
    trainer t;
    memset(&t, 0, sizeof t);
    t.cfg = cfg;
    t.comm = comm;
    t.rank = sp_comm_rank(comm);
    t.size = sp_comm_size(comm);
    t.threads = sp_set_threads(cfg->threads);
    t.talk = t.rank == 0;
    t.tty = stdout_is_terminal_();
    t.skip_nonfinite = cfg->on_nonfinite && !strcmp(cfg->on_nonfinite, "skip");
    /* the time limit: --max-time, else the end of the SLURM allocation (less a margin for the
     * shutdown); rank 0's clock decides, the step agreement tells the others */
    if (cfg->max_time > 0) {
        t.deadline = now_() + cfg->max_time * 60.0;
    } else {
        const char *end = getenv("SLURM_JOB_END_TIME");
        const long long e = end ? atoll(end) : 0;
        if (e > 0) t.deadline = now_() + (double)(e - (long long)time(NULL)) - 30.0;
    }
    sp_status st = train_(&t);
    /* the straggler line, and the --trace file (collective; every rank got here together) */
    if (st == SP_OK && t.m && !cfg->dry_run)
        st = sp_trace_finish(&t.tr, comm, cfg->trace, t.m, t.red, t.metrics, t.talk);
    free_trainer_(&t);
    return st;
}
