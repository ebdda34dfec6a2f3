/* SPDX-License-Identifier: MIT */
/*
 * The control socket's methods (DESIGN.md, "Control socket"). Handlers
 * run on the control loop; those that wait (drains, fences) reply later
 * from a connection waiter.
 */
#include "config.h"

#include "common/log.h"
#include "server/conn.h"
#include "server/control.h"
#include "server/exports.h"
#include "server/server.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SENDENSE_VERSION PACKAGE_VERSION

static int64_t uptime_ms(const struct sd_server *srv)
{
    struct timespec now;

    clock_gettime(CLOCK_MONOTONIC, &now);
    return (int64_t)(now.tv_sec - srv->started.tv_sec) * 1000 +
           (now.tv_nsec - srv->started.tv_nsec) / 1000000;
}

static int m_server_info(void *ctx, struct jsonrpc_conn *conn, json_t *params,
                         struct jsonrpc_request *req)
{
    struct sd_server *srv = ctx;
    json_t *listen = json_array(), *workers = json_array();
    static const char *const tls_modes[] = { "off", "optional", "required" };
    int ret = jsonrpc_params_parse(req, params,
                                   (struct jsonrpc_param[]){ JSONRPC_PARAM_END });

    (void)conn;
    if (ret < 0) {
        json_decref(listen);
        json_decref(workers);
        return ret;
    }
    for (size_t i = 0; i < srv->settings.n_listen && listen; i++)
        json_array_append_new(listen, json_string(srv->settings.listen[i].text));
    for (unsigned i = 0; i < srv->n_workers && workers; i++)
        json_array_append_new(workers, json_pack("{s:s, s:I, s:I}",
            "name", srv->workers[i].name,
            "images", (json_int_t)atomic_load(&srv->workers[i].n_images),
            "connections", (json_int_t)atomic_load(&srv->workers[i].n_conns)));
    return jsonrpc_reply_result(req, json_pack(
        "{s:s, s:s, s:i, s:I, s:s?, s:s?, s:o*, s:o*, s:I, s:I, s:I, s:s}",
        "name", "sendense-nbd", "version", SENDENSE_VERSION,
        "pid", (int)getpid(), "uptime_ms", (json_int_t)uptime_ms(srv),
        "config", srv->config_path, "export_dir", srv->settings.export_dir,
        "listen", listen, "workers", workers,
        "exports", (json_int_t)registry_count(srv),
        "connections", (json_int_t)conn_count(srv, NULL),
        "reloads", (json_int_t)srv->reloads,
        "tls", tls_modes[srv->settings.tls.mode]));
}

static int m_server_reload(void *ctx, struct jsonrpc_conn *conn,
                           json_t *params, struct jsonrpc_request *req)
{
    struct sd_server *srv = ctx;
    struct sd_error err = { 0 };
    json_t *summary = NULL;
    int ret = jsonrpc_params_parse(req, params,
                                   (struct jsonrpc_param[]){ JSONRPC_PARAM_END });

    (void)conn;
    if (ret < 0)
        return ret;
    ret = server_reload(srv, &summary, &err);
    if (ret < 0)
        return jsonrpc_reply_sd_error(req, &err);
    return jsonrpc_reply_result(req, summary);
}

static int reply_export_list(struct jsonrpc_request *req,
                             struct sd_server *srv, bool stats)
{
    return jsonrpc_reply_result(req, json_pack("{s:o*}", "exports",
                                registry_list_json(srv, stats)));
}

static int m_export_list(void *ctx, struct jsonrpc_conn *conn, json_t *params,
                         struct jsonrpc_request *req)
{
    bool stats = false;
    struct jsonrpc_param spec[] = {
        JSONRPC_PARAM_BOOL("stats", false, &stats),
        JSONRPC_PARAM_END,
    };
    int ret = jsonrpc_params_parse(req, params, spec);

    (void)conn;
    return ret < 0 ? ret : reply_export_list(req, ctx, stats);
}

static int reply_export(struct jsonrpc_request *req, struct sd_server *srv,
                        const char *name, bool stats)
{
    json_t *o = registry_export_json(srv, name, stats);

    if (!o)
        return jsonrpc_reply_errno(req, -ENOENT, "no export named '%s'", name);
    return jsonrpc_reply_result(req, o);
}

