/* SPDX-License-Identifier: MIT */
/*
 * The methods that change chains (docs/SENDENSED.md, "Chains"):
 * backup.delete, backup.prune, backup.verify, repo.cleanup; the prune
 * run after each completed backup; and, at start, the recovery of
 * consolidations a killed daemon left half done.
 *
 * delete, prune, verify and the prune after a backup run as tasks
 * (daemon-tasks.h), in a thread of their own: they may rewrite gigabytes.
 * A task holds the VM it works on, which keeps jobs (and other tasks)
 * off it; code below marked "task" runs in that thread and touches only
 * its arguments, the config and the holds.
 *
 * Every change starts from a fresh scan of the repository and refuses a
 * disk that is in use: the VM held by a job, or a sendense-nbd export of
 * a file in the disk's folder (restore, or a client reading a point). Removing a backup removes its sidecar first, durably, then
 * its image: a crash in between leaves an image without sidecar, which
 * the scan reports and repo.cleanup removes, never a listed backup
 * without its data.
 */
#include "config.h"

#include "catalog/checksum.h"
#include "catalog/consolidate.h"
#include "catalog/daemon.h"
#include "catalog/repo.h"
#include "catalog/retention.h"
#include "common/atomic-file.h"
#include "common/log.h"
#include "qcow2/img-ops.h"
#include "qcow2/qcow2-check.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* One disk of one VM in a fresh scan. */
struct chain_ref {
    const struct sdd_repository *repo;
    struct cat_repo *catalog;
    const struct cat_vm *vm;
    struct cat_disk *disk;
};

static void ref_clear(struct chain_ref *ref)
{
    cat_repo_free(ref->catalog);
    ref->catalog = NULL;
    ref->vm = NULL;
    ref->disk = NULL;
}

/* Scan again (after a change) and find vm's disk. */
static int ref_load(struct chain_ref *ref, const char *vm, const char *disk,
                    struct sd_error *err)
{
    int ret;

    ref_clear(ref);
    ret = cat_repo_open(ref->repo->path, CAT_REPO_CREATE, &ref->catalog, err);
    if (ret < 0)
        return ret;
    ref->vm = cat_repo_vm(ref->catalog, vm);
    if (!ref->vm)
        return sd_error_set(err, -ENOENT, "no VM \"%.128s\" in repository "
                            "%s", vm, ref->repo->name);
    ref->disk = disk ? cat_vm_disk(ref->vm, disk) : NULL;
    if (disk && !ref->disk)
        return sd_error_set(err, -ENOENT, "VM %s has no disk \"%.128s\"",
                            vm, disk);
    return 0;
}

/* --- in use? ---------------------------------------------------------- */

static bool same_dir(const char *a, const char *b)
{
    char ra[PATH_MAX], rb[PATH_MAX];

    return realpath(a, ra) && realpath(b, rb) && strcmp(ra, rb) == 0;
}

static bool export_in(json_t *e, const char *dir)
{
    const char *path = json_string_value(json_object_get(e, "path"));
    char *copy = path ? strdup(path) : NULL;
    char *slash = copy ? strrchr(copy, '/') : NULL;
    bool in = false;

    if (slash) {
        *slash = '\0';
        in = same_dir(copy[0] ? copy : "/", dir);
    }
    free(copy);
    return in;
}

/* -EBUSY when an export reads or writes a file of the disk's folder (the
 * VM's hold keeps jobs away). A sendense-nbd that does not answer has no
 * export open. */
static int disk_busy(const struct sdd_config *cfg, const char *vm,
                     const struct cat_disk *disk, struct sd_error *err)
{
    json_t *res = NULL, *e;
    size_t i;
    int ret;

    ret = nbdc_call(cfg->nbd_control_socket, "export.list", NULL, &res,
                    err);
    if (ret == -ENOTCONN) {
        sd_error_clear(err);
        return 0;
    }
    if (ret < 0)
        return ret;
    json_array_foreach(json_object_get(res, "exports"), i, e) {
        if (export_in(e, disk->dir)) {
            ret = sd_error_set(err, -EBUSY, "busy: export %s is open on %s "
                               "of VM %s", json_string_value(
                                   json_object_get(e, "name")),
                               disk->name, vm);
            break;
        }
    }
    json_decref(res);
    return ret;
}

/* Finish a consolidation a crash interrupted before touching the disk. */
static int settle_disk(const struct cat_disk *disk, struct sd_error *err)
{
    int ret = cat_consolidate_recover(disk->dir, err);

    if (ret > 0)
        sd_log_info("%s: finished an interrupted consolidation", disk->dir);
    return ret < 0 ? ret : 0;
}

/* --- removal ---------------------------------------------------------- */

