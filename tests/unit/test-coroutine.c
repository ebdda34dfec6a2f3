/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of common/coroutine.c: switching, scheduling, wait queues,
 * the mutex, the pool of finished coroutines, stack depth and nesting.
 *
 * Each test records what ran, in order, in a trace and compares it with
 * the order the API promises.
 */
#include "config.h"

#include "common/coroutine.h"
#include "leak-check.h"

#include <criterion/criterion.h>
#include <stdint.h>
#include <string.h>

enum { TRACE_MAX = 4096 };

static int trace[TRACE_MAX];
static unsigned trace_len;

static void note(int v)
{
    cr_assert_lt(trace_len, TRACE_MAX);
    trace[trace_len++] = v;
}

static void expect_trace(const int *want, unsigned n)
{
    cr_assert_eq(trace_len, n, "trace has %u entries, expected %u", trace_len, n);
    for (unsigned i = 0; i < n; i++)
        cr_assert_eq(trace[i], want[i], "trace[%u] = %d, expected %d",
                     i, trace[i], want[i]);
}

#define EXPECT_TRACE(...) do {                                   \
        const int want_[] = { __VA_ARGS__ };                     \
        expect_trace(want_, sizeof(want_) / sizeof(want_[0]));   \
    } while (0)

/* ---- create, enter, yield ---------------------------------------- */

struct stepper {
    struct coroutine *self;
    int id;
    int steps;
    bool done;
};

static void stepper_fn(void *opaque)
{
    struct stepper *s = opaque;

    cr_assert_eq(co_self(), s->self, "co_self() inside is not the coroutine");
    cr_assert(co_in_coroutine());
    for (int i = 0; i < s->steps; i++) {
        note(s->id * 100 + i);
        co_yield();
        cr_assert_eq(co_self(), s->self, "co_self() changed across a yield");
    }
    note(s->id * 100 + 99);
    s->done = true;
}

static struct stepper *new_stepper(struct stepper *s, int id, int steps)
{
    *s = (struct stepper){ .id = id, .steps = steps };
    s->self = co_create(stepper_fn, s);
    cr_assert_not_null(s->self);
    return s;
}

Test(coroutine, enter_yield_reenter_finish)
{
    struct stepper s;

    cr_assert_null(co_self());
    cr_assert(!co_in_coroutine());
    new_stepper(&s, 1, 2);
    cr_assert_eq(trace_len, 0, "co_create must not run the function");
    co_enter(s.self);
    cr_assert_null(co_self(), "co_self() after a yield must be the caller's");
    EXPECT_TRACE(100);
    co_enter(s.self);
    EXPECT_TRACE(100, 101);
    cr_assert(!s.done);
    co_enter(s.self);
    EXPECT_TRACE(100, 101, 199);
    cr_assert(s.done);
    cr_assert_null(co_self());
}

/* Local state of the coroutine survives every switch. */
struct accumulator {
    uint64_t result;
};

static void accumulate_fn(void *opaque)
{
    struct accumulator *a = opaque;
    volatile uint64_t sum = 0;

    for (uint64_t i = 1; i <= 50; i++) {
        sum += i * i;
        co_yield();
    }
    a->result = sum;
}

Test(coroutine, locals_survive_yields)
{
    struct accumulator a = { 0 };
    struct coroutine *co = co_create(accumulate_fn, &a);

    cr_assert_not_null(co);
    for (int i = 0; i <= 50; i++)
        co_enter(co);
    cr_assert_eq(a.result, 50 * 51 * 101 / 6);
}

