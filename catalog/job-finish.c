/* SPDX-License-Identifier: MIT */
/*
 * The end of a job: backup.complete, backup.fail, and the recovery of
 * backups a killed daemon left running.
 *
 * complete works in three passes over the disks so that a failure leaves
 * a state the caller can act on: (1) remove every export (draining the
 * writers) -- a failure here leaves the job running, and complete can be
 * called again; (2) check every image -- a damaged one fails the whole
 * job; (3) write every sidecar "completed". Before (1), the last
 * export.stats must show no failed write: an image with lost writes is
 * never recorded as a good backup. A failed write that happens after
 * that poll, while draining, belongs to a writer that called complete
 * before its own writes were answered.
 */
#include "config.h"

#include "catalog/jobs-internal.h"

#include "catalog/checksum.h"
#include "catalog/names.h"
#include "catalog/repo.h"
#include "common/atomic-file.h"
#include "common/log.h"
#include "qcow2/image.h"
#include "qcow2/qcow2-check.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int remove_image(const char *image_path, struct sd_error *err)
{
    int ret = sd_durable_remove(image_path, err);

    return ret == -ENOENT ? 0 : ret;
}

/* sc, already marked failed, into dir; then the image unless keep. */
static int write_failed(const struct cat_sidecar *sc, const char *dir,
                        const char *image_path, bool keep,
                        struct sd_error *err)
{
    /* The sidecar first: a crash between the two leaves a failed backup
     * with its image, never a running one without. */
    int ret = cat_sidecar_write(sc, dir, err);

    if (ret == 0)
        return keep ? 0 : remove_image(image_path, err);
    if ((ret != -ENOSPC && ret != -EDQUOT) || keep)
        return ret;
    /* No room even for the sidecar: the partial image, which is going
     * anyway, is what frees it. A crash before the sidecar is written
     * leaves a running backup without an image, which recovery fails. */
    sd_log_info("%s: %s; removing the image first to make room", dir,
                err->msg);
    ret = remove_image(image_path, err);
    return ret < 0 ? ret : cat_sidecar_write(sc, dir, err);
}

int job_mark_failed(struct cat_sidecar *sc, const char *dir,
                    const char *image_path, const char *reason, bool keep,
                    struct sd_error *err)
{
    sc->status = CAT_STATUS_FAILED;
    sc->ended_at = jobs_now();
    if (sc->ended_at < sc->started_at)      /* the clock stepped back */
        sc->ended_at = sc->started_at;
    if (cat_sidecar_set_string(&sc->failure_reason, reason) < 0)
        return sd_error_set(err, -ENOMEM, "out of memory");
    return write_failed(sc, dir, image_path, keep, err);
}

/* The timer: what a failure could not do at once (a sidecar on a full
 * disk, an export of a sendense-nbd that was down). */
void jobs_retry_sidecars(const struct sdd_jobs *jobs)
{
    for (struct sdd_job *j = jobs->list; j; j = j->next) {
        for (size_t i = 0; i < j->ndisks; i++) {
            struct sdd_job_disk *d = &j->disks[i];
            struct sd_error ignored = { 0 };

            if (j->phase == SDD_PHASE_FAILED && d->export_added) {
                int ret = nbdc_export_remove(jobs->cfg->nbd_control_socket,
                                             d->export_name, false, &ignored);

                if (ret == 0 || ret == -ENOENT) {
                    d->export_added = false;
                    sd_log_info("job %s: export %s removed at last", j->id,
                                d->export_name);
                }
            }
            /* Failing again is quiet: the first failure was reported. */
            if (!d->sidecar_pending ||
                write_failed(d->sc, d->dir, d->image_path,
                             jobs->cfg->keep_failed_images, &ignored) < 0)
                continue;
            d->sidecar_pending = false;
            sd_log_info("job %s: the sidecar of %s/%s says failed at last",
                        j->id, d->name, d->sc->id);
        }
    }
}

