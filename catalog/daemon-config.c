/* SPDX-License-Identifier: MIT */
/*
 * sendensed's YAML configuration. The YAML tree and its typed readers are
 * sendense-nbd's (server/config-yaml-tree.h), so both daemons accept and
 * refuse the same YAML the same way (no anchors, no aliases, line numbers
 * in every message).
 */
#include "config.h"

#include "catalog/daemon-config.h"
#include "catalog/names.h"
#include "server/config-internal.h"
#include "server/config-yaml-tree.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static int set_control_socket(const char *path, const struct sd_ynode *v,
                              void *obj, struct sd_error *err)
{
    struct sdd_config *cfg = obj;

    return sd_ynode_string(path, v, "control_socket", &cfg->control_socket,
                           err);
}

static int set_nbd_control_socket(const char *path, const struct sd_ynode *v,
                                  void *obj, struct sd_error *err)
{
    struct sdd_config *cfg = obj;

    return sd_ynode_string(path, v, "nbd_control_socket",
                           &cfg->nbd_control_socket, err);
}

static int set_nbd_uri_base(const char *path, const struct sd_ynode *v,
                            void *obj, struct sd_error *err)
{
    struct sdd_config *cfg = obj;
    const char *first, *placeholder = "{name}";
    int ret = sd_ynode_string(path, v, "nbd_uri_base", &cfg->nbd_uri_base,
                              err);

    if (ret < 0)
        return ret;
    first = strstr(cfg->nbd_uri_base, placeholder);
    if (!first || strstr(first + 1, placeholder) ||
        strlen(cfg->nbd_uri_base) > SDD_URI_BASE_MAX)
        return sd_ytree_error(path, v, err, -EINVAL, "nbd_uri_base: must "
                              "contain {name} exactly once (and be at most "
                              "%d bytes)", SDD_URI_BASE_MAX);
    return 0;
}

/* A whole number of seconds, 1..SDD_IDLE_TIMEOUT_MAX. */
static int set_seconds(const char *path, const struct sd_ynode *v,
                       const char *key, unsigned *out, struct sd_error *err)
{
    char *end = NULL;
    unsigned long n;

    if (v->kind != SD_YSCALAR || !v->plain || v->value[0] < '0' ||
        v->value[0] > '9')
        goto out_invalid;
    errno = 0;
    n = strtoul(v->value, &end, 10);
    if (errno || *end || n < 1 || n > SDD_IDLE_TIMEOUT_MAX)
        goto out_invalid;
    *out = (unsigned)n;
    return 0;

out_invalid:
    return sd_ytree_error(path, v, err, -EINVAL, "%s: expected seconds, "
                          "1..%d", key, SDD_IDLE_TIMEOUT_MAX);
}

static int set_idle_timeout(const char *path, const struct sd_ynode *v,
                            void *obj, struct sd_error *err)
{
    struct sdd_config *cfg = obj;

    return set_seconds(path, v, "idle_timeout", &cfg->idle_timeout, err);
}

static int set_mount_idle_timeout(const char *path, const struct sd_ynode *v,
                                  void *obj, struct sd_error *err)
{
    struct sdd_config *cfg = obj;

    return set_seconds(path, v, "mount_idle_timeout",
                       &cfg->mount_idle_timeout, err);
}

static int set_restore_runtime_dir(const char *path,
                                   const struct sd_ynode *v, void *obj,
                                   struct sd_error *err)
{
    struct sdd_config *cfg = obj;
    int ret = sd_ynode_string(path, v, "restore_runtime_dir",
                              &cfg->restore_runtime_dir, err);

    if (ret == 0 && cfg->restore_runtime_dir[0] != '/')
        return sd_ytree_error(path, v, err, -EINVAL, "restore_runtime_dir: "
                              "must be absolute");
    return ret;
}

/* "" keeps the default: ask sendense-nbd for its unix socket. */
static int set_restore_nbd_socket(const char *path, const struct sd_ynode *v,
                                  void *obj, struct sd_error *err)
{
    struct sdd_config *cfg = obj;
    int ret = sd_ynode_string(path, v, "restore_nbd_socket",
                              &cfg->restore_nbd_socket, err);

    if (ret == 0 && cfg->restore_nbd_socket[0] == '\0') {
        free(cfg->restore_nbd_socket);
        cfg->restore_nbd_socket = NULL;
    } else if (ret == 0 && cfg->restore_nbd_socket[0] != '/') {
        return sd_ytree_error(path, v, err, -EINVAL, "restore_nbd_socket: "
                              "must be absolute");
    }
    return ret;
}

static int set_keep_failed(const char *path, const struct sd_ynode *v,
                           void *obj, struct sd_error *err)
{
    struct sdd_config *cfg = obj;

    return sd_ynode_bool(path, v, "keep_failed_images",
                         &cfg->keep_failed_images, err);
}

/* --- repositories ----------------------------------------------------- */

