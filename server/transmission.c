/* SPDX-License-Identifier: MIT */
/*
 * The transmission phase of one connection, on the worker that owns its
 * export's image.
 *
 *   reader ──► one coroutine per request ──► reply queue ──► sender
 *
 * The reader takes requests in arrival order, registers writes for
 * ordering, and starts each request in its own coroutine, so many are
 * in flight and replies go out as they complete, in any order. It stops
 * reading while the connection's (or this worker's share of the
 * process's) in-flight bytes are over budget, and goes on when replies
 * have drained: a busy client is slowed down, never dropped.
 */
#include "config.h"

#include "common/byteorder.h"

#include "common/co-io.h"
#include "common/log.h"
#include "qcow2/image.h"
#include "server/conn.h"
#include "server/exports.h"
#include "server/image-table.h"
#include "server/nbd-proto.h"
#include "server/request.h"
#include "server/server.h"
#include "server/tls.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

enum {
    /* iovecs gathered into one sendmsg: at least what the largest reply
     * needs (a read of 2 * READ_HOLES_MAX spans, two iovecs each). */
    SEND_IOV_MAX = 512,
    STATUS_EXTENTS_MAX = 1024,  /* descriptors in one BLOCK_STATUS reply */
    READ_HOLES_MAX = 64,        /* hole chunks in one structured read */
    CACHE_CHUNK = 4 << 20,
    /* Reads this large of a raw image are spliced from the file
     * (reply-splice.c); smaller ones are cheaper copied: a splice is
     * two trips through the ring where a copy is none. */
    SPLICE_MIN = 64 * 1024,
    /* Reads smaller than this are answered as one data chunk without
     * asking the image where its holes are: the lookup (two lseeks on a
     * raw file) costs more than the few zeros it could leave unsent. */
    SPARSE_READ_MIN = 64 * 1024,
    META_INLINE = 32,           /* the reply headers of one chunk */
    BUF_ALIGN = 4096,           /* O_DIRECT-safe buffers */
};

struct nbd_req {
    struct nbd_req *next;
    struct conn *c;
    struct nbd_request r;
    void *buf;                  /* payload: written or read data */
    uint64_t budget;
    bool ordered;
    struct write_range wr;
    uint32_t error;             /* protocol errno, 0 on success */
    int ret;                    /* of the image phase */
    const char *msg;            /* its error message, or NULL */
    struct worker_msg hop;      /* to the image's owner and back */
    uint8_t *meta;              /* reply headers (meta_inline or owned) */
    uint8_t meta_inline[META_INLINE];
    struct iovec *iov;          /* reply (iov_inline or owned) */
    int iovcnt;
    struct iovec iov_inline[2];
    bool splice;                /* a read whose data is spliced from the
                                 * image's splice_fd */
    uint64_t *file_off;         /* at these offsets (per iov; owned) */
};


/* Payload and read buffers come from the pool of the connection's
 * worker, and go back to it there: the reader gets them, and replies are
 * finished and freed on that thread (a read served by another worker's
 * image gets its buffer before it is handed over). */
static void *req_buf_get(struct conn *c, size_t len)
{
    return buf_pool_get(&c->worker->bufs, len);
}

static void req_buf_release(struct nbd_req *q)
{
    buf_pool_put(&q->c->worker->bufs, q->buf, q->r.length);
    q->buf = NULL;
}

static uint32_t nbd_errno_of(int err)
{
    switch (-err) {
    case EPERM: case EROFS: case EACCES: return NBD_EPERM;
    case ENOSPC: case EDQUOT: case EFBIG: return NBD_ENOSPC;
    case EINVAL: case ERANGE: return NBD_EINVAL;
    case ENOTSUP: return NBD_ENOTSUP;
    case ENOMEM: return NBD_ENOMEM;
    case EOVERFLOW: return NBD_EOVERFLOW;
    case ESHUTDOWN: return NBD_ESHUTDOWN;
    default: return NBD_EIO;
    }
}

static const char *cmd_name(uint16_t type)
{
    static const char *const names[] = {
        "READ", "WRITE", "DISC", "FLUSH", "TRIM", "CACHE", "WRITE_ZEROES",
        "BLOCK_STATUS",
    };
    return type < sizeof(names) / sizeof(names[0]) ? names[type] : "?";
}

static struct srv_image *image_of(const struct conn *c)
{
    return c->def->image;
}

/* --- replies --- */

