/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: any bytes, fed to a JSON-RPC conn (common/jsonrpc.c).
 *
 * Notes on the design:
 *
 * - The bytes go in chunks whose sizes come from a small PRNG seeded with
 *   a hash of the input, so a run is reproducible from the input alone
 *   and the line-splitting paths (lines across chunks, many lines in one
 *   chunk) are all exercised.
 * - Methods: "sync" validates params with the table helpers (every type)
 *   and replies at once; "fail" returns an errno; "pending" keeps the
 *   request, and everything kept is answered (result or error, in turn)
 *   before the next chunk is fed, so late replies, also into batches,
 *   interleave with new requests.
 * - Output is taken in chunks of random size too, and every complete
 *   line must be a reply: an object with "jsonrpc":"2.0", an id, and
 *   exactly one of result or error (code integer, message string), or a
 *   non-empty array of such objects. Output never passes its limit.
 * - At the end, the conn is freed either after the kept requests were
 *   answered or before (cancellation: callbacks run, later replies are
 *   no-ops), chosen by the PRNG.
 */
#include "config.h"

#include "common/jsonrpc.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct fuzz_state {
    uint64_t rng;
    struct jsonrpc_request *held[JSONRPC_MAX_PENDING];
    size_t nheld;
    size_t cancels;
    char *lines;                /* output taken, not yet a whole line */
    size_t lines_len;
};

static uint64_t next_rand(struct fuzz_state *s)
{
    /* xorshift64: cheap and deterministic. */
    s->rng ^= s->rng << 13;
    s->rng ^= s->rng >> 7;
    s->rng ^= s->rng << 17;
    return s->rng;
}

static int m_sync(void *ctx, struct jsonrpc_conn *conn, json_t *params,
                  struct jsonrpc_request *req)
{
    const char *s = "";
    bool b = false;
    int64_t n = 0;
    json_t *o = NULL;
    struct jsonrpc_param spec[] = {
        JSONRPC_PARAM_STRING("s", false, &s),
        JSONRPC_PARAM_BOOL("b", false, &b),
        JSONRPC_PARAM_INT("n", false, -100, 100, &n),
        JSONRPC_PARAM_OBJECT("o", false, &o),
        JSONRPC_PARAM_END,
    };
    int ret = jsonrpc_params_parse(req, params, spec);

    if (ret < 0)
        return ret;
    return jsonrpc_reply_result(req, json_pack("{s:s, s:b, s:I, s:O?}",
                                               "s", s, "b", b, "n",
                                               (json_int_t)n, "o", o));
}

static int m_fail(void *ctx, struct jsonrpc_conn *conn, json_t *params,
                  struct jsonrpc_request *req)
{
    return -ENOENT;
}

static void on_cancel(void *arg, struct jsonrpc_request *req)
{
    struct fuzz_state *s = arg;

    if (!jsonrpc_request_cancelled(req))
        abort();
    s->cancels++;
}

static int m_pending(void *ctx, struct jsonrpc_conn *conn, json_t *params,
                     struct jsonrpc_request *req)
{
    struct fuzz_state *s = ctx;

    /* The conn's own limit keeps us within held[]. */
    if (s->nheld >= JSONRPC_MAX_PENDING)
        abort();
    if (next_rand(s) & 1)
        jsonrpc_request_on_cancel(req, on_cancel, s);
    s->held[s->nheld++] = req;
    return JSONRPC_PENDING;
}

static const struct jsonrpc_method methods[] = {
    { "sync", m_sync },
    { "fail", m_fail },
    { "pending", m_pending },
    { NULL, NULL },
};

static void answer_held(struct fuzz_state *s)
{
    for (size_t i = 0; i < s->nheld; i++) {
        if (i & 1)
            jsonrpc_reply_errno(s->held[i], -EBUSY, "held %zu", i);
        else
            jsonrpc_reply_result(s->held[i], json_integer((json_int_t)i));
    }
    s->nheld = 0;
}

static void check_reply_object(const json_t *r)
{
    const json_t *err = json_object_get(r, "error");
    const json_t *id = json_object_get(r, "id");

    if (!json_is_object(r) ||
        !json_is_string(json_object_get(r, "jsonrpc")) ||
        strcmp(json_string_value(json_object_get(r, "jsonrpc")), "2.0") != 0)
        abort();
    if (!id || (!json_is_string(id) && !json_is_number(id) && !json_is_null(id)))
        abort();
    if ((json_object_get(r, "result") != NULL) == (err != NULL))
        abort();
    if (err && (!json_is_integer(json_object_get(err, "code")) ||
                !json_is_string(json_object_get(err, "message"))))
        abort();
}

static void check_line(const char *line, size_t len)
{
    json_t *j = json_loadb(line, len, 0, NULL);
    size_t i;
    json_t *r;

    if (!j)
        abort();
    if (json_is_array(j)) {
        if (json_array_size(j) == 0)
            abort();
        json_array_foreach(j, i, r)
            check_reply_object(r);
    } else {
        check_reply_object(j);
    }
    json_decref(j);
}

/* Takes up to all of the output and checks each line it completes. */
static void take_output(struct fuzz_state *s, struct jsonrpc_conn *conn,
                        bool all)
{
    const void *p;
    size_t len = jsonrpc_conn_output(conn, &p), n, start = 0;
    char *grown;

    if (len > JSONRPC_MAX_OUTPUT)
        abort();
    n = all ? len : (size_t)(next_rand(s) % (len + 1));
    grown = realloc(s->lines, s->lines_len + n + 1);
    if (!grown)
        abort();
    s->lines = grown;
    memcpy(s->lines + s->lines_len, p, n);
    s->lines_len += n;
    jsonrpc_conn_consume(conn, n);
    for (size_t i = 0; i < s->lines_len; i++) {
        if (s->lines[i] != '\n')
            continue;
        check_line(s->lines + start, i - start);
        start = i + 1;
    }
    memmove(s->lines, s->lines + start, s->lines_len - start);
    s->lines_len -= start;
}

static uint64_t seed_of(const uint8_t *data, size_t size)
{
    uint64_t h = 1469598103934665603ull;    /* FNV-1a */

    for (size_t i = 0; i < size; i++)
        h = (h ^ data[i]) * 1099511628211ull;
    return h ? h : 1;
}

static size_t chunk_size(struct fuzz_state *s)
{
    uint64_t r = next_rand(s);

    return (r & 7) == 0 ? 1 + (size_t)(r >> 8) % 4096 : 1 + (size_t)(r >> 8) % 16;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_state s = { .rng = seed_of(data, size) };
    struct jsonrpc_conn *conn = jsonrpc_conn_new(methods, &s);
    size_t off = 0, held_at_free;

    if (!conn)
        abort();
    while (off < size && jsonrpc_conn_error(conn) == 0) {
        size_t n = chunk_size(&s);

        if (n > size - off)
            n = size - off;
        answer_held(&s);
        take_output(&s, conn, false);
        jsonrpc_conn_feed(conn, data + off, n);
        off += n;
    }
    if (next_rand(&s) & 1)
        answer_held(&s);
    take_output(&s, conn, true);
    if (s.lines_len != 0)       /* every reply ends with its newline */
        abort();
    held_at_free = s.nheld;
    jsonrpc_conn_free(conn);
    if (s.cancels > held_at_free)
        abort();
    answer_held(&s);            /* after the conn: no-ops that free */
    free(s.lines);
    return 0;
}
