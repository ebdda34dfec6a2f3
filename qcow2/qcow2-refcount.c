/* SPDX-License-Identifier: MIT */
/*
 * Reference counts: reading them, reserving new clusters, freeing old
 * ones, and growing the refcount table.
 *
 * Notes on the design.
 *
 * New clusters are always taken from the end of the file, in batches
 * ("reservations"): the refcounts of a whole batch are set to 1, written,
 * and the file is synced before the first cluster of the batch is handed
 * out. So an L2 entry can never reach the disk before the refcount of the
 * cluster it points to, whatever order the kernel writes pages back in.
 * A crash leaves the unused rest of a batch as leaked clusters, which
 * `check -r leaks` reclaims; a clean close gives it back.
 *
 * Freed clusters are not decremented at once: they enter pending_free
 * once the L2 change that dropped them is written (not merely made in
 * the cache: a flush already under way would not cover it) and wait
 * there until the next flush has made that change durable,
 * so a cluster is never reused (or counted free) while an old L2 entry on
 * disk may still point to it. Freed data clusters are punched out of the
 * file so that they cost no host space.
 *
 * A new refcount block is written (with its own refcount) and synced
 * before the refcount table entry that points to it; a grown refcount
 * table is written and synced before the header points to it.
 */
#include "config.h"

#include "qcow2-internal.h"

#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

enum { RESERVE_MIN_BYTES = 32 << 20, RESERVE_MAX_CLUSTERS = 16384 };
#define RESERVE_MAX_BYTES (1ull << 30)

static uint64_t rc_read_entry(const struct qcow2_state *s, const uint8_t *b,
                              uint64_t i)
{
    uint64_t v;

    switch (s->h.refcount_order) {
    case 0: return (b[i / 8] >> (i % 8)) & 1;
    case 1: return (b[i / 4] >> (2 * (i % 4))) & 3;
    case 2: return (b[i / 2] >> (4 * (i % 2))) & 15;
    case 3: return b[i];
    case 4: { uint16_t x; memcpy(&x, b + 2 * i, 2); return be16toh(x); }
    case 5: { uint32_t x; memcpy(&x, b + 4 * i, 4); return be32toh(x); }
    default: memcpy(&v, b + 8 * i, 8); return be64toh(v);
    }
}

static void rc_write_entry(const struct qcow2_state *s, uint8_t *b,
                           uint64_t i, uint64_t v)
{
    unsigned shift;

    switch (s->h.refcount_order) {
    case 0: shift = i % 8; b[i / 8] = (b[i / 8] & ~(1u << shift)) | (v << shift); break;
    case 1: shift = 2 * (i % 4); b[i / 4] = (b[i / 4] & ~(3u << shift)) | (v << shift); break;
    case 2: shift = 4 * (i % 2); b[i / 2] = (b[i / 2] & ~(15u << shift)) | (v << shift); break;
    case 3: b[i] = v; break;
    case 4: { uint16_t x = htobe16(v); memcpy(b + 2 * i, &x, 2); break; }
    case 5: { uint32_t x = htobe32(v); memcpy(b + 4 * i, &x, 4); break; }
    default: { uint64_t x = htobe64(v); memcpy(b + 8 * i, &x, 8); break; }
    }
}

/* Byte range of entry i inside a refcount block, for the dirty range. */
static void rc_entry_span(const struct qcow2_state *s, uint64_t i,
                          uint32_t *lo, uint32_t *hi)
{
    uint64_t bit = i * s->refcount_bits;

    *lo = bit / 8;
    *hi = (bit + s->refcount_bits + 7) / 8;
}

