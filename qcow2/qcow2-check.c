/* SPDX-License-Identifier: MIT */
/*
 * Checking a QCOW2 image's metadata, as `qemu-img check` does.
 *
 * Notes on the design and implementation.
 *
 * The check walks every structure that owns host clusters and counts, in
 * an array with one entry per cluster of the file, how many references
 * each cluster should have:
 *
 *   header cluster                                       1
 *   refcount table clusters, each refcount block          1
 *   active L1 table; each L1 entry -> its L2 table       +1 per reference
 *   each L2 entry -> its data cluster, or every host
 *     cluster a compressed cluster's byte range touches  +1 per reference
 *   snapshot table; each snapshot's L1 table, its L2
 *     tables and their data (walked like the active L1)
 *   bitmap directory, bitmap tables, bitmap data clusters
 *
 * and then compares with the refcounts stored on disk: stored < computed
 * is a corruption (a cluster could be freed and reused while in use),
 * stored > computed a leak (space wasted). While walking, each cluster
 * also records what kind of structure claimed it first, so metadata that
 * overlaps other metadata or data is reported by name.
 *
 * The active L1 and L2 entries must carry OFLAG_COPIED exactly when the
 * stored refcount of what they point to is 1; those checks read the
 * stored refcounts through a one-block cache while walking.
 *
 * Limits. A hostile file must not make us allocate or loop without bound:
 * the per-cluster arrays are sized by the file's length (refused past
 * QCOW2_CHECK_MAX_CLUSTERS), tables are read a cluster at a time, the
 * number of L2 tables visited across all L1 tables is capped, and every
 * variable-length table is checked against the file's end before it is
 * read. Hitting a cap is a check error: the check is then incomplete.
 *
 * Repair handles leaks only: their stored refcount is lowered to the
 * computed one, the file is synced, and the image is checked again. An
 * image with corruptions is not repaired at all, since the computed
 * counts of a corrupt image cannot be trusted enough to free clusters.
 */
#include "config.h"

#include "common/byteorder.h"

#include "qcow2-check.h"
#include "qcow2-format.h"
#include "blkfile.h"

#include "common/error.h"

#include <endian.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* 2^27 clusters: 8 TiB of file with 64 KiB clusters; 3 bytes each. */
#define QCOW2_CHECK_MAX_CLUSTERS   (1ull << 27)
/* L2 tables visited, counting one shared by several L1 tables each time. */
#define QCOW2_CHECK_MAX_L2_VISITS  (1ull << 24)
#define QCOW2_MAX_SNAPSHOTS        65536u
#define QCOW2_MAX_SNAPSHOT_EXTRA   1024u
#define QCOW2_MAX_BITMAP_DIR_BYTES (64u << 20)
#define QCOW2_MAX_BITMAP_TABLE     0x8000000u    /* entries */
#define QCOW2_BITMAP_ENTRY_OFFSET  0x00fffffffffffe00ull
#define QCOW2_BITMAP_ENTRY_RESERVED 0xff000000000001feull
#define QCOW2_REFT_RESERVED_MASK   0x1ffull
#define DEFAULT_MAX_MESSAGES       1000u
#define L1_CHUNK_ENTRIES           8192u

/* Who claimed a cluster first, for overlap reports. */
enum owner {
    OWN_NONE, OWN_HEADER, OWN_REFTABLE, OWN_REFBLOCK, OWN_L1, OWN_SNAP_TABLE,
    OWN_SNAP_L1, OWN_L2, OWN_DATA, OWN_COMPRESSED, OWN_BITMAP_DIR,
    OWN_BITMAP_TABLE, OWN_BITMAP_DATA,
};

static const char *const owner_names[] = {
    [OWN_NONE] = "nothing", [OWN_HEADER] = "the header",
    [OWN_REFTABLE] = "the refcount table",
    [OWN_REFBLOCK] = "a refcount block", [OWN_L1] = "the active L1 table",
    [OWN_SNAP_TABLE] = "the snapshot table",
    [OWN_SNAP_L1] = "a snapshot L1 table", [OWN_L2] = "an L2 table",
    [OWN_DATA] = "a data cluster", [OWN_COMPRESSED] = "compressed data",
    [OWN_BITMAP_DIR] = "the bitmap directory",
    [OWN_BITMAP_TABLE] = "a bitmap table",
    [OWN_BITMAP_DATA] = "a bitmap data cluster",
};

/* The stored refcount block last read, written back when dirty. */
struct rb_cache {
    uint64_t index;
    bool valid, dirty;
    uint8_t *buf;
};

