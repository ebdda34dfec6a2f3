/* SPDX-License-Identifier: MIT */
/*
 * The export registry: which export names serve new clients, from which
 * definition, and the counters behind export.stats.
 *
 * A definition (struct export_def) is immutable once published and
 * reference-counted: the registry holds one reference for the live
 * definition of a name, and every connection holds one for the
 * definition it negotiated. A reload or export.add publishes a new
 * definition; connections keep the old one until they go, so a reload
 * never drops a client. Counters live in struct export_stats, shared by
 * every definition of one name, so progress survives a redefinition.
 *
 * Threads: lookups (handshakes, on workers) take the registry lock for
 * a moment; every change happens on the control loop.
 */
#ifndef SENDENSE_SERVER_EXPORTS_H
#define SENDENSE_SERVER_EXPORTS_H

#include "common/error.h"
#include "server/server-config.h"

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

struct sd_server;
struct srv_image;

enum export_op { EXPORT_OP_READ, EXPORT_OP_WRITE, EXPORT_OP_ZERO,
                 EXPORT_OP_TRIM, EXPORT_OP_FLUSH, EXPORT_OP_BLOCK_STATUS,
                 EXPORT_OP_CACHE, EXPORT_OP_COUNT };

/* The last write the image failed: what a backup catalog needs to know
 * that data was lost (a full repository, an I/O error). */
struct export_write_error {
    int err;                        /* positive errno; 0: none yet */
    enum export_op op;
    uint64_t offset, length;
    int64_t time_ms;                /* CLOCK_REALTIME */
    char message[160];
};

struct export_stats {
    atomic_int refs;
    atomic_uint_fast64_t bytes[EXPORT_OP_COUNT];
    atomic_uint_fast64_t ops[EXPORT_OP_COUNT];
    atomic_uint_fast64_t errors;
    atomic_int clients;
    atomic_uint_fast64_t connections_total;
    atomic_int_fast64_t last_activity_ms;   /* CLOCK_REALTIME */
    /* Written only on the error path of a write (export_stats_write_error),
     * so the lock costs the data path nothing. */
    atomic_uint_fast64_t write_errors;
    pthread_mutex_t error_lock;     /* guards last_error */
    struct export_write_error last_error;
};

struct export_def {
    atomic_int refs;
    struct sd_server *srv;
    struct sd_export *cfg;          /* owned */
    struct srv_image *image;        /* owned reference */
    struct export_stats *stats;     /* owned reference */
    uint64_t size;
    uint16_t tflags;                /* NBD transmission flags */
    uint64_t generation;
};

void export_def_ref(struct export_def *def);
/* Any thread; the last reference frees it on the control loop. */
void export_def_unref(struct export_def *def);

void export_stats_count(struct export_stats *st, enum export_op op,
                        uint64_t bytes);
/* Any thread: the image failed a write, zero, trim or flush (also the
 * flush of a writer's disconnect) with err (negative errno); msg says
 * why (NULL: strerror). Counts it and keeps it as the last error. */
void export_stats_write_error(struct export_stats *st, enum export_op op,
                              int err, const char *msg, uint64_t offset,
                              uint64_t length);

/* Any thread: the live definition of name, referenced, or NULL with
 * *why set (not found, or waiting to be reopened). */
struct export_def *registry_lookup(struct sd_server *srv, const char *name,
                                   const char **why);
/* Any thread: call fn for each live export (under the registry lock:
 * fn must be quick and not call back into the registry). */
void registry_for_each(struct sd_server *srv,
                       void (*fn)(void *arg, const struct export_def *def),
                       void *arg);

/* --- control loop only --- */

int registry_init(struct sd_server *srv);
void registry_destroy(struct sd_server *srv);

/* Result of applying one definition. */
enum apply_result {
    APPLY_UNCHANGED,       /* identical definition already live */
    APPLY_ADDED,
    APPLY_CHANGED,
    APPLY_PENDING,         /* waits for clients of an incompatible open */
    APPLY_FAILED,          /* err says why; an older definition stays */
};

/* Make exp (taken over) the definition of its name. */
enum apply_result registry_apply(struct sd_server *srv, struct sd_export *exp,
                                 struct sd_error *err);
/* Stop serving name to new clients (connected ones stay). -ENOENT when
 * there is no such export. */
int registry_remove(struct sd_server *srv, const char *name);

/* Apply a whole load: every good entry, keep old definitions of names
 * whose file is broken, remove names that are gone. Logs what it does;
 * fills *summary (counts and errors) for server.reload. */
int registry_apply_list(struct sd_server *srv, struct sd_export_list *list,
                        json_t **summary);

/* Retry definitions waiting for an image to close. */
void registry_retry_pending(struct sd_server *srv);

/* JSON for export.list / export.get / export.stats. NULL on ENOENT. */
json_t *registry_export_json(struct sd_server *srv, const char *name,
                             bool with_stats);
json_t *registry_list_json(struct sd_server *srv, bool with_stats);
size_t registry_count(struct sd_server *srv);

/* The live definition of name as configured (for idempotent export.add),
 * compared with exp: 0 same, else sd_export_diff bits; -ENOENT none. */
int registry_compare(struct sd_server *srv, const struct sd_export *exp);

#endif
