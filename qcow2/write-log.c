/* SPDX-License-Identifier: MIT */
#include "config.h"

#include "write-log.h"

#include <endian.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/uio.h>
#include <unistd.h>

struct write_log {
    int fd;
};

struct write_log *write_log_open_from_env(void)
{
    const char *path = getenv("SENDENSE_WRITE_LOG");
    struct write_log *log;

    if (!path || !*path)
        return NULL;
    log = calloc(1, sizeof(*log));
    if (!log)
        return NULL;
    log->fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (log->fd < 0) {
        free(log);
        return NULL;
    }
    return log;
}

void write_log_close(struct write_log *log)
{
    if (!log)
        return;
    close(log->fd);
    free(log);
}

void write_log_append(struct write_log *log, enum wlog_type type,
                      uint64_t offset, uint64_t len, const void *data)
{
    struct wlog_record rec = {
        .magic = htole32(WLOG_MAGIC),
        .type = htole32(type),
        .offset = htole64(offset),
        .len = htole64(len),
    };
    struct iovec iov[2] = {
        { .iov_base = &rec, .iov_len = sizeof(rec) },
        { .iov_base = (void *)data, .iov_len = type == WLOG_WRITE ? len : 0 },
    };
    size_t want = iov[0].iov_len + iov[1].iov_len;

    /* Test mode only: a short write here must not pass unnoticed. */
    if (writev(log->fd, iov, 2) != (ssize_t)want)
        abort();
}
