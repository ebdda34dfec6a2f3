/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of sendense-capture's extent lists and change lists
 * (capture/extents.c, capture/changes.c): how extents become requests
 * (merged, cut at multiples of the request size, zeros apart), and what
 * the strict change-list parser accepts.
 */
#include "config.h"

#include "capture/capture.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#define K UINT64_C(1024)
#define M (K * K)

static void expect(const struct cap_extents *x, size_t i, uint64_t off, uint64_t len,
                   bool zero)
{
    cr_assert_lt(i, x->n);
    cr_expect_eq(x->v[i].off, off, "extent %zu: off %llu, want %llu", i,
                 (unsigned long long)x->v[i].off, (unsigned long long)off);
    cr_expect_eq(x->v[i].len, len, "extent %zu: len %llu, want %llu", i,
                 (unsigned long long)x->v[i].len, (unsigned long long)len);
    cr_expect_eq(x->v[i].zero, zero, "extent %zu: zero", i);
}

Test(extents, add_joins_touching_extents_of_one_kind)
{
    struct cap_extents x = { 0 };

    cr_assert_eq(cap_extents_add(&x, 0, 4 * K, false), 0);
    cr_assert_eq(cap_extents_add(&x, 4 * K, 4 * K, false), 0);
    cr_assert_eq(cap_extents_add(&x, 8 * K, 8 * K, true), 0);
    cr_assert_eq(cap_extents_add(&x, 16 * K, 0, false), 0);
    cr_assert_eq(cap_extents_add(&x, 32 * K, 4 * K, true), 0);
    cr_assert_eq(x.n, 3);
    expect(&x, 0, 0, 8 * K, false);
    expect(&x, 1, 8 * K, 8 * K, true);
    expect(&x, 2, 32 * K, 4 * K, true);
    cr_expect_eq(cap_extents_bytes(&x, false), 8 * K);
    cr_expect_eq(cap_extents_bytes(&x, true), 12 * K);
    cap_extents_free(&x);
}

Test(extents, split_cuts_at_multiples_and_keeps_zeros_whole)
{
    struct cap_extents in = { 0 }, out = { 0 };

    /* Data 1M..70M, zeros 70M..3G, data 3G..3G+4K. */
    cap_extents_add(&in, M, 69 * M, false);
    cap_extents_add(&in, 70 * M, 3 * K * M - 70 * M, true);
    cap_extents_add(&in, 3 * K * M, 4 * K, false);
    cr_assert_eq(cap_extents_split(&in, 32 * M, &out), 0);
    cr_assert_eq(out.n, 7);
    expect(&out, 0, M, 31 * M, false);
    expect(&out, 1, 32 * M, 32 * M, false);
    expect(&out, 2, 64 * M, 6 * M, false);
    /* Zero requests: up to 1 GiB, not cut at request-size multiples. */
    expect(&out, 3, 70 * M, K * M, true);
    expect(&out, 4, 70 * M + K * M, K * M, true);
    expect(&out, 5, 70 * M + 2 * K * M, K * M - 70 * M, true);
    expect(&out, 6, 3 * K * M, 4 * K, false);
    cr_expect_eq(cap_extents_bytes(&out, false), cap_extents_bytes(&in, false));
    cap_extents_free(&in);
    cap_extents_free(&out);
}

static int parse(const char *text, struct cap_changes *c, struct sd_error *err)
{
    return cap_changes_parse(text, strlen(text), c, err);
}

Test(changes, vmware_shape_parses_and_merges_touching_areas)
{
    struct cap_changes c;
    struct sd_error err = { 0 };

    cr_assert_eq(parse("{\"changeId\": \"52 3c/7\", \"startOffset\": 0, "
                       "\"length\": 1073741824, \"changedArea\": ["
                       "{\"start\": 0, \"length\": 65536}, "
                       "{\"start\": 65536, \"length\": 4096}, "
                       "{\"length\": 8192, \"start\": 1048576}]}", &c, &err), 0,
                 "%s", err.msg);
    cr_expect_str_eq(c.change_id, "52 3c/7");
    cr_assert_eq(c.areas.n, 2);
    expect(&c.areas, 0, 0, 69632, false);
    expect(&c.areas, 1, M, 8192, false);
    cap_changes_free(&c);

    cr_assert_eq(parse("{\"changedArea\": []}", &c, &err), 0, "%s", err.msg);
    cr_expect_null(c.change_id);
    cr_expect_eq(c.areas.n, 0);
    cap_changes_free(&c);
}

/* Each refused with -EINVAL and a message naming the problem. */
Test(changes, strict)
{
    static const struct { const char *text, *why; } bad[] = {
        { "[]", "JSON object" },
        { "{}", "changedArea must be an array" },
        { "{\"changedArea\": [], \"x\": 1}", "unknown key \"x\"" },
        { "{\"changedArea\": [], \"changedArea\": []}", "duplicate" },
        { "{\"changeId\": 5, \"changedArea\": []}", "changeId" },
        { "{\"changedArea\": [{\"start\": 0}]}", "needs \"start\" and \"length\"" },
        { "{\"changedArea\": [{\"start\": 0, \"length\": 0}]}", "positive" },
        { "{\"changedArea\": [{\"start\": -1, \"length\": 1}]}", "negative" },
        { "{\"changedArea\": [{\"start\": 1.5, \"length\": 1}]}", "integer" },
        { "{\"changedArea\": [{\"start\": 0, \"length\": 9, \"extra\": 1}]}", "unknown key" },
        { "{\"changedArea\": [{\"start\": 8, \"length\": 8}, {\"start\": 0, \"length\": 8}]}",
          "sorted" },
        { "{\"changedArea\": [{\"start\": 0, \"length\": 8}, {\"start\": 4, \"length\": 8}]}",
          "overlap" },
        { "{\"startOffset\": 4096, \"length\": 4096, \"changedArea\": "
          "[{\"start\": 4096, \"length\": 8192}]}", "outside" },
        { "{\"changedArea\": [{\"start\": 9223372036854775807, "
          "\"length\": 9223372036854775807}, "
          "{\"start\": 18446744073709551615, \"length\": 1}]}", "" },
        { "{\"changedArea\": [", "line 1" },
    };

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct cap_changes c;
        struct sd_error err = { 0 };

        cr_expect_eq(parse(bad[i].text, &c, &err), -EINVAL, "accepted: %s", bad[i].text);
        cr_expect_neq(strstr(err.msg, bad[i].why), NULL, "%s: message \"%s\"",
                      bad[i].text, err.msg);
        cr_expect_null(c.areas.v);
    }
}
