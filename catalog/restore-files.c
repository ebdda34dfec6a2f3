/* SPDX-License-Identifier: MIT */
/*
 * Reading files out of a mounted volume.
 *
 * The guest file system is untrusted: a symlink may point at /etc on the
 * host, "../.." may climb out. Every path is resolved with openat2()
 * from the volume's root with RESOLVE_BENEATH (no escape by "..",
 * absolute or relative symlinks), RESOLVE_NO_MAGICLINKS (no /proc
 * tricks) and RESOLVE_NO_XDEV (no other mount). The final component is
 * never followed when it is a symlink. A directory archive is made by
 * tar started *inside* the already opened directory (fchdir), so the
 * path is never resolved again, and tar stores symlinks as links.
 */
#include "config.h"

#include "catalog/restore-internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static int open_beneath(int root, const char *path, int flags)
{
    struct open_how how = {
        .flags = (uint64_t)(flags | O_CLOEXEC),
        .resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV,
    };
    long fd;

    while (*path == '/')
        path++;
    do
        fd = syscall(SYS_openat2, root, *path ? path : ".", &how,
                     sizeof(how));
    while (fd < 0 && errno == EAGAIN);
    return fd < 0 ? -errno : (int)fd;
}

/* Open path in volume vol with flags. */
static int open_in(const struct sd_restore_point *pt, size_t vol,
                   const char *path, int flags, struct sd_error *err)
{
    const struct sd_restore_volume *v = sd_restore_volume_get(pt, vol);
    int root, fd;

    if (!v || !v->mounted)
        return sd_error_set(err, -ENOENT, "volume %zu is not mounted", vol);
    root = open(v->mountpoint, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (root < 0)
        return sd_error_set(err, -errno, "%s: %s", v->name, strerror(errno));
    fd = open_beneath(root, path, flags);
    close(root);
    if (fd < 0)
        return sd_error_set(err, fd, "%s:%s: %s%s", v->name, path,
                            strerror(-fd), fd == -EXDEV ?
                            " (leads out of the volume)" : "");
    return fd;
}

static enum sd_restore_ftype ftype(mode_t mode)
{
    if (S_ISREG(mode))
        return SD_RESTORE_FILE;
    if (S_ISDIR(mode))
        return SD_RESTORE_DIR;
    if (S_ISLNK(mode))
        return SD_RESTORE_SYMLINK;
    return SD_RESTORE_OTHER;
}

static void fill_entry(struct sd_restore_entry *e, const char *name,
                       const struct stat *st)
{
    snprintf(e->name, sizeof(e->name), "%s", name);
    e->type = ftype(st->st_mode);
    e->size = (uint64_t)st->st_size;
    e->mode = st->st_mode;
    e->mtime = (int64_t)st->st_mtim.tv_sec;
}

int sd_restore_stat(const struct sd_restore_point *pt, size_t vol,
                    const char *path, struct sd_restore_entry *ret,
                    struct sd_error *err)
{
    const char *base = strrchr(path, '/');
    struct stat st;
    int fd = open_in(pt, vol, path, O_PATH | O_NOFOLLOW, err);

    if (fd < 0)
        return fd;
    if (fstatat(fd, "", &st, AT_EMPTY_PATH) < 0) {
        int r = -errno;
        close(fd);
        return sd_error_set(err, r, "%s: %s", path, strerror(-r));
    }
    close(fd);
    fill_entry(ret, base ? base + 1 : path, &st);
    return 0;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(((const struct sd_restore_entry *)a)->name,
                  ((const struct sd_restore_entry *)b)->name);
}

/* Append one entry of directory d to the array. */
static int add_entry(DIR *d, const char *name, struct sd_restore_entry **v,
                     size_t *n, size_t *cap)
{
    struct stat st;

    if (fstatat(dirfd(d), name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return -errno;
    if (*n == SD_RESTORE_MAX_ENTRIES)
        return -E2BIG;
    if (*n == *cap) {
        size_t ncap = *cap ? *cap * 2 : 64;
        void *nv = realloc(*v, ncap * sizeof(**v));
        if (!nv)
            return -ENOMEM;
        *v = nv;
        *cap = ncap;
    }
    fill_entry(&(*v)[(*n)++], name, &st);
    return 0;
}

int sd_restore_list(const struct sd_restore_point *pt, size_t vol,
                    const char *path, struct sd_restore_entry **ret,
                    size_t *ret_count, struct sd_error *err)
{
    struct sd_restore_entry *v = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    int fd = open_in(pt, vol, path, O_RDONLY | O_DIRECTORY, err), r = 0;
    DIR *d;

    if (fd < 0)
        return fd;
    d = fdopendir(fd);
    if (!d) {
        close(fd);
        return sd_error_set(err, -errno, "%s: %s", path, strerror(errno));
    }
    while (r == 0 && (de = readdir(d)))
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
            r = add_entry(d, de->d_name, &v, &n, &cap);
    closedir(d);
    if (r < 0) {
        free(v);
        return sd_error_set(err, r, "%s: %s", path, strerror(-r));
    }
    if (n > 1)
        qsort(v, n, sizeof(*v), by_name);
    *ret = v;
    *ret_count = n;
    return 0;
}

static int write_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t w = write(fd, buf, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -errno;
        buf += w;
        len -= (size_t)w;
    }
    return 0;
}

static int copy_fd(int in, int out)
{
    static const size_t BUF = 1 << 20;
    char *buf = malloc(BUF);
    int r = 0;

    if (!buf)
        return -ENOMEM;
    for (;;) {
        ssize_t n = read(in, buf, BUF);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            r = n < 0 ? -errno : 0;
            break;
        }
        r = write_all(out, buf, (size_t)n);
        if (r < 0)
            break;
    }
    free(buf);
    return r;
}

int sd_restore_extract_file(const struct sd_restore_point *pt, size_t vol,
                            const char *path, int out_fd,
                            struct sd_error *err)
{
    struct stat st;
    /* O_NONBLOCK: opening a FIFO must not wait for a writer. */
    int fd = open_in(pt, vol, path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK, err);
    int r;

    if (fd < 0)
        return fd;
    if (fstat(fd, &st) < 0) {
        r = sd_error_set(err, -errno, "%s: %s", path, strerror(errno));
    } else if (!S_ISREG(st.st_mode)) {
        r = sd_error_set(err, -EINVAL, "%s: not a regular file", path);
    } else {
        r = copy_fd(fd, out_fd);
        if (r < 0)
            sd_error_set(err, r, "copying %s: %s", path, strerror(-r));
    }
    close(fd);
    return r;
}

/* tar's complaint, for an error message. */
static void read_errtext(int fd, char *buf, size_t len)
{
    ssize_t n = pread(fd, buf, len - 1, 0);

    buf[n > 0 ? n : 0] = '\0';
    for (char *c = buf; *c; c++)
        if (*c == '\n')
            *c = ' ';
}

int sd_restore_extract_tar(const struct sd_restore_point *pt, size_t vol,
                           const char *path, int out_fd,
                           struct sd_error *err)
{
    const char *const argv[] = { "tar", "--create", "--file=-",
                                 "--one-file-system", "--numeric-owner",
                                 "--", ".", NULL };
    int dir = open_in(pt, vol, path, O_RDONLY | O_DIRECTORY, err);
    int errfd, r, status;
    char why[200];
    pid_t pid;

    if (dir < 0)
        return dir;
    errfd = memfd_create("tar-stderr", MFD_CLOEXEC);
    if (errfd < 0) {
        close(dir);
        return sd_error_set(err, -errno, "memfd: %s", strerror(errno));
    }
    r = rs_spawn(argv, dir, out_fd, errfd, NULL, &pid, err);
    if (r == 0)
        r = rs_wait(pid, -1, &status);
    if (r == 0 && !(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
        read_errtext(errfd, why, sizeof(why));
        r = sd_error_set(err, -EIO, "tar of %s failed: %s", path,
                         why[0] ? why : "no message");
    } else if (r < 0 && err && err->code == 0) {
        sd_error_set(err, r, "tar of %s: %s", path, strerror(-r));
    }
    close(errfd);
    close(dir);
    return r;
}
