/* SPDX-License-Identifier: MIT */
/*
 * Notes on the implementation.
 *
 * A new coroutine's stack is set up once with makecontext/swapcontext;
 * after that every switch is a _setjmp/_longjmp pair, which does not save
 * or restore the signal mask and so costs no system call. Finished
 * coroutines go back to a per-thread pool with their stacks.
 *
 * Under AddressSanitizer each switch is announced with the fiber API so
 * that ASan tracks which stack is live.
 */
#include "config.h"

#include "coroutine.h"

#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <ucontext.h>

#if defined(__SANITIZE_ADDRESS__)
#define CO_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CO_ASAN 1
#endif
#endif

#ifdef CO_ASAN
#include <sanitizer/asan_interface.h>
#endif

/* The pool keeps enough finished coroutines for several multi-connection
 * clients' requests in flight on one thread (nbdcopy keeps 64 per
 * connection): with 64, four nbdcopy connections mapped and unmapped a
 * stack for every third request, and each unmapping in a threaded
 * process interrupts every core to flush its TLB (4 GiB read over four
 * connections: 0.235 CPU s/GiB, 0.20 with the larger pool). Only the
 * pages a stack touched stay resident, a few KiB each. */
enum { CO_STACK_SIZE = 256 * 1024, CO_POOL_MAX = 1024 };

struct coroutine {
    jmp_buf env;
    jmp_buf *caller_env;
    struct coroutine *caller;
    co_fn *fn;
    void *opaque;
    void *stack;
    bool finished;
    struct coroutine *next_ready; /* scheduled list, or pool free list */
    bool scheduled;
    void *fake_stack;             /* ASan bookkeeping only */
    const void *caller_bottom;
    size_t caller_size;
};

struct co_waiter {
    struct coroutine *co;
    struct co_waiter *next;
};

struct co_thread {
    struct coroutine *current;
    jmp_buf leader_env;           /* where the outermost co_enter returns */
    struct coroutine *ready_head, *ready_tail;
    struct coroutine *pool;
    unsigned pool_len;
    ucontext_t boot_caller;       /* only used while a coroutine boots */
    struct coroutine *booting;
};

static _Thread_local struct co_thread co_tls;

static void asan_start_switch(void **fake_save, const void *bottom, size_t size)
{
#ifdef CO_ASAN
    __sanitizer_start_switch_fiber(fake_save, bottom, size);
#else
    (void)fake_save; (void)bottom; (void)size;
#endif
}

static void asan_finish_switch(void *fake_save, const void **old_bottom,
                               size_t *old_size)
{
#ifdef CO_ASAN
    __sanitizer_finish_switch_fiber(fake_save, old_bottom, old_size);
#else
    (void)fake_save; (void)old_bottom; (void)old_size;
#endif
}

/* Running on co's stack, just switched in: learn the caller's stack. */
static void co_arrived(struct coroutine *co)
{
    asan_finish_switch(co->fake_stack, &co->caller_bottom, &co->caller_size);
}

/* About to leave co's stack for its caller's. */
static void co_leaving(struct coroutine *co)
{
    asan_start_switch(co->finished ? NULL : &co->fake_stack,
                      co->caller_bottom, co->caller_size);
}

static void co_trampoline(void)
{
    struct coroutine *volatile co = co_tls.booting;

    ucontext_t unused;

    co_arrived(co);
    /* First arrival: record our jmp_buf and go back to co_boot. */
    if (!_setjmp(co->env)) {
        co_leaving(co);
        swapcontext(&unused, &co_tls.boot_caller);
    }
    for (;;) {
        co_arrived(co);
        co->fn(co->opaque);
        co->finished = true;
        /* Back to our caller; when recycled, we resume here. */
        co_tls.current = co->caller;
        if (!_setjmp(co->env)) {
            co_leaving(co);
            _longjmp(*co->caller_env, 1);
        }
    }
}

/* Stacks are mapped, not malloc'd: only the pages a coroutine touches
 * are resident, the same whatever malloc's threshold for mapping large
 * blocks has drifted to (with stacks from the heap, 1,000 idle
 * connections cost 21 or 33 KiB each depending on what the process had
 * freed before). */
static void *stack_new(void)
{
    void *p = mmap(NULL, CO_STACK_SIZE, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK | MAP_NORESERVE,
                   -1, 0);

    return p == MAP_FAILED ? NULL : p;
}

static void stack_free(void *stack)
{
    if (stack)
        (void)munmap(stack, CO_STACK_SIZE);
}

