/* SPDX-License-Identifier: MIT */
/*
 * The job methods of sendensed's socket (docs/SENDENSED.md): params are
 * checked here, the work is jobs.h's, and each job event is logged once,
 * here, at the boundary.
 */
#include "config.h"

#include "catalog/consolidate.h"
#include "catalog/daemon.h"
#include "common/log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* --- backup.start ----------------------------------------------------- */

static int parse_disk(struct jsonrpc_request *req, json_t *o, size_t i,
                      struct sdd_start_disk *out)
{
    const char *key;
    json_t *v, *name = json_object_get(o, "name");
    json_t *size = json_object_get(o, "size");
    json_t *label = json_object_get(o, "label");

    if (!json_is_object(o) || !json_is_string(name) ||
        !json_is_integer(size) || json_integer_value(size) <= 0 ||
        (label && !json_is_string(label) && !json_is_null(label)))
        return jsonrpc_reply_error(req, JSONRPC_INVALID_PARAMS,
                                   json_pack("{s:s}", "param", "disks"),
                                   "disks[%zu]: expected {name: \"disk<N>\","
                                   " size: bytes, label?: text}", i);
    json_object_foreach(o, key, v) {
        if (strcmp(key, "name") && strcmp(key, "size") && strcmp(key, "label"))
            return jsonrpc_reply_error(req, JSONRPC_INVALID_PARAMS,
                                       json_pack("{s:s}", "param", "disks"),
                                       "disks[%zu]: unknown key \"%.64s\"",
                                       i, key);
    }
    out->name = json_string_value(name);
    out->size = (uint64_t)json_integer_value(size);
    out->label = json_string_value(label);
    return 0;
}

static int parse_start(struct jsonrpc_request *req, json_t *params,
                       struct sdd_start_req *sr, struct sdd_start_disk **disks)
{
    const char *type = "auto";
    json_t *list = NULL;
    struct jsonrpc_param spec[] = {
        JSONRPC_PARAM_STRING("vm", true, &sr->vm),
        JSONRPC_PARAM_ARRAY("disks", true, &list),
        JSONRPC_PARAM_STRING("type", false, &type),
        JSONRPC_PARAM_STRING("repository", false, &sr->repository),
        JSONRPC_PARAM_STRING("display_name", false, &sr->display_name),
        JSONRPC_PARAM_END,
    };
    int ret = jsonrpc_params_parse(req, params, spec);

    if (ret < 0)
        return ret;
    if (sdd_job_type_parse(type, &sr->type) < 0)
        return jsonrpc_reply_error(req, JSONRPC_INVALID_PARAMS,
                                   json_pack("{s:s}", "param", "type"),
                                   "type: expected full, incremental or auto");
    sr->ndisks = json_array_size(list);
    if (sr->ndisks == 0 || sr->ndisks > SDD_START_DISKS_MAX)
        return jsonrpc_reply_error(req, JSONRPC_INVALID_PARAMS,
                                   json_pack("{s:s}", "param", "disks"),
                                   "disks: expected 1..%d disks",
                                   SDD_START_DISKS_MAX);
    *disks = calloc(sr->ndisks, sizeof(**disks));
    if (!*disks)
        return -ENOMEM;
    for (size_t i = 0; ret == 0 && i < sr->ndisks; i++)
        ret = parse_disk(req, json_array_get(list, i), i, &(*disks)[i]);
    sr->disks = *disks;
    return ret;
}

static int m_backup_start(void *ctx, struct jsonrpc_conn *conn,
                          json_t *params, struct jsonrpc_request *req)
{
    struct sdd_daemon *d = ctx;
    struct sdd_start_req sr = { 0 };
    struct sdd_start_disk *disks = NULL;
    struct sdd_job *job = NULL;
    struct sd_error err = { 0 };
    int ret = parse_start(req, params, &sr, &disks);

    (void)conn;
    if (ret == 0) {
        /* Dropped by the loop once the job ends (daemon-tasks.h). */
        ret = sdd_hold_take(&d->holds, sr.vm, "backup.start", SDD_HOLD_JOB,
                            &err);
        if (ret == 0)
            ret = sdd_jobs_start(&d->jobs, &sr, &job, &err);
        if (ret < 0) {
            sd_log_warn("backup.start %s: %s", sr.vm, err.msg);
            ret = jsonrpc_reply_sd_error(req, &err);
        } else {
            sd_log_info("job %s: %s backup of VM %s started (%zu disk(s))",
                        job->id, sdd_job_type_name(job->type), job->vm,
                        job->ndisks);
            ret = jsonrpc_reply_result(req, sdd_job_to_json(job, false));
        }
    }
    free(disks);
    return ret;
}

