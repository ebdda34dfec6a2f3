/* SPDX-License-Identifier: MIT */
/*
 * Repository scans and chains, on real folders built in a scratch
 * directory. Images are empty placeholder files: the catalog looks at
 * names and sidecars, never at image contents.
 */
#include "config.h"

#include "catalog/layout.h"
#include "catalog/repo.h"

#include "leak-check.h"
#include "catalog-fixture.h"

#include <errno.h>

#define T0 ((cat_time_t)1759665600)     /* 2025-10-05T12:00:00Z */
#define HOUR 3600

static void add_vm(const char *root, const char *ctx, int ndisks)
{
    struct cat_vm_info *vm = NULL;
    struct sd_error e = { 0 };
    char disk[16];

    cr_assert_eq(cat_vm_info_new(ctx, NULL, T0, &vm, &e), 0, "%s", e.msg);
    for (int i = 0; i < ndisks; i++) {
        snprintf(disk, sizeof(disk), "disk%d", i);
        cr_assert_eq(cat_vm_info_add_disk(vm, disk, 1 << 30, NULL, &e), 0);
    }
    cr_assert_eq(cat_repo_write_vm(root, vm, &e), 0, "%s", e.msg);
    cat_vm_info_free(vm);
}

/* Write a backup's sidecar (and, if image, a placeholder image). Returns
 * its id in a static buffer. */
static const char *add_backup(const char *root, const char *ctx,
                              const char *disk, cat_time_t stamp,
                              const char *parent,
                              enum cat_backup_status status, bool image)
{
    static char id[CAT_ID_LEN + 1];
    struct cat_sidecar *sc = NULL;
    struct sd_error e = { 0 };
    char *dir = NULL;

    cr_assert_eq(cat_repo_make_disk_dir(root, ctx, disk, &dir, &e), 0, "%s",
                 e.msg);
    cr_assert_eq(cat_sidecar_new(parent ? CAT_TYPE_INCR : CAT_TYPE_FULL,
                                 stamp, parent, &sc, &e), 0, "%s", e.msg);
    sc->status = status;
    if (status != CAT_STATUS_RUNNING)
        sc->ended_at = stamp + 60;
    if (status == CAT_STATUS_FAILED)
        cr_assert_eq(cat_sidecar_set_string(&sc->failure_reason, "test"), 0);
    cr_assert_eq(cat_sidecar_write(sc, dir, &e), 0, "%s", e.msg);
    if (image)
        fx_write(dir, sc->image, "");
    snprintf(id, sizeof(id), "%s", sc->id);
    cat_sidecar_free(sc);
    free(dir);
    return id;
}

static struct cat_repo *open_repo(const char *root)
{
    struct cat_repo *repo = NULL;
    struct sd_error e = { 0 };

    cr_assert_eq(cat_repo_open(root, 0, &repo, &e), 0, "%s", e.msg);
    return repo;
}

/* How many problems of kind there are; *path gets the last one's. */
static size_t problems(const struct cat_repo *repo,
                       enum cat_problem_kind kind, const char **path)
{
    size_t n = 0;

    for (size_t i = 0; i < repo->nproblems; i++) {
        if (repo->problems[i].kind != kind)
            continue;
        n++;
        if (path)
            *path = repo->problems[i].path;
    }
    return n;
}

/* Whether a problem of kind was reported for path. */
static bool has_problem(const struct cat_repo *repo,
                        enum cat_problem_kind kind, const char *path)
{
    for (size_t i = 0; i < repo->nproblems; i++)
        if (repo->problems[i].kind == kind &&
            strcmp(repo->problems[i].path, path) == 0)
            return true;
    return false;
}

static const char *ids_of(struct cat_backup **arr, size_t n)
{
    static char buf[1024];
    size_t used = 0;

    buf[0] = '\0';
    for (size_t i = 0; i < n; i++)
        used += (size_t)snprintf(buf + used, sizeof(buf) - used, "%s%s",
                                 i ? " " : "", arr[i]->sc->id);
    return buf;
}

/* --- opening ------------------------------------------------------------- */

