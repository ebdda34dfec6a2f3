/* SPDX-License-Identifier: MIT */
/* export list|get|add|remove|fence|stats: sendense-nbd's exports. */
#include "config.h"

#include "ctl/ctl.h"

#include <string.h>

/* --- printing ------------------------------------------------------------ */

static int add_export_row(struct ctl_table *t, const json_t *e)
{
    char size[32] = "-", clients[24];

    if (json_object_get(e, "size"))
        ctl_human_size(ctl_u64(e, "size"), size, sizeof(size));
    snprintf(clients, sizeof(clients), "%llu",
             (unsigned long long)ctl_u64(e, "clients"));
    return ctl_table_add(t, (const char *const[]){
        ctl_str(e, "name", "?"), ctl_str(e, "state", "?"),
        ctl_str(e, "image_format", ctl_str(e, "format", "-")),
        json_is_true(json_object_get(e, "readonly")) ? "ro" : "rw",
        size, clients, ctl_str(e, "path", "-"),
    });
}

static int print_list(const json_t *r)
{
    static const char *const headers[] = {
        "NAME", "STATE", "FORMAT", "MODE", "SIZE", "CLIENTS", "PATH",
    };

    return ctl_print_table(7, headers, json_object_get(r, "exports"),
                           add_export_row);
}

static void print_size_field(const char *key, const json_t *obj,
                             const char *field)
{
    char size[32];

    ctl_human_size(ctl_u64(obj, field), size, sizeof(size));
    ctl_print_field(key, size);
}

static void print_stats_fields(const json_t *st)
{
    const json_t *bytes = json_object_get(st, "bytes");
    char text[48];

    print_size_field("bytes read", bytes, "read");
    print_size_field("bytes written", bytes, "write");
    print_size_field("bytes zeroed", bytes, "zero");
    print_size_field("bytes trimmed", bytes, "trim");
    snprintf(text, sizeof(text), "%llu", (unsigned long long)ctl_u64(st, "errors"));
    ctl_print_field("errors", text);
    snprintf(text, sizeof(text), "%llu",
             (unsigned long long)ctl_u64(st, "connections_total"));
    ctl_print_field("connections", text);
    ctl_human_time_ms((int64_t)ctl_u64(st, "last_activity_ms"), text,
                      sizeof(text));
    ctl_print_field("last activity", text);
}

static int print_one(const json_t *e)
{
    char text[32];

    ctl_print_field("name", ctl_str(e, "name", NULL));
    ctl_print_field("state", ctl_str(e, "state", NULL));
    if (json_object_get(e, "problem"))
        ctl_print_field("problem", ctl_str(e, "problem", NULL));
    ctl_print_field("path", ctl_str(e, "path", NULL));
    ctl_print_field("format", ctl_str(e, "image_format",
                                      ctl_str(e, "format", NULL)));
    if (json_object_get(e, "size"))
        print_size_field("size", e, "size");
    ctl_print_field("mode", json_is_true(json_object_get(e, "readonly"))
                    ? "read-only" : "read-write");
    ctl_print_field("tls", ctl_str(e, "tls", NULL));
    ctl_print_field("overlay", ctl_str(e, "overlay", NULL));
    if (json_object_get(e, "description"))
        ctl_print_field("description", ctl_str(e, "description", NULL));
    ctl_print_field("source", ctl_str(e, "source", NULL));
    snprintf(text, sizeof(text), "%llu",
             (unsigned long long)ctl_u64(e, "clients"));
    ctl_print_field("clients", text);
    if (json_is_object(json_object_get(e, "stats")))
        print_stats_fields(json_object_get(e, "stats"));
    return CTL_EXIT_OK;
}

static int add_stats_row(struct ctl_table *t, const json_t *e)
{
    const json_t *st = json_object_get(e, "stats");
    const json_t *bytes = json_object_get(st, "bytes");
    char clients[24], rd[32], wr[32], zero[32], trim[32], errs[24], last[40];

    snprintf(clients, sizeof(clients), "%llu",
             (unsigned long long)ctl_u64(e, "clients"));
    ctl_human_size(ctl_u64(bytes, "read"), rd, sizeof(rd));
    ctl_human_size(ctl_u64(bytes, "write"), wr, sizeof(wr));
    ctl_human_size(ctl_u64(bytes, "zero"), zero, sizeof(zero));
    ctl_human_size(ctl_u64(bytes, "trim"), trim, sizeof(trim));
    snprintf(errs, sizeof(errs), "%llu", (unsigned long long)ctl_u64(st, "errors"));
    ctl_human_time_ms((int64_t)ctl_u64(st, "last_activity_ms"), last,
                      sizeof(last));
    return ctl_table_add(t, (const char *const[]){
        ctl_str(e, "name", "?"), clients, rd, wr, zero, trim, errs, last,
    });
}

