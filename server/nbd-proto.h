/* SPDX-License-Identifier: MIT */
/*
 * Wire constants of the NBD protocol (fixed newstyle negotiation,
 * simple and structured replies), from the protocol document
 * (doc/proto.md of NetworkBlockDevice/nbd). All integers on the wire are
 * big-endian.
 */
#ifndef SENDENSE_NBD_PROTO_H
#define SENDENSE_NBD_PROTO_H

#include <stdint.h>

/* Negotiation. */
#define NBD_MAGIC_INIT 0x4e42444d41474943ull      /* "NBDMAGIC" */
#define NBD_MAGIC_OPTS 0x49484156454F5054ull      /* "IHAVEOPT" */
#define NBD_MAGIC_OPT_REPLY 0x0003e889045565a9ull

enum {
    NBD_FLAG_FIXED_NEWSTYLE = 1 << 0,   /* server handshake flags */
    NBD_FLAG_NO_ZEROES = 1 << 1,
    NBD_FLAG_C_FIXED_NEWSTYLE = 1 << 0, /* client flags */
    NBD_FLAG_C_NO_ZEROES = 1 << 1,
};

enum nbd_opt {
    NBD_OPT_EXPORT_NAME = 1,
    NBD_OPT_ABORT = 2,
    NBD_OPT_LIST = 3,
    NBD_OPT_STARTTLS = 5,
    NBD_OPT_INFO = 6,
    NBD_OPT_GO = 7,
    NBD_OPT_STRUCTURED_REPLY = 8,
    NBD_OPT_LIST_META_CONTEXT = 9,
    NBD_OPT_SET_META_CONTEXT = 10,
};

#define NBD_REP_ERR_BIT (1u << 31)
enum nbd_rep {
    NBD_REP_ACK = 1,
    NBD_REP_SERVER = 2,
    NBD_REP_INFO = 3,
    NBD_REP_META_CONTEXT = 4,
    NBD_REP_ERR_UNSUP = NBD_REP_ERR_BIT | 1,
    NBD_REP_ERR_POLICY = NBD_REP_ERR_BIT | 2,
    NBD_REP_ERR_INVALID = NBD_REP_ERR_BIT | 3,
    NBD_REP_ERR_PLATFORM = NBD_REP_ERR_BIT | 4,
    NBD_REP_ERR_TLS_REQD = NBD_REP_ERR_BIT | 5,
    NBD_REP_ERR_UNKNOWN = NBD_REP_ERR_BIT | 6,
    NBD_REP_ERR_SHUTDOWN = NBD_REP_ERR_BIT | 7,
    NBD_REP_ERR_BLOCK_SIZE_REQD = NBD_REP_ERR_BIT | 8,
    NBD_REP_ERR_TOO_BIG = NBD_REP_ERR_BIT | 9,
};

enum nbd_info {
    NBD_INFO_EXPORT = 0,
    NBD_INFO_NAME = 1,
    NBD_INFO_DESCRIPTION = 2,
    NBD_INFO_BLOCK_SIZE = 3,
};

/* Transmission flags of an export. */
enum {
    NBD_FLAG_HAS_FLAGS = 1 << 0,
    NBD_FLAG_READ_ONLY = 1 << 1,
    NBD_FLAG_SEND_FLUSH = 1 << 2,
    NBD_FLAG_SEND_FUA = 1 << 3,
    NBD_FLAG_ROTATIONAL = 1 << 4,
    NBD_FLAG_SEND_TRIM = 1 << 5,
    NBD_FLAG_SEND_WRITE_ZEROES = 1 << 6,
    NBD_FLAG_SEND_DF = 1 << 7,
    NBD_FLAG_CAN_MULTI_CONN = 1 << 8,
    NBD_FLAG_SEND_CACHE = 1 << 10,
    NBD_FLAG_SEND_FAST_ZERO = 1 << 11,
};

/* Transmission. */
#define NBD_REQUEST_MAGIC 0x25609513u
#define NBD_SIMPLE_REPLY_MAGIC 0x67446698u
#define NBD_STRUCTURED_REPLY_MAGIC 0x668e33efu

enum { NBD_REQUEST_SIZE = 28, NBD_SIMPLE_REPLY_SIZE = 16,
       NBD_CHUNK_HEADER_SIZE = 20 };

enum nbd_cmd {
    NBD_CMD_READ = 0,
    NBD_CMD_WRITE = 1,
    NBD_CMD_DISC = 2,
    NBD_CMD_FLUSH = 3,
    NBD_CMD_TRIM = 4,
    NBD_CMD_CACHE = 5,
    NBD_CMD_WRITE_ZEROES = 6,
    NBD_CMD_BLOCK_STATUS = 7,
};

enum {
    NBD_CMD_FLAG_FUA = 1 << 0,
    NBD_CMD_FLAG_NO_HOLE = 1 << 1,
    NBD_CMD_FLAG_DF = 1 << 2,
    NBD_CMD_FLAG_REQ_ONE = 1 << 3,
    NBD_CMD_FLAG_FAST_ZERO = 1 << 4,
};

enum { NBD_REPLY_FLAG_DONE = 1 << 0 };

enum nbd_reply_type {
    NBD_REPLY_TYPE_NONE = 0,
    NBD_REPLY_TYPE_OFFSET_DATA = 1,
    NBD_REPLY_TYPE_OFFSET_HOLE = 2,
    NBD_REPLY_TYPE_BLOCK_STATUS = 5,
    NBD_REPLY_TYPE_ERROR = (1 << 15) + 1,
    NBD_REPLY_TYPE_ERROR_OFFSET = (1 << 15) + 2,
};

/* base:allocation flags. */
enum { NBD_STATE_HOLE = 1 << 0, NBD_STATE_ZERO = 1 << 1 };

/* Errors on the wire (the protocol's own numbers, not the host's). */
enum nbd_errno {
    NBD_EPERM = 1,
    NBD_EIO = 5,
    NBD_ENOMEM = 12,
    NBD_EINVAL = 22,
    NBD_ENOSPC = 28,
    NBD_EOVERFLOW = 75,
    NBD_ENOTSUP = 95,
    NBD_ESHUTDOWN = 108,
};

/* Meta contexts this server offers, and the ids it gives them. */
#define NBD_CONTEXT_BASE_ALLOCATION "base:allocation"
#define NBD_CONTEXT_QEMU_DEPTH "qemu:allocation-depth"
enum { NBD_CONTEXT_ID_BASE = 1, NBD_CONTEXT_ID_DEPTH = 2 };

#endif
