/* SPDX-License-Identifier: MIT */
/*
 * Rebuilding the catalog from the repository's folders.
 *
 * Three levels, one function each: the root (VM context folders), a VM
 * context (vm.json and disk folders), a disk folder (images, sidecars).
 * Each entry is looked at with lstat(), never followed. Anything that
 * does not fit becomes a problem and the scan goes on; only running out
 * of memory or failing to read the root itself stops it.
 *
 * In a disk folder, names are classified first (layout.h) and sidecars
 * read afterwards, so "image without sidecar" and "sidecar without
 * image" are decided on the whole folder, not on readdir order.
 */
#include "config.h"

#include "catalog/repo-internal.h"

#include "catalog/layout.h"
#include "common/atomic-file.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Backup ids seen in one disk folder, by role. */
struct id_set {
    char (*ids)[CAT_ID_LEN + 1];
    size_t n;
};

static int id_set_add(struct id_set *s, const char *id)
{
    char (*grown)[CAT_ID_LEN + 1] = realloc(s->ids,
                                            (s->n + 1) * sizeof(*grown));

    if (!grown)
        return -ENOMEM;
    memcpy(grown[s->n++], id, CAT_ID_LEN + 1);
    s->ids = grown;
    return 0;
}

static int cmp_id(const void *a, const void *b)
{
    return strcmp(a, b);
}

static bool id_set_has(const struct id_set *s, const char *id)
{
    return s->n && bsearch(id, s->ids, s->n, sizeof(*s->ids), cmp_id);
}

/* One folder being read: its path on disk and relative to the root. */
struct folder {
    const char *path;
    const char *rel;                /* "" for the root */
};

static char *rel_join(const struct folder *f, const char *name)
{
    char *s;

    if (!name[0])
        return strdup(f->rel[0] ? f->rel : ".");
    if (asprintf(&s, "%s%s%s", f->rel, f->rel[0] ? "/" : "", name) < 0)
        return NULL;
    return s;
}

/* lstat the entry name of f: its mode, or 0 when it vanished. */
static mode_t entry_mode(const struct folder *f, const char *name)
{
    char *path = cat_path_join(f->path, name, NULL);
    struct stat st;
    mode_t mode = 0;

    if (path && lstat(path, &st) == 0)
        mode = st.st_mode;
    free(path);
    return mode;
}

static int problem_at(struct cat_repo *repo, const struct folder *f,
                      const char *name, enum cat_problem_kind kind,
                      const char *detail)
{
    char *rel = rel_join(f, name);
    int ret = rel ? repo_problem(repo, kind, rel, "%s", detail) : -ENOMEM;

    free(rel);
    return ret;
}

/* Call fn for each entry of f (not . and ..), at most
 * CAT_REPO_ENTRIES_MAX of them. A folder that cannot be opened is fn's
 * caller's problem: -errno. */
static int for_each_entry(struct cat_repo *repo, const struct folder *f,
                          int (*fn)(struct cat_repo *repo,
                                    const struct folder *f,
                                    const char *name, void *arg),
                          void *arg)
{
    DIR *dir = opendir(f->path);
    struct dirent *de;
    size_t count = 0;
    int ret = 0;

    if (!dir)
        return -errno;
    while (ret == 0 && (de = readdir(dir))) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (++count > CAT_REPO_ENTRIES_MAX) {
            ret = problem_at(repo, f, "", CAT_PROBLEM_TOO_MANY_ENTRIES,
                             "more entries than the scan reads; the rest "
                             "is ignored");
            break;
        }
        ret = fn(repo, f, de->d_name, arg);
    }
    closedir(dir);
    return ret;
}

/* --- disk folders ----------------------------------------------------- */

struct disk_scan {
    struct cat_disk *disk;
    struct id_set images;
    struct id_set sidecars;
};

static int classify_disk_entry(struct cat_repo *repo, const struct folder *f,
                               const char *name, void *arg)
{
    struct disk_scan *ds = arg;
    char id[CAT_ID_LEN + 1];
    enum cat_file_role role = cat_file_classify(name, id);
    mode_t mode = entry_mode(f, name);

    if (mode == 0)
        return 0;                   /* removed while we looked */
    if (role == CAT_FILE_TEMP)
        return problem_at(repo, f, name, CAT_PROBLEM_TEMP_FILE,
                          "temporary file of an interrupted write");
    if (!S_ISREG(mode) || role == CAT_FILE_OTHER)
        return problem_at(repo, f, name, CAT_PROBLEM_UNKNOWN_ENTRY,
                          S_ISLNK(mode) ? "symbolic link (not followed)"
                                        : "not part of the repository "
                                          "layout");
    return id_set_add(role == CAT_FILE_IMAGE ? &ds->images : &ds->sidecars,
                      id);
}