/* --- methods on one job ----------------------------------------------- */

static int find_job(struct sdd_daemon *d, struct jsonrpc_request *req,
                    const char *id, struct sdd_job **out)
{
    *out = sdd_jobs_find(&d->jobs, id);
    if (!*out)
        return jsonrpc_reply_errno(req, -ENOENT, "no job \"%.*s\"",
                                   SDD_JOB_ID_LEN + 8, id);
    return 0;
}

/* backup.complete: the image checks and checksums in a task (jobs.h). */
struct complete_args {
    char job_id[SDD_JOB_ID_LEN + 1];
    const struct sdd_job *job;      /* kept while completing (jobs.c) */
    json_t *change_ids;             /* touched in the loop only */
    struct sdd_image_result *results;
};

static void complete_args_free(void *arg)
{
    struct complete_args *a = arg;

    if (a) {
        json_decref(a->change_ids);
        free(a->results);
        free(a);
    }
}

/* Task. */
static int run_check_images(struct sdd_task *t, json_t **result,
                            struct sd_error *err)
{
    const struct complete_args *a = t->arg;

    *result = NULL;
    cat_test_point("check-images");
    return sdd_job_check_images(a->job, a->results, err);
}

/* Back in the loop: the sidecars, the reply, then retention. */
static void complete_done(struct sdd_task *t)
{
    struct sdd_daemon *d = t->d;
    struct complete_args *a = t->arg;
    struct sdd_job *job = sdd_jobs_find(&d->jobs, a->job_id);
    struct sd_error err = t->err;
    int ret;

    if (!job) {                     /* cannot be: jobs.c keeps it */
        t->ret = sd_error_set(&t->err, -ESRCH, "job %s: gone while "
                              "completing", a->job_id);
        sd_log_error("%s", t->err.msg);
        return;
    }
    ret = sdd_jobs_complete_end(&d->jobs, job, a->change_ids, t->ret,
                                a->results, &err);
    if (ret < 0) {
        sd_log_error("job %s: backup.complete: %s%s", job->id, err.msg,
                     job->phase == SDD_PHASE_FAILED ? " (job failed)" : "");
        (void)jsonrpc_reply_sd_error(t->req, &err);
    } else {
        sd_log_info("job %s: backup of VM %s completed", job->id, job->vm);
        (void)jsonrpc_reply_result(t->req, sdd_job_to_json(job, false));
        /* The backup is complete whatever retention then does or fails
         * to do (it logs that itself). */
        sdd_chains_after_backup(d, job);
    }
    t->req = NULL;
}

static int m_backup_complete(void *ctx, struct jsonrpc_conn *conn,
                             json_t *params, struct jsonrpc_request *req)
{
    struct sdd_daemon *d = ctx;
    const char *id = NULL;
    json_t *change_ids = NULL;
    struct jsonrpc_param spec[] = {
        JSONRPC_PARAM_STRING("job", true, &id),
        JSONRPC_PARAM_OBJECT("change_ids", false, &change_ids),
        JSONRPC_PARAM_END,
    };
    struct sd_error err = { 0 };
    struct complete_args *a;
    struct sdd_job *job;
    int ret = jsonrpc_params_parse(req, params, spec);

    (void)conn;
    if (ret < 0 || (ret = find_job(d, req, id, &job)) < 0)
        return ret;
    a = calloc(1, sizeof(*a));
    if (a)
        a->results = calloc(job->ndisks, sizeof(*a->results));
    if (!a || !a->results) {
        complete_args_free(a);
        return -ENOMEM;
    }
    ret = sdd_jobs_complete_begin(&d->jobs, job, change_ids, &err);
    if (ret < 0) {
        complete_args_free(a);
        sd_log_error("job %s: backup.complete: %s%s", job->id, err.msg,
                     job->phase == SDD_PHASE_FAILED ? " (job failed)" : "");
        return jsonrpc_reply_sd_error(req, &err);
    }
    snprintf(a->job_id, sizeof(a->job_id), "%s", job->id);
    a->job = job;
    a->change_ids = json_incref(change_ids);
    /* The job's hold keeps the VM: the task holds nothing itself. */
    ret = sdd_task_start(d, &(struct sdd_task_spec){
        .method = "backup.complete", .run = run_check_images,
        .done = complete_done, .arg = a, .free_arg = complete_args_free },
        req, &err);
    if (ret < 0) {
        /* Not started: the job goes back to running, retriable. */
        (void)sdd_jobs_complete_end(&d->jobs, job, NULL, ret, NULL, &err);
        return jsonrpc_reply_sd_error(req, &err);
    }
    return JSONRPC_PENDING;
}

