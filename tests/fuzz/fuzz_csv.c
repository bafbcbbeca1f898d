/*
 * Fuzz target: the CSV importer. Input: one byte of options (bit 0: --regression; bits 1-2 pick
 * the label column: "0", "1", "label", "-1"), then the CSV text. A successful import must open
 * as a valid data file with the N and F reported.
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
    if (size < 1 || size > (1 << 20)) return 0;
    static const char *columns[4] = {"0", "1", "label", "-1"};
    const bool regression = data[0] & 1;
    const char *label = columns[(data[0] >> 1) & 3];
    char in[512], out[512];
    sp_fuzz_path(in, sizeof in, "in.csv");
    sp_fuzz_path(out, sizeof out, "csv.h5");
    if (!sp_fuzz_write(in, data + 1, size - 1)) abort();
    int64_t n = -1, f = -1;
    if (sp_import_csv(in, label, regression, out, &n, &f) == SP_OK) {
        sp_dataset *ds;
        if (sp_dataset_open(&ds, out, NULL, NULL) != SP_OK) abort();
        const sp_dataset_info *info = sp_dataset_get_info(ds);
        if (info->n != n || (int64_t)info->sample_size != f || info->regression != regression)
            abort();
        sp_dataset_close(ds);
    }
    return 0;
}
