/* SPDX-License-Identifier: MIT */
#include "config.h"

#include "common/byteorder.h"

#include "server/request.h"
#include "server/nbd-proto.h"
#include "server/server-config.h"

#include <string.h>

bool nbd_request_parse(const uint8_t *b, struct nbd_request *out)
{
    out->flags = get_be16(b + 4);
    out->type = get_be16(b + 6);
    memcpy(&out->cookie, b + 8, 8);   /* opaque: echoed as received */
    out->offset = get_be64(b + 16);
    out->length = get_be32(b + 24);
    return get_be32(b) == NBD_REQUEST_MAGIC;
}

/* Flags each command may carry. */
static uint16_t allowed_flags(uint16_t type, const struct nbd_request_limits *l)
{
    switch (type) {
    case NBD_CMD_READ:
        return NBD_CMD_FLAG_FUA | (l->structured ? NBD_CMD_FLAG_DF : 0);
    case NBD_CMD_WRITE:
    case NBD_CMD_TRIM:
    case NBD_CMD_FLUSH:
    case NBD_CMD_CACHE:
        return NBD_CMD_FLAG_FUA;
    case NBD_CMD_WRITE_ZEROES:
        return NBD_CMD_FLAG_FUA | NBD_CMD_FLAG_NO_HOLE |
               (l->can_fast_zero ? NBD_CMD_FLAG_FAST_ZERO : 0);
    case NBD_CMD_BLOCK_STATUS:
        return NBD_CMD_FLAG_FUA | NBD_CMD_FLAG_REQ_ONE;
    default:
        return 0;
    }
}

static bool is_write(uint16_t type)
{
    return type == NBD_CMD_WRITE || type == NBD_CMD_TRIM ||
           type == NBD_CMD_WRITE_ZEROES;
}

static enum request_verdict error(uint32_t *out, uint32_t e,
                                  const struct nbd_request *r)
{
    *out = e;
    /* A write's payload is read and dropped to stay in step; one too
     * large to buffer means a client we cannot follow. */
    if (r->type == NBD_CMD_WRITE && r->length > SD_REQUEST_MAX)
        return REQUEST_CLOSE;
    return REQUEST_REPLY_ERROR;
}

enum request_verdict nbd_request_check(const struct nbd_request *r,
                                       const struct nbd_request_limits *lim,
                                       uint32_t *nbd_error)
{
    uint64_t end = r->offset + r->length;

    if (r->type == NBD_CMD_DISC)
        return REQUEST_DISCONNECT;
    if (r->type > NBD_CMD_BLOCK_STATUS)
        return error(nbd_error, NBD_EINVAL, r);
    if (r->flags & ~allowed_flags(r->type, lim))
        return error(nbd_error, NBD_EINVAL, r);
    if (r->type == NBD_CMD_FLUSH)
        return r->offset || r->length ? error(nbd_error, NBD_EINVAL, r)
                                      : REQUEST_SERVE;
    if (is_write(r->type) && lim->readonly)
        return error(nbd_error, NBD_EPERM, r);
    if (r->type == NBD_CMD_TRIM && !lim->can_trim)
        return error(nbd_error, NBD_EINVAL, r);
    if (r->type == NBD_CMD_BLOCK_STATUS && !lim->has_context)
        return error(nbd_error, NBD_EINVAL, r);
    if ((r->type == NBD_CMD_READ || r->type == NBD_CMD_WRITE) &&
        r->length > SD_REQUEST_MAX)
        return error(nbd_error, r->type == NBD_CMD_READ ? NBD_EOVERFLOW
                                                        : NBD_EINVAL, r);
    if (r->length == 0)
        return error(nbd_error, NBD_EINVAL, r);
    if (lim->min_block > 1 &&
        ((r->offset | r->length) & (lim->min_block - 1)))
        return error(nbd_error, NBD_EINVAL, r);
    if (end < r->offset || end > lim->size)
        return error(nbd_error, is_write(r->type) ? NBD_ENOSPC : NBD_EINVAL,
                     r);
    return REQUEST_SERVE;
}
