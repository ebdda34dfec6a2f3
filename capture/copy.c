/* SPDX-License-Identifier: MIT */
/*
 * The copy engine. One worker thread per target connection takes the
 * next request from a shared cursor, reads it from the source and sends
 * it with libnbd's aio calls, keeping several requests in flight on its
 * connection; it flushes its connection every flush_every/connections
 * bytes and at the end. The first error stops every worker: a copy is
 * either complete and flushed, or reported as failed.
 *
 * Each request moves pending -> acknowledged -> durable; it is durable
 * once the connection that sent it has flushed after its reply. A
 * failed copy hands back every request that is not durable, and says
 * whether the failure was a lost connection (resume.c tries again) or
 * a refusal (a write error, a bad source) that trying again cannot mend.
 */
#include "config.h"

#include "capture/capture.h"

#include <errno.h>
#include <libnbd.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Bytes of buffers in flight, all connections together. */
#define INFLIGHT_BYTES (UINT64_C(256) << 20)
/* Zero detection's granularity: runs of zeros this long or longer in
 * the data are sent as WRITE_ZEROES (or skipped on a fresh target). */
#define ZERO_BLOCK (UINT64_C(64) << 10)
/* Buffers a worker keeps for its next requests. */
#define BUFFERS_KEPT 64

enum { REQ_PENDING, REQ_ACKED, REQ_DURABLE };

struct shared {
    pthread_mutex_t lock;
    const struct cap_extents *reqs;
    unsigned char *state;       /* per request, REQ_* */
    struct cap_counted *counted;    /* per request, once acknowledged */
    size_t next;
    struct cap_source *src;
    const struct cap_copy_opts *o;
    struct cap_counters *c;
    int failed;                 /* set once; workers stop taking requests */
    bool final;                 /* an error no reconnect can mend */
    bool can_zero;              /* the target has WRITE_ZEROES */
    struct sd_error err;        /* the first error */
    int done;                   /* workers finished */
};

struct worker {
    struct shared *sh;
    struct nbd_handle *h;
    pthread_t thread;
    int max_inflight;
    uint64_t max_bytes;
    int inflight;
    uint64_t inflight_bytes;
    size_t *acked;              /* acknowledged since this connection's last flush */
    size_t nacked, acked_cap;
    void *free_bufs[BUFFERS_KEPT];
    int nfree;
};

/* One request of the plan, in flight as one or more NBD commands: its
 * data cut where blocks of zeros start and end. */
struct unit {
    struct worker *w;
    size_t index;
    uint64_t off, len;
    void *buf;                  /* the worker's, NULL for a zero request */
    int refs;                   /* commands in flight, +1 while sending */
    bool failed;
    struct cap_counted counted; /* what it adds to the counters once acked */
};

struct command {
    struct unit *u;
    uint64_t off, len;
    bool zero;
};

static void fail(struct shared *sh, const struct sd_error *e)
{
    pthread_mutex_lock(&sh->lock);
    if (!sh->failed)
        sh->err = *e;
    __atomic_store_n(&sh->failed, 1, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&sh->lock);
}

/* The source, memory or a signal: trying the target again cannot help. */
static void fail_final(struct shared *sh, const struct sd_error *e)
{
    pthread_mutex_lock(&sh->lock);
    if (!sh->failed)
        sh->final = true;
    pthread_mutex_unlock(&sh->lock);
    fail(sh, e);
}

static void fail_nbd(struct shared *sh, const char *what)
{
    struct sd_error e;
    int code = nbd_get_errno();

    sd_error_set(&e, code > 0 ? -code : -EIO, "%s: %s: %s", sh->o->target, what,
                 nbd_get_error() ? nbd_get_error() : "failed");
    fail(sh, &e);
}

static bool failed(struct shared *sh)
{
    return __atomic_load_n(&sh->failed, __ATOMIC_ACQUIRE);
}

