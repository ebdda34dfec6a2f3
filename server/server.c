/* SPDX-License-Identifier: MIT */
#include "config.h"

#include "server/server.h"
#include "common/co-io.h"
#include "common/log.h"
#include "common/unix-socket.h"
#include "server/conn.h"
#include "server/control.h"
#include "server/exports.h"
#include "server/image-table.h"
#include "server/listener.h"
#include "server/tls.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

enum {
    WORKER_RING_ENTRIES = 1024,
    CONTROL_RING_ENTRIES = 256,
    /* Room for a thousand exports and a thousand connections, with their
     * backing files, before the table must grow again (128 KiB of
     * kernel memory). */
    FD_TABLE_RESERVE = 16384,
};

struct worker *server_pick_image_worker(struct sd_server *srv)
{
    struct worker *best = &srv->workers[0];

    for (unsigned i = 1; i < srv->n_workers; i++)
        if (atomic_load(&srv->workers[i].n_images) <
            atomic_load(&best->n_images))
            best = &srv->workers[i];
    return best;
}

/* Without a config file the server must run from a bare checkout: make
 * the directories its defaults point at. */
static int prepare_default_dirs(struct sd_error *err)
{
    return sd_mkdir_p(SD_DEFAULT_EXPORT_DIR, 0755, err);
}

static const char *pick_config(const char *path)
{
    if (path)
        return path;
    return access(SD_CONFIG_DEFAULT_FILE, F_OK) == 0 ? SD_CONFIG_DEFAULT_FILE
                                                     : NULL;
}

static void log_export_errors(const struct sd_export_list *list)
{
    for (size_t i = 0; i < list->n; i++)
        if (!list->entries[i].export)
            sd_log_error("%s", list->entries[i].error.msg);
}

/* Move the server part of a fresh load into srv (the old one freed). */
static void take_settings(struct sd_server *srv, struct sd_config *cfg)
{
    sd_server_config_clear(&srv->settings);
    srv->settings = cfg->server;
    memset(&cfg->server, 0, sizeof(cfg->server));
}

static bool same_listeners(const struct sd_server_config *a,
                           const struct sd_server_config *b)
{
    if (a->n_listen != b->n_listen)
        return false;
    for (size_t i = 0; i < a->n_listen; i++)
        if (strcmp(a->listen[i].text, b->listen[i].text) != 0)
            return false;
    return true;
}

int server_reload(struct sd_server *srv, json_t **summary,
                  struct sd_error *err)
{
    struct sd_config *cfg = NULL;
    int ret;

    if (srv->systemd)
        sd_notify(0, "RELOADING=1");
    ret = sd_config_load(srv->config_path, &cfg, err);
    if (ret < 0) {
        sd_log_error("reload: %s (everything stays as it was)", err->msg);
        if (srv->systemd)
            sd_notify(0, "READY=1");
        return ret;
    }
    if (!same_listeners(&srv->settings, &cfg->server))
        sd_log_warn("reload: listen addresses changed; they apply at the "
                    "next start");
    /* Exports, paths and limits of the new load apply; listeners, TLS
     * and workers stay as they were started. */
    free(srv->settings.export_dir);
    srv->settings.export_dir = cfg->server.export_dir;
    cfg->server.export_dir = NULL;
    srv->settings.handshake_timeout = cfg->server.handshake_timeout;
    srv->settings.inflight_per_connection = cfg->server.inflight_per_connection;
    sd_log_hold();
    registry_apply_list(srv, &cfg->exports, summary);
    sd_log_release();
    sd_config_free(cfg);
    srv->reloads++;
    sd_log_info("reload %" PRIu64 ": %zu export(s) defined", srv->reloads,
                registry_count(srv));
    if (srv->systemd)
        sd_notify(0, "READY=1");
    return 0;
}

/* --- signals --- */

static void signal_loop(void *arg)
{
    struct sd_server *srv = arg;
    sigset_t set;
    int fd;

    sigemptyset(&set);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    fd = signalfd(-1, &set, SFD_CLOEXEC);
    if (fd < 0) {
        sd_log_error("signalfd: %s", strerror(errno));
        return;
    }
    while (!srv->stopping) {
        struct signalfd_siginfo si;
        struct co_io_op op;
        struct io_uring_sqe *sqe = co_io_prepare(&srv->control.ring, &op, false);

        if (!sqe)
            break;
        io_uring_prep_read(sqe, fd, &si, sizeof(si), 0);
        if (co_io_wait(&srv->control.ring, &op, NULL) != (int)sizeof(si))
            continue;
        if (si.ssi_signo == SIGHUP) {
            struct sd_error err = { 0 };
            json_t *summary = NULL;
            sd_log_info("SIGHUP: reloading");
            if (server_reload(srv, &summary, &err) == 0) {
                char *text = json_dumps(summary, JSON_COMPACT);
                sd_log_info("reload: %s", text ? text : "done");
                free(text);
                json_decref(summary);
            }
        } else {
            sd_log_info("%s: stopping", strsignal((int)si.ssi_signo));
            server_begin_stop(srv);
        }
    }
    close(fd);
}

