/* SPDX-License-Identifier: MIT */
/*
 * The default output of backup delete|verify|prune|retention: tables and
 * key value lines made from the results docs/SENDENSED.md ("Chains:
 * delete, retention, consolidation, verify") gives. --json prints those results
 * as they are (forward.c). Apart from cmd-retention.c so that unit tests
 * can print canned results.
 */
#include "config.h"

#include "ctl/ctl.h"

#include <inttypes.h>
#include <string.h>

/* --- backup delete --------------------------------------------------- */

/* One row per backup removed from disk d, and one for a full merged into
 * its child (then nothing is listed as removed: the point lives on in
 * the new full). */
static int add_delete_rows(struct ctl_table *t, const json_t *r,
                           const json_t *d)
{
    const char *vm = ctl_str(r, "vm", "?"), *disk = ctl_str(d, "disk", "?");
    const json_t *id;
    char merged[96];
    size_t i;

    json_array_foreach(json_object_get(d, "removed"), i, id)
        if (ctl_table_add(t, (const char *const[]){
                vm, disk, json_string_value(id), "removed" }) < 0)
            return -1;
    if (!json_is_string(json_object_get(d, "merged_into")))
        return 0;
    snprintf(merged, sizeof(merged), "merged into %s",
             ctl_str(d, "merged_into", "?"));
    return ctl_table_add(t, (const char *const[]){
        vm, disk, ctl_str(r, "id", "?"), merged });
}

int ctl_print_delete(const json_t *r)
{
    static const char *const headers[] = { "VM", "DISK", "BACKUP", "RESULT" };
    struct ctl_table *t = ctl_table_new(4, headers);
    const json_t *d;
    size_t i;
    int status;

    if (!t)
        return ctl_fail(CTL_EXIT_ERROR, "out of memory");
    json_array_foreach(json_object_get(r, "disks"), i, d)
        if (add_delete_rows(t, r, d) < 0) {
            ctl_table_free(t);
            return ctl_fail(CTL_EXIT_ERROR, "out of memory");
        }
    status = ctl_table_print(t, stdout);
    ctl_table_free(t);
    return status;
}

/* --- backup verify --------------------------------------------------- */

static int add_check_row(struct ctl_table *t, const json_t *c)
{
    char corruptions[24], leaks[24], errors[24];

    snprintf(corruptions, sizeof(corruptions), "%" PRIu64,
             ctl_u64(c, "corruptions"));
    snprintf(leaks, sizeof(leaks), "%" PRIu64, ctl_u64(c, "leaks"));
    snprintf(errors, sizeof(errors), "%" PRIu64, ctl_u64(c, "check_errors"));
    return ctl_table_add(t, (const char *const[]){
        ctl_str(c, "id", "?"), corruptions, leaks, errors,
        json_is_true(json_object_get(c, "corrupt_bit")) ? "yes" : "no",
        ctl_str(c, "error", "-"),
    });
}

static void print_checksum(const json_t *sum)
{
    const json_t *match = json_object_get(sum, "match");
    char text[64];

    /* match is null when the sidecar never recorded one. */
    snprintf(text, sizeof(text), "%s (%s)",
             json_is_true(match) ? "match"
             : json_is_false(match) ? "MISMATCH" : "none recorded",
             ctl_str(sum, "algorithm", "?"));
    ctl_print_field("checksum", text);
    ctl_print_field("recorded", ctl_str(sum, "recorded", NULL));
    ctl_print_field("computed", ctl_str(sum, "computed", NULL));
}

int ctl_print_verify(const json_t *r)
{
    static const char *const headers[] = {
        "IMAGE", "CORRUPTIONS", "LEAKS", "CHECK ERRORS", "CORRUPT BIT",
        "ERROR",
    };
    const json_t *reads = json_object_get(r, "read");
    char size[32], text[96];

    ctl_print_field("backup", ctl_str(r, "id", NULL));
    ctl_print_field("result", json_is_true(json_object_get(r, "ok"))
                    ? "ok" : "FAILED");
    ctl_human_size(ctl_u64(reads, "bytes"), size, sizeof(size));
    snprintf(text, sizeof(text), "%s in %" PRIu64 " runs, %" PRIu64
             " errors", size, ctl_u64(reads, "runs"), ctl_u64(reads, "errors"));
    ctl_print_field("read", text);
    if (json_is_object(json_object_get(r, "checksum")))
        print_checksum(json_object_get(r, "checksum"));
    printf("\n");
    /* The image check of every backup of the chain, full first. */
    return ctl_print_table(6, headers, json_object_get(r, "checks"),
                           add_check_row);
}

