/* SPDX-License-Identifier: MIT */
/* sendense-ctl's printing helpers (ctl/output.c): human sizes at every
 * unit boundary, UTC times, and table alignment. */
#include "config.h"

#include "ctl/ctl.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

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
