/* SPDX-License-Identifier: MIT */
/* sendense-ctl's printing helpers (ctl/output.c): human sizes at every
 * unit boundary, UTC times, and table alignment; and the default output
 * of backup delete|verify|prune and restore ... (ctl/print-*.c). */
#include "config.h"

#include "ctl/ctl.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void expect_size(uint64_t bytes, const char *want)
{
    char buf[32];

    ctl_human_size(bytes, buf, sizeof(buf));
    cr_assert_str_eq(buf, want, "%llu bytes", (unsigned long long)bytes);
}

Test(size, bytes_below_one_kib_are_exact)
{
    expect_size(0, "0 B");
    expect_size(512, "512 B");
    expect_size(1023, "1023 B");
}

Test(size, binary_units_with_three_digits)
{
    expect_size(1024, "1 KiB");
    expect_size(3 << 19, "1.5 MiB");
    expect_size(8ull << 20, "8 MiB");
    expect_size(999ull << 20, "999 MiB");
    /* 1000 MiB and more move to GiB: never four digits. */
    expect_size(1000ull << 20, "0.977 GiB");
    expect_size(10ull << 30, "10 GiB");
    expect_size(3ull << 39, "1.5 TiB");
    expect_size(UINT64_MAX, "16 EiB");
}

Test(time, rfc3339_utc_is_shown_with_its_zone)
{
    char buf[48];

    ctl_human_time("2025-10-05T13:04:10Z", buf, sizeof(buf));
    cr_assert_str_eq(buf, "2025-10-05 13:04:10 UTC");
    ctl_human_time(NULL, buf, sizeof(buf));
    cr_assert_str_eq(buf, "-");
    /* Not UTC, or not a time: shown as it came, never misread. */
    ctl_human_time("2025-10-05T13:04:10+02:00", buf, sizeof(buf));
    cr_assert_str_eq(buf, "2025-10-05T13:04:10+02:00");
    ctl_human_time("yesterday", buf, sizeof(buf));
    cr_assert_str_eq(buf, "yesterday");
}

Test(time, milliseconds_since_the_epoch)
{
    char buf[48];

    ctl_human_time_ms(1759669450123, buf, sizeof(buf));
    cr_assert_str_eq(buf, "2025-10-05 13:04:10 UTC");
    ctl_human_time_ms(0, buf, sizeof(buf));
    cr_assert_str_eq(buf, "-");
}

Test(table, columns_are_aligned_without_trailing_blanks)
{
    static const char *const headers[] = { "NAME", "SIZE", "PATH" };
    struct ctl_table *t = ctl_table_new(3, headers);
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);

    cr_assert_not_null(t);
    cr_assert_not_null(out);
    cr_assert_eq(ctl_table_add(t, (const char *const[]){
        "a-long-name", "1 GiB", "/x" }), 0);
    cr_assert_eq(ctl_table_add(t, (const char *const[]){ "b", NULL, "/y" }),
                 0);
    cr_assert_eq(ctl_table_print(t, out), 0);
    fclose(out);
    cr_assert_str_eq(text,
                     "NAME         SIZE   PATH\n"
                     "a-long-name  1 GiB  /x\n"
                     "b            -      /y\n");
    free(text);
    ctl_table_free(t);
    ctl_table_free(NULL);
}

/* --- the default output of the forwarded commands ---------------------
 * Canned results in the shapes docs/SENDENSED.md gives, printed by
 * print-retention.c and print-restore.c; what they print is compared in
 * full. */

/* What fn prints for the JSON text result; it must return 0. */
static char *printed(ctl_human_fn *fn, const char *result)
{
    json_error_t jerr;
    json_t *r = json_loads(result, 0, &jerr);
    FILE *tmp = tmpfile();
    int saved, status;
    char *text;
    long len;

    cr_assert_not_null(r, "canned result: %s", jerr.text);
    cr_assert_not_null(tmp);
    fflush(stdout);
    saved = dup(STDOUT_FILENO);
    cr_assert(saved >= 0 && dup2(fileno(tmp), STDOUT_FILENO) >= 0);
    status = fn(r);
    fflush(stdout);
    dup2(saved, STDOUT_FILENO);
    close(saved);
    json_decref(r);
    cr_assert_eq(status, 0);
    len = lseek(fileno(tmp), 0, SEEK_END);   /* written through fd 1 */
    cr_assert(len >= 0);
    text = calloc(1, (size_t)len + 1);
    cr_assert_not_null(text);
    cr_assert_eq(pread(fileno(tmp), text, (size_t)len, 0), len);
    fclose(tmp);
    return text;
}

