/* SPDX-License-Identifier: MIT */
/*
 * Calls to sendensed (docs/SENDENSED.md) over its unix socket, through
 * common/rpc-client.h. An error reply keeps the daemon's own message,
 * which says what and why; its errno name (data.errno) becomes the
 * error's code, so that a caller can tell "the job failed meanwhile"
 * from "sendense-nbd is not answering yet".
 */
#include "config.h"

#include "capture/capture.h"
#include "common/rpc-client.h"

#include <errno.h>
#include <string.h>

enum {
    /* backup.complete drains the exports, then checks and checksums
     * every image: minutes for big disks. */
    DAEMON_TIMEOUT_S = 3600,
    DAEMON_REPLY_MAX = 16 << 20,
};

static const struct {
    const char *name;
    int code;
} errno_names[] = {
    { "ENOENT", ENOENT }, { "EINVAL", EINVAL }, { "EBUSY", EBUSY },
    { "EEXIST", EEXIST }, { "ENOSPC", ENOSPC }, { "EIO", EIO },
    { "ENOTCONN", ENOTCONN }, { "ECONNREFUSED", ECONNREFUSED },
    { "ECONNRESET", ECONNRESET }, { "ETIMEDOUT", ETIMEDOUT },
    { "EACCES", EACCES }, { "EPERM", EPERM }, { "EAGAIN", EAGAIN },
};

static int reply_errno(const json_t *error)
{
    const char *name = json_string_value(json_object_get(json_object_get(error, "data"),
                                                         "errno"));

    for (size_t i = 0; name && i < sizeof(errno_names) / sizeof(errno_names[0]); i++)
        if (strcmp(name, errno_names[i].name) == 0)
            return -errno_names[i].code;
    return -EIO;
}

int cap_daemon_call(const char *socket_path, const char *method, json_t *params,
                    json_t **result, struct sd_error *err)
{
    const struct rpc_client_opts opts = {
        .peer = "sendensed",
        .timeout_s = DAEMON_TIMEOUT_S,
        .reply_max = DAEMON_REPLY_MAX,
    };
    json_t *error = NULL;
    const char *msg;
    int ret;

    *result = NULL;
    ret = rpc_client_call(socket_path, &opts, method, params, result, &error, err);
    if (ret < 0)
        return ret;
    if (!error)
        return 0;
    msg = json_string_value(json_object_get(error, "message"));
    ret = sd_error_set(err, reply_errno(error), "%s", msg ? msg : "an error without a message");
    json_decref(error);
    return ret;
}
