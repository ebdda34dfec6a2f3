/* SPDX-License-Identifier: MIT */
/*
 * convert, commit and rebase over the public image API (see img-ops.h).
 *
 * Notes on the design.
 *
 * convert and commit are the same loop: walk the source with block
 * status, decide for each extent whether to skip it, copy it or write
 * zeros, merge neighbours with the same decision into requests of up to
 * request_size bytes, and keep max_requests of them in flight on a
 * private ring. A copy is a READ on the source whose completion starts
 * WRITEs on the destination, one per run of blocks holding data; runs of
 * blocks that turn out to be all zeros (a block is a destination cluster,
 * at least 4 KiB) are skipped or zeroed as below, so a mostly empty
 * source region allocates only what holds data. Completion callbacks
 * run inside the requests' coroutines, so they only mark their slot done;
 * the loop in copy_loop() moves slots on and submits new requests from
 * outside any coroutine.
 *
 * What is skipped depends on the destination:
 *  - COPY_ALL (a new image without backing file): anything that reads as
 *    zeros, since the new image already does;
 *  - COPY_TOP_LAYER (commit, and convert -B): only what the source's top
 *    layer allocates; its zero extents become ZERO requests, because the
 *    destination's own backing chain may hold data there.
 *
 * rebase (safe mode) is a plain synchronous loop: it reads two chains and
 * compares them, which is not where time goes in practice.
 */
#include "config.h"

#include "img-ops.h"
#include "qcow2-check.h"

#include "common/ring.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
    DEFAULT_MAX_REQUESTS = 8,
    DEFAULT_REQUEST_SIZE = 2 << 20,
    MAX_MAX_REQUESTS = 64,
    MAX_REQUEST_SIZE = 64 << 20,
    /* A ZERO request costs no buffer: let it cover more at once. */
    MAX_ZERO_RUN = 256 << 20,
    RING_ENTRIES = 64,
    REBASE_CHUNK = 1 << 20,
    BUF_ALIGN = 4096,
    ZERO_BLOCK = 4096,          /* smallest block checked for zeros */
};

char *sd_img_combine_path(const char *image, const char *backing)
{
    const char *slash = strrchr(image, '/');
    char *out;

    if (backing[0] == '/' || !slash)
        return strdup(backing);
    if (asprintf(&out, "%.*s%s", (int)(slash - image + 1), image,
                 backing) < 0)
        return NULL;
    return out;
}

static bool buffer_is_zero(const uint8_t *buf, size_t len)
{
    enum { HEAD = 16 };

    if (len <= HEAD) {
        for (size_t i = 0; i < len; i++)
            if (buf[i])
                return false;
        return true;
    }
    for (size_t i = 0; i < HEAD; i++)
        if (buf[i])
            return false;
    /* The head is zero, so the buffer is zero iff it equals itself
     * shifted by HEAD bytes. */
    return memcmp(buf, buf + HEAD, len - HEAD) == 0;
}

/* ---- the copy pipeline -------------------------------------------------- */

enum copy_mode { COPY_ALL, COPY_TOP_LAYER };
enum run_action { RUN_SKIP, RUN_COPY, RUN_ZERO };
enum slot_state { SLOT_FREE, SLOT_READ, SLOT_WRITE };

struct copy_job;

struct copy_slot {
    struct sd_img_req req;
    struct copy_job *job;
    uint8_t *buf;
    enum slot_state state;
    bool done;                  /* set by the callback, read by the loop */
    int ret;
    /* What the last READ brought into buf: buf_len bytes from buf_off,
     * of which the first written bytes have been written (or skipped). */
    uint64_t buf_off, buf_len, written;
};

struct copy_job {
    struct sd_img *src, *dst;
    struct sd_ring *ring;
    enum copy_mode mode;
    uint64_t size;              /* bytes to walk */
    uint64_t pos;               /* next byte not yet handed to a slot */
    struct sd_extent ext;       /* block status at pos, when have_ext */
    bool have_ext;
    uint32_t request_size;
    uint32_t zero_granularity;  /* zeros are detected in these blocks */
    unsigned nr_slots;
    struct copy_slot *slots;
    unsigned busy;
    struct sd_error *err;
};

