/* SPDX-License-Identifier: MIT */
#include "config.h"

#include "atomic-file.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define TEMP_SUFFIX ".tmp"
#define TEMP_RANDOM "XXXXXX"

/* Split path into its folder ("." when there is none) and base name. */
static int split_path(const char *path, char *dir, size_t dir_size,
                      const char **base)
{
    const char *slash = strrchr(path, '/');

    if (!slash) {
        snprintf(dir, dir_size, ".");
        *base = path;
    } else {
        size_t n = slash == path ? 1 : (size_t)(slash - path);
        if (n >= dir_size)
            return -ENAMETOOLONG;
        memcpy(dir, path, n);
        dir[n] = '\0';
        *base = slash + 1;
    }
    return **base ? 0 : -EINVAL;
}

int sd_fsync_dir(const char *dir, struct sd_error *err)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int ret = 0;

    if (fd < 0)
        return sd_error_set(err, -errno, "%s: %s", dir, strerror(errno));
    if (fsync(fd) < 0)
        ret = sd_error_set(err, -errno, "fsync %s: %s", dir, strerror(errno));
    close(fd);
    return ret;
}

static int write_all(int fd, const void *data, size_t len)
{
    const char *p = data;

    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Fill the temporary file and make its contents durable. */
static int fill_temp(int fd, const void *data, size_t len, mode_t mode)
{
    int ret = write_all(fd, data, len);

    if (ret < 0)
        return ret;
    /* mkstemps creates 0600; the target gets the mode asked for. */
    if (fchmod(fd, mode) < 0 || fsync(fd) < 0)
        return -errno;
    return 0;
}

int sd_atomic_write(const char *path, const void *data, size_t len,
                    mode_t mode, struct sd_error *err)
{
    char dir[PATH_MAX], tmp[PATH_MAX];
    const char *base;
    int ret = split_path(path, dir, sizeof(dir), &base);

    if (ret < 0)
        return sd_error_set(err, ret, "%s: not a file path", path);
    int n = snprintf(tmp, sizeof(tmp), "%.*s.%s." TEMP_RANDOM TEMP_SUFFIX,
                     (int)(base - path), path, base);
    if (n < 0 || (size_t)n >= sizeof(tmp))
        return sd_error_set(err, -ENAMETOOLONG, "%s: name too long", path);
    int fd = mkostemps(tmp, (int)strlen(TEMP_SUFFIX), O_CLOEXEC);
    if (fd < 0)
        return sd_error_set(err, -errno, "create temporary file for %s: %s",
                            path, strerror(errno));
    ret = fill_temp(fd, data, len, mode);
    if (close(fd) < 0 && ret == 0)
        ret = -errno;
    if (ret < 0) {
        sd_error_set(err, ret, "write %s: %s", tmp, strerror(-ret));
        goto out_unlink;
    }
    if (rename(tmp, path) < 0) {
        ret = sd_error_set(err, -errno, "rename %s to %s: %s", tmp, path,
                           strerror(errno));
        goto out_unlink;
    }
    return sd_fsync_dir(dir, err);

out_unlink:
    (void)unlink(tmp);
    return ret;
}

int sd_durable_remove(const char *path, struct sd_error *err)
{
    char dir[PATH_MAX];
    const char *base;
    int ret = split_path(path, dir, sizeof(dir), &base);

    if (ret < 0)
        return sd_error_set(err, ret, "%s: not a file path", path);
    if (unlink(path) < 0)
        return sd_error_set(err, -errno, "remove %s: %s", path,
                            strerror(errno));
    return sd_fsync_dir(dir, err);
}

int sd_durable_mkdir(const char *dir, struct sd_error *err)
{
    char parent[PATH_MAX];
    const char *base;
    int ret = split_path(dir, parent, sizeof(parent), &base);

    if (ret < 0)
        return sd_error_set(err, ret, "%s: not a folder path", dir);
    if (mkdir(dir, 0755) < 0) {
        struct stat st;
        if (errno != EEXIST)
            return sd_error_set(err, -errno, "mkdir %s: %s", dir,
                                strerror(errno));
        if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode))
            return sd_error_set(err, -ENOTDIR, "%s: exists and is not a "
                                "folder", dir);
    }
    /* Also when it existed: an earlier mkdir may have died before its
     * parent was synced. */
    return sd_fsync_dir(parent, err);
}

int sd_durable_mkdir_parents(const char *dir, struct sd_error *err)
{
    char parent[PATH_MAX];
    const char *base;
    struct stat st;
    int ret;

    if (stat(dir, &st) == 0 || errno != ENOENT)
        return sd_durable_mkdir(dir, err);
    ret = split_path(dir, parent, sizeof(parent), &base);
    if (ret < 0)
        return sd_error_set(err, ret, "%s: not a folder path", dir);
    if (strcmp(parent, dir) != 0 && strcmp(parent, "/") != 0 &&
        strcmp(parent, ".") != 0) {
        ret = sd_durable_mkdir_parents(parent, err);
        if (ret < 0)
            return ret;
    }
    return sd_durable_mkdir(dir, err);
}

bool sd_atomic_is_temp_name(const char *name)
{
    size_t len = strlen(name);
    size_t tail = strlen("." TEMP_RANDOM TEMP_SUFFIX);

    /* "." + at least one character of the target + tail */
    if (name[0] != '.' || len < 2 + tail)
        return false;
    if (strcmp(name + len - strlen(TEMP_SUFFIX), TEMP_SUFFIX) != 0)
        return false;
    return name[len - tail] == '.';
}