/* Remove a job's exports; with drain, wait for their clients. */
static int remove_exports(const struct sdd_jobs *jobs, struct sdd_job *job,
                          bool drain, struct sd_error *err)
{
    int first = 0;

    for (size_t i = 0; i < job->ndisks; i++) {
        struct sdd_job_disk *d = &job->disks[i];
        struct sd_error e = { 0 };
        int ret;

        if (!d->export_added)
            continue;
        ret = nbdc_export_remove(jobs->cfg->nbd_control_socket,
                                 d->export_name, drain, &e);
        if (ret == 0 || ret == -ENOENT) {
            d->export_added = false;
        } else if (first == 0) {
            first = ret;
            *err = e;
        }
    }
    return first;
}

/* --- complete --------------------------------------------------------- */

static struct sdd_job_disk *job_disk(struct sdd_job *job, const char *name)
{
    for (size_t i = 0; i < job->ndisks; i++)
        if (strcmp(job->disks[i].name, name) == 0)
            return &job->disks[i];
    return NULL;
}

static int check_change_ids(struct sdd_job *job, json_t *change_ids,
                            struct sd_error *err)
{
    const char *disk;
    json_t *v;

    if (change_ids && !json_is_object(change_ids))
        return sd_error_set(err, -EINVAL, "change_ids: expected an object "
                            "{disk: change id}");
    json_object_foreach(change_ids, disk, v) {
        int ret;

        if (!job_disk(job, disk))
            return sd_error_set(err, -EINVAL, "change_ids: job %s has no "
                                "disk \"%.64s\"", job->id, disk);
        if (!json_is_string(v))
            return sd_error_set(err, -EINVAL, "change_ids.%s: expected a "
                                "string", disk);
        ret = cat_text_check("change id", json_string_value(v),
                             CAT_CHANGE_ID_MAX, err);
        if (ret < 0)
            return ret;
    }
    return 0;
}

/* The image's own layer must pass the library's check (leaks are
 * tolerated: they waste space and harm no data); *allocated gets the
 * host bytes it uses. */
static int check_image(const struct sdd_job_disk *d, uint64_t *allocated,
                       struct sd_error *err)
{
    struct qcow2_check_result res = { 0 };
    struct sd_img_open_opts o = { .format = SD_FMT_QCOW2 };
    struct sd_img_info info;
    struct sd_img *img = NULL;
    int ret = qcow2_check(d->image_path, NULL, &res, err);

    if (ret == 0 && (res.corruptions || res.check_errors || res.corrupt_bit))
        ret = sd_error_set(err, -EIO, "disk %s: the image check found %llu "
                           "corruption(s), %llu check error(s)%s", d->name,
                           (unsigned long long)res.corruptions,
                           (unsigned long long)res.check_errors,
                           res.corrupt_bit ? ", image marked corrupt" : "");
    qcow2_check_result_free(&res);
    if (ret == 0)
        ret = sd_img_open(&img, d->image_path, &o, err);
    if (ret == 0)
        ret = sd_img_get_info(img, &info);
    if (ret == 0)
        *allocated = info.actual_size;
    else if (img)
        sd_error_set(err, ret, "disk %s: %s", d->name, strerror(-ret));
    if (img)
        (void)sd_img_close(img);     /* read-only: nothing to flush */
    return ret;
}

static int write_completed(struct sdd_job *job, struct sdd_job_disk *d,
                           json_t *change_ids,
                           const struct sdd_image_result *res,
                           struct sd_error *err)
{
    const char *change = json_string_value(json_object_get(change_ids,
                                                           d->name));
    struct cat_sidecar *sc = d->sc;

    sc->status = CAT_STATUS_COMPLETED;
    sc->ended_at = job->ended_at;
    sc->bytes_written = d->stats.bytes_written;
    sc->allocated_bytes = res->allocated;
    /* The per-backup checksum (checksum.h): it read only this image. */
    if ((change && cat_sidecar_set_string(&sc->change_id, change) < 0) ||
        cat_checksum_set(sc, res->checksum) < 0)
        return sd_error_set(err, -ENOMEM, "out of memory");
    return cat_sidecar_write(sc, d->dir, err);
}

