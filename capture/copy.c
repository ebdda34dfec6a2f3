/* SPDX-License-Identifier: MIT */
/*
 * The copy engine. One worker thread per target connection takes the
 * next request from a shared cursor, reads it from the source and sends
 * it with libnbd's aio calls, keeping several requests in flight on its
 * connection; it flushes its connection every flush_every/connections
 * bytes and at the end. The first error stops every worker: a copy is
 * either complete and flushed, or reported as failed.
 */
#include "config.h"

#include "capture/capture.h"

#include <errno.h>
#include <libnbd.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Bytes of buffers in flight, all connections together. */
#define INFLIGHT_BYTES (UINT64_C(256) << 20)

struct shared {
    pthread_mutex_t lock;
    const struct cap_extents *reqs;
    size_t next;
    struct cap_source *src;
    const struct cap_copy_opts *o;
    struct cap_counters *c;
    int failed;                 /* set once; workers stop taking requests */
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
};

struct request {
    struct worker *w;
    uint64_t off, len;
    bool zero;
    void *buf;
};

static void fail(struct shared *sh, const struct sd_error *e)
{
    pthread_mutex_lock(&sh->lock);
    if (!sh->failed)
        sh->err = *e;
    __atomic_store_n(&sh->failed, 1, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&sh->lock);
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

static int request_done(void *opaque, int *error)
{
    struct request *r = opaque;
    struct worker *w = r->w;

    w->inflight--;
    w->inflight_bytes -= r->zero ? 0 : r->len;
    if (*error) {
        struct sd_error e;

        sd_error_set(&e, -*error, "%s: %s at %llu (%llu bytes): %s", w->sh->o->target,
                     r->zero ? "write zeroes" : "write", (unsigned long long)r->off,
                     (unsigned long long)r->len, strerror(*error));
        fail(w->sh, &e);
    } else {
        __atomic_add_fetch(r->zero ? &w->sh->c->zeroed : &w->sh->c->written, r->len,
                           __ATOMIC_RELAXED);
    }
    return 1;
}

static void request_free(void *opaque)
{
    struct request *r = opaque;

    free(r->buf);
    free(r);
}

/* Wait until fewer than max requests are in flight (0: none). */
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

static bool take(struct shared *sh, struct cap_extent *e)
{
    bool got = false;

    pthread_mutex_lock(&sh->lock);
    if (!sh->failed && sh->next < sh->reqs->n) {
        *e = sh->reqs->v[sh->next++];
        got = true;
    }
    pthread_mutex_unlock(&sh->lock);
    return got;
}

static int send_one(struct worker *w, const struct cap_extent *e)
{
    struct shared *sh = w->sh;
    struct request *r = calloc(1, sizeof(*r));
    nbd_completion_callback cb = { .callback = request_done, .user_data = r,
                                   .free = request_free };
    struct sd_error err;
    int64_t cookie;

    if (!r || (!e->zero && !(r->buf = malloc(e->len)))) {
        free(r);
        sd_error_set(&err, -ENOMEM, "out of memory for a %llu-byte request",
                     (unsigned long long)e->len);
        fail(sh, &err);
        return -1;
    }
    *r = (struct request){ .w = w, .off = e->off, .len = e->len, .zero = e->zero,
                           .buf = r->buf };
    if (!e->zero) {
        if (cap_source_read(sh->src, r->buf, e->len, e->off, &err) < 0) {
            request_free(r);
            fail(sh, &err);
            return -1;
        }
        __atomic_add_fetch(&sh->c->read, e->len, __ATOMIC_RELAXED);
    }
    w->inflight++;
    w->inflight_bytes += e->zero ? 0 : e->len;
    /* From here the free callback owns r, whatever happens. */
    cookie = e->zero ? nbd_aio_zero(w->h, e->len, e->off, cb, 0)
                     : nbd_aio_pwrite(w->h, r->buf, e->len, e->off, cb, 0);
    if (cookie < 0) {
        w->inflight--;
        w->inflight_bytes -= e->zero ? 0 : e->len;
        fail_nbd(sh, e->zero ? "write zeroes" : "write");
        return -1;
    }
    return 0;
}

static int flush(struct worker *w)
{
    if (wait_below(w, 1, 0) < 0)
        return -1;
    if (nbd_flush(w->h, 0) < 0) {
        fail_nbd(w->sh, "flush");
        return -1;
    }
    return 0;
}

static void *worker_main(void *opaque)
{
    struct worker *w = opaque;
    struct shared *sh = w->sh;
    uint64_t since_flush = 0;
    uint64_t flush_every = sh->o->flush_every / (uint64_t)sh->o->connections;
    struct cap_extent e;

    while (!failed(sh) && take(sh, &e)) {
        if (send_one(w, &e) < 0)
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
    if (!h || nbd_connect_uri(h, o->target) < 0) {
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
        if (!ws[i].h)
            continue;
        nbd_shutdown(ws[i].h, 0);
        nbd_close(ws[i].h);
    }
}

int cap_copy(struct cap_source *src, const struct cap_extents *reqs,
             const struct cap_copy_opts *o, struct cap_counters *c,
             struct cap_progress *p, struct sd_error *err)
{
    struct shared sh = { .reqs = reqs, .src = src, .o = o, .c = c };
    struct cap_copy_opts opts = *o;
    struct worker ws[64] = { 0 };
    int conns = 1, started = 0, ret;

    pthread_mutex_init(&sh.lock, NULL);
    ret = connect_target(o, &ws[0].h, err);
    if (ret == 0)
        ret = check_target(ws[0].h, src, o, reqs, &conns, err);
    if (conns > 64)
        conns = 64;
    for (int i = 1; ret == 0 && i < conns; i++)
        ret = connect_target(o, &ws[i].h, err);
    if (ret < 0)
        goto out;
    opts.connections = conns;
    sh.o = &opts;
    for (int i = 0; i < conns; i++) {
        ws[i].sh = &sh;
        ws[i].max_inflight = o->inflight / conns > 0 ? o->inflight / conns : 1;
        ws[i].max_bytes = INFLIGHT_BYTES / (uint64_t)conns;
        if (pthread_create(&ws[i].thread, NULL, worker_main, &ws[i]) != 0) {
            sd_error_set(&sh.err, -EAGAIN, "cannot start a thread");
            __atomic_store_n(&sh.failed, 1, __ATOMIC_RELEASE);
            break;
        }
        started++;
    }
    while (__atomic_load_n(&sh.done, __ATOMIC_ACQUIRE) < started) {
        struct timespec ts = { 0, 100 * 1000 * 1000 };

        nanosleep(&ts, NULL);
        cap_progress_update(p, c, false);
    }
    for (int i = 0; i < started; i++)
        pthread_join(ws[i].thread, NULL);
    if (sh.failed) {
        *err = sh.err;
        ret = sh.err.code ? sh.err.code : -EIO;
    } else if (sh.next != reqs->n) {
        /* Not reachable today; a success must mean every request. */
        ret = sd_error_set(err, -EIO, "%s: only %zu of %zu requests were sent",
                           o->target, sh.next, reqs->n);
    }
out:
    close_all(ws, conns > 0 ? conns : 1);
    pthread_mutex_destroy(&sh.lock);
    return ret;
}