static void chunk_header(uint8_t *p, uint16_t flags, uint16_t type,
                         uint64_t cookie, uint32_t length)
{
    put_be32(p, NBD_STRUCTURED_REPLY_MAGIC);
    put_be16(p + 4, flags);
    put_be16(p + 6, type);
    memcpy(p + 8, &cookie, 8);
    put_be32(p + 16, length);
}

struct span {
    uint64_t offset, length;
    bool hole;
};

/* Room for a reply's headers: most fit in the request itself. */
static uint8_t *meta_alloc(struct nbd_req *q, size_t len)
{
    q->meta = len <= META_INLINE ? q->meta_inline : malloc(len);
    return q->meta;
}

static void meta_free(struct nbd_req *q)
{
    if (q->meta != q->meta_inline)
        free(q->meta);
    q->meta = NULL;
}

/* A spliced read: the data pieces of its reply (those with a NULL base,
 * one per data span in order) come from the file at the span's offset
 * (a raw image's guest offsets are its file's). */
static int file_pieces(struct nbd_req *q, const struct span *s, unsigned n)
{
    unsigned k = 0;

    q->file_off = calloc((size_t)q->iovcnt, sizeof(*q->file_off));
    if (!q->file_off)
        return -ENOMEM;
    for (int i = 0; i < q->iovcnt; i++) {
        if (q->iov[i].iov_base)
            continue;
        while (k < n && s[k].hole)
            k++;
        if (k == n)
            return -EINVAL;
        q->file_off[i] = s[k++].offset;
    }
    return 0;
}

static int reply_simple(struct nbd_req *q, bool with_data)
{
    if (!meta_alloc(q, NBD_SIMPLE_REPLY_SIZE))
        return -ENOMEM;
    put_be32(q->meta, NBD_SIMPLE_REPLY_MAGIC);
    put_be32(q->meta + 4, q->error);
    memcpy(q->meta + 8, &q->r.cookie, 8);
    q->iov = q->iov_inline;
    q->iov[0] = (struct iovec){ q->meta, NBD_SIMPLE_REPLY_SIZE };
    q->iovcnt = 1;
    if (with_data && q->error == 0) {
        q->iov[1] = (struct iovec){ q->buf, q->r.length };
        q->iovcnt = 2;
        if (q->splice)
            return file_pieces(q, &(struct span){ q->r.offset,
                                                  q->r.length, false }, 1);
    }
    return 0;
}

static int reply_structured_error(struct nbd_req *q, const char *msg)
{
    size_t n = strlen(msg);

    if (n > 1024)
        n = 1024;
    if (!meta_alloc(q, NBD_CHUNK_HEADER_SIZE + 6 + n))
        return -ENOMEM;
    chunk_header(q->meta, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_ERROR,
                 q->r.cookie, (uint32_t)(6 + n));
    put_be32(q->meta + 20, q->error);
    put_be16(q->meta + 24, (uint16_t)n);
    memcpy(q->meta + 26, msg, n);
    q->iov = q->iov_inline;
    q->iov[0] = (struct iovec){ q->meta, NBD_CHUNK_HEADER_SIZE + 6 + n };
    q->iovcnt = 1;
    return 0;
}

static bool needs_structured(const struct nbd_req *q)
{
    return q->c->structured && (q->r.type == NBD_CMD_READ ||
                                q->r.type == NBD_CMD_BLOCK_STATUS);
}

static int reply_error(struct nbd_req *q, uint32_t nbd_error, const char *msg)
{
    q->error = nbd_error;
    if (needs_structured(q))
        return reply_structured_error(q, msg);
    return reply_simple(q, false);
}

/* --- READ --- */

/* Cut [off, off+len) into data and hole spans; past READ_HOLES_MAX
 * spans the rest counts as data. */
static int read_spans(struct sd_img *img, uint64_t off, uint64_t len,
                      struct span *spans, unsigned *n)
{
    uint64_t end = off + len, pos = off;

    *n = 0;
    while (pos < end) {
        struct sd_extent e;
        int ret = sd_img_block_status(img, pos, end - pos, &e);
        bool hole;

        if (ret < 0)
            return ret;
        if (e.length == 0 || e.length > end - pos)
            e.length = end - pos;
        hole = (e.flags & SD_EXT_ZERO) != 0;
        if (*n && spans[*n - 1].hole == hole) {
            spans[*n - 1].length += e.length;
        } else if (*n == 2 * READ_HOLES_MAX) {
            spans[*n - 1].hole = false;
            spans[*n - 1].length = end - spans[*n - 1].offset;
            break;
        } else {
            spans[(*n)++] = (struct span){ pos, e.length, hole };
        }
        pos += e.length;
    }
    return 0;
}

