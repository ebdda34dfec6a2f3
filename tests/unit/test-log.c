/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of common/log.c: lines on stderr, one write() each, or kept
 * while the thread holds the log and written whole at release.
 */
#include "config.h"

#include "common/log.h"

#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int saved_stderr = -1;
static char capture_path[] = "/tmp/sd-test-log.XXXXXX";
static int capture_fd = -1;

/* stderr goes to a file the test reads back. */
static void capture(void)
{
    capture_fd = mkstemp(capture_path);
    cr_assert_geq(capture_fd, 0);
    saved_stderr = dup(STDERR_FILENO);
    cr_assert_geq(saved_stderr, 0);
    cr_assert_eq(dup2(capture_fd, STDERR_FILENO), STDERR_FILENO);
    sd_log_set_timestamps(0);
}

static void restore(void)
{
    dup2(saved_stderr, STDERR_FILENO);
    close(saved_stderr);
    close(capture_fd);
    unlink(capture_path);
}

/* What was written so far (static buffer, NUL-terminated). */
static const char *captured(void)
{
    static char buf[256 * 1024];
    ssize_t n = pread(capture_fd, buf, sizeof(buf) - 1, 0);

    cr_assert_geq(n, 0);
    buf[n] = '\0';
    return buf;
}

TestSuite(log, .init = capture, .fini = restore);

Test(log, lines_go_out_at_once_when_not_held)
{
    sd_log_info("one %d", 1);
    cr_assert_str_eq(captured(), "info: one 1\n");
    sd_log_warn("two");
    cr_assert_str_eq(captured(), "info: one 1\nwarning: two\n");
}

Test(log, held_lines_wait_for_the_last_release)
{
    sd_log_hold();
    sd_log_info("a");
    sd_log_hold();
    sd_log_error("b");
    sd_log_release();
    cr_assert_str_eq(captured(), "", "written before the outer release");
    sd_log_info("c");
    sd_log_release();
    cr_assert_str_eq(captured(), "info: a\nerror: b\ninfo: c\n");
    sd_log_release();           /* one release too many: no effect */
    sd_log_info("d");
    cr_assert_str_eq(captured(), "info: a\nerror: b\ninfo: c\ninfo: d\n");
}

/* More than the buffer holds: written in whole lines as it fills, all in
 * order, none lost or cut. */
Test(log, a_full_buffer_is_written_in_whole_lines)
{
    char expect[200 * 1024];
    size_t len = 0;

    sd_log_hold();
    for (int i = 0; i < 3000; i++) {
        sd_log_info("line %04d of a reload that logs a great deal", i);
        len += (size_t)snprintf(expect + len, sizeof(expect) - len,
                                "info: line %04d of a reload that logs a "
                                "great deal\n", i);
    }
    const char *early = captured();
    size_t early_len = strlen(early);
    cr_assert_gt(early_len, 0, "nothing written though the buffer filled");
    cr_assert_lt(early_len, len);
    cr_assert_eq(early[early_len - 1], '\n', "a line was cut");
    sd_log_release();
    cr_assert_str_eq(captured(), expect);
}
