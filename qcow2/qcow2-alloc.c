/* SPDX-License-Identifier: MIT */
/*
 * Writes that change the mapping: allocating writes, copy-on-write, and
 * turning subclusters into zero or unallocated ones.
 *
 * Notes on the design.
 *
 * A request that must change L2 entries first registers the guest
 * clusters it covers as an in-flight allocation, after waiting for any
 * overlapping one to finish; so two requests never allocate or rewrite
 * the same guest cluster at once. Then, for each cluster, it decides
 * under alloc_lock what to do (write in place, allocate, copy on write),
 * allocates host clusters, and lets go of the lock while the data is
 * written. Only then are the L2 entries changed (under the lock again)
 * and written through, so an L2 entry never points to data that is not
 * yet in the file.
 *
 * Copy-on-write fills only what the new state of the cluster needs: with
 * extended L2 entries only the partial subclusters at either end of the
 * write that were not already allocated; without them the whole cluster.
 * Bytes already allocated in place are never rewritten from a stale copy.
 * A fill of zeros into a new host cluster is not written at all: new
 * clusters come from reservations the file was grown over sparsely and
 * nothing has written since (qcow2-refcount.c), so they read as zeros
 * already. Not on a block device, where they hold whatever was there.
 */
#include "config.h"

#include "qcow2-internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Clusters one allocating request plans at once (bounds its memory). */
enum { ALLOC_MAX_CLUSTERS = 4096, ALLOC_STACK_PLANS = 16 };

struct cluster_plan {
    uint64_t guest;          /* guest offset of the cluster */
    uint64_t old_entry, old_bitmap;
    uint64_t host;           /* host cluster written into */
    bool new_host;
    bool whole;              /* the new content is the whole cluster */
    uint64_t w_lo, w_hi;     /* request bytes inside the cluster */
    uint64_t f_lo, f_hi;     /* bytes we write: request plus fills */
    uint64_t alloc_mask;     /* ext: subclusters allocated afterwards */
};

/* Every guest data write goes through here: a data cluster that sits on
 * the header, the L1 or refcount table, an L2 table or a refcount block
 * means a corrupt L2 entry, and writing would destroy the metadata. */
static int data_pwrite(struct sd_img *img, const void *buf, uint64_t len,
                       uint64_t host)
{
    if (qcow2_data_overlaps_metadata(img, host, len))
        return sd_img_set_corrupt(img, "preventing a data write at 0x%llx "
                                  "that overlaps image metadata",
                                  (unsigned long long)host);
    return blk_pwrite_data(img->file, buf, len, host);
}

/* -- in-flight guest ranges ------------------------------------------ */

static struct qcow2_inflight *inflight_find(struct qcow2_state *s,
                                            uint64_t start, uint64_t end)
{
    for (struct qcow2_inflight *f = s->inflight; f; f = f->next)
        if (f->guest_start < end && start < f->guest_end)
            return f;
    return NULL;
}

static void inflight_begin(struct qcow2_state *s, struct qcow2_inflight *me,
                           uint64_t start, uint64_t end)
{
    struct qcow2_inflight *other;

    while ((other = inflight_find(s, start, end)))
        co_queue_wait(&other->waiters);
    memset(me, 0, sizeof(*me));
    me->guest_start = start;
    me->guest_end = end;
    me->next = s->inflight;
    s->inflight = me;
}

static void inflight_end(struct qcow2_state *s, struct qcow2_inflight *me)
{
    for (struct qcow2_inflight **p = &s->inflight; *p; p = &(*p)->next) {
        if (*p == me) {
            *p = me->next;
            break;
        }
    }
    co_queue_wake_all(&me->waiters);
}

/* -- reading the old content of a cluster ---------------------------- */

static int read_compressed_cluster(struct sd_img *img, uint64_t entry,
                                   uint8_t *dst)
{
    struct qcow2_state *s = qcow2_state(img);
    uint64_t off, len, fsize;
    uint8_t *src;
    int ret = blk_get_size(img->file, &fsize);

    if (ret < 0)
        return ret;
    qcow2_compressed_loc(entry, s->cluster_bits, &off, &len);
    if (off >= fsize)
        return sd_img_set_corrupt(img, "compressed cluster at 0x%llx lies "
                                  "past the end of the file",
                                  (unsigned long long)off);
    if (len > fsize - off)
        len = fsize - off;
    src = malloc(len);
    if (!src)
        return -ENOMEM;
    ret = blk_pread(img->file, src, len, off);
    if (ret == 0)
        ret = qcow2_decompress(s->h.compression_type, src, len, dst,
                               s->cluster_size);
    free(src);
    return ret;
}

