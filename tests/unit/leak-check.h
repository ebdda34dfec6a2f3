/* SPDX-License-Identifier: MIT */
/*
 * Leak checks inside criterion tests.
 *
 * criterion runs each test in a child process and judges it by its
 * assertions, not by its exit status, so a leak LeakSanitizer reports at
 * the child's exit would not fail the test. A test that must not leak
 * calls expect_no_leaks() at its end instead. Without AddressSanitizer it
 * does nothing.
 */
#ifndef SENDENSE_TESTS_LEAK_CHECK_H
#define SENDENSE_TESTS_LEAK_CHECK_H

#include <criterion/criterion.h>

#if defined(__SANITIZE_ADDRESS__)
#define SD_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SD_TEST_ASAN 1
#endif
#endif

#ifdef SD_TEST_ASAN
#include <sanitizer/lsan_interface.h>

/* criterion keeps a copy of its output options for the life of the
 * process; that is not ours to report. */
const char *__lsan_default_suppressions(void)
{
    return "leak:criterion_handle_args\n";
}

static inline void expect_no_leaks(void)
{
    cr_assert_eq(__lsan_do_recoverable_leak_check(), 0,
                 "LeakSanitizer found leaks: see the report in the log");
}
#else
static inline void expect_no_leaks(void)
{
}
#endif

#endif
