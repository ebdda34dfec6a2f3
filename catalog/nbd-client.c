/* SPDX-License-Identifier: MIT */
#include "config.h"

#include "catalog/nbd-client.h"
#include "common/jsonrpc.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static int connect_unix(const char *path, int *out, struct sd_error *err)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    int fd, ret;

    if (strlen(path) >= sizeof(sa.sun_path))
        return sd_error_set(err, -ENAMETOOLONG, "%s: socket path too long",
                            path);
    memcpy(sa.sun_path, path, strlen(path) + 1);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return sd_error_set(err, -errno, "socket: %s", strerror(errno));
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        ret = errno;
        close(fd);
        /* -ENOTCONN, whatever the reason: a missing socket file must not
         * read as "no such export" to a caller removing one. */
        return sd_error_set(err, -ENOTCONN, "sendense-nbd control socket "
                            "%s: %s", path, strerror(ret));
    }
    *out = fd;
    return 0;
}

/* Wait until fd is ready for events, at most NBDC_TIMEOUT_S. */
static int wait_fd(int fd, short events, struct sd_error *err)
{
    struct pollfd p = { .fd = fd, .events = events };
    int n;

    do
        n = poll(&p, 1, NBDC_TIMEOUT_S * 1000);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return sd_error_set(err, -errno, "poll: %s", strerror(errno));
    if (n == 0)
        return sd_error_set(err, -ETIMEDOUT, "sendense-nbd did not answer "
                            "within %d s", NBDC_TIMEOUT_S);
    return 0;
}

