/* SPDX-License-Identifier: MIT */
/*
 * The backup command: every disk of a VM in one job of sendensed.
 * backup.start makes each disk's image (a full, or an overlay of the
 * last backup) and exports it; each disk is copied into its export; then
 * backup.complete records the new change ids, or backup.fail the reason.
 * A job is never left running: whatever stops the run (a refused copy,
 * a signal) fails it with the reason, so the catalog says what happened.
 *
 * What is copied per disk follows what sendensed made:
 *  - a full: the source's map, on an image that reads as zeros;
 *  - an incremental: the disk's change list (whose change id must be the
 *    one the parent backup recorded: a list taken against another point
 *    would miss changes), or the source's dirty bitmap, or, with
 *    neither, the whole map with zeros written (correct, not small).
 */
#include "config.h"

#include "capture/capture.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct disk_run {
    const struct cap_backup_disk *disk;
    struct cap_source src;
    bool src_open;
    struct cap_changes changes;
    bool has_changes;
    /* From backup.start's answer (borrowed from the job). */
    const char *uri, *backup_id, *backup_type, *parent_change_id;
    struct cap_counters counters;
};

struct fence_ctx {
    const struct cap_backup_opts *o;
    const char *job, *disk;
};

static void emit_json(const struct cap_backup_opts *o, json_t *ev)
{
    char *text = ev ? json_dumps(ev, JSON_COMPACT) : NULL;

    if (text && o->progress == CAP_PROGRESS_JSON) {
        printf("%s\n", text);
        fflush(stdout);
    }
    free(text);
    json_decref(ev);
}

static int open_disks(const struct cap_backup_opts *o, struct disk_run *runs,
                      struct sd_error *err)
{
    for (size_t i = 0; i < o->ndisks; i++) {
        struct disk_run *r = &runs[i];
        int ret;

        r->disk = &o->disks[i];
        ret = cap_source_open(&r->src, r->disk->source, o->bitmap, err);
        r->src_open = true;
        if (ret == 0 && r->src.size % 512)
            ret = sd_error_set(err, -EINVAL, "%s is %" PRIu64 " bytes, not a multiple of 512",
                               r->disk->source, r->src.size);
        if (ret == 0 && r->disk->changes) {
            ret = cap_changes_load(r->disk->changes, &r->changes, err);
            r->has_changes = ret == 0;
        }
        if (ret < 0) {
            char msg[sizeof(err->msg)];

            snprintf(msg, sizeof(msg), "%s", err->msg);
            return sd_error_set(err, err->code, "%s: %s", r->disk->name, msg);
        }
    }
    return 0;
}

static json_t *start_params(const struct cap_backup_opts *o, const struct disk_run *runs)
{
    json_t *disks = json_array();
    json_t *params = json_pack("{s:s, s:s, s:o}", "vm", o->vm, "type", o->type,
                               "disks", disks);

    for (size_t i = 0; params && i < o->ndisks; i++)
        json_array_append_new(disks, json_pack("{s:s, s:I}", "name", runs[i].disk->name,
                                               "size", (json_int_t)runs[i].src.size));
    if (params && o->repository)
        json_object_set_new(params, "repository", json_string(o->repository));
    return params;
}

/* Each run's target and kind, from the job's disks[]. */
static int bind_job(json_t *job, struct disk_run *runs, size_t n, struct sd_error *err)
{
    json_t *disks = json_object_get(job, "disks");

    for (size_t i = 0; i < n; i++) {
        struct disk_run *r = &runs[i];
        size_t k;
        json_t *d;

        json_array_foreach(disks, k, d) {
            if (!json_is_string(json_object_get(d, "name")) ||
                strcmp(json_string_value(json_object_get(d, "name")), r->disk->name))
                continue;
            r->uri = json_string_value(json_object_get(d, "uri"));
            r->backup_id = json_string_value(json_object_get(d, "backup_id"));
            r->backup_type = json_string_value(json_object_get(d, "backup_type"));
            r->parent_change_id = json_string_value(json_object_get(d, "parent_change_id"));
        }
        if (!r->uri || !r->backup_id || !r->backup_type)
            return sd_error_set(err, -EPROTO, "sendensed's job has no export for %s",
                                r->disk->name);
    }
    return 0;
}

