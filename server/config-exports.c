/* SPDX-License-Identifier: MIT */
/*
 * Loading an export directory: one definition per <name>.yaml file,
 * nbd-server INI sections from *.conf files. Each file's result is its
 * own entry, an export or the error that kept it out, so one broken file
 * leaves the others in force. Files are read in name order, so results
 * and messages do not depend on readdir's order.
 *
 * Hidden files are skipped: writers put a definition in place by writing
 * a hidden temporary file and renaming it, and the temporary file must
 * never be read half-written. Any other file is reported, not ignored.
 */
#include "config.h"

#include "server/config-internal.h"

#include "common/batch-read.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A directory entry, with its content when it was read ahead. */
struct listed_file {
    char *name;
    unsigned char type;     /* d_type: DT_REG, or DT_UNKNOWN when unsure */
    char *data;             /* NUL-terminated, or NULL: read it by path */
    size_t len;
};

struct name_list {
    struct listed_file *files;
    size_t n, cap;
};

/* Export files are a few lines; larger ones are read one by one. */
enum { READ_AHEAD_MAX = 4096 };

static void name_list_clear(struct name_list *l)
{
    size_t i;

    for (i = 0; i < l->n; i++) {
        free(l->files[i].name);
        free(l->files[i].data);
    }
    free(l->files);
    memset(l, 0, sizeof(*l));
}

static int name_list_add(struct name_list *l, const struct dirent *d)
{
    if (l->n == l->cap) {
        size_t ncap = l->cap ? l->cap * 2 : 64;
        struct listed_file *files = realloc(l->files, ncap * sizeof(*files));

        if (!files)
            return -ENOMEM;
        l->files = files;
        l->cap = ncap;
    }
    memset(&l->files[l->n], 0, sizeof(l->files[l->n]));
    l->files[l->n].name = strdup(d->d_name);
    if (!l->files[l->n].name)
        return -ENOMEM;
    l->files[l->n].type = d->d_type;
    l->n++;
    return 0;
}

static int compare_names(const void *a, const void *b)
{
    return strcmp(((const struct listed_file *)a)->name,
                  ((const struct listed_file *)b)->name);
}

/* dp's non-hidden entries with their types, sorted by name; dir names
 * the folder in messages. */
static int list_dir(DIR *dp, const char *dir, struct name_list *out,
                    struct sd_error *err)
{
    struct dirent *d;
    int ret = 0;

    for (;;) {
        errno = 0;
        d = readdir(dp);
        if (!d) {
            if (errno)
                ret = sd_error_set(err, -errno, "%s: %s", dir,
                                   strerror(errno));
            break;
        }
        if (d->d_name[0] == '.')
            continue;
        if (out->n >= SD_CONFIG_DIR_FILES_MAX) {
            ret = sd_error_set(err, -E2BIG, "%s: more than %u files", dir,
                               SD_CONFIG_DIR_FILES_MAX);
            break;
        }
        if (name_list_add(out, d) < 0) {
            ret = sd_error_set(err, -ENOMEM, "%s: out of memory", dir);
            break;
        }
    }
    if (ret < 0) {
        name_list_clear(out);
        return ret;
    }
    if (out->n)
        qsort(out->files, out->n, sizeof(*out->files), compare_names);
    return 0;
}

static bool has_suffix(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);

    return n > m && strcmp(s + n - m, suffix) == 0;
}

/* Read every small regular <name>.yaml file in a few batches (a
 * thousand of them one by one cost a reload 4,000 system calls). A file
 * it could not read keeps data NULL and is read by path, which reports
 * whatever is wrong with it; so does any other kind of entry. */
static void read_ahead(int dir_fd, struct name_list *l)
{
    struct sd_batch_file *batch;
    size_t *from;
    size_t i, n = 0;

    batch = calloc(l->n, sizeof(*batch));
    from = calloc(l->n, sizeof(*from));
    if (!batch || !from)
        goto out;
    for (i = 0; i < l->n; i++) {
        const struct listed_file *f = &l->files[i];

        if (f->type != DT_REG || !has_suffix(f->name, ".yaml"))
            continue;
        batch[n].name = f->name;
        from[n++] = i;
    }
    /* A failure leaves the rest to be read by path. */
    (void)sd_batch_read_small_files(dir_fd, batch, n, READ_AHEAD_MAX);
    for (i = 0; i < n; i++) {
        l->files[from[i]].data = batch[i].data;
        l->files[from[i]].len = batch[i].len;
    }
out:
    free(batch);
    free(from);
}

/* <name>.yaml: one entry, named after the file even when it is broken,
 * so a reload knows which export's old definition to keep. */
static int load_yaml_file(const char *path, const struct listed_file *file,
                          struct sd_export_list *list)
{
    size_t n = strlen(file->name) - strlen(".yaml");
    struct sd_export *exp = NULL;
    struct sd_error e = { 0 };
    char *name = strndup(file->name, n);
    int ret;

    if (!name)
        return -ENOMEM;
    if (file->data)
        (void)sd_config_parse_export_yaml(path, file->data, file->len, &exp,
                                          &e);
    else
        (void)sd_config_load_export_yaml(path, &exp, &e);
    ret = sd_export_list_add(list, path, name, exp, &e);
    free(name);
    return ret;
}

