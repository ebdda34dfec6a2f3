/* SPDX-License-Identifier: MIT */
/*
 * nbdfuse: the NBD export as one file, <point>/fuse/disk, which loop
 * devices can use as their backing file (no kernel nbd module needed).
 *
 * nbdfuse runs in the foreground as our child, in a mount namespace of
 * its own, and we reach its file through /proc/<pid>/root. Why not in
 * ours: when the last process of a namespace exits, the kernel unmounts
 * the guest file systems in that process's exit path, and XFS writes its
 * log at unmount. Were nbdfuse that last process (it is, when the daemon
 * is SIGKILLed and nbdfuse killed with it), those writes would wait on
 * the FUSE server that is busy exiting: seen here as an nbdfuse zombie
 * stuck in xlog_wait_on_iclog until the FUSE connection was aborted by
 * hand. In a namespace of its own, nbdfuse still serves while the
 * daemon's namespace is torn down (the parent-death signal comes after
 * that, at the very end of the daemon's exit), and its FUSE mount dies
 * with it. Its namespace starts as a copy of ours, so the child first
 * detaches the copies of the guest mounts of other points (under the
 * runtime folder): a copy would keep those file systems, and their loop
 * devices, busy until this nbdfuse exits.
 *
 * -P writes the pid file once nbdfuse serves: our "ready" signal and, for
 * cleanup_stale after a restart, the record of which process to end.
 * SIGTERM makes it unmount and exit.
 */
#include "config.h"

#include "catalog/restore-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

/* How long nbdfuse may take to connect and mount, and to exit. */
enum { FUSE_START_MS = 60000, FUSE_EXIT_MS = 10000 };

/* nbdfuse's complaint (its log), for an error message. */
static void log_tail(const struct sd_restore_point *pt, char *buf,
                     size_t len)
{
    char path[SD_RESTORE_PATH_MAX + 32];
    ssize_t n;
    int fd;

    buf[0] = '\0';
    snprintf(path, sizeof(path), "%s/" RS_LOG_FILE, pt->dir);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    n = read(fd, buf, len - 1);
    close(fd);
    buf[n > 0 ? n : 0] = '\0';
    for (char *c = buf; *c; c++)
        if (*c == '\n')
            *c = ' ';
}

static bool pid_file_ready(const struct sd_restore_point *pt)
{
    char path[SD_RESTORE_PATH_MAX + 32];
    struct stat st;

    snprintf(path, sizeof(path), "%s/" RS_PID_FILE, pt->dir);
    return stat(path, &st) == 0 && st.st_size > 0;
}

/* <point>/fuse.dev: which FUSE connection is ours, for cleanup_stale to
 * abort should it ever hang (see restore-stale.c). */
static int record_dev(const struct sd_restore_point *pt, dev_t dev,
                      struct sd_error *err)
{
    char path[SD_RESTORE_PATH_MAX + 16], buf[32];
    int fd, n, r = 0;

    snprintf(path, sizeof(path), "%s/" RS_FUSE_DEV_FILE, pt->dir);
    n = snprintf(buf, sizeof(buf), "%llu\n", (unsigned long long)dev);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || write(fd, buf, (size_t)n) != n)
        r = sd_error_set(err, -errno, "%s: %s", path, strerror(errno));
    if (fd >= 0)
        close(fd);
    return r;
}

static int wait_ready(struct sd_restore_point *pt, struct sd_error *err)
{
    char why[200];
    struct stat st;
    int status;

    for (int waited = 0; waited < FUSE_START_MS; waited += 10) {
        if (pid_file_ready(pt) && stat(pt->disk_file, &st) == 0 &&
            S_ISREG(st.st_mode))
            return record_dev(pt, st.st_dev, err);
        if (rs_wait(pt->fuse_pid, 0, &status) == 0) {
            pt->fuse_pid = 0;
            log_tail(pt, why, sizeof(why));
            return sd_error_set(err, -EIO, "nbdfuse exited at start: %s",
                                why[0] ? why : "no message");
        }
        rs_sleep_ms(10);
    }
    return sd_error_set(err, -ETIMEDOUT, "nbdfuse did not start");
}

int rs_fuse_start(struct sd_restore_point *pt, const char *uri,
                  struct sd_error *err)
{
    char fuse_dir[SD_RESTORE_PATH_MAX + 8], pid_file[SD_RESTORE_PATH_MAX + 16];
    char root[64];
    char log_file[SD_RESTORE_PATH_MAX + 16];
    int log_fd, r;

    snprintf(fuse_dir, sizeof(fuse_dir), "%s/" RS_FUSE_DIR, pt->dir);
    snprintf(pid_file, sizeof(pid_file), "%s/" RS_PID_FILE, pt->dir);
    snprintf(log_file, sizeof(log_file), "%s/" RS_LOG_FILE, pt->dir);
    if (mkdir(fuse_dir, 0700) < 0)
        return sd_error_set(err, -errno, "%s: %s", fuse_dir, strerror(errno));
    log_fd = open(log_file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (log_fd < 0)
        return sd_error_set(err, -errno, "%s: %s", log_file, strerror(errno));
    const char *const argv[] = { "nbdfuse", "-P", pid_file, pt->fuse_file,
                                 uri, NULL };
    r = rs_spawn(argv, -1, -1, log_fd, pt->runtime_dir, &pt->fuse_pid, err);
    close(log_fd);
    if (r < 0)
        return r;
    snprintf(root, sizeof(root), "/proc/%d/root", (int)pt->fuse_pid);
    if ((size_t)snprintf(pt->disk_file, sizeof(pt->disk_file), "%s%s", root,
                         pt->fuse_file) >= sizeof(pt->disk_file))
        return sd_error_set(err, -ENAMETOOLONG, "%s: too long", pt->fuse_file);
    return wait_ready(pt, err);
}

int rs_fuse_stop(struct sd_restore_point *pt)
{
    if (pt->fuse_pid <= 0)
        return 0;
    /* libfuse unmounts on SIGTERM; were the file still busy, the mount
     * goes with nbdfuse's namespace anyway. */
    (void)kill(pt->fuse_pid, SIGTERM);
    if (rs_wait(pt->fuse_pid, FUSE_EXIT_MS, NULL) < 0)
        rs_kill_wait(pt->fuse_pid);
    pt->fuse_pid = 0;
    return 0;
}

/* fusectl names a connection by the kernel's dev_t of its superblock. */
#define FUSECTL_DIR "/sys/fs/fuse/connections"

static int write_abort(dev_t dev)
{
    char path[96];
    unsigned kdev = (major(dev) << 20) | minor(dev);
    int fd;

    snprintf(path, sizeof(path), FUSECTL_DIR "/%u/abort", kdev);
    fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int r = write(fd, "1", 1) == 1 ? 0 : -errno;
    close(fd);
    return r;
}

int rs_fuse_abort(dev_t dev)
{
    int r = write_abort(dev);

    /* Not mounted in this namespace yet: in the daemon's private one,
     * mounting it shows nothing to the host. */
    if (r == -ENOENT &&
        mount("fusectl", FUSECTL_DIR, "fusectl", MS_NOSUID | MS_NODEV |
              MS_NOEXEC, NULL) == 0)
        r = write_abort(dev);
    return r;
}