int qcow2_refcount_init(struct sd_img *img, struct sd_error *err)
{
    struct qcow2_state *s = qcow2_state(img);
    uint64_t bytes = (uint64_t)s->h.refcount_table_clusters * s->cluster_size;
    uint64_t file_size;
    int ret;

    ret = blk_get_size(img->file, &file_size);
    if (ret < 0)
        return sd_error_set(err, ret, "could not get the file size");
    s->reftable_entries = bytes / 8;
    s->reftable = malloc(bytes);
    if (!s->reftable)
        return sd_error_set(err, -ENOMEM, "out of memory");
    ret = blk_pread_exact(img->file, s->reftable, bytes,
                          s->h.refcount_table_offset);
    if (ret < 0)
        return sd_error_set(err, ret, "refcount table at 0x%llx extends past "
                            "the end of the file or cannot be read",
                            (unsigned long long)s->h.refcount_table_offset);
    for (uint64_t i = 0; i < s->reftable_entries; i++) {
        uint64_t e = be64toh(s->reftable[i]);
        s->reftable[i] = e;
        if (e & ~QCOW2_REFT_OFFSET_MASK)
            return sd_error_set(err, -EINVAL, "refcount table entry %llu has "
                                "reserved bits set", (unsigned long long)i);
        if (e & (s->cluster_size - 1))
            return sd_error_set(err, -EINVAL, "refcount block %llu is not "
                                "cluster aligned", (unsigned long long)i);
        if (e && e >= file_size)
            return sd_error_set(err, -EINVAL, "refcount block %llu at 0x%llx "
                                "lies past the end of the file",
                                (unsigned long long)i, (unsigned long long)e);
        if (e && e < s->cluster_size)
            return sd_error_set(err, -EINVAL, "refcount block %llu overlaps "
                                "the header", (unsigned long long)i);
    }
    s->file_end = (file_size + s->cluster_size - 1) & ~(s->cluster_size - 1);
    return 0;
}

int qcow2_get_refcount(struct sd_img *img, uint64_t host_off, uint64_t *rc)
{
    struct qcow2_state *s = qcow2_state(img);
    uint64_t cluster = host_off >> s->cluster_bits;
    uint64_t idx = cluster / s->refblock_entries;
    struct qcow2_cache_entry *e;
    int ret;

    *rc = 0;
    if (idx >= s->reftable_entries || !s->reftable[idx])
        return 0;
    ret = qcow2_cache_get(img, &s->rb_cache, s->reftable[idx], false, &e);
    if (ret < 0)
        return ret;
    *rc = rc_read_entry(s, e->data, cluster % s->refblock_entries);
    qcow2_cache_put(&s->rb_cache, e);
    return 0;
}

/* A block device does not end where the image does: the image ends after
 * its last cluster in use, and new clusters go there. */
int qcow2_find_image_end(struct sd_img *img)
{
    struct qcow2_state *s = qcow2_state(img);

    for (uint64_t i = s->reftable_entries; i-- > 0; ) {
        if (!s->reftable[i])
            continue;
        for (uint64_t k = s->refblock_entries; k-- > 0; ) {
            uint64_t cluster = i * s->refblock_entries + k, rc;
            int ret = qcow2_get_refcount(img, cluster << s->cluster_bits, &rc);
            if (ret < 0)
                return ret;
            if (rc) {
                s->file_end = (cluster + 1) << s->cluster_bits;
                return 0;
            }
        }
    }
    return 0;
}

static int grow_reftable(struct sd_img *img, uint64_t min_index);
static int set_refcount(struct sd_img *img, uint64_t host_off, uint64_t val);

/* Write reftable entry idx to the file. */
static int write_reftable_entry(struct sd_img *img, uint64_t idx)
{
    struct qcow2_state *s = qcow2_state(img);
    uint64_t sector = (idx * 8) & ~511ull;
    uint8_t buf[512];
    uint64_t first = sector / 8;

    for (unsigned i = 0; i < 64; i++) {
        uint64_t v = first + i < s->reftable_entries ? s->reftable[first + i] : 0;
        v = htobe64(v);
        memcpy(buf + 8 * i, &v, 8);
    }
    return blk_pwrite(img->file, buf, 512, s->h.refcount_table_offset + sector);
}