static int remove_backup(const struct cat_disk *disk, const char *id,
                         struct sd_error *err)
{
    char *sidecar = cat_path_join(disk->dir, id, CAT_SIDECAR_EXT);
    char *image = cat_path_join(disk->dir, id, CAT_IMAGE_EXT);
    int ret = sidecar && image ? 0 : sd_error_set(err, -ENOMEM,
                                                  "out of memory");

    if (ret == 0)
        ret = sd_durable_remove(sidecar, err);
    if (ret == 0 || ret == -ENOENT)
        ret = sd_durable_remove(image, err);
    if (ret == -ENOENT) {
        sd_error_clear(err);
        ret = 0;
    }
    free(sidecar);
    free(image);
    return ret;
}

static bool depends_on(const struct cat_backup *b, const struct cat_backup *a)
{
    for (b = b->parent; b; b = b->parent)
        if (b == a)
            return true;
    return false;
}

static int add_id(json_t *list, const char *id)
{
    return json_array_append_new(list, json_string(id)) < 0 ? -ENOMEM : 0;
}

/* b and everything that depends on it, newest first. */
static int cascade(const struct cat_disk *disk, const struct cat_backup *b,
                   json_t *removed, struct sd_error *err)
{
    int ret = 0;

    for (size_t k = disk->nbackups; ret == 0 && k-- > 0; ) {
        const struct cat_backup *c = disk->backups[k];

        if (c == b || depends_on(c, b)) {
            ret = remove_backup(disk, c->sc->id, err);
            if (ret == 0)
                ret = add_id(removed, c->sc->id);
        }
    }
    return ret;
}

static int merge_away(struct chain_ref *ref, const struct cat_backup *b,
                      enum cat_consolidation mode, json_t *res,
                      struct sd_error *err)
{
    const struct cat_disk *disk = ref->disk;
    struct cat_backup **kids = NULL;
    char new_id[CAT_ID_LEN + 1];
    size_t n = 0;
    int ret = cat_disk_children(disk, b, &kids, &n);

    if (ret < 0)
        return sd_error_set(err, ret, "out of memory");
    if (n == 0) {                   /* nothing to merge into */
        ret = remove_backup(disk, b->sc->id, err);
        if (ret == 0)
            ret = add_id(json_object_get(res, "removed"), b->sc->id);
    } else if (b->sc->type != CAT_TYPE_INCR && n == 1) {
        ret = cat_consolidate(disk, b, kids[0], mode, new_id, err);
        if (ret == 0)
            ret = json_object_set_new(res, "merged_into", json_string(new_id));
    } else if (b->sc->type != CAT_TYPE_INCR && n > 1) {
        ret = sd_error_set(err, -EBUSY, "%s has %zu dependent backups: a "
                           "full merges into exactly one", b->sc->id, n);
    } else {
        ret = cat_merge_incremental(disk, b, err);
        if (ret == 0)
            ret = add_id(json_object_get(res, "removed"), b->sc->id);
    }
    free(kids);
    return ret;
}

/* --- backup.delete ---------------------------------------------------- */

enum delete_mode { DELETE_REFUSE, DELETE_MERGE, DELETE_CASCADE };

static int delete_on_disk(const struct sdd_config *cfg,
                          struct chain_ref *ref,
                          const char *vm, const char *id,
                          enum delete_mode mode, json_t *res,
                          struct sd_error *err)
{
    const struct cat_backup *b = cat_disk_find(ref->disk, id);
    int ret;

    if (!b)
        return sd_error_set(err, -ENOENT, "disk %s of VM %s has no backup "
                            "\"%.64s\"", ref->disk->name, vm, id);
    ret = disk_busy(cfg, vm, ref->disk, err);
    if (ret == 0 && mode == DELETE_REFUSE)
        ret = cat_disk_can_delete(ref->disk, b, err);
    if (ret < 0)
        return ret;
    if (mode == DELETE_CASCADE || mode == DELETE_REFUSE)
        return cascade(ref->disk, b, json_object_get(res, "removed"), err);
    return merge_away(ref, b, ref->repo->consolidation, res, err);
}

static const char *const delete_mode_names[] = { "refuse", "merge",
                                                 "cascade" };

static int parse_delete_mode(struct jsonrpc_request *req, const char *text,
                             enum delete_mode *out)
{
    for (int i = 0; i < 3; i++)
        if (strcmp(text, delete_mode_names[i]) == 0) {
            *out = (enum delete_mode)i;
            return 0;
        }
    return jsonrpc_reply_error(req, JSONRPC_INVALID_PARAMS,
                               json_pack("{s:s}", "param", "mode"),
                               "mode: expected refuse, merge or cascade");
}

/* Delete id on one disk of vm (a fresh scan per disk: an earlier one
 * may have changed things). */
