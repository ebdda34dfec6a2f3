/* SPDX-License-Identifier: MIT */
#include "config.h"

#include "server/exports.h"
#include "common/jsonrpc.h"
#include "common/log.h"
#include "server/conn.h"
#include "server/image-table.h"
#include "server/nbd-proto.h"
#include "server/server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One export name. live serves new clients; pending is a definition
 * that waits for an incompatible open of its image to close. */
struct export_slot {
    char *name;
    struct export_def *live;
    struct sd_export *pending;
    char *problem;                  /* why pending, or the last error */
    struct export_stats *stats;
};

/* --- definitions and counters --- */

static struct export_stats *stats_new(void)
{
    struct export_stats *st = calloc(1, sizeof(*st));

    if (!st)
        return NULL;
    if (pthread_mutex_init(&st->error_lock, NULL) != 0) {
        free(st);
        return NULL;
    }
    atomic_init(&st->refs, 1);
    return st;
}

static void stats_unref(struct export_stats *st)
{
    if (st && atomic_fetch_sub(&st->refs, 1) == 1) {
        pthread_mutex_destroy(&st->error_lock);
        free(st);
    }
}

void export_stats_count(struct export_stats *st, enum export_op op,
                        uint64_t bytes)
{
    atomic_fetch_add_explicit(&st->ops[op], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&st->bytes[op], bytes, memory_order_relaxed);
    atomic_store_explicit(&st->last_activity_ms, now_realtime_ms(),
                          memory_order_relaxed);
}

void export_stats_write_error(struct export_stats *st, enum export_op op,
                              int err, const char *msg, uint64_t offset,
                              uint64_t length)
{
    struct export_write_error *e = &st->last_error;

    /* Counted before the client gets its error reply, so whoever the
     * client tells next (its backup catalog) finds it in export.stats. */
    atomic_fetch_add(&st->write_errors, 1);
    pthread_mutex_lock(&st->error_lock);
    e->err = -err;
    e->op = op;
    e->offset = offset;
    e->length = length;
    e->time_ms = now_realtime_ms();
    snprintf(e->message, sizeof(e->message), "%s", msg ? msg : strerror(-err));
    pthread_mutex_unlock(&st->error_lock);
}

void export_def_ref(struct export_def *def)
{
    atomic_fetch_add(&def->refs, 1);
}

static void def_free(void *arg)
{
    struct export_def *def = arg;

    image_unref(def->image);
    stats_unref(def->stats);
    sd_export_free(def->cfg);
    free(def);
}

void export_def_unref(struct export_def *def)
{
    struct worker *control = &def->srv->control;

    if (atomic_fetch_sub(&def->refs, 1) != 1)
        return;
    if (worker_self() == control)
        def_free(def);
    else if (worker_post(control, def_free, def) < 0)
        sd_log_error("export %s: out of memory releasing it", def->cfg->name);
}

static uint16_t tflags_of(const struct sd_export *e,
                          const struct srv_image *im)
{
    uint16_t f = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH |
                 NBD_FLAG_SEND_FUA | NBD_FLAG_SEND_CACHE;

    /* Every connection shares one handle of the image, and a flush on
     * any of them flushes it all: clients may spread over connections. */
    f |= NBD_FLAG_CAN_MULTI_CONN;
    if (e->readonly)
        return f | NBD_FLAG_READ_ONLY;
    f |= NBD_FLAG_SEND_WRITE_ZEROES;
    if (im->caps.can_trim)
        f |= NBD_FLAG_SEND_TRIM;
    if (im->caps.can_fast_zero)
        f |= NBD_FLAG_SEND_FAST_ZERO;
    return f;
}

static struct export_def *def_new(struct sd_server *srv, struct sd_export *e,
                                  struct srv_image *im,
                                  struct export_stats *st)
{
    struct export_def *def = calloc(1, sizeof(*def));

    if (!def)
        return NULL;
    atomic_init(&def->refs, 1);
    def->srv = srv;
    def->cfg = e;
    def->image = im;
    def->stats = st;
    atomic_fetch_add(&st->refs, 1);
    def->size = im->size;
    def->tflags = tflags_of(e, im);
    def->generation = ++srv->generation;
    return def;
}

