/* SPDX-License-Identifier: MIT */
/*
 * sendensed's private map.
 *
 *   sendensed.c        command line
 *   daemon.c           the socket, the poll() loop, signals, the timer
 *   daemon-methods.c   JSON-RPC methods of jobs (backup.start, ...)
 *   daemon-catalog.c   JSON-RPC methods that read the repository
 *   daemon-restore.c   restore exports and mounts (daemon-restore.h);
 *   daemon-restore-methods.c  their JSON-RPC methods
 *   daemon-tasks.h     long operations in threads, holds on VMs
 *   daemon-chains.c    delete, prune, verify, cleanup (as tasks)
 *
 * One poll() loop serves the control socket, SIGTERM/SIGINT (signalfd),
 * the tasks' eventfd and a timer that fails idle jobs. Short methods run
 * to completion inside the loop, calls to sendense-nbd included
 * (sendensed is not on the data path, so a client waits at most for one
 * such call); the long ones over images (consolidation, merge, verify,
 * retention) run as tasks in threads of their own and reply when done.
 */
#ifndef SENDENSE_CATALOG_DAEMON_H
#define SENDENSE_CATALOG_DAEMON_H

#include "catalog/daemon-config.h"
#include "catalog/daemon-restore.h"
#include "catalog/daemon-tasks.h"
#include "catalog/jobs.h"
#include "common/error.h"
#include "common/jsonrpc.h"

#include <stdbool.h>
#include <stddef.h>

enum {
    SDD_CLIENTS_MAX = 64,           /* control connections at once */
    SDD_READ_SIZE = 64 * 1024,
};

struct sdd_client;

struct sdd_daemon {
    struct sdd_config *cfg;
    const char *config_path;        /* NULL: built-in defaults */
    struct sdd_jobs jobs;
    struct sdd_restore restore;
    struct sdd_holds holds;
    struct sdd_tasks tasks;
    int listen_fd;
    int signal_fd;
    struct sdd_client *clients[SDD_CLIENTS_MAX];
    size_t nclients;
    bool stopping;
};

/* daemon.c */
/* Load the config, listen, resolve what a previous run left running. */
int sdd_daemon_open(struct sdd_daemon *d, const char *config_path,
                    struct sd_error *err);
/* Serve until SIGTERM or SIGINT. */
int sdd_daemon_run(struct sdd_daemon *d, struct sd_error *err);
void sdd_daemon_close(struct sdd_daemon *d);

/* daemon-methods.c */
extern const struct jsonrpc_method sdd_methods[];

/* Entries of a method's struct jsonrpc_param table for the params that
 * name one backup: vm, disk, id (required or not) and repository
 * (optional: the default one). Each argument is a const char ** . */
#define SDD_BACKUP_PARAMS(vm, disk, id, id_required, repo)          \
    JSONRPC_PARAM_STRING("vm", true, (vm)),                         \
    JSONRPC_PARAM_STRING("disk", true, (disk)),                     \
    JSONRPC_PARAM_STRING("id", (id_required), (id)),                \
    JSONRPC_PARAM_STRING("repository", false, (repo))

/* daemon-catalog.c: the repository methods, handlers of sdd_methods. */
int sdd_m_backup_list(void *ctx, struct jsonrpc_conn *conn, json_t *params,
                      struct jsonrpc_request *req);
int sdd_m_backup_show(void *ctx, struct jsonrpc_conn *conn, json_t *params,
                      struct jsonrpc_request *req);
int sdd_m_backup_chain(void *ctx, struct jsonrpc_conn *conn, json_t *params,
                       struct jsonrpc_request *req);

/* daemon-restore-methods.c: the restore methods, handlers of sdd_methods. */
int sdd_m_restore_export(void *ctx, struct jsonrpc_conn *conn,
                         json_t *params, struct jsonrpc_request *req);
int sdd_m_restore_unexport(void *ctx, struct jsonrpc_conn *conn,
                           json_t *params, struct jsonrpc_request *req);
int sdd_m_restore_list(void *ctx, struct jsonrpc_conn *conn, json_t *params,
                       struct jsonrpc_request *req);
int sdd_m_restore_mount(void *ctx, struct jsonrpc_conn *conn, json_t *params,
                        struct jsonrpc_request *req);
int sdd_m_restore_umount(void *ctx, struct jsonrpc_conn *conn,
                         json_t *params, struct jsonrpc_request *req);
int sdd_m_restore_ls(void *ctx, struct jsonrpc_conn *conn, json_t *params,
                     struct jsonrpc_request *req);
int sdd_m_restore_stat(void *ctx, struct jsonrpc_conn *conn, json_t *params,
                       struct jsonrpc_request *req);
int sdd_m_restore_extract(void *ctx, struct jsonrpc_conn *conn,
                          json_t *params, struct jsonrpc_request *req);

/* daemon-chains.c: methods that change chains, and their recovery. */
int sdd_m_backup_delete(void *ctx, struct jsonrpc_conn *conn, json_t *params,
                        struct jsonrpc_request *req);
int sdd_m_backup_prune(void *ctx, struct jsonrpc_conn *conn, json_t *params,
                       struct jsonrpc_request *req);
int sdd_m_backup_verify(void *ctx, struct jsonrpc_conn *conn, json_t *params,
                        struct jsonrpc_request *req);
int sdd_m_repo_cleanup(void *ctx, struct jsonrpc_conn *conn, json_t *params,
                       struct jsonrpc_request *req);
/* The retention policy of job's VM (its own rules over the
 * repository's), once job completed; what it did or could not do is
 * logged. */
void sdd_chains_after_backup(struct sdd_daemon *d, const struct sdd_job *job);
/* Finish or roll back every consolidation a killed daemon left. */
int sdd_chains_recover(struct sdd_daemon *d, struct sd_error *err);

/* daemon-vm.c: vm.retention, a VM's own retention rules. */
int sdd_m_vm_retention(void *ctx, struct jsonrpc_conn *conn, json_t *params,
                       struct jsonrpc_request *req);

#endif
