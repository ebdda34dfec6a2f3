/* SPDX-License-Identifier: MIT */
/*
 * The table cache for L2 tables and refcount blocks.
 *
 * Notes on the design.
 *
 * A cache entry holds one table in its on-disk byte order. Entries are
 * write-through: a change is made in memory (gen++), and the coroutine
 * that made it calls qcow2_cache_write_through() before its request
 * completes. Concurrent changers group-commit: whoever finds a write in
 * progress waits for it, then writes what is still dirty. The dirty range
 * is copied to a bounce buffer before the write so that the kernel never
 * sees a half-updated 16-byte extended L2 entry.
 *
 * An entry is evicted only when no coroutine uses it and it is clean. When
 * every slot is busy the cache grows; the number of busy slots is bounded
 * by the number of requests in flight.
 */
#include "config.h"

#include "qcow2-internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Coroutine stacks are 256 KiB: a 4 KiB bounce buffer fits easily. */
enum { CACHE_STACK_BOUNCE = 4096 };

int qcow2_cache_init(struct qcow2_cache *c, unsigned cap, uint32_t table_size,
                     const char *what)
{
    memset(c, 0, sizeof(*c));
    c->entries = calloc(cap, sizeof(*c->entries));
    if (!c->entries)
        return -ENOMEM;
    c->cap = cap;
    c->table_size = table_size;
    c->what = what;
    return 0;
}

void qcow2_cache_destroy(struct qcow2_cache *c)
{
    for (unsigned i = 0; i < c->nr; i++)
        free(c->entries[i].data);
    free(c->entries);
    memset(c, 0, sizeof(*c));
}

static struct qcow2_cache_entry *cache_find(struct qcow2_cache *c,
                                            uint64_t offset)
{
    for (unsigned i = 0; i < c->nr; i++)
        if (c->entries[i].offset == offset)
            return &c->entries[i];
    return NULL;
}

static bool evictable(const struct qcow2_cache_entry *e)
{
    return !e->users && !e->loading && !e->writing && e->gen == e->disk_gen &&
           co_queue_empty(&e->waiters);
}

/* A free slot: unused, or the least recently used clean one. Entries are
 * addressed by pointer while in use, so the array never moves: when it is
 * full and everything is busy we fail with -EBUSY and the caller waits. */
static struct qcow2_cache_entry *cache_slot(struct qcow2_cache *c)
{
    struct qcow2_cache_entry *victim = NULL;

    if (c->nr < c->cap) {
        struct qcow2_cache_entry *e = &c->entries[c->nr];
        e->data = aligned_alloc(4096, c->table_size < 4096 ? 4096 : c->table_size);
        if (!e->data)
            return NULL;
        c->nr++;
        e->offset = 0;
        return e;
    }
    for (unsigned i = 0; i < c->nr; i++) {
        struct qcow2_cache_entry *e = &c->entries[i];
        if (e->offset == 0 && evictable(e))
            return e;
        if (evictable(e) && (!victim || e->last_use < victim->last_use))
            victim = e;
    }
    return victim;
}

static int cache_load(struct sd_img *img, struct qcow2_cache *c,
                      struct qcow2_cache_entry *e, bool fresh)
{
    int ret = 0;

    if (fresh) {
        memset(e->data, 0, c->table_size);
        return 0;
    }
    /* A table read from the file must not sit on other metadata, or
     * writing it back later would destroy that. */
    if (qcow2_overlaps_metadata(img, e->offset, c->table_size, e->offset))
        return sd_img_set_corrupt(img, "%s at 0x%llx overlaps other metadata",
                                  c->what, (unsigned long long)e->offset);
    e->loading = true;
    ret = blk_pread_exact(img->file, e->data, c->table_size, e->offset);
    e->loading = false;
    co_queue_wake_all(&e->waiters);
    return ret;
}

int qcow2_cache_get(struct sd_img *img, struct qcow2_cache *c,
                    uint64_t offset, bool fresh,
                    struct qcow2_cache_entry **out)
{
    struct qcow2_cache_entry *e;
    int ret;

