/* SPDX-License-Identifier: MIT */
/* nbd-pump: the ceiling of the random rows.
 *
 * The least an NBD server can do per request on this machine: one
 * thread, no image format, no request table, no block status. It takes
 * the handshake as far as a client needs (fixed newstyle, NBD_OPT_GO
 * with one export of the file's size, structured replies if asked to
 * offer them, every other option refused), then
 * for each batch of requests that has arrived: a pread or pwrite per
 * request, straight into and out of the socket buffers, and one
 * io_uring_enter that both sends the batch's replies and arms the receive
 * of the next. On tmpfs a plain pread or pwrite is the cheapest way to the
 * page cache (io_uring hands a tmpfs read to a worker thread).
 *
 * What it costs per request, measured like a server's by nbd-bench.sh, is
 * what the kernel and the machine cost: the socket copies, the system
 * calls and the sleep between requests. A server within 10 % of it is at
 * the machine's limit for that row.
 *
 *   nbd-pump [--ring] [--direct] [--structured] ADDR FILE
 *                           serve FILE as the one export (any name)
 *
 * With --ring (nbd-pump-ring.c) requests are pipelined instead: reads
 * and writes go through io_uring, every one in flight at once, and each
 * reply goes out as its I/O completes. That is the ceiling for a file on
 * a device, where one pread after another would wait for the disk each
 * time and no server that does so could keep a device busy, and for the
 * sequential rows, where sendense-nbd's requests are all in flight too.
 * --direct opens FILE with O_DIRECT, as sendense-nbd reads and writes
 * large requests on a device and as the socket pump does; requests must
 * then be aligned (nbdcopy's are).
 *
 * --structured accepts NBD_OPT_STRUCTURED_REPLY, as the servers it is
 * the ceiling of do; a client that takes it gets each read back as one
 * data chunk (the protocol allows no simple reply to a read then), which
 * costs the client more to parse than a simple reply. Other replies stay
 * simple, as the protocol allows.
 *
 * ADDR is unix:PATH or tcp:PORT. Each connection is served by a thread
 * of its own, with its own ring and buffers, until SIGTERM; the export
 * says it can take several connections at once (NBD_FLAG_CAN_MULTI_CONN:
 * a flush is an fdatasync of the one file, so it covers every
 * connection's completed writes), so that nbdcopy -C 4 opens four, as it
 * does against sendense-nbd in the multi-connection rows. */
#define _GNU_SOURCE
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nbd-pump.h"
#include "pump-net.h"

static int fail(const char *what, int err)
{
    fprintf(stderr, "nbd-pump: %s: %s\n", what, strerror(err));
    return -err;
}

/* --- handshake: blocking, once per connection --- */

