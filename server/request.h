/* SPDX-License-Identifier: MIT */
/*
 * NBD requests: the wire header, and the checks that decide whether a
 * request is served or answered with an error. Pure functions, so the
 * rules are unit-tested and fuzzed apart from any socket.
 */
#ifndef SENDENSE_SERVER_REQUEST_H
#define SENDENSE_SERVER_REQUEST_H

#include <stdbool.h>
#include <stdint.h>

struct nbd_request {
    uint16_t flags;
    uint16_t type;
    uint64_t cookie;
    uint64_t offset;
    uint32_t length;
};

/* What the connection negotiated and the export allows. */
struct nbd_request_limits {
    uint64_t size;
    bool readonly;
    bool structured;
    bool can_trim;
    bool can_fast_zero;
    bool has_context;        /* a meta context was selected */
    uint32_t min_block;      /* offsets and lengths must be multiples */
};

enum request_verdict {
    REQUEST_SERVE,           /* run it */
    REQUEST_REPLY_ERROR,     /* answer *nbd_error, keep the connection */
    REQUEST_DISCONNECT,      /* NBD_CMD_DISC: stop reading */
    REQUEST_CLOSE,           /* the stream cannot be trusted: close */
};

/* Parse 28 bytes. Returns false when the magic is wrong. */
bool nbd_request_parse(const uint8_t *buf, struct nbd_request *out);

/* Decide on a parsed request. For REQUEST_REPLY_ERROR, *nbd_error is
 * the protocol's errno; for WRITE the payload must still be read (or
 * the verdict is REQUEST_CLOSE when it is too large to read). */
enum request_verdict nbd_request_check(const struct nbd_request *r,
                                       const struct nbd_request_limits *lim,
                                       uint32_t *nbd_error);

/* Does the request carry a payload of r->length bytes? */
static inline bool nbd_request_has_payload(const struct nbd_request *r)
{
    return r->type == 1; /* NBD_CMD_WRITE */
}

#endif
