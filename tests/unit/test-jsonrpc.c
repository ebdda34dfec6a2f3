/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of common/jsonrpc.c: framing, the JSON-RPC 2.0 rules for
 * requests, notifications and batches, every error code, the limits on
 * lines, batches, pending requests and output, late replies and what
 * happens to them when the conn goes.
 *
 * Replies are read back by parsing the conn's output line by line, so a
 * test checks what a client would see.
 */
#include "config.h"

#include "common/jsonrpc.h"
#include "leak-check.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { MAX_HELD = JSONRPC_MAX_PENDING + 8 };

struct tctx {
    int calls;                          /* handler runs, any method */
    struct jsonrpc_request *held[MAX_HELD];
    int nheld;
    int cancels;
    bool reply_in_cancel;
    size_t big_len;                     /* bytes of "big"'s result */
};

/* ---- methods ---------------------------------------------------------- */

static int m_echo(void *ctx, struct jsonrpc_conn *conn, json_t *params,
                  struct jsonrpc_request *req)
{
    ((struct tctx *)ctx)->calls++;
    return jsonrpc_reply_result(req, params ? json_incref(params)
                                            : json_null());
}

/* {"a": int, "b": int} -> a + b, through the param table. */
static int m_add(void *ctx, struct jsonrpc_conn *conn, json_t *params,
                 struct jsonrpc_request *req)
{
    int64_t a = 0, b = 0;
    struct jsonrpc_param spec[] = {
        JSONRPC_PARAM_INT("a", true, -1000, 1000, &a),
        JSONRPC_PARAM_INT("b", false, -1000, 1000, &b),
        JSONRPC_PARAM_END,
    };
    int ret;

    ((struct tctx *)ctx)->calls++;
    ret = jsonrpc_params_parse(req, params, spec);
    if (ret < 0)
        return ret;
    return jsonrpc_reply_result(req, json_integer(a + b));
}

/* Every param type; answers with what it read. */
static int m_types(void *ctx, struct jsonrpc_conn *conn, json_t *params,
                   struct jsonrpc_request *req)
{
    const char *s = "default";
    bool flag = false;
    int64_t n = 7;
    json_t *obj = NULL;
    struct jsonrpc_param spec[] = {
        JSONRPC_PARAM_STRING("s", true, &s),
        JSONRPC_PARAM_BOOL("flag", false, &flag),
        JSONRPC_PARAM_INT("n", false, 1, 10, &n),
        JSONRPC_PARAM_OBJECT("obj", false, &obj),
        JSONRPC_PARAM_END,
    };
    int ret = jsonrpc_params_parse(req, params, spec);

    if (ret < 0)
        return ret;
    return jsonrpc_reply_result(req, json_pack("{s:s, s:b, s:I, s:O?}",
                                               "s", s, "flag", flag, "n",
                                               (json_int_t)n, "obj", obj));
}

static int m_enoent(void *ctx, struct jsonrpc_conn *conn, json_t *params,
                    struct jsonrpc_request *req)
{
    return -ENOENT;
}

static int m_ebusy_msg(void *ctx, struct jsonrpc_conn *conn, json_t *params,
                       struct jsonrpc_request *req)
{
    return jsonrpc_reply_errno(req, -EBUSY, "export %s has clients", "e1");
}

static int m_sd_error(void *ctx, struct jsonrpc_conn *conn, json_t *params,
                      struct jsonrpc_request *req)
{
    struct sd_error err;

    sd_error_set(&err, -EEXIST, "'%s' exists", "x.qcow2");
    return jsonrpc_reply_sd_error(req, &err);
}

/* A message that is not UTF-8, as a file name in a message can be. */
static int m_bad_utf8(void *ctx, struct jsonrpc_conn *conn, json_t *params,
                      struct jsonrpc_request *req)
{
    return jsonrpc_reply_errno(req, -EIO, "cannot read /tmp/\xff\xfe.img");
}

static int m_custom(void *ctx, struct jsonrpc_conn *conn, json_t *params,
                    struct jsonrpc_request *req)
{
    return jsonrpc_reply_error(req, 1234, json_pack("{s:i}", "k", 5),
                               "custom %d", 42);
}

static int m_noreply(void *ctx, struct jsonrpc_conn *conn, json_t *params,
                     struct jsonrpc_request *req)
{
    return 0;
}

static int m_null_result(void *ctx, struct jsonrpc_conn *conn, json_t *params,
                         struct jsonrpc_request *req)
{
    return jsonrpc_reply_result(req, NULL);
}

static int m_hold(void *ctx, struct jsonrpc_conn *conn, json_t *params,
                  struct jsonrpc_request *req)
{
    struct tctx *t = ctx;

    t->calls++;
    cr_assert_lt(t->nheld, MAX_HELD);
    t->held[t->nheld++] = req;
    return JSONRPC_PENDING;
}

/* Replies to every held request from inside a handler. */
static int m_release(void *ctx, struct jsonrpc_conn *conn, json_t *params,
                     struct jsonrpc_request *req)
{
    struct tctx *t = ctx;

    while (t->nheld > 0)
        jsonrpc_reply_result(t->held[--t->nheld], json_string("released"));
    return jsonrpc_reply_result(req, json_true());
}

static int m_big(void *ctx, struct jsonrpc_conn *conn, json_t *params,
                 struct jsonrpc_request *req)
{
    struct tctx *t = ctx;
    char *s = malloc(t->big_len + 1);
    json_t *j;

    cr_assert_not_null(s);
    memset(s, 'x', t->big_len);
    s[t->big_len] = '\0';
    j = json_string(s);
    free(s);
    t->calls++;
    return jsonrpc_reply_result(req, j);
}

static const struct jsonrpc_method methods[] = {
    { "echo", m_echo },
    { "add", m_add },
    { "types", m_types },
    { "enoent", m_enoent },
    { "ebusy_msg", m_ebusy_msg },
    { "sd_error", m_sd_error },
    { "bad_utf8", m_bad_utf8 },
    { "custom", m_custom },
    { "noreply", m_noreply },
    { "null_result", m_null_result },
    { "hold", m_hold },
    { "release", m_release },
    { "big", m_big },
    { NULL, NULL },
};

