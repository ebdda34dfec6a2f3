/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of server/request.c: parsing the 28-byte NBD request header
 * and every rule that decides whether a request is served, refused with
 * an NBD error, or ends the connection.
 *
 * The expected answers come from the NBD protocol document and the
 * server's rules (request.h), written out here one case at a time, not
 * taken from the code under test.
 */
#include "config.h"

#include "server/nbd-proto.h"
#include "server/request.h"
#include "server/server-config.h"

#include <criterion/criterion.h>
#include <endian.h>
#include <stdint.h>
#include <string.h>

#define MiB (1024u * 1024u)

/* An export everything is allowed on: writable, trim and fast zero
 * supported, structured replies and a meta context negotiated. */
static struct nbd_request_limits all_allowed(void)
{
    return (struct nbd_request_limits){
        .size = 1 * MiB,
        .readonly = false,
        .structured = true,
        .can_trim = true,
        .can_fast_zero = true,
        .has_context = true,
        .min_block = 1,
    };
}

static struct nbd_request req(uint16_t type, uint16_t flags, uint64_t offset,
                              uint32_t length)
{
    return (struct nbd_request){ .type = type, .flags = flags,
                                 .cookie = 0x1122334455667788ull,
                                 .offset = offset, .length = length };
}

/* A range every command but FLUSH and DISC may use. */
static struct nbd_request plain(uint16_t type, uint16_t flags)
{
    if (type == NBD_CMD_FLUSH || type == NBD_CMD_DISC)
        return req(type, flags, 0, 0);
    return req(type, flags, 4096, 4096);
}

static void expect_serve(const struct nbd_request *r,
                         const struct nbd_request_limits *lim)
{
    uint32_t e = 0xdeadbeef;
    enum request_verdict v = nbd_request_check(r, lim, &e);

    cr_assert_eq(v, REQUEST_SERVE,
                 "type %u flags 0x%x %llu+%u: verdict %d, error %u",
                 r->type, r->flags, (unsigned long long)r->offset,
                 r->length, v, e);
}

static void expect_error(const struct nbd_request *r,
                         const struct nbd_request_limits *lim,
                         uint32_t want)
{
    uint32_t e = 0xdeadbeef;
    enum request_verdict v = nbd_request_check(r, lim, &e);

    cr_assert_eq(v, REQUEST_REPLY_ERROR,
                 "type %u flags 0x%x %llu+%u: verdict %d, wanted an error",
                 r->type, r->flags, (unsigned long long)r->offset,
                 r->length, v);
    cr_assert_eq(e, want, "type %u flags 0x%x %llu+%u: error %u, wanted %u",
                 r->type, r->flags, (unsigned long long)r->offset,
                 r->length, e, want);
}

static void expect_verdict(const struct nbd_request *r,
                           const struct nbd_request_limits *lim,
                           enum request_verdict want)
{
    uint32_t e = 0;
    enum request_verdict v = nbd_request_check(r, lim, &e);

    cr_assert_eq(v, want, "type %u flags 0x%x %llu+%u: verdict %d, wanted %d",
                 r->type, r->flags, (unsigned long long)r->offset,
                 r->length, v, want);
}

/* ---- flags ---------------------------------------------------------- */

static const uint16_t every_cmd[] = {
    NBD_CMD_READ, NBD_CMD_WRITE, NBD_CMD_FLUSH, NBD_CMD_TRIM,
    NBD_CMD_CACHE, NBD_CMD_WRITE_ZEROES, NBD_CMD_BLOCK_STATUS,
};
#define N_CMDS (sizeof(every_cmd) / sizeof(every_cmd[0]))

/* Every flag bit, the defined ones and some the protocol does not define. */
static const uint16_t every_flag[] = {
    NBD_CMD_FLAG_FUA, NBD_CMD_FLAG_NO_HOLE, NBD_CMD_FLAG_DF,
    NBD_CMD_FLAG_REQ_ONE, NBD_CMD_FLAG_FAST_ZERO, 1u << 5, 1u << 8,
    1u << 15,
};
#define N_FLAGS (sizeof(every_flag) / sizeof(every_flag[0]))

/* The protocol's table: FUA is valid on every command; NO_HOLE and
 * FAST_ZERO on WRITE_ZEROES; DF on READ; REQ_ONE on BLOCK_STATUS. */