/* --- slots --- */

static struct export_slot *find_slot(struct sd_server *srv, const char *name)
{
    size_t i;

    return name_index_get(&srv->slot_index, name, &i) ? &srv->slots[i] : NULL;
}

static struct export_slot *add_slot(struct sd_server *srv, const char *name)
{
    struct export_slot *s;

    if (srv->n_slots == srv->cap_slots) {
        size_t cap = srv->cap_slots ? 2 * srv->cap_slots : 64;
        pthread_mutex_lock(&srv->registry_lock);
        s = realloc(srv->slots, cap * sizeof(*s));
        if (s) {
            srv->slots = s;
            srv->cap_slots = cap;
        }
        pthread_mutex_unlock(&srv->registry_lock);
        if (!s)
            return NULL;
    }
    s = &srv->slots[srv->n_slots];
    memset(s, 0, sizeof(*s));
    s->name = strdup(name);
    s->stats = stats_new();
    if (!s->name || !s->stats) {
        free(s->name);
        stats_unref(s->stats);
        return NULL;
    }
    pthread_mutex_lock(&srv->registry_lock);
    int ret = name_index_put(&srv->slot_index, s->name, srv->n_slots);
    if (ret == 0)
        srv->n_slots++;
    pthread_mutex_unlock(&srv->registry_lock);
    if (ret < 0) {
        free(s->name);
        stats_unref(s->stats);
        return NULL;
    }
    return s;
}

static void set_problem(struct export_slot *s, const char *text)
{
    free(s->problem);
    s->problem = text ? strdup(text) : NULL;
}

/* Swap the live definition (NULL: none) under the lock; the old one is
 * released after, outside it. */
static void publish(struct sd_server *srv, struct export_slot *s,
                    struct export_def *def)
{
    struct export_def *old;

    pthread_mutex_lock(&srv->registry_lock);
    old = s->live;
    s->live = def;
    pthread_mutex_unlock(&srv->registry_lock);
    if (old)
        export_def_unref(old);
}

static void drop_slot(struct sd_server *srv, struct export_slot *s)
{
    size_t i = (size_t)(s - srv->slots);

    publish(srv, s, NULL);
    sd_export_free(s->pending);
    free(s->problem);
    stats_unref(s->stats);
    pthread_mutex_lock(&srv->registry_lock);
    name_index_remove(&srv->slot_index, srv->slots[i].name);
    free(srv->slots[i].name);
    srv->slots[i] = srv->slots[--srv->n_slots];
    /* An update of a key already there: it cannot fail. */
    if (i < srv->n_slots)
        (void)name_index_put(&srv->slot_index, srv->slots[i].name, i);
    pthread_mutex_unlock(&srv->registry_lock);
}

struct export_def *registry_lookup(struct sd_server *srv, const char *name,
                                   const char **why)
{
    struct export_def *def = NULL;

    *why = "no such export";
    pthread_mutex_lock(&srv->registry_lock);
    struct export_slot *s = find_slot(srv, name);
    if (s) {
        def = s->live;
        if (def)
            export_def_ref(def);
        else if (s->pending)
            *why = "export is being reconfigured; try again shortly";
        else
            *why = "export is not available (see the server log)";
    }
    pthread_mutex_unlock(&srv->registry_lock);
    return def;
}

void registry_for_each(struct sd_server *srv,
                       void (*fn)(void *arg, const struct export_def *def),
                       void *arg)
{
    pthread_mutex_lock(&srv->registry_lock);
    for (size_t i = 0; i < srv->n_slots; i++)
        if (srv->slots[i].live)
            fn(arg, srv->slots[i].live);
    pthread_mutex_unlock(&srv->registry_lock);
}

/* --- applying definitions (control loop) --- */

int registry_init(struct sd_server *srv)
{
    return -pthread_mutex_init(&srv->registry_lock, NULL);
}

