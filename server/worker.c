/* SPDX-License-Identifier: MIT */
#include "config.h"

#include "server/worker.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

static _Thread_local struct worker *current_worker;

struct worker *worker_self(void)
{
    return current_worker;
}

static void arm_mailbox(struct worker *w);

static void run_mailbox(struct worker *w)
{
    struct worker_msg *m;

    pthread_mutex_lock(&w->lock);
    m = w->head;
    w->head = w->tail = NULL;
    pthread_mutex_unlock(&w->lock);
    while (m) {
        struct worker_msg *next = m->next;
        bool embedded = m->embedded;
        /* An embedded message may be reused (or freed with its owner) by
         * fn itself, so nothing of it is read after the call. */
        m->fn(m->arg);
        if (!embedded)
            free(m);
        m = next;
    }
}

static void mailbox_event(struct sd_io *io, int res)
{
    struct worker *w = (struct worker *)((char *)io -
                                         offsetof(struct worker, event_io));

    run_mailbox(w);
    if (!w->stopping || res < 0)
        arm_mailbox(w);
}

static void arm_mailbox(struct worker *w)
{
    struct io_uring_sqe *sqe = sd_ring_get_sqe(&w->ring, &w->event_io);

    if (sqe)
        io_uring_prep_read(sqe, w->event_fd, &w->event_value,
                           sizeof(w->event_value), 0);
}

static void trim_done(struct sd_io *io, int res)
{
    struct worker *w = (struct worker *)((char *)io -
                                         offsetof(struct worker, trim_io));

    (void)res;          /* -ETIME when it fired, -ECANCELED at the stop */
    w->trim_armed = false;
    if (!w->stopping)
        (void)buf_pool_trim(&w->bufs);
}

static void trim_cancelled(struct sd_io *io, int res)
{
    (void)io;
    (void)res;
}

/* After each turn of the loop: a pool over its cap gets a trim timer. */
static void maybe_arm_trim(struct worker *w)
{
    if (w->trim_armed || w->stopping || !buf_pool_over_cap(&w->bufs))
        return;
    struct io_uring_sqe *sqe = sd_ring_get_sqe(&w->ring, &w->trim_io);
    if (!sqe)
        return;
    w->trim_ts.tv_sec = WORKER_BUF_TRIM_MS / 1000;
    w->trim_ts.tv_nsec = (WORKER_BUF_TRIM_MS % 1000) * 1000000LL;
    io_uring_prep_timeout(sqe, &w->trim_ts, 0, 0);
    w->trim_armed = true;
}

/* At the stop, so that the loop need not wait a second for the timer. */
static void cancel_trim(struct worker *w)
{
    if (!w->trim_armed)
        return;
    struct io_uring_sqe *sqe = sd_ring_get_sqe(&w->ring, &w->trim_cancel_io);
    if (sqe)
        io_uring_prep_timeout_remove(sqe, (__u64)(uintptr_t)&w->trim_io, 0);
}

int worker_init(struct worker *w, int index, unsigned ring_entries)
{
    int ret;

    memset(w, 0, sizeof(*w));
    w->index = index;
    if (index < 0)
        snprintf(w->name, sizeof(w->name), "control");
    else
        snprintf(w->name, sizeof(w->name), "worker%d", index);
    w->event_io.complete = mailbox_event;
    w->trim_io.complete = trim_done;
    w->trim_cancel_io.complete = trim_cancelled;
    w->event_fd = eventfd(0, EFD_CLOEXEC);
    if (w->event_fd < 0)
        return -errno;
    ret = pthread_mutex_init(&w->lock, NULL);
    if (ret) {
        close(w->event_fd);
        return -ret;
    }
    ret = sd_ring_init_owned(&w->ring, ring_entries);
    if (ret < 0) {
        pthread_mutex_destroy(&w->lock);
        close(w->event_fd);
        return ret;
    }
    buf_pool_init(&w->bufs, WORKER_BUF_POOL_CAP);
    return 0;
}

static void stop_loop(void *arg)
{
    struct worker *w = arg;

    w->stopping = true;
}

int worker_run(struct worker *w)
{
    int ret = sd_ring_own(&w->ring);

    if (ret < 0)
        return ret;
    current_worker = w;
    arm_mailbox(w);
    while (!w->stopping) {
        ret = sd_ring_run_once(&w->ring, true);
        if (ret < 0 && ret != -EINTR)
            return ret;
        maybe_arm_trim(w);
    }
    cancel_trim(w);
    /* Let the mailbox read and the trim timer come back so nothing
     * points into w. */
    while (w->ring.in_flight) {
        uint64_t one = 1;
        if (write(w->event_fd, &one, sizeof(one)) < 0)
            break;
        if (sd_ring_run_once(&w->ring, true) < 0)
            break;
    }
    current_worker = NULL;
    co_thread_release_pool();
    return 0;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;

    pthread_setname_np(pthread_self(), w->name);
    worker_run(w);
    return NULL;
}

int worker_start(struct worker *w)
{
    return -pthread_create(&w->thread, NULL, worker_main, w);
}

void worker_stop_and_join(struct worker *w)
{
    if (worker_post(w, stop_loop, w) == 0 && w->index >= 0)
        pthread_join(w->thread, NULL);
}

void worker_destroy(struct worker *w)
{
    struct worker_msg *m = w->head;

    while (m) {
        struct worker_msg *next = m->next;
        /* An embedded message belongs to its owner. */
        if (!m->embedded)
            free(m);
        m = next;
    }
    while (w->free_reqs) {
        void *next;
        memcpy(&next, w->free_reqs, sizeof(next));
        free(w->free_reqs);
        w->free_reqs = next;
    }
    sd_ring_exit(&w->ring);
    buf_pool_destroy(&w->bufs);
    pthread_mutex_destroy(&w->lock);
    close(w->event_fd);
}

static void enqueue(struct worker *w, struct worker_msg *m)
{
    uint64_t one = 1;
    bool was_empty;

    m->next = NULL;
    pthread_mutex_lock(&w->lock);
    was_empty = w->head == NULL;
    if (w->tail)
        w->tail->next = m;
    else
        w->head = m;
    w->tail = m;
    pthread_mutex_unlock(&w->lock);
    /* One poke per batch: the loop drains the whole list each time. An
     * eventfd write fails only when its counter would overflow, and then
     * a wakeup is pending anyway. */
    if (was_empty) {
        ssize_t n = write(w->event_fd, &one, sizeof(one));
        (void)n;
    }
}

int worker_post(struct worker *w, worker_fn *fn, void *arg)
{
    struct worker_msg *m = malloc(sizeof(*m));

    if (!m)
        return -ENOMEM;
    m->fn = fn;
    m->arg = arg;
    m->embedded = false;
    enqueue(w, m);
    return 0;
}

void worker_post_msg(struct worker *w, struct worker_msg *m, worker_fn *fn,
                     void *arg)
{
    m->fn = fn;
    m->arg = arg;
    m->embedded = true;
    enqueue(w, m);
}

struct spawn {
    worker_fn *fn;
    void *arg;
};

static void spawn_trampoline(void *opaque)
{
    struct spawn s = *(struct spawn *)opaque;

    free(opaque);
    s.fn(s.arg);
}

int worker_spawn(worker_fn *fn, void *arg)
{
    struct spawn *s = malloc(sizeof(*s));
    struct coroutine *co;

    if (!s)
        return -ENOMEM;
    s->fn = fn;
    s->arg = arg;
    co = co_create(spawn_trampoline, s);
    if (!co) {
        free(s);
        return -ENOMEM;
    }
    co_schedule(co);
    return 0;
}