/* Create refcount block idx at the end of the file. */
static int create_refblock(struct sd_img *img, uint64_t idx)
{
    struct qcow2_state *s = qcow2_state(img);
    struct qcow2_cache_entry *e;
    uint64_t off;
    int ret;

    if (idx >= s->reftable_entries) {
        ret = grow_reftable(img, idx);
        if (ret < 0)
            return ret;
        if (s->reftable[idx])
            return 0;
    }
    off = s->file_end;
    s->file_end += s->cluster_size;
    ret = qcow2_meta_add(s, off);
    if (ret < 0)
        return ret;
    ret = qcow2_cache_get(img, &s->rb_cache, off, true, &e);
    if (ret < 0)
        return ret;
    s->reftable[idx] = off;
    qcow2_cache_mark_dirty(e, 0, s->cluster_size);
    /* The block's own refcount, in itself or in another block. */
    ret = set_refcount(img, off, 1);
    if (ret == 0)
        ret = qcow2_cache_write_through(img, &s->rb_cache, e);
    qcow2_cache_put(&s->rb_cache, e);
    if (ret == 0)
        ret = blk_flush(img->file);
    if (ret == 0 && !s->reftable_moving)
        ret = write_reftable_entry(img, idx);
    if (ret < 0)
        s->reftable[idx] = 0;
    return ret;
}

/* Write through every refcount block covering [off, off + bytes). */
static int write_refblocks(struct sd_img *img, uint64_t off, uint64_t bytes)
{
    struct qcow2_state *s = qcow2_state(img);
    uint64_t first = (off >> s->cluster_bits) / s->refblock_entries;
    uint64_t last = ((off + bytes - 1) >> s->cluster_bits) / s->refblock_entries;

    for (uint64_t b = first; b <= last; b++) {
        struct qcow2_cache_entry *e;
        if (b >= s->reftable_entries || !s->reftable[b])
            continue;
        int ret = qcow2_cache_get(img, &s->rb_cache, s->reftable[b], false, &e);
        if (ret < 0)
            return ret;
        ret = qcow2_cache_write_through(img, &s->rb_cache, e);
        qcow2_cache_put(&s->rb_cache, e);
        if (ret < 0)
            return ret;
    }
    return 0;
}

/* Set the refcounts of the clusters of [off, off + bytes) that one
 * refcount block covers, in memory; returns the bytes handled. */
static int set_refcount_block_mem(struct sd_img *img, uint64_t off,
                                  uint64_t bytes, uint64_t val,
                                  uint64_t *done)
{
    struct qcow2_state *s = qcow2_state(img);
    uint64_t cluster = off >> s->cluster_bits;
    uint64_t idx = cluster / s->refblock_entries;
    uint64_t first = cluster % s->refblock_entries;
    uint64_t n = bytes >> s->cluster_bits;
    struct qcow2_cache_entry *e;
    uint32_t lo, hi, dummy;
    int ret;

    if (n > s->refblock_entries - first)
        n = s->refblock_entries - first;
    if (val > s->refcount_max)
        return sd_img_set_corrupt(img, "refcount overflow for cluster 0x%llx",
                                  (unsigned long long)off);
    if (idx >= s->reftable_entries || !s->reftable[idx]) {
        ret = create_refblock(img, idx);
        if (ret < 0)
            return ret;
    }
    ret = qcow2_cache_get(img, &s->rb_cache, s->reftable[idx], false, &e);
    if (ret < 0)
        return ret;
    for (uint64_t i = first; i < first + n; i++)
        rc_write_entry(s, e->data, i, val);
    rc_entry_span(s, first, &lo, &dummy);
    rc_entry_span(s, first + n - 1, &dummy, &hi);
    qcow2_cache_mark_dirty(e, lo, hi);
    qcow2_cache_put(&s->rb_cache, e);
    *done = n << s->cluster_bits;
    return 0;
}

/* Set the refcount of every cluster in a range and write the blocks. */
static int set_refcount_range(struct sd_img *img, uint64_t off,
                              uint64_t bytes, uint64_t val)
{
    for (uint64_t pos = 0; pos < bytes; ) {
        uint64_t done = 0;
        int ret = set_refcount_block_mem(img, off + pos, bytes - pos, val,
                                         &done);
        if (ret < 0)
            return ret;
        pos += done;
    }
    return write_refblocks(img, off, bytes);
}

