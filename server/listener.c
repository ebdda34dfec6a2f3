/* SPDX-License-Identifier: MIT */
#include "config.h"

#include "server/listener.h"
#include "common/co-io.h"
#include "common/log.h"
#include "common/unix-socket.h"
#include "server/conn.h"
#include "server/server.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct listener {
    struct sd_server *srv;
    int fd;
    char *text;
    char *unix_path;              /* to unlink at close */
    bool stop;
};

enum { LISTEN_BACKLOG = 1024 };

static int tcp_listen(const struct sd_listen *l, int *out,
                      struct sd_error *err)
{
    int fd, on = 1, ret;

    fd = socket(l->addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return sd_error_set(err, -errno, "%s: socket: %s", l->text,
                            strerror(errno));
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
    /* [::] and 0.0.0.0 may both be asked for: keep them apart. */
    if (l->addr.ss_family == AF_INET6)
        (void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof(on));
    if (bind(fd, (const struct sockaddr *)&l->addr, l->addrlen) < 0 ||
        listen(fd, LISTEN_BACKLOG) < 0) {
        ret = -errno;
        close(fd);
        return sd_error_set(err, ret, "listen on %s: %s", l->text,
                            strerror(-ret));
    }
    *out = fd;
    return 0;
}

int listeners_open(struct sd_server *srv, struct sd_error *err)
{
    const struct sd_server_config *cfg = &srv->settings;
    int ret = 0;

    srv->listeners = calloc(cfg->n_listen ? cfg->n_listen : 1,
                            sizeof(*srv->listeners));
    if (!srv->listeners)
        return sd_error_set(err, -ENOMEM, "out of memory");
    for (size_t i = 0; i < cfg->n_listen && ret == 0; i++) {
        const struct sd_listen *l = &cfg->listen[i];
        struct listener *ln = &srv->listeners[i];

        ln->srv = srv;
        ln->fd = -1;
        ln->text = strdup(l->text);
        if (!ln->text)
            ret = sd_error_set(err, -ENOMEM, "out of memory");
        else if (l->kind == SD_LISTEN_UNIX) {
            /* Who may connect is decided by the directory and this mode;
             * the server's umask is not the place for it. */
            ret = sd_unix_listen(l->path, 0660, &ln->fd, err);
            if (ret == 0 && !(ln->unix_path = strdup(l->path)))
                ret = sd_error_set(err, -ENOMEM, "out of memory");
        } else {
            ret = tcp_listen(l, &ln->fd, err);
        }
        srv->n_listeners = i + 1;
    }
    return ret;
}

static void accept_loop(void *arg)
{
    struct listener *ln = arg;
    struct sd_ring *ring = &ln->srv->control.ring;

    while (!ln->stop) {
        struct sockaddr_storage addr;
        socklen_t addrlen = sizeof(addr);
        struct co_io_op op;
        struct io_uring_sqe *sqe = co_io_prepare(ring, &op, false);
        int fd;

        if (!sqe)
            break;
        io_uring_prep_accept(sqe, ln->fd, (struct sockaddr *)&addr, &addrlen,
                             SOCK_CLOEXEC);
        fd = co_io_wait(ring, &op, NULL);
        if (ln->stop) {
            if (fd >= 0)
                close(fd);
            break;
        }
        if (fd < 0) {
            if (fd == -EMFILE || fd == -ENFILE || fd == -ENOBUFS ||
                fd == -ENOMEM) {
                /* Out of descriptors or memory: back off instead of
                 * spinning; connected clients keep being served. */
                sd_log_error("accept on %s: %s", ln->text, strerror(-fd));
                co_sleep_ns(ring, 100 * 1000 * 1000);
            }
            continue;
        }
        if (conn_accept(ln->srv, fd, (struct sockaddr *)&addr, addrlen,
                        ln->text) < 0) {
            sd_log_error("accept on %s: out of memory", ln->text);
            close(fd);
        }
    }
}

int listeners_start(struct sd_server *srv)
{
    for (size_t i = 0; i < srv->n_listeners; i++) {
        int ret = worker_spawn(accept_loop, &srv->listeners[i]);
        if (ret < 0)
            return ret;
    }
    return 0;
}

void listeners_close(struct sd_server *srv)
{
    for (size_t i = 0; i < srv->n_listeners; i++) {
        struct listener *ln = &srv->listeners[i];

        ln->stop = true;
        if (ln->fd >= 0) {
            /* Wakes the pending accept with an error. */
            (void)shutdown(ln->fd, SHUT_RDWR);
        }
    }
}

void listeners_free(struct sd_server *srv)
{
    for (size_t i = 0; i < srv->n_listeners; i++) {
        struct listener *ln = &srv->listeners[i];
        if (ln->fd >= 0)
            close(ln->fd);
        if (ln->unix_path)
            unlink(ln->unix_path);
        free(ln->unix_path);
        free(ln->text);
    }
    free(srv->listeners);
    srv->listeners = NULL;
    srv->n_listeners = 0;
}
