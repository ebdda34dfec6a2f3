/* SPDX-License-Identifier: MIT */
/*
 * The BIOs of a TLS session (tls-bio.c). Output: OpenSSL appends
 * records, the connection peeks and consumes them, or takes the whole
 * buffer. Input: the connection receives into the BIO's free space and
 * commits what arrived; OpenSSL reads it from the front.
 */
#ifndef SENDENSE_SERVER_TLS_BIO_H
#define SENDENSE_SERVER_TLS_BIO_H

#include <openssl/bio.h>
#include <stddef.h>

/* NULL when out of memory. */
BIO *tls_out_bio_new(void);
/* The pending bytes, without removing them. */
size_t tls_out_bio_peek(BIO *b, const void **ptr);
/* The first n pending bytes were sent. */
void tls_out_bio_consume(BIO *b, size_t n);
/* Hand over the pending bytes: *buf holds the returned count, and the
 * BIO starts a new buffer. 0 and NULL when nothing is pending. Once
 * sent, the buffer goes back with tls_out_bio_give_back() (which keeps
 * it for the next records, or frees it), before the next take. */
size_t tls_out_bio_take(BIO *b, void **buf);
void tls_out_bio_give_back(BIO *b, void *buf);
/* Free the buffers that hold nothing pending (an idle connection). */
void tls_out_bio_trim(BIO *b);

BIO *tls_in_bio_new(void);
/* Free space of at least want bytes at *ptr (its size is returned), or 0
 * when out of memory. */
size_t tls_in_bio_space(BIO *b, size_t want, void **ptr);
/* n bytes were placed at the space's start. */
void tls_in_bio_commit(BIO *b, size_t n);

#endif
