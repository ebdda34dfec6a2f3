/* SPDX-License-Identifier: MIT */
#include "config.h"

#include "catalog/names.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>

static bool is_name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
}

/* Messages quote at most this much of a hostile name. */
#define QUOTE_MAX 40

int cat_name_check(const char *what, const char *name, struct sd_error *err)
{
    size_t len = strnlen(name, CAT_NAME_MAX + 1);

    if (len == 0)
        return sd_error_set(err, -EINVAL, "%s is empty", what);
    if (len > CAT_NAME_MAX)
        return sd_error_set(err, -EINVAL, "%s \"%.*s...\" is longer than %d "
                            "bytes", what, QUOTE_MAX, name, CAT_NAME_MAX);
    if (name[0] == '.' || name[0] == '-')
        return sd_error_set(err, -EINVAL, "%s \"%.*s\" starts with '%c'",
                            what, QUOTE_MAX, name, name[0]);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)name[i];
        if (is_name_char((char)c))
            continue;
        if (c < 0x20 || c == 0x7f)
            return sd_error_set(err, -EINVAL, "%s has control character "
                                "0x%02x at byte %zu", what, c, i);
        return sd_error_set(err, -EINVAL, "%s \"%.*s\" has '%c' at byte %zu "
                            "(allowed: A-Z a-z 0-9 . _ -)", what, QUOTE_MAX,
                            name, c, i);
    }
    return 0;
}

int cat_disk_name_parse(const char *name, unsigned *index,
                        struct sd_error *err)
{
    const char *digits = name + strlen("disk");
    unsigned n = 0;
    size_t ndigits = 0;

    if (strncmp(name, "disk", strlen("disk")) != 0)
        goto out_invalid;
    for (const char *p = digits; *p; p++, ndigits++) {
        if (*p < '0' || *p > '9' || ndigits >= 4)
            goto out_invalid;
        n = n * 10 + (unsigned)(*p - '0');
    }
    if (ndigits == 0 || (ndigits > 1 && digits[0] == '0'))
        goto out_invalid;
    *index = n;
    return 0;

out_invalid:
    return sd_error_set(err, -EINVAL, "disk name \"%.*s\" is not disk<N> "
                        "(N = 0..%d, no leading zeros)", QUOTE_MAX, name,
                        CAT_DISK_INDEX_MAX);
}

int cat_text_check(const char *what, const char *text, size_t max,
                   struct sd_error *err)
{
    size_t len = strnlen(text, max + 1);

    if (len > max)
        return sd_error_set(err, -EINVAL, "%s is longer than %zu bytes",
                            what, max);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c < 0x20 || c == 0x7f)
            return sd_error_set(err, -EINVAL, "%s has control character "
                                "0x%02x at byte %zu", what, c, i);
    }
    return 0;
}
