/* SPDX-License-Identifier: MIT */
/* Extent lists: what to read, what to zero, and how to cut it into
 * requests. */
#include "config.h"

#include "capture/capture.h"

#include <errno.h>
#include <stdlib.h>

enum { ZERO_MAX = 1 << 30 };

/* Append one extent as it is, without joining. */
static int push(struct cap_extents *x, struct cap_extent e)
{
    if (x->n == x->cap) {
        size_t cap = x->cap ? x->cap * 2 : 64;
        struct cap_extent *v = realloc(x->v, cap * sizeof(*v));

        if (!v)
            return -ENOMEM;
        x->v = v;
        x->cap = cap;
    }
    x->v[x->n++] = e;
    return 0;
}

int cap_extents_add(struct cap_extents *x, uint64_t off, uint64_t len, bool zero)
{
    struct cap_extent *last = x->n ? &x->v[x->n - 1] : NULL;

    if (len == 0)
        return 0;
    if (last && last->off + last->len == off && last->zero == zero) {
        last->len += len;
        return 0;
    }
    return push(x, (struct cap_extent){ .off = off, .len = len, .zero = zero });
}

void cap_extents_free(struct cap_extents *x)
{
    free(x->v);
    *x = (struct cap_extents){ 0 };
}

uint64_t cap_extents_bytes(const struct cap_extents *x, bool zero)
{
    uint64_t sum = 0;

    for (size_t i = 0; i < x->n; i++)
        if (x->v[i].zero == zero)
            sum += x->v[i].len;
    return sum;
}

int cap_extents_split(const struct cap_extents *in, uint64_t max,
                      struct cap_extents *out)
{
    for (size_t i = 0; i < in->n; i++) {
        uint64_t off = in->v[i].off, end = off + in->v[i].len;

        while (off < end) {
            /* Cut at the next multiple of max, so that a long run is
             * sent as aligned requests and small neighbours merge. */
            uint64_t cut = (off / max + 1) * max;
            uint64_t stop = cut < end ? cut : end;
            struct cap_extent *last = out->n ? &out->v[out->n - 1] : NULL;

            /* Zero requests carry no buffer: up to 1 GiB each (the
             * NBD length field is 32 bits). */
            if (in->v[i].zero)
                stop = end - off > ZERO_MAX ? off + ZERO_MAX : end;
            if (last && !in->v[i].zero && !last->zero &&
                last->off + last->len == off && last->off / max == off / max) {
                last->len += stop - off;
            } else {
                int ret = push(out, (struct cap_extent){
                    .off = off, .len = stop - off, .zero = in->v[i].zero });

                if (ret < 0)
                    return ret;
            }
            off = stop;
        }
    }
    return 0;
}
