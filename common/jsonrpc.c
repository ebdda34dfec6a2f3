/* SPDX-License-Identifier: MIT */
/*
 * JSON-RPC 2.0 connection state machine (see jsonrpc.h for the contract).
 *
 * Notes on the design and implementation:
 *
 * - Input: complete lines found in the fed bytes are parsed in place; only
 *   the unfinished tail of a feed is copied into conn->in, so a client that
 *   sends many lines at once costs no copies and one that trickles bytes
 *   costs one buffer of at most JSONRPC_MAX_LINE bytes. A line that would
 *   pass that size is answered at once and then skipped up to its LF
 *   (conn->discarding), never stored.
 *
 * - Every reply goes through route(): a notification's reply is dropped, a
 *   batch member's joins its batch, any other is written to the output.
 *   Errors found before a handler runs (parse, invalid request, unknown
 *   method) need no request object, so they cannot fail for want of one.
 *
 * - A request handed to a handler is in one of three states: RUNNING
 *   while its handler runs (a reply then only marks it DONE, because the
 *   dispatcher still looks at it after the handler returns), PENDING
 *   once the handler kept it (on conn->pending; a reply frees it), DONE.
 *   When the conn is freed, pending requests are unlinked and their conn
 *   pointer cleared: their replies go nowhere but still free them.
 *
 * - A batch counts its requests not replied yet, plus one held by the
 *   dispatcher until every member has been dispatched; whoever drops the
 *   count to zero sends the gathered array. Members carry the batch, not
 *   the conn, so a batch outlives a freed conn until its last member's
 *   reply.
 */
#include "config.h"

#include "jsonrpc.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Buffers above this are freed when they empty, so an idle conn that
 * once saw a big line or reply does not keep the memory. */
enum { BUF_KEEP = 64 << 10, BUF_MIN = 4096 };

struct buf {
    char *data;
    size_t len, cap;
};

struct jsonrpc_conn {
    const struct jsonrpc_method *methods;
    void *ctx;
    struct buf in;                  /* the unfinished line */
    bool discarding;                /* skipping an over-long line */
    struct buf out;                 /* replies; sent up to out_head */
    size_t out_head;
    int error;                      /* negative errno once broken */
    size_t npending;
    struct jsonrpc_request *pending;
};

struct jsonrpc_batch {
    json_t *replies;                /* array, in the order replies came */
    size_t outstanding;
};

enum req_state { REQ_RUNNING, REQ_PENDING, REQ_DONE };

struct jsonrpc_request {
    struct jsonrpc_conn *conn;      /* NULL once the conn is freed */
    struct jsonrpc_batch *batch;    /* NULL for a lone request */
    json_t *id;                     /* NULL for a notification */
    json_t *method;                 /* the name, a JSON string */
    enum req_state state;
    jsonrpc_cancel_fn *cancel_fn;
    void *cancel_arg;
    struct jsonrpc_request *prev, *next;    /* on conn->pending */
};

/* ---- byte buffers ---------------------------------------------------- */

/* Makes room for extra more bytes, never past limit in all. */
static int buf_reserve(struct buf *b, size_t extra, size_t limit)
{
    size_t need = b->len + extra, cap = b->cap ? b->cap : BUF_MIN;
    char *p;

    if (need <= b->cap)
        return 0;
    if (need > limit)
        return -ENOBUFS;
    while (cap < need)
        cap *= 2;
    if (cap > limit)
        cap = limit;
    p = realloc(b->data, cap);
    if (!p)
        return -ENOMEM;
    b->data = p;
    b->cap = cap;
    return 0;
}

static void buf_empty(struct buf *b)
{
    b->len = 0;
    if (b->cap > BUF_KEEP) {
        free(b->data);
        b->data = NULL;
        b->cap = 0;
    }
}

static void conn_fail(struct jsonrpc_conn *conn, int err)
{
    if (!conn->error)
        conn->error = err;
}

