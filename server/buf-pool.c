/* SPDX-License-Identifier: MIT */
#include "config.h"

#include "server/buf-pool.h"

#include <stdlib.h>
#include <string.h>

enum { BUF_ALIGN = 4096 };

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

void buf_pool_init(struct buf_pool *p, uint64_t cap)
{
    memset(p, 0, sizeof(*p));
    p->cap = cap;
}

void *buf_pool_get(struct buf_pool *p, size_t len)
{
    int c = class_of(len);
    void *buf;

    if (c >= 0 && p->free[c]) {
        buf = p->free[c];
        memcpy(&p->free[c], buf, sizeof(void *));
        p->cached_bytes -= class_bytes(c);
        p->hits++;
        return buf;
    }
    p->misses++;
    if (posix_memalign(&buf, BUF_ALIGN, c >= 0 ? class_bytes(c)
                                               : (len ? len : 1)))
        return NULL;
    return buf;
}

void buf_pool_put(struct buf_pool *p, void *buf, size_t len)
{
    int c = class_of(len);

    if (!buf)
        return;
    if (c < 0 || p->cached_bytes + class_bytes(c) > p->cap) {
        free(buf);
        return;
    }
    memcpy(buf, &p->free[c], sizeof(void *));
    p->free[c] = buf;
    p->cached_bytes += class_bytes(c);
}

void buf_pool_destroy(struct buf_pool *p)
{
    for (int c = 0; c < BUF_POOL_CLASSES; c++) {
        while (p->free[c]) {
            void *buf = p->free[c];
            memcpy(&p->free[c], buf, sizeof(void *));
            free(buf);
        }
    }
    p->cached_bytes = 0;
}