static int note_acked(struct worker *w, size_t index)
{
    if (w->nacked == w->acked_cap) {
        size_t cap = w->acked_cap ? 2 * w->acked_cap : 256;
        size_t *v = realloc(w->acked, cap * sizeof(*v));

        if (!v)
            return -ENOMEM;
        w->acked = v;
        w->acked_cap = cap;
    }
    w->acked[w->nacked++] = index;
    w->sh->state[index] = REQ_ACKED;
    return 0;
}

/* Buffers of request_size bytes are reused: a fresh one per request
 * would fault every page of it in again, the most of a copy's CPU. */
static void *buffer_get(struct worker *w)
{
    if (w->nfree)
        return w->free_bufs[--w->nfree];
    return malloc(w->sh->o->request_size);
}

static void buffer_put(struct worker *w, void *buf)
{
    if (w->nfree < BUFFERS_KEPT)
        w->free_bufs[w->nfree++] = buf;
    else
        free(buf);
}

static void add_counted(struct cap_counters *c, const struct cap_counted *n)
{
    __atomic_add_fetch(&c->written, n->written, __ATOMIC_RELAXED);
    __atomic_add_fetch(&c->zeroed, n->zeroed, __ATOMIC_RELAXED);
    __atomic_add_fetch(&c->skipped, n->skipped, __ATOMIC_RELAXED);
}

/* The last command of a unit answered (or none could be sent). */
static void unit_put(struct unit *u)
{
    struct worker *w = u->w;

    if (--u->refs > 0)
        return;
    if (!u->failed) {
        if (note_acked(w, u->index) < 0) {
            struct sd_error e;

            sd_error_set(&e, -ENOMEM, "out of memory");
            fail_final(w->sh, &e);
        } else {
            w->sh->counted[u->index] = u->counted;
            add_counted(w->sh->c, &u->counted);
        }
    }
    if (u->buf) {
        buffer_put(w, u->buf);
        w->inflight_bytes -= u->len;
    }
    w->inflight--;
    free(u);
}

static int command_done(void *opaque, int *error)
{
    struct command *cmd = opaque;
    struct unit *u = cmd->u;

    if (*error) {
        struct sd_error e;

        sd_error_set(&e, -*error, "%s: %s at %llu (%llu bytes): %s", u->w->sh->o->target,
                     cmd->zero ? "write zeroes" : "write", (unsigned long long)cmd->off,
                     (unsigned long long)cmd->len, strerror(*error));
        fail(u->w->sh, &e);
        u->failed = true;
    }
    unit_put(u);
    return 1;
}

/* Wait until fewer than max units are in flight (0: none). */
static int wait_below(struct worker *w, int max, uint64_t max_bytes)
{
    while (w->inflight > 0 && (w->inflight >= max || w->inflight_bytes > max_bytes)) {
        if (nbd_poll(w->h, -1) < 0) {
            fail_nbd(w->sh, "connection");
            return -1;
        }
    }
    return 0;
}

static bool take(struct shared *sh, struct cap_extent *e, size_t *index)
{
    bool got = false;

    pthread_mutex_lock(&sh->lock);
    if (!sh->failed && cap_interrupted()) {
        sd_error_set(&sh->err, -EINTR, "interrupted by a signal");
        sh->final = true;
        __atomic_store_n(&sh->failed, 1, __ATOMIC_RELEASE);
    }
    if (!sh->failed && sh->next < sh->reqs->n) {
        *index = sh->next;
        *e = sh->reqs->v[sh->next++];
        got = true;
    }
    pthread_mutex_unlock(&sh->lock);
    return got;
}

static bool all_zero(const unsigned char *p, uint64_t len)
{
    return len == 0 || (p[0] == 0 && memcmp(p, p + 1, len - 1) == 0);
}

/* [off, off + len) of the unit as one command. Known zeros on a target
 * that reads as zeros need none. */