static int print_stats_list(const json_t *r)
{
    static const char *const headers[] = {
        "NAME", "CLIENTS", "READ", "WRITTEN", "ZEROED", "TRIMMED", "ERRORS",
        "LAST ACTIVITY",
    };

    if (!json_object_get(r, "exports"))      /* one export was asked for */
        return print_one(r);
    return ctl_print_table(8, headers, json_object_get(r, "exports"),
                           add_stats_row);
}

static int print_done(const json_t *r)
{
    printf("export %s %s (%llu connection(s) closed)\n",
           ctl_str(r, "export", "?"), ctl_str(r, "done", "done"),
           (unsigned long long)ctl_u64(r, "connections_closed"));
    return CTL_EXIT_OK;
}

/* --- commands ------------------------------------------------------------ */

enum {
    OPT_STATS = CTL_OPT_FIRST_FREE,
    OPT_DRAIN,
    OPT_FORMAT,
    OPT_READONLY,
    OPT_ALLOW,
    OPT_TLS,
    OPT_OVERLAY,
    OPT_DIRECT,
    OPT_DESCRIPTION,
    OPT_REPLACE,
};

/* The options of one command, gathered as JSON params. */
struct export_opts {
    json_t *params;
    json_t *allow;              /* --allow may repeat */
};

static int set_param(struct export_opts *o, const char *key, json_t *value)
{
    if (!value || json_object_set_new(o->params, key, value) < 0)
        return ctl_fail(CTL_EXIT_ERROR, "out of memory");
    return 0;
}

static int check_choice(const char *opt, const char *v, const char *a,
                        const char *b, const char *c)
{
    if (strcmp(v, a) == 0 || strcmp(v, b) == 0 || (c && strcmp(v, c) == 0))
        return 0;
    return ctl_fail(CTL_EXIT_USAGE, "export add: invalid value '%s' for "
                    "--%s", v, opt);
}

static int on_option(void *arg, int c, const char *v)
{
    struct export_opts *o = arg;

    switch (c) {
    case OPT_STATS:
        return set_param(o, "stats", json_true());
    case OPT_DRAIN:
        return set_param(o, "drain", json_true());
    case OPT_READONLY:
        return set_param(o, "readonly", json_true());
    case OPT_DIRECT:
        return set_param(o, "direct", json_true());
    case OPT_REPLACE:
        return set_param(o, "replace", json_true());
    case OPT_DESCRIPTION:
        return set_param(o, "description", json_string(v));
    case OPT_FORMAT:
        return check_choice("format", v, "raw", "qcow2", "auto") ?:
               set_param(o, "format", json_string(v));
    case OPT_TLS:
        return check_choice("tls", v, "inherit", "required", NULL) ?:
               set_param(o, "tls", json_string(v));
    case OPT_OVERLAY:
        return check_choice("overlay", v, "none", "temporary", NULL) ?:
               set_param(o, "overlay", json_string(v));
    case OPT_ALLOW:
        if (!o->allow && set_param(o, "allow", o->allow = json_array()) != 0)
            return CTL_EXIT_ERROR;
        return json_array_append_new(o->allow, json_string(v)) < 0
               ? ctl_fail(CTL_EXIT_ERROR, "out of memory") : 0;
    default:
        return CTL_EXIT_USAGE;
    }
}

/* A command of this group: positional args become params[names[i]]. */
struct export_cmd_spec {
    const char *method;
    const char *const *names;   /* NULL-ended */
    int min_args;
    ctl_human_fn *human;
    const struct option *longopts;
};

static int run_spec(struct ctl_ctx *ctx, int argc, char **argv,
                    const struct export_cmd_spec *s)
{
    struct export_opts o = { .params = json_object() };
    const struct ctl_params_spec spec = {
        s->longopts, on_option, &o, s->names, s->min_args,
    };
    int status;

    if (!o.params)
        return ctl_fail(CTL_EXIT_ERROR, "out of memory");
    status = ctl_parse_params(ctx, argc, argv, &spec, o.params);
    if (status != 0) {
        json_decref(o.params);
        return status;
    }
    return ctl_call_and_print(ctx, true, s->method, o.params, s->human);
}

#define NAMES(...) (const char *const[]){ __VA_ARGS__, NULL }
#define OPTS(...) (const struct option[]){ CTL_COMMON_OPTIONS, __VA_ARGS__ \
                                           { NULL, 0, NULL, 0 } }

