/* SPDX-License-Identifier: MIT */
/*
 * The generic image layer: format probing, opening chains, request
 * validation, one coroutine per request, synchronous wrappers, and block
 * status resolved through the backing chain.
 */
#include "config.h"

#include "image-internal.h"
#include "lock.h"
#include "qcow2-check.h"

#include "common/coroutine.h"
#include "common/ring.h"

#include <errno.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const uint8_t qcow2_magic[4] = { 'Q', 'F', 'I', 0xfb };

int sd_img_probe_format(const char *path, enum sd_img_format *fmt,
                        struct sd_error *err)
{
    struct blkfile *f;
    uint8_t magic[4];
    int ret = blk_open(&f, path, 0, err);

    if (ret < 0)
        return ret;
    ret = blk_pread(f, magic, sizeof(magic), 0);
    blk_close(f);
    if (ret < 0)
        return sd_error_set(err, ret, "could not read '%s': %s", path,
                            strerror(-ret));
    *fmt = memcmp(magic, qcow2_magic, 4) == 0 ? SD_FMT_QCOW2 : SD_FMT_RAW;
    return 0;
}

static const struct sd_backend_ops *ops_for(enum sd_img_format fmt)
{
    return fmt == SD_FMT_QCOW2 ? &sd_qcow2_ops : &sd_raw_ops;
}

static void img_free(struct sd_img *img)
{
    if (!img)
        return;
    /* Now, not with the description's last reference (lock.c). A
     * failure leaves them to that last reference: nothing to add. */
    if (img->locked)
        (void)img_lock_release(img->file->fd);
    blk_close(img->file);
    free(img->path);
    free(img->corrupt_reason);
    free(img->corrupt_message);
    free(img);
}

/* A file already open above us in the chain makes the chain a loop. */
static int check_no_loop(const struct sd_img *img, struct sd_error *err)
{
    for (const struct sd_img *up = img->parent; up; up = up->parent) {
        if (up->file->dev == img->file->dev &&
            up->file->ino == img->file->ino)
            return sd_error_set(err, -ELOOP,
                                "backing chain loops: '%s' is already in the "
                                "chain above '%s'", img->path,
                                img->parent->path);
    }
    return 0;
}

static int img_open_depth(struct sd_img **out, const char *path,
                          const struct sd_img_open_opts *opts,
                          struct sd_img *parent, struct sd_error *err)
{
    unsigned depth = parent ? parent->chain_depth + 1 : 0;
    enum sd_img_format fmt = opts->format;
    struct sd_img *img;
    int ret;

    if (depth > SD_MAX_CHAIN_DEPTH)
        return sd_error_set(err, -ELOOP,
                            "backing chain deeper than %d images at '%s'",
                            SD_MAX_CHAIN_DEPTH, path);
    if (fmt == SD_FMT_AUTO) {
        ret = sd_img_probe_format(path, &fmt, err);
        if (ret < 0)
            return ret;
    }
    img = calloc(1, sizeof(*img));
    if (!img)
        return sd_error_set(err, -ENOMEM, "out of memory");
    img->chain_depth = depth;
    img->parent = parent;
    img->ring = opts->ring;
    img->writable = opts->writable;
    img->direct_data = opts->direct_data;
    img->ops = ops_for(fmt);
    img->path = strdup(path);
    if (!img->path) {
        ret = sd_error_set(err, -ENOMEM, "out of memory");
        goto out_free;
    }
    ret = blk_open(&img->file, path,
                   (opts->writable ? BLK_WRITABLE : 0) |
                   (opts->direct && fmt == SD_FMT_RAW ? BLK_DIRECT : 0) |
                   (opts->direct_data ? BLK_DIRECT_DATA : 0), err);
    if (ret < 0)
        goto out_free;
    img->file->ring = opts->ring;
    ret = check_no_loop(img, err);
    if (ret < 0)
        goto out_free;
    if (!opts->no_lock && !opts->force_share) {
        img->locked = true;     /* a failure may have taken some bytes */
        ret = img_lock_acquire(img->file->fd, path, opts->writable, err);
        if (ret < 0)
            goto out_free;
    }
    ret = img->ops->open(img, opts, err);
    if (ret < 0)
        goto out_free;
    *out = img;
    return 0;

out_free:
    if (img->backing)
        sd_img_close(img->backing);
    img_free(img);
    return ret;
}