struct checker {
    struct blkfile *f;
    struct qcow2_header h;
    uint64_t cs, file_size, nb_clusters;
    unsigned cb;
    bool extl2, data_file;
    uint64_t l2_entries, rb_entries;
    uint16_t *counts;          /* computed references, per cluster */
    uint8_t *owner;            /* enum owner, per cluster */
    uint64_t *reftable;        /* host order; invalid entries zeroed */
    uint64_t reftable_entries;
    struct rb_cache rb;
    uint8_t *l2buf;
    uint64_t l2_visits_left;
    uint64_t next_contiguous;  /* fragmentation, within one active L2 */
    bool counts_saturated;
    bool l2_cap_reported;
    struct qcow2_check_result *res;
    unsigned max_messages;
};


static uint64_t round_up8(uint64_t v) { return (v + 7) & ~7ull; }

/* ---- messages ---------------------------------------------------------- */

static void msg(struct checker *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void msg(struct checker *c, const char *fmt, ...)
{
    struct qcow2_check_result *res = c->res;
    char *line, **grown;
    va_list ap;
    int n;

    if (res->nb_messages >= c->max_messages) {
        res->messages_dropped++;
        return;
    }
    va_start(ap, fmt);
    n = vasprintf(&line, fmt, ap);
    va_end(ap);
    if (n < 0) {
        res->messages_dropped++;
        return;
    }
    grown = realloc(res->messages, (res->nb_messages + 1) * sizeof(*grown));
    if (!grown) {
        free(line);
        res->messages_dropped++;
        return;
    }
    res->messages = grown;
    res->messages[res->nb_messages++] = line;
}

#define CORRUPTION(c, ...) do { (c)->res->corruptions++; msg(c, __VA_ARGS__); } while (0)
#define CHECK_ERROR(c, ...) do { (c)->res->check_errors++; msg(c, __VA_ARGS__); } while (0)

/* ---- counting references -------------------------------------------------- */

static bool may_share(enum owner a, enum owner b)
{
    return a == b && (a == OWN_L2 || a == OWN_DATA || a == OWN_COMPRESSED);
}

static void count_cluster(struct checker *c, uint64_t k, enum owner kind)
{
    enum owner prev = c->owner[k];

    if (c->counts[k] == UINT16_MAX) {
        if (!c->counts_saturated)
            CHECK_ERROR(c, "ERROR cluster %llu has more than %u references; "
                        "refcounts above that are not checked",
                        (unsigned long long)k, UINT16_MAX - 1);
        c->counts_saturated = true;
    } else {
        c->counts[k]++;
    }
    if (prev == OWN_NONE)
        c->owner[k] = kind;
    else if (!may_share(prev, kind))
        CORRUPTION(c, "ERROR cluster %llu is used by both %s and %s",
                   (unsigned long long)k, owner_names[prev],
                   owner_names[kind]);
}

/* Add one reference to every cluster of [off, off + len). Returns false
 * (after reporting it) when the range lies past the end of the file. */
static bool add_ref(struct checker *c, uint64_t off, uint64_t len,
                    enum owner kind)
{
    uint64_t limit = c->nb_clusters * c->cs;

    if (len == 0)
        return true;
    if (off >= limit || len > limit - off) {
        CORRUPTION(c, "ERROR %s at offset 0x%llx (%llu bytes) lies past the "
                   "end of the file", owner_names[kind],
                   (unsigned long long)off, (unsigned long long)len);
        return false;
    }
    for (uint64_t k = off >> c->cb; k <= (off + len - 1) >> c->cb; k++)
        count_cluster(c, k, kind);
    return true;
}

/* ---- stored refcounts ------------------------------------------------------ */

static uint64_t rb_get(const uint8_t *block, uint64_t i, unsigned order)
{
    unsigned bits = 1u << order;
    uint64_t v = 0;

    if (bits >= 8) {
        for (unsigned b = 0; b < bits / 8; b++)
            v = v << 8 | block[i * (bits / 8) + b];
        return v;
    }
    unsigned per_byte = 8 / bits;
    return (block[i / per_byte] >> ((i % per_byte) * bits)) &
           ((1u << bits) - 1);
}

static void rb_set(uint8_t *block, uint64_t i, unsigned order, uint64_t v)
{
    unsigned bits = 1u << order;

    if (bits >= 8) {
        for (unsigned b = bits / 8; b-- > 0; v >>= 8)
            block[i * (bits / 8) + b] = v & 0xff;
        return;
    }
    unsigned per_byte = 8 / bits, shift = (i % per_byte) * bits;
    uint8_t mask = ((1u << bits) - 1) << shift;
    block[i / per_byte] = (block[i / per_byte] & ~mask) | ((v << shift) & mask);
}

static int rb_writeback(struct checker *c)
{
    int ret;

    if (!c->rb.valid || !c->rb.dirty)
        return 0;
    ret = blk_pwrite(c->f, c->rb.buf, c->cs, c->reftable[c->rb.index]);
    if (ret < 0) {
        CHECK_ERROR(c, "ERROR could not write refcount block %llu: %s",
                    (unsigned long long)c->rb.index, strerror(-ret));
        return ret;
    }
    c->rb.dirty = false;
    return 0;
}

/* Make refcount block `index` the cached one; false if it has none. */
static bool rb_load(struct checker *c, uint64_t index)
{
    int ret;

    if (index >= c->reftable_entries || !c->reftable[index])
        return false;
    if (c->rb.valid && c->rb.index == index)
        return true;
    if (rb_writeback(c) < 0)
        return false;
    c->rb.valid = false;
    ret = blk_pread(c->f, c->rb.buf, c->cs, c->reftable[index]);
    if (ret < 0) {
        CHECK_ERROR(c, "ERROR could not read refcount block %llu: %s",
                    (unsigned long long)index, strerror(-ret));
        c->reftable[index] = 0;
        return false;
    }
    c->rb.index = index;
    c->rb.valid = true;
    return true;
}

static uint64_t stored_refcount(struct checker *c, uint64_t cluster)
{
    if (!rb_load(c, cluster / c->rb_entries))
        return 0;
    return rb_get(c->rb.buf, cluster % c->rb_entries, c->h.refcount_order);
}

/* ---- refcount table ---------------------------------------------------------- */

static int load_reftable(struct checker *c)
{
    uint64_t bytes = (uint64_t)c->h.refcount_table_clusters * c->cs;
    int ret;

    c->reftable_entries = bytes / 8;
    c->reftable = malloc(bytes);
    if (!c->reftable)
        return -ENOMEM;
    ret = blk_pread(c->f, c->reftable, bytes, c->h.refcount_table_offset);
    if (ret < 0)
        return ret;
    for (uint64_t i = 0; i < c->reftable_entries; i++)
        c->reftable[i] = be64toh(c->reftable[i]);
    return 0;
}

/* Count the table and its blocks; forget entries that cannot be used. */
static void check_reftable(struct checker *c)
{
    (void)add_ref(c, c->h.refcount_table_offset,
                  (uint64_t)c->h.refcount_table_clusters * c->cs,
                  OWN_REFTABLE);
    for (uint64_t i = 0; i < c->reftable_entries; i++) {
        uint64_t e = c->reftable[i], off = e & QCOW2_REFT_OFFSET_MASK;

        c->reftable[i] = 0;
        if (e & QCOW2_REFT_RESERVED_MASK)
            CORRUPTION(c, "ERROR refcount table entry %llu has reserved bits "
                       "set: 0x%llx", (unsigned long long)i,
                       (unsigned long long)e);
        if (!off)
            continue;
        if (off & (c->cs - 1)) {
            CORRUPTION(c, "ERROR refcount block %llu is not cluster aligned; "
                       "refcount table entry corrupted", (unsigned long long)i);
            continue;
        }
        if ((off >> c->cb) >= c->nb_clusters) {
            CORRUPTION(c, "ERROR refcount block %llu is outside image",
                       (unsigned long long)i);
            continue;
        }
        (void)add_ref(c, off, c->cs, OWN_REFBLOCK);
        c->reftable[i] = off;
    }
}

/* ---- L1 and L2 tables -------------------------------------------------------- */

static void check_copied(struct checker *c, uint64_t entry, uint64_t off,
                         bool is_l2_table, uint64_t l1_index)
{
    uint64_t refcount = stored_refcount(c, off >> c->cb);
    bool copied = entry & QCOW2_OFLAG_COPIED;

    if ((refcount == 1) == copied)
        return;
    if (is_l2_table)
        CORRUPTION(c, "ERROR OFLAG_COPIED L2 cluster: l1_index=%llu "
                   "l1_entry=%llx refcount=%llu",
                   (unsigned long long)l1_index, (unsigned long long)entry,
                   (unsigned long long)refcount);
    else
        CORRUPTION(c, "ERROR OFLAG_COPIED data cluster: l2_entry=%llx "
                   "refcount=%llu", (unsigned long long)entry,
                   (unsigned long long)refcount);
}

static void check_compressed(struct checker *c, uint64_t e, uint64_t bitmap,
                             bool active)
{
    uint64_t host, len;

    if (e & QCOW2_OFLAG_COPIED)
        CORRUPTION(c, "ERROR: cluster %llu: copied flag must never be set "
                   "for compressed clusters",
                   (unsigned long long)((e & ~QCOW2_OFLAG_COPIED) >> c->cb));
    if (bitmap)
        CORRUPTION(c, "ERROR compressed cluster with non-zero subcluster "
                   "allocation bitmap, entry=0x%llx",
                   (unsigned long long)e);
    qcow2_compressed_loc(e, c->cb, &host, &len);
    (void)add_ref(c, host, len, OWN_COMPRESSED);
    if (active) {
        c->res->allocated_clusters++;
        c->res->compressed_clusters++;
        /* Read a sector at a time, never contiguous with a neighbour. */
        c->res->fragmented_clusters++;
    }
}

/* Subcluster bitmap rules of extended L2 entries (standard clusters). */
static void check_subclusters(struct checker *c, uint64_t e, uint64_t bitmap)
{
    uint32_t alloc = bitmap & 0xffffffffu, zero = bitmap >> 32;
    uint64_t off = e & QCOW2_L2_OFFSET_MASK;

    if (off && (alloc & zero))
        CORRUPTION(c, "ERROR offset=%llx: Allocated cluster has corrupted "
                   "subcluster allocation bitmap (alloc=0x%08x zero=0x%08x)",
                   (unsigned long long)off, alloc, zero);
    if (!off && alloc)
        CORRUPTION(c, "ERROR unallocated cluster has a non-zero subcluster "
                   "allocation bitmap, entry=0x%llx bitmap=0x%llx",
                   (unsigned long long)e, (unsigned long long)bitmap);
    if (e & QCOW2_OFLAG_ZERO)
        CORRUPTION(c, "ERROR found L2 entry with reserved bits set: %llx "
                   "(bit 0 is reserved with extended L2 entries)",
                   (unsigned long long)e);
}

static void check_standard(struct checker *c, uint64_t e, uint64_t bitmap,
                           bool active)
{
    uint64_t off = e & QCOW2_L2_OFFSET_MASK;

    if (e & QCOW2_L2_RESERVED_MASK)
        CORRUPTION(c, "ERROR found L2 entry with reserved bits set: %llx",
                   (unsigned long long)e);
    if (c->extl2)
        check_subclusters(c, e, bitmap);
    if (!off)
        return;
    if (off & (c->cs - 1)) {
        CORRUPTION(c, "ERROR offset=%llx: Cluster is not properly aligned; "
                   "L2 entry corrupted", (unsigned long long)off);
        return;
    }
    if (active) {
        c->res->allocated_clusters++;
        if (c->next_contiguous && off != c->next_contiguous)
            c->res->fragmented_clusters++;
        c->next_contiguous = off + c->cs;
    }
    /* With an external data file, guest clusters are not refcounted. */
    if (c->data_file)
        return;
    if (add_ref(c, off, c->cs, OWN_DATA) && active)
        check_copied(c, e, off, false, 0);
}

static void check_l2_table(struct checker *c, uint64_t l2_off, bool active)
{
    unsigned entry_bytes = c->extl2 ? 16 : 8;
    int ret = blk_pread(c->f, c->l2buf, c->cs, l2_off);

    if (ret < 0) {
        CHECK_ERROR(c, "ERROR: I/O error reading the L2 table at 0x%llx: %s",
                    (unsigned long long)l2_off, strerror(-ret));
        return;
    }
    /* Like qemu-img, a cluster counts as fragmented when it does not
     * follow the previous one of the same L2 table. */
    c->next_contiguous = 0;
    for (uint64_t j = 0; j < c->l2_entries; j++) {
        const uint8_t *p = c->l2buf + j * entry_bytes;
        uint64_t e = get_be64(p), bitmap = c->extl2 ? get_be64(p + 8) : 0;

        if (e & QCOW2_OFLAG_COMPRESSED)
            check_compressed(c, e, bitmap, active);
        else
            check_standard(c, e, bitmap, active);
    }
}

/* One L1 entry: its L2 table and everything the table maps. */
static void check_l1_entry(struct checker *c, uint64_t e, uint64_t index,
                           bool active)
{
    uint64_t l2_off = e & QCOW2_L1_OFFSET_MASK;

    if (e & QCOW2_L1_RESERVED_MASK)
        CORRUPTION(c, "ERROR found L1 entry with reserved bits set: %llx",
                   (unsigned long long)e);
    if (!l2_off)
        return;
    if (l2_off & (c->cs - 1)) {
        CORRUPTION(c, "ERROR l2_offset=%llx: Table is not cluster aligned; "
                   "L1 entry corrupted", (unsigned long long)l2_off);
        return;
    }
    if (!c->l2_visits_left) {
        if (!c->l2_cap_reported)
            CHECK_ERROR(c, "ERROR more than %llu L2 table references in "
                        "all L1 tables; the rest are not checked",
                        (unsigned long long)QCOW2_CHECK_MAX_L2_VISITS);
        c->l2_cap_reported = true;
        return;
    }
    c->l2_visits_left--;
    if (!add_ref(c, l2_off, c->cs, OWN_L2))
        return;
    if (active)
        check_copied(c, e, l2_off, true, index);
    check_l2_table(c, l2_off, active);
}

/* Walk an L1 table (already counted) a chunk at a time. */
static void check_l1_table(struct checker *c, uint64_t l1_off,
                           uint64_t l1_size, bool active)
{
    uint64_t *chunk = malloc(L1_CHUNK_ENTRIES * 8);

    if (!chunk) {
        CHECK_ERROR(c, "ERROR out of memory reading an L1 table");
        return;
    }
    for (uint64_t i = 0; i < l1_size; i += L1_CHUNK_ENTRIES) {
        uint64_t n = l1_size - i < L1_CHUNK_ENTRIES ? l1_size - i
                                                    : L1_CHUNK_ENTRIES;
        int ret = blk_pread(c->f, chunk, n * 8, l1_off + i * 8);
        if (ret < 0) {
            CHECK_ERROR(c, "ERROR: I/O error reading the L1 table at 0x%llx: "
                        "%s", (unsigned long long)l1_off, strerror(-ret));
            break;
        }
        for (uint64_t k = 0; k < n; k++)
            check_l1_entry(c, be64toh(chunk[k]), i + k, active);
    }
    free(chunk);
}

static void check_active_l1(struct checker *c)
{
    if (!c->h.l1_size)
        return;
    if (add_ref(c, c->h.l1_table_offset, c->h.l1_size * 8ull, OWN_L1))
        check_l1_table(c, c->h.l1_table_offset, c->h.l1_size, true);
}

/* ---- snapshots ----------------------------------------------------------------- */

struct snap_l1 {
    uint64_t offset;
    uint32_t size;
};

/* Parse one snapshot table entry at *pos; false stops the walk. */
static bool read_snapshot_entry(struct checker *c, unsigned i, uint64_t *pos,
                                struct snap_l1 *out)
{
    uint8_t fixed[40];
    uint32_t extra;

    if (blk_pread_exact(c->f, fixed, sizeof(fixed), *pos) < 0) {
        CORRUPTION(c, "ERROR snapshot table entry %u at 0x%llx lies past "
                   "the end of the file", i, (unsigned long long)*pos);
        return false;
    }
    extra = get_be32(fixed + 36);
    if (extra > QCOW2_MAX_SNAPSHOT_EXTRA) {
        CORRUPTION(c, "ERROR snapshot %u: extra data too large (%u bytes)",
                   i, extra);
        return false;
    }
    out->offset = get_be64(fixed);
    out->size = get_be32(fixed + 8);
    *pos += round_up8(40ull + extra + get_be16(fixed + 12) + get_be16(fixed + 14));
    return true;
}

static bool snapshot_l1_valid(struct checker *c, unsigned i,
                              const struct snap_l1 *s)
{
    if (s->size > QCOW2_MAX_L1_BYTES / 8 ||
        (s->size && (!s->offset || (s->offset & (c->cs - 1))))) {
        CORRUPTION(c, "ERROR snapshot %u has an invalid L1 table (offset "
                   "0x%llx, %u entries)", i, (unsigned long long)s->offset,
                   s->size);
        return false;
    }
    return true;
}

static void check_snapshots(struct checker *c)
{
    unsigned n = c->h.nb_snapshots, parsed = 0;
    uint64_t pos = c->h.snapshots_offset;
    struct snap_l1 *snaps;

    if (!n)
        return;
    if (n > QCOW2_MAX_SNAPSHOTS) {
        CORRUPTION(c, "ERROR too many snapshots (%u, at most %u)", n,
                   QCOW2_MAX_SNAPSHOTS);
        return;
    }
    snaps = calloc(n, sizeof(*snaps));
    if (!snaps) {
        CHECK_ERROR(c, "ERROR out of memory reading the snapshot table");
        return;
    }
    while (parsed < n && read_snapshot_entry(c, parsed, &pos, &snaps[parsed]))
        parsed++;
    (void)add_ref(c, c->h.snapshots_offset, pos - c->h.snapshots_offset,
                  OWN_SNAP_TABLE);
    for (unsigned i = 0; i < parsed; i++) {
        if (!snapshot_l1_valid(c, i, &snaps[i]) || !snaps[i].size)
            continue;
        if (add_ref(c, snaps[i].offset, snaps[i].size * 8ull, OWN_SNAP_L1))
            check_l1_table(c, snaps[i].offset, snaps[i].size, false);
    }
    free(snaps);
}

/* ---- bitmaps --------------------------------------------------------------------- */

static void check_bitmap_table(struct checker *c, unsigned i,
                               uint64_t off, uint32_t entries)
{
    uint64_t *chunk;

    if (!entries)
        return;
    if (!off || (off & (c->cs - 1)) || entries > QCOW2_MAX_BITMAP_TABLE) {
        CORRUPTION(c, "ERROR bitmap %u has an invalid bitmap table (offset "
                   "0x%llx, %u entries)", i, (unsigned long long)off, entries);
        return;
    }
    if (!add_ref(c, off, entries * 8ull, OWN_BITMAP_TABLE))
        return;
    chunk = malloc(L1_CHUNK_ENTRIES * 8);
    if (!chunk) {
        CHECK_ERROR(c, "ERROR out of memory reading a bitmap table");
        return;
    }
    for (uint64_t k = 0; k < entries; k += L1_CHUNK_ENTRIES) {
        uint64_t n = entries - k < L1_CHUNK_ENTRIES ? entries - k
                                                    : L1_CHUNK_ENTRIES;
        if (blk_pread(c->f, chunk, n * 8, off + k * 8) < 0) {
            CHECK_ERROR(c, "ERROR: I/O error reading bitmap table %u", i);
            break;
        }
        for (uint64_t j = 0; j < n; j++) {
            uint64_t e = be64toh(chunk[j]);
            uint64_t data = e & QCOW2_BITMAP_ENTRY_OFFSET;
            if ((e & QCOW2_BITMAP_ENTRY_RESERVED) || (data && (e & 1)))
                CORRUPTION(c, "ERROR bitmap %u: table entry %llu has "
                           "reserved bits set: %llx", i,
                           (unsigned long long)(k + j), (unsigned long long)e);
            if (data && (data & (c->cs - 1)))
                CORRUPTION(c, "ERROR bitmap %u: data cluster 0x%llx is not "
                           "cluster aligned", i, (unsigned long long)data);
            else if (data)
                (void)add_ref(c, data, c->cs, OWN_BITMAP_DATA);
        }
    }
    free(chunk);
}

static void walk_bitmap_directory(struct checker *c, const uint8_t *dir,
                                  uint64_t size)
{
    uint64_t pos = 0;
    unsigned i = 0;

    while (pos < size) {
        if (size - pos < 24) {
            CORRUPTION(c, "ERROR bitmap directory entry %u is truncated", i);
            return;
        }
        const uint8_t *e = dir + pos;
        uint64_t len = round_up8(24ull + get_be32(e + 20) + get_be16(e + 18));
        if (len > size - pos) {
            CORRUPTION(c, "ERROR bitmap directory entry %u runs past the "
                       "directory", i);
            return;
        }
        check_bitmap_table(c, i, get_be64(e), get_be32(e + 8));
        pos += len;
        i++;
    }
    if (i != c->h.bitmaps_nb)
        CORRUPTION(c, "ERROR bitmap directory has %u entries, the header "
                   "says %llu", i, (unsigned long long)c->h.bitmaps_nb);
}

static void check_bitmaps(struct checker *c)
{
    uint64_t off = c->h.bitmap_directory_offset;
    uint64_t size = c->h.bitmap_directory_size;
    uint8_t *dir;

    /* Without the autoclear bit the extension is stale and ignored. */
    if (!(c->h.autoclear_features & QCOW2_AUTOCLEAR_BITMAPS) ||
        !c->h.bitmaps_nb)
        return;
    if (!off || (off & (c->cs - 1)) || !size ||
        size > QCOW2_MAX_BITMAP_DIR_BYTES) {
        CORRUPTION(c, "ERROR invalid bitmap directory (offset 0x%llx, %llu "
                   "bytes)", (unsigned long long)off, (unsigned long long)size);
        return;
    }
    if (!add_ref(c, off, size, OWN_BITMAP_DIR))
        return;
    dir = malloc(size);
    if (!dir) {
        CHECK_ERROR(c, "ERROR out of memory reading the bitmap directory");
        return;
    }
    if (blk_pread(c->f, dir, size, off) < 0)
        CHECK_ERROR(c, "ERROR: I/O error reading the bitmap directory");
    else
        walk_bitmap_directory(c, dir, size);
    free(dir);
}

/* ---- comparing ------------------------------------------------------------------- */

/* Compare stored and computed refcounts; with repair, lower the stored
 * refcount of leaked clusters (quietly: the first pass reported them). */
static void compare_refcounts(struct checker *c, bool repair)
{
    struct qcow2_check_result *res = c->res;
    uint64_t highest = 0;
    bool any = false;

    for (uint64_t k = 0; k < c->nb_clusters; k++) {
        uint64_t stored = stored_refcount(c, k), computed = c->counts[k];

        if (stored || computed) {
            highest = k;
            any = true;
        }
        if (stored == computed)
            continue;
        if (stored < computed) {
            CORRUPTION(c, "ERROR cluster %llu refcount=%llu reference=%llu",
                       (unsigned long long)k, (unsigned long long)stored,
                       (unsigned long long)computed);
        } else if (repair) {
            rb_set(c->rb.buf, k % c->rb_entries, c->h.refcount_order,
                   computed);
            c->rb.dirty = true;
            res->leaks_fixed++;
        } else {
            res->leaks++;
            msg(c, "Leaked cluster %llu refcount=%llu reference=%llu",
                (unsigned long long)k, (unsigned long long)stored,
                (unsigned long long)computed);
        }
    }
    res->image_end_offset = any ? (highest + 1) * c->cs : 0;
}

/* ---- setup and driver --------------------------------------------------------------- */

static int checker_open(struct checker *c, const char *path, bool writable,
                        struct sd_error *err)
{
    int ret = blk_open(&c->f, path, writable ? BLK_WRITABLE : 0, err);

    if (ret < 0)
        return ret;
    ret = qcow2_header_read(c->f, &c->h, err);
    if (ret < 0)
        return ret;
    ret = blk_get_size(c->f, &c->file_size);
    if (ret < 0)
        return sd_error_set(err, ret, "could not get the size of '%s'", path);
    c->cb = c->h.cluster_bits;
    c->cs = 1ull << c->cb;
    c->nb_clusters = (c->file_size + c->cs - 1) >> c->cb;
    if (c->nb_clusters > QCOW2_CHECK_MAX_CLUSTERS)
        return sd_error_set(err, -EFBIG, "'%s' has %llu clusters; check "
                            "handles at most %llu", path,
                            (unsigned long long)c->nb_clusters,
                            (unsigned long long)QCOW2_CHECK_MAX_CLUSTERS);
    c->extl2 = c->h.incompatible_features & QCOW2_INCOMPAT_EXTL2;
    c->data_file = c->h.incompatible_features & QCOW2_INCOMPAT_DATA_FILE;
    c->l2_entries = c->cs / (c->extl2 ? 16 : 8);
    c->rb_entries = (c->cs * 8) >> c->h.refcount_order;
    c->l2_visits_left = QCOW2_CHECK_MAX_L2_VISITS;
    return 0;
}

static int checker_alloc(struct checker *c, struct sd_error *err)
{
    int ret;

    c->counts = calloc(c->nb_clusters ? c->nb_clusters : 1, sizeof(uint16_t));
    c->owner = calloc(c->nb_clusters ? c->nb_clusters : 1, 1);
    c->rb.buf = malloc(c->cs);
    c->l2buf = malloc(c->cs);
    if (!c->counts || !c->owner || !c->rb.buf || !c->l2buf)
        return sd_error_set(err, -ENOMEM, "out of memory for %llu clusters",
                            (unsigned long long)c->nb_clusters);
    ret = load_reftable(c);
    if (ret < 0)
        return sd_error_set(err, ret, "could not read the refcount table: %s",
                            strerror(-ret));
    return 0;
}

static void checker_close(struct checker *c)
{
    blk_close(c->f);
    qcow2_header_free(&c->h);
    free(c->counts);
    free(c->owner);
    free(c->reftable);
    free(c->rb.buf);
    free(c->l2buf);
}

/* Count every reference the metadata makes. */
static void count_references(struct checker *c)
{
    check_reftable(c);
    (void)add_ref(c, 0, c->cs, OWN_HEADER);
    check_active_l1(c);
    check_snapshots(c);
    check_bitmaps(c);
}

static void init_result(struct checker *c, struct qcow2_check_result *res,
                        const struct qcow2_check_opts *opts)
{
    c->res = res;
    c->max_messages = opts && opts->max_messages ? opts->max_messages
                                                 : DEFAULT_MAX_MESSAGES;
    res->total_clusters = (c->h.size + c->cs - 1) >> c->cb;
    res->dirty = c->h.incompatible_features & QCOW2_INCOMPAT_DIRTY;
    res->corrupt_bit = c->h.incompatible_features & QCOW2_INCOMPAT_CORRUPT;
}

/* One full pass. With repair, leaks are fixed in place and synced. */
static int check_pass(const char *path, const struct qcow2_check_opts *opts,
                      bool repair, struct qcow2_check_result *res,
                      struct sd_error *err)
{
    struct checker c;
    int ret;

    memset(&c, 0, sizeof(c));
    ret = checker_open(&c, path, repair, err);
    if (ret == 0)
        ret = checker_alloc(&c, err);
    if (ret < 0)
        goto out_close;
    init_result(&c, res, opts);
    count_references(&c);
    compare_refcounts(&c, repair);
    if (repair) {
        ret = rb_writeback(&c);
        if (ret == 0)
            ret = blk_flush(c.f);
        if (ret < 0)
            ret = sd_error_set(err, ret, "could not write the repaired "
                               "refcounts: %s", strerror(-ret));
    }
out_close:
    checker_close(&c);
    return ret;
}

/* Take the counts of the double check; keep the first pass's messages. */
static void merge_recheck(struct qcow2_check_result *res,
                          struct qcow2_check_result *again)
{
    char **grown = realloc(res->messages, (res->nb_messages +
                                           again->nb_messages + 1) *
                                          sizeof(*grown));

    res->recheck_first_message = res->nb_messages;
    if (grown) {
        res->messages = grown;
        if (again->nb_messages)
            memcpy(res->messages + res->nb_messages, again->messages,
                   again->nb_messages * sizeof(*grown));
        res->nb_messages += again->nb_messages;
        again->nb_messages = 0;
    }
    res->messages_dropped += again->messages_dropped + again->nb_messages;
    res->corruptions = again->corruptions;
    res->leaks = again->leaks;
    res->check_errors = again->check_errors;
    res->image_end_offset = again->image_end_offset;
    res->allocated_clusters = again->allocated_clusters;
    res->fragmented_clusters = again->fragmented_clusters;
    res->compressed_clusters = again->compressed_clusters;
    res->repaired = true;
    qcow2_check_result_free(again);
}

/* The first pass's "Leaked cluster" lines read "Repairing cluster" once
 * the repair is under way, as qemu-img prints them. */
static void relabel_leaks(struct qcow2_check_result *res)
{
    static const char leaked[] = "Leaked ", repairing[] = "Repairing ";

    for (size_t i = 0; i < res->nb_messages; i++) {
        char *line = res->messages[i], *relabeled;
        if (strncmp(line, leaked, strlen(leaked)) != 0 ||
            asprintf(&relabeled, "%s%s", repairing,
                     line + strlen(leaked)) < 0)
            continue;
        free(line);
        res->messages[i] = relabeled;
    }
}

static int repair_leaks(const char *path, const struct qcow2_check_opts *opts,
                        struct qcow2_check_result *res, struct sd_error *err)
{
    struct qcow2_check_result fix, again;
    int ret;

    memset(&fix, 0, sizeof(fix));
    memset(&again, 0, sizeof(again));
    relabel_leaks(res);
    ret = check_pass(path, opts, true, &fix, err);
    res->leaks_fixed = fix.leaks_fixed;
    qcow2_check_result_free(&fix);
    if (ret < 0)
        return ret;
    ret = check_pass(path, opts, false, &again, err);
    if (ret < 0) {
        qcow2_check_result_free(&again);
        return ret;
    }
    merge_recheck(res, &again);
    return 0;
}

int qcow2_check(const char *path, const struct qcow2_check_opts *opts,
                struct qcow2_check_result *res, struct sd_error *err)
{
    int ret;

    sd_error_clear(err);
    memset(res, 0, sizeof(*res));
    ret = check_pass(path, opts, false, res, err);
    if (ret < 0 || !opts || !opts->repair_leaks || !res->leaks)
        return ret;
    if (res->corruptions || res->check_errors) {
        struct checker c = { .res = res, .max_messages = UINT32_MAX };
        msg(&c, "Leaks were not repaired: the image has corruptions, and "
            "repair of corruptions is not supported");
        return 0;
    }
    return repair_leaks(path, opts, res, err);
}

void qcow2_check_result_free(struct qcow2_check_result *res)
{
    if (!res)
        return;
    for (size_t i = 0; i < res->nb_messages; i++)
        free(res->messages[i]);
    free(res->messages);
    res->messages = NULL;
    res->nb_messages = 0;
}
