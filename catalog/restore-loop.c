/* SPDX-License-Identifier: MIT */
/*
 * Loop devices for restore mounts.
 *
 * Each device is configured in one ioctl (LOOP_CONFIGURE) with
 * LO_FLAGS_AUTOCLEAR: it detaches itself when its last opener closes it.
 * The point keeps one descriptor per device open until it is released,
 * so a device lives exactly as long as the point (or its mount) does,
 * and a dead daemon leaves none behind. Devices are found again through
 * sysfs (loop/backing_file), which is how cleanup_stale recognises ours:
 * their backing file lies under the runtime folder. Once nbdfuse's
 * namespace is gone, sysfs shows only the path inside the FUSE mount,
 * "/disk". The point's folder is also put in lo_file_name, for people
 * (losetup); we never read it back: LOOP_GET_STATUS64 asks the backing
 * file's FUSE server for attributes, and blocks forever when that server
 * is stuck.
 */
#include "config.h"

#include "catalog/restore-internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/loop.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

/* Attempts when another process takes the free device we were given. */
enum { LOOP_RACE_RETRIES = 16 };

static int configure(int loop_fd, int file_fd, uint64_t offset,
                     uint64_t size, const char *tag)
{
    struct loop_config cfg;

    memset(&cfg, 0, sizeof(cfg));
    cfg.fd = (__u32)file_fd;
    cfg.info.lo_offset = offset;
    cfg.info.lo_sizelimit = size;
    cfg.info.lo_flags = LO_FLAGS_AUTOCLEAR;
    snprintf((char *)cfg.info.lo_file_name, sizeof(cfg.info.lo_file_name),
             "%s", tag);
    return ioctl(loop_fd, LOOP_CONFIGURE, &cfg) < 0 ? -errno : 0;
}

/* Take a free device number and configure it; -EBUSY if someone else
 * took it first. */
static int attach_once(int ctl_fd, int file_fd, const char *tag,
                       uint64_t offset, uint64_t size, char name[32],
                       int *ret_fd)
{
    char dev[64];
    int nr = ioctl(ctl_fd, LOOP_CTL_GET_FREE), fd, r;

    if (nr < 0)
        return -errno;
    snprintf(dev, sizeof(dev), "/dev/loop%d", nr);
    fd = open(dev, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    r = configure(fd, file_fd, offset, size, tag);
    if (r < 0) {
        close(fd);
        return r;
    }
    snprintf(name, 32, "loop%d", nr);
    *ret_fd = fd;
    return 0;
}

int rs_loop_attach(const char *file, const char *tag, uint64_t offset,
                   uint64_t size, char name[32], int *ret_fd,
                   struct sd_error *err)
{
    int ctl_fd, file_fd, r = -EBUSY;

    file_fd = open(file, O_RDWR | O_CLOEXEC);
    if (file_fd < 0)
        return sd_error_set(err, -errno, "%s: %s", file, strerror(errno));
    ctl_fd = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
    if (ctl_fd < 0) {
        r = sd_error_set(err, -errno, "/dev/loop-control: %s",
                         strerror(errno));
        goto out_close_file;
    }
    for (int i = 0; i < LOOP_RACE_RETRIES && r == -EBUSY; i++)
        r = attach_once(ctl_fd, file_fd, tag, offset, size, name, ret_fd);
    if (r < 0)
        sd_error_set(err, r, "loop device for %s at %llu: %s", file,
                     (unsigned long long)offset, strerror(-r));
    close(ctl_fd);
out_close_file:
    /* The device holds its own reference to the file. */
    close(file_fd);
    return r;
}

int rs_loop_backing(const char *name, char *buf, size_t len)
{
    char path[128];
    ssize_t n;
    int fd;

    snprintf(path, sizeof(path), "/sys/block/%s/loop/backing_file", name);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? -ENXIO : -errno;
    n = read(fd, buf, len - 1);
    close(fd);
    if (n < 0)
        return -errno;
    while (n > 0 && buf[n - 1] == '\n')
        n--;
    buf[n] = '\0';
    return 0;
}

bool rs_loop_detached(const char *name)
{
    char backing[SD_RESTORE_PATH_MAX];

    return rs_loop_backing(name, backing, sizeof(backing)) == 0 &&
           strcmp(backing, "/" RS_FUSE_FILE) == 0;
}

int rs_loop_foreach_under(const char *dir, bool detached_too,
                          int (*fn)(const char *name, void *opaque),
                          void *opaque)
{
    DIR *d = opendir("/sys/block");
    struct dirent *de;
    char backing[SD_RESTORE_PATH_MAX];
    int r = 0;

    if (!d)
        return -errno;
    while (r == 0 && (de = readdir(d))) {
        if (strncmp(de->d_name, "loop", 4) != 0)
            continue;
        if (rs_loop_backing(de->d_name, backing, sizeof(backing)) < 0)
            continue;
        /* A deleted backing file shows as "PATH (deleted)". */
        if (rs_path_under(backing, dir) ||
            (detached_too && strcmp(backing, "/" RS_FUSE_FILE) == 0))
            r = fn(de->d_name, opaque);
    }
    closedir(d);
    return r;
}

int rs_loop_clear(const char *name)
{
    char dev[64];
    int fd, r = 0;

    snprintf(dev, sizeof(dev), "/dev/%s", name);
    fd = open(dev, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    /* On a busy device this only sets autoclear: it goes at last close. */
    if (ioctl(fd, LOOP_CLR_FD, 0) < 0 && errno != ENXIO)
        r = -errno;
    close(fd);
    return r;
}

static int count_one(const char *name, void *opaque)
{
    (void)name;
    (*(unsigned *)opaque)++;
    return 0;
}

int rs_loop_wait_gone(const char *dir, unsigned timeout_ms)
{
    for (unsigned waited = 0;; waited += 10) {
        unsigned n = 0;
        int r = rs_loop_foreach_under(dir, false, count_one, &n);
        if (r < 0 || n == 0)
            return r;
        if (waited >= timeout_ms)
            return -EBUSY;
        rs_sleep_ms(10);
    }
}
