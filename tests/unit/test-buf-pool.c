/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of server/buf-pool.c: buffers come back for reuse by class,
 * are aligned for O_DIRECT, the cap bounds what is kept, and big ones are
 * never kept; bulk classes share 2 MiB slabs, a slab goes back to the
 * system whole, and a full span falls back to the allocator.
 */
#include "config.h"

#include "server/buf-pool.h"

#include <criterion/criterion.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define SLAB BUF_POOL_SLAB_BYTES

Test(buf_pool, a_given_back_buffer_is_reused_by_its_class)
{
    struct buf_pool p;

    buf_pool_init(&p, 1 << 20);
    void *a = buf_pool_get(&p, 13 * 1024);
    cr_assert_not_null(a);
    cr_assert_eq((uintptr_t)a % 4096, 0, "not 4 KiB aligned");
    memset(a, 0xab, 16 * 1024);         /* the whole class is usable */
    buf_pool_put(&p, a, 13 * 1024);
    cr_assert_eq(p.cached_bytes, 16 * 1024);
    /* Another length of the same class (8..16 KiB) gets it back. */
    cr_assert_eq(buf_pool_get(&p, 9 * 1024), a);
    cr_assert_eq(p.cached_bytes, 0);
    cr_assert_eq(p.hits, 1);
    /* A smaller class does not take it. */
    buf_pool_put(&p, a, 16 * 1024);
    void *b = buf_pool_get(&p, 4096);
    cr_assert_neq(b, a);
    buf_pool_put(&p, b, 4096);
    buf_pool_destroy(&p);
    cr_assert_eq(p.cached_bytes, 0);
}

Test(buf_pool, zero_length_is_a_4k_buffer)
{
    struct buf_pool p;

    buf_pool_init(&p, 1 << 20);
    void *a = buf_pool_get(&p, 0);
    cr_assert_not_null(a);
    buf_pool_put(&p, a, 0);
    cr_assert_eq(p.cached_bytes, 4096);
    cr_assert_eq(buf_pool_get(&p, 4096), a);
    buf_pool_put(&p, a, 4096);
    buf_pool_destroy(&p);
}

Test(buf_pool, the_cap_bounds_what_is_kept)
{
    struct buf_pool p;
    void *bufs[5];

    buf_pool_init(&p, 3 * 32768);
    for (int i = 0; i < 5; i++)
        cr_assert_not_null(bufs[i] = buf_pool_get(&p, 32768));
    for (int i = 0; i < 5; i++)
        buf_pool_put(&p, bufs[i], 32768);
    cr_assert_eq(p.cached_bytes, 3 * 32768);    /* two were freed */
    buf_pool_destroy(&p);
}

Test(buf_pool, buffers_above_the_largest_class_are_not_kept)
{
    struct buf_pool p;

    buf_pool_init(&p, 64 << 20);
    size_t big = BUF_POOL_MAX_CLASS_BYTES + 1;
    void *a = buf_pool_get(&p, big);
    cr_assert_not_null(a);
    cr_assert_eq((uintptr_t)a % 4096, 0);
    memset(a, 1, big);
    buf_pool_put(&p, a, big);
    cr_assert_eq(p.cached_bytes, 0);
    buf_pool_put(&p, NULL, 4096);               /* ignored */
    buf_pool_destroy(&p);
}

static bool in_slab(const void *buf, const void *slab)
{
    return (const char *)buf >= (const char *)slab &&
           (const char *)buf < (const char *)slab + SLAB;
}

