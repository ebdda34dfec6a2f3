/* SPDX-License-Identifier: MIT */
/* What nbd-pump's two transmission loops share (nbd-pump.c). */
#ifndef SENDENSE_BENCH_NBD_PUMP_H
#define SENDENSE_BENCH_NBD_PUMP_H

#include <liburing.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define NBDMAGIC 0x4e42444d41474943ULL
#define IHAVEOPT 0x49484156454f5054ULL
#define OPT_REPLY_MAGIC 0x3e889045565a9ULL
#define REQUEST_MAGIC 0x25609513u
#define SIMPLE_REPLY_MAGIC 0x67446698u
#define STRUCTURED_REPLY_MAGIC 0x668e33efu

enum {
    FLAG_FIXED_NEWSTYLE = 1, FLAG_NO_ZEROES = 2,
    OPT_ABORT = 2, OPT_GO = 7, OPT_STRUCTURED_REPLY = 8,
    REP_ACK = 1, REP_INFO = 3, REP_ERR_UNSUP = (int)(1u << 31) + 1,
    INFO_EXPORT = 0,
    TX_HAS_FLAGS = 1, TX_SEND_FLUSH = 4, TX_CAN_MULTI_CONN = 256,
    CMD_READ = 0, CMD_WRITE = 1, CMD_DISC = 2, CMD_FLUSH = 3,
    REQUEST_BYTES = 28, REPLY_BYTES = 16,
    CHUNK_FLAG_DONE = 1, CHUNK_OFFSET_DATA = 1, CHUNK_ERROR = 32769,
    DATA_CHUNK_BYTES = 28,      /* chunk header and offset */
    ERROR_CHUNK_BYTES = 26,     /* chunk header, error, no message */
    MAX_PAYLOAD = 4 << 20,
    RX_BYTES = MAX_PAYLOAD + REQUEST_BYTES,
    TX_BYTES = 2 * MAX_PAYLOAD,
    RING_ENTRIES = 256,
};

struct pump {
    int sock, file;
    uint64_t size;
    struct io_uring ring;
    char *rx, *tx;
    size_t rx_len;              /* bytes received, not yet handled */
    size_t tx_len, tx_sent;     /* replies queued; of them, sent */
    bool closing;
    bool tx_full;               /* a request waits for room in tx */
    bool pipelined;             /* --ring: pump_transmit_ring */
    bool offer_structured;      /* --structured */
    bool structured;            /* the client took structured replies */
};

/* A request's fields, from the REQUEST_BYTES at q (host order; the
 * cookie as it came). False if the magic is wrong or len too large. */
struct pump_request {
    uint16_t type;
    uint32_t len;
    uint64_t cookie, off;
};
bool pump_parse_request(const char *q, struct pump_request *r);

/* The bytes a request takes in the stream: header and write payload. */
static inline size_t pump_request_bytes(const struct pump_request *r)
{
    return REQUEST_BYTES + (r->type == CMD_WRITE ? r->len : 0);
}

/* The simple reply to cookie with err, REPLY_BYTES at r. */
void pump_reply_header(char *r, uint64_t cookie, uint32_t err);

/* The bytes before a read's data in its reply: a simple reply's header,
 * or a data chunk's header and offset. */
static inline size_t pump_read_head_bytes(bool structured)
{
    return structured ? DATA_CHUNK_BYTES : REPLY_BYTES;
}

/* Writes at h the header of the reply to a read of len bytes at off,
 * which succeeded (ok) or failed with EIO, and returns its length: a
 * simple reply, or with structured replies one data chunk or one error
 * chunk (the protocol allows no simple reply to a read then). The data,
 * if ok, follows at h + pump_read_head_bytes(structured). */
size_t pump_read_header(char *h, bool structured, uint64_t cookie,
                        uint64_t off, uint32_t len, bool ok);

/* Hands each whole request at the front of p->rx to take (which returns
 * its length, 0 to stop, or a negative errno) until one is incomplete,
 * take stops or the client said goodbye, then moves the rest forward. */
typedef long pump_take_fn(void *ctx, const char *q, size_t avail);
int pump_consume(struct pump *p, pump_take_fn *take, void *ctx);

/* Transmission with reads and writes through the ring, pipelined
 * (nbd-pump-ring.c):
 * 0 when the client left, or a negative errno. */
int pump_transmit_ring(struct pump *p);

#endif