Test(repo, open_creates_only_when_asked)
{
    char *tmp = fx_mkdtemp();
    char *root = fx_path(tmp, "backups");
    struct cat_repo *repo = NULL;
    struct sd_error e = { 0 };

    cr_expect_eq(cat_repo_open(root, 0, &repo, &e), -ENOENT);
    cr_expect(strstr(e.msg, "backups") != NULL, "%s", e.msg);
    cr_assert_eq(cat_repo_open(root, CAT_REPO_CREATE, &repo, &e), 0, "%s",
                 e.msg);
    cr_expect_eq(repo->nvms, 0);
    cr_expect_eq(repo->nproblems, 0);
    cat_repo_free(repo);
    fx_write(tmp, "file", "");
    char *file = fx_path(tmp, "file");
    cr_expect_eq(cat_repo_open(file, CAT_REPO_CREATE, &repo, &e), -ENOTDIR);
    free(file);
    free(root);
    fx_rm_rf(tmp);
    expect_no_leaks();
}

/* --- a healthy repository, chains -------------------------------------- */

/*
 * ctx-a/disk0:  full T0 <- incr T1 <- incr T3
 *                              ^---- incr T2 (failed)
 * ctx-a/disk1:  full T0 <- incr T1 (running)
 * ctx-b/disk0:  full T5
 */
static char *healthy_repo(void)
{
    char *root = fx_mkdtemp();
    char full[CAT_ID_LEN + 1], i1[CAT_ID_LEN + 1], f1[CAT_ID_LEN + 1];

    add_vm(root, "ctx-b", 1);
    add_vm(root, "ctx-a", 2);
    snprintf(full, sizeof(full), "%s", add_backup(root, "ctx-a", "disk0", T0,
             NULL, CAT_STATUS_COMPLETED, true));
    snprintf(i1, sizeof(i1), "%s", add_backup(root, "ctx-a", "disk0",
             T0 + HOUR, full, CAT_STATUS_COMPLETED, true));
    add_backup(root, "ctx-a", "disk0", T0 + 2 * HOUR, i1, CAT_STATUS_FAILED,
               true);
    add_backup(root, "ctx-a", "disk0", T0 + 3 * HOUR, i1,
               CAT_STATUS_COMPLETED, true);
    snprintf(f1, sizeof(f1), "%s", add_backup(root, "ctx-a", "disk1", T0,
             NULL, CAT_STATUS_COMPLETED, true));
    add_backup(root, "ctx-a", "disk1", T0 + HOUR, f1, CAT_STATUS_RUNNING,
               true);
    add_backup(root, "ctx-b", "disk0", T0 + 5 * HOUR, NULL,
               CAT_STATUS_COMPLETED, true);
    return root;
}

Test(repo, scan_rebuilds_vms_disks_and_chains)
{
    char *root = healthy_repo();
    struct cat_repo *repo = open_repo(root);

    cr_expect_eq(repo->nproblems, 0, "first problem: %s %s",
                 repo->nproblems ? repo->problems[0].path : "",
                 repo->nproblems ? repo->problems[0].detail : "");
    cr_assert_eq(repo->nvms, 2);
    cr_expect_str_eq(repo->vms[0].info->context_id, "ctx-a");
    cr_expect_str_eq(repo->vms[1].info->context_id, "ctx-b");

    struct cat_vm *vm = cat_repo_vm(repo, "ctx-a");
    cr_assert_not_null(vm);
    cr_assert_eq(vm->ndisks, 2);
    struct cat_disk *d0 = cat_vm_disk(vm, "disk0");
    cr_assert_not_null(d0);
    cr_assert_eq(d0->nbackups, 4);
    cr_expect_str_eq(d0->backups[0]->sc->id, "full-20251005T120000Z");
    cr_expect_str_eq(d0->backups[3]->sc->id, "incr-20251005T150000Z");
    for (size_t i = 0; i < d0->nbackups; i++) {
        cr_expect(d0->backups[i]->has_image);
        cr_expect(!d0->backups[i]->orphan);
    }
    cr_expect_null(cat_repo_vm(repo, "ctx-c"));
    cr_expect_null(cat_vm_disk(vm, "disk2"));
    cat_repo_free(repo);
    fx_rm_rf(root);
    expect_no_leaks();
}