/* ---- output ----------------------------------------------------------- */

/* Room for n more output bytes, moving unsent bytes to the front first. */
static int out_reserve(struct jsonrpc_conn *conn, size_t n)
{
    struct buf *out = &conn->out;
    size_t unsent = out->len - conn->out_head;

    if (n > JSONRPC_MAX_OUTPUT - unsent)
        return -ENOBUFS;
    if (conn->out_head && out->len + n > out->cap) {
        memmove(out->data, out->data + conn->out_head, unsent);
        out->len = unsent;
        conn->out_head = 0;
    }
    return buf_reserve(out, n, JSONRPC_MAX_OUTPUT);
}

/* Writes one reply (or batch array) as a line. Borrows json. */
static void conn_send(struct jsonrpc_conn *conn, const json_t *json)
{
    size_t n;
    int ret;

    if (conn->error)
        return;
    n = json_dumpb(json, NULL, 0, JSON_COMPACT);
    if (n == 0) {
        conn_fail(conn, -ENOMEM);   /* jansson fails only for memory */
        return;
    }
    ret = out_reserve(conn, n + 1);
    if (ret < 0) {
        conn_fail(conn, ret);
        return;
    }
    if (json_dumpb(json, conn->out.data + conn->out.len, n, JSON_COMPACT) != n) {
        conn_fail(conn, -ENOMEM);
        return;
    }
    conn->out.len += n;
    conn->out.data[conn->out.len++] = '\n';
}

size_t jsonrpc_conn_output(struct jsonrpc_conn *conn, const void **ptr)
{
    /* No arithmetic on a NULL buffer (never allocated, or freed empty). */
    *ptr = conn->out.data ? conn->out.data + conn->out_head : "";
    return conn->out.len - conn->out_head;
}

void jsonrpc_conn_consume(struct jsonrpc_conn *conn, size_t n)
{
    size_t unsent = conn->out.len - conn->out_head;

    conn->out_head += n < unsent ? n : unsent;
    if (conn->out_head == conn->out.len) {
        conn->out_head = 0;
        buf_empty(&conn->out);
    }
}

/* ---- building replies ------------------------------------------------- */

/* A JSON string of msg. jansson refuses invalid UTF-8, which a message
 * may hold (a file name, or a multibyte character cut by truncation);
 * then the bytes outside ASCII become '?'. */
static json_t *message_json(const char *msg)
{
    char ascii[JSONRPC_MAX_MESSAGE];
    json_t *s = json_string(msg);
    size_t i;

    if (s)
        return s;
    for (i = 0; msg[i] && i < sizeof(ascii) - 1; i++)
        ascii[i] = (unsigned char)msg[i] < 0x80 ? msg[i] : '?';
    ascii[i] = '\0';
    return json_string(ascii);
}

/* {"jsonrpc":"2.0","id":id,key:value}. Steals value (NULL: out of
 * memory); NULL when out of memory. */
static json_t *envelope(json_t *id, const char *key, json_t *value)
{
    json_t *msg = json_object();

    if (!msg || !value ||
        json_object_set_new(msg, "jsonrpc", json_string("2.0")) < 0 ||
        json_object_set(msg, "id", id ? id : json_null()) < 0) {
        json_decref(msg);
        json_decref(value);
        return NULL;
    }
    if (json_object_set_new(msg, key, value) < 0) {    /* took value */
        json_decref(msg);
        return NULL;
    }
    return msg;
}

/* Steals data (may be NULL). NULL when out of memory. */
static json_t *make_error(json_t *id, int code, json_t *data, const char *msg)
{
    json_t *err = json_object();

    if (!err || json_object_set_new(err, "code", json_integer(code)) < 0 ||
        json_object_set_new(err, "message", message_json(msg)) < 0) {
        json_decref(err);
        json_decref(data);
        return NULL;
    }
    if (data && json_object_set_new(err, "data", data) < 0) {
        json_decref(err);
        return NULL;
    }
    return envelope(id, "error", err);
}