static enum run_action classify(const struct copy_job *job,
                                const struct sd_extent *e)
{
    if (job->mode == COPY_TOP_LAYER) {
        if (e->depth != 0)
            return RUN_SKIP;
        return (e->flags & SD_EXT_ZERO) ? RUN_ZERO : RUN_COPY;
    }
    return (e->flags & SD_EXT_ZERO) ? RUN_SKIP : RUN_COPY;
}

static uint64_t run_cap(const struct copy_job *job, enum run_action a)
{
    switch (a) {
    case RUN_COPY:
        return job->request_size;
    case RUN_ZERO:
        return MAX_ZERO_RUN;
    default:
        return UINT64_MAX;
    }
}

/* Make job->ext describe the bytes at job->pos. */
static int refresh_extent(struct copy_job *job)
{
    int ret;

    if (job->have_ext && job->ext.offset + job->ext.length > job->pos)
        return 0;
    ret = sd_img_block_status(job->src, job->pos, job->size - job->pos,
                              &job->ext);
    if (ret < 0)
        return sd_error_set(job->err, ret,
                            "could not get the block status of '%s' at "
                            "offset %" PRIu64 ": %s", sd_img_path(job->src),
                            job->pos, sd_img_strerror(job->src, ret));
    if (job->ext.offset != job->pos || job->ext.length == 0)
        return sd_error_set(job->err, -EIO,
                            "block status of '%s' at offset %" PRIu64
                            " made no progress", sd_img_path(job->src),
                            job->pos);
    job->have_ext = true;
    return 0;
}

/* The next run of bytes that are copied or zeroed, skipping the rest.
 * Sets *len to 0 at the end of the source. */
static int next_run(struct copy_job *job, enum run_action *action,
                    uint64_t *off, uint64_t *len)
{
    *len = 0;
    while (job->pos < job->size) {
        int ret = refresh_extent(job);
        if (ret < 0)
            return ret;
        enum run_action a = classify(job, &job->ext);
        uint64_t avail = job->ext.offset + job->ext.length - job->pos;

        if (*len && a != *action)
            break;
        if (a == RUN_SKIP) {
            job->pos += avail;
            continue;
        }
        if (!*len) {
            *action = a;
            *off = job->pos;
        }
        uint64_t room = run_cap(job, a) - *len;
        uint64_t take = avail < room ? avail : room;
        *len += take;
        job->pos += take;
        if (*len == run_cap(job, a))
            break;
    }
    return 0;
}

static void slot_done(void *opaque, int ret)
{
    struct copy_slot *slot = opaque;

    slot->ret = ret;
    slot->done = true;
}

static int slot_submit(struct copy_slot *slot, struct sd_img *img,
                       enum sd_req_type type, uint64_t off, uint64_t len,
                       uint8_t *buf)
{
    struct copy_job *job = slot->job;
    int ret;

    slot->req = (struct sd_img_req){
        .type = type, .offset = off, .length = len, .buf = buf,
        .cb = slot_done, .opaque = slot,
    };
    slot->state = type == SD_REQ_READ ? SLOT_READ : SLOT_WRITE;
    slot->done = false;
    ret = sd_img_submit(img, &slot->req);
    if (ret < 0) {
        slot->state = SLOT_FREE;
        return sd_error_set(job->err, ret,
                            "could not start I/O on '%s' at offset %"
                            PRIu64 ": %s", sd_img_path(img), off,
                            sd_img_strerror(img, ret));
    }
    job->busy++;
    return 0;
}

/* End (relative to buf) of the zero-detection block that holds pos. */
static uint64_t block_end(const struct copy_slot *slot, uint64_t pos)
{
    uint64_t g = slot->job->zero_granularity;
    uint64_t end = ((slot->buf_off + pos) / g + 1) * g - slot->buf_off;

    return end < slot->buf_len ? end : slot->buf_len;
}