_Static_assert(SEND_IOV_MAX >= 4 * READ_HOLES_MAX,
               "a read reply must fit one sendmsg");

static int reply_read_chunks(struct nbd_req *q, const struct span *s,
                             unsigned n)
{
    size_t meta_len = (size_t)n * (NBD_CHUNK_HEADER_SIZE + 12);
    uint8_t *p;

    meta_alloc(q, meta_len);
    q->iov = n == 1 ? q->iov_inline : calloc(2u * n, sizeof(*q->iov));
    if (!q->meta || !q->iov)
        return -ENOMEM;
    p = q->meta;
    q->iovcnt = 0;
    for (unsigned i = 0; i < n; i++) {
        uint16_t flags = i + 1 == n ? NBD_REPLY_FLAG_DONE : 0;
        uint8_t *start = p;

        if (s[i].hole) {
            chunk_header(p, flags, NBD_REPLY_TYPE_OFFSET_HOLE, q->r.cookie, 12);
            put_be64(p + 20, s[i].offset);
            put_be32(p + 28, (uint32_t)s[i].length);
            p += 32;
            q->iov[q->iovcnt++] = (struct iovec){ start, 32 };
        } else {
            chunk_header(p, flags, NBD_REPLY_TYPE_OFFSET_DATA, q->r.cookie,
                         (uint32_t)(8 + s[i].length));
            put_be64(p + 20, s[i].offset);
            p += 28;
            q->iov[q->iovcnt++] = (struct iovec){ start, 28 };
            q->iov[q->iovcnt++] = (struct iovec){
                q->buf ? (char *)q->buf + (s[i].offset - q->r.offset) : NULL,
                s[i].length };
        }
    }
    return q->splice ? file_pieces(q, s, n) : 0;
}

static int serve_read(struct nbd_req *q, const char **msg)
{
    struct sd_img *img = image_of(q->c)->img;
    bool chunked = q->c->structured && !(q->r.flags & NBD_CMD_FLAG_DF) &&
                   q->r.length >= SPARSE_READ_MIN;
    struct span *spans = NULL;
    unsigned n = 0;
    int ret = 0;

    if (chunked) {
        spans = malloc(2 * READ_HOLES_MAX * sizeof(*spans));
        if (!spans)
            return -ENOMEM;
        ret = read_spans(img, q->r.offset, q->r.length, spans, &n);
        if (ret < 0)
            goto out;
    }
    /* A spliced read's data is read as it is sent (reply-splice.c). */
    if (!q->splice)
        ret = sd_img_pread(img, q->buf, q->r.length, q->r.offset);
    if (ret < 0) {
        *msg = sd_img_strerror(img, ret);
        goto out;
    }
    if (!q->c->structured) {
        ret = reply_simple(q, true);
    } else if (!chunked || n <= 1) {
        struct span all = { q->r.offset, q->r.length, chunked && n == 1 &&
                            spans[0].hole };
        ret = reply_read_chunks(q, &all, 1);
    } else {
        ret = reply_read_chunks(q, spans, n);
    }
out:
    free(spans);
    return ret;
}

/* --- BLOCK_STATUS --- */

static int collect_extents(struct nbd_req *q, struct sd_extent *ext,
                           unsigned max, unsigned *n)
{
    struct sd_img *img = image_of(q->c)->img;
    uint64_t end = q->r.offset + q->r.length, pos = q->r.offset;

    *n = 0;
    while (pos < end && *n < max) {
        int ret = sd_img_block_status(img, pos, end - pos, &ext[*n]);
        if (ret < 0)
            return ret;
        if (ext[*n].length == 0 || ext[*n].length > end - pos)
            ext[*n].length = end - pos;
        pos += ext[(*n)++].length;
    }
    return 0;
}

static uint32_t status_base(const struct sd_extent *e)
{
    return (e->flags & SD_EXT_DATA ? 0 : NBD_STATE_HOLE) |
           (e->flags & SD_EXT_ZERO ? NBD_STATE_ZERO : 0);
}

static uint32_t status_depth(const struct sd_extent *e)
{
    return e->depth < 0 ? 0 : (uint32_t)e->depth + 1;
}