Test(chain, chain_latest_and_children)
{
    char *root = healthy_repo();
    struct cat_repo *repo = open_repo(root);
    struct cat_vm *vm = cat_repo_vm(repo, "ctx-a");
    struct cat_disk *d0 = cat_vm_disk(vm, "disk0");
    struct cat_backup **arr;
    struct sd_error e = { 0 };
    size_t n;

    struct cat_backup *latest = cat_disk_latest_completed(d0);
    cr_assert_not_null(latest);
    cr_expect_str_eq(latest->sc->id, "incr-20251005T150000Z");
    cr_assert_eq(cat_chain_of(d0, latest, &arr, &n, &e), 0, "%s", e.msg);
    cr_expect_str_eq(ids_of(arr, n), "full-20251005T120000Z "
                     "incr-20251005T130000Z incr-20251005T150000Z");
    free(arr);

    struct cat_backup *i1 = cat_disk_find(d0, "incr-20251005T130000Z");
    cr_assert_not_null(i1);
    cr_assert_eq(cat_disk_children(d0, i1, &arr, &n), 0);
    cr_expect_str_eq(ids_of(arr, n), "incr-20251005T140000Z "
                     "incr-20251005T150000Z");
    free(arr);

    /* A running newest backup is skipped: the parent for the next
     * incremental is the newest usable one. */
    struct cat_disk *d1 = cat_vm_disk(vm, "disk1");
    latest = cat_disk_latest_completed(d1);
    cr_assert_not_null(latest);
    cr_expect_str_eq(latest->sc->id, "full-20251005T120000Z");
    cat_repo_free(repo);
    fx_rm_rf(root);
}

Test(chain, deletable_only_without_dependants)
{
    char *root = healthy_repo();
    struct cat_repo *repo = open_repo(root);
    struct cat_vm *vm = cat_repo_vm(repo, "ctx-a");
    struct cat_disk *d0 = cat_vm_disk(vm, "disk0");
    struct sd_error e = { 0 };

    struct cat_backup *full = cat_disk_find(d0, "full-20251005T120000Z");
    struct cat_backup *i1 = cat_disk_find(d0, "incr-20251005T130000Z");
    struct cat_backup *failed = cat_disk_find(d0, "incr-20251005T140000Z");
    struct cat_backup *last = cat_disk_find(d0, "incr-20251005T150000Z");

    cr_expect_eq(cat_disk_can_delete(d0, full, &e), -EBUSY);
    cr_expect(strstr(e.msg, "incr-20251005T130000Z") != NULL, "%s", e.msg);
    cr_expect_eq(cat_disk_can_delete(d0, i1, &e), -EBUSY);
    cr_expect(strstr(e.msg, "2 dependent backups") != NULL, "%s", e.msg);
    cr_expect(strstr(e.msg, "incr-20251005T140000Z") != NULL, "%s", e.msg);
    cr_expect(strstr(e.msg, "incr-20251005T150000Z") != NULL, "%s", e.msg);
    cr_expect_eq(cat_disk_can_delete(d0, failed, &e), 0);
    cr_expect_eq(cat_disk_can_delete(d0, last, &e), 0);

    struct cat_disk *d1 = cat_vm_disk(vm, "disk1");
    struct cat_backup *running = cat_disk_find(d1, "incr-20251005T130000Z");
    cr_assert_not_null(running);
    cr_expect_eq(cat_disk_can_delete(d1, running, &e), -EBUSY);
    cr_expect(strstr(e.msg, "running") != NULL, "%s", e.msg);
    cat_repo_free(repo);
    fx_rm_rf(root);
}

/* A daemon that died mid-backup left a running sidecar: the scan finds
 * it as it is, and the stamp chooser moves past it. */
Test(repo, next_stamp_moves_past_every_disk)
{
    char *root = healthy_repo();
    struct cat_repo *repo = open_repo(root);
    struct cat_vm *vm = cat_repo_vm(repo, "ctx-a");

    cr_expect_eq(cat_vm_last_stamp(vm), T0 + 3 * HOUR);
    /* Started in the same second as the newest backup, or with a clock
     * that went back: the next second after it. */
    cr_expect_eq(cat_next_stamp(T0 + 3 * HOUR, cat_vm_last_stamp(vm)),
                 T0 + 3 * HOUR + 1);
    cr_expect_eq(cat_next_stamp(T0, cat_vm_last_stamp(vm)),
                 T0 + 3 * HOUR + 1);
    cr_expect_eq(cat_next_stamp(T0 + 9 * HOUR, cat_vm_last_stamp(vm)),
                 T0 + 9 * HOUR);
    struct cat_disk *d1 = cat_vm_disk(vm, "disk1");
    cr_expect_eq(d1->backups[1]->sc->status, CAT_STATUS_RUNNING);
    cat_repo_free(repo);
    fx_rm_rf(root);
}