/* --- backup prune ---------------------------------------------------- */

/* A cell for a name the daemon may leave empty: a busy VM is skipped
 * with no disk, a busy disk with no backup id. */
static const char *cell(const json_t *obj, const char *key)
{
    const char *s = ctl_str(obj, key, "");

    return *s ? s : "-";
}

static int add_action_row(struct ctl_table *t, const json_t *a, bool dry_run)
{
    const char *action = ctl_str(a, "action", "?");
    char detail[320];

    /* After a real consolidation, detail is the new full's id; in a dry
     * run, how many steps it would take. */
    if (!dry_run && strcmp(action, "consolidate") == 0)
        snprintf(detail, sizeof(detail), "into %s",
                 ctl_str(a, "detail", "?"));
    else
        snprintf(detail, sizeof(detail), "%s", ctl_str(a, "detail", "-"));
    return ctl_table_add(t, (const char *const[]){
        cell(a, "vm"), cell(a, "disk"), action, cell(a, "id"), detail,
    });
}

static int add_action_row_dry(struct ctl_table *t, const json_t *a)
{
    return add_action_row(t, a, true);
}

static int add_action_row_done(struct ctl_table *t, const json_t *a)
{
    return add_action_row(t, a, false);
}

int ctl_print_prune(const json_t *r)
{
    static const char *const headers[] = {
        "VM", "DISK", "ACTION", "BACKUP", "DETAIL",
    };
    const json_t *actions = json_object_get(r, "actions");
    bool dry_run = json_is_true(json_object_get(r, "dry_run"));

    if (json_array_size(actions) == 0) {
        printf("nothing to prune%s\n", dry_run ? " (dry run)" : "");
        return CTL_EXIT_OK;
    }
    if (dry_run)
        printf("dry run: nothing was changed\n\n");
    return ctl_print_table(5, headers, actions,
                           dry_run ? add_action_row_dry : add_action_row_done);
}

/* --- backup retention ------------------------------------------------ */

/* One rule of a policy object: its number, or "-" when null (not set). */
static void rule_cell(const json_t *policy, const char *rule, char *buf,
                      size_t len)
{
    const json_t *v = json_object_get(policy, rule);

    if (json_is_integer(v))
        snprintf(buf, len, "%" PRId64, (int64_t)json_integer_value(v));
    else
        snprintf(buf, len, "-");
}

static int add_rule_row(struct ctl_table *t, const json_t *r,
                        const char *label, const char *rule)
{
    char vm[24], repo[24], effective[24];

    rule_cell(json_object_get(r, "vm_retention"), rule, vm, sizeof(vm));
    rule_cell(json_object_get(r, "repository_retention"), rule, repo,
              sizeof(repo));
    rule_cell(json_object_get(r, "effective"), rule, effective,
              sizeof(effective));
    return ctl_table_add(t, (const char *const[]){
        label, vm, repo, effective });
}

int ctl_print_retention(const json_t *r)
{
    static const char *const headers[] = {
        "RULE", "VM", "REPOSITORY", "EFFECTIVE",
    };
    struct ctl_table *t = ctl_table_new(4, headers);
    int status;

    if (!t || add_rule_row(t, r, "keep last", "keep_last") < 0 ||
        add_rule_row(t, r, "keep days", "keep_days") < 0) {
        ctl_table_free(t);
        return ctl_fail(CTL_EXIT_ERROR, "out of memory");
    }
    ctl_print_field("vm", ctl_str(r, "vm", NULL));
    ctl_print_field("repository", ctl_str(r, "repository", NULL));
    printf("\n");
    status = ctl_table_print(t, stdout);
    ctl_table_free(t);
    return status;
}
