/* SPDX-License-Identifier: MIT */
#include "config.h"

#include "ring.h"
#include "coroutine.h"

#include <errno.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

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

int sd_ring_init_owned(struct sd_ring *r, unsigned entries)
{
    int ret;

    memset(r, 0, sizeof(*r));
    ret = io_uring_queue_init(entries, &r->uring,
                              IORING_SETUP_SINGLE_ISSUER |
                              IORING_SETUP_DEFER_TASKRUN |
                              IORING_SETUP_R_DISABLED);
    if (ret == -EINVAL)
        return sd_ring_init(r, entries);
    r->disabled = ret == 0;
    return ret;
}

int sd_ring_own(struct sd_ring *r)
{
    if (!r->disabled)
        return 0;
    r->disabled = false;
    /* liburing 2.3 declares io_uring_enable_rings() but does not export
     * it: the register call itself. */
    if (syscall(__NR_io_uring_register, r->uring.ring_fd,
                IORING_REGISTER_ENABLE_RINGS, NULL, 0) < 0)
        return -errno;
    return 0;
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
