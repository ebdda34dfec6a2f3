/* SPDX-License-Identifier: MIT */
/*
 * Read replies whose data goes from the file to the socket without
 * passing through our memory.
 *
 * A plain read reply costs two copies: the file's pages into a buffer
 * (pread), then the buffer into the socket (sendmsg); on a sequential
 * read they were half of the server's CPU. splice(2) moves references to
 * the page-cache pages instead: file -> pipe -> socket, with no copy at
 * all on this side (a unix socket takes the pages as they are; the
 * client's receive is the only copy left). Each connection that reads
 * large ranges of a raw image gets a pipe for it.
 *
 * A reply is a list of pieces: bytes we built (headers, iov_base set) and
 * file ranges (iov_base NULL, offset in file_off). The pieces go out in
 * order. If the file cannot be spliced (a file system without splice
 * support), its range is read and sent the ordinary way; the header is
 * already out, so the data must follow one way or another.
 */
#include "config.h"

#include "common/co-io.h"
#include "common/log.h"
#include "server/conn.h"
#include "server/server.h"
#include "server/worker.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

enum {
    PIPE_WANT = 1 << 20,        /* pages one splice may carry */
    COPY_CHUNK = 256 * 1024,    /* the fallback's read size */
};

bool conn_splice_ready(struct conn *c)
{
    int fds[2], cap;

    if (c->pipe_cap)
        return true;
    if (c->splice_failed || pipe2(fds, O_CLOEXEC) < 0)
        return false;
    /* The default 64 KiB would split a 256 KiB read into four trips;
     * an unprivileged process may be held to less than we ask. */
    (void)fcntl(fds[1], F_SETPIPE_SZ, PIPE_WANT);
    cap = fcntl(fds[1], F_GETPIPE_SZ);
    if (cap <= 0) {
        close(fds[0]);
        close(fds[1]);
        return false;
    }
    c->pipe_rd = fds[0];
    c->pipe_wr = fds[1];
    c->pipe_cap = (size_t)cap;
    return true;
}

void conn_splice_release(struct conn *c)
{
    if (!c->pipe_cap)
        return;
    close(c->pipe_rd);
    close(c->pipe_wr);
    c->pipe_cap = 0;
}

/* Move n bytes from the pipe into the socket. */
static int drain_pipe(struct conn *c, size_t n)
{
    while (n) {
        int k = co_splice(&c->worker->ring, c->pipe_rd, -1, c->fd, n);

        if (k < 0)
            return k;
        if (k == 0)
            return -ECONNRESET;
        n -= (size_t)k;
    }
    return 0;
}

/* The ordinary way, for a file splice refuses: read, then send. Past
 * the end of the file (truncated under us) the range reads as zeros,
 * as the image's own read would give. */
static int send_by_copy(struct conn *c, int fd, uint64_t off, size_t len)
{
    size_t cap = len < COPY_CHUNK ? len : COPY_CHUNK;
    char *buf = buf_pool_get(&c->worker->bufs, cap);
    int ret = 0;

    if (!buf)
        return -ENOMEM;
    while (len && ret == 0) {
        size_t want = len < cap ? len : cap;
        ssize_t n = pread(fd, buf, want, (off_t)off);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            ret = -errno;
            break;
        }
        if (n == 0) {
            memset(buf, 0, want);
            n = (ssize_t)want;
        }
        ret = co_send_all(&c->worker->ring, c->fd, buf, (size_t)n, NULL);
        off += (uint64_t)n;
        len -= (size_t)n;
    }
    buf_pool_put(&c->worker->bufs, buf, cap);
    return ret;
}

/* The range through the pipe, both splices in one trip through the
 * ring; when the file gives less than asked, the rest of the pipe is
 * drained on its own. */
static int splice_range(struct conn *c, int fd, uint64_t off, size_t len)
{
    while (len) {
        size_t want = len < c->pipe_cap ? len : c->pipe_cap;
        int sent = -ECANCELED;
        int n = c->srv->test_splice_fails
                ? -EINVAL
                : co_splice_through(&c->worker->ring, fd, (int64_t)off,
                                    c->pipe_wr, c->pipe_rd, c->fd, want,
                                    &sent);
        int ret = 0;

        if (n <= 0) {
            if (n < 0 && !c->splice_failed) {
                sd_log_warn("%s: splice from the image failed (%s); "
                            "sending copies from now on", c->label,
                            strerror(-n));
                c->splice_failed = true;
            }
            return send_by_copy(c, fd, off, len);
        }
        if (sent < 0 && sent != -ECANCELED)
            return sent;
        if (sent == 0)
            return -ECONNRESET;
        if (sent < n)
            ret = drain_pipe(c, (size_t)(n - (sent > 0 ? sent : 0)));
        if (ret < 0)
            return ret;
        off += (uint64_t)n;
        len -= (size_t)n;
    }
    return 0;
}

int conn_send_spliced(struct conn *c, struct iovec *iov,
                      const uint64_t *file_off, int iovcnt, int fd)
{
    int start = 0;

    for (int i = 0; i <= iovcnt; i++) {
        int ret;

        if (i < iovcnt && iov[i].iov_base)
            continue;
        if (i > start) {
            ret = co_sendmsg_all(&c->worker->ring, c->fd, iov + start,
                                 i - start, NULL);
            if (ret < 0)
                return ret;
        }
        if (i < iovcnt) {
            ret = splice_range(c, fd, file_off[i], iov[i].iov_len);
            if (ret < 0)
                return ret;
        }
        start = i + 1;
    }
    return 0;
}
