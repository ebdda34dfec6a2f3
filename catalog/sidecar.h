/* SPDX-License-Identifier: MIT */
/*
 * The sidecar: what the catalog knows about one backup image, in
 * "<disk folder>/<id>.json" next to "<id>.qcow2" (layout.h). Written
 * atomically (common/atomic-file.h); read strictly. Format 1:
 *
 *   {
 *     "format": 1,
 *     "id": "incr-20251005T130000Z",
 *     "type": "incr",                       full | incr | synthetic-full
 *     "parent": "full-20251005T120000Z",    null for full kinds
 *     "change_id": "52 de ... /4711",       null when unknown
 *     "status": "completed",                running | completed | failed
 *     "failure_reason": null,               text when failed, else null
 *     "virtual_size": 10737418240,
 *     "bytes_written": 123456,
 *     "allocated_bytes": 262144,
 *     "started_at": "2025-10-05T13:00:00Z",
 *     "ended_at": "2025-10-05T13:04:10Z",   null while running
 *     "checksum": {"algorithm": "sha256", "value": "<hex>"},  or null
 *     "image": "incr-20251005T130000Z.qcow2",
 *     "backing_file": "full-20251005T120000Z.qcow2",  null for full kinds
 *     "job_id": "job-42"                    or null
 *   }
 *
 * Rules checked on read and on write (cat_sidecar_check): every field is
 * present, no other field is; the id's prefix matches the type (full and
 * synthetic-full are "full-" files); a parent is an older backup id;
 * image is "<id>.qcow2" and backing_file is "<parent>.qcow2", both in
 * the same folder, so a repository can be moved or copied; ended_at is
 * null exactly while running; failure_reason is set exactly when failed.
 */
#ifndef SENDENSE_CATALOG_SIDECAR_H
#define SENDENSE_CATALOG_SIDECAR_H

#include "catalog/layout.h"
#include "catalog/stamp.h"
#include "common/error.h"

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

enum {
    CAT_SIDECAR_FORMAT = 1,
    CAT_SIDECAR_FILE_MAX = 64 * 1024,   /* bytes read from one sidecar */
    CAT_CHANGE_ID_MAX = 1024,
    CAT_CHECKSUM_HEX_MAX = 128,
    CAT_IMAGE_NAME_LEN = CAT_ID_LEN + 6,    /* + ".qcow2" */
};

enum cat_backup_type { CAT_TYPE_FULL, CAT_TYPE_INCR,
                       CAT_TYPE_SYNTHETIC_FULL };
enum cat_backup_status { CAT_STATUS_RUNNING, CAT_STATUS_COMPLETED,
                         CAT_STATUS_FAILED };

struct cat_sidecar {
    char id[CAT_ID_LEN + 1];
    enum cat_backup_type type;
    char parent[CAT_ID_LEN + 1];            /* "" for none */
    char *change_id;                        /* NULL for none */
    enum cat_backup_status status;
    char *failure_reason;                   /* NULL unless failed */
    uint64_t virtual_size;
    uint64_t bytes_written;
    uint64_t allocated_bytes;
    cat_time_t started_at;
    cat_time_t ended_at;                    /* -1 while running */
    char *checksum_algorithm;               /* both NULL or both set */
    char *checksum_value;
    char image[CAT_IMAGE_NAME_LEN + 1];
    char backing_file[CAT_IMAGE_NAME_LEN + 1];  /* "" for none */
    char *job_id;                           /* NULL for none */
};

const char *cat_backup_type_name(enum cat_backup_type type);
const char *cat_backup_status_name(enum cat_backup_status status);

/* A new running sidecar: id from kind and stamp, image and backing file
 * names derived, started_at = stamp (set the true start time when the
 * stamp was moved past an older one, layout.h). parent is NULL for a
 * full. */
int cat_sidecar_new(enum cat_backup_type type, cat_time_t stamp,
                    const char *parent, struct cat_sidecar **out,
                    struct sd_error *err);

/* Set (copy) the optional strings; NULL clears. -ENOMEM. */
int cat_sidecar_set_string(char **field, const char *value);

/* Check the rules above; file names the sidecar in messages. */
int cat_sidecar_check(const struct cat_sidecar *sc, const char *file,
                      struct sd_error *err);

/* Parse len bytes of text; file names them in messages. */
int cat_sidecar_parse(const char *text, size_t len, const char *file,
                      struct cat_sidecar **out, struct sd_error *err);
int cat_sidecar_read(const char *path, struct cat_sidecar **out,
                     struct sd_error *err);

/* The JSON document above (new reference), NULL when out of memory.
 * Also what a control socket can send for a backup. */
json_t *cat_sidecar_to_json(const struct cat_sidecar *sc);

/* Check, then write "<disk_dir>/<id>.json" atomically. */
int cat_sidecar_write(const struct cat_sidecar *sc, const char *disk_dir,
                      struct sd_error *err);

void cat_sidecar_free(struct cat_sidecar *sc);

#endif