Test(chain, relative_backing_paths)
{
    struct sd_error e = { 0 };
    char *rel = NULL;

    cr_assert_eq(cat_relative_backing("ctx/disk0/incr-2.qcow2",
                                      "ctx/disk0/full-1.qcow2", &rel, &e), 0);
    cr_expect_str_eq(rel, "full-1.qcow2");
    free(rel);
    cr_assert_eq(cat_relative_backing("ctx/disk0/incr-2.qcow2",
                                      "ctx/disk1/full-1.qcow2", &rel, &e), 0);
    cr_expect_str_eq(rel, "../disk1/full-1.qcow2");
    free(rel);
    cr_assert_eq(cat_relative_backing("a/b/c.qcow2", "x.qcow2", &rel, &e), 0);
    cr_expect_str_eq(rel, "../../x.qcow2");
    free(rel);
    cr_assert_eq(cat_relative_backing("ctx/disk0/i", "ctx/disk00/f", &rel,
                                      &e), 0);
    cr_expect_str_eq(rel, "../disk00/f");
    free(rel);
    cr_expect_eq(cat_relative_backing("/abs/i", "f", &rel, &e), -EINVAL);
    cr_expect_eq(cat_relative_backing("a/../i", "f", &rel, &e), -EINVAL);
    cr_expect_eq(cat_relative_backing("a//i", "f", &rel, &e), -EINVAL);
    cr_expect_eq(cat_relative_backing("i", "./f", &rel, &e), -EINVAL);
}

/* --- damage ------------------------------------------------------------ */

Test(repo, orphans_are_listed_and_reported)
{
    char *root = fx_mkdtemp();
    struct sd_error e = { 0 };
    struct cat_backup **arr;
    const char *path = NULL;
    size_t n;

    add_vm(root, "ctx-a", 1);
    add_backup(root, "ctx-a", "disk0", T0 + HOUR, "full-20251005T120000Z",
               CAT_STATUS_COMPLETED, true);
    struct cat_repo *repo = open_repo(root);
    cr_expect_eq(problems(repo, CAT_PROBLEM_ORPHAN, &path), 1);
    cr_expect_str_eq(path, "ctx-a/disk0/incr-20251005T130000Z.json");
    struct cat_disk *d = cat_vm_disk(cat_repo_vm(repo, "ctx-a"), "disk0");
    cr_assert_eq(d->nbackups, 1);
    cr_expect(d->backups[0]->orphan);
    cr_expect_null(cat_disk_latest_completed(d));
    cr_expect_eq(cat_chain_of(d, d->backups[0], &arr, &n, &e), -ENOENT);
    cr_expect(strstr(e.msg, "full-20251005T120000Z") != NULL, "%s", e.msg);
    cat_repo_free(repo);
    fx_rm_rf(root);
}

/* A failed backup whose image was deleted (the default policy) keeps its
 * sidecar as the record of what happened: that is no problem. */
Test(repo, failed_backup_without_image_is_no_problem)
{
    char *root = fx_mkdtemp();
    const char *path = NULL;

    add_vm(root, "ctx-a", 1);
    add_backup(root, "ctx-a", "disk0", T0, NULL, CAT_STATUS_FAILED, false);

    struct cat_repo *repo = open_repo(root);
    cr_expect_eq(problems(repo, CAT_PROBLEM_SIDECAR_WITHOUT_IMAGE, &path), 0);
    struct cat_disk *d = cat_vm_disk(cat_repo_vm(repo, "ctx-a"), "disk0");
    cr_assert_eq(d->nbackups, 1);
    cr_expect_null(cat_disk_latest_completed(d));
    cat_repo_free(repo);
    fx_rm_rf(root);
}

