/* SPDX-License-Identifier: MIT */
/*
 * The backups of one disk and the chains they form.
 *
 * Each backup is a sidecar (plus whether its image is there). A full
 * starts a chain; an incremental points at its parent by id, and its
 * image's backing file is the parent's image. The backups of a disk form
 * a forest: usually one line full -> incr -> incr, but a failed
 * incremental leaves a side branch, and a new full starts a new tree.
 * Parents are always older than their children (sidecar.h checks it),
 * so there are no cycles and sorting by stamp is a topological order.
 *
 * An orphan is an incremental whose parent's sidecar is missing: it is
 * kept and listed (never deleted by a scan), but no chain through it is
 * usable.
 */
#ifndef SENDENSE_CATALOG_CHAIN_H
#define SENDENSE_CATALOG_CHAIN_H

#include "catalog/sidecar.h"
#include "catalog/names.h"
#include "common/error.h"

#include <stdbool.h>
#include <stddef.h>

struct cat_backup {
    struct cat_sidecar *sc;         /* owned */
    cat_time_t stamp;               /* from the id */
    bool has_image;                 /* <id>.qcow2 exists */
    bool orphan;                    /* incremental whose parent is missing */
    struct cat_backup *parent;      /* NULL for fulls and orphans */
};

struct cat_disk {
    char name[CAT_NAME_MAX + 1];    /* disk<N> */
    unsigned index;
    char *dir;                      /* the disk folder's path (owned) */
    struct cat_backup **backups;    /* oldest first (owned) */
    size_t nbackups;
};

/* Take over sc (freed on failure too) as a backup of d; not yet linked. */
int cat_disk_add(struct cat_disk *d, struct cat_sidecar *sc, bool has_image);
/* Sort by stamp and resolve parent links; marks orphans. -EEXIST if two
 * backups share an id (cannot happen from one folder). */
int cat_disk_link(struct cat_disk *d);
/* Free what d owns (not d itself). */
void cat_disk_clear(struct cat_disk *d);

struct cat_backup *cat_disk_find(const struct cat_disk *d, const char *id);

/* The chain ending at b, full first, in a new array of n entries.
 * -ENOENT (with a message) when the chain is broken by a missing
 * parent. */
int cat_chain_of(const struct cat_disk *d, const struct cat_backup *b,
                 struct cat_backup ***out, size_t *n, struct sd_error *err);

/* Whether b and every backup it depends on are completed and present. */
bool cat_backup_usable(const struct cat_backup *b);

/* The newest usable completed backup: the parent a new incremental
 * should use. NULL when there is none (the next backup must be full). */
struct cat_backup *cat_disk_latest_completed(const struct cat_disk *d);

/* The backups whose parent is b, oldest first, in a new array. */
int cat_disk_children(const struct cat_disk *d, const struct cat_backup *b,
                      struct cat_backup ***out, size_t *n);

/* 0 when b can be deleted without breaking a chain; -EBUSY with a
 * message naming the dependants (or saying it is running) otherwise. */
int cat_disk_can_delete(const struct cat_disk *d, const struct cat_backup *b,
                        struct sd_error *err);

/* The backing path to write into child's image header: parent_image's
 * path relative to the folder of child_image. Both are relative to the
 * same base (e.g. the repository root), '/'-separated, without "." or
 * ".." components. Same folder: just the file name. */
int cat_relative_backing(const char *child_image, const char *parent_image,
                         char **out, struct sd_error *err);

#endif
