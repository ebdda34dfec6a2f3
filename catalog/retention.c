/* SPDX-License-Identifier: MIT */
/*
 * Retention planning (retention.h). A disk has few backups (one a day
 * for years is a few thousand), so plain quadratic walks are fine.
 */
#include "config.h"

#include "catalog/retention.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>

enum { SECONDS_PER_DAY = 24 * 3600 };

static bool is_point(const struct cat_backup *b)
{
    return b->sc->status == CAT_STATUS_COMPLETED && cat_backup_usable(b);
}

static const struct cat_backup *root_of(const struct cat_backup *b)
{
    while (b->parent)
        b = b->parent;
    return b;
}

/* kept[i] for d->backups[i]; returns the oldest kept stamp, or -1. */
static cat_time_t mark_kept(const struct cat_disk *d,
                            const struct cat_retention *p, cat_time_t now,
                            bool *kept)
{
    size_t seen = 0;
    cat_time_t oldest = -1;

    for (size_t k = d->nbackups; k-- > 0; ) {
        const struct cat_backup *b = d->backups[k];
        cat_time_t end = b->sc->ended_at;

        if (!is_point(b))
            continue;
        seen++;
        kept[k] = seen == 1 ||
                  (p->keep_last != CAT_KEEP_UNSET &&
                   seen <= (uint64_t)p->keep_last) ||
                  (p->keep_days != CAT_KEEP_UNSET &&
                   end >= now - p->keep_days * SECONDS_PER_DAY);
        if (kept[k])
            oldest = b->stamp;
    }
    return oldest;
}

static bool kept_of(const struct cat_disk *d, const bool *kept,
                    const struct cat_backup *b)
{
    for (size_t k = 0; k < d->nbackups; k++)
        if (d->backups[k] == b)
            return kept[k];
    return true;
}

static bool tree_has_kept(const struct cat_disk *d, const bool *kept,
                          const struct cat_backup *root)
{
    for (size_t k = 0; k < d->nbackups; k++)
        if (kept[k] && root_of(d->backups[k]) == root)
            return true;
    return false;
}

/* The only restore point among b's children, or NULL (none, or more). */
static const struct cat_backup *next_point(const struct cat_disk *d,
                                           const struct cat_backup *b)
{
    const struct cat_backup *found = NULL;

    for (size_t k = 0; k < d->nbackups; k++) {
        const struct cat_backup *c = d->backups[k];

        if (c->parent == b && is_point(c)) {
            if (found)
                return NULL;
            found = c;
        }
    }
    return found;
}

static int push(const struct cat_backup ***list, size_t *n,
                const struct cat_backup *b)
{
    const struct cat_backup **l = realloc(*list, (*n + 1) * sizeof(*l));

    if (!l)
        return -ENOMEM;
    l[(*n)++] = b;
    *list = l;
    return 0;
}

/* Expired points at the base of a tree with a kept point. */
static int plan_tree(const struct cat_disk *d, const bool *kept,
                     const struct cat_backup *root,
                     struct cat_prune_plan *out)
{
    const struct cat_backup *cur = root;
    size_t n = 0;
    struct cat_merge *m;

    while (!kept_of(d, kept, cur)) {
        cur = next_point(d, cur);
        if (!cur)
            return push(&out->skipped, &out->nskipped, root);
        n++;
    }
    if (n == 0)
        return 0;
    m = realloc(out->merges, (out->nmerges + 1) * sizeof(*m));
    if (!m)
        return -ENOMEM;
    m[out->nmerges++] = (struct cat_merge){ .full = root, .nmerge = n };
    out->merges = m;
    return 0;
}

static bool removable(const struct cat_disk *d, const bool *kept,
                      const struct cat_backup *b, cat_time_t oldest_kept)
{
    const struct cat_backup *root = root_of(b);

    if (b->sc->status == CAT_STATUS_RUNNING || b->orphan || root->orphan)
        return false;
    if (!tree_has_kept(d, kept, root))
        return true;                /* the whole tree goes */
    return b->sc->status == CAT_STATUS_FAILED && b->stamp < oldest_kept;
}

int cat_retention_plan(const struct cat_disk *d, const struct cat_retention *p,
                       cat_time_t now, struct cat_prune_plan *out)
{
    bool *kept = calloc(d->nbackups + 1, sizeof(*kept));
    cat_time_t oldest;
    int ret = kept ? 0 : -ENOMEM;

    *out = (struct cat_prune_plan){ 0 };
    if (ret < 0 || (p->keep_last == CAT_KEEP_UNSET &&
                    p->keep_days == CAT_KEEP_UNSET))
        goto out;
    oldest = mark_kept(d, p, now, kept);
    if (oldest < 0)
        goto out;                   /* no restore point: nothing to keep */
    for (size_t k = d->nbackups; ret == 0 && k-- > 0; )
        if (removable(d, kept, d->backups[k], oldest))
            ret = push(&out->remove, &out->nremove, d->backups[k]);
    for (size_t k = 0; ret == 0 && k < d->nbackups; k++) {
        const struct cat_backup *b = d->backups[k];

        if (b->sc->type != CAT_TYPE_INCR && is_point(b) &&
            tree_has_kept(d, kept, b))
            ret = plan_tree(d, kept, b, out);
    }
out:
    free(kept);
    if (ret < 0)
        cat_prune_plan_clear(out);
    return ret;
}

void cat_prune_plan_clear(struct cat_prune_plan *plan)
{
    free(plan->remove);
    free(plan->merges);
    free(plan->skipped);
    *plan = (struct cat_prune_plan){ 0 };
}