static void batch_put(struct jsonrpc_conn *conn, struct jsonrpc_batch *batch)
{
    if (--batch->outstanding > 0)
        return;
    /* A batch of notifications only gets no reply at all, not []. */
    if (conn && json_array_size(batch->replies) > 0)
        conn_send(conn, batch->replies);
    json_decref(batch->replies);
    free(batch);
}

/* Where a reply goes (see the notes at the top). Steals reply; id NULL
 * means a notification. */
static void route(struct jsonrpc_conn *conn, struct jsonrpc_batch *batch,
                  const json_t *id, json_t *reply)
{
    if (!reply) {
        conn_fail(conn, -ENOMEM);
        return;
    }
    if (!id || conn->error)
        json_decref(reply);
    else if (batch) {
        if (json_array_append_new(batch->replies, reply) < 0)
            conn_fail(conn, -ENOMEM);
    } else {
        conn_send(conn, reply);
        json_decref(reply);
    }
}

/* An error not tied to a request object. Steals data. */
static void route_error(struct jsonrpc_conn *conn, struct jsonrpc_batch *batch,
                        json_t *id, int code, json_t *data,
                        const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

static void route_error(struct jsonrpc_conn *conn, struct jsonrpc_batch *batch,
                        json_t *id, int code, json_t *data,
                        const char *fmt, ...)
{
    char msg[JSONRPC_MAX_MESSAGE];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    route(conn, batch, id, make_error(id, code, data, msg));
}

/* ---- requests --------------------------------------------------------- */

static void pending_link(struct jsonrpc_conn *conn, struct jsonrpc_request *req)
{
    req->prev = NULL;
    req->next = conn->pending;
    if (conn->pending)
        conn->pending->prev = req;
    conn->pending = req;
    conn->npending++;
}

static void pending_unlink(struct jsonrpc_conn *conn,
                           struct jsonrpc_request *req)
{
    if (req->prev)
        req->prev->next = req->next;
    else
        conn->pending = req->next;
    if (req->next)
        req->next->prev = req->prev;
    req->prev = req->next = NULL;
    conn->npending--;
}

static struct jsonrpc_request *req_new(struct jsonrpc_conn *conn,
                                       struct jsonrpc_batch *batch,
                                       json_t *id, json_t *method)
{
    struct jsonrpc_request *req = calloc(1, sizeof(*req));

    if (!req)
        return NULL;
    req->conn = conn;
    req->batch = batch;
    req->id = json_incref(id);
    req->method = json_incref(method);
    req->state = REQ_RUNNING;
    if (batch)
        batch->outstanding++;
    return req;
}

static void req_free(struct jsonrpc_request *req)
{
    if (req->state == REQ_PENDING && req->conn)
        pending_unlink(req->conn, req);
    if (req->batch)
        batch_put(req->conn, req->batch);
    json_decref(req->id);
    json_decref(req->method);
    free(req);
}

/* The one way a request is answered. Steals reply. */
static void req_finish(struct jsonrpc_request *req, json_t *reply)
{
    if (req->state == REQ_DONE) {   /* a second reply: a handler bug */
        json_decref(reply);
        return;
    }
    if (req->conn)
        route(req->conn, req->batch, req->id, reply);
    else
        json_decref(reply);
    if (req->state == REQ_RUNNING)
        req->state = REQ_DONE;      /* the dispatcher frees it */
    else
        req_free(req);
}

int jsonrpc_reply_result(struct jsonrpc_request *req, json_t *result)
{
    if (!result) {
        req_finish(req, make_error(req->id, JSONRPC_INTERNAL_ERROR, NULL,
                                   "out of memory building the result"));
        return -ENOMEM;
    }
    req_finish(req, envelope(req->id, "result", result));
    return 0;
}

static int reply_error_v(struct jsonrpc_request *req, int code, json_t *data,
                         const char *fmt, va_list ap)
    __attribute__((format(printf, 4, 0)));

static int reply_error_v(struct jsonrpc_request *req, int code, json_t *data,
                         const char *fmt, va_list ap)
{
    char msg[JSONRPC_MAX_MESSAGE];

    vsnprintf(msg, sizeof(msg), fmt, ap);
    req_finish(req, make_error(req->id, code, data, msg));
    return code == JSONRPC_INVALID_PARAMS ? -EINVAL : -EIO;
}

int jsonrpc_reply_error(struct jsonrpc_request *req, int code, json_t *data,
                        const char *fmt, ...)
{
    va_list ap;
    int ret;

    va_start(ap, fmt);
    ret = reply_error_v(req, code, data, fmt, ap);
    va_end(ap);
    return ret;
}

int jsonrpc_reply_errno(struct jsonrpc_request *req, int err,
                        const char *fmt, ...)
{
    json_t *data = json_pack("{s:s}", "errno", jsonrpc_errno_name(err));
    char msg[JSONRPC_MAX_MESSAGE];
    va_list ap;

    if (fmt) {
        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
    } else {
        /* Only called on the conn's thread; glibc's strerror returns
         * static text for every errno it knows. */
        snprintf(msg, sizeof(msg), "%s", strerror(err < 0 ? -err : EIO));
    }
    req_finish(req, make_error(req->id, jsonrpc_errno_code(err), data, msg));
    return err < 0 ? err : -EIO;
}

int jsonrpc_reply_sd_error(struct jsonrpc_request *req,
                           const struct sd_error *err)
{
    if (!err->msg[0])
        return jsonrpc_reply_errno(req, err->code, NULL);
    return jsonrpc_reply_errno(req, err->code, "%s", err->msg);
}

void jsonrpc_request_on_cancel(struct jsonrpc_request *req,
                               jsonrpc_cancel_fn *fn, void *arg)
{
    req->cancel_fn = fn;
    req->cancel_arg = arg;
}

bool jsonrpc_request_cancelled(const struct jsonrpc_request *req)
{
    return req->conn == NULL;
}

const char *jsonrpc_request_method(const struct jsonrpc_request *req)
{
    return json_string_value(req->method);
}

/* ---- dispatch ----------------------------------------------------------- */

static const struct jsonrpc_method *find_method(const struct jsonrpc_conn *conn,
                                                const char *name)
{
    const struct jsonrpc_method *m;

    for (m = conn->methods; m->name; m++)
        if (strcmp(m->name, name) == 0)
            return m;
    return NULL;
}

static bool is_member(const char *key)
{
    return strcmp(key, "jsonrpc") == 0 || strcmp(key, "method") == 0 ||
           strcmp(key, "params") == 0 || strcmp(key, "id") == 0;
}

/* NULL when msg is a well-formed request, else why not. *id is its id
 * when it has a valid one (NULL: none), so an error can name it. */
static const char *check_request(json_t *msg, json_t **id)
{
    const char *key;
    json_t *v, *value;

    *id = NULL;
    if (!json_is_object(msg))
        return "a request must be an object";
    v = json_object_get(msg, "id");
    if (v && !json_is_string(v) && !json_is_number(v) && !json_is_null(v))
        return "id must be a string, a number or null";
    *id = v;
    v = json_object_get(msg, "jsonrpc");
    if (!json_is_string(v) || strcmp(json_string_value(v), "2.0") != 0)
        return "jsonrpc must be \"2.0\"";
    if (!json_is_string(json_object_get(msg, "method")))
        return "method must be a string";
    v = json_object_get(msg, "params");
    if (v && !json_is_object(v) && !json_is_array(v))
        return "params must be an object or an array";
    json_object_foreach(msg, key, value) {
        if (!is_member(key))
            return "unknown member in request";
    }
    return NULL;
}

static void call_handler(struct jsonrpc_conn *conn, struct jsonrpc_batch *batch,
                         const struct jsonrpc_method *m, json_t *msg,
                         json_t *id)
{
    struct jsonrpc_request *req;
    int ret;

    req = req_new(conn, batch, id, json_object_get(msg, "method"));
    if (!req) {
        route_error(conn, batch, id, JSONRPC_INTERNAL_ERROR, NULL,
                    "out of memory");
        return;
    }
    ret = m->fn(conn->ctx, conn, json_object_get(msg, "params"), req);
    if (req->state == REQ_RUNNING && ret == JSONRPC_PENDING) {
        req->state = REQ_PENDING;
        pending_link(conn, req);
        return;
    }
    if (req->state == REQ_RUNNING && ret < 0)
        jsonrpc_reply_errno(req, ret, NULL);
    else if (req->state == REQ_RUNNING)
        jsonrpc_reply_error(req, JSONRPC_INTERNAL_ERROR, NULL,
                            "method %s gave no reply", m->name);
    req_free(req);
}

/* One request object, alone or in a batch. */
static void run_request(struct jsonrpc_conn *conn, struct jsonrpc_batch *batch,
                        json_t *msg)
{
    const struct jsonrpc_method *m;
    const char *why, *name;
    json_t *id;

    why = check_request(msg, &id);
    if (why) {
        /* Not a request, so not a notification either: always answered. */
        route_error(conn, batch, id ? id : json_null(),
                    JSONRPC_INVALID_REQUEST, NULL, "invalid request: %s", why);
        return;
    }
    name = json_string_value(json_object_get(msg, "method"));
    m = find_method(conn, name);
    if (!m)
        route_error(conn, batch, id, JSONRPC_METHOD_NOT_FOUND,
                    json_pack("{s:s}", "method", name),
                    "method not found: %s", name);
    else if (json_is_array(json_object_get(msg, "params")))
        route_error(conn, batch, id, JSONRPC_INVALID_PARAMS, NULL,
                    "params must be an object (by name)");
    else if (conn->npending >= JSONRPC_MAX_PENDING)
        route_error(conn, batch, id, JSONRPC_TOO_MANY_PENDING,
                    json_pack("{s:i}", "limit", JSONRPC_MAX_PENDING),
                    "too many requests pending");
    else
        call_handler(conn, batch, m, msg, id);
}

static void run_batch(struct jsonrpc_conn *conn, json_t *array)
{
    size_t n = json_array_size(array), i;
    struct jsonrpc_batch *batch;

    if (n == 0) {
        route_error(conn, NULL, json_null(), JSONRPC_INVALID_REQUEST, NULL,
                    "invalid request: empty batch");
        return;
    }
    if (n > JSONRPC_MAX_BATCH) {
        route_error(conn, NULL, json_null(), JSONRPC_TOO_LARGE,
                    json_pack("{s:i}", "limit", JSONRPC_MAX_BATCH),
                    "batch of %zu requests, more than %d", n,
                    JSONRPC_MAX_BATCH);
        return;
    }
    batch = calloc(1, sizeof(*batch));
    if (batch)
        batch->replies = json_array();
    if (!batch || !batch->replies) {
        free(batch);
        conn_fail(conn, -ENOMEM);
        return;
    }
    batch->outstanding = 1;     /* ours, until every member ran */
    for (i = 0; i < n && !conn->error; i++)
        run_request(conn, batch, json_array_get(array, i));
    batch_put(conn, batch);
}

static bool is_blank(const char *line, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (line[i] != ' ' && line[i] != '\t' && line[i] != '\r')
            return false;
    return true;
}

static void run_line(struct jsonrpc_conn *conn, const char *line, size_t len)
{
    json_error_t jerr;
    json_t *msg;

    if (is_blank(line, len))
        return;
    /* Duplicate keys are refused: which one would a method see? */
    msg = json_loadb(line, len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES,
                     &jerr);
    if (!msg && json_error_code(&jerr) == json_error_out_of_memory) {
        route_error(conn, NULL, json_null(), JSONRPC_INTERNAL_ERROR, NULL,
                    "out of memory");
        return;
    }
    if (!msg) {
        route_error(conn, NULL, json_null(), JSONRPC_PARSE_ERROR,
                    json_pack("{s:i}", "position", jerr.position),
                    "parse error: %s", jerr.text);
        return;
    }
    if (json_is_array(msg))
        run_batch(conn, msg);
    else
        run_request(conn, NULL, msg);
    json_decref(msg);
}

/* ---- input ------------------------------------------------------------- */

/* n bytes of a line; line_end when they are its last (its LF excluded). */
static void take_bytes(struct jsonrpc_conn *conn, const char *p, size_t n,
                       bool line_end)
{
    if (conn->discarding) {
        conn->discarding = !line_end;
        return;
    }
    if (n > JSONRPC_MAX_LINE - conn->in.len) {
        route_error(conn, NULL, json_null(), JSONRPC_TOO_LARGE,
                    json_pack("{s:i}", "limit", JSONRPC_MAX_LINE),
                    "line longer than %d bytes", JSONRPC_MAX_LINE);
        buf_empty(&conn->in);
        conn->discarding = !line_end;
        return;
    }
    if (line_end && conn->in.len == 0) {
        run_line(conn, p, n);       /* whole line in the feed: no copy */
        return;
    }
    if (buf_reserve(&conn->in, n, JSONRPC_MAX_LINE) < 0) {
        conn_fail(conn, -ENOMEM);
        return;
    }
    memcpy(conn->in.data + conn->in.len, p, n);
    conn->in.len += n;
    if (line_end) {
        run_line(conn, conn->in.data, conn->in.len);
        buf_empty(&conn->in);
    }
}

int jsonrpc_conn_feed(struct jsonrpc_conn *conn, const void *data, size_t len)
{
    const char *p = data, *end;

    if (len == 0)               /* data may be NULL */
        return conn->error;
    end = p + len;
    while (p < end && !conn->error) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = (size_t)((nl ? nl : end) - p);

        take_bytes(conn, p, n, nl != NULL);
        p += n + (nl ? 1 : 0);
    }
    return conn->error;
}