static int set_refcount(struct sd_img *img, uint64_t host_off, uint64_t val)
{
    return set_refcount_range(img, host_off, qcow2_state(img)->cluster_size,
                              val);
}

static int write_reftable_whole(struct sd_img *img, uint64_t off,
                                uint64_t entries)
{
    struct qcow2_state *s = qcow2_state(img);
    uint64_t *buf = malloc(entries * 8);
    int ret;

    if (!buf)
        return -ENOMEM;
    for (uint64_t i = 0; i < entries; i++)
        buf[i] = htobe64(i < s->reftable_entries ? s->reftable[i] : 0);
    ret = blk_pwrite(img->file, buf, entries * 8, off);
    free(buf);
    return ret;
}

static int grow_reftable(struct sd_img *img, uint64_t min_index)
{
    struct qcow2_state *s = qcow2_state(img);
    uint64_t old_off = s->h.refcount_table_offset;
    uint64_t old_clusters = s->h.refcount_table_clusters;
    uint64_t per_cluster = s->cluster_size / 8;
    uint64_t want = s->reftable_entries * 2;
    uint64_t clusters, new_off, *grown;
    int ret;

    if (s->reftable_moving)
        return sd_img_set_corrupt(img, "refcount table grew while moving");
    if (want < min_index + 2)
        want = min_index + 2;
    clusters = (want + per_cluster - 1) / per_cluster;
    if (clusters * s->cluster_size > QCOW2_MAX_REFTABLE_BYTES)
        return -EFBIG;
    grown = calloc(clusters * per_cluster, 8);
    if (!grown)
        return -ENOMEM;
    memcpy(grown, s->reftable, s->reftable_entries * 8);
    free(s->reftable);
    s->reftable = grown;
    s->reftable_entries = clusters * per_cluster;
    new_off = s->file_end;
    s->file_end += clusters * s->cluster_size;

    s->reftable_moving = true;
    ret = set_refcount_range(img, new_off, clusters * s->cluster_size, 1);
    s->reftable_moving = false;
    if (ret == 0)
        ret = write_reftable_whole(img, new_off, s->reftable_entries);
    if (ret == 0)
        ret = blk_flush(img->file);
    if (ret < 0)
        return ret;
    s->h.refcount_table_offset = new_off;
    s->h.refcount_table_clusters = clusters;
    ret = qcow2_header_write(img->file, &s->h, NULL);
    if (ret == 0)
        ret = blk_flush(img->file);
    if (ret == 0)
        ret = qcow2_free_later(img, old_off, old_clusters * s->cluster_size);
    return ret;
}

static int grow_file(struct sd_img *img, uint64_t end)
{
    uint64_t size;
    int ret = blk_get_size(img->file, &size);

    if (ret < 0 || size >= end || img->file->is_blockdev)
        return ret;
    return blk_truncate(img->file, end);
}

/* How many clusters to reserve when n are needed now.
 *
 * Each batch costs a sync (tens of milliseconds on a busy disk, and every
 * allocating write waits for it; in page-cache mode it also writes out
 * every dirty page), so batches are large: an eighth of the virtual size
 * from the start, as large as the file once it has grown past that, at
 * least 32 MiB and at most 1 GiB, and under RESERVE_MAX_CLUSTERS when
 * clusters are small (each cluster costs a refcount update). The growth is
 * sparse and a clean close gives the unused part back; after a crash it is
 * a leak. On a block device a batch stops at the device's end (a write
 * past it would fail), and n clusters that do not fit are -ENOSPC. */
