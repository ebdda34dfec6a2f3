/* SPDX-License-Identifier: MIT */
/*
 * One io_uring operation, awaited by the running coroutine: the
 * coroutine prepares an SQE, yields, and resumes with the result when
 * the CQE arrives. An optional deadline links a timeout to the
 * operation, so a silent peer cannot hold a coroutine forever; the
 * operation then ends with -ECANCELED and co_io_wait() reports
 * -ETIMEDOUT. Both CQEs have arrived when co_io_wait() returns, so the
 * caller's buffers are free again.
 */
#ifndef SENDENSE_CO_IO_H
#define SENDENSE_CO_IO_H

#include "common/ring.h"

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <time.h>

struct coroutine;

struct co_io_op {
    struct sd_io io;
    struct sd_io timeout_io;
    struct coroutine *co;
    struct io_uring_sqe *sqe;   /* the operation's, until submitted */
    struct __kernel_timespec ts;
    int res;
    int timeout_res;
    unsigned waiting;       /* CQEs still to come */
};

/* An SQE for op; has_deadline reserves room for its linked timeout.
 * NULL only if the ring is broken. */
struct io_uring_sqe *co_io_prepare(struct sd_ring *r, struct co_io_op *op,
                                   bool has_deadline);

/* Submit-side half done: yield until op completes. deadline (CLOCK_
 * MONOTONIC) must be given iff co_io_prepare() was told so. Returns the
 * CQE result, or -ETIMEDOUT when the deadline passed first. */
int co_io_wait(struct sd_ring *r, struct co_io_op *op,
               const struct timespec *deadline);

/* One recv(2): the bytes received (> 0), -ECONNRESET when the peer
 * closed, or a negative errno. */
int co_recv_some(struct sd_ring *r, int fd, void *buf, size_t len,
                 int flags, const struct timespec *deadline);

/* Whole transfers on a socket, continuing after short ones. Return 0,
 * -ECONNRESET when the peer closed (recv got 0), or a negative errno. */
int co_recv_all(struct sd_ring *r, int fd, void *buf, size_t len,
                const struct timespec *deadline);
int co_send_all(struct sd_ring *r, int fd, const void *buf, size_t len,
                const struct timespec *deadline);
/* Sends every byte the iovecs hold; iov is modified as it goes. */
int co_sendmsg_all(struct sd_ring *r, int fd, struct iovec *iov, int iovcnt,
                   const struct timespec *deadline);

/* One splice(2) through the ring (off -1: the descriptor has no offset,
 * a pipe or socket): the bytes moved, 0 at the end of a file, or a
 * negative errno. */
int co_splice(struct sd_ring *r, int fd_in, int64_t off_in, int fd_out,
              size_t len);

/* File to pipe to fd_out in one submission, the second splice linked to
 * the first (one trip through the ring instead of two). Returns what
 * the first moved (0 at the end of the file, or a negative errno); *out
 * gets what the second moved, or -ECANCELED when the first moved less
 * than len and the second did not run (the pipe then holds the bytes
 * the first moved). */
int co_splice_through(struct sd_ring *r, int fd_in, int64_t off_in,
                      int pipe_wr, int pipe_rd, int fd_out, size_t len,
                      int *out);

/* now + seconds on CLOCK_MONOTONIC. */
struct timespec co_deadline_in(unsigned seconds);

/* Sleep the coroutine (not the thread). */
int co_sleep_ns(struct sd_ring *r, uint64_t ns);

#endif