Test(coroutine, many_interleaved)
{
    enum { N = 100, STEPS = 5 };
    static struct stepper s[N];

    for (int i = 0; i < N; i++)
        new_stepper(&s[i], i, STEPS);
    for (int round = 0; round <= STEPS; round++)
        for (int i = 0; i < N; i++)
            co_enter(s[i].self);
    /* Round-robin: every coroutine's k-th step before anyone's k+1-th. */
    unsigned k = 0;
    for (int round = 0; round <= STEPS; round++)
        for (int i = 0; i < N; i++, k++)
            cr_assert_eq(trace[k], i * 100 + (round == STEPS ? 99 : round),
                         "trace[%u] = %d", k, trace[k]);
    cr_assert_eq(trace_len, N * (STEPS + 1));
    for (int i = 0; i < N; i++)
        cr_assert(s[i].done);
}

/* ---- co_schedule and co_run_ready ---------------------------------- */

Test(coroutine, run_ready_runs_in_schedule_order)
{
    struct stepper a, b, c;

    new_stepper(&a, 1, 1);
    new_stepper(&b, 2, 1);
    new_stepper(&c, 3, 1);
    cr_assert_eq(co_run_ready(), 0, "nothing is scheduled yet");
    co_schedule(c.self);
    co_schedule(a.self);
    co_schedule(b.self);
    co_schedule(c.self);            /* already queued: keeps its place */
    cr_assert_eq(trace_len, 0, "co_schedule must not run anything");
    cr_assert_eq(co_run_ready(), 3);
    EXPECT_TRACE(300, 100, 200);
    cr_assert_eq(co_run_ready(), 0, "each schedule wakes a coroutine once");
    co_schedule(b.self);
    co_schedule(a.self);
    cr_assert_eq(co_run_ready(), 2);
    EXPECT_TRACE(300, 100, 200, 299, 199);
    cr_assert(a.done && b.done && !c.done);
    co_schedule(c.self);
    cr_assert_eq(co_run_ready(), 1);
    cr_assert(c.done);
}

/* A coroutine that schedules another does not run it on the spot; the
 * scheduled one runs later in the same co_run_ready pass. */
struct scheduler_arg {
    struct coroutine *other;
};

static void scheduling_fn(void *opaque)
{
    struct scheduler_arg *arg = opaque;

    note(1);
    co_schedule(arg->other);
    note(2);
}

Test(coroutine, schedule_from_inside_is_deferred)
{
    struct stepper victim;
    struct scheduler_arg arg;

    new_stepper(&victim, 5, 0);
    arg.other = victim.self;
    struct coroutine *co = co_create(scheduling_fn, &arg);
    cr_assert_not_null(co);
    co_schedule(co);
    cr_assert_eq(co_run_ready(), 2, "the newly scheduled one runs in the same pass");
    EXPECT_TRACE(1, 2, 599);
    cr_assert(victim.done);
}

/* A coroutine that yields after scheduling itself runs again in the same
 * pass, after everything queued before it. */
static void requeue_fn(void *opaque)
{
    int id = (int)(intptr_t)opaque;

    for (int i = 0; i < 3; i++) {
        note(id * 10 + i);
        co_schedule(co_self());
        co_yield();
    }
}

Test(coroutine, self_rescheduling_round_robin)
{
    for (intptr_t id = 1; id <= 2; id++) {
        struct coroutine *co = co_create(requeue_fn, (void *)id);
        cr_assert_not_null(co);
        co_schedule(co);
    }
    cr_assert_eq(co_run_ready(), 8);
    EXPECT_TRACE(10, 20, 11, 21, 12, 22);
}

/* ---- co_queue ------------------------------------------------------ */

struct sleeper {
    struct co_queue *q;
    int id;
    int wakeups;
};

static void sleeper_fn(void *opaque)
{
    struct sleeper *s = opaque;

    for (int i = 0; i < s->wakeups; i++) {
        co_queue_wait(s->q);
        note(s->id);
    }
}

