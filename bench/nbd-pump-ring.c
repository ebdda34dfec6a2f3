/* SPDX-License-Identifier: MIT */
/* nbd-pump --ring: requests pipelined through one io_uring.
 *
 * A read from a device takes a few hundred microseconds, so a pump that
 * waited for one read, or for one batch of them, before the next would
 * leave the device idle most of the time and be no ceiling at all. Here
 * every request takes a slot; its read or write is queued to the ring the
 * moment it has arrived, and its reply (header, and data for a read) is
 * sent as soon as it completes, gathered with whatever other replies are
 * ready into one sendmsg. The receive stays armed while slots are free.
 *
 * Write payloads of DIRECT_MIN bytes and more are received straight into
 * their slot's buffer, and the receive after one asks for a request
 * header only, so that a stream of large writes is not copied through the
 * receive buffer (sendense-nbd receives the same way, server/conn-recv.c).
 * Slot buffers up to SLOT_BYTES lie in one range marked for transparent
 * huge pages, as sendense-nbd's request buffers do (server/buf-pool.c).
 * A flush waits until every write before it has completed. Still no
 * image format, no ordering, simple replies. */
#define _GNU_SOURCE
#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "nbd-pump.h"

enum {
    SLOTS = 128, TAG_RECV = 1, TAG_SEND = 2, TAG_FILL = 3,
    SLOT_BYTES = 256 * 1024, DIRECT_MIN = 16 * 1024,
    HUGE_BYTES = 2 * 1024 * 1024,
};

struct slot {
    struct slot *next;
    char hdr[DATA_CHUNK_BYTES]; /* a simple reply or a structured one */
    uint8_t hdr_len;
    uint64_t cookie;
    char *buf;                  /* I/O data, cap bytes */
    size_t cap;
    bool own_buf;               /* buf is ours to free (not the arena's) */
    bool reading;
    uint32_t io_len;            /* the read or write's length */
    uint32_t data_len;          /* sent after hdr */
    uint32_t filled;            /* write payload received so far */
    uint64_t off;
};