int qcow2_read_compressed(struct sd_img *img, uint64_t entry, uint8_t *dst)
{
    return read_compressed_cluster(img, entry, dst);
}

/* Old content of [rel, rel + len) of the planned cluster, by the type
 * each subcluster had before this write. */
static int read_old(struct sd_img *img, const struct cluster_plan *p,
                    uint64_t rel, uint64_t len, uint8_t *dst,
                    uint8_t *decompressed)
{
    struct qcow2_state *s = qcow2_state(img);

    if (p->old_entry & QCOW2_OFLAG_COMPRESSED) {
        memcpy(dst, decompressed + rel, len);
        return 0;
    }
    while (len) {
        unsigned sc = s->ext_l2 ? rel / s->subc_size : 0;
        uint64_t span = s->ext_l2 ? s->subc_size - rel % s->subc_size
                                  : s->cluster_size - rel;
        uint64_t off = p->old_entry & QCOW2_L2_OFFSET_MASK;
        bool zero, alloc;
        int ret = 0;

        if (span > len)
            span = len;
        if (s->ext_l2) {
            alloc = (p->old_bitmap >> sc) & 1;
            zero = (p->old_bitmap >> (32 + sc)) & 1;
        } else {
            zero = s->h.version >= 3 && (p->old_entry & QCOW2_OFLAG_ZERO);
            alloc = !zero && off;
        }
        if (zero)
            memset(dst, 0, span);
        else if (alloc)
            ret = blk_pread_data(img->file, dst, span, off + rel);
        else
            ret = sd_img_co_read_backing(img, dst, p->guest + rel, span);
        if (ret < 0)
            return ret;
        dst += span;
        rel += span;
        len -= span;
    }
    return 0;
}

/* -- planning -------------------------------------------------------- */

static bool subc_allocated(const struct qcow2_state *s,
                           const struct cluster_plan *p, unsigned sc)
{
    return !p->new_host && ((p->old_bitmap >> sc) & 1);
}

/* Whether what a fill would copy into a new host cluster is zeros: an
 * unallocated cluster with no backing image, or a zero cluster. */
static bool old_reads_zero(const struct sd_img *img,
                           const struct qcow2_state *s, uint64_t entry)
{
    if (entry & QCOW2_OFLAG_COMPRESSED)
        return false;
    if (!s->ext_l2 && s->h.version >= 3 && (entry & QCOW2_OFLAG_ZERO))
        return true;
    return !(entry & QCOW2_L2_OFFSET_MASK) && !img->backing;
}

/* Decide how to write [w_lo, w_hi) of the cluster whose L2 entry is
 * (entry, bitmap). Sets whether a new host cluster is needed. */
static void plan_cluster(const struct qcow2_state *s, struct cluster_plan *p)
{
    uint64_t off = p->old_entry & QCOW2_L2_OFFSET_MASK;
    bool compressed = p->old_entry & QCOW2_OFLAG_COMPRESSED;
    bool copied = p->old_entry & QCOW2_OFLAG_COPIED;
    uint64_t cs = s->cluster_size;

    p->new_host = compressed || !off || !copied;
    p->host = p->new_host ? 0 : off;
    if (!s->ext_l2 || compressed || (off && !copied)) {
        /* Whole-cluster state: no subclusters to leave alone. */
        bool in_place_data = !p->new_host && !(p->old_entry & QCOW2_OFLAG_ZERO);
        p->whole = !in_place_data;
        p->f_lo = p->whole ? 0 : p->w_lo;
        p->f_hi = p->whole ? cs : p->w_hi;
        p->alloc_mask = s->ext_l2 ? 0xffffffffull : 0;
        return;
    }
    p->whole = false;
    uint64_t sub = s->subc_size;
    unsigned first = p->w_lo / sub, last = (p->w_hi - 1) / sub;
    p->f_lo = subc_allocated(s, p, first) ? p->w_lo : first * sub;
    p->f_hi = subc_allocated(s, p, last) ? p->w_hi : (last + 1) * sub;
    p->alloc_mask = 0;
    for (unsigned sc = first; sc <= last; sc++)
        p->alloc_mask |= 1ull << sc;
}

/* plan_cluster(), and no fill of zeros into a new host cluster that
 * reads as zeros already (any but one on a block device). */