static int send_piece(struct unit *u, uint64_t off, uint64_t len, bool zero)
{
    struct worker *w = u->w;
    struct command *cmd;
    nbd_completion_callback cb = { .callback = command_done, .free = free };
    int64_t cookie;

    if (zero && w->sh->o->target_is_zero) {
        u->counted.skipped += len;
        return 0;
    }
    /* Zeros found in data go as data to a target without WRITE_ZEROES. */
    if (zero && u->buf && !w->sh->can_zero)
        zero = false;
    cmd = malloc(sizeof(*cmd));
    if (!cmd) {
        struct sd_error e;

        sd_error_set(&e, -ENOMEM, "out of memory");
        fail_final(w->sh, &e);
        return -1;
    }
    *cmd = (struct command){ .u = u, .off = off, .len = len, .zero = zero };
    cb.user_data = cmd;
    *(zero ? &u->counted.zeroed : &u->counted.written) += len;
    u->refs++;
    /* From here the free callback owns cmd, whatever happens. */
    cookie = zero ? nbd_aio_zero(w->h, len, off, cb, 0)
                  : nbd_aio_pwrite(w->h, (char *)u->buf + (off - u->off), len, off, cb, 0);
    if (cookie < 0) {
        u->refs--;
        u->failed = true;
        fail_nbd(w->sh, zero ? "write zeroes" : "write");
        return -1;
    }
    return 0;
}

/* Data read from the source, cut into runs of data and of zero blocks:
 * a guest's zeroed space costs no payload (none at all on a fresh
 * target). */
static int send_data(struct unit *u)
{
    const unsigned char *p = u->buf;
    uint64_t run = 0;
    bool run_zero = false;

    for (uint64_t at = 0; at < u->len; at += ZERO_BLOCK) {
        uint64_t n = u->len - at < ZERO_BLOCK ? u->len - at : ZERO_BLOCK;
        bool zero = all_zero(p + at, n);

        if (at > run && zero != run_zero) {
            if (send_piece(u, u->off + run, at - run, run_zero) < 0)
                return -1;
            run = at;
        }
        run_zero = zero;
    }
    return send_piece(u, u->off + run, u->len - run, run_zero);
}

static int send_one(struct worker *w, const struct cap_extent *e, size_t index)
{
    struct shared *sh = w->sh;
    struct unit *u = calloc(1, sizeof(*u));
    struct sd_error err;
    int ret;

    if (!u || (!e->zero && !(u->buf = buffer_get(w)))) {
        free(u);
        sd_error_set(&err, -ENOMEM, "out of memory for a %llu-byte request",
                     (unsigned long long)e->len);
        fail_final(sh, &err);
        return -1;
    }
    u->w = w;
    u->index = index;
    u->off = e->off;
    u->len = e->len;
    u->refs = 1;            /* held while its commands are sent */
    w->inflight++;
    w->inflight_bytes += u->buf ? e->len : 0;
    if (!e->zero && cap_source_read(sh->src, u->buf, e->len, e->off, &err) < 0) {
        u->failed = true;
        unit_put(u);
        fail_final(sh, &err);
        return -1;
    }
    if (!e->zero)
        __atomic_add_fetch(&sh->c->read, e->len, __ATOMIC_RELAXED);
    ret = e->zero ? send_piece(u, e->off, e->len, true) : send_data(u);
    unit_put(u);
    return ret;
}

static int flush(struct worker *w)
{
    if (wait_below(w, 1, 0) < 0)
        return -1;
    if (nbd_flush(w->h, 0) < 0) {
        fail_nbd(w->sh, "flush");
        return -1;
    }
    for (size_t i = 0; i < w->nacked; i++)
        w->sh->state[w->acked[i]] = REQ_DURABLE;
    w->nacked = 0;
    return 0;
}

static void *worker_main(void *opaque)
{
    struct worker *w = opaque;
    struct shared *sh = w->sh;
    uint64_t since_flush = 0;
    uint64_t flush_every = sh->o->flush_every / (uint64_t)sh->o->connections;
    struct cap_extent e;
    size_t index;

    while (!failed(sh) && take(sh, &e, &index)) {
        if (send_one(w, &e, index) < 0)
            break;
        since_flush += e.len;
        if (since_flush >= flush_every) {
            if (flush(w) < 0)
                break;
            since_flush = 0;
        }
        if (wait_below(w, w->max_inflight, w->max_bytes) < 0)
            break;
    }
    /* Every request this connection sent is acknowledged and flushed
     * before the worker counts as done. */
    if (!failed(sh))
        flush(w);
    __atomic_add_fetch(&sh->done, 1, __ATOMIC_RELEASE);
    return NULL;
}

