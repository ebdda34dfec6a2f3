/* SPDX-License-Identifier: MIT */
/* Scratch folders and small file helpers for the catalog tests. */
#ifndef SENDENSE_TESTS_CATALOG_FIXTURE_H
#define SENDENSE_TESTS_CATALOG_FIXTURE_H

#include <criterion/criterion.h>
#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* A fresh folder under TMPDIR; criterion runs each test in its own
 * process, so each test makes its own. */
static inline char *fx_mkdtemp(void)
{
    const char *tmp = getenv("TMPDIR");
    char *path;

    cr_assert_geq(asprintf(&path, "%s/sd-catalog-XXXXXX", tmp ? tmp : "/tmp"),
                  0);
    cr_assert_not_null(mkdtemp(path));
    return path;
}

static inline int fx_rm_entry(const char *path, const struct stat *st,
                              int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static inline void fx_rm_rf(char *path)
{
    nftw(path, fx_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(path);
}

static inline char *fx_path(const char *a, const char *b)
{
    char *p;

    cr_assert_geq(asprintf(&p, "%s/%s", a, b), 0);
    return p;
}

static inline void fx_write(const char *dir, const char *name,
                            const char *text)
{
    char *p = fx_path(dir, name);
    FILE *f = fopen(p, "w");

    cr_assert_not_null(f, "%s", p);
    cr_assert_eq(fputs(text, f) >= 0, 1);
    cr_assert_eq(fclose(f), 0);
    free(p);
}

static inline void fx_mkdir(const char *dir, const char *name)
{
    char *p = fx_path(dir, name);

    cr_assert_eq(mkdir(p, 0755), 0, "%s", p);
    free(p);
}

static inline bool fx_exists(const char *dir, const char *name)
{
    char *p = fx_path(dir, name);
    struct stat st;
    bool yes = lstat(p, &st) == 0;

    free(p);
    return yes;
}

/* Number of entries in dir, other than . and .. */
static inline size_t fx_count(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    size_t n = 0;

    cr_assert_not_null(d, "%s", dir);
    while ((de = readdir(d)))
        n += strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0;
    closedir(d);
    return n;
}

static inline char *fx_read(const char *path)
{
    FILE *f = fopen(path, "r");
    char *buf = NULL;
    size_t len = 0;

    cr_assert_not_null(f, "%s", path);
    FILE *mem = open_memstream(&buf, &len);
    int c;
    while ((c = fgetc(f)) != EOF)
        fputc(c, mem);
    fclose(mem);
    fclose(f);
    return buf;
}

#endif