static bool flag_allowed(uint16_t type, uint16_t flag)
{
    switch (flag) {
    case NBD_CMD_FLAG_FUA:
        return true;
    case NBD_CMD_FLAG_NO_HOLE:
    case NBD_CMD_FLAG_FAST_ZERO:
        return type == NBD_CMD_WRITE_ZEROES;
    case NBD_CMD_FLAG_DF:
        return type == NBD_CMD_READ;
    case NBD_CMD_FLAG_REQ_ONE:
        return type == NBD_CMD_BLOCK_STATUS;
    default:
        return false;
    }
}

Test(request_flags, each_command_takes_only_its_flags)
{
    struct nbd_request_limits lim = all_allowed();

    for (size_t i = 0; i < N_CMDS; i++) {
        for (size_t j = 0; j < N_FLAGS; j++) {
            struct nbd_request r = plain(every_cmd[i], every_flag[j]);
            if (flag_allowed(every_cmd[i], every_flag[j]))
                expect_serve(&r, &lim);
            else
                expect_error(&r, &lim, NBD_EINVAL);
        }
    }
}

Test(request_flags, no_flags_is_always_fine)
{
    struct nbd_request_limits lim = all_allowed();

    for (size_t i = 0; i < N_CMDS; i++) {
        struct nbd_request r = plain(every_cmd[i], 0);
        expect_serve(&r, &lim);
    }
}

Test(request_flags, allowed_flags_combine)
{
    struct nbd_request_limits lim = all_allowed();
    struct nbd_request r = plain(NBD_CMD_WRITE_ZEROES,
                                 NBD_CMD_FLAG_FUA | NBD_CMD_FLAG_NO_HOLE |
                                 NBD_CMD_FLAG_FAST_ZERO);

    expect_serve(&r, &lim);
    r = plain(NBD_CMD_READ, NBD_CMD_FLAG_FUA | NBD_CMD_FLAG_DF);
    expect_serve(&r, &lim);
    r = plain(NBD_CMD_BLOCK_STATUS, NBD_CMD_FLAG_FUA | NBD_CMD_FLAG_REQ_ONE);
    expect_serve(&r, &lim);
    /* One bad flag among good ones still refuses the request. */
    r = plain(NBD_CMD_WRITE, NBD_CMD_FLAG_FUA | NBD_CMD_FLAG_NO_HOLE);
    expect_error(&r, &lim, NBD_EINVAL);
}

Test(request_flags, df_needs_structured_replies)
{
    struct nbd_request_limits lim = all_allowed();
    struct nbd_request r = plain(NBD_CMD_READ, NBD_CMD_FLAG_DF);

    lim.structured = false;
    lim.has_context = false;
    expect_error(&r, &lim, NBD_EINVAL);
    lim.structured = true;
    expect_serve(&r, &lim);
}

Test(request_flags, fast_zero_needs_support)
{
    struct nbd_request_limits lim = all_allowed();
    struct nbd_request r = plain(NBD_CMD_WRITE_ZEROES, NBD_CMD_FLAG_FAST_ZERO);

    lim.can_fast_zero = false;
    expect_error(&r, &lim, NBD_EINVAL);
    /* Without FAST_ZERO the same export zeroes normally. */
    r.flags = NBD_CMD_FLAG_NO_HOLE;
    expect_serve(&r, &lim);
}

/* ---- what the export allows ----------------------------------------- */

Test(request_export, readonly_refuses_writes_with_eperm)
{
    struct nbd_request_limits lim = all_allowed();
    const uint16_t writes[] = { NBD_CMD_WRITE, NBD_CMD_WRITE_ZEROES,
                                NBD_CMD_TRIM };
    const uint16_t reads[] = { NBD_CMD_READ, NBD_CMD_FLUSH, NBD_CMD_CACHE,
                               NBD_CMD_BLOCK_STATUS };

    lim.readonly = true;
    for (size_t i = 0; i < sizeof(writes) / sizeof(writes[0]); i++) {
        struct nbd_request r = plain(writes[i], 0);
        expect_error(&r, &lim, NBD_EPERM);
    }
    for (size_t i = 0; i < sizeof(reads) / sizeof(reads[0]); i++) {
        struct nbd_request r = plain(reads[i], 0);
        expect_serve(&r, &lim);
    }
}

