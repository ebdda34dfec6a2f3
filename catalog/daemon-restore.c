/* SPDX-License-Identifier: MIT */
/*
 * The restore exports and mounts of sendensed: what each is made of, in
 * which order it is built and released, and what a new daemon clears
 * (daemon-restore.h has the picture). The JSON-RPC methods are in
 * daemon-restore-methods.c.
 *
 * A mount is built export first, then libsdrestore; released in the
 * reverse order. An export is removed without draining: its only client
 * is our own nbdfuse, gone by then, and a restore export held by a
 * forgotten client must not block the daemon.
 */
#include "config.h"

#include "catalog/daemon-restore.h"
#include "catalog/layout.h"
#include "catalog/nbd-client.h"
#include "catalog/repo.h"
#include "common/log.h"
#include "common/unix-socket.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>

/* --- start and stop --------------------------------------------------- */

void sdd_restore_ns(struct sdd_restore *r)
{
    struct sd_error err = { 0 };

    if (sd_restore_ns_setup(&err) < 0) {
        snprintf(r->ns_problem, sizeof(r->ns_problem), "no private mount "
                 "namespace for restore mounts: %.400s", err.msg);
        sd_log_warn("%s; restore.mount is disabled", r->ns_problem);
        return;
    }
    r->ns_ready = true;
}

static void remove_stale_exports(const struct sdd_config *cfg)
{
    struct sd_error err = { 0 };
    json_t *result = NULL, *e;
    size_t i;

    if (nbdc_call(cfg->nbd_control_socket, "export.list", NULL, &result,
                  &err) < 0) {
        sd_log_warn("restore: cannot list sendense-nbd's exports to remove"
                    " old restore exports: %s", err.msg);
        return;
    }
    json_array_foreach(json_object_get(result, "exports"), i, e) {
        const char *name = json_string_value(json_object_get(e, "name"));

        if (!name || strncmp(name, SDD_RESTORE_PREFIX,
                             strlen(SDD_RESTORE_PREFIX)) != 0)
            continue;
        if (nbdc_export_remove(cfg->nbd_control_socket, name, false,
                               &err) < 0 && err.code != -ENOENT)
            sd_log_warn("restore: old export %s: %s", name, err.msg);
        else
            sd_log_info("restore: removed export %s left by an earlier "
                        "sendensed", name);
    }
    json_decref(result);
}

/* Without its runtime folder (not root, say), only mounts are refused:
 * restore exports, backups and the catalog still work. */
static void start_runtime_dir(struct sdd_restore *r)
{
    const char *dir = r->cfg->restore_runtime_dir;
    struct sd_restore_cleanup rep = { 0 };
    struct sd_error err = { 0 };
    int ret = sd_mkdir_p(dir, 0700, &err);

    if (ret == 0)
        ret = sd_restore_cleanup_stale(dir, &rep, &err);
    if (ret < 0) {
        snprintf(r->ns_problem, sizeof(r->ns_problem), "restore_runtime_dir "
                 "%.200s: %.250s", dir, err.msg);
        sd_log_warn("%s; restore.mount is disabled", r->ns_problem);
        r->ns_ready = false;
        return;
    }
    if (rep.mounts || rep.loops || rep.processes || rep.folders ||
        rep.fuse_aborted)
        sd_log_info("restore: released what an earlier sendensed left: %u "
                    "mount(s), %u loop device(s), %u nbdfuse process(es), "
                    "%u folder(s), %u FUSE connection(s) aborted",
                    rep.mounts, rep.loops, rep.processes, rep.folders,
                    rep.fuse_aborted);
}

void sdd_restore_start(struct sdd_restore *r, const struct sdd_config *cfg)
{
    r->cfg = cfg;
    if (r->ns_ready)
        start_runtime_dir(r);
    remove_stale_exports(cfg);
}

