/* SPDX-License-Identifier: MIT */
#include "config.h"

#include "server/conn.h"
#include "common/co-io.h"
#include "common/log.h"
#include "server/exports.h"
#include "server/image-table.h"
#include "server/server.h"
#include "server/tls.h"
#include "server/worker.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Dead-peer detection for connections that go silent: keepalive probes
 * after 30 s idle, and unacknowledged data fails the socket after 60 s,
 * so a stale writer's socket errors out instead of lingering. */
enum { KEEPALIVE_IDLE_S = 30, KEEPALIVE_INTERVAL_S = 10,
       KEEPALIVE_COUNT = 3, USER_TIMEOUT_MS = 60000 };
/* Room for several large read replies in a unix socket (set_unix_options). */
enum { UNIX_SNDBUF_BYTES = 4 * 1024 * 1024 };
enum {
    TLS_INPUT_SIZE = 64 * 1024,
    /* Replies are encrypted a piece at a time and sent once this much
     * ciphertext is waiting: the output buffer stays one size and is
     * reused warm, where encrypting a whole batch of replies first grew
     * a fresh buffer of megabytes, every page of it a fault. */
    TLS_WRITE_PIECE = 64 * 1024,
    TLS_SEND_BATCH = 256 * 1024,
    TLS_RECORD_PLAINTEXT = 16 * 1024,   /* the most one record holds */
    /* A client that stopped reading does not hold up the close. */
    TLS_CLOSE_NOTIFY_SECONDS = 2,
};

struct conn_waiter {
    struct conn_waiter *next;
    char *name;                       /* NULL: every connection */
    uint64_t max_id;
    conn_waiter_fn *fn;
    void *arg;
};

int64_t now_realtime_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void set_tcp_options(int fd)
{
    int on = 1, idle = KEEPALIVE_IDLE_S, intvl = KEEPALIVE_INTERVAL_S;
    int cnt = KEEPALIVE_COUNT;
    unsigned timeout = USER_TIMEOUT_MS;

    /* Best effort: a socket without them still works. */
    (void)setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof(on));
    (void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
    (void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
    (void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
    (void)setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &timeout,
                     sizeof(timeout));
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
}

/* A unix socket's send buffer (208 KiB by default) holds less than one
 * 256 KiB read reply, so every such reply went out in two or more sends,
 * each after a poll for room: twice the ring trips of the reply itself
 * (about 53k submissions for 16k replies against 27k with room for
 * several; bench/README.md). The buffer is a limit, not an allocation:
 * it fills only while a client is slower than its disk, and the replies
 * in flight are bounded by inflight_per_connection anyway. TCP tunes its
 * own buffers. */
static void set_unix_options(int fd)
{
    int bytes = UNIX_SNDBUF_BYTES;

    /* Best effort: the kernel caps it at net.core.wmem_max. */
    (void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bytes, sizeof(bytes));
}

static void format_peer(struct conn *c)
{
    char host[INET6_ADDRSTRLEN] = "?";
    unsigned port = 0;

    if (c->addr.ss_family == AF_INET) {
        const struct sockaddr_in *a = (const void *)&c->addr;
        inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
        port = ntohs(a->sin_port);
        snprintf(c->peer, sizeof(c->peer), "%s:%u", host, port);
    } else if (c->addr.ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const void *)&c->addr;
        inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
        port = ntohs(a->sin6_port);
        snprintf(c->peer, sizeof(c->peer), "[%s]:%u", host, port);
    } else {
        snprintf(c->peer, sizeof(c->peer), "unix");
    }
}

static void conn_main(void *arg);

static void conn_start(void *arg)
{
    struct conn *c = arg;

    if (worker_spawn(conn_main, c) < 0) {
        sd_log_error("%s: out of memory starting the handshake", c->label);
        conn_finish(c);
    }
}

static void conn_resume(void *arg)
{
    struct conn *c = arg;

    if (worker_spawn((worker_fn *)conn_transmission, c) < 0) {
        sd_log_error("%s: out of memory starting transmission", c->label);
        conn_finish(c);
    }
}

/* w's connections other than c, which is counted on the worker it made
 * its handshake on until it is placed. */