static int m_backup_fail(void *ctx, struct jsonrpc_conn *conn,
                         json_t *params, struct jsonrpc_request *req)
{
    struct sdd_daemon *d = ctx;
    const char *id = NULL, *reason = NULL;
    struct jsonrpc_param spec[] = {
        JSONRPC_PARAM_STRING("job", true, &id),
        JSONRPC_PARAM_STRING("reason", true, &reason),
        JSONRPC_PARAM_END,
    };
    struct sd_error err = { 0 };
    struct sdd_job *job;
    int ret = jsonrpc_params_parse(req, params, spec);

    (void)conn;
    if (ret < 0 || (ret = find_job(d, req, id, &job)) < 0)
        return ret;
    ret = sdd_jobs_fail(&d->jobs, job, reason, &err);
    if (ret < 0) {
        sd_log_error("job %s: backup.fail: %s", job->id, err.msg);
        return jsonrpc_reply_sd_error(req, &err);
    }
    sd_log_warn("job %s (VM %s): failed: %s", job->id, job->vm, reason);
    return jsonrpc_reply_result(req, sdd_job_to_json(job, false));
}

/* backup.fence {job, disk?}: a Capture Agent whose connection dropped
 * asks for the export to be fenced before it reconnects and resumes, so
 * that no write of its old connection can land after its new ones. */
static int m_backup_fence(void *ctx, struct jsonrpc_conn *conn,
                          json_t *params, struct jsonrpc_request *req)
{
    struct sdd_daemon *d = ctx;
    const char *id = NULL, *disk = NULL;
    struct jsonrpc_param spec[] = {
        JSONRPC_PARAM_STRING("job", true, &id),
        JSONRPC_PARAM_STRING("disk", false, &disk),
        JSONRPC_PARAM_END,
    };
    struct sd_error err = { 0 };
    struct sdd_job *job;
    json_t *fenced = json_array();
    size_t matched = 0;
    int ret = jsonrpc_params_parse(req, params, spec);

    (void)conn;
    if (ret < 0 || (ret = find_job(d, req, id, &job)) < 0)
        goto out;
    if (job->phase != SDD_PHASE_RUNNING) {
        /* The agent stops here: tell it why the job ended. */
        ret = jsonrpc_reply_errno(req, -EINVAL, "job %s is %s, not running%s%s",
                                  job->id, sdd_job_phase_name(job->phase),
                                  job->failure_reason ? ": " : "",
                                  job->failure_reason ? job->failure_reason : "");
        goto out;
    }
    for (size_t i = 0; i < job->ndisks; i++) {
        struct sdd_job_disk *jd = &job->disks[i];
        json_t *res = NULL;

        if (disk && strcmp(disk, jd->name) != 0)
            continue;
        matched++;
        ret = nbdc_call(d->cfg->nbd_control_socket, "export.fence",
                        json_pack("{s:s}", "name", jd->export_name), &res, &err);
        json_decref(res);
        if (ret < 0) {
            sd_log_error("job %s: backup.fence %s: %s", job->id, jd->name, err.msg);
            ret = jsonrpc_reply_sd_error(req, &err);
            goto out;
        }
        sd_log_info("job %s: %s fenced at the capture agent's request", job->id,
                    jd->name);
        json_array_append_new(fenced, json_string(jd->name));
    }
    if (!matched) {
        ret = jsonrpc_reply_errno(req, -ENOENT, "job %s has no disk \"%.64s\"",
                                  job->id, disk ? disk : "");
        goto out;
    }
    ret = jsonrpc_reply_result(req, json_pack("{s:s, s:O}", "job", job->id,
                                              "fenced", fenced));
out:
    json_decref(fenced);
    return ret;
}

