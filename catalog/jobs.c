/* SPDX-License-Identifier: MIT */
/*
 * The job table: jobs by id, the running job of a VM, and how long
 * finished jobs are remembered.
 */
#include "config.h"

#include "catalog/jobs-internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void sdd_jobs_init(struct sdd_jobs *jobs, const struct sdd_config *cfg)
{
    jobs->cfg = cfg;
    jobs->list = NULL;
}

static void job_disk_clear(struct sdd_job_disk *d)
{
    free(d->dir);
    free(d->image_path);
    free(d->sidecar_path);
    free(d->uri);
    free(d->parent_change_id);
    cat_sidecar_free(d->sc);
}

void job_free(struct sdd_job *job)
{
    if (!job)
        return;
    for (size_t i = 0; i < job->ndisks; i++)
        job_disk_clear(&job->disks[i]);
    free(job->disks);
    free(job->failure_reason);
    free(job);
}

void sdd_jobs_clear(struct sdd_jobs *jobs)
{
    while (jobs->list) {
        struct sdd_job *next = jobs->list->next;
        job_free(jobs->list);
        jobs->list = next;
    }
}

/* Running, or completing (a task reads its images). */
static bool job_active(const struct sdd_job *j)
{
    return j->phase == SDD_PHASE_RUNNING || j->phase == SDD_PHASE_COMPLETING;
}

void jobs_insert(struct sdd_jobs *jobs, struct sdd_job *job)
{
    size_t finished = 0;

    job->next = jobs->list;
    jobs->list = job;
    for (struct sdd_job **pp = &jobs->list; *pp;) {
        struct sdd_job *j = *pp;

        /* One with a sidecar still to write is kept until it is. */
        if (!job_active(j) && !job_sidecar_pending(j) &&
            ++finished > SDD_FINISHED_JOBS_KEPT) {
            *pp = j->next;
            job_free(j);
            continue;
        }
        pp = &j->next;
    }
}

/* A failed job still owes a sidecar, or an export removal. */
bool job_sidecar_pending(const struct sdd_job *job)
{
    for (size_t i = 0; i < job->ndisks; i++)
        if (job->disks[i].sidecar_pending ||
            (job->phase == SDD_PHASE_FAILED && job->disks[i].export_added))
            return true;
    return false;
}

static const char *const type_names[] = {
    [SDD_JOB_FULL] = "full",
    [SDD_JOB_INCREMENTAL] = "incremental",
    [SDD_JOB_AUTO] = "auto",
};

int sdd_job_type_parse(const char *text, enum sdd_job_type *out)
{
    for (size_t i = 0; i < sizeof(type_names) / sizeof(type_names[0]); i++) {
        if (strcmp(text, type_names[i]) == 0) {
            *out = (enum sdd_job_type)i;
            return 0;
        }
    }
    return -EINVAL;
}

const char *sdd_job_type_name(enum sdd_job_type type)
{
    return type_names[type];
}

const char *sdd_job_phase_name(enum sdd_job_phase phase)
{
    static const char *const names[] = {
        [SDD_PHASE_RUNNING] = "running",
        [SDD_PHASE_COMPLETED] = "completed",
        [SDD_PHASE_FAILED] = "failed",
        [SDD_PHASE_COMPLETING] = "completing",
    };
    return names[phase];
}

struct sdd_job *sdd_jobs_find(const struct sdd_jobs *jobs, const char *id)
{
    for (struct sdd_job *j = jobs->list; j; j = j->next)
        if (strcmp(j->id, id) == 0)
            return j;
    return NULL;
}

struct sdd_job *sdd_jobs_running_for(const struct sdd_jobs *jobs,
                                     const char *vm)
{
    for (struct sdd_job *j = jobs->list; j; j = j->next)
        if (job_active(j) && strcmp(j->vm, vm) == 0)
            return j;
    return NULL;
}

cat_time_t jobs_now(void)
{
    return (cat_time_t)time(NULL);
}

void jobs_monotonic(struct timespec *ts)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
}
