/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: NBD request headers (server/request.c).
 *
 * Input layout: the first 12 bytes choose the limits of the connection
 * the requests arrive on (export size, read-only, structured replies,
 * trim, fast zero, meta context, minimum block size); every following
 * 28 bytes are one request header, parsed and checked against them.
 *
 * Beyond "no crash", every verdict must keep the server safe:
 * - a request whose magic is wrong never reaches the check (the caller
 *   closes), and parsing is a pure function of the 28 bytes;
 * - REQUEST_SERVE: the type is a known command other than DISC, the
 *   range lies wholly inside the export without wrapping around 2^64,
 *   READ and WRITE are at most SD_REQUEST_MAX, nothing but FLUSH has
 *   length 0 and FLUSH has no range, writes never reach a read-only
 *   export, TRIM only where supported, BLOCK_STATUS only with a context,
 *   DF only with structured replies, FAST_ZERO only where supported,
 *   and offset and length are multiples of min_block;
 * - REQUEST_REPLY_ERROR sets an NBD error the protocol defines, and a
 *   refused WRITE is never larger than SD_REQUEST_MAX (its payload must
 *   still be read to stay in step);
 * - REQUEST_DISCONNECT only for NBD_CMD_DISC; REQUEST_CLOSE only for a
 *   WRITE whose payload is too large to read;
 * - the verdict depends on nothing but the request and the limits.
 */
#include "config.h"

#include "common/byteorder.h"

#include "server/nbd-proto.h"
#include "server/request.h"
#include "server/server-config.h"

#include <endian.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { LIMITS_SIZE = 12 };

/* Sizes near the interesting edges (small, huge, near 2^64) are all
 * reachable from 8 bytes; the flags byte and the block size byte pick
 * the rest. */
static void limits_from(const uint8_t *p, struct nbd_request_limits *lim)
{
    uint8_t f = p[8];

    memset(lim, 0, sizeof(*lim));
    lim->size = get_be64(p);
    lim->readonly = f & 1;
    lim->structured = f & 2;
    lim->can_trim = f & 4;
    lim->can_fast_zero = f & 8;
    /* A context can only be selected with structured replies. */
    lim->has_context = lim->structured && (f & 16);
    lim->min_block = (f & 32) ? 1u << (p[9] % 13) : 1;
}

static bool known_error(uint32_t e)
{
    switch (e) {
    case NBD_EPERM: case NBD_EIO: case NBD_ENOMEM: case NBD_EINVAL:
    case NBD_ENOSPC: case NBD_EOVERFLOW: case NBD_ENOTSUP:
    case NBD_ESHUTDOWN:
        return true;
    default:
        return false;
    }
}

static bool is_write(uint16_t type)
{
    return type == NBD_CMD_WRITE || type == NBD_CMD_WRITE_ZEROES ||
           type == NBD_CMD_TRIM;
}

static void check_served(const struct nbd_request *r,
                         const struct nbd_request_limits *lim)
{
    uint16_t f = r->flags;

    if (r->type > NBD_CMD_BLOCK_STATUS || r->type == NBD_CMD_DISC)
        abort();
    if (r->type == NBD_CMD_FLUSH) {
        if (r->offset || r->length)
            abort();
        return;
    }
    if (r->length == 0 || r->offset + r->length < r->offset ||
        r->offset + r->length > lim->size)
        abort();
    if ((r->type == NBD_CMD_READ || r->type == NBD_CMD_WRITE) &&
        r->length > SD_REQUEST_MAX)
        abort();
    if (is_write(r->type) && lim->readonly)
        abort();
    if (r->type == NBD_CMD_TRIM && !lim->can_trim)
        abort();
    if (r->type == NBD_CMD_BLOCK_STATUS && !lim->has_context)
        abort();
    if ((f & NBD_CMD_FLAG_DF) && (r->type != NBD_CMD_READ || !lim->structured))
        abort();
    if ((f & NBD_CMD_FLAG_FAST_ZERO) &&
        (r->type != NBD_CMD_WRITE_ZEROES || !lim->can_fast_zero))
        abort();
    if ((f & NBD_CMD_FLAG_NO_HOLE) && r->type != NBD_CMD_WRITE_ZEROES)
        abort();
    if ((f & NBD_CMD_FLAG_REQ_ONE) && r->type != NBD_CMD_BLOCK_STATUS)
        abort();
    if (f & ~(uint16_t)0x1f)
        abort();
    if (lim->min_block > 1 &&
        ((r->offset % lim->min_block) || (r->length % lim->min_block)))
        abort();
}

static void check_one(const uint8_t *hdr, const struct nbd_request_limits *lim)
{
    struct nbd_request r, again;
    uint32_t e = 0, e2 = 0;
    uint32_t magic;
    bool ok = nbd_request_parse(hdr, &r);
    enum request_verdict v;

    memcpy(&magic, hdr, 4);
    if (ok != (be32toh(magic) == NBD_REQUEST_MAGIC))
        abort();
    if (nbd_request_parse(hdr, &again) != ok ||
        memcmp(&r.cookie, hdr + 8, 8) != 0)
        abort();
    if (!ok)
        return;
    v = nbd_request_check(&r, lim, &e);
    if (nbd_request_check(&again, lim, &e2) != v)
        abort();
    switch (v) {
    case REQUEST_SERVE:
        check_served(&r, lim);
        break;
    case REQUEST_REPLY_ERROR:
        if (!known_error(e) || e != e2)
            abort();
        if (r.type == NBD_CMD_WRITE && r.length > SD_REQUEST_MAX)
            abort();
        break;
    case REQUEST_DISCONNECT:
        if (r.type != NBD_CMD_DISC)
            abort();
        break;
    case REQUEST_CLOSE:
        if (r.type != NBD_CMD_WRITE || r.length <= SD_REQUEST_MAX)
            abort();
        break;
    default:
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct nbd_request_limits lim;

    if (size < LIMITS_SIZE)
        return 0;
    limits_from(data, &lim);
    for (size_t off = LIMITS_SIZE; size - off >= NBD_REQUEST_SIZE;
         off += NBD_REQUEST_SIZE)
        check_one(data + off, &lim);
    return 0;
}
