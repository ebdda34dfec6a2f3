/* SPDX-License-Identifier: MIT */
#include "config.h"

#include "co-io.h"
#include "coroutine.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/uio.h>

static void op_complete(struct sd_io *io, int res)
{
    struct co_io_op *op = (struct co_io_op *)io;

    op->res = res;
    if (--op->waiting == 0)
        co_schedule(op->co);
}

static void op_timeout_complete(struct sd_io *io, int res)
{
    struct co_io_op *op =
        (struct co_io_op *)((char *)io - offsetof(struct co_io_op, timeout_io));

    op->timeout_res = res;
    if (--op->waiting == 0)
        co_schedule(op->co);
}

struct io_uring_sqe *co_io_prepare(struct sd_ring *r, struct co_io_op *op,
                                   bool has_deadline)
{
    memset(op, 0, sizeof(*op));
    op->io.complete = op_complete;
    op->timeout_io.complete = op_timeout_complete;
    /* A linked pair must go in one submission: make room for both now,
     * or the operation could be submitted without its timeout. */
    if (has_deadline && io_uring_sq_space_left(&r->uring) < 2 &&
        io_uring_submit(&r->uring) < 0)
        return NULL;
    op->sqe = sd_ring_get_sqe(r, &op->io);
    return op->sqe;
}

static void remaining_time(const struct timespec *deadline,
                           struct __kernel_timespec *ts)
{
    struct timespec now;
    int64_t ns;

    clock_gettime(CLOCK_MONOTONIC, &now);
    ns = (int64_t)(deadline->tv_sec - now.tv_sec) * 1000000000 +
         (deadline->tv_nsec - now.tv_nsec);
    if (ns < 1)
        ns = 1;
    ts->tv_sec = ns / 1000000000;
    ts->tv_nsec = ns % 1000000000;
}

int co_io_wait(struct sd_ring *r, struct co_io_op *op,
               const struct timespec *deadline)
{
    op->co = co_self();
    op->waiting = 1;
    if (deadline) {
        struct io_uring_sqe *sqe;

        op->sqe->flags |= IOSQE_IO_LINK;
        remaining_time(deadline, &op->ts);
        sqe = sd_ring_get_sqe(r, &op->timeout_io);
        io_uring_prep_link_timeout(sqe, &op->ts, 0);
        op->waiting = 2;
    }
    while (op->waiting)
        co_yield();
    if (deadline && op->res == -ECANCELED && op->timeout_res == -ETIME)
        return -ETIMEDOUT;
    return op->res;
}

int co_recv_some(struct sd_ring *r, int fd, void *buf, size_t len,
                 int flags, const struct timespec *deadline)
{
    for (;;) {
        struct co_io_op op;
        struct io_uring_sqe *sqe = co_io_prepare(r, &op, deadline != NULL);
        int n;

        if (!sqe)
            return -EIO;
        io_uring_prep_recv(sqe, fd, buf, len, flags);
        n = co_io_wait(r, &op, deadline);
        if (n == -EINTR || n == -EAGAIN)
            continue;
        return n == 0 ? -ECONNRESET : n;
    }
}

int co_recv_all(struct sd_ring *r, int fd, void *buf, size_t len,
                const struct timespec *deadline)
{
    char *p = buf;

    while (len) {
        int n = co_recv_some(r, fd, p, len, MSG_WAITALL, deadline);
        if (n < 0)
            return n;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int co_send_all(struct sd_ring *r, int fd, const void *buf, size_t len,
                const struct timespec *deadline)
{
    struct iovec iov = { (void *)buf, len };

    return co_sendmsg_all(r, fd, &iov, 1, deadline);
}

static void advance_iov(struct iovec **iov, int *iovcnt, size_t n)
{
    while (n && *iovcnt) {
        if (n < (*iov)->iov_len) {
            (*iov)->iov_base = (char *)(*iov)->iov_base + n;
            (*iov)->iov_len -= n;
            return;
        }
        n -= (*iov)->iov_len;
        (*iov)++;
        (*iovcnt)--;
    }
    while (*iovcnt && (*iov)->iov_len == 0) {
        (*iov)++;
        (*iovcnt)--;
    }
}

int co_sendmsg_all(struct sd_ring *r, int fd, struct iovec *iov, int iovcnt,
                   const struct timespec *deadline)
{
    advance_iov(&iov, &iovcnt, 0);
    while (iovcnt) {
        struct msghdr msg = { .msg_iov = iov, .msg_iovlen = (size_t)iovcnt };
        struct co_io_op op;
        struct io_uring_sqe *sqe = co_io_prepare(r, &op, deadline != NULL);

        if (!sqe)
            return -EIO;
        io_uring_prep_sendmsg(sqe, fd, &msg, MSG_NOSIGNAL);
        int n = co_io_wait(r, &op, deadline);
        if (n == -EINTR || n == -EAGAIN)
            continue;
        if (n < 0)
            return n;
        if (n == 0)
            return -ECONNRESET;
        advance_iov(&iov, &iovcnt, (size_t)n);
    }
    return 0;
}

int co_splice(struct sd_ring *r, int fd_in, int64_t off_in, int fd_out,
              size_t len)
{
    for (;;) {
        struct co_io_op op;
        struct io_uring_sqe *sqe = co_io_prepare(r, &op, false);
        int n;

        if (!sqe)
            return -EIO;
        io_uring_prep_splice(sqe, fd_in, off_in, fd_out, -1,
                             len > INT32_MAX ? INT32_MAX : (unsigned)len,
                             SPLICE_F_MOVE);
        n = co_io_wait(r, &op, NULL);
        if (n != -EINTR && n != -EAGAIN)
            return n;
    }
}

int co_splice_through(struct sd_ring *r, int fd_in, int64_t off_in,
                      int pipe_wr, int pipe_rd, int fd_out, size_t len,
                      int *out)
{
    unsigned n = len > INT32_MAX ? INT32_MAX : (unsigned)len;
    struct co_io_op first, second;
    struct io_uring_sqe *in, *to;

    /* Both in one submission, or the link would be cut. */
    if (io_uring_sq_space_left(&r->uring) < 2 &&
        io_uring_submit(&r->uring) < 0)
        return -EIO;
    in = co_io_prepare(r, &first, false);
    if (!in)
        return -EIO;
    io_uring_prep_splice(in, fd_in, off_in, pipe_wr, -1, n, SPLICE_F_MOVE);
    first.co = co_self();
    first.waiting = 1;
    to = co_io_prepare(r, &second, false);
    if (to) {
        in->flags |= IOSQE_IO_LINK;
        io_uring_prep_splice(to, pipe_rd, -1, fd_out, -1, n, SPLICE_F_MOVE);
        second.co = co_self();
        second.waiting = 1;
    } else {                    /* not with the room made above */
        second.res = -ECANCELED;
    }
    /* Both have completed before this frame (their ops) goes. */
    while (first.waiting || second.waiting)
        co_yield();
    *out = second.res;
    return first.res;
}

struct timespec co_deadline_in(unsigned seconds)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += seconds;
    return ts;
}

int co_sleep_ns(struct sd_ring *r, uint64_t ns)
{
    struct co_io_op op;
    struct io_uring_sqe *sqe = co_io_prepare(r, &op, false);

    if (!sqe)
        return -EIO;
    op.ts.tv_sec = (long long)(ns / 1000000000u);
    op.ts.tv_nsec = (long long)(ns % 1000000000u);
    io_uring_prep_timeout(sqe, &op.ts, 0, 0);
    int ret = co_io_wait(r, &op, NULL);
    return ret == -ETIME ? 0 : ret;
}