static unsigned others_on(const struct worker *w, const struct conn *c)
{
    unsigned n = atomic_load(&w->n_conns);

    return w == c->worker && n > 0 ? n - 1 : n;
}

/* A connection goes to the worker that owns its image, where requests
 * need no hand-over; images, not connections, are what spreads the load
 * over the workers. Except later TLS connections of an image
 * (multi-connection clients): they go to the worker with the fewest
 * connections, since encryption is most of their work and it then runs
 * on every core, while only the image I/O is handed to the owner. Plain
 * connections gain little from that: moving bytes through a socket is
 * cheap next to a second thread's wake-ups, and four connections
 * reading a raw image spread over two workers cost 7-12 % more CPU per
 * GiB for 5-8 % more speed (bench/README.md). */
static struct worker *place_connection(struct conn *c)
{
    struct srv_image *im = c->def->image;
    struct worker *best = im->owner;

    c->counted_on_image = true;
    if (atomic_fetch_add(&im->n_conns, 1) == 0 || !c->tls)
        return best;
    for (unsigned i = 0; i < c->srv->n_workers; i++)
        if (others_on(&c->srv->workers[i], c) < others_on(best, c))
            best = &c->srv->workers[i];
    return best;
}

static void conn_main(void *arg)
{
    struct conn *c = arg;
    struct worker *target;

    if (conn_handshake(c) < 0) {
        conn_end_tls(c);
        conn_finish(c);
        return;
    }
    target = place_connection(c);
    if (target != c->worker) {
        atomic_fetch_sub(&c->worker->n_conns, 1);
        atomic_fetch_add(&target->n_conns, 1);
        pthread_mutex_lock(&c->srv->conns_lock);
        c->worker = target;
        pthread_mutex_unlock(&c->srv->conns_lock);
        /* From here the connection belongs to the target's thread; this
         * coroutine must not touch it again. */
        if (worker_post(target, conn_resume, c) < 0) {
            sd_log_error("%s: out of memory moving to %s", c->label,
                         target->name);
            conn_finish(c);
        }
        return;
    }
    conn_transmission(c);
}

int conn_accept(struct sd_server *srv, int fd, const struct sockaddr *addr,
                socklen_t addrlen, const char *listener)
{
    struct conn *c = calloc(1, sizeof(*c));
    struct worker *w;

    if (!c)
        return -ENOMEM;
    c->srv = srv;
    c->fd = fd;
    c->listener = listener;
    if (addrlen > sizeof(c->addr))
        addrlen = sizeof(c->addr);
    memcpy(&c->addr, addr, addrlen);
    c->is_unix = addr->sa_family == AF_UNIX;
    if (!c->is_unix)
        set_tcp_options(fd);
    else
        set_unix_options(fd);
    format_peer(c);
    c->since_ms = now_realtime_ms();
    c->budget = srv->settings.inflight_per_connection;

    w = &srv->workers[atomic_fetch_add(&srv->next_worker, 1) % srv->n_workers];
    c->worker = w;
    atomic_fetch_add(&w->n_conns, 1);

    pthread_mutex_lock(&srv->conns_lock);
    c->id = ++srv->next_conn_id;
    c->next = srv->conns;
    if (srv->conns)
        srv->conns->prev = c;
    srv->conns = c;
    srv->n_conns++;
    pthread_mutex_unlock(&srv->conns_lock);
    snprintf(c->label, sizeof(c->label), "conn %" PRIu64 " (%s)", c->id,
             c->peer);
    sd_log_info("%s: connected on %s", c->label, listener);

    if (worker_post(w, conn_start, c) < 0) {
        conn_finish(c);
        return -ENOMEM;
    }
    return 0;
}

static void conn_gone(void *arg)
{
    conn_check_waiters(arg);
}

