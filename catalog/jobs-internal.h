/* SPDX-License-Identifier: MIT */
/*
 * Helpers shared by jobs.c, job-start.c, job-finish.c and
 * job-progress.c; not part of the API.
 */
#ifndef SENDENSE_CATALOG_JOBS_INTERNAL_H
#define SENDENSE_CATALOG_JOBS_INTERNAL_H

#include "catalog/jobs.h"

/* jobs.c */
void job_free(struct sdd_job *job);
/* Put job at the head of the list; forget the oldest finished jobs past
 * SDD_FINISHED_JOBS_KEPT. */
void jobs_insert(struct sdd_jobs *jobs, struct sdd_job *job);
cat_time_t jobs_now(void);
void jobs_monotonic(struct timespec *ts);

/* True while a failed job still has a sidecar to write. */
bool job_sidecar_pending(const struct sdd_job *job);

/* job-finish.c */
/* Mark sc failed with reason at now, write it into dir, then delete
 * image_path unless keep. When the repository is too full for the
 * sidecar and the image is not kept, the image goes first (it is what
 * frees the room) and the sidecar is written again. */
int job_mark_failed(struct cat_sidecar *sc, const char *dir,
                    const char *image_path, const char *reason, bool keep,
                    struct sd_error *err);
/* Write the sidecars failed jobs could not write (sidecar_pending). */
void jobs_retry_sidecars(const struct sdd_jobs *jobs);

/* job-progress.c */
/* When a disk of job saw writes fail, the reason to fail it with in
 * reason (naming each such disk, its error and progress) and -ENOSPC
 * (a full repository) or -EIO; else 0. */
int job_write_error(const struct sdd_job *job, char *reason, size_t size);

#endif