void registry_destroy(struct sd_server *srv)
{
    while (srv->n_slots)
        drop_slot(srv, &srv->slots[srv->n_slots - 1]);
    free(srv->slots);
    srv->slots = NULL;
    srv->cap_slots = 0;
    name_index_free(&srv->slot_index);
    pthread_mutex_destroy(&srv->registry_lock);
}

/* Open e's image and publish it. *wait is set when an incompatible open
 * in this process holds the file (the caller decides whether to wait);
 * any other failure (a lock held by another process, say) is final. */
static int activate(struct sd_server *srv, struct export_slot *s,
                    struct sd_export *e, bool *wait, struct sd_error *err)
{
    struct srv_image *im, *holder;
    struct export_def *def;
    int ret = image_table_acquire(srv, e, &im, &holder, err);

    if (ret == -EBUSY && s->live && holder == s->live->image &&
        atomic_load(&s->live->refs) == 1 && atomic_load(&holder->refs) == 1) {
        /* Only our own old definition holds it, and no client: let it
         * go and open again. */
        publish(srv, s, NULL);
        sd_error_clear(err);
        ret = image_table_acquire(srv, e, &im, &holder, err);
    }
    *wait = ret < 0 && holder != NULL;
    if (ret < 0)
        return ret;
    def = def_new(srv, e, im, s->stats);
    if (!def) {
        image_unref(im);
        return sd_error_set(err, -ENOMEM, "out of memory");
    }
    publish(srv, s, def);
    set_problem(s, NULL);
    return 0;
}

static enum apply_result wait_for_holder(struct sd_server *srv,
                                         struct export_slot *s,
                                         struct sd_export *e,
                                         struct sd_error *err)
{
    sd_export_free(s->pending);
    s->pending = e;
    srv->any_pending = true;
    set_problem(s, err->msg);
    /* New clients must not get the old definition any more. */
    if (s->live)
        publish(srv, s, NULL);
    sd_log_warn("export %s: %s", e->name, err->msg);
    return APPLY_PENDING;
}

enum apply_result registry_apply(struct sd_server *srv, struct sd_export *e,
                                 struct sd_error *err)
{
    struct export_slot *s = find_slot(srv, e->name);
    bool existed = s && (s->live || s->pending);
    unsigned diff;
    int ret;

    if (!s && !(s = add_slot(srv, e->name))) {
        sd_export_free(e);
        sd_error_set(err, -ENOMEM, "out of memory");
        return APPLY_FAILED;
    }
    if (s->live && !s->pending) {
        diff = sd_export_diff(s->live->cfg, e);
        if (diff == 0) {
            sd_export_free(e);
            return APPLY_UNCHANGED;
        }
        if (!(diff & SD_EXPORT_DIFF_REOPEN)) {
            struct export_def *def;
            image_ref(s->live->image);
            def = def_new(srv, e, s->live->image, s->stats);
            if (!def) {
                image_unref(s->live->image);
                sd_export_free(e);
                sd_error_set(err, -ENOMEM, "out of memory");
                return APPLY_FAILED;
            }
            publish(srv, s, def);
            return APPLY_CHANGED;
        }
    }
    bool wait;
    ret = activate(srv, s, e, &wait, err);
    if (wait)
        return wait_for_holder(srv, s, e, err);
    if (ret < 0) {
        /* The slot stays, listed as failed with the reason, so that
         * export.list and the next reload show what is wrong. */
        set_problem(s, err->msg);
        sd_export_free(e);
        return APPLY_FAILED;
    }
    if (s->pending) {
        sd_export_free(s->pending);
        s->pending = NULL;
    }
    return existed ? APPLY_CHANGED : APPLY_ADDED;
}

int registry_remove(struct sd_server *srv, const char *name)
{
    struct export_slot *s = find_slot(srv, name);

    if (!s)
        return -ENOENT;
    drop_slot(srv, s);
    return 0;
}