Test(coroutine, queue_wakes_in_fifo_order)
{
    enum { N = 6 };
    struct co_queue q = { 0 };
    struct sleeper s[N];

    cr_assert(co_queue_empty(&q));
    cr_assert(!co_queue_wake_one(&q), "waking an empty queue wakes nobody");
    /* Sleep in the order 3 5 0 2 4 1. */
    const int order[N] = { 3, 5, 0, 2, 4, 1 };
    for (int i = 0; i < N; i++) {
        int id = order[i];
        s[id] = (struct sleeper){ .q = &q, .id = id, .wakeups = 1 };
        struct coroutine *co = co_create(sleeper_fn, &s[id]);
        cr_assert_not_null(co);
        co_enter(co);
    }
    cr_assert_eq(trace_len, 0);
    cr_assert(!co_queue_empty(&q));

    cr_assert(co_queue_wake_one(&q));
    cr_assert(co_queue_wake_one(&q));
    cr_assert_eq(trace_len, 0, "wake_one only schedules");
    cr_assert_eq(co_run_ready(), 2);
    EXPECT_TRACE(3, 5);
    co_queue_wake_all(&q);
    cr_assert(co_queue_empty(&q));
    cr_assert_eq(co_run_ready(), 4);
    EXPECT_TRACE(3, 5, 0, 2, 4, 1);
}

Test(coroutine, queue_waiter_can_wait_again)
{
    struct co_queue q = { 0 };
    struct sleeper a = { .q = &q, .id = 1, .wakeups = 3 };
    struct sleeper b = { .q = &q, .id = 2, .wakeups = 3 };

    co_enter(co_create(sleeper_fn, &a));
    co_enter(co_create(sleeper_fn, &b));
    for (int i = 0; i < 6; i++) {
        cr_assert(co_queue_wake_one(&q));
        cr_assert_eq(co_run_ready(), 1);
    }
    cr_assert(co_queue_empty(&q));
    /* Each woken sleeper goes back to the tail: strict alternation. */
    EXPECT_TRACE(1, 2, 1, 2, 1, 2);
}

/* ---- co_mutex ------------------------------------------------------ */

struct locker {
    struct co_mutex *m;
    int *inside;
    int id;
    int rounds;
};

/* Simulate I/O while holding the lock: go back to the event loop and be
 * woken by it later. */
static void pretend_io(void)
{
    co_schedule(co_self());
    co_yield();
}

static void locker_fn(void *opaque)
{
    struct locker *l = opaque;

    for (int r = 0; r < l->rounds; r++) {
        co_mutex_lock(l->m);
        cr_assert_eq(++*l->inside, 1, "two coroutines inside the mutex");
        note(l->id);
        pretend_io();
        pretend_io();
        cr_assert_eq(*l->inside, 1, "someone entered while we held the lock");
        --*l->inside;
        co_mutex_unlock(l->m);
        pretend_io();
    }
    note(-l->id);
}

Test(coroutine, mutex_excludes_across_yields)
{
    enum { N = 5, ROUNDS = 4 };
    struct co_mutex m = { 0 };
    struct locker l[N];
    int inside = 0;

    for (int i = 0; i < N; i++) {
        l[i] = (struct locker){ .m = &m, .inside = &inside, .id = i + 1,
                                .rounds = ROUNDS };
        struct coroutine *co = co_create(locker_fn, &l[i]);
        cr_assert_not_null(co);
        co_schedule(co);
    }
    unsigned passes = 0;
    while (co_run_ready())
        cr_assert_lt(++passes, 10000, "coroutines never finished");
    cr_assert(!m.locked);
    cr_assert(co_queue_empty(&m.waiters));
    /* Every coroutine got the lock ROUNDS times and finished. */
    int got[N + 1] = { 0 }, finished = 0;
    for (unsigned i = 0; i < trace_len; i++) {
        if (trace[i] > 0)
            got[trace[i]]++;
        else
            finished++;
    }
    cr_assert_eq(finished, N);
    for (int i = 1; i <= N; i++)
        cr_assert_eq(got[i], ROUNDS, "coroutine %d locked %d times", i, got[i]);
    /* The first holder is the first scheduled; the others queued in order. */
    cr_assert_eq(trace[0], 1);
}

