/* SPDX-License-Identifier: MIT */
/* connection list|close: sendense-nbd's NBD client connections. */
#include "config.h"

#include "ctl/ctl.h"

#include <errno.h>
#include <stdlib.h>

static int add_connection_row(struct ctl_table *t, const json_t *c)
{
    char id[24], since[40], requests[24];

    snprintf(id, sizeof(id), "%llu", (unsigned long long)ctl_u64(c, "id"));
    ctl_human_time_ms((int64_t)ctl_u64(c, "since_ms"), since, sizeof(since));
    snprintf(requests, sizeof(requests), "%llu",
             (unsigned long long)ctl_u64(c, "requests"));
    return ctl_table_add(t, (const char *const[]){
        id, ctl_str(c, "export", "-"), ctl_str(c, "peer", "?"),
        ctl_str(c, "listener", "?"),
        json_is_true(json_object_get(c, "tls")) ? "yes" : "no",
        since, requests,
        json_is_true(json_object_get(c, "closing")) ? "closing" : "open",
    });
}

static int print_list(const json_t *r)
{
    static const char *const headers[] = {
        "ID", "EXPORT", "PEER", "LISTENER", "TLS", "SINCE", "REQUESTS",
        "STATE",
    };

    return ctl_print_table(8, headers, json_object_get(r, "connections"),
                           add_connection_row);
}

static int run_list(struct ctl_ctx *ctx, int argc, char **argv)
{
    return ctl_run_plain(ctx, argc, argv, true, "connection.list", print_list);
}

static int print_closed(const json_t *r)
{
    printf("connection %llu closed\n", (unsigned long long)ctl_u64(r, "closed"));
    return CTL_EXIT_OK;
}

static int run_close(struct ctl_ctx *ctx, int argc, char **argv)
{
    unsigned long long id;
    char *end;
    int first, status;

    status = ctl_parse_plain(ctx, argc, argv, 1, &first);
    if (status != 0)
        return status;
    errno = 0;
    id = strtoull(argv[first], &end, 10);
    if (errno || *end || end == argv[first] || id == 0 || id > INT64_MAX)
        return ctl_fail(CTL_EXIT_USAGE, "connection close: '%s' is not a "
                        "connection id", argv[first]);
    return ctl_call_and_print(ctx, true, "connection.close",
                              json_pack("{s:I}", "id", (json_int_t)id),
                              print_closed);
}

static const struct ctl_cmd cmds[] = {
    { "list", "the NBD connections and their exports",
      "Usage: sendense-ctl connection list [--json]\n\n"
      "One row per NBD connection: id, export, peer address, listener, TLS,\n"
      "since when (UTC), requests served, and whether it is closing\n"
      "(connection.list).\n", run_list },
    { "close", "close one connection by id",
      "Usage: sendense-ctl connection close ID [--json]\n\n"
      "Closes the connection ID (from 'connection list'); its in-flight\n"
      "requests complete first (connection.close).\n", run_close },
    { NULL, NULL, NULL, NULL },
};

const struct ctl_group ctl_group_connection = {
    .name = "connection",
    .summary = "NBD client connections: list, close",
    .daemon = "sendense-nbd",
    .cmds = cmds,
};
