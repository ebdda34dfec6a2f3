/* SPDX-License-Identifier: MIT */
/*
 * JSON-RPC 2.0 over newline-delimited JSON, on jansson.
 *
 * One struct jsonrpc_conn per control connection. It knows nothing of
 * sockets or event loops: the caller feeds it the bytes it read and
 * writes out the bytes it produced. Peer credentials, socket modes and
 * closing are the caller's business.
 *
 *   bytes in ──► jsonrpc_conn_feed() ──► method handlers ──► replies
 *                                                              │
 *   bytes out ◄── jsonrpc_conn_output() / jsonrpc_conn_consume() ◄┘
 *
 * Framing: one JSON text per line, ended by LF (a CR before the LF is
 * ignored, blank lines are skipped). Replies are written the same way,
 * compact, one per line.
 *
 * Limits (a client can make us allocate no more than these):
 *  - JSONRPC_MAX_LINE bytes in one line before its LF (CR included). A
 *    longer line gets a JSONRPC_TOO_LARGE error reply with id null, and
 *    its bytes are dropped up to the next LF; the conn stays usable.
 *  - JSONRPC_MAX_BATCH requests in one batch; a larger batch gets one
 *    JSONRPC_TOO_LARGE error and none of it runs.
 *  - JSONRPC_MAX_PENDING requests whose handler is still working; past
 *    it, new requests get JSONRPC_TOO_MANY_PENDING without running.
 *  - JSONRPC_MAX_OUTPUT bytes of replies not yet consumed. A reply that
 *    would pass it marks the conn broken (jsonrpc_conn_feed() returns
 *    -ENOBUFS): the caller must close it. The caller should stop
 *    reading from a peer while it has unsent output, so that only a
 *    client that never reads its replies gets there.
 *
 * Requests: a handler from the method table runs for each valid request
 * and notification. It replies once, through its request handle, either
 * before it returns or later (JSONRPC_PENDING). Replies to a batch are
 * gathered and sent as one array when the last one arrives.
 *
 * Ownership:
 *  - The conn owns its buffers and every request until the handler
 *    returns. A handler that returns JSONRPC_PENDING hands the request
 *    to its owner, who must call exactly one jsonrpc_reply_*() on it
 *    later; that call sends the reply (if the conn is still there) and
 *    frees the request, always.
 *  - jsonrpc_conn_free() with requests still pending detaches them: each
 *    one's cancel callback (if set) runs, and from then on a reply to it
 *    sends nothing but still frees it. The owner may reply inside the
 *    callback.
 *  - json_t values passed to reply functions are stolen (new references
 *    are taken over); params passed to handlers are borrowed, valid only
 *    until the handler returns (json_incref() them to keep them).
 *  - Handlers must not free the conn they run on.
 *
 * Not thread-safe: one conn, its requests and its replies belong to one
 * thread.
 */
#ifndef SENDENSE_JSONRPC_H
#define SENDENSE_JSONRPC_H

#include "common/error.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum {
    JSONRPC_MAX_LINE = 1 << 20,      /* bytes of one line (1 MiB) */
    JSONRPC_MAX_BATCH = 64,          /* requests in one batch */
    JSONRPC_MAX_PENDING = 256,       /* handlers not yet replied, per conn */
    JSONRPC_MAX_OUTPUT = 16 << 20,   /* reply bytes queued (16 MiB) */
    JSONRPC_MAX_MESSAGE = 256,       /* bytes of an error's message */
};

/* Error codes. The -327xx/-326xx ones are the spec's; -32000..-32099 is
 * the spec's range for errors of the implementation (here, limits);
 * application errors (a method failed) are JSONRPC_APP_MIN..MAX and come
 * from a negative errno through jsonrpc_errno_code(), with the errno's
 * name in the error's data: {"errno": "ENOENT"}. */
enum jsonrpc_code {
    JSONRPC_PARSE_ERROR = -32700,       /* not JSON */
    JSONRPC_INVALID_REQUEST = -32600,   /* JSON, but not a request */
    JSONRPC_METHOD_NOT_FOUND = -32601,
    JSONRPC_INVALID_PARAMS = -32602,
    JSONRPC_INTERNAL_ERROR = -32603,    /* our bug, or out of memory */
    JSONRPC_TOO_LARGE = -32001,         /* line or batch over its limit */
    JSONRPC_TOO_MANY_PENDING = -32002,  /* JSONRPC_MAX_PENDING reached */