static int delete_disk(const struct sdd_config *cfg, struct chain_ref *ref,
                       const char *vm, const char *disk, const char *id,
                       enum delete_mode mode, json_t *results,
                       struct sd_error *err)
{
    json_t *res = json_pack("{s:s, s:[]}", "disk", disk, "removed");
    int ret = res ? ref_load(ref, vm, disk, err) : -ENOMEM;

    if (ret == 0)
        ret = settle_disk(ref->disk, err);
    if (ret == 0)
        ret = ref_load(ref, vm, disk, err);
    if (ret == 0)
        ret = delete_on_disk(cfg, ref, vm, id, mode, res, err);
    if (ret == 0)
        ret = json_array_append(results, res) < 0 ? -ENOMEM : 0;
    json_decref(res);
    if (ret == -ENOMEM && err->code == 0)
        sd_error_set(err, ret, "out of memory");
    return ret;
}

/* The disks of vm with a backup id, or just disk. */
static int delete_targets(struct chain_ref *ref, const char *vm,
                          const char *disk, const char *id, json_t *names,
                          struct sd_error *err)
{
    int ret = ref_load(ref, vm, disk, err);

    if (ret < 0 || disk)
        return ret < 0 ? ret : add_id(names, disk);
    for (size_t i = 0; i < ref->vm->ndisks; i++)
        if (cat_disk_find(&ref->vm->disks[i], id))
            ret = ret ? ret : add_id(names, ref->vm->disks[i].name);
    if (ret == 0 && json_array_size(names) == 0)
        ret = sd_error_set(err, -ENOENT, "VM %s has no backup \"%.64s\"",
                           vm, id);
    return ret;
}

/* A request about one backup (delete, verify), copied out of its params
 * for its task. */
struct backup_args {
    const struct sdd_repository *repo;
    char *vm, *disk, *id;           /* disk may be NULL (delete) */
    enum delete_mode mode;          /* delete */
    bool with_checksum;             /* verify */
};

static void backup_args_free(void *arg)
{
    struct backup_args *a = arg;

    if (a) {
        free(a->vm);
        free(a->disk);
        free(a->id);
        free(a);
    }
}

/* *out gets the args, or stays NULL after a reply saying why not (an
 * unknown repository) or with -ENOMEM returned. */
static int backup_args_new(struct sdd_daemon *d, struct jsonrpc_request *req,
                           const char *repo, const char *vm,
                           const char *disk, const char *id,
                           struct backup_args **out)
{
    struct backup_args *a;

    *out = NULL;
    if (!sdd_config_repo(d->cfg, repo))
        return jsonrpc_reply_errno(req, -ENOENT, "no repository named "
                                   "\"%.128s\"", repo);
    a = calloc(1, sizeof(*a));
    if (!a || !(a->vm = strdup(vm)) || !(a->id = strdup(id)) ||
        (disk && !(a->disk = strdup(disk)))) {
        backup_args_free(a);
        return -ENOMEM;
    }
    a->repo = sdd_config_repo(d->cfg, repo);
    *out = a;
    return 0;
}

/* Task. */
static int run_delete(struct sdd_task *t, json_t **result,
                      struct sd_error *err)
{
    const struct backup_args *a = t->arg;
    struct chain_ref ref = { .repo = a->repo };
    json_t *results = json_array(), *names = json_array(), *v;
    size_t i;
    int ret = results && names ? 0 : sd_error_set(err, -ENOMEM,
                                                  "out of memory");

    if (ret == 0)
        ret = delete_targets(&ref, a->vm, a->disk, a->id, names, err);
    json_array_foreach(names, i, v) {
        if (ret < 0)
            break;
        ret = delete_disk(t->d->cfg, &ref, a->vm, json_string_value(v),
                          a->id, a->mode, results, err);
    }
    ref_clear(&ref);
    if (ret < 0) {
        sd_log_warn("backup.delete %s/%s: %s", a->vm, a->id, err->msg);
    } else {
        sd_log_info("backup.delete %s/%s (%s): done", a->vm, a->id,
                    delete_mode_names[a->mode]);
        *result = json_pack("{s:s, s:s, s:O}", "vm", a->vm, "id", a->id,
                            "disks", results);
        if (!*result)
            ret = sd_error_set(err, -ENOMEM, "out of memory");
    }
    json_decref(results);
    json_decref(names);
    return ret;
}

int sdd_m_backup_delete(void *ctx, struct jsonrpc_conn *conn, json_t *params,
                        struct jsonrpc_request *req)
{
    struct sdd_daemon *d = ctx;
    const char *vm = NULL, *disk = NULL, *id = NULL, *repo = NULL;
    const char *mode_text = "refuse";
    struct jsonrpc_param spec[] = {
        JSONRPC_PARAM_STRING("vm", true, &vm),
        JSONRPC_PARAM_STRING("disk", false, &disk),
        JSONRPC_PARAM_STRING("id", true, &id),
        JSONRPC_PARAM_STRING("mode", false, &mode_text),
        JSONRPC_PARAM_STRING("repository", false, &repo),
        JSONRPC_PARAM_END,
    };
    struct backup_args *a = NULL;
    enum delete_mode mode = DELETE_REFUSE;
    int ret = jsonrpc_params_parse(req, params, spec);

