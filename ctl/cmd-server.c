/* SPDX-License-Identifier: MIT */
/* server info|reload: sendense-nbd as a whole. */
#include "config.h"

#include "ctl/ctl.h"

static int print_info(const json_t *r)
{
    char text[64];
    const json_t *v;
    size_t i;

    ctl_print_field("name", ctl_str(r, "name", NULL));
    ctl_print_field("version", ctl_str(r, "version", NULL));
    snprintf(text, sizeof(text), "%llu", (unsigned long long)ctl_u64(r, "pid"));
    ctl_print_field("pid", text);
    snprintf(text, sizeof(text), "%llu s",
             (unsigned long long)(ctl_u64(r, "uptime_ms") / 1000));
    ctl_print_field("uptime", text);
    ctl_print_field("config", ctl_str(r, "config", NULL));
    ctl_print_field("export_dir", ctl_str(r, "export_dir", NULL));
    json_array_foreach(json_object_get(r, "listen"), i, v)
        ctl_print_field(i == 0 ? "listen" : "", json_string_value(v));
    ctl_print_field("tls", ctl_str(r, "tls", NULL));
    snprintf(text, sizeof(text), "%llu",
             (unsigned long long)json_array_size(json_object_get(r, "workers")));
    ctl_print_field("workers", text);
    snprintf(text, sizeof(text), "%llu", (unsigned long long)ctl_u64(r, "exports"));
    ctl_print_field("exports", text);
    snprintf(text, sizeof(text), "%llu",
             (unsigned long long)ctl_u64(r, "connections"));
    ctl_print_field("connections", text);
    snprintf(text, sizeof(text), "%llu", (unsigned long long)ctl_u64(r, "reloads"));
    ctl_print_field("reloads", text);
    return CTL_EXIT_OK;
}

static int print_reload(const json_t *r)
{
    const json_t *e;
    size_t i;

    printf("added %llu, changed %llu, unchanged %llu, pending %llu, "
           "failed %llu, removed %llu\n",
           (unsigned long long)ctl_u64(r, "added"),
           (unsigned long long)ctl_u64(r, "changed"),
           (unsigned long long)ctl_u64(r, "unchanged"),
           (unsigned long long)ctl_u64(r, "pending"),
           (unsigned long long)ctl_u64(r, "failed"),
           (unsigned long long)ctl_u64(r, "removed"));
    /* The reload itself worked; a bad file is shown, not an error. */
    json_array_foreach(json_object_get(r, "errors"), i, e)
        printf("error: %s: %s\n", ctl_str(e, "file", ctl_str(e, "export", "?")),
               ctl_str(e, "error", "?"));
    return CTL_EXIT_OK;
}

static int run_info(struct ctl_ctx *ctx, int argc, char **argv)
{
    return ctl_run_plain(ctx, argc, argv, true, "server.info", print_info);
}

static int run_reload(struct ctl_ctx *ctx, int argc, char **argv)
{
    return ctl_run_plain(ctx, argc, argv, true, "server.reload",
                         print_reload);
}

static const struct ctl_cmd cmds[] = {
    { "info", "version, listeners, exports, connections",
      "Usage: sendense-ctl server info [--json]\n\n"
      "Shows sendense-nbd's version, pid, uptime, config, listeners, TLS\n"
      "mode and counts of workers, exports, connections and reloads\n"
      "(server.info).\n", run_info },
    { "reload", "re-read the export directory (like SIGHUP)",
      "Usage: sendense-ctl server reload [--json]\n\n"
      "Re-reads the export directory and applies the difference; connected\n"
      "clients are never dropped (server.reload). Prints how many exports\n"
      "were added, changed, removed, and each file that did not parse.\n",
      run_reload },
    { NULL, NULL, NULL, NULL },
};

const struct ctl_group ctl_group_server = {
    .name = "server",
    .summary = "sendense-nbd itself: info, reload",
    .daemon = "sendense-nbd",
    .cmds = cmds,
};