static int m_export_get(void *ctx, struct jsonrpc_conn *conn, json_t *params,
                        struct jsonrpc_request *req)
{
    const char *name = NULL;
    bool stats = false;
    struct jsonrpc_param spec[] = {
        JSONRPC_PARAM_STRING("name", true, &name),
        JSONRPC_PARAM_BOOL("stats", false, &stats),
        JSONRPC_PARAM_END,
    };
    int ret = jsonrpc_params_parse(req, params, spec);

    (void)conn;
    return ret < 0 ? ret : reply_export(req, ctx, name, stats);
}

static int m_export_stats(void *ctx, struct jsonrpc_conn *conn, json_t *params,
                          struct jsonrpc_request *req)
{
    const char *name = NULL;
    struct jsonrpc_param spec[] = {
        JSONRPC_PARAM_STRING("name", false, &name),
        JSONRPC_PARAM_END,
    };
    int ret = jsonrpc_params_parse(req, params, spec);

    (void)conn;
    if (ret < 0)
        return ret;
    if (name)
        return reply_export(req, ctx, name, true);
    return reply_export_list(req, ctx, true);
}

/* --- export.add --- */

/* A YAML scalar for any text: JSON's string syntax is YAML's
 * double-quoted style. */
static int put_yaml(FILE *f, const char *key, json_t *value)
{
    char *text = json_dumps(value, JSON_ENCODE_ANY | JSON_COMPACT);

    if (!text)
        return -ENOMEM;
    fprintf(f, "%s: %s\n", key, text);
    free(text);
    return 0;
}

static int write_export_yaml(FILE *f, json_t *params)
{
    static const char *const keys[] = {
        "name", "path", "format", "readonly", "allow", "tls", "overlay",
        "direct", "description",
    };
    int ret = 0;

    fprintf(f, "# Written by sendense-nbd (export.add).\n");
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]) && ret == 0; i++) {
        json_t *v = json_object_get(params, keys[i]);
        if (v)
            ret = put_yaml(f, keys[i], v);
    }
    if (ret == 0 && (fflush(f) != 0 || fsync(fileno(f)) < 0))
        ret = -errno;
    return ret;
}

static int fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int ret = 0;

    if (fd < 0)
        return -errno;
    if (fsync(fd) < 0)
        ret = -errno;
    close(fd);
    return ret;
}

/* Write params as <name>.yaml into a hidden staging directory of
 * export_dir (the loader skips hidden entries), and parse it back with
 * the loader itself, so export.add accepts exactly what a reload would. */
static int stage_export(struct sd_server *srv, json_t *params,
                        const char *name, char *staged, size_t size,
                        struct sd_export **out, struct sd_error *err)
{
    char dir[PATH_MAX];
    FILE *f;
    int ret;

    snprintf(dir, sizeof(dir), "%s/.staging", srv->settings.export_dir);
    if (mkdir(dir, 0700) < 0 && errno != EEXIST)
        return sd_error_set(err, -errno, "%s: %s", dir, strerror(errno));
    if ((size_t)snprintf(staged, size, "%s/%s.yaml", dir, name) >= size)
        return sd_error_set(err, -ENAMETOOLONG, "export name too long");
    f = fopen(staged, "we");
    if (!f)
        return sd_error_set(err, -errno, "%s: %s", staged, strerror(errno));
    ret = write_export_yaml(f, params);
    if (fclose(f) != 0 && ret == 0)
        ret = -errno;
    if (ret < 0) {
        unlink(staged);
        return sd_error_set(err, ret, "%s: %s", staged, strerror(-ret));
    }
    ret = sd_config_load_export_yaml(staged, out, err);
    if (ret < 0)
        unlink(staged);
    return ret;
}

static int m_export_add(void *ctx, struct jsonrpc_conn *conn, json_t *params,
                        struct jsonrpc_request *req)
{
    struct sd_server *srv = ctx;
    const char *name = NULL, *path = NULL, *s = NULL;
    bool b = false, replace = false;
    json_t *allow = NULL;
    struct jsonrpc_param spec[] = {
        JSONRPC_PARAM_STRING("name", true, &name),
        JSONRPC_PARAM_STRING("path", true, &path),
        JSONRPC_PARAM_STRING("format", false, &s),
        JSONRPC_PARAM_BOOL("readonly", false, &b),
        JSONRPC_PARAM_ARRAY("allow", false, &allow),
        JSONRPC_PARAM_STRING("tls", false, &s),
        JSONRPC_PARAM_STRING("overlay", false, &s),
        JSONRPC_PARAM_BOOL("direct", false, &b),
        JSONRPC_PARAM_STRING("description", false, &s),
        JSONRPC_PARAM_BOOL("replace", false, &replace),
        JSONRPC_PARAM_END,
    };
    char staged[PATH_MAX], final[PATH_MAX];
    struct sd_error err = { 0 };
    struct sd_export *e = NULL;
    json_t *file_params;
    int ret = jsonrpc_params_parse(req, params, spec);