    (void)conn;
    if (ret == 0)
        ret = parse_delete_mode(req, mode_text, &mode);
    if (ret == 0)
        ret = backup_args_new(d, req, repo, vm, disk, id, &a);
    if (!a)
        return ret;
    a->mode = mode;
    return sdd_task_reply_later(d, &(struct sdd_task_spec){
        .method = "backup.delete", .vm = vm, .hold = SDD_HOLD_WRITE,
        .run = run_delete, .arg = a, .free_arg = backup_args_free }, req);
}

/* --- backup.prune ----------------------------------------------------- */

/* One prune, run by a task; it owns vm and actions. */
struct prune_run {
    struct sdd_daemon *d;           /* its config and holds only */
    struct chain_ref ref;
    struct cat_retention override;  /* the call's rules, over the VM's */
    struct cat_retention policy;    /* the VM being pruned: its effective
                                     * rules */
    bool dry_run;
    char *vm;                       /* NULL: every VM, each held in turn */
    char *job;                      /* the job it follows, for logs */
    json_t *actions;
};

static void prune_run_free(void *arg)
{
    struct prune_run *p = arg;

    if (p) {
        ref_clear(&p->ref);
        free(p->vm);
        free(p->job);
        json_decref(p->actions);
        free(p);
    }
}

static int note(struct prune_run *p, const char *vm, const char *disk,
                const char *action, const char *id, const char *detail)
{
    json_t *a = json_pack("{s:s, s:s, s:s, s:s, s:s?}", "vm", vm,
                          "disk", disk, "action", action, "id", id,
                          "detail", detail);

    return json_array_append_new(p->actions, a) < 0 ? -ENOMEM : 0;
}

/* Merge a tree's full with its next point n times; ids change each time,
 * so each step starts from a fresh scan. */
static int run_merges(struct prune_run *p, const char *vm, const char *disk,
                      const char *full_id, size_t n, struct sd_error *err)
{
    char id[CAT_ID_LEN + 1], new_id[CAT_ID_LEN + 1];
    int ret = 0;

    snprintf(id, sizeof(id), "%s", full_id);
    for (size_t i = 0; ret == 0 && i < n; i++) {
        const struct cat_backup *full, *next = NULL;
        struct cat_backup **kids = NULL;
        size_t nkids = 0;

        ret = ref_load(&p->ref, vm, disk, err);
        full = ret == 0 ? cat_disk_find(p->ref.disk, id) : NULL;
        if (ret == 0 && full && cat_disk_children(p->ref.disk, full, &kids,
                                                  &nkids) == 0 && nkids == 1)
            next = kids[0];
        free(kids);
        if (ret == 0 && !next)
            ret = sd_error_set(err, -EBUSY, "%s no longer has one next point",
                               id);
        if (ret == 0)
            ret = cat_consolidate(p->ref.disk, full, next,
                                  p->ref.repo->consolidation, new_id, err);
        if (ret == 0)
            ret = note(p, vm, disk, "consolidate", id, new_id);
        snprintf(id, sizeof(id), "%s", new_id);
    }
    return ret;
}

static int prune_apply(struct prune_run *p, const char *vm, const char *disk,
                       const struct cat_prune_plan *plan, struct sd_error *err)
{
    char (*fulls)[CAT_ID_LEN + 1] = calloc(plan->nmerges + 1,
                                           sizeof(*fulls));
    int ret = fulls ? 0 : sd_error_set(err, -ENOMEM, "out of memory");

    /* The plan points into the scan, which the changes replace. */
    for (size_t i = 0; ret == 0 && i < plan->nmerges; i++)
        memcpy(fulls[i], plan->merges[i].full->sc->id, CAT_ID_LEN + 1);
    for (size_t i = 0; ret == 0 && i < plan->nremove; i++) {
        const char *id = plan->remove[i]->sc->id;

        ret = p->dry_run ? 0 : remove_backup(p->ref.disk, id, err);
        if (ret == 0)
            ret = note(p, vm, disk, "remove", id, NULL);
    }
    for (size_t i = 0; ret == 0 && i < plan->nmerges; i++) {
        char steps[32];

        snprintf(steps, sizeof(steps), "%zu step(s)", plan->merges[i].nmerge);
        if (p->dry_run)
            ret = note(p, vm, disk, "consolidate", fulls[i], steps);
        else
            ret = run_merges(p, vm, disk, fulls[i], plan->merges[i].nmerge,
                             err);
    }
    for (size_t i = 0; ret == 0 && i < plan->nskipped; i++)
        ret = note(p, vm, disk, "skip", plan->skipped[i]->sc->id,
                   "branched chain: consolidate by hand");
    free(fulls);
    return ret;
}