    JSONRPC_APP_MIN = 1000,
    JSONRPC_E_FAILED = 1000,        /* any other errno */
    JSONRPC_E_NOT_FOUND = 1001,     /* ENOENT ENODEV ENXIO ESRCH */
    JSONRPC_E_EXISTS = 1002,        /* EEXIST ENOTEMPTY */
    JSONRPC_E_BUSY = 1003,          /* EBUSY EAGAIN EALREADY EINPROGRESS */
    JSONRPC_E_DENIED = 1004,        /* EACCES EPERM EROFS */
    JSONRPC_E_INVALID = 1005,       /* EINVAL ERANGE ENAMETOOLONG */
    JSONRPC_E_NO_SPACE = 1006,      /* ENOSPC EDQUOT EFBIG EMFILE ENFILE */
    JSONRPC_E_UNSUPPORTED = 1007,   /* ENOTSUP EOPNOTSUPP ENOSYS */
    JSONRPC_E_TIMEOUT = 1008,       /* ETIMEDOUT */
    JSONRPC_E_CANCELED = 1009,      /* ECANCELED EINTR ESHUTDOWN */
    JSONRPC_E_IO = 1010,            /* EIO EUCLEAN EBADMSG */
    JSONRPC_APP_MAX = 1999,
};

struct jsonrpc_conn;
struct jsonrpc_request;

/* A handler's return value when it keeps the request to reply later. */
enum { JSONRPC_PENDING = 1 };

/*
 * Runs one request. ctx is the one given to jsonrpc_conn_new(); params
 * is the request's "params" object, or NULL when there were none
 * (positional params are refused before any handler runs).
 *
 * Returns:
 *  - 0 after replying with jsonrpc_reply_*() (0 without a reply is a
 *    bug and answers JSONRPC_INTERNAL_ERROR);
 *  - JSONRPC_PENDING to reply later (see Ownership above);
 *  - a negative errno without replying: the reply is
 *    jsonrpc_reply_errno(req, ret, NULL).
 * Once the handler has replied, its return value is not looked at, so
 * `return jsonrpc_reply_...;` and returning a param helper's error work.
 */
typedef int jsonrpc_handler(void *ctx, struct jsonrpc_conn *conn,
                            json_t *params, struct jsonrpc_request *req);

struct jsonrpc_method {
    const char *name;
    jsonrpc_handler *fn;
};

/* Tells a pending request's owner that its conn is gone. */
typedef void jsonrpc_cancel_fn(void *arg, struct jsonrpc_request *req);

/* methods: ends with a { NULL, NULL } entry; it and ctx must outlive the
 * conn. Returns NULL when out of memory. */
struct jsonrpc_conn *jsonrpc_conn_new(const struct jsonrpc_method *methods,
                                      void *ctx);
/* Frees the conn; pending requests are detached (see Ownership). NULL is
 * fine. */
void jsonrpc_conn_free(struct jsonrpc_conn *conn);

/* Takes bytes read from the peer and runs every complete line. Returns 0,
 * or a negative errno once the conn is broken (-ENOBUFS: output over its
 * limit; -ENOMEM), after which it takes nothing more and the caller
 * should close it. */
int jsonrpc_conn_feed(struct jsonrpc_conn *conn, const void *data, size_t len);
/* 0, or the negative errno that broke the conn. */
int jsonrpc_conn_error(const struct jsonrpc_conn *conn);

/* The bytes waiting to be sent: *ptr stays valid until the next call on
 * the conn or a reply. Returns their count (0: nothing to send). */
size_t jsonrpc_conn_output(struct jsonrpc_conn *conn, const void **ptr);
/* Marks the first n bytes of the output as sent (n <= what
 * jsonrpc_conn_output() returned). */
void jsonrpc_conn_consume(struct jsonrpc_conn *conn, size_t n);
/* Requests whose handler returned JSONRPC_PENDING and that have not been
 * replied to yet. */
size_t jsonrpc_conn_pending(const struct jsonrpc_conn *conn);

/*
 * Replies. Each consumes the request: call exactly one, once. With a
 * notification, or after the conn is gone, nothing is sent. result and
 * data are stolen; a NULL result (say, a failed json_pack()) answers
 * JSONRPC_INTERNAL_ERROR. The return value is the errno a handler can
 * pass on: 0 for a result, -EINVAL for JSONRPC_INVALID_PARAMS, -EIO for
 * other errors, or the given errno.
 */
