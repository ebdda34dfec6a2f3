/* SPDX-License-Identifier: MIT */
/*
 * The catalog's naming rules: ids and disk names, timestamps, backup
 * file names, export names, and atomic files (common/atomic-file.c).
 */
#include "config.h"

#include "catalog/export-name.h"
#include "catalog/layout.h"
#include "catalog/names.h"
#include "catalog/stamp.h"
#include "common/atomic-file.h"

#include "catalog-fixture.h"

#include <errno.h>
#include <openssl/evp.h>

/* 2025-10-05T12:00:00Z */
#define T0 ((cat_time_t)1759665600)

/* --- names ------------------------------------------------------------ */

Test(names, accepts_the_allowed_charset)
{
    const char *good[] = { "ctx-pgtest2", "a", "A.b_c-9", "0vm", "x..y" };

    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        cr_expect_eq(cat_name_check("id", good[i], NULL), 0, "%s", good[i]);
}

Test(names, rejects_hostile_names_with_a_reason)
{
    const char *bad[] = { "", ".", "..", "../etc", "a/b", "/abs", ".hidden",
                          "-opt", "a b", "tab\there", "nl\n", "del\x7f",
                          "ctx$", "ü" };
    struct sd_error e;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        sd_error_clear(&e);
        cr_expect_eq(cat_name_check("VM context id", bad[i], &e), -EINVAL,
                     "accepted \"%s\"", bad[i]);
        cr_expect_eq(e.code, -EINVAL);
        cr_expect(strstr(e.msg, "VM context id") != NULL, "%s", e.msg);
    }
}

Test(names, length_limit_is_128_bytes)
{
    char name[CAT_NAME_MAX + 2];
    struct sd_error e;

    memset(name, 'a', sizeof(name));
    name[CAT_NAME_MAX] = '\0';
    cr_expect_eq(cat_name_check("id", name, NULL), 0);
    name[CAT_NAME_MAX] = 'a';
    name[CAT_NAME_MAX + 1] = '\0';
    cr_expect_eq(cat_name_check("id", name, &e), -EINVAL);
    cr_expect(strstr(e.msg, "longer than 128") != NULL, "%s", e.msg);
}

Test(names, control_characters_are_named_by_position)
{
    struct sd_error e;

    cr_assert_eq(cat_name_check("disk name", "ab\x01", &e), -EINVAL);
    cr_expect(strstr(e.msg, "0x01 at byte 2") != NULL, "%s", e.msg);
}

