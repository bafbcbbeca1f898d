#include "util/json.h"

#include <math.h>

void sp_json_write_string(FILE *f, const char *s) {
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; ++p) {
        switch (*p) {
        case '"':
            fputs("\\\"", f);
            break;
        case '\\':
            fputs("\\\\", f);
            break;
        case '\n':
            fputs("\\n", f);
            break;
        case '\t':
            fputs("\\t", f);
            break;
        case '\r':
            fputs("\\r", f);
            break;
        default:
            if (*p < 0x20)
                fprintf(f, "\\u%04x", *p);
            else
                fputc(*p, f);
        }
    }
    fputc('"', f);
}

static void key_(sp_json *j, const char *key) {
    if (!j->first) fputs(", ", j->f);
    j->first = false;
    sp_json_write_string(j->f, key);
    fputs(": ", j->f);
}

void sp_json_begin(sp_json *j, FILE *f) {
    j->f = f;
    j->first = true;
    fputc('{', f);
}

void sp_json_str(sp_json *j, const char *key, const char *v) {
    key_(j, key);
    sp_json_write_string(j->f, v);
}

static void num_(FILE *f, double v);

void sp_json_num(sp_json *j, const char *key, double v) {
    key_(j, key);
    num_(j->f, v);
}

void sp_json_int(sp_json *j, const char *key, int64_t v) {
    key_(j, key);
    fprintf(j->f, "%lld", (long long)v);
}

void sp_json_bool(sp_json *j, const char *key, bool v) {
    key_(j, key);
    fputs(v ? "true" : "false", j->f);
}

void sp_json_null(sp_json *j, const char *key) {
    key_(j, key);
    fputs("null", j->f);
}

void sp_json_end(sp_json *j) {
    fputs("}\n", j->f);
    fflush(j->f);
}

static void num_(FILE *f, double v) {
    if (isfinite(v))
        fprintf(f, "%.9g", v);
    else
        fputs("null", f);
}

void sp_json_num_array(sp_json *j, const char *key, const double *v, size_t n) {
    key_(j, key);
    fputc('[', j->f);
    for (size_t i = 0; i < n; ++i) {
        if (i) fputs(", ", j->f);
        num_(j->f, v[i]);
    }
    fputc(']', j->f);
}

static void ints_(FILE *f, const int64_t *v, size_t n) {
    fputc('[', f);
    for (size_t i = 0; i < n; ++i) fprintf(f, "%s%lld", i ? ", " : "", (long long)v[i]);
    fputc(']', f);
}

void sp_json_int_array(sp_json *j, const char *key, const int64_t *v, size_t n) {
    key_(j, key);
    ints_(j->f, v, n);
}

void sp_json_int_matrix(sp_json *j, const char *key, const int64_t *v, size_t rows, size_t cols) {
    key_(j, key);
    fputc('[', j->f);
    for (size_t r = 0; r < rows; ++r) {
        if (r) fputs(", ", j->f);
        ints_(j->f, v + r * cols, cols);
    }
    fputc(']', j->f);
}