/* Write the next part of what the slot read: a run of blocks that hold
 * data, or a run of zero blocks (skipped when the destination already
 * reads as zeros, as qemu-img convert's sparse detection does). Leaves
 * the slot free when everything is written. */
static int slot_write_next(struct copy_slot *slot)
{
    struct copy_job *job = slot->job;

    while (slot->written < slot->buf_len) {
        uint64_t start = slot->written, end = block_end(slot, start);
        bool zero = buffer_is_zero(slot->buf + start, end - start);

        while (end < slot->buf_len) {
            uint64_t next = block_end(slot, end);
            if (buffer_is_zero(slot->buf + end, next - end) != zero)
                break;
            end = next;
        }
        slot->written = end;
        if (zero && job->mode == COPY_ALL)
            continue;
        return slot_submit(slot, job->dst,
                           zero ? SD_REQ_ZERO : SD_REQ_WRITE,
                           slot->buf_off + start, end - start,
                           zero ? NULL : slot->buf + start);
    }
    return 0;
}

/* A read finished: write what it read, part by part. */
static int slot_read_done(struct copy_slot *slot)
{
    slot->buf_off = slot->req.offset;
    slot->buf_len = slot->req.length;
    slot->written = 0;
    return slot_write_next(slot);
}

/* Move a slot whose request completed to its next state. */
static int slot_advance(struct copy_slot *slot)
{
    struct copy_job *job = slot->job;
    enum slot_state was = slot->state;
    bool reading = was == SLOT_READ;

    slot->done = false;
    slot->state = SLOT_FREE;
    job->busy--;
    if (slot->ret < 0)
        return sd_error_set(job->err, slot->ret,
                            "could not %s '%s' at offset %" PRIu64 ": %s",
                            reading ? "read" : "write",
                            sd_img_path(reading ? job->src : job->dst),
                            slot->req.offset, strerror(-slot->ret));
    return reading ? slot_read_done(slot) : slot_write_next(slot);
}

static int slot_start(struct copy_slot *slot)
{
    struct copy_job *job = slot->job;
    enum run_action action = RUN_SKIP;
    uint64_t off = 0, len;
    int ret = next_run(job, &action, &off, &len);

    if (ret < 0 || len == 0)
        return ret;
    slot->buf_len = slot->written = 0;
    if (action == RUN_ZERO)
        return slot_submit(slot, job->dst, SD_REQ_ZERO, off, len, NULL);
    return slot_submit(slot, job->src, SD_REQ_READ, off, len, slot->buf);
}

/* One pass over the slots: finish what completed, start what can start.
 * Returns whether any slot moved, or a negative errno. */
static int copy_step(struct copy_job *job, bool failed)
{
    bool moved = false;

    for (unsigned i = 0; i < job->nr_slots; i++) {
        struct copy_slot *slot = &job->slots[i];
        int ret = 0;

        if (slot->state != SLOT_FREE && slot->done) {
            moved = true;
            ret = slot_advance(slot);
        }
        if (ret == 0 && !failed && slot->state == SLOT_FREE &&
            job->pos < job->size) {
            ret = slot_start(slot);
            moved = moved || slot->state != SLOT_FREE;
        }
        if (ret < 0)
            return ret;
    }
    return moved;
}

/* Drive the pipeline to the end. After an error it stops starting
 * requests and waits for those in flight (they own slot buffers). */
static int copy_loop(struct copy_job *job)
{
    int first_error = 0;

    for (;;) {
        int ret = copy_step(job, first_error < 0);

        if (ret < 0 && first_error == 0)
            first_error = ret;
        if (job->busy == 0 && (first_error < 0 || job->pos >= job->size))
            break;
        if (ret > 0)
            continue;
        ret = sd_ring_run_once(job->ring, true);
        if (ret < 0) {
            /* The ring is broken: nothing in flight can complete. */
            if (first_error == 0)
                sd_error_set(job->err, ret, "io_uring failed: %s",
                             strerror(-ret));
            return first_error < 0 ? first_error : ret;
        }
    }
    return first_error;
}

