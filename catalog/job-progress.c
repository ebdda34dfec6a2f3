/* SPDX-License-Identifier: MIT */
/*
 * Progress of running jobs, from sendense-nbd's per-export counters
 * (export.stats), and the idle check behind idle_timeout.
 *
 * "Written" counts what the Capture Agent sent: write payload plus
 * zeroed and trimmed ranges. The total is the disk's virtual size, so an
 * incremental that changes a few blocks ends far below 100%: the percent
 * is an upper-bound view for fulls, a volume counter for incrementals.
 *
 * A write the image failed (export.stats write_errors: a full
 * repository, an I/O error) means the backup lost data: the poll that
 * sees it fails the job, as backup.fail would, with a reason naming the
 * disk, the error and how far the backup got.
 */
#include "config.h"

#include "catalog/jobs-internal.h"

#include "common/log.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

static uint64_t disk_written(const struct sdd_job_disk *d)
{
    return d->stats.bytes_written + d->stats.bytes_zeroed +
           d->stats.bytes_trimmed;
}

/* "48 MiB", "1.5 GiB", "512 bytes". */
static void format_size(uint64_t n, char *text, size_t size)
{
    static const char *const units[] = { "KiB", "MiB", "GiB", "TiB", "PiB" };
    double v = (double)n;
    int u = -1;

    if (n < 1024) {
        snprintf(text, size, "%" PRIu64 " bytes", n);
        return;
    }
    while (v >= 1024 && u < 4) {
        v /= 1024;
        u++;
    }
    snprintf(text, size, v == floor(v) ? "%.0f %s" : "%.1f %s", v, units[u]);
}

static bool repository_full(const char *errno_name)
{
    return strcmp(errno_name, "ENOSPC") == 0 ||
           strcmp(errno_name, "EDQUOT") == 0;
}

/* One disk's part of the reason: "disk0: repository full (No space left
 * on device) at 37% (48 MiB written of 128 MiB)". */
static void disk_write_error(const struct sdd_job_disk *d, char *text,
                             size_t size)
{
    const struct nbdc_export_stats *s = &d->stats;
    uint64_t written = disk_written(d);
    char done[32], total[32], why[sizeof(s->last_error)];
    double percent = d->virtual_size ?
        floor(100.0 * (double)written / (double)d->virtual_size) : 0;

    /* The reason goes into a sidecar, which takes printable text only
     * (and the message may have been cut inside a UTF-8 sequence). */
    snprintf(why, sizeof(why), "%s",
             s->last_error[0] ? s->last_error : "no detail from sendense-nbd");
    for (char *c = why; *c; c++)
        if ((unsigned char)*c < 0x20 || (unsigned char)*c >= 0x7f)
            *c = '?';
    format_size(written, done, sizeof(done));
    format_size(d->virtual_size, total, sizeof(total));
    snprintf(text, size, "%s: %s (%s) at %.0f%% (%s written of %s)",
             d->name, repository_full(s->last_errno) ? "repository full"
             : "write error in the repository", why,
             percent > 100 ? 100 : percent, done, total);
}

int job_write_error(const struct sdd_job *job, char *reason, size_t size)
{
    int ret = 0;
    size_t len = 0;

    reason[0] = '\0';
    for (size_t i = 0; i < job->ndisks; i++) {
        const struct sdd_job_disk *d = &job->disks[i];

        if (!d->have_stats || d->stats.write_errors == 0)
            continue;
        if (ret == 0)
            ret = repository_full(d->stats.last_errno) ? -ENOSPC : -EIO;
        if (len > 0 && len + 2 < size)
            len += (size_t)snprintf(reason + len, size - len, "; ");
        if (len + 1 < size)
            disk_write_error(d, reason + len, size - len);
        len = strlen(reason);
    }
    return ret;
}

/* Fail job when a disk saw writes fail; 0 when none did or the job is
 * failed now. */
static int fail_on_write_error(const struct sdd_jobs *jobs,
                               struct sdd_job *job, struct sd_error *err)
{
    char reason[1024];
    struct sd_error e = { 0 };

    if (job_write_error(job, reason, sizeof(reason)) == 0)
        return 0;
    if (sdd_jobs_fail(jobs, job, reason, &e) < 0) {
        if (job->phase == SDD_PHASE_RUNNING) {
            /* Exports not removed: the next poll tries again. */
            sd_log_error("job %s: %s, but failing it failed: %s", job->id,
                         reason, e.msg);
            *err = e;
            return e.code;
        }
        sd_log_error("job %s: failed, but %s (retried while sendensed "
                     "runs, resolved at its next start)", job->id, e.msg);
    }
    sd_log_warn("job %s (VM %s): failed: %s", job->id, job->vm, reason);
    return 0;
}

int sdd_job_refresh(const struct sdd_jobs *jobs, struct sdd_job *job,
                    struct sd_error *err)
{
    struct sd_error fail_err = { 0 };
    int first = 0, failed;