static void plan_cluster_fill(const struct sd_img *img, struct cluster_plan *p)
{
    const struct qcow2_state *s = img->priv;

    plan_cluster(s, p);
    if (p->new_host && !img->file->is_blockdev &&
        old_reads_zero(img, s, p->old_entry)) {
        p->f_lo = p->w_lo;
        p->f_hi = p->w_hi;
    }
}

/* Fill plans for the clusters of [off, off+len) from their L2 entries and
 * allocate the host clusters they need. Caller holds alloc_lock. */
static int plan_range(struct sd_img *img, uint64_t off, uint64_t len,
                      struct cluster_plan *plans, unsigned n)
{
    struct qcow2_state *s = qcow2_state(img);
    struct qcow2_cache_entry *e;
    uint64_t cstart = off & ~(s->cluster_size - 1);
    int ret = qcow2_get_l2(img, off, true, &e);

    if (ret < 0)
        return ret;
    for (unsigned i = 0; i < n; i++) {
        struct cluster_plan *p = &plans[i];
        uint64_t g = cstart + (uint64_t)i * s->cluster_size;
        uint64_t idx = (g >> s->cluster_bits) & (s->l2_entries - 1);
        p->guest = g;
        p->old_entry = qcow2_l2_get_entry(s, e->data, idx);
        p->old_bitmap = qcow2_l2_get_bitmap(s, e->data, idx);
        p->w_lo = off > g ? off - g : 0;
        p->w_hi = off + len < g + s->cluster_size ? off + len - g
                                                  : s->cluster_size;
        plan_cluster_fill(img, p);
    }
    qcow2_cache_put(&s->l2_cache, e);
    for (unsigned i = 0; i < n; ) {
        uint64_t want = 0, host, got;
        while (i + want < n && plans[i + want].new_host)
            want++;
        if (!want) {
            i++;
            continue;
        }
        ret = qcow2_alloc_clusters(img, want, &host, &got);
        if (ret < 0)
            return ret;
        for (uint64_t k = 0; k < got; k++)
            plans[i + k].host = host + (k << s->cluster_bits);
        i += got;
    }
    return 0;
}

/* -- the data phase ---------------------------------------------------- */

static bool all_zero(const uint8_t *p, uint64_t len)
{
    return len == 0 || (p[0] == 0 && memcmp(p, p + 1, len - 1) == 0);
}

/* Write one planned cluster. *barrier is set when the fill carried data
 * that is not zero (backing, compressed or shared content): that data
 * must be on disk before an L2 entry makes it visible, or a power cut
 * could show zeros where the guest never wrote. */
static int write_planned(struct sd_img *img, const struct cluster_plan *p,
                         const uint8_t *buf, uint64_t req_off, bool *barrier)
{
    struct qcow2_state *s = qcow2_state(img);
    const uint8_t *src = buf + (p->guest + p->w_lo - req_off);
    uint64_t flen = p->f_hi - p->f_lo;
    uint8_t *bounce, *dec = NULL;
    int ret;

    if (p->f_lo == p->w_lo && p->f_hi == p->w_hi)
        return data_pwrite(img, src, flen, p->host + p->f_lo);
    bounce = blk_alloc_buffer(flen);
    if (!bounce)
        return -ENOMEM;
    ret = 0;
    if (p->old_entry & QCOW2_OFLAG_COMPRESSED) {
        dec = malloc(s->cluster_size);
        ret = dec ? read_compressed_cluster(img, p->old_entry, dec) : -ENOMEM;
    }
    if (ret == 0 && p->f_lo < p->w_lo)
        ret = read_old(img, p, p->f_lo, p->w_lo - p->f_lo, bounce, dec);
    if (ret == 0 && p->w_hi < p->f_hi)
        ret = read_old(img, p, p->w_hi, p->f_hi - p->w_hi,
                       bounce + (p->w_hi - p->f_lo), dec);
    if (ret == 0 && (!all_zero(bounce, p->w_lo - p->f_lo) ||
                     !all_zero(bounce + (p->w_hi - p->f_lo), p->f_hi - p->w_hi)))
        *barrier = true;
    if (ret == 0) {
        memcpy(bounce + (p->w_lo - p->f_lo), src, p->w_hi - p->w_lo);
        ret = data_pwrite(img, bounce, flen, p->host + p->f_lo);
    }
    free(dec);
    free(bounce);
    return ret;
}

