/* Step, epoch and summary lines and records of a training run (train/report.h). */
#include "train/report.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "comm/comm.h"
#include "util/json.h"

bool sp_report_stdout_is_terminal(void) {
    if (!isatty(STDOUT_FILENO)) return false;
    if (!getenv("OMPI_COMM_WORLD_SIZE") && !getenv("PMI_RANK") && !getenv("PMIX_RANK") &&
        !getenv("SLURM_PROCID"))
        return true;
    /* Under mpirun the ranks' stdout is a pseudo-terminal that the launcher made even when the
     * launcher itself writes to a file (a SLURM log), so ask about the launcher's stdout. */
    char path[64], link[256];
    snprintf(path, sizeof path, "/proc/%d/fd/1", (int)getppid());
    const ssize_t n = readlink(path, link, sizeof link - 1);
    if (n <= 0) return false;
    link[n] = '\0';
    return !strncmp(link, "/dev/pts/", 9) || !strncmp(link, "/dev/tty", 8);
}

/* --deterministic: a number with every bit (C99 %a), so that runs can be compared exactly. */
static void json_hex_(sp_json *j, const char *key, double v) {
    char h[64];
    snprintf(h, sizeof h, "%a", v);
    sp_json_str(j, key, h);
}

static void fmt_eta_(char *buf, size_t cap, double s) {
    if (!isfinite(s) || s < 0) s = 0;
    const long v = (long)(s + 0.5);
    if (v >= 3600)
        snprintf(buf, cap, "%ld:%02ld:%02ld", v / 3600, v / 60 % 60, v % 60);
    else
        snprintf(buf, cap, "%ld:%02ld", v / 60, v % 60);
}

/* Positions with a label per sample: T of a language model, else 1. */
static double per_sample_(const sp_report *r) {
    return r->xent && r->positions > 1 ? r->positions : 1;
}

/* The mean loss of n samples whose losses sum to sum (mse: per element; a language model: per
 * token). */
static double mean_loss_(const sp_report *r, double sum, double n) {
    return sum / (n * (r->xent ? per_sample_(r) : r->outputs));
}

/* A language model's loss in bits per token (per byte for byte-level tokens). */
static void json_bits_(const sp_report *r, sp_json *j, const char *key, double loss) {
    if (r->positions > 1) sp_json_num(j, key, loss / log(2.0));
}

void sp_report_start(sp_report *r, double now) {
    r->t_start = r->log_t0 = now;
    r->last_loss = r->last_acc = NAN;
}

void sp_report_epoch_begin(sp_report *r, double now) {
    r->ep_loss = r->ep_n = r->ep_correct = 0;
    r->ep_t0 = now;
}

/* The step line (a multiple of --log-every, or forced) and its record. */
static void log_line_(sp_report *r, int64_t step, int64_t epoch, double lr, bool force) {
    if (!force && step % r->log_every != 0) return;
    if (r->log_n <= 0) return;
    const double dt = sp_comm_wtime() - r->log_t0;
    const double loss = mean_loss_(r, r->log_loss, r->log_n);
    const double acc = r->log_correct / (r->log_n * per_sample_(r));
    const double sps = dt > 0 ? r->log_n / dt : 0;
    if (!r->tty && !r->quiet) {
        printf("step %lld/%lld  epoch %lld  loss %.4f", (long long)step, (long long)r->total_steps,
               (long long)epoch + 1, loss);
        if (r->positions > 1) printf(" (%.3f bits/token)", loss / log(2.0));
        if (r->xent) printf("  accuracy %.4f", acc);
        if (r->positions > 1)
            printf("  lr %.4g  %.0f tokens/s\n", lr, sps * r->positions);
        else
            printf("  lr %.4g  %.0f samples/s\n", lr, sps);
        fflush(stdout);
    }
    if (r->metrics) {
        sp_json j;
        sp_json_begin(&j, r->metrics);
        sp_json_str(&j, "event", "step");
        sp_json_int(&j, "step", step);
        sp_json_int(&j, "epoch", epoch + 1);
        sp_json_num(&j, "loss", loss);
        if (r->exact) json_hex_(&j, "loss_hex", loss);
        json_bits_(r, &j, "bits_per_token", loss);
        if (r->xent)
            sp_json_num(&j, "accuracy", acc);
        else
            sp_json_null(&j, "accuracy");
        sp_json_num(&j, "lr", lr);
        sp_json_num(&j, "samples_per_s", sps);
        if (r->positions > 1) sp_json_num(&j, "tokens_per_s", sps * r->positions);
        sp_json_end(&j);
    }
    r->log_loss = r->log_n = r->log_correct = 0;
    r->log_t0 = sp_comm_wtime();
}

