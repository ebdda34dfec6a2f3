/* SPDX-License-Identifier: MIT */
/*
 * A backup repository on disk, and the catalog rebuilt from it.
 *
 * The repository is the source of truth: cat_repo_open() reads every
 * VM context, disk folder and sidecar under the root and rebuilds the
 * whole catalog (VMs, disks, backups, chains), so a daemon that died at
 * any instant gets everything back by opening the repository again.
 *
 * A scan never fails on a damaged entry and never changes the
 * repository: whatever does not fit the layout (a folder without
 * vm.json, a sidecar that does not parse, an image without a sidecar, a
 * sidecar without its image, an incremental whose parent is gone, a
 * temporary file an interrupted atomic write left) is recorded as a
 * problem, with its path relative to the root, and the rest is
 * catalogued. Only cat_repo_remove_temp_files() deletes, and only our
 * own temporary files. Symbolic links are reported, never followed.
 *
 * Limits: at most CAT_REPO_ENTRIES_MAX entries are read from any one
 * folder; a folder with more is reported and read no further.
 */
#ifndef SENDENSE_CATALOG_REPO_H
#define SENDENSE_CATALOG_REPO_H

#include "catalog/chain.h"
#include "catalog/vm-info.h"
#include "common/error.h"

#include <stddef.h>

enum {
    CAT_REPO_ENTRIES_MAX = 100000,
    CAT_REPO_CREATE = 1 << 0,       /* create the root if missing */
};

enum cat_problem_kind {
    CAT_PROBLEM_NOT_A_VM,           /* folder without (valid name or) vm.json */
    CAT_PROBLEM_BAD_VM_FILE,        /* vm.json unreadable or invalid */
    CAT_PROBLEM_UNKNOWN_ENTRY,      /* not part of the layout; symlinks */
    CAT_PROBLEM_UNLISTED_DISK,      /* disk folder missing from vm.json */
    CAT_PROBLEM_BAD_SIDECAR,        /* unreadable, invalid, wrong id */
    CAT_PROBLEM_IMAGE_WITHOUT_SIDECAR,
    CAT_PROBLEM_SIDECAR_WITHOUT_IMAGE,
    CAT_PROBLEM_ORPHAN,             /* incremental whose parent is gone */
    CAT_PROBLEM_TEMP_FILE,          /* left by an interrupted atomic write */
    CAT_PROBLEM_TOO_MANY_ENTRIES,
    CAT_PROBLEM_KIND_COUNT,
};

struct cat_problem {
    enum cat_problem_kind kind;
    char *path;                     /* relative to the root */
    char *detail;                   /* one line: what is wrong */
};

struct cat_vm {
    struct cat_vm_info *info;
    char *dir;                      /* the VM context's folder */
    struct cat_disk *disks;         /* those of vm.json, then unlisted
                                     * disk folders found */
    size_t ndisks;
};

struct cat_repo {
    char *root;
    struct cat_vm *vms;             /* sorted by context id */
    size_t nvms;
    struct cat_problem *problems;   /* in the order found */
    size_t nproblems;
};

/* Open (with CAT_REPO_CREATE: create) the repository at root and scan
 * it. Fails only when the root itself cannot be read, or out of memory. */
int cat_repo_open(const char *root, unsigned flags, struct cat_repo **out,
                  struct sd_error *err);
void cat_repo_free(struct cat_repo *repo);

const char *cat_problem_kind_name(enum cat_problem_kind kind);

struct cat_vm *cat_repo_vm(const struct cat_repo *repo, const char *ctx);
struct cat_disk *cat_vm_disk(const struct cat_vm *vm, const char *name);

/* The newest stamp used by any backup of vm, or -1 when none: with
 * cat_next_stamp() (layout.h) it names the next backup. */
cat_time_t cat_vm_last_stamp(const struct cat_vm *vm);

/* Remove the temporary files the scan found (durably). *removed counts
 * them; one that is already gone is not an error. */
int cat_repo_remove_temp_files(const struct cat_repo *repo, size_t *removed,
                               struct sd_error *err);

/* Create "<root>/<ctx>/" with vm.json from info (rewritten if there). */
int cat_repo_write_vm(const char *root, const struct cat_vm_info *info,
                      struct sd_error *err);
/* Create "<root>/<ctx>/<disk>/" if needed; *dir gets its path (owned by
 * the caller). */
int cat_repo_make_disk_dir(const char *root, const char *ctx,
                           const char *disk, char **dir,
                           struct sd_error *err);

#endif