/* ---- helpers ------------------------------------------------------------ */

static struct tctx T;
static struct jsonrpc_conn *C;

static void setup(void)
{
    memset(&T, 0, sizeof(T));
    C = jsonrpc_conn_new(methods, &T);
    cr_assert_not_null(C);
}

/* Run at the end of every test body (criterion does not count a failed
 * assertion in a .fini): frees the conn and what the test still holds,
 * then nothing may be left. */
static void finish(void)
{
    jsonrpc_conn_free(C);
    C = NULL;
    /* Requests held and never replied are the test's: free them. */
    while (T.nheld > 0)
        jsonrpc_reply_result(T.held[--T.nheld], json_null());
    /* Every request, batch and buffer is freed by now. */
    expect_no_leaks();
}

TestSuite(jsonrpc, .init = setup);

#define JSONRPC_TEST(name)                  \
    static void body_##name(void);          \
    Test(jsonrpc, name)                     \
    {                                       \
        body_##name();                      \
        finish();                           \
    }                                       \
    static void body_##name(void)

static int feed(const char *s)
{
    return jsonrpc_conn_feed(C, s, strlen(s));
}

/* The lines of s (len bytes), parsed, as a JSON array. Every line must
 * be one JSON text ending with LF. */
static json_t *parse_lines(const char *s, size_t len)
{
    const char *end = s + len;
    json_t *lines = json_array();

    cr_assert_not_null(lines);
    if (len)
        cr_assert_eq(end[-1], '\n', "output does not end with a newline");
    while (s < end) {
        const char *nl = memchr(s, '\n', (size_t)(end - s));
        json_error_t jerr;
        json_t *j = json_loadb(s, (size_t)(nl - s), 0, &jerr);

        cr_assert_not_null(j, "reply is not JSON: %s", jerr.text);
        json_array_append_new(lines, j);
        s = nl + 1;
    }
    return lines;
}

/* Takes all output; returns its lines parsed. */
static json_t *take_lines(void)
{
    const void *p;
    size_t len = jsonrpc_conn_output(C, &p);
    json_t *lines = parse_lines(p, len);

    jsonrpc_conn_consume(C, len);
    cr_assert_eq(jsonrpc_conn_output(C, &p), 0);
    return lines;
}

/* The one reply line expected (not a batch). */
static json_t *take_one(void)
{
    json_t *lines = take_lines(), *one;

    cr_assert_eq(json_array_size(lines), 1, "%zu replies, expected 1",
                 json_array_size(lines));
    one = json_incref(json_array_get(lines, 0));
    json_decref(lines);
    return one;
}

static void expect_nothing(void)
{
    const void *p;

    cr_assert_eq(jsonrpc_conn_output(C, &p), 0, "unexpected output: %.*s",
                 (int)jsonrpc_conn_output(C, &p), (const char *)p);
}

static void check_envelope(const json_t *r)
{
    cr_assert(json_is_object(r));
    cr_assert_str_eq(json_string_value(json_object_get(r, "jsonrpc")), "2.0");
    cr_assert(json_object_get(r, "id") != NULL, "reply without id");
    cr_assert((json_object_get(r, "result") != NULL) !=
              (json_object_get(r, "error") != NULL));
}

/* Error code of reply r; its id must be id_int (or null if id_int < 0). */
static int error_code(const json_t *r, json_int_t id_int)
{
    json_t *id = json_object_get(r, "id"), *err = json_object_get(r, "error");

    check_envelope(r);
    if (id_int < 0)
        cr_assert(json_is_null(id), "id should be null");
    else
        cr_assert_eq(json_integer_value(id), id_int);
    cr_assert(json_is_object(err), "not an error reply");
    cr_assert(json_is_string(json_object_get(err, "message")));
    return (int)json_integer_value(json_object_get(err, "code"));
}

/* Feeds one line and checks its single error reply. */
static json_t *expect_error(const char *line, int code, json_int_t id)
{
    json_t *r;

    cr_assert_eq(feed(line), 0);
    r = take_one();
    cr_assert_eq(error_code(r, id), code, "%s: code %d, expected %d", line,
                 error_code(r, id), code);
    return r;
}

static const char *err_data_str(const json_t *r, const char *key)
{
    return json_string_value(json_object_get(
        json_object_get(json_object_get(r, "error"), "data"), key));
}

/* ---- requests and responses -------------------------------------------- */

JSONRPC_TEST(request_gets_compact_response_line)
{
    const char *want = "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"x\":[1,2]}}\n";
    const void *p;
    size_t len;

    cr_assert_eq(feed("{\"jsonrpc\": \"2.0\", \"method\": \"echo\", "
                      "\"params\": {\"x\": [1, 2]}, \"id\": 1}\n"), 0);
    len = jsonrpc_conn_output(C, &p);
    cr_assert_eq(len, strlen(want));
    cr_assert_eq(memcmp(p, want, len), 0, "got %.*s", (int)len,
                 (const char *)p);
    jsonrpc_conn_consume(C, len);
    expect_nothing();
}

JSONRPC_TEST(id_string_and_null_are_echoed)
{
    json_t *r;

    feed("{\"jsonrpc\":\"2.0\",\"method\":\"echo\",\"id\":\"abc\"}\n");
    r = take_one();
    cr_assert_str_eq(json_string_value(json_object_get(r, "id")), "abc");
    cr_assert(json_is_null(json_object_get(r, "result")));
    json_decref(r);

    /* id null is a request (discouraged by the spec), not a notification. */
    feed("{\"jsonrpc\":\"2.0\",\"method\":\"echo\",\"id\":null}\n");
    r = take_one();
    cr_assert(json_is_null(json_object_get(r, "id")));
    json_decref(r);
}