/* One BLOCK_STATUS chunk at p; returns its size. */
static size_t put_status_chunk(struct nbd_req *q, uint8_t *p, uint32_t ctx,
                               uint32_t (*status)(const struct sd_extent *),
                               const struct sd_extent *ext, unsigned n,
                               bool last)
{
    uint8_t *d = p + NBD_CHUNK_HEADER_SIZE + 4;
    unsigned count = 0;
    bool one = q->r.flags & NBD_CMD_FLAG_REQ_ONE;

    for (unsigned i = 0; i < n; i++) {
        uint32_t st = status(&ext[i]);
        if (count && status(&ext[i - 1]) == st) {
            put_be32(d - 8, get_be32(d - 8) + (uint32_t)ext[i].length);
            continue;
        }
        if (one && count == 1)
            break;
        put_be32(d, (uint32_t)ext[i].length);
        put_be32(d + 4, st);
        d += 8;
        count++;
    }
    chunk_header(p, last ? NBD_REPLY_FLAG_DONE : 0,
                 NBD_REPLY_TYPE_BLOCK_STATUS, q->r.cookie, 4 + 8 * count);
    put_be32(p + NBD_CHUNK_HEADER_SIZE, ctx);
    return (size_t)(d - p);
}

static int serve_block_status(struct nbd_req *q, const char **msg)
{
    unsigned max = q->r.flags & NBD_CMD_FLAG_REQ_ONE ? 1 : STATUS_EXTENTS_MAX;
    struct sd_extent *ext = malloc(max * sizeof(*ext));
    size_t per_ctx = NBD_CHUNK_HEADER_SIZE + 4 + 8 * (size_t)max, len = 0;
    unsigned n;
    int ret;

    if (!ext)
        return -ENOMEM;
    ret = collect_extents(q, ext, max, &n);
    if (ret < 0) {
        *msg = sd_img_strerror(image_of(q->c)->img, ret);
        goto out;
    }
    ret = -ENOMEM;
    if (!meta_alloc(q, 2 * per_ctx))
        goto out;
    if (q->c->ctx_base)
        len += put_status_chunk(q, q->meta, NBD_CONTEXT_ID_BASE, status_base,
                                ext, n, !q->c->ctx_depth);
    if (q->c->ctx_depth)
        len += put_status_chunk(q, q->meta + len, NBD_CONTEXT_ID_DEPTH,
                                status_depth, ext, n, true);
    q->iov = q->iov_inline;
    q->iov[0] = (struct iovec){ q->meta, len };
    q->iovcnt = 1;
    ret = 0;
out:
    free(ext);
    return ret;
}

/* --- the other commands --- */

static int serve_cache(struct nbd_req *q)
{
    struct sd_img *img = image_of(q->c)->img;
    uint64_t chunk = q->r.length < CACHE_CHUNK ? q->r.length : CACHE_CHUNK;
    void *scratch;
    int ret = 0;

    /* Reading pulls the range into the page cache and the engine's
     * metadata caches; the data itself is dropped. */
    if (posix_memalign(&scratch, BUF_ALIGN, chunk))
        return -ENOMEM;
    for (uint64_t pos = 0; pos < q->r.length && ret >= 0; pos += chunk) {
        uint64_t n = q->r.length - pos < chunk ? q->r.length - pos : chunk;
        ret = sd_img_pread(img, scratch, n, q->r.offset + pos);
    }
    free(scratch);
    return ret < 0 ? ret : 0;
}

static int serve_write_like(struct nbd_req *q)
{
    struct sd_img *img = image_of(q->c)->img;
    bool fua = q->r.flags & NBD_CMD_FLAG_FUA;
    unsigned flags = fua ? SD_REQ_FUA : 0;
    int ret;

    switch (q->r.type) {
    case NBD_CMD_WRITE:
        return sd_img_pwrite(img, q->buf, q->r.length, q->r.offset, flags);
    case NBD_CMD_WRITE_ZEROES:
        if (!(q->r.flags & NBD_CMD_FLAG_NO_HOLE))
            flags |= SD_REQ_MAY_UNMAP;
        if (q->r.flags & NBD_CMD_FLAG_FAST_ZERO)
            flags |= SD_REQ_NO_FALLBACK;
        return sd_img_zero(img, q->r.offset, q->r.length, flags);
    default: /* TRIM */
        ret = sd_img_discard(img, q->r.offset, q->r.length);
        return ret == 0 && fua ? sd_img_flush(img) : ret;
    }
}

static enum export_op op_of(uint16_t type)
{
    switch (type) {
    case NBD_CMD_READ: return EXPORT_OP_READ;
    case NBD_CMD_WRITE: return EXPORT_OP_WRITE;
    case NBD_CMD_WRITE_ZEROES: return EXPORT_OP_ZERO;
    case NBD_CMD_TRIM: return EXPORT_OP_TRIM;
    case NBD_CMD_FLUSH: return EXPORT_OP_FLUSH;
    case NBD_CMD_CACHE: return EXPORT_OP_CACHE;
    default: return EXPORT_OP_BLOCK_STATUS;
    }
}

