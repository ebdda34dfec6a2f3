/* SPDX-License-Identifier: MIT */
/*
 * Consolidation: a full and its oldest incremental become one full, so
 * a forever-incremental chain gets shorter. The full's point in time is
 * given up; the incremental's point is kept, now as a full named after
 * it ("full-<stamp of the incremental>"), and the incremental's
 * children are re-pointed at that full. Two modes:
 *
 *   commit     the incremental's data is committed into the full's file
 *              in place, and the file gets the new name (hard link,
 *              then the old name goes)
 *   synthetic  a new full is written by converting the chain up to the
 *              incremental into a new file; the old files are deleted
 *              and no data file is ever changed once written (only the
 *              children's backing-file header field)
 *
 * Every step is ordered so that a crash at any instant leaves every
 * retained point restorable: a journal ("consolidation.journal" in the
 * disk folder) is written before anything changes, and
 * cat_consolidate_recover() finishes (commit, or synthetic past its
 * switch) or rolls back (synthetic before its switch) what it
 * describes. The crash analysis, step by step: docs/CONSOLIDATION.md.
 *
 * For tests, SENDENSED_TEST_CRASH_AT=<step> makes the process abort()
 * right after that step (names in docs/CONSOLIDATION.md), and
 * SENDENSED_TEST_PAUSE_AT=<step> with SENDENSED_TEST_PAUSE_FILE=<path>
 * makes the first consolidation there create that file after the step
 * and wait until somebody removes it (others pass meanwhile); only
 * honoured when set.
 */
#ifndef SENDENSE_CATALOG_CONSOLIDATE_H
#define SENDENSE_CATALOG_CONSOLIDATE_H

#include "catalog/chain.h"
#include "common/error.h"

#define CAT_CONSOLIDATE_JOURNAL "consolidation.journal"

enum cat_consolidation { CAT_CONSOLIDATE_COMMIT, CAT_CONSOLIDATE_SYNTHETIC };

const char *cat_consolidation_name(enum cat_consolidation mode);
int cat_consolidation_parse(const char *text, enum cat_consolidation *out);

/* Merge full (completed) with incr, its only child, completed. -EBUSY
 * (with the names) when full has another child; the caller has made
 * sure nothing uses the disk's images. On success *new_id (CAT_ID_LEN
 * + 1 bytes) gets the id of the resulting full. d is stale afterwards:
 * scan the repository again. */
int cat_consolidate(const struct cat_disk *d, const struct cat_backup *full,
                    const struct cat_backup *incr,
                    enum cat_consolidation mode, char *new_id,
                    struct sd_error *err);

/* Delete incr, a completed or failed incremental, keeping the points of
 * its children: each gets incr's data in its own layer and is re-pointed
 * at incr's parent. Journalled like a consolidation (mode "merge",
 * always finished by recovery); the caller has made sure nothing uses
 * the disk's images. d is stale afterwards. */
int cat_merge_incremental(const struct cat_disk *d,
                          const struct cat_backup *incr, struct sd_error *err);

/* Finish or roll back the consolidation whose journal is in the disk
 * folder dir. 0 when there was none, 1 when one was resolved. */
int cat_consolidate_recover(const char *dir, struct sd_error *err);

/* abort() or pause when the test variables above name step. */
void cat_test_point(const char *step);

#endif