Test(request_export, trim_needs_support)
{
    struct nbd_request_limits lim = all_allowed();
    struct nbd_request r = plain(NBD_CMD_TRIM, 0);

    lim.can_trim = false;
    expect_error(&r, &lim, NBD_EINVAL);
}

Test(request_export, block_status_needs_a_context)
{
    struct nbd_request_limits lim = all_allowed();
    struct nbd_request r = plain(NBD_CMD_BLOCK_STATUS, 0);

    lim.has_context = false;
    expect_error(&r, &lim, NBD_EINVAL);
    r.flags = NBD_CMD_FLAG_REQ_ONE;
    expect_error(&r, &lim, NBD_EINVAL);
}

/* ---- ranges --------------------------------------------------------- */

Test(request_range, up_to_the_end_is_served)
{
    struct nbd_request_limits lim = all_allowed();

    for (size_t i = 0; i < N_CMDS; i++) {
        struct nbd_request r = req(every_cmd[i], 0, lim.size - 4096, 4096);
        if (every_cmd[i] == NBD_CMD_FLUSH)
            continue;
        expect_serve(&r, &lim);
        r = req(every_cmd[i], 0, 0, (uint32_t)lim.size);
        expect_serve(&r, &lim);
    }
}

Test(request_range, past_the_end_enospc_for_writes_einval_for_reads)
{
    struct nbd_request_limits lim = all_allowed();
    const struct { uint16_t type; uint32_t error; } cases[] = {
        { NBD_CMD_WRITE, NBD_ENOSPC },
        { NBD_CMD_WRITE_ZEROES, NBD_ENOSPC },
        { NBD_CMD_TRIM, NBD_ENOSPC },
        { NBD_CMD_READ, NBD_EINVAL },
        { NBD_CMD_CACHE, NBD_EINVAL },
        { NBD_CMD_BLOCK_STATUS, NBD_EINVAL },
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        /* One byte over, wholly beyond, and starting at the end. */
        struct nbd_request r = req(cases[i].type, 0, lim.size - 4095, 4096);
        expect_error(&r, &lim, cases[i].error);
        r = req(cases[i].type, 0, 10 * lim.size, 1);
        expect_error(&r, &lim, cases[i].error);
        r = req(cases[i].type, 0, lim.size, 1);
        expect_error(&r, &lim, cases[i].error);
    }
}

Test(request_range, offset_plus_length_overflow_is_refused)
{
    struct nbd_request_limits lim = all_allowed();

    /* With the largest size, only the wrap-around check stands between
     * such a request and the image. */
    lim.size = UINT64_MAX;
    for (size_t i = 0; i < N_CMDS; i++) {
        if (every_cmd[i] == NBD_CMD_FLUSH)
            continue;
        struct nbd_request r = req(every_cmd[i], 0, UINT64_MAX - 10, 4096);
        uint32_t e = 0;
        cr_assert_eq(nbd_request_check(&r, &lim, &e), REQUEST_REPLY_ERROR,
                     "type %u served a wrapping range", r.type);
        cr_assert(e == NBD_EINVAL || e == NBD_ENOSPC, "type %u: error %u",
                  r.type, e);
        r = req(every_cmd[i], 0, UINT64_MAX, 1);
        cr_assert_eq(nbd_request_check(&r, &lim, &e), REQUEST_REPLY_ERROR,
                     "type %u served a range ending at 2^64", r.type);
    }
}

Test(request_range, zero_length_is_einval)
{
    struct nbd_request_limits lim = all_allowed();

    for (size_t i = 0; i < N_CMDS; i++) {
        if (every_cmd[i] == NBD_CMD_FLUSH)
            continue;
        struct nbd_request r = req(every_cmd[i], 0, 4096, 0);
        expect_error(&r, &lim, NBD_EINVAL);
    }
}

Test(request_range, flush_takes_no_range)
{
    struct nbd_request_limits lim = all_allowed();
    struct nbd_request r = req(NBD_CMD_FLUSH, 0, 0, 0);

    expect_serve(&r, &lim);
    r = req(NBD_CMD_FLUSH, 0, 4096, 0);
    expect_error(&r, &lim, NBD_EINVAL);
    r = req(NBD_CMD_FLUSH, 0, 0, 4096);
    expect_error(&r, &lim, NBD_EINVAL);
    r = req(NBD_CMD_FLUSH, NBD_CMD_FLAG_FUA, 0, 0);
    expect_serve(&r, &lim);
    /* A read-only export may still be flushed. */
    lim.readonly = true;
    r = req(NBD_CMD_FLUSH, 0, 0, 0);
    expect_serve(&r, &lim);
}