/* --- stopping --- */

static void all_gone(void *arg)
{
    struct sd_server *srv = arg;

    sd_log_info("all connections closed; closing images");
    registry_destroy(srv);
    image_table_close_all(srv);
    srv->control.stopping = true;
}

void server_begin_stop(struct sd_server *srv)
{
    unsigned n;

    if (srv->stopping)
        return;
    srv->stopping = true;
    if (srv->systemd)
        sd_notify(0, "STOPPING=1");
    listeners_close(srv);
    control_close(srv);
    /* Requests in flight finish and get their replies; then each
     * connection flushes what it wrote and closes. */
    n = conn_close_matching(srv, NULL, UINT64_MAX, true);
    if (n)
        sd_log_info("draining %u connection(s)", n);
    if (conn_wait_gone(srv, NULL, UINT64_MAX, all_gone, srv) < 0)
        all_gone(srv);
}

/* --- start --- */

static void raise_fd_limit(void)
{
    struct rlimit rl;

    /* Hundreds of connections and images with backing chains: take all
     * the descriptors the administrator allows. */
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
    }
}

/* The kernel grows a process's descriptor table by doubling it, and once
 * the process has threads (ours, and io_uring's workers) every growth
 * waits for an RCU grace period: a reload that opened a thousand images
 * took 40-60 ms, of which 20-35 asleep there. Grow the table once, now, while
 * the process is still single-threaded and the growth costs nothing. */
static void reserve_fd_table(void)
{
    struct rlimit rl;
    rlim_t want = FD_TABLE_RESERVE;
    int fd, high;

    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < want)
        want = rl.rlim_cur;
    if (want < 2)
        return;
    fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;                 /* only a slower reload later */
    high = fcntl(fd, F_DUPFD_CLOEXEC, (int)want - 1);
    if (high >= 0)
        close(high);
    close(fd);
}

static unsigned worker_count(const struct sd_server_config *cfg)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);

    if (cfg->workers)
        return cfg->workers;
    return n > 0 ? (unsigned)n : 1;
}

static int init_workers(struct sd_server *srv, struct sd_error *err)
{
    int ret = worker_init(&srv->control, -1, CONTROL_RING_ENTRIES);

    if (ret < 0)
        return sd_error_set(err, ret, "io_uring: %s", strerror(-ret));
    srv->n_workers = worker_count(&srv->settings);
    srv->workers = calloc(srv->n_workers, sizeof(*srv->workers));
    if (!srv->workers)
        return sd_error_set(err, -ENOMEM, "out of memory");
    for (unsigned i = 0; i < srv->n_workers; i++) {
        ret = worker_init(&srv->workers[i], (int)i, WORKER_RING_ENTRIES);
        if (ret < 0) {
            srv->n_workers = i;
            return sd_error_set(err, ret, "io_uring: %s", strerror(-ret));
        }
        srv->workers[i].budget_max =
            srv->settings.inflight_per_process / srv->n_workers;
    }
    return 0;
}

static int start_workers(struct sd_server *srv, struct sd_error *err)
{
    for (unsigned i = 0; i < srv->n_workers; i++) {
        int ret = worker_start(&srv->workers[i]);
        if (ret < 0)
            return sd_error_set(err, ret, "thread: %s", strerror(-ret));
    }
    return 0;
}

static void block_signals(void)
{
    sigset_t set;

    /* Every thread inherits this mask; the signals arrive through the
     * control loop's signalfd. */
    sigemptyset(&set);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
}

static int setup(struct sd_server *srv, struct sd_config *cfg,
                 struct sd_error *err)
{
    const char *tmp = getenv("TMPDIR");
    int ret;

    srv->overlay_dir = strdup(tmp && *tmp ? tmp : "/var/tmp");
    if (!srv->overlay_dir)
        return sd_error_set(err, -ENOMEM, "out of memory");
    ret = init_workers(srv, err);
    if (ret == 0 && srv->settings.tls.mode != SD_TLS_OFF)
        ret = sd_tls_server_new(&srv->settings.tls, &srv->tls, err);
    if (ret == 0)
        ret = listeners_open(srv, err);
    if (ret == 0)
        ret = control_open(srv, err);
    if (ret < 0)
        return ret;
    log_export_errors(&cfg->exports);
    sd_log_hold();
    registry_apply_list(srv, &cfg->exports, NULL);
    sd_log_release();
    ret = start_workers(srv, err);
    if (ret == 0 && (listeners_start(srv) < 0 || control_start(srv) < 0 ||
                     worker_spawn(signal_loop, srv) < 0))
        ret = sd_error_set(err, -ENOMEM, "out of memory");
    return ret;
}