    (void)conn;
    if (ret < 0)
        return ret;
    if (!srv->settings.export_dir)
        return jsonrpc_reply_errno(req, -ENOTSUP, "the server has no "
                                   "export_dir to keep exports in");
    ret = sd_export_name_check(name, &err);
    if (ret < 0)
        return jsonrpc_reply_sd_error(req, &err);
    file_params = json_deep_copy(params);
    if (!file_params)
        return -ENOMEM;
    json_object_del(file_params, "replace");
    ret = stage_export(srv, file_params, name, staged, sizeof(staged), &e,
                       &err);
    json_decref(file_params);
    if (ret < 0)
        return jsonrpc_reply_sd_error(req, &err);

    ret = registry_compare(srv, e);
    if (ret == 0) {                       /* identical: nothing to do */
        unlink(staged);
        sd_export_free(e);
        return reply_export(req, srv, name, false);
    }
    if (ret > 0 && !replace) {
        unlink(staged);
        sd_export_free(e);
        return jsonrpc_reply_errno(req, -EEXIST, "export '%s' exists with "
                                   "another definition (replace: true to "
                                   "change it)", name);
    }
    snprintf(final, sizeof(final), "%s/%s.yaml", srv->settings.export_dir,
             name);
    free(e->source);
    e->source = strdup(final);
    /* Serve first, persist second: a definition that cannot be served
     * never replaces the file of one that is. */
    json_t *before = registry_export_json(srv, name, false);
    enum apply_result r = registry_apply(srv, e, &err);
    if (r == APPLY_FAILED) {
        unlink(staged);
        if (!before)                  /* nothing was there: leave nothing */
            registry_remove(srv, name);
        json_decref(before);
        return jsonrpc_reply_sd_error(req, &err);
    }
    json_decref(before);
    if (rename(staged, final) < 0 || fsync_dir(srv->settings.export_dir) < 0) {
        ret = -errno;
        unlink(staged);
        sd_log_error("export %s: serving, but %s could not be written: %s; "
                     "the next reload drops it", name, final, strerror(-ret));
        return jsonrpc_reply_errno(req, ret, "%s: %s (the export is served "
                                   "until the next reload)", final,
                                   strerror(-ret));
    }
    sd_log_info("export %s: %s through the control socket", name,
                r == APPLY_PENDING ? "defined (pending)" : "added");
    return reply_export(req, srv, name, false);
}

/* --- waiting methods --- */

struct waiting_reply {
    struct jsonrpc_request *req;
    struct sd_server *srv;
    char *name;
    unsigned closed;
    const char *what;
};

static void reply_when_gone(void *arg)
{
    struct waiting_reply *w = arg;

    jsonrpc_reply_result(w->req, json_pack("{s:s, s:s, s:I}", "export",
                         w->name, "done", w->what,
                         "connections_closed", (json_int_t)w->closed));
    control_kick(w->srv);
    free(w->name);
    free(w);
}

static int wait_then_reply(struct sd_server *srv, struct jsonrpc_request *req,
                           const char *name, uint64_t max_id, unsigned closed,
                           const char *what)
{
    struct waiting_reply *w = calloc(1, sizeof(*w));
    int ret;

    if (!w || !(w->name = strdup(name))) {
        free(w);
        return -ENOMEM;
    }
    w->req = req;
    w->srv = srv;
    w->closed = closed;
    w->what = what;
    ret = conn_wait_gone(srv, name, max_id, reply_when_gone, w);
    if (ret < 0) {
        free(w->name);
        free(w);
        return ret;
    }
    return JSONRPC_PENDING;
}

static bool defined_in(const struct sd_server *srv, json_t *exp,
                       const char *name, char *file, size_t size)
{
    const char *source = json_string_value(json_object_get(exp, "source"));

    snprintf(file, size, "%s/%s.yaml", srv->settings.export_dir
             ? srv->settings.export_dir : "", name);
    return source && strcmp(source, file) == 0;
}