JSONRPC_TEST(params_handled_by_table)
{
    json_t *r;

    feed("{\"jsonrpc\":\"2.0\",\"method\":\"add\",\"params\":{\"a\":40,\"b\":2},\"id\":3}\n");
    r = take_one();
    cr_assert_eq(json_integer_value(json_object_get(r, "result")), 42);
    json_decref(r);

    /* Optional "b" absent: its default stays. */
    feed("{\"jsonrpc\":\"2.0\",\"method\":\"add\",\"params\":{\"a\":-5},\"id\":4}\n");
    r = take_one();
    cr_assert_eq(json_integer_value(json_object_get(r, "result")), -5);
    json_decref(r);
}

JSONRPC_TEST(every_param_type)
{
    json_t *r, *res;

    feed("{\"jsonrpc\":\"2.0\",\"method\":\"types\",\"id\":1,\"params\":"
         "{\"s\":\"hi\",\"flag\":true,\"n\":10,\"obj\":{\"k\":1}}}\n");
    r = take_one();
    res = json_object_get(r, "result");
    cr_assert_str_eq(json_string_value(json_object_get(res, "s")), "hi");
    cr_assert(json_is_true(json_object_get(res, "flag")));
    cr_assert_eq(json_integer_value(json_object_get(res, "n")), 10);
    cr_assert_eq(json_integer_value(json_object_get(
                     json_object_get(res, "obj"), "k")), 1);
    json_decref(r);

    feed("{\"jsonrpc\":\"2.0\",\"method\":\"types\",\"id\":2,\"params\":{\"s\":\"\"}}\n");
    r = take_one();
    res = json_object_get(r, "result");
    cr_assert(json_is_false(json_object_get(res, "flag")));
    cr_assert_eq(json_integer_value(json_object_get(res, "n")), 7);
    cr_assert(json_is_null(json_object_get(res, "obj")));
    json_decref(r);
}

JSONRPC_TEST(notification_runs_without_reply)
{
    cr_assert_eq(feed("{\"jsonrpc\":\"2.0\",\"method\":\"echo\",\"params\":{}}\n"), 0);
    cr_assert_eq(T.calls, 1);
    expect_nothing();
    /* Errors of a notification are not reported either. */
    feed("{\"jsonrpc\":\"2.0\",\"method\":\"nosuch\"}\n");
    feed("{\"jsonrpc\":\"2.0\",\"method\":\"add\",\"params\":{\"zz\":1}}\n");
    feed("{\"jsonrpc\":\"2.0\",\"method\":\"enoent\"}\n");
    expect_nothing();
}

/* ---- batches ------------------------------------------------------------ */

/* The reply in a batch array with this integer id. */
static json_t *find_id(json_t *array, json_int_t id)
{
    size_t i;
    json_t *r;

    json_array_foreach(array, i, r)
        if (json_integer_value(json_object_get(r, "id")) == id)
            return r;
    cr_assert_fail("no reply with id %lld", (long long)id);
    return NULL;
}

JSONRPC_TEST(batch_mixed)
{
    json_t *lines, *arr;

    cr_assert_eq(feed("[{\"jsonrpc\":\"2.0\",\"method\":\"add\",\"params\":{\"a\":1,\"b\":2},\"id\":1},"
                      " {\"jsonrpc\":\"2.0\",\"method\":\"echo\"},"
                      " {\"foo\":\"boo\"},"
                      " 5,"
                      " {\"jsonrpc\":\"2.0\",\"method\":\"nosuch\",\"id\":2},"
                      " {\"jsonrpc\":\"2.0\",\"method\":\"enoent\",\"id\":3}]\n"), 0);
    lines = take_lines();
    cr_assert_eq(json_array_size(lines), 1, "a batch gets one line");
    arr = json_array_get(lines, 0);
    cr_assert(json_is_array(arr));
    /* 6 requests, 1 notification: 5 replies, two of them with id null. */
    cr_assert_eq(json_array_size(arr), 5);
    cr_assert_eq(json_integer_value(json_object_get(find_id(arr, 1), "result")), 3);
    cr_assert_eq(error_code(find_id(arr, 2), 2), JSONRPC_METHOD_NOT_FOUND);
    cr_assert_eq(error_code(find_id(arr, 3), 3), JSONRPC_E_NOT_FOUND);
    int invalid = 0;
    size_t i;
    json_t *r;
    json_array_foreach(arr, i, r) {
        check_envelope(r);
        if (json_is_null(json_object_get(r, "id"))) {
            cr_assert_eq(error_code(r, -1), JSONRPC_INVALID_REQUEST);
            invalid++;
        }
    }
    cr_assert_eq(invalid, 2);
    cr_assert_eq(T.calls, 2);
    json_decref(lines);
}

JSONRPC_TEST(batch_of_notifications_gets_nothing)
{
    feed("[{\"jsonrpc\":\"2.0\",\"method\":\"echo\"},"
         "{\"jsonrpc\":\"2.0\",\"method\":\"echo\"},"
         "{\"jsonrpc\":\"2.0\",\"method\":\"nosuch\"}]\n");
    cr_assert_eq(T.calls, 2);
    expect_nothing();
}

JSONRPC_TEST(batch_of_invalid_gets_array_of_errors)
{
    json_t *lines = (feed("[1,2,3]\n"), take_lines());
    json_t *arr = json_array_get(lines, 0), *r;
    size_t i;

    cr_assert_eq(json_array_size(arr), 3);
    json_array_foreach(arr, i, r)
        cr_assert_eq(error_code(r, -1), JSONRPC_INVALID_REQUEST);
    json_decref(lines);
}

JSONRPC_TEST(empty_batch_is_one_invalid_request)
{
    json_decref(expect_error("[]\n", JSONRPC_INVALID_REQUEST, -1));
}

