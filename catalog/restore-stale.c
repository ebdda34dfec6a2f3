/* SPDX-License-Identifier: MIT */
/*
 * Leftovers of restore points, found again after a daemon restart.
 *
 * What a killed daemon can leave (see restore-mount.h): with its
 * namespace gone, nothing; when something kept the namespace alive (an
 * nbdfuse that was not killed with it) or when there was no private
 * namespace, an nbdfuse process, mounts under the runtime folder, and
 * the loop devices those mounts hold. We trust only the kernel's view:
 * the pid file is checked against /proc/PID/cmdline (it must be nbdfuse,
 * serving a file of that very point), loop devices are ours when their
 * backing file lies under the runtime folder, mounts when their mount
 * point does (or, with nbdfuse's namespace gone, when sysfs shows the
 * detached name of nbdfuse's file, "/disk"). Order: end the processes
 * (which frees their namespace and its mounts), unmount what is in ours,
 * then wait for the loop devices to clear themselves, abort the FUSE
 * connections of stuck ones, and clear what is left.
 */
#include "config.h"

#include "catalog/restore-internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

/* How long processes may take to go, and loop devices to clear. */
enum { STALE_WAIT_MS = 10000 };

static pthread_mutex_t live_lock = PTHREAD_MUTEX_INITIALIZER;
static struct sd_restore_point *live_head;

void rs_live_add(struct sd_restore_point *pt)
{
    pthread_mutex_lock(&live_lock);
    pt->next_live = live_head;
    live_head = pt;
    pthread_mutex_unlock(&live_lock);
}

void rs_live_remove(struct sd_restore_point *pt)
{
    pthread_mutex_lock(&live_lock);
    for (struct sd_restore_point **p = &live_head; *p; p = &(*p)->next_live)
        if (*p == pt) {
            *p = pt->next_live;
            break;
        }
    pthread_mutex_unlock(&live_lock);
}

bool rs_path_under(const char *path, const char *dir)
{
    size_t n = strlen(dir);

    while (n > 1 && dir[n - 1] == '/')
        n--;
    return strncmp(path, dir, n) == 0 &&
           (path[n] == '\0' || path[n] == '/' || path[n] == ' ');
}

bool rs_live_owns(const char *path)
{
    bool owns = false;

    pthread_mutex_lock(&live_lock);
    for (struct sd_restore_point *p = live_head; p && !owns; p = p->next_live)
        owns = rs_path_under(path, p->dir);
    pthread_mutex_unlock(&live_lock);
    return owns;
}

/* Remove dir's files and empty folders, two levels deep at most (a
 * point has mnt/<volume>). Never into another file system: a guest
 * file system still mounted there is left alone (and rmdir refuses its
 * mount point). */
