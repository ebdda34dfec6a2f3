/* SPDX-License-Identifier: MIT */
/*
 * Restore in sendensed (docs/SENDENSED.md, "Restore"): whole-disk
 * restore exports and file-level restore mounts of backup points.
 *
 *   restore.export   export.add {restore-..., image, readonly} on
 *                    sendense-nbd: the point's image, its chain comes
 *                    along through the backing files
 *   restore.mount    export.add {restore-mnt-..., image, overlay:
 *                    temporary, allow: []} (no network client, writes
 *                    of journal replay go to a throw-away overlay), then
 *                    sd_restore_mount() over sendense-nbd's unix socket
 *
 * Every export this daemon adds is named "restore-...", so one started
 * after a crash can find and remove what the previous one left; the
 * leftovers of mounts are libsdrestore's sd_restore_cleanup_stale().
 *
 * Threads and processes: libsdrestore's calls block and its helpers die
 * with the thread that started them. Both suit the daemon, which is
 * single-threaded and whose main thread lives as long as it does; the
 * daemon reaps no child it did not start (no waitpid(-1)).
 */
#ifndef SENDENSE_CATALOG_DAEMON_RESTORE_H
#define SENDENSE_CATALOG_DAEMON_RESTORE_H

#include "catalog/daemon-config.h"
#include "catalog/export-name.h"
#include "catalog/restore-mount.h"
#include "common/error.h"

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#define SDD_RESTORE_PREFIX "restore-"
#define SDD_RESTORE_MOUNT_PREFIX "restore-mnt-"

enum {
    SDD_RESTORE_EXPORTS_MAX = 64,
    SDD_RESTORE_MOUNTS_MAX = 16,
    SDD_RESTORE_MOUNT_ID_LEN = 12,      /* "mnt-" + 8 hex digits */
};

/* Which backup point: as the methods name it, and its image. */
struct sdd_restore_point_ref {
    char *repository;
    char *vm;
    char *disk;
    char *id;
    char *image;                        /* absolute path */
};

struct sdd_restore_export {
    struct sdd_restore_export *next;
    char name[CAT_EXPORT_NAME_MAX + 1];
    struct sdd_restore_point_ref ref;
    char *uri;
    time_t created;                     /* wall clock */
};

struct sdd_restore_mount {
    struct sdd_restore_mount *next;
    char id[SDD_RESTORE_MOUNT_ID_LEN + 1];
    char export_name[CAT_EXPORT_NAME_MAX + 1];
    struct sdd_restore_point_ref ref;
    struct sd_restore_point *pt;
    time_t created;                     /* wall clock */
    struct timespec last_used;          /* CLOCK_MONOTONIC */
    unsigned readers;                   /* extractions running in tasks:
                                         * neither expired nor removed */
};

struct sdd_restore {
    const struct sdd_config *cfg;
    bool ns_ready;                      /* mounts possible: namespace and
                                         * runtime dir ready */
    char ns_problem[SD_ERROR_MSG_MAX];  /* why not, for restore.mount */
    struct sdd_restore_export *exports; /* newest first */
    size_t nexports;
    struct sdd_restore_mount *mounts;   /* newest first */
    size_t nmounts;
};

/* daemon-restore.c */

/* Enter the private mount namespace of restore mounts: first thing in
 * the daemon, before any thread. A failure (not root) is recorded and
 * only restore.mount refuses to work. */
void sdd_restore_ns(struct sdd_restore *r);
/* Once the daemon owns its socket: release what a previous daemon left
 * (mounts' leftovers under restore_runtime_dir, restore-* exports).
 * Problems are logged; one with the runtime dir disables mounts. */
void sdd_restore_start(struct sdd_restore *r, const struct sdd_config *cfg);
/* Release the mounts unused for mount_idle_timeout (the daemon's timer). */
void sdd_restore_expire(struct sdd_restore *r);
/* Release every mount and export (daemon stop). */
void sdd_restore_stop(struct sdd_restore *r);

/* Find a completed, usable backup point; fills ref (owned strings). */
int sdd_restore_resolve(const struct sdd_restore *r, const char *repository,
                        const char *vm, const char *disk, const char *id,
                        struct sdd_restore_point_ref *ref,
                        struct sd_error *err);
void sdd_restore_ref_clear(struct sdd_restore_point_ref *ref);

/* Whether a restore export or mount uses a backup of this disk: its
 * chain must not change under it (for retention and consolidation). */
bool sdd_restore_disk_busy(const struct sdd_restore *r,
                           const char *repository, const char *vm,
                           const char *disk);

/* name: NULL for a generated one; a given name gets the prefix unless it
 * has it. Takes ref over (cleared on failure too). */
int sdd_restore_export_add(struct sdd_restore *r,
                           struct sdd_restore_point_ref *ref,
                           const char *name, struct sdd_restore_export **out,
                           struct sd_error *err);
struct sdd_restore_export *sdd_restore_export_find(struct sdd_restore *r,
                                                   const char *name);
int sdd_restore_export_remove(struct sdd_restore *r,
                              struct sdd_restore_export *e,
                              struct sd_error *err);

/* Takes ref over (cleared on failure too). */
int sdd_restore_mount_add(struct sdd_restore *r,
                          struct sdd_restore_point_ref *ref,
                          struct sdd_restore_mount **out,
                          struct sd_error *err);
/* The mount called id, marked as used now; NULL if none. */
struct sdd_restore_mount *sdd_restore_mount_use(struct sdd_restore *r,
                                                const char *id);
/* Release everything of m and forget it, even when a step fails (the
 * error says what; cleanup_stale at the next start gets the rest). */
int sdd_restore_mount_remove(struct sdd_restore *r,
                             struct sdd_restore_mount *m,
                             struct sd_error *err);

#endif