JSONRPC_TEST(batch_over_limit_runs_nothing)
{
    const char *one = "{\"jsonrpc\":\"2.0\",\"method\":\"echo\",\"id\":1},";
    size_t n = JSONRPC_MAX_BATCH + 1, len = strlen(one);
    char *line = malloc(n * len + 3);
    json_t *r;

    cr_assert_not_null(line);
    line[0] = '[';
    for (size_t i = 0; i < n; i++)
        memcpy(line + 1 + i * len, one, len);
    strcpy(line + n * len, "]\n");      /* over the last comma */
    r = expect_error(line, JSONRPC_TOO_LARGE, -1);
    cr_assert_eq(T.calls, 0);
    json_decref(r);

    /* The limit itself is fine. */
    strcpy(line + (n - 1) * len, "]\n");
    cr_assert_eq(feed(line), 0);
    free(line);
    json_t *lines = take_lines();
    cr_assert_eq(json_array_size(json_array_get(lines, 0)), n - 1);
    cr_assert_eq(T.calls, (int)(n - 1));
    json_decref(lines);
}

/* ---- error codes -------------------------------------------------------- */

JSONRPC_TEST(parse_error_leaves_conn_usable)
{
    json_t *r = expect_error("{\"jsonrpc\":\"2.0\",\"method\":\n",
                             JSONRPC_PARSE_ERROR, -1);
    json_decref(r);
    json_decref(expect_error("not json at all\n", JSONRPC_PARSE_ERROR, -1));
    json_decref(expect_error("{\"a\":1} trailing\n", JSONRPC_PARSE_ERROR, -1));
    /* Which of two "id"s would we answer? Refused as malformed. */
    json_decref(expect_error("{\"jsonrpc\":\"2.0\",\"method\":\"echo\",\"id\":1,\"id\":2}\n",
                             JSONRPC_PARSE_ERROR, -1));
    /* A NUL byte inside the line. */
    cr_assert_eq(jsonrpc_conn_feed(C, "{\"a\"\0:1}\n", 9), 0);
    r = take_one();
    cr_assert_eq(error_code(r, -1), JSONRPC_PARSE_ERROR);
    json_decref(r);

    feed("{\"jsonrpc\":\"2.0\",\"method\":\"add\",\"params\":{\"a\":9},\"id\":8}\n");
    r = take_one();
    cr_assert_eq(json_integer_value(json_object_get(r, "result")), 9);
    json_decref(r);
}

JSONRPC_TEST(invalid_requests)
{
    static const char *const no_id[] = {
        "5\n",
        "\"a string\"\n",
        "{\"method\":\"echo\"}\n",                                /* no jsonrpc */
        "{\"jsonrpc\":\"2.0\",\"method\":\"echo\",\"id\":{}}\n",    /* id object */
        "{\"jsonrpc\":\"2.0\",\"method\":\"echo\",\"id\":true}\n",  /* id bool */
        "{\"jsonrpc\":\"2.0\",\"method\":\"echo\",\"id\":[1]}\n",   /* id array */
        "{\"jsonrpc\":\"2.0\",\"method\":1,\"params\":\"bar\"}\n",  /* spec example */
    };
    static const char *const with_id_7[] = {
        "{\"jsonrpc\":\"1.0\",\"method\":\"echo\",\"id\":7}\n",
        "{\"jsonrpc\":2.0,\"method\":\"echo\",\"id\":7}\n",
        "{\"jsonrpc\":\"2.0\",\"id\":7}\n",                         /* no method */
        "{\"jsonrpc\":\"2.0\",\"method\":null,\"id\":7}\n",
        "{\"jsonrpc\":\"2.0\",\"method\":\"echo\",\"params\":3,\"id\":7}\n",
        "{\"jsonrpc\":\"2.0\",\"method\":\"echo\",\"id\":7,\"extra\":1}\n",
    };

    for (size_t i = 0; i < sizeof(no_id) / sizeof(no_id[0]); i++)
        json_decref(expect_error(no_id[i], JSONRPC_INVALID_REQUEST, -1));
    for (size_t i = 0; i < sizeof(with_id_7) / sizeof(with_id_7[0]); i++)
        json_decref(expect_error(with_id_7[i], JSONRPC_INVALID_REQUEST, 7));
    cr_assert_eq(T.calls, 0);
}

JSONRPC_TEST(method_not_found)
{
    json_t *r = expect_error("{\"jsonrpc\":\"2.0\",\"method\":\"nope\",\"id\":1}\n",
                             JSONRPC_METHOD_NOT_FOUND, 1);

    cr_assert_str_eq(err_data_str(r, "method"), "nope");
    json_decref(r);
}

JSONRPC_TEST(invalid_params_name_the_param)
{
    static const struct {
        const char *params;
        const char *param;      /* named in data, NULL: none */
    } cases[] = {
        { "[1,2]", NULL },                              /* positional */
        { "{\"a\":1,\"zz\":2}", "zz" },                 /* unknown */
        { "{\"b\":1}", "a" },                           /* missing */
        { "{\"a\":\"1\"}", "a" },                       /* wrong type */
        { "{\"a\":1.0}", "a" },                         /* real, not integer */
        { "{\"a\":1001}", "a" },                        /* above range */
        { "{\"a\":-1001}", "a" },                       /* below range */
        { "{\"a\":null}", "a" },                        /* null is not absent */
        { "{\"a\":1,\"b\":true}", "b" },
    };
    char line[256];

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        snprintf(line, sizeof(line),
                 "{\"jsonrpc\":\"2.0\",\"method\":\"add\",\"params\":%s,\"id\":1}\n",
                 cases[i].params);
        json_t *r = expect_error(line, JSONRPC_INVALID_PARAMS, 1);
        if (cases[i].param)
            cr_assert_str_eq(err_data_str(r, "param"), cases[i].param,
                             "case %zu", i);
        json_decref(r);
    }
    /* Without params, a required one is missing. */
    json_decref(expect_error("{\"jsonrpc\":\"2.0\",\"method\":\"add\",\"id\":1}\n",
                             JSONRPC_INVALID_PARAMS, 1));
    /* Each param type checks its own. */
    const char *typed[] = { "{\"s\":1}", "{\"s\":\"\",\"flag\":1}",
                            "{\"s\":\"\",\"n\":0}", "{\"s\":\"\",\"obj\":[]}" };
    for (size_t i = 0; i < 4; i++) {
        snprintf(line, sizeof(line),
                 "{\"jsonrpc\":\"2.0\",\"method\":\"types\",\"params\":%s,\"id\":1}\n",
                 typed[i]);
        json_decref(expect_error(line, JSONRPC_INVALID_PARAMS, 1));
    }
}

