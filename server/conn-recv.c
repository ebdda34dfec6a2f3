/* SPDX-License-Identifier: MIT */
/*
 * Receiving requests through a staging buffer (transmission phase).
 *
 * A client with many small requests in flight has many of them waiting
 * in the socket. Taking them one header and one payload at a time costs
 * two receives, so two trips through the ring, per request; on virtual
 * machines every system call is dear. One receive into a staging buffer
 * takes dozens at once, and the reader parses them from memory.
 *
 * Large payloads (RECV_DIRECT_MIN and more) skip the buffer: they are
 * received straight into their request buffer, and after one of them
 * the next staging receive asks for a header only, so that a stream of
 * large writes is not copied through the buffer as well.
 *
 * The buffer comes from the worker's pool while requests flow and goes
 * back when the connection is idle (nothing staged, nothing in flight),
 * so idle connections hold none. TLS connections read through their
 * session, which buffers records itself.
 */
#include "config.h"

#include "common/co-io.h"
#include "common/coroutine.h"
#include "server/conn.h"
#include "server/worker.h"

#include <errno.h>
#include <string.h>

enum { RECV_STAGE_BYTES = 64 * 1024, RECV_DIRECT_MIN = 16 * 1024 };

static size_t staged(const struct conn *c)
{
    return c->rbuf_end - c->rbuf_start;
}

static size_t take_staged(struct conn *c, void *buf, size_t len)
{
    size_t n = staged(c) < len ? staged(c) : len;

    memcpy(buf, c->rbuf + c->rbuf_start, n);
    c->rbuf_start += n;
    if (c->rbuf_start == c->rbuf_end)
        c->rbuf_start = c->rbuf_end = 0;
    return n;
}

void conn_recv_release(struct conn *c, bool drop_staged)
{
    if (!c->rbuf || (staged(c) && !drop_staged))
        return;
    buf_pool_put(&c->worker->bufs, c->rbuf, RECV_STAGE_BYTES);
    c->rbuf = NULL;
    c->rbuf_start = c->rbuf_end = 0;
}

bool conn_recv_idle(const struct conn *c)
{
    return !c->rbuf || !staged(c);
}

/* Fill the (empty) staging buffer with at most want bytes. */
static int stage_some(struct conn *c, size_t want)
{
    int n;

    if (!c->rbuf) {
        c->rbuf = buf_pool_get(&c->worker->bufs, RECV_STAGE_BYTES);
        if (!c->rbuf)
            return -ENOMEM;
    }
    if (want > RECV_STAGE_BYTES)
        want = RECV_STAGE_BYTES;
    /* Replies the sender has yet to queue go into the ring before this
     * receive: the ring runs submissions in order, and a receive that
     * runs first finds the socket empty (the client is still waiting
     * for those replies) and arms a poll, which costs more than the
     * receive itself. */
    if (c->send_head) {
        co_schedule(co_self());
        co_yield();
    }
    n = co_recv_some(&c->worker->ring, c->fd, c->rbuf, want, 0, NULL);
    if (n < 0)
        return n;
    c->rbuf_start = 0;
    c->rbuf_end = (uint32_t)n;
    return 0;
}

int conn_recv(struct conn *c, void *buf, size_t len)
{
    char *p = buf;
    size_t got = c->rbuf ? take_staged(c, p, len) : 0;

    if (got == len)
        return 0;
    if (c->tls || len - got >= RECV_DIRECT_MIN)
        return conn_read(c, p + got, len - got, NULL);
    while (got < len) {
        size_t want = c->rbuf_header_next ? len - got : RECV_STAGE_BYTES;
        int ret = stage_some(c, want);
        if (ret < 0)
            return ret;
        got += take_staged(c, p + got, len - got);
    }
    return 0;
}

void conn_recv_note_payload(struct conn *c, uint32_t len)
{
    c->rbuf_header_next = len >= RECV_DIRECT_MIN;
}