/* backup.fence: 0 fenced, 1 not now (sendense-nbd is not answering,
 * e.g. restarting), < 0 the job cannot go on (it failed meanwhile). */
static int fence(void *arg, struct sd_error *err)
{
    const struct fence_ctx *f = arg;
    json_t *res = NULL;
    int ret = cap_daemon_call(f->o->socket, "backup.fence",
                              json_pack("{s:s, s:s}", "job", f->job, "disk", f->disk),
                              &res, err);

    json_decref(res);
    if (ret == -ENOTCONN || ret == -ECONNREFUSED || ret == -ETIMEDOUT || ret == -ECONNRESET) {
        /* From sendensed's reply, the target server; sendensed itself
         * not answering (its socket) would have lost the job anyway. */
        return strstr(err->msg, "sendensed") ? ret : 1;
    }
    return ret;
}

/* What to copy into this disk's export, per what sendensed made. */
static int plan_disk(const struct cap_backup_opts *o, struct disk_run *r,
                     struct cap_extents *reqs, struct sd_error *err)
{
    struct cap_plan_opts plan = { .request_size = o->copy.request_size };
    const char *name = r->disk->name;

    if (strcmp(r->backup_type, "full") == 0) {
        plan.target_is_zero = true;     /* a new image, no backing file */
        if ((r->has_changes || o->bitmap) && o->progress != CAP_PROGRESS_JSON)
            fprintf(stderr, "%s: a full backup (no usable parent): the whole disk is "
                    "copied, not the changes\n", name);
    } else if (r->has_changes) {
        const char *want = r->parent_change_id, *got = r->changes.change_id;

        if (got && (!want || strcmp(want, got) != 0))
            return sd_error_set(err, -EINVAL, "%s: the change list was taken against "
                                "change id \"%s\", but the parent backup recorded %s%s%s: "
                                "it would miss changes (take a full backup, --type full)",
                                name, got, want ? "\"" : "none", want ? want : "",
                                want ? "\"" : "");
        plan.changes = &r->changes;
    } else if (o->bitmap) {
        plan.bitmap = o->bitmap;
    } else if (o->progress != CAP_PROGRESS_JSON) {
        fprintf(stderr, "%s: an incremental without a change list or bitmap: every "
                "allocated extent is copied and every hole zeroed\n", name);
    }
    return cap_plan(&r->src, &plan, reqs, &r->counters, err);
}

static int copy_disk(const struct cap_backup_opts *o, const char *job, struct disk_run *r,
                     struct sd_error *err)
{
    struct cap_extents reqs = { 0 };
    struct cap_copy_opts copy = o->copy;
    struct fence_ctx f = { .o = o, .job = job, .disk = r->disk->name };
    struct cap_resume resume = o->resume;
    struct cap_progress p;
    int ret;

    copy.target = r->uri;
    copy.target_is_zero = strcmp(r->backup_type, "full") == 0;
    resume.fence = fence;
    resume.fence_arg = &f;
    emit_json(o, json_pack("{s:s, s:s, s:s, s:s, s:s}", "event", "disk", "disk",
                           r->disk->name, "backup_id", r->backup_id, "type", r->backup_type,
                           "uri", r->uri));
    if (o->progress != CAP_PROGRESS_JSON)
        printf("%s: %s backup %s from %s\n", r->disk->name, r->backup_type, r->backup_id,
               r->disk->source);
    fflush(stdout);
    cap_progress_init(&p, o->progress);
    ret = plan_disk(o, r, &reqs, err);
    if (ret == 0)
        ret = cap_copy_resumable(&r->src, &reqs, &copy, &resume, &r->counters, &p, err);
    if (ret == 0 && o->verify)
        ret = cap_verify(&r->src, &reqs, r->uri, &r->counters, &p, err);
    if (ret == 0) {
        cap_progress_update(&p, &r->counters, true);
        if (o->progress != CAP_PROGRESS_JSON)
            printf("%s: ", r->disk->name);
        cap_progress_summary(&p, &r->counters);
    }
    cap_extents_free(&reqs);
    return ret;
}