JSONRPC_TEST(internal_errors)
{
    json_decref(expect_error("{\"jsonrpc\":\"2.0\",\"method\":\"noreply\",\"id\":1}\n",
                             JSONRPC_INTERNAL_ERROR, 1));
    json_decref(expect_error("{\"jsonrpc\":\"2.0\",\"method\":\"null_result\",\"id\":2}\n",
                             JSONRPC_INTERNAL_ERROR, 2));
}

JSONRPC_TEST(application_errors_carry_errno)
{
    json_t *r;

    r = expect_error("{\"jsonrpc\":\"2.0\",\"method\":\"enoent\",\"id\":1}\n",
                     JSONRPC_E_NOT_FOUND, 1);
    cr_assert_str_eq(err_data_str(r, "errno"), "ENOENT");
    cr_assert_str_eq(json_string_value(json_object_get(
                         json_object_get(r, "error"), "message")),
                     strerror(ENOENT));
    json_decref(r);

    r = expect_error("{\"jsonrpc\":\"2.0\",\"method\":\"ebusy_msg\",\"id\":2}\n",
                     JSONRPC_E_BUSY, 2);
    cr_assert_str_eq(err_data_str(r, "errno"), "EBUSY");
    cr_assert_str_eq(json_string_value(json_object_get(
                         json_object_get(r, "error"), "message")),
                     "export e1 has clients");
    json_decref(r);

    r = expect_error("{\"jsonrpc\":\"2.0\",\"method\":\"sd_error\",\"id\":3}\n",
                     JSONRPC_E_EXISTS, 3);
    cr_assert_str_eq(err_data_str(r, "errno"), "EEXIST");
    cr_assert_str_eq(json_string_value(json_object_get(
                         json_object_get(r, "error"), "message")),
                     "'x.qcow2' exists");
    json_decref(r);

    r = expect_error("{\"jsonrpc\":\"2.0\",\"method\":\"custom\",\"id\":4}\n",
                     1234, 4);
    cr_assert_eq(json_integer_value(json_object_get(json_object_get(
                     json_object_get(r, "error"), "data"), "k")), 5);
    json_decref(r);
}

JSONRPC_TEST(message_that_is_not_utf8_still_sent)
{
    json_t *r = expect_error("{\"jsonrpc\":\"2.0\",\"method\":\"bad_utf8\",\"id\":1}\n",
                             JSONRPC_E_IO, 1);

    cr_assert_str_eq(json_string_value(json_object_get(
                         json_object_get(r, "error"), "message")),
                     "cannot read /tmp/??.img");
    json_decref(r);
}

JSONRPC_TEST(errno_mapping)
{
    cr_assert_eq(jsonrpc_errno_code(-ENOENT), JSONRPC_E_NOT_FOUND);
    cr_assert_eq(jsonrpc_errno_code(-EEXIST), JSONRPC_E_EXISTS);
    cr_assert_eq(jsonrpc_errno_code(-EBUSY), JSONRPC_E_BUSY);
    cr_assert_eq(jsonrpc_errno_code(-EACCES), JSONRPC_E_DENIED);
    cr_assert_eq(jsonrpc_errno_code(-EPERM), JSONRPC_E_DENIED);
    cr_assert_eq(jsonrpc_errno_code(-EINVAL), JSONRPC_E_INVALID);
    cr_assert_eq(jsonrpc_errno_code(-ENOSPC), JSONRPC_E_NO_SPACE);
    cr_assert_eq(jsonrpc_errno_code(-EOPNOTSUPP), JSONRPC_E_UNSUPPORTED);
    cr_assert_eq(jsonrpc_errno_code(-ETIMEDOUT), JSONRPC_E_TIMEOUT);
    cr_assert_eq(jsonrpc_errno_code(-ECANCELED), JSONRPC_E_CANCELED);
    cr_assert_eq(jsonrpc_errno_code(-EIO), JSONRPC_E_IO);
    cr_assert_eq(jsonrpc_errno_code(-ENOMEM), JSONRPC_INTERNAL_ERROR);
    cr_assert_eq(jsonrpc_errno_code(-EBADF), JSONRPC_E_FAILED);
    cr_assert_eq(jsonrpc_errno_code(-4000), JSONRPC_E_FAILED);
    cr_assert_eq(jsonrpc_errno_code(0), JSONRPC_INTERNAL_ERROR);
    cr_assert_str_eq(jsonrpc_errno_name(-EBADF), "EBADF");
    cr_assert_str_eq(jsonrpc_errno_name(-ENOSPC), "ENOSPC");
    cr_assert_str_eq(jsonrpc_errno_name(-4000), "E?");
    /* Every application code is in the range the header promises. */
    for (int e = 1; e < 200; e++) {
        int code = jsonrpc_errno_code(-e);
        cr_assert(code == JSONRPC_INTERNAL_ERROR ||
                  (code >= JSONRPC_APP_MIN && code <= JSONRPC_APP_MAX),
                  "errno %d -> %d", e, code);
    }
}

/* ---- framing ------------------------------------------------------------ */

static const char stream[] =
    "{\"jsonrpc\":\"2.0\",\"method\":\"add\",\"params\":{\"a\":1},\"id\":1}\n"
    "garbage\n"
    "\n"
    "[{\"jsonrpc\":\"2.0\",\"method\":\"add\",\"params\":{\"a\":2},\"id\":2}]\r\n"
    "{\"jsonrpc\":\"2.0\",\"method\":\"echo\"}\n"
    "{\"jsonrpc\":\"2.0\",\"method\":\"add\",\"params\":{\"a\":3},\"id\":3}\n";