Test(buf_pool, bulk_buffers_share_a_2m_slab)
{
    struct buf_pool p;
    void *bufs[9];

    buf_pool_init(&p, 64 << 20);
    for (int i = 0; i < 9; i++) {
        bufs[i] = buf_pool_get(&p, 256 * 1024);
        cr_assert_not_null(bufs[i]);
        memset(bufs[i], i, 256 * 1024);
    }
    /* The first eight fill one 2 MiB-aligned slab, in address order. */
    cr_assert_eq((uintptr_t)bufs[0] % SLAB, 0, "slab not 2 MiB aligned");
    for (int i = 1; i < 8; i++)
        cr_assert_eq((char *)bufs[i], (char *)bufs[0] + i * 256 * 1024);
    cr_assert_not(in_slab(bufs[8], bufs[0]), "a ninth fits no slab of 8");
    cr_assert_eq((uintptr_t)bufs[8] % SLAB, 0);
    cr_assert_eq(p.slab_bytes, 2 * SLAB);
    cr_assert_eq(p.cached_bytes, 7 * 256 * 1024);  /* the second's rest */
    for (int i = 0; i < 8; i++)
        cr_assert_eq(*(unsigned char *)bufs[i], i, "buffers overlap");
    for (int i = 0; i < 9; i++)
        buf_pool_put(&p, bufs[i], 256 * 1024);
    /* Under the cap: both slabs are kept for reuse. */
    cr_assert_eq(p.cached_bytes, 2 * SLAB);
    cr_assert_eq(p.slab_bytes, 2 * SLAB);
    /* A 64 KiB class carves a slab of its own. */
    void *small = buf_pool_get(&p, 65536);
    cr_assert_not(in_slab(small, bufs[0]) || in_slab(small, bufs[8]));
    cr_assert_eq(p.slab_bytes, 3 * SLAB);
    buf_pool_put(&p, small, 65536);
    buf_pool_destroy(&p);
    cr_assert_eq(p.cached_bytes, 0);
    cr_assert_eq(p.slab_bytes, 0);
}

/* Pages of [buf, buf + len) in memory. */
static size_t resident_pages(void *buf, size_t len)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE), n = 0;
    unsigned char vec[SLAB / 4096];

    cr_assert_leq(len / page, sizeof(vec));
    cr_assert_eq(mincore(buf, len, vec), 0);
    for (size_t i = 0; i < len / page; i++)
        n += vec[i] & 1;
    return n;
}

Test(buf_pool, a_free_slab_over_the_cap_goes_back_whole)
{
    struct buf_pool p;
    void *bufs[8];

    buf_pool_init(&p, 0);
    for (int i = 0; i < 8; i++) {
        bufs[i] = buf_pool_get(&p, 256 * 1024);
        memset(bufs[i], 0x5a, 256 * 1024);
    }
    cr_assert_eq(resident_pages(bufs[0], SLAB), SLAB / 4096);
    /* Over the cap, but the slab is in use: what comes back is kept. */
    for (int i = 0; i < 7; i++)
        buf_pool_put(&p, bufs[i], 256 * 1024);
    cr_assert_eq(p.cached_bytes, 7 * 256 * 1024);
    cr_assert_eq(p.slab_bytes, SLAB);
    cr_assert_eq(*(unsigned char *)bufs[7], 0x5a);
    /* The last one frees the slab; it is the working set (the peak), so
     * it stays until a trim. Then its memory goes back to the system,
     * and none of its buffers stays on the free list. */
    buf_pool_put(&p, bufs[7], 256 * 1024);
    cr_assert_eq(p.slab_bytes, SLAB);
    cr_assert_not(buf_pool_trim(&p));
    cr_assert_eq(p.cached_bytes, 0);
    cr_assert_eq(p.slab_bytes, 0);
    cr_assert_eq(resident_pages(bufs[0], SLAB), 0, "slab memory kept");
    /* And the slab is carved again when needed. */
    void *again = buf_pool_get(&p, 128 * 1024);
    cr_assert(in_slab(again, bufs[0]));
    cr_assert_eq(p.cached_bytes, SLAB - 128 * 1024);
    buf_pool_put(&p, again, 128 * 1024);
    buf_pool_destroy(&p);
}

