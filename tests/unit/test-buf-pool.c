/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of server/buf-pool.c: buffers come back for reuse by class,
 * are aligned for O_DIRECT, the cap bounds what is kept, and big ones are
 * never kept.
 */
#include "config.h"

#include "server/buf-pool.h"

#include <criterion/criterion.h>
#include <stdint.h>
#include <string.h>

Test(buf_pool, a_given_back_buffer_is_reused_by_its_class)
{
    struct buf_pool p;

    buf_pool_init(&p, 1 << 20);
    void *a = buf_pool_get(&p, 200 * 1024);
    cr_assert_not_null(a);
    cr_assert_eq((uintptr_t)a % 4096, 0, "not 4 KiB aligned");
    memset(a, 0xab, 256 * 1024);        /* the whole class is usable */
    buf_pool_put(&p, a, 200 * 1024);
    cr_assert_eq(p.cached_bytes, 256 * 1024);
    /* Another length of the same class (129..256 KiB) gets it back. */
    cr_assert_eq(buf_pool_get(&p, 129 * 1024), a);
    cr_assert_eq(p.cached_bytes, 0);
    cr_assert_eq(p.hits, 1);
    /* A smaller class does not take it. */
    buf_pool_put(&p, a, 256 * 1024);
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

    buf_pool_init(&p, 3 * 65536);
    for (int i = 0; i < 5; i++)
        cr_assert_not_null(bufs[i] = buf_pool_get(&p, 65536));
    for (int i = 0; i < 5; i++)
        buf_pool_put(&p, bufs[i], 65536);
    cr_assert_eq(p.cached_bytes, 3 * 65536);    /* two were freed */
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
