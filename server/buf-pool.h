/* SPDX-License-Identifier: MIT */
/*
 * Request buffers kept for reuse, one pool per worker thread.
 *
 * Payload and read buffers are the size of a request (4 KiB to a few
 * MiB) and live for one request. From malloc, buffers of that size come
 * and go as fresh mappings or trimmed heap, so every request faults its
 * pages in again, and on virtual machines a page fault costs more than
 * copying the page: a profile of sequential reads had a third of the
 * server's CPU in faults on new buffers. A pool keeps them mapped.
 *
 * Buffers are 4 KiB aligned (O_DIRECT-safe) and grouped in power-of-two
 * classes from 4 KiB to BUF_POOL_MAX_CLASS_BYTES; larger ones go straight
 * to the allocator. At most `cap` bytes of free buffers are kept; the
 * rest are freed. Not thread-safe: a pool belongs to one worker, and a
 * buffer goes back to the pool it came from.
 *
 * The classes of bulk transfers (BUF_POOL_SLAB_MIN_BYTES to
 * BUF_POOL_SLAB_BYTES) are carved from 2 MiB slabs of an address range
 * the pool reserves and marks for transparent huge pages. One huge page
 * then backs several buffers: a receive into it misses the TLB far less,
 * and an O_DIRECT write pins and releases one folio where it took 64
 * pages for 256 KiB (sequential writes: about a fifth less server CPU,
 * bench/README.md). A slab's memory goes back to the system only whole,
 * when all its buffers are free and the pool keeps more than it may.
 * It may keep as much as the most that was out at once since the last
 * buf_pool_trim() (or the cap, if more): a working set larger than the
 * cap (four connections with 64 reads of 256 KiB each in flight) would
 * otherwise give a slab back and fault a new one in, zeroing 2 MiB,
 * every few requests. Its owner calls buf_pool_trim() now and then
 * (worker.c: a second after the pool went over its cap) so that what a
 * burst left behind goes back. A pool may keep up to a slab per class
 * beyond what it may. If the range cannot be reserved, or is full,
 * buffers come from the allocator as before.
 */
#ifndef SENDENSE_SERVER_BUF_POOL_H
#define SENDENSE_SERVER_BUF_POOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum {
    BUF_POOL_MIN_SHIFT = 12,
    BUF_POOL_CLASSES = 11,      /* 4 KiB .. 4 MiB */
};
#define BUF_POOL_MAX_CLASS_BYTES \
    ((size_t)1 << (BUF_POOL_MIN_SHIFT + BUF_POOL_CLASSES - 1))

#define BUF_POOL_SLAB_BYTES ((size_t)2 << 20)
#define BUF_POOL_SLAB_MIN_BYTES ((size_t)64 << 10)
/* Address space only: memory is taken a slab at a time as it is used. */
#define BUF_POOL_SPAN_BYTES ((uint64_t)1 << 30)

struct buf_slab;

struct buf_pool {
    void *free[BUF_POOL_CLASSES];   /* each buffer's first word: the next */
    uint64_t cached_bytes;
    uint64_t cap;
    uint64_t out_bytes;             /* handed out, not yet back */
    uint64_t peak_out_bytes;        /* most out at once since last trim */
    uint64_t hits, misses;          /* for tests and stats */
    /* Slabs: reserved at the first need, span_bytes of address space
     * (tests may shrink it before that). */
    uint64_t span_bytes;
    char *span;
    struct buf_slab *slabs;         /* one per BUF_POOL_SLAB_BYTES of span */
    uint64_t slab_bytes;            /* memory in carved slabs */
    bool span_failed;               /* reserving it failed: use malloc */
};

void buf_pool_init(struct buf_pool *p, uint64_t cap);
/* A buffer of at least len bytes (len 0 counts as 1), or NULL. */
void *buf_pool_get(struct buf_pool *p, size_t len);
/* Give back a buffer got with the same len; NULL is ignored. */
void buf_pool_put(struct buf_pool *p, void *buf, size_t len);
/* Forget the peak (from now on the pool may keep what is out now, or the
 * cap) and give back the free slabs beyond that. True while the pool
 * still keeps more than its cap: call it again later. */
bool buf_pool_trim(struct buf_pool *p);
static inline bool buf_pool_over_cap(const struct buf_pool *p)
{
    return p->cached_bytes > p->cap;
}
/* Free every cached buffer. */
void buf_pool_destroy(struct buf_pool *p);

#endif