/* Last counters before the export goes; a disk whose export is already
 * gone keeps the ones of the last poll. */
static void final_stats(const struct sdd_jobs *jobs, struct sdd_job *job)
{
    for (size_t i = 0; i < job->ndisks; i++) {
        struct sdd_job_disk *d = &job->disks[i];
        struct nbdc_export_stats s;
        struct sd_error ignored = { 0 };

        if (d->export_added &&
            nbdc_export_stats(jobs->cfg->nbd_control_socket, d->export_name,
                              &s, &ignored) == 0) {
            d->stats = s;
            d->have_stats = true;
        }
    }
}

/* A disk whose export failed a write fails the job instead. */
static int refuse_lost_writes(const struct sdd_jobs *jobs,
                              struct sdd_job *job, struct sd_error *err)
{
    char reason[1024];
    struct sd_error e = { 0 };
    int ret = job_write_error(job, reason, sizeof(reason));

    if (ret == 0)
        return 0;
    if (sdd_jobs_fail(jobs, job, reason, &e) == 0)
        return sd_error_set(err, ret, "job %s cannot be completed, it is "
                            "failed: %s", job->id, reason);
    if (job->phase == SDD_PHASE_RUNNING)
        return sd_error_set(err, ret, "job %s cannot be completed: %s; "
                            "failing it failed too: %s", job->id, reason,
                            e.msg);
    return sd_error_set(err, ret, "job %s cannot be completed, it is "
                        "failed: %s (its sidecar waits: %s)", job->id, reason,
                        e.msg);
}

int sdd_jobs_complete_begin(struct sdd_jobs *jobs, struct sdd_job *job,
                            json_t *change_ids, struct sd_error *err)
{
    int ret;

    if (job->phase != SDD_PHASE_RUNNING)
        return sd_error_set(err, -EINVAL, "job %s is %s, not running",
                            job->id, sdd_job_phase_name(job->phase));
    ret = check_change_ids(job, change_ids, err);
    if (ret < 0)
        return ret;
    final_stats(jobs, job);
    ret = refuse_lost_writes(jobs, job, err);
    if (ret == 0)
        ret = remove_exports(jobs, job, true, err);
    if (ret == 0)
        job->phase = SDD_PHASE_COMPLETING;
    return ret;
}

int sdd_job_check_images(const struct sdd_job *job,
                         struct sdd_image_result *results,
                         struct sd_error *err)
{
    int ret = 0;

    for (size_t i = 0; ret == 0 && i < job->ndisks; i++) {
        const struct sdd_job_disk *d = &job->disks[i];

        ret = check_image(d, &results[i].allocated, err);
        if (ret == 0)
            ret = cat_checksum_layer(d->image_path, results[i].checksum,
                                     err);
    }
    return ret;
}

int sdd_jobs_complete_end(struct sdd_jobs *jobs, struct sdd_job *job,
                          json_t *change_ids, int check_ret,
                          const struct sdd_image_result *results,
                          struct sd_error *err)
{
    int ret = check_ret;

    /* Back to running for a moment: failing needs it, and a job whose
     * sidecars cannot be written stays retriable as before. */
    job->phase = SDD_PHASE_RUNNING;
    if (ret == -EIO) {
        struct sd_error e = { 0 };
        (void)sdd_jobs_fail(jobs, job, err->msg, &e);
    } else if (ret == 0) {
        job->ended_at = jobs_now();
        for (size_t i = 0; ret == 0 && i < job->ndisks; i++)
            ret = write_completed(job, &job->disks[i], change_ids,
                                  &results[i], err);
        if (ret == 0)
            job->phase = SDD_PHASE_COMPLETED;
    }
    return ret;
}

/* --- fail ------------------------------------------------------------- */