void sdd_restore_stop(struct sdd_restore *r)
{
    struct sd_error err = { 0 };

    if (r->mounts || r->exports)
        sd_log_info("restore: stopping: releasing %zu mount(s) and %zu "
                    "export(s)", r->nmounts, r->nexports);

    while (r->mounts) {
        char id[sizeof(r->mounts->id)];

        memcpy(id, r->mounts->id, sizeof(id));
        if (sdd_restore_mount_remove(r, r->mounts, &err) < 0)
            sd_log_warn("restore: mount %s: %s", id, err.msg);
    }
    while (r->exports)
        if (sdd_restore_export_remove(r, r->exports, &err) < 0)
            sd_log_warn("restore: %s", err.msg);
}

static bool idle_since(const struct timespec *t, const struct timespec *now,
                       unsigned seconds)
{
    int64_t ms = (now->tv_sec - t->tv_sec) * 1000 +
                 (now->tv_nsec - t->tv_nsec) / 1000000;

    return ms >= (int64_t)seconds * 1000;
}

void sdd_restore_expire(struct sdd_restore *r)
{
    struct timespec now;
    struct sdd_restore_mount *m, *next;
    struct sd_error err = { 0 };

    if (!r->cfg)
        return;
    clock_gettime(CLOCK_MONOTONIC, &now);
    for (m = r->mounts; m; m = next) {
        next = m->next;
        if (m->readers ||
            !idle_since(&m->last_used, &now, r->cfg->mount_idle_timeout))
            continue;
        char id[sizeof(m->id)];

        memcpy(id, m->id, sizeof(id));
        sd_log_info("restore: mount %s (%s/%s/%s) unused for %u s: "
                    "released", m->id, m->ref.vm, m->ref.disk, m->ref.id,
                    r->cfg->mount_idle_timeout);
        if (sdd_restore_mount_remove(r, m, &err) < 0)
            sd_log_warn("restore: mount %s: %s", id, err.msg);
    }
}

/* --- backup points ---------------------------------------------------- */

void sdd_restore_ref_clear(struct sdd_restore_point_ref *ref)
{
    free(ref->repository);
    free(ref->vm);
    free(ref->disk);
    free(ref->id);
    free(ref->image);
    *ref = (struct sdd_restore_point_ref){ 0 };
}

static int find_point(const struct cat_repo *cat, const char *vm,
                      const char *disk, const char *id,
                      const struct cat_disk **out_disk, struct sd_error *err)
{
    const struct cat_vm *v = cat_repo_vm(cat, vm);
    const struct cat_disk *d = v ? cat_vm_disk(v, disk) : NULL;
    const struct cat_backup *b = d ? cat_disk_find(d, id) : NULL;

    if (!v)
        return sd_error_set(err, -ENOENT, "no VM \"%.128s\"", vm);
    if (!d)
        return sd_error_set(err, -ENOENT, "VM %s has no disk \"%.128s\"",
                            vm, disk);
    if (!b)
        return sd_error_set(err, -ENOENT, "disk %s of VM %s has no backup "
                            "\"%.64s\"", disk, vm, id);
    if (!cat_backup_usable(b))
        return sd_error_set(err, -EINVAL, "backup %s of %s/%s cannot be "
                            "restored: it or a backup it depends on is not "
                            "completed or is missing", id, vm, disk);
    *out_disk = d;
    return 0;
}

int sdd_restore_resolve(const struct sdd_restore *r, const char *repository,
                        const char *vm, const char *disk, const char *id,
                        struct sdd_restore_point_ref *ref,
                        struct sd_error *err)
{
    const struct sdd_repository *repo = sdd_config_repo(r->cfg, repository);
    const struct cat_disk *d = NULL;
    struct cat_repo *cat = NULL;
    int ret;

    if (!repo)
        return sd_error_set(err, -ENOENT, "no repository named \"%.128s\"",
                            repository);
    ret = cat_repo_open(repo->path, 0, &cat, err);
    if (ret == 0)
        ret = find_point(cat, vm, disk, id, &d, err);
    if (ret == 0) {
        *ref = (struct sdd_restore_point_ref){
            .repository = strdup(repo->name), .vm = strdup(vm),
            .disk = strdup(disk), .id = strdup(id),
            .image = cat_path_join(d->dir, id, CAT_IMAGE_EXT),
        };
        if (!ref->repository || !ref->vm || !ref->disk || !ref->id ||
            !ref->image) {
            sdd_restore_ref_clear(ref);
            ret = sd_error_set(err, -ENOMEM, "out of memory");
        }
    }
    cat_repo_free(cat);
    return ret;
}