static int load_sidecar(struct cat_repo *repo, const struct folder *f,
                        struct disk_scan *ds, const char *id)
{
    char name[CAT_ID_LEN + sizeof(CAT_SIDECAR_EXT)];
    struct cat_sidecar *sc;
    struct sd_error e = { 0 };

    snprintf(name, sizeof(name), "%s" CAT_SIDECAR_EXT, id);
    char *path = cat_path_join(f->path, name, NULL);
    if (!path)
        return -ENOMEM;
    int ret = cat_sidecar_read(path, &sc, &e);
    free(path);
    if (ret == -ENOMEM)
        return ret;
    if (ret < 0)
        return problem_at(repo, f, name, CAT_PROBLEM_BAD_SIDECAR, e.msg);
    if (strcmp(sc->id, id) != 0) {
        snprintf(e.msg, sizeof(e.msg), "its id %s does not match its file "
                 "name", sc->id);
        cat_sidecar_free(sc);
        return problem_at(repo, f, name, CAT_PROBLEM_BAD_SIDECAR, e.msg);
    }
    bool has_image = id_set_has(&ds->images, id);
    /* A failed backup's image is deleted by policy; its sidecar stays as
     * the record of why, and is no problem. */
    bool image_expected = sc->status != CAT_STATUS_FAILED;
    ret = cat_disk_add(ds->disk, sc, has_image);
    if (ret == 0 && !has_image && image_expected)
        ret = problem_at(repo, f, name, CAT_PROBLEM_SIDECAR_WITHOUT_IMAGE,
                         "its image is missing");
    return ret;
}

static int report_loose_images(struct cat_repo *repo, const struct folder *f,
                               const struct disk_scan *ds)
{
    char name[CAT_ID_LEN + sizeof(CAT_IMAGE_EXT)];

    for (size_t i = 0; i < ds->images.n; i++) {
        if (id_set_has(&ds->sidecars, ds->images.ids[i]))
            continue;
        snprintf(name, sizeof(name), "%s" CAT_IMAGE_EXT, ds->images.ids[i]);
        int ret = problem_at(repo, f, name,
                             CAT_PROBLEM_IMAGE_WITHOUT_SIDECAR,
                             "image without a sidecar");
        if (ret < 0)
            return ret;
    }
    return 0;
}

static int report_orphans(struct cat_repo *repo, const struct folder *f,
                          const struct cat_disk *d)
{
    char name[CAT_ID_LEN + sizeof(CAT_SIDECAR_EXT)];
    char detail[128];

    for (size_t i = 0; i < d->nbackups; i++) {
        const struct cat_backup *b = d->backups[i];
        if (!b->orphan)
            continue;
        snprintf(name, sizeof(name), "%s" CAT_SIDECAR_EXT, b->sc->id);
        snprintf(detail, sizeof(detail), "its parent %s is missing",
                 b->sc->parent);
        int ret = problem_at(repo, f, name, CAT_PROBLEM_ORPHAN, detail);
        if (ret < 0)
            return ret;
    }
    return 0;
}

static int scan_disk_entries(struct cat_repo *repo, const struct folder *f,
                             struct disk_scan *ds)
{
    int ret = for_each_entry(repo, f, classify_disk_entry, ds);

    if (ret == -ENOENT)
        return 0;                   /* listed in vm.json, no backup yet */
    if (ret < 0 && ret != -ENOMEM)
        return problem_at(repo, f, "", CAT_PROBLEM_UNKNOWN_ENTRY,
                          strerror(-ret));
    if (ret < 0)
        return ret;
    if (ds->images.n > 1)
        qsort(ds->images.ids, ds->images.n, sizeof(*ds->images.ids), cmp_id);
    if (ds->sidecars.n > 1)
        qsort(ds->sidecars.ids, ds->sidecars.n, sizeof(*ds->sidecars.ids),
              cmp_id);
    for (size_t i = 0; ret == 0 && i < ds->sidecars.n; i++)
        ret = load_sidecar(repo, f, ds, ds->sidecars.ids[i]);
    if (ret == 0)
        ret = report_loose_images(repo, f, ds);
    if (ret == 0)
        ret = cat_disk_link(ds->disk);
    if (ret == 0)
        ret = report_orphans(repo, f, ds->disk);
    return ret;
}

