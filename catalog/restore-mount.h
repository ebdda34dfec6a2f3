/* SPDX-License-Identifier: MIT */
/*
 * File-level restore: mount the file systems of one backup point and read
 * files out of them. sendensed is the user; tests/tools/restore-mount-tool.c
 * drives it from tests.
 *
 * Notes on the design
 *
 *   sendense-nbd (temporary overlay, private unix socket)
 *        │ NBD
 *   nbdfuse ── <runtime>/<id>/fuse/disk   (our child, in a mount namespace
 *        │                                 of its own; reached through
 *        │                                 /proc/<pid>/root)
 *   loop devices (LO_FLAGS_AUTOCLEAR), all backed by that one file:
 *     "disk"  the whole image
 *     "pN"    partition N, MBR or GPT (offset/sizelimit: `partx --show`)
 *     "VG-LV" a linear LVM volume inside a partition (`lvs --readonly`)
 *        │ blkid -p
 *   mounts at <runtime>/<id>/mnt/<volume>: ro,nosuid,nodev,noexec
 *     (journal replay happens: the loop device is writable and the writes
 *     land in the export's throw-away overlay; XFS gets nouuid so two
 *     points of one disk mount at once)
 *
 * Namespaces. The daemon calls sd_restore_ns_setup() once, early, before
 * it starts threads: it moves into a mount namespace of its own with
 * every mount private, so guest file systems never show on the host and
 * are taken down by the kernel when the daemon dies. Every helper we
 * start gets PR_SET_PDEATHSIG(SIGKILL) and no inherited descriptors.
 * nbdfuse runs in a third namespace (restore-fuse.c says why: as the
 * last process of the guest mounts' namespace it deadlocks its own exit
 * on XFS's unmount writes). Seen on kernel 6.18 after SIGKILL of the
 * daemon: the guest file systems are unmounted cleanly, the loop devices
 * detach, nbdfuse is gone; only the point's folder is left (files), for
 * sd_restore_cleanup_stale(). Without the private namespace, the guest
 * mounts stay (over a dead FUSE file) and hold their loop devices until
 * cleanup_stale unmounts them.
 *
 * Records. <runtime>/<id> holds nbdfuse.pid, fuse.dev (the FUSE
 * connection) and state.json (every volume, loop device and mount, for
 * people); cleanup_stale trusts the kernel's view first (/proc, sysfs,
 * mountinfo) and these files only to name what it may end.
 *
 * Every call here blocks (it runs programs and waits for them): call it
 * from a thread that may block, and one that lives as long as the point
 * (a helper is killed when the thread that started it exits). Call
 * mount, the file operations and unmount of one point from the same
 * process; a point is not thread-safe, different points are
 * independent. Helper processes are reaped by pid: the caller must not
 * reap children it did not start (no waitpid(-1)).
 */
#ifndef SENDENSE_RESTORE_MOUNT_H
#define SENDENSE_RESTORE_MOUNT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/error.h"

enum {
    SD_RESTORE_NAME_MAX = 128,       /* volume names: "p1", "VG-LV" */
    SD_RESTORE_ID_MAX = 64,          /* point ids: [A-Za-z0-9._-] */
    SD_RESTORE_MAX_VOLUMES = 64,
    SD_RESTORE_PATH_MAX = 4096,
};

/* One block device found in the image: the whole disk, a partition, or
 * a logical volume, and what became of it. */
struct sd_restore_volume {
    char name[SD_RESTORE_NAME_MAX];
    char kind[16];                   /* "disk" | "partition" | "lvm" */
    uint64_t offset;                 /* bytes into the image */
    uint64_t size;
    char loopdev[40];                /* "" when it could not be mapped */
    char fstype[32];                 /* blkid's TYPE, "" if none */
    bool mounted;
    char mountpoint[SD_RESTORE_PATH_MAX];
    char note[256];                  /* why not mapped / not mounted */
};

struct sd_restore_point;

/* Enter a private mount namespace (unshare + make / rprivate). Call once
 * per process, before threads start; idempotent within a process. */
int sd_restore_ns_setup(struct sd_error *err);

/* Mount every file system of the NBD export at nbd_uri (nbd+unix://...,
 * writable: a temporary overlay). runtime_dir holds one folder per point,
 * <runtime_dir>/<id>; id must be unique among live points. On success
 * *ret owns every resource until sd_restore_unmount(). Volumes that
 * cannot be mapped or mounted are listed with a note, not errors. */
int sd_restore_mount(const char *runtime_dir, const char *id,
                     const char *nbd_uri, struct sd_restore_point **ret,
                     struct sd_error *err);

size_t sd_restore_volume_count(const struct sd_restore_point *pt);
const struct sd_restore_volume *
sd_restore_volume_get(const struct sd_restore_point *pt, size_t i);
/* The index of the volume called name, or -ENOENT. */
int sd_restore_volume_find(const struct sd_restore_point *pt,
                           const char *name);

/* Release everything of a point (mounts, loop devices, nbdfuse, its
 * folder) and free it. Accepts NULL. On error the point is still freed;
 * what could not be released is left for sd_restore_cleanup_stale(). */
int sd_restore_unmount(struct sd_restore_point *pt, struct sd_error *err);

/* What cleanup_stale found and released (counts). */
struct sd_restore_cleanup {
    unsigned mounts;                 /* unmounted (in our namespace) */
    unsigned loops;                  /* attached when it started */
    unsigned processes;              /* nbdfuse processes ended */
    unsigned folders;                /* point folders removed */
    unsigned fuse_aborted;           /* stuck FUSE connections aborted */
};

/* Release leftovers of points under runtime_dir that no live point of
 * this process owns (call at daemon start, before mounting anything). */
int sd_restore_cleanup_stale(const char *runtime_dir,
                             struct sd_restore_cleanup *report,
                             struct sd_error *err);

/* --- reading a mounted volume (paths relative to its root; symlinks
 * that lead out of it, "..", and magic links are refused) --- */

enum sd_restore_ftype {
    SD_RESTORE_FILE, SD_RESTORE_DIR, SD_RESTORE_SYMLINK, SD_RESTORE_OTHER,
};

struct sd_restore_entry {
    char name[256];
    enum sd_restore_ftype type;
    uint64_t size;
    mode_t mode;                     /* permission bits and type */
    int64_t mtime;                   /* seconds since the epoch */
};

/* Entries of a directory (without . and ..), sorted by name; *ret is
 * malloc'ed (free()). At most SD_RESTORE_MAX_ENTRIES entries, else
 * -E2BIG. */
enum { SD_RESTORE_MAX_ENTRIES = 100000 };
int sd_restore_list(const struct sd_restore_point *pt, size_t vol,
                    const char *path, struct sd_restore_entry **ret,
                    size_t *ret_count, struct sd_error *err);

/* One entry, not following a final symlink. */
int sd_restore_stat(const struct sd_restore_point *pt, size_t vol,
                    const char *path, struct sd_restore_entry *ret,
                    struct sd_error *err);

/* Copy a regular file's bytes to out_fd. */
int sd_restore_extract_file(const struct sd_restore_point *pt, size_t vol,
                            const char *path, int out_fd,
                            struct sd_error *err);

/* Write a tar archive of a directory (its contents, names relative to
 * it, symlinks stored as links) to out_fd. */
int sd_restore_extract_tar(const struct sd_restore_point *pt, size_t vol,
                           const char *path, int out_fd,
                           struct sd_error *err);

#endif
