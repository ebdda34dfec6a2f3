/* SPDX-License-Identifier: MIT */
/*
 * The YAML files: the main file and one export per file. Each key is a
 * row of a field table with its reader; the readers check a value as
 * soon as it has its type, so an error names the line of the value.
 * The key tables are documented in server/server-config.h.
 */
#include "config.h"

#include "server/config-internal.h"
#include "server/config-yaml-tree.h"

#include <errno.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* Put "path:LINE" in front of a message from a check without position. */
static int at_line(const char *path, const struct sd_ynode *n,
                   struct sd_error *err, int ret)
{
    sd_error_prefix(err, "%s:%u", path, n->line);
    return ret;
}

static int read_path(const char *path, const struct sd_ynode *n,
                     const char *what, char **out, struct sd_error *err)
{
    char *s = NULL;
    int ret = sd_ynode_string(path, n, what, &s, err);

    if (ret < 0)
        return ret;
    ret = sd_config_path_check(what, s, err);
    if (ret < 0) {
        free(s);
        return at_line(path, n, err, ret);
    }
    free(*out);
    *out = s;
    return 0;
}

static int read_uint(const char *path, const struct sd_ynode *n,
                     const char *what, unsigned min, unsigned max,
                     unsigned *out, struct sd_error *err)
{
    if (n->kind != SD_YSCALAR || !n->plain ||
        sd_config_parse_uint(n->value, max, out) < 0 || *out < min)
        return sd_ytree_error(path, n, err, -EINVAL,
                              "%s: expected a whole number %u..%u", what,
                              min, max);
    return 0;
}

/* --- main file --- */

static int listen_item(const char *path, const struct sd_ynode *item,
                       struct sd_listen *out, struct sd_error *err)
{
    const struct sd_ynode *key, *val;
    int ret;

    if (item->kind != SD_YMAP || item->n != 2 ||
        item->items[0]->kind != SD_YSCALAR ||
        item->items[1]->kind != SD_YSCALAR)
        return sd_ytree_error(path, item, err, -EINVAL,
                              "listen: each entry is one \"tcp: HOST:PORT\""
                              " or \"unix: PATH\"");
    key = item->items[0];
    val = item->items[1];
    if (strcmp(key->value, "tcp") == 0)
        ret = sd_listen_parse_tcp(val->value, out, err);
    else if (strcmp(key->value, "unix") == 0)
        ret = sd_listen_set_unix(val->value, out, err);
    else
        return sd_ytree_error(path, key, err, -EINVAL,
                              "listen: unknown key \"%.64s\" (tcp or unix)",
                              key->value);
    return ret < 0 ? at_line(path, val, err, ret) : 0;
}

static int set_listen(const char *path, const struct sd_ynode *n, void *obj,
                      struct sd_error *err)
{
    struct sd_server_config *cfg = obj;
    struct sd_listen *list;
    size_t i, count = 0;
    int ret = 0;

    if (n->kind != SD_YSEQ)
        return sd_ytree_error(path, n, err, -EINVAL,
                              "listen: expected a list");
    if (n->n > SD_CONFIG_LIST_MAX)
        return sd_ytree_error(path, n, err, -E2BIG,
                              "listen: more than %u entries",
                              SD_CONFIG_LIST_MAX);
    list = calloc(n->n ? n->n : 1, sizeof(*list));
    if (!list)
        return sd_error_set(err, -ENOMEM, "%s: out of memory", path);
    for (i = 0; i < n->n && ret == 0; i++) {
        ret = listen_item(path, n->items[i], &list[i], err);
        count += ret == 0;
    }
    if (ret < 0) {
        for (i = 0; i < count; i++)
            sd_listen_clear(&list[i]);
        free(list);
        return ret;
    }
    for (i = 0; i < cfg->n_listen; i++)
        sd_listen_clear(&cfg->listen[i]);
    free(cfg->listen);
    cfg->listen = list;
    cfg->n_listen = count;
    return 0;
}

static int set_export_dir(const char *path, const struct sd_ynode *n,
                          void *obj, struct sd_error *err)
{
    struct sd_server_config *cfg = obj;

    return read_path(path, n, "export_dir", &cfg->export_dir, err);
}

static int set_control_socket(const char *path, const struct sd_ynode *n,
                              void *obj, struct sd_error *err)
{
    struct sd_server_config *cfg = obj;
    struct sd_listen check;
    int ret;

    ret = read_path(path, n, "control_socket", &cfg->control_socket, err);
    if (ret < 0)
        return ret;
    ret = sd_listen_set_unix(cfg->control_socket, &check, err);
    if (ret < 0)
        return at_line(path, n, err, ret);
    sd_listen_clear(&check);
    return 0;
}