/* The progress line on a terminal: a few updates a second, and always the epoch's last batch. */
static void progress_(sp_report *r, int64_t step, int64_t epoch, int64_t batch) {
    if (!r->tty || r->quiet) return;
    const double now = sp_comm_wtime();
    if (now - r->last_progress < 0.25 && batch < r->batches_per_epoch) return;
    r->last_progress = now;
    const double dt = now - r->ep_t0;
    const double sps = dt > 0 ? r->ep_n / dt : 0;
    const double loss = r->ep_n > 0 ? mean_loss_(r, r->ep_loss, r->ep_n) : NAN;
    const double per_step = step > 0 ? (now - r->t_start) / (double)step : 0;
    char eta[32];
    fmt_eta_(eta, sizeof eta, per_step * (double)(r->total_steps - step));
    printf("\repoch %lld  %lld/%lld  loss %.4f", (long long)epoch + 1, (long long)batch,
           (long long)r->batches_per_epoch, loss);
    if (r->xent)
        printf("  acc %.4f", r->ep_n > 0 ? r->ep_correct / (r->ep_n * per_sample_(r)) : 0.0);
    printf("  %.0f samples/s  ETA %s   ", sps, eta);
    fflush(stdout);
}

void sp_report_step(sp_report *r, const sp_step_result *res, int64_t step, int64_t epoch,
                    int64_t batch, double lr) {
    if (!res->nonfinite) {
        r->log_loss += res->loss_sum, r->log_correct += res->correct, r->log_n += res->samples;
        r->ep_loss += res->loss_sum, r->ep_correct += res->correct, r->ep_n += res->samples;
    }
    if (!r->talk) return;
    log_line_(r, step, epoch, lr, false);
    progress_(r, step, epoch, batch);
}

void sp_report_flush(sp_report *r, int64_t step, int64_t epoch, double lr) {
    if (r->talk && r->log_n > 0) log_line_(r, step, epoch, lr, true);
}

void sp_report_epoch_end(sp_report *r, double now) {
    r->ep_time = now - r->ep_t0;
    r->last_loss = r->ep_n > 0 ? mean_loss_(r, r->ep_loss, r->ep_n) : NAN;
    r->last_acc = r->xent && r->ep_n > 0 ? r->ep_correct / (r->ep_n * per_sample_(r)) : NAN;
}

