/* The items of --data and friends expanded into a sorted list of files (see data.h). */
#include <dirent.h>
#include <errno.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "data/data.h"
#include "util/status.h"

/* The longest line of an @list file. */
#define SP_LIST_LINE_MAX_ 4096

static sp_status push_(sp_path_list *l, const char *path, size_t len) {
    if (l->n == l->cap) {
        const int cap = l->cap ? 2 * l->cap : 16;
        char **grown = realloc(l->v, (size_t)cap * sizeof *grown);
        if (!grown) return SP_FAIL(SP_ERR_NOMEM, "data files: out of memory");
        l->v = grown;
        l->cap = cap;
    }
    char *s = malloc(len + 1);
    if (!s) return SP_FAIL(SP_ERR_NOMEM, "data files: out of memory");
    memcpy(s, path, len);
    s[len] = '\0';
    l->v[l->n++] = s;
    return SP_OK;
}

static bool is_glob_(const char *s) {
    return strpbrk(s, "*?[") != NULL;
}

static bool ends_with_h5_(const char *s) {
    const size_t n = strlen(s);
    return n >= 3 && !strcmp(s + n - 3, ".h5");
}

static sp_status expand_glob_(const char *pattern, const char *what, sp_path_list *l) {
    glob_t g;
    const int r = glob(pattern, 0, NULL, &g);
    sp_status st = SP_OK;
    if (r == GLOB_NOMATCH || (r == 0 && g.gl_pathc == 0))
        st = SP_FAIL(SP_ERR_ARG, "%s: no file matches the pattern%s", pattern, what);
    else if (r != 0)
        st = SP_FAIL(SP_ERR_IO, "%s: cannot expand the pattern (%s)%s", pattern,
                     r == GLOB_NOSPACE ? "out of memory" : "read error", what);
    for (size_t i = 0; st == SP_OK && i < g.gl_pathc; ++i) {
        struct stat sb;
        /* a directory matched by a pattern is not a data file */
        if (stat(g.gl_pathv[i], &sb) == 0 && S_ISDIR(sb.st_mode)) continue;
        st = push_(l, g.gl_pathv[i], strlen(g.gl_pathv[i]));
    }
    if (r == 0) globfree(&g);
    return st;
}

/* The *.h5 files of directory `dir`. */
static sp_status expand_dir_(const char *dir, const char *what, sp_path_list *l) {
    DIR *d = opendir(dir);
    if (!d)
        return SP_FAIL(SP_ERR_IO, "%s: cannot read the directory: %s%s", dir, strerror(errno),
                       what);
    const int before = l->n;
    sp_status st = SP_OK;
    const size_t dl = strlen(dir);
    const bool slash = dl > 0 && dir[dl - 1] == '/';
    for (struct dirent *e; st == SP_OK && (e = readdir(d));) {
        if (e->d_name[0] == '.' || !ends_with_h5_(e->d_name)) continue;
        char p[4096];
        const int n = snprintf(p, sizeof p, "%s%s%s", dir, slash ? "" : "/", e->d_name);
        if (n < 0 || (size_t)n >= sizeof p) {
            st = SP_FAIL(SP_ERR_ARG, "%s: a path in the directory is too long", dir);
            break;
        }
        struct stat sb;
        if (stat(p, &sb) == 0 && S_ISDIR(sb.st_mode)) continue;
        st = push_(l, p, (size_t)n);
    }
    closedir(d);
    if (st == SP_OK && l->n == before)
        st = SP_FAIL(SP_ERR_ARG, "%s: the directory holds no .h5 file%s", dir, what);
    return st;
}

static sp_status expand_word_(const char *w, const char *what, int depth, sp_path_list *l);

/* @FILE: one item a line, relative to FILE's directory unless absolute; blank lines and
 * # comments skipped. A list may name further @lists (to a small depth). */
