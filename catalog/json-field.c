/* SPDX-License-Identifier: MIT */
#include "config.h"

#include "catalog/json-field.h"

#include "common/atomic-file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int read_fd(int fd, size_t size, char *buf)
{
    size_t done = 0;

    while (done < size) {
        ssize_t n = read(fd, buf + done, size - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            return -EIO;            /* shrank under us */
        done += (size_t)n;
    }
    buf[size] = '\0';
    return 0;
}

int jf_read_file(const char *path, size_t max, char **out, size_t *len,
                 struct sd_error *err)
{
    struct stat st;
    char *buf = NULL;
    /* O_NONBLOCK: a FIFO planted under a file name must not hang us;
     * it is refused as not regular right after. */
    int ret, fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);

    if (fd < 0)
        return sd_error_set(err, -errno, "%s: %s", path, strerror(errno));
    if (fstat(fd, &st) < 0) {
        ret = sd_error_set(err, -errno, "%s: %s", path, strerror(errno));
        goto out_close;
    }
    if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size > max) {
        ret = sd_error_set(err, -EINVAL, "%s: not a regular file of at most "
                           "%zu bytes", path, max);
        goto out_close;
    }
    buf = malloc((size_t)st.st_size + 1);
    if (!buf) {
        ret = sd_error_set(err, -ENOMEM, "%s: out of memory", path);
        goto out_close;
    }
    ret = read_fd(fd, (size_t)st.st_size, buf);
    if (ret < 0) {
        sd_error_set(err, ret, "%s: read: %s", path, strerror(-ret));
        free(buf);
        goto out_close;
    }
    *out = buf;
    *len = (size_t)st.st_size;
out_close:
    close(fd);
    return ret;
}

int jf_fail(const struct jf *jf, const char *key, int code,
            const char *fmt, ...)
{
    char msg[SD_ERROR_MSG_MAX];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return sd_error_set(jf->err, code, "%s: field \"%s\": %s", jf->file, key,
                        msg);
}

int jf_parse_object(const struct jf *jf, const char *text, size_t len,
                    json_t **out)
{
    json_error_t jerr;
    /* Duplicate keys would let two readers see different values. */
    json_t *obj = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);

    if (!obj)
        return sd_error_set(jf->err, -EINVAL, "%s:%d: %s", jf->file,
                            jerr.line, jerr.text);
    if (!json_is_object(obj)) {
        json_decref(obj);
        return sd_error_set(jf->err, -EINVAL, "%s: not a JSON object",
                            jf->file);
    }
    *out = obj;
    return 0;
}

static bool is_allowed(const char *key, const char *const *allowed)
{
    for (; *allowed; allowed++)
        if (strcmp(key, *allowed) == 0)
            return true;
    return false;
}

int jf_check_keys(const struct jf *jf, json_t *obj,
                  const char *const *allowed)
{
    const char *key;
    json_t *value;

    json_object_foreach(obj, key, value) {
        if (!is_allowed(key, allowed))
            return jf_fail(jf, key, -EINVAL, "unknown field");
    }
    return 0;
}

int jf_check_format(const struct jf *jf, json_t *obj, int version)
{
    json_t *v = json_object_get(obj, "format");

    if (!v)
        return jf_fail(jf, "format", -EINVAL, "missing");
    if (!json_is_integer(v) || json_integer_value(v) != version)
        return jf_fail(jf, "format", -EINVAL, "unsupported (this version "
                       "reads format %d)", version);
    return 0;
}

/* The value of key, or an error when missing (or null, if !nullable). */
static int get_field(const struct jf *jf, json_t *obj, const char *key,
                     bool nullable, json_t **out)
{
    json_t *v = json_object_get(obj, key);

    if (!v)
        return jf_fail(jf, key, -EINVAL, "missing");
    if (json_is_null(v) && !nullable)
        return jf_fail(jf, key, -EINVAL, "must not be null");
    *out = json_is_null(v) ? NULL : v;
    return 0;
}

int jf_string(const struct jf *jf, json_t *obj, const char *key,
              bool nullable, const char **out)
{
    json_t *v = NULL;
    int ret = get_field(jf, obj, key, nullable, &v);

    if (ret < 0)
        return ret;
    if (v && !json_is_string(v))
        return jf_fail(jf, key, -EINVAL, "not a string");
    /* Strings with NUL inside would be cut short by every C reader. */
    if (v && strlen(json_string_value(v)) != json_string_length(v))
        return jf_fail(jf, key, -EINVAL, "contains a NUL character");
    *out = v ? json_string_value(v) : NULL;
    return 0;
}

int jf_uint(const struct jf *jf, json_t *obj, const char *key,
            uint64_t *out)
{
    json_t *v = NULL;
    int ret = get_field(jf, obj, key, false, &v);

    if (ret < 0)
        return ret;
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return jf_fail(jf, key, -EINVAL, "not a non-negative integer");
    *out = (uint64_t)json_integer_value(v);
    return 0;
}

int jf_time(const struct jf *jf, json_t *obj, const char *key,
            bool nullable, cat_time_t *out)
{
    const char *s;
    int ret = jf_string(jf, obj, key, nullable, &s);

    if (ret < 0)
        return ret;
    if (!s) {
        *out = -1;
        return 0;
    }
    if (cat_rfc3339_parse(s, out) < 0)
        return jf_fail(jf, key, -EINVAL, "not a UTC time "
                       "YYYY-MM-DDTHH:MM:SSZ");
    return 0;
}

int jf_enum(const struct jf *jf, json_t *obj, const char *key,
            const char *const *names, size_t n, int *out)
{
    const char *s;
    int ret = jf_string(jf, obj, key, false, &s);

    if (ret < 0)
        return ret;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(s, names[i]) == 0) {
            *out = (int)i;
            return 0;
        }
    }
    char expected[256] = "";
    for (size_t i = 0; i < n; i++) {
        size_t used = strlen(expected);
        snprintf(expected + used, sizeof(expected) - used, "%s%s",
                 i ? ", " : "", names[i]);
    }
    return jf_fail(jf, key, -EINVAL, "unknown value \"%.40s\" (expected "
                   "%s)", s, expected);
}

int jf_write_file(json_t *obj, const char *path, struct sd_error *err)
{
    char *text = json_dumps(obj, JSON_INDENT(2));
    int ret;

    json_decref(obj);
    if (!text)
        return sd_error_set(err, -ENOMEM, "%s: cannot serialise", path);
    size_t len = strlen(text);
    /* End with a newline like any text file; the NUL becomes it. */
    text[len] = '\n';
    ret = sd_atomic_write(path, text, len + 1, 0644, err);
    free(text);
    return ret;
}

int jf_set_time(json_t *obj, const char *key, cat_time_t t)
{
    char s[CAT_RFC3339_LEN + 1];

    if (t < 0)
        return json_object_set_new(obj, key, json_null());
    if (cat_rfc3339_format(t, s) < 0)
        return -EINVAL;
    return json_object_set_new(obj, key, json_string(s));
}