static int prune_disk(struct prune_run *p, const char *vm, const char *disk,
                      struct sd_error *err)
{
    struct cat_prune_plan plan = { 0 };
    int ret = ref_load(&p->ref, vm, disk, err);

    if (ret == 0 && !p->dry_run)
        ret = settle_disk(p->ref.disk, err);
    if (ret == 0)
        ret = ref_load(&p->ref, vm, disk, err);
    if (ret == 0 && disk_busy(p->d->cfg, vm, p->ref.disk, err) < 0) {
        /* A busy disk is pruned another time; the others go on. */
        ret = note(p, vm, disk, "skip", "", err->msg);
        sd_error_clear(err);
        return ret;
    }
    if (ret == 0 && cat_retention_plan(p->ref.disk, &p->policy,
                                       (cat_time_t)time(NULL), &plan) < 0)
        ret = sd_error_set(err, -ENOMEM, "out of memory");
    if (ret == 0)
        ret = prune_apply(p, vm, disk, &plan, err);
    cat_prune_plan_clear(&plan);
    return ret;
}

/* Rule by rule: the call's, else the VM's own (vm.json), else the
 * repository's. Read once the VM is held: vm.retention cannot change it
 * meanwhile. */
static void pick_policy(struct prune_run *p, const struct cat_vm *vm)
{
    struct cat_retention own = cat_retention_over(&vm->info->retention,
                                                  &p->ref.repo->retention);

    p->policy = cat_retention_over(&p->override, &own);
}

/* Names are copied: each disk's changes rescan the repository. */
static int prune_vm_disks(struct prune_run *p, const char *vm,
                          struct sd_error *err)
{
    json_t *disks = json_array();
    json_t *v;
    size_t i;
    int ret = disks ? ref_load(&p->ref, vm, NULL, err) : -ENOMEM;

    if (ret == 0)
        pick_policy(p, p->ref.vm);
    for (i = 0; ret == 0 && i < p->ref.vm->ndisks; i++)
        ret = add_id(disks, p->ref.vm->disks[i].name);
    json_array_foreach(disks, i, v) {
        if (ret < 0)
            break;
        ret = prune_disk(p, vm, json_string_value(v), err);
    }
    json_decref(disks);
    return ret;
}

/* A prune of one VM holds it from the start (sdd_task_start); one of the
 * whole repository takes each VM in turn and skips a busy one. */
static int prune_vm(struct prune_run *p, const char *vm, struct sd_error *err)
{
    int ret;

    if (p->vm)
        return prune_vm_disks(p, vm, err);
    if (sdd_hold_take(&p->d->holds, vm, "backup.prune", SDD_HOLD_WRITE,
                      err) < 0) {
        ret = note(p, vm, "", "skip", "", err->msg);
        sd_error_clear(err);
        return ret;
    }
    ret = prune_vm_disks(p, vm, err);
    sdd_hold_drop(&p->d->holds, vm, "backup.prune");
    return ret;
}

/* Every VM of the repository, or just vm. */
static int prune_repo(struct prune_run *p, const char *vm,
                      struct sd_error *err)
{
    json_t *vms = json_array();
    json_t *v;
    size_t i;
    int ret = vms ? 0 : -ENOMEM;

    if (vm)
        ret = add_id(vms, vm);
    else {
        ret = cat_repo_open(p->ref.repo->path, CAT_REPO_CREATE,
                            &p->ref.catalog, err);
        for (i = 0; ret == 0 && i < p->ref.catalog->nvms; i++)
            ret = add_id(vms, p->ref.catalog->vms[i].info->context_id);
    }
    json_array_foreach(vms, i, v) {
        if (ret < 0)
            break;
        ret = prune_vm(p, json_string_value(v), err);
    }
    json_decref(vms);
    ref_clear(&p->ref);
    return ret;
}

static int run_prune(struct prune_run *p, const char *vm, struct sd_error *err)
{
    int ret;

    p->actions = json_array();
    if (!p->actions)
        return sd_error_set(err, -ENOMEM, "out of memory");
    ret = prune_repo(p, vm, err);
    if (ret == -ENOMEM && err->code == 0)
        sd_error_set(err, ret, "out of memory");
    return ret;
}

/* Task. */
static int run_prune_task(struct sdd_task *t, json_t **result,
                          struct sd_error *err)
{
    struct prune_run *p = t->arg;
    int ret = run_prune(p, p->vm, err);

    if (ret < 0 || p->job)
        return ret;
    sd_log_info("backup.prune%s: %zu action(s)", p->dry_run ?
                " (dry run)" : "", json_array_size(p->actions));
    *result = json_pack("{s:b, s:O}", "dry_run", p->dry_run, "actions",
                        p->actions);
    return *result ? 0 : sd_error_set(err, -ENOMEM, "out of memory");
}

