/* SPDX-License-Identifier: MIT */
/*
 * vm.retention: a VM's own retention rules, read or changed. They live
 * in the VM's vm.json (vm-info.h), so they move with the repository;
 * backup.prune and the retention run after each backup apply them over
 * the repository's rules (daemon-chains.c).
 *
 * A short method: it runs in the loop. A change read-holds the VM while
 * it rewrites vm.json, so it is refused while a delete, prune or
 * retention works on that VM's chains (those read the rules once they
 * hold it), and goes on beside a backup job (backup.start, which
 * rewrites vm.json too, runs in the loop and keeps the rules).
 */
#include "config.h"

#include "catalog/daemon.h"
#include "catalog/repo.h"
#include "common/log.h"

#include <errno.h>
#include <stdlib.h>

/* What a call asks for. */
struct rules_change {
    bool clear;                     /* drop both rules first */
    bool null_last, null_days;      /* drop this one */
    int64_t keep_last, keep_days;   /* set this one; CAT_KEEP_UNSET: no */
};

static bool is_change(const struct rules_change *c)
{
    return c->clear || c->null_last || c->null_days ||
           c->keep_last != CAT_KEEP_UNSET || c->keep_days != CAT_KEEP_UNSET;
}

static struct cat_retention changed(const struct cat_retention *old,
                                    const struct rules_change *c)
{
    struct cat_retention r = *old;

    if (c->clear || c->null_last)
        r.keep_last = CAT_KEEP_UNSET;
    if (c->clear || c->null_days)
        r.keep_days = CAT_KEEP_UNSET;
    if (c->keep_last != CAT_KEEP_UNSET)
        r.keep_last = c->keep_last;
    if (c->keep_days != CAT_KEEP_UNSET)
        r.keep_days = c->keep_days;
    return r;
}

/* A rule given as null removes it; the params table takes integers only,
 * so the nulls are noted and left out of the copy it checks. */
static json_t *take_nulls(json_t *params, struct rules_change *c)
{
    json_t *copy;

    if (!json_is_object(params))
        return json_incref(params);
    c->null_last = json_is_null(json_object_get(params, "keep_last"));
    c->null_days = json_is_null(json_object_get(params, "keep_days"));
    copy = json_copy(params);
    if (copy && c->null_last)
        json_object_del(copy, "keep_last");
    if (copy && c->null_days)
        json_object_del(copy, "keep_days");
    return copy;
}

static int reply_rules(struct jsonrpc_request *req,
                       const struct sdd_repository *repo,
                       const struct cat_vm_info *info)
{
    struct cat_retention effective = cat_retention_over(&info->retention,
                                                        &repo->retention);

    return jsonrpc_reply_result(req, json_pack(
        "{s:s, s:s, s:o, s:o, s:o}", "vm", info->context_id,
        "repository", repo->name,
        "vm_retention", cat_retention_to_json(&info->retention),
        "repository_retention", cat_retention_to_json(&repo->retention),
        "effective", cat_retention_to_json(&effective)));
}

/* Change info's rules and rewrite its vm.json (atomically). */
static int write_rules(struct cat_vm *vm, const struct rules_change *c,
                       struct sd_error *err)
{
    struct cat_retention old = vm->info->retention;
    struct cat_retention r = changed(&old, c);
    int ret = cat_vm_info_set_retention(vm->info, &r, err);

    if (ret == 0)
        ret = cat_vm_info_write(vm->info, vm->dir, err);
    if (ret < 0) {
        vm->info->retention = old;
        return ret;
    }
    sd_log_info("vm.retention %s: keep_last %lld, keep_days %lld (-1: "
                "the repository's)", vm->info->context_id,
                (long long)r.keep_last, (long long)r.keep_days);
    return 0;
}

/* Find name in repo (a fresh scan) and, for a change, rewrite its rules;
 * the scan is left in *catalog for the reply. */
static int apply(struct sdd_daemon *d, const struct sdd_repository *repo,
                 const char *name, const struct rules_change *c,
                 struct cat_repo **catalog, struct cat_vm **vm,
                 struct sd_error *err)
{
    bool held = false;
    int ret = 0;

    if (is_change(c)) {
        ret = sdd_hold_take(&d->holds, name, "vm.retention", SDD_HOLD_READ,
                            err);
        held = ret == 0;
    }
    if (ret == 0)
        ret = cat_repo_open(repo->path, CAT_REPO_CREATE, catalog, err);
    if (ret == 0 && !(*vm = cat_repo_vm(*catalog, name)))
        ret = sd_error_set(err, -ENOENT, "no VM \"%.128s\" in repository "
                           "%s", name, repo->name);
    if (ret == 0 && is_change(c))
        ret = write_rules(*vm, c, err);
    if (held)
        sdd_hold_drop(&d->holds, name, "vm.retention");
    return ret;
}

int sdd_m_vm_retention(void *ctx, struct jsonrpc_conn *conn, json_t *params,
                       struct jsonrpc_request *req)
{
    struct sdd_daemon *d = ctx;
    struct rules_change c = { .keep_last = CAT_KEEP_UNSET,
                              .keep_days = CAT_KEEP_UNSET };
    const char *vm_name = NULL, *repo_name = NULL;
    struct jsonrpc_param spec[] = {
        JSONRPC_PARAM_STRING("vm", true, &vm_name),
        JSONRPC_PARAM_STRING("repository", false, &repo_name),
        JSONRPC_PARAM_INT("keep_last", false, 1, CAT_KEEP_MAX, &c.keep_last),
        JSONRPC_PARAM_INT("keep_days", false, 0, CAT_KEEP_MAX, &c.keep_days),
        JSONRPC_PARAM_BOOL("clear", false, &c.clear),
        JSONRPC_PARAM_END,
    };
    json_t *checked = take_nulls(params, &c);
    const struct sdd_repository *repo;
    struct cat_repo *catalog = NULL;
    struct cat_vm *vm = NULL;
    struct sd_error err = { 0 };
    int ret = checked || !params ? 0 : -ENOMEM;

    (void)conn;
    if (ret == 0)
        ret = jsonrpc_params_parse(req, checked, spec);
    if (ret < 0)
        goto out;
    repo = sdd_config_repo(d->cfg, repo_name);
    if (!repo)
        ret = sd_error_set(&err, -ENOENT, "no repository named \"%.128s\"",
                           repo_name);
    if (ret == 0)
        ret = apply(d, repo, vm_name, &c, &catalog, &vm, &err);
    if (ret < 0)
        sd_log_warn("vm.retention %.128s: %s", vm_name, err.msg);
    ret = ret < 0 ? jsonrpc_reply_sd_error(req, &err)
                  : reply_rules(req, repo, vm->info);
out:
    cat_repo_free(catalog);
    json_decref(checked);
    return ret;
}