void conn_finish(struct conn *c)
{
    struct sd_server *srv = c->srv;

    atomic_fetch_sub(&c->worker->n_conns, 1);
    sd_log_info("%s: disconnected%s%s", c->label, c->def ? " from " : "",
                c->def ? c->def->cfg->name : "");
    if (c->def) {
        if (c->counted_on_image)
            atomic_fetch_sub(&c->def->image->n_conns, 1);
        atomic_fetch_sub(&c->def->stats->clients, 1);
    }
    pthread_mutex_lock(&srv->conns_lock);
    if (c->prev)
        c->prev->next = c->next;
    else
        srv->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    srv->n_conns--;
    /* Closed under the lock: conn_request_close() never shuts down a
     * descriptor number that a new socket has taken. */
    close(c->fd);
    /* Released under the lock too: whoever sees the connection gone (a
     * removal, the server's stop, which may close the image next) finds
     * the last release of its export already posted to the control
     * loop, ahead of its own callback (conn_check_waiters). */
    if (c->def)
        export_def_unref(c->def);
    pthread_mutex_unlock(&srv->conns_lock);
    if (srv->test_finish_delay_us)
        usleep(srv->test_finish_delay_us);

    conn_splice_release(c);
    sd_tls_session_free(c->tls);
    free(c->tls_peer);
    free(c);
    /* Best effort: without memory the waiter is checked at the next
     * departure. */
    (void)worker_post(&srv->control, conn_gone, srv);
}

void conn_request_close(struct conn *c, bool graceful)
{
    atomic_store(&c->closing, true);
    /* Graceful: the reader sees the end of the stream, while requests
     * in flight still get their replies. Otherwise both directions go,
     * which is what a fence needs for a stale writer. */
    (void)shutdown(c->fd, graceful ? SHUT_RD : SHUT_RDWR);
}

/* --- byte transport --- */

static int tls_flush(struct conn *c, const struct timespec *deadline)
{
    int ret = 0;

    co_mutex_lock(&c->tls_send_lock);
    for (;;) {
        void *out;
        /* Taken, not borrowed: while this coroutine waits for the send,
         * another may add records to the session's output. */
        size_t n = sd_tls_session_take_output(c->tls, &out);

        if (!n)
            break;
        ret = co_send_all(&c->worker->ring, c->fd, out, n, deadline);
        sd_tls_session_give_back_output(c->tls, out);
        if (ret < 0)
            break;
    }
    co_mutex_unlock(&c->tls_send_lock);
    return ret;
}

static int tls_fill(struct conn *c, const struct timespec *deadline)
{
    void *space;
    size_t room = sd_tls_session_input_space(c->tls, TLS_INPUT_SIZE, &space);
    int n;

    if (!room)
        return -ENOMEM;
    n = co_recv_some(&c->worker->ring, c->fd, space, room, 0, deadline);
    if (n > 0)
        sd_tls_session_input_commit(c->tls, (size_t)n);
    return n < 0 ? n : 0;
}

int conn_read(struct conn *c, void *buf, size_t len,
              const struct timespec *deadline)
{
    char *p = buf;

    if (!c->tls)
        return co_recv_all(&c->worker->ring, c->fd, buf, len, deadline);
    while (len) {
        ssize_t n = sd_tls_session_read(c->tls, p, len);
        int ret;

        if (n > 0) {
            p += n;
            len -= (size_t)n;
            continue;
        }
        if (n == 0)
            return -ECONNRESET;
        if (n != -EAGAIN)
            return (int)n;
        ret = tls_flush(c, deadline);
        if (ret == 0)
            ret = tls_fill(c, deadline);
        if (ret < 0)
            return ret;
    }
    return 0;
}

int conn_write(struct conn *c, const void *buf, size_t len,
               const struct timespec *deadline)
{
    int ret;

    if (!c->tls)
        return co_send_all(&c->worker->ring, c->fd, buf, len, deadline);
    ret = sd_tls_session_write(c->tls, buf, len);
    return ret < 0 ? ret : tls_flush(c, deadline);
}

/* Encrypt n bytes, sending once a batch of ciphertext is waiting. */
static int tls_put(struct conn *c, const void *buf, size_t n)
{
    const void *pending;
    int ret = sd_tls_session_write(c->tls, buf, n);

    if (ret == 0 &&
        sd_tls_session_output(c->tls, &pending) >= TLS_SEND_BATCH)
        ret = tls_flush(c, NULL);
    return ret;
}

/* Each write is a record of its own, so reply headers and small reads
 * are gathered into full records first: a 16-byte header as its own
 * record costs the client two more receives, and a 4 KiB read reply
 * took two records. Pieces of a record's size or more go direct. */
