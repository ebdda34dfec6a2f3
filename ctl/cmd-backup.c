/* SPDX-License-Identifier: MIT */
/*
 * backup ...: sendensed's backup jobs and catalog (docs/SENDENSED.md).
 * watch lives in cmd-watch.c; delete, verify and prune in
 * cmd-retention.c.
 */
#include "config.h"

#include "ctl/ctl.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

enum {
    OPT_VM = CTL_OPT_FIRST_FREE,
    OPT_DISK,
    OPT_TYPE,
    OPT_REPOSITORY,
    OPT_DISPLAY_NAME,
    OPT_CHANGE_ID,
    OPT_REASON,
};

/* --- shared printing ----------------------------------------------------- */

static void print_time_field(const char *key, const json_t *obj,
                             const char *field)
{
    char text[48];

    ctl_human_time(ctl_str(obj, field, NULL), text, sizeof(text));
    ctl_print_field(key, text);
}

static int add_disk_row(struct ctl_table *t, const json_t *d)
{
    char written[32], total[32], percent[16];
    const json_t *p = json_object_get(d, "percent");

    ctl_human_size(ctl_u64(d, "bytes_written") + ctl_u64(d, "bytes_zeroed") +
                   ctl_u64(d, "bytes_trimmed"), written, sizeof(written));
    ctl_human_size(ctl_u64(d, "total"), total, sizeof(total));
    snprintf(percent, sizeof(percent), p ? "%.1f%%" : "-",
             json_number_value(p));
    return ctl_table_add(t, (const char *const[]){
        ctl_str(d, "name", "?"), ctl_str(d, "backup_id", "?"),
        ctl_str(d, "backup_type", "?"), ctl_str(d, "parent_id", "-"),
        ctl_str(d, "status", ctl_str(d, "phase", "?")), written, total,
        percent, ctl_str(d, "export", "-"),
    });
}

static int print_job_disks(const json_t *job)
{
    static const char *const headers[] = {
        "DISK", "BACKUP", "TYPE", "PARENT", "STATUS", "WRITTEN", "SIZE",
        "PERCENT", "EXPORT",
    };

    return ctl_print_table(9, headers, json_object_get(job, "disks"),
                           add_disk_row);
}

static int print_job(const json_t *job)
{
    const json_t *d;
    size_t i;

    ctl_print_field("job", ctl_str(job, "job", NULL));
    ctl_print_field("vm", ctl_str(job, "vm", NULL));
    ctl_print_field("repository", ctl_str(job, "repository", NULL));
    ctl_print_field("type", ctl_str(job, "type", NULL));
    ctl_print_field("phase", ctl_str(job, "phase", NULL));
    print_time_field("started", job, "started_at");
    print_time_field("ended", job, "ended_at");
    if (json_is_string(json_object_get(job, "failure_reason")))
        ctl_print_field("failure", ctl_str(job, "failure_reason", NULL));
    printf("\n");
    if (print_job_disks(job) != CTL_EXIT_OK)
        return CTL_EXIT_ERROR;
    /* Where the Capture Agent writes, in full: too wide for the table. */
    json_array_foreach(json_object_get(job, "disks"), i, d)
        if (json_is_string(json_object_get(d, "uri")) &&
            strcmp(ctl_str(job, "phase", ""), "running") == 0)
            printf("%s: %s\n", ctl_str(d, "name", "?"), ctl_str(d, "uri", ""));
    return CTL_EXIT_OK;
}

static int add_backup_row(struct ctl_table *t, const json_t *b, bool with_vm)
{
    char size[32], written[32], alloc[32], started[48];

    ctl_human_size(ctl_u64(b, "virtual_size"), size, sizeof(size));
    ctl_human_size(ctl_u64(b, "bytes_written"), written, sizeof(written));
    ctl_human_size(ctl_u64(b, "allocated_bytes"), alloc, sizeof(alloc));
    ctl_human_time(ctl_str(b, "started_at", NULL), started, sizeof(started));
    const char *cells[] = {
        ctl_str(b, "vm", "?"), ctl_str(b, "disk", "?"), ctl_str(b, "id", "?"),
        ctl_str(b, "type", "?"), ctl_str(b, "status", "?"),
        json_is_true(json_object_get(b, "usable")) ? "yes" : "no",
        size, written, alloc, started, ctl_str(b, "change_id", "-"),
    };
    return ctl_table_add(t, with_vm ? cells : cells + 1);
}