static struct prune_run *prune_run_new(struct sdd_daemon *d,
                                       const struct sdd_repository *repo,
                                       const char *vm)
{
    struct prune_run *p = calloc(1, sizeof(*p));

    if (!p)
        return NULL;
    p->d = d;
    p->ref.repo = repo;
    p->override = (struct cat_retention){ CAT_KEEP_UNSET, CAT_KEEP_UNSET };
    if (vm && !(p->vm = strdup(vm))) {
        free(p);
        return NULL;
    }
    return p;
}

int sdd_m_backup_prune(void *ctx, struct jsonrpc_conn *conn, json_t *params,
                       struct jsonrpc_request *req)
{
    struct sdd_daemon *d = ctx;
    const char *vm = NULL, *repo_name = NULL;
    int64_t keep_last = CAT_KEEP_UNSET, keep_days = CAT_KEEP_UNSET;
    bool dry_run = false;
    struct jsonrpc_param spec[] = {
        JSONRPC_PARAM_STRING("vm", false, &vm),
        JSONRPC_PARAM_STRING("repository", false, &repo_name),
        JSONRPC_PARAM_INT("keep_last", false, 1, CAT_KEEP_MAX, &keep_last),
        JSONRPC_PARAM_INT("keep_days", false, 0, CAT_KEEP_MAX, &keep_days),
        JSONRPC_PARAM_BOOL("dry_run", false, &dry_run),
        JSONRPC_PARAM_END,
    };
    const struct sdd_repository *repo;
    struct prune_run *p;
    int ret = jsonrpc_params_parse(req, params, spec);

    (void)conn;
    if (ret < 0)
        return ret;
    repo = sdd_config_repo(d->cfg, repo_name);
    if (!repo)
        return jsonrpc_reply_errno(req, -ENOENT, "no repository named "
                                   "\"%.128s\"", repo_name);
    p = prune_run_new(d, repo, vm);
    if (!p)
        return -ENOMEM;
    p->dry_run = dry_run;
    /* A param given overrides the VM's and the repository's rule; each
     * VM's own rules are read when it is pruned (pick_policy). */
    p->override = (struct cat_retention){ keep_last, keep_days };
    return sdd_task_reply_later(d, &(struct sdd_task_spec){
        .method = "backup.prune", .vm = vm, .hold = SDD_HOLD_WRITE,
        .run = run_prune_task, .arg = p, .free_arg = prune_run_free }, req);
}

/* Back in the loop: what retention did, or could not do. */
static void retention_done(struct sdd_task *t)
{
    const struct prune_run *p = t->arg;
    json_t *a;
    size_t i;

    if (t->ret < 0)
        sd_log_warn("retention of VM %s after job %s: %s", p->vm, p->job,
                    t->err.msg);
    json_array_foreach(p->actions, i, a)
        sd_log_info("retention: %s/%s: %s %s%s%s",
                    json_string_value(json_object_get(a, "vm")),
                    json_string_value(json_object_get(a, "disk")),
                    json_string_value(json_object_get(a, "action")),
                    json_string_value(json_object_get(a, "id")),
                    json_object_get(a, "detail") ? " -> " : "",
                    json_object_get(a, "detail") ? json_string_value(
                        json_object_get(a, "detail")) : "");
}

/* The VM's own rules over the repository's, from the vm.json the job
 * just wrote (a small read in the loop: a VM without any rule costs no
 * task). Unreadable: the repository's, and the task will say why. */
static struct cat_retention after_backup_policy(const struct sdd_job *job)
{
    char *dir = cat_path_join(job->repo->path, job->vm, NULL);
    char *path = dir ? cat_path_join(dir, CAT_VM_FILE, NULL) : NULL;
    struct cat_vm_info *info = NULL;
    struct sd_error err = { 0 };
    struct cat_retention policy = job->repo->retention;

    if (path && cat_vm_info_read(path, &info, &err) == 0)
        policy = cat_retention_over(&info->retention, &policy);
    else
        sd_log_warn("retention of VM %s after job %s: %s", job->vm,
                    job->id, path ? err.msg : "out of memory");
    cat_vm_info_free(info);
    free(path);
    free(dir);
    return policy;
}

void sdd_chains_after_backup(struct sdd_daemon *d, const struct sdd_job *job)
{
    struct cat_retention policy = after_backup_policy(job);
    struct prune_run *p;
    struct sd_error err = { 0 };

    if (policy.keep_last == CAT_KEEP_UNSET &&
        policy.keep_days == CAT_KEEP_UNSET)
        return;
    p = prune_run_new(d, job->repo, job->vm);
    if (p && !(p->job = strdup(job->id))) {
        prune_run_free(p);
        p = NULL;
    }
    if (!p)
        sd_log_error("retention of VM %s after job %s: out of memory",
                     job->vm, job->id);
    else if (sdd_task_start(d, &(struct sdd_task_spec){
                 .method = "retention", .vm = job->vm,
                 .hold = SDD_HOLD_WRITE, .run = run_prune_task,
                 .done = retention_done, .arg = p,
                 .free_arg = prune_run_free }, NULL, &err) < 0)
        sd_log_warn("retention of VM %s after job %s: not applied now: %s",
                    job->vm, job->id, err.msg);
}

