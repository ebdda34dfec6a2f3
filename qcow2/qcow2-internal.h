/* SPDX-License-Identifier: MIT */
/*
 * The QCOW2 backend's private state and the map of its files.
 *
 * Design notes (see docs/QCOW2-NOTES.md for the long version):
 *
 * - Everything runs in coroutines on the image's ring; data structures
 *   are touched by one thread only, so "atomic" means "no yield between".
 * - Metadata is write-through: an L2 or refcount change is written to the
 *   file before the request that made it completes, so a killed process
 *   loses nothing it acknowledged.
 * - Dependency order for power loss: new clusters get their refcounts
 *   written and synced (a "reservation") before any L2 entry points to
 *   them; a new L2 table is written and synced before the L1 entry; a
 *   cluster is freed (refcount decremented) only at a flush, after the L2
 *   change that dropped it is durable.
 * - Clusters being allocated for a guest range are recorded as in-flight
 *   allocations; a request that needs the same guest cluster waits, so
 *   concurrent writes never allocate a cluster twice.
 *
 * The code is organised as:
 *   qcow2.c          open, close, info, the backend ops table
 *   qcow2-cache.c    L2 table and refcount block cache, write-through
 *   qcow2-refcount.c refcounts, reservations, frees, reftable growth
 *   qcow2-map.c      guest offset -> subcluster type and host offset
 *   qcow2-io.c       read, write, zero, discard, block status
 *   qcow2-alloc.c    allocating writes: in-flight ranges, COW, L2 updates
 */
#ifndef SENDENSE_QCOW2_INTERNAL_H
#define SENDENSE_QCOW2_INTERNAL_H

#include "image-internal.h"
#include "qcow2-format.h"
#include "common/coroutine.h"

/* -- cache ------------------------------------------------------------ */

struct qcow2_cache_entry {
    uint64_t offset;          /* host offset of the table; 0 = free slot */
    uint8_t *data;            /* cluster_size bytes, on-disk byte order */
    unsigned users;
    uint64_t last_use;
    bool loading;
    bool writing;
    uint64_t gen;             /* bumped by every change in memory */
    uint64_t disk_gen;        /* last gen known to be in the file */
    uint32_t dirty_lo, dirty_hi;  /* byte range changed since last write */
    struct co_queue waiters;
};

struct qcow2_cache {
    struct qcow2_cache_entry *entries;
    unsigned nr, cap;
    uint64_t clock;
    uint32_t table_size;
    const char *what;         /* "L2 table" or "refcount block" */
    struct co_queue full_waiters;  /* wait here when every slot is busy */
};

/* -- in-flight allocations ------------------------------------------- */

struct qcow2_inflight {
    uint64_t guest_start, guest_end;     /* cluster-aligned byte range */
    struct co_queue waiters;
    struct qcow2_inflight *next;
};

struct qcow2_free_range {
    uint64_t offset, bytes;
};

/* Host clusters that hold L2 tables or refcount blocks, so that a data
 * write can be checked against them in constant time. */
struct qcow2_meta_set {
    uint64_t *slots;          /* cluster index + 1; 0 = empty */
    size_t cap, nr;           /* cap is a power of two */
};

struct qcow2_state {
    struct qcow2_header h;
    uint64_t cluster_size;
    unsigned cluster_bits;
    bool ext_l2;
    unsigned l2_entry_bytes;      /* 8 or 16 */
    unsigned l2_bits;             /* log2(entries per L2 table) */
    uint64_t l2_entries;
    unsigned subc_per_cluster;    /* 1, or 32 with extended L2 */
    uint64_t subc_size;
    uint64_t *l1;                 /* host byte order */
    uint32_t l1_size;
    uint64_t *reftable;           /* host byte order */
    uint64_t reftable_entries;
    unsigned refcount_bits;
    uint64_t refblock_entries;
    uint64_t refcount_max;

    struct qcow2_cache l2_cache;
    struct qcow2_cache rb_cache;
    struct qcow2_meta_set meta;

    struct co_mutex alloc_lock;   /* reservations, refcounts, L1 changes */
    uint64_t file_end;            /* first never-used host byte */
    uint64_t resv_next, resv_end; /* reserved clusters, refcount 1 durable;
                                   * never written before they are handed
                                   * out (freed clusters are not reused),
                                   * so on a file they read as zeros */

    struct qcow2_free_range *pending_free;  /* freed at the next flush */
    size_t nr_pending_free, cap_pending_free;

    bool reftable_moving;         /* growing: entries go to memory only */

    struct qcow2_inflight *inflight;
    bool header_dirty_bits_set;   /* we set in_use on bitmaps */
    uint8_t *zero_cluster;        /* cluster_size zeros, for COW fills */
};

static inline struct qcow2_state *qcow2_state(struct sd_img *img)
{
    return img->priv;
}

/* Subcluster (or, without extended L2, cluster) types. */
enum qcow2_subc_type {
    QC_UNALLOC,          /* reads from the backing chain */
    QC_ZERO,             /* reads as zeros; may hold a host cluster */
    QC_NORMAL,           /* data at host offset */
    QC_COMPRESSED,       /* whole cluster compressed */
};

struct qcow2_map {
    enum qcow2_subc_type type;
    uint64_t bytes;           /* length of the run from the guest offset */
    uint64_t host_off;        /* NORMAL: host byte of the guest offset */
    uint64_t l2_entry;        /* raw first word (compressed descriptor) */
    bool copied;              /* NORMAL: refcount is exactly one */
};