static int connect_target(const struct cap_copy_opts *o, struct nbd_handle **out,
                          struct sd_error *err)
{
    struct nbd_handle *h = nbd_create();

    *out = h;
    if (!h || cap_nbd_connect_uri(h, o->target) < 0) {
        int code = nbd_get_errno();

        return sd_error_set(err, code > 0 ? -code : -EIO, "%s: %s", o->target,
                            nbd_get_error());
    }
    return 0;
}

/* The first connection decides: size, writable, multi-conn. */
static int check_target(struct nbd_handle *h, const struct cap_source *src,
                        const struct cap_copy_opts *o, const struct cap_extents *reqs,
                        int *conns, struct sd_error *err)
{
    int64_t size = nbd_get_size(h);

    if (size < 0)
        return sd_error_set(err, -EIO, "%s: %s", o->target, nbd_get_error());
    if ((uint64_t)size < src->size)
        return sd_error_set(err, -ENOSPC, "%s: the target (%lld bytes) is smaller than "
                            "the source (%llu bytes)", o->target, (long long)size,
                            (unsigned long long)src->size);
    if (nbd_is_read_only(h) == 1)
        return sd_error_set(err, -EROFS, "%s: the target is read-only", o->target);
    if (cap_extents_bytes(reqs, true) && nbd_can_zero(h) != 1)
        return sd_error_set(err, -EOPNOTSUPP, "%s: the target has no WRITE_ZEROES",
                            o->target);
    if (nbd_can_flush(h) != 1)
        return sd_error_set(err, -EOPNOTSUPP, "%s: the target has no FLUSH", o->target);
    /* Without multi-conn a flush on one connection would not cover the
     * others' writes on every server: use one. */
    *conns = nbd_can_multi_conn(h) == 1 ? o->connections : 1;
    return 0;
}

static void close_all(struct worker *ws, int n)
{
    for (int i = 0; i < n; i++) {
        if (ws[i].h) {
            nbd_shutdown(ws[i].h, 0);
            nbd_close(ws[i].h);
        }
        free(ws[i].acked);
        while (ws[i].nfree > 0)
            free(ws[i].free_bufs[--ws[i].nfree]);
    }
}

static bool connection_errno(int code)
{
    switch (-code) {
    case ECONNREFUSED: case ECONNRESET: case ECONNABORTED: case ENOTCONN:
    case EPIPE: case ESHUTDOWN: case ETIMEDOUT: case ENOENT: case EHOSTUNREACH:
    case ENETUNREACH: case ENETDOWN:
        return true;
    default:
        return false;
    }
}

/* A lost connection, unlike an error the target replied with, may be
 * mended by connecting again. */
static bool lost_connection(const struct shared *sh, const struct worker *ws, int n)
{
    if (sh->final)
        return false;
    for (int i = 0; i < n; i++)
        if (ws[i].h && (nbd_aio_is_dead(ws[i].h) == 1 || nbd_aio_is_closed(ws[i].h) == 1))
            return true;
    return connection_errno(sh->err.code);
}

static int append_request(struct cap_extents *x, const struct cap_extent *e)
{
    if (x->n == x->cap) {
        size_t cap = x->cap ? 2 * x->cap : 64;
        struct cap_extent *v = realloc(x->v, cap * sizeof(*v));

        if (!v)
            return -ENOMEM;
        x->v = v;
        x->cap = cap;
    }
    x->v[x->n++] = *e;
    return 0;
}

/* Hand back every request that is not durable, cut as they were.
 * Acknowledged ones leave the counters: they will be sent again. */
static int collect_left(const struct shared *sh, struct cap_counters *c,
                        struct cap_copy_result *res)
{
    const struct cap_extents *reqs = sh->reqs;