static void expect_printed(ctl_human_fn *fn, const char *result,
                           const char *want)
{
    char *got = printed(fn, result);

    cr_assert_str_eq(got, want, "printed:\n%s\nwanted:\n%s", got, want);
    free(got);
}

Test(retention, delete_lists_every_backup_removed_and_a_merge)
{
    expect_printed(ctl_print_delete,
        "{\"vm\": \"pg\", \"id\": \"incr-2\", \"disks\": ["
        " {\"disk\": \"disk0\", \"removed\": [\"incr-3\", \"incr-2\"]},"
        " {\"disk\": \"disk1\", \"removed\": [],"
        "  \"merged_into\": \"full-9\"}]}",
        "VM  DISK   BACKUP  RESULT\n"
        "pg  disk0  incr-3  removed\n"
        "pg  disk0  incr-2  removed\n"
        "pg  disk1  incr-2  merged into full-9\n");
}

Test(retention, verify_ok_with_checksum)
{
    expect_printed(ctl_print_verify,
        "{\"id\": \"incr-2\", \"checks\": ["
        " {\"id\": \"full-1\", \"corruptions\": 0, \"leaks\": 0,"
        "  \"check_errors\": 0, \"corrupt_bit\": false},"
        " {\"id\": \"incr-2\", \"corruptions\": 0, \"leaks\": 3,"
        "  \"check_errors\": 0, \"corrupt_bit\": false}],"
        " \"read\": {\"runs\": 4, \"bytes\": 1572864, \"errors\": 0},"
        " \"checksum\": {\"algorithm\": \"sha256\", \"recorded\": \"ab\","
        "  \"computed\": \"ab\", \"match\": true}, \"ok\": true}",
        "backup           incr-2\n"
        "result           ok\n"
        "read             1.5 MiB in 4 runs, 0 errors\n"
        "checksum         match (sha256)\n"
        "recorded         ab\n"
        "computed         ab\n"
        "\n"
        "IMAGE   CORRUPTIONS  LEAKS  CHECK ERRORS  CORRUPT BIT  ERROR\n"
        "full-1  0            0      0             no           -\n"
        "incr-2  0            3      0             no           -\n");
}

Test(retention, verify_failed_says_why)
{
    expect_printed(ctl_print_verify,
        "{\"id\": \"full-1\", \"checks\": ["
        " {\"id\": \"full-1\", \"corruptions\": 2, \"leaks\": 0,"
        "  \"check_errors\": 1, \"corrupt_bit\": true,"
        "  \"error\": \"bad L1 table\"}],"
        " \"read\": {\"runs\": 1, \"bytes\": 512, \"errors\": 1},"
        " \"checksum\": {\"algorithm\": \"sha256\", \"recorded\": null,"
        "  \"computed\": \"cd\", \"match\": null}, \"ok\": false}",
        "backup           full-1\n"
        "result           FAILED\n"
        "read             512 B in 1 runs, 1 errors\n"
        "checksum         none recorded (sha256)\n"
        "recorded         -\n"
        "computed         cd\n"
        "\n"
        "IMAGE   CORRUPTIONS  LEAKS  CHECK ERRORS  CORRUPT BIT  ERROR\n"
        "full-1  2            0      1             yes          "
        "bad L1 table\n");
    /* Without --checksum there is no checksum object, nor its lines. */
    expect_printed(ctl_print_verify,
        "{\"id\": \"full-1\", \"checks\": [], \"ok\": false,"
        " \"read\": {\"runs\": 0, \"bytes\": 0, \"errors\": 0}}",
        "backup           full-1\n"
        "result           FAILED\n"
        "read             0 B in 0 runs, 0 errors\n"
        "\n"
        "IMAGE  CORRUPTIONS  LEAKS  CHECK ERRORS  CORRUPT BIT  ERROR\n");
}