static int remove_tree(int parent, const char *name, int depth)
{
    int fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
                                      O_CLOEXEC);
    struct stat up, here;
    struct dirent *de;
    DIR *d;
    int r = 0;

    if (fd < 0)
        return errno == ENOENT ? 0 : -errno;
    if (fstat(parent, &up) < 0 || fstat(fd, &here) < 0 ||
        up.st_dev != here.st_dev) {
        close(fd);
        return -EBUSY;
    }
    d = fdopendir(fd);
    if (!d) {
        close(fd);
        return -errno;
    }
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        if (de->d_type == DT_DIR && depth > 0)
            (void)remove_tree(dirfd(d), de->d_name, depth - 1);
        else if (unlinkat(dirfd(d), de->d_name,
                          de->d_type == DT_DIR ? AT_REMOVEDIR : 0) < 0 &&
                 r == 0)
            r = -errno;
    }
    closedir(d);
    if (unlinkat(parent, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
        r = -errno;
    return r;
}

int rs_remove_point_dir(const char *dir)
{
    char parent[SD_RESTORE_PATH_MAX];
    const char *base = strrchr(dir, '/');
    int fd, r;

    if (!base || !base[1])
        return -EINVAL;
    snprintf(parent, sizeof(parent), "%.*s", (int)(base - dir), dir);
    fd = open(parent[0] ? parent : "/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? 0 : -errno;
    r = remove_tree(fd, base + 1, 2);
    close(fd);
    return r;
}

/* --- processes --- */

/* Whether pid is an nbdfuse serving a file in point folder dir. */
static bool is_our_nbdfuse(pid_t pid, const char *dir)
{
    char path[64], cmd[8192], want[SD_RESTORE_PATH_MAX + 16];
    bool comm_ok = false, file_ok = false;
    ssize_t n;
    int fd;

    snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    n = read(fd, cmd, sizeof(cmd) - 1);
    close(fd);
    if (n <= 0)
        return false;              /* gone, or a zombie */
    cmd[n] = '\0';
    snprintf(want, sizeof(want), "%s/" RS_FUSE_DIR "/" RS_FUSE_FILE, dir);
    for (char *a = cmd; a < cmd + n; a += strlen(a) + 1) {
        const char *base = strrchr(a, '/');
        if (a == cmd)
            comm_ok = strcmp(base ? base + 1 : a, "nbdfuse") == 0;
        else if (strcmp(a, want) == 0)
            file_ok = true;
    }
    return comm_ok && file_ok;
}

static pid_t read_pid_file(const char *dir)
{
    char path[SD_RESTORE_PATH_MAX + 32], buf[32];
    ssize_t n;
    int fd;

    snprintf(path, sizeof(path), "%s/" RS_PID_FILE, dir);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    return (pid_t)strtol(buf, NULL, 10);
}

static void wait_gone(pid_t pid, const char *dir)
{
    for (int waited = 0; waited < STALE_WAIT_MS; waited += 10) {
        if (!is_our_nbdfuse(pid, dir))
            return;
        rs_sleep_ms(10);
    }
}

static void end_process(const char *dir, struct sd_restore_cleanup *rep)
{
    pid_t pid = read_pid_file(dir);

    if (pid <= 0 || !is_our_nbdfuse(pid, dir))
        return;
    if (kill(pid, SIGKILL) == 0) {
        rep->processes++;
        wait_gone(pid, dir);
    }
}

/* --- mounts in our namespace --- */

/* Undo mountinfo's octal escapes (\040 for a space) in place. */
static void unescape(char *s)
{
    char *w = s;

    for (char *r = s; *r; r++) {
        if (r[0] == '\\' && r[1] >= '0' && r[1] <= '3' && r[2] && r[3]) {
            *w++ = (char)(((r[1] - '0') << 6) | ((r[2] - '0') << 3) |
                          (r[3] - '0'));
            r += 3;
        } else {
            *w++ = *r;
        }
    }
    *w = '\0';
}

/* Unmount (detach) every mount under runtime_dir not owned by a live
 * point, last mounted first; returns how many. */
static unsigned unmount_under(const char *runtime_dir)
{
    char line[8192], (*points)[SD_RESTORE_PATH_MAX] = NULL;
    size_t n = 0, cap = 0;
    unsigned count = 0;
    FILE *f = fopen("/proc/self/mountinfo", "re");

    if (!f)
        return 0;
    while (fgets(line, sizeof(line), f)) {
        char mp[SD_RESTORE_PATH_MAX];
        if (sscanf(line, "%*s %*s %*s %*s %4095s", mp) != 1)
            continue;
        unescape(mp);
        if (!rs_path_under(mp, runtime_dir) || rs_live_owns(mp))
            continue;
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            void *np = realloc(points, ncap * sizeof(*points));
            if (!np)
                break;
            points = np;
            cap = ncap;
        }
        snprintf(points[n++], SD_RESTORE_PATH_MAX, "%s", mp);
    }
    fclose(f);
    while (n-- > 0)
        if (umount2(points[n], MNT_DETACH | UMOUNT_NOFOLLOW) == 0)
            count++;
    free(points);
    return count;
}

/* --- loop devices --- */

/* Whether loopN belongs to a point alive in this process (a detached
 * one never does: a live point's nbdfuse namespace is there). */
static bool loop_live(const char *name)
{
    char backing[SD_RESTORE_PATH_MAX];

    return rs_loop_backing(name, backing, sizeof(backing)) == 0 &&
           rs_live_owns(backing);
}

static int count_loop(const char *name, void *opaque)
{
    if (!loop_live(name))
        (*(unsigned *)opaque)++;
    return 0;
}

static int clear_loop(const char *name, void *opaque)
{
    if (!loop_live(name) && rs_loop_clear(name) == 0)
        (*(unsigned *)opaque)++;
    return 0;
}

static unsigned count_stale_loops(const char *runtime_dir)
{
    unsigned n = 0;

    (void)rs_loop_foreach_under(runtime_dir, true, count_loop, &n);
    return n;
}

/* Wait for our loop devices to be gone; true if they are. */
static bool loops_gone(const char *runtime_dir)
{
    for (int waited = 0; waited < STALE_WAIT_MS; waited += 20) {
        if (count_stale_loops(runtime_dir) == 0)
            return true;
        rs_sleep_ms(20);
    }
    return false;
}

/* Abort the FUSE connection a stale point recorded, if it still exists.
 * Called only while loop devices of ours stay attached: the number of a
 * connection is only reused once its file system is gone, and ours is
 * not gone while a loop device holds its file. */
static void abort_recorded(const char *dir, struct sd_restore_cleanup *rep)
{
    char path[SD_RESTORE_PATH_MAX + 16], buf[32];
    unsigned long long dev;
    ssize_t n;
    int fd;

    snprintf(path, sizeof(path), "%s/" RS_FUSE_DEV_FILE, dir);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return;
    buf[n] = '\0';
    dev = strtoull(buf, NULL, 10);
    if (rs_fuse_abort((dev_t)dev) == 0)
        rep->fuse_aborted++;
}

static void foreach_stale_dir(const char *runtime_dir,
                              void (*fn)(const char *dir,
                                         struct sd_restore_cleanup *rep),
                              struct sd_restore_cleanup *rep);

/* Loop devices usually clear themselves once their mounts and nbdfuse
 * are gone. One that does not may be stuck: a file system being taken
 * down writes through it to a FUSE server that will never answer (an
 * nbdfuse that is itself the process tearing that namespace down, or a
 * hung one). Aborting that FUSE connection fails the I/O and lets the
 * unmount finish; then whatever is still attached is cleared. */
static void release_loops(const char *runtime_dir,
                          struct sd_restore_cleanup *rep)
{
    unsigned cleared = 0;

    if (loops_gone(runtime_dir))
        return;
    foreach_stale_dir(runtime_dir, abort_recorded, rep);
    /* A device still in use only gets autoclear: it goes when freed. */
    (void)rs_loop_foreach_under(runtime_dir, true, clear_loop, &cleared);
    (void)loops_gone(runtime_dir);
}

/* Call fn for each point folder under runtime_dir no live point owns. */
static void foreach_stale_dir(const char *runtime_dir,
                              void (*fn)(const char *dir,
                                         struct sd_restore_cleanup *rep),
                              struct sd_restore_cleanup *rep)
{
    char dir[SD_RESTORE_PATH_MAX];
    struct dirent *de;
    DIR *d = opendir(runtime_dir);

    if (!d)
        return;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.' || de->d_type != DT_DIR)
            continue;
        if ((size_t)snprintf(dir, sizeof(dir), "%s/%s", runtime_dir,
                             de->d_name) >= sizeof(dir) ||
            rs_live_owns(dir))
            continue;
        fn(dir, rep);
    }
    closedir(d);
}

static void remove_dir(const char *dir, struct sd_restore_cleanup *rep)
{
    if (rs_remove_point_dir(dir) == 0)
        rep->folders++;
}

int sd_restore_cleanup_stale(const char *runtime_dir,
                             struct sd_restore_cleanup *report,
                             struct sd_error *err)
{
    struct sd_restore_cleanup rep = { 0 };
    unsigned left = 0;

    if (runtime_dir[0] != '/')
        return sd_error_set(err, -EINVAL, "%s: not an absolute path",
                            runtime_dir);
    /* Counted first: once processes and mounts are gone, they go too. */
    rep.loops = count_stale_loops(runtime_dir);
    foreach_stale_dir(runtime_dir, end_process, &rep);
    rep.mounts = unmount_under(runtime_dir);
    release_loops(runtime_dir, &rep);
    foreach_stale_dir(runtime_dir, remove_dir, &rep);
    if (report)
        *report = rep;
    left = count_stale_loops(runtime_dir);
    if (left)
        return sd_error_set(err, -EBUSY, "%u loop device(s) under %s are "
                            "still attached", left, runtime_dir);
    return 0;
}
