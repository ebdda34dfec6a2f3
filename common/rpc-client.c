/* SPDX-License-Identifier: MIT */
#include "config.h"

#include "common/rpc-client.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static int connect_unix(const char *path, const struct rpc_client_opts *o,
                        int *out, struct sd_error *err)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    size_t len = strlen(path);
    int fd, saved;

    if (len >= sizeof(sa.sun_path))
        return sd_error_set(err, -ENOTCONN, "%s control socket %s: path too "
                            "long", o->peer, path);
    memcpy(sa.sun_path, path, len + 1);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return sd_error_set(err, -errno, "socket: %s", strerror(errno));
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        saved = errno;
        close(fd);
        return sd_error_set(err, -ENOTCONN, "%s control socket %s: %s",
                            o->peer, path, strerror(saved));
    }
    *out = fd;
    return 0;
}

/* Wait until fd is ready for events, at most o->timeout_s. */
static int wait_fd(int fd, short events, const struct rpc_client_opts *o,
                   struct sd_error *err)
{
    struct pollfd p = { .fd = fd, .events = events };
    int n;

    do
        n = poll(&p, 1, o->timeout_s * 1000);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return sd_error_set(err, -errno, "poll: %s", strerror(errno));
    if (n == 0)
        return sd_error_set(err, -ETIMEDOUT, "%s did not answer within %d s",
                            o->peer, o->timeout_s);
    return 0;
}

static int send_all(int fd, const char *buf, size_t len,
                    const struct rpc_client_opts *o, struct sd_error *err)
{
    while (len > 0) {
        int ret = wait_fd(fd, POLLOUT, o, err);
        ssize_t n;

        if (ret < 0)
            return ret;
        n = send(fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n < 0)
            return sd_error_set(err, errno == EPIPE ? -ECONNRESET : -errno,
                                "%s control socket: %s", o->peer,
                                strerror(errno));
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Make room for at least one more byte in *buf (used == *size). */
static int grow(char **buf, size_t *size, const struct rpc_client_opts *o,
                struct sd_error *err)
{
    char *bigger;

    if (*size >= o->reply_max)
        return sd_error_set(err, -EMSGSIZE, "%s's reply is too large",
                            o->peer);
    bigger = realloc(*buf, *size * 2);
    if (!bigger)
        return sd_error_set(err, -ENOMEM, "out of memory");
    *buf = bigger;
    *size *= 2;
    return 0;
}

/* Read one line (without its LF) into a new buffer. */
static int recv_line(int fd, const struct rpc_client_opts *o, char **line,
                     size_t *len, struct sd_error *err)
{
    size_t used = 0, size = 4096;
    char *buf = malloc(size), *lf = NULL;
    int ret = 0;

    if (!buf)
        return sd_error_set(err, -ENOMEM, "out of memory");
    while (!lf && ret == 0) {
        ssize_t n;

        if (used == size && (ret = grow(&buf, &size, o, err)) < 0)
            break;
        if ((ret = wait_fd(fd, POLLIN, o, err)) < 0)
            break;
        n = recv(fd, buf + used, size - used, MSG_DONTWAIT);
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n <= 0) {
            ret = sd_error_set(err, -ECONNRESET, "%s closed the control "
                               "connection without a reply", o->peer);
            break;
        }
        lf = memchr(buf + used, '\n', (size_t)n);
        used += (size_t)n;
    }
    if (ret < 0) {
        free(buf);
        return ret;
    }
    *len = (size_t)(lf - buf);
    *line = buf;
    return 0;
}

static int parse_reply(const struct rpc_client_opts *o, const char *method,
                       const char *line, size_t len, json_t **result,
                       json_t **error, struct sd_error *err)
{
    json_t *reply = json_loadb(line, len, 0, NULL);
    json_t *e = json_object_get(reply, "error");
    json_t *res = json_object_get(reply, "result");
    int ret = 0;

    if (json_is_object(e))
        *error = json_incref(e);
    else if (res)
        *result = json_incref(res);
    else
        ret = sd_error_set(err, -EPROTO, "%s %s: the reply is not JSON-RPC",
                           o->peer, method);
    json_decref(reply);
    return ret;
}

int rpc_client_call(const char *socket_path, const struct rpc_client_opts *o,
                    const char *method, json_t *params, json_t **result,
                    json_t **error, struct sd_error *err)
{
    json_t *req = json_pack("{s:s, s:i, s:s, s:o*}", "jsonrpc", "2.0",
                            "id", 1, "method", method, "params", params);
    char *text = req ? json_dumps(req, JSON_COMPACT) : NULL;
    char *line = NULL;
    size_t len = 0;
    int fd = -1, ret;

    json_decref(req);
    *result = NULL;
    *error = NULL;
    if (!text)
        return sd_error_set(err, -ENOMEM, "out of memory");
    ret = connect_unix(socket_path, o, &fd, err);
    if (ret == 0) {
        size_t n = strlen(text);

        text[n] = '\n';             /* json_dumps' NUL becomes the LF */
        ret = send_all(fd, text, n + 1, o, err);
    }
    if (ret == 0)
        ret = recv_line(fd, o, &line, &len, err);
    if (ret == 0)
        ret = parse_reply(o, method, line, len, result, error, err);
    if (fd >= 0)
        close(fd);
    free(line);
    free(text);
    return ret;
}