Test(retention, prune_one_row_per_action)
{
    expect_printed(ctl_print_prune,
        "{\"dry_run\": false, \"actions\": ["
        " {\"vm\": \"pg\", \"disk\": \"disk0\", \"action\": \"remove\","
        "  \"id\": \"full-1\"},"
        " {\"vm\": \"pg\", \"disk\": \"disk0\", \"action\": \"consolidate\","
        "  \"id\": \"full-3\", \"detail\": \"full-4\"},"
        " {\"vm\": \"pg\", \"disk\": \"disk1\", \"action\": \"skip\","
        "  \"id\": \"\", \"detail\": \"busy: an export\"},"
        " {\"vm\": \"db\", \"disk\": \"\", \"action\": \"skip\","
        "  \"id\": \"\", \"detail\": \"busy: a job runs\"}]}",
        "VM  DISK   ACTION       BACKUP  DETAIL\n"
        "pg  disk0  remove       full-1  -\n"
        "pg  disk0  consolidate  full-3  into full-4\n"
        "pg  disk1  skip         -       busy: an export\n"
        "db  -      skip         -       busy: a job runs\n");
}

Test(retention, prune_dry_run_and_nothing_to_do)
{
    expect_printed(ctl_print_prune,
        "{\"dry_run\": true, \"actions\": ["
        " {\"vm\": \"pg\", \"disk\": \"disk0\", \"action\": \"consolidate\","
        "  \"id\": \"full-3\", \"detail\": \"2 step(s)\"}]}",
        "dry run: nothing was changed\n"
        "\n"
        "VM  DISK   ACTION       BACKUP  DETAIL\n"
        "pg  disk0  consolidate  full-3  2 step(s)\n");
    expect_printed(ctl_print_prune, "{\"dry_run\": false, \"actions\": []}",
                   "nothing to prune\n");
    expect_printed(ctl_print_prune, "{\"dry_run\": true, \"actions\": []}",
                   "nothing to prune (dry run)\n");
}

#define POINT "\"repository\": \"main\", \"vm\": \"pg\", \"disk\": \"disk0\"," \
              " \"id\": \"full-1\", \"created\": 1759669450"
#define POINT_LINES                             \
    "vm               pg\n"                     \
    "disk             disk0\n"                  \
    "backup           full-1\n"                 \
    "repository       main\n"                   \
    "created          2025-10-05 13:04:10 UTC\n"

Test(restore, export_and_unexport)
{
    expect_printed(ctl_print_restore_export,
        "{\"name\": \"restore-x\", \"uri\": \"nbd://h/restore-x\", " POINT "}",
        "name             restore-x\n"
        "uri              nbd://h/restore-x\n" POINT_LINES);
    expect_printed(ctl_print_restore_unexport, "{\"name\": \"restore-x\"}",
                   "restore export restore-x removed\n");
}

#define VOLUMES                                                         \
    "[{\"name\": \"disk\", \"kind\": \"disk\", \"offset\": 0,"          \
    "  \"size\": 0, \"fstype\": null, \"mounted\": false,"              \
    "  \"note\": \"partition table\"},"                                 \
    " {\"name\": \"p1\", \"kind\": \"partition\", \"offset\": 1048576," \
    "  \"size\": 67108864, \"fstype\": \"ext4\", \"mounted\": true}]"

Test(restore, mount_lists_its_volumes_and_umount)
{
    expect_printed(ctl_print_restore_mount,
        "{\"mount\": \"mnt-0a1b2c3d\", \"export\": \"restore-mnt-0a1b2c3d\", "
        POINT ", \"volumes\": " VOLUMES "}",
        "mount            mnt-0a1b2c3d\n"
        "export           restore-mnt-0a1b2c3d\n" POINT_LINES
        "\n"
        "VOLUME  KIND       FSTYPE  OFFSET  SIZE    MOUNTED  NOTE\n"
        "disk    disk       -       0 B     -       no       partition table\n"
        "p1      partition  ext4    1 MiB   64 MiB  yes      -\n");
    expect_printed(ctl_print_restore_umount, "{\"mount\": \"mnt-0a1b2c3d\"}",
                   "mount mnt-0a1b2c3d unmounted\n");
}

