/* SPDX-License-Identifier: MIT */
/*
 * The methods that read the catalog: backup.list, backup.show and
 * backup.chain. Each scans the repository afresh (repo.h): the files on
 * disk are the truth, whatever jobs this daemon remembers.
 */
#include "config.h"

#include "catalog/daemon.h"
#include "catalog/repo.h"

#include <errno.h>
#include <string.h>

/* A backup as the methods show it: its sidecar plus where it lives and
 * whether its chain can be restored. */
static json_t *backup_json(const char *repo, const struct cat_vm *vm,
                           const struct cat_disk *d, const struct cat_backup *b)
{
    json_t *o = cat_sidecar_to_json(b->sc);

    if (o && json_object_update_new(o, json_pack(
            "{s:s, s:s, s:s, s:b, s:b, s:b}", "repository", repo,
            "vm", vm->info->context_id, "disk", d->name,
            "has_image", b->has_image, "orphan", b->orphan,
            "usable", cat_backup_usable(b))) < 0) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static int open_repo(struct jsonrpc_request *req,
                     const struct sdd_repository *repo,
                     struct cat_repo **out)
{
    struct sd_error err = { 0 };
    int ret = cat_repo_open(repo->path, CAT_REPO_CREATE, out, &err);

    if (ret < 0)
        return jsonrpc_reply_sd_error(req, &err);
    return 0;
}

static int pick_repo(struct sdd_daemon *d, struct jsonrpc_request *req,
                     const char *name, const struct sdd_repository **out)
{
    *out = sdd_config_repo(d->cfg, name);
    if (!*out)
        return jsonrpc_reply_errno(req, -ENOENT, "no repository named "
                                   "\"%.128s\"", name);
    return 0;
}

/* --- backup.list ------------------------------------------------------ */

static int list_vm(json_t *list, const char *repo, const struct cat_vm *vm)
{
    for (size_t i = 0; i < vm->ndisks; i++) {
        const struct cat_disk *d = &vm->disks[i];

        for (size_t k = 0; k < d->nbackups; k++)
            if (json_array_append_new(list, backup_json(repo, vm, d,
                                                        d->backups[k])) < 0)
                return -ENOMEM;
    }
    return 0;
}

static int list_repo(struct jsonrpc_request *req,
                     const struct sdd_repository *repo, const char *vm,
                     json_t *list)
{
    struct cat_repo *catalog = NULL;
    int ret = open_repo(req, repo, &catalog);

    for (size_t v = 0; ret == 0 && v < catalog->nvms; v++)
        if (!vm || strcmp(catalog->vms[v].info->context_id, vm) == 0)
            ret = list_vm(list, repo->name, &catalog->vms[v]);
    cat_repo_free(catalog);
    return ret;
}

int sdd_m_backup_list(void *ctx, struct jsonrpc_conn *conn, json_t *params,
                      struct jsonrpc_request *req)
{
    struct sdd_daemon *d = ctx;
    const char *vm = NULL, *repo_name = NULL;
    struct jsonrpc_param spec[] = {
        JSONRPC_PARAM_STRING("vm", false, &vm),
        JSONRPC_PARAM_STRING("repository", false, &repo_name),
        JSONRPC_PARAM_END,
    };
    const struct sdd_repository *repo = NULL;
    json_t *list;
    int ret = jsonrpc_params_parse(req, params, spec);

    (void)conn;
    if (ret < 0 || (repo_name && (ret = pick_repo(d, req, repo_name,
                                                  &repo)) < 0))
        return ret;
    list = json_array();
    if (!list)
        return -ENOMEM;
    for (size_t i = 0; ret == 0 && i < d->cfg->nrepos; i++)
        if (!repo || repo == &d->cfg->repos[i])
            ret = list_repo(req, &d->cfg->repos[i], vm, list);
    if (ret < 0) {
        json_decref(list);
        return ret;
    }
    return jsonrpc_reply_result(req, json_pack("{s:o}", "backups", list));
}

/* --- backup.show and backup.chain ------------------------------------- */

/* Where one disk's backups are: the repository scan and the disk. */
struct disk_ref {
    const struct sdd_repository *repo;
    struct cat_repo *catalog;
    const struct cat_vm *vm;
    const struct cat_disk *disk;
};

static int find_disk(struct sdd_daemon *d, struct jsonrpc_request *req,
                     const char *repo_name, const char *vm, const char *disk,
                     struct disk_ref *ref)
{
    int ret = pick_repo(d, req, repo_name, &ref->repo);

    if (ret == 0)
        ret = open_repo(req, ref->repo, &ref->catalog);
    if (ret < 0)
        return ret;
    ref->vm = cat_repo_vm(ref->catalog, vm);
    if (!ref->vm)
        return jsonrpc_reply_errno(req, -ENOENT, "no VM \"%.128s\" in "
                                   "repository %s", vm, ref->repo->name);
    ref->disk = cat_vm_disk(ref->vm, disk);
    if (!ref->disk)
        return jsonrpc_reply_errno(req, -ENOENT, "VM %s has no disk "
                                   "\"%.128s\"", vm, disk);
    return 0;
}

int sdd_m_backup_show(void *ctx, struct jsonrpc_conn *conn, json_t *params,
                      struct jsonrpc_request *req)
{
    const char *vm = NULL, *disk = NULL, *id = NULL, *repo = NULL;
    struct jsonrpc_param spec[] = {
        SDD_BACKUP_PARAMS(&vm, &disk, &id, true, &repo),
        JSONRPC_PARAM_END,
    };
    struct disk_ref ref = { 0 };
    const struct cat_backup *b;
    int ret = jsonrpc_params_parse(req, params, spec);

    (void)conn;
    if (ret == 0)
        ret = find_disk(ctx, req, repo, vm, disk, &ref);
    if (ret == 0) {
        b = cat_disk_find(ref.disk, id);
        ret = b ? jsonrpc_reply_result(req, backup_json(ref.repo->name,
                                                        ref.vm, ref.disk, b))
                : jsonrpc_reply_errno(req, -ENOENT, "disk %s of VM %s has "
                                      "no backup \"%.64s\"", disk, vm, id);
    }
    cat_repo_free(ref.catalog);
    return ret;
}

static int reply_chain(struct jsonrpc_request *req, const struct disk_ref *ref,
                       const struct cat_backup *top)
{
    struct cat_backup **chain = NULL;
    struct sd_error err = { 0 };
    json_t *list;
    size_t n = 0;
    int ret = cat_chain_of(ref->disk, top, &chain, &n, &err);

    if (ret < 0)
        return jsonrpc_reply_sd_error(req, &err);
    list = json_array();
    for (size_t i = 0; list && i < n; i++)
        if (json_array_append_new(list, backup_json(ref->repo->name, ref->vm,
                                                    ref->disk, chain[i])) < 0) {
            json_decref(list);
            list = NULL;
        }
    free(chain);
    return jsonrpc_reply_result(req, json_pack(
        "{s:s, s:s, s:s, s:s, s:b, s:o*}", "repository", ref->repo->name,
        "vm", ref->vm->info->context_id, "disk", ref->disk->name,
        "id", top->sc->id, "usable", cat_backup_usable(top), "chain", list));
}

int sdd_m_backup_chain(void *ctx, struct jsonrpc_conn *conn, json_t *params,
                       struct jsonrpc_request *req)
{
    const char *vm = NULL, *disk = NULL, *id = NULL, *repo = NULL;
    struct jsonrpc_param spec[] = {
        SDD_BACKUP_PARAMS(&vm, &disk, &id, false, &repo),
        JSONRPC_PARAM_END,
    };
    struct disk_ref ref = { 0 };
    const struct cat_backup *top = NULL;
    int ret = jsonrpc_params_parse(req, params, spec);

    (void)conn;
    if (ret == 0)
        ret = find_disk(ctx, req, repo, vm, disk, &ref);
    if (ret == 0) {
        /* Without an id: the chain a restore of "latest" would use. */
        top = id ? cat_disk_find(ref.disk, id)
                 : cat_disk_latest_completed(ref.disk);
        ret = top ? reply_chain(req, &ref, top)
                  : jsonrpc_reply_errno(req, -ENOENT, id ? "disk %s of VM %s"
                                        " has no backup \"%.64s\"" : "disk %s"
                                        " of VM %s has no usable completed "
                                        "backup%.0s", disk, vm, id ? id : "");
    }
    cat_repo_free(ref.catalog);
    return ret;
}