static int send_all(int fd, const char *buf, size_t len, struct sd_error *err)
{
    while (len > 0) {
        int ret = wait_fd(fd, POLLOUT, err);
        ssize_t n;

        if (ret < 0)
            return ret;
        n = send(fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n < 0)
            return sd_error_set(err, -errno, "sendense-nbd control socket: "
                                "%s", strerror(errno));
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Read one line (without its LF) into a new buffer. */
static int recv_line(int fd, char **line, size_t *len, struct sd_error *err)
{
    size_t used = 0, size = 4096;
    char *buf = malloc(size), *lf = NULL;
    int ret = 0;

    while (buf && !lf && ret == 0) {
        ssize_t n;

        if (used == size) {
            char *grown = size >= NBDC_REPLY_MAX ? NULL
                                                 : realloc(buf, size * 2);
            if (!grown) {
                ret = sd_error_set(err, -EMSGSIZE, "sendense-nbd's reply "
                                   "is too large");
                break;
            }
            buf = grown;
            size *= 2;
        }
        ret = wait_fd(fd, POLLIN, err);
        if (ret < 0)
            break;
        n = recv(fd, buf + used, size - used, MSG_DONTWAIT);
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n <= 0) {
            ret = sd_error_set(err, n < 0 ? -errno : -ECONNRESET,
                               "sendense-nbd closed the control connection "
                               "without a reply");
            break;
        }
        lf = memchr(buf + used, '\n', (size_t)n);
        used += (size_t)n;
    }
    if (!buf)
        return sd_error_set(err, -ENOMEM, "out of memory");
    if (ret < 0) {
        free(buf);
        return ret;
    }
    *len = (size_t)(lf - buf);
    *line = buf;
    return 0;
}

/* The errno a JSON-RPC error object stands for. */
static int error_errno(json_t *error)
{
    static const int known[] = {
        ENOENT, EEXIST, EBUSY, EACCES, EPERM, EINVAL, ENOSPC, ENOTSUP,
        ETIMEDOUT, ECANCELED, EIO, ENOMEM, EAGAIN, ENODEV, EROFS,
    };
    const char *name = json_string_value(
        json_object_get(json_object_get(error, "data"), "errno"));

    for (size_t i = 0; name && i < sizeof(known) / sizeof(known[0]); i++)
        if (strcmp(jsonrpc_errno_name(-known[i]), name) == 0)
            return -known[i];
    return json_integer_value(json_object_get(error, "code")) ==
           JSONRPC_INVALID_PARAMS ? -EINVAL : -EIO;
}

static int parse_reply(const char *method, const char *line, size_t len,
                       json_t **result, struct sd_error *err)
{
    json_t *reply = json_loadb(line, len, 0, NULL);
    json_t *error = json_object_get(reply, "error");
    json_t *res = json_object_get(reply, "result");
    int ret = 0;

    if (error) {
        const char *msg = json_string_value(json_object_get(error,
                                                            "message"));
        ret = sd_error_set(err, error_errno(error), "sendense-nbd %s: %s",
                           method, msg ? msg : "error without a message");
    } else if (!res) {
        ret = sd_error_set(err, -EPROTO, "sendense-nbd %s: reply is not "
                           "JSON-RPC", method);
    } else {
        *result = json_incref(res);
    }
    json_decref(reply);
    return ret;
}

int nbdc_call(const char *socket_path, const char *method, json_t *params,
              json_t **result, struct sd_error *err)
{
    json_t *req = json_pack("{s:s, s:i, s:s, s:o*}", "jsonrpc", "2.0",
                            "id", 1, "method", method, "params", params);
    char *text = req ? json_dumps(req, JSON_COMPACT) : NULL;
    char *line = NULL;
    size_t len = 0;
    int fd = -1, ret;

    json_decref(req);
    if (!text)
        return sd_error_set(err, -ENOMEM, "out of memory");
    ret = connect_unix(socket_path, &fd, err);
    if (ret == 0) {
        size_t n = strlen(text);
        text[n] = '\n';             /* json_dumps' NUL becomes the LF */
        ret = send_all(fd, text, n + 1, err);
    }
    if (ret == 0)
        ret = recv_line(fd, &line, &len, err);
    if (ret == 0)
        ret = parse_reply(method, line, len, result, err);
    if (fd >= 0)
        close(fd);
    free(line);
    free(text);
    return ret;
}

static int call_discard(const char *socket_path, const char *method,
                        json_t *params, struct sd_error *err)
{
    json_t *result = NULL;
    int ret;

    if (!params)
        return sd_error_set(err, -ENOMEM, "out of memory");
    ret = nbdc_call(socket_path, method, params, &result, err);
    json_decref(result);
    return ret;
}

int nbdc_export_add(const char *socket_path, const char *name,
                    const char *path, const char *format, bool readonly,
                    struct sd_error *err)
{
    return call_discard(socket_path, "export.add",
                        json_pack("{s:s, s:s, s:s, s:b}", "name", name,
                                  "path", path, "format", format,
                                  "readonly", readonly), err);
}

int nbdc_export_remove(const char *socket_path, const char *name, bool drain,
                       struct sd_error *err)
{
    return call_discard(socket_path, "export.remove",
                        json_pack("{s:s, s:b}", "name", name, "drain", drain),
                        err);
}

static uint64_t counter(json_t *obj, const char *key)
{
    json_int_t v = json_integer_value(json_object_get(obj, key));

    return v > 0 ? (uint64_t)v : 0;
}

int nbdc_export_stats(const char *socket_path, const char *name,
                      struct nbdc_export_stats *out, struct sd_error *err)
{
    json_t *params = json_pack("{s:s}", "name", name);
    json_t *result = NULL, *stats, *bytes;
    int ret;

    if (!params)
        return sd_error_set(err, -ENOMEM, "out of memory");
    ret = nbdc_call(socket_path, "export.stats", params, &result, err);
    if (ret < 0)
        return ret;
    stats = json_object_get(result, "stats");
    bytes = json_object_get(stats, "bytes");
    if (!json_is_object(bytes)) {
        json_decref(result);
        return sd_error_set(err, -EPROTO, "sendense-nbd export.stats %s: no "
                            "byte counters in the reply", name);
    }
    *out = (struct nbdc_export_stats){
        .bytes_written = counter(bytes, "write"),
        .bytes_zeroed = counter(bytes, "zero"),
        .bytes_trimmed = counter(bytes, "trim"),
        .clients = (unsigned)counter(stats, "clients"),
        .last_activity_ms = (int64_t)counter(stats, "last_activity_ms"),
    };
    json_decref(result);
    return 0;
}