static int tls_writev(struct conn *c, const struct iovec *iov, int iovcnt)
{
    /* From the pool, not a 16 KiB stack frame: inlined into
     * conn_writev, such a frame would push every call below it four
     * pages deeper into each connection's coroutine stack, and touched
     * stack pages stay resident. */
    char *rec = buf_pool_get(&c->worker->bufs, TLS_RECORD_PLAINTEXT);
    size_t used = 0;
    int ret = 0;

    if (!rec)
        return -ENOMEM;
    for (int i = 0; i < iovcnt && ret == 0; i++) {
        const char *p = iov[i].iov_base;
        size_t left = iov[i].iov_len;

        while (left && ret == 0) {
            bool gather = used || left < TLS_RECORD_PLAINTEXT;
            size_t room = gather ? TLS_RECORD_PLAINTEXT - used
                                 : TLS_WRITE_PIECE;
            size_t n = left < room ? left : room;

            if (gather) {
                memcpy(rec + used, p, n);
                used += n;
                if (used == TLS_RECORD_PLAINTEXT) {
                    ret = tls_put(c, rec, used);
                    used = 0;
                }
            } else {
                ret = tls_put(c, p, n);
            }
            p += n;
            left -= n;
        }
    }
    if (ret == 0 && used)
        ret = tls_put(c, rec, used);
    buf_pool_put(&c->worker->bufs, rec, TLS_RECORD_PLAINTEXT);
    return ret < 0 ? ret : tls_flush(c, NULL);
}

int conn_writev(struct conn *c, struct iovec *iov, int iovcnt)
{
    if (!c->tls)
        return co_sendmsg_all(&c->worker->ring, c->fd, iov, iovcnt, NULL);
    return tls_writev(c, iov, iovcnt);
}

int conn_start_tls(struct conn *c, const struct timespec *deadline)
{
    struct sd_error err;
    int ret;

    ret = sd_tls_session_new(c->srv->tls, &c->tls);
    if (ret < 0)
        return ret;
    for (;;) {
        sd_error_clear(&err);
        ret = sd_tls_session_handshake(c->tls, &err);
        int fret = tls_flush(c, deadline);
        if (ret == 0 && fret == 0)
            break;
        if (ret == -EAGAIN && fret == 0)
            fret = tls_fill(c, deadline);
        if (ret != -EAGAIN) {
            sd_log_warn("%s: TLS handshake failed: %s", c->label,
                        err.msg[0] ? err.msg : strerror(-ret));
            return ret;
        }
        if (fret < 0) {
            sd_log_warn("%s: TLS handshake: %s", c->label, strerror(-fret));
            return fret;
        }
    }
    const char *peer = sd_tls_session_peer(c->tls);
    if (peer)
        c->tls_peer = strdup(peer);
    sd_log_info("%s: TLS established%s%s", c->label, peer ? ", client " : "",
                peer ? peer : "");
    return 0;
}

/* Without close_notify a TLS client cannot tell our close from a cut
 * connection (gnutls calls it a premature termination, and libnbd fails
 * its nbd_shutdown). The socket may already be gone: then nothing is
 * lost, so the result is not looked at. */
void conn_end_tls(struct conn *c)
{
    struct timespec deadline;

    if (!c->tls)
        return;
    sd_tls_session_shutdown(c->tls);
    deadline = co_deadline_in(TLS_CLOSE_NOTIFY_SECONDS);
    (void)tls_flush(c, &deadline);
}

/* --- table queries and waiters (control loop) --- */

static bool conn_matches(const struct conn *c, const char *name,
                         uint64_t max_id)
{
    if (c->id >= max_id)
        return false;
    return !name || (c->def && strcmp(c->def->cfg->name, name) == 0);
}

uint64_t conn_next_id(struct sd_server *srv)
{
    uint64_t id;

    pthread_mutex_lock(&srv->conns_lock);
    id = srv->next_conn_id + 1;
    pthread_mutex_unlock(&srv->conns_lock);
    return id;
}

unsigned conn_count(struct sd_server *srv, const char *name)
{
    unsigned n = 0;

    pthread_mutex_lock(&srv->conns_lock);
    for (struct conn *c = srv->conns; c; c = c->next)
        n += conn_matches(c, name, UINT64_MAX);
    pthread_mutex_unlock(&srv->conns_lock);
    return n;
}

