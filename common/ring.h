/* SPDX-License-Identifier: MIT */
/*
 * The io_uring a thread owns, and the completion convention every part
 * follows: an SQE's user_data is a pointer to a struct sd_io whose
 * complete() is called with cqe->res when the CQE arrives.
 */
#ifndef SENDENSE_RING_H
#define SENDENSE_RING_H

#include <liburing.h>
#include <stdbool.h>

struct sd_io;
typedef void sd_io_complete_fn(struct sd_io *io, int res);

struct sd_io {
    sd_io_complete_fn *complete;
};

struct sd_ring {
    struct io_uring uring;
    unsigned in_flight;     /* SQEs handed out whose CQE has not arrived */
    bool disabled;          /* sd_ring_init_owned: until sd_ring_own */
};

int sd_ring_init(struct sd_ring *r, unsigned entries);
/* A ring one thread will own, set up on another (a worker's, made before
 * its thread starts): only its owner submits to it, so completion work
 * can wait until the owner asks for completions (DEFER_TASKRUN), which
 * saves waking it for work it would do on its next wait anyway. It stays
 * disabled until the owner calls sd_ring_own(). Kernels before 6.1 get
 * a ring as sd_ring_init() makes it. */
int sd_ring_init_owned(struct sd_ring *r, unsigned entries);
/* Called by the owner thread before it first submits. */
int sd_ring_own(struct sd_ring *r);
void sd_ring_exit(struct sd_ring *r);

/* An SQE bound to io; submits queued SQEs first if the queue is full.
 * Never returns NULL unless the ring is broken. */
struct io_uring_sqe *sd_ring_get_sqe(struct sd_ring *r, struct sd_io *io);

/* Submit what is queued, wait for at least one completion if wait is
 * true, dispatch every completion that is ready, then run the coroutines
 * those completions scheduled. Returns the number of completions or a
 * negative errno. */
int sd_ring_run_once(struct sd_ring *r, bool wait);

#endif