static int add_backup_row_with_vm(struct ctl_table *t, const json_t *b)
{
    return add_backup_row(t, b, true);
}

static int add_backup_row_without_vm(struct ctl_table *t, const json_t *b)
{
    return add_backup_row(t, b, false);
}

static int print_backups(const json_t *list, bool with_vm)
{
    static const char *const headers[] = {
        "VM", "DISK", "ID", "TYPE", "STATUS", "USABLE", "SIZE", "WRITTEN",
        "ALLOCATED", "STARTED", "CHANGE ID",
    };

    if (with_vm)
        return ctl_print_table(11, headers, list, add_backup_row_with_vm);
    return ctl_print_table(10, headers + 1, list, add_backup_row_without_vm);
}

static int print_list(const json_t *r)
{
    return print_backups(json_object_get(r, "backups"), true);
}

static int print_chain(const json_t *r)
{
    ctl_print_field("vm", ctl_str(r, "vm", NULL));
    ctl_print_field("disk", ctl_str(r, "disk", NULL));
    ctl_print_field("repository", ctl_str(r, "repository", NULL));
    ctl_print_field("backup", ctl_str(r, "id", NULL));
    ctl_print_field("usable", json_is_true(json_object_get(r, "usable"))
                    ? "yes" : "no");
    printf("\n");
    return print_backups(json_object_get(r, "chain"), false);
}

static void print_size_field(const char *key, const json_t *b,
                             const char *field)
{
    char text[64];

    ctl_exact_size(ctl_u64(b, field), text, sizeof(text));
    ctl_print_field(key, text);
}

static int print_show(const json_t *b)
{
    static const char *const fields[][2] = {
        { "vm", "vm" }, { "disk", "disk" }, { "repository", "repository" },
        { "id", "id" }, { "type", "type" }, { "parent", "parent" },
        { "status", "status" }, { "failure", "failure_reason" },
        { "change id", "change_id" }, { "image", "image" },
        { "backing file", "backing_file" }, { "job", "job_id" },
    };

    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
        ctl_print_field(fields[i][0], ctl_str(b, fields[i][1], NULL));
    print_size_field("virtual size", b, "virtual_size");
    print_size_field("bytes written", b, "bytes_written");
    print_size_field("allocated", b, "allocated_bytes");
    print_time_field("started", b, "started_at");
    print_time_field("ended", b, "ended_at");
    ctl_print_field("usable", json_is_true(json_object_get(b, "usable"))
                    ? "yes" : "no");
    return CTL_EXIT_OK;
}

static int add_job_row(struct ctl_table *t, const json_t *j)
{
    char disks[16], started[48], ended[48];

    snprintf(disks, sizeof(disks), "%zu",
             json_array_size(json_object_get(j, "disks")));
    ctl_human_time(ctl_str(j, "started_at", NULL), started, sizeof(started));
    ctl_human_time(ctl_str(j, "ended_at", NULL), ended, sizeof(ended));
    return ctl_table_add(t, (const char *const[]){
        ctl_str(j, "job", "?"), ctl_str(j, "vm", "?"), ctl_str(j, "type", "?"),
        ctl_str(j, "phase", "?"), disks, started, ended,
    });
}

static int print_jobs(const json_t *r)
{
    static const char *const headers[] = {
        "JOB", "VM", "TYPE", "PHASE", "DISKS", "STARTED", "ENDED",
    };

    return ctl_print_table(7, headers, json_object_get(r, "jobs"),
                           add_job_row);
}

/* --- options ------------------------------------------------------------- */

/* The options of one command, gathered as JSON params. */
struct backup_opts {
    const char *cmd;
    json_t *params;
    json_t *disks;              /* --disk, repeated */
    json_t *change_ids;         /* --change-id, repeated */
};

static int set_param(struct backup_opts *o, const char *key, json_t *value)
{
    if (!value || json_object_set_new(o->params, key, value) < 0)
        return ctl_fail(CTL_EXIT_ERROR, "out of memory");
    return 0;
}

/* "10G", "512M", "1048576": binary units, as sendense-img takes them. */
static int parse_size(const char *s, uint64_t *out)
{
    static const char units[] = "bkmgtpe";
    unsigned long long n;
    const char *u;
    char *end;

    if (!isdigit((unsigned char)*s))
        return -EINVAL;
    errno = 0;
    n = strtoull(s, &end, 10);
    if (errno)
        return -ERANGE;
    if (*end == '\0') {
        *out = n;
        return 0;
    }
    u = strchr(units, tolower((unsigned char)*end));
    if (!u || end[1] != '\0')
        return -EINVAL;
    unsigned shift = 10 * (unsigned)(u - units);
    if (shift && n > (UINT64_MAX >> shift))
        return -ERANGE;
    *out = (uint64_t)n << shift;
    return 0;
}

