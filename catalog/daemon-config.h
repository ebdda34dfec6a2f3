/* SPDX-License-Identifier: MIT */
/*
 * sendensed's configuration: /etc/sendense/sendensed.yaml (YAML). Every
 * key has a default, so a file with one line works, and no file at all
 * (-c not given, default file absent) runs on the defaults:
 *
 *   control_socket: /run/sendense/sendensed.sock
 *   nbd_control_socket: /run/sendense/control.sock   sendense-nbd's
 *   nbd_uri_base: "nbd+unix:///{name}?socket=/run/sendense/nbd.sock"
 *   repositories:
 *     - {name: default, path: /var/lib/sendense/backups}
 *   idle_timeout: 300          seconds without a write before a job fails
 *   keep_failed_images: false
 *
 * A repository entry may also carry its retention policy and how it
 * consolidates (docs/SENDENSED.md, "Chains"):
 *
 *     - {name: main, path: /srv/backups, consolidation: commit,
 *        retention: {keep_last: 14, keep_days: 30}}
 *
 * consolidation is commit (default) or synthetic; keep_last is 1..1e6,
 * keep_days 0..1e6; either may be left out (unset: no limit).
 *   restore_runtime_dir: /run/sendense/restore   restore mounts' folders
 *   restore_nbd_socket: ""     sendense-nbd's unix socket for restore
 *                              mounts; "": the first unix listener
 *                              server.info reports
 *   mount_idle_timeout: 3600   seconds without use before a restore
 *                              mount is released
 *
 * nbd_uri_base is what clients are told: "{name}" is replaced by the
 * export's name (it must appear exactly once). Repository names are
 * catalog names (names.h), unique; paths are absolute and unique. The
 * first repository is the default one.
 */
#ifndef SENDENSE_CATALOG_DAEMON_CONFIG_H
#define SENDENSE_CATALOG_DAEMON_CONFIG_H

#include "catalog/consolidate.h"
#include "catalog/retention.h"
#include "common/error.h"

#include <stdbool.h>
#include <stddef.h>

#define SDD_CONFIG_DEFAULT_FILE "/etc/sendense/sendensed.yaml"
#define SDD_DEFAULT_CONTROL_SOCKET "/run/sendense/sendensed.sock"
#define SDD_DEFAULT_NBD_CONTROL_SOCKET "/run/sendense/control.sock"
#define SDD_DEFAULT_NBD_URI_BASE "nbd+unix:///{name}?socket=/run/sendense/nbd.sock"
#define SDD_DEFAULT_REPOSITORY_NAME "default"
#define SDD_DEFAULT_REPOSITORY_PATH "/var/lib/sendense/backups"
#define SDD_DEFAULT_RESTORE_RUNTIME_DIR "/run/sendense/restore"

enum {
    SDD_DEFAULT_IDLE_TIMEOUT = 300,
    SDD_IDLE_TIMEOUT_MAX = 7 * 24 * 3600,
    SDD_DEFAULT_MOUNT_IDLE_TIMEOUT = 3600,
    SDD_REPOSITORIES_MAX = 64,
    SDD_URI_BASE_MAX = 1024,
};

struct sdd_repository {
    char *name;
    char *path;
    struct cat_retention retention;         /* unset: keep everything */
    enum cat_consolidation consolidation;   /* default commit */
};

struct sdd_config {
    char *control_socket;
    char *nbd_control_socket;
    char *nbd_uri_base;
    struct sdd_repository *repos;   /* at least one */
    size_t nrepos;
    unsigned idle_timeout;          /* seconds, >= 1 */
    bool keep_failed_images;
    char *restore_runtime_dir;      /* absolute */
    char *restore_nbd_socket;       /* NULL: ask sendense-nbd */
    unsigned mount_idle_timeout;    /* seconds, >= 1 */
};

/* Load path (NULL: the built-in defaults only). */
int sdd_config_load(const char *path, struct sdd_config **out,
                    struct sd_error *err);
void sdd_config_free(struct sdd_config *cfg);

/* The repository called name (NULL: the default one), or NULL. */
const struct sdd_repository *sdd_config_repo(const struct sdd_config *cfg,
                                             const char *name);

/* The URI of export name: nbd_uri_base with {name} replaced. NULL when
 * out of memory. */
char *sdd_config_export_uri(const struct sdd_config *cfg, const char *name);

#endif