static int set_workers(const char *path, const struct sd_ynode *n, void *obj,
                       struct sd_error *err)
{
    struct sd_server_config *cfg = obj;

    if (n->kind == SD_YSCALAR && n->plain && strcmp(n->value, "auto") == 0) {
        cfg->workers = 0;
        return 0;
    }
    return read_uint(path, n, "workers (or auto)", 1, SD_WORKERS_MAX,
                     &cfg->workers, err);
}

static int set_handshake_timeout(const char *path, const struct sd_ynode *n,
                                 void *obj, struct sd_error *err)
{
    struct sd_server_config *cfg = obj;

    return read_uint(path, n, "handshake_timeout (seconds)", 1,
                     SD_HANDSHAKE_TIMEOUT_MAX, &cfg->handshake_timeout, err);
}

static int read_size(const char *path, const struct sd_ynode *n,
                     const char *what, uint64_t *out, struct sd_error *err)
{
    if (n->kind != SD_YSCALAR || !n->plain ||
        sd_config_parse_size(n->value, out) < 0)
        return sd_ytree_error(path, n, err, -EINVAL,
                              "%s: expected a size in bytes, like 4096, "
                              "64M or 1G", what);
    return 0;
}

static int set_inflight_conn(const char *path, const struct sd_ynode *n,
                             void *obj, struct sd_error *err)
{
    struct sd_server_config *cfg = obj;

    return read_size(path, n, "inflight_per_connection",
                     &cfg->inflight_per_connection, err);
}

static int set_inflight_process(const char *path, const struct sd_ynode *n,
                                void *obj, struct sd_error *err)
{
    struct sd_server_config *cfg = obj;

    return read_size(path, n, "inflight_per_process",
                     &cfg->inflight_per_process, err);
}

static int set_tls_mode(const char *path, const struct sd_ynode *n,
                        void *obj, struct sd_error *err)
{
    static const char *const modes[] = { "off", "optional", "required" };
    struct sd_tls_config *tls = obj;
    int v, ret;

    ret = sd_ynode_enum(path, n, "tls.mode", modes, ARRAY_SIZE(modes), &v,
                        err);
    if (ret == 0)
        tls->mode = (enum sd_tls_mode)v;
    return ret;
}

static int set_tls_cert(const char *path, const struct sd_ynode *n,
                        void *obj, struct sd_error *err)
{
    return read_path(path, n, "tls.cert",
                     &((struct sd_tls_config *)obj)->cert, err);
}

static int set_tls_key(const char *path, const struct sd_ynode *n,
                       void *obj, struct sd_error *err)
{
    return read_path(path, n, "tls.key", &((struct sd_tls_config *)obj)->key,
                     err);
}

static int set_tls_ca(const char *path, const struct sd_ynode *n, void *obj,
                      struct sd_error *err)
{
    return read_path(path, n, "tls.ca", &((struct sd_tls_config *)obj)->ca,
                     err);
}

static int set_tls_psk(const char *path, const struct sd_ynode *n,
                       void *obj, struct sd_error *err)
{
    return read_path(path, n, "tls.psk_file",
                     &((struct sd_tls_config *)obj)->psk_file, err);
}

static const struct sd_yfield tls_fields[] = {
    { "mode", set_tls_mode },
    { "cert", set_tls_cert },
    { "key", set_tls_key },
    { "ca", set_tls_ca },
    { "psk_file", set_tls_psk },
};

static int set_tls(const char *path, const struct sd_ynode *n, void *obj,
                   struct sd_error *err)
{
    struct sd_server_config *cfg = obj;
    unsigned lines[ARRAY_SIZE(tls_fields)];
    int ret;

    ret = sd_ymap_walk(path, n, tls_fields, ARRAY_SIZE(tls_fields),
                       &cfg->tls, lines, err);
    if (ret < 0)
        return ret;
    ret = sd_tls_config_validate(&cfg->tls, err);
    return ret < 0 ? at_line(path, n, err, ret) : 0;
}

static const struct sd_yfield server_fields[] = {
    { "listen", set_listen },
    { "export_dir", set_export_dir },
    { "control_socket", set_control_socket },
    { "workers", set_workers },
    { "handshake_timeout", set_handshake_timeout },
    { "inflight_per_connection", set_inflight_conn },
    { "inflight_per_process", set_inflight_process },
    { "tls", set_tls },
};

