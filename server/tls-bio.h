/* SPDX-License-Identifier: MIT */
/*
 * The output BIO of a TLS session (tls-bio.c): OpenSSL appends records,
 * the connection peeks and consumes them, or takes the whole buffer.
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
/* Hand over the pending bytes: *buf (free() it) holds the returned count,
 * and the BIO starts a new buffer. 0 and NULL when nothing is pending. */
size_t tls_out_bio_take(BIO *b, void **buf);

#endif