static int run_list(struct ctl_ctx *ctx, int argc, char **argv)
{
    const struct export_cmd_spec s = {
        "export.list", (const char *const[]){ NULL }, 0, print_list,
        OPTS({ "stats", no_argument, NULL, OPT_STATS },),
    };
    return run_spec(ctx, argc, argv, &s);
}

static int run_get(struct ctl_ctx *ctx, int argc, char **argv)
{
    const struct export_cmd_spec s = {
        "export.get", NAMES("name"), 1, print_one,
        OPTS({ "stats", no_argument, NULL, OPT_STATS },),
    };
    return run_spec(ctx, argc, argv, &s);
}

static int run_add(struct ctl_ctx *ctx, int argc, char **argv)
{
    const struct export_cmd_spec s = {
        "export.add", NAMES("name", "path"), 2, print_one,
        OPTS({ "format", required_argument, NULL, OPT_FORMAT },
             { "readonly", no_argument, NULL, OPT_READONLY },
             { "allow", required_argument, NULL, OPT_ALLOW },
             { "tls", required_argument, NULL, OPT_TLS },
             { "overlay", required_argument, NULL, OPT_OVERLAY },
             { "direct", no_argument, NULL, OPT_DIRECT },
             { "description", required_argument, NULL, OPT_DESCRIPTION },
             { "replace", no_argument, NULL, OPT_REPLACE },),
    };
    return run_spec(ctx, argc, argv, &s);
}

static int run_remove(struct ctl_ctx *ctx, int argc, char **argv)
{
    const struct export_cmd_spec s = {
        "export.remove", NAMES("name"), 1, print_done,
        OPTS({ "drain", no_argument, NULL, OPT_DRAIN },),
    };
    return run_spec(ctx, argc, argv, &s);
}

static int run_fence(struct ctl_ctx *ctx, int argc, char **argv)
{
    const struct export_cmd_spec s = {
        "export.fence", NAMES("name"), 1, print_done, OPTS(),
    };
    return run_spec(ctx, argc, argv, &s);
}

static int run_stats(struct ctl_ctx *ctx, int argc, char **argv)
{
    const struct export_cmd_spec s = {
        "export.stats", NAMES("name"), 0, print_stats_list, OPTS(),
    };
    return run_spec(ctx, argc, argv, &s);
}

static const struct ctl_cmd cmds[] = {
    { "list", "every export with its state",
      "Usage: sendense-ctl export list [--stats] [--json]\n\n"
      "One row per export: name, state (serving, pending, failed), image\n"
      "format, mode, size, clients and path (export.list). --stats adds\n"
      "the counters to the JSON output.\n", run_list },
    { "get", "one export's definition",
      "Usage: sendense-ctl export get NAME [--stats] [--json]\n\n"
      "Shows one export's definition and state (export.get); --stats adds\n"
      "its counters.\n", run_get },
    { "add", "define an export (persisted in export_dir)",
      "Usage: sendense-ctl export add NAME PATH [--format raw|qcow2|auto]\n"
      "           [--readonly] [--allow CIDR]... [--tls inherit|required]\n"
      "           [--overlay none|temporary] [--direct]\n"
      "           [--description TEXT] [--replace] [--json]\n\n"
      "Defines an export and writes it to the server's export_dir\n"
      "(export.add). Adding an identical export again changes nothing; an\n"
      "export of that name with another definition is refused unless\n"
      "--replace is given.\n", run_add },
    { "remove", "remove an export",
      "Usage: sendense-ctl export remove NAME [--drain] [--json]\n\n"
      "Removes an export added with 'export add' (export.remove). Its\n"
      "clients are disconnected, or with --drain the command returns once\n"
      "they have gone on their own.\n", run_remove },
    { "fence", "close an export's connections and wait for their I/O",
      "Usage: sendense-ctl export fence NAME [--json]\n\n"
      "Closes every current connection of the export and returns once all\n"
      "their I/O has completed, so a writer reconnecting afterwards can\n"
      "never be overtaken by a stale write (export.fence).\n", run_fence },
    { "stats", "byte and op counters per export",
      "Usage: sendense-ctl export stats [NAME] [--json]\n\n"
      "Bytes read, written, zeroed and trimmed, errors, clients and last\n"
      "activity (UTC), for every export or for NAME (export.stats).\n",
      run_stats },
    { NULL, NULL, NULL, NULL },
};

const struct ctl_group ctl_group_export = {
    .name = "export",
    .summary = "sendense-nbd's exports: list, get, add, remove, fence, stats",
    .daemon = "sendense-nbd",
    .cmds = cmds,
};
