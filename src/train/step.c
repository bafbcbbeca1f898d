/* One training step (train/step.h). */
#include "train/step.h"

#include <math.h>
#include <stdlib.h>

#include "optim/clip.h"
#include "shardprop/loss.h"
#include "util/status.h"

struct sp_step {
    sp_model *m;
    sp_optimizer *opt;
    sp_exchange *x;
    sp_step_config cfg;
    float *dz;    /* (max batch, positions, outputs): the error signal at the output */
    double *rows; /* (max batch, positions): each position's loss, then each sample's */
    size_t bytes;
};

sp_status sp_step_create(sp_step **out, sp_model *m, sp_optimizer *opt, sp_exchange *x,
                         const sp_step_config *cfg) {
    *out = NULL;
    sp_step *s = calloc(1, sizeof *s);
    const size_t T = cfg->positions > 1 ? (size_t)cfg->positions : 1;
    const size_t B = (size_t)sp_model_max_batch(m) * T, k = (size_t)cfg->outputs;
    if (s) {
        s->dz = malloc(B * k * sizeof *s->dz);
        s->rows = malloc(B * sizeof *s->rows);
    }
    if (!s || !s->dz || !s->rows) {
        sp_step_free(s);
        return SP_FAIL(SP_ERR_NOMEM, "out of memory");
    }
    s->m = m, s->opt = opt, s->x = x, s->cfg = *cfg;
    s->cfg.positions = (int)T;
    s->bytes = B * (k * sizeof *s->dz + sizeof *s->rows);
    *out = s;
    return SP_OK;
}

void sp_step_free(sp_step *s) {
    if (!s) return;
    free(s->dz);
    free(s->rows);
    free(s);
}

size_t sp_step_memory_bytes(const sp_step *s) {
    return s->bytes;
}

/* Forward and the loss of this rank's slice: the model's output, the loss of each sample, and
 * dz, the gradient of the mean loss over the step's global batch (every rank and micro-step
 * scales by the same global count; a language model's loss is the mean over every token). */
static sp_status forward_loss_(sp_step *s, const sp_batch *b, const sp_step_ctx *ctx,
                               sp_local_batch *lb) {
    const int B = lb->count, k = s->cfg.outputs, T = s->cfg.positions;
    /* with no samples too: batch norm's statistics are summed over every rank */
    const float *z = sp_model_forward(s->m, b->x, B, ctx);
    SP_CHECK(sp_model_status(s->m));
    if (B == 0) return SP_OK;
    if (s->cfg.xent && T > 1) { /* every position of every sequence: B T rows */
        sp_xent_seq_loss(&lb->loss_sum, &lb->correct, s->dz, s->rows, z, b->labels, B, T, k,
                         1.0f / ((float)lb->global_count * (float)T));
    } else if (s->cfg.xent)
        sp_xent_loss(&lb->loss_sum, &lb->correct, s->dz, s->rows, z, b->labels, B, k,
                     1.0f / (float)lb->global_count);
    else
        sp_mse_loss(&lb->loss_sum, s->dz, s->rows, z, b->targets, B, k,
                    1.0f / ((float)lb->global_count * (float)k));
    return SP_OK;
}

/* One micro-batch b (micro of in->count): forward, loss and backward, its gradients added to
 * the step's (sent over the ranks with the last), its sums to *sum. */
static sp_status micro_step_(sp_step *s, const sp_step_batches *in, const sp_batch *b, int micro,
                             int64_t step, sp_local_batch *sum, sp_step_result *r) {
    const sp_step_ctx ctx = {
        .training = true, .seed = s->cfg.seed, .step = step, .sample_ids = b->ids};
    sp_local_batch lb = {.count = (int)b->count,
                         .global_count = in->global_count,
                         .step = step,
                         .micro = micro,
                         .micros = in->count,
                         .dz = s->dz,
                         .rows = s->rows,
                         .positions = s->cfg.positions};
    SP_CHECK(forward_loss_(s, b, &ctx, &lb));
    r->t.backward = sp_comm_wtime();
    SP_CHECK(s->x->backward(s->x, &lb));
    sum->count += lb.count;
    sum->loss_sum += lb.loss_sum;
    sum->correct += lb.correct;
    return SP_OK;
}

sp_status sp_step_run(sp_step *s, const sp_step_batches *in, int64_t step, double lr,
                      sp_step_result *r) {
    sp_local_batch sum = {.global_count = in->global_count, .step = step};
    r->t.start = sp_comm_wtime();
    SP_CHECK(micro_step_(s, in, in->first, 0, step, &sum, r));
    for (int j = 1; j < in->count; ++j) {
        sp_batch b;
        SP_CHECK(in->next(in->user, &b));
        SP_CHECK(micro_step_(s, in, &b, j, step, &sum, r));
    }
    r->t.wait = s->x->t_wait[0];
    r->t.reduced = s->x->t_wait[1];
    if (s->cfg.on_reduced) s->cfg.on_reduced(s->cfg.user, s->m, step);

    /* the verdict travels with the sums, so that every rank takes the same decision */
    sp_nonfinite_scan_grads(s->m, &r->scan);
    sp_step_sums g;
    bool any_bad = false;
    SP_CHECK(s->x->sums(s->x, &sum, r->scan.first_layer >= 0, &g, &any_bad));
    r->loss_sum = g.loss, r->correct = g.correct, r->samples = g.samples;
    r->bad_grad = any_bad;
    r->nonfinite = !isfinite(g.loss) || any_bad;

    r->t.update = sp_comm_wtime();
    if (!r->nonfinite) {
        float *grad = sp_model_grads(s->m);
        if (s->cfg.clip_norm > 0)
            sp_clip_grad_norm(grad, sp_model_num_params(s->m), s->cfg.clip_norm);
        sp_optim_step(s->opt, sp_model_params(s->m), grad, (float)lr);
    }
    r->t.end = sp_comm_wtime();
    return SP_OK;
}
