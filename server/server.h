/* SPDX-License-Identifier: MIT */
/*
 * sendense-nbd as a whole: the loops, the listeners, the registry of
 * exports and open images, the connection table, and the life cycle
 * (start, reload, drain and stop).
 */
#ifndef SENDENSE_SERVER_SERVER_H
#define SENDENSE_SERVER_SERVER_H

#include "common/error.h"
#include "server/name-index.h"
#include "server/server-config.h"
#include "server/worker.h"

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

struct conn;
struct export_slot;
struct srv_image;
struct sd_tls_server;
struct listener;
struct conn_waiter;

struct sd_server {
    char *config_path;                /* NULL: built-in defaults */
    struct sd_server_config settings; /* in force (reload keeps them) */

    struct worker control;            /* main thread */
    struct worker *workers;
    unsigned n_workers;
    atomic_uint next_worker;          /* round robin for handshakes */

    /* Images and exports (see image-table.h, exports.h). */
    struct srv_image *images;         /* control loop only */
    struct name_index image_index;    /* "dev:ino" -> srv_image */
    char *overlay_dir;                /* where temporary overlays live */
    pthread_mutex_t registry_lock;
    struct export_slot *slots;        /* under registry_lock */
    size_t n_slots, cap_slots;
    bool any_pending;           /* some slot may hold a pending definition */
    struct name_index slot_index;     /* name -> slots[i], under the lock */
    uint64_t generation;

    /* Connections (see conn.h). */
    pthread_mutex_t conns_lock;
    struct conn *conns;               /* under conns_lock */
    unsigned n_conns;
    uint64_t next_conn_id;
    struct conn_waiter *waiters;      /* control loop only */

    struct listener *listeners;
    size_t n_listeners;
    int control_fd;
    struct sd_tls_server *tls;

    bool stopping;                    /* control loop */
    struct timespec started;
    uint64_t reloads;
    bool systemd;                     /* NOTIFY_SOCKET was set */
    /* Test hook (SENDENSE_NBD_TEST_DELAY_US): each request waits a
     * pseudo-random 0..N us before its I/O, so tests can watch many
     * requests in flight and replies overtaking each other. */
    unsigned test_delay_us;
    bool test_splice_fails;           /* SENDENSE_NBD_TEST_SPLICE_FAILS */
    /* Test hook (SENDENSE_NBD_TEST_FINISH_DELAY_US): a departing
     * connection sleeps this long once it has left the list, so tests
     * can make a stop or a removal act in that moment. */
    unsigned test_finish_delay_us;
};

/* Load, bind, start workers; then serve until SIGTERM/SIGINT. */
int server_run(const char *config_path, bool foreground, struct sd_error *err);

/* Control loop: re-read the config and export directory and apply the
 * difference. *summary describes what changed (may be NULL). */
int server_reload(struct sd_server *srv, json_t **summary,
                  struct sd_error *err);

/* The data worker for a new image (fewest images). */
struct worker *server_pick_image_worker(struct sd_server *srv);

/* Control loop: begin the orderly stop (SIGTERM). */
void server_begin_stop(struct sd_server *srv);

#endif