static int m_job_status(void *ctx, struct jsonrpc_conn *conn, json_t *params,
                        struct jsonrpc_request *req)
{
    struct sdd_daemon *d = ctx;
    const char *id = NULL;
    struct jsonrpc_param spec[] = {
        JSONRPC_PARAM_STRING("job", true, &id),
        JSONRPC_PARAM_END,
    };
    struct sd_error err = { 0 };
    struct sdd_job *job;
    json_t *result;
    int ret = jsonrpc_params_parse(req, params, spec);

    (void)conn;
    if (ret < 0 || (ret = find_job(d, req, id, &job)) < 0)
        return ret;
    ret = sdd_job_refresh(&d->jobs, job, &err);
    result = sdd_job_to_json(job, true);
    /* Counters that could not be read are reported, not fatal: the job
     * is still there, and its last known progress too. */
    if (result && ret < 0)
        json_object_set_new(result, "stats_error", json_string(err.msg));
    return jsonrpc_reply_result(req, result);
}

static int m_job_list(void *ctx, struct jsonrpc_conn *conn, json_t *params,
                      struct jsonrpc_request *req)
{
    struct sdd_daemon *d = ctx;
    json_t *list = json_array();
    int ret = jsonrpc_params_parse(req, params,
                                   (struct jsonrpc_param[]){ JSONRPC_PARAM_END });

    (void)conn;
    if (ret < 0) {
        json_decref(list);
        return ret;
    }
    for (struct sdd_job *j = d->jobs.list; list && j; j = j->next)
        if (json_array_append_new(list, sdd_job_to_json(j, false)) < 0) {
            json_decref(list);
            list = NULL;
        }
    return jsonrpc_reply_result(req, json_pack("{s:o*}", "jobs", list));
}

static int m_daemon_info(void *ctx, struct jsonrpc_conn *conn, json_t *params,
                         struct jsonrpc_request *req)
{
    struct sdd_daemon *d = ctx;
    json_t *repos = json_array();
    int ret = jsonrpc_params_parse(req, params,
                                   (struct jsonrpc_param[]){ JSONRPC_PARAM_END });

    (void)conn;
    if (ret < 0) {
        json_decref(repos);
        return ret;
    }
    for (size_t i = 0; repos && i < d->cfg->nrepos; i++)
        json_array_append_new(repos, json_pack("{s:s, s:s}",
                              "name", d->cfg->repos[i].name,
                              "path", d->cfg->repos[i].path));
    return jsonrpc_reply_result(req, json_pack(
        "{s:s, s:s, s:i, s:s?, s:s, s:o*, s:i, s:b}",
        "name", "sendensed", "version", PACKAGE_VERSION, "pid", (int)getpid(),
        "config", d->config_path,
        "nbd_control_socket", d->cfg->nbd_control_socket,
        "repositories", repos, "idle_timeout", (int)d->cfg->idle_timeout,
        "keep_failed_images", d->cfg->keep_failed_images));
}

const struct jsonrpc_method sdd_methods[] = {
    { "daemon.info", m_daemon_info },
    { "backup.start", m_backup_start },
    { "backup.complete", m_backup_complete },
    { "backup.fail", m_backup_fail },
    { "backup.fence", m_backup_fence },
    { "backup.progress", m_job_status },
    { "job.status", m_job_status },
    { "job.list", m_job_list },
    { "backup.list", sdd_m_backup_list },
    { "backup.show", sdd_m_backup_show },
    { "backup.chain", sdd_m_backup_chain },
    { "backup.delete", sdd_m_backup_delete },
    { "backup.prune", sdd_m_backup_prune },
    { "backup.verify", sdd_m_backup_verify },
    { "vm.retention", sdd_m_vm_retention },
    { "repo.cleanup", sdd_m_repo_cleanup },
    { "restore.export", sdd_m_restore_export },
    { "restore.unexport", sdd_m_restore_unexport },
    { "restore.list", sdd_m_restore_list },
    { "restore.mount", sdd_m_restore_mount },
    { "restore.umount", sdd_m_restore_umount },
    { "restore.ls", sdd_m_restore_ls },
    { "restore.stat", sdd_m_restore_stat },
    { "restore.extract", sdd_m_restore_extract },
    { NULL, NULL },
};