int sd_img_open(struct sd_img **out, const char *path,
                const struct sd_img_open_opts *opts, struct sd_error *err)
{
    sd_error_clear(err);
    return img_open_depth(out, path, opts, NULL, err);
}

char *sd_img_resolve_backing(const char *image_path, const char *backing)
{
    char *dir_copy, *dir, *out;

    if (backing[0] == '/')
        return strdup(backing);
    dir_copy = strdup(image_path);
    if (!dir_copy)
        return NULL;
    dir = dirname(dir_copy);
    if (asprintf(&out, "%s/%s", dir, backing) < 0)
        out = NULL;
    free(dir_copy);
    return out;
}

int sd_img_open_backing(struct sd_img *img, const char *path,
                        enum sd_img_format fmt, struct sd_error *err)
{
    struct sd_img_open_opts o = {
        .format = fmt,
        .writable = false,
        .direct_data = img->direct_data,
        .ring = img->ring,
    };
    struct sd_img *b;
    int ret = img_open_depth(&b, path, &o, img, err);

    if (ret < 0)
        return ret;
    img->backing = b;
    return 0;
}

void sd_img_set_ring(struct sd_img *img, struct sd_ring *ring)
{
    for (; img; img = img->backing) {
        img->ring = ring;
        img->file->ring = ring;
    }
}

int sd_img_close(struct sd_img *img)
{
    int ret = 0;

    if (!img)
        return 0;
    if (img->writable && !img->corrupt_reason)
        ret = sd_img_flush(img);
    int ret2 = img->ops->close(img);
    if (ret == 0)
        ret = ret2;
    sd_img_close(img->backing);
    img_free(img);
    return ret;
}

uint64_t sd_img_size(const struct sd_img *img) { return img->size; }
const char *sd_img_path(const struct sd_img *img) { return img->path; }
const char *sd_img_format_name(const struct sd_img *img) { return img->ops->name; }
struct sd_img *sd_img_backing(const struct sd_img *img) { return img->backing; }
const char *sd_img_corrupt_reason(const struct sd_img *img) { return img->corrupt_reason; }

int sd_img_splice_fd(const struct sd_img *img)
{
    if (img->ops != &sd_raw_ops || !img->file->in_memory)
        return -ENOTSUP;
    return img->file->fd;
}

void sd_img_get_caps(const struct sd_img *img, struct sd_img_caps *caps)
{
    memset(caps, 0, sizeof(*caps));
    img->ops->get_caps(img, caps);
    if (!img->writable || img->corrupt_reason) {
        caps->can_write = caps->can_trim = false;
        caps->can_zero = caps->can_fast_zero = false;
    }
    caps->has_backing = img->backing != NULL;
}

int sd_img_get_info(struct sd_img *img, struct sd_img_info *info)
{
    memset(info, 0, sizeof(*info));
    info->format = img->ops->name;
    info->virtual_size = img->size;
    int ret = blk_allocated_bytes(img->file, &info->actual_size);
    if (ret < 0)
        return ret;
    return img->ops->get_info(img, info);
}

/* The text lives with the image, not in a per-thread buffer: a request's
 * error message may be read by another thread than the one that failed
 * it (a request handed between workers). */
const char *sd_img_strerror(const struct sd_img *img, int err)
{
    for (const struct sd_img *i = img; err == -EIO && i; i = i->backing)
        if (i->corrupt_message)
            return i->corrupt_message;
    return strerror(-err);
}

int sd_img_set_corrupt(struct sd_img *img, const char *fmt, ...)
{
    va_list ap;
    char *msg;

    if (img->corrupt_reason)
        return -EIO;
    va_start(ap, fmt);
    if (vasprintf(&msg, fmt, ap) < 0)
        msg = NULL;
    va_end(ap);
    img->corrupt_reason = msg ? msg : strdup("image is corrupt");
    if (img->corrupt_reason &&
        asprintf(&img->corrupt_message, "'%s' is corrupt: %s", img->path,
                 img->corrupt_reason) < 0)
        img->corrupt_message = NULL;
    if (img->writable && img->ops->mark_corrupt)
        img->ops->mark_corrupt(img);
    return -EIO;
}