Test(repo, images_and_sidecars_without_their_partner)
{
    char *root = fx_mkdtemp();
    const char *path = NULL;

    add_vm(root, "ctx-a", 1);
    const char *full = add_backup(root, "ctx-a", "disk0", T0, NULL,
                                  CAT_STATUS_COMPLETED, false);
    char parent[CAT_ID_LEN + 1];
    snprintf(parent, sizeof(parent), "%s", full);
    add_backup(root, "ctx-a", "disk0", T0 + HOUR, parent,
               CAT_STATUS_COMPLETED, true);
    char *dir = fx_path(root, "ctx-a/disk0");
    fx_write(dir, "incr-20251005T140000Z.qcow2", "");

    struct cat_repo *repo = open_repo(root);
    cr_expect_eq(problems(repo, CAT_PROBLEM_SIDECAR_WITHOUT_IMAGE, &path), 1);
    cr_expect_str_eq(path, "ctx-a/disk0/full-20251005T120000Z.json");
    cr_expect_eq(problems(repo, CAT_PROBLEM_IMAGE_WITHOUT_SIDECAR, &path), 1);
    cr_expect_str_eq(path, "ctx-a/disk0/incr-20251005T140000Z.qcow2");
    struct cat_disk *d = cat_vm_disk(cat_repo_vm(repo, "ctx-a"), "disk0");
    cr_assert_eq(d->nbackups, 2);
    cr_expect(!d->backups[0]->has_image);
    /* A chain through a missing image is not usable. */
    cr_expect_null(cat_disk_latest_completed(d));
    cr_expect(fx_exists(dir, "incr-20251005T140000Z.qcow2"), "scan deleted");
    cat_repo_free(repo);
    free(dir);
    fx_rm_rf(root);
}

Test(repo, damaged_sidecars_are_reported_not_fatal)
{
    char *root = fx_mkdtemp();

    add_vm(root, "ctx-a", 1);
    add_backup(root, "ctx-a", "disk0", T0, NULL, CAT_STATUS_COMPLETED, true);
    char *dir = fx_path(root, "ctx-a/disk0");
    /* truncated */
    fx_write(dir, "incr-20251005T130000Z.json", "{\"format\": 1, \"id\": ");
    fx_write(dir, "incr-20251005T130000Z.qcow2", "");
    /* a valid sidecar under another backup's name */
    char *src = fx_path(dir, "full-20251005T120000Z.json");
    char *text = fx_read(src);
    fx_write(dir, "full-20251005T140000Z.json", text);
    free(text);
    free(src);

    struct cat_repo *repo = open_repo(root);
    cr_expect_eq(problems(repo, CAT_PROBLEM_BAD_SIDECAR, NULL), 2);
    bool saw_mismatch = false, saw_truncated = false;
    for (size_t i = 0; i < repo->nproblems; i++) {
        const struct cat_problem *p = &repo->problems[i];
        if (p->kind != CAT_PROBLEM_BAD_SIDECAR)
            continue;
        saw_mismatch |= strstr(p->detail, "does not match") != NULL &&
            strcmp(p->path, "ctx-a/disk0/full-20251005T140000Z.json") == 0;
        saw_truncated |= strcmp(p->path,
                                "ctx-a/disk0/incr-20251005T130000Z.json") == 0;
    }
    cr_expect(saw_mismatch);
    cr_expect(saw_truncated);
    /* Its image has a sidecar file, just not a readable one. */
    cr_expect_eq(problems(repo, CAT_PROBLEM_IMAGE_WITHOUT_SIDECAR, NULL), 0);
    struct cat_disk *d = cat_vm_disk(cat_repo_vm(repo, "ctx-a"), "disk0");
    cr_expect_eq(d->nbackups, 1);
    cat_repo_free(repo);
    free(dir);
    fx_rm_rf(root);
    expect_no_leaks();
}

