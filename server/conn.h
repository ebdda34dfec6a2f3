/* SPDX-License-Identifier: MIT */
/*
 * One NBD client connection: its socket (plain or TLS), what it
 * negotiated, and its place in the server's connection table.
 *
 * Life: the control loop accepts it and hands it to a worker, which runs
 * the handshake; once an export is chosen the connection moves to the
 * worker that owns the export's image and serves requests there until
 * the client leaves, the connection is closed by the control socket, or
 * the server stops. It leaves the table only after all its I/O is done,
 * which is what export.fence and drains wait for.
 */
#ifndef SENDENSE_SERVER_CONN_H
#define SENDENSE_SERVER_CONN_H

#include "common/coroutine.h"

#include <jansson.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>

struct sd_server;
struct worker;
struct export_def;
struct sd_tls_session;
struct nbd_req;

struct conn {
    struct conn *prev, *next;         /* server table, under conns_lock */
    uint64_t id;
    struct sd_server *srv;
    struct worker *worker;            /* the loop it runs on now */
    int fd;
    bool is_unix;
    char peer[80];                    /* "ADDR:PORT" or "unix" */
    char label[128];                  /* "conn N (peer)" for logs */
    struct sockaddr_storage addr;
    int64_t since_ms;                 /* CLOCK_REALTIME */
    atomic_bool closing;              /* asked to close (control) */
    const char *listener;             /* listener text, for logs */

    /* TLS (NULL: plain). A send lock keeps ciphertext in order between
     * the reader (which may produce alerts) and the sender. */
    struct sd_tls_session *tls;
    struct co_mutex tls_send_lock;
    char *tls_peer;                   /* client identity */

    /* Negotiated. */
    struct export_def *def;           /* set once, before transmission */
    char export_name[256];            /* for listings, under conns_lock */
    bool structured;
    bool no_zeroes;
    bool ctx_base, ctx_depth;         /* meta contexts selected */

    /* Transmission (owner worker only). */
    uint64_t inflight_bytes;
    unsigned inflight_reqs;
    atomic_uint peak_inflight_reqs;   /* for connection.list */
    atomic_uint_fast64_t peak_inflight_bytes;
    uint64_t budget;
    struct co_queue budget_wait;      /* reader waits here */
    struct co_queue idle_wait;        /* teardown waits for requests */
    struct nbd_req *send_head, *send_tail;
    struct co_queue send_wait;        /* sender sleeps here */
    bool sender_running;
    bool sender_done;
    int send_error;
    bool wrote;                       /* flush on the way out */
    bool counted_on_image;            /* in def->image->n_conns */
    atomic_uint_fast64_t requests;    /* for connection.list */

    /* Read replies spliced from the file (reply-splice.c; owner worker
     * only): the pipe their pages pass through, pipe_cap 0 until the
     * first large read makes one. */
    int pipe_rd, pipe_wr;
    size_t pipe_cap;
    bool splice_failed;               /* the image refused: copy instead */

    /* Received but not yet parsed (conn-recv.c; owner worker only). */
    uint8_t *rbuf;                    /* from the worker's pool, or NULL */
    uint32_t rbuf_start, rbuf_end;
    bool rbuf_header_next;            /* last payload was large */
};

/* Control loop: a new accepted socket; runs it on a worker. */
int conn_accept(struct sd_server *srv, int fd, const struct sockaddr *addr,
                socklen_t addrlen, const char *listener);

/* Byte transport over the connection (coroutines on c->worker). deadline
 * may be NULL. Return 0 or a negative errno (-ECONNRESET: peer gone). */
int conn_read(struct conn *c, void *buf, size_t len,
              const struct timespec *deadline);
int conn_write(struct conn *c, const void *buf, size_t len,
               const struct timespec *deadline);
int conn_writev(struct conn *c, struct iovec *iov, int iovcnt);
/* Transmission-phase receive through the staging buffer (conn-recv.c):
 * exactly len bytes, 0 or a negative errno. Every read of the request
 * stream after the handshake must go through it. */
int conn_recv(struct conn *c, void *buf, size_t len);
/* Nothing is staged (the next byte must come from the socket). */
bool conn_recv_idle(const struct conn *c);
/* Give the staging buffer back to the pool: if nothing is staged, or
 * dropping what is (the connection ends). */
void conn_recv_release(struct conn *c, bool drop_staged);
/* The payload length of the request just parsed (0: none): after a large
 * one the next staging receive takes a header only. */
void conn_recv_note_payload(struct conn *c, uint32_t len);
/* Zero-copy read replies (reply-splice.c). conn_splice_ready() makes
 * the connection's pipe if it has none; false when splicing is out. */
bool conn_splice_ready(struct conn *c);
void conn_splice_release(struct conn *c);
/* Send iov in order, the pieces with a NULL base spliced from fd at
 * file_off[i] (the others' file_off entries are unused). */
int conn_send_spliced(struct conn *c, struct iovec *iov,
                      const uint64_t *file_off, int iovcnt, int fd);
/* TLS handshake after STARTTLS. */
int conn_start_tls(struct conn *c, const struct timespec *deadline);
/* Before a TLS connection closes: send close_notify, best effort. */
void conn_end_tls(struct conn *c);

/* Coroutine: serve requests until the end (transmission.c). */
void conn_transmission(struct conn *c);
/* Coroutine: the handshake (handshake.c). Returns 0 with c->def set to
 * go on with transmission, or a negative errno to close. */
int conn_handshake(struct conn *c);

/* End of the connection: out of the table, socket closed, references
 * dropped, waiters told. Call on c->worker once no I/O is in flight. */
void conn_finish(struct conn *c);

/* Any thread (holding conns_lock unless c is the caller's own): ask a
 * connection to close, by shutdown(2) of its socket. */
void conn_request_close(struct conn *c, bool graceful);

/* Control loop: JSON for connection.list. */
json_t *conn_list_json(struct sd_server *srv);
/* Control loop: close connection id (-ENOENT when none). */
int conn_close_by_id(struct sd_server *srv, uint64_t id);
/* Control loop: close every connection of export name (NULL: all); with
 * older_than, only those with id < older_than. Returns how many. */
unsigned conn_close_matching(struct sd_server *srv, const char *name,
                             uint64_t older_than, bool graceful);

/* Waiting for connections to be gone (fence, drain, stop). The callback
 * runs on the control loop when no connection matching (name, ids below
 * max_id) remains in the table. */
typedef void conn_waiter_fn(void *arg);
int conn_wait_gone(struct sd_server *srv, const char *name, uint64_t max_id,
                   conn_waiter_fn *fn, void *arg);
/* Control loop: check waiters (after a connection left). */
void conn_check_waiters(struct sd_server *srv);
/* The id the next connection will get. */
uint64_t conn_next_id(struct sd_server *srv);
unsigned conn_count(struct sd_server *srv, const char *name);

int64_t now_realtime_ms(void);

#endif