Test(request_range, min_block_alignment)
{
    struct nbd_request_limits lim = all_allowed();

    lim.min_block = 4096;
    for (size_t i = 0; i < N_CMDS; i++) {
        if (every_cmd[i] == NBD_CMD_FLUSH)
            continue;
        struct nbd_request r = req(every_cmd[i], 0, 8192, 4096);
        expect_serve(&r, &lim);
        r = req(every_cmd[i], 0, 512, 4096);
        expect_error(&r, &lim, NBD_EINVAL);
        r = req(every_cmd[i], 0, 8192, 512);
        expect_error(&r, &lim, NBD_EINVAL);
        r = req(every_cmd[i], 0, 8192, 4096 + 1);
        expect_error(&r, &lim, NBD_EINVAL);
    }
    /* FLUSH has no range to align. */
    struct nbd_request f = req(NBD_CMD_FLUSH, 0, 0, 0);
    expect_serve(&f, &lim);
}

/* ---- sizes ---------------------------------------------------------- */

Test(request_size, read_up_to_the_maximum)
{
    struct nbd_request_limits lim = all_allowed();
    struct nbd_request r = req(NBD_CMD_READ, 0, 0, SD_REQUEST_MAX);

    lim.size = 1ull << 30;
    expect_serve(&r, &lim);
    r.length = SD_REQUEST_MAX + 1;
    expect_error(&r, &lim, NBD_EOVERFLOW);
    r.length = UINT32_MAX;
    expect_error(&r, &lim, NBD_EOVERFLOW);
}

Test(request_size, write_too_large_to_read_closes)
{
    struct nbd_request_limits lim = all_allowed();
    struct nbd_request r = req(NBD_CMD_WRITE, 0, 0, SD_REQUEST_MAX);

    lim.size = 1ull << 30;
    expect_serve(&r, &lim);
    r.length = SD_REQUEST_MAX + 1;
    expect_verdict(&r, &lim, REQUEST_CLOSE);
    r.length = UINT32_MAX;
    expect_verdict(&r, &lim, REQUEST_CLOSE);
}

Test(request_size, refused_write_too_large_to_skip_closes)
{
    struct nbd_request_limits lim = all_allowed();
    struct nbd_request r = req(NBD_CMD_WRITE, 0, 0, SD_REQUEST_MAX + 1);

    /* Whatever the reason for refusing it, a payload we cannot skip
     * leaves the stream out of step. */
    lim.readonly = true;
    expect_verdict(&r, &lim, REQUEST_CLOSE);
    lim = all_allowed();
    r.flags = NBD_CMD_FLAG_DF;
    expect_verdict(&r, &lim, REQUEST_CLOSE);
    r.flags = 0;
    r.offset = lim.size;
    expect_verdict(&r, &lim, REQUEST_CLOSE);
}

Test(request_size, refused_write_that_fits_keeps_the_connection)
{
    struct nbd_request_limits lim = all_allowed();
    struct nbd_request r = req(NBD_CMD_WRITE, 0, 0, SD_REQUEST_MAX);

    /* Its payload is read and dropped; the client gets its error. */
    lim.readonly = true;
    expect_error(&r, &lim, NBD_EPERM);
    lim = all_allowed();
    expect_error(&r, &lim, NBD_ENOSPC);
}

Test(request_size, zeroing_and_trimming_have_no_payload_limit)
{
    struct nbd_request_limits lim = all_allowed();
    struct nbd_request r = req(NBD_CMD_WRITE_ZEROES, 0, 0, 64 * MiB);

    lim.size = 1ull << 30;
    expect_serve(&r, &lim);
    r = req(NBD_CMD_TRIM, 0, 0, 64 * MiB);
    expect_serve(&r, &lim);
    r = req(NBD_CMD_BLOCK_STATUS, 0, 0, 64 * MiB);
    expect_serve(&r, &lim);
}

/* ---- the end and the unknown ---------------------------------------- */

