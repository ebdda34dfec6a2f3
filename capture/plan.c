/* SPDX-License-Identifier: MIT */
/*
 * What a run copies, as requests: the source's map (full), a change
 * list's areas or a dirty bitmap's extents (incremental), cut to the
 * request size. Known zeros on a target known to read as zeros need no
 * request at all: they count as skipped.
 */
#include "config.h"

#include "capture/capture.h"

#include <errno.h>

static int areas_of(const struct cap_source *src, const struct cap_changes *ch,
                    struct cap_extents *out, struct sd_error *err)
{
    const struct cap_extents *a = &ch->areas;

    if (a->n && a->v[a->n - 1].off + a->v[a->n - 1].len > src->size)
        return sd_error_set(err, -EINVAL, "the change list has an area ending beyond "
                            "the source (%llu bytes)", (unsigned long long)src->size);
    for (size_t i = 0; i < a->n; i++)
        if (cap_extents_add(out, a->v[i].off, a->v[i].len, a->v[i].zero) < 0)
            return sd_error_set(err, -ENOMEM, "out of memory");
    return 0;
}

/* Changed areas the source's map knows to be zeros (a file deleted and
 * trimmed in the guest) are sent as zeroes, not read. */
static int mark_known_zeros(struct cap_source *src, const struct cap_extents *changed,
                            struct cap_extents *out, struct sd_error *err)
{
    struct cap_extents map = { 0 };
    size_t m = 0;
    int ret = cap_source_map(src, &map, err);

    for (size_t i = 0; ret == 0 && i < changed->n; i++) {
        uint64_t pos = changed->v[i].off, end = pos + changed->v[i].len;

        while (ret == 0 && pos < end) {
            uint64_t upto = end;
            bool zero = false;

            while (m < map.n && map.v[m].off + map.v[m].len <= pos)
                m++;
            if (m < map.n && map.v[m].off <= pos) {
                zero = map.v[m].zero;
                if (map.v[m].off + map.v[m].len < upto)
                    upto = map.v[m].off + map.v[m].len;
            } else if (m < map.n && map.v[m].off < upto) {
                upto = map.v[m].off;    /* not in the map: data */
            }
            ret = cap_extents_add(out, pos, upto - pos, zero);
            pos = upto;
        }
    }
    if (ret == -ENOMEM)
        sd_error_set(err, ret, "out of memory");
    cap_extents_free(&map);
    return ret;
}

int cap_plan(struct cap_source *src, const struct cap_plan_opts *o,
             struct cap_extents *reqs, struct cap_counters *c, struct sd_error *err)
{
    struct cap_extents ext = { 0 }, changed = { 0 }, kept = { 0 };
    int ret;

    if (o->bitmap)
        ret = cap_source_dirty(src, o->bitmap, &changed, err);
    else if (o->changes)
        ret = areas_of(src, o->changes, &changed, err);
    else
        ret = cap_source_map(src, &ext, err);
    if (ret == 0 && (o->bitmap || o->changes))
        ret = mark_known_zeros(src, &changed, &ext, err);
    for (size_t i = 0; ret == 0 && i < ext.n; i++)
        if (!(ext.v[i].zero && o->target_is_zero))
            ret = cap_extents_add(&kept, ext.v[i].off, ext.v[i].len, ext.v[i].zero);
    if (ret == 0)
        ret = cap_extents_split(&kept, o->request_size, reqs);
    if (ret == -ENOMEM)
        sd_error_set(err, ret, "out of memory");
    if (ret == 0) {
        c->total = src->size;
        c->skipped = src->size - cap_extents_bytes(&kept, false) -
                     cap_extents_bytes(&kept, true);
    }
    cap_extents_free(&ext);
    cap_extents_free(&changed);
    cap_extents_free(&kept);
    return ret;
}