static int copy_run(struct sd_img *src, struct sd_img *dst,
                    struct sd_ring *ring, enum copy_mode mode,
                    unsigned max_requests, uint32_t request_size,
                    struct sd_error *err)
{
    struct copy_job job = {
        .src = src, .dst = dst, .ring = ring, .mode = mode,
        .size = sd_img_size(src), .err = err,
        .request_size = request_size ? request_size : DEFAULT_REQUEST_SIZE,
        .nr_slots = max_requests ? max_requests : DEFAULT_MAX_REQUESTS,
    };
    int ret = 0;

    struct sd_img_info info;

    if (job.nr_slots > MAX_MAX_REQUESTS || job.request_size > MAX_REQUEST_SIZE)
        return sd_error_set(err, -EINVAL, "too many or too large requests");
    /* A qcow2 destination allocates whole clusters: look for zeros in
     * clusters. A raw one can leave any page a hole. */
    ret = sd_img_get_info(dst, &info);
    if (ret < 0)
        return sd_error_set(err, ret, "could not read '%s': %s",
                            sd_img_path(dst), sd_img_strerror(dst, ret));
    job.zero_granularity = info.cluster_size > ZERO_BLOCK ? info.cluster_size
                                                          : ZERO_BLOCK;
    job.slots = calloc(job.nr_slots, sizeof(*job.slots));
    if (!job.slots)
        return sd_error_set(err, -ENOMEM, "out of memory");
    for (unsigned i = 0; i < job.nr_slots; i++) {
        job.slots[i].job = &job;
        if (posix_memalign((void **)&job.slots[i].buf, BUF_ALIGN,
                           job.request_size) != 0) {
            ret = sd_error_set(err, -ENOMEM, "out of memory");
            goto out_free;
        }
    }
    ret = copy_loop(&job);
out_free:
    for (unsigned i = 0; i < job.nr_slots; i++)
        free(job.slots[i].buf);
    free(job.slots);
    return ret;
}

/* ---- opening and closing ------------------------------------------------ */

static int open_image(struct sd_img **img, const char *path,
                      const struct sd_img_open_opts *o, struct sd_error *err)
{
    int ret = sd_img_open(img, path, o, err);

    if (ret < 0 && err && err->msg[0] == '\0')
        sd_error_set(err, ret, "could not open '%s': %s", path,
                     strerror(-ret));
    return ret;
}

/* Close img; report a failed final flush unless an error is already set. */
static int close_image(struct sd_img *img, int ret, struct sd_error *err)
{
    const char *path;
    int cret;

    if (!img)
        return ret;
    path = sd_img_path(img);
    if (ret < 0) {
        sd_img_close(img);
        return ret;
    }
    char *copy = strdup(path);
    cret = sd_img_close(img);
    if (cret < 0)
        ret = sd_error_set(err, cret, "could not flush '%s': %s",
                           copy ? copy : "image", strerror(-cret));
    free(copy);
    return ret;
}

/* ---- convert -------------------------------------------------------------- */

static int create_destination(const char *dst, uint64_t size,
                              const struct sd_convert_opts *o,
                              struct sd_error *err)
{
    struct sd_img_create_opts c = o->create;

    if (o->dst_format == SD_FMT_RAW) {
        if (o->dst_backing)
            return sd_error_set(err, -ENOTSUP,
                                "a raw image cannot have a backing file");
        return raw_create(dst, size, err);
    }
    if (o->dst_format != SD_FMT_QCOW2)
        return sd_error_set(err, -EINVAL, "unknown destination format");
    c.format = SD_FMT_QCOW2;
    c.size = size;
    c.backing_file = o->dst_backing;
    c.backing_format = o->dst_backing_format;
    return qcow2_create(dst, &c, err);
}

/* Each operation drives its own ring; say so when there is none. */
static int ring_failed(struct sd_error *err, int ret)
{
    return sd_error_set(err, ret, "could not set up io_uring: %s",
                        strerror(-ret));
}