Test(request_other, disc_disconnects)
{
    struct nbd_request_limits lim = all_allowed();
    struct nbd_request r = req(NBD_CMD_DISC, 0, 0, 0);

    expect_verdict(&r, &lim, REQUEST_DISCONNECT);
    lim.readonly = true;
    expect_verdict(&r, &lim, REQUEST_DISCONNECT);
}

Test(request_other, unknown_command_is_einval)
{
    struct nbd_request_limits lim = all_allowed();
    const uint16_t unknown[] = { 8, 9, 0x100, 0x7fff, 0xffff };

    for (size_t i = 0; i < sizeof(unknown) / sizeof(unknown[0]); i++) {
        struct nbd_request r = req(unknown[i], 0, 0, 4096);
        expect_error(&r, &lim, NBD_EINVAL);
    }
}

Test(request_other, payload_only_for_write)
{
    for (size_t i = 0; i < N_CMDS; i++) {
        struct nbd_request r = plain(every_cmd[i], 0);
        cr_assert_eq(nbd_request_has_payload(&r),
                     every_cmd[i] == NBD_CMD_WRITE, "type %u", r.type);
    }
}

/* ---- parsing -------------------------------------------------------- */

/* A header laid out by hand, big-endian as the protocol says. */
static void build_header(uint8_t *b, uint32_t magic)
{
    const uint8_t fields[24] = {
        0x00, 0x01,                                     /* flags: FUA */
        0x00, 0x06,                                     /* WRITE_ZEROES */
        0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, /* cookie */
        0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, /* offset */
        0x00, 0x10, 0x20, 0x30,                         /* length */
    };

    b[0] = (uint8_t)(magic >> 24);
    b[1] = (uint8_t)(magic >> 16);
    b[2] = (uint8_t)(magic >> 8);
    b[3] = (uint8_t)magic;
    memcpy(b + 4, fields, sizeof(fields));
}

Test(request_parse, fields_in_network_byte_order)
{
    uint8_t b[NBD_REQUEST_SIZE];
    struct nbd_request r;
    const uint8_t cookie[8] = { 0xa1, 0xa2, 0xa3, 0xa4,
                                0xa5, 0xa6, 0xa7, 0xa8 };

    cr_assert_eq(NBD_REQUEST_SIZE, 28);
    build_header(b, 0x25609513u);
    cr_assert(nbd_request_parse(b, &r));
    cr_assert_eq(r.flags, NBD_CMD_FLAG_FUA);
    cr_assert_eq(r.type, NBD_CMD_WRITE_ZEROES);
    cr_assert_eq(r.offset, 0x0102030405060708ull);
    cr_assert_eq(r.length, 0x00102030u);
    /* The cookie is opaque: kept as the bytes that came, to be echoed. */
    cr_assert_eq(memcmp(&r.cookie, cookie, 8), 0);
}

Test(request_parse, bad_magic_is_refused)
{
    uint8_t b[NBD_REQUEST_SIZE];
    struct nbd_request r;
    const uint32_t bad[] = {
        0x13956025u,               /* the right magic, little-endian */
        0x25609512u, 0x00000000u, 0xffffffffu,
        0x67446698u,               /* a reply's magic */
    };

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        build_header(b, bad[i]);
        cr_assert_not(nbd_request_parse(b, &r), "magic 0x%08x accepted",
                      bad[i]);
    }
}

Test(request_parse, parsed_request_goes_through_check)
{
    uint8_t b[NBD_REQUEST_SIZE];
    struct nbd_request r;
    struct nbd_request_limits lim = all_allowed();
    uint32_t len = htobe32(4096), e = 0;
    uint64_t off = htobe64(lim.size - 4096);

    build_header(b, 0x25609513u);
    memcpy(b + 16, &off, 8);
    memcpy(b + 24, &len, 4);
    cr_assert(nbd_request_parse(b, &r));
    cr_assert_eq(nbd_request_check(&r, &lim, &e), REQUEST_SERVE);
    off = htobe64(lim.size - 4095);
    memcpy(b + 16, &off, 8);
    cr_assert(nbd_request_parse(b, &r));
    cr_assert_eq(nbd_request_check(&r, &lim, &e), REQUEST_REPLY_ERROR);
    cr_assert_eq(e, NBD_ENOSPC);
}
