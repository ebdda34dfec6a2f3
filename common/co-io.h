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

/* now + seconds on CLOCK_MONOTONIC. */
struct timespec co_deadline_in(unsigned seconds);

/* Sleep the coroutine (not the thread). */
int co_sleep_ns(struct sd_ring *r, uint64_t ns);

#endif