/* --- backup.verify ---------------------------------------------------- */

static json_t *check_one(const struct cat_disk *disk,
                         const struct cat_backup *b, bool *ok)
{
    struct qcow2_check_result res = { 0 };
    struct sd_error err = { 0 };
    char *path = cat_path_join(disk->dir, b->sc->id, CAT_IMAGE_EXT);
    int ret = path ? qcow2_check(path, NULL, &res, &err) : -ENOMEM;
    json_t *o;

    if (ret < 0 || res.corruptions || res.check_errors || res.corrupt_bit)
        *ok = false;
    o = json_pack("{s:s, s:I, s:I, s:I, s:b, s:s?}", "id", b->sc->id,
                  "corruptions", (json_int_t)res.corruptions,
                  "leaks", (json_int_t)res.leaks,
                  "check_errors", (json_int_t)res.check_errors,
                  "corrupt_bit", res.corrupt_bit,
                  "error", ret < 0 ? err.msg : NULL);
    qcow2_check_result_free(&res);
    free(path);
    return o;
}

static json_t *verify_checksum(const struct cat_backup *b, const char *hex,
                               bool *ok)
{
    const char *want = b->sc->checksum_value;
    bool match = want && strcmp(want, hex) == 0;

    if (!want || !match)
        *ok = false;
    return json_pack("{s:s, s:s?, s:s, s:o}", "algorithm",
                     CAT_CHECKSUM_ALGORITHM, "recorded", want,
                     "computed", hex, "match",
                     want ? json_boolean(match) : json_null());
}

static int verify_backup(const struct cat_disk *disk,
                         const struct cat_backup *b, bool with_checksum,
                         json_t **out, struct sd_error *err)
{
    struct cat_backup **chain = NULL;
    char hex[CAT_CHECKSUM_HEX_LEN + 1];
    struct cat_layer_stats st = { 0 };
    json_t *checks = json_array();
    bool ok = true;
    size_t n = 0;
    char *path = cat_path_join(disk->dir, b->sc->id, CAT_IMAGE_EXT);
    int ret = cat_chain_of(disk, b, &chain, &n, err);

    for (size_t i = 0; ret == 0 && i < n; i++)
        json_array_append_new(checks, check_one(disk, chain[i], &ok));
    free(chain);
    if (ret == 0)
        ret = path ? cat_checksum_image(path, hex, &st, err) : -ENOMEM;
    free(path);
    if (ret < 0) {
        json_decref(checks);
        return ret;
    }
    if (st.read_errors)
        ok = false;
    *out = json_pack("{s:s, s:o, s:{s:I, s:I, s:I}}", "id", b->sc->id,
                     "checks", checks, "read", "runs", (json_int_t)st.runs,
                     "bytes", (json_int_t)st.bytes, "errors",
                     (json_int_t)st.read_errors);
    if (*out && with_checksum)
        json_object_set_new(*out, "checksum", verify_checksum(b, hex, &ok));
    if (*out)
        json_object_set_new(*out, "ok", json_boolean(ok));
    return *out ? 0 : sd_error_set(err, -ENOMEM, "out of memory");
}

/* Task. */
static int run_verify(struct sdd_task *t, json_t **result,
                      struct sd_error *err)
{
    const struct backup_args *a = t->arg;
    struct chain_ref ref = { .repo = a->repo };
    const struct cat_backup *b = NULL;
    int ret = ref_load(&ref, a->vm, a->disk, err);

    if (ret == 0 && !(b = cat_disk_find(ref.disk, a->id)))
        ret = sd_error_set(err, -ENOENT, "disk %s of VM %s has no backup "
                           "\"%.64s\"", a->disk, a->vm, a->id);
    if (ret == 0 && !b->has_image)
        ret = sd_error_set(err, -ENOENT, "%s has no image", a->id);
    if (ret == 0)
        ret = verify_backup(ref.disk, b, a->with_checksum, result, err);
    ref_clear(&ref);
    return ret;
}

int sdd_m_backup_verify(void *ctx, struct jsonrpc_conn *conn, json_t *params,
                        struct jsonrpc_request *req)
{
    struct sdd_daemon *d = ctx;
    const char *vm = NULL, *disk = NULL, *id = NULL, *repo = NULL;
    bool with_checksum = false;
    struct jsonrpc_param spec[] = {
        SDD_BACKUP_PARAMS(&vm, &disk, &id, true, &repo),
        JSONRPC_PARAM_BOOL("checksum", false, &with_checksum),
        JSONRPC_PARAM_END,
    };
    struct backup_args *a = NULL;
    int ret = jsonrpc_params_parse(req, params, spec);

