/*
 * Fuzz target: the `--config FILE` parser of `shardprop train` (key = value lines), through
 * sp_train_config_parse_text. A configuration that parses is checked, formatted, and the
 * formatted text must parse again to the same configuration (format -> parse is the identity:
 * checkpoints store it and `--config` reads it back).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "train/config.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    sp_fuzz_setup();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 65536) return 0;
    sp_train_config cfg, again;
    sp_train_args *own = NULL, *own2 = NULL;
    if (sp_train_config_parse_text(&cfg, (const char *)data, size, "fuzz.conf", &own) == SP_OK) {
        (void)sp_train_config_check(&cfg);
        char *text = sp_train_config_format(&cfg);
        if (!text) abort();
        if (sp_train_config_parse_text(&again, text, strlen(text), "formatted", &own2) != SP_OK) {
            fprintf(stderr, "formatted config does not parse: %s\n%s", sp_last_error(), text);
            abort();
        }
        char *text2 = sp_train_config_format(&again);
        if (!text2 || strcmp(text, text2)) {
            fprintf(stderr, "format/parse round trip differs:\n%s---\n%s", text, text2);
            abort();
        }
        free(text);
        free(text2);
    }
    sp_train_args_free(own);
    sp_train_args_free(own2);
    return 0;
}
