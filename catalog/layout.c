/* SPDX-License-Identifier: MIT */
#include "config.h"

#include "catalog/layout.h"

#include "common/atomic-file.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const kind_prefix[] = {
    [CAT_ID_FULL] = "full-",
    [CAT_ID_INCR] = "incr-",
};

int cat_id_make(enum cat_id_kind kind, cat_time_t stamp,
                char out[CAT_ID_LEN + 1])
{
    char s[CAT_STAMP_LEN + 1];
    int ret = cat_stamp_format(stamp, s);

    if (ret < 0)
        return ret;
    snprintf(out, CAT_ID_LEN + 1, "%s%s", kind_prefix[kind], s);
    return 0;
}

int cat_id_parse(const char *id, enum cat_id_kind *kind, cat_time_t *stamp)
{
    for (size_t k = 0; k < sizeof(kind_prefix) / sizeof(kind_prefix[0]);
         k++) {
        size_t n = strlen(kind_prefix[k]);
        if (strncmp(id, kind_prefix[k], n) != 0)
            continue;
        int ret = cat_stamp_parse(id + n, stamp);
        if (ret == 0)
            *kind = (enum cat_id_kind)k;
        return ret;
    }
    return -EINVAL;
}

/* If name is "<id><ext>" with a valid id, copy the id and say yes. */
static bool split_ext(const char *name, const char *ext,
                      char id[CAT_ID_LEN + 1])
{
    size_t len = strlen(name), elen = strlen(ext);
    enum cat_id_kind kind;
    cat_time_t t;

    if (len != CAT_ID_LEN + elen || strcmp(name + CAT_ID_LEN, ext) != 0)
        return false;
    memcpy(id, name, CAT_ID_LEN);
    id[CAT_ID_LEN] = '\0';
    return cat_id_parse(id, &kind, &t) == 0;
}

enum cat_file_role cat_file_classify(const char *name,
                                     char id[CAT_ID_LEN + 1])
{
    if (sd_atomic_is_temp_name(name))
        return CAT_FILE_TEMP;
    if (split_ext(name, CAT_IMAGE_EXT, id))
        return CAT_FILE_IMAGE;
    if (split_ext(name, CAT_SIDECAR_EXT, id))
        return CAT_FILE_SIDECAR;
    return CAT_FILE_OTHER;
}

char *cat_path_join(const char *dir, const char *name, const char *ext)
{
    char *out;

    if (asprintf(&out, "%s/%s%s", dir, name, ext ? ext : "") < 0)
        return NULL;
    return out;
}

cat_time_t cat_next_stamp(cat_time_t now, cat_time_t last_used)
{
    return now > last_used ? now : last_used + 1;
}