int sd_img_co_read_backing(struct sd_img *img, void *buf, uint64_t off,
                           uint64_t len)
{
    struct sd_img *b = img->backing;
    uint64_t avail = 0;

    if (b && off < b->size)
        avail = b->size - off < len ? b->size - off : len;
    if (avail) {
        int ret = b->ops->co_read(b, buf, off, avail);
        if (ret < 0)
            return ret;
    }
    if (avail < len)
        memset((char *)buf + avail, 0, len - avail);
    return 0;
}

int sd_img_co_block_status(struct sd_img *img, uint64_t off, uint64_t len,
                           struct sd_extent *ext)
{
    struct sd_img *cur = img;
    int depth = 0;

    for (;;) {
        if (off >= cur->size) {
            *ext = (struct sd_extent){ off, len, SD_EXT_ZERO, -1, UINT64_MAX };
            return 0;
        }
        if (len > cur->size - off)
            len = cur->size - off;
        int ret = cur->ops->co_block_status(cur, off, len, ext);
        if (ret < 0)
            return ret;
        if (ext->length == 0 || ext->length > len)
            return -EIO;
        if (ext->flags & SD_EXT_ALLOCATED) {
            ext->depth = depth;
            return 0;
        }
        len = ext->length;
        if (!cur->backing) {
            *ext = (struct sd_extent){ off, len, SD_EXT_ZERO, -1, UINT64_MAX };
            return 0;
        }
        cur = cur->backing;
        depth++;
    }
}

static int validate(struct sd_img *img, const struct sd_img_req *req)
{
    bool writes = req->type == SD_REQ_WRITE || req->type == SD_REQ_ZERO ||
                  req->type == SD_REQ_DISCARD;

    if (writes && !img->writable)
        return -EPERM;
    if (writes && img->corrupt_reason)
        return -EIO;
    if (req->type == SD_REQ_FLUSH)
        return 0;
    if (req->offset > img->size || req->length > img->size - req->offset)
        return writes ? -ENOSPC : -EINVAL;
    if ((req->type == SD_REQ_READ || req->type == SD_REQ_WRITE) && !req->buf)
        return -EINVAL;
    if (req->type == SD_REQ_BLOCK_STATUS && (!req->extent || !req->length))
        return -EINVAL;
    return 0;
}

static int run_request(struct sd_img *img, struct sd_img_req *req)
{
    int ret;

    switch (req->type) {
    case SD_REQ_READ:
        return req->length ? img->ops->co_read(img, req->buf, req->offset,
                                               req->length) : 0;
    case SD_REQ_WRITE:
        if (!req->length)
            return 0;
        ret = img->ops->co_write(img, req->buf, req->offset, req->length,
                                 req->flags);
        break;
    case SD_REQ_ZERO:
        if (!req->length)
            return 0;
        ret = img->ops->co_zero(img, req->offset, req->length, req->flags);
        break;
    case SD_REQ_DISCARD:
        return req->length ? img->ops->co_discard(img, req->offset,
                                                  req->length) : 0;
    case SD_REQ_FLUSH:
        return img->ops->co_flush(img);
    case SD_REQ_BLOCK_STATUS:
        return sd_img_co_block_status(img, req->offset, req->length,
                                      req->extent);
    default:
        return -EINVAL;
    }
    if (ret == 0 && (req->flags & SD_REQ_FUA))
        ret = img->ops->co_flush(img);
    return ret;
}

static void request_co(void *opaque)
{
    struct sd_img_req *req = opaque;
    int ret = run_request(req->img_, req);

    req->cb(req->opaque, ret);
}

int sd_img_submit(struct sd_img *img, struct sd_img_req *req)
{
    int ret = validate(img, req);
    struct coroutine *co;

    if (ret < 0)
        return ret;
    req->img_ = img;
    co = co_create(request_co, req);
    if (!co)
        return -ENOMEM;
    co_enter(co);
    return 0;
}

struct sync_run {
    struct sd_img_req req;
    bool done;
    int ret;
};

static void sync_done(void *opaque, int ret)
{
    struct sync_run *w = opaque;

    w->ret = ret;
    w->done = true;
}

