/* SPDX-License-Identifier: MIT */
#include "config.h"

#include "server/control.h"
#include "common/co-io.h"
#include "common/log.h"
#include "common/unix-socket.h"
#include "server/listener.h"
#include "server/server.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

enum { CONTROL_READ_SIZE = 64 * 1024 };

struct control_conn {
    struct control_conn *next;
    struct sd_server *srv;
    int fd;
    struct jsonrpc_conn *rpc;
    struct co_queue output_wait;
    bool reader_done;
    bool writer_done;
    unsigned id;
};

static struct control_conn *control_conns;
static bool control_stopping;

void control_kick(struct sd_server *srv)
{
    (void)srv;
    for (struct control_conn *cc = control_conns; cc; cc = cc->next)
        co_queue_wake_all(&cc->output_wait);
}

static void unlink_conn(struct control_conn *cc)
{
    for (struct control_conn **pp = &control_conns; *pp; pp = &(*pp)->next) {
        if (*pp == cc) {
            *pp = cc->next;
            return;
        }
    }
}

static void control_writer(void *arg)
{
    struct control_conn *cc = arg;
    struct sd_ring *ring = &cc->srv->control.ring;

    for (;;) {
        const void *p;
        size_t n = jsonrpc_conn_output(cc->rpc, &p);

        if (n == 0) {
            if (cc->reader_done)
                break;
            co_queue_wait(&cc->output_wait);
            continue;
        }
        /* Copy: a deferred reply may append while the send waits. */
        char *copy = malloc(n);
        if (!copy)
            break;
        memcpy(copy, p, n);
        jsonrpc_conn_consume(cc->rpc, n);
        int ret = co_send_all(ring, cc->fd, copy, n, NULL);
        free(copy);
        if (ret < 0)
            break;
    }
    cc->writer_done = true;
    (void)shutdown(cc->fd, SHUT_RDWR);
    co_queue_wake_all(&cc->output_wait);
}

static void control_reader(void *arg)
{
    struct control_conn *cc = arg;
    struct sd_ring *ring = &cc->srv->control.ring;
    char *buf = malloc(CONTROL_READ_SIZE);

    while (buf && !cc->writer_done) {
        int n = co_recv_some(ring, cc->fd, buf, CONTROL_READ_SIZE, 0, NULL);

        if (n < 0)
            break;
        if (jsonrpc_conn_feed(cc->rpc, buf, (size_t)n) < 0)
            break;
        co_queue_wake_all(&cc->output_wait);
    }
    free(buf);
    cc->reader_done = true;
    co_queue_wake_all(&cc->output_wait);
    while (!cc->writer_done)
        co_queue_wait(&cc->output_wait);
    unlink_conn(cc);
    jsonrpc_conn_free(cc->rpc);
    close(cc->fd);
    sd_log_debug("control connection %u closed", cc->id);
    free(cc);
}

static void control_accept_loop(void *arg)
{
    struct sd_server *srv = arg;
    struct sd_ring *ring = &srv->control.ring;
    static unsigned next_id;

    while (!control_stopping) {
        struct co_io_op op;
        struct io_uring_sqe *sqe = co_io_prepare(ring, &op, false);
        struct control_conn *cc;
        unsigned uid = 0;
        int fd;

        if (!sqe)
            break;
        io_uring_prep_accept(sqe, srv->control_fd, NULL, NULL, SOCK_CLOEXEC);
        fd = co_io_wait(ring, &op, NULL);
        if (control_stopping) {
            if (fd >= 0)
                close(fd);
            break;
        }
        if (fd < 0) {
            if (fd != -EINTR && fd != -ECONNABORTED)
                co_sleep_ns(ring, 100 * 1000 * 1000);
            continue;
        }
        if (!sd_unix_peer_allowed(fd, &uid)) {
            sd_log_warn("control socket: uid %u is not allowed", uid);
            close(fd);
            continue;
        }
        cc = calloc(1, sizeof(*cc));
        if (cc)
            cc->rpc = jsonrpc_conn_new(control_methods, srv);
        if (!cc || !cc->rpc) {
            sd_log_error("control socket: out of memory");
            free(cc);
            close(fd);
            continue;
        }
        cc->srv = srv;
        cc->fd = fd;
        cc->id = ++next_id;
        cc->next = control_conns;
        control_conns = cc;
        if (worker_spawn(control_writer, cc) < 0 ||
            worker_spawn(control_reader, cc) < 0) {
            /* Cannot happen without both coroutines; leave the socket
             * open rather than free what one of them may use. */
            sd_log_error("control socket: out of memory starting a session");
        }
    }
}

int control_open(struct sd_server *srv, struct sd_error *err)
{
    srv->control_fd = -1;
    if (!srv->settings.control_socket)
        return 0;
    return sd_unix_listen(srv->settings.control_socket, 0660, &srv->control_fd,
                       err);
}

int control_start(struct sd_server *srv)
{
    if (srv->control_fd < 0)
        return 0;
    return worker_spawn(control_accept_loop, srv);
}

void control_close(struct sd_server *srv)
{
    control_stopping = true;
    if (srv->control_fd >= 0) {
        (void)shutdown(srv->control_fd, SHUT_RDWR);
        for (struct control_conn *cc = control_conns; cc; cc = cc->next)
            (void)shutdown(cc->fd, SHUT_RDWR);
    }
}