int sdd_jobs_fail(const struct sdd_jobs *jobs, struct sdd_job *job,
                  const char *reason, struct sd_error *err)
{
    bool keep = jobs->cfg->keep_failed_images;
    int ret;

    if (job->phase != SDD_PHASE_RUNNING)
        return sd_error_set(err, -EINVAL, "job %s is %s, not running",
                            job->id, sdd_job_phase_name(job->phase));
    ret = cat_text_check("reason", reason, CAT_TEXT_MAX, err);
    if (ret < 0)
        return ret;
    final_stats(jobs, job);
    /* No drain: the writer is told to stop by losing its connection.
     * A sendense-nbd that does not answer (down, restarting) has no
     * writer to stop: the job fails all the same and the timer removes
     * the exports once it answers (a restart of sendensed does too). */
    ret = remove_exports(jobs, job, false, err);
    if (ret == -ENOTCONN || ret == -ETIMEDOUT || ret == -ECONNRESET) {
        sd_log_warn("job %s: exports not removed yet: %s", job->id, err->msg);
        ret = 0;
    }
    if (ret < 0)
        return ret;
    job->failure_reason = strdup(reason);
    if (!job->failure_reason)
        return sd_error_set(err, -ENOMEM, "out of memory");
    job->phase = SDD_PHASE_FAILED;
    job->ended_at = jobs_now();
    for (size_t i = 0; i < job->ndisks; i++) {
        struct sdd_job_disk *d = &job->disks[i];
        struct sd_error e = { 0 };

        d->sc->bytes_written = d->stats.bytes_written;
        if (job_mark_failed(d->sc, d->dir, d->image_path, reason, keep,
                            &e) == 0)
            continue;
        d->sidecar_pending = true;
        if (ret == 0) {
            ret = e.code;
            *err = e;
        }
    }
    return ret;
}

/* --- recovery --------------------------------------------------------- */

static void recover_backup(struct sdd_jobs *jobs, const struct cat_vm *vm,
                           const struct cat_disk *d, struct cat_backup *b,
                           sdd_recover_fn *report, void *arg)
{
    char export_name[CAT_EXPORT_NAME_MAX + 1] = "";
    struct sd_error problem = { 0 }, export_err = { 0 };
    struct sdd_recovered r = { .vm = vm->info->context_id, .disk = d->name,
                               .id = b->sc->id, .export_name = export_name };
    char *image = cat_path_join(d->dir, b->sc->id, CAT_IMAGE_EXT);
    int ret = cat_export_name(r.vm, d->index, b->sc->type == CAT_TYPE_INCR,
                              b->stamp, export_name, &problem);

    if (ret == 0) {
        r.export_ret = nbdc_export_remove(jobs->cfg->nbd_control_socket,
                                          export_name, false, &export_err);
        if (r.export_ret < 0 && r.export_ret != -ENOENT)
            problem = export_err;
    }
    if (!image)
        ret = sd_error_set(&problem, -ENOMEM, "out of memory");
    if (ret == 0)
        ret = job_mark_failed(b->sc, d->dir, image,
                              "sendensed restarted during the backup",
                              jobs->cfg->keep_failed_images, &problem);
    r.problem = problem.code ? &problem : NULL;
    report(arg, &r);
    free(image);
}

int sdd_jobs_recover(struct sdd_jobs *jobs, const struct sdd_repository *repo,
                     sdd_recover_fn *report, void *arg, struct sd_error *err)
{
    struct cat_repo *catalog = NULL;
    int ret = cat_repo_open(repo->path, CAT_REPO_CREATE, &catalog, err);

    if (ret < 0)
        return ret;
    for (size_t v = 0; v < catalog->nvms; v++) {
        const struct cat_vm *vm = &catalog->vms[v];

        for (size_t i = 0; i < vm->ndisks; i++) {
            const struct cat_disk *d = &vm->disks[i];

            for (size_t k = 0; k < d->nbackups; k++)
                if (d->backups[k]->sc->status == CAT_STATUS_RUNNING &&
                    !sdd_jobs_running_for(jobs, vm->info->context_id))
                    recover_backup(jobs, vm, d, d->backups[k], report, arg);
        }
    }
    cat_repo_free(catalog);
    return 0;
}
