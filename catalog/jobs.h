/* SPDX-License-Identifier: MIT */
/*
 * Backup jobs: what sendensed does between a backup's start and its end.
 *
 * A job backs up the disks of one VM context into one repository. Its
 * life, per disk (DESIGN.md, "Data flow of one incremental backup"):
 *
 *   start     parent = newest usable completed backup (incremental, auto)
 *             create <id>.qcow2 (incr: extended L2, backing = parent's
 *             file, relative) -> sidecar "running" -> export.add (rw)
 *   running   the Capture Agent writes through NBD; sendense-nbd's
 *             export.stats tell progress and the last write, and any
 *             write the image failed (a full repository): the job then
 *             fails by itself at the next poll, as by backup.fail
 *   complete  export.remove (drain) -> check the image -> sidecar
 *             "completed" with change id, bytes written, allocation;
 *             a job with a failed write is failed instead
 *   fail      export.remove -> sidecar "failed" with the reason -> image
 *             deleted (unless keep_failed_images); when the repository
 *             is too full for the sidecar, the image goes first
 *             (unless kept: then the sidecar waits for room)
 *
 * A start that fails midway undoes what it did (exports, images,
 * sidecars, folders and vm.json it created), so nothing is left behind.
 *
 * The repository is the source of truth: jobs live in memory only while
 * the daemon runs. A daemon killed during a job leaves "running"
 * sidecars, which sdd_jobs_recover() resolves at the next start (export
 * removed, sidecar failed). Idle jobs (no write for idle_timeout) are
 * found by sdd_jobs_find_idle(), called from the daemon's timer, which
 * also retries the sidecars a failure could not write (a full
 * repository); a daemon stopped before that resolves them at restart.
 *
 * Not thread-safe; calls to sendense-nbd block (nbd-client.h). Errors
 * come back in struct sd_error; the only logging is of what no caller
 * would otherwise report: a job failed by a poll on a write error, a
 * sidecar written late, an image removed early to make room.
 */
#ifndef SENDENSE_CATALOG_JOBS_H
#define SENDENSE_CATALOG_JOBS_H

#include "catalog/checksum.h"
#include "catalog/daemon-config.h"
#include "catalog/export-name.h"
#include "catalog/names.h"
#include "catalog/nbd-client.h"
#include "catalog/sidecar.h"
#include "common/error.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

enum {
    SDD_JOB_ID_LEN = 4 + CAT_STAMP_LEN + 1 + 8,   /* job-<stamp>-<8 hex> */
    SDD_FINISHED_JOBS_KEPT = 64,    /* finished jobs job.status still knows */
    SDD_START_DISKS_MAX = 64,
};

enum sdd_job_type { SDD_JOB_FULL, SDD_JOB_INCREMENTAL, SDD_JOB_AUTO };
/* completing: backup.complete removed the exports and its images are
 * being checked and checksummed (off the loop); still the VM's job. */
enum sdd_job_phase { SDD_PHASE_RUNNING, SDD_PHASE_COMPLETED,
                     SDD_PHASE_FAILED, SDD_PHASE_COMPLETING };

struct sdd_job_disk {
    char name[CAT_NAME_MAX + 1];
    unsigned index;
    uint64_t virtual_size;
    char *dir;                      /* the disk folder */
    char *image_path;
    char *sidecar_path;
    char export_name[CAT_EXPORT_NAME_MAX + 1];
    char *uri;
    struct cat_sidecar *sc;         /* as last written */
    char *parent_change_id;         /* NULL for a full or when unknown */

    /* What start did, for undo. */
    bool dir_created, image_created, sidecar_written, export_added;
    /* Failed, but the sidecar on disk still says running: it could not
     * be written (retried by the timer, resolved at restart). */
    bool sidecar_pending;

    /* Progress: counters of the last export.stats, and of the last
     * status call (the base of its speed). */
    struct nbdc_export_stats stats;
    bool have_stats;
    uint64_t status_bytes;
    struct timespec status_time;    /* CLOCK_MONOTONIC; 0 before any */
};

struct sdd_job {
    struct sdd_job *next;
    char id[SDD_JOB_ID_LEN + 1];
    char vm[CAT_NAME_MAX + 1];
    const struct sdd_repository *repo;  /* the config's */
    enum sdd_job_type type;
    enum sdd_job_phase phase;
    cat_time_t stamp;               /* names every backup of the job */
    cat_time_t started_at, ended_at;    /* ended_at -1 while running */
    char *failure_reason;
    struct sdd_job_disk *disks;
    size_t ndisks;
    struct timespec last_write;     /* CLOCK_MONOTONIC: start, or when
                                     * the counters last grew */
};