Test(names, disk_names_are_disk_N)
{
    const char *good[] = { "disk0", "disk7", "disk10", "disk9999" };
    const unsigned want[] = { 0, 7, 10, 9999 };
    const char *bad[] = { "disk", "disk01", "disk-1", "disk10000", "Disk0",
                          "disk0/", "disk 1", "disk1a", "sda", "" };
    unsigned idx;

    for (size_t i = 0; i < 4; i++) {
        cr_expect_eq(cat_disk_name_parse(good[i], &idx, NULL), 0);
        cr_expect_eq(idx, want[i]);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_expect_eq(cat_disk_name_parse(bad[i], &idx, NULL), -EINVAL,
                     "accepted \"%s\"", bad[i]);
}

Test(names, free_text_caps_length_and_control_chars)
{
    cr_expect_eq(cat_text_check("t", "52 de c0/4711 ok", 100, NULL), 0);
    cr_expect_eq(cat_text_check("t", "12345", 4, NULL), -EINVAL);
    cr_expect_eq(cat_text_check("t", "a\nb", 100, NULL), -EINVAL);
}

/* --- timestamps ------------------------------------------------------- */

Test(stamp, formats_utc)
{
    char s[CAT_STAMP_LEN + 1], r[CAT_RFC3339_LEN + 1];

    cr_assert_eq(cat_stamp_format(T0, s), 0);
    cr_expect_str_eq(s, "20251005T120000Z");
    cr_assert_eq(cat_rfc3339_format(T0 + 61, r), 0);
    cr_expect_str_eq(r, "2025-10-05T12:01:01Z");
    cr_assert_eq(cat_stamp_format(0, s), 0);
    cr_expect_str_eq(s, "19700101T000000Z");
    cr_expect_eq(cat_stamp_format(-1, s), -EINVAL);
}

Test(stamp, round_trips)
{
    unsigned seed = 7;
    char s[CAT_STAMP_LEN + 1], r[CAT_RFC3339_LEN + 1];

    for (int i = 0; i < 20000; i++) {
        cat_time_t t = ((cat_time_t)rand_r(&seed) << 16 ^ rand_r(&seed)) %
                       253402300800LL;
        cat_time_t back = -1;
        cr_assert_eq(cat_stamp_format(t, s), 0);
        cr_assert_eq(cat_stamp_parse(s, &back), 0, "%s", s);
        cr_assert_eq(back, t, "%s", s);
        cr_assert_eq(cat_rfc3339_format(t, r), 0);
        cr_assert_eq(cat_rfc3339_parse(r, &back), 0, "%s", r);
        cr_assert_eq(back, t, "%s", r);
    }
}

Test(stamp, parsers_are_strict)
{
    const char *bad_stamps[] = {
        "20250230T000000Z", "20230229T000000Z", "20251005T240000Z",
        "20251005T126000Z", "20251005T120060Z", "20251305T120000Z",
        "20251000T120000Z", "20251005t120000Z", "20251005T120000z",
        "20251005T120000", "20251005T120000Z0", "2025-10-05T12:00:00Z",
        "2025100 T120000Z", "+0251005T120000Z", "19691231T235959Z", "",
    };
    const char *bad_rfc[] = {
        "2025-10-05 12:00:00Z", "2025-10-05T12:00:00",
        "2025-10-05T12:00:00+00:00",
        "2025-10-05T12:00:00.5Z", "2025-02-29T00:00:00Z", "20251005T120000Z",
    };
    cat_time_t t;

    for (size_t i = 0; i < sizeof(bad_stamps) / sizeof(bad_stamps[0]); i++)
        cr_expect_eq(cat_stamp_parse(bad_stamps[i], &t), -EINVAL, "%s",
                     bad_stamps[i]);
    for (size_t i = 0; i < sizeof(bad_rfc) / sizeof(bad_rfc[0]); i++)
        cr_expect_eq(cat_rfc3339_parse(bad_rfc[i], &t), -EINVAL, "%s",
                     bad_rfc[i]);
    cr_expect_eq(cat_stamp_parse("20240229T235959Z", &t), 0);
}

/* Two backups in one second get successive stamps; a clock that steps
 * back never produces a stamp at or before one in use. */
Test(stamp, next_stamp_never_repeats)
{
    cr_expect_eq(cat_next_stamp(T0, -1), T0);
    cr_expect_eq(cat_next_stamp(T0, T0 - 5), T0);
    cr_expect_eq(cat_next_stamp(T0, T0), T0 + 1);
    cr_expect_eq(cat_next_stamp(T0 - 3600, T0), T0 + 1);

    cat_time_t last = -1;
    for (int i = 0; i < 10; i++) {       /* ten starts in one second */
        cat_time_t s = cat_next_stamp(T0, last);
        cr_assert_gt(s, last);
        last = s;
    }
    cr_expect_eq(last, T0 + 9);
}

/* --- backup ids and file names --------------------------------------- */

Test(layout, ids_and_file_roles)
{
    char id[CAT_ID_LEN + 1], got[CAT_ID_LEN + 1];
    enum cat_id_kind kind;
    cat_time_t t;

    cr_assert_eq(cat_id_make(CAT_ID_INCR, T0, id), 0);
    cr_expect_str_eq(id, "incr-20251005T120000Z");
    cr_assert_eq(cat_id_parse(id, &kind, &t), 0);
    cr_expect_eq(kind, CAT_ID_INCR);
    cr_expect_eq(t, T0);

    cr_expect_eq(cat_file_classify("full-20251005T120000Z.qcow2", got),
                 CAT_FILE_IMAGE);
    cr_expect_str_eq(got, "full-20251005T120000Z");
    cr_expect_eq(cat_file_classify("incr-20251005T120000Z.json", got),
                 CAT_FILE_SIDECAR);
    cr_expect_eq(cat_file_classify(".incr-20251005T120000Z.json.a1B2c3.tmp",
                                   got), CAT_FILE_TEMP);
    const char *other[] = { "full-20251005T120000Z.qcow2.json",
                            "full-20251305T120000Z.qcow2", "full-x.json",
                            "diff-20251005T120000Z.qcow2", "notes.txt",
                            "full-20251005T120000Z.QCOW2", ".tmp" };
    for (size_t i = 0; i < sizeof(other) / sizeof(other[0]); i++)
        cr_expect_eq(cat_file_classify(other[i], got), CAT_FILE_OTHER, "%s",
                     other[i]);
}

/* --- export names ----------------------------------------------------- */

static void export_name(const char *ctx, unsigned disk, bool incr,
                        char out[CAT_EXPORT_NAME_MAX + 1])
{
    struct sd_error e = { 0 };

    cr_assert_eq(cat_export_name(ctx, disk, incr, T0, out, &e), 0,
                 "%s: %s", ctx, e.msg);
}

static char *repeat(char c, size_t n)
{
    char *s = malloc(n + 1);

    cr_assert_not_null(s);
    memset(s, c, n);
    s[n] = '\0';
    return s;
}

Test(export_name, exact_format)
{
    char name[CAT_EXPORT_NAME_MAX + 1];

    export_name("ctx-pgtest2", 0, false, name);
    cr_expect_str_eq(name, "backup-ctx-pgtest2-disk0-full-20251005T120000");
    export_name("ctx-pgtest2", 12, true, name);
    cr_expect_str_eq(name, "backup-ctx-pgtest2-disk12-incr-20251005T120000");
}

Test(export_name, never_longer_than_63)
{
    const unsigned disks[] = { 0, 9, 10, 99, 100, 9999 };
    char name[CAT_EXPORT_NAME_MAX + 1];

    for (size_t len = 1; len <= CAT_NAME_MAX; len++) {
        char *ctx = repeat('v', len);
        for (size_t d = 0; d < sizeof(disks) / sizeof(disks[0]); d++) {
            export_name(ctx, disks[d], d % 2, name);
            cr_assert_leq(strlen(name), 63, "%s", name);
            /* A short id is kept whole. */
            if (strlen(name) < 63)
                cr_assert(strstr(name, ctx) == name + 7, "%s", name);
        }
        free(ctx);
    }
}

Test(export_name, cut_at_the_budget_keeps_shorter_ids_whole)
{
    char name[CAT_EXPORT_NAME_MAX + 1];
    char *ctx28 = repeat('c', 28), *ctx29 = repeat('c', 29);

    /* disk0: 33 fixed bytes + 1 digit leave 29 for the id. */
    export_name(ctx28, 0, false, name);
    cr_expect_eq(strlen(name), 62);
    cr_expect(strstr(name, ctx28) != NULL, "%s", name);
    export_name(ctx29, 0, false, name);
    cr_expect_eq(strlen(name), 63);
    cr_expect(strstr(name, ctx29) == NULL, "%s", name);
    free(ctx28);
    free(ctx29);
}

/* The tail of a cut id is the first 12 hex digits of SHA-256 over the
 * whole id: computed here independently and compared. */
Test(export_name, hash_covers_the_whole_id)
{
    const char *ctx = "vcenter-datacenter-01.example.com-vm-123456-uuid-"
                      "4213c0ff-eeee-0000";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdlen;
    char hex[13], name[CAT_EXPORT_NAME_MAX + 1], want[64];

    cr_assert(EVP_Digest(ctx, strlen(ctx), md, &mdlen, EVP_sha256(), NULL));
    for (int i = 0; i < 6; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    export_name(ctx, 3, true, name);
    snprintf(want, sizeof(want), "backup-%.16s-%s-disk3-incr-20251005T120000",
             ctx, hex);
    cr_expect_str_eq(name, want);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(a, b);
}

Test(export_name, long_ids_sharing_a_prefix_do_not_collide)
{
    enum { N = 2000 };
    static char names[N][CAT_EXPORT_NAME_MAX + 1];
    char ctx[CAT_NAME_MAX + 1];

    for (int i = 0; i < N; i++) {
        /* Identical for 100 bytes; they differ only at the very end. */
        snprintf(ctx, sizeof(ctx), "%s-%d",
                 "a-very-long-vcenter-context-id-that-goes-on-and-on-"
                 "and-on-past-any-budget-for-export-names-xxxxxxxxx", i);
        export_name(ctx, 0, false, names[i]);
    }
    qsort(names, N, sizeof(names[0]), cmp_str);
    for (int i = 1; i < N; i++)
        cr_assert_str_neq(names[i], names[i - 1]);
}

/* An id that looks exactly like another id's cut form still gets its own
 * name: ids of the budget's length are cut too. */
Test(export_name, an_id_shaped_like_a_cut_form_does_not_collide)
{
    char *longer = repeat('L', 90);
    char a[CAT_EXPORT_NAME_MAX + 1], b[CAT_EXPORT_NAME_MAX + 1];
    char mimic[CAT_NAME_MAX + 1];

    export_name(longer, 0, false, a);
    /* Cut form = the 29 bytes after "backup-". */
    snprintf(mimic, sizeof(mimic), "%.29s", a + 7);
    cr_assert_eq(strlen(mimic), 29);
    export_name(mimic, 0, false, b);
    cr_expect_str_neq(a, b);
    free(longer);
}

Test(export_name, rejects_bad_input)
{
    char name[CAT_EXPORT_NAME_MAX + 1];
    struct sd_error e;

    cr_expect_eq(cat_export_name("../x", 0, false, T0, name, &e), -EINVAL);
    cr_expect_eq(cat_export_name("ok", 10000, false, T0, name, &e), -EINVAL);
    cr_expect_eq(cat_export_name("ok", 0, false, -5, name, &e), -EINVAL);
}

/* --- atomic files ----------------------------------------------------- */

Test(atomic_file, writes_replaces_and_leaves_no_temp)
{
    char *dir = fx_mkdtemp();
    char *path = fx_path(dir, "state.json");
    struct sd_error e = { 0 };
    struct stat st;

    cr_assert_eq(sd_atomic_write(path, "first", 5, 0640, &e), 0, "%s", e.msg);
    char *text = fx_read(path);
    cr_expect_str_eq(text, "first");
    free(text);
    cr_assert_eq(sd_atomic_write(path, "second!", 7, 0644, &e), 0, "%s",
                 e.msg);
    text = fx_read(path);
    cr_expect_str_eq(text, "second!");
    free(text);
    cr_assert_eq(stat(path, &st), 0);
    cr_expect_eq(st.st_mode & 0777, 0644);
    cr_expect_eq(fx_count(dir), 1, "a temporary file was left behind");
    free(path);
    fx_rm_rf(dir);
}

Test(atomic_file, failure_names_the_path_and_leaves_nothing)
{
    char *dir = fx_mkdtemp();
    char *path = fx_path(dir, "missing/state.json");
    struct sd_error e = { 0 };

    cr_expect_eq(sd_atomic_write(path, "x", 1, 0644, &e), -ENOENT);
    cr_expect(strstr(e.msg, "state.json") != NULL, "%s", e.msg);
    cr_expect_eq(fx_count(dir), 0);
    free(path);
    fx_rm_rf(dir);
}

/* The rename fails (the target is a folder): the temporary file, already
 * written, is removed again. */
Test(atomic_file, failed_rename_removes_the_temp_file)
{
    char *dir = fx_mkdtemp();
    char *path = fx_path(dir, "target");
    struct sd_error e = { 0 };

    fx_mkdir(dir, "target");
    fx_write(path, "inside", "keep");
    cr_expect_lt(sd_atomic_write(path, "x", 1, 0644, &e), 0);
    cr_expect(strstr(e.msg, "rename") != NULL, "%s", e.msg);
    cr_expect_eq(fx_count(dir), 1, "the temporary file was left behind");
    free(path);
    fx_rm_rf(dir);
}

Test(atomic_file, durable_remove_and_mkdir)
{
    char *dir = fx_mkdtemp();
    char *path = fx_path(dir, "f");
    char *sub = fx_path(dir, "sub");
    struct sd_error e = { 0 };

    fx_write(dir, "f", "data");
    cr_expect_eq(sd_durable_remove(path, &e), 0, "%s", e.msg);
    cr_expect(!fx_exists(dir, "f"));
    cr_expect_eq(sd_durable_remove(path, &e), -ENOENT);
    cr_expect_eq(sd_durable_mkdir(sub, &e), 0, "%s", e.msg);
    cr_expect_eq(sd_durable_mkdir(sub, &e), 0, "an existing folder is fine");
    fx_write(dir, "plain", "x");
    char *plain = fx_path(dir, "plain");
    cr_expect_eq(sd_durable_mkdir(plain, &e), -ENOTDIR);
    /* A repository root deep in folders nobody made yet. */
    char *deep = fx_path(dir, "a/b/c");
    cr_expect_eq(sd_durable_mkdir(deep, &e), -ENOENT);
    cr_expect_eq(sd_durable_mkdir_parents(deep, &e), 0, "%s", e.msg);
    struct stat st;
    cr_expect(stat(deep, &st) == 0 && S_ISDIR(st.st_mode));
    cr_expect_eq(sd_durable_mkdir_parents(deep, &e), 0, "existing is fine");
    char *under_file = fx_path(dir, "plain/x/y");
    cr_expect_eq(sd_durable_mkdir_parents(under_file, &e), -ENOTDIR);
    free(under_file);
    free(deep);
    free(plain);
    free(sub);
    free(path);
    fx_rm_rf(dir);
}

Test(atomic_file, temp_names)
{
    cr_expect(sd_atomic_is_temp_name(".vm.json.Ab3xYz.tmp"));
    cr_expect(sd_atomic_is_temp_name(".x.123456.tmp"));
    cr_expect(!sd_atomic_is_temp_name("vm.json.Ab3xYz.tmp"));
    cr_expect(!sd_atomic_is_temp_name(".Ab3xYz.tmp"));
    cr_expect(!sd_atomic_is_temp_name(".vm.json"));
    cr_expect(!sd_atomic_is_temp_name(".tmp"));
}
