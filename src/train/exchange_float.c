/* The default gradient exchange (train/exchange.h): float buckets allreduced during backward. */
#include <limits.h>
#include <stdlib.h>

#include "train/exchange.h"
#include "util/status.h"

typedef struct float_exchange {
    sp_exchange base; /* first: the interface */
    sp_model *m;
    sp_comm *comm;
    sp_reducer *red;
} float_exchange;

/* The model's backward hook: gradients at offsets >= begin are final; their buckets may go. */
static void on_grad_ready_(void *user, size_t begin) {
    sp_reducer_ready((sp_reducer *)user, begin);
}

static sp_status backward_(sp_exchange *x, const sp_local_batch *lb) {
    float_exchange *f = (float_exchange *)x;
    const bool first = lb->micro == 0, last = lb->micro + 1 >= lb->micros;
    /* the buckets go during the step's last backward only: the earlier micro-steps' gradients
     * stay on the rank and add up */
    sp_grad_ready_fn ready = last ? on_grad_ready_ : NULL;
    if (last) sp_reducer_begin(f->red);
    if (first) /* overwrites the gradient slab (zero when this rank has no samples of it) */
        sp_model_backward_fresh(f->m, lb->dz, lb->count, ready, f->red);
    else
        sp_model_backward(f->m, lb->dz, lb->count, ready, f->red);
    if (!last) return sp_model_status(f->m);
    x->t_wait[0] = sp_comm_wtime();
    const sp_status st = sp_reducer_finish(f->red);
    x->t_wait[1] = sp_comm_wtime();
    return st != SP_OK ? st : sp_model_status(f->m); /* a failed batch-norm sum over ranks */
}

/* One allreduce of four doubles: the loss, the correct count, the samples and the verdict. */
static sp_status sums_(sp_exchange *x, const sp_local_batch *lb, bool bad, sp_step_sums *out,
                       bool *any_bad) {
    float_exchange *f = (float_exchange *)x;
    double s[4] = {lb->loss_sum, (double)lb->correct, (double)lb->count, bad};
    SP_CHECK(sp_comm_sum_doubles(f->comm, s, 4));
    *out = (sp_step_sums){.loss = s[0], .correct = s[1], .samples = s[2]};
    *any_bad = s[3] > 0;
    return SP_OK;
}

/* The local sums in sample order, then one allreduce of doubles (in MPI's order). */
static sp_status allsum_(sp_exchange *x, const double *terms, int count, size_t n, double *sums) {
    float_exchange *f = (float_exchange *)x;
    if (n > (size_t)INT_MAX)
        return SP_FAIL(SP_ERR_ARG, "a sum over ranks of %zu values: more than one call takes", n);
    sp_model_local_sums(terms, count, n, sums);
    return sp_comm_sum_doubles(f->comm, sums, (int)n);
}

static void free_(sp_exchange *x) {
    float_exchange *f = (float_exchange *)x;
    sp_reducer_free(f->red);
    free(f);
}

sp_status sp_exchange_float_create(sp_exchange **out, sp_model *m, sp_comm *comm,
                                   size_t bucket_bytes) {
    *out = NULL;
    float_exchange *f = calloc(1, sizeof *f);
    if (!f) return SP_FAIL(SP_ERR_NOMEM, "out of memory");
    f->m = m, f->comm = comm;
    const sp_status st =
        sp_reducer_create(&f->red, comm, sp_model_grads(m), sp_model_num_params(m), bucket_bytes);
    if (st != SP_OK) {
        free(f);
        return st;
    }
    f->base = (sp_exchange){.backward = backward_,
                            .sums = sums_,
                            .allsum = allsum_,
                            .free = free_,
                            .reducer = f->red,
                            .plan = f->red,
                            .elem_bytes = sizeof(float),
                            .bucket_kind = "floats",
                            .memory_kind = "allreduce receive buffer",
                            .memory_bytes = sp_reducer_memory_bytes(f->red)};
    *out = &f->base;
    return SP_OK;
}