static int set_repo_name(const char *path, const struct sd_ynode *v,
                         void *obj, struct sd_error *err)
{
    struct sdd_repository *r = obj;
    struct sd_error e = { 0 };
    int ret = sd_ynode_string(path, v, "name", &r->name, err);

    if (ret == 0 && cat_name_check("repository name", r->name, &e) < 0)
        return sd_ytree_error(path, v, err, -EINVAL, "%s", e.msg);
    return ret;
}

static int set_repo_path(const char *path, const struct sd_ynode *v,
                         void *obj, struct sd_error *err)
{
    struct sdd_repository *r = obj;
    int ret = sd_ynode_string(path, v, "path", &r->path, err);

    if (ret == 0 && r->path[0] != '/')
        return sd_ytree_error(path, v, err, -EINVAL, "path: must be "
                              "absolute");
    return ret;
}

static int repo_unique(const struct sdd_config *cfg, const char *path,
                       const struct sd_ynode *at, struct sd_error *err)
{
    const struct sdd_repository *last = &cfg->repos[cfg->nrepos - 1];

    for (size_t i = 0; i + 1 < cfg->nrepos; i++) {
        if (strcmp(cfg->repos[i].name, last->name) == 0)
            return sd_ytree_error(path, at, err, -EINVAL, "repository "
                                  "\"%s\" is listed twice", last->name);
        if (strcmp(cfg->repos[i].path, last->path) == 0)
            return sd_ytree_error(path, at, err, -EINVAL, "repositories "
                                  "\"%s\" and \"%s\" share a path",
                                  cfg->repos[i].name, last->name);
    }
    return 0;
}

static int set_keep_count(const char *path, const struct sd_ynode *v,
                          const char *what, int64_t min, int64_t *out,
                          struct sd_error *err)
{
    char *end = NULL;
    long long n;

    if (v->kind != SD_YSCALAR || !v->plain || v->value[0] < '0' ||
        v->value[0] > '9')
        goto out_invalid;
    errno = 0;
    n = strtoll(v->value, &end, 10);
    if (errno || *end || n < min || n > CAT_KEEP_MAX)
        goto out_invalid;
    *out = n;
    return 0;

out_invalid:
    return sd_ytree_error(path, v, err, -EINVAL, "%s: expected a number, "
                          "%lld..%d", what, (long long)min, CAT_KEEP_MAX);
}

static int set_keep_last(const char *path, const struct sd_ynode *v,
                         void *obj, struct sd_error *err)
{
    struct cat_retention *r = obj;

    return set_keep_count(path, v, "keep_last", 1, &r->keep_last, err);
}

static int set_keep_days(const char *path, const struct sd_ynode *v,
                         void *obj, struct sd_error *err)
{
    struct cat_retention *r = obj;

    return set_keep_count(path, v, "keep_days", 0, &r->keep_days, err);
}

static int set_repo_retention(const char *path, const struct sd_ynode *v,
                              void *obj, struct sd_error *err)
{
    static const struct sd_yfield fields[] = {
        { "keep_last", set_keep_last },
        { "keep_days", set_keep_days },
    };
    struct sdd_repository *r = obj;
    unsigned lines[2];

    if (v->kind != SD_YMAP)
        return sd_ytree_error(path, v, err, -EINVAL, "retention: expected "
                              "{keep_last: N, keep_days: D}");
    return sd_ymap_walk(path, v, fields, 2, &r->retention, lines, err);
}

static int set_repo_consolidation(const char *path, const struct sd_ynode *v,
                                  void *obj, struct sd_error *err)
{
    static const char *const names[] = { "commit", "synthetic" };
    struct sdd_repository *r = obj;
    int mode = 0;
    int ret = sd_ynode_enum(path, v, "consolidation", names, 2, &mode, err);

    if (ret == 0)
        r->consolidation = (enum cat_consolidation)mode;
    return ret;
}

static int add_repo(struct sdd_config *cfg, const char *path,
                    const struct sd_ynode *item, struct sd_error *err)
{
    static const struct sd_yfield fields[] = {
        { "name", set_repo_name },
        { "path", set_repo_path },
        { "retention", set_repo_retention },
        { "consolidation", set_repo_consolidation },
    };
    unsigned lines[4];
    struct sdd_repository *r = &cfg->repos[cfg->nrepos++];
    int ret;

    r->retention = (struct cat_retention){ CAT_KEEP_UNSET, CAT_KEEP_UNSET };
    ret = sd_ymap_walk(path, item, fields, 4, r, lines, err);

    if (ret < 0)
        return ret;
    if (!r->name || !r->path)
        return sd_ytree_error(path, item, err, -EINVAL, "a repository needs "
                              "a name and a path");
    return repo_unique(cfg, path, item, err);
}

static void repos_clear(struct sdd_config *cfg)
{
    for (size_t i = 0; i < cfg->nrepos; i++) {
        free(cfg->repos[i].name);
        free(cfg->repos[i].path);
    }
    free(cfg->repos);
    cfg->repos = NULL;
    cfg->nrepos = 0;
}