    (void)conn;
    if (ret == 0)
        ret = backup_args_new(d, req, repo, vm, disk, id, &a);
    if (!a)
        return ret;
    a->with_checksum = with_checksum;
    return sdd_task_reply_later(d, &(struct sdd_task_spec){
        .method = "backup.verify", .vm = vm, .hold = SDD_HOLD_READ,
        .run = run_verify, .arg = a, .free_arg = backup_args_free }, req);
}

/* --- repo.cleanup and recovery ---------------------------------------- */

static int settle_repo(const struct sdd_repository *repo, size_t *settled,
                       struct sd_error *err)
{
    struct cat_repo *catalog = NULL;
    int ret = cat_repo_open(repo->path, CAT_REPO_CREATE, &catalog, err);

    for (size_t v = 0; ret == 0 && v < catalog->nvms; v++)
        for (size_t i = 0; ret == 0 && i < catalog->vms[v].ndisks; i++) {
            ret = cat_consolidate_recover(catalog->vms[v].disks[i].dir, err);
            if (ret > 0) {
                sd_log_info("repository %s: %s: finished an interrupted "
                            "consolidation", repo->name,
                            catalog->vms[v].disks[i].dir);
                (*settled)++;
                ret = 0;
            }
        }
    cat_repo_free(catalog);
    return ret;
}

int sdd_chains_recover(struct sdd_daemon *d, struct sd_error *err)
{
    size_t settled = 0;

    for (size_t i = 0; i < d->cfg->nrepos; i++) {
        int ret = settle_repo(&d->cfg->repos[i], &settled, err);

        if (ret < 0) {
            sd_error_prefix(err, "repository %s", d->cfg->repos[i].name);
            return ret;
        }
    }
    return 0;
}

/* Images the scan found without a sidecar: what an interrupted delete
 * (or consolidation) left. */
static int remove_leftovers(const struct cat_repo *catalog, json_t *removed,
                            struct sd_error *err)
{
    int ret = 0;

    for (size_t i = 0; ret == 0 && i < catalog->nproblems; i++) {
        const struct cat_problem *pb = &catalog->problems[i];
        char *path;

        if (pb->kind != CAT_PROBLEM_IMAGE_WITHOUT_SIDECAR)
            continue;
        path = cat_path_join(catalog->root, pb->path, "");
        ret = path ? sd_durable_remove(path, err) : -ENOMEM;
        if (ret == -ENOENT) {
            sd_error_clear(err);
            ret = 0;
        }
        if (ret == 0)
            ret = add_id(removed, pb->path);
        free(path);
    }
    return ret;
}

int sdd_m_repo_cleanup(void *ctx, struct jsonrpc_conn *conn, json_t *params,
                       struct jsonrpc_request *req)
{
    struct sdd_daemon *d = ctx;
    const char *name = NULL;
    struct jsonrpc_param spec[] = {
        JSONRPC_PARAM_STRING("repository", false, &name),
        JSONRPC_PARAM_END,
    };
    const struct sdd_repository *repo;
    struct cat_repo *catalog = NULL;
    struct sd_error err = { 0 };
    json_t *removed = json_array();
    size_t settled = 0, temps = 0;
    int ret = jsonrpc_params_parse(req, params, spec);

    (void)conn;
    if (ret < 0 || !removed)
        goto out;
    repo = sdd_config_repo(d->cfg, name);
    /* A running task's journal and temporary files are not leftovers. */
    if (d->tasks.count)
        ret = sd_error_set(&err, -EBUSY, "busy: %zu long operation(s) "
                           "running; clean up when they end",
                           d->tasks.count);
    else if (!repo)
        ret = sd_error_set(&err, -ENOENT, "no repository named "
                           "\"%.128s\"", name);
    if (ret == 0)
        ret = settle_repo(repo, &settled, &err);
    if (ret == 0)
        ret = cat_repo_open(repo->path, CAT_REPO_CREATE, &catalog, &err);
    if (ret == 0)
        ret = cat_repo_remove_temp_files(catalog, &temps, &err);
    if (ret == 0)
        ret = remove_leftovers(catalog, removed, &err);
    ret = ret < 0 ? jsonrpc_reply_sd_error(req, &err)
        : jsonrpc_reply_result(req, json_pack(
              "{s:I, s:I, s:O}", "consolidations_finished",
              (json_int_t)settled, "temp_files_removed", (json_int_t)temps,
              "images_removed", removed));
out:
    cat_repo_free(catalog);
    json_decref(removed);
    return ret;
}