static bool same_disk(const struct sdd_restore_point_ref *ref,
                      const char *repository, const char *vm,
                      const char *disk)
{
    return strcmp(ref->repository, repository) == 0 &&
           strcmp(ref->vm, vm) == 0 && strcmp(ref->disk, disk) == 0;
}

bool sdd_restore_disk_busy(const struct sdd_restore *r,
                           const char *repository, const char *vm,
                           const char *disk)
{
    for (const struct sdd_restore_export *e = r->exports; e; e = e->next)
        if (same_disk(&e->ref, repository, vm, disk))
            return true;
    for (const struct sdd_restore_mount *m = r->mounts; m; m = m->next)
        if (same_disk(&m->ref, repository, vm, disk))
            return true;
    return false;
}

/* --- whole-disk exports ----------------------------------------------- */

static int random_hex(char *out, size_t digits, struct sd_error *err)
{
    unsigned char bytes[16];
    size_t n = (digits + 1) / 2;

    if (n > sizeof(bytes) || getrandom(bytes, n, 0) != (ssize_t)n)
        return sd_error_set(err, -EIO, "getrandom: %s", strerror(errno));
    for (size_t i = 0; i < digits; i++)
        out[i] = "0123456789abcdef"[(bytes[i / 2] >> (i % 2 ? 0 : 4)) & 15];
    out[digits] = '\0';
    return 0;
}

/* A given name, prefixed; or restore-<disk>-<id>-<8 hex>. */
static int export_name(const char *given, const struct sdd_restore_point_ref *ref,
                       char out[CAT_EXPORT_NAME_MAX + 1], struct sd_error *err)
{
    const char *prefix = SDD_RESTORE_PREFIX;
    char tag[9];
    int n, ret;

    if (given) {
        ret = cat_name_check("name", given, err);
        if (ret < 0)
            return ret;
        if (strncmp(given, prefix, strlen(prefix)) == 0)
            prefix = "";
        n = snprintf(out, CAT_EXPORT_NAME_MAX + 1, "%s%s", prefix, given);
    } else {
        ret = random_hex(tag, 8, err);
        if (ret < 0)
            return ret;
        n = snprintf(out, CAT_EXPORT_NAME_MAX + 1, "%s%s-%s-%s", prefix,
                     ref->disk, ref->id, tag);
    }
    if (n < 0 || n > CAT_EXPORT_NAME_MAX)
        return sd_error_set(err, -EINVAL, "export name %s%s...: longer than"
                            " %d bytes", prefix, given ? given : ref->disk,
                            CAT_EXPORT_NAME_MAX);
    return 0;
}

struct sdd_restore_export *sdd_restore_export_find(struct sdd_restore *r,
                                                   const char *name)
{
    for (struct sdd_restore_export *e = r->exports; e; e = e->next)
        if (strcmp(e->name, name) == 0)
            return e;
    return NULL;
}

static void export_free(struct sdd_restore_export *e)
{
    if (!e)
        return;
    sdd_restore_ref_clear(&e->ref);
    free(e->uri);
    free(e);
}

static int export_check_new(struct sdd_restore *r, const char *name,
                            struct sd_error *err)
{
    if (r->nexports >= SDD_RESTORE_EXPORTS_MAX)
        return sd_error_set(err, -EBUSY, "%d restore exports already: "
                            "remove one first", SDD_RESTORE_EXPORTS_MAX);
    if (sdd_restore_export_find(r, name) ||
        strncmp(name, SDD_RESTORE_MOUNT_PREFIX,
                strlen(SDD_RESTORE_MOUNT_PREFIX)) == 0)
        return sd_error_set(err, -EEXIST, "export %s: the name is taken",
                            name);
    return 0;
}

int sdd_restore_export_add(struct sdd_restore *r,
                           struct sdd_restore_point_ref *ref,
                           const char *name, struct sdd_restore_export **out,
                           struct sd_error *err)
{
    struct sdd_restore_export *e = calloc(1, sizeof(*e));
    int ret;

