/* SPDX-License-Identifier: MIT */
/*
 * The source disk: a raw file or block device (pread, SEEK_DATA and
 * SEEK_HOLE), a qcow2 file (source-qcow2.c, through the image library),
 * or an NBD export (libnbd; base:allocation and qemu:dirty-bitmap:NAME
 * block status).
 */
#include "config.h"

#include "capture/capture.h"

#include <errno.h>
#include <fcntl.h>
#include <libnbd.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* Block status is asked in pieces this long (the NBD length is 32 bits). */
#define STATUS_CHUNK (UINT64_C(1) << 30)

static bool is_uri(const char *name)
{
    return strncmp(name, "nbd://", 6) == 0 || strncmp(name, "nbd+unix://", 11) == 0 ||
           strncmp(name, "nbds://", 7) == 0 || strncmp(name, "nbds+unix://", 12) == 0;
}

static int nbd_fail(struct sd_error *err, const char *what)
{
    int e = nbd_get_errno();

    return sd_error_set(err, e > 0 ? -e : -EIO, "%s: %s", what, nbd_get_error());
}

/* A URI given on our command line may name local files (tls-psk-file,
 * tls-certificates, socket): it is the user's own, as for nbdcopy. */
int cap_nbd_connect_uri(struct nbd_handle *h, const char *uri)
{
    if (nbd_set_uri_allow_local_file(h, true) < 0)
        return -1;
    return nbd_connect_uri(h, uri);
}

static int open_nbd(struct cap_source *s, const char *bitmap, struct sd_error *err)
{
    char ctx[300];
    int64_t size;

    s->nbd = nbd_create();
    if (!s->nbd)
        return nbd_fail(err, "nbd_create");
    if (nbd_add_meta_context(s->nbd, LIBNBD_CONTEXT_BASE_ALLOCATION) < 0)
        return nbd_fail(err, "nbd_add_meta_context");
    if (bitmap) {
        snprintf(ctx, sizeof(ctx), "qemu:dirty-bitmap:%s", bitmap);
        if (nbd_add_meta_context(s->nbd, ctx) < 0)
            return nbd_fail(err, "nbd_add_meta_context");
    }
    if (cap_nbd_connect_uri(s->nbd, s->name) < 0)
        return nbd_fail(err, s->name);
    size = nbd_get_size(s->nbd);
    if (size < 0)
        return nbd_fail(err, s->name);
    s->size = (uint64_t)size;
    if (bitmap && nbd_can_meta_context(s->nbd, ctx) != 1)
        return sd_error_set(err, -ENOENT, "%s: the export has no dirty bitmap %s",
                            s->name, bitmap);
    return 0;
}

static int open_file(struct cap_source *s, struct sd_error *err)
{
    off_t end;

    s->fd = open(s->name, O_RDONLY | O_CLOEXEC);
    if (s->fd < 0)
        return sd_error_set(err, -errno, "%s: %s", s->name, strerror(errno));
    /* SEEK_END gives a block device's size too. */
    end = lseek(s->fd, 0, SEEK_END);
    if (end < 0)
        return sd_error_set(err, -errno, "%s: %s", s->name, strerror(errno));
    s->size = (uint64_t)end;
    return 0;
}

int cap_source_open(struct cap_source *s, const char *name, const char *bitmap,
                    struct sd_error *err)
{
    int ret;

    *s = (struct cap_source){ .name = name, .fd = -1 };
    if (is_uri(name)) {
        ret = open_nbd(s, bitmap, err);
    } else if (bitmap) {
        /* Our image library does not read qcow2 persistent bitmaps. */
        ret = sd_error_set(err, -EINVAL, "--bitmap needs an NBD source (%s is a file; "
                           "for a qcow2 image's persistent bitmap export it with "
                           "qemu-nbd -B NAME and copy from its URI)", name);
    } else {
        ret = cap_qcow2_open(s, err);
        if (ret == 0)
            ret = open_file(s, err);
        else if (ret > 0)
            ret = 0;
    }
    if (ret < 0)
        cap_source_close(s);
    return ret;
}

void cap_source_close(struct cap_source *s)
{
    cap_qcow2_close(s);
    if (s->nbd) {
        nbd_shutdown(s->nbd, 0);
        nbd_close(s->nbd);
    }
    if (s->fd >= 0)
        close(s->fd);
    s->nbd = NULL;
    s->fd = -1;
}

/* SEEK_DATA/SEEK_HOLE: holes are zero extents. A file system without
 * them answers as if all were data, which is still correct. */
static int map_file(struct cap_source *s, struct cap_extents *out,
                    struct sd_error *err)
{
    off_t pos = 0, data, hole;
    int ret = 0;

