/* A tiny JSON-lines writer for metrics: one object per line, numbers as JSON numbers
 * (NaN and Inf become null, which JSON lacks). */
#ifndef SP_UTIL_JSON_H
#define SP_UTIL_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef struct sp_json {
    FILE *f;
    bool first;
} sp_json;

void sp_json_begin(sp_json *j, FILE *f); /* "{" */
void sp_json_str(sp_json *j, const char *key, const char *v);
void sp_json_num(sp_json *j, const char *key, double v); /* %.9g, null if not finite */
void sp_json_int(sp_json *j, const char *key, int64_t v);
void sp_json_bool(sp_json *j, const char *key, bool v);
void sp_json_null(sp_json *j, const char *key);
void sp_json_end(sp_json *j); /* "}\n" and flush */
/* Arrays: [v0, v1, ...] (numbers as sp_json_num); a matrix (rows, cols) row-major as nested
 * arrays [[...], [...]]. */
void sp_json_num_array(sp_json *j, const char *key, const double *v, size_t n);
void sp_json_int_array(sp_json *j, const char *key, const int64_t *v, size_t n);
void sp_json_int_matrix(sp_json *j, const char *key, const int64_t *v, size_t rows, size_t cols);

/* Write s as a JSON string literal (with quotes and escapes). */
void sp_json_write_string(FILE *f, const char *s);

#endif
