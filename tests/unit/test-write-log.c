/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of qcow2/write-log.c: the on-disk record layout documented in
 * write-log.h, read back byte by byte (little-endian) rather than through
 * the struct, so a layout change is caught.
 */
#include "config.h"

#include "qcow2/write-log.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum { REC_HDR = 24 };

static char dir[64];
static char log_path[128];

static void make_dir(void)
{
    const char *tmp = getenv("TMPDIR");

    snprintf(dir, sizeof(dir), "%s/wlog-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    cr_assert_not_null(mkdtemp(dir), "mkdtemp: %s", strerror(errno));
    snprintf(log_path, sizeof(log_path), "%s/log", dir);
}

static void remove_dir(void)
{
    unlink(log_path);
    rmdir(dir);
}

TestSuite(write_log, .init = make_dir, .fini = remove_dir);

static uint64_t le(const uint8_t *p, int bytes)
{
    uint64_t v = 0;

    for (int i = bytes - 1; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

/* Read the whole log; returns its size. */
static size_t slurp(uint8_t *buf, size_t cap)
{
    int fd = open(log_path, O_RDONLY);

    cr_assert_geq(fd, 0, "open log: %s", strerror(errno));
    ssize_t n = read(fd, buf, cap);
    cr_assert_geq(n, 0);
    close(fd);
    return (size_t)n;
}

static void expect_record(const uint8_t *p, uint32_t type, uint64_t off,
                          uint64_t len)
{
    cr_assert_eq(le(p, 4), 0x4c574453u, "bad magic");
    cr_assert_eq(memcmp(p, "SDWL", 4), 0, "magic must read 'SDWL' on disk");
    cr_assert_eq(le(p + 4, 4), type);
    cr_assert_eq(le(p + 8, 8), off);
    cr_assert_eq(le(p + 16, 8), len);
}

Test(write_log, record_header_is_24_bytes)
{
    cr_assert_eq(sizeof(struct wlog_record), REC_HDR);
}

Test(write_log, unset_or_empty_variable_means_no_log)
{
    unsetenv("SENDENSE_WRITE_LOG");
    cr_assert_null(write_log_open_from_env());
    setenv("SENDENSE_WRITE_LOG", "", 1);
    cr_assert_null(write_log_open_from_env());
    cr_assert_eq(access(log_path, F_OK), -1, "no file may be created");
    write_log_close(NULL);
}

Test(write_log, unopenable_path_gives_null)
{
    char bad[160];

    snprintf(bad, sizeof(bad), "%s/no-such-dir/log", dir);
    setenv("SENDENSE_WRITE_LOG", bad, 1);
    cr_assert_null(write_log_open_from_env());
}

Test(write_log, records_are_appended_in_order)
{
    uint8_t data[300], buf[4096];

    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = (uint8_t)(i * 7 + 3);
    setenv("SENDENSE_WRITE_LOG", log_path, 1);
    struct write_log *log = write_log_open_from_env();
    cr_assert_not_null(log);
    write_log_append(log, WLOG_WRITE, 0x123456789aull, sizeof(data), data);
    write_log_append(log, WLOG_FLUSH, 0, 0, NULL);
    write_log_append(log, WLOG_ZERO, 65536, 1ull << 33, NULL);
    write_log_append(log, WLOG_TRUNCATE, 1ull << 40, 0, NULL);
    write_log_append(log, WLOG_WRITE, 5, 1, "Z");
    write_log_close(log);

    size_t n = slurp(buf, sizeof(buf));
    cr_assert_eq(n, 5 * REC_HDR + sizeof(data) + 1, "log is %zu bytes", n);
    const uint8_t *p = buf;
    expect_record(p, WLOG_WRITE, 0x123456789aull, sizeof(data));
    cr_assert_eq(memcmp(p + REC_HDR, data, sizeof(data)), 0);
    p += REC_HDR + sizeof(data);
    expect_record(p, WLOG_FLUSH, 0, 0);
    p += REC_HDR;
    /* A zero record carries no data, however long its range. */
    expect_record(p, WLOG_ZERO, 65536, 1ull << 33);
    p += REC_HDR;
    expect_record(p, WLOG_TRUNCATE, 1ull << 40, 0);
    p += REC_HDR;
    expect_record(p, WLOG_WRITE, 5, 1);
    cr_assert_eq(p[REC_HDR], 'Z');
}

Test(write_log, two_logs_on_one_file_append_not_overwrite)
{
    uint8_t buf[256];

    setenv("SENDENSE_WRITE_LOG", log_path, 1);
    struct write_log *a = write_log_open_from_env();
    struct write_log *b = write_log_open_from_env();
    cr_assert(a && b);
    write_log_append(a, WLOG_WRITE, 1, 2, "aa");
    write_log_append(b, WLOG_WRITE, 3, 2, "bb");
    write_log_append(a, WLOG_FLUSH, 0, 0, NULL);
    write_log_close(a);
    write_log_close(b);

    cr_assert_eq(slurp(buf, sizeof(buf)), 3 * REC_HDR + 4);
    expect_record(buf, WLOG_WRITE, 1, 2);
    cr_assert_eq(memcmp(buf + REC_HDR, "aa", 2), 0);
    expect_record(buf + REC_HDR + 2, WLOG_WRITE, 3, 2);
    cr_assert_eq(memcmp(buf + 2 * REC_HDR + 2, "bb", 2), 0);
    expect_record(buf + 2 * REC_HDR + 4, WLOG_FLUSH, 0, 0);
}

Test(write_log, reopening_keeps_earlier_records)
{
    uint8_t buf[256];

    setenv("SENDENSE_WRITE_LOG", log_path, 1);
    struct write_log *log = write_log_open_from_env();
    cr_assert_not_null(log);
    write_log_append(log, WLOG_FLUSH, 0, 0, NULL);
    write_log_close(log);
    log = write_log_open_from_env();
    cr_assert_not_null(log);
    write_log_append(log, WLOG_TRUNCATE, 4096, 0, NULL);
    write_log_close(log);

    cr_assert_eq(slurp(buf, sizeof(buf)), 2 * REC_HDR);
    expect_record(buf, WLOG_FLUSH, 0, 0);
    expect_record(buf + REC_HDR, WLOG_TRUNCATE, 4096, 0);
}