static int batch_clusters(struct sd_img *img, uint64_t *n)
{
    struct qcow2_state *s = qcow2_state(img);
    uint64_t min = RESERVE_MIN_BYTES >> s->cluster_bits;
    uint64_t grow = img->size / 8, dev_size, room;

    if (grow < s->file_end)
        grow = s->file_end;
    if ((grow >> s->cluster_bits) > min)
        min = grow >> s->cluster_bits;
    if (min > (RESERVE_MAX_BYTES >> s->cluster_bits))
        min = RESERVE_MAX_BYTES >> s->cluster_bits;
    if (min > RESERVE_MAX_CLUSTERS)
        min = RESERVE_MAX_CLUSTERS;
    if (img->file->is_blockdev) {
        int ret = blk_get_size(img->file, &dev_size);
        if (ret < 0)
            return ret;
        room = dev_size > s->file_end ? (dev_size - s->file_end) >> s->cluster_bits
                                      : 0;
        if (*n > room)
            return -ENOSPC;
        if (min > room)
            min = room;
    }
    if (*n < min)
        *n = min;
    return 0;
}

/* Reserve at least n clusters at the end of the file. */
static int reserve(struct sd_img *img, uint64_t n)
{
    struct qcow2_state *s = qcow2_state(img);
    uint64_t start;
    int ret;

    ret = batch_clusters(img, &n);
    if (ret < 0)
        return ret;
    for (;;) {
        start = s->file_end;
        uint64_t first = (start >> s->cluster_bits) / s->refblock_entries;
        uint64_t last = ((start >> s->cluster_bits) + n - 1) / s->refblock_entries;
        bool created = false;
        for (uint64_t b = first; b <= last; b++) {
            if (b < s->reftable_entries && s->reftable[b])
                continue;
            ret = create_refblock(img, b);
            if (ret < 0)
                return ret;
            created = true;
            break;
        }
        if (!created && s->file_end == start)
            break;
    }
    ret = set_refcount_range(img, start, n << s->cluster_bits, 1);
    if (ret < 0)
        return ret;
    s->file_end = start + (n << s->cluster_bits);
    /* Grow the file over the whole batch now, so that the sync below
     * makes its size durable: after a power cut an L2 entry can then
     * never point past the end of the file, even if the data write that
     * would have grown it was lost. The growth is sparse. */
    ret = grow_file(img, s->file_end);
    if (ret == 0)
        ret = blk_flush(img->file);
    if (ret < 0)
        return ret;
    s->resv_next = start;
    s->resv_end = s->file_end;
    return 0;
}

int qcow2_alloc_clusters(struct sd_img *img, uint64_t nclusters,
                         uint64_t *host_off, uint64_t *got)
{
    struct qcow2_state *s = qcow2_state(img);
    uint64_t avail;
    int ret;

    if (s->resv_next == s->resv_end || s->resv_end != s->file_end) {
        /* Refblocks or tables were put after the reservation: the rest of
         * it stays usable, but a fresh one starts at the end. */
        if (s->resv_next == s->resv_end) {
            ret = reserve(img, nclusters);
            if (ret < 0)
                return ret;
        }
    }
    avail = (s->resv_end - s->resv_next) >> s->cluster_bits;
    if (avail > nclusters)
        avail = nclusters;
    *host_off = s->resv_next;
    *got = avail;
    s->resv_next += avail << s->cluster_bits;
    return 0;
}

static int add_range(struct qcow2_free_range **arr, size_t *nr, size_t *cap,
                     uint64_t off, uint64_t bytes)
{
    if (*nr && (*arr)[*nr - 1].offset + (*arr)[*nr - 1].bytes == off) {
        (*arr)[*nr - 1].bytes += bytes;
        return 0;
    }
    if (*nr == *cap) {
        size_t ncap = *cap ? *cap * 2 : 64;
        struct qcow2_free_range *n = realloc(*arr, ncap * sizeof(*n));
        if (!n)
            return -ENOMEM;
        *arr = n;
        *cap = ncap;
    }
    (*arr)[(*nr)++] = (struct qcow2_free_range){ off, bytes };
    return 0;
}

int qcow2_free_later(struct sd_img *img, uint64_t host_off, uint64_t bytes)
{
    struct qcow2_state *s = qcow2_state(img);

    return add_range(&s->pending_free, &s->nr_pending_free,
                     &s->cap_pending_free, host_off, bytes);
}