/* --disk NAME:SIZE[:LABEL] (a label may hold ':' itself). */
static int add_disk(struct backup_opts *o, const char *spec)
{
    char buf[256], *size_text, *label;
    uint64_t size;
    json_t *d;

    if (snprintf(buf, sizeof(buf), "%s", spec) >= (int)sizeof(buf))
        return ctl_fail(CTL_EXIT_USAGE, "%s: --disk '%.32s...' is too long",
                        o->cmd, spec);
    size_text = strchr(buf, ':');
    if (!size_text || size_text == buf)
        return ctl_fail(CTL_EXIT_USAGE, "%s: --disk '%s' is not NAME:SIZE",
                        o->cmd, spec);
    *size_text++ = '\0';
    label = strchr(size_text, ':');
    if (label)
        *label++ = '\0';
    if (parse_size(size_text, &size) < 0 || size == 0 || size > INT64_MAX)
        return ctl_fail(CTL_EXIT_USAGE, "%s: --disk '%s': invalid size '%s'",
                        o->cmd, spec, size_text);
    if (!o->disks && set_param(o, "disks", o->disks = json_array()) != 0)
        return CTL_EXIT_ERROR;
    d = json_pack("{s:s, s:I, s:s*}", "name", buf, "size", (json_int_t)size,
                  "label", label);
    if (!d || json_array_append_new(o->disks, d) < 0)
        return ctl_fail(CTL_EXIT_ERROR, "out of memory");
    return 0;
}

/* --change-id DISK=ID */
static int add_change_id(struct backup_opts *o, const char *spec)
{
    const char *eq = strchr(spec, '=');
    char disk[128];

    if (!eq || eq == spec || (size_t)(eq - spec) >= sizeof(disk))
        return ctl_fail(CTL_EXIT_USAGE, "%s: --change-id '%s' is not DISK=ID",
                        o->cmd, spec);
    memcpy(disk, spec, (size_t)(eq - spec));
    disk[eq - spec] = '\0';
    if (!o->change_ids &&
        set_param(o, "change_ids", o->change_ids = json_object()) != 0)
        return CTL_EXIT_ERROR;
    if (json_object_set_new(o->change_ids, disk, json_string(eq + 1)) < 0)
        return ctl_fail(CTL_EXIT_ERROR, "out of memory");
    return 0;
}

static int on_option(void *arg, int c, const char *v)
{
    struct backup_opts *o = arg;

    switch (c) {
    case OPT_VM:
        return set_param(o, "vm", json_string(v));
    case OPT_REPOSITORY:
        return set_param(o, "repository", json_string(v));
    case OPT_DISPLAY_NAME:
        return set_param(o, "display_name", json_string(v));
    case OPT_REASON:
        return set_param(o, "reason", json_string(v));
    case OPT_TYPE:
        if (strcmp(v, "full") != 0 && strcmp(v, "incremental") != 0 &&
            strcmp(v, "auto") != 0)
            return ctl_fail(CTL_EXIT_USAGE, "%s: --type must be full, "
                            "incremental or auto, not '%s'", o->cmd, v);
        return set_param(o, "type", json_string(v));
    case OPT_DISK:
        return add_disk(o, v);
    case OPT_CHANGE_ID:
        return add_change_id(o, v);
    default:
        return CTL_EXIT_USAGE;
    }
}

/* A command: options, positional args into params[names[i]], options
 * that must be there, then the call. */
struct backup_cmd_spec {
    const char *method;
    const char *const *names;   /* NULL-ended */
    int min_args;
    const struct option *longopts;
    /* Params that must be set, each with the option that sets it. */
    const char *required[2][2];
    ctl_human_fn *human;
};

