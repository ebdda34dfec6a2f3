/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of common/ring.c: the io_uring wrapper and its completion
 * convention (user_data points at a struct sd_io).
 */
#include "config.h"

#include "common/coroutine.h"
#include "common/ring.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* One request and what its completion reported. */
struct req {
    struct sd_io io;
    int res;
    int done;           /* times complete() ran: must end up exactly 1 */
    unsigned seq;       /* completion order */
};

static unsigned completions;

static void req_complete(struct sd_io *io, int res)
{
    struct req *r = (struct req *)io;

    r->res = res;
    r->done++;
    r->seq = completions++;
}

static char path[64];
static int fd = -1;

static void make_file(void)
{
    const char *tmp = getenv("TMPDIR");

    snprintf(path, sizeof(path), "%s/ring-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    fd = mkstemp(path);
    cr_assert_geq(fd, 0, "mkstemp: %s", strerror(errno));
}

static void remove_file(void)
{
    if (fd >= 0)
        close(fd);
    unlink(path);
}

TestSuite(ring, .init = make_file, .fini = remove_file);

/* io_uring may be missing or switched off in the kernel: that is a skip,
 * not a failure (liburing's t_create_ring does the same). */
static void init_ring(struct sd_ring *r, unsigned entries)
{
    int ret = sd_ring_init(r, entries);

    if (ret == -ENOSYS || ret == -EPERM)
        cr_skip_test("io_uring is not available: %s", strerror(-ret));
    cr_assert_eq(ret, 0, "sd_ring_init: %s", strerror(-ret));
}

/* Run the loop until every request in reqs[0..n) has completed. */
static void run_until_done(struct sd_ring *r, struct req *reqs, unsigned n)
{
    for (;;) {
        unsigned left = 0;
        for (unsigned i = 0; i < n; i++)
            left += !reqs[i].done;
        if (!left)
            return;
        cr_assert_gt(r->in_flight, 0, "%u requests pending, none in flight", left);
        int ret = sd_ring_run_once(r, true);
        cr_assert_geq(ret, 0, "sd_ring_run_once: %s", strerror(-ret));
    }
}

static struct io_uring_sqe *get_sqe(struct sd_ring *r, struct req *q)
{
    q->io.complete = req_complete;
    struct io_uring_sqe *sqe = sd_ring_get_sqe(r, &q->io);
    cr_assert_not_null(sqe);
    return sqe;
}

Test(ring, init_and_exit)
{
    struct sd_ring r;

    memset(&r, 0xa5, sizeof(r));
    init_ring(&r, 8);
    cr_assert_eq(r.in_flight, 0);
    cr_assert_geq(r.uring.sq.ring_entries, 8);
    sd_ring_exit(&r);
}

Test(ring, init_with_zero_entries_fails)
{
    struct sd_ring r;

    cr_assert_lt(sd_ring_init(&r, 0), 0);
}

Test(ring, write_then_read_a_file)
{
    struct sd_ring r;
    char out[8192], in[8192], check[8192];
    struct req w = { 0 }, rd = { 0 };

    init_ring(&r, 4);
    for (size_t i = 0; i < sizeof(out); i++)
        out[i] = (char)(i * 13 + 1);
    io_uring_prep_write(get_sqe(&r, &w), fd, out, sizeof(out), 4096);
    cr_assert_eq(r.in_flight, 1);
    run_until_done(&r, &w, 1);
    cr_assert_eq(w.res, (int)sizeof(out), "write: %d", w.res);
    cr_assert_eq(w.done, 1);
    cr_assert_eq(r.in_flight, 0);

    /* What the ring wrote is in the file, as a plain read sees it. */
    cr_assert_eq(pread(fd, check, sizeof(check), 4096), (ssize_t)sizeof(check));
    cr_assert_eq(memcmp(check, out, sizeof(out)), 0);

    memset(in, 0, sizeof(in));
    io_uring_prep_read(get_sqe(&r, &rd), fd, in, sizeof(in), 4096);
    run_until_done(&r, &rd, 1);
    cr_assert_eq(rd.res, (int)sizeof(in));
    cr_assert_eq(memcmp(in, out, sizeof(out)), 0);
    sd_ring_exit(&r);
}

Test(ring, errors_arrive_as_negative_errno)
{
    struct sd_ring r;
    struct req q = { 0 };
    char buf[16];

    init_ring(&r, 4);
    io_uring_prep_read(get_sqe(&r, &q), -1, buf, sizeof(buf), 0);
    run_until_done(&r, &q, 1);
    cr_assert_eq(q.res, -EBADF);
    sd_ring_exit(&r);
}

Test(ring, more_requests_than_entries)
{
    enum { ENTRIES = 4, N = 100, BLK = 512 };
    static struct req reqs[N];
    static char data[N][BLK];
    struct sd_ring r;

    init_ring(&r, ENTRIES);
    /* Far more SQEs than the SQ holds, and more than the CQ holds too:
     * get_sqe must submit to make room, and no completion may be lost. */
    for (unsigned i = 0; i < N; i++) {
        memset(data[i], 'a' + i % 26, BLK);
        io_uring_prep_write(get_sqe(&r, &reqs[i]), fd, data[i], BLK,
                            (uint64_t)i * BLK);
    }
    cr_assert_eq(r.in_flight, N);
    run_until_done(&r, reqs, N);
    cr_assert_eq(r.in_flight, 0);
    for (unsigned i = 0; i < N; i++) {
        char back[BLK];
        cr_assert_eq(reqs[i].done, 1, "request %u completed %d times", i,
                     reqs[i].done);
        cr_assert_eq(reqs[i].res, BLK, "request %u: %d", i, reqs[i].res);
        cr_assert_eq(pread(fd, back, BLK, (off_t)i * BLK), BLK);
        cr_assert_eq(memcmp(back, data[i], BLK), 0, "block %u differs", i);
    }
    cr_assert_eq(completions, N);
}

Test(ring, run_once_without_wait_on_idle_ring)
{
    struct sd_ring r;

    init_ring(&r, 4);
    /* Nothing queued: neither form may block, and nothing completes. */
    cr_assert_eq(sd_ring_run_once(&r, false), 0);
    cr_assert_eq(sd_ring_run_once(&r, true), 0);
    sd_ring_exit(&r);
}

Test(ring, run_once_submits_and_reaps_a_nop)
{
    struct sd_ring r;
    struct req q = { 0 };

    init_ring(&r, 4);
    io_uring_prep_nop(get_sqe(&r, &q));
    cr_assert_eq(q.done, 0, "nothing completes before submission");
    /* A NOP completes while it is submitted: one call without waiting
     * submits it and dispatches its completion. */
    cr_assert_eq(sd_ring_run_once(&r, false), 1);
    cr_assert_eq(q.done, 1);
    cr_assert_eq(q.res, 0);
    cr_assert_eq(r.in_flight, 0);
    sd_ring_exit(&r);
}

Test(ring, run_once_with_wait_blocks_for_a_completion)
{
    struct sd_ring r;
    struct req q = { 0 };
    struct __kernel_timespec ts = { .tv_sec = 0, .tv_nsec = 20 * 1000 * 1000 };

    init_ring(&r, 4);
    /* A timeout completes only after it expires, never during submit:
     * run_once(true) must wait for it rather than return empty-handed. */
    io_uring_prep_timeout(get_sqe(&r, &q), &ts, 0, 0);
    int n = sd_ring_run_once(&r, true);
    cr_assert_eq(n, 1, "run_once(true) returned %d", n);
    cr_assert_eq(q.done, 1);
    cr_assert_eq(q.res, -ETIME);
    cr_assert_eq(r.in_flight, 0);
    sd_ring_exit(&r);
}

/* A completion handler may queue new work on the same ring. */
struct chain {
    struct req q;
    struct sd_ring *r;
    unsigned left;
};

static void chain_complete(struct sd_io *io, int res)
{
    struct chain *c = (struct chain *)io;

    c->q.res = res;
    if (res < 0 || !c->left) {
        c->q.done = 1;
        return;
    }
    c->left--;
    completions++;
    struct io_uring_sqe *sqe = sd_ring_get_sqe(c->r, &c->q.io);
    cr_assert_not_null(sqe);
    io_uring_prep_nop(sqe);
}

Test(ring, completion_may_submit_more)
{
    struct sd_ring r;
    struct chain c = { .left = 50 };

    init_ring(&r, 2);
    c.r = &r;
    c.q.io.complete = chain_complete;
    io_uring_prep_nop(sd_ring_get_sqe(&r, &c.q.io));
    run_until_done(&r, &c.q, 1);
    cr_assert_eq(c.q.res, 0);
    cr_assert_eq(completions, 50);
    cr_assert_eq(r.in_flight, 0);
    sd_ring_exit(&r);
}

/* The engine's pattern: a coroutine queues I/O and yields; the
 * completion schedules it; the same run_once call resumes it. */
struct co_read {
    struct sd_io io;
    struct sd_ring *r;
    struct coroutine *co;
    char buf[64];
    int res;
    int stage;
};

static void co_read_complete(struct sd_io *io, int res)
{
    struct co_read *c = (struct co_read *)io;

    c->res = res;
    co_schedule(c->co);
}

static void co_read_fn(void *opaque)
{
    struct co_read *c = opaque;

    c->stage = 1;
    c->io.complete = co_read_complete;
    io_uring_prep_read(sd_ring_get_sqe(c->r, &c->io), fd, c->buf,
                       sizeof(c->buf), 0);
    co_yield();
    c->stage = 2;
}

Test(ring, completion_resumes_coroutine_in_the_same_call)
{
    struct sd_ring r;
    struct co_read c = { .res = -1 };

    cr_assert_eq(pwrite(fd, "hello, ring", 11, 0), 11);
    init_ring(&r, 4);
    c.r = &r;
    c.co = co_create(co_read_fn, &c);
    cr_assert_not_null(c.co);
    co_enter(c.co);
    cr_assert_eq(c.stage, 1);
    while (c.stage != 2) {
        int n = sd_ring_run_once(&r, true);
        cr_assert_geq(n, 0);
        /* The CQE and the coroutine it wakes are handled together. */
        if (n > 0)
            cr_assert_eq(c.stage, 2, "completion dispatched but the "
                         "coroutine it scheduled did not run");
    }
    cr_assert_eq(c.res, 11);
    cr_assert_eq(memcmp(c.buf, "hello, ring", 11), 0);
    sd_ring_exit(&r);
}

static void flag_fn(void *opaque)
{
    *(int *)opaque = 1;
}

Test(ring, run_once_runs_scheduled_coroutines)
{
    struct sd_ring r;
    int ran = 0;

    init_ring(&r, 4);
    struct coroutine *co = co_create(flag_fn, &ran);
    cr_assert_not_null(co);
    co_schedule(co);
    cr_assert_eq(sd_ring_run_once(&r, false), 0);
    cr_assert_eq(ran, 1);
    sd_ring_exit(&r);
}