    if (job->phase != SDD_PHASE_RUNNING)
        return 0;
    for (size_t i = 0; i < job->ndisks; i++) {
        struct sdd_job_disk *d = &job->disks[i];
        struct nbdc_export_stats s;
        struct sd_error e = { 0 };
        uint64_t before = disk_written(d);
        int ret = nbdc_export_stats(jobs->cfg->nbd_control_socket,
                                    d->export_name, &s, &e);

        if (ret < 0) {
            if (first == 0) {
                first = ret;
                *err = e;
            }
            continue;
        }
        d->stats = s;
        d->have_stats = true;
        if (disk_written(d) != before)
            jobs_monotonic(&job->last_write);
    }
    /* Even when a disk could not be polled: another's error counts. */
    failed = fail_on_write_error(jobs, job, &fail_err);
    if (failed < 0 && first == 0) {
        first = failed;
        *err = fail_err;
    }
    return first;
}

static double seconds_between(const struct timespec *a,
                              const struct timespec *b)
{
    return (double)(b->tv_sec - a->tv_sec) +
           (double)(b->tv_nsec - a->tv_nsec) / 1e9;
}

/* Speed since the previous status call, and remember this one. */
static double disk_speed(struct sdd_job_disk *d, const struct timespec *now)
{
    uint64_t written = disk_written(d);
    double speed = 0, dt;

    if (d->status_time.tv_sec || d->status_time.tv_nsec) {
        dt = seconds_between(&d->status_time, now);
        if (dt > 0 && written >= d->status_bytes)
            speed = (double)(written - d->status_bytes) / dt;
    }
    d->status_bytes = written;
    d->status_time = *now;
    return speed;
}

static json_t *time_json(cat_time_t t)
{
    char text[CAT_RFC3339_LEN + 1];

    if (t < 0 || cat_rfc3339_format(t, text) < 0)
        return json_null();
    return json_string(text);
}

static json_t *disk_json(const struct sdd_job *job, struct sdd_job_disk *d,
                         const struct timespec *now, bool with_speed)
{
    uint64_t written = disk_written(d);
    double percent = d->virtual_size ?
        100.0 * (double)written / (double)d->virtual_size : 0;
    double speed = with_speed ? disk_speed(d, now) : 0;
    json_t *eta = json_null();

    if (percent > 100)
        percent = 100;
    if (job->phase == SDD_PHASE_RUNNING && speed > 0 &&
        written < d->virtual_size)
        eta = json_integer((json_int_t)ceil(
            (double)(d->virtual_size - written) / speed));
    return json_pack(
        "{s:s, s:s, s:s?, s:s, s:s, s:s?, s:s?, s:s?, s:I, s:I, s:I, s:I,"
        " s:I, s:f, s:I, s:o, s:s, s:s}",
        "name", d->name, "export", d->export_name, "uri", d->uri,
        "backup_id", d->sc->id, "backup_type",
        cat_backup_type_name(d->sc->type),
        "parent_id", d->sc->parent[0] ? d->sc->parent : NULL,
        "parent_change_id", d->parent_change_id,
        "change_id", d->sc->change_id,
        "bytes_written", (json_int_t)d->stats.bytes_written,
        "bytes_zeroed", (json_int_t)d->stats.bytes_zeroed,
        "bytes_trimmed", (json_int_t)d->stats.bytes_trimmed,
        "total", (json_int_t)d->virtual_size,
        "clients", (json_int_t)d->stats.clients,
        "percent", floor(percent * 10) / 10,
        "speed", (json_int_t)speed,
        "eta_seconds", eta,
        "phase", sdd_job_phase_name(job->phase),
        "status", cat_backup_status_name(d->sc->status));
}

json_t *sdd_job_to_json(struct sdd_job *job, bool with_speed)
{
    json_t *disks = json_array();
    struct timespec now;

    jobs_monotonic(&now);
    for (size_t i = 0; disks && i < job->ndisks; i++) {
        json_t *d = disk_json(job, &job->disks[i], &now, with_speed);
        if (!d || json_array_append_new(disks, d) < 0) {
            json_decref(disks);
            return NULL;
        }
    }
    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:o, s:o, s:s?, s:o}",
        "job", job->id, "vm", job->vm, "repository", job->repo->name,
        "type", sdd_job_type_name(job->type),
        "phase", sdd_job_phase_name(job->phase),
        "started_at", time_json(job->started_at),
        "ended_at", time_json(job->ended_at),
        "failure_reason", job->failure_reason,
        "disks", disks);
}

struct sdd_job *sdd_jobs_find_idle(const struct sdd_jobs *jobs,
                                   const struct timespec *now)
{
    jobs_retry_sidecars(jobs);
    for (struct sdd_job *j = jobs->list; j; j = j->next) {
        struct sd_error ignored = { 0 };

        if (j->phase != SDD_PHASE_RUNNING)
            continue;
        /* A failed poll (sendense-nbd away) moves nothing: a job whose
         * writer cannot reach us is idle too. */
        (void)sdd_job_refresh(jobs, j, &ignored);
        if (j->phase == SDD_PHASE_RUNNING &&
            seconds_between(&j->last_write, now) >=
            (double)jobs->cfg->idle_timeout)
            return j;
    }
    return NULL;
}