static int scan_disk(struct cat_repo *repo, const struct folder *vmf,
                     struct cat_disk *disk)
{
    struct disk_scan ds = { .disk = disk };
    struct stat st;

    /* Missing: no backup yet. Not a folder: reported with the VM. */
    if (lstat(disk->dir, &st) < 0 || !S_ISDIR(st.st_mode))
        return 0;
    char *rel = rel_join(vmf, disk->name);
    int ret = -ENOMEM;

    if (rel) {
        struct folder f = { disk->dir, rel };
        ret = scan_disk_entries(repo, &f, &ds);
    }
    free(ds.images.ids);
    free(ds.sidecars.ids);
    free(rel);
    return ret;
}

/* --- VM context folders ----------------------------------------------- */

static int add_disk(struct cat_vm *vm, const char *name, unsigned index)
{
    struct cat_disk *grown = realloc(vm->disks,
                                     (vm->ndisks + 1) * sizeof(*grown));

    if (!grown)
        return -ENOMEM;
    vm->disks = grown;
    struct cat_disk *d = &grown[vm->ndisks];
    memset(d, 0, sizeof(*d));
    snprintf(d->name, sizeof(d->name), "%s", name);
    d->index = index;
    d->dir = cat_path_join(vm->dir, name, NULL);
    if (!d->dir)
        return -ENOMEM;
    vm->ndisks++;
    return 0;
}

/* Folders in a VM context that vm.json does not list become disks too
 * (reported), so no backup on disk is hidden from the catalog. */
static int note_vm_entry(struct cat_repo *repo, const struct folder *f,
                         const char *name, void *arg)
{
    struct cat_vm *vm = arg;
    mode_t mode = entry_mode(f, name);
    unsigned index;

    if (mode == 0 || strcmp(name, CAT_VM_FILE) == 0)
        return 0;
    if (sd_atomic_is_temp_name(name))
        return problem_at(repo, f, name, CAT_PROBLEM_TEMP_FILE,
                          "temporary file of an interrupted write");
    if (!S_ISDIR(mode) || cat_disk_name_parse(name, &index, NULL) < 0)
        return problem_at(repo, f, name, CAT_PROBLEM_UNKNOWN_ENTRY,
                          S_ISLNK(mode) ? "symbolic link (not followed)"
                                        : "not part of the repository "
                                          "layout");
    if (cat_vm_disk(vm, name))
        return 0;
    int ret = problem_at(repo, f, name, CAT_PROBLEM_UNLISTED_DISK,
                         "disk folder not listed in vm.json");
    return ret < 0 ? ret : add_disk(vm, name, index);
}

/* In a folder whose vm.json is missing, only our temporary files are
 * looked at: an interrupted first write of vm.json leaves one there. */
static int note_temp_only(struct cat_repo *repo, const struct folder *f,
                          const char *name, void *arg)
{
    (void)arg;
    if (!sd_atomic_is_temp_name(name) || !S_ISREG(entry_mode(f, name)))
        return 0;
    return problem_at(repo, f, name, CAT_PROBLEM_TEMP_FILE,
                      "temporary file of an interrupted write");
}

static int read_vm_info(struct cat_repo *repo, const struct folder *f,
                        const char *ctx, struct cat_vm_info **info)
{
    struct sd_error e = { 0 };
    char *path = cat_path_join(f->path, CAT_VM_FILE, NULL);
    int ret;

    if (!path)
        return -ENOMEM;
    ret = cat_vm_info_read(path, info, &e);
    free(path);
    if (ret == -ENOMEM)
        return ret;
    if (ret == -ENOENT) {
        ret = problem_at(repo, f, "", CAT_PROBLEM_NOT_A_VM,
                         "folder without vm.json");
        if (ret == 0)
            ret = for_each_entry(repo, f, note_temp_only, NULL);
        return ret == -ENOMEM ? ret : 0;
    }
    if (ret < 0)
        return problem_at(repo, f, CAT_VM_FILE, CAT_PROBLEM_BAD_VM_FILE,
                          e.msg);
    if (strcmp((*info)->context_id, ctx) == 0)
        return 1;
    snprintf(e.msg, sizeof(e.msg), "context id %s does not match its "
             "folder", (*info)->context_id);
    cat_vm_info_free(*info);
    *info = NULL;
    return problem_at(repo, f, CAT_VM_FILE, CAT_PROBLEM_BAD_VM_FILE, e.msg);
}