Test(coroutine, mutex_uncontended_does_not_yield)
{
    struct co_mutex m = { 0 };

    /* Outside any coroutine: lock and unlock must not touch the queue. */
    co_mutex_lock(&m);
    cr_assert(m.locked);
    co_mutex_unlock(&m);
    cr_assert(!m.locked);
    cr_assert_eq(co_run_ready(), 0);
}

/* ---- pool and resources -------------------------------------------- */

static void noop_fn(void *opaque)
{
    ++*(int *)opaque;
}

Test(coroutine, finished_coroutine_is_reused)
{
    int runs = 0;
    struct coroutine *a = co_create(noop_fn, &runs);

    cr_assert_not_null(a);
    co_enter(a);
    cr_assert_eq(runs, 1);
    struct coroutine *b = co_create(noop_fn, &runs);
    cr_assert_eq(b, a, "a finished coroutine should be recycled");
    co_enter(b);
    cr_assert_eq(runs, 2, "a recycled coroutine must run its new function");
}

static void yield_once_fn(void *opaque)
{
    co_yield();
    ++*(int *)opaque;
}

Test(coroutine, thousands_created_and_finished)
{
    enum { BATCH = 1300, ROUNDS = 10 };   /* the pool keeps 1024 */
    static struct coroutine *live[BATCH];
    int runs = 0;

    /* More alive at once than the pool keeps, so both the pool and the
     * free path are used; ASan's leak check covers the rest. */
    for (int r = 0; r < ROUNDS; r++) {
        for (int i = 0; i < BATCH; i++) {
            live[i] = co_create(yield_once_fn, &runs);
            cr_assert_not_null(live[i]);
            co_enter(live[i]);
        }
        for (int i = BATCH - 1; i >= 0; i--)
            co_enter(live[i]);
    }
    cr_assert_eq(runs, BATCH * ROUNDS);
    for (int i = 0; i < 5000; i++)
        co_enter(co_create(noop_fn, &runs));
    cr_assert_eq(runs, BATCH * ROUNDS + 5000);
    expect_no_leaks();
}

/* A server thread has hundreds of requests in flight (four nbdcopy
 * connections keep 256): when they finish, the next ones must find their
 * coroutines in the pool, not map new stacks (each unmapping in a
 * threaded process interrupts every core to flush its TLB). */
Test(coroutine, a_thousand_finished_coroutines_are_all_pooled)
{
    enum { N = 1000 };
    static struct coroutine *live[N];
    int runs = 0;

    co_thread_release_pool();
    for (int i = 0; i < N; i++) {
        live[i] = co_create(yield_once_fn, &runs);
        cr_assert_not_null(live[i]);
        co_enter(live[i]);
    }
    cr_assert_eq(co_thread_pool_len(), 0);
    for (int i = 0; i < N; i++)
        co_enter(live[i]);
    cr_assert_eq(runs, N);
    cr_assert_eq(co_thread_pool_len(), N, "the pool kept %u of %d",
                 co_thread_pool_len(), N);
    for (int i = 0; i < N; i++)
        co_enter(co_create(noop_fn, &runs));
    cr_assert_eq(co_thread_pool_len(), N, "reusing them changed the pool");
    co_thread_release_pool();
    cr_assert_eq(co_thread_pool_len(), 0);
}

/* ---- stack depth ----------------------------------------------------- */

enum { BIG = 100 * 1024 };

static uint32_t fill_and_sum(volatile uint8_t *p, size_t n, uint8_t seed)
{
    uint32_t sum = 0;

    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(seed + i * 31);
    for (size_t i = 0; i < n; i++)
        sum += p[i];
    return sum;
}

static void deep_fn(void *opaque)
{
    volatile uint8_t big[BIG];
    uint32_t *out = opaque;

    out[0] = fill_and_sum(big, sizeof(big), 7);
    co_yield();
    /* The array is intact after switching away and back. */
    uint32_t again = 0;
    for (size_t i = 0; i < sizeof(big); i++) {
        if (big[i] != (uint8_t)(7 + i * 31))
            break;
        again += big[i];
    }
    out[1] = again;
}