static int run_sync(struct sd_img *img, const struct sd_img_req *req_in)
{
    struct sync_run w = { .req = *req_in };
    int ret;

    if (co_in_coroutine()) {
        ret = validate(img, &w.req);
        return ret < 0 ? ret : run_request(img, &w.req);
    }
    /* sd_img_submit() validates. */
    w.req.cb = sync_done;
    w.req.opaque = &w;
    ret = sd_img_submit(img, &w.req);
    if (ret < 0)
        return ret;
    while (!w.done) {
        if (co_run_ready())
            continue;
        if (!img->ring)
            return -EDEADLK;   /* nothing can wake the request */
        ret = sd_ring_run_once(img->ring, true);
        if (ret < 0)
            return ret;
    }
    return w.ret;
}

int sd_img_pread(struct sd_img *img, void *buf, uint64_t len, uint64_t off)
{
    struct sd_img_req r = { .type = SD_REQ_READ, .offset = off,
                            .length = len, .buf = buf };
    return run_sync(img, &r);
}

int sd_img_pwrite(struct sd_img *img, const void *buf, uint64_t len,
                  uint64_t off, unsigned flags)
{
    struct sd_img_req r = { .type = SD_REQ_WRITE, .offset = off,
                            .length = len, .buf = (void *)buf,
                            .flags = flags };
    return run_sync(img, &r);
}

int sd_img_zero(struct sd_img *img, uint64_t off, uint64_t len,
                unsigned flags)
{
    struct sd_img_req r = { .type = SD_REQ_ZERO, .offset = off,
                            .length = len, .flags = flags };
    return run_sync(img, &r);
}

int sd_img_discard(struct sd_img *img, uint64_t off, uint64_t len)
{
    struct sd_img_req r = { .type = SD_REQ_DISCARD, .offset = off,
                            .length = len };
    return run_sync(img, &r);
}

int sd_img_flush(struct sd_img *img)
{
    struct sd_img_req r = { .type = SD_REQ_FLUSH };
    return run_sync(img, &r);
}

int sd_img_block_status(struct sd_img *img, uint64_t off, uint64_t len,
                        struct sd_extent *ext)
{
    struct sd_img_req r = { .type = SD_REQ_BLOCK_STATUS, .offset = off,
                            .length = len, .extent = ext };
    return run_sync(img, &r);
}

int sd_img_create(const char *path, const struct sd_img_create_opts *opts,
                  struct sd_error *err)
{
    sd_error_clear(err);
    if (opts->format == SD_FMT_RAW) {
        if (opts->backing_file)
            return sd_error_set(err, -EINVAL, "raw images have no backing "
                                "file");
        return raw_create(path, opts->size, err);
    }
    return qcow2_create(path, opts, err);
}

struct co_call {
    int (*fn)(struct sd_img *img, void *arg);
    struct sd_img *img;
    void *arg;
    bool done;
    int ret;
};

static void co_call_entry(void *opaque)
{
    struct co_call *c = opaque;

    c->ret = c->fn(c->img, c->arg);
    c->done = true;
}

/* Run fn in a coroutine on img's ring and wait for it (tools only). */
static int run_in_coroutine(struct sd_img *img,
                            int (*fn)(struct sd_img *img, void *arg),
                            void *arg)
{
    struct co_call c = { fn, img, arg, false, 0 };
    struct coroutine *co;

    if (co_in_coroutine())
        return fn(img, arg);
    co = co_create(co_call_entry, &c);
    if (!co)
        return -ENOMEM;
    co_enter(co);
    while (!c.done) {
        if (co_run_ready())
            continue;
        if (!img->ring)
            return -EDEADLK;
        int ret = sd_ring_run_once(img->ring, true);
        if (ret < 0)
            return ret;
    }
    return c.ret;
}

static int make_empty_co(struct sd_img *img, void *arg)
{
    uint64_t off = 0, step = 1ull << 30;
    int ret = 0;

    (void)arg;
    while (off < img->size && ret == 0) {
        uint64_t n = img->size - off < step ? img->size - off : step;
        ret = img->ops == &sd_qcow2_ops
              ? qcow2_make_empty_range(img, off, n)
              : -ENOTSUP;
        off += n;
    }
    if (ret == 0)
        ret = img->ops->co_flush(img);
    return ret;
}

int sd_img_make_empty(struct sd_img *img)
{
    if (!img->writable)
        return -EPERM;
    return run_in_coroutine(img, make_empty_co, NULL);
}