    if (!e) {
        sdd_restore_ref_clear(ref);
        return sd_error_set(err, -ENOMEM, "out of memory");
    }
    e->ref = *ref;
    *ref = (struct sdd_restore_point_ref){ 0 };
    ret = export_name(name, &e->ref, e->name, err);
    if (ret == 0)
        ret = export_check_new(r, e->name, err);
    if (ret == 0) {
        e->uri = sdd_config_export_uri(r->cfg, e->name);
        if (!e->uri)
            ret = sd_error_set(err, -ENOMEM, "out of memory");
    }
    if (ret == 0)
        ret = nbdc_export_add(r->cfg->nbd_control_socket, e->name,
                              e->ref.image, "qcow2", true, err);
    if (ret < 0) {
        export_free(e);
        return ret;
    }
    e->created = time(NULL);
    e->next = r->exports;
    r->exports = e;
    r->nexports++;
    *out = e;
    return 0;
}

static void export_unlink(struct sdd_restore *r, struct sdd_restore_export *e)
{
    for (struct sdd_restore_export **p = &r->exports; *p; p = &(*p)->next)
        if (*p == e) {
            *p = e->next;
            r->nexports--;
            return;
        }
}

/* Forgotten even when sendense-nbd cannot be told: the next start
 * removes every restore-* export. */
int sdd_restore_export_remove(struct sdd_restore *r,
                              struct sdd_restore_export *e,
                              struct sd_error *err)
{
    int ret = nbdc_export_remove(r->cfg->nbd_control_socket, e->name, false,
                                 err);

    if (ret == -ENOENT)
        ret = 0;
    export_unlink(r, e);
    export_free(e);
    return ret;
}

/* --- mounts ----------------------------------------------------------- */

/* sendense-nbd's unix socket: the configured one, else the first unix
 * listener server.info reports (its text is the path). */
static int nbd_unix_socket(const struct sdd_config *cfg, char **out,
                           struct sd_error *err)
{
    json_t *result = NULL, *l;
    size_t i;
    int ret;

    if (cfg->restore_nbd_socket) {
        *out = strdup(cfg->restore_nbd_socket);
        return *out ? 0 : sd_error_set(err, -ENOMEM, "out of memory");
    }
    ret = nbdc_call(cfg->nbd_control_socket, "server.info", NULL, &result,
                    err);
    if (ret < 0)
        return ret;
    *out = NULL;
    json_array_foreach(json_object_get(result, "listen"), i, l) {
        const char *text = json_string_value(l);

        if (text && text[0] == '/') {
            *out = strdup(text);
            break;
        }
    }
    json_decref(result);
    if (!*out)
        return sd_error_set(err, -ENOTSUP, "sendense-nbd listens on no unix "
                            "socket (set restore_nbd_socket, or add a unix "
                            "listener)");
    return 0;
}

static int mount_export_add(const struct sdd_config *cfg,
                            const struct sdd_restore_mount *m,
                            struct sd_error *err)
{
    /* allow: [] lets no network client in; the unix socket is ours. */
    json_t *params = json_pack("{s:s, s:s, s:s, s:b, s:s, s:[]}",
                               "name", m->export_name, "path", m->ref.image,
                               "format", "qcow2", "readonly", 0,
                               "overlay", "temporary", "allow");
    json_t *result = NULL;
    int ret;

    if (!params)
        return sd_error_set(err, -ENOMEM, "out of memory");
    ret = nbdc_call(cfg->nbd_control_socket, "export.add", params, &result,
                    err);
    json_decref(result);
    return ret;
}

static int mount_uri(const struct sdd_config *cfg,
                     const struct sdd_restore_mount *m, char **uri,
                     struct sd_error *err)
{
    char *sock = NULL;
    int ret = nbd_unix_socket(cfg, &sock, err);

    if (ret < 0)
        return ret;
    if (asprintf(uri, "nbd+unix:///%s?socket=%s", m->export_name, sock) < 0)
        ret = sd_error_set(err, -ENOMEM, "out of memory");
    free(sock);
    return ret;
}

