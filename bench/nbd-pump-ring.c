/* SPDX-License-Identifier: MIT */
/* nbd-pump --ring-reads: requests pipelined through one io_uring.
 *
 * A read from a device takes a few hundred microseconds, so a pump that
 * waited for one read, or for one batch of them, before the next would
 * leave the device idle most of the time and be no ceiling at all. Here
 * every request takes a slot; a read is queued to the ring the moment it
 * is parsed, and its reply (header and data, from the slot) is sent as
 * soon as it completes, gathered with whatever other replies are ready
 * into one sendmsg. The receive stays armed while slots are free. Writes
 * and flushes are done inline as in the plain pump: this mode is for
 * the read rows. Still no image format, no ordering, simple replies. */
#define _GNU_SOURCE
#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "nbd-pump.h"

enum { SLOTS = 128, TAG_RECV = 1, TAG_SEND = 2 };

struct slot {
    struct slot *next;
    char hdr[REPLY_BYTES];
    char *buf;                  /* read data, cap bytes */
    size_t cap;
    uint32_t data_len;          /* sent after hdr */
};

struct ring_pump {
    struct pump *p;
    struct slot slots[SLOTS];
    struct slot *free, *ready, *ready_tail, *sending;
    struct iovec iov[2 * SLOTS];
    struct msghdr msg;
    bool recv_busy, send_busy, parse_blocked;
    unsigned reads;             /* in flight */
};

static struct io_uring_sqe *sqe_for(struct ring_pump *rp)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&rp->p->ring);

    if (!sqe && io_uring_submit(&rp->p->ring) >= 0)
        sqe = io_uring_get_sqe(&rp->p->ring);
    return sqe;
}

static void make_ready(struct ring_pump *rp, struct slot *s)
{
    s->next = NULL;
    if (rp->ready_tail)
        rp->ready_tail->next = s;
    else
        rp->ready = s;
    rp->ready_tail = s;
}

static int start_read(struct ring_pump *rp, struct slot *s,
                      const struct pump_request *r)
{
    struct io_uring_sqe *sqe;

    if (s->cap < r->len) {
        free(s->buf);
        s->cap = 0;
        if (posix_memalign((void **)&s->buf, 4096, r->len))
            return -ENOMEM;
        s->cap = r->len;
    }
    if (!(sqe = sqe_for(rp)))
        return -EBUSY;
    io_uring_prep_read(sqe, rp->p->file, s->buf, r->len, r->off);
    io_uring_sqe_set_data(sqe, s);
    s->data_len = r->len;
    rp->reads++;
    return 0;
}

/* One request from the received bytes into a slot: its length, 0 if it
 * must wait (not all there, or no slot free), or a negative errno. */
static long take_request(void *ctx, const char *q, size_t avail)
{
    struct ring_pump *rp = ctx;
    struct pump *p = rp->p;
    struct pump_request r;
    struct slot *s = rp->free;
    uint32_t err = 0;

    if (avail < REQUEST_BYTES)
        return 0;
    if (!pump_parse_request(q, &r))
        return -EPROTO;
    size_t need = pump_request_bytes(&r);
    if (avail < need)
        return 0;
    if (r.type == CMD_DISC) {
        p->closing = true;
        return (long)need;
    }
    if (!s) {
        rp->parse_blocked = true;
        return 0;
    }
    rp->free = s->next;
    s->data_len = 0;
    pump_reply_header(s->hdr, r.cookie, 0);
    switch (r.type) {
    case CMD_READ: {
        int ret = start_read(rp, s, &r);
        if (ret < 0)
            return ret;
        return (long)need;      /* ready when the read completes */
    }
    case CMD_WRITE:
        if (pwrite(p->file, q + REQUEST_BYTES, r.len, (off_t)r.off) !=
            (ssize_t)r.len)
            err = EIO;
        break;
    case CMD_FLUSH:
        err = fdatasync(p->file) == 0 ? 0 : EIO;
        break;
    default:
        err = EINVAL;
        break;
    }
    pump_reply_header(s->hdr, r.cookie, err);
    make_ready(rp, s);
    return (long)need;
}

/* Parses what has arrived; called only while no receive is in flight,
 * since it moves the unparsed rest to the front of the buffer. */
static int parse(struct ring_pump *rp)
{
    rp->parse_blocked = false;
    return pump_consume(rp->p, take_request, rp);
}

static int arm_recv(struct ring_pump *rp)
{
    struct pump *p = rp->p;
    struct io_uring_sqe *sqe;

    if (rp->recv_busy || p->closing || rp->parse_blocked ||
        p->rx_len == RX_BYTES)
        return 0;
    if (!(sqe = sqe_for(rp)))
        return -EBUSY;
    io_uring_prep_recv(sqe, p->sock, p->rx + p->rx_len, RX_BYTES - p->rx_len,
                       0);
    io_uring_sqe_set_data64(sqe, TAG_RECV);
    rp->recv_busy = true;
    return 0;
}

