/* SPDX-License-Identifier: MIT */
/*
 * sendensed's loop: a unix socket speaking JSON-RPC 2.0 (one request per
 * line, common/jsonrpc.h), signals through a signalfd, and a timer that
 * fails jobs whose exports saw no write for idle_timeout seconds.
 *
 * Flow control per client: while a client has replies not yet sent, we
 * wait for POLLOUT instead of reading more, so a client that never
 * reads its replies cannot make us queue without bound (the jsonrpc
 * conn caps the rest).
 */
#include "config.h"

#include "catalog/daemon.h"
#include "common/log.h"
#include "common/unix-socket.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

struct sdd_client {
    int fd;
    struct jsonrpc_conn *rpc;
    bool eof;                       /* peer done sending: flush, close */
    unsigned id;
};

/* --- the listening socket --------------------------------------------- */

/* Non-blocking: the loop polls it. */
static int listen_unix(const char *path, int *out, struct sd_error *err)
{
    int ret = sd_unix_listen(path, 0660, out, err);

    if (ret == 0 && fcntl(*out, F_SETFL, O_NONBLOCK) < 0) {
        ret = sd_error_set(err, -errno, "%s: %s", path, strerror(errno));
        close(*out);
        *out = -1;
    }
    return ret;
}

static int open_signalfd(int *out, struct sd_error *err)
{
    sigset_t set;
    int fd;

    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    if (sigprocmask(SIG_BLOCK, &set, NULL) < 0)
        return sd_error_set(err, -errno, "sigprocmask: %s", strerror(errno));
    fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
    if (fd < 0)
        return sd_error_set(err, -errno, "signalfd: %s", strerror(errno));
    *out = fd;
    return 0;
}

/* --- recovery --------------------------------------------------------- */

static void log_recovered(void *arg, const struct sdd_recovered *r)
{
    (void)arg;
    if (r->export_ret < 0 && r->export_ret != -ENOENT)
        sd_log_warn("recovery: %s/%s/%s: export %s could not be removed",
                    r->vm, r->disk, r->id, r->export_name);
    if (r->problem)
        sd_log_error("recovery: %s/%s/%s: %s", r->vm, r->disk, r->id,
                     r->problem->msg);
    else
        sd_log_info("recovery: %s/%s/%s was running when sendensed "
                    "stopped: marked failed", r->vm, r->disk, r->id);
}

static int recover_all(struct sdd_daemon *d, struct sd_error *err)
{
    for (size_t i = 0; i < d->cfg->nrepos; i++) {
        int ret = sdd_jobs_recover(&d->jobs, &d->cfg->repos[i],
                                   log_recovered, d, err);
        if (ret < 0) {
            sd_error_prefix(err, "repository %s", d->cfg->repos[i].name);
            return ret;
        }
    }
    return 0;
}

int sdd_daemon_open(struct sdd_daemon *d, const char *config_path,
                    struct sd_error *err)
{
    int ret;

    *d = (struct sdd_daemon){ .listen_fd = -1, .signal_fd = -1,
                              .config_path = config_path };
    /* First, while the process surely has one thread (restore-ns.c). */
    sdd_restore_ns(&d->restore);
    sdd_holds_init(&d->holds);
    ret = sdd_tasks_init(&d->tasks, err);
    if (ret == 0)
        ret = sdd_config_load(config_path, &d->cfg, err);
    if (ret < 0)
        return ret;
    sdd_jobs_init(&d->jobs, d->cfg);
    ret = open_signalfd(&d->signal_fd, err);
    /* Listen first: that is what finds another sendensed on the same
     * socket, whose running jobs recovery must not touch. Requests wait
     * in the backlog until recovery is done. */
    if (ret == 0)
        ret = listen_unix(d->cfg->control_socket, &d->listen_fd, err);
    if (ret == 0)
        ret = recover_all(d, err);
    if (ret == 0)
        ret = sdd_chains_recover(d, err);
    if (ret == 0)
        sdd_restore_start(&d->restore, d->cfg);
    return ret;
}

/* --- clients ---------------------------------------------------------- */

