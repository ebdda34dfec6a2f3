/* SPDX-License-Identifier: MIT */
/*
 * TLS for NBD connections, on OpenSSL, with no socket of its own.
 *
 * The connection code moves ciphertext between the socket and a session
 * through io_uring; this layer only turns ciphertext into plaintext and
 * back (memory BIOs), so TLS never blocks a worker thread and every
 * socket operation stays on the ring.
 *
 *   socket ──recv──► sd_tls_session_put_input() ──► read()/handshake()
 *   socket ◄──send── sd_tls_session_output()    ◄── write()/handshake()
 *
 * Credentials (struct sd_tls_config): an X.509 certificate and key
 * (PEM), optionally a CA whose clients must present certificates signed
 * by it, and/or a PSK keys file in the format of GnuTLS's psktool
 * ("identity:hexkey" per line), as qemu and libnbd use.
 *
 * Not thread-safe per session (a session belongs to one connection);
 * one sd_tls_server may be shared by every thread.
 */
#ifndef SENDENSE_SERVER_TLS_H
#define SENDENSE_SERVER_TLS_H

#include "common/error.h"
#include "server/server-config.h"

#include <stddef.h>
#include <sys/types.h>

struct sd_tls_server;
struct sd_tls_session;

/* Load the credentials of cfg (mode must not be off). Errors name the
 * file and what is wrong with it. */
int sd_tls_server_new(const struct sd_tls_config *cfg,
                      struct sd_tls_server **out, struct sd_error *err);
void sd_tls_server_free(struct sd_tls_server *srv);

/* A session for one accepted connection (the server side). */
int sd_tls_session_new(struct sd_tls_server *srv,
                       struct sd_tls_session **out);
void sd_tls_session_free(struct sd_tls_session *s);

/* Ciphertext received from the peer. Returns 0 or -ENOMEM. */
int sd_tls_session_put_input(struct sd_tls_session *s, const void *buf,
                             size_t len);
/* The same without a copy: receive into *ptr (at least want bytes, the
 * size is returned; 0 when out of memory), then commit what arrived. */
size_t sd_tls_session_input_space(struct sd_tls_session *s, size_t want,
                                  void **ptr);
void sd_tls_session_input_commit(struct sd_tls_session *s, size_t n);

/* Ciphertext waiting to be sent: returns its length and points *ptr at
 * it (valid until the next call on s). */
size_t sd_tls_session_output(struct sd_tls_session *s, const void **ptr);
/* The first n bytes of the output were sent. */
void sd_tls_session_consume(struct sd_tls_session *s, size_t n);
/* Take all of the output: *buf holds the returned count of bytes, and
 * later records go to a new buffer. No copy is made. Once sent, *buf
 * goes back with sd_tls_session_give_back_output(), before the next take
 * (the session reuses it). */
size_t sd_tls_session_take_output(struct sd_tls_session *s, void **buf);
void sd_tls_session_give_back_output(struct sd_tls_session *s, void *buf);
/* Release the output buffers while the connection is idle. */
void sd_tls_session_trim(struct sd_tls_session *s);

/* Advance the handshake with the input given so far. Returns 0 once it
 * is complete, -EAGAIN when it needs more input (send the output first),
 * or another negative errno with a message in err (bad certificate,
 * unknown PSK identity, not TLS at all, ...). */
int sd_tls_session_handshake(struct sd_tls_session *s, struct sd_error *err);

/* Plaintext from the input given so far: returns the bytes read (> 0),
 * 0 when the peer closed the session (close_notify), -EAGAIN when more
 * input is needed, or another negative errno (-EPROTO for a broken
 * record). */
ssize_t sd_tls_session_read(struct sd_tls_session *s, void *buf, size_t len);

/* Encrypt all of buf into the output. Returns 0 or a negative errno. */
int sd_tls_session_write(struct sd_tls_session *s, const void *buf,
                         size_t len);

/* Queue a close_notify alert into the output. */
void sd_tls_session_shutdown(struct sd_tls_session *s);

/* For logs, after the handshake: the client certificate's subject or
 * the PSK identity, or NULL for an anonymous client. */
const char *sd_tls_session_peer(const struct sd_tls_session *s);

#endif