static int run_spec(struct ctl_ctx *ctx, int argc, char **argv,
                    const struct backup_cmd_spec *s)
{
    struct backup_opts o = { .cmd = ctx->command, .params = json_object() };
    const struct ctl_params_spec spec = {
        s->longopts, on_option, &o, s->names, s->min_args,
    };
    int status;

    if (!o.params)
        return ctl_fail(CTL_EXIT_ERROR, "out of memory");
    status = ctl_parse_params(ctx, argc, argv, &spec, o.params);
    for (int i = 0; i < 2 && status == 0 && s->required[i][0]; i++)
        if (!json_object_get(o.params, s->required[i][0]))
            status = ctl_fail(CTL_EXIT_USAGE, "%s: %s is required (see '%s "
                              "%s --help')", ctx->command, s->required[i][1],
                              CTL_PROG, ctx->command);
    if (status != 0) {
        json_decref(o.params);
        return status;
    }
    return ctl_call_and_print(ctx, false, s->method, o.params, s->human);
}

#define NAMES(...) (const char *const[]){ __VA_ARGS__, NULL }
#define NO_NAMES (const char *const[]){ NULL }
#define OPTS(...) (const struct option[]){ CTL_COMMON_OPTIONS, __VA_ARGS__ \
                                           { NULL, 0, NULL, 0 } }
#define OPT_REPO_ENTRY { "repository", required_argument, NULL, OPT_REPOSITORY }

/* --- commands ------------------------------------------------------------ */

static int run_start(struct ctl_ctx *ctx, int argc, char **argv)
{
    const struct backup_cmd_spec s = {
        "backup.start", NO_NAMES, 0,
        OPTS({ "vm", required_argument, NULL, OPT_VM },
             { "disk", required_argument, NULL, OPT_DISK },
             { "type", required_argument, NULL, OPT_TYPE },
             { "display-name", required_argument, NULL, OPT_DISPLAY_NAME },
             OPT_REPO_ENTRY,),
        { { "vm", "--vm" }, { "disks", "at least one --disk NAME:SIZE" } },
        print_job,
    };
    return run_spec(ctx, argc, argv, &s);
}

static int run_complete(struct ctl_ctx *ctx, int argc, char **argv)
{
    const struct backup_cmd_spec s = {
        "backup.complete", NAMES("job"), 1,
        OPTS({ "change-id", required_argument, NULL, OPT_CHANGE_ID },),
        { { NULL } }, print_job,
    };
    return run_spec(ctx, argc, argv, &s);
}

static int run_fail(struct ctl_ctx *ctx, int argc, char **argv)
{
    const struct backup_cmd_spec s = {
        "backup.fail", NAMES("job"), 1,
        OPTS({ "reason", required_argument, NULL, OPT_REASON },),
        { { "reason", "--reason" } }, print_job,
    };
    return run_spec(ctx, argc, argv, &s);
}

static int print_fenced(const json_t *r)
{
    const json_t *disks = json_object_get(r, "fenced");
    size_t i;
    const json_t *d;

    printf("job %s: fenced", ctl_str(r, "job", "?"));
    json_array_foreach(disks, i, d)
        printf(" %s", json_string_value(d) ? json_string_value(d) : "?");
    printf("\n");
    return CTL_EXIT_OK;
}

static int run_fence(struct ctl_ctx *ctx, int argc, char **argv)
{
    const struct backup_cmd_spec s = {
        "backup.fence", NAMES("job", "disk"), 1, OPTS(), { { NULL } }, print_fenced,
    };
    return run_spec(ctx, argc, argv, &s);
}

static int run_list(struct ctl_ctx *ctx, int argc, char **argv)
{
    const struct backup_cmd_spec s = {
        "backup.list", NO_NAMES, 0,
        OPTS({ "vm", required_argument, NULL, OPT_VM }, OPT_REPO_ENTRY,),
        { { NULL } }, print_list,
    };
    return run_spec(ctx, argc, argv, &s);
}

static int run_show(struct ctl_ctx *ctx, int argc, char **argv)
{
    const struct backup_cmd_spec s = {
        "backup.show", NAMES("vm", "disk", "id"), 3, OPTS(OPT_REPO_ENTRY,),
        { { NULL } }, print_show,
    };
    return run_spec(ctx, argc, argv, &s);
}

static int run_chain(struct ctl_ctx *ctx, int argc, char **argv)
{
    const struct backup_cmd_spec s = {
        "backup.chain", NAMES("vm", "disk", "id"), 2, OPTS(OPT_REPO_ENTRY,),
        { { NULL } }, print_chain,
    };
    return run_spec(ctx, argc, argv, &s);
}

static int run_status(struct ctl_ctx *ctx, int argc, char **argv)
{
    const struct backup_cmd_spec s = {
        "job.status", NAMES("job"), 1, OPTS(), { { NULL } }, print_job,
    };
    return run_spec(ctx, argc, argv, &s);
}