static sp_status expand_list_(const char *list, const char *what, int depth, sp_path_list *l) {
    if (depth > 4) return SP_FAIL(SP_ERR_ARG, "@%s: lists nested more than 4 deep", list);
    FILE *f = fopen(list, "r");
    if (!f)
        return SP_FAIL(SP_ERR_ARG, "@%s: cannot read the list of files: %s%s", list,
                       strerror(errno), what);
    const char *slash = strrchr(list, '/');
    const int dir_len = slash ? (int)(slash - list) + 1 : 0;
    char line[SP_LIST_LINE_MAX_];
    int lineno = 0;
    const int before = l->n;
    sp_status st = SP_OK;
    while (st == SP_OK && fgets(line, sizeof line, f)) {
        ++lineno;
        if (!strchr(line, '\n') && !feof(f)) {
            st = SP_FAIL(SP_ERR_ARG, "@%s:%d: line too long", list, lineno);
            break;
        }
        char *hash = strchr(line, '#');
        if (hash) *hash = '\0';
        char *s = line, *e;
        while (*s == ' ' || *s == '\t') ++s;
        e = s + strlen(s);
        while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\n' || e[-1] == '\r')) *--e = 0;
        if (!*s) continue;
        char p[SP_LIST_LINE_MAX_ + 4096];
        const bool rel = s[0] != '/' && s[0] != '@';
        const int n = rel ? snprintf(p, sizeof p, "%.*s%s", dir_len, list, s)
                          : snprintf(p, sizeof p, "%s", s);
        if (n < 0 || (size_t)n >= sizeof p) {
            st = SP_FAIL(SP_ERR_ARG, "@%s:%d: path too long", list, lineno);
            break;
        }
        st = expand_word_(p, what, depth + 1, l);
    }
    if (st == SP_OK && ferror(f)) st = SP_FAIL(SP_ERR_IO, "@%s: read error", list);
    fclose(f);
    if (st == SP_OK && l->n == before)
        st = SP_FAIL(SP_ERR_ARG, "@%s: the list names no file%s", list, what);
    return st;
}

static sp_status expand_word_(const char *w, const char *what, int depth, sp_path_list *l) {
    if (w[0] == '@') return expand_list_(w + 1, what, depth, l);
    struct stat sb;
    if (stat(w, &sb) == 0) {
        if (S_ISDIR(sb.st_mode)) return expand_dir_(w, what, l);
        return push_(l, w, strlen(w));
    }
    if (is_glob_(w)) return expand_glob_(w, what, l);
    return SP_FAIL(SP_ERR_IO, "%s: no such file%s", w, what);
}

static int cmp_str_(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

void sp_path_list_free(sp_path_list *l) {
    for (int i = 0; i < l->n; ++i) free(l->v[i]);
    free(l->v);
    memset(l, 0, sizeof *l);
}

sp_status sp_data_paths_expand(const char *const *items, int nitems, const char *flag,
                               sp_path_list *out) {
    memset(out, 0, sizeof *out);
    char what[96] = "";
    if (flag) snprintf(what, sizeof what, " (%s)", flag);
    if (nitems < 1) return SP_FAIL(SP_ERR_ARG, "no data file given%s", what);
    sp_status st = SP_OK;
    for (int i = 0; i < nitems && st == SP_OK; ++i) st = expand_word_(items[i], what, 0, out);
    if (st != SP_OK) {
        sp_path_list_free(out);
        return st;
    }
    qsort(out->v, (size_t)out->n, sizeof *out->v, cmp_str_);
    int k = 0;
    for (int i = 0; i < out->n; ++i) {
        if (k > 0 && !strcmp(out->v[i], out->v[k - 1])) {
            free(out->v[i]);
            continue;
        }
        out->v[k++] = out->v[i];
    }
    out->n = k;
    return SP_OK;
}

sp_status sp_data_paths_expand_words(const char *words, const char *flag, sp_path_list *out) {
    memset(out, 0, sizeof *out);
    if (!words)
        return SP_FAIL(SP_ERR_ARG, "no data file given%s%s", flag ? " " : "", flag ? flag : "");
    /* one existing file is one item, spaces in its name or not (configs from before lists) */
    struct stat sb;
    if (stat(words, &sb) == 0 && !S_ISDIR(sb.st_mode)) {
        const char *one[1] = {words};
        return sp_data_paths_expand(one, 1, flag, out);
    }
    char *copy = strdup(words);
    int cap = 8, n = 0;
    const char **items = malloc((size_t)cap * sizeof *items);
    if (!copy || !items) {
        free(copy);
        free(items);
        return SP_FAIL(SP_ERR_NOMEM, "data files: out of memory");
    }
    sp_status st = SP_OK;
    for (char *save = NULL, *t = strtok_r(copy, " \t\r\n", &save); t;
         t = strtok_r(NULL, " \t\r\n", &save)) {
        if (n == cap) {
            const char **grown = realloc(items, (size_t)(cap *= 2) * sizeof *items);
            if (!grown) {
                st = SP_FAIL(SP_ERR_NOMEM, "data files: out of memory");
                break;
            }
            items = grown;
        }
        items[n++] = t;
    }
    if (st == SP_OK) st = sp_data_paths_expand(items, n, flag, out);
    free(items);
    free(copy);
    return st;
}

char *sp_data_items_join(const char *const *items, int nitems) {
    size_t len = 1;
    for (int i = 0; i < nitems; ++i) len += strlen(items[i]) + 1;
    char *s = malloc(len);
    if (!s) return NULL;
    size_t k = 0;
    for (int i = 0; i < nitems; ++i) {
        if (i) s[k++] = ' ';
        const size_t n = strlen(items[i]);
        memcpy(s + k, items[i], n);
        k += n;
    }
    s[k] = '\0';
    return s;
}