Test(repo, strays_in_the_layout_are_reported)
{
    char *root = fx_mkdtemp();
    const char *path = NULL;

    add_vm(root, "ctx-a", 1);
    fx_mkdir(root, "no-vm-json");
    fx_mkdir(root, "-bad-name");
    fx_write(root, "README", "");
    char *link = fx_path(root, "ctx-link");
    cr_assert_eq(symlink("/etc", link), 0);
    char *vmdir = fx_path(root, "ctx-a");
    fx_mkdir(vmdir, "disk3");               /* not in vm.json */
    fx_mkdir(vmdir, "scratch");
    char *link0 = fx_path(vmdir, "disk0");
    cr_assert_eq(symlink("/etc", link0), 0);
    char *d3 = fx_path(vmdir, "disk3");
    fx_write(d3, "notes.txt", "");
    /* a FIFO under a sidecar's name, and one as a vm.json: never opened
     * (a blocking open would hang the scan) */
    char *fifo = fx_path(d3, "full-20251005T120000Z.json");
    cr_assert_eq(mkfifo(fifo, 0644), 0);
    fx_mkdir(root, "ctx-fifo");
    char *vmfifo = fx_path(root, "ctx-fifo/vm.json");
    cr_assert_eq(mkfifo(vmfifo, 0644), 0);
    /* a VM whose vm.json names another context */
    add_vm(root, "ctx-c", 0);
    char *cvm = fx_path(root, "ctx-c/vm.json");
    char *renamed = fx_path(root, "ctx-d");
    cr_assert_eq(mkdir(renamed, 0755), 0);
    char *dvm = fx_path(renamed, "vm.json");
    cr_assert_eq(rename(cvm, dvm), 0);

    struct cat_repo *repo = open_repo(root);
    cr_expect_eq(problems(repo, CAT_PROBLEM_NOT_A_VM, NULL), 3,
                 "no-vm-json, -bad-name, ctx-c");
    cr_expect_eq(problems(repo, CAT_PROBLEM_BAD_VM_FILE, NULL), 2);
    cr_expect(has_problem(repo, CAT_PROBLEM_BAD_VM_FILE, "ctx-d/vm.json"));
    cr_expect(has_problem(repo, CAT_PROBLEM_BAD_VM_FILE,
                          "ctx-fifo/vm.json"));
    cr_expect_eq(problems(repo, CAT_PROBLEM_UNLISTED_DISK, &path), 1);
    cr_expect_str_eq(path, "ctx-a/disk3");
    /* README, ctx-link, scratch, the disk0 symlink, notes.txt, fifo */
    cr_expect_eq(problems(repo, CAT_PROBLEM_UNKNOWN_ENTRY, NULL), 6);
    cr_assert_eq(repo->nvms, 1);
    struct cat_vm *vm = cat_repo_vm(repo, "ctx-a");
    cr_expect_eq(vm->ndisks, 2, "disk0 from vm.json, disk3 found");
    cr_expect_eq(cat_vm_disk(vm, "disk0")->nbackups, 0,
                 "a symlinked disk folder is not followed");
    for (size_t i = 0; i < repo->nproblems; i++)
        cr_expect_neq(repo->problems[i].detail[0], '\0');
    cat_repo_free(repo);
    free(fifo);
    free(vmfifo);
    free(link);
    free(link0);
    free(vmdir);
    free(d3);
    free(cvm);
    free(dvm);
    free(renamed);
    fx_rm_rf(root);
}

/* An atomic write interrupted before its rename leaves a hidden .tmp
 * file: reported, and removed only when asked. */