static int send_ready(struct ring_pump *rp)
{
    struct io_uring_sqe *sqe;
    size_t n = 0;

    if (rp->send_busy || !rp->ready)
        return 0;
    for (struct slot *s = rp->ready; s; s = s->next) {
        rp->iov[n++] = (struct iovec){ s->hdr, REPLY_BYTES };
        if (s->data_len)
            rp->iov[n++] = (struct iovec){ s->buf, s->data_len };
    }
    rp->sending = rp->ready;
    rp->ready = rp->ready_tail = NULL;
    rp->msg = (struct msghdr){ .msg_iov = rp->iov, .msg_iovlen = n };
    if (!(sqe = sqe_for(rp)))
        return -EBUSY;
    io_uring_prep_sendmsg(sqe, rp->p->sock, &rp->msg, MSG_NOSIGNAL);
    io_uring_sqe_set_data64(sqe, TAG_SEND);
    rp->send_busy = true;
    return 0;
}

/* A send completed with res bytes: resend the rest, or free the slots. */
static int sent(struct ring_pump *rp, int res)
{
    struct msghdr *m = &rp->msg;
    size_t left = (size_t)res;

    rp->send_busy = false;
    if (res <= 0)
        return res < 0 ? res : -ECONNRESET;
    while (m->msg_iovlen && left >= m->msg_iov->iov_len) {
        left -= m->msg_iov->iov_len;
        m->msg_iov++;
        m->msg_iovlen--;
    }
    if (m->msg_iovlen) {
        struct io_uring_sqe *sqe = sqe_for(rp);
        m->msg_iov->iov_base = (char *)m->msg_iov->iov_base + left;
        m->msg_iov->iov_len -= left;
        if (!sqe)
            return -EBUSY;
        io_uring_prep_sendmsg(sqe, rp->p->sock, m, MSG_NOSIGNAL);
        io_uring_sqe_set_data64(sqe, TAG_SEND);
        rp->send_busy = true;
        return 0;
    }
    while (rp->sending) {
        struct slot *s = rp->sending;
        rp->sending = s->next;
        s->next = rp->free;
        rp->free = s;
    }
    return 0;
}

static int complete(struct ring_pump *rp, struct io_uring_cqe *cqe)
{
    uint64_t tag = io_uring_cqe_get_data64(cqe);
    int res = cqe->res;

    if (tag == TAG_SEND)
        return sent(rp, res);
    if (tag == TAG_RECV) {
        rp->recv_busy = false;
        if (res < 0)
            return res;
        if (res == 0)
            rp->p->closing = true;
        rp->p->rx_len += (size_t)res;
        return 0;
    }
    struct slot *s = io_uring_cqe_get_data(cqe);
    rp->reads--;
    if (res != (int)s->data_len) {  /* simple replies are whole */
        memcpy(s->hdr + 4, &(uint32_t){ htobe32(EIO) }, 4);
        s->data_len = 0;
    }
    make_ready(rp, s);
    return 0;
}

static bool finished(const struct ring_pump *rp)
{
    return rp->p->closing && !rp->reads && !rp->send_busy && !rp->ready &&
           !rp->recv_busy;
}

static int pump_loop(struct ring_pump *rp)
{
    struct pump *p = rp->p;
    int ret = 0;

    while (!finished(rp)) {
        struct io_uring_cqe *cqe;
        unsigned head, n = 0;

        if (!rp->recv_busy && (ret = parse(rp)) < 0)
            break;
        if ((ret = send_ready(rp)) < 0 || (ret = arm_recv(rp)) < 0)
            break;
        if (finished(rp))
            break;
        ret = io_uring_submit_and_wait(&p->ring, 1);
        if (ret < 0 && ret != -EINTR)
            break;
        ret = 0;
        io_uring_for_each_cqe(&p->ring, head, cqe) {
            n++;
            if ((ret = complete(rp, cqe)) < 0)
                break;
        }
        io_uring_cq_advance(&p->ring, n);
        if (ret < 0)
            break;
    }
    return ret;
}

/* Waits out what is still in flight, so that no completion lands in a
 * slot after it is gone. */
static void drain(struct ring_pump *rp)
{
    struct io_uring *ring = &rp->p->ring;
    unsigned left = rp->reads + rp->recv_busy + rp->send_busy;

    if (left)
        shutdown(rp->p->sock, SHUT_RDWR);
    while (left) {
        struct io_uring_cqe *cqe;
        int ret = io_uring_submit_and_wait(ring, 1);
        if (ret < 0 && ret != -EINTR)
            break;
        while (left && io_uring_peek_cqe(ring, &cqe) == 0) {
            io_uring_cqe_seen(ring, cqe);
            left--;
        }
    }
}

int pump_transmit_ring(struct pump *p)
{
    struct ring_pump *rp = calloc(1, sizeof(*rp));
    int ret;

    if (!rp)
        return -ENOMEM;
    rp->p = p;
    p->rx_len = 0;
    p->closing = false;
    for (unsigned i = 0; i < SLOTS; i++) {
        rp->slots[i].next = rp->free;
        rp->free = &rp->slots[i];
    }
    ret = pump_loop(rp);
    drain(rp);
    for (unsigned i = 0; i < SLOTS; i++)
        free(rp->slots[i].buf);
    free(rp);
    return ret;
}
