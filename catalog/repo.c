/* SPDX-License-Identifier: MIT */
#include "config.h"

#include "catalog/repo-internal.h"

#include "catalog/layout.h"
#include "common/atomic-file.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char *const problem_names[] = {
    [CAT_PROBLEM_NOT_A_VM] = "not-a-vm",
    [CAT_PROBLEM_BAD_VM_FILE] = "bad-vm-file",
    [CAT_PROBLEM_UNKNOWN_ENTRY] = "unknown-entry",
    [CAT_PROBLEM_UNLISTED_DISK] = "unlisted-disk",
    [CAT_PROBLEM_BAD_SIDECAR] = "bad-sidecar",
    [CAT_PROBLEM_IMAGE_WITHOUT_SIDECAR] = "image-without-sidecar",
    [CAT_PROBLEM_SIDECAR_WITHOUT_IMAGE] = "sidecar-without-image",
    [CAT_PROBLEM_ORPHAN] = "orphan",
    [CAT_PROBLEM_TEMP_FILE] = "temp-file",
    [CAT_PROBLEM_TOO_MANY_ENTRIES] = "too-many-entries",
};

const char *cat_problem_kind_name(enum cat_problem_kind kind)
{
    return kind < CAT_PROBLEM_KIND_COUNT ? problem_names[kind] : "?";
}

int repo_problem(struct cat_repo *repo, enum cat_problem_kind kind,
                 const char *path, const char *fmt, ...)
{
    struct cat_problem p = { .kind = kind };
    struct cat_problem *grown;
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vasprintf(&p.detail, fmt, ap);
    va_end(ap);
    if (n < 0)
        return -ENOMEM;
    p.path = strdup(path);
    grown = p.path ? realloc(repo->problems,
                             (repo->nproblems + 1) * sizeof(*grown)) : NULL;
    if (!grown) {
        free(p.path);
        free(p.detail);
        return -ENOMEM;
    }
    grown[repo->nproblems++] = p;
    repo->problems = grown;
    return 0;
}

static void vm_clear(struct cat_vm *vm)
{
    for (size_t i = 0; i < vm->ndisks; i++)
        cat_disk_clear(&vm->disks[i]);
    free(vm->disks);
    free(vm->dir);
    cat_vm_info_free(vm->info);
}

void cat_repo_free(struct cat_repo *repo)
{
    if (!repo)
        return;
    for (size_t i = 0; i < repo->nvms; i++)
        vm_clear(&repo->vms[i]);
    free(repo->vms);
    for (size_t i = 0; i < repo->nproblems; i++) {
        free(repo->problems[i].path);
        free(repo->problems[i].detail);
    }
    free(repo->problems);
    free(repo->root);
    free(repo);
}

static int ensure_root(const char *root, unsigned flags, struct sd_error *err)
{
    struct stat st;

    if (stat(root, &st) == 0) {
        if (!S_ISDIR(st.st_mode))
            return sd_error_set(err, -ENOTDIR, "repository %s is not a "
                                "folder", root);
        return 0;
    }
    if (errno != ENOENT || !(flags & CAT_REPO_CREATE))
        return sd_error_set(err, -errno, "repository %s: %s", root,
                            strerror(errno));
    return sd_durable_mkdir_parents(root, err);
}

int cat_repo_open(const char *root, unsigned flags, struct cat_repo **out,
                  struct sd_error *err)
{
    struct cat_repo *repo;
    int ret = ensure_root(root, flags, err);

    if (ret < 0)
        return ret;
    repo = calloc(1, sizeof(*repo));
    if (!repo || !(repo->root = strdup(root))) {
        free(repo);
        return sd_error_set(err, -ENOMEM, "out of memory");
    }
    ret = repo_scan(repo, err);
    if (ret < 0) {
        cat_repo_free(repo);
        return ret;
    }
    *out = repo;
    return 0;
}

struct cat_vm *cat_repo_vm(const struct cat_repo *repo, const char *ctx)
{
    for (size_t i = 0; i < repo->nvms; i++)
        if (strcmp(repo->vms[i].info->context_id, ctx) == 0)
            return &repo->vms[i];
    return NULL;
}

struct cat_disk *cat_vm_disk(const struct cat_vm *vm, const char *name)
{
    for (size_t i = 0; i < vm->ndisks; i++)
        if (strcmp(vm->disks[i].name, name) == 0)
            return &vm->disks[i];
    return NULL;
}

cat_time_t cat_vm_last_stamp(const struct cat_vm *vm)
{
    cat_time_t last = -1;

    for (size_t i = 0; i < vm->ndisks; i++) {
        const struct cat_disk *d = &vm->disks[i];
        /* Backups are sorted oldest first. */
        if (d->nbackups && d->backups[d->nbackups - 1]->stamp > last)
            last = d->backups[d->nbackups - 1]->stamp;
    }
    return last;
}

int cat_repo_remove_temp_files(const struct cat_repo *repo, size_t *removed,
                               struct sd_error *err)
{
    *removed = 0;
    for (size_t i = 0; i < repo->nproblems; i++) {
        const struct cat_problem *p = &repo->problems[i];
        if (p->kind != CAT_PROBLEM_TEMP_FILE)
            continue;
        char *path = cat_path_join(repo->root, p->path, NULL);
        if (!path)
            return sd_error_set(err, -ENOMEM, "out of memory");
        int ret = sd_durable_remove(path, err);
        free(path);
        if (ret < 0 && ret != -ENOENT)
            return ret;
        *removed += ret == 0;
    }
    sd_error_clear(err);
    return 0;
}

int cat_repo_write_vm(const char *root, const struct cat_vm_info *info,
                      struct sd_error *err)
{
    char *dir = cat_path_join(root, info->context_id, NULL);
    int ret;

    if (!dir)
        return sd_error_set(err, -ENOMEM, "out of memory");
    ret = sd_durable_mkdir(dir, err);
    if (ret == 0)
        ret = cat_vm_info_write(info, dir, err);
    free(dir);
    return ret;
}

int cat_repo_make_disk_dir(const char *root, const char *ctx,
                           const char *disk, char **dir,
                           struct sd_error *err)
{
    char *vm_dir = NULL, *path = NULL;
    unsigned index;
    int ret = cat_name_check("VM context id", ctx, err);

    if (ret == 0)
        ret = cat_disk_name_parse(disk, &index, err);
    if (ret < 0)
        return ret;
    vm_dir = cat_path_join(root, ctx, NULL);
    path = vm_dir ? cat_path_join(vm_dir, disk, NULL) : NULL;
    ret = path ? sd_durable_mkdir(path, err)
               : sd_error_set(err, -ENOMEM, "out of memory");
    free(vm_dir);
    if (ret < 0) {
        free(path);
        return ret;
    }
    *dir = path;
    return 0;
}