int sd_img_convert(const char *src, const char *dst,
                   const struct sd_convert_opts *opts, struct sd_error *err)
{
    struct sd_img_open_opts so = {
        .format = opts->src_format, .force_share = opts->force_share,
    };
    struct sd_img_open_opts dopts = {
        .format = opts->dst_format, .writable = true,
    };
    struct sd_img *in = NULL, *out = NULL;
    struct sd_ring ring;
    int ret = sd_ring_init(&ring, RING_ENTRIES);

    sd_error_clear(err);
    if (ret < 0)
        return ring_failed(err, ret);
    so.ring = dopts.ring = &ring;
    ret = open_image(&in, src, &so, err);
    if (ret < 0)
        goto out_ring;
    ret = create_destination(dst, sd_img_size(in), opts, err);
    if (ret < 0)
        goto out_close;
    ret = open_image(&out, dst, &dopts, err);
    if (ret < 0)
        goto out_close;
    /* A new image may round its size up; never copy past the source. */
    ret = copy_run(in, out, &ring,
                   opts->dst_backing ? COPY_TOP_LAYER : COPY_ALL,
                   opts->max_requests, opts->request_size, err);
out_close:
    ret = close_image(out, ret, err);
    sd_img_close(in);
out_ring:
    sd_ring_exit(&ring);
    return ret;
}

/* ---- commit ----------------------------------------------------------------- */

/* The backing file of an image opened without its chain, and its format. */
static int backing_of(struct sd_img *img, char **path,
                      enum sd_img_format *fmt, struct sd_error *err)
{
    struct sd_img_info info;
    int ret = sd_img_get_info(img, &info);

    if (ret < 0)
        return sd_error_set(err, ret, "could not read '%s': %s",
                            sd_img_path(img), sd_img_strerror(img, ret));
    if (!info.backing_file || !info.backing_file[0])
        return sd_error_set(err, -EINVAL, "'%s' has no backing file",
                            sd_img_path(img));
    *fmt = SD_FMT_AUTO;
    if (info.backing_format && strcmp(info.backing_format, "raw") == 0)
        *fmt = SD_FMT_RAW;
    else if (info.backing_format && strcmp(info.backing_format, "qcow2") == 0)
        *fmt = SD_FMT_QCOW2;
    *path = sd_img_combine_path(sd_img_path(img), info.backing_file);
    return *path ? 0 : sd_error_set(err, -ENOMEM, "out of memory");
}

static int commit_into(struct sd_img *top, struct sd_img *base,
                       struct sd_ring *ring, struct sd_error *err)
{
    int ret;

    if (sd_img_size(top) > sd_img_size(base))
        return sd_error_set(err, -ENOTSUP,
                            "'%s' (%" PRIu64 " bytes) is larger than its "
                            "backing file '%s' (%" PRIu64 " bytes): growing "
                            "the backing file is not supported",
                            sd_img_path(top), sd_img_size(top),
                            sd_img_path(base), sd_img_size(base));
    ret = copy_run(top, base, ring, COPY_TOP_LAYER, 0, 0, err);
    if (ret < 0)
        return ret;
    ret = sd_img_flush(base);
    if (ret < 0)
        return sd_error_set(err, ret, "could not flush '%s': %s",
                            sd_img_path(base), sd_img_strerror(base, ret));
    return 0;
}

int sd_img_commit(const char *path, const struct sd_commit_opts *opts,
                  struct sd_error *err)
{
    struct sd_img_open_opts to = {
        .format = opts->format, .writable = !opts->keep_top,
        .no_backing = true,
    };
    struct sd_img_open_opts bo = { .writable = true };
    struct sd_img *top = NULL, *base = NULL;
    char *base_path = NULL;
    struct sd_ring ring;
    int ret = sd_ring_init(&ring, RING_ENTRIES);

    sd_error_clear(err);
    if (ret < 0)
        return ring_failed(err, ret);
    to.ring = bo.ring = &ring;
    ret = open_image(&top, path, &to, err);
    if (ret < 0)
        goto out_ring;
    ret = backing_of(top, &base_path, &bo.format, err);
    if (ret < 0)
        goto out_close;
    ret = open_image(&base, base_path, &bo, err);
    if (ret < 0)
        goto out_close;
    ret = commit_into(top, base, &ring, err);
    ret = close_image(base, ret, err);
    base = NULL;
    /* Only once the backing file holds everything may the top let go. */
    if (ret == 0 && !opts->keep_top) {
        ret = sd_img_make_empty(top);
        if (ret < 0)
            sd_error_set(err, ret, "could not empty '%s': %s", path,
                         strerror(-ret));
    }
out_close:
    sd_img_close(base);
    ret = close_image(top, ret, err);
out_ring:
    free(base_path);
    sd_ring_exit(&ring);
    return ret;
}

