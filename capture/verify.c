/* SPDX-License-Identifier: MIT */
/*
 * --verify: after the copy was acknowledged and flushed, read back from
 * the target every request the run wrote or zeroed and compare it with
 * the source, byte for byte (zero requests must read as zeros). The
 * bytes are compared, not a checksum or the target's block status: a
 * server that acknowledged a write it did not keep is what this catches.
 *
 * Like the copy: a few worker threads, each with its own target
 * connection (several only when the target advertises multi-conn, so
 * every connection is sure to see what the copy's connections flushed),
 * take the next piece (at most VERIFY_CHUNK bytes) from a shared cursor.
 * A worker starts the target read with libnbd's aio call, reads the
 * source meanwhile, then compares.
 *
 * The first difference is the lowest differing offset: pieces are taken
 * in order and a worker that finds a difference stops the others from
 * taking more, but each finishes the piece it holds, so every piece
 * before the differing one has been checked when the run reports it.
 */
#include "config.h"

#include "capture/capture.h"

#include <errno.h>
#include <libnbd.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define VERIFY_CHUNK (UINT64_C(32) << 20)
#define VERIFY_CONNS 4

struct vshared {
    pthread_mutex_t lock;
    const struct cap_extents *reqs;
    size_t next;                /* request the cursor is in */
    uint64_t next_off;          /* and where in it */
    struct cap_source *src;
    const char *target;
    struct cap_counters *c;
    bool stop;                  /* a difference or an error: take no more */
    bool differs;
    uint64_t diff_off;          /* the lowest differing offset */
    bool diff_zero;             /* it was in a zero request */
    bool failed;
    struct sd_error err;        /* the first error */
    int done;                   /* workers finished */
};

struct vworker {
    struct vshared *sh;
    struct nbd_handle *h;
    pthread_t thread;
    void *sbuf, *tbuf;
};

static void vfail(struct vshared *sh, const struct sd_error *e)
{
    pthread_mutex_lock(&sh->lock);
    if (!sh->failed)
        sh->err = *e;
    sh->failed = true;
    sh->stop = true;
    pthread_mutex_unlock(&sh->lock);
}

static void vfail_nbd(struct vshared *sh, const char *what)
{
    struct sd_error e;
    int code = nbd_get_errno();

    sd_error_set(&e, code > 0 ? -code : -EIO, "%s: verify: %s: %s", sh->target, what,
                 nbd_get_error() ? nbd_get_error() : "failed");
    vfail(sh, &e);
}

static void differs(struct vshared *sh, uint64_t off, bool zero)
{
    pthread_mutex_lock(&sh->lock);
    if (!sh->differs || off < sh->diff_off) {
        sh->diff_off = off;
        sh->diff_zero = zero;
    }
    sh->differs = true;
    sh->stop = true;
    pthread_mutex_unlock(&sh->lock);
}

/* The next piece: at most VERIFY_CHUNK bytes of one request. */
static bool take(struct vshared *sh, struct cap_extent *e)
{
    bool got = false;

    pthread_mutex_lock(&sh->lock);
    if (!sh->stop && sh->next < sh->reqs->n) {
        const struct cap_extent *r = &sh->reqs->v[sh->next];
        uint64_t left = r->len - sh->next_off;

        e->off = r->off + sh->next_off;
        e->len = left > VERIFY_CHUNK ? VERIFY_CHUNK : left;
        e->zero = r->zero;
        sh->next_off += e->len;
        if (sh->next_off == r->len) {
            sh->next++;
            sh->next_off = 0;
        }
        got = true;
    }
    pthread_mutex_unlock(&sh->lock);
    return got;
}

/* Index of the first byte that differs from want (NULL: from zero). */
static uint64_t first_difference(const unsigned char *got, const unsigned char *want,
                                 uint64_t len)
{
    uint64_t i = 0;

    while (i < len && got[i] == (want ? want[i] : 0))
        i++;
    return i;
}

static bool all_zero(const unsigned char *b, uint64_t len)
{
    return len == 0 || (b[0] == 0 && memcmp(b, b + 1, len - 1) == 0);
}

static int check_piece(struct vworker *w, const struct cap_extent *e)
{
    struct vshared *sh = w->sh;
    struct sd_error err;
    int64_t cookie;
    int src_ret = 0, r;
    bool same;

    cookie = nbd_aio_pread(w->h, w->tbuf, e->len, e->off, NBD_NULL_COMPLETION, 0);
    if (cookie < 0) {
        vfail_nbd(sh, "read");
        return -1;
    }
    if (!e->zero)
        src_ret = cap_source_read(sh->src, w->sbuf, e->len, e->off, &err);
    /* Wait for the target's answer even when the source failed: the
     * buffer is the target read's until then. */
    while ((r = nbd_aio_command_completed(w->h, cookie)) == 0) {
        if (nbd_poll(w->h, -1) < 0) {
            vfail_nbd(sh, "connection");
            return -1;
        }
    }
    if (r < 0) {
        int code = nbd_get_errno();

        sd_error_set(&err, code > 0 ? -code : -EIO, "%s: verify: read at %llu "
                     "(%llu bytes): %s", sh->target, (unsigned long long)e->off,
                     (unsigned long long)e->len, nbd_get_error());
        vfail(sh, &err);
        return -1;
    }
    if (src_ret < 0) {
        vfail(sh, &err);
        return -1;
    }
    same = e->zero ? all_zero(w->tbuf, e->len) : memcmp(w->tbuf, w->sbuf, e->len) == 0;
    if (!same) {
        differs(sh, e->off + first_difference(w->tbuf, e->zero ? NULL : w->sbuf, e->len),
                e->zero);
        return -1;
    }
    __atomic_add_fetch(&sh->c->verified, e->len, __ATOMIC_RELAXED);
    return 0;
}