int jsonrpc_conn_error(const struct jsonrpc_conn *conn)
{
    return conn->error;
}

size_t jsonrpc_conn_pending(const struct jsonrpc_conn *conn)
{
    return conn->npending;
}

/* ---- lifetime ----------------------------------------------------------- */

struct jsonrpc_conn *jsonrpc_conn_new(const struct jsonrpc_method *methods,
                                      void *ctx)
{
    struct jsonrpc_conn *conn = calloc(1, sizeof(*conn));

    if (!conn)
        return NULL;
    conn->methods = methods;
    conn->ctx = ctx;
    return conn;
}

void jsonrpc_conn_free(struct jsonrpc_conn *conn)
{
    struct jsonrpc_request *req;

    if (!conn)
        return;
    while ((req = conn->pending)) {
        jsonrpc_cancel_fn *fn = req->cancel_fn;

        pending_unlink(conn, req);
        req->conn = NULL;
        req->cancel_fn = NULL;
        if (fn)
            fn(req->cancel_arg, req);   /* may reply, which frees req */
    }
    free(conn->in.data);
    free(conn->out.data);
    free(conn);
}

/* ---- errno mapping ------------------------------------------------------ */

#define ERRNO_ENTRY(e, c) { e, c, #e }

static const struct {
    int err;
    int code;
    const char *name;
} errno_table[] = {
    ERRNO_ENTRY(ENOENT, JSONRPC_E_NOT_FOUND),
    ERRNO_ENTRY(ENODEV, JSONRPC_E_NOT_FOUND),
    ERRNO_ENTRY(ENXIO, JSONRPC_E_NOT_FOUND),
    ERRNO_ENTRY(ESRCH, JSONRPC_E_NOT_FOUND),
    ERRNO_ENTRY(EEXIST, JSONRPC_E_EXISTS),
    ERRNO_ENTRY(ENOTEMPTY, JSONRPC_E_EXISTS),
    ERRNO_ENTRY(EBUSY, JSONRPC_E_BUSY),
    ERRNO_ENTRY(EAGAIN, JSONRPC_E_BUSY),
    ERRNO_ENTRY(EALREADY, JSONRPC_E_BUSY),
    ERRNO_ENTRY(EINPROGRESS, JSONRPC_E_BUSY),
    ERRNO_ENTRY(EACCES, JSONRPC_E_DENIED),
    ERRNO_ENTRY(EPERM, JSONRPC_E_DENIED),
    ERRNO_ENTRY(EROFS, JSONRPC_E_DENIED),
    ERRNO_ENTRY(EINVAL, JSONRPC_E_INVALID),
    ERRNO_ENTRY(ERANGE, JSONRPC_E_INVALID),
    ERRNO_ENTRY(ENAMETOOLONG, JSONRPC_E_INVALID),
    ERRNO_ENTRY(ENOSPC, JSONRPC_E_NO_SPACE),
    ERRNO_ENTRY(EDQUOT, JSONRPC_E_NO_SPACE),
    ERRNO_ENTRY(EFBIG, JSONRPC_E_NO_SPACE),
    ERRNO_ENTRY(EMFILE, JSONRPC_E_NO_SPACE),
    ERRNO_ENTRY(ENFILE, JSONRPC_E_NO_SPACE),
    ERRNO_ENTRY(ENOTSUP, JSONRPC_E_UNSUPPORTED),
    ERRNO_ENTRY(ENOSYS, JSONRPC_E_UNSUPPORTED),
    ERRNO_ENTRY(ETIMEDOUT, JSONRPC_E_TIMEOUT),
    ERRNO_ENTRY(ECANCELED, JSONRPC_E_CANCELED),
    ERRNO_ENTRY(EINTR, JSONRPC_E_CANCELED),
    ERRNO_ENTRY(ESHUTDOWN, JSONRPC_E_CANCELED),
    ERRNO_ENTRY(EIO, JSONRPC_E_IO),
    ERRNO_ENTRY(EUCLEAN, JSONRPC_E_IO),
    ERRNO_ENTRY(EBADMSG, JSONRPC_E_IO),
    ERRNO_ENTRY(ENOMEM, JSONRPC_INTERNAL_ERROR),
    /* Named in data, but with no code of their own. */
    ERRNO_ENTRY(EBADF, JSONRPC_E_FAILED),
    ERRNO_ENTRY(ENOTDIR, JSONRPC_E_FAILED),
    ERRNO_ENTRY(EISDIR, JSONRPC_E_FAILED),
    ERRNO_ENTRY(ELOOP, JSONRPC_E_FAILED),
    ERRNO_ENTRY(EXDEV, JSONRPC_E_FAILED),
    ERRNO_ENTRY(ETXTBSY, JSONRPC_E_FAILED),
    ERRNO_ENTRY(EOVERFLOW, JSONRPC_E_FAILED),
    ERRNO_ENTRY(ENOBUFS, JSONRPC_E_FAILED),
    ERRNO_ENTRY(EPIPE, JSONRPC_E_FAILED),
    ERRNO_ENTRY(ENOTCONN, JSONRPC_E_FAILED),
    ERRNO_ENTRY(ECONNRESET, JSONRPC_E_FAILED),
    ERRNO_ENTRY(ECONNREFUSED, JSONRPC_E_FAILED),
    ERRNO_ENTRY(EADDRINUSE, JSONRPC_E_FAILED),
    ERRNO_ENTRY(EPROTO, JSONRPC_E_FAILED),
    ERRNO_ENTRY(EMSGSIZE, JSONRPC_E_FAILED),
    ERRNO_ENTRY(ENOLCK, JSONRPC_E_FAILED),
    ERRNO_ENTRY(EDEADLK, JSONRPC_E_FAILED),
    ERRNO_ENTRY(ESTALE, JSONRPC_E_FAILED),
};