/* The replies to `stream`, as text, fed in pieces of `step` bytes. */
static char *run_stream(size_t step)
{
    size_t len = sizeof(stream) - 1;
    const void *p;
    char *out;

    for (size_t off = 0; off < len; off += step)
        cr_assert_eq(jsonrpc_conn_feed(C, stream + off,
                                       off + step < len ? step : len - off), 0);
    len = jsonrpc_conn_output(C, &p);
    out = strndup(p, len);
    jsonrpc_conn_consume(C, len);
    return out;
}

JSONRPC_TEST(same_replies_whatever_the_chunking)
{
    char *whole = run_stream(sizeof(stream));
    json_t *lines = parse_lines(whole, strlen(whole)), *batch;

    /* add 1, parse error, (blank line: nothing), batch [add 2], (the
     * notification: nothing), add 3 */
    cr_assert_eq(json_array_size(lines), 4);
    cr_assert_eq(json_integer_value(json_object_get(json_array_get(lines, 0),
                                                    "result")), 1);
    cr_assert_eq(error_code(json_array_get(lines, 1), -1), JSONRPC_PARSE_ERROR);
    batch = json_array_get(lines, 2);
    cr_assert(json_is_array(batch));
    cr_assert_eq(json_integer_value(json_object_get(json_array_get(batch, 0),
                                                    "result")), 2);
    cr_assert_eq(json_integer_value(json_object_get(json_array_get(lines, 3),
                                                    "result")), 3);
    json_decref(lines);

    for (size_t step = 1; step < 24; step++) {
        char *s = run_stream(step);
        cr_assert_str_eq(s, whole, "step %zu", step);
        free(s);
    }
    /* add x3 and the notification, in each of the 24 runs. */
    cr_assert_eq(T.calls, 24 * 4);
    free(whole);
}

JSONRPC_TEST(many_requests_in_one_huge_chunk)
{
    enum { N = 2000 };
    char one[96];
    size_t len = 0, cap = N * sizeof(one);
    char *buf = malloc(cap);
    json_t *lines;

    cr_assert_not_null(buf);
    for (int i = 0; i < N; i++) {
        int n = snprintf(one, sizeof(one),
                         "{\"jsonrpc\":\"2.0\",\"method\":\"add\",\"params\":{\"a\":%d},\"id\":%d}\n",
                         i % 1000, i);
        memcpy(buf + len, one, (size_t)n);
        len += (size_t)n;
    }
    cr_assert_eq(jsonrpc_conn_feed(C, buf, len), 0);
    free(buf);
    lines = take_lines();
    cr_assert_eq(json_array_size(lines), N);
    for (int i = 0; i < N; i++) {
        json_t *r = json_array_get(lines, (size_t)i);
        cr_assert_eq(json_integer_value(json_object_get(r, "id")), i);
        cr_assert_eq(json_integer_value(json_object_get(r, "result")), i % 1000);
    }
    json_decref(lines);
}

JSONRPC_TEST(crlf_and_blank_lines)
{
    json_t *lines;

    cr_assert_eq(feed("\r\n\n   \t\r\n"
                      "{\"jsonrpc\":\"2.0\",\"method\":\"add\",\"params\":{\"a\":4},\"id\":1}\r\n"
                      "{\"jsonrpc\":\"2.0\",\"method\":\"add\",\"params\":{\"a\":5},\"id\":2}\n"), 0);
    lines = take_lines();
    cr_assert_eq(json_array_size(lines), 2);
    cr_assert_eq(json_integer_value(json_object_get(json_array_get(lines, 1),
                                                    "result")), 5);
    json_decref(lines);
}

/* A request line of exactly len bytes before its LF: an "add" whose
 * params are padded with spaces. */
static char *padded_line(size_t len)
{
    const char *head = "{\"jsonrpc\":\"2.0\",\"method\":\"add\",\"id\":5,\"params\":{\"a\":6}";
    size_t hl = strlen(head);
    char *line = malloc(len + 2);

    cr_assert_not_null(line);
    cr_assert_gt(len, hl + 1);
    memcpy(line, head, hl);
    memset(line + hl, ' ', len - hl - 1);
    line[len - 1] = '}';
    line[len] = '\n';
    line[len + 1] = '\0';
    return line;
}

JSONRPC_TEST(line_of_max_length_is_served)
{
    char *line = padded_line(JSONRPC_MAX_LINE);
    json_t *r;

    /* In pieces, so that it goes through the line buffer. */
    for (size_t off = 0; off <= JSONRPC_MAX_LINE; off += 65536) {
        size_t n = JSONRPC_MAX_LINE + 1 - off;
        cr_assert_eq(jsonrpc_conn_feed(C, line + off, n < 65536 ? n : 65536), 0);
    }
    r = take_one();
    cr_assert_eq(json_integer_value(json_object_get(r, "result")), 6);
    json_decref(r);
    free(line);
}

JSONRPC_TEST(over_long_line_answered_and_skipped)
{
    char *line = padded_line(JSONRPC_MAX_LINE + 1);
    size_t total = JSONRPC_MAX_LINE + 2;
    json_t *r;

    /* Trickled in pieces: the error comes as soon as the limit is passed,
     * before the line's end, and the rest of it is dropped. */
    for (size_t off = 0; off < total - 1; off += 4096) {
        size_t n = total - 1 - off;
        cr_assert_eq(jsonrpc_conn_feed(C, line + off, n < 4096 ? n : 4096), 0);
    }
    r = take_one();
    cr_assert_eq(error_code(r, -1), JSONRPC_TOO_LARGE);
    json_decref(r);
    /* The LF ends the discarded line; the next request is served. */
    cr_assert_eq(feed("\n{\"jsonrpc\":\"2.0\",\"method\":\"add\",\"params\":{\"a\":1},\"id\":9}\n"), 0);
    r = take_one();
    cr_assert_eq(json_integer_value(json_object_get(r, "result")), 1);
    json_decref(r);
    cr_assert_eq(T.calls, 1);

    /* All in one feed, with a request after it. */
    cr_assert_eq(jsonrpc_conn_feed(C, line, total), 0);
    cr_assert_eq(feed("{\"jsonrpc\":\"2.0\",\"method\":\"add\",\"params\":{\"a\":2},\"id\":10}\n"), 0);
    json_t *lines = take_lines();
    cr_assert_eq(json_array_size(lines), 2);
    cr_assert_eq(error_code(json_array_get(lines, 0), -1), JSONRPC_TOO_LARGE);
    cr_assert_eq(json_integer_value(json_object_get(json_array_get(lines, 1),
                                                    "result")), 2);
    json_decref(lines);
    free(line);
}