static void *verify_main(void *opaque)
{
    struct vworker *w = opaque;
    struct cap_extent e;

    while (take(w->sh, &e))
        if (check_piece(w, &e) < 0)
            break;
    __atomic_add_fetch(&w->sh->done, 1, __ATOMIC_RELEASE);
    return NULL;
}

static struct nbd_handle *connect_target(const char *uri, struct sd_error *err)
{
    struct nbd_handle *h = nbd_create();

    if (!h || cap_nbd_connect_uri(h, uri) < 0) {
        int code = nbd_get_errno();

        sd_error_set(err, code > 0 ? -code : -EIO, "%s: verify: %s", uri,
                     nbd_get_error());
        if (h)
            nbd_close(h);
        return NULL;
    }
    return h;
}

int cap_verify(struct cap_source *src, const struct cap_extents *reqs,
               const char *target_uri, struct cap_counters *c,
               struct cap_progress *p, struct sd_error *err)
{
    struct vshared sh = { .reqs = reqs, .src = src, .target = target_uri, .c = c };
    struct vworker ws[VERIFY_CONNS] = { 0 };
    uint64_t buf_len = 0, pieces = 0;
    bool need_src = false;
    int conns = 1, started = 0, ret = 0;

    /* Buffers as large as the largest piece; none for the source when
     * every request is a zero one. */
    for (size_t i = 0; i < reqs->n; i++) {
        uint64_t l = reqs->v[i].len > VERIFY_CHUNK ? VERIFY_CHUNK : reqs->v[i].len;

        buf_len = l > buf_len ? l : buf_len;
        need_src |= !reqs->v[i].zero;
        pieces += (reqs->v[i].len + VERIFY_CHUNK - 1) / VERIFY_CHUNK;
    }
    if (reqs->n == 0)
        return 0;
    pthread_mutex_init(&sh.lock, NULL);
    ws[0].h = connect_target(target_uri, err);
    if (!ws[0].h) {
        ret = err->code;
        goto out;
    }
    if (nbd_can_multi_conn(ws[0].h) == 1)
        conns = pieces < VERIFY_CONNS ? (int)pieces : VERIFY_CONNS;
    for (int i = 0; i < conns; i++) {
        if (i > 0 && !(ws[i].h = connect_target(target_uri, err))) {
            ret = err->code;
            goto out;
        }
        ws[i].sh = &sh;
        ws[i].tbuf = malloc(buf_len);
        ws[i].sbuf = need_src ? malloc(buf_len) : NULL;
        if (!ws[i].tbuf || (need_src && !ws[i].sbuf)) {
            ret = sd_error_set(err, -ENOMEM, "out of memory for verify buffers");
            goto out;
        }
    }
    for (int i = 0; i < conns; i++) {
        if (pthread_create(&ws[i].thread, NULL, verify_main, &ws[i]) != 0) {
            struct sd_error e;

            sd_error_set(&e, -EAGAIN, "cannot start a thread");
            vfail(&sh, &e);
            break;
        }
        started++;
    }
    cap_progress_wait(p, c, &sh.done, started);
    for (int i = 0; i < started; i++)
        pthread_join(ws[i].thread, NULL);
    /* A difference is the news, even if another worker also failed. */
    if (sh.differs) {
        ret = sd_error_set(err, -EIO, "%s: verify failed: the target differs from the "
                           "source at byte %llu%s", target_uri,
                           (unsigned long long)sh.diff_off,
                           sh.diff_zero ? " (it should read as zeros)" : "");
    } else if (sh.failed) {
        *err = sh.err;
        ret = sh.err.code ? sh.err.code : -EIO;
    } else if (sh.next != reqs->n) {
        ret = sd_error_set(err, -EIO, "%s: verify: only %zu of %zu requests were checked",
                           target_uri, sh.next, reqs->n);
    }
out:
    for (int i = 0; i < VERIFY_CONNS; i++) {
        if (ws[i].h) {
            nbd_shutdown(ws[i].h, 0);
            nbd_close(ws[i].h);
        }
        free(ws[i].sbuf);
        free(ws[i].tbuf);
    }
    pthread_mutex_destroy(&sh.lock);
    return ret;
}