Test(restore, list_has_a_table_of_exports_and_one_of_mounts)
{
    expect_printed(ctl_print_restore_list,
        "{\"exports\": [{\"name\": \"restore-x\", \"uri\": \"nbd://h/x\", "
        POINT "}], \"mounts\": [{\"mount\": \"mnt-0a1b2c3d\", "
        "\"export\": \"restore-mnt-0a1b2c3d\", " POINT ", \"volumes\": "
        VOLUMES "}]}",
        "EXPORT     VM  DISK   BACKUP  CREATED                  URI\n"
        "restore-x  pg  disk0  full-1  2025-10-05 13:04:10 UTC  nbd://h/x\n"
        "\n"
        "MOUNT         VM  DISK   BACKUP  CREATED                  VOLUMES\n"
        "mnt-0a1b2c3d  pg  disk0  full-1  2025-10-05 13:04:10 UTC  "
        "2 (1 mounted)\n");
    expect_printed(ctl_print_restore_list, "{\"exports\": [], \"mounts\": []}",
        "EXPORT  VM  DISK  BACKUP  CREATED  URI\n"
        "\n"
        "MOUNT  VM  DISK  BACKUP  CREATED  VOLUMES\n");
}

Test(restore, ls_is_a_compact_ls_l)
{
    expect_printed(ctl_print_restore_ls,
        "{\"entries\": ["
        " {\"name\": \"bin\", \"type\": \"dir\", \"size\": 4096,"
        "  \"mode\": 493, \"mtime\": 1759669450},"
        " {\"name\": \"big file.bin\", \"type\": \"file\", \"size\": 1048576,"
        "  \"mode\": 420, \"mtime\": 1759669451},"
        " {\"name\": \"link\", \"type\": \"symlink\", \"size\": 7,"
        "  \"mode\": 511, \"mtime\": 0},"
        " {\"name\": \"su\", \"type\": \"file\", \"size\": 10,"
        "  \"mode\": 3565, \"mtime\": 1759669450},"
        " {\"name\": \"tmp\", \"type\": \"dir\", \"size\": 0,"
        "  \"mode\": 1022, \"mtime\": 1759669450}]}",
        "TYPE     SIZE   MODE       MTIME                    NAME\n"
        "dir      4 KiB  rwxr-xr-x  2025-10-05 13:04:10 UTC  bin\n"
        "file     1 MiB  rw-r--r--  2025-10-05 13:04:11 UTC  big file.bin\n"
        "symlink  7 B    rwxrwxrwx  -                        link\n"
        "file     10 B   rwsr-sr-x  2025-10-05 13:04:10 UTC  su\n"
        "dir      0 B    rwxrwxrwT  2025-10-05 13:04:10 UTC  tmp\n");
}

Test(restore, stat_and_extract)
{
    expect_printed(ctl_print_restore_stat,
        "{\"name\": \"big file.bin\", \"type\": \"file\", \"size\": 1572864,"
        " \"mode\": 416, \"mtime\": 1759669450}",
        "name             big file.bin\n"
        "type             file\n"
        "size             1.5 MiB (1572864 bytes)\n"
        "mode             rw-r----- (0640)\n"
        "mtime            2025-10-05 13:04:10 UTC\n");
    expect_printed(ctl_print_restore_extract,
        "{\"dest\": \"/srv/out/a.bin\", \"format\": \"file\", \"bytes\": 100}",
        "extracted to /srv/out/a.bin: file, 100 B (100 bytes)\n");
    expect_printed(ctl_print_restore_extract,
        "{\"dest\": \"/srv/out/etc.tar\", \"format\": \"tar\","
        " \"bytes\": 20480}",
        "extracted to /srv/out/etc.tar: tar archive, 20 KiB (20480 bytes)\n");
}
