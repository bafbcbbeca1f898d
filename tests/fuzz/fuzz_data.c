/*
 * Fuzz target: data-file validation and reading, from an HDF5 file image in memory
 * (sp_dataset_open_image). A file that validates is described, compared with a model input
 * shape, and a few rows (first, last, middle, a duplicate) are read; a small one is summarized.
 * A file that does not is opened as token data (sp_dataset_open_tokens_image, windows of 1 to 16
 * tokens chosen by the input's size): a few windows are read, their labels must be in range and
 * equal to the inputs shifted by one, and a small one's histogram must count every token.
 */
#include <stdlib.h>
#include <string.h>

#include "data/data.h"
#include "fuzz_common.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    sp_fuzz_setup();
    return 0;
}

static void fuzz_tokens_(sp_dataset *ds, int64_t T) {
    const sp_dataset_info *in = sp_dataset_get_info(ds);
    if (in->n < 1 || in->seq_len != T || in->sample_size != (size_t)T || in->sample_rank != 1 ||
        in->classes < 1 || in->classes > (1 << 24) || in->tokens < in->n * T + 1 || !in->labeled)
        abort();
    char line[512];
    sp_dataset_describe(ds, line, sizeof line);
    const int64_t ids[4] = {0, in->n - 1, in->n / 2, 0};
    float x[4 * 16];
    int32_t labels[4 * 16];
    if (sp_dataset_read(ds, ids, 4, x, labels, NULL) == SP_OK)
        for (int64_t i = 0; i < 4; ++i)
            for (int64_t k = 0; k < T; ++k) {
                const int32_t l = labels[i * T + k];
                if (l < 0 || l >= in->classes) abort();
                if (k + 1 < T && x[i * T + k + 1] != (float)l) abort();
                if (x[i * T + k] != x[3 * T + k] && ids[i] == ids[3]) abort();
            }
    if (in->tokens <= 1000000 && in->classes <= 65536) {
        sp_dataset_summary sum;
        if (sp_dataset_summarize(ds, &sum) == SP_OK) {
            int64_t total = 0;
            for (int64_t c = 0; c < in->classes; ++c) total += sum.class_counts[c];
            if (total != in->tokens) abort();
        }
        sp_dataset_summary_free(&sum);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    sp_dataset *ds;
    if (sp_dataset_open_image(&ds, data, size, "fuzz.h5", NULL, NULL) != SP_OK) {
        const int64_t T = 1 + (int64_t)(size % 16);
        if (sp_dataset_open_tokens_image(&ds, data, size, "fuzz.h5", NULL, T) == SP_OK) {
            fuzz_tokens_(ds, T);
            sp_dataset_close(ds);
        }
        return 0;
    }
    const sp_dataset_info *in = sp_dataset_get_info(ds);
    if (in->n < 1 || in->sample_size < 1 || in->sample_rank < 1 || in->sample_rank > 4) abort();
    char line[512];
    sp_dataset_describe(ds, line, sizeof line);
    const int64_t shape[3] = {1, 28, 28};
    (void)sp_dataset_check_input_shape(ds, shape, 3);
    int64_t ids[4] = {0, in->n - 1, in->n / 2, 0};
    /* as many of those rows as fit in 16 MiB (one sample fits the 64 MiB limit) */
    int64_t k = (int64_t)(((size_t)16 << 20) / (in->sample_size * sizeof(float)));
    k = k < 1 ? 1 : k > 4 ? 4 : k;
    float *x = malloc((size_t)k * in->sample_size * sizeof(float));
    int32_t labels[4];
    float *targets =
        in->regression ? malloc((size_t)k * (size_t)in->targets * sizeof(float)) : NULL;
    if (!x || (in->regression && !targets)) abort();
    if (sp_dataset_read(ds, ids, k, x, in->regression ? NULL : labels, targets) == SP_OK &&
        !in->regression)
        for (int64_t i = 0; i < k; ++i)
            if (labels[i] < 0 || labels[i] >= in->classes) abort();
    free(x);
    free(targets);
    if ((double)in->n * (double)in->sample_size <= 1e6) {
        sp_dataset_summary sum;
        if (sp_dataset_summarize(ds, &sum) == SP_OK && !in->regression) {
            int64_t total = 0;
            for (int64_t c = 0; c < in->classes; ++c) total += sum.class_counts[c];
            if (total != in->n) abort();
        }
        sp_dataset_summary_free(&sum);
    }
    sp_dataset_close(ds);
    return 0;
}