void registry_retry_pending(struct sd_server *srv)
{
    bool still_pending = false;

    /* Every image closed calls this: removing a thousand exports must
     * not walk a thousand slots a thousand times. */
    if (srv->stopping || !srv->any_pending)
        return;
    for (size_t i = 0; i < srv->n_slots; i++) {
        struct export_slot *s = &srv->slots[i];
        struct sd_export *e = s->pending;
        struct sd_error err = { 0 };

        if (!e)
            continue;
        s->pending = NULL;
        bool wait;
        int ret = activate(srv, s, e, &wait, &err);
        if (wait) {
            s->pending = e;
            still_pending = true;
            continue;
        }
        if (ret < 0) {
            sd_log_error("export %s: %s", e->name, err.msg);
            set_problem(s, err.msg);
            sd_export_free(e);
            continue;
        }
        sd_log_info("export %s: now serving the new definition", e->name);
    }
    srv->any_pending = still_pending;
}

static int append_error(json_t *errors, const struct sd_export_entry *en)
{
    return json_array_append_new(errors, json_pack("{s:s?, s:s?, s:s}",
                                 "file", en->file, "export", en->name,
                                 "error", en->error.msg));
}

int registry_apply_list(struct sd_server *srv, struct sd_export_list *list,
                        json_t **summary)
{
    unsigned counts[APPLY_FAILED + 1] = { 0 }, removed = 0;
    json_t *errors = json_array();

    for (size_t i = 0; i < list->n; i++) {
        struct sd_export_entry *en = &list->entries[i];
        struct sd_error err = { 0 };

        if (!en->export) {
            sd_log_error("%s", en->error.msg);
            if (errors)
                append_error(errors, en);
            continue;
        }
        enum apply_result r = registry_apply(srv, en->export, &err);
        en->export = NULL;             /* taken over */
        counts[r]++;
        if (r == APPLY_FAILED) {
            sd_log_error("export %s: %s", en->name, err.msg);
            if (errors) {
                en->error = err;
                append_error(errors, en);
            }
        } else if (r == APPLY_ADDED || r == APPLY_CHANGED) {
            sd_log_info("export %s: %s", en->name,
                        r == APPLY_ADDED ? "added" : "changed");
        }
    }
    struct name_index in_list = { 0 };
    bool index_ok = true;
    for (size_t i = 0; i < list->n && index_ok; i++)
        if (list->entries[i].name)
            index_ok = name_index_put(&in_list, list->entries[i].name, i) == 0;
    size_t unused;
    for (size_t i = srv->n_slots; index_ok && i-- > 0;) {
        if (!name_index_get(&in_list, srv->slots[i].name, &unused)) {
            sd_log_info("export %s: removed (connected clients stay)",
                        srv->slots[i].name);
            drop_slot(srv, &srv->slots[i]);
            removed++;
        }
    }
    name_index_free(&in_list);
    if (!index_ok)
        sd_log_error("reload: out of memory; exports no longer defined are "
                     "still served");
    if (summary)
        *summary = json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:o*}",
            "added", (json_int_t)counts[APPLY_ADDED],
            "changed", (json_int_t)counts[APPLY_CHANGED],
            "unchanged", (json_int_t)counts[APPLY_UNCHANGED],
            "pending", (json_int_t)counts[APPLY_PENDING],
            "failed", (json_int_t)counts[APPLY_FAILED],
            "removed", (json_int_t)removed, "errors", errors);
    else
        json_decref(errors);
    return 0;
}

/* --- JSON views --- */

static const char *const op_names[EXPORT_OP_COUNT] = {
    "read", "write", "zero", "trim", "flush", "block_status", "cache",
};

/* The last write error as JSON, or JSON null when there was none. */
static json_t *last_error_json(struct export_stats *st)
{
    struct export_write_error e;

    pthread_mutex_lock(&st->error_lock);
    e = st->last_error;
    pthread_mutex_unlock(&st->error_lock);
    if (!e.err)
        return json_null();
    return json_pack("{s:s, s:s, s:s, s:I, s:I, s:I}",
        "errno", jsonrpc_errno_name(-e.err), "message", e.message,
        "op", op_names[e.op], "offset", (json_int_t)e.offset,
        "length", (json_int_t)e.length, "time_ms", (json_int_t)e.time_ms);
}