    res->flushed_to = UINT64_MAX;
    for (size_t i = 0; i < reqs->n; i++) {
        const struct cap_extent *e = &reqs->v[i];

        if (sh->state[i] == REQ_DURABLE)
            continue;
        if (res->flushed_to == UINT64_MAX)
            res->flushed_to = e->off;
        if (sh->state[i] == REQ_ACKED) {
            const struct cap_counted *n = &sh->counted[i];

            __atomic_sub_fetch(&c->written, n->written, __ATOMIC_RELAXED);
            __atomic_sub_fetch(&c->zeroed, n->zeroed, __ATOMIC_RELAXED);
            __atomic_sub_fetch(&c->skipped, n->skipped, __ATOMIC_RELAXED);
            __atomic_add_fetch(&c->resent, n->written + n->zeroed, __ATOMIC_RELAXED);
        }
        if (append_request(&res->left, e) < 0)
            return -ENOMEM;
    }
    return 0;
}

int cap_copy(struct cap_source *src, const struct cap_extents *reqs,
             const struct cap_copy_opts *o, struct cap_counters *c,
             struct cap_progress *p, struct cap_copy_result *res, struct sd_error *err)
{
    struct shared sh = { .reqs = reqs, .src = src, .o = o, .c = c };
    struct cap_copy_opts opts = *o;
    struct worker ws[64] = { 0 };
    int conns = 1, started = 0, ret;

    *res = (struct cap_copy_result){ .flushed_to = UINT64_MAX };
    sh.state = calloc(reqs->n ? reqs->n : 1, 1);
    sh.counted = calloc(reqs->n ? reqs->n : 1, sizeof(*sh.counted));
    if (!sh.state || !sh.counted) {
        free(sh.state);
        free(sh.counted);
        return sd_error_set(err, -ENOMEM, "out of memory");
    }
    pthread_mutex_init(&sh.lock, NULL);
    ret = connect_target(o, &ws[0].h, err);
    if (ret == 0)
        ret = check_target(ws[0].h, src, o, reqs, &conns, err);
    sh.can_zero = ret == 0 && nbd_can_zero(ws[0].h) == 1;
    if (conns > 64)
        conns = 64;
    for (int i = 1; ret == 0 && i < conns; i++)
        ret = connect_target(o, &ws[i].h, err);
    if (ret < 0) {
        /* Not one request sent: all of them are left. */
        res->retryable = connection_errno(ret);
        if (collect_left(&sh, c, res) < 0) {
            res->retryable = false;
            ret = sd_error_set(err, -ENOMEM, "out of memory");
        }
        goto out;
    }
    opts.connections = conns;
    sh.o = &opts;
    for (int i = 0; i < conns; i++) {
        ws[i].sh = &sh;
        ws[i].max_inflight = o->inflight / conns > 0 ? o->inflight / conns : 1;
        ws[i].max_bytes = INFLIGHT_BYTES / (uint64_t)conns;
        if (pthread_create(&ws[i].thread, NULL, worker_main, &ws[i]) != 0) {
            sd_error_set(&sh.err, -EAGAIN, "cannot start a thread");
            sh.final = true;
            __atomic_store_n(&sh.failed, 1, __ATOMIC_RELEASE);
            break;
        }
        started++;
    }
    cap_progress_wait(p, c, &sh.done, started);
    for (int i = 0; i < started; i++)
        pthread_join(ws[i].thread, NULL);
    if (sh.failed) {
        *err = sh.err;
        ret = sh.err.code ? sh.err.code : -EIO;
        res->retryable = lost_connection(&sh, ws, conns);
        if (collect_left(&sh, c, res) < 0) {
            res->retryable = false;
            ret = sd_error_set(err, -ENOMEM, "out of memory");
        }
    } else if (sh.next != reqs->n) {
        /* Not reachable today; a success must mean every request. */
        ret = sd_error_set(err, -EIO, "%s: only %zu of %zu requests were sent",
                           o->target, sh.next, reqs->n);
    }
out:
    close_all(ws, conns > 0 ? conns : 1);
    pthread_mutex_destroy(&sh.lock);
    free(sh.state);
    free(sh.counted);
    return ret;
}
