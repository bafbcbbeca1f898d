#include "fuzz_common.h"

#include <dirent.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/h5.h"
#include "util/mem.h"

static char dir_[256];

static void cleanup_(void) {
    if (!dir_[0]) return;
    DIR *d = opendir(dir_);
    if (d) {
        struct dirent *e;
        char p[512];
        while ((e = readdir(d)))
            if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
                snprintf(p, sizeof p, "%s/%s", dir_, e->d_name);
                unlink(p);
            }
        closedir(d);
    }
    rmdir(dir_);
}

const char *sp_fuzz_setup(void) {
    if (dir_[0]) return dir_;
    sp_mem_set_limit(SP_FUZZ_MEM_LIMIT);
    omp_set_num_threads(1);
    sp_h5_lock(); /* initializes HDF5 and silences its error printing */
    sp_h5_unlock();
    struct stat st;
    const char *base = getenv("SP_FUZZ_SCRATCH"); /* set by scripts/fuzz.sh */
    if (!base || !*base)
        base = stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) ? "/dev/shm" : NULL;
    if (!base) base = getenv("TMPDIR");
    if (!base || !*base) base = "/tmp";
    snprintf(dir_, sizeof dir_, "%s/shardprop-fuzz-XXXXXX", base);
    if (!mkdtemp(dir_)) {
        perror("fuzz: mkdtemp");
        abort();
    }
    atexit(cleanup_);
    return dir_;
}

void sp_fuzz_path(char *buf, size_t cap, const char *name) {
    snprintf(buf, cap, "%s/%s", sp_fuzz_setup(), name);
}

bool sp_fuzz_write(const char *path, const void *data, size_t size) {
    FILE *f = fopen(path, "wb");
    if (!f) return false;
    bool ok = fwrite(data, 1, size, f) == size;
    return fclose(f) == 0 && ok;
}

char *sp_fuzz_cstr(const uint8_t *data, size_t size) {
    char *s = malloc(size + 1);
    if (!s) abort();
    if (size) memcpy(s, data, size);
    s[size] = '\0';
    return s;
}
