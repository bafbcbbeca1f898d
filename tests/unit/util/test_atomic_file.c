/*
 * The atomic file writer (util/atomic_file.h): a complete file or none at the target, the
 * umask honoured, no symbolic link followed or replaced, a swapped temporary file refused,
 * nothing left behind by an abort or a failure.
 */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testutil.h"
#include "util/atomic_file.h"
#include "util/status.h"

static const char *dir;

static const char *path_(const char *name) {
    static char buf[4][1024];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
    return buf[k];
}

static void write_text_(const char *p, const char *s) {
    FILE *f = fopen(p, "w");
    fputs(s, f);
    fclose(f);
}

static bool file_is_(const char *p, const char *want) {
    char got[256] = "";
    FILE *f = fopen(p, "r");
    if (!f) return false;
    const size_t n = fread(got, 1, sizeof got - 1, f);
    got[n] = '\0';
    fclose(f);
    return !strcmp(got, want);
}

/* Entries of dir, sorted names joined by spaces (without . and ..). */
static const char *listing_(void) {
    static char out[4096];
    struct dirent **ents;
    const int n = scandir(dir, &ents, NULL, alphasort);
    out[0] = '\0';
    for (int i = 0; i < n; ++i) {
        if (strcmp(ents[i]->d_name, ".") && strcmp(ents[i]->d_name, "..")) {
            if (out[0]) strcat(out, " ");
            strcat(out, ents[i]->d_name);
        }
        free(ents[i]);
    }
    free(ents);
    return out;
}

static void test_write_and_replace(void) {
    CHECK(sp_afile_write_file(path_("a.txt"), "one\n", 4, "test file") == SP_OK, "write: %s",
          sp_last_error());
    CHECK(file_is_(path_("a.txt"), "one\n"), "content");
    CHECK(sp_afile_write_file(path_("a.txt"), "two\n", 4, "test file") == SP_OK, "replace: %s",
          sp_last_error());
    CHECK(file_is_(path_("a.txt"), "two\n"), "replaced content");
    CHECK(!strcmp(listing_(), "a.txt"), "only the target is left: %s", listing_());

    /* the temporary file: hidden, beside the target, an unpredictable name, invisible target */
    sp_afile f;
    CHECK(sp_afile_open(&f, path_("b.txt"), "test file") == SP_OK, "open: %s", sp_last_error());
    size_t tl = 0;
    const char *slash = strrchr(sp_afile_tmp_path(&f), '/');
    CHECK(slash && sp_afile_is_temp_name(slash + 1, &tl) && tl == 5 &&
              !strncmp(slash + 1, ".b.txt.tmp-", 11),
          "temporary name %s", sp_afile_tmp_path(&f));
    sp_afile g;
    CHECK(sp_afile_open(&g, path_("b.txt"), "test file") == SP_OK, "a second writer: %s",
          sp_last_error());
    CHECK(strcmp(sp_afile_tmp_path(&f), sp_afile_tmp_path(&g)) != 0, "two writers share %s",
          sp_afile_tmp_path(&f));
    sp_afile_abort(&g);
    CHECK(sp_afile_write(&f, "part", 4) == SP_OK, "write");
    CHECK(access(path_("b.txt"), F_OK) != 0, "the target exists before the commit");
    CHECK(sp_afile_commit(&f) == SP_OK, "commit: %s", sp_last_error());
    CHECK(file_is_(path_("b.txt"), "part"), "committed content");

    /* abort: nothing left, the old file as it was */
    CHECK(sp_afile_open(&f, path_("b.txt"), "test file") == SP_OK, "open");
    CHECK(sp_afile_write(&f, "other", 5) == SP_OK, "write");
    sp_afile_abort(&f);
    sp_afile_abort(&f); /* twice: nothing */
    CHECK(file_is_(path_("b.txt"), "part") && !strcmp(listing_(), "a.txt b.txt"), "after abort: %s",
          listing_());
}

