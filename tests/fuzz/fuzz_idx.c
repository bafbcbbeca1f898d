/*
 * Fuzz target: the IDX (MNIST) importer. Input: 2 bytes (little-endian) giving the length L of
 * the labels file, L bytes of labels file, then the images file (either may be gzipped). Both
 * are written to the scratch directory and imported; a successful import must open as a valid
 * data file with the same N.
 */
#include <stdlib.h>
#include <string.h>

#include "data/data.h"
#include "data/tools.h"
#include "fuzz_common.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    sp_fuzz_setup();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2 || size > (1 << 20)) return 0;
    size_t l = (size_t)data[0] | (size_t)data[1] << 8;
    if (l > size - 2) l = size - 2;
    char images[512], labels[512], out[512];
    sp_fuzz_path(labels, sizeof labels, "labels.idx");
    sp_fuzz_path(images, sizeof images, "images.idx");
    sp_fuzz_path(out, sizeof out, "idx.h5");
    if (!sp_fuzz_write(labels, data + 2, l) || !sp_fuzz_write(images, data + 2 + l, size - 2 - l))
        abort();
    int64_t n = -1;
    if (sp_import_idx(images, labels, out, &n) == SP_OK) {
        sp_dataset *ds;
        if (sp_dataset_open(&ds, out, NULL, NULL) != SP_OK || sp_dataset_get_info(ds)->n != n)
            abort();
        const int64_t id = n - 1;
        float *x = malloc(sp_dataset_get_info(ds)->sample_size * sizeof(float));
        int32_t lab;
        if (!x || sp_dataset_read(ds, &id, 1, x, &lab, NULL) != SP_OK) abort();
        free(x);
        sp_dataset_close(ds);
    }
    return 0;
}
