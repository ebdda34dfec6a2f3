/* SPDX-License-Identifier: MIT */
#include "config.h"

#include "server/buf-pool.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

enum { BUF_ALIGN = 4096, SLAB_UNCARVED = -1 };

/* What a slab of the span holds: buffers of one class, or nothing (its
 * pages then hold no memory). */
struct buf_slab {
    int8_t cls;
    uint16_t n_free;
};

/* The class of a length, or -1 when it is too big to pool. */
static int class_of(size_t len)
{
    size_t size = (size_t)1 << BUF_POOL_MIN_SHIFT;

    for (int c = 0; c < BUF_POOL_CLASSES; c++, size <<= 1)
        if (len <= size)
            return c;
    return -1;
}

static size_t class_bytes(int c)
{
    return (size_t)1 << (BUF_POOL_MIN_SHIFT + c);
}

static bool slab_class(int c)
{
    return c >= 0 && class_bytes(c) >= BUF_POOL_SLAB_MIN_BYTES &&
           class_bytes(c) <= BUF_POOL_SLAB_BYTES;
}

static size_t n_slabs(const struct buf_pool *p)
{
    return p->span_bytes / BUF_POOL_SLAB_BYTES;
}

static uint16_t per_slab(int c)
{
    return (uint16_t)(BUF_POOL_SLAB_BYTES / class_bytes(c));
}

static void push(struct buf_pool *p, int c, void *buf)
{
    memcpy(buf, &p->free[c], sizeof(void *));
    p->free[c] = buf;
}

static void *pop(struct buf_pool *p, int c)
{
    void *buf = p->free[c];

    if (buf)
        memcpy(&p->free[c], buf, sizeof(void *));
    return buf;
}

/* The span is one private anonymous mapping, 2 MiB aligned so that each
 * slab can be one huge page. MAP_NORESERVE: only what is touched counts
 * against memory. */
static bool reserve_span(struct buf_pool *p)
{
    size_t len = p->span_bytes + BUF_POOL_SLAB_BYTES;
    char *m, *start;

    if (p->span || p->span_failed)
        return p->span != NULL;
    p->span_failed = true;
    if (n_slabs(p) == 0)
        return false;
    p->slabs = malloc(n_slabs(p) * sizeof(*p->slabs));
    if (!p->slabs)
        return false;
    m = mmap(NULL, len, PROT_READ | PROT_WRITE,
             MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED) {
        free(p->slabs);
        p->slabs = NULL;
        return false;
    }
    start = (char *)(((uintptr_t)m + BUF_POOL_SLAB_BYTES - 1) &
                     ~(uintptr_t)(BUF_POOL_SLAB_BYTES - 1));
    /* Trim to the aligned span; the ends are whole pages. */
    if (start > m)
        munmap(m, (size_t)(start - m));
    if (start + p->span_bytes < m + len)
        munmap(start + p->span_bytes,
               (size_t)(m + len - (start + p->span_bytes)));
    /* Advice only: without transparent huge pages the slabs still work,
     * in small pages. */
    (void)madvise(start, p->span_bytes, MADV_HUGEPAGE);
    for (size_t i = 0; i < n_slabs(p); i++)
        p->slabs[i] = (struct buf_slab){ .cls = SLAB_UNCARVED };
    p->span = start;
    p->span_failed = false;
    return true;
}

/* The slab a buffer lies in, or -1 if it came from the allocator. */
static long slab_of(const struct buf_pool *p, const void *buf)
{
    const char *b = buf;

    if (!p->span || b < p->span || b >= p->span + p->span_bytes)
        return -1;
    return (long)((size_t)(b - p->span) / BUF_POOL_SLAB_BYTES);
}

/* Carve a free slab into buffers of class c: one for the caller, the
 * others onto the free list. NULL when the span is full. */
static void *carve(struct buf_pool *p, int c)
{
    size_t size = class_bytes(c);

    for (size_t i = 0; i < n_slabs(p); i++) {
        char *base = p->span + i * BUF_POOL_SLAB_BYTES;

        if (p->slabs[i].cls != SLAB_UNCARVED)
            continue;
        p->slabs[i].cls = (int8_t)c;
        p->slabs[i].n_free = (uint16_t)(per_slab(c) - 1);
        /* Pushed from the end so that buffers go out in address order. */
        for (size_t off = BUF_POOL_SLAB_BYTES - size; off > 0; off -= size)
            push(p, c, base + off);
        p->cached_bytes += (uint64_t)(per_slab(c) - 1) * size;
        p->slab_bytes += BUF_POOL_SLAB_BYTES;
        return base;
    }
    return NULL;
}

