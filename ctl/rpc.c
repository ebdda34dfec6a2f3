/* SPDX-License-Identifier: MIT */
/*
 * One call to a daemon (common/rpc-client.h), its outcome sorted for the
 * exit status: a socket nobody answers on, a daemon that hangs up or
 * stays silent past CTL_RPC_TIMEOUT_S are "unreachable" (3); an error
 * reply, or a reply that is not JSON-RPC, is an error of the daemon (1).
 */
#include "config.h"

#include "ctl/ctl.h"
#include "common/rpc-client.h"

#include <errno.h>
#include <string.h>

static bool unreachable(int err)
{
    return err == -ENOTCONN || err == -ETIMEDOUT || err == -ECONNRESET;
}

int ctl_rpc_call(const char *socket_path, const char *peer,
                 const char *method, json_t *params, json_t **result,
                 struct ctl_rpc_error *err)
{
    const struct rpc_client_opts opts = {
        .peer = peer,
        .timeout_s = CTL_RPC_TIMEOUT_S,
        .reply_max = CTL_RPC_REPLY_MAX,
    };
    struct sd_error e = { 0 };
    json_t *error = NULL;
    const char *msg;
    int ret;

    ret = rpc_client_call(socket_path, &opts, method, params, result, &error,
                          &e);
    if (ret < 0) {
        err->exit = unreachable(ret) ? CTL_EXIT_UNREACHABLE : CTL_EXIT_ERROR;
        err->code = 0;
        snprintf(err->message, sizeof(err->message), "%s", e.msg);
        return -1;
    }
    if (!error)
        return 0;
    msg = json_string_value(json_object_get(error, "message"));
    err->exit = CTL_EXIT_ERROR;
    err->code = json_integer_value(json_object_get(error, "code"));
    snprintf(err->message, sizeof(err->message), "%s",
             msg ? msg : "error without a message");
    json_decref(error);
    return -1;
}
