/* SPDX-License-Identifier: MIT */
/*
 * Long work off sendensed's loop: consolidation, merges, verification
 * and retention run in a thread of their own (a task), so the loop keeps
 * answering progress queries, starting other VMs' jobs and failing idle
 * ones while a chain is rewritten.
 *
 * Holds keep work on one VM from getting in each other's way:
 *  - a job holds its VM from backup.start until it ends (the loop drops
 *    the holds of ended jobs after each turn, sdd_holds_sync_jobs());
 *  - a task that changes chains (delete, prune, retention) holds the VM
 *    alone while it works on it; one that only reads (verify) shares it
 *    with jobs and other readers;
 *  - restore.export and restore.mount read-hold the VM while they add
 *    their export, so they are refused while a task changes its chains,
 *    and a task that starts later finds their export and leaves the
 *    disk alone: an image never goes from under a reader.
 * The table has its own lock because a repository-wide prune takes its
 * VMs one by one from its thread.
 *
 * A task's thread touches nothing of the daemon but the config (fixed
 * for the daemon's life), the holds, and its own arguments; it talks to
 * sendense-nbd over its own connections. It ends by writing its result
 * into the task and poking the tasks' eventfd; the loop then replies to
 * the request (JSON-RPC is single-threaded) and joins the thread.
 */
#ifndef SENDENSE_CATALOG_DAEMON_TASKS_H
#define SENDENSE_CATALOG_DAEMON_TASKS_H

#include "common/error.h"
#include "common/jsonrpc.h"

#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

struct sdd_daemon;
struct sdd_jobs;

enum {
    SDD_TASKS_MAX = 16,             /* tasks running at once */
};

/* --- holds (daemon-holds.c) ------------------------------------------- */

enum sdd_hold_kind {
    SDD_HOLD_JOB,                   /* a backup job writing new points */
    SDD_HOLD_READ,                  /* a task reading completed points */
    SDD_HOLD_WRITE,                 /* a task changing chains: alone */
};

struct sdd_hold {
    char *vm;
    char *what;                     /* "backup.start" or the task's method */
    enum sdd_hold_kind kind;
};

struct sdd_holds {
    pthread_mutex_t lock;
    struct sdd_hold *v;
    size_t n, cap;
};

void sdd_holds_init(struct sdd_holds *h);
void sdd_holds_destroy(struct sdd_holds *h);
/* Hold vm for what; -EBUSY naming the holder when a hold of vm does
 * not go with this one. */
int sdd_hold_take(struct sdd_holds *h, const char *vm, const char *what,
                  enum sdd_hold_kind kind, struct sd_error *err);
/* Let go of one hold of vm for what (none: nothing happens). */
void sdd_hold_drop(struct sdd_holds *h, const char *vm, const char *what);
/* Drop the holds of jobs that no longer run. Loop only. */
void sdd_holds_sync_jobs(struct sdd_holds *h, const struct sdd_jobs *jobs);

/* --- tasks (daemon-tasks.c) ------------------------------------------- */

struct sdd_task;

/* The work, in the task's thread: 0 with *result set, or a negative
 * errno with err set. */
typedef int sdd_task_fn(struct sdd_task *t, json_t **result,
                        struct sd_error *err);
/* Back in the loop once the work is done; the default replies to the
 * request with the result or the error. */
typedef void sdd_task_done_fn(struct sdd_task *t);

struct sdd_task {
    struct sdd_daemon *d;
    const char *method;             /* for logs and holds */
    char *vm;                       /* held for the whole task, or NULL */
    enum sdd_hold_kind hold;
    sdd_task_fn *run;
    sdd_task_done_fn *done;
    void *arg;
    void (*free_arg)(void *arg);
    struct jsonrpc_request *req;    /* NULL: nobody waits for a reply */
    /* Written by the thread before it says it is done. */
    int ret;
    json_t *result;
    struct sd_error err;
    bool finished;
    pthread_t thread;
    struct sdd_task *next;
};

struct sdd_tasks {
    pthread_mutex_t lock;           /* finished, the list */
    int event_fd;                   /* readable: a task finished */
    struct sdd_task *list;
    size_t count;
};

int sdd_tasks_init(struct sdd_tasks *ts, struct sd_error *err);
/* Wait for every task (their replies still go out), then free. */
void sdd_tasks_stop(struct sdd_daemon *d);

/* What sdd_task_start() runs. */
struct sdd_task_spec {
    const char *method;
    const char *vm;                 /* held first; NULL: the task holds */
    enum sdd_hold_kind hold;        /* how: SDD_HOLD_READ or _WRITE */
    sdd_task_fn *run;
    sdd_task_done_fn *done;         /* NULL: reply to req */
    void *arg;                      /* the task owns it from the call on */
    void (*free_arg)(void *arg);
};

/* Start spec in its thread. The task owns spec->arg whatever happens.
 * req may be NULL. On failure (-EBUSY: vm is held, or too many tasks)
 * nothing runs and err says why. */
int sdd_task_start(struct sdd_daemon *d, const struct sdd_task_spec *spec,
                   struct jsonrpc_request *req, struct sd_error *err);
/* For a method handler: start the task and return JSONRPC_PENDING, or
 * reply with the reason it could not start. */
int sdd_task_reply_later(struct sdd_daemon *d,
                         const struct sdd_task_spec *spec,
                         struct jsonrpc_request *req);
/* Reply for and join the tasks that finished. Loop only. */
void sdd_tasks_reap(struct sdd_daemon *d);

#endif