static int errno_index(int err)
{
    for (size_t i = 0; i < sizeof(errno_table) / sizeof(errno_table[0]); i++)
        if (errno_table[i].err == -err)
            return (int)i;
    return -1;
}

int jsonrpc_errno_code(int err)
{
    int i = errno_index(err);

    if (err >= 0)
        return JSONRPC_INTERNAL_ERROR;  /* not an error: a caller's bug */
    return i < 0 ? JSONRPC_E_FAILED : errno_table[i].code;
}

const char *jsonrpc_errno_name(int err)
{
    int i = errno_index(err);

    return i < 0 ? "E?" : errno_table[i].name;
}

/* ---- params ------------------------------------------------------------- */

static int param_error(struct jsonrpc_request *req, const char *name,
                       const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int param_error(struct jsonrpc_request *req, const char *name,
                       const char *fmt, ...)
{
    json_t *data = json_pack("{s:s}", "param", name);
    va_list ap;
    int ret;

    va_start(ap, fmt);
    ret = reply_error_v(req, JSONRPC_INVALID_PARAMS, data, fmt, ap);
    va_end(ap);
    return ret;
}

static int param_take(struct jsonrpc_request *req, json_t *v,
                      const struct jsonrpc_param *p)
{
    json_int_t i;

    switch (p->type) {
    case JSONRPC_STRING:
        if (!json_is_string(v))
            return param_error(req, p->name, "param %s must be a string",
                               p->name);
        *p->out.string = json_string_value(v);
        return 0;
    case JSONRPC_BOOL:
        if (!json_is_boolean(v))
            return param_error(req, p->name, "param %s must be a boolean",
                               p->name);
        *p->out.boolean = json_is_true(v);
        return 0;
    case JSONRPC_INTEGER:
        i = json_is_integer(v) ? json_integer_value(v) : 0;
        if (!json_is_integer(v) || i < p->min || i > p->max)
            return param_error(req, p->name,
                               "param %s must be an integer from %lld to %lld",
                               p->name, (long long)p->min, (long long)p->max);
        *p->out.integer = i;
        return 0;
    case JSONRPC_OBJECT:
        if (!json_is_object(v))
            return param_error(req, p->name, "param %s must be an object",
                               p->name);
        *p->out.object = v;
        return 0;
    case JSONRPC_ARRAY:
        if (!json_is_array(v))
            return param_error(req, p->name, "param %s must be an array",
                               p->name);
        *p->out.object = v;
        return 0;
    }
    return param_error(req, p->name, "param %s has an unknown type", p->name);
}

int jsonrpc_param_get(struct jsonrpc_request *req, json_t *params,
                      const struct jsonrpc_param *param)
{
    json_t *v = json_is_object(params) ? json_object_get(params, param->name)
                                       : NULL;

    if (v)
        return param_take(req, v, param);
    if (param->required)
        return param_error(req, param->name, "missing param %s", param->name);
    return 1;
}

static bool spec_has(const struct jsonrpc_param *spec, const char *name)
{
    for (; spec->name; spec++)
        if (strcmp(spec->name, name) == 0)
            return true;
    return false;
}

int jsonrpc_params_parse(struct jsonrpc_request *req, json_t *params,
                         const struct jsonrpc_param *spec)
{
    const char *key;
    json_t *value;
    int ret;

    if (params && !json_is_object(params))
        return jsonrpc_reply_error(req, JSONRPC_INVALID_PARAMS, NULL,
                                   "params must be an object");
    json_object_foreach(params, key, value) {
        if (!spec_has(spec, key))
            return param_error(req, key, "unknown param %s", key);
    }
    for (; spec->name; spec++) {
        ret = jsonrpc_param_get(req, params, spec);
        if (ret < 0)
            return ret;
    }
    return 0;
}