struct sdd_jobs {
    const struct sdd_config *cfg;
    struct sdd_job *list;           /* newest first */
};

/* What backup.start asks for (strings borrowed). */
struct sdd_start_disk {
    const char *name;
    uint64_t size;
    const char *label;              /* NULL for none */
};

struct sdd_start_req {
    const char *vm;
    const char *display_name;       /* NULL: keep (or none) */
    enum sdd_job_type type;
    const char *repository;         /* NULL: the default one */
    const struct sdd_start_disk *disks;
    size_t ndisks;
};

void sdd_jobs_init(struct sdd_jobs *jobs, const struct sdd_config *cfg);
void sdd_jobs_clear(struct sdd_jobs *jobs);

int sdd_job_type_parse(const char *text, enum sdd_job_type *out);
const char *sdd_job_type_name(enum sdd_job_type type);
const char *sdd_job_phase_name(enum sdd_job_phase phase);

struct sdd_job *sdd_jobs_find(const struct sdd_jobs *jobs, const char *id);
/* The running (or completing) job of vm, or NULL. */
struct sdd_job *sdd_jobs_running_for(const struct sdd_jobs *jobs,
                                     const char *vm);

/* job-start.c */
int sdd_jobs_start(struct sdd_jobs *jobs, const struct sdd_start_req *req,
                   struct sdd_job **out, struct sd_error *err);

/* job-finish.c */
/* backup.complete in three steps; the middle one reads whole images, so
 * sendensed runs it in a task, off its loop.
 *
 * 1. sdd_jobs_complete_begin: change_ids ({disk: "change id"}, borrowed,
 *    may be NULL) checked, final counters, exports drained and removed;
 *    the job is then completing. A job whose exports saw a failed write
 *    is failed with the reason (-ENOSPC for a full repository, else
 *    -EIO), never completed.
 * 2. sdd_job_check_images: each image checked, its host bytes and its
 *    checksum computed into results (job->ndisks of them). Touches no
 *    state of the job: safe in another thread while the job stays.
 * 3. sdd_jobs_complete_end: with step 2's outcome, the sidecars written
 *    completed, or the job failed (a corrupt image: -EIO). */
struct sdd_image_result {
    uint64_t allocated;             /* host bytes of the image file */
    char checksum[CAT_CHECKSUM_HEX_LEN + 1];
};

int sdd_jobs_complete_begin(struct sdd_jobs *jobs, struct sdd_job *job,
                            json_t *change_ids, struct sd_error *err);
int sdd_job_check_images(const struct sdd_job *job,
                         struct sdd_image_result *results,
                         struct sd_error *err);
int sdd_jobs_complete_end(struct sdd_jobs *jobs, struct sdd_job *job,
                          json_t *change_ids, int check_ret,
                          const struct sdd_image_result *results,
                          struct sd_error *err);
/* The job is failed once the exports are gone, even when a sidecar
 * could not be written (then the error says so). */
int sdd_jobs_fail(const struct sdd_jobs *jobs, struct sdd_job *job,
                  const char *reason, struct sd_error *err);

/* One backup left running by a daemon that died, as recovery saw it. */
struct sdd_recovered {
    const char *vm, *disk, *id, *export_name;
    int export_ret;                 /* export.remove: 0, -ENOENT, or why
                                     * it failed (then in *problem) */
    const struct sd_error *problem; /* sidecar or image trouble, or NULL */
};
typedef void sdd_recover_fn(void *arg, const struct sdd_recovered *r);

/* Resolve every running sidecar of repo (see the top); report calls
 * back once per backup. Fails only when the repository cannot be read. */
int sdd_jobs_recover(struct sdd_jobs *jobs, const struct sdd_repository *repo,
                     sdd_recover_fn *report, void *arg, struct sd_error *err);

/* job-progress.c */
/* Ask sendense-nbd for the counters of each disk of a running job; a
 * disk whose counters grew moves last_write. A failed write on any
 * export fails the job (logged); if even that fails, the job stays
 * running and the error is returned. */
int sdd_job_refresh(const struct sdd_jobs *jobs, struct sdd_job *job,
                    struct sd_error *err);
/* The job as JSON (new reference), with progress: percent, speed since
 * the previous call (with_speed), ETA. NULL when out of memory. */
json_t *sdd_job_to_json(struct sdd_job *job, bool with_speed);
/* A running job without a write for idle_timeout seconds at now
 * (CLOCK_MONOTONIC), after refreshing each one (and retrying pending
 * sidecars); NULL when none. */
struct sdd_job *sdd_jobs_find_idle(const struct sdd_jobs *jobs,
                                   const struct timespec *now);

#endif
