/* The --dry-run plan (train/plan.h). */
#include "train/plan.h"

#include "model/describe.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/augment.h"
#include "scale/scaleplan.h"
#include "util/json.h"
#include "util/status.h"

/* What a rank holds, in bytes: the --dry-run breakdown (peak RSS adds the code, the MPI and
 * HDF5 libraries and the thread stacks). */
typedef struct memory_plan {
    size_t params, grads, activations, optimizer, allreduce, data_cache, data_buffers, total;
} memory_plan;

static memory_plan memory_plan_(const sp_train_setup *t) {
    memory_plan p;
    const size_t np = sp_model_num_params(t->m);
    p.params = p.grads = np * sizeof(float);
    p.activations = sp_model_memory_bytes(t->m) - 2 * np * sizeof(float) +
                    sp_step_memory_bytes(t->step); /* with the error signal at the output */
    p.optimizer = (size_t)sp_optim_num_states(t->opt) * np * sizeof(float);
    p.allreduce = t->x->memory_bytes;
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

/* --augment in canonical form ("none" without it; parsed when the loader was made). */
static void augment_text_(const sp_train_config *c, char *buf, size_t cap) {
    sp_augment a;
    if (sp_augment_parse(&a, c->augment) != SP_OK) a.n = 0;
    sp_augment_format(&a, buf, cap);
}

static void print_json_(const sp_train_setup *t) {
    sp_model *m = t->m;
    const sp_reducer *red = t->x->plan; /* with one rank: those of more ranks */
    const size_t elem = t->x->elem_bytes;
    const int nb = sp_reducer_num_buckets(red);
    const memory_plan mp = memory_plan_(t);
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
           "\"accum_steps\": %lld, \"micro_step_batch\": %lld, \"rank_batch\": %d, "
           "\"bucket_mb\": %g, ",
           sp_model_num_params(m), t->ranks, t->threads, (long long)t->cfg->batch,
           (long long)t->cfg->accum_steps, (long long)(t->cfg->batch / t->cfg->accum_steps),
           sp_model_max_batch(m), t->cfg->bucket_mb);
    char aug[SP_AUGMENT_SPEC_MAX];
    augment_text_(t->cfg, aug, sizeof aug);
    printf("\"augment\": ");
    sp_json_write_string(stdout, aug);
    printf(", \"layers\": [");
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
        int in[2];
        const int nin = sp_model_layer_inputs(m, i, in);
        printf("%s{\"index\": %d, \"name\": \"%s\", \"path\": \"%s\", \"inputs\": [%d",
               i ? ", " : "", i, sp_model_layer_name(m, i), sp_model_layer_path(m, i), in[0]);
        if (nin == 2) printf(", %d", in[1]);
        printf("], \"out_shape\": [");
        for (int d = 0; d < r; ++d) printf("%s%lld", d ? ", " : "", (long long)sh[d]);
        printf("], \"params\": %zu, \"param_offset\": %zu, \"saved_bytes\": %zu}", np,
               has ? w_off : 0, sp_model_layer_saved_bytes(m, i));
    }
    printf("], \"buckets\": [");
    for (int i = 0; i < nb; ++i) {
        size_t b0, len;
        sp_reducer_bucket(red, i, &b0, &len);
        printf("%s{\"index\": %d, \"offset\": %zu, \"floats\": %zu, \"bytes\": %zu}", i ? ", " : "",
               i, b0, len, len * elem);
    }
    printf("]}\n");
}

static void print_text_(const sp_train_setup *t) {
    sp_model *m = t->m;
    const sp_reducer *red = t->x->plan; /* with one rank: those of more ranks */
    const size_t elem = t->x->elem_bytes;
    const int nb = sp_reducer_num_buckets(red);
    const memory_plan mp = memory_plan_(t);
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
    char aug[SP_AUGMENT_SPEC_MAX];
    augment_text_(t->cfg, aug, sizeof aug);
    if (strcmp(aug, "none"))
        printf("augment: %s (training batches only, on the loader's thread; validation is not "
               "augmented)\n",
               aug);
    printf("memory per rank: %.1f MB = parameters %.1f + gradients %.1f + activations and work "
           "buffers for %lld samples %.1f + optimizer state %.1f + %s %.1f + data cache %.1f + "
           "data batch buffers %.1f\n",
           (double)mp.total / 1e6, (double)mp.params / 1e6, (double)mp.grads / 1e6,
           (long long)local, (double)mp.activations / 1e6, (double)mp.optimizer / 1e6,
           t->x->memory_kind, (double)mp.allreduce / 1e6, (double)mp.data_cache / 1e6,
           (double)mp.data_buffers / 1e6);
    const int64_t K = t->cfg->accum_steps, B = t->cfg->batch;
    if (K > 1)
        printf("gradient accumulation: each step's batch of %lld in %lld micro-steps of %lld "
               "(at most %lld samples per rank each), one allreduce per step\n",
               (long long)B, (long long)K, (long long)(B / K), (long long)local);
    size_t saved = 0;
    for (int i = 0; i < sp_model_num_layers(m); ++i) saved += sp_model_layer_saved_bytes(m, i);
    printf("graph (%d layers; of the activations and work buffers, %.1f MB are saved for "
           "backward):\n",
           sp_model_num_layers(m), (double)saved / 1e6);
    sp_model_print_graph(m, stdout, "  ", true);
    printf("gradient buckets (%d, allreduced last layer first):\n", nb);
    for (int i = 0; i < nb; ++i) {
        size_t b0, len;
        sp_reducer_bucket(red, i, &b0, &len);
        printf("  bucket %d: %s [%zu, %zu), %.2f MB\n", i, t->x->bucket_kind, b0, b0 + len,
               (double)(len * elem) / 1048576.0);
    }
    if (t->cfg->network && sp_scale_advice(stdout, m, t->cfg->network, t->cfg->batch,
                                           t->cfg->bucket_mb, sp_optim_config(t->opt)) != SP_OK)
        printf("no scaling advice: %s\n", sp_last_error());
}

void sp_train_plan_print(const sp_train_setup *t, bool json) {
    if (json)
        print_json_(t);
    else
        print_text_(t);
}