int qcow2_free_entry_later(struct sd_img *img, uint64_t l2_entry)
{
    struct qcow2_state *s = qcow2_state(img);
    uint64_t off, len;

    if (!(l2_entry & QCOW2_OFLAG_COMPRESSED)) {
        off = l2_entry & QCOW2_L2_OFFSET_MASK;
        return off ? qcow2_free_later(img, off, s->cluster_size) : 0;
    }
    qcow2_compressed_loc(l2_entry, s->cluster_bits, &off, &len);
    uint64_t first = off & ~(s->cluster_size - 1);
    uint64_t last = (off + len - 1) & ~(s->cluster_size - 1);
    for (uint64_t c = first; c <= last; c += s->cluster_size) {
        int ret = qcow2_free_later(img, c, s->cluster_size);
        if (ret < 0)
            return ret;
    }
    return 0;
}

static int drop_reference(struct sd_img *img, uint64_t host_off)
{
    struct qcow2_state *s = qcow2_state(img);
    uint64_t rc;
    int ret = qcow2_get_refcount(img, host_off, &rc);

    if (ret < 0)
        return ret;
    if (rc == 0)
        return sd_img_set_corrupt(img, "freeing cluster 0x%llx whose "
                                  "refcount is already 0",
                                  (unsigned long long)host_off);
    ret = set_refcount(img, host_off, rc - 1);
    if (ret == 0 && rc == 1) {
        qcow2_cache_discard(&s->l2_cache, host_off);
        qcow2_cache_discard(&s->rb_cache, host_off);
        /* Give the space back. (Freed clusters are not reused: new ones
         * come from reservations at the end of the file.) */
        (void)blk_zero_range(img->file, host_off, s->cluster_size, true);
    }
    return ret;
}

int qcow2_apply_frees(struct sd_img *img, struct qcow2_free_range *r,
                      size_t nr)
{
    struct qcow2_state *s = qcow2_state(img);
    int ret = 0;

    co_mutex_lock(&s->alloc_lock);
    for (size_t i = 0; i < nr && ret == 0; i++) {
        while (r[i].bytes && ret == 0) {
            ret = drop_reference(img, r[i].offset);
            r[i].offset += s->cluster_size;
            r[i].bytes -= s->cluster_size;
        }
    }
    co_mutex_unlock(&s->alloc_lock);
    return ret;
}

int qcow2_release_reservation(struct sd_img *img)
{
    struct qcow2_state *s = qcow2_state(img);
    int ret = 0;

    co_mutex_lock(&s->alloc_lock);
    /* Unused reserved clusters were never referenced: drop them now. */
    if (s->resv_next < s->resv_end)
        ret = set_refcount_range(img, s->resv_next,
                                 s->resv_end - s->resv_next, 0);
    if (ret == 0 && s->resv_end == s->file_end && s->resv_next < s->resv_end) {
        uint64_t size;
        s->file_end = s->resv_next;
        s->resv_end = s->resv_next;
        /* Give back the sparse tail the reservation grew the file by. */
        ret = blk_get_size(img->file, &size);
        if (ret == 0 && size > s->file_end && !img->file->is_blockdev)
            ret = blk_truncate(img->file, s->file_end);
    } else if (ret == 0) {
        s->resv_end = s->resv_next;
    }
    co_mutex_unlock(&s->alloc_lock);
    return ret;
}

static bool ranges_overlap(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
    return a < b + blen && b < a + alen;
}

/* Overlap with the structures at fixed places: header, L1 table,
 * refcount table. Constant time: done before every metadata and data
 * write. */
bool qcow2_overlaps_fixed_metadata(struct sd_img *img, uint64_t off,
                                   uint64_t len)
{
    struct qcow2_state *s = qcow2_state(img);
    uint64_t cs = s->cluster_size;

    if (ranges_overlap(off, len, 0, cs))
        return true;
    if (s->l1_size && ranges_overlap(off, len, s->h.l1_table_offset,
                                     s->l1_size * 8ull))
        return true;
    return ranges_overlap(off, len, s->h.refcount_table_offset,
                          s->h.refcount_table_clusters * cs);
}

/* Full check against every refcount block and L2 table too, except the
 * table at allowed_table. Linear in the table counts: done when a table
 * is first loaded, so tables read from the file can be trusted later. */
