/* SPDX-License-Identifier: MIT */
/*
 * An event-loop thread: one io_uring, the coroutines that run on it, and
 * a mailbox through which other threads hand it work.
 *
 * The server has one control loop (the main thread: listeners, control
 * socket, signals, export registry changes) and N data workers. Each
 * open image belongs to one worker's ring, and every connection to it is
 * moved to that worker once its export is chosen, so the data path of a
 * request never crosses a thread and takes no lock.
 */
#ifndef SENDENSE_SERVER_WORKER_H
#define SENDENSE_SERVER_WORKER_H

#include "common/coroutine.h"
#include "common/ring.h"
#include "server/buf-pool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

typedef void worker_fn(void *arg);

/* A mailbox entry. worker_post() allocates one; a caller that must not
 * fail embeds its own and uses worker_post_msg(). */
struct worker_msg {
    struct worker_msg *next;
    worker_fn *fn;
    void *arg;
    bool embedded;
};

struct worker {
    int index;                  /* -1: the control loop */
    char name[24];
    pthread_t thread;
    struct sd_ring ring;

    /* Mailbox: other threads append under lock and poke the eventfd; the
     * loop reads the eventfd through its ring. The lock guards only the
     * list (taken for a handful of instructions per message). */
    pthread_mutex_t lock;
    struct worker_msg *head, *tail;
    int event_fd;
    uint64_t event_value;
    struct sd_io event_io;

    bool stopping;              /* loop's own thread only */
    atomic_uint n_images;       /* images owned: for placing new ones */
    atomic_uint n_conns;        /* connections served */

    /* This worker's share of the process in-flight budget (bytes). */
    uint64_t budget_max;
    uint64_t budget_used;
    struct co_queue budget_waiters;

    /* Request buffers of the connections this loop serves (their payload
     * and read buffers are got and given back on this thread). While the
     * pool keeps more than its cap, a timeout trims it every
     * WORKER_BUF_TRIM_MS: what a burst left behind goes back within a
     * second or two, and an idle loop has no timer. */
    struct buf_pool bufs;
    /* Request structs of its connections kept for reuse
     * (transmission.c); each one's first word links the next. At QD32 a
     * fresh calloc and free per request missed malloc's per-thread cache
     * (it holds seven of a size). */
    void *free_reqs;
    unsigned n_free_reqs;
    struct sd_io trim_io, trim_cancel_io;
    struct __kernel_timespec trim_ts;
    bool trim_armed;
};

#define WORKER_BUF_TRIM_MS 1000
#define WORKER_FREE_REQS_MAX 256

/* Free request buffers a worker keeps mapped for reuse. */
#define WORKER_BUF_POOL_CAP ((uint64_t)32 << 20)

int worker_init(struct worker *w, int index, unsigned ring_entries);
/* Run the loop on a new thread (data workers). */
int worker_start(struct worker *w);
/* Run the loop on the calling thread until worker_stop() (control). */
int worker_run(struct worker *w);
/* Ask the loop to end once its mailbox is empty; join its thread. */
void worker_stop_and_join(struct worker *w);
void worker_destroy(struct worker *w);

/* Run fn(arg) on w's thread, from its loop (outside any coroutine).
 * Any thread may call it. Returns 0 or -ENOMEM. */
int worker_post(struct worker *w, worker_fn *fn, void *arg);
/* The same with a message the caller owns: it cannot fail, and m must
 * stay valid until fn has been called. */
void worker_post_msg(struct worker *w, struct worker_msg *m, worker_fn *fn,
                     void *arg);

/* Start fn(arg) as a coroutine on the calling thread's loop. */
int worker_spawn(worker_fn *fn, void *arg);

/* The worker whose loop runs on this thread, or NULL. */
struct worker *worker_self(void);

#endif