struct ring_pump {
    struct pump *p;
    struct slot slots[SLOTS];
    char *arena;                /* SLOTS * SLOT_BYTES, huge-page aligned */
    size_t arena_bytes;
    struct slot *free, *ready, *ready_tail, *sending;
    struct slot *filling;       /* receiving its payload directly */
    struct iovec iov[2 * SLOTS];
    struct msghdr msg;
    bool recv_busy, send_busy, parse_blocked;
    bool header_only;           /* the next receive takes a header only */
    unsigned reads, writes;     /* in flight */
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

static int ensure_buf(struct slot *s, uint32_t len)
{
    if (s->cap >= len)
        return 0;
    if (s->own_buf)
        free(s->buf);
    s->buf = NULL;
    s->cap = 0;
    s->own_buf = true;
    if (posix_memalign((void **)&s->buf, 4096, len))
        return -ENOMEM;
    s->cap = len;
    return 0;
}

/* Queues the slot's read or write of io_len bytes at off. */
static int start_io(struct ring_pump *rp, struct slot *s)
{
    struct io_uring_sqe *sqe = sqe_for(rp);

    if (!sqe)
        return -EBUSY;
    if (s->reading) {
        io_uring_prep_read(sqe, rp->p->file, s->buf, s->io_len, s->off);
        rp->reads++;
    } else {
        io_uring_prep_write(sqe, rp->p->file, s->buf, s->io_len, s->off);
        rp->writes++;
    }
    io_uring_sqe_set_data(sqe, s);
    return 0;
}

/* A write request at q: its payload, as much as has arrived, into the
 * slot; the write is queued once all of it is there. Returns the bytes
 * taken from q. */
static long take_write(struct ring_pump *rp, struct slot *s,
                       const struct pump_request *r, const char *q,
                       size_t avail)
{
    size_t here = avail - REQUEST_BYTES;
    int ret;

    if (here > r->len)
        here = r->len;
    memcpy(s->buf, q + REQUEST_BYTES, here);
    s->filled = (uint32_t)here;
    if (s->filled < r->len) {
        rp->filling = s;        /* the rest goes straight into s->buf */
        return (long)(REQUEST_BYTES + here);
    }
    if ((ret = start_io(rp, s)) < 0)
        return ret;
    return (long)(REQUEST_BYTES + here);
}

/* One request from the received bytes into a slot: its length, 0 if it
 * must wait (not all there, no slot free, a flush behind writes, or a
 * payload being received directly), or a negative errno. */
static long take_request(void *ctx, const char *q, size_t avail)
{
    struct ring_pump *rp = ctx;
    struct pump *p = rp->p;
    struct pump_request r;
    struct slot *s = rp->free;
    uint32_t err = 0;
    int ret;

    if (rp->filling || avail < REQUEST_BYTES)
        return 0;
    if (!pump_parse_request(q, &r))
        return -EPROTO;
    size_t need = pump_request_bytes(&r);
    bool direct = r.type == CMD_WRITE && r.len >= DIRECT_MIN;
    if (avail < need && !direct)
        return 0;
    if (r.type == CMD_DISC) {
        p->closing = true;
        return (long)need;
    }
    if (!s || (r.type == CMD_FLUSH && rp->writes)) {
        rp->parse_blocked = true;
        return 0;
    }
    rp->free = s->next;
    rp->header_only = false;
    s->data_len = 0;
    s->cookie = r.cookie;
    s->hdr_len = REPLY_BYTES;
    pump_reply_header(s->hdr, r.cookie, 0);
    switch (r.type) {
    case CMD_READ:
    case CMD_WRITE:
        if ((ret = ensure_buf(s, r.len)) < 0)
            return ret;
        s->reading = r.type == CMD_READ;
        s->io_len = r.len;
        s->off = r.off;
        if (!s->reading)
            return take_write(rp, s, &r, q, avail);
        if ((ret = start_io(rp, s)) < 0)
            return ret;
        return (long)need;      /* ready when the read completes */
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
    struct slot *s = rp->filling;

    if (rp->recv_busy || p->closing || (rp->parse_blocked && !s) ||
        p->rx_len == RX_BYTES)
        return 0;
    if (!(sqe = sqe_for(rp)))
        return -EBUSY;
    if (s) {
        io_uring_prep_recv(sqe, p->sock, s->buf + s->filled,
                           s->io_len - s->filled, 0);
        io_uring_sqe_set_data64(sqe, TAG_FILL);
    } else {
        size_t want = RX_BYTES - p->rx_len;
        if (rp->header_only && p->rx_len < REQUEST_BYTES)
            want = REQUEST_BYTES - p->rx_len;
        io_uring_prep_recv(sqe, p->sock, p->rx + p->rx_len, want, 0);
        io_uring_sqe_set_data64(sqe, TAG_RECV);
    }
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
        rp->iov[n++] = (struct iovec){ s->hdr, s->hdr_len };
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

/* Part of a write's payload came straight into its slot. */
static int filled(struct ring_pump *rp, int res)
{
    struct slot *s = rp->filling;

    rp->recv_busy = false;
    if (res <= 0)
        return res < 0 ? res : -ECONNRESET;
    s->filled += (uint32_t)res;
    if (s->filled < s->io_len)
        return 0;
    rp->filling = NULL;
    rp->header_only = true;
    return start_io(rp, s);
}

/* A slot's read or write completed with res. */
static void io_done(struct ring_pump *rp, struct slot *s, int res)
{
    if (s->reading)
        rp->reads--;
    else
        rp->writes--;
    bool ok = res == (int)s->io_len;  /* replies are whole */

    if (s->reading) {
        s->hdr_len = (uint8_t)pump_read_header(s->hdr, rp->p->structured,
                                               s->cookie, s->off, s->io_len,
                                               ok);
        s->data_len = ok ? s->io_len : 0;
    } else if (!ok) {
        pump_reply_header(s->hdr, s->cookie, EIO);
    }
    make_ready(rp, s);
}

static int complete(struct ring_pump *rp, struct io_uring_cqe *cqe)
{
    uint64_t tag = io_uring_cqe_get_data64(cqe);
    int res = cqe->res;

    if (tag == TAG_SEND)
        return sent(rp, res);
    if (tag == TAG_FILL)
        return filled(rp, res);
    if (tag == TAG_RECV) {
        rp->recv_busy = false;
        if (res < 0)
            return res;
        if (res == 0)
            rp->p->closing = true;
        rp->p->rx_len += (size_t)res;
        return 0;
    }
    io_done(rp, io_uring_cqe_get_data(cqe), res);
    return 0;
}

static bool finished(const struct ring_pump *rp)
{
    return rp->p->closing && !rp->reads && !rp->writes && !rp->send_busy &&
           !rp->ready && !rp->recv_busy;
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
    unsigned left = rp->reads + rp->writes + rp->recv_busy + rp->send_busy;

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

/* The slots' buffers: one range, aligned to a huge page and marked for
 * them. Without it, each slot allocates its own at first use. */
static void give_arena(struct ring_pump *rp)
{
    size_t bytes = (size_t)SLOTS * SLOT_BYTES;
    char *map = mmap(NULL, bytes + HUGE_BYTES, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

    if (map == MAP_FAILED)
        return;
    char *start = (char *)(((uintptr_t)map + HUGE_BYTES - 1) &
                           ~(uintptr_t)(HUGE_BYTES - 1));
    (void)madvise(start, bytes, MADV_HUGEPAGE);
    rp->arena = map;
    rp->arena_bytes = bytes + HUGE_BYTES;
    for (unsigned i = 0; i < SLOTS; i++) {
        rp->slots[i].buf = start + (size_t)i * SLOT_BYTES;
        rp->slots[i].cap = SLOT_BYTES;
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
    give_arena(rp);
    for (unsigned i = 0; i < SLOTS; i++) {
        rp->slots[i].next = rp->free;
        rp->free = &rp->slots[i];
    }
    ret = pump_loop(rp);
    drain(rp);
    for (unsigned i = 0; i < SLOTS; i++)
        if (rp->slots[i].own_buf)
            free(rp->slots[i].buf);
    if (rp->arena)
        munmap(rp->arena, rp->arena_bytes);
    free(rp);
    return ret;
}
