/* SPDX-License-Identifier: MIT */
/*
 * Mounting and releasing one backup point (the plan is in
 * restore-mount.h). Acquisition goes in one order (folder, nbdfuse, loop
 * devices, mounts) and release in the reverse one, from one function
 * used both by unmount and by a mount that fails half-way.
 */
#include "config.h"

#include "catalog/restore-internal.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

/* File systems we mount, with their mount options. Journal replay is
 * wanted (no noload/norecovery); nouuid lets two points of one XFS
 * file system be mounted at once. */
static const struct {
    const char *type;
    const char *options;
} mountable[] = {
    { "ext2", NULL }, { "ext3", NULL }, { "ext4", NULL },
    { "xfs", "nouuid" }, { "btrfs", NULL }, { "vfat", NULL },
    { "exfat", NULL },
};

/* How long released loop devices may take to detach. */
enum { LOOP_CLEAR_MS = 10000 };

static const unsigned long MOUNT_FLAGS =
    MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC;

static bool valid_id(const char *id)
{
    size_t n = strlen(id);

    if (n == 0 || n >= SD_RESTORE_ID_MAX || id[0] == '.')
        return false;
    return strspn(id, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                      "0123456789._-") == n;
}

static int find_mountable(const char *type)
{
    for (size_t i = 0; i < sizeof(mountable) / sizeof(mountable[0]); i++)
        if (strcmp(mountable[i].type, type) == 0)
            return (int)i;
    return -1;
}

static void mount_volume(struct sd_restore_point *pt,
                         struct sd_restore_volume *v)
{
    int m = find_mountable(v->fstype);

    if (!v->loopdev[0] || !v->fstype[0] || v->note[0])
        return;
    if (m < 0) {
        if (strcmp(v->fstype, "LVM2_member") != 0)
            snprintf(v->note, sizeof(v->note), "%s: not mounted", v->fstype);
        return;
    }
    if ((size_t)snprintf(v->mountpoint, sizeof(v->mountpoint),
                         "%s/" RS_MNT_DIR "/%s", pt->dir, v->name) >=
        sizeof(v->mountpoint)) {
        snprintf(v->note, sizeof(v->note), "mount point name too long");
        v->mountpoint[0] = '\0';
        return;
    }
    if (mkdir(v->mountpoint, 0700) < 0 ||
        mount(v->loopdev, v->mountpoint, v->fstype, MOUNT_FLAGS,
              mountable[m].options) < 0) {
        snprintf(v->note, sizeof(v->note), "mount: %s", strerror(errno));
        (void)rmdir(v->mountpoint);
        v->mountpoint[0] = '\0';
        return;
    }
    v->mounted = true;
}

static int probe_all(struct sd_restore_point *pt, size_t from,
                     struct sd_error *err)
{
    int r = 0;

    for (size_t i = from; i < pt->nvols && r == 0; i++)
        if (pt->vols[i].loopdev[0])
            r = rs_probe_fstype(&pt->vols[i], err);
    return r;
}

static json_t *volume_json(const struct sd_restore_volume *v)
{
    return json_pack("{s:s, s:s, s:I, s:I, s:s, s:s, s:b, s:s, s:s}",
                     "name", v->name, "kind", v->kind,
                     "offset", (json_int_t)v->offset,
                     "size", (json_int_t)v->size, "loopdev", v->loopdev,
                     "fstype", v->fstype, "mounted", v->mounted,
                     "mountpoint", v->mountpoint, "note", v->note);
}

/* <point>/state.json: what the point holds, written atomically. It is a
 * record for people and tools; cleanup_stale trusts only the kernel's
 * view (sysfs, mountinfo, /proc). */
static int write_state(const struct sd_restore_point *pt, const char *uri,
                       struct sd_error *err)
{
    char path[SD_RESTORE_PATH_MAX + 32], tmp[SD_RESTORE_PATH_MAX + 48];
    json_t *vols = json_array(), *root;
    int r = 0;

    for (size_t i = 0; vols && i < pt->nvols; i++)
        json_array_append_new(vols, volume_json(&pt->vols[i]));
    root = json_pack("{s:s, s:i, s:o}", "uri", uri, "nbdfuse_pid",
                     (int)pt->fuse_pid, "volumes", vols);
    snprintf(path, sizeof(path), "%s/" RS_STATE_FILE, pt->dir);
    snprintf(tmp, sizeof(tmp), "%s/." RS_STATE_FILE ".tmp", pt->dir);
    if (!root)
        return sd_error_set(err, -ENOMEM, "state: out of memory");
    if (json_dump_file(root, tmp, JSON_INDENT(2)) < 0 ||
        rename(tmp, path) < 0)
        r = sd_error_set(err, -EIO, "%s: cannot write", path);
    json_decref(root);
    return r;
}

static int build(struct sd_restore_point *pt, const char *uri,
                 struct sd_error *err)
{
    char mnt[SD_RESTORE_PATH_MAX + 8];
    size_t first_lv;
    int r;

