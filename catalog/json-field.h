/* SPDX-License-Identifier: MIT */
/*
 * Strict reading of the catalog's JSON files (sidecars, vm.json), shared
 * by their parsers. Every error names the file and the field:
 *
 *   ctx/disk0/full-20251005T120000Z.json: field "status": unknown value
 *   "done" (expected running, completed, failed)
 *
 * Private to catalog/.
 */
#ifndef SENDENSE_CATALOG_JSON_FIELD_H
#define SENDENSE_CATALOG_JSON_FIELD_H

#include "catalog/stamp.h"
#include "common/error.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Where a value comes from, for messages. */
struct jf {
    const char *file;
    struct sd_error *err;
};

/* Read a regular file of at most max bytes (no symlink followed) into a
 * new NUL-terminated buffer. */
int jf_read_file(const char *path, size_t max, char **out, size_t *len,
                 struct sd_error *err);

/* Parse text as a JSON object. */
int jf_parse_object(const struct jf *jf, const char *text, size_t len,
                    json_t **out);

/* "<file>: field "<key>": <message>", returns code. */
int jf_fail(const struct jf *jf, const char *key, int code,
            const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Refuse keys not in allowed (NULL-terminated), and "format" != 1. */
int jf_check_keys(const struct jf *jf, json_t *obj,
                  const char *const *allowed);
int jf_check_format(const struct jf *jf, json_t *obj, int version);

/* Field getters. Missing, or null when !nullable, is an error; null when
 * nullable gives *out = NULL (strings) or the "none" value documented. */
int jf_string(const struct jf *jf, json_t *obj, const char *key,
              bool nullable, const char **out);
int jf_uint(const struct jf *jf, json_t *obj, const char *key,
            uint64_t *out);
/* RFC 3339 time; null when nullable gives -1. */
int jf_time(const struct jf *jf, json_t *obj, const char *key,
            bool nullable, cat_time_t *out);
/* One of names[0..n-1]; *out is its index. */
int jf_enum(const struct jf *jf, json_t *obj, const char *key,
            const char *const *names, size_t n, int *out);

/* Serialise obj (taken over) and write it atomically to path. */
int jf_write_file(json_t *obj, const char *path, struct sd_error *err);

/* Add an RFC 3339 time, or null for -1. */
int jf_set_time(json_t *obj, const char *key, cat_time_t t);

#endif
