/* SPDX-License-Identifier: MIT */
/*
 * Validation of the names that become folders and file names in a
 * repository. VM context ids, disk names and job ids arrive from clients
 * and from files on disk: untrusted either way.
 *
 * A name is 1..CAT_NAME_MAX bytes of [A-Za-z0-9._-], not starting with
 * '.' or '-' (so never "." or "..", never hidden, never taken for an
 * option). A disk name is "disk<N>", N decimal without leading zeros,
 * at most CAT_DISK_INDEX_MAX. Free text (change ids, failure reasons,
 * display names) has no control characters and a length cap.
 */
#ifndef SENDENSE_CATALOG_NAMES_H
#define SENDENSE_CATALOG_NAMES_H

#include "common/error.h"

#include <stddef.h>

enum {
    CAT_NAME_MAX = 128,             /* bytes in an id or disk name */
    CAT_DISK_INDEX_MAX = 9999,
    CAT_TEXT_MAX = 4096,            /* bytes in free text */
};

/* 0 if name is a valid id; else -EINVAL with "<what> ...: why" in err. */
int cat_name_check(const char *what, const char *name, struct sd_error *err);

/* Parse "disk<N>"; 0 and *index, or -EINVAL with a message. */
int cat_disk_name_parse(const char *name, unsigned *index,
                        struct sd_error *err);

/* Free text: at most max bytes, no control characters. */
int cat_text_check(const char *what, const char *text, size_t max,
                   struct sd_error *err);

#endif