/* Write all planned clusters, merging runs that need no fill and are
 * contiguous on the host into one write. */
static int write_data(struct sd_img *img, const struct cluster_plan *plans,
                      unsigned n, const uint8_t *buf, uint64_t req_off,
                      bool *barrier)
{
    struct qcow2_state *s = qcow2_state(img);

    for (unsigned i = 0; i < n; ) {
        const struct cluster_plan *p = &plans[i];
        unsigned j = i + 1;
        bool plain = p->f_lo == p->w_lo && p->f_hi == p->w_hi;
        int ret;

        if (plain && p->w_hi == s->cluster_size) {
            while (j < n && plans[j].f_lo == 0 && plans[j].w_lo == 0 &&
                   plans[j].f_hi == plans[j].w_hi &&
                   plans[j].host == plans[j - 1].host + s->cluster_size &&
                   plans[j - 1].w_hi == s->cluster_size)
                j++;
        }
        if (j > i + 1) {
            const struct cluster_plan *last = &plans[j - 1];
            uint64_t bytes = last->host + last->w_hi - (p->host + p->w_lo);
            ret = data_pwrite(img, buf + (p->guest + p->w_lo - req_off),
                             bytes, p->host + p->w_lo);
        } else {
            ret = write_planned(img, p, buf, req_off, barrier);
        }
        if (ret < 0)
            return ret;
        i = j;
    }
    return 0;
}

/* -- the L2 update --------------------------------------------------- */

static uint64_t new_bitmap(const struct qcow2_state *s,
                           const struct cluster_plan *p)
{
    uint64_t alloc = p->alloc_mask;

    if (!p->whole && !p->new_host)
        alloc |= p->old_bitmap & 0xffffffffull;
    /* Allocated subclusters are no longer zero ones. */
    uint64_t zero = (p->whole ? 0 : (p->old_bitmap >> 32)) & ~alloc;
    return (alloc & 0xffffffffull) | ((zero & 0xffffffffull) << 32);
}

/* A cluster written to a new host cluster (compressed, or shared and
 * copied) drops its reference to the old one. */
static int release_old(struct sd_img *img, const struct cluster_plan *p)
{
    return p->new_host ? qcow2_free_entry_later(img, p->old_entry) : 0;
}

static int update_l2(struct sd_img *img, const struct cluster_plan *plans,
                     unsigned n)
{
    struct qcow2_state *s = qcow2_state(img);
    struct qcow2_cache_entry *e;
    int ret;

    co_mutex_lock(&s->alloc_lock);
    ret = qcow2_get_l2(img, plans[0].guest, true, &e);
    if (ret < 0) {
        co_mutex_unlock(&s->alloc_lock);
        return ret;
    }
    uint64_t lo_idx = (plans[0].guest >> s->cluster_bits) & (s->l2_entries - 1);
    for (unsigned i = 0; i < n; i++) {
        const struct cluster_plan *p = &plans[i];
        uint64_t entry = p->host | QCOW2_OFLAG_COPIED;
        qcow2_l2_set(s, e->data, lo_idx + i, entry, new_bitmap(s, p));
    }
    qcow2_cache_mark_dirty(e, lo_idx * s->l2_entry_bytes,
                           (lo_idx + n) * s->l2_entry_bytes);
    co_mutex_unlock(&s->alloc_lock);
    ret = qcow2_cache_write_through(img, &s->l2_cache, e);
    qcow2_cache_put(&s->l2_cache, e);
    /* Old clusters are freed only once no entry in the file points at
     * them: a flush running while the table was being written must not
     * count them free (see qcow2_free_later()). */
    for (unsigned i = 0; i < n && ret == 0; i++)
        ret = release_old(img, &plans[i]);
    return ret;
}

/* A zero (sub)cluster that keeps its host cluster may still hold old data
 * there. Writing into it exposes the host bytes as soon as the L2 entry
 * changes, so the new data must be on disk first. */
static bool needs_barrier(const struct qcow2_state *s,
                          const struct cluster_plan *plans, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        const struct cluster_plan *p = &plans[i];
        if (p->new_host)
            continue;
        if (!s->ext_l2 && (p->old_entry & QCOW2_OFLAG_ZERO))
            return true;
        if (s->ext_l2 && ((p->old_bitmap >> 32) & p->alloc_mask))
            return true;
    }
    return false;
}

