/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: any bytes, parsed as a change list
 * (capture/changes.c, the shape of VMware's QueryChangedDiskAreas).
 *
 * Beyond "no crash, no leak": whatever parses must keep the promises
 * the copy relies on (areas sorted, not overlapping, not empty, inside
 * startOffset..startOffset+length); a parse that fails must say why.
 */
#include "config.h"

#include "capture/capture.h"

#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_areas(const struct cap_changes *c)
{
    uint64_t prev_end = 0;

    for (size_t i = 0; i < c->areas.n; i++) {
        const struct cap_extent *e = &c->areas.v[i];

        /* Touching areas are joined, so each starts after the last. */
        if (e->len == 0 || e->zero || (i > 0 && e->off <= prev_end) ||
            e->off < c->start || e->off + e->len - c->start > c->length)
            abort();
        prev_end = e->off + e->len;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct cap_changes c;
    struct sd_error err = { 0 };
    int ret = cap_changes_parse((const char *)data, size, &c, &err);

    if (ret < 0) {
        if (err.code != ret || !err.msg[0] || c.change_id || c.areas.v)
            abort();
        return 0;
    }
    check_areas(&c);
    cap_changes_free(&c);
    return 0;
}