static void queue_reply(struct nbd_req *q);
static bool is_ordered(uint16_t type);

static void test_delay(struct nbd_req *q)
{
    /* xorshift on the cookie: varied, yet the same for a replayed run. */
    uint64_t x = q->r.cookie ^ q->r.offset ^ 0x9e3779b97f4a7c15ull;

    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    co_sleep_ns(&worker_self()->ring,
                (x % (q->c->srv->test_delay_us + 1ull)) * 1000);
}

/* The part of a request that touches the image: on the thread of the
 * image's owner, in a coroutine. Builds the reply of a read or block
 * status; leaves the result in q->ret and q->msg. */
static void image_phase(struct nbd_req *q)
{
    struct srv_image *im = image_of(q->c);

    q->msg = NULL;
    if (q->c->srv->test_delay_us)
        test_delay(q);
    if (q->ordered)
        image_write_wait_earlier(im, &q->wr);
    switch (q->r.type) {
    case NBD_CMD_READ:
        q->ret = serve_read(q, &q->msg);
        break;
    case NBD_CMD_BLOCK_STATUS:
        q->ret = serve_block_status(q, &q->msg);
        break;
    case NBD_CMD_FLUSH:
        q->ret = sd_img_flush(im->img);
        break;
    case NBD_CMD_CACHE:
        q->ret = serve_cache(q);
        break;
    default:
        q->ret = serve_write_like(q);
        if (q->ret < 0)
            q->msg = sd_img_strerror(im->img, q->ret);
        break;
    }
    if (q->ordered)
        image_write_end(im, &q->wr);
}

/* Back on the connection's thread: count, reply, queue the reply. */
static void finish_request(struct nbd_req *q)
{
    int ret = q->ret;
    const char *msg = q->msg;

    if (q->r.type == NBD_CMD_WRITE)       /* the payload is done with */
        req_buf_release(q);
    if (ret < 0) {
        if (!msg)
            msg = strerror(-ret);
        sd_log_warn("%s: %s at %" PRIu64 "+%" PRIu32 " failed: %s",
                    q->c->label, cmd_name(q->r.type), q->r.offset,
                    q->r.length, msg);
        atomic_fetch_add(&q->c->def->stats->errors, 1);
        if (is_ordered(q->r.type) || q->r.type == NBD_CMD_FLUSH)
            export_stats_write_error(q->c->def->stats, op_of(q->r.type),
                                     ret, msg, q->r.offset, q->r.length);
        meta_free(q);
        if (q->iov != q->iov_inline)
            free(q->iov);
        q->iov = NULL;
        free(q->file_off);
        q->file_off = NULL;
        q->splice = false;
        ret = reply_error(q, nbd_errno_of(ret), msg);
    } else {
        export_stats_count(q->c->def->stats, op_of(q->r.type),
                           q->r.type == NBD_CMD_FLUSH ? 0 : q->r.length);
        if (!q->iov)
            ret = reply_simple(q, false);
    }
    if (ret < 0) {
        /* Not even an error reply could be built: the client would wait
         * forever for this cookie, so the connection must go. */
        sd_log_error("%s: out of memory replying; closing", q->c->label);
        conn_request_close(q->c, false);
    }
    queue_reply(q);
}

/* A connection on the image's own worker: both phases in one coroutine. */
static void serve_request(void *arg)
{
    struct nbd_req *q = arg;

    image_phase(q);
    finish_request(q);
}

/* --- requests served by another worker's image --- */

static void remote_finish(void *arg)
{
    finish_request(arg);
}

static void remote_image_phase(void *arg)
{
    struct nbd_req *q = arg;

    image_phase(q);
    worker_post_msg(q->c->worker, &q->hop, remote_finish, q);
}

/* On the owner's thread, in the order the connection's reader sent the
 * requests: that is the order overlapping writes must apply in. */
static void remote_start(void *arg)
{
    struct nbd_req *q = arg;
    struct coroutine *co;

    if (q->ordered)
        image_write_begin(image_of(q->c), &q->wr, q->r.offset, q->r.length);
    co = co_create(remote_image_phase, q);
    if (co) {
        co_enter(co);
        return;
    }
    if (q->ordered)
        image_write_end(image_of(q->c), &q->wr);
    q->ret = -ENOMEM;
    q->msg = NULL;
    worker_post_msg(q->c->worker, &q->hop, remote_finish, q);
}