void sp_report_epoch(sp_report *r, int64_t epoch, int64_t step, const sp_epoch_stats *e) {
    if (!r->talk) return;
    const double t = r->ep_time;
    if (r->tty && !r->quiet) printf("\n");
    if (!r->quiet) {
        printf("epoch %lld/%lld  loss %.4f", (long long)epoch + 1, (long long)r->epochs,
               r->last_loss);
        if (r->xent) printf("  accuracy %.4f", r->last_acc);
        if (e->has_val) {
            printf("  val_loss %.4f", e->val_loss);
            if (r->positions > 1) printf(" (%.3f bits/token)", e->val_loss / log(2.0));
            if (r->xent) printf("  val_accuracy %.4f", e->val_acc);
        }
        printf("  %.1fs  %.0f samples/s\n", t, r->ep_n / t);
        fflush(stdout);
    }
    if (r->metrics) {
        sp_json j;
        sp_json_begin(&j, r->metrics);
        sp_json_str(&j, "event", "epoch");
        sp_json_int(&j, "epoch", epoch + 1);
        sp_json_int(&j, "step", step);
        sp_json_num(&j, "loss", r->last_loss);
        if (r->exact) json_hex_(&j, "loss_hex", r->last_loss);
        sp_json_num(&j, "accuracy", r->last_acc);
        sp_json_num(&j, "val_loss", e->val_loss);
        if (r->exact && e->has_val) json_hex_(&j, "val_loss_hex", e->val_loss);
        sp_json_num(&j, "val_accuracy", e->val_acc);
        json_bits_(r, &j, "bits_per_token", r->last_loss);
        json_bits_(r, &j, "val_bits_per_token", e->val_loss);
        sp_json_num(&j, "time_s", t);
        sp_json_num(&j, "samples_per_s", r->ep_n / t);
        if (r->positions > 1) sp_json_num(&j, "tokens_per_s", r->ep_n * r->positions / t);
        sp_json_num(&j, "compute_s", e->compute_s);
        sp_json_num(&j, "comm_s", e->comm_s);
        sp_json_num(&j, "comm_hidden_fraction",
                    e->comm_s > 0 ? 1.0 - e->exposed_s / e->comm_s : NAN);
        sp_json_num(&j, "io_wait_s", e->io_wait_s);
        sp_json_num(&j, "read_mb", e->read_mb);
        sp_json_num(&j, "read_mb_per_s", e->read_s > 0 ? e->read_mb / e->read_s : NAN);
        sp_json_end(&j);
    }
}

void sp_report_summary(sp_report *r, const sp_run_summary *s) {
    if (!r->talk) return;
    printf("done: %lld steps in %.1fs, final loss %.4f", (long long)s->steps, s->time_s,
           r->last_loss);
    if (r->xent) printf(", accuracy %.4f", r->last_acc);
    if (s->has_val && r->xent) printf(", val_accuracy %.4f", s->val_acc);
    if (s->has_val && r->positions > 1)
        printf(", val_loss %.4f (%.3f bits/token)", s->val_loss, s->val_loss / log(2.0));
    if (s->best_metric && s->best_epoch > 0)
        printf(", best %s %.4f at epoch %lld", s->best_metric, s->best_value,
               (long long)s->best_epoch);
    if (s->early_stopped) printf(" (stopped early)");
    if (s->out) printf("; model written to %s", s->out);
    if (s->nonfinite_skipped)
        printf("; %lld steps skipped (non-finite)", (long long)s->nonfinite_skipped);
    printf("\n");
    if (!r->metrics) return;
    sp_json j;
    sp_json_begin(&j, r->metrics);
    sp_json_str(&j, "event", "summary");
    sp_json_int(&j, "steps", s->steps);
    sp_json_int(&j, "epochs", s->epochs);
    sp_json_num(&j, "time_s", s->time_s);
    sp_json_num(&j, "loss", r->last_loss);
    sp_json_num(&j, "accuracy", r->last_acc);
    sp_json_num(&j, "val_loss", s->val_loss);
    sp_json_num(&j, "val_accuracy", s->val_acc);
    json_bits_(r, &j, "bits_per_token", r->last_loss);
    json_bits_(r, &j, "val_bits_per_token", s->val_loss);
    sp_json_int(&j, "ranks", s->ranks);
    sp_json_int(&j, "threads", s->threads);
    sp_json_int(&j, "params", s->params);
    sp_json_int(&j, "nonfinite_skipped", s->nonfinite_skipped);
    if (s->best_metric) {
        char key[32];
        snprintf(key, sizeof key, "best_%s", s->best_metric);
        sp_json_bool(&j, "early_stopped", s->early_stopped);
        if (s->best_epoch > 0)
            sp_json_int(&j, "best_epoch", s->best_epoch);
        else
            sp_json_null(&j, "best_epoch");
        sp_json_num(&j, key, s->best_value);
        if (r->exact) json_hex_(&j, "best_value_hex", s->best_value);
    }
    sp_json_end(&j);
}