/* ---- rebase ------------------------------------------------------------------ */

struct rebase_job {
    struct sd_img *top;
    struct sd_img *old_chain;   /* the top's backing image, or NULL */
    struct sd_img *new_chain;   /* the new backing image, or NULL */
    uint32_t granularity;       /* compare and write in these units */
    uint8_t *old_buf, *new_buf;
    struct sd_error *err;
};

/* Read what a backing chain shows at off: zeros past its end, or
 * everywhere without a chain. */
static int read_chain(struct sd_img *img, uint8_t *buf, uint64_t off,
                      uint64_t len, struct sd_error *err)
{
    uint64_t size = img ? sd_img_size(img) : 0;
    uint64_t avail = off < size ? size - off : 0;
    int ret;

    if (avail > len)
        avail = len;
    if (avail) {
        ret = sd_img_pread(img, buf, avail, off);
        if (ret < 0)
            return sd_error_set(err, ret, "could not read '%s' at offset %"
                                PRIu64 ": %s", sd_img_path(img), off,
                                sd_img_strerror(img, ret));
    }
    memset(buf + avail, 0, len - avail);
    return 0;
}

/* Pin one unit: make the top hold what the old chain shows there. */
static int rebase_pin(struct rebase_job *job, const uint8_t *data,
                      uint64_t off, uint64_t len)
{
    int ret;

    if (buffer_is_zero(data, len))
        ret = sd_img_zero(job->top, off, len, 0);
    else
        ret = sd_img_pwrite(job->top, data, len, off, 0);
    if (ret < 0)
        return sd_error_set(job->err, ret, "could not write '%s' at offset %"
                            PRIu64 ": %s", sd_img_path(job->top), off,
                            sd_img_strerror(job->top, ret));
    return 0;
}

/* Compare a range the top does not allocate (at most REBASE_CHUNK). */
static int rebase_range(struct rebase_job *job, uint64_t off, uint64_t len)
{
    int ret = read_chain(job->old_chain, job->old_buf, off, len, job->err);

    if (ret < 0)
        return ret;
    ret = read_chain(job->new_chain, job->new_buf, off, len, job->err);
    if (ret < 0)
        return ret;
    for (uint64_t done = 0; done < len;) {
        /* Units end at granularity boundaries of the disk. */
        uint64_t end = (off + done) / job->granularity * job->granularity +
                       job->granularity;
        uint64_t n = end - (off + done);

        if (n > len - done)
            n = len - done;
        if (memcmp(job->old_buf + done, job->new_buf + done, n) != 0) {
            ret = rebase_pin(job, job->old_buf + done, off + done, n);
            if (ret < 0)
                return ret;
        }
        done += n;
    }
    return 0;
}

static int rebase_walk(struct rebase_job *job)
{
    uint64_t size = sd_img_size(job->top);
    struct sd_extent ext;

    for (uint64_t pos = 0; pos < size;) {
        int ret = sd_img_block_status(job->top, pos, size - pos, &ext);
        if (ret < 0)
            return sd_error_set(job->err, ret,
                                "could not get the block status of '%s': %s",
                                sd_img_path(job->top), sd_img_strerror(job->top, ret));
        if (ext.length == 0)
            return sd_error_set(job->err, -EIO, "block status of '%s' made "
                                "no progress", sd_img_path(job->top));
        for (uint64_t o = 0; ext.depth != 0 && o < ext.length;) {
            uint64_t n = ext.length - o < REBASE_CHUNK ? ext.length - o
                                                       : REBASE_CHUNK;
            ret = rebase_range(job, pos + o, n);
            if (ret < 0)
                return ret;
            o += n;
        }
        pos += ext.length;
    }
    return 0;
}

