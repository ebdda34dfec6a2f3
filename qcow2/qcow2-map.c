/* SPDX-License-Identifier: MIT */
/*
 * Mapping guest offsets to subcluster types and host offsets, and finding
 * (or making) the L2 table of a guest offset.
 *
 * Without extended L2 entries every cluster is treated as one subcluster,
 * so the rest of the engine reasons in subclusters only.
 */
#include "config.h"

#include "qcow2-internal.h"

#include <endian.h>
#include <errno.h>
#include <string.h>

uint64_t qcow2_l2_get_entry(const struct qcow2_state *s, const uint8_t *t,
                            uint64_t i)
{
    uint64_t v;

    memcpy(&v, t + i * s->l2_entry_bytes, 8);
    return be64toh(v);
}

uint64_t qcow2_l2_get_bitmap(const struct qcow2_state *s, const uint8_t *t,
                             uint64_t i)
{
    uint64_t v;

    if (!s->ext_l2)
        return 0;
    memcpy(&v, t + i * s->l2_entry_bytes + 8, 8);
    return be64toh(v);
}

void qcow2_l2_set(const struct qcow2_state *s, uint8_t *t, uint64_t i,
                  uint64_t entry, uint64_t bitmap)
{
    uint64_t e = htobe64(entry), b = htobe64(bitmap);

    memcpy(t + i * s->l2_entry_bytes, &e, 8);
    if (s->ext_l2)
        memcpy(t + i * s->l2_entry_bytes + 8, &b, 8);
}

/* Write L1 entry idx (its 512-byte sector) to the file. */
static int write_l1_entry(struct sd_img *img, uint64_t idx)
{
    struct qcow2_state *s = qcow2_state(img);
    uint64_t first = idx & ~63ull;
    uint8_t buf[512];

    memset(buf, 0, sizeof(buf));
    for (unsigned i = 0; i < 64 && first + i < s->l1_size; i++) {
        uint64_t v = htobe64(s->l1[first + i]);
        memcpy(buf + 8 * i, &v, 8);
    }
    uint64_t off = s->h.l1_table_offset + first * 8;
    uint64_t len = (s->l1_size - first) * 8 < 512 ? (s->l1_size - first) * 8 : 512;
    return blk_pwrite(img->file, buf, len, off);
}

/* Allocate a new L2 table for l1 index idx, copying the old one if the
 * old one is shared (COW). Caller holds alloc_lock. */
static int l2_allocate(struct sd_img *img, uint64_t idx)
{
    struct qcow2_state *s = qcow2_state(img);
    uint64_t old = s->l1[idx] & QCOW2_L1_OFFSET_MASK, off, got;
    struct qcow2_cache_entry *e, *olde = NULL;
    int ret;

    ret = qcow2_alloc_clusters(img, 1, &off, &got);
    if (ret == 0)
        ret = qcow2_meta_add(s, off);
    if (ret < 0)
        return ret;
    if (old) {
        ret = qcow2_cache_get(img, &s->l2_cache, old, false, &olde);
        if (ret < 0)
            return ret;
    }
    ret = qcow2_cache_get(img, &s->l2_cache, off, true, &e);
    if (ret < 0) {
        if (olde)
            qcow2_cache_put(&s->l2_cache, olde);
        return ret;
    }
    if (olde) {
        memcpy(e->data, olde->data, s->cluster_size);
        qcow2_cache_put(&s->l2_cache, olde);
    }
    qcow2_cache_mark_dirty(e, 0, s->cluster_size);
    ret = qcow2_cache_write_through(img, &s->l2_cache, e);
    qcow2_cache_put(&s->l2_cache, e);
    /* A copied table must be durable before the L1 entry points to it,
     * or a power cut could lose the mappings it carries over. A new one
     * needs no sync: its cluster comes from a reservation, never used
     * before, so until the write lands it reads as zeros, which is an
     * empty table, and its refcount is already durable. */
    if (ret == 0 && old)
        ret = blk_flush(img->file);
    if (ret < 0)
        return ret;
    s->l1[idx] = off | QCOW2_OFLAG_COPIED;
    ret = write_l1_entry(img, idx);
    if (ret == 0 && old)
        ret = qcow2_free_later(img, old, s->cluster_size);
    return ret;
}

int qcow2_get_l2(struct sd_img *img, uint64_t guest_off, bool allocate,
                 struct qcow2_cache_entry **out)
{
    struct qcow2_state *s = qcow2_state(img);
    uint64_t idx = guest_off >> (s->cluster_bits + s->l2_bits);
    uint64_t l2_off;
    int ret;

    *out = NULL;
    if (idx >= s->l1_size)
        return sd_img_set_corrupt(img, "guest offset 0x%llx beyond the L1 "
                                  "table", (unsigned long long)guest_off);
    l2_off = s->l1[idx] & QCOW2_L1_OFFSET_MASK;
    if (allocate && (!l2_off || !(s->l1[idx] & QCOW2_OFLAG_COPIED))) {
        ret = l2_allocate(img, idx);
        if (ret < 0)
            return ret;
        l2_off = s->l1[idx] & QCOW2_L1_OFFSET_MASK;
    }
    if (!l2_off)
        return 0;
    return qcow2_cache_get(img, &s->l2_cache, l2_off, false, out);
}

