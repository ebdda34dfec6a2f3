/* SPDX-License-Identifier: MIT */
/*
 * Change lists: the result of VMware's QueryChangedDiskAreas as JSON,
 *   {"changeId": "...", "startOffset": N, "length": N,
 *    "changedArea": [{"start": N, "length": N}, ...]}
 * Read strictly: a list that is wrong in any way would make an
 * incremental that silently misses changes.
 */
#include "config.h"

#include "capture/capture.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A non-negative JSON integer. */
static int get_u64(json_t *v, const char *what, uint64_t *out,
                   struct sd_error *err)
{
    if (!json_is_integer(v))
        return sd_error_set(err, -EINVAL, "%s must be an integer", what);
    if (json_integer_value(v) < 0)
        return sd_error_set(err, -EINVAL, "%s must not be negative", what);
    *out = (uint64_t)json_integer_value(v);
    return 0;
}

static int parse_area(json_t *a, size_t i, struct cap_changes *out,
                      uint64_t *prev_end, struct sd_error *err)
{
    const char *key;
    json_t *v;
    uint64_t start = 0, len = 0;
    int have = 0, ret;

    if (!json_is_object(a))
        return sd_error_set(err, -EINVAL, "changedArea[%zu] must be an object", i);
    json_object_foreach(a, key, v) {
        if (strcmp(key, "start") == 0)
            ret = get_u64(v, "start", &start, err), have |= 1;
        else if (strcmp(key, "length") == 0)
            ret = get_u64(v, "length", &len, err), have |= 2;
        else
            ret = sd_error_set(err, -EINVAL, "unknown key \"%s\"", key);
        if (ret < 0)
            goto bad;
    }
    if (have != 3) {
        ret = sd_error_set(err, -EINVAL, "needs \"start\" and \"length\"");
        goto bad;
    }
    if (len == 0 || start > UINT64_MAX - len) {
        ret = sd_error_set(err, -EINVAL, "length must be positive and end within 2^64");
        goto bad;
    }
    if (start < *prev_end) {
        ret = sd_error_set(err, -EINVAL, "areas must be sorted and must not overlap");
        goto bad;
    }
    if (start < out->start || start + len - out->start > out->length) {
        ret = sd_error_set(err, -EINVAL, "area is outside startOffset..startOffset+length");
        goto bad;
    }
    *prev_end = start + len;
    ret = cap_extents_add(&out->areas, start, len, false);
    if (ret < 0)
        return sd_error_set(err, ret, "out of memory");
    return 0;
bad:
    sd_error_prefix(err, "changedArea[%zu]", i);
    return ret;
}

static int parse_top(json_t *root, struct cap_changes *out, struct sd_error *err)
{
    json_t *areas = NULL, *v;
    const char *key;
    uint64_t prev_end = 0;
    bool have_length = false;
    size_t i;
    int ret = 0;

    if (!json_is_object(root))
        return sd_error_set(err, -EINVAL, "a change list is a JSON object");
    out->length = UINT64_MAX;
    json_object_foreach(root, key, v) {
        if (strcmp(key, "changeId") == 0) {
            if (!json_is_string(v) || !json_string_value(v)[0])
                return sd_error_set(err, -EINVAL, "changeId must be a non-empty string");
            out->change_id = strdup(json_string_value(v));
            if (!out->change_id)
                return sd_error_set(err, -ENOMEM, "out of memory");
        } else if (strcmp(key, "startOffset") == 0) {
            ret = get_u64(v, "startOffset", &out->start, err);
        } else if (strcmp(key, "length") == 0) {
            ret = get_u64(v, "length", &out->length, err);
            have_length = true;
        } else if (strcmp(key, "changedArea") == 0) {
            areas = v;
        } else {
            return sd_error_set(err, -EINVAL, "unknown key \"%s\"", key);
        }
        if (ret < 0)
            return ret;
    }
    if (!have_length)
        out->length = UINT64_MAX - out->start;
    if (out->start > UINT64_MAX - out->length)
        return sd_error_set(err, -EINVAL, "startOffset + length is beyond 2^64");
    if (!json_is_array(areas))
        return sd_error_set(err, -EINVAL, "changedArea must be an array");
    json_array_foreach(areas, i, v) {
        ret = parse_area(v, i, out, &prev_end, err);
        if (ret < 0)
            return ret;
    }
    return 0;
}

int cap_changes_parse(const char *text, size_t len, struct cap_changes *out,
                      struct sd_error *err)
{
    json_error_t jerr;
    json_t *root;
    int ret;

    *out = (struct cap_changes){ 0 };
    /* Duplicate keys would let one "changedArea" hide another. */
    root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return sd_error_set(err, -EINVAL, "line %d column %d: %s",
                            jerr.line, jerr.column, jerr.text);
    ret = parse_top(root, out, err);
    json_decref(root);
    if (ret < 0)
        cap_changes_free(out);
    return ret;
}

int cap_changes_load(const char *path, struct cap_changes *out,
                     struct sd_error *err)
{
    FILE *f = fopen(path, "rb");
    char *text = NULL;
    size_t len = 0, cap = 0, n;
    int ret;

    *out = (struct cap_changes){ 0 };
    if (!f)
        return sd_error_set(err, -errno, "%s: %s", path, strerror(errno));
    do {
        if (cap - len < 65536) {
            char *t = realloc(text, cap + 65536 + 1);

            if (!t) {
                ret = sd_error_set(err, -ENOMEM, "out of memory");
                goto out;
            }
            text = t;
            cap += 65536;
        }
        n = fread(text + len, 1, cap - len, f);
        len += n;
    } while (n > 0);
    if (ferror(f)) {
        ret = sd_error_set(err, -EIO, "%s: read error", path);
        goto out;
    }
    ret = cap_changes_parse(text, len, out, err);
    if (ret < 0)
        sd_error_prefix(err, "%s", path);
out:
    free(text);
    fclose(f);
    return ret;
}

void cap_changes_free(struct cap_changes *c)
{
    free(c->change_id);
    cap_extents_free(&c->areas);
    *c = (struct cap_changes){ 0 };
}