JSONRPC_TEST(output_cap_breaks_a_conn_that_never_reads)
{
    const char *req = "{\"jsonrpc\":\"2.0\",\"method\":\"big\",\"id\":1}\n";
    const void *p;
    size_t per;
    int ret = 0, sent = 0;

    T.big_len = 1 << 20;
    cr_assert_eq(feed(req), 0);
    per = jsonrpc_conn_output(C, &p);       /* bytes of one reply line */
    jsonrpc_conn_consume(C, per);
    while (sent < 64 && (ret = feed(req)) == 0)
        sent++;
    cr_assert_eq(ret, -ENOBUFS, "feed returned %d after %d requests", ret, sent);
    cr_assert_eq(jsonrpc_conn_error(C), -ENOBUFS);
    /* Whole replies up to the cap, and no more. */
    cr_assert_eq(sent, (int)(JSONRPC_MAX_OUTPUT / per));
    cr_assert_eq(jsonrpc_conn_output(C, &p), (size_t)sent * per);
    /* Broken for good: nothing more runs. */
    int calls = T.calls;
    cr_assert_eq(feed(req), -ENOBUFS);
    cr_assert_eq(T.calls, calls);
}

JSONRPC_TEST(output_cap_not_hit_by_a_reader)
{
    const char *req = "{\"jsonrpc\":\"2.0\",\"method\":\"big\",\"id\":1}\n";

    T.big_len = 1 << 20;
    for (int i = 0; i < 64; i++) {
        cr_assert_eq(feed(req), 0);
        json_decref(take_one());
    }
}

JSONRPC_TEST(partial_consume)
{
    const void *p;
    size_t len;
    char *all;

    feed("{\"jsonrpc\":\"2.0\",\"method\":\"add\",\"params\":{\"a\":1},\"id\":1}\n");
    len = jsonrpc_conn_output(C, &p);
    all = strndup(p, len);
    jsonrpc_conn_consume(C, 5);
    cr_assert_eq(jsonrpc_conn_output(C, &p), len - 5);
    cr_assert_eq(memcmp(p, all + 5, len - 5), 0);
    /* New output goes after what is still unsent. */
    feed("{\"jsonrpc\":\"2.0\",\"method\":\"add\",\"params\":{\"a\":2},\"id\":2}\n");
    jsonrpc_conn_output(C, &p);     /* p may have moved */
    cr_assert_eq(memcmp(p, all + 5, len - 5), 0);
    jsonrpc_conn_consume(C, len - 5);
    json_t *r = take_one();
    cr_assert_eq(json_integer_value(json_object_get(r, "id")), 2);
    json_decref(r);
    free(all);
}

/* ---- late replies -------------------------------------------------------- */

JSONRPC_TEST(pending_reply_comes_later)
{
    json_t *r;

    cr_assert_eq(feed("{\"jsonrpc\":\"2.0\",\"method\":\"hold\",\"id\":1}\n"), 0);
    expect_nothing();
    cr_assert_eq(jsonrpc_conn_pending(C), 1);
    cr_assert_eq(T.nheld, 1);
    cr_assert_str_eq(jsonrpc_request_method(T.held[0]), "hold");
    cr_assert_not(jsonrpc_request_cancelled(T.held[0]));

    /* Other requests go on meanwhile. */
    feed("{\"jsonrpc\":\"2.0\",\"method\":\"add\",\"params\":{\"a\":3},\"id\":2}\n");
    r = take_one();
    cr_assert_eq(json_integer_value(json_object_get(r, "id")), 2);
    json_decref(r);

    cr_assert_eq(jsonrpc_reply_result(T.held[--T.nheld], json_string("done")), 0);
    cr_assert_eq(jsonrpc_conn_pending(C), 0);
    r = take_one();
    cr_assert_eq(json_integer_value(json_object_get(r, "id")), 1);
    cr_assert_str_eq(json_string_value(json_object_get(r, "result")), "done");
    json_decref(r);
}

JSONRPC_TEST(pending_error_and_notification)
{
    json_t *r;

    feed("{\"jsonrpc\":\"2.0\",\"method\":\"hold\",\"id\":\"x\"}\n");
    feed("{\"jsonrpc\":\"2.0\",\"method\":\"hold\"}\n");
    cr_assert_eq(jsonrpc_conn_pending(C), 2);
    jsonrpc_reply_errno(T.held[0], -ETIMEDOUT, NULL);
    jsonrpc_reply_result(T.held[1], json_true());   /* a notification */
    T.nheld = 0;
    r = take_one();
    cr_assert_str_eq(json_string_value(json_object_get(r, "id")), "x");
    cr_assert_eq(json_integer_value(json_object_get(json_object_get(r, "error"),
                                                    "code")), JSONRPC_E_TIMEOUT);
    json_decref(r);
    cr_assert_eq(jsonrpc_conn_pending(C), 0);
}