    r = rs_fuse_start(pt, uri, err);
    if (r == 0)
        r = rs_probe_partitions(pt, err);
    if (r == 0)
        r = probe_all(pt, 0, err);
    first_lv = pt->nvols;
    if (r == 0)
        r = rs_probe_lvm(pt, err);
    if (r == 0)
        r = probe_all(pt, first_lv, err);
    if (r < 0)
        return r;
    snprintf(mnt, sizeof(mnt), "%s/" RS_MNT_DIR, pt->dir);
    if (mkdir(mnt, 0700) < 0)
        return sd_error_set(err, -errno, "%s: %s", mnt, strerror(errno));
    for (size_t i = 0; i < pt->nvols; i++)
        mount_volume(pt, &pt->vols[i]);
    return write_state(pt, uri, err);
}

/* Undo whatever build() did, in reverse; the first error is kept. */
static int release(struct sd_restore_point *pt, struct sd_error *err)
{
    int r = 0;

    for (size_t i = pt->nvols; i-- > 0;) {
        struct sd_restore_volume *v = &pt->vols[i];
        if (v->mounted && umount2(v->mountpoint, UMOUNT_NOFOLLOW) < 0) {
            if (r == 0)
                r = sd_error_set(err, -errno, "unmount %s: %s",
                                 v->mountpoint, strerror(errno));
            (void)umount2(v->mountpoint, MNT_DETACH | UMOUNT_NOFOLLOW);
        }
        v->mounted = false;
        if (pt->loop_fds[i] >= 0)
            close(pt->loop_fds[i]);     /* autoclear: the device goes */
        pt->loop_fds[i] = -1;
    }
    /* The devices clear themselves at last close; nbdfuse must serve
     * until they have let go of its file. */
    int w = rs_loop_wait_gone(pt->dir, LOOP_CLEAR_MS);
    if (r == 0 && w < 0)
        r = sd_error_set(err, w, "loop devices of %s stay attached: %s",
                         pt->dir, strerror(-w));
    (void)rs_fuse_stop(pt);
    rs_live_remove(pt);
    int d = rs_remove_point_dir(pt->dir);
    if (r == 0 && d < 0)
        r = sd_error_set(err, d, "removing %s: %s", pt->dir, strerror(-d));
    return r;
}

static int make_dirs(struct sd_restore_point *pt, const char *runtime_dir,
                     const char *id, struct sd_error *err)
{
    if (runtime_dir[0] != '/')
        return sd_error_set(err, -EINVAL, "%s: not an absolute path",
                            runtime_dir);
    if (!valid_id(id))
        return sd_error_set(err, -EINVAL, "bad point id '%s'", id);
    snprintf(pt->runtime_dir, sizeof(pt->runtime_dir), "%s", runtime_dir);
    if ((size_t)snprintf(pt->dir, sizeof(pt->dir), "%s/%s", runtime_dir,
                         id) >= sizeof(pt->dir) - 64)
        return sd_error_set(err, -ENAMETOOLONG, "%s: too long", runtime_dir);
    if ((size_t)snprintf(pt->fuse_file, sizeof(pt->fuse_file),
                         "%s/" RS_FUSE_DIR "/" RS_FUSE_FILE, pt->dir) >=
        sizeof(pt->fuse_file))
        return sd_error_set(err, -ENAMETOOLONG, "%s: too long", runtime_dir);
    if (mkdir(runtime_dir, 0700) < 0 && errno != EEXIST)
        return sd_error_set(err, -errno, "%s: %s", runtime_dir,
                            strerror(errno));
    if (mkdir(pt->dir, 0700) < 0)
        return sd_error_set(err, -errno, "%s: %s%s", pt->dir,
                            strerror(errno), errno == EEXIST ?
                            " (a live point, or leftovers for "
                            "cleanup_stale)" : "");
    return 0;
}

int sd_restore_mount(const char *runtime_dir, const char *id,
                     const char *nbd_uri, struct sd_restore_point **ret,
                     struct sd_error *err)
{
    struct sd_restore_point *pt = calloc(1, sizeof(*pt));
    int r;

    if (!pt)
        return sd_error_set(err, -ENOMEM, "out of memory");
    r = make_dirs(pt, runtime_dir, id, err);
    if (r < 0) {
        free(pt);
        return r;
    }
    rs_live_add(pt);
    r = build(pt, nbd_uri, err);
    if (r < 0) {
        (void)release(pt, NULL);
        free(pt);
        return r;
    }
    *ret = pt;
    return 0;
}

int sd_restore_unmount(struct sd_restore_point *pt, struct sd_error *err)
{
    int r;

    if (!pt)
        return 0;
    r = release(pt, err);
    free(pt);
    return r;
}

size_t sd_restore_volume_count(const struct sd_restore_point *pt)
{
    return pt->nvols;
}

const struct sd_restore_volume *
sd_restore_volume_get(const struct sd_restore_point *pt, size_t i)
{
    return i < pt->nvols ? &pt->vols[i] : NULL;
}

int sd_restore_volume_find(const struct sd_restore_point *pt,
                           const char *name)
{
    for (size_t i = 0; i < pt->nvols; i++)
        if (strcmp(pt->vols[i].name, name) == 0)
            return (int)i;
    return -ENOENT;
}