static int load_conf_file(const char *path, struct sd_export_list *list)
{
    struct sd_error e = { 0 };
    int ret = sd_config_load_nbd_ini_exports(path, list, &e);

    if (ret == -ENOMEM || ret == -E2BIG)
        return ret;
    if (ret < 0)
        return sd_export_list_add(list, path, NULL, NULL, &e);
    return 0;
}

static int load_one(const char *dir, const struct listed_file *file,
                    struct sd_export_list *list)
{
    struct sd_error e;
    char *path;
    int ret;

    if (asprintf(&path, "%s/%s", dir, file->name) < 0)
        return -ENOMEM;
    if (has_suffix(file->name, ".yaml")) {
        ret = load_yaml_file(path, file, list);
    } else if (has_suffix(file->name, ".conf")) {
        ret = load_conf_file(path, list);
    } else {
        sd_error_set(&e, -EINVAL,
                     "%s: not an export file (<name>.yaml, or *.conf in "
                     "nbd-server's format)", path);
        ret = sd_export_list_add(list, path, NULL, NULL, &e);
    }
    free(path);
    return ret;
}

/* Move every entry of from to the end of to. */
static int list_append(struct sd_export_list *to, struct sd_export_list *from)
{
    if (from->n == 0)
        return 0;
    if (to->n == 0) {
        /* The usual case: hand the array over. Entries hold a whole error
         * message each; copying a thousand of them into fresh pages took
         * 8 % of a reload's user time. */
        free(to->entries);
        *to = *from;
        memset(from, 0, sizeof(*from));
        return 0;
    }
    if (to->n + from->n > SD_CONFIG_EXPORTS_MAX)
        return -E2BIG;
    if (sd_export_list_reserve(to, from->n) < 0)
        return -ENOMEM;
    memcpy(to->entries + to->n, from->entries,
           from->n * sizeof(*to->entries));
    to->n += from->n;
    free(from->entries);
    from->entries = NULL;
    from->n = from->cap = 0;
    return 0;
}

int sd_config_load_export_dir(const char *dir, struct sd_export_list *list,
                              struct sd_error *err)
{
    struct sd_export_list found = { 0 };
    struct name_list names = { 0 };
    DIR *dp = opendir(dir);
    size_t i;
    int ret;

    if (!dp)
        return sd_error_set(err, -errno, "%s: %s", dir, strerror(errno));
    ret = list_dir(dp, dir, &names, err);
    if (ret < 0) {
        closedir(dp);
        return ret;
    }
    read_ahead(dirfd(dp), &names);
    closedir(dp);
    for (i = 0; i < names.n && ret == 0; i++)
        ret = load_one(dir, &names.files[i], &found);
    if (ret == 0)
        ret = list_append(list, &found);
    name_list_clear(&names);
    sd_export_list_clear(&found);
    if (ret < 0)
        return sd_error_set(err, ret, "%s: %s", dir,
                            ret == -E2BIG ? "more than 10000 exports"
                                          : strerror(-ret));
    ret = sd_export_list_mark_duplicates(list);
    if (ret < 0)
        return sd_error_set(err, ret, "%s: out of memory", dir);
    return 0;
}

static int compare_entries_by_name(const void *a, const void *b)
{
    const struct sd_export_entry *x = *(const struct sd_export_entry *const *)a;
    const struct sd_export_entry *y = *(const struct sd_export_entry *const *)b;

    return strcmp(x->export->name, y->export->name);
}

/* Turn a run of definitions of one name into errors: each names the
 * next (the last names the first), so every file involved is named. The
 * messages are all written before any definition is freed. */
static void mark_run(struct sd_export_entry **run, size_t n)
{
    size_t k;

    for (k = 0; k < n; k++) {
        const struct sd_export *exp = run[k]->export;
        const struct sd_export *other = run[(k + 1) % n]->export;

        sd_error_set(&run[k]->error, -EEXIST,
                     "%s:%u: export \"%s\" is also defined in %s:%u",
                     exp->source, exp->line, exp->name, other->source,
                     other->line);
    }
    for (k = 0; k < n; k++) {
        sd_export_free(run[k]->export);
        run[k]->export = NULL;
    }
}

int sd_export_list_mark_duplicates(struct sd_export_list *list)
{
    struct sd_export_entry **byname;
    size_t i, j, n = 0;

    byname = malloc((list->n ? list->n : 1) * sizeof(*byname));
    if (!byname)
        return -ENOMEM;
    for (i = 0; i < list->n; i++)
        if (list->entries[i].export)
            byname[n++] = &list->entries[i];
    qsort(byname, n, sizeof(*byname), compare_entries_by_name);
    for (i = 0; i < n; i = j) {
        for (j = i + 1; j < n && strcmp(byname[i]->export->name,
                                        byname[j]->export->name) == 0; j++)
            ;
        if (j - i > 1)
            mark_run(byname + i, j - i);
    }
    free(byname);
    return 0;
}