static int mount_check_new(const struct sdd_restore *r, struct sd_error *err)
{
    if (!r->ns_ready)
        return sd_error_set(err, -ENOTSUP, "%s", r->ns_problem);
    if (r->nmounts >= SDD_RESTORE_MOUNTS_MAX)
        return sd_error_set(err, -EBUSY, "%d restore mounts already: "
                            "release one first", SDD_RESTORE_MOUNTS_MAX);
    return 0;
}

/* Export, then libsdrestore; on failure, what was done is undone. */
static int mount_build(struct sdd_restore *r, struct sdd_restore_mount *m,
                       struct sd_error *err)
{
    char *uri = NULL;
    int ret = mount_export_add(r->cfg, m, err);

    if (ret < 0)
        return ret;
    ret = mount_uri(r->cfg, m, &uri, err);
    if (ret == 0)
        ret = sd_restore_mount(r->cfg->restore_runtime_dir, m->id, uri,
                               &m->pt, err);
    free(uri);
    if (ret < 0) {
        struct sd_error e2 = { 0 };

        if (nbdc_export_remove(r->cfg->nbd_control_socket, m->export_name,
                               false, &e2) < 0 && e2.code != -ENOENT)
            sd_log_warn("restore: export %s: %s", m->export_name, e2.msg);
    }
    return ret;
}

static void mount_free(struct sdd_restore_mount *m)
{
    if (!m)
        return;
    sdd_restore_ref_clear(&m->ref);
    free(m);
}

int sdd_restore_mount_add(struct sdd_restore *r,
                          struct sdd_restore_point_ref *ref,
                          struct sdd_restore_mount **out,
                          struct sd_error *err)
{
    struct sdd_restore_mount *m = calloc(1, sizeof(*m));
    char tag[9];
    int ret;

    if (!m) {
        sdd_restore_ref_clear(ref);
        return sd_error_set(err, -ENOMEM, "out of memory");
    }
    m->ref = *ref;
    *ref = (struct sdd_restore_point_ref){ 0 };
    ret = mount_check_new(r, err);
    if (ret == 0)
        ret = random_hex(tag, 8, err);
    if (ret == 0) {
        snprintf(m->id, sizeof(m->id), "mnt-%s", tag);
        snprintf(m->export_name, sizeof(m->export_name), "%s%s",
                 SDD_RESTORE_MOUNT_PREFIX, tag);
        ret = mount_build(r, m, err);
    }
    if (ret < 0) {
        mount_free(m);
        return ret;
    }
    m->created = time(NULL);
    clock_gettime(CLOCK_MONOTONIC, &m->last_used);
    m->next = r->mounts;
    r->mounts = m;
    r->nmounts++;
    *out = m;
    return 0;
}

struct sdd_restore_mount *sdd_restore_mount_use(struct sdd_restore *r,
                                                const char *id)
{
    for (struct sdd_restore_mount *m = r->mounts; m; m = m->next)
        if (strcmp(m->id, id) == 0) {
            clock_gettime(CLOCK_MONOTONIC, &m->last_used);
            return m;
        }
    return NULL;
}

int sdd_restore_mount_remove(struct sdd_restore *r,
                             struct sdd_restore_mount *m,
                             struct sd_error *err)
{
    struct sd_error e2 = { 0 };
    int ret, ret2;

    if (m->readers)
        return sd_error_set(err, -EBUSY, "busy: mount %s: %u extraction(s) "
                            "running", m->id, m->readers);
    ret = sd_restore_unmount(m->pt, err);
    ret2 = nbdc_export_remove(r->cfg->nbd_control_socket, m->export_name,
                              false, &e2);

    if (ret2 < 0 && ret2 != -ENOENT && ret == 0) {
        *err = e2;
        ret = ret2;
    }
    for (struct sdd_restore_mount **p = &r->mounts; *p; p = &(*p)->next)
        if (*p == m) {
            *p = m->next;
            r->nmounts--;
            break;
        }
    mount_free(m);
    return ret;
}
