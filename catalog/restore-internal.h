/* SPDX-License-Identifier: MIT */
/*
 * The private map of libsdrestore: the point structure and the helpers
 * each file offers the others, grouped by file.
 */
#ifndef SENDENSE_RESTORE_INTERNAL_H
#define SENDENSE_RESTORE_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "catalog/restore-mount.h"

/* Names of what a point keeps in its folder <runtime>/<id>. */
#define RS_FUSE_DIR "fuse"           /* nbdfuse's mount point */
#define RS_FUSE_FILE "disk"          /* the image, as a file in it */
#define RS_PID_FILE "nbdfuse.pid"
#define RS_LOG_FILE "nbdfuse.log"    /* nbdfuse's stderr */
#define RS_MNT_DIR "mnt"             /* one mount point per volume */
#define RS_STATE_FILE "state.json"   /* what the point holds, for people */
#define RS_FUSE_DEV_FILE "fuse.dev"  /* st_dev of the FUSE file: its
                                        connection, to abort if stuck */

struct sd_restore_point {
    char runtime_dir[SD_RESTORE_PATH_MAX];
    char dir[SD_RESTORE_PATH_MAX];       /* <runtime_dir>/<id> */
    char fuse_file[SD_RESTORE_PATH_MAX]; /* <dir>/fuse/disk, as nbdfuse
                                            sees it */
    char disk_file[SD_RESTORE_PATH_MAX + 32]; /* the same file from here:
                                            /proc/<pid>/root<fuse_file> */
    pid_t fuse_pid;                  /* 0 when not running */
    size_t nvols;
    struct sd_restore_volume vols[SD_RESTORE_MAX_VOLUMES];
    int loop_fds[SD_RESTORE_MAX_VOLUMES]; /* -1: none; closing clears */
    struct sd_restore_point *next_live;
};

/* restore-run.c: helper processes. Each child is killed when the thread
 * that started it dies, starts with no signal blocked and no file
 * descriptor but 0, 1, 2. */
struct rs_output {
    char *out;                       /* stdout, NUL-terminated (free) */
    size_t len;
    char errtext[256];               /* the start of stderr */
    int status;                      /* exit status */
};
enum { RS_OUTPUT_MAX = 4 << 20 };
int rs_run(const char *const argv[], struct rs_output *res,
           struct sd_error *err);
void rs_output_free(struct rs_output *res);
/* Start argv with stdout on out_fd and stderr on err_fd (-1: /dev/null),
 * working directory cwd_fd (-1: unchanged). With own_ns_without, in a
 * private mount namespace of its own, without the mounts under that
 * folder (nbdfuse: see restore-fuse.c). */
int rs_spawn(const char *const argv[], int cwd_fd, int out_fd, int err_fd,
             const char *own_ns_without, pid_t *ret_pid,
             struct sd_error *err);
/* Wait for a child for at most timeout_ms (-1: forever); -ETIMEDOUT
 * leaves it running. */
int rs_wait(pid_t pid, int timeout_ms, int *ret_status);
/* Kill and reap a child. */
void rs_kill_wait(pid_t pid);
void rs_sleep_ms(unsigned ms);

/* restore-loop.c: loop devices (name is "loopN"), tagged with the
 * folder of their point. */
int rs_loop_attach(const char *file, const char *tag, uint64_t offset,
                   uint64_t size, char name[32], int *ret_fd,
                   struct sd_error *err);
/* Whether loopN's backing file is a FUSE file ("/disk") whose mount is
 * gone with its namespace. */
bool rs_loop_detached(const char *name);
/* The backing file of loopN, or -ENXIO when it has none. */
int rs_loop_backing(const char *name, char *buf, size_t len);
/* Call fn for every loop device whose backing file is under dir (and,
 * with detached_too, every detached one). */
int rs_loop_foreach_under(const char *dir, bool detached_too,
                          int (*fn)(const char *name, void *opaque),
                          void *opaque);
int rs_loop_clear(const char *name);
/* Wait until no loop device under dir is left (-EBUSY after timeout). */
int rs_loop_wait_gone(const char *dir, unsigned timeout_ms);

/* restore-fuse.c: nbdfuse. */
int rs_fuse_start(struct sd_restore_point *pt, const char *uri,
                  struct sd_error *err);
int rs_fuse_stop(struct sd_restore_point *pt);
/* Abort the FUSE connection of the file system on dev (fusectl), so
 * that I/O waiting on a server that will never answer fails. */
int rs_fuse_abort(dev_t dev);

/* restore-probe.c: what the image holds. */
int rs_probe_partitions(struct sd_restore_point *pt, struct sd_error *err);
int rs_probe_fstype(struct sd_restore_volume *vol, struct sd_error *err);
int rs_probe_lvm(struct sd_restore_point *pt, struct sd_error *err);
/* Add a volume (and its loop device when size > 0); returns its index. */
int rs_add_volume(struct sd_restore_point *pt, const char *name,
                  const char *kind, uint64_t offset, uint64_t size,
                  struct sd_error *err);

/* restore-stale.c: points alive in this process, and removal. */
void rs_live_add(struct sd_restore_point *pt);
void rs_live_remove(struct sd_restore_point *pt);
bool rs_live_owns(const char *dir);
/* Remove a point's folder: its files and empty folders, never across a
 * mount. */
int rs_remove_point_dir(const char *dir);
/* Whether path is dir itself or below it. */
bool rs_path_under(const char *path, const char *dir);

#endif