int jsonrpc_reply_result(struct jsonrpc_request *req, json_t *result);
int jsonrpc_reply_error(struct jsonrpc_request *req, int code, json_t *data,
                        const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* err is a negative errno: code from jsonrpc_errno_code(), data
 * {"errno": NAME}, message from fmt or, when fmt is NULL, strerror. */
int jsonrpc_reply_errno(struct jsonrpc_request *req, int err,
                        const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The same from a struct sd_error (its code and message). */
int jsonrpc_reply_sd_error(struct jsonrpc_request *req,
                           const struct sd_error *err);

/* Asks to be told (once) if the conn goes while req is pending. */
void jsonrpc_request_on_cancel(struct jsonrpc_request *req,
                               jsonrpc_cancel_fn *fn, void *arg);
/* True once req's conn is gone: a reply would be thrown away. */
bool jsonrpc_request_cancelled(const struct jsonrpc_request *req);
/* The method's name, for the owner's logs; valid as long as req. */
const char *jsonrpc_request_method(const struct jsonrpc_request *req);

/* err < 0: the application code for it (JSONRPC_INTERNAL_ERROR for
 * ENOMEM); its name, e.g. "ENOENT" ("E?" when not known). */
int jsonrpc_errno_code(int err);
const char *jsonrpc_errno_name(int err);

/*
 * Params. Every method checks its params with a table, so that each one
 * rejects the same things the same way: params that are not an object,
 * names not in the table, a missing required param, a wrong type, an
 * integer out of range. Each failure replies JSONRPC_INVALID_PARAMS
 * naming the param ({"param": NAME} in data) and returns -EINVAL, so a
 * handler writes:
 *
 *   const char *name;
 *   bool drain = false;          // default when absent
 *   struct jsonrpc_param spec[] = {
 *       JSONRPC_PARAM_STRING("name", true, &name),
 *       JSONRPC_PARAM_BOOL("drain", false, &drain),
 *       JSONRPC_PARAM_END,
 *   };
 *   int ret = jsonrpc_params_parse(req, params, spec);
 *   if (ret < 0)
 *       return ret;
 *
 * Outputs of absent optional params are left as they were. Strings and
 * objects are borrowed from params (no NUL inside a string: the parser
 * refuses \u0000).
 */
enum jsonrpc_param_type {
    JSONRPC_STRING,
    JSONRPC_BOOL,
    JSONRPC_INTEGER,
    JSONRPC_OBJECT,
    JSONRPC_ARRAY,
};

struct jsonrpc_param {
    const char *name;               /* NULL ends the table */
    enum jsonrpc_param_type type;
    bool required;
    int64_t min, max;               /* JSONRPC_INTEGER: allowed range */
    union {
        const char **string;
        bool *boolean;
        int64_t *integer;
        json_t **object;
    } out;
};

#define JSONRPC_PARAM_STRING(n, req, p) \
    { .name = (n), .type = JSONRPC_STRING, .required = (req), .out.string = (p) }
#define JSONRPC_PARAM_BOOL(n, req, p) \
    { .name = (n), .type = JSONRPC_BOOL, .required = (req), .out.boolean = (p) }
#define JSONRPC_PARAM_INT(n, req, lo, hi, p) \
    { .name = (n), .type = JSONRPC_INTEGER, .required = (req), \
      .min = (lo), .max = (hi), .out.integer = (p) }
#define JSONRPC_PARAM_OBJECT(n, req, p) \
    { .name = (n), .type = JSONRPC_OBJECT, .required = (req), .out.object = (p) }
#define JSONRPC_PARAM_ARRAY(n, req, p) \
    { .name = (n), .type = JSONRPC_ARRAY, .required = (req), .out.object = (p) }
#define JSONRPC_PARAM_END { .name = NULL }

/* Checks params (may be NULL: no params) against spec and fills the
 * outputs. 0 on success; on failure replies and returns -EINVAL. */
int jsonrpc_params_parse(struct jsonrpc_request *req, json_t *params,
                         const struct jsonrpc_param *spec);

/* One param by name, for a handler whose params depend on each other
 * (jsonrpc_params_parse() is built on it). Returns 0 when found, 1 when
 * absent and optional (*out untouched), -EINVAL after replying. */
int jsonrpc_param_get(struct jsonrpc_request *req, json_t *params,
                      const struct jsonrpc_param *param);

#endif
