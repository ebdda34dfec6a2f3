/* SPDX-License-Identifier: MIT */
#include "config.h"

#include "catalog/nbd-client.h"
#include "common/jsonrpc.h"
#include "common/rpc-client.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

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

int nbdc_call(const char *socket_path, const char *method, json_t *params,
              json_t **result, struct sd_error *err)
{
    static const struct rpc_client_opts opts = {
        .peer = "sendense-nbd",
        .timeout_s = NBDC_TIMEOUT_S,
        .reply_max = NBDC_REPLY_MAX,
    };
    json_t *res = NULL, *error = NULL;
    const char *msg;
    int ret;

    ret = rpc_client_call(socket_path, &opts, method, params, &res, &error,
                          err);
    if (ret < 0)
        return ret;
    if (!error) {
        *result = res;
        return 0;
    }
    msg = json_string_value(json_object_get(error, "message"));
    ret = sd_error_set(err, error_errno(error), "sendense-nbd %s: %s", method,
                       msg ? msg : "error without a message");
    json_decref(error);
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

static void copy_text(char *dst, size_t size, json_t *value)
{
    const char *text = json_string_value(value);

    snprintf(dst, size, "%s", text ? text : "");
}

int nbdc_export_stats(const char *socket_path, const char *name,
                      struct nbdc_export_stats *out, struct sd_error *err)
{
    json_t *params = json_pack("{s:s}", "name", name);
    json_t *result = NULL, *stats, *bytes, *last_error;
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
        .write_errors = counter(stats, "write_errors"),
    };
    last_error = json_object_get(stats, "last_error");
    copy_text(out->last_errno, sizeof(out->last_errno),
              json_object_get(last_error, "errno"));
    copy_text(out->last_error, sizeof(out->last_error),
              json_object_get(last_error, "message"));
    json_decref(result);
    return 0;
}