static struct coroutine *co_boot(void)
{
    struct coroutine *volatile co = calloc(1, sizeof(*co));
    ucontext_t uc;

    if (!co)
        return NULL;
    co->stack = stack_new();
    if (!co->stack || getcontext(&uc) < 0) {
        stack_free(co->stack);
        free(co);
        return NULL;
    }
    uc.uc_stack.ss_sp = co->stack;
    uc.uc_stack.ss_size = CO_STACK_SIZE;
    uc.uc_link = NULL;
    makecontext(&uc, co_trampoline, 0);
    co_tls.booting = co;
    void *fake = NULL;
    asan_start_switch(&fake, co->stack, CO_STACK_SIZE);
    swapcontext(&co_tls.boot_caller, &uc);
    asan_finish_switch(fake, NULL, NULL);
    co_tls.booting = NULL;
    return co;
}

struct coroutine *co_create(co_fn *fn, void *opaque)
{
    struct coroutine *co = co_tls.pool;

    if (co) {
        co_tls.pool = co->next_ready;
        co_tls.pool_len--;
    } else {
        co = co_boot();
        if (!co)
            return NULL;
    }
    co->fn = fn;
    co->opaque = opaque;
    co->finished = false;
    co->scheduled = false;
    co->next_ready = NULL;
    co->caller = NULL;
    co->fake_stack = NULL;
    return co;
}

static void co_release(struct coroutine *co)
{
    if (co_tls.pool_len < CO_POOL_MAX) {
        co->next_ready = co_tls.pool;
        co_tls.pool = co;
        co_tls.pool_len++;
        return;
    }
    stack_free(co->stack);
    free(co);
}

unsigned co_thread_pool_len(void)
{
    return co_tls.pool_len;
}

void co_thread_release_pool(void)
{
    while (co_tls.pool) {
        struct coroutine *co = co_tls.pool;
        co_tls.pool = co->next_ready;
        stack_free(co->stack);
        free(co);
    }
    co_tls.pool_len = 0;
}

void co_enter(struct coroutine *co)
{
    struct coroutine *self = co_tls.current;
    jmp_buf here;
    void *fake = NULL;

    co->caller = self;
    co->caller_env = &here;
    co_tls.current = co;
    if (!_setjmp(here)) {
        asan_start_switch(&fake, co->stack, CO_STACK_SIZE);
        _longjmp(co->env, 1);
    }
    asan_finish_switch(fake, NULL, NULL);
    /* Back here when co yielded or finished. */
    if (co->finished)
        co_release(co);
}

void co_yield(void)
{
    struct coroutine *co = co_tls.current;

    co_tls.current = co->caller;
    if (!_setjmp(co->env)) {
        co_leaving(co);
        _longjmp(*co->caller_env, 1);
    }
    co_arrived(co);
}

struct coroutine *co_self(void)
{
    return co_tls.current;
}

void co_schedule(struct coroutine *co)
{
    if (co->scheduled)
        return;
    co->scheduled = true;
    co->next_ready = NULL;
    if (co_tls.ready_tail)
        co_tls.ready_tail->next_ready = co;
    else
        co_tls.ready_head = co;
    co_tls.ready_tail = co;
}

unsigned co_run_ready(void)
{
    unsigned n = 0;

    while (co_tls.ready_head) {
        struct coroutine *co = co_tls.ready_head;
        co_tls.ready_head = co->next_ready;
        if (!co_tls.ready_head)
            co_tls.ready_tail = NULL;
        co->scheduled = false;
        co->next_ready = NULL;
        co_enter(co);
        n++;
    }
    return n;
}

void co_queue_wait(struct co_queue *q)
{
    struct co_waiter w = { .co = co_self(), .next = NULL };

    if (q->tail)
        q->tail->next = &w;
    else
        q->head = &w;
    q->tail = &w;
    co_yield();
}

bool co_queue_wake_one(struct co_queue *q)
{
    struct co_waiter *w = q->head;

    if (!w)
        return false;
    q->head = w->next;
    if (!q->head)
        q->tail = NULL;
    co_schedule(w->co);
    return true;
}

void co_queue_wake_all(struct co_queue *q)
{
    while (co_queue_wake_one(q))
        ;
}

void co_mutex_lock(struct co_mutex *m)
{
    while (m->locked)
        co_queue_wait(&m->waiters);
    m->locked = true;
}

void co_mutex_unlock(struct co_mutex *m)
{
    m->locked = false;
    co_queue_wake_one(&m->waiters);
}