/* Allocating write of [off, off+len), within one L2 table. */
static int alloc_write(struct sd_img *img, const uint8_t *buf, uint64_t off,
                       uint64_t len)
{
    struct qcow2_state *s = qcow2_state(img);
    uint64_t cstart = off & ~(s->cluster_size - 1);
    uint64_t cend = (off + len + s->cluster_size - 1) & ~(s->cluster_size - 1);
    unsigned n = (cend - cstart) >> s->cluster_bits;
    /* Most requests touch a few clusters: keep their plans on the
     * coroutine's stack and allocate only for large ones. */
    struct cluster_plan small[ALLOC_STACK_PLANS];
    struct cluster_plan *plans = n <= ALLOC_STACK_PLANS
                                 ? memset(small, 0, sizeof(small))
                                 : calloc(n, sizeof(*plans));
    struct qcow2_inflight me;
    int ret;

    if (!plans)
        return -ENOMEM;
    inflight_begin(s, &me, cstart, cend);
    co_mutex_lock(&s->alloc_lock);
    ret = plan_range(img, off, len, plans, n);
    co_mutex_unlock(&s->alloc_lock);
    bool barrier = needs_barrier(s, plans, n);
    if (ret == 0)
        ret = write_data(img, plans, n, buf, off, &barrier);
    if (ret == 0 && barrier)
        ret = blk_flush(img->file);
    if (ret == 0)
        ret = update_l2(img, plans, n);
    inflight_end(s, &me);
    if (plans != small)
        free(plans);
    return ret;
}

int qcow2_co_write(struct sd_img *img, const void *buf, uint64_t off,
                   uint64_t len, unsigned flags)
{
    struct qcow2_state *s = qcow2_state(img);
    const uint8_t *p = buf;
    uint64_t table_span = 1ull << (s->cluster_bits + s->l2_bits);

    while (len) {
        struct qcow2_map m;
        int ret = qcow2_get_map(img, off, len, &m);
        if (ret < 0)
            return ret;
        uint64_t n = m.bytes;
        if (m.type == QC_NORMAL && m.copied) {
            ret = data_pwrite(img, p, n, m.host_off);
        } else {
            uint64_t table_end = (off | (table_span - 1)) + 1;
            if (n > table_end - off)
                n = table_end - off;
            uint64_t cap = ((uint64_t)ALLOC_MAX_CLUSTERS << s->cluster_bits) -
                           (off & (s->cluster_size - 1));
            if (n > cap)
                n = cap;
            ret = alloc_write(img, p, off, n);
        }
        if (ret < 0)
            return ret;
        p += n;
        off += n;
        len -= n;
    }
    return 0;
}

/* -- zero and discard of whole subclusters ---------------------------- */

/* New L2 state of one cluster when [lo, hi) (subcluster-aligned, inside
 * the cluster) becomes zero (or unallocated when unalloc is true). An old
 * entry whose host cluster the change drops goes to *dropped, to be freed
 * once the table is written. */
static int zero_one_cluster(struct sd_img *img, uint8_t *table, uint64_t idx,
                            uint64_t lo, uint64_t hi, bool unmap,
                            bool unalloc, uint64_t *dropped,
                            uint64_t *scrub_off, uint64_t *scrub_len)
{
    struct qcow2_state *s = qcow2_state(img);
    uint64_t entry = qcow2_l2_get_entry(s, table, idx);
    uint64_t bitmap = qcow2_l2_get_bitmap(s, table, idx);
    uint64_t off = entry & QCOW2_L2_OFFSET_MASK;
    bool compressed = entry & QCOW2_OFLAG_COMPRESSED;
    bool whole = lo == 0 && hi == s->cluster_size;

    if (!s->ext_l2) {
        bool keep = !unmap && !unalloc && !compressed && off &&
                    (entry & QCOW2_OFLAG_COPIED);
        if (!keep)
            *dropped = entry;
        uint64_t ne = unalloc ? 0 : QCOW2_OFLAG_ZERO;
        if (keep)
            ne |= off | QCOW2_OFLAG_COPIED;
        qcow2_l2_set(s, table, idx, ne, 0);
        return 0;
    }
    if (compressed && !whole)
        return -EAGAIN;                 /* caller rewrites it as data */
    uint64_t mask = 0;
    for (uint64_t sc = lo / s->subc_size; sc < hi / s->subc_size; sc++)
        mask |= 1ull << sc;
    uint64_t alloc = compressed ? 0 : bitmap & 0xffffffffull & ~mask;
    uint64_t zero = compressed ? 0 : (bitmap >> 32) & ~mask;
    if (!unalloc)
        zero |= mask;
    if (compressed ||
        (!alloc && off && (unmap || unalloc || !(entry & QCOW2_OFLAG_COPIED)))) {
        *dropped = entry;
        off = 0;
        entry = 0;
    } else if (off && unalloc && (bitmap & mask)) {
        /* Unallocated subclusters of a kept host cluster must hold zeros
         * there, as a later write into them exposes the host bytes
         * without a barrier (see needs_barrier()). */
        *scrub_off = off + lo;
        *scrub_len = hi - lo;
    }
    qcow2_l2_set(s, table, idx, entry, alloc | (zero << 32));
    return 0;
}