/* Moves all len bytes, or fails: -ECONNRESET if the peer left. */
static int transfer_all(int fd, void *buf, size_t len, bool sending)
{
    char *p = buf;
    while (len) {
        ssize_t n = sending ? send(fd, p, len, MSG_NOSIGNAL)
                            : recv(fd, p, len, 0);
        if (n == 0)
            return -ECONNRESET;
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static int recv_all(int fd, void *buf, size_t len)
{
    return transfer_all(fd, buf, len, false);
}

static int send_all(int fd, const void *buf, size_t len)
{
    return transfer_all(fd, (void *)buf, len, true);
}

static int option_reply(int fd, uint32_t opt, uint32_t type,
                        const void *data, uint32_t len)
{
    char head[20];
    uint64_t magic = htobe64(OPT_REPLY_MAGIC);
    uint32_t o = htobe32(opt), t = htobe32(type), l = htobe32(len);

    memcpy(head, &magic, 8);
    memcpy(head + 8, &o, 4);
    memcpy(head + 12, &t, 4);
    memcpy(head + 16, &l, 4);
    int ret = send_all(fd, head, sizeof head);
    return ret < 0 || !len ? ret : send_all(fd, data, len);
}

/* 1: NBD_OPT_GO accepted, go on to transmission; 0: the client left. */
static int handshake(struct pump *p)
{
    char greet[18];
    uint64_t m1 = htobe64(NBDMAGIC), m2 = htobe64(IHAVEOPT);
    uint16_t hflags = htobe16(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES);
    uint32_t cflags;
    int ret;

    memcpy(greet, &m1, 8);
    memcpy(greet + 8, &m2, 8);
    memcpy(greet + 16, &hflags, 2);
    if ((ret = send_all(p->sock, greet, sizeof greet)) < 0 ||
        (ret = recv_all(p->sock, &cflags, 4)) < 0)
        return ret;
    for (;;) {
        char head[16], data[4096];
        uint32_t opt, len;
        if ((ret = recv_all(p->sock, head, sizeof head)) < 0)
            return ret == -ECONNRESET ? 0 : ret;
        memcpy(&opt, head + 8, 4);
        memcpy(&len, head + 12, 4);
        opt = be32toh(opt);
        len = be32toh(len);
        if (len > sizeof data)
            return -EPROTO;
        if ((ret = recv_all(p->sock, data, len)) < 0)
            return ret;
        if (opt == OPT_ABORT) {
            (void)option_reply(p->sock, opt, REP_ACK, NULL, 0);
            return 0;
        }
        if (opt == OPT_STRUCTURED_REPLY && p->offer_structured && !len) {
            if ((ret = option_reply(p->sock, opt, REP_ACK, NULL, 0)) < 0)
                return ret;
            p->structured = true;
            continue;
        }
        if (opt != OPT_GO) {
            ret = option_reply(p->sock, opt, (uint32_t)REP_ERR_UNSUP, NULL, 0);
            if (ret < 0)
                return ret;
            continue;
        }
        char info[12];
        uint16_t type = htobe16(INFO_EXPORT);
        uint16_t tflags = htobe16(TX_HAS_FLAGS | TX_SEND_FLUSH |
                                  TX_CAN_MULTI_CONN);
        uint64_t size = htobe64(p->size);
        memcpy(info, &type, 2);
        memcpy(info + 2, &size, 8);
        memcpy(info + 10, &tflags, 2);
        if ((ret = option_reply(p->sock, opt, REP_INFO, info, sizeof info)) < 0 ||
            (ret = option_reply(p->sock, opt, REP_ACK, NULL, 0)) < 0)
            return ret;
        return 1;
    }
}

/* --- transmission --- */

void pump_reply_header(char *r, uint64_t cookie, uint32_t err)
{
    uint32_t magic = htobe32(SIMPLE_REPLY_MAGIC), e = htobe32(err);

    memcpy(r, &magic, 4);
    memcpy(r + 4, &e, 4);
    memcpy(r + 8, &cookie, 8);      /* echoed as it came */
}

static void put_reply(struct pump *p, uint64_t cookie, int err)
{
    pump_reply_header(p->tx + p->tx_len, cookie, (uint32_t)err);
    p->tx_len += REPLY_BYTES;
}

/* A structured reply's one and last chunk at c: the 20-byte header,
 * then the payload's first 8 bytes (a data chunk's offset; or an error
 * chunk's error, 4 bytes, and its empty message's length, 2). */
static void put_chunk(char *c, uint64_t cookie, uint16_t type, uint32_t len,
                      uint64_t first8)
{
    uint32_t magic = htobe32(STRUCTURED_REPLY_MAGIC), l = htobe32(len);
    uint16_t f = htobe16(CHUNK_FLAG_DONE), t = htobe16(type);
    uint64_t v = htobe64(first8);

    memcpy(c, &magic, 4);
    memcpy(c + 4, &f, 2);
    memcpy(c + 6, &t, 2);
    memcpy(c + 8, &cookie, 8);
    memcpy(c + 16, &l, 4);
    memcpy(c + 20, &v, 8);
}

size_t pump_read_header(char *h, bool structured, uint64_t cookie,
                        uint64_t off, uint32_t len, bool ok)
{
    if (!structured) {
        pump_reply_header(h, cookie, ok ? 0 : EIO);
        return REPLY_BYTES;
    }
    if (ok) {
        put_chunk(h, cookie, CHUNK_OFFSET_DATA, 8 + len, off);
        return DATA_CHUNK_BYTES;
    }
    put_chunk(h, cookie, CHUNK_ERROR, 6, (uint64_t)EIO << 32);
    return ERROR_CHUNK_BYTES;
}

/* Reads r's data after its reply's header in p->tx and queues both. */
static void put_read(struct pump *p, const struct pump_request *r)
{
    char *out = p->tx + p->tx_len;
    ssize_t n = pread(p->file, out + pump_read_head_bytes(p->structured),
                      r->len, (off_t)r->off);
    bool ok = n == (ssize_t)r->len;     /* replies are whole */

    p->tx_len += pump_read_header(out, p->structured, r->cookie, r->off,
                                  r->len, ok) + (ok ? r->len : 0);
}

bool pump_parse_request(const char *q, struct pump_request *r)
{
    uint32_t magic;

    memcpy(&magic, q, 4);
    memcpy(&r->type, q + 6, 2);
    memcpy(&r->cookie, q + 8, 8);
    memcpy(&r->off, q + 16, 8);
    memcpy(&r->len, q + 24, 4);
    r->type = be16toh(r->type);
    r->off = be64toh(r->off);
    r->len = be32toh(r->len);
    return be32toh(magic) == REQUEST_MAGIC && r->len <= MAX_PAYLOAD;
}

/* Handles the request at q (avail bytes received) if it is all there and
 * its reply fits: its length, 0 if it must wait, or a negative errno. */
static long handle_one(void *ctx, const char *q, size_t avail)
{
    struct pump *p = ctx;
    struct pump_request r;

    if (avail < REQUEST_BYTES)
        return 0;
    if (!pump_parse_request(q, &r))
        return -EPROTO;
    size_t need = pump_request_bytes(&r);
    size_t reply = r.type != CMD_READ ? REPLY_BYTES
                   : pump_read_head_bytes(p->structured) + r.len;
    if (avail < need)
        return 0;
    if (p->tx_len + reply > TX_BYTES) {
        p->tx_full = true;
        return 0;
    }
    int err = 0;
    ssize_t n;
    switch (r.type) {
    case CMD_READ:
        put_read(p, &r);
        break;
    case CMD_WRITE:
        n = pwrite(p->file, q + REQUEST_BYTES, r.len, (off_t)r.off);
        err = n == (ssize_t)r.len ? 0 : EIO;
        put_reply(p, r.cookie, err);
        break;
    case CMD_FLUSH:
        put_reply(p, r.cookie, fdatasync(p->file) == 0 ? 0 : EIO);
        break;
    case CMD_DISC:
        p->closing = true;
        break;
    default:
        put_reply(p, r.cookie, EINVAL);
        break;
    }
    return (long)need;
}

int pump_consume(struct pump *p, pump_take_fn *take, void *ctx)
{
    size_t done = 0;

    while (!p->closing) {
        long n = take(ctx, p->rx + done, p->rx_len - done);
        if (n < 0)
            return (int)n;
        if (n == 0)
            break;
        done += (size_t)n;
    }
    memmove(p->rx, p->rx + done, p->rx_len - done);
    p->rx_len -= done;
    return 0;
}

static int handle_received(struct pump *p)
{
    p->tx_full = false;
    return pump_consume(p, handle_one, p);
}

/* One trip into the kernel: send what replies are unsent and, unless
 * closing, receive what has come, waiting for both. A client with its
 * whole window sent (nbdcopy's 64 reads of 256 KiB are twice tx) sends
 * nothing more until it has its replies, so the receive must not wait
 * for what the send holds back: the send goes whole (MSG_WAITALL, not
 * a part as the socket takes it), and there is no receive while a
 * request already here waits for room for its reply. */
static int exchange(struct pump *p)
{
    struct io_uring_sqe *sqe;
    struct io_uring_cqe *cqe;
    unsigned waiting = 0;
    bool receiving = !p->closing && !p->tx_full && p->rx_len < RX_BYTES;

    if (p->tx_sent < p->tx_len) {
        sqe = io_uring_get_sqe(&p->ring);
        io_uring_prep_send(sqe, p->sock, p->tx + p->tx_sent,
                           p->tx_len - p->tx_sent,
                           MSG_NOSIGNAL | MSG_WAITALL);
        io_uring_sqe_set_data64(sqe, 1);
        waiting++;
    }
    if (receiving) {
        sqe = io_uring_get_sqe(&p->ring);
        io_uring_prep_recv(sqe, p->sock, p->rx + p->rx_len,
                           RX_BYTES - p->rx_len, 0);
        io_uring_sqe_set_data64(sqe, 2);
        waiting++;
    }
    if (!waiting)
        return 0;
    int ret = io_uring_submit_and_wait(&p->ring, waiting);
    if (ret < 0 && ret != -EINTR)
        return ret;
    while (waiting) {
        if ((ret = io_uring_wait_cqe(&p->ring, &cqe)) < 0) {
            if (ret == -EINTR)
                continue;
            return ret;
        }
        int res = cqe->res;
        uint64_t what = io_uring_cqe_get_data64(cqe);
        io_uring_cqe_seen(&p->ring, cqe);
        waiting--;
        if (res < 0)
            return res;
        if (what == 1) {
            p->tx_sent += (size_t)res;
            if (p->tx_sent == p->tx_len)
                p->tx_sent = p->tx_len = 0;
        } else if (res == 0) {
            p->closing = true;
        } else {
            p->rx_len += (size_t)res;
        }
    }
    return 0;
}

static int transmit(struct pump *p)
{
    int ret;

    p->rx_len = p->tx_len = p->tx_sent = 0;
    p->closing = p->tx_full = false;
    do {
        if ((ret = exchange(p)) < 0 || (ret = handle_received(p)) < 0)
            return ret;
    } while (!p->closing || p->tx_len > p->tx_sent);
    return 0;
}

/* One connection, on its own thread: the ring and buffers are its own,
 * the file is shared. */
static void *serve_connection(void *arg)
{
    struct pump *p = arg;
    int ret = io_uring_queue_init(RING_ENTRIES, &p->ring,
                                  IORING_SETUP_COOP_TASKRUN |
                                  IORING_SETUP_TASKRUN_FLAG);

    if (ret < 0)
        goto out;
    p->rx = malloc(RX_BYTES);
    p->tx = malloc(TX_BYTES);
    ret = -ENOMEM;
    if (p->rx && p->tx) {
        pump_tune_socket(p->sock, true);
        ret = handshake(p);
        if (ret > 0)
            ret = p->pipelined ? pump_transmit_ring(p) : transmit(p);
    }
    free(p->rx);
    free(p->tx);
    io_uring_queue_exit(&p->ring);
out:
    close(p->sock);
    if (ret < 0)
        fprintf(stderr, "nbd-pump: connection: %s\n", strerror(-ret));
    free(p);
    return NULL;
}

static void serve(const struct pump *model, int listener)
{
    pthread_attr_t attr;
    int err = pthread_attr_init(&attr);

    if (!err)
        err = pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (err) {
        fail("thread attributes", err);
        return;
    }
    for (;;) {
        int sock = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
        if (sock < 0) {
            if (errno == EINTR)
                continue;
            fail("accept", errno);
            return;
        }
        struct pump *p = malloc(sizeof(*p));
        pthread_t thread;
        err = ENOMEM;
        if (p) {
            *p = *model;
            p->sock = sock;
            err = pthread_create(&thread, &attr, serve_connection, p);
        }
        if (err) {
            fail("connection thread", err);
            free(p);
            close(sock);
        }
    }
}

int main(int argc, char **argv)
{
    struct pump p = { .sock = -1 };
    struct stat st;

    int oflags = O_RDWR | O_CLOEXEC;

    for (; argc > 1 && strncmp(argv[1], "--", 2) == 0; argv++, argc--) {
        if (strcmp(argv[1], "--ring") == 0)
            p.pipelined = true;
        else if (strcmp(argv[1], "--direct") == 0)
            oflags |= O_DIRECT;
        else if (strcmp(argv[1], "--structured") == 0)
            p.offer_structured = true;
        else
            break;
    }
    if (argc != 3) {
        fprintf(stderr, "usage: nbd-pump [--ring] [--direct] [--structured] "
                        "unix:PATH|tcp:PORT FILE\n");
        return 2;
    }
    p.file = open(argv[2], oflags);
    if (p.file < 0 || fstat(p.file, &st) < 0) {
        fail(argv[2], errno);
        return 1;
    }
    p.size = (uint64_t)st.st_size;
    int listener = pump_listen(argv[1]);
    if (listener < 0) {
        fail(argv[1], -listener);
        return 1;
    }
    serve(&p, listener);        /* returns only if accept fails */
    return 1;
}