Test(coroutine, hundred_kib_on_the_stack)
{
    static uint8_t ref[BIG];
    uint32_t out[2] = { 0, 1 };
    struct coroutine *co = co_create(deep_fn, out);

    cr_assert_not_null(co);
    co_enter(co);
    uint32_t want = fill_and_sum(ref, sizeof(ref), 7);
    cr_assert_eq(out[0], want);
    /* Use our own stack heavily while the coroutine sleeps. */
    cr_assert_eq(fill_and_sum(ref, sizeof(ref), 7), want);
    co_enter(co);
    cr_assert_eq(out[1], want, "the coroutine's stack was disturbed");
}

static unsigned recurse(unsigned depth)
{
    volatile char pad[512];

    pad[0] = (char)depth;
    if (depth == 0)
        return (unsigned char)pad[0];
    if (depth % 64 == 0)
        co_yield();
    return recurse(depth - 1) + 1 + (unsigned)pad[0] * 0;
}

static void recursion_fn(void *opaque)
{
    *(unsigned *)opaque = recurse(200);   /* over 100 KiB of frames */
}

Test(coroutine, deep_recursion_across_yields)
{
    unsigned result = 0;
    struct coroutine *co = co_create(recursion_fn, &result);
    int enters = 0;

    cr_assert_not_null(co);
    while (result == 0) {
        co_enter(co);
        cr_assert_lt(++enters, 100);
    }
    cr_assert_eq(result, 200);
    cr_assert_eq(enters, 200 / 64 + 1);
}

/* ---- nesting ------------------------------------------------------- */

struct nest {
    struct coroutine *outer, *inner;
};

static void inner_fn(void *opaque)
{
    struct nest *n = opaque;

    cr_assert_eq(co_self(), n->inner);
    note(10);
    co_yield();                     /* back to whoever entered us */
    cr_assert_eq(co_self(), n->inner);
    note(11);
}

static void outer_fn(void *opaque)
{
    struct nest *n = opaque;

    note(1);
    co_enter(n->inner);
    cr_assert_eq(co_self(), n->outer, "inner's yield must return to outer");
    note(2);
    co_yield();
    note(3);
    co_enter(n->inner);             /* inner finishes inside outer */
    cr_assert_eq(co_self(), n->outer);
    note(4);
}

Test(coroutine, coroutine_enters_another)
{
    struct nest n;

    n.outer = co_create(outer_fn, &n);
    n.inner = co_create(inner_fn, &n);
    cr_assert(n.outer && n.inner && n.outer != n.inner);
    co_enter(n.outer);
    cr_assert_null(co_self());
    EXPECT_TRACE(1, 10, 2);
    co_enter(n.outer);
    cr_assert_null(co_self());
    EXPECT_TRACE(1, 10, 2, 3, 11, 4);
    expect_no_leaks();
}

/* The inner coroutine, entered first by outer, is resumed later from the
 * top level: its yield must now return to the top level. */
static void inner_twice_fn(void *opaque)
{
    note(20);
    co_yield();
    note(21);
    co_yield();
    note(22);
}

static void outer_starts_fn(void *opaque)
{
    struct nest *n = opaque;

    note(1);
    co_enter(n->inner);
    note(2);
}

Test(coroutine, yield_returns_to_the_latest_caller)
{
    struct nest n;

    n.inner = co_create(inner_twice_fn, NULL);
    n.outer = co_create(outer_starts_fn, &n);
    co_enter(n.outer);              /* outer finishes */
    EXPECT_TRACE(1, 20, 2);
    co_enter(n.inner);
    cr_assert_null(co_self());
    EXPECT_TRACE(1, 20, 2, 21);
    co_enter(n.inner);
    EXPECT_TRACE(1, 20, 2, 21, 22);
}
