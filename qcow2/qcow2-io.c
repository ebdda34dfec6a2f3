/* SPDX-License-Identifier: MIT */
/*
 * Reads, zero writes, discards, flushes and block status of the QCOW2
 * backend. Writes that allocate live in qcow2-alloc.c.
 */
#include "config.h"

#include "qcow2-internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static int read_compressed_part(struct sd_img *img, const struct qcow2_map *m,
                                uint64_t guest_off, uint8_t *buf,
                                uint64_t len)
{
    struct qcow2_state *s = qcow2_state(img);
    uint8_t *cluster = malloc(s->cluster_size);
    int ret;

    if (!cluster)
        return -ENOMEM;
    ret = qcow2_read_compressed(img, m->l2_entry, cluster);
    if (ret == 0)
        memcpy(buf, cluster + (guest_off & (s->cluster_size - 1)), len);
    free(cluster);
    return ret;
}

int qcow2_co_read(struct sd_img *img, void *buf, uint64_t off, uint64_t len)
{
    uint8_t *p = buf;

    while (len) {
        struct qcow2_map m;
        int ret = qcow2_get_map(img, off, len, &m);
        if (ret < 0)
            return ret;
        switch (m.type) {
        case QC_UNALLOC:
            ret = sd_img_co_read_backing(img, p, off, m.bytes);
            break;
        case QC_ZERO:
            memset(p, 0, m.bytes);
            break;
        case QC_NORMAL:
            ret = blk_pread_data(img->file, p, m.bytes, m.host_off);
            break;
        case QC_COMPRESSED:
            ret = read_compressed_part(img, &m, off, p, m.bytes);
            break;
        }
        if (ret < 0)
            return ret;
        p += m.bytes;
        off += m.bytes;
        len -= m.bytes;
    }
    return 0;
}

/* Does [off, off+len) read as zeros already? Looks at this layer and, for
 * unallocated parts, asks the chain. */
static int reads_as_zero(struct sd_img *img, uint64_t off, uint64_t len,
                         bool *zero)
{
    while (len) {
        struct sd_extent ext;
        int ret = sd_img_co_block_status(img, off, len, &ext);
        if (ret < 0)
            return ret;
        if (!(ext.flags & SD_EXT_ZERO)) {
            *zero = false;
            return 0;
        }
        off += ext.length;
        len -= ext.length;
    }
    *zero = true;
    return 0;
}

static int write_zero_data(struct sd_img *img, uint64_t off, uint64_t len,
                           unsigned flags)
{
    struct qcow2_state *s = qcow2_state(img);
    bool zero;
    int ret = reads_as_zero(img, off, len, &zero);

    if (ret < 0 || zero)
        return ret;
    if (flags & SD_REQ_NO_FALLBACK)
        return -ENOTSUP;
    while (len) {
        uint64_t n = len < s->cluster_size ? len : s->cluster_size;
        if (n > s->cluster_size - (off & (s->cluster_size - 1)))
            n = s->cluster_size - (off & (s->cluster_size - 1));
        ret = qcow2_co_write(img, s->zero_cluster, off, n, 0);
        if (ret < 0)
            return ret;
        off += n;
        len -= n;
    }
    return 0;
}

/* Zero the whole-subcluster middle of a request. */
static int zero_middle(struct sd_img *img, uint64_t off, uint64_t len,
                       unsigned flags)
{
    struct qcow2_state *s = qcow2_state(img);
    bool unmap = flags & SD_REQ_MAY_UNMAP;
    int ret;

    if (s->h.version < 3) {
        /* No zero flag: only unallocating works, and only where nothing
         * below would show through. */
        if (img->backing && off < img->backing->size)
            return write_zero_data(img, off, len, flags);
        return qcow2_co_zero_subclusters(img, off, len, true, true);
    }
    ret = qcow2_co_zero_subclusters(img, off, len, unmap, false);
    if (ret == -EAGAIN)        /* part of a compressed cluster */
        ret = write_zero_data(img, off, len, flags);
    return ret;
}

