/* SPDX-License-Identifier: MIT */
/*
 * The restore methods of sendensed's socket (docs/SENDENSED.md,
 * "Restore"), handlers of sdd_methods: params are checked here, the
 * work is daemon-restore.c's and libsdrestore's, and each event is
 * logged once, here.
 */
#include "config.h"

#include "catalog/consolidate.h"
#include "catalog/daemon.h"
#include "common/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* --- JSON shapes ------------------------------------------------------ */

static json_t *ref_json(const struct sdd_restore_point_ref *ref)
{
    return json_pack("{s:s, s:s, s:s, s:s}", "repository", ref->repository,
                     "vm", ref->vm, "disk", ref->disk, "id", ref->id);
}

static json_t *export_json(const struct sdd_restore_export *e)
{
    json_t *o = ref_json(&e->ref);

    if (o && json_object_update_new(o, json_pack("{s:s, s:s, s:I}",
            "name", e->name, "uri", e->uri,
            "created", (json_int_t)e->created)) < 0) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static json_t *volume_json(const struct sd_restore_volume *v)
{
    return json_pack("{s:s, s:s, s:I, s:I, s:s?, s:b, s:s?}",
                     "name", v->name, "kind", v->kind,
                     "offset", (json_int_t)v->offset,
                     "size", (json_int_t)v->size,
                     "fstype", v->fstype[0] ? v->fstype : NULL,
                     "mounted", v->mounted,
                     "note", v->note[0] ? v->note : NULL);
}

static json_t *mount_json(const struct sdd_restore_mount *m)
{
    json_t *o = ref_json(&m->ref), *vols = json_array();

    for (size_t i = 0; vols && i < sd_restore_volume_count(m->pt); i++)
        if (json_array_append_new(vols, volume_json(
                sd_restore_volume_get(m->pt, i))) < 0) {
            json_decref(vols);
            vols = NULL;
        }
    if (o && json_object_update_new(o, json_pack("{s:s, s:s, s:I, s:o*}",
            "mount", m->id, "export", m->export_name,
            "created", (json_int_t)m->created, "volumes", vols)) < 0) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static const char *ftype_name(enum sd_restore_ftype t)
{
    switch (t) {
    case SD_RESTORE_FILE: return "file";
    case SD_RESTORE_DIR: return "dir";
    case SD_RESTORE_SYMLINK: return "symlink";
    case SD_RESTORE_OTHER: break;
    }
    return "other";
}

static json_t *entry_json(const struct sd_restore_entry *e)
{
    return json_pack("{s:s, s:s, s:I, s:i, s:I}", "name", e->name,
                     "type", ftype_name(e->type), "size", (json_int_t)e->size,
                     "mode", (int)(e->mode & 07777),
                     "mtime", (json_int_t)e->mtime);
}

/* --- whole-disk exports ----------------------------------------------- */

int sdd_m_restore_export(void *ctx, struct jsonrpc_conn *conn,
                         json_t *params, struct jsonrpc_request *req)
{
    struct sdd_daemon *d = ctx;
    const char *vm = NULL, *disk = NULL, *id = NULL, *name = NULL;
    const char *repo = NULL;
    struct jsonrpc_param spec[] = {
        SDD_BACKUP_PARAMS(&vm, &disk, &id, true, &repo),
        JSONRPC_PARAM_STRING("name", false, &name),
        JSONRPC_PARAM_END,
    };
    struct sdd_restore_point_ref ref = { 0 };
    struct sdd_restore_export *e = NULL;
    struct sd_error err = { 0 };
    int ret = jsonrpc_params_parse(req, params, spec);

    (void)conn;
    if (ret < 0)
        return ret;
    /* Held while the export goes in: see daemon-tasks.h. */
    ret = sdd_hold_take(&d->holds, vm, "restore.export", SDD_HOLD_READ, &err);
    if (ret == 0) {
        ret = sdd_restore_resolve(&d->restore, repo, vm, disk, id, &ref,
                                  &err);
        if (ret == 0)
            ret = sdd_restore_export_add(&d->restore, &ref, name, &e, &err);
        sdd_hold_drop(&d->holds, vm, "restore.export");
    }
    if (ret < 0) {
        sd_log_warn("restore.export %s/%s/%s: %s", vm, disk, id, err.msg);
        return jsonrpc_reply_sd_error(req, &err);
    }
    sd_log_info("restore: export %s of %s/%s/%s added", e->name, vm, disk,
                id);
    return jsonrpc_reply_result(req, export_json(e));
}

int sdd_m_restore_unexport(void *ctx, struct jsonrpc_conn *conn,
                           json_t *params, struct jsonrpc_request *req)
{
    struct sdd_daemon *d = ctx;
    const char *name = NULL;
    struct jsonrpc_param spec[] = {
        JSONRPC_PARAM_STRING("name", true, &name),
        JSONRPC_PARAM_END,
    };
    struct sdd_restore_export *e;
    struct sd_error err = { 0 };
    int ret = jsonrpc_params_parse(req, params, spec);

    (void)conn;
    if (ret < 0)
        return ret;
    e = sdd_restore_export_find(&d->restore, name);
    if (!e)
        return jsonrpc_reply_errno(req, -ENOENT, "no restore export "
                                   "\"%.64s\"", name);
    ret = sdd_restore_export_remove(&d->restore, e, &err);
    if (ret < 0) {
        sd_log_warn("restore.unexport %s: %s", name, err.msg);
        return jsonrpc_reply_sd_error(req, &err);
    }
    sd_log_info("restore: export %s removed", name);
    return jsonrpc_reply_result(req, json_pack("{s:s}", "name", name));
}

int sdd_m_restore_list(void *ctx, struct jsonrpc_conn *conn,
                       json_t *params, struct jsonrpc_request *req)
{
    struct sdd_daemon *d = ctx;
    json_t *exports = json_array(), *mounts = json_array();
    int ret = jsonrpc_params_parse(req, params,
                                   (struct jsonrpc_param[]){ JSONRPC_PARAM_END });

    (void)conn;
    for (struct sdd_restore_export *e = d->restore.exports;
         ret == 0 && exports && e; e = e->next)
        if (json_array_append_new(exports, export_json(e)) < 0)
            ret = -ENOMEM;
    for (struct sdd_restore_mount *m = d->restore.mounts;
         ret == 0 && mounts && m; m = m->next)
        if (json_array_append_new(mounts, mount_json(m)) < 0)
            ret = -ENOMEM;
    if (ret < 0) {
        json_decref(exports);
        json_decref(mounts);
        return ret;
    }
    return jsonrpc_reply_result(req, json_pack("{s:o*, s:o*}",
                                               "exports", exports,
                                               "mounts", mounts));
}

/* --- mounts ----------------------------------------------------------- */

int sdd_m_restore_mount(void *ctx, struct jsonrpc_conn *conn,
                        json_t *params, struct jsonrpc_request *req)
{
    struct sdd_daemon *d = ctx;
    const char *vm = NULL, *disk = NULL, *id = NULL, *repo = NULL;
    struct jsonrpc_param spec[] = {
        SDD_BACKUP_PARAMS(&vm, &disk, &id, true, &repo),
        JSONRPC_PARAM_END,
    };
    struct sdd_restore_point_ref ref = { 0 };
    struct sdd_restore_mount *m = NULL;
    struct sd_error err = { 0 };
    int ret = jsonrpc_params_parse(req, params, spec);

    (void)conn;
    if (ret < 0)
        return ret;
    /* Held while the export goes in: see daemon-tasks.h. */
    ret = sdd_hold_take(&d->holds, vm, "restore.mount", SDD_HOLD_READ, &err);
    if (ret == 0) {
        ret = sdd_restore_resolve(&d->restore, repo, vm, disk, id, &ref,
                                  &err);
        if (ret == 0)
            ret = sdd_restore_mount_add(&d->restore, &ref, &m, &err);
        sdd_hold_drop(&d->holds, vm, "restore.mount");
    }
    if (ret < 0) {
        sd_log_warn("restore.mount %s/%s/%s: %s", vm, disk, id, err.msg);
        return jsonrpc_reply_sd_error(req, &err);
    }
    sd_log_info("restore: mount %s of %s/%s/%s: %zu volume(s)", m->id, vm,
                disk, id, sd_restore_volume_count(m->pt));
    return jsonrpc_reply_result(req, mount_json(m));
}

static int find_mount(struct sdd_daemon *d, struct jsonrpc_request *req,
                      const char *id, struct sdd_restore_mount **out)
{
    *out = sdd_restore_mount_use(&d->restore, id);
    if (!*out)
        return jsonrpc_reply_errno(req, -ENOENT, "no restore mount "
                                   "\"%.64s\"", id);
    return 0;
}

int sdd_m_restore_umount(void *ctx, struct jsonrpc_conn *conn,
                         json_t *params, struct jsonrpc_request *req)
{
    struct sdd_daemon *d = ctx;
    const char *id = NULL;
    struct jsonrpc_param spec[] = {
        JSONRPC_PARAM_STRING("mount", true, &id),
        JSONRPC_PARAM_END,
    };
    struct sdd_restore_mount *m;
    struct sd_error err = { 0 };
    int ret = jsonrpc_params_parse(req, params, spec);

    (void)conn;
    if (ret < 0 || (ret = find_mount(d, req, id, &m)) < 0)
        return ret;
    ret = sdd_restore_mount_remove(&d->restore, m, &err);
    if (ret < 0) {
        sd_log_warn("restore.umount %s: %s", id, err.msg);
        return jsonrpc_reply_sd_error(req, &err);
    }
    sd_log_info("restore: mount %s released", id);
    return jsonrpc_reply_result(req, json_pack("{s:s}", "mount", id));
}

/* What the file methods share: {mount, volume, path} resolved. */
struct file_target {
    struct sdd_restore_mount *m;
    size_t vol;
    const char *path;
};

static int find_target(struct sdd_daemon *d, struct jsonrpc_request *req,
                       const char *id, const char *volume,
                       struct file_target *t)
{
    int ret = find_mount(d, req, id, &t->m), i;

    if (ret < 0)
        return ret;
    i = sd_restore_volume_find(t->m->pt, volume);
    if (i < 0)
        return jsonrpc_reply_errno(req, -ENOENT, "mount %s has no volume "
                                   "\"%.128s\"", id, volume);
    if (!sd_restore_volume_get(t->m->pt, (size_t)i)->mounted)
        return jsonrpc_reply_errno(req, -ENODEV, "volume %s of mount %s is "
                                   "not mounted: %s", volume, id,
                                   sd_restore_volume_get(t->m->pt,
                                                         (size_t)i)->note);
    t->vol = (size_t)i;
    return 0;
}

/* Parse {mount, volume, path[, dest]} and find them. */
static int parse_target(struct sdd_daemon *d, struct jsonrpc_request *req,
                        json_t *params, struct file_target *t,
                        const char **dest)
{
    const char *id = NULL, *volume = NULL;
    struct jsonrpc_param spec[] = {
        JSONRPC_PARAM_STRING("mount", true, &id),
        JSONRPC_PARAM_STRING("volume", true, &volume),
        JSONRPC_PARAM_STRING("path", true, &t->path),
        dest ? (struct jsonrpc_param)JSONRPC_PARAM_STRING("dest", true, dest)
             : (struct jsonrpc_param)JSONRPC_PARAM_END,
        JSONRPC_PARAM_END,
    };
    int ret = jsonrpc_params_parse(req, params, spec);

    return ret < 0 ? ret : find_target(d, req, id, volume, t);
}

int sdd_m_restore_ls(void *ctx, struct jsonrpc_conn *conn, json_t *params,
                     struct jsonrpc_request *req)
{
    struct file_target t = { 0 };
    struct sd_restore_entry *v = NULL;
    struct sd_error err = { 0 };
    json_t *list;
    size_t n = 0;
    int ret = parse_target(ctx, req, params, &t, NULL);

    (void)conn;
    if (ret < 0)
        return ret;
    ret = sd_restore_list(t.m->pt, t.vol, t.path, &v, &n, &err);
    if (ret < 0)
        return jsonrpc_reply_sd_error(req, &err);
    list = json_array();
    for (size_t i = 0; list && i < n; i++)
        if (json_array_append_new(list, entry_json(&v[i])) < 0) {
            json_decref(list);
            list = NULL;
        }
    free(v);
    return jsonrpc_reply_result(req, json_pack("{s:o*}", "entries", list));
}

int sdd_m_restore_stat(void *ctx, struct jsonrpc_conn *conn,
                       json_t *params, struct jsonrpc_request *req)
{
    struct file_target t = { 0 };
    struct sd_restore_entry e;
    struct sd_error err = { 0 };
    int ret = parse_target(ctx, req, params, &t, NULL);

    (void)conn;
    if (ret < 0)
        return ret;
    ret = sd_restore_stat(t.m->pt, t.vol, t.path, &e, &err);
    if (ret < 0)
        return jsonrpc_reply_sd_error(req, &err);
    return jsonrpc_reply_result(req, entry_json(&e));
}

/* dest: absolute, and new (O_EXCL, no symlink followed at its end). */
static int open_dest(const char *dest, int *fd, struct sd_error *err)
{
    if (dest[0] != '/')
        return sd_error_set(err, -EINVAL, "dest: must be an absolute path");
    *fd = open(dest, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
               0600);
    if (*fd < 0)
        return sd_error_set(err, -errno, "%s: %s", dest, strerror(errno));
    return 0;
}

/* A file is copied, a directory becomes a tar archive; a partial dest
 * is removed. *what says which. */
static int extract_to(const struct file_target *t, const char *dest,
                      const char **what, struct sd_error *err)
{
    struct sd_restore_entry e;
    int fd = -1;
    int ret = sd_restore_stat(t->m->pt, t->vol, t->path, &e, err);

    if (ret == 0 && e.type != SD_RESTORE_FILE && e.type != SD_RESTORE_DIR)
        ret = sd_error_set(err, -EINVAL, "%s: only files and directories "
                           "can be extracted", t->path);
    if (ret == 0)
        ret = open_dest(dest, &fd, err);
    if (ret < 0)
        return ret;
    *what = e.type == SD_RESTORE_DIR ? "tar" : "file";
    ret = e.type == SD_RESTORE_DIR
              ? sd_restore_extract_tar(t->m->pt, t->vol, t->path, fd, err)
              : sd_restore_extract_file(t->m->pt, t->vol, t->path, fd, err);
    if (ret == 0 && fsync(fd) < 0)
        ret = sd_error_set(err, -errno, "%s: %s", dest, strerror(errno));
    if (close(fd) < 0 && ret == 0)
        ret = sd_error_set(err, -errno, "%s: %s", dest, strerror(errno));
    if (ret < 0)
        (void)unlink(dest);
    return ret;
}

/* restore.extract runs in a task: a folder's tar takes as long as the
 * copy. The mount's reader count keeps it up meanwhile. */
struct extract_args {
    struct file_target t;           /* path is ours */
    char *dest;
    const char *what;
};

static void extract_args_free(void *arg)
{
    struct extract_args *a = arg;

    if (a) {
        free((char *)a->t.path);
        free(a->dest);
        free(a);
    }
}

/* Task. */
static int run_extract(struct sdd_task *t, json_t **result,
                       struct sd_error *err)
{
    struct extract_args *a = t->arg;
    struct stat st;
    int ret;

    cat_test_point("extract");
    ret = extract_to(&a->t, a->dest, &a->what, err);

    if (ret == 0 && stat(a->dest, &st) < 0)
        ret = sd_error_set(err, -errno, "%s: %s", a->dest, strerror(errno));
    if (ret < 0) {
        sd_log_warn("restore.extract %s %s: %s", a->t.m->id, a->t.path,
                    err->msg);
        return ret;
    }
    sd_log_info("restore: mount %s: %s extracted to %s (%s)", a->t.m->id,
                a->t.path, a->dest, a->what);
    *result = json_pack("{s:s, s:s, s:I}", "dest", a->dest, "format",
                        a->what, "bytes", (json_int_t)st.st_size);
    return *result ? 0 : sd_error_set(err, -ENOMEM, "out of memory");
}

/* Back in the loop: the mount may go again, idle from now. */
static void extract_done(struct sdd_task *t)
{
    struct extract_args *a = t->arg;

    a->t.m->readers--;
    clock_gettime(CLOCK_MONOTONIC, &a->t.m->last_used);
}

int sdd_m_restore_extract(void *ctx, struct jsonrpc_conn *conn,
                          json_t *params, struct jsonrpc_request *req)
{
    struct sdd_daemon *d = ctx;
    struct file_target t = { 0 };
    struct extract_args *a;
    const char *dest = NULL;
    struct sd_error err = { 0 };
    int ret = parse_target(d, req, params, &t, &dest);

    (void)conn;
    if (ret < 0)
        return ret;
    a = calloc(1, sizeof(*a));
    if (!a || !(a->dest = strdup(dest)) || !(t.path = strdup(t.path))) {
        extract_args_free(a);
        return -ENOMEM;
    }
    a->t = t;
    t.m->readers++;
    ret = sdd_task_start(d, &(struct sdd_task_spec){
        .method = "restore.extract", .run = run_extract,
        .done = extract_done, .arg = a, .free_arg = extract_args_free },
        req, &err);
    if (ret < 0) {
        t.m->readers--;
        return jsonrpc_reply_sd_error(req, &err);
    }
    return JSONRPC_PENDING;
}
