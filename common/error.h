/* SPDX-License-Identifier: MIT */
/*
 * A typed error: a negative errno plus a message for the one place that
 * reports it. Library code fills it and never logs.
 */
#ifndef SENDENSE_ERROR_H
#define SENDENSE_ERROR_H

enum { SD_ERROR_MSG_MAX = 512 };

struct sd_error {
    int code;                       /* negative errno, 0 when none */
    char msg[SD_ERROR_MSG_MAX];
};

/* Record an error (if err is not NULL) and return code, so that callers
 * can write: return sd_error_set(err, -EINVAL, "bad %s", what); */
int sd_error_set(struct sd_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Put "prefix: " in front of an error's message. */
void sd_error_prefix(struct sd_error *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static inline void sd_error_clear(struct sd_error *err)
{
    if (err) {
        err->code = 0;
        err->msg[0] = '\0';
    }
}

#endif
