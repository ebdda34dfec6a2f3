/* SPDX-License-Identifier: MIT */
/*
 * File names inside a repository (DESIGN.md, "Repository layout"):
 *
 *   <root>/<vm-context-id>/vm.json
 *   <root>/<vm-context-id>/disk<N>/<id>.qcow2      the image
 *   <root>/<vm-context-id>/disk<N>/<id>.json       its sidecar
 *
 * A backup id is "full-<stamp>" or "incr-<stamp>" (stamp.h), e.g.
 * "full-20251005T120000Z". It is unique within a disk folder, names both
 * files, and is what sidecars use for parent links. The sidecar is
 * "<id>.json", not "<id>.qcow2.json": the id, not the image, is the
 * unit the catalog talks about.
 *
 * Stamps are unique per VM context: cat_next_stamp() never returns a
 * stamp at or before one already used, so two backups started in the
 * same second get successive seconds rather than the same name, and a
 * clock that steps back cannot reorder a chain. The stamp is a name;
 * the sidecar keeps the true start time.
 */
#ifndef SENDENSE_CATALOG_LAYOUT_H
#define SENDENSE_CATALOG_LAYOUT_H

#include "catalog/stamp.h"
#include "common/error.h"

#include <stdbool.h>
#include <stddef.h>

#define CAT_VM_FILE "vm.json"
#define CAT_IMAGE_EXT ".qcow2"
#define CAT_SIDECAR_EXT ".json"

enum {
    CAT_ID_LEN = 5 + CAT_STAMP_LEN,     /* "full-" + stamp */
};

/* What the file name says: a full ("full-") or an incremental ("incr-"). */
enum cat_id_kind { CAT_ID_FULL, CAT_ID_INCR };

/* What a folder entry of a disk folder is, by its name. */
enum cat_file_role {
    CAT_FILE_IMAGE,
    CAT_FILE_SIDECAR,
    CAT_FILE_TEMP,              /* left by an interrupted atomic write */
    CAT_FILE_OTHER,
};

int cat_id_make(enum cat_id_kind kind, cat_time_t stamp,
                char out[CAT_ID_LEN + 1]);
/* 0, or -EINVAL when id is not exactly full-<stamp> or incr-<stamp>. */
int cat_id_parse(const char *id, enum cat_id_kind *kind, cat_time_t *stamp);

/* Classify a file name; for images and sidecars, id gets the backup id. */
enum cat_file_role cat_file_classify(const char *name,
                                     char id[CAT_ID_LEN + 1]);

/* "<dir>/<name><ext>" into a new string; NULL when out of memory. */
char *cat_path_join(const char *dir, const char *name, const char *ext);

/* The first stamp usable for a new backup at time now, given the newest
 * stamp already used in the VM context (-1 when none): max(now, last+1). */
cat_time_t cat_next_stamp(cat_time_t now, cat_time_t last_used);

#endif
