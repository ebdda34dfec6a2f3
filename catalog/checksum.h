/* SPDX-License-Identifier: MIT */
/*
 * The per-backup checksum (docs/CHECKSUM.md): sha256 over what one
 * image's own layer decides, so computing it reads only that image, not
 * its chain. For each maximal run of guest ranges whose block status
 * has depth 0, in guest order: the run's offset and length (8 bytes
 * each, big-endian), then its bytes as read through the image.
 *
 * The same walk is what verify uses to read every allocated cluster:
 * a read that fails is counted, and the walk goes on.
 */
#ifndef SENDENSE_CATALOG_CHECKSUM_H
#define SENDENSE_CATALOG_CHECKSUM_H

#include "catalog/sidecar.h"
#include "common/error.h"

#include <stdint.h>

#define CAT_CHECKSUM_ALGORITHM "sha256"

enum {
    CAT_CHECKSUM_HEX_LEN = 64,
    CAT_CHECKSUM_READ_SIZE = 1 << 20,   /* bytes per read */
};

struct cat_layer_stats {
    uint64_t runs;                  /* maximal depth-0 runs */
    uint64_t bytes;                 /* guest bytes they cover */
    uint64_t read_errors;           /* reads that failed (then the
                                     * checksum means nothing) */
};

/* Walk the image at path (qcow2, opened read-only with its chain) and
 * fill hex with the checksum and st with what was read. Fails only when
 * the image cannot be opened or block status fails. */
int cat_checksum_image(const char *path, char hex[CAT_CHECKSUM_HEX_LEN + 1],
                       struct cat_layer_stats *st, struct sd_error *err);

/* The checksum of image_path; a read error is -EIO: a checksum over
 * unreadable data means nothing. */
int cat_checksum_layer(const char *image_path,
                       char hex[CAT_CHECKSUM_HEX_LEN + 1],
                       struct sd_error *err);
/* Put hex in sc as its checksum (not written); -ENOMEM. */
int cat_checksum_set(struct cat_sidecar *sc, const char *hex);
/* Both: compute the checksum of image_path and record it in sc. */
int cat_checksum_record(const char *image_path, struct cat_sidecar *sc,
                        struct sd_error *err);

#endif
