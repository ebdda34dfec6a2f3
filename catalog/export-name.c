/* SPDX-License-Identifier: MIT */
#include "config.h"

#include "catalog/export-name.h"

#include "catalog/names.h"

#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>

/* "backup-" "-disk" "-full" "-" + 15 stamp digits and 'T'. */
#define FIXED_LEN (7 + 5 + 5 + 1 + 15)

static int decimal_digits(unsigned n)
{
    int d = 1;

    while (n >= 10) {
        n /= 10;
        d++;
    }
    return d;
}

/* The first CAT_EXPORT_HASH_HEX hex digits of SHA-256(s). */
static int short_hash(const char *s, char out[CAT_EXPORT_HASH_HEX + 1])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;

    if (!EVP_Digest(s, strlen(s), md, &mdlen, EVP_sha256(), NULL))
        return -EIO;
    for (int i = 0; i < CAT_EXPORT_HASH_HEX / 2; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
    return 0;
}

/* ctx as it appears in the name: whole, or cut to exactly budget bytes. */
static int ctx_part(const char *ctx, size_t budget, char *out)
{
    char hash[CAT_EXPORT_HASH_HEX + 1];
    size_t len = strlen(ctx);

    if (len < budget) {
        memcpy(out, ctx, len + 1);
        return 0;
    }
    int ret = short_hash(ctx, hash);
    if (ret < 0)
        return ret;
    size_t keep = budget - CAT_EXPORT_HASH_HEX - 1;
    snprintf(out, budget + 1, "%.*s-%s", (int)keep, ctx, hash);
    return 0;
}

int cat_export_name(const char *ctx, unsigned disk_index, bool incremental,
                    cat_time_t stamp, char out[CAT_EXPORT_NAME_MAX + 1],
                    struct sd_error *err)
{
    char part[CAT_EXPORT_NAME_MAX + 1], ts[CAT_STAMP_LEN + 1];
    int ret = cat_name_check("VM context id", ctx, err);

    if (ret < 0)
        return ret;
    if (disk_index > CAT_DISK_INDEX_MAX)
        return sd_error_set(err, -EINVAL, "disk index %u is over %d",
                            disk_index, CAT_DISK_INDEX_MAX);
    if (cat_stamp_format(stamp, ts) < 0)
        return sd_error_set(err, -EINVAL, "time %lld is out of range",
                            (long long)stamp);
    size_t budget = CAT_EXPORT_NAME_MAX - FIXED_LEN -
                    (size_t)decimal_digits(disk_index);
    ret = ctx_part(ctx, budget, part);
    if (ret < 0)
        return sd_error_set(err, ret, "SHA-256 failed");
    /* The export name carries the stamp without its 'Z'. */
    snprintf(out, CAT_EXPORT_NAME_MAX + 1, "backup-%s-disk%u-%s-%.15s", part,
             disk_index, incremental ? "incr" : "full", ts);
    return 0;
}