bool qcow2_overlaps_metadata(struct sd_img *img, uint64_t off, uint64_t len,
                             uint64_t allowed_table)
{
    struct qcow2_state *s = qcow2_state(img);
    uint64_t cs = s->cluster_size;

    if (qcow2_overlaps_fixed_metadata(img, off, len))
        return true;
    for (uint64_t i = 0; i < s->reftable_entries; i++) {
        uint64_t b = s->reftable[i];
        if (b && b != allowed_table && ranges_overlap(off, len, b, cs))
            return true;
    }
    for (uint32_t i = 0; i < s->l1_size; i++) {
        uint64_t t = s->l1[i] & QCOW2_L1_OFFSET_MASK;
        if (t && t != allowed_table && ranges_overlap(off, len, t, cs))
            return true;
    }
    return false;
}

static size_t meta_slot(const struct qcow2_meta_set *m, uint64_t key)
{
    /* Fibonacci hashing spreads consecutive cluster numbers. */
    return (size_t)((key * 0x9e3779b97f4a7c15ull) >> 20) & (m->cap - 1);
}

static int meta_grow(struct qcow2_meta_set *m)
{
    struct qcow2_meta_set bigger = { .cap = m->cap ? m->cap * 2 : 256 };

    bigger.slots = calloc(bigger.cap, sizeof(*bigger.slots));
    if (!bigger.slots)
        return -ENOMEM;
    for (size_t i = 0; i < m->cap; i++) {
        uint64_t key = m->slots[i];
        if (!key)
            continue;
        size_t j = meta_slot(&bigger, key);
        while (bigger.slots[j])
            j = (j + 1) & (bigger.cap - 1);
        bigger.slots[j] = key;
        bigger.nr++;
    }
    free(m->slots);
    *m = bigger;
    return 0;
}

int qcow2_meta_add(struct qcow2_state *s, uint64_t host_off)
{
    struct qcow2_meta_set *m = &s->meta;
    uint64_t key = (host_off >> s->cluster_bits) + 1;

    if ((m->nr + 1) * 2 > m->cap && meta_grow(m) < 0)
        return -ENOMEM;
    size_t j = meta_slot(m, key);
    while (m->slots[j]) {
        if (m->slots[j] == key)
            return 0;
        j = (j + 1) & (m->cap - 1);
    }
    m->slots[j] = key;
    m->nr++;
    return 0;
}

bool qcow2_meta_has(const struct qcow2_state *s, uint64_t host_off)
{
    const struct qcow2_meta_set *m = &s->meta;
    uint64_t key = (host_off >> s->cluster_bits) + 1;

    if (!m->cap)
        return false;
    for (size_t j = meta_slot(m, key); m->slots[j]; j = (j + 1) & (m->cap - 1))
        if (m->slots[j] == key)
            return true;
    return false;
}

int qcow2_meta_build(struct sd_img *img)
{
    struct qcow2_state *s = qcow2_state(img);

    for (uint64_t i = 0; i < s->reftable_entries; i++)
        if (s->reftable[i] && qcow2_meta_add(s, s->reftable[i]) < 0)
            return -ENOMEM;
    for (uint32_t i = 0; i < s->l1_size; i++) {
        uint64_t t = s->l1[i] & QCOW2_L1_OFFSET_MASK;
        if (t && qcow2_meta_add(s, t) < 0)
            return -ENOMEM;
    }
    return 0;
}

void qcow2_meta_free(struct qcow2_state *s)
{
    free(s->meta.slots);
    memset(&s->meta, 0, sizeof(s->meta));
}

bool qcow2_data_overlaps_metadata(struct sd_img *img, uint64_t off,
                                  uint64_t len)
{
    struct qcow2_state *s = qcow2_state(img);

    if (qcow2_overlaps_fixed_metadata(img, off, len))
        return true;
    for (uint64_t c = off & ~(s->cluster_size - 1); c < off + len;
         c += s->cluster_size)
        if (qcow2_meta_has(s, c))
            return true;
    return false;
}