static int server_from_tree(const char *path, const struct sd_ynode *root,
                            struct sd_server_config *cfg,
                            struct sd_error *err)
{
    unsigned lines[ARRAY_SIZE(server_fields)];
    int ret;

    if (root) {
        ret = sd_ymap_walk(path, root, server_fields,
                           ARRAY_SIZE(server_fields), cfg, lines, err);
        if (ret < 0)
            return ret;
    }
    ret = sd_server_config_validate(cfg, err);
    if (ret < 0)
        sd_error_prefix(err, "%s:%u", path, root ? root->line : 1);
    return ret;
}

int sd_config_load_server_yaml(const char *path, struct sd_server_config *out,
                               struct sd_error *err)
{
    struct sd_server_config cfg;
    struct sd_ynode *root = NULL;
    char *data;
    size_t len;
    int ret;

    ret = sd_config_read_file(path, &data, &len, err);
    if (ret < 0)
        return ret;
    ret = sd_ytree_parse(path, data, len, &root, err);
    free(data);
    if (ret < 0)
        return ret;
    ret = sd_server_config_init_defaults(&cfg, err);
    if (ret == 0)
        ret = server_from_tree(path, root, &cfg, err);
    if (ret == 0 && !(cfg.source = strdup(path)))
        ret = sd_error_set(err, -ENOMEM, "%s: out of memory", path);
    sd_ytree_free(root);
    if (ret < 0) {
        sd_server_config_clear(&cfg);
        return ret;
    }
    *out = cfg;
    return 0;
}

/* --- export files --- */

static int set_name(const char *path, const struct sd_ynode *n, void *obj,
                    struct sd_error *err)
{
    struct sd_export *exp = obj;
    int ret = sd_ynode_string(path, n, "name", &exp->name, err);

    if (ret == 0)
        ret = sd_export_name_check(exp->name, err);
    return ret < 0 && n->kind == SD_YSCALAR ? at_line(path, n, err, ret)
                                            : ret;
}

static int set_path(const char *path, const struct sd_ynode *n, void *obj,
                    struct sd_error *err)
{
    struct sd_export *exp = obj;
    int ret = read_path(path, n, "path", &exp->path, err);

    if (ret == 0 && exp->path[0] != '/')
        return sd_ytree_error(path, n, err, -EINVAL,
                              "path \"%s\" is not absolute", exp->path);
    return ret;
}

static int set_format(const char *path, const struct sd_ynode *n, void *obj,
                      struct sd_error *err)
{
    static const char *const formats[] = { "auto", "raw", "qcow2" };
    struct sd_export *exp = obj;
    int v, ret;

    ret = sd_ynode_enum(path, n, "format", formats, ARRAY_SIZE(formats), &v,
                        err);
    if (ret == 0)
        exp->format = (enum sd_export_format)v;
    return ret;
}

static int set_readonly(const char *path, const struct sd_ynode *n,
                        void *obj, struct sd_error *err)
{
    return sd_ynode_bool(path, n, "readonly",
                         &((struct sd_export *)obj)->readonly, err);
}

static int set_direct(const char *path, const struct sd_ynode *n, void *obj,
                      struct sd_error *err)
{
    return sd_ynode_bool(path, n, "direct",
                         &((struct sd_export *)obj)->direct, err);
}

static int set_allow(const char *path, const struct sd_ynode *n, void *obj,
                     struct sd_error *err)
{
    struct sd_export *exp = obj;
    struct sd_cidr *list;
    size_t i;
    int ret;

    if (n->kind != SD_YSEQ)
        return sd_ytree_error(path, n, err, -EINVAL,
                              "allow: expected a list of CIDR blocks");
    if (n->n > SD_CONFIG_LIST_MAX)
        return sd_ytree_error(path, n, err, -E2BIG,
                              "allow: more than %u entries",
                              SD_CONFIG_LIST_MAX);
    list = calloc(n->n ? n->n : 1, sizeof(*list));
    if (!list)
        return sd_error_set(err, -ENOMEM, "%s: out of memory", path);
    for (i = 0; i < n->n; i++) {
        const struct sd_ynode *item = n->items[i];

        if (item->kind != SD_YSCALAR) {
            free(list);
            return sd_ytree_error(path, item, err, -EINVAL,
                                  "allow: expected a CIDR block");
        }
        ret = sd_cidr_parse(item->value, &list[i], err);
        if (ret < 0) {
            free(list);
            return at_line(path, item, err, ret);
        }
    }
    free(exp->allow);
    exp->allow = list;
    exp->n_allow = n->n;
    exp->allow_all = false;
    return 0;
}