/* qcow2-cache.c */
int qcow2_cache_init(struct qcow2_cache *c, unsigned cap, uint32_t table_size,
                     const char *what);
void qcow2_cache_destroy(struct qcow2_cache *c);
/* Get the table at offset (reading it unless fresh: then zero-filled). */
int qcow2_cache_get(struct sd_img *img, struct qcow2_cache *c,
                    uint64_t offset, bool fresh,
                    struct qcow2_cache_entry **out);
void qcow2_cache_put(struct qcow2_cache *c, struct qcow2_cache_entry *e);
void qcow2_cache_mark_dirty(struct qcow2_cache_entry *e, uint32_t lo,
                            uint32_t hi);
/* Write the entry's changes to the file; returns once everything changed
 * before the call is in the file (page cache). */
int qcow2_cache_write_through(struct sd_img *img, struct qcow2_cache *c,
                              struct qcow2_cache_entry *e);
/* Forget a table (its cluster is being freed or moved). */
void qcow2_cache_discard(struct qcow2_cache *c, uint64_t offset);

/* qcow2-refcount.c */
int qcow2_refcount_init(struct sd_img *img, struct sd_error *err);
int qcow2_get_refcount(struct sd_img *img, uint64_t host_off, uint64_t *rc);
int qcow2_find_image_end(struct sd_img *img);
/* Hand out up to nclusters contiguous clusters whose refcount is already
 * durably 1. Caller holds alloc_lock. *got >= 1 on success. */
int qcow2_alloc_clusters(struct sd_img *img, uint64_t nclusters,
                         uint64_t *host_off, uint64_t *got);
/* Drop one reference to each cluster of a host range at the next flush.
 * Call it only once the change that dropped the range is in the file
 * (written, not just made in the cache): the next flush syncs and then
 * frees, and must not free what an entry still on disk points to. */
int qcow2_free_later(struct sd_img *img, uint64_t host_off, uint64_t bytes);
/* The same for what an old L2 entry held: a normal cluster, or every
 * cluster a compressed one's bytes touch. An entry with no host cluster
 * is ignored. */
int qcow2_free_entry_later(struct sd_img *img, uint64_t l2_entry);
/* After a successful sync: drop the references of frees recorded before
 * it. Consumes the ranges (they are advanced as they are applied). */
int qcow2_apply_frees(struct sd_img *img, struct qcow2_free_range *r,
                      size_t nr);
/* On close: give back reserved clusters never used. */
int qcow2_release_reservation(struct sd_img *img);
/* Does [off, off+len) overlap metadata? The fixed check covers header,
 * L1 and refcount table (cheap); the full one every table as well. */
bool qcow2_overlaps_fixed_metadata(struct sd_img *img, uint64_t off,
                                   uint64_t len);
bool qcow2_overlaps_metadata(struct sd_img *img, uint64_t off, uint64_t len,
                             uint64_t allowed_table);
/* The set of L2 table and refcount block clusters. */
int qcow2_meta_add(struct qcow2_state *s, uint64_t host_off);
bool qcow2_meta_has(const struct qcow2_state *s, uint64_t host_off);
int qcow2_meta_build(struct sd_img *img);
void qcow2_meta_free(struct qcow2_state *s);
/* Does a data write to [off, off+len) hit any metadata? */
bool qcow2_data_overlaps_metadata(struct sd_img *img, uint64_t off,
                                  uint64_t len);

/* qcow2-map.c */
int qcow2_get_map(struct sd_img *img, uint64_t guest_off, uint64_t max_bytes,
                  struct qcow2_map *m);
uint64_t qcow2_l2_get_entry(const struct qcow2_state *s, const uint8_t *t,
                            uint64_t i);
uint64_t qcow2_l2_get_bitmap(const struct qcow2_state *s, const uint8_t *t,
                             uint64_t i);
void qcow2_l2_set(const struct qcow2_state *s, uint8_t *t, uint64_t i,
                  uint64_t entry, uint64_t bitmap);
/* Load (or create, when allocate is true) the L2 table of a guest offset.
 * Returns 0 and *e == NULL when the table does not exist and allocate is
 * false. Allocation needs alloc_lock held. */
int qcow2_get_l2(struct sd_img *img, uint64_t guest_off, bool allocate,
                 struct qcow2_cache_entry **e);

/* qcow2-alloc.c */
int qcow2_co_write(struct sd_img *img, const void *buf, uint64_t off,
                   uint64_t len, unsigned flags);
/* Set the L2 state of whole subclusters [off, off+len): zero or unmap. */
int qcow2_co_zero_subclusters(struct sd_img *img, uint64_t off, uint64_t len,
                              bool unmap, bool discard);

int qcow2_read_compressed(struct sd_img *img, uint64_t entry, uint8_t *dst);

/* qcow2-io.c */
int qcow2_co_read(struct sd_img *img, void *buf, uint64_t off, uint64_t len);
int qcow2_co_zero(struct sd_img *img, uint64_t off, uint64_t len,
                  unsigned flags);
int qcow2_co_discard(struct sd_img *img, uint64_t off, uint64_t len);
int qcow2_co_flush(struct sd_img *img);
int qcow2_co_block_status(struct sd_img *img, uint64_t off, uint64_t len,
                          struct sd_extent *ext);

/* qcow2-create.c / qcow2-check.c (see qcow2-check.h) */

#endif
