/* SPDX-License-Identifier: MIT */
#include "config.h"

#include "common/unix-socket.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

enum { LISTEN_BACKLOG = 1024 };

int sd_mkdir_p(const char *path, unsigned mode, struct sd_error *err)
{
    char *copy = strdup(path);
    int ret = copy ? 0 : sd_error_set(err, -ENOMEM, "out of memory");

    for (char *p = copy ? copy + 1 : NULL; ret == 0; p++) {
        bool end = *p == '\0';

        if (*p != '/' && !end)
            continue;
        *p = '\0';
        if (mkdir(copy, (mode_t)mode) < 0 && errno != EEXIST)
            ret = sd_error_set(err, -errno, "mkdir %s: %s", copy,
                               strerror(errno));
        if (end)
            break;
        *p = '/';
    }
    free(copy);
    return ret;
}

static int make_parent_dir(const char *path, struct sd_error *err)
{
    char *copy = strdup(path);
    char *slash = copy ? strrchr(copy, '/') : NULL;
    int ret = copy ? 0 : sd_error_set(err, -ENOMEM, "out of memory");

    if (slash && slash != copy) {
        *slash = '\0';
        ret = sd_mkdir_p(copy, 0755, err);
    }
    free(copy);
    return ret;
}

/* A socket file nobody answers on was left by a killed process: remove
 * it. One somebody answers on belongs to a live daemon: refuse. */
static int clear_stale_socket(const struct sockaddr_un *sa,
                              struct sd_error *err)
{
    const char *path = sa->sun_path;
    struct stat st;
    int probe, ret = 0;

    if (lstat(path, &st) < 0)
        return errno == ENOENT ? 0
             : sd_error_set(err, -errno, "%s: %s", path, strerror(errno));
    if (!S_ISSOCK(st.st_mode))
        return sd_error_set(err, -EEXIST, "%s exists and is not a socket",
                            path);
    probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (probe < 0)
        return sd_error_set(err, -errno, "socket: %s", strerror(errno));
    if (connect(probe, (const struct sockaddr *)sa, sizeof(*sa)) == 0)
        ret = sd_error_set(err, -EADDRINUSE, "%s: another daemon is "
                           "listening there", path);
    else if (unlink(path) < 0 && errno != ENOENT)
        ret = sd_error_set(err, -errno, "%s: %s", path, strerror(errno));
    close(probe);
    return ret;
}

int sd_unix_listen(const char *path, unsigned mode, int *out,
                   struct sd_error *err)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    int fd, ret;

    if (strlen(path) >= sizeof(sa.sun_path))
        return sd_error_set(err, -ENAMETOOLONG, "%s: unix socket path too "
                            "long (at most %zu bytes)", path,
                            sizeof(sa.sun_path) - 1);
    memcpy(sa.sun_path, path, strlen(path) + 1);
    ret = make_parent_dir(path, err);
    if (ret == 0)
        ret = clear_stale_socket(&sa, err);
    if (ret < 0)
        return ret;
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return sd_error_set(err, -errno, "socket: %s", strerror(errno));
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
        chmod(path, (mode_t)mode) < 0 || listen(fd, LISTEN_BACKLOG) < 0) {
        ret = -errno;
        close(fd);
        return sd_error_set(err, ret, "%s: %s", path, strerror(-ret));
    }
    *out = fd;
    return 0;
}

bool sd_unix_peer_allowed(int fd, unsigned *uid)
{
    struct ucred cred;
    socklen_t len = sizeof(cred);

    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
        return false;
    *uid = cred.uid;
    return cred.uid == 0 || cred.uid == geteuid();
}
