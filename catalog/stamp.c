/* SPDX-License-Identifier: MIT */
/*
 * Both formats are the same six fields with different separators, so
 * one table-driven formatter and parser serve both. Parsing converts
 * with timegm() and formats the result back: a date that does not exist
 * (Feb 30, 25:00) comes back different and is refused.
 */
#include "config.h"

#include "catalog/stamp.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* Upper end: 9999-12-31T23:59:59Z. */
#define MAX_TIME ((cat_time_t)253402300799)

struct layout {
    const char *fmt;                /* strftime format */
    const char *shape;              /* 'D' digit, other chars literal */
    size_t len;
};

static const struct layout stamp_layout = {
    "%Y%m%dT%H%M%SZ", "DDDDDDDDTDDDDDDZ", CAT_STAMP_LEN,
};
static const struct layout rfc3339_layout = {
    "%Y-%m-%dT%H:%M:%SZ", "DDDD-DD-DDTDD:DD:DDZ", CAT_RFC3339_LEN,
};

static int format_time(const struct layout *l, cat_time_t t, char *out)
{
    struct tm tm;
    time_t tt = (time_t)t;

    if (t < 0 || t > MAX_TIME || !gmtime_r(&tt, &tm))
        return -EINVAL;
    if (strftime(out, l->len + 1, l->fmt, &tm) != l->len)
        return -EINVAL;
    return 0;
}

static bool matches_shape(const struct layout *l, const char *s)
{
    if (strnlen(s, l->len + 1) != l->len)
        return false;
    for (size_t i = 0; i < l->len; i++) {
        bool digit = s[i] >= '0' && s[i] <= '9';
        if (l->shape[i] == 'D' ? !digit : s[i] != l->shape[i])
            return false;
    }
    return true;
}

/* The digits of s, in order, as the six fields of struct tm. */
static void read_fields(const char *s, struct tm *tm)
{
    int v[14], n = 0;

    for (const char *p = s; *p && n < 14; p++)
        if (*p >= '0' && *p <= '9')
            v[n++] = *p - '0';
    memset(tm, 0, sizeof(*tm));
    tm->tm_year = v[0] * 1000 + v[1] * 100 + v[2] * 10 + v[3] - 1900;
    tm->tm_mon = v[4] * 10 + v[5] - 1;
    tm->tm_mday = v[6] * 10 + v[7];
    tm->tm_hour = v[8] * 10 + v[9];
    tm->tm_min = v[10] * 10 + v[11];
    tm->tm_sec = v[12] * 10 + v[13];
}

static int parse_time(const struct layout *l, const char *s, cat_time_t *out)
{
    char back[CAT_RFC3339_LEN + 1];
    struct tm tm;

    if (!matches_shape(l, s))
        return -EINVAL;
    read_fields(s, &tm);
    cat_time_t t = (cat_time_t)timegm(&tm);
    if (format_time(l, t, back) < 0 || strcmp(back, s) != 0)
        return -EINVAL;
    *out = t;
    return 0;
}

int cat_stamp_format(cat_time_t t, char out[CAT_STAMP_LEN + 1])
{
    return format_time(&stamp_layout, t, out);
}

int cat_stamp_parse(const char *s, cat_time_t *out)
{
    return parse_time(&stamp_layout, s, out);
}

int cat_rfc3339_format(cat_time_t t, char out[CAT_RFC3339_LEN + 1])
{
    return format_time(&rfc3339_layout, t, out);
}

int cat_rfc3339_parse(const char *s, cat_time_t *out)
{
    return parse_time(&rfc3339_layout, s, out);
}
