/* SPDX-License-Identifier: MIT */
#include "config.h"

#include "ring.h"
#include "coroutine.h"

#include <errno.h>
#include <string.h>

int sd_ring_init(struct sd_ring *r, unsigned entries)
{
    int ret;

    memset(r, 0, sizeof(*r));
    /* Completion work waits until the loop enters the kernel anyway,
     * instead of interrupting it (an IPI and a context switch each on a
     * virtual machine). Kernels before 5.19 lack the flag. */
    ret = io_uring_queue_init(entries, &r->uring,
                              IORING_SETUP_COOP_TASKRUN |
                              IORING_SETUP_TASKRUN_FLAG);
    if (ret == -EINVAL)
        ret = io_uring_queue_init(entries, &r->uring, 0);
    return ret;
}

void sd_ring_exit(struct sd_ring *r)
{
    io_uring_queue_exit(&r->uring);
}

struct io_uring_sqe *sd_ring_get_sqe(struct sd_ring *r, struct sd_io *io)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&r->uring);

    if (!sqe) {
        if (io_uring_submit(&r->uring) < 0)
            return NULL;
        sqe = io_uring_get_sqe(&r->uring);
        if (!sqe)
            return NULL;
    }
    io_uring_sqe_set_data(sqe, io);
    r->in_flight++;
    return sqe;
}

static unsigned dispatch_completions(struct sd_ring *r)
{
    struct io_uring_cqe *cqe;
    unsigned head, n = 0;

    io_uring_for_each_cqe(&r->uring, head, cqe) {
        struct sd_io *io = io_uring_cqe_get_data(cqe);
        int res = cqe->res;

        n++;
        /* Advance first: complete() may queue and submit new SQEs. */
        io_uring_cq_advance(&r->uring, 1);
        r->in_flight--;
        if (io)
            io->complete(io, res);
        break;
    }
    return n;
}

int sd_ring_run_once(struct sd_ring *r, bool wait)
{
    int ret, total = 0;

    co_run_ready();
    if (wait && r->in_flight)
        ret = io_uring_submit_and_wait(&r->uring, 1);
    else
        ret = io_uring_submit(&r->uring);
    if (ret < 0 && ret != -EINTR && ret != -EBUSY)
        return ret;
    for (;;) {
        unsigned n = dispatch_completions(r);
        if (!n)
            break;
        total += n;
    }
    co_run_ready();
    return total;
}
