/* socket-pump: the ceiling of a server's sequential rows.
 *
 * It moves the bytes of a sequential row between a socket and a file with
 * the least work a server could do: no protocol, no request headers, no
 * image format. The listening side plays the server and the connecting
 * side the client; nbd-bench.sh measures the listening side's CPU and the
 * transfer's throughput as it does for the servers. A server within 10 %
 * of the pump on the same row is at the transport's limit.
 *
 *   socket-pump listen|connect ADDR --to FILE   receive, write FILE
 *                                  (O_DIRECT, fdatasync at the end)
 *   socket-pump listen|connect ADDR --from FILE [--size N]
 *                                  read FILE (O_DIRECT), send it
 *   socket-pump listen|connect ADDR --to-null   receive, discard
 *
 * With --tls CERT KEY (listen) and --tls (connect) the bytes go through
 * TLS (OpenSSL, its defaults: TLS 1.3, AES-GCM): the ceiling of the TLS
 * rows, a server that does nothing but encrypt.
 *
 * ADDR is unix:PATH or tcp:PORT (127.0.0.1). The listening side serves one
 * connection, then waits for SIGTERM, as a server would, so that its CPU
 * time can be read from /proc like theirs. File I/O goes through
 * io_uring, SLOTS requests in flight, so that the disk and the socket
 * overlap as they do in the server. PUMP_SENDFILE=1 in the environment
 * sends a file with sendfile(2) instead (bench/README.md says why that
 * is not the default). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "pump-net.h"

enum { CHUNK = 256 * 1024, SLOTS = 64, ALIGN = 4096 };

struct options {
    bool listening;
    const char *addr;
    const char *from;       /* file to send */
    const char *to;         /* file to write; NULL with to_null */
    bool to_null;
    long long size;         /* bytes to send; -1: the whole file */
    bool tls;
    const char *cert, *key; /* the listening side's, with tls */
};

/* A connection: the socket, and its TLS session when there is one. */
struct conn {
    int fd;
    SSL *ssl;
};

static int fail(const char *what, int err)
{
    fprintf(stderr, "socket-pump: %s: %s\n", what, strerror(err));
    return 1;
}

/* Returns the connected socket or a negative errno. The listening side
 * takes one connection and closes its listener. */
static int open_connection(const struct options *o)
{
    struct sockaddr_storage ss;
    socklen_t len;
    int family = pump_address(o->addr, &ss, &len), fd, conn, err = 0;

    if (family < 0)
        return family;
    if (!o->listening) {
        fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
            return -errno;
        pump_tune_socket(fd, false);
        if (connect(fd, (struct sockaddr *)&ss, len) < 0) {
            err = -errno;
            close(fd);
            return err;
        }
        return fd;
    }
    fd = pump_listen(o->addr);
    if (fd < 0)
        return fd;
    if ((conn = accept4(fd, NULL, NULL, SOCK_CLOEXEC)) < 0)
        err = -errno;
    if (family == AF_UNIX)
        unlink(((struct sockaddr_un *)&ss)->sun_path);
    close(fd);
    if (err)
        return err;
    pump_tune_socket(conn, true);
    return conn;
}

/* One read or write of at most len bytes: > 0 done, 0 end of stream,
 * or a negative errno. */