static json_t *stats_json(struct export_stats *st)
{
    json_t *bytes = json_object(), *ops = json_object();

    for (int i = 0; i < EXPORT_OP_COUNT; i++) {
        json_object_set_new(bytes, op_names[i],
                            json_integer((json_int_t)atomic_load(&st->bytes[i])));
        json_object_set_new(ops, op_names[i],
                            json_integer((json_int_t)atomic_load(&st->ops[i])));
    }
    return json_pack("{s:o, s:o, s:I, s:i, s:I, s:I, s:I, s:o}",
        "bytes", bytes, "ops", ops,
        "errors", (json_int_t)atomic_load(&st->errors),
        "clients", atomic_load(&st->clients),
        "connections_total", (json_int_t)atomic_load(&st->connections_total),
        "last_activity_ms", (json_int_t)atomic_load(&st->last_activity_ms),
        "write_errors", (json_int_t)atomic_load(&st->write_errors),
        "last_error", last_error_json(st));
}

static const char *format_name(enum sd_export_format f)
{
    return f == SD_FORMAT_RAW ? "raw" : f == SD_FORMAT_QCOW2 ? "qcow2" : "auto";
}

static json_t *config_json(const struct sd_export *e)
{
    json_t *allow = NULL;

    if (!e->allow_all) {
        allow = json_array();
        for (size_t i = 0; i < e->n_allow && allow; i++) {
            char text[64];
            const struct sd_cidr *c = &e->allow[i];
            char addr[48];
            inet_ntop(c->family, c->addr, addr, sizeof(addr));
            snprintf(text, sizeof(text), "%s/%u", addr, c->prefix);
            json_array_append_new(allow, json_string(text));
        }
    }
    return json_pack("{s:s, s:s, s:s, s:b, s:o*, s:s, s:s, s:b, s:s?, s:s?}",
        "name", e->name, "path", e->path, "format", format_name(e->format),
        "readonly", e->readonly, "allow", allow,
        "tls", e->tls == SD_EXPORT_TLS_REQUIRED ? "required" : "inherit",
        "overlay", e->overlay == SD_OVERLAY_TEMPORARY ? "temporary" : "none",
        "direct", e->direct, "description", e->description,
        "source", e->source);
}

static json_t *slot_json(struct export_slot *s, bool with_stats)
{
    json_t *o;
    const char *state = s->live ? "serving" : s->pending ? "pending" : "failed";

    if (s->live) {
        o = config_json(s->live->cfg);
        json_object_set_new(o, "size", json_integer((json_int_t)s->live->size));
        json_object_set_new(o, "image_format", json_string(
            s->live->image->format == SD_FORMAT_QCOW2 ? "qcow2" : "raw"));
    } else if (s->pending) {
        o = config_json(s->pending);
    } else {
        o = json_pack("{s:s}", "name", s->name);
    }
    if (!o)
        return NULL;
    json_object_set_new(o, "state", json_string(state));
    if (s->problem)
        json_object_set_new(o, "problem", json_string(s->problem));
    json_object_set_new(o, "clients", json_integer(atomic_load(&s->stats->clients)));
    if (with_stats)
        json_object_set_new(o, "stats", stats_json(s->stats));
    return o;
}

json_t *registry_export_json(struct sd_server *srv, const char *name,
                             bool with_stats)
{
    struct export_slot *s = find_slot(srv, name);

    return s ? slot_json(s, with_stats) : NULL;
}

json_t *registry_list_json(struct sd_server *srv, bool with_stats)
{
    json_t *list = json_array();

    for (size_t i = 0; i < srv->n_slots && list; i++)
        json_array_append_new(list, slot_json(&srv->slots[i], with_stats));
    return list;
}

size_t registry_count(struct sd_server *srv)
{
    return srv->n_slots;
}

int registry_compare(struct sd_server *srv, const struct sd_export *e)
{
    struct export_slot *s = find_slot(srv, e->name);

    if (!s || !s->live || s->pending)
        return -ENOENT;
    return (int)sd_export_diff(s->live->cfg, e);
}