static int fill_vm(struct cat_repo *repo, const struct folder *f,
                   struct cat_vm *vm)
{
    int ret = 0;

    for (size_t i = 0; ret == 0 && i < vm->info->ndisks; i++)
        ret = add_disk(vm, vm->info->disks[i].name, vm->info->disks[i].index);
    if (ret == 0)
        ret = for_each_entry(repo, f, note_vm_entry, vm);
    if (ret < 0 && ret != -ENOMEM)      /* the folder could not be read */
        ret = problem_at(repo, f, "", CAT_PROBLEM_UNKNOWN_ENTRY,
                         strerror(-ret));
    for (size_t i = 0; ret == 0 && i < vm->ndisks; i++)
        ret = scan_disk(repo, f, &vm->disks[i]);
    return ret;
}

static int scan_vm(struct cat_repo *repo, const struct folder *root,
                   const char *ctx)
{
    struct cat_vm vm = { 0 };
    char *rel = rel_join(root, ctx);
    int ret = -ENOMEM;

    vm.dir = cat_path_join(repo->root, ctx, NULL);
    if (!rel || !vm.dir)
        goto out_free;
    struct folder f = { vm.dir, rel };
    ret = read_vm_info(repo, &f, ctx, &vm.info);
    if (ret <= 0)
        goto out_free;
    ret = fill_vm(repo, &f, &vm);
    struct cat_vm *grown = ret == 0 ? realloc(repo->vms,
        (repo->nvms + 1) * sizeof(*grown)) : NULL;
    if (ret == 0 && !grown)
        ret = -ENOMEM;
    if (ret < 0)
        goto out_free;
    repo->vms = grown;
    repo->vms[repo->nvms++] = vm;
    free(rel);
    return 0;

out_free:
    for (size_t i = 0; i < vm.ndisks; i++)
        cat_disk_clear(&vm.disks[i]);
    free(vm.disks);
    cat_vm_info_free(vm.info);
    free(vm.dir);
    free(rel);
    return ret;
}

/* --- the root --------------------------------------------------------- */

static int note_root_entry(struct cat_repo *repo, const struct folder *f,
                           const char *name, void *arg)
{
    mode_t mode = entry_mode(f, name);
    struct sd_error e = { 0 };

    (void)arg;
    if (mode == 0)
        return 0;
    if (sd_atomic_is_temp_name(name))
        return problem_at(repo, f, name, CAT_PROBLEM_TEMP_FILE,
                          "temporary file of an interrupted write");
    if (!S_ISDIR(mode))
        return problem_at(repo, f, name, CAT_PROBLEM_UNKNOWN_ENTRY,
                          S_ISLNK(mode) ? "symbolic link (not followed)"
                                        : "not a VM context folder");
    if (cat_name_check("VM context id", name, &e) < 0)
        return problem_at(repo, f, name, CAT_PROBLEM_NOT_A_VM, e.msg);
    return scan_vm(repo, f, name);
}

static int by_context_id(const void *a, const void *b)
{
    const struct cat_vm *x = a, *y = b;

    return strcmp(x->info->context_id, y->info->context_id);
}

int repo_scan(struct cat_repo *repo, struct sd_error *err)
{
    struct folder root = { repo->root, "" };
    int ret = for_each_entry(repo, &root, note_root_entry, NULL);

    if (ret == -ENOMEM)
        return sd_error_set(err, ret, "scan of %s: out of memory",
                            repo->root);
    if (ret < 0)
        return sd_error_set(err, ret, "repository %s: %s", repo->root,
                            strerror(-ret));
    if (repo->nvms > 1)
        qsort(repo->vms, repo->nvms, sizeof(*repo->vms), by_context_id);
    return 0;
}