static int set_repositories(const char *path, const struct sd_ynode *v,
                            void *obj, struct sd_error *err)
{
    struct sdd_config *cfg = obj;
    int ret = 0;

    if (v->kind != SD_YSEQ || v->n == 0 || v->n > SDD_REPOSITORIES_MAX)
        return sd_ytree_error(path, v, err, -EINVAL, "repositories: expected"
                              " a list of 1..%d {name, path} entries",
                              SDD_REPOSITORIES_MAX);
    repos_clear(cfg);
    cfg->repos = calloc(v->n, sizeof(*cfg->repos));
    if (!cfg->repos)
        return sd_error_set(err, -ENOMEM, "out of memory");
    for (size_t i = 0; i < v->n && ret == 0; i++)
        ret = add_repo(cfg, path, v->items[i], err);
    return ret;
}

/* --- loading ---------------------------------------------------------- */

static int set_defaults(struct sdd_config *cfg)
{
    cfg->control_socket = strdup(SDD_DEFAULT_CONTROL_SOCKET);
    cfg->nbd_control_socket = strdup(SDD_DEFAULT_NBD_CONTROL_SOCKET);
    cfg->nbd_uri_base = strdup(SDD_DEFAULT_NBD_URI_BASE);
    cfg->repos = calloc(1, sizeof(*cfg->repos));
    if (cfg->repos) {
        cfg->nrepos = 1;
        cfg->repos[0].name = strdup(SDD_DEFAULT_REPOSITORY_NAME);
        cfg->repos[0].path = strdup(SDD_DEFAULT_REPOSITORY_PATH);
        cfg->repos[0].retention = (struct cat_retention){ CAT_KEEP_UNSET,
                                                          CAT_KEEP_UNSET };
    }
    cfg->idle_timeout = SDD_DEFAULT_IDLE_TIMEOUT;
    cfg->mount_idle_timeout = SDD_DEFAULT_MOUNT_IDLE_TIMEOUT;
    cfg->restore_runtime_dir = strdup(SDD_DEFAULT_RESTORE_RUNTIME_DIR);
    if (!cfg->control_socket || !cfg->nbd_control_socket ||
        !cfg->nbd_uri_base || !cfg->repos || !cfg->repos[0].name ||
        !cfg->repos[0].path || !cfg->restore_runtime_dir)
        return -ENOMEM;
    return 0;
}

static int load_file(struct sdd_config *cfg, const char *path,
                     struct sd_error *err)
{
    static const struct sd_yfield fields[] = {
        { "control_socket", set_control_socket },
        { "nbd_control_socket", set_nbd_control_socket },
        { "nbd_uri_base", set_nbd_uri_base },
        { "repositories", set_repositories },
        { "idle_timeout", set_idle_timeout },
        { "keep_failed_images", set_keep_failed },
        { "restore_runtime_dir", set_restore_runtime_dir },
        { "restore_nbd_socket", set_restore_nbd_socket },
        { "mount_idle_timeout", set_mount_idle_timeout },
    };
    unsigned lines[sizeof(fields) / sizeof(fields[0])];
    struct sd_ynode *root = NULL;
    char *data = NULL;
    size_t len = 0;
    int ret = sd_config_read_file(path, &data, &len, err);

    if (ret == 0)
        ret = sd_ytree_parse(path, data, len, &root, err);
    if (ret == 0 && root)
        ret = sd_ymap_walk(path, root, fields,
                           sizeof(fields) / sizeof(fields[0]), cfg, lines,
                           err);
    sd_ytree_free(root);
    free(data);
    return ret;
}

int sdd_config_load(const char *path, struct sdd_config **out,
                    struct sd_error *err)
{
    struct sdd_config *cfg = calloc(1, sizeof(*cfg));
    int ret;

    if (!cfg)
        return sd_error_set(err, -ENOMEM, "out of memory");
    ret = set_defaults(cfg);
    if (ret < 0)
        sd_error_set(err, ret, "out of memory");
    else if (path)
        ret = load_file(cfg, path, err);
    if (ret < 0) {
        sdd_config_free(cfg);
        return ret;
    }
    *out = cfg;
    return 0;
}

void sdd_config_free(struct sdd_config *cfg)
{
    if (!cfg)
        return;
    free(cfg->control_socket);
    free(cfg->nbd_control_socket);
    free(cfg->nbd_uri_base);
    free(cfg->restore_runtime_dir);
    free(cfg->restore_nbd_socket);
    repos_clear(cfg);
    free(cfg);
}

const struct sdd_repository *sdd_config_repo(const struct sdd_config *cfg,
                                             const char *name)
{
    if (!name)
        return &cfg->repos[0];
    for (size_t i = 0; i < cfg->nrepos; i++)
        if (strcmp(cfg->repos[i].name, name) == 0)
            return &cfg->repos[i];
    return NULL;
}

char *sdd_config_export_uri(const struct sdd_config *cfg, const char *name)
{
    const char *at = strstr(cfg->nbd_uri_base, "{name}");
    char *uri = NULL;

    if (!at)
        return NULL;
    if (asprintf(&uri, "%.*s%s%s", (int)(at - cfg->nbd_uri_base),
                 cfg->nbd_uri_base, name, at + strlen("{name}")) < 0)
        return NULL;
    return uri;
}