static void client_close(struct sdd_daemon *d, size_t i)
{
    struct sdd_client *c = d->clients[i];

    jsonrpc_conn_free(c->rpc);
    close(c->fd);
    free(c);
    d->clients[i] = d->clients[--d->nclients];
}

static void accept_client(struct sdd_daemon *d)
{
    static unsigned next_id;
    struct sdd_client *c;
    unsigned uid = 0;
    int fd = accept4(d->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

    if (fd < 0)
        return;                     /* EAGAIN, or a peer already gone */
    if (!sd_unix_peer_allowed(fd, &uid)) {
        sd_log_warn("control socket: uid %u is not allowed", uid);
        close(fd);
        return;
    }
    if (d->nclients == SDD_CLIENTS_MAX) {
        sd_log_warn("control socket: %d clients already, refusing one",
                    SDD_CLIENTS_MAX);
        close(fd);
        return;
    }
    c = calloc(1, sizeof(*c));
    if (c)
        c->rpc = jsonrpc_conn_new(sdd_methods, d);
    if (!c || !c->rpc) {
        sd_log_error("control socket: out of memory");
        free(c);
        close(fd);
        return;
    }
    c->fd = fd;
    c->id = ++next_id;
    d->clients[d->nclients++] = c;
}

/* Send what we can without blocking. <0 when the peer is gone. */
static int client_flush(struct sdd_client *c)
{
    const void *p;
    size_t n;

    while ((n = jsonrpc_conn_output(c->rpc, &p)) > 0) {
        ssize_t sent = send(c->fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);

        if (sent < 0)
            return errno == EAGAIN || errno == EINTR ? 0 : -errno;
        jsonrpc_conn_consume(c->rpc, (size_t)sent);
    }
    return 0;
}

static int client_read(struct sdd_client *c, char *buf)
{
    ssize_t n = recv(c->fd, buf, SDD_READ_SIZE, MSG_DONTWAIT);

    if (n < 0)
        return errno == EAGAIN || errno == EINTR ? 0 : -errno;
    if (n == 0) {
        c->eof = true;
        return 0;
    }
    return jsonrpc_conn_feed(c->rpc, buf, (size_t)n);
}

/* Serve one client's poll events; false when it is to be closed. */
static bool client_serve(struct sdd_client *c, short revents, char *buf)
{
    const void *p;

    if ((revents & POLLIN) && client_read(c, buf) < 0)
        return false;
    if (client_flush(c) < 0)
        return false;
    if (revents & (POLLERR | POLLNVAL))
        return false;
    if ((revents & POLLHUP) && !(revents & POLLIN))
        return false;
    return !(c->eof && jsonrpc_conn_output(c->rpc, &p) == 0);
}

/* --- the loop --------------------------------------------------------- */

static void handle_signals(struct sdd_daemon *d)
{
    struct signalfd_siginfo si;

    while (read(d->signal_fd, &si, sizeof(si)) == sizeof(si)) {
        sd_log_info("signal %u: stopping", si.ssi_signo);
        d->stopping = true;
    }
}

/* How often idle jobs are looked for: often enough that a job fails
 * within a quarter of idle_timeout of going idle, at most every 5 s. */
static int tick_ms(const struct sdd_daemon *d)
{
    unsigned s = d->cfg->idle_timeout / 4;

    return (int)(s < 1 ? 1 : s > 5 ? 5 : s) * 1000;
}

static void fail_idle_jobs(struct sdd_daemon *d)
{
    struct timespec now;
    struct sdd_job *job;

    clock_gettime(CLOCK_MONOTONIC, &now);
    while ((job = sdd_jobs_find_idle(&d->jobs, &now))) {
        char reason[64];
        struct sd_error err = { 0 };

        snprintf(reason, sizeof(reason), "no write activity for %u s",
                 d->cfg->idle_timeout);
        if (sdd_jobs_fail(&d->jobs, job, reason, &err) < 0) {
            /* Left running (sendense-nbd unreachable): next tick. */
            sd_log_error("job %s: %s, but failing it failed: %s", job->id,
                         reason, err.msg);
            return;
        }
        sd_log_warn("job %s (VM %s): failed: %s", job->id, job->vm, reason);
    }
}

/* The daemon's own fds first, then one per client. */
enum { FD_LISTEN, FD_SIGNAL, FD_TASKS, FD_CLIENTS };

static size_t fill_pollfds(const struct sdd_daemon *d, struct pollfd *fds)
{
    fds[FD_LISTEN] = (struct pollfd){ .fd = d->listen_fd, .events = POLLIN };
    fds[FD_SIGNAL] = (struct pollfd){ .fd = d->signal_fd, .events = POLLIN };
    fds[FD_TASKS] = (struct pollfd){ .fd = d->tasks.event_fd,
                                     .events = POLLIN };
    for (size_t i = 0; i < d->nclients; i++) {
        const void *p;
        struct sdd_client *c = d->clients[i];
        bool pending = jsonrpc_conn_output(c->rpc, &p) > 0;

        fds[FD_CLIENTS + i] = (struct pollfd){
            .fd = c->fd,
            .events = pending ? POLLOUT : c->eof ? 0 : POLLIN,
        };
    }
    return FD_CLIENTS + d->nclients;
}

static void serve_clients(struct sdd_daemon *d, const struct pollfd *fds,
                          size_t n, char *buf)
{
    /* Backwards: client_close() moves the last client into slot i. */
    for (size_t i = n; i-- > 0;)
        if (fds[i].revents && !client_serve(d->clients[i], fds[i].revents,
                                            buf))
            client_close(d, i);
}

int sdd_daemon_run(struct sdd_daemon *d, struct sd_error *err)
{
    struct pollfd fds[FD_CLIENTS + SDD_CLIENTS_MAX];
    struct timespec next, now;
    char *buf = malloc(SDD_READ_SIZE);
    int ret = 0;

    if (!buf)
        return sd_error_set(err, -ENOMEM, "out of memory");
    clock_gettime(CLOCK_MONOTONIC, &next);
    while (!d->stopping) {
        size_t nfds = fill_pollfds(d, fds), nclients = d->nclients;
        int64_t wait_ms;

        clock_gettime(CLOCK_MONOTONIC, &now);
        wait_ms = (next.tv_sec - now.tv_sec) * 1000 +
                  (next.tv_nsec - now.tv_nsec) / 1000000;
        if (poll(fds, nfds, wait_ms < 0 ? 0 : (int)wait_ms) < 0 &&
            errno != EINTR) {
            ret = sd_error_set(err, -errno, "poll: %s", strerror(errno));
            break;
        }
        if (fds[FD_SIGNAL].revents)
            handle_signals(d);
        if (fds[FD_TASKS].revents)
            sdd_tasks_reap(d);
        serve_clients(d, fds + FD_CLIENTS, nclients, buf);
        if (fds[FD_LISTEN].revents)
            accept_client(d);
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec > next.tv_sec ||
            (now.tv_sec == next.tv_sec && now.tv_nsec >= next.tv_nsec)) {
            fail_idle_jobs(d);
            sdd_restore_expire(&d->restore);
            next = now;
            next.tv_sec += tick_ms(d) / 1000;
        }
        sdd_holds_sync_jobs(&d->holds, &d->jobs);
    }
    free(buf);
    return ret;
}

void sdd_daemon_close(struct sdd_daemon *d)
{
    sdd_tasks_stop(d);
    /* The last tasks' replies, as far as the peers take them now. */
    for (size_t i = 0; i < d->nclients; i++)
        (void)client_flush(d->clients[i]);
    while (d->nclients)
        client_close(d, d->nclients - 1);
    if (d->listen_fd >= 0) {
        close(d->listen_fd);
        if (d->cfg)
            (void)unlink(d->cfg->control_socket);
    }
    if (d->signal_fd >= 0)
        close(d->signal_fd);
    sdd_restore_stop(&d->restore);
    sdd_jobs_clear(&d->jobs);
    sdd_holds_destroy(&d->holds);
    sdd_config_free(d->cfg);
    d->cfg = NULL;
}