/* --- request structs: from and back to the worker's cache --- */

/* worker_destroy() frees the cache knowing only that each one's first
 * word links the next. */
_Static_assert(offsetof(struct nbd_req, next) == 0, "next comes first");

static struct nbd_req *req_new(struct conn *c)
{
    struct worker *w = c->worker;
    struct nbd_req *q = w->free_reqs;

    if (!q)
        return calloc(1, sizeof(*q));
    w->free_reqs = q->next;
    w->n_free_reqs--;
    memset(q, 0, sizeof(*q));
    return q;
}

static void req_delete(struct nbd_req *q)
{
    struct worker *w = q->c->worker;

    if (w->n_free_reqs >= WORKER_FREE_REQS_MAX) {
        free(q);
        return;
    }
    q->next = w->free_reqs;
    w->free_reqs = q;
    w->n_free_reqs++;
}

/* --- sending --- */

static void free_req(struct nbd_req *q)
{
    struct conn *c = q->c;
    struct worker *w = c->worker;

    c->inflight_bytes -= q->budget;
    c->inflight_reqs--;
    w->budget_used -= q->budget;
    co_queue_wake_all(&c->budget_wait);
    if (c->inflight_reqs == 0)
        co_queue_wake_all(&c->idle_wait);
    req_buf_release(q);
    meta_free(q);
    if (q->iov != q->iov_inline)
        free(q->iov);
    free(q->file_off);
    req_delete(q);
}

static void queue_reply(struct nbd_req *q)
{
    struct conn *c = q->c;

    q->next = NULL;
    if (c->send_tail)
        c->send_tail->next = q;
    else
        c->send_head = q;
    c->send_tail = q;
    co_queue_wake_one(&c->send_wait);
}

/* Take replies off the queue until SEND_IOV_MAX iovecs are gathered. */
static struct nbd_req *gather(struct conn *c, struct iovec *iov, int *n)
{
    struct nbd_req *first = c->send_head, *last = NULL;

    *n = 0;
    for (struct nbd_req *q = first; q; q = q->next) {
        if (!q->iov || (*n && *n + q->iovcnt > SEND_IOV_MAX))
            break;
        if (q->file_off) {      /* spliced: goes out on its own */
            if (!*n)
                last = q;
            break;
        }
        memcpy(iov + *n, q->iov, (size_t)q->iovcnt * sizeof(*iov));
        *n += q->iovcnt;
        last = q;
    }
    if (!last) {                  /* a reply that could not be built */
        last = first;
    }
    c->send_head = last->next;
    if (!c->send_head)
        c->send_tail = NULL;
    last->next = NULL;
    return first;
}

static void sender(void *arg)
{
    struct conn *c = arg;
    struct iovec iov[SEND_IOV_MAX];

    for (;;) {
        struct nbd_req *batch;
        int n;

        while (!c->send_head && c->sender_running)
            co_queue_wait(&c->send_wait);
        if (!c->send_head)
            break;
        batch = gather(c, iov, &n);
        if (c->send_error == 0 && (n > 0 || batch->file_off)) {
            int ret = batch->file_off
                ? conn_send_spliced(c, batch->iov, batch->file_off,
                                    batch->iovcnt, image_of(c)->splice_fd)
                : conn_writev(c, iov, n);
            if (ret < 0) {
                c->send_error = ret;
                sd_log_info("%s: sending replies failed: %s", c->label,
                            strerror(-ret));
                conn_request_close(c, false);
            }
        }
        while (batch) {
            struct nbd_req *next = batch->next;
            free_req(batch);
            batch = next;
        }
        /* An idle TLS connection keeps no output buffers. */
        if (c->tls && c->inflight_reqs == 0)
            sd_tls_session_trim(c->tls);
    }
    c->sender_done = true;
    co_queue_wake_all(&c->idle_wait);
}

/* --- reading --- */

static void fill_limits(const struct conn *c, struct nbd_request_limits *l)
{
    const struct export_def *def = c->def;

    memset(l, 0, sizeof(*l));
    l->size = def->size;
    l->readonly = def->cfg->readonly;
    l->structured = c->structured;
    l->can_trim = def->image->caps.can_trim;
    l->can_fast_zero = def->image->caps.can_fast_zero;
    l->has_context = c->structured && (c->ctx_base || c->ctx_depth);
    l->min_block = def->cfg->direct ? 4096 : 1;
}