static int set_tls_policy(const char *path, const struct sd_ynode *n,
                          void *obj, struct sd_error *err)
{
    static const char *const policies[] = { "inherit", "required" };
    struct sd_export *exp = obj;
    int v, ret;

    ret = sd_ynode_enum(path, n, "tls", policies, ARRAY_SIZE(policies), &v,
                        err);
    if (ret == 0)
        exp->tls = (enum sd_export_tls)v;
    return ret;
}

static int set_overlay(const char *path, const struct sd_ynode *n, void *obj,
                       struct sd_error *err)
{
    static const char *const overlays[] = { "none", "temporary" };
    struct sd_export *exp = obj;
    int v, ret;

    ret = sd_ynode_enum(path, n, "overlay", overlays, ARRAY_SIZE(overlays),
                        &v, err);
    if (ret == 0)
        exp->overlay = (enum sd_export_overlay)v;
    return ret;
}

static int set_description(const char *path, const struct sd_ynode *n,
                           void *obj, struct sd_error *err)
{
    struct sd_export *exp = obj;
    int ret = sd_ynode_string(path, n, "description", &exp->description,
                              err);

    if (ret == 0)
        ret = sd_config_text_check("description", exp->description,
                                   SD_DESCRIPTION_MAX, err);
    return ret < 0 && n->kind == SD_YSCALAR ? at_line(path, n, err, ret)
                                            : ret;
}

enum { F_NAME, F_PATH };
static const struct sd_yfield export_fields[] = {
    [F_NAME] = { "name", set_name },
    [F_PATH] = { "path", set_path },
    { "format", set_format },
    { "readonly", set_readonly },
    { "allow", set_allow },
    { "tls", set_tls_policy },
    { "overlay", set_overlay },
    { "direct", set_direct },
    { "description", set_description },
};

/* The file must be <name>.yaml, so a name maps to one file. */
static int check_file_name(const char *path, const struct sd_export *exp,
                           unsigned line, struct sd_error *err)
{
    const char *base = strrchr(path, '/');
    size_t n = strlen(exp->name);

    base = base ? base + 1 : path;
    if (strncmp(base, exp->name, n) != 0 || strcmp(base + n, ".yaml") != 0)
        return sd_error_set(err, -EINVAL,
                            "%s:%u: export \"%s\" must be in a file named "
                            "\"%s.yaml\"", path, line, exp->name, exp->name);
    return 0;
}

static int export_from_tree(const char *path, const struct sd_ynode *root,
                            struct sd_export *exp, struct sd_error *err)
{
    unsigned lines[ARRAY_SIZE(export_fields)];
    int ret;

    if (!root)
        return sd_error_set(err, -EINVAL, "%s:1: empty export file", path);
    ret = sd_ymap_walk(path, root, export_fields, ARRAY_SIZE(export_fields),
                       exp, lines, err);
    if (ret < 0)
        return ret;
    if (!exp->name)
        return sd_ytree_error(path, root, err, -EINVAL,
                              "missing key \"name\"");
    if (!exp->path)
        return sd_ytree_error(path, root, err, -EINVAL,
                              "missing key \"path\"");
    ret = check_file_name(path, exp, lines[F_NAME], err);
    if (ret < 0)
        return ret;
    ret = sd_export_validate(exp, err);
    return ret < 0 ? at_line(path, root, err, ret) : 0;
}

int sd_config_load_export_yaml(const char *path, struct sd_export **out,
                               struct sd_error *err)
{
    char *data;
    size_t len;
    int ret;

    ret = sd_config_read_file(path, &data, &len, err);
    if (ret < 0)
        return ret;
    ret = sd_config_parse_export_yaml(path, data, len, out, err);
    free(data);
    return ret;
}

int sd_config_parse_export_yaml(const char *path, const char *data,
                                size_t len, struct sd_export **out,
                                struct sd_error *err)
{
    struct sd_ynode *root = NULL;
    struct sd_export *exp;
    int ret;

    ret = sd_ytree_parse(path, data, len, &root, err);
    if (ret < 0)
        return ret;
    exp = sd_export_new(path, root ? root->line : 1);
    if (!exp)
        ret = sd_error_set(err, -ENOMEM, "%s: out of memory", path);
    else
        ret = export_from_tree(path, root, exp, err);
    sd_ytree_free(root);
    if (ret < 0) {
        sd_export_free(exp);
        return ret;
    }
    *out = exp;
    return 0;
}
