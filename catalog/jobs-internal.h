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

/* job-finish.c */
/* Mark sc failed with reason at now, write it into dir, then delete
 * image_path unless keep. */
int job_mark_failed(struct cat_sidecar *sc, const char *dir,
                    const char *image_path, const char *reason, bool keep,
                    struct sd_error *err);

#endif