    for (;;) {
        e = cache_find(c, offset);
        if (e) {
            e->users++;
            while (e->loading)
                co_queue_wait(&e->waiters);
            if (e->offset != offset) {       /* load failed and slot reused */
                e->users--;
                continue;
            }
            if (fresh)
                memset(e->data, 0, c->table_size);
            e->last_use = ++c->clock;
            *out = e;
            return 0;
        }
        e = cache_slot(c);
        if (e)
            break;
        if (!co_in_coroutine())
            return -ENOMEM;
        co_queue_wait(&c->full_waiters);
    }
    e->offset = offset;
    e->users = 1;
    e->gen = e->disk_gen = 0;
    e->dirty_lo = UINT32_MAX;
    e->dirty_hi = 0;
    e->last_use = ++c->clock;
    ret = cache_load(img, c, e, fresh);
    if (ret < 0) {
        e->offset = 0;
        e->users--;
        return ret;
    }
    *out = e;
    return 0;
}

void qcow2_cache_put(struct qcow2_cache *c, struct qcow2_cache_entry *e)
{
    e->users--;
    if (!e->users)
        co_queue_wake_one(&c->full_waiters);
}

void qcow2_cache_mark_dirty(struct qcow2_cache_entry *e, uint32_t lo,
                            uint32_t hi)
{
    lo &= ~511u;
    hi = (hi + 511u) & ~511u;
    if (lo < e->dirty_lo)
        e->dirty_lo = lo;
    if (hi > e->dirty_hi)
        e->dirty_hi = hi;
    e->gen++;
}

static int cache_write_once(struct sd_img *img, struct qcow2_cache *c,
                            struct qcow2_cache_entry *e)
{
    uint32_t lo = e->dirty_lo, hi = e->dirty_hi;
    uint64_t snap = e->gen;
    uint8_t small[CACHE_STACK_BOUNCE], *bounce;
    int ret;

    if (hi > c->table_size)
        hi = c->table_size;
    if (lo >= hi) {
        e->disk_gen = snap;
        return 0;
    }
    if (qcow2_overlaps_fixed_metadata(img, e->offset + lo, hi - lo))
        return sd_img_set_corrupt(img, "preventing a write of a %s at 0x%llx "
                                  "that overlaps other metadata", c->what,
                                  (unsigned long long)e->offset);
    /* The usual write-through is one or two sectors of a table. */
    bounce = hi - lo <= sizeof(small) ? small : malloc(hi - lo);
    if (!bounce)
        return -ENOMEM;
    memcpy(bounce, e->data + lo, hi - lo);
    e->dirty_lo = UINT32_MAX;
    e->dirty_hi = 0;
    e->writing = true;
    ret = blk_pwrite(img->file, bounce, hi - lo, e->offset + lo);
    e->writing = false;
    if (bounce != small)
        free(bounce);
    if (ret < 0) {
        /* Keep the range dirty so a later write retries it. */
        if (lo < e->dirty_lo)
            e->dirty_lo = lo;
        if (hi > e->dirty_hi)
            e->dirty_hi = hi;
    } else if (snap > e->disk_gen) {
        e->disk_gen = snap;
    }
    co_queue_wake_all(&e->waiters);
    return ret;
}

int qcow2_cache_write_through(struct sd_img *img, struct qcow2_cache *c,
                              struct qcow2_cache_entry *e)
{
    uint64_t want = e->gen;

    while (e->disk_gen < want) {
        if (e->writing) {
            co_queue_wait(&e->waiters);
            continue;
        }
        int ret = cache_write_once(img, c, e);
        if (ret < 0)
            return ret;
    }
    return 0;
}

void qcow2_cache_discard(struct qcow2_cache *c, uint64_t offset)
{
    struct qcow2_cache_entry *e = cache_find(c, offset);

    if (e && !e->users && !e->writing && !e->loading) {
        e->offset = 0;
        e->gen = e->disk_gen = 0;
    }
}