static void teardown(struct sd_server *srv)
{
    for (unsigned i = 0; i < srv->n_workers; i++) {
        if (srv->workers[i].thread)
            worker_stop_and_join(&srv->workers[i]);
    }
    for (unsigned i = 0; i < srv->n_workers; i++)
        worker_destroy(&srv->workers[i]);
    free(srv->workers);
    listeners_free(srv);
    if (srv->control_fd >= 0) {
        close(srv->control_fd);
        if (srv->settings.control_socket)
            unlink(srv->settings.control_socket);
    }
    worker_destroy(&srv->control);
    sd_tls_server_free(srv->tls);
    sd_server_config_clear(&srv->settings);
    free(srv->overlay_dir);
    free(srv->config_path);
    pthread_mutex_destroy(&srv->conns_lock);
}

/* Daemon mode: the parent waits until the child is serving (or says why
 * it cannot), so `sendense-nbd && client` works. */
static int detach(int *ready_fd)
{
    int fds[2];
    pid_t pid;
    char buf[SD_ERROR_MSG_MAX];
    ssize_t n;

    if (pipe(fds) < 0)
        return -errno;
    pid = fork();
    if (pid < 0)
        return -errno;
    if (pid == 0) {
        close(fds[0]);
        setsid();
        *ready_fd = fds[1];
        return 0;
    }
    close(fds[1]);
    n = read(fds[0], buf, sizeof(buf) - 1);
    if (n == 1 && buf[0] == '\0')
        _exit(0);
    if (n > 0) {
        buf[n] = '\0';
        fprintf(stderr, "sendense-nbd: %s\n", buf);
    }
    _exit(1);
}

static void tell_parent(int fd, const char *msg)
{
    if (fd < 0)
        return;
    ssize_t n = write(fd, msg, strlen(msg) + (msg[0] ? 0 : 1));
    (void)n;
    close(fd);
}

int server_run(const char *config_path, bool foreground, struct sd_error *err)
{
    struct sd_server *srv = calloc(1, sizeof(*srv));
    struct sd_config *cfg = NULL;
    int ready_fd = -1, ret;

    if (!srv)
        return sd_error_set(err, -ENOMEM, "out of memory");
    pthread_mutex_init(&srv->conns_lock, NULL);
    registry_init(srv);
    srv->control_fd = -1;
    clock_gettime(CLOCK_MONOTONIC, &srv->started);
    config_path = pick_config(config_path);
    ret = config_path ? 0 : prepare_default_dirs(err);
    if (ret == 0 && config_path && !(srv->config_path = strdup(config_path)))
        ret = sd_error_set(err, -ENOMEM, "out of memory");
    if (ret == 0)
        ret = sd_config_load(config_path, &cfg, err);
    if (ret == 0 && !foreground && (ret = detach(&ready_fd)) < 0)
        sd_error_set(err, ret, "fork: %s", strerror(-ret));
    if (ret == 0) {
        take_settings(srv, cfg);
        raise_fd_limit();
        reserve_fd_table();
        block_signals();
        srv->systemd = getenv("NOTIFY_SOCKET") != NULL;
        if (getenv("SENDENSE_NBD_TEST_DELAY_US"))
            srv->test_delay_us =
                (unsigned)strtoul(getenv("SENDENSE_NBD_TEST_DELAY_US"), NULL, 10);
        /* The fallback of a file that cannot be spliced, made testable. */
        srv->test_splice_fails = getenv("SENDENSE_NBD_TEST_SPLICE_FAILS");
        if (getenv("SENDENSE_NBD_TEST_FINISH_DELAY_US"))
            srv->test_finish_delay_us = (unsigned)strtoul(
                getenv("SENDENSE_NBD_TEST_FINISH_DELAY_US"), NULL, 10);
        ret = setup(srv, cfg, err);
    }
    sd_config_free(cfg);
    if (ret == 0) {
        sd_log_info("sendense-nbd %s serving %zu export(s) with %u worker(s)",
                    PACKAGE_VERSION, registry_count(srv), srv->n_workers);
        for (size_t i = 0; i < srv->settings.n_listen; i++)
            sd_log_info("listening on %s", srv->settings.listen[i].text);
        if (srv->systemd)
            sd_notify(0, "READY=1");
        tell_parent(ready_fd, "");
        ready_fd = -1;
        ret = worker_run(&srv->control);
        if (ret < 0)
            sd_error_set(err, ret, "event loop: %s", strerror(-ret));
    } else {
        tell_parent(ready_fd, err->msg);
        if (srv->workers) {
            registry_destroy(srv);
            image_table_close_all(srv);
        }
    }
    teardown(srv);
    free(srv);
    return ret;
}