static int run_jobs(struct ctl_ctx *ctx, int argc, char **argv)
{
    /* job.list takes no params at all, not even an empty object. */
    return ctl_run_plain(ctx, argc, argv, false, "job.list", print_jobs);
}

static const struct ctl_cmd cmds[] = {
    { "start", "start a backup job of a VM's disks",
      "Usage: sendense-ctl backup start --vm VM --disk NAME:SIZE[:LABEL]\n"
      "           [--disk ...] [--type full|incremental|auto]\n"
      "           [--repository R] [--display-name TEXT] [--json]\n\n"
      "Starts a job (backup.start): per disk an image is created (a full,\n"
      "or an incremental on the newest usable backup) and exported by\n"
      "sendense-nbd; the Capture Agent writes to the URI printed per disk.\n"
      "NAME is disk<N>; SIZE is in bytes or with a binary unit (K M G T),\n"
      "a multiple of 512. --type auto (the default) makes an incremental\n"
      "when there is a usable parent, else a full.\n", run_start },
    { "complete", "finish a job: check images, record change ids",
      "Usage: sendense-ctl backup complete JOB [--change-id DISK=ID]...\n"
      "           [--json]\n\n"
      "Completes a running job (backup.complete): waits until the writers\n"
      "have disconnected, checks each image and marks its backup completed\n"
      "with the given change id (the CBT id the next incremental starts\n"
      "from).\n", run_complete },
    { "fail", "fail a job, with a reason",
      "Usage: sendense-ctl backup fail JOB --reason TEXT [--json]\n\n"
      "Fails a running job (backup.fail): writers are disconnected and the\n"
      "backups are marked failed with the reason.\n", run_fail },
    { "fence", "fence a job's exports before a writer reconnects",
      "Usage: sendense-ctl backup fence JOB [DISK] [--json]\n\n"
      "Fences the exports of a running job, or of one disk (backup.fence):\n"
      "returns once their old connections are closed and all their I/O is\n"
      "done, so a Capture Agent that reconnects can never be overtaken by a\n"
      "stale write. sendense-capture calls it by itself after a dropped\n"
      "connection.\n", run_fence },
    { "list", "backups in the catalog",
      "Usage: sendense-ctl backup list [--vm VM] [--repository R] [--json]\n\n"
      "One row per backup (backup.list): VM, disk, id, type, status, usable\n"
      "(it and its whole chain are completed and present), virtual size,\n"
      "bytes written, allocated bytes, start time (UTC) and change id.\n",
      run_list },
    { "show", "one backup in detail",
      "Usage: sendense-ctl backup show VM DISK ID [--repository R] [--json]\n"
      "\nEverything the catalog knows about one backup (backup.show).\n",
      run_show },
    { "chain", "a backup and the chain it restores from",
      "Usage: sendense-ctl backup chain VM DISK [ID] [--repository R]\n"
      "           [--json]\n\n"
      "The chain of backup ID, full first (backup.chain); without ID, the\n"
      "chain of the newest usable backup of the disk.\n", run_chain },
    { "status", "a job's phase and progress",
      "Usage: sendense-ctl backup status JOB [--json]\n\n"
      "The job's phase and, per disk, bytes written, percent of the\n"
      "virtual size and the export (job.status).\n", run_status },
    { "watch", "follow a job's progress until it ends",
      ctl_backup_watch_usage, ctl_backup_watch },
    { "jobs", "running and recently finished jobs",
      "Usage: sendense-ctl backup jobs [--json]\n\n"
      "Running jobs and the last finished ones, newest first (job.list).\n"
      "Jobs live in sendensed's memory; after a restart see 'backup list'.\n",
      run_jobs },
    { "delete", "delete a backup (refuse, merge or cascade)",
      ctl_backup_delete_usage, ctl_backup_delete },
    { "verify", "check a backup's image and chain",
      ctl_backup_verify_usage, ctl_backup_verify },
    { "prune", "apply retention: keep the last N, or N days",
      ctl_backup_prune_usage, ctl_backup_prune },
    { "retention", "a VM's own retention rules: show or set",
      ctl_backup_retention_usage, ctl_backup_retention },
    { NULL, NULL, NULL, NULL },
};

const struct ctl_group ctl_group_backup = {
    .name = "backup",
    .summary = "backup jobs and the catalog: start, complete, list, watch...",
    .daemon = "sendensed",
    .cmds = cmds,
};