JSONRPC_TEST(batch_waits_for_late_replies)
{
    json_t *lines, *arr;

    feed("[{\"jsonrpc\":\"2.0\",\"method\":\"hold\",\"id\":1},"
         "{\"jsonrpc\":\"2.0\",\"method\":\"add\",\"params\":{\"a\":2},\"id\":2},"
         "{\"jsonrpc\":\"2.0\",\"method\":\"hold\",\"id\":3},"
         "{\"jsonrpc\":\"2.0\",\"method\":\"hold\"}]\n");
    cr_assert_eq(T.nheld, 3);
    expect_nothing();
    jsonrpc_reply_result(T.held[2], json_null());    /* the notification */
    jsonrpc_reply_result(T.held[0], json_integer(10));
    expect_nothing();
    jsonrpc_reply_error(T.held[1], JSONRPC_E_BUSY, NULL, "late");
    T.nheld = 0;
    lines = take_lines();
    cr_assert_eq(json_array_size(lines), 1);
    arr = json_array_get(lines, 0);
    cr_assert_eq(json_array_size(arr), 3);
    cr_assert_eq(json_integer_value(json_object_get(find_id(arr, 1), "result")), 10);
    cr_assert_eq(json_integer_value(json_object_get(find_id(arr, 2), "result")), 2);
    cr_assert_eq(error_code(find_id(arr, 3), 3), JSONRPC_E_BUSY);
    json_decref(lines);
}

JSONRPC_TEST(reply_to_others_from_a_handler)
{
    json_t *lines, *arr;

    feed("{\"jsonrpc\":\"2.0\",\"method\":\"hold\",\"id\":1}\n");
    /* In one batch: one held, then released by a later member. */
    feed("[{\"jsonrpc\":\"2.0\",\"method\":\"hold\",\"id\":2},"
         "{\"jsonrpc\":\"2.0\",\"method\":\"release\",\"id\":3}]\n");
    cr_assert_eq(T.nheld, 0);
    cr_assert_eq(jsonrpc_conn_pending(C), 0);
    lines = take_lines();
    cr_assert_eq(json_array_size(lines), 2);
    cr_assert_eq(json_integer_value(json_object_get(json_array_get(lines, 0),
                                                    "id")), 1);
    arr = json_array_get(lines, 1);
    cr_assert_eq(json_array_size(arr), 2);
    cr_assert_str_eq(json_string_value(json_object_get(find_id(arr, 2), "result")),
                     "released");
    cr_assert(json_is_true(json_object_get(find_id(arr, 3), "result")));
    json_decref(lines);
}

JSONRPC_TEST(pending_limit)
{
    const char *req = "{\"jsonrpc\":\"2.0\",\"method\":\"hold\",\"id\":1}\n";
    json_t *r;

    for (int i = 0; i < JSONRPC_MAX_PENDING; i++)
        cr_assert_eq(feed(req), 0);
    expect_nothing();
    r = expect_error(req, JSONRPC_TOO_MANY_PENDING, 1);
    json_decref(r);
    cr_assert_eq(T.nheld, JSONRPC_MAX_PENDING);
    jsonrpc_reply_result(T.held[--T.nheld], json_null());
    json_decref(take_one());
    cr_assert_eq(feed(req), 0);
    expect_nothing();
    cr_assert_eq(T.nheld, JSONRPC_MAX_PENDING);
}

/* ---- cancellation ------------------------------------------------------- */

static void on_cancel(void *arg, struct jsonrpc_request *req)
{
    struct tctx *t = arg;

    cr_assert(jsonrpc_request_cancelled(req));
    t->cancels++;
    if (t->reply_in_cancel) {
        for (int i = 0; i < t->nheld; i++)
            if (t->held[i] == req)
                t->held[i] = t->held[--t->nheld];
        jsonrpc_reply_errno(req, -ECANCELED, NULL);
    }
}

JSONRPC_TEST(conn_freed_with_pending_requests)
{
    feed("{\"jsonrpc\":\"2.0\",\"method\":\"hold\",\"id\":1}\n");
    feed("[{\"jsonrpc\":\"2.0\",\"method\":\"hold\",\"id\":2},"
         "{\"jsonrpc\":\"2.0\",\"method\":\"add\",\"params\":{\"a\":1},\"id\":3},"
         "{\"jsonrpc\":\"2.0\",\"method\":\"hold\",\"id\":4}]\n");
    cr_assert_eq(T.nheld, 3);
    jsonrpc_request_on_cancel(T.held[0], on_cancel, &T);
    jsonrpc_request_on_cancel(T.held[2], on_cancel, &T);
    /* One member of the batch answered before the conn goes. */
    jsonrpc_reply_result(T.held[1], json_null());
    T.held[1] = T.held[2];
    T.nheld = 2;

    jsonrpc_conn_free(C);
    C = NULL;
    cr_assert_eq(T.cancels, 2);
    /* The owner still holds them; replies now free them and send
     * nothing (ASan would see a use after free or a leak). */
    for (int i = 0; i < T.nheld; i++)
        cr_assert(jsonrpc_request_cancelled(T.held[i]));
    jsonrpc_reply_result(T.held[0], json_string("late"));
    jsonrpc_reply_error(T.held[1], 1000, json_object(), "late");
    T.nheld = 0;
}

JSONRPC_TEST(cancel_callback_may_reply)
{
    T.reply_in_cancel = true;
    feed("{\"jsonrpc\":\"2.0\",\"method\":\"hold\",\"id\":1}\n");
    feed("[{\"jsonrpc\":\"2.0\",\"method\":\"hold\",\"id\":2}]\n");
    feed("{\"jsonrpc\":\"2.0\",\"method\":\"hold\",\"id\":3}\n");
    for (int i = 0; i < T.nheld; i++)
        jsonrpc_request_on_cancel(T.held[i], on_cancel, &T);
    jsonrpc_conn_free(C);
    C = NULL;
    cr_assert_eq(T.cancels, 3);
    cr_assert_eq(T.nheld, 0);
}

JSONRPC_TEST(broken_conn_still_frees_pending)
{
    const char *big = "{\"jsonrpc\":\"2.0\",\"method\":\"big\",\"id\":1}\n";

    feed("{\"jsonrpc\":\"2.0\",\"method\":\"hold\",\"id\":1}\n");
    T.big_len = 4 << 20;
    while (feed(big) == 0)
        ;
    /* The reply goes nowhere; the request is freed. */
    jsonrpc_reply_result(T.held[--T.nheld], json_true());
    cr_assert_eq(jsonrpc_conn_pending(C), 0);
}
