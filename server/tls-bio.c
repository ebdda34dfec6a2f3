/* SPDX-License-Identifier: MIT */
/*
 * The two BIOs of a TLS session, both buffers in memory.
 *
 * Output: OpenSSL appends records to a buffer the connection can take
 * whole. A memory BIO would cost two more copies of every byte sent: one
 * to get the ciphertext out (BIO_read is the only way to drop sent bytes)
 * and one so that the bytes stay put while another coroutine adds
 * records during the send. Taking the buffer hands it over instead.
 *
 * A taken buffer comes back once sent and is kept as the next one, so
 * that a stream of replies writes into memory already mapped and warm
 * in the cache: a fresh buffer for each flush faulted in its pages, and
 * copying into them cost more than the encryption.
 *
 * Input: the connection receives ciphertext straight into the BIO's
 * buffer (space, then commit), where a memory BIO would want a copy.
 */
#include "config.h"

#include "server/tls-bio.h"

#include <openssl/bio.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

struct out_buf {
    char *data;
    size_t start, end, cap;     /* pending bytes are [start, end) */
    size_t last_taken;          /* size of the last buffer handed over */
    size_t taken_cap;           /* capacity of the buffer handed over */
    char *spare;                /* a sent buffer, for the next records */
    size_t spare_cap;
};

static BIO_METHOD *out_method, *in_method;
static pthread_once_t methods_once = PTHREAD_ONCE_INIT;

static int grow(struct out_buf *o, size_t need)
{
    /* A new buffer starts at twice the last one taken: replies come in
     * runs of one size, two may meet in one buffer, and growing by
     * doubling would copy every time. */
    size_t cap = o->cap ? o->cap : 2 * o->last_taken > 64 * 1024 ?
                                   2 * o->last_taken : 64 * 1024;
    char *data;

    if (!o->data && o->spare && o->spare_cap >= need) {
        o->data = o->spare;
        o->cap = o->spare_cap;
        o->spare = NULL;
        return 0;
    }
    while (cap - o->end < need) {
        if (cap > SIZE_MAX / 2)
            return -1;
        cap *= 2;
    }
    data = realloc(o->data, cap);
    if (!data)
        return -1;
    o->data = data;
    o->cap = cap;
    return 0;
}

static int out_write(BIO *b, const char *buf, int len)
{
    struct out_buf *o = BIO_get_data(b);

    if (len <= 0)
        return 0;
    if (o->cap - o->end < (size_t)len && grow(o, (size_t)len) < 0)
        return -1;
    memcpy(o->data + o->end, buf, (size_t)len);
    o->end += (size_t)len;
    return len;
}

static long out_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    struct out_buf *o = BIO_get_data(b);

    (void)num;
    (void)ptr;
    switch (cmd) {
    case BIO_CTRL_FLUSH:
        return 1;               /* the connection sends when it is told */
    case BIO_CTRL_WPENDING:
    case BIO_CTRL_PENDING:
        return (long)(o->end - o->start);
    default:
        return 0;
    }
}

/* Input: the same buffer type, read from the front. */
static int in_read(BIO *b, char *buf, int len)
{
    struct out_buf *o = BIO_get_data(b);
    size_t n = o->end - o->start;

    BIO_clear_retry_flags(b);
    if (len <= 0)
        return 0;
    if (!n) {
        BIO_set_retry_read(b);  /* more will come: not end of file */
        return -1;
    }
    if (n > (size_t)len)
        n = (size_t)len;
    memcpy(buf, o->data + o->start, n);
    o->start += n;
    if (o->start == o->end)
        o->start = o->end = 0;
    return (int)n;
}

static int out_create(BIO *b)
{
    struct out_buf *o = calloc(1, sizeof(*o));

    if (!o)
        return 0;
    BIO_set_data(b, o);
    BIO_set_init(b, 1);
    return 1;
}

static int out_destroy(BIO *b)
{
    struct out_buf *o = BIO_get_data(b);

    if (o) {
        free(o->data);
        free(o->spare);
        free(o);
    }
    BIO_set_data(b, NULL);
    return 1;
}

static BIO_METHOD *make_method(const char *name, bool input)
{
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK,
                                 name);

    if (m && (input ? BIO_meth_set_read(m, in_read)
                    : BIO_meth_set_write(m, out_write)) &&
        BIO_meth_set_ctrl(m, out_ctrl) &&
        BIO_meth_set_create(m, out_create) &&
        BIO_meth_set_destroy(m, out_destroy))
        return m;
    BIO_meth_free(m);
    return NULL;
}

static void make_methods(void)
{
    out_method = make_method("sendense TLS output", false);
    in_method = make_method("sendense TLS input", true);
}

BIO *tls_out_bio_new(void)
{
    pthread_once(&methods_once, make_methods);
    return out_method ? BIO_new(out_method) : NULL;
}

BIO *tls_in_bio_new(void)
{
    pthread_once(&methods_once, make_methods);
    return in_method ? BIO_new(in_method) : NULL;
}

size_t tls_in_bio_space(BIO *b, size_t want, void **ptr)
{
    struct out_buf *o = BIO_get_data(b);

    *ptr = NULL;
    if (o->start && o->cap - o->end < want) {
        /* Unread bytes move to the front before the buffer grows. */
        memmove(o->data, o->data + o->start, o->end - o->start);
        o->end -= o->start;
        o->start = 0;
    }
    if (o->cap - o->end < want && grow(o, want) < 0)
        return 0;
    *ptr = o->data + o->end;
    return o->cap - o->end;
}

void tls_in_bio_commit(BIO *b, size_t n)
{
    struct out_buf *o = BIO_get_data(b);

    if (n > o->cap - o->end)
        n = o->cap - o->end;
    o->end += n;
}

size_t tls_out_bio_peek(BIO *b, const void **ptr)
{
    struct out_buf *o = BIO_get_data(b);

    *ptr = o->data ? o->data + o->start : NULL;
    return o->end - o->start;
}

void tls_out_bio_consume(BIO *b, size_t n)
{
    struct out_buf *o = BIO_get_data(b);

    if (n > o->end - o->start)
        n = o->end - o->start;
    o->start += n;
    if (o->start == o->end)
        o->start = o->end = 0;
}

size_t tls_out_bio_take(BIO *b, void **buf)
{
    struct out_buf *o = BIO_get_data(b);
    size_t n = o->end - o->start;

    *buf = NULL;
    if (!n)
        return 0;
    if (o->start)
        memmove(o->data, o->data + o->start, n);
    *buf = o->data;
    o->taken_cap = o->cap;
    o->data = NULL;
    o->start = o->end = o->cap = 0;
    o->last_taken = n;
    return n;
}

void tls_out_bio_give_back(BIO *b, void *buf)
{
    struct out_buf *o = BIO_get_data(b);

    if (!buf)
        return;
    if (o->spare && o->spare_cap >= o->taken_cap) {
        free(buf);
        return;
    }
    free(o->spare);
    o->spare = buf;
    o->spare_cap = o->taken_cap;
}

void tls_out_bio_trim(BIO *b)
{
    struct out_buf *o = BIO_get_data(b);

    free(o->spare);
    o->spare = NULL;
    o->spare_cap = 0;
    if (o->data && o->start == o->end) {
        free(o->data);
        o->data = NULL;
        o->start = o->end = o->cap = 0;
    }
}