static int rebase_copy_differences(struct sd_img *top, struct sd_img *new_chain,
                                   struct sd_error *err)
{
    struct rebase_job job = {
        .top = top, .old_chain = sd_img_backing(top), .new_chain = new_chain,
        .granularity = 65536, .err = err,
    };
    struct sd_img_info info;
    int ret = sd_img_get_info(top, &info);

    if (ret < 0)
        return sd_error_set(err, ret, "could not read '%s': %s",
                            sd_img_path(top), sd_img_strerror(top, ret));
    if (info.cluster_size)
        job.granularity = info.cluster_size;
    job.old_buf = malloc(REBASE_CHUNK);
    job.new_buf = malloc(REBASE_CHUNK);
    if (!job.old_buf || !job.new_buf)
        ret = sd_error_set(err, -ENOMEM, "out of memory");
    else
        ret = rebase_walk(&job);
    free(job.old_buf);
    free(job.new_buf);
    return ret;
}

static const char *format_name(enum sd_img_format fmt)
{
    return fmt == SD_FMT_RAW ? "raw" : fmt == SD_FMT_QCOW2 ? "qcow2" : NULL;
}

/* Open the new backing chain (safe mode) to compare against it. */
static int open_new_backing(const char *path, const struct sd_rebase_opts *o,
                            struct sd_ring *ring, struct sd_img **out,
                            struct sd_error *err)
{
    struct sd_img_open_opts bo = { .format = o->backing_format, .ring = ring };
    char *full;
    int ret;

    *out = NULL;
    if (!o->backing || !o->backing[0])
        return 0;
    full = sd_img_combine_path(path, o->backing);
    if (!full)
        return sd_error_set(err, -ENOMEM, "out of memory");
    ret = open_image(out, full, &bo, err);
    free(full);
    return ret;
}

/* The format written into the header: the one given, or the one probed. */
static const char *new_backing_format(const char *path,
                                      const struct sd_rebase_opts *o,
                                      struct sd_img *new_chain)
{
    enum sd_img_format fmt = o->backing_format;
    char *full;

    if (!o->backing || !o->backing[0])
        return NULL;
    if (fmt != SD_FMT_AUTO)
        return format_name(fmt);
    if (new_chain)
        return sd_img_format_name(new_chain);
    /* Unsafe mode does not need the file; name its format if it is there. */
    full = sd_img_combine_path(path, o->backing);
    if (full && sd_img_probe_format(full, &fmt, NULL) < 0)
        fmt = SD_FMT_AUTO;
    free(full);
    return format_name(fmt);
}

int sd_img_rebase(const char *path, const struct sd_rebase_opts *opts,
                  struct sd_error *err)
{
    struct sd_img_open_opts to = {
        .format = opts->format, .writable = true, .no_backing = opts->unsafe,
    };
    struct sd_img *top = NULL, *new_chain = NULL;
    const char *backing = opts->backing && opts->backing[0] ? opts->backing
                                                            : NULL;
    struct sd_ring ring;
    int ret = sd_ring_init(&ring, RING_ENTRIES);

    sd_error_clear(err);
    if (ret < 0)
        return ring_failed(err, ret);
    to.ring = &ring;
    ret = open_image(&top, path, &to, err);
    if (ret < 0)
        goto out_ring;
    if (!opts->unsafe) {
        ret = open_new_backing(path, opts, &ring, &new_chain, err);
        if (ret == 0)
            ret = rebase_copy_differences(top, new_chain, err);
        if (ret < 0)
            goto out_close;
    }
    ret = sd_img_set_backing(top, backing,
                             new_backing_format(path, opts, new_chain), err);
    if (ret < 0 && err && err->msg[0] == '\0')
        sd_error_set(err, ret, "could not set the backing file of '%s': %s",
                     path, strerror(-ret));
out_close:
    sd_img_close(new_chain);
    ret = close_image(top, ret, err);
out_ring:
    sd_ring_exit(&ring);
    return ret;
}
