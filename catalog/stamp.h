/* SPDX-License-Identifier: MIT */
/*
 * Time as the catalog writes it, always UTC, whole seconds:
 *
 *   stamp    "20251005T120000Z"       in file names and backup ids
 *   RFC 3339 "2025-10-05T12:00:00Z"   in sidecars and vm.json
 *
 * Parsers are strict: exactly these shapes, real calendar dates
 * (no February 30th), years 1970..9999. Anything else is -EINVAL.
 */
#ifndef SENDENSE_CATALOG_STAMP_H
#define SENDENSE_CATALOG_STAMP_H

#include <stdint.h>

enum {
    CAT_STAMP_LEN = 16,             /* YYYYMMDDTHHMMSSZ */
    CAT_RFC3339_LEN = 20,           /* YYYY-MM-DDTHH:MM:SSZ */
};

/* Seconds since the epoch, UTC. */
typedef int64_t cat_time_t;

int cat_stamp_format(cat_time_t t, char out[CAT_STAMP_LEN + 1]);
int cat_stamp_parse(const char *s, cat_time_t *out);

int cat_rfc3339_format(cat_time_t t, char out[CAT_RFC3339_LEN + 1]);
int cat_rfc3339_parse(const char *s, cat_time_t *out);

#endif
