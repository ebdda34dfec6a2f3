/* SPDX-License-Identifier: MIT */
/*
 * Retention: which backups of one disk a policy lets go, and what must
 * be done so that the rest stay restorable. Planning only; nothing here
 * touches the repository (daemon-chains.c carries the plan out).
 *
 * Restore points are the usable completed backups (chain.h). A point is
 * kept when it is among the newest keep_last, or ended within keep_days
 * of now; with neither rule set, everything is kept; the newest point
 * is always kept. A point not kept is expired.
 *
 *   - A tree (a full and what hangs from it) without a kept point is
 *     deleted whole.
 *   - Otherwise the expired points at its base are consolidated away:
 *     the full is merged with its next point, nmerge times, so the
 *     oldest kept point becomes the full (consolidate.h).
 *   - A failed backup older than the oldest kept point is removed
 *     (sidecar, and image if one was kept).
 */
#ifndef SENDENSE_CATALOG_RETENTION_H
#define SENDENSE_CATALOG_RETENTION_H

#include "catalog/chain.h"

#include <stddef.h>
#include <stdint.h>

enum {
    CAT_KEEP_UNSET = -1,
    CAT_KEEP_MAX = 1000000,
};

struct cat_retention {
    int64_t keep_last;              /* >= 1, or CAT_KEEP_UNSET */
    int64_t keep_days;              /* >= 0, or CAT_KEEP_UNSET */
};

struct cat_merge {
    const struct cat_backup *full;  /* the tree's full */
    size_t nmerge;                  /* consolidations to run from it */
};

struct cat_prune_plan {
    const struct cat_backup **remove;   /* newest first: children before
                                         * their parents */
    size_t nremove;
    struct cat_merge *merges;
    size_t nmerges;
    const struct cat_backup **skipped;  /* trees left alone: branched */
    size_t nskipped;
};

/* Plan for d at now (seconds since the epoch). -ENOMEM only. */
int cat_retention_plan(const struct cat_disk *d, const struct cat_retention *p,
                       cat_time_t now, struct cat_prune_plan *out);
void cat_prune_plan_clear(struct cat_prune_plan *plan);

#endif