static void test_umask(void) {
    const mode_t old = umask(027);
    CHECK(sp_afile_write_file(path_("m.txt"), "x", 1, "test file") == SP_OK, "write");
    umask(old);
    struct stat sb;
    CHECK(stat(path_("m.txt"), &sb) == 0 && (sb.st_mode & 0777) == 0640, "mode %o",
          (unsigned)(sb.st_mode & 0777));
}

static void test_refusals(void) {
    write_text_(path_("victim.txt"), "victim\n");
    CHECK(symlink(path_("victim.txt"), path_("link.txt")) == 0, "symlink");
    sp_status st = sp_afile_write_file(path_("link.txt"), "evil", 4, "test file");
    CHECK(st == SP_ERR_IO && strstr(sp_last_error(), "link.txt: is a symbolic link"), "link: %s",
          sp_last_error());
    CHECK(file_is_(path_("victim.txt"), "victim\n"), "the link's target changed");
    unlink(path_("link.txt"));

    CHECK(symlink(path_("ghost.txt"), path_("dangling.txt")) == 0, "symlink");
    st = sp_afile_write_file(path_("dangling.txt"), "evil", 4, "test file");
    CHECK(st == SP_ERR_IO && access(path_("ghost.txt"), F_OK) != 0,
          "a dangling link's target was created");
    unlink(path_("dangling.txt"));

    CHECK(mkdir(path_("sub"), 0777) == 0, "mkdir");
    st = sp_afile_write_file(path_("sub"), "x", 1, "test file");
    CHECK(st == SP_ERR_IO && strstr(sp_last_error(), "not a regular file"), "directory: %s",
          sp_last_error());
    rmdir(path_("sub"));

    /* a link planted at the target after the open: refused at the commit */
    sp_afile f;
    CHECK(sp_afile_open(&f, path_("late.txt"), "test file") == SP_OK, "open");
    CHECK(symlink(path_("victim.txt"), path_("late.txt")) == 0, "symlink");
    CHECK(sp_afile_write(&f, "evil", 4) == SP_OK, "write");
    st = sp_afile_commit(&f);
    CHECK(st == SP_ERR_IO && strstr(sp_last_error(), "symbolic link"), "late link: %s",
          sp_last_error());
    CHECK(file_is_(path_("victim.txt"), "victim\n"), "the link's target changed");
    unlink(path_("late.txt"));

    /* the temporary file swapped for another while being written: refused */
    CHECK(sp_afile_open(&f, path_("swap.txt"), "test file") == SP_OK, "open");
    char tmp[1024];
    snprintf(tmp, sizeof tmp, "%s", sp_afile_tmp_path(&f));
    CHECK(unlink(tmp) == 0, "unlink the temporary file");
    write_text_(tmp, "swapped");
    st = sp_afile_commit(&f);
    CHECK(st == SP_ERR_IO && strstr(sp_last_error(), "was replaced"), "swap: %s", sp_last_error());
    CHECK(access(path_("swap.txt"), F_OK) != 0 && access(tmp, F_OK) != 0,
          "a swapped file reached the target, or was left behind");

    /* paths that name no file, a missing directory */
    CHECK(sp_afile_write_file("", "x", 1, "test file") == SP_ERR_ARG, "empty path");
    CHECK(sp_afile_write_file(path_(""), "x", 1, "test file") == SP_ERR_ARG, "trailing slash");
    CHECK(sp_afile_write_file(path_(".."), "x", 1, "test file") == SP_ERR_ARG, "..");
    st = sp_afile_write_file(path_("no/such/f.txt"), "x", 1, "test file");
    CHECK(st == SP_ERR_IO && strstr(sp_last_error(), "f.txt: cannot create the test file"),
          "missing directory: %s", sp_last_error());
    CHECK(!strcmp(listing_(), "a.txt b.txt m.txt victim.txt"), "left behind: %s", listing_());
}

int main(void) {
    dir = sp_test_tmpdir("atomic_file");
    test_write_and_replace();
    test_umask();
    test_refusals();
    return sp_test_summary("atomic_file");
}