/* Zero [off, off+n), which lies within one L2 table. */
static int zero_in_table(struct sd_img *img, uint64_t off, uint64_t n,
                         bool unmap, bool unalloc)
{
    struct qcow2_state *s = qcow2_state(img);
    uint64_t cstart = off & ~(s->cluster_size - 1);
    uint64_t cend = (off + n + s->cluster_size - 1) & ~(s->cluster_size - 1);
    uint64_t i0 = (cstart >> s->cluster_bits) & (s->l2_entries - 1);
    uint64_t nclusters = (cend - cstart) >> s->cluster_bits;
    uint64_t small[ALLOC_STACK_PLANS] = { 0 };
    uint64_t *dropped = nclusters <= ALLOC_STACK_PLANS
                        ? small : calloc(nclusters, sizeof(*dropped));
    struct qcow2_inflight me;
    struct qcow2_cache_entry *e;
    bool scrubbed = false, table_written = false;
    int ret;

    if (!dropped)
        return -ENOMEM;
    inflight_begin(s, &me, cstart, cend);
    co_mutex_lock(&s->alloc_lock);
    ret = qcow2_get_l2(img, off, true, &e);
    for (uint64_t k = 0; ret == 0 && k < nclusters; k++) {
        uint64_t g = cstart + (k << s->cluster_bits);
        uint64_t lo = off > g ? off - g : 0;
        uint64_t hi = off + n < g + s->cluster_size ? off + n - g
                                                    : s->cluster_size;
        uint64_t so = 0, sl = 0;
        ret = zero_one_cluster(img, e->data, i0 + k, lo, hi, unmap,
                               unalloc, &dropped[k], &so, &sl);
        if (ret == 0 && sl) {
            ret = blk_zero_range(img->file, so, sl, true);
            scrubbed = true;
        }
    }
    if (ret == 0 && scrubbed)
        ret = blk_flush(img->file);
    if (e)
        qcow2_cache_mark_dirty(e, i0 * s->l2_entry_bytes,
                               (i0 + nclusters) * s->l2_entry_bytes);
    co_mutex_unlock(&s->alloc_lock);
    if (e) {
        int wret = qcow2_cache_write_through(img, &s->l2_cache, e);
        table_written = wret == 0;
        if (ret == 0)
            ret = wret;
        qcow2_cache_put(&s->l2_cache, e);
    }
    /* The table is in the file: what it no longer points at can be freed
     * at the next flush. If it could not be written the clusters stay
     * referenced (a leak at worst, never a cluster freed under a live
     * entry). */
    for (uint64_t k = 0; table_written && k < nclusters; k++) {
        int r = qcow2_free_entry_later(img, dropped[k]);
        if (r < 0 && (ret == 0 || ret == -EAGAIN))
            ret = r;
    }
    inflight_end(s, &me);
    if (dropped != small)
        free(dropped);
    return ret;
}

int qcow2_co_zero_subclusters(struct sd_img *img, uint64_t off, uint64_t len,
                              bool unmap, bool unalloc)
{
    struct qcow2_state *s = qcow2_state(img);
    uint64_t table_span = 1ull << (s->cluster_bits + s->l2_bits);

    while (len) {
        uint64_t table_end = (off | (table_span - 1)) + 1;
        uint64_t n = len < table_end - off ? len : table_end - off;
        uint64_t l1_idx = off >> (s->cluster_bits + s->l2_bits);

        if (l1_idx >= s->l1_size || s->l1[l1_idx] ||
            (!unalloc && img->backing)) {
            int ret = zero_in_table(img, off, n, unmap, unalloc);
            if (ret < 0)
                return ret;
        }
        /* else no table: the range already reads as zeros */
        off += n;
        len -= n;
    }
    return 0;
}
