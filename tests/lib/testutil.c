#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "util/rng.h"

int sp_test_passed = 0, sp_test_failed = 0;

int sp_test_summary(const char *name) {
    printf("%s: %d passed, %d failed\n", name, sp_test_passed, sp_test_failed);
    if (sp_test_passed == 0 && sp_test_failed == 0) {
        printf("%s: no checks ran\n", name);
        return 1;
    }
    return sp_test_failed ? 1 : 0;
}

void sp_test_fill(float *x, size_t n, uint64_t seed, float lo, float hi) {
    for (size_t i = 0; i < n; ++i) x[i] = lo + (hi - lo) * sp_rng_uniform(seed, 99, i);
}

void sp_test_fill_d(double *x, size_t n, uint64_t seed, double lo, double hi) {
    for (size_t i = 0; i < n; ++i) x[i] = lo + (hi - lo) * (double)sp_rng_uniform(seed, 99, i);
}

double sp_test_relerr(const float *a, const double *b, size_t n, double floor) {
    double scale = floor, err = 0;
    for (size_t i = 0; i < n; ++i) scale = fmax(scale, fabs(b[i]));
    for (size_t i = 0; i < n; ++i) {
        double d = fabs((double)a[i] - b[i]);
        if (!(d <= err)) err = d; /* NaN propagates as a failure */
    }
    return err / scale;
}

double sp_test_relerr_ff(const float *a, const float *b, size_t n, double floor) {
    double scale = floor, err = 0;
    for (size_t i = 0; i < n; ++i) scale = fmax(scale, fabs((double)b[i]));
    for (size_t i = 0; i < n; ++i) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (!(d <= err)) err = d;
    }
    return err / scale;
}

const char *sp_test_tmpdir(const char *name) {
    static char path[512];
    const char *base = getenv("TMPDIR");
    if (!base || !*base) base = "/tmp";
    snprintf(path, sizeof path, "%s/sp_test_%s_XXXXXX", base, name);
    if (!mkdtemp(path)) {
        perror("mkdtemp");
        exit(2);
    }
    return path;
}

int sp_test_run(const char *cmd, char **out) {
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    if (!buf) {
        pclose(p);
        return -1;
    }
    size_t got;
    while ((got = fread(buf + len, 1, cap - len - 1, p)) > 0) {
        len += got;
        if (cap - len < 1024) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) break;
            buf = nb;
            cap *= 2;
        }
    }
    buf[len] = '\0';
    int st = pclose(p);
    if (out)
        *out = buf;
    else
        free(buf);
    if (st == -1) return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
}