Test(repo, temp_files_are_reported_and_cleaned_on_request)
{
    char *root = fx_mkdtemp();
    struct sd_error e = { 0 };
    size_t removed = 0;

    add_vm(root, "ctx-a", 1);
    add_backup(root, "ctx-a", "disk0", T0, NULL, CAT_STATUS_COMPLETED, true);
    char *dir = fx_path(root, "ctx-a/disk0");
    char *vmdir = fx_path(root, "ctx-a");
    fx_write(dir, ".full-20251005T120000Z.json.Q1w2E3.tmp", "{\"form");
    fx_write(vmdir, ".vm.json.a1b2c3.tmp", "");
    /* a VM folder whose first vm.json write never completed */
    fx_mkdir(root, "ctx-new");
    char *newdir = fx_path(root, "ctx-new");
    fx_write(newdir, ".vm.json.zZ9yY8.tmp", "{");
    size_t before = fx_count(dir);

    struct cat_repo *repo = open_repo(root);
    cr_expect_eq(problems(repo, CAT_PROBLEM_TEMP_FILE, NULL), 3);
    cr_expect(has_problem(repo, CAT_PROBLEM_TEMP_FILE,
                          "ctx-new/.vm.json.zZ9yY8.tmp"));
    cr_expect(has_problem(repo, CAT_PROBLEM_TEMP_FILE,
                          "ctx-a/.vm.json.a1b2c3.tmp"));
    cr_expect(has_problem(repo, CAT_PROBLEM_TEMP_FILE, "ctx-a/disk0/"
                          ".full-20251005T120000Z.json.Q1w2E3.tmp"));
    cr_expect_eq(problems(repo, CAT_PROBLEM_NOT_A_VM, NULL), 1);
    cr_expect_eq(fx_count(dir), before, "the scan changed the folder");
    cr_expect_eq(cat_vm_disk(cat_repo_vm(repo, "ctx-a"), "disk0")->nbackups,
                 1);
    cr_assert_eq(cat_repo_remove_temp_files(repo, &removed, &e), 0, "%s",
                 e.msg);
    cr_expect_eq(removed, 3);
    cr_expect_eq(fx_count(newdir), 0);
    cr_expect(!fx_exists(dir, ".full-20251005T120000Z.json.Q1w2E3.tmp"));
    cr_expect(fx_exists(dir, "full-20251005T120000Z.json"));
    cat_repo_free(repo);

    cr_assert_eq(rmdir(newdir), 0);
    repo = open_repo(root);
    cr_expect_eq(repo->nproblems, 0);
    cat_repo_free(repo);
    free(newdir);
    free(dir);
    free(vmdir);
    fx_rm_rf(root);
}

/* What was written through the library is all there after a reopen,
 * as after a crash: nothing lives only in memory. */
Test(repo, reopen_sees_every_write)
{
    char *root = fx_mkdtemp();
    struct sd_error e = { 0 };
    char *dir = NULL;
    struct cat_sidecar *sc = NULL;

    add_vm(root, "ctx-a", 1);
    cr_assert_eq(cat_repo_make_disk_dir(root, "ctx-a", "disk0", &dir, &e), 0);
    cr_assert_eq(cat_sidecar_new(CAT_TYPE_FULL, T0, NULL, &sc, &e), 0);
    cr_assert_eq(cat_sidecar_write(sc, dir, &e), 0, "%s", e.msg);
    fx_write(dir, sc->image, "");

    struct cat_repo *repo = open_repo(root);
    struct cat_disk *d = cat_vm_disk(cat_repo_vm(repo, "ctx-a"), "disk0");
    cr_assert_eq(d->nbackups, 1);
    cr_expect_eq(d->backups[0]->sc->status, CAT_STATUS_RUNNING);
    cat_repo_free(repo);

    sc->status = CAT_STATUS_COMPLETED;
    sc->ended_at = T0 + 100;
    cr_assert_eq(cat_sidecar_set_string(&sc->change_id, "cid-1"), 0);
    cr_assert_eq(cat_sidecar_write(sc, dir, &e), 0, "%s", e.msg);
    repo = open_repo(root);
    d = cat_vm_disk(cat_repo_vm(repo, "ctx-a"), "disk0");
    cr_expect_eq(d->backups[0]->sc->status, CAT_STATUS_COMPLETED);
    cr_expect_str_eq(d->backups[0]->sc->change_id, "cid-1");
    cr_expect_eq(cat_disk_latest_completed(d), d->backups[0]);
    cr_expect_eq(repo->nproblems, 0);
    cat_repo_free(repo);
    cat_sidecar_free(sc);
    free(dir);
    fx_rm_rf(root);
    expect_no_leaks();
}

Test(repo, make_disk_dir_refuses_hostile_names)
{
    char *root = fx_mkdtemp();
    struct sd_error e = { 0 };
    char *dir = NULL;

    cr_expect_eq(cat_repo_make_disk_dir(root, "../x", "disk0", &dir, &e),
                 -EINVAL);
    cr_expect_eq(cat_repo_make_disk_dir(root, "ctx", "../disk0", &dir, &e),
                 -EINVAL);
    cr_expect_null(dir);
    cr_expect_eq(fx_count(root), 0);
    fx_rm_rf(root);
}
