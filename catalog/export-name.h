/* SPDX-License-Identifier: MIT */
/*
 * NBD export names of backups (DESIGN.md, "Export names"):
 *
 *   backup-<ctx>-disk<N>-<full|incr>-<YYYYMMDDTHHMMSS>    <= 63 bytes
 *
 * Everything but <ctx> has a fixed length for a given N, which leaves
 * <ctx> a budget B (29 bytes for disk0..disk9). A context id shorter
 * than B is used as it is. One of B bytes or more is cut to
 *
 *   <first B-13 bytes of ctx>-<12 hex digits of SHA-256(whole ctx)>
 *
 * exactly B bytes long. Why this cannot collide: a kept id is shorter
 * than B and a cut one is exactly B, so the two never meet; two cut ids
 * differ in their hash unless SHA-256's first 48 bits collide (odds of
 * about n^2 / 2^49 for n long ids). The rest of the name parses back
 * unambiguously from the right, since N has no '-' and no leading zeros.
 */
#ifndef SENDENSE_CATALOG_EXPORT_NAME_H
#define SENDENSE_CATALOG_EXPORT_NAME_H

#include "catalog/stamp.h"
#include "common/error.h"

#include <stdbool.h>

enum {
    CAT_EXPORT_NAME_MAX = 63,
    CAT_EXPORT_HASH_HEX = 12,
};

/* Build the export name of a backup of disk<disk_index> of ctx (a valid
 * context id, names.h) started at stamp. */
int cat_export_name(const char *ctx, unsigned disk_index, bool incremental,
                    cat_time_t stamp, char out[CAT_EXPORT_NAME_MAX + 1],
                    struct sd_error *err);

#endif