static int m_export_remove(void *ctx, struct jsonrpc_conn *conn,
                           json_t *params, struct jsonrpc_request *req)
{
    struct sd_server *srv = ctx;
    const char *name = NULL;
    bool drain = true;
    struct jsonrpc_param spec[] = {
        JSONRPC_PARAM_STRING("name", true, &name),
        JSONRPC_PARAM_BOOL("drain", false, &drain),
        JSONRPC_PARAM_END,
    };
    char file[PATH_MAX];
    unsigned closed = 0;
    json_t *exp;
    int ret = jsonrpc_params_parse(req, params, spec);

    (void)conn;
    if (ret < 0)
        return ret;
    exp = registry_export_json(srv, name, false);
    if (!exp)
        return jsonrpc_reply_errno(req, -ENOENT, "no export named '%s'", name);
    if (!defined_in(srv, exp, name, file, sizeof(file)) &&
        json_object_get(exp, "source")) {
        ret = jsonrpc_reply_errno(req, -EPERM, "export '%s' is defined in %s;"
                                  " remove it there and reload", name,
                                  json_string_value(json_object_get(exp,
                                                                    "source")));
        json_decref(exp);
        return ret;
    }
    json_decref(exp);
    if (unlink(file) < 0 && errno != ENOENT)
        return jsonrpc_reply_errno(req, -errno, "%s: %s", file,
                                   strerror(errno));
    if (srv->settings.export_dir)
        (void)fsync_dir(srv->settings.export_dir);
    registry_remove(srv, name);
    if (!drain)
        closed = conn_close_matching(srv, name, UINT64_MAX, true);
    sd_log_info("export %s: removed through the control socket (%s)", name,
                drain ? "draining clients" : "closing clients");
    return wait_then_reply(srv, req, name, UINT64_MAX, closed, "removed");
}

static int m_export_fence(void *ctx, struct jsonrpc_conn *conn, json_t *params,
                          struct jsonrpc_request *req)
{
    struct sd_server *srv = ctx;
    const char *name = NULL;
    struct jsonrpc_param spec[] = {
        JSONRPC_PARAM_STRING("name", true, &name),
        JSONRPC_PARAM_END,
    };
    uint64_t fence_id;
    unsigned closed;
    json_t *exp;
    int ret = jsonrpc_params_parse(req, params, spec);

    (void)conn;
    if (ret < 0)
        return ret;
    exp = registry_export_json(srv, name, false);
    if (!exp && conn_count(srv, name) == 0)
        return jsonrpc_reply_errno(req, -ENOENT, "no export named '%s'", name);
    json_decref(exp);
    /* Every connection that exists now is older than the fence. */
    fence_id = conn_next_id(srv);
    closed = conn_close_matching(srv, name, fence_id, false);
    sd_log_info("export %s: fence closes %u connection(s)", name, closed);
    return wait_then_reply(srv, req, name, fence_id, closed, "fenced");
}

static int m_connection_list(void *ctx, struct jsonrpc_conn *conn,
                             json_t *params, struct jsonrpc_request *req)
{
    int ret = jsonrpc_params_parse(req, params,
                                   (struct jsonrpc_param[]){ JSONRPC_PARAM_END });

    (void)conn;
    if (ret < 0)
        return ret;
    return jsonrpc_reply_result(req, json_pack("{s:o*}", "connections",
                                conn_list_json(ctx)));
}

static int m_connection_close(void *ctx, struct jsonrpc_conn *conn,
                              json_t *params, struct jsonrpc_request *req)
{
    int64_t id = 0;
    struct jsonrpc_param spec[] = {
        JSONRPC_PARAM_INT("id", true, 1, INT64_MAX, &id),
        JSONRPC_PARAM_END,
    };
    int ret = jsonrpc_params_parse(req, params, spec);

    (void)conn;
    if (ret < 0)
        return ret;
    ret = conn_close_by_id(ctx, (uint64_t)id);
    if (ret < 0)
        return jsonrpc_reply_errno(req, ret, "no connection %lld",
                                   (long long)id);
    sd_log_info("conn %lld: closed through the control socket", (long long)id);
    return jsonrpc_reply_result(req, json_pack("{s:I}", "closed",
                                               (json_int_t)id));
}

const struct jsonrpc_method control_methods[] = {
    { "server.info", m_server_info },
    { "server.reload", m_server_reload },
    { "export.list", m_export_list },
    { "export.get", m_export_get },
    { "export.add", m_export_add },
    { "export.remove", m_export_remove },
    { "export.fence", m_export_fence },
    { "export.stats", m_export_stats },
    { "connection.list", m_connection_list },
    { "connection.close", m_connection_close },
    { NULL, NULL },
};
