/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of common/batch-read.c: small files of a directory read
 * through io_uring in batches; anything it cannot read is left to the
 * caller, never half-read.
 */
#include "config.h"

#include "common/batch-read.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum { MAX_LEN = 256 };

static char tmpdir[64];
static int dirfd_;

static void setup(void)
{
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/sd-test-batch-XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir));
    dirfd_ = open(tmpdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    cr_assert_geq(dirfd_, 0);
}

static int remove_one(const char *p, const struct stat *st, int flag,
                      struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(p);
}

static void teardown(void)
{
    close(dirfd_);
    cr_assert_eq(nftw(tmpdir, remove_one, 16, FTW_DEPTH | FTW_PHYS), 0);
}

TestSuite(batch_read, .init = setup, .fini = teardown);

/* A file of len bytes: its name repeated, so every file differs. */
static void make_file(const char *name, size_t len)
{
    char path[PATH_MAX];
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
    f = fopen(path, "w");
    cr_assert_not_null(f, "%s: %s", path, strerror(errno));
    for (size_t i = 0; i < len; i++)
        cr_assert_neq(fputc(name[i % strlen(name)], f), EOF);
    cr_assert_eq(fclose(f), 0);
}

static void expect_content(const struct sd_batch_file *f, size_t len)
{
    cr_assert_not_null(f->data, "%s was not read", f->name);
    cr_assert_eq(f->len, len, "%s: %zu bytes, expected %zu", f->name,
                 f->len, len);
    for (size_t i = 0; i < len; i++)
        cr_assert_eq(f->data[i], f->name[i % strlen(f->name)],
                     "%s: byte %zu differs", f->name, i);
    cr_assert_eq(f->data[len], '\0', "%s: not NUL-terminated", f->name);
}

static void free_files(struct sd_batch_file *files, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(files[i].data);
}

Test(batch_read, many_files_in_several_batches_read_exactly)
{
    enum { N = 150 };       /* more than two batches */
    static char names[N][32];
    struct sd_batch_file files[N];

    for (size_t i = 0; i < N; i++) {
        snprintf(names[i], sizeof(names[i]), "file-%03zu.yaml", i);
        make_file(names[i], i % MAX_LEN);
        files[i].name = names[i];
        files[i].data = (char *)1;  /* must be reset */
    }
    cr_assert_eq(sd_batch_read_small_files(dirfd_, files, N, MAX_LEN), 0);
    for (size_t i = 0; i < N; i++)
        expect_content(&files[i], i % MAX_LEN);
    free_files(files, N);
}

Test(batch_read, what_it_cannot_read_is_left_unread)
{
    struct sd_batch_file files[] = {
        { .name = "small" },
        { .name = "just-fits" },
        { .name = "max-len" },      /* might go on: left to the caller */
        { .name = "large" },
        { .name = "missing" },
        { .name = "a-directory" },
        { .name = "after" },
    };
    char path[PATH_MAX];
    size_t n = sizeof(files) / sizeof(files[0]);

    make_file("small", 10);
    make_file("just-fits", MAX_LEN - 1);
    make_file("max-len", MAX_LEN);
    make_file("large", 3 * MAX_LEN);
    snprintf(path, sizeof(path), "%s/a-directory", tmpdir);
    cr_assert_eq(mkdir(path, 0755), 0);
    make_file("after", 20);

    cr_assert_eq(sd_batch_read_small_files(dirfd_, files, n, MAX_LEN), 0);
    expect_content(&files[0], 10);
    expect_content(&files[1], MAX_LEN - 1);
    for (size_t i = 2; i <= 5; i++)
        cr_assert_null(files[i].data, "%s should be left unread",
                       files[i].name);
    expect_content(&files[6], 20);
    free_files(files, n);
}

Test(batch_read, nothing_to_read)
{
    struct sd_batch_file f = { .name = "x" };

    cr_assert_eq(sd_batch_read_small_files(dirfd_, &f, 0, MAX_LEN), 0);
    cr_assert_eq(sd_batch_read_small_files(dirfd_, &f, 1, 0), 0);
    cr_assert_null(f.data);
}