static bool over_budget(const struct conn *c)
{
    return c->inflight_reqs &&
           (c->inflight_bytes >= c->budget ||
            c->worker->budget_used >= c->worker->budget_max);
}

static uint64_t budget_of(const struct nbd_request *r)
{
    if (r->type == NBD_CMD_READ || r->type == NBD_CMD_WRITE)
        return r->length;
    return 0;
}

static bool is_ordered(uint16_t type)
{
    return type == NBD_CMD_WRITE || type == NBD_CMD_WRITE_ZEROES ||
           type == NBD_CMD_TRIM;
}

/* The payload of a refused write is read to stay in step with the
 * stream, through a small buffer rather than one of its own size. */
static int discard_payload(struct conn *c, uint32_t len)
{
    char buf[16384];

    while (len) {
        uint32_t n = len < sizeof(buf) ? len : (uint32_t)sizeof(buf);
        int ret = conn_recv(c, buf, n);
        if (ret < 0)
            return ret;
        len -= n;
    }
    return 0;
}

/* Read one request (and its payload); NULL at the end of the stream. */
static struct nbd_req *read_request(struct conn *c,
                                    const struct nbd_request_limits *lim,
                                    enum request_verdict *verdict)
{
    uint8_t hdr[NBD_REQUEST_SIZE];
    struct nbd_req *q;
    int ret;

    /* An idle connection waits for its next request without holding a
     * staging buffer. */
    if (c->inflight_reqs == 0 && conn_recv_idle(c)) {
        conn_recv_release(c, false);
        ret = conn_read(c, hdr, sizeof(hdr), NULL);
    } else {
        ret = conn_recv(c, hdr, sizeof(hdr));
    }
    if (ret < 0) {
        if (ret != -ECONNRESET && !atomic_load(&c->closing))
            sd_log_info("%s: reading: %s", c->label, strerror(-ret));
        return NULL;
    }
    q = req_new(c);
    if (!q) {
        sd_log_error("%s: out of memory; closing", c->label);
        return NULL;
    }
    q->c = c;
    if (!nbd_request_parse(hdr, &q->r)) {
        sd_log_warn("%s: bad request magic; closing", c->label);
        req_delete(q);
        return NULL;
    }
    atomic_fetch_add(&c->requests, 1);
    conn_recv_note_payload(c, nbd_request_has_payload(&q->r) ? q->r.length
                                                             : 0);
    *verdict = nbd_request_check(&q->r, lim, &q->error);
    if (*verdict == REQUEST_CLOSE || *verdict == REQUEST_DISCONNECT) {
        if (*verdict == REQUEST_CLOSE)
            sd_log_warn("%s: %s of %" PRIu32 " bytes is more than we take; "
                        "closing", c->label, cmd_name(q->r.type),
                        q->r.length);
        req_delete(q);
        return NULL;
    }
    if (nbd_request_has_payload(&q->r) && *verdict == REQUEST_REPLY_ERROR) {
        ret = discard_payload(c, q->r.length);
        if (ret < 0) {
            sd_log_info("%s: reading refused write payload: %s", c->label,
                        strerror(-ret));
            req_delete(q);
            return NULL;
        }
    } else if (nbd_request_has_payload(&q->r)) {
        q->buf = req_buf_get(c, q->r.length);
        if (!q->buf) {
            sd_log_error("%s: out of memory; closing", c->label);
            req_delete(q);
            return NULL;
        }
        ret = conn_recv(c, q->buf, q->r.length);
        if (ret < 0) {
            sd_log_info("%s: reading write payload: %s", c->label,
                        strerror(-ret));
            req_buf_release(q);
            req_delete(q);
            return NULL;
        }
    }
    return q;
}

static void account(struct conn *c, struct nbd_req *q)
{
    q->budget = budget_of(&q->r);
    c->inflight_bytes += q->budget;
    c->inflight_reqs++;
    if (c->inflight_reqs > atomic_load(&c->peak_inflight_reqs))
        atomic_store(&c->peak_inflight_reqs, c->inflight_reqs);
    if (c->inflight_bytes > atomic_load(&c->peak_inflight_bytes))
        atomic_store(&c->peak_inflight_bytes, c->inflight_bytes);
    c->worker->budget_used += q->budget;
}

/* Plain connections to raw images in memory splice large reads. */
static bool wants_splice(struct conn *c, const struct nbd_req *q)
{
    return !c->tls && q->r.length >= SPLICE_MIN &&
           image_of(c)->splice_fd >= 0 && conn_splice_ready(c);
}