/* Type of subcluster sc of an L2 entry; -EIO (and the image marked
 * corrupt) for an entry that breaks the format's rules. */
static int classify(struct sd_img *img, uint64_t entry, uint64_t bitmap,
                    unsigned sc, enum qcow2_subc_type *type)
{
    struct qcow2_state *s = qcow2_state(img);
    uint64_t off = entry & QCOW2_L2_OFFSET_MASK;

    if (entry & QCOW2_OFLAG_COMPRESSED) {
        if (s->ext_l2 && bitmap)
            return sd_img_set_corrupt(img, "compressed cluster with a "
                                      "subcluster bitmap");
        *type = QC_COMPRESSED;
        return 0;
    }
    if (entry & QCOW2_L2_RESERVED_MASK & ~QCOW2_OFLAG_ZERO)
        return sd_img_set_corrupt(img, "L2 entry 0x%llx has reserved bits set",
                                  (unsigned long long)entry);
    if (off & (s->cluster_size - 1))
        return sd_img_set_corrupt(img, "L2 entry 0x%llx is not cluster "
                                  "aligned", (unsigned long long)entry);
    if (off && off >= s->file_end && !img->writable) {
        /* Another process may be growing a file we only inspect. */
        uint64_t size;
        if (blk_get_size(img->file, &size) == 0 && size > s->file_end)
            s->file_end = (size + s->cluster_size - 1) & ~(s->cluster_size - 1);
    }
    if (off && off >= s->file_end)
        return sd_img_set_corrupt(img, "L2 entry points to 0x%llx, past the "
                                  "end of the file",
                                  (unsigned long long)off);
    if (off && off < s->cluster_size)
        return sd_img_set_corrupt(img, "L2 entry points into the header");
    if (!s->ext_l2) {
        if ((entry & QCOW2_OFLAG_ZERO) && s->h.version >= 3)
            *type = QC_ZERO;
        else
            *type = off ? QC_NORMAL : QC_UNALLOC;
        return 0;
    }
    bool alloc = (bitmap >> sc) & 1, zero = (bitmap >> (32 + sc)) & 1;
    if (alloc && zero)
        return sd_img_set_corrupt(img, "subcluster both allocated and zero");
    if (alloc && !off)
        return sd_img_set_corrupt(img, "allocated subcluster without a host "
                                  "cluster");
    *type = alloc ? QC_NORMAL : zero ? QC_ZERO : QC_UNALLOC;
    return 0;
}

int qcow2_get_map(struct sd_img *img, uint64_t guest_off, uint64_t max_bytes,
                  struct qcow2_map *m)
{
    struct qcow2_state *s = qcow2_state(img);
    uint64_t table_span = 1ull << (s->cluster_bits + s->l2_bits);
    uint64_t table_end = (guest_off | (table_span - 1)) + 1;
    struct qcow2_cache_entry *e;
    uint64_t pos = guest_off, expect_host = 0;
    int ret;

    if (max_bytes > table_end - guest_off)
        max_bytes = table_end - guest_off;
    memset(m, 0, sizeof(*m));
    ret = qcow2_get_l2(img, guest_off, false, &e);
    if (ret < 0)
        return ret;
    if (!e) {
        m->type = QC_UNALLOC;
        m->bytes = max_bytes;
        return 0;
    }
    while (pos < guest_off + max_bytes) {
        uint64_t i = (pos >> s->cluster_bits) & (s->l2_entries - 1);
        uint64_t entry = qcow2_l2_get_entry(s, e->data, i);
        uint64_t bitmap = qcow2_l2_get_bitmap(s, e->data, i);
        uint64_t in = pos & (s->cluster_size - 1);
        unsigned sc = in / s->subc_size;
        enum qcow2_subc_type t = QC_UNALLOC;

        ret = classify(img, entry, bitmap, s->ext_l2 ? sc : 0, &t);
        if (ret < 0)
            break;
        uint64_t host = (entry & QCOW2_L2_OFFSET_MASK) + in;
        if (pos == guest_off) {
            m->type = t;
            m->l2_entry = entry;
            m->copied = entry & QCOW2_OFLAG_COPIED;
            m->host_off = t == QC_NORMAL ? host : 0;
            expect_host = host;
        } else if (t != m->type || t == QC_COMPRESSED ||
                   (t == QC_NORMAL && (host != expect_host ||
                    m->copied != !!(entry & QCOW2_OFLAG_COPIED)))) {
            break;
        }
        uint64_t step = s->ext_l2 && t != QC_COMPRESSED
                        ? s->subc_size - (in & (s->subc_size - 1))
                        : s->cluster_size - in;
        pos += step;
        expect_host = host + step;
        if (t == QC_COMPRESSED)
            break;
    }
    qcow2_cache_put(&s->l2_cache, e);
    if (ret < 0)
        return ret;
    m->bytes = pos - guest_off;
    if (m->bytes > max_bytes)
        m->bytes = max_bytes;
    return 0;
}