unsigned conn_close_matching(struct sd_server *srv, const char *name,
                             uint64_t older_than, bool graceful)
{
    unsigned n = 0;

    pthread_mutex_lock(&srv->conns_lock);
    for (struct conn *c = srv->conns; c; c = c->next) {
        if (conn_matches(c, name, older_than)) {
            conn_request_close(c, graceful);
            n++;
        }
    }
    pthread_mutex_unlock(&srv->conns_lock);
    return n;
}

int conn_close_by_id(struct sd_server *srv, uint64_t id)
{
    int ret = -ENOENT;

    pthread_mutex_lock(&srv->conns_lock);
    for (struct conn *c = srv->conns; c; c = c->next) {
        if (c->id == id) {
            conn_request_close(c, false);
            ret = 0;
            break;
        }
    }
    pthread_mutex_unlock(&srv->conns_lock);
    return ret;
}

json_t *conn_list_json(struct sd_server *srv)
{
    json_t *list = json_array();

    if (!list)
        return NULL;
    pthread_mutex_lock(&srv->conns_lock);
    for (struct conn *c = srv->conns; c; c = c->next) {
        json_t *o = json_pack(
            "{s:I, s:s, s:s, s:s?, s:b, s:s?, s:I, s:I, s:I, s:I, s:s, s:b}",
            "id", (json_int_t)c->id, "peer", c->peer, "listener",
            c->listener, "export",
            c->export_name[0] ? c->export_name : NULL, "tls", c->tls != NULL,
            "tls_peer", c->tls_peer, "since_ms", (json_int_t)c->since_ms,
            "requests", (json_int_t)atomic_load(&c->requests),
            "peak_in_flight", (json_int_t)atomic_load(&c->peak_inflight_reqs),
            "peak_in_flight_bytes",
            (json_int_t)atomic_load(&c->peak_inflight_bytes),
            "worker",
            c->worker->name, "closing", atomic_load(&c->closing));
        if (!o || json_array_append_new(list, o) < 0) {
            json_decref(list);
            list = NULL;
            break;
        }
    }
    pthread_mutex_unlock(&srv->conns_lock);
    return list;
}

static bool any_matching(struct sd_server *srv, const char *name,
                         uint64_t max_id)
{
    bool found = false;

    pthread_mutex_lock(&srv->conns_lock);
    for (struct conn *c = srv->conns; c && !found; c = c->next)
        found = conn_matches(c, name, max_id);
    pthread_mutex_unlock(&srv->conns_lock);
    return found;
}

int conn_wait_gone(struct sd_server *srv, const char *name, uint64_t max_id,
                   conn_waiter_fn *fn, void *arg)
{
    struct conn_waiter *w = calloc(1, sizeof(*w));

    if (!w)
        return -ENOMEM;
    if (name && !(w->name = strdup(name))) {
        free(w);
        return -ENOMEM;
    }
    w->max_id = max_id;
    w->fn = fn;
    w->arg = arg;
    w->next = srv->waiters;
    srv->waiters = w;
    /* Checked from the loop, never inside the caller: a control method
     * must have returned JSONRPC_PENDING before its reply is sent. */
    if (worker_post(&srv->control, conn_gone, srv) < 0) {
        srv->waiters = w->next;
        free(w->name);
        free(w);
        return -ENOMEM;
    }
    return 0;
}

void conn_check_waiters(struct sd_server *srv)
{
    struct conn_waiter **pp = &srv->waiters;

    while (*pp) {
        struct conn_waiter *w = *pp;

        if (any_matching(srv, w->name, w->max_id)) {
            pp = &w->next;
            continue;
        }
        *pp = w->next;
        /* Posted, not called: a connection that has just left the list
         * may have posted the last release of its export (conn_finish),
         * and fn must run after it. Called at once only without memory. */
        if (worker_post(&srv->control, w->fn, w->arg) < 0)
            w->fn(w->arg);
        free(w->name);
        free(w);
        /* fn, when called here, may have added waiters: start over. */
        pp = &srv->waiters;
    }
}
