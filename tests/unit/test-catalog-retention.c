/* SPDX-License-Identifier: MIT */
/*
 * Retention planning (catalog/retention.c) on disks built in memory:
 * which trees go whole, how many consolidations a tree's base needs,
 * which failed backups are removed, and what is always kept.
 */
#include "config.h"

#include "catalog/retention.h"

#include "leak-check.h"

#include <criterion/criterion.h>
#include <string.h>

#define T0 ((cat_time_t)1759665600)     /* 2025-10-05T12:00:00Z */
#define DAY (24 * 3600)

static struct cat_disk disk;

static void setup(void)
{
    memset(&disk, 0, sizeof(disk));
    strcpy(disk.name, "disk0");
}

static void teardown(void)
{
    cat_disk_clear(&disk);
}

/* A backup at T0 + day days (parent: the id of an older one, or NULL
 * for a full); returns its id in a static buffer. */
static const char *add(int day, const char *parent,
                       enum cat_backup_status status)
{
    static char id[CAT_ID_LEN + 1];
    struct cat_sidecar *sc = NULL;
    struct sd_error e = { 0 };

    cr_assert_eq(cat_sidecar_new(parent ? CAT_TYPE_INCR : CAT_TYPE_FULL,
                                 T0 + (cat_time_t)day * DAY, parent, &sc,
                                 &e), 0, "%s", e.msg);
    sc->status = status;
    sc->ended_at = sc->started_at + 60;
    snprintf(id, sizeof(id), "%s", sc->id);
    cr_assert_eq(cat_disk_add(&disk, sc, status != CAT_STATUS_FAILED), 0);
    return id;
}

/* A full and n incrementals a day apart from day first; ids[] filled. */
static void line(int first, int n, char ids[][CAT_ID_LEN + 1])
{
    snprintf(ids[0], CAT_ID_LEN + 1, "%s", add(first, NULL,
                                               CAT_STATUS_COMPLETED));
    for (int i = 1; i <= n; i++)
        snprintf(ids[i], CAT_ID_LEN + 1, "%s", add(first + i, ids[i - 1],
                                                   CAT_STATUS_COMPLETED));
}

static void plan(int64_t keep_last, int64_t keep_days, int now_day,
                 struct cat_prune_plan *p)
{
    struct cat_retention r = { keep_last, keep_days };

    cr_assert_eq(cat_disk_link(&disk), 0);
    cr_assert_eq(cat_retention_plan(&disk, &r, T0 + (cat_time_t)now_day * DAY,
                                    p), 0);
}

TestSuite(retention, .init = setup, .fini = teardown);

Test(retention, no_rule_keeps_everything)
{
    char ids[6][CAT_ID_LEN + 1];
    struct cat_prune_plan p;

    line(0, 5, ids);
    plan(CAT_KEEP_UNSET, CAT_KEEP_UNSET, 100, &p);
    cr_expect_eq(p.nremove + p.nmerges + p.nskipped, 0);
    cat_prune_plan_clear(&p);
}

Test(retention, keep_last_consolidates_the_base)
{
    char ids[6][CAT_ID_LEN + 1];
    struct cat_prune_plan p;

    line(0, 5, ids);
    plan(3, CAT_KEEP_UNSET, 6, &p);
    cr_assert_eq(p.nmerges, 1);
    cr_expect_str_eq(p.merges[0].full->sc->id, ids[0]);
    /* Points 0..2 expire; 3 becomes the full: three merges. */
    cr_expect_eq(p.merges[0].nmerge, 3);
    cr_expect_eq(p.nremove, 0);
    cat_prune_plan_clear(&p);
}

Test(retention, a_tree_without_kept_points_goes_whole_children_first)
{
    char old[2][CAT_ID_LEN + 1], cur[2][CAT_ID_LEN + 1];
    struct cat_prune_plan p;

    line(0, 1, old);
    line(5, 1, cur);
    plan(1, CAT_KEEP_UNSET, 7, &p);
    cr_assert_eq(p.nremove, 2);
    cr_expect_str_eq(p.remove[0]->sc->id, old[1]);
    cr_expect_str_eq(p.remove[1]->sc->id, old[0]);
    cr_assert_eq(p.nmerges, 1);
    cr_expect_str_eq(p.merges[0].full->sc->id, cur[0]);
    cr_expect_eq(p.merges[0].nmerge, 1);
    cat_prune_plan_clear(&p);
}

Test(retention, keep_days_counts_from_the_end_time)
{
    char ids[5][CAT_ID_LEN + 1];
    struct cat_prune_plan p;

    line(0, 4, ids);                /* ended days 0..4 (+60 s) */
    plan(CAT_KEEP_UNSET, 2, 4, &p); /* keeps what ended on day 2 or later */
    cr_assert_eq(p.nmerges, 1);
    cr_expect_eq(p.merges[0].nmerge, 2);
    cat_prune_plan_clear(&p);
}

Test(retention, either_rule_keeps_a_point)
{
    char ids[5][CAT_ID_LEN + 1];
    struct cat_prune_plan p;

    line(0, 4, ids);
    plan(4, 1, 4, &p);              /* keep_last keeps days 1..4 */
    cr_assert_eq(p.nmerges, 1);
    cr_expect_eq(p.merges[0].nmerge, 1);
    cat_prune_plan_clear(&p);
}

Test(retention, the_newest_point_is_always_kept)
{
    char ids[3][CAT_ID_LEN + 1];
    struct cat_prune_plan p;

    line(0, 2, ids);
    plan(CAT_KEEP_UNSET, 0, 400, &p);
    cr_expect_eq(p.nremove, 0);
    cr_assert_eq(p.nmerges, 1);
    cr_expect_eq(p.merges[0].nmerge, 2);
    cat_prune_plan_clear(&p);
}

Test(retention, failed_backups_older_than_the_oldest_kept_point_go)
{
    char full[CAT_ID_LEN + 1], old_failed[CAT_ID_LEN + 1];
    char i2[CAT_ID_LEN + 1], i3[CAT_ID_LEN + 1];
    struct cat_prune_plan p;

    snprintf(full, sizeof(full), "%s", add(0, NULL, CAT_STATUS_COMPLETED));
    snprintf(old_failed, sizeof(old_failed), "%s",
             add(1, full, CAT_STATUS_FAILED));
    snprintf(i2, sizeof(i2), "%s", add(2, full, CAT_STATUS_COMPLETED));
    snprintf(i3, sizeof(i3), "%s", add(3, i2, CAT_STATUS_COMPLETED));
    (void)add(4, i3, CAT_STATUS_FAILED);        /* newer: stays */
    plan(2, CAT_KEEP_UNSET, 5, &p);
    cr_assert_eq(p.nremove, 1);
    cr_expect_str_eq(p.remove[0]->sc->id, old_failed);
    cr_assert_eq(p.nmerges, 1);
    cr_expect_eq(p.merges[0].nmerge, 1);
    cat_prune_plan_clear(&p);
}

Test(retention, a_branched_base_is_skipped)
{
    char full[CAT_ID_LEN + 1];
    struct cat_prune_plan p;

    snprintf(full, sizeof(full), "%s", add(0, NULL, CAT_STATUS_COMPLETED));
    (void)add(1, full, CAT_STATUS_COMPLETED);
    (void)add(2, full, CAT_STATUS_COMPLETED);
    plan(1, CAT_KEEP_UNSET, 3, &p);
    cr_expect_eq(p.nmerges, 0);
    cr_assert_eq(p.nskipped, 1);
    cr_expect_str_eq(p.skipped[0]->sc->id, full);
    cat_prune_plan_clear(&p);
}