    while ((uint64_t)pos < s->size) {
        data = lseek(s->fd, pos, SEEK_DATA);
        if (data < 0 && errno == ENXIO)
            data = (off_t)s->size;          /* a hole to the end */
        else if (data < 0)
            return sd_error_set(err, -errno, "%s: SEEK_DATA: %s", s->name, strerror(errno));
        ret = cap_extents_add(out, (uint64_t)pos, (uint64_t)(data - pos), true);
        if (ret < 0 || (uint64_t)data >= s->size)
            break;
        hole = lseek(s->fd, data, SEEK_HOLE);
        if (hole < 0)
            return sd_error_set(err, -errno, "%s: SEEK_HOLE: %s", s->name, strerror(errno));
        ret = cap_extents_add(out, (uint64_t)data, (uint64_t)(hole - data), false);
        if (ret < 0)
            break;
        pos = hole;
    }
    return ret < 0 ? sd_error_set(err, ret, "out of memory") : 0;
}

struct status_ctx {
    const char *context;
    bool dirty_mode;            /* bitmap: keep dirty extents only */
    uint64_t pos, end;
    struct cap_extents *out;
    int error;
};

static int status_cb(void *opaque, const char *metacontext, uint64_t offset,
                     uint32_t *entries, size_t nr, int *error)
{
    struct status_ctx *c = opaque;

    if (strcmp(metacontext, c->context) != 0 || c->error)
        return 0;
    if (*error) {
        c->error = *error;
        return 0;
    }
    /* Several answers may come; take those that continue where we are. */
    if (offset != c->pos)
        return 0;
    for (size_t i = 0; i + 1 < nr; i += 2) {
        uint64_t len = entries[i], end;
        uint32_t flags = entries[i + 1];
        int ret = 0;

        end = c->pos + len > c->end ? c->end : c->pos + len;
        if (c->dirty_mode) {
            if (flags & 1)
                ret = cap_extents_add(c->out, c->pos, end - c->pos, false);
        } else {
            ret = cap_extents_add(c->out, c->pos, end - c->pos,
                                  (flags & LIBNBD_STATE_ZERO) != 0);
        }
        if (ret < 0) {
            c->error = ENOMEM;
            return 0;
        }
        c->pos = end;
        if (len == 0 || c->pos >= c->end)
            break;
    }
    return 0;
}

static int map_nbd(struct cap_source *s, const char *context, bool dirty,
                   struct cap_extents *out, struct sd_error *err)
{
    struct status_ctx c = { .context = context, .dirty_mode = dirty, .out = out };

    while (c.pos < s->size) {
        uint64_t start = c.pos;

        c.end = s->size - c.pos > STATUS_CHUNK ? c.pos + STATUS_CHUNK : s->size;
        if (nbd_block_status(s->nbd, c.end - c.pos, c.pos,
                             (nbd_extent_callback){ .callback = status_cb, .user_data = &c },
                             0) < 0)
            return nbd_fail(err, "block status");
        if (c.error)
            return sd_error_set(err, -c.error, "%s: block status %s: %s", s->name,
                                context, strerror(c.error));
        if (c.pos == start)
            return sd_error_set(err, -EPROTO, "%s: block status %s made no progress at %llu",
                                s->name, context, (unsigned long long)start);
    }
    return 0;
}

int cap_source_map(struct cap_source *s, struct cap_extents *out,
                   struct sd_error *err)
{
    if (s->qcow2)
        return cap_qcow2_map(s, out, err);
    if (s->fd >= 0)
        return map_file(s, out, err);
    /* A server without base:allocation: everything is data. */
    if (nbd_can_meta_context(s->nbd, LIBNBD_CONTEXT_BASE_ALLOCATION) != 1)
        return cap_extents_add(out, 0, s->size, false) < 0 ?
               sd_error_set(err, -ENOMEM, "out of memory") : 0;
    return map_nbd(s, LIBNBD_CONTEXT_BASE_ALLOCATION, false, out, err);
}

int cap_source_dirty(struct cap_source *s, const char *bitmap,
                     struct cap_extents *out, struct sd_error *err)
{
    char ctx[300];

    snprintf(ctx, sizeof(ctx), "qemu:dirty-bitmap:%s", bitmap);
    return map_nbd(s, ctx, true, out, err);
}

int cap_source_read(struct cap_source *s, void *buf, uint64_t len,
                    uint64_t off, struct sd_error *err)
{
    if (s->qcow2)
        return cap_qcow2_read(s, buf, len, off, err);
    if (s->nbd) {
        if (nbd_pread(s->nbd, buf, len, off, 0) < 0)
            return nbd_fail(err, "read from the source");
        return 0;
    }
    while (len > 0) {
        ssize_t n = pread(s->fd, buf, len, (off_t)off);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return sd_error_set(err, -errno, "%s: read at %llu: %s", s->name,
                                (unsigned long long)off, strerror(errno));
        if (n == 0)
            return sd_error_set(err, -EIO, "%s: unexpected end of file at %llu",
                                s->name, (unsigned long long)off);
        buf = (char *)buf + n;
        len -= (uint64_t)n;
        off += (uint64_t)n;
    }
    return 0;
}