/* Every buffer of slab i is free: take them off the free list and give
 * the memory back (the addresses stay reserved). */
static void release_slab(struct buf_pool *p, size_t i)
{
    int c = p->slabs[i].cls;
    char *base = p->span + i * BUF_POOL_SLAB_BYTES;
    void **link = &p->free[c];

    while (*link) {
        char *buf = *link;
        if (buf >= base && buf < base + BUF_POOL_SLAB_BYTES)
            memcpy(link, buf, sizeof(void *));
        else
            link = (void **)buf;
    }
    p->cached_bytes -= BUF_POOL_SLAB_BYTES;
    p->slab_bytes -= BUF_POOL_SLAB_BYTES;
    p->slabs[i] = (struct buf_slab){ .cls = SLAB_UNCARVED };
    /* Cannot fail on a private anonymous range of ours; if it did, the
     * memory would simply stay until reused. */
    (void)madvise(base, BUF_POOL_SLAB_BYTES, MADV_DONTNEED);
}

/* What the pool may keep free now (see buf-pool.h). */
static uint64_t keep_limit(const struct buf_pool *p)
{
    return p->peak_out_bytes > p->cap ? p->peak_out_bytes : p->cap;
}

static void count_out(struct buf_pool *p, int c)
{
    p->out_bytes += class_bytes(c);
    if (p->out_bytes > p->peak_out_bytes)
        p->peak_out_bytes = p->out_bytes;
}

void buf_pool_init(struct buf_pool *p, uint64_t cap)
{
    memset(p, 0, sizeof(*p));
    p->cap = cap;
    p->span_bytes = BUF_POOL_SPAN_BYTES;
}

void *buf_pool_get(struct buf_pool *p, size_t len)
{
    int c = class_of(len);
    void *buf;
    long s;

    if (c >= 0 && (buf = pop(p, c))) {
        p->cached_bytes -= class_bytes(c);
        p->hits++;
        if ((s = slab_of(p, buf)) >= 0) {
            p->slabs[s].n_free--;
            count_out(p, c);
        }
        return buf;
    }
    p->misses++;
    if (slab_class(c) && reserve_span(p) && (buf = carve(p, c))) {
        count_out(p, c);
        return buf;
    }
    if (posix_memalign(&buf, BUF_ALIGN, c >= 0 ? class_bytes(c)
                                               : (len ? len : 1)))
        return NULL;
    return buf;
}

void buf_pool_put(struct buf_pool *p, void *buf, size_t len)
{
    int c = class_of(len);
    long s;

    if (!buf)
        return;
    if ((s = slab_of(p, buf)) >= 0) {
        push(p, c, buf);
        p->cached_bytes += class_bytes(c);
        p->out_bytes -= class_bytes(c);
        if (++p->slabs[s].n_free == per_slab(c) &&
            p->cached_bytes > keep_limit(p))
            release_slab(p, (size_t)s);
        return;
    }
    if (c < 0 || p->cached_bytes + class_bytes(c) > p->cap) {
        free(buf);
        return;
    }
    push(p, c, buf);
    p->cached_bytes += class_bytes(c);
}

bool buf_pool_trim(struct buf_pool *p)
{
    p->peak_out_bytes = p->out_bytes;
    for (size_t i = 0; p->span && i < n_slabs(p) &&
                       p->cached_bytes > keep_limit(p); i++) {
        int c = p->slabs[i].cls;
        if (c != SLAB_UNCARVED && p->slabs[i].n_free == per_slab(c))
            release_slab(p, i);
    }
    return buf_pool_over_cap(p);
}

void buf_pool_destroy(struct buf_pool *p)
{
    for (int c = 0; c < BUF_POOL_CLASSES; c++) {
        void *buf;
        while ((buf = pop(p, c)))
            if (slab_of(p, buf) < 0)
                free(buf);
    }
    if (p->span)
        munmap(p->span, p->span_bytes);
    free(p->slabs);
    p->span = NULL;
    p->slabs = NULL;
    p->span_failed = false;
    p->cached_bytes = 0;
    p->slab_bytes = 0;
}