Test(buf_pool, a_working_set_above_the_cap_is_kept_until_a_trim)
{
    struct buf_pool p;
    void *bufs[24];

    buf_pool_init(&p, SLAB);                    /* cap: one slab */
    for (int i = 0; i < 24; i++) {
        bufs[i] = buf_pool_get(&p, 256 * 1024);
        memset(bufs[i], i, 256 * 1024);
    }
    cr_assert_eq(p.slab_bytes, 3 * SLAB);
    void *first = bufs[0];
    /* With 6 MiB out at the peak the pool may keep that much: no slab
     * goes back, although two are free and the cap is one slab. */
    for (int i = 0; i < 23; i++)
        buf_pool_put(&p, bufs[i], 256 * 1024);
    cr_assert_eq(p.slab_bytes, 3 * SLAB, "a slab of the working set went back");
    cr_assert_eq(resident_pages(first, SLAB), SLAB / 4096);
    /* Taken again, the same memory: nothing is carved (faulted) afresh. */
    for (int i = 0; i < 23; i++)
        bufs[i] = buf_pool_get(&p, 256 * 1024);
    cr_assert_eq(p.slab_bytes, 3 * SLAB);
    cr_assert_eq(p.misses, 3);
    for (int i = 0; i < 24; i++)
        buf_pool_put(&p, bufs[i], 256 * 1024);
    cr_assert_eq(p.slab_bytes, 3 * SLAB, "given back before a trim");
    /* The trim: back to the cap. */
    cr_assert_not(buf_pool_trim(&p));
    cr_assert_eq(p.slab_bytes, SLAB);
    cr_assert_eq(p.cached_bytes, SLAB);
    cr_assert_eq(resident_pages(first, SLAB), 0, "a trimmed slab kept memory");
    /* A trim with buffers out: the peak becomes what is out now (1 MiB),
     * so the pool keeps its cap, and a free slab beyond it goes back. */
    for (int i = 0; i < 16; i++)
        bufs[i] = buf_pool_get(&p, 256 * 1024);
    cr_assert_eq(p.slab_bytes, 2 * SLAB);
    for (int i = 0; i < 12; i++)
        buf_pool_put(&p, bufs[i], 256 * 1024);
    cr_assert_not(buf_pool_trim(&p));
    cr_assert_eq(p.slab_bytes, SLAB);
    cr_assert_eq(p.cached_bytes, 1 << 20);
    for (int i = 12; i < 16; i++)
        buf_pool_put(&p, bufs[i], 256 * 1024);
    cr_assert_eq(p.slab_bytes, SLAB);
    buf_pool_destroy(&p);
}

Test(buf_pool, a_full_span_falls_back_to_the_allocator)
{
    struct buf_pool p;
    void *whole[3];

    buf_pool_init(&p, 64 << 20);
    p.span_bytes = 2 * SLAB;                    /* before the first use */
    for (int i = 0; i < 3; i++) {
        whole[i] = buf_pool_get(&p, SLAB);
        cr_assert_not_null(whole[i]);
        cr_assert_eq((uintptr_t)whole[i] % 4096, 0);
        memset(whole[i], i, SLAB);
    }
    cr_assert_eq(p.slab_bytes, 2 * SLAB);       /* the third is malloc's */
    cr_assert_eq((char *)whole[1], (char *)whole[0] + SLAB);
    cr_assert_not(in_slab(whole[2], whole[0]) || in_slab(whole[2], whole[1]));
    void *small = buf_pool_get(&p, 65536);      /* no slab left to carve */
    cr_assert_not_null(small);
    memset(small, 7, 65536);
    buf_pool_put(&p, small, 65536);
    for (int i = 0; i < 3; i++)
        buf_pool_put(&p, whole[i], SLAB);
    cr_assert_eq(p.cached_bytes, 3 * SLAB + 65536);
    /* Each comes back from where it went. */
    cr_assert_eq(buf_pool_get(&p, SLAB), whole[2]);
    buf_pool_put(&p, whole[2], SLAB);
    buf_pool_destroy(&p);
}
