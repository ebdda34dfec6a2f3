/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of common/error.c: struct sd_error keeps a negative errno and
 * one bounded, always terminated message.
 */
#include "config.h"

#include "common/error.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

/* A string of n copies of c, in a static buffer big enough for the tests. */
static const char *repeat(char c, size_t n)
{
    static char buf[4 * SD_ERROR_MSG_MAX];

    cr_assert_lt(n, sizeof(buf));
    memset(buf, c, n);
    buf[n] = '\0';
    return buf;
}

/* The message a full-sized buffer would hold, cut to what ours holds. */
static void expect_truncated(const struct sd_error *e, const char *ideal)
{
    size_t want = strlen(ideal);

    if (want > SD_ERROR_MSG_MAX - 1)
        want = SD_ERROR_MSG_MAX - 1;
    cr_assert_eq(strnlen(e->msg, sizeof(e->msg)), want,
                 "message length %zu, expected %zu",
                 strnlen(e->msg, sizeof(e->msg)), want);
    cr_assert_eq(memcmp(e->msg, ideal, want), 0);
}

Test(error, set_returns_code_and_formats)
{
    struct sd_error e;

    sd_error_clear(&e);
    int ret = sd_error_set(&e, -ENOENT, "could not open '%s' (%d)", "a.img", 7);
    cr_assert_eq(ret, -ENOENT);
    cr_assert_eq(e.code, -ENOENT);
    cr_assert_str_eq(e.msg, "could not open 'a.img' (7)");
}

Test(error, set_overwrites_previous_error)
{
    struct sd_error e;

    sd_error_set(&e, -EIO, "first error with a long text");
    sd_error_set(&e, -EINVAL, "second");
    cr_assert_eq(e.code, -EINVAL);
    cr_assert_str_eq(e.msg, "second");
}

Test(error, set_with_null_err_still_returns_code)
{
    cr_assert_eq(sd_error_set(NULL, -ENOSPC, "ignored %s", "text"), -ENOSPC);
    sd_error_prefix(NULL, "nothing to prefix");
    sd_error_clear(NULL);
}

Test(error, clear_resets_code_and_message)
{
    struct sd_error e;

    sd_error_set(&e, -EIO, "boom");
    sd_error_clear(&e);
    cr_assert_eq(e.code, 0);
    cr_assert_str_eq(e.msg, "");
}

Test(error, long_message_is_truncated_and_terminated)
{
    struct sd_error e;
    char ideal[3 * SD_ERROR_MSG_MAX];

    memset(&e, 0x55, sizeof(e));
    snprintf(ideal, sizeof(ideal), "start %s end", repeat('x', 2 * SD_ERROR_MSG_MAX));
    cr_assert_eq(sd_error_set(&e, -E2BIG, "start %s end",
                              repeat('x', 2 * SD_ERROR_MSG_MAX)), -E2BIG);
    expect_truncated(&e, ideal);
}

Test(error, prefix_puts_context_in_front)
{
    struct sd_error e;

    sd_error_set(&e, -EINVAL, "invalid cluster_bits %d", 30);
    sd_error_prefix(&e, "opening '%s'", "disk.qcow2");
    cr_assert_eq(e.code, -EINVAL, "prefix must not change the code");
    cr_assert_str_eq(e.msg, "opening 'disk.qcow2': invalid cluster_bits 30");
}

Test(error, prefix_twice_nests)
{
    struct sd_error e;

    sd_error_set(&e, -EIO, "short read");
    sd_error_prefix(&e, "L2 table");
    sd_error_prefix(&e, "base.qcow2");
    cr_assert_str_eq(e.msg, "base.qcow2: L2 table: short read");
}

Test(error, prefix_may_quote_the_message_itself)
{
    struct sd_error e;

    sd_error_set(&e, -EIO, "abc");
    sd_error_prefix(&e, "%s", e.msg);
    cr_assert_str_eq(e.msg, "abc: abc");
}

Test(error, prefix_on_full_message_truncates_the_old_text)
{
    struct sd_error e;
    char ideal[3 * SD_ERROR_MSG_MAX];

    sd_error_set(&e, -EIO, "%s", repeat('m', SD_ERROR_MSG_MAX - 1));
    cr_assert_eq(strlen(e.msg), SD_ERROR_MSG_MAX - 1);
    sd_error_prefix(&e, "ctx %d", 42);
    snprintf(ideal, sizeof(ideal), "ctx 42: %s", repeat('m', SD_ERROR_MSG_MAX - 1));
    expect_truncated(&e, ideal);
}

Test(error, long_prefix_stays_inside_the_buffer)
{
    struct sd_error e;
    char prefix[2 * SD_ERROR_MSG_MAX];

    sd_error_set(&e, -EIO, "tail");
    snprintf(prefix, sizeof(prefix), "%s", repeat('p', sizeof(prefix) - 1));
    sd_error_prefix(&e, "%s", prefix);
    size_t len = strnlen(e.msg, sizeof(e.msg));
    cr_assert_lt(len, sizeof(e.msg), "message is not terminated");
    /* At least most of the prefix survives, and nothing else leaks in. */
    cr_assert_geq(len, SD_ERROR_MSG_MAX / 2);
    for (size_t i = 0; i < len; i++)
        cr_assert(e.msg[i] == 'p' || e.msg[i] == ':' || e.msg[i] == ' ',
                  "unexpected byte 0x%02x at %zu", (unsigned char)e.msg[i], i);
    cr_assert_eq(e.code, -EIO);
}