static json_t *change_ids(const struct cap_backup_opts *o)
{
    json_t *ids = json_object();

    for (size_t i = 0; ids && i < o->ndisks; i++)
        if (o->disks[i].change_id)
            json_object_set_new(ids, o->disks[i].name, json_string(o->disks[i].change_id));
    return ids;
}

static int complete(const struct cap_backup_opts *o, const char *job,
                    const struct disk_run *runs, struct sd_error *err)
{
    json_t *res = NULL;
    int ret = cap_daemon_call(o->socket, "backup.complete",
                              json_pack("{s:s, s:o}", "job", job, "change_ids", change_ids(o)),
                              &res, err);

    if (ret < 0) {
        char msg[sizeof(err->msg)];

        snprintf(msg, sizeof(msg), "%s", err->msg);
        return sd_error_set(err, ret, "backup.complete: %s", msg);
    }
    emit_json(o, json_pack("{s:s, s:s, s:O}", "event", "complete", "job", job, "result", res));
    if (o->progress != CAP_PROGRESS_JSON) {
        printf("backup complete: job %s, VM %s\n", job, o->vm);
        for (size_t i = 0; i < o->ndisks; i++)
            printf("  %s: %s %s, %" PRIu64 " bytes written, %" PRIu64 " zeroed%s%s\n",
                   runs[i].disk->name, runs[i].backup_type, runs[i].backup_id,
                   runs[i].counters.written, runs[i].counters.zeroed,
                   runs[i].disk->change_id ? ", change id " : "",
                   runs[i].disk->change_id ? runs[i].disk->change_id : "");
    }
    json_decref(res);
    return 0;
}

/* The job ends failed, with the first error as its reason. A job that
 * sendensed already failed (a full repository, say) keeps its own. */
static void fail_job(const struct cap_backup_opts *o, const char *job, const char *reason)
{
    struct sd_error ferr = { 0 };
    json_t *res = NULL;

    if (cap_daemon_call(o->socket, "backup.fail",
                        json_pack("{s:s, s:s}", "job", job, "reason", reason), &res,
                        &ferr) < 0)
        fprintf(stderr, "sendense-capture: backup.fail %s: %s\n", job, ferr.msg);
    json_decref(res);
}

int cap_backup(const struct cap_backup_opts *o, struct sd_error *err)
{
    struct disk_run *runs = calloc(o->ndisks, sizeof(*runs));
    json_t *job = NULL;
    const char *job_id = NULL;
    int ret;

    if (!runs)
        return sd_error_set(err, -ENOMEM, "out of memory");
    ret = open_disks(o, runs, err);
    if (ret == 0)
        ret = cap_daemon_call(o->socket, "backup.start", start_params(o, runs), &job, err);
    if (ret < 0)
        goto out;
    job_id = json_string_value(json_object_get(job, "job"));
    if (!job_id) {
        ret = sd_error_set(err, -EPROTO, "backup.start answered without a job id");
        goto out;
    }
    emit_json(o, json_pack("{s:s, s:O}", "event", "job", "job", job));
    if (o->progress != CAP_PROGRESS_JSON)
        printf("job %s: VM %s, %zu disk%s\n", job_id, o->vm, o->ndisks,
               o->ndisks == 1 ? "" : "s");
    ret = bind_job(job, runs, o->ndisks, err);
    for (size_t i = 0; ret == 0 && i < o->ndisks; i++) {
        ret = copy_disk(o, job_id, &runs[i], err);
        if (ret < 0 && strncmp(err->msg, runs[i].disk->name, strlen(runs[i].disk->name))) {
            char msg[sizeof(err->msg)];

            snprintf(msg, sizeof(msg), "%s", err->msg);
            sd_error_set(err, ret, "%s: %s", runs[i].disk->name, msg);
        }
    }
    if (ret == 0)
        ret = complete(o, job_id, runs, err);
    else
        fail_job(o, job_id, err->msg);
out:
    for (size_t i = 0; i < o->ndisks; i++) {
        if (runs[i].src_open)
            cap_source_close(&runs[i].src);
        cap_changes_free(&runs[i].changes);
    }
    free(runs);
    json_decref(job);
    return ret;
}