static long long conn_io(struct conn *c, void *buf, size_t len, bool reading)
{
    if (c->ssl) {
        size_t done = 0;
        int ok = reading ? SSL_read_ex(c->ssl, buf, len, &done)
                         : SSL_write_ex(c->ssl, buf, len, &done);
        if (ok)
            return (long long)done;
        int why = SSL_get_error(c->ssl, 0);
        return reading && why == SSL_ERROR_ZERO_RETURN ? 0 : -EPROTO;
    }
    ssize_t n;
    do {
        n = reading ? recv(c->fd, buf, len, MSG_WAITALL)
                    : send(c->fd, buf, len, MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    return n < 0 ? -errno : n;
}

/* Reads up to want bytes, fewer only at the end of the stream. */
static long long recv_full(struct conn *c, char *buf, size_t want)
{
    size_t got = 0;
    while (got < want) {
        long long n = conn_io(c, buf + got, want - got, true);
        if (n < 0)
            return n;
        if (n == 0)
            break;
        got += (size_t)n;
    }
    return (long long)got;
}

static int send_full(struct conn *c, const char *buf, size_t len)
{
    while (len > 0) {
        long long n = conn_io(c, (char *)buf, len, false);
        if (n < 0)
            return (int)n;
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

/* File -> socket with sendfile(2): the page cache's pages go into the
 * socket without a copy through user space. */
static int pump_sendfile(struct conn *c, const char *path, long long size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return fail(path, errno);
    off_t off = 0;
    int rc = 0;
    while (size < 0 || off < size) {
        size_t want = CHUNK;
        if (size >= 0 && size - off < (long long)want)
            want = (size_t)(size - off);
        ssize_t n = sendfile(c->fd, fd, &off, want);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = fail("sendfile", errno);
            break;
        }
        if (n == 0)
            break;
    }
    close(fd);
    return rc;
}

/* A ring with SLOTS aligned CHUNK buffers, for the O_DIRECT pumps. */
struct io_slab {
    struct io_uring ring;
    char *slab;
};

static int io_slab_init(struct io_slab *io)
{
    int err = io_uring_queue_init(SLOTS, &io->ring, 0);
    if (err < 0)
        return fail("io_uring_queue_init", -err);
    if (posix_memalign((void **)&io->slab, ALIGN, (size_t)CHUNK * SLOTS)) {
        io_uring_queue_exit(&io->ring);
        return fail("posix_memalign", ENOMEM);
    }
    return 0;
}

static void io_slab_exit(struct io_slab *io)
{
    io_uring_queue_exit(&io->ring);
    free(io->slab);
}

/* File -> socket: O_DIRECT reads through io_uring, SLOTS in flight, each
 * sent in order as it completes; one copy (into the socket). */
static int pump_direct(struct conn *c, struct io_slab *io, const char *path,
                       long long size)
{
    int fd = open(path, O_RDONLY | O_DIRECT | O_CLOEXEC);
    if (fd < 0)
        return fail(path, errno);
    struct stat st;
    if (size < 0) {
        if (fstat(fd, &st) < 0) {
            int e = errno;
            close(fd);
            return fail(path, e);
        }
        size = st.st_size;
    }
    struct io_uring *ring = &io->ring;
    char *slab = io->slab;
    int results[SLOTS];
    bool done[SLOTS] = { false };
    long long next_read = 0, next_send = 0;
    unsigned queued = 0, inflight = 0;
    int rc = 0, err;
    while (next_send < size) {
        /* Keep SLOTS reads ahead of the send position. */
        while (next_read < size && queued < SLOTS) {
            int slot = (int)((next_read / CHUNK) % SLOTS);
            struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
            io_uring_prep_read(sqe, fd, slab + (size_t)slot * CHUNK, CHUNK,
                               (unsigned long long)next_read);
            io_uring_sqe_set_data64(sqe, (unsigned long long)slot);
            done[slot] = false;
            next_read += CHUNK;
            queued++;
            inflight++;
        }
        if ((err = io_uring_submit(ring)) < 0) {
            rc = fail("io_uring_submit", -err);
            goto out;
        }
        int head = (int)((next_send / CHUNK) % SLOTS);
        while (!done[head]) {
            struct io_uring_cqe *cqe;
            if ((err = io_uring_wait_cqe(ring, &cqe)) < 0) {
                rc = fail("io_uring_wait_cqe", -err);
                goto out;
            }
            int slot = (int)io_uring_cqe_get_data64(cqe);
            results[slot] = cqe->res;
            done[slot] = true;
            inflight--;
            io_uring_cqe_seen(ring, cqe);
        }
        if (results[head] < 0) {
            rc = fail(path, -results[head]);
            goto out;
        }
        size_t len = (size_t)results[head];
        if ((long long)len > size - next_send)
            len = (size_t)(size - next_send);
        if (len == 0)
            break;
        if ((err = send_full(c, slab + (size_t)head * CHUNK, len)) < 0) {
            rc = fail("send", -err);
            goto out;
        }
        next_send += CHUNK;
        queued--;
    }
out:
    /* Reads still in flight must end before their buffers go. */
    while (inflight-- > 0) {
        struct io_uring_cqe *cqe;
        if (io_uring_wait_cqe(ring, &cqe) < 0)
            break;
        io_uring_cqe_seen(ring, cqe);
    }
    close(fd);
    return rc;
}

static int pump_to_null(struct conn *c)
{
    static char buf[CHUNK];
    for (;;) {
        long long n = recv_full(c, buf, sizeof buf);
        if (n < 0)
            return fail("recv", (int)-n);
        if (n == 0)
            return 0;
    }
}

/* Waits for one write to end; returns its slot or a negative errno. */
static int reap_write(struct io_uring *ring, size_t *lengths)
{
    struct io_uring_cqe *cqe;
    int err = io_uring_wait_cqe(ring, &cqe);
    if (err < 0)
        return err;
    int slot = (int)io_uring_cqe_get_data64(cqe);
    int res = cqe->res;
    io_uring_cqe_seen(ring, cqe);
    if (res < 0)
        return res;
    if ((size_t)res != lengths[slot])
        return -EIO;
    return slot;
}

/* Socket -> file: receive into an aligned slot, write it with O_DIRECT,
 * up to SLOTS writes in flight. A short last chunk goes through the page
 * cache (O_DIRECT needs whole blocks); fdatasync makes it all durable, as
 * a server's flush would. */
static int pump_to_file(struct conn *c, struct io_slab *io, const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_DIRECT | O_CLOEXEC, 0644);
    if (fd < 0)
        return fail(path, errno);
    struct io_uring *ring = &io->ring;
    char *slab = io->slab;
    int rc = 0, err;
    size_t lengths[SLOTS] = { 0 };
    int free_slots[SLOTS], nfree = SLOTS, inflight = 0;
    for (int i = 0; i < SLOTS; i++)
        free_slots[i] = i;
    long long offset = 0;
    for (;;) {
        if (nfree == 0) {
            int slot = reap_write(ring, lengths);
            if (slot < 0) {
                rc = fail("write", -slot);
                goto out;
            }
            free_slots[nfree++] = slot;
            inflight--;
        }
        int slot = free_slots[--nfree];
        char *buf = slab + (size_t)slot * CHUNK;
        long long n = recv_full(c, buf, CHUNK);
        if (n < 0) {
            rc = fail("recv", (int)-n);
            goto out;
        }
        if (n == 0)
            break;
        if (n % ALIGN) {    /* the tail, through the page cache */
            int flags = fcntl(fd, F_GETFL);
            if (flags < 0 || fcntl(fd, F_SETFL, flags & ~O_DIRECT) < 0 ||
                pwrite(fd, buf, (size_t)n, offset) != n) {
                rc = fail("pwrite", errno);
                goto out;
            }
            offset += n;
            free_slots[nfree++] = slot;
            continue;
        }
        struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
        lengths[slot] = (size_t)n;
        io_uring_prep_write(sqe, fd, buf, (unsigned)n, (unsigned long long)offset);
        io_uring_sqe_set_data64(sqe, (unsigned long long)slot);
        if ((err = io_uring_submit(ring)) < 0) {
            rc = fail("io_uring_submit", -err);
            goto out;
        }
        inflight++;
        offset += n;
    }
    while (inflight > 0) {
        int slot = reap_write(ring, lengths);
        if (slot < 0) {
            rc = fail("write", -slot);
            goto out;
        }
        inflight--;
    }
    if (fdatasync(fd) < 0)
        rc = fail("fdatasync", errno);
out:
    close(fd);
    return rc;
}

static int usage(void)
{
    fprintf(stderr, "usage: socket-pump listen|connect unix:PATH|tcp:PORT "
                    "(--from FILE [--size N] | --to FILE | --to-null)\n"
                    "       [--tls CERT KEY (listen) | --tls (connect)]\n");
    return 2;
}

static int parse(int argc, char **argv, struct options *o)
{
    if (argc < 4)
        return -1;
    o->listening = strcmp(argv[1], "listen") == 0;
    if (!o->listening && strcmp(argv[1], "connect") != 0)
        return -1;
    o->addr = argv[2];
    o->size = -1;
    for (int i = 3; i < argc; i++) {
        bool has_value = i + 1 < argc;
        if (strcmp(argv[i], "--from") == 0 && has_value)
            o->from = argv[++i];
        else if (strcmp(argv[i], "--to") == 0 && has_value)
            o->to = argv[++i];
        else if (strcmp(argv[i], "--to-null") == 0)
            o->to_null = true;
        else if (strcmp(argv[i], "--size") == 0 && has_value)
            o->size = strtoll(argv[++i], NULL, 0);
        else if (strcmp(argv[i], "--tls") == 0 && o->listening && i + 2 < argc) {
            o->tls = true;
            o->cert = argv[++i];
            o->key = argv[++i];
        } else if (strcmp(argv[i], "--tls") == 0 && !o->listening)
            o->tls = true;
        else
            return -1;
    }
    int directions = (o->from != NULL) + (o->to != NULL) + o->to_null;
    return directions == 1 ? 0 : -1;
}

static int tls_fail(const char *what)
{
    fprintf(stderr, "socket-pump: %s: ", what);
    ERR_print_errors_fp(stderr);
    fputc('\n', stderr);
    return 1;
}

/* The TLS session over c->fd, the handshake done. The client does not
 * verify the server: the pump measures the cipher, not the trust. */
static int start_tls(const struct options *o, struct conn *c, SSL_CTX **ctx_out)
{
    SSL_CTX *ctx = SSL_CTX_new(o->listening ? TLS_server_method() : TLS_client_method());
    if (!ctx)
        return tls_fail("SSL_CTX_new");
    *ctx_out = ctx;
    if (o->listening && (SSL_CTX_use_certificate_chain_file(ctx, o->cert) != 1 ||
                         SSL_CTX_use_PrivateKey_file(ctx, o->key, SSL_FILETYPE_PEM) != 1))
        return tls_fail("certificate or key");
    c->ssl = SSL_new(ctx);
    if (!c->ssl || SSL_set_fd(c->ssl, c->fd) != 1)
        return tls_fail("SSL_new");
    int ok = o->listening ? SSL_accept(c->ssl) : SSL_connect(c->ssl);
    return ok == 1 ? 0 : tls_fail("handshake");
}

/* The sender waits for the receiver to close: its end, not ours, ends
 * the row (the receiver's last write and sync come before it). */
static void wait_for_close(struct conn *c)
{
    char byte;
    if (c->ssl)
        SSL_shutdown(c->ssl);
    else
        shutdown(c->fd, SHUT_WR);
    while (conn_io(c, &byte, 1, true) > 0)
        continue;
}

int main(int argc, char **argv)
{
    struct options o = { 0 };
    if (parse(argc, argv, &o) < 0)
        return usage();
    struct conn c = { .fd = open_connection(&o), .ssl = NULL };
    if (c.fd < 0)
        return fail(o.addr, -c.fd);
    SSL_CTX *ctx = NULL;
    struct io_slab io;
    int rc = o.tls ? start_tls(&o, &c, &ctx) : 0;
    bool with_sendfile = o.from && getenv("PUMP_SENDFILE") && !c.ssl;
    bool with_io = rc == 0 && !o.to_null && !with_sendfile;
    bool io_ready = with_io && io_slab_init(&io) == 0;
    if (with_io && !io_ready)
        rc = 1;
    if (rc == 0) {
        if (with_sendfile)
            rc = pump_sendfile(&c, o.from, o.size);
        else if (o.from)
            rc = pump_direct(&c, &io, o.from, o.size);
        else if (o.to)
            rc = pump_to_file(&c, &io, o.to);
        else
            rc = pump_to_null(&c);
    }
    if (io_ready)
        io_slab_exit(&io);
    if (o.from && rc == 0)
        wait_for_close(&c);
    else if (c.ssl && rc == 0)
        SSL_shutdown(c.ssl);
    SSL_free(c.ssl);
    SSL_CTX_free(ctx);
    close(c.fd);
    if (o.listening && rc == 0)
        for (;;)
            pause();
    return rc;
}
