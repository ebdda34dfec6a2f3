/* SPDX-License-Identifier: MIT */
/*
 * Cooperative coroutines for the image engine.
 *
 * Every image operation runs in a coroutine on the thread that owns the
 * image's io_uring. A coroutine that issues I/O yields; the ring's
 * completion handler re-enters it. Nothing here is thread-safe: a
 * coroutine lives and dies on one thread.
 */
#ifndef SENDENSE_COROUTINE_H
#define SENDENSE_COROUTINE_H

#include <stdbool.h>
#include <stddef.h>

struct coroutine;
typedef void co_fn(void *opaque);

/* Create a coroutine that will run fn(opaque) when first entered.
 * Returns NULL on allocation failure. The coroutine frees itself when fn
 * returns. */
struct coroutine *co_create(co_fn *fn, void *opaque);

/* Switch into co until it yields or finishes. */
void co_enter(struct coroutine *co);

/* Give control back to whoever entered the current coroutine. */
void co_yield(void);

/* The running coroutine, or NULL outside any coroutine. */
struct coroutine *co_self(void);

static inline bool co_in_coroutine(void) { return co_self() != NULL; }

/* Wake co later, from the thread's event loop (co_run_ready), never
 * nested inside the caller. */
void co_schedule(struct coroutine *co);

/* Free this thread's pool of finished coroutines (a thread that ends
 * calls it last). */
void co_thread_release_pool(void);

/* How many finished coroutines this thread's pool holds. */
unsigned co_thread_pool_len(void);

/* Enter every scheduled coroutine; returns how many ran. */
unsigned co_run_ready(void);

/* A FIFO wait queue: coroutines sleep on it until woken. */
struct co_queue {
    struct co_waiter *head, *tail;
};

void co_queue_wait(struct co_queue *q);
/* Wake the first (or every) sleeper; returns true if one was woken. */
bool co_queue_wake_one(struct co_queue *q);
void co_queue_wake_all(struct co_queue *q);
static inline bool co_queue_empty(const struct co_queue *q) { return q->head == NULL; }

/* A lock for coroutines: never blocks the thread, only the coroutine. */
struct co_mutex {
    bool locked;
    struct co_queue waiters;
};

void co_mutex_lock(struct co_mutex *m);
void co_mutex_unlock(struct co_mutex *m);

#endif