int qcow2_co_zero(struct sd_img *img, uint64_t off, uint64_t len,
                  unsigned flags)
{
    struct qcow2_state *s = qcow2_state(img);
    uint64_t sub = s->subc_size;
    uint64_t a = (off + sub - 1) & ~(sub - 1);
    uint64_t b = (off + len) & ~(sub - 1);
    int ret = 0;

    if (a >= b)
        return write_zero_data(img, off, len, flags);
    if (off < a)
        ret = write_zero_data(img, off, a - off, flags);
    if (ret == 0)
        ret = zero_middle(img, a, b - a, flags);
    if (ret == 0 && b < off + len)
        ret = write_zero_data(img, b, off + len - b, flags);
    return ret;
}

int qcow2_co_discard(struct sd_img *img, uint64_t off, uint64_t len)
{
    struct qcow2_state *s = qcow2_state(img);
    uint64_t sub = s->subc_size;
    uint64_t a = (off + sub - 1) & ~(sub - 1);
    uint64_t b = (off + len) & ~(sub - 1);
    bool unalloc;

    /* Only whole subclusters can be dropped; the rest is left alone, as
     * a discard is only advice. With a backing file a v3 image keeps the
     * range reading as zeros rather than exposing older data. */
    if (a >= b)
        return 0;
    unalloc = !img->backing || s->h.version < 3;
    int ret = qcow2_co_zero_subclusters(img, a, b - a, true, unalloc);
    return ret == -EAGAIN ? 0 : ret;
}

int qcow2_co_flush(struct sd_img *img)
{
    struct qcow2_state *s = qcow2_state(img);
    struct qcow2_free_range *frees = s->pending_free;
    size_t nr = s->nr_pending_free;
    int ret;

    if (!img->writable)
        return 0;
    /* Frees recorded before the sync may be applied after it. */
    s->pending_free = NULL;
    s->nr_pending_free = s->cap_pending_free = 0;
    ret = blk_flush(img->file);
    if (ret == 0 && nr)
        ret = qcow2_apply_frees(img, frees, nr);
    /* What could not be applied waits for the next flush. */
    for (size_t i = 0; i < nr; i++) {
        if (!frees[i].bytes)
            continue;
        int r = qcow2_free_later(img, frees[i].offset, frees[i].bytes);
        if (r < 0 && ret == 0)
            ret = r;
    }
    free(frees);
    return ret;
}

int qcow2_co_block_status(struct sd_img *img, uint64_t off, uint64_t len,
                          struct sd_extent *ext)
{
    struct qcow2_map m;
    int ret = qcow2_get_map(img, off, len, &m);

    if (ret < 0)
        return ret;
    *ext = (struct sd_extent){ .offset = off, .length = m.bytes,
                               .host_offset = UINT64_MAX };
    switch (m.type) {
    case QC_UNALLOC:
        ext->flags = 0;
        break;
    case QC_ZERO:
        ext->flags = SD_EXT_ALLOCATED | SD_EXT_ZERO;
        break;
    case QC_NORMAL:
        ext->flags = SD_EXT_ALLOCATED | SD_EXT_DATA;
        ext->host_offset = m.host_off;
        break;
    case QC_COMPRESSED:
        ext->flags = SD_EXT_ALLOCATED | SD_EXT_DATA | SD_EXT_COMPRESSED;
        break;
    }
    return 0;
}

int qcow2_make_empty_range(struct sd_img *img, uint64_t off, uint64_t len)
{
    struct qcow2_state *s = qcow2_state(img);
    uint64_t end = off + len;

    off &= ~(s->cluster_size - 1);
    end = (end + s->cluster_size - 1) & ~(s->cluster_size - 1);
    if (end > img->size)
        end = (img->size + s->cluster_size - 1) & ~(s->cluster_size - 1);
    return qcow2_co_zero_subclusters(img, off, end - off, true, true);
}