static void start_request(struct conn *c, struct nbd_req *q,
                          enum request_verdict verdict)
{
    struct coroutine *co;

    account(c, q);
    if (verdict == REQUEST_REPLY_ERROR) {
        atomic_fetch_add(&c->def->stats->errors, 1);
        req_buf_release(q);
        if (reply_error(q, q->error, "request refused") < 0)
            conn_request_close(c, false);
        queue_reply(q);
        return;
    }
    if (q->r.type == NBD_CMD_READ && wants_splice(c, q)) {
        q->splice = true;
    } else if (q->r.type == NBD_CMD_READ &&
               !(q->buf = req_buf_get(c, q->r.length))) {
        if (reply_error(q, NBD_ENOMEM, "out of memory") < 0)
            conn_request_close(c, false);
        queue_reply(q);
        return;
    }
    if (is_ordered(q->r.type)) {
        q->ordered = true;
        c->wrote = true;
    }
    if (image_of(c)->owner != c->worker) {
        worker_post_msg(image_of(c)->owner, &q->hop, remote_start, q);
        return;
    }
    if (q->ordered)
        image_write_begin(image_of(c), &q->wr, q->r.offset, q->r.length);
    co = co_create(serve_request, q);
    if (!co) {
        if (q->ordered)
            image_write_end(image_of(c), &q->wr);
        q->ordered = false;
        if (reply_error(q, NBD_ENOMEM, "out of memory") < 0)
            conn_request_close(c, false);
        queue_reply(q);
        return;
    }
    co_enter(co);
}

/* Flushing the image from a connection on another worker. */
struct remote_flush {
    struct worker_msg hop;
    struct conn *c;
    struct coroutine *waiter;
    int ret;
    bool done;
};

static void remote_flush_done(void *arg)
{
    struct remote_flush *f = arg;

    f->done = true;
    co_enter(f->waiter);
}

static void remote_flush_co(void *arg)
{
    struct remote_flush *f = arg;

    f->ret = sd_img_flush(image_of(f->c)->img);
    worker_post_msg(f->c->worker, &f->hop, remote_flush_done, f);
}

static void remote_flush_start(void *arg)
{
    struct remote_flush *f = arg;
    struct coroutine *co = co_create(remote_flush_co, f);

    if (co) {
        co_enter(co);
        return;
    }
    f->ret = -ENOMEM;
    worker_post_msg(f->c->worker, &f->hop, remote_flush_done, f);
}

static int flush_image(struct conn *c)
{
    struct remote_flush f = { .c = c, .waiter = co_self() };

    if (image_of(c)->owner == c->worker)
        return sd_img_flush(image_of(c)->img);
    worker_post_msg(image_of(c)->owner, &f.hop, remote_flush_start, &f);
    while (!f.done)
        co_yield();
    return f.ret;
}

static void finish_transmission(struct conn *c)
{
    while (c->inflight_reqs)
        co_queue_wait(&c->idle_wait);
    if (c->wrote) {
        /* The client may never have sent FLUSH: what it wrote must not
         * depend on someone else flushing later. */
        int ret = flush_image(c);
        if (ret < 0) {
            const char *msg = sd_img_strerror(image_of(c)->img, ret);
            sd_log_error("%s: flush on disconnect failed: %s", c->label, msg);
            export_stats_write_error(c->def->stats, EXPORT_OP_FLUSH, ret, msg,
                                     0, 0);
        }
    }
    c->sender_running = false;
    co_queue_wake_all(&c->send_wait);
    while (!c->sender_done)
        co_queue_wait(&c->idle_wait);
    conn_end_tls(c);
    conn_recv_release(c, true);
    conn_finish(c);
}

void conn_transmission(struct conn *c)
{
    struct nbd_request_limits lim;
    struct coroutine *send_co;

    fill_limits(c, &lim);
    c->sender_running = true;
    send_co = co_create(sender, c);
    if (!send_co) {
        sd_log_error("%s: out of memory", c->label);
        c->sender_running = false;
        c->sender_done = true;
        finish_transmission(c);
        return;
    }
    co_schedule(send_co);
    while (!atomic_load(&c->closing)) {
        enum request_verdict verdict = REQUEST_SERVE;
        struct nbd_req *q;

        while (over_budget(c))
            co_queue_wait(&c->budget_wait);
        q = read_request(c, &lim, &verdict);
        if (!q)
            break;
        start_request(c, q, verdict);
    }
    finish_transmission(c);
}
