/* SPDX-License-Identifier: MIT */
#include "config.h"

#include "catalog/vm-info.h"

#include "catalog/json-field.h"
#include "catalog/layout.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const vm_keys[] = {
    "format", "context_id", "display_name", "created_at", "disks",
    "retention", NULL,
};
static const char *const disk_keys[] = {
    "name", "virtual_size", "label", NULL,
};
static const char *const retention_keys[] = {
    "keep_last", "keep_days", NULL,
};

void cat_vm_info_free(struct cat_vm_info *vm)
{
    if (!vm)
        return;
    for (size_t i = 0; i < vm->ndisks; i++)
        free(vm->disks[i].label);
    free(vm->disks);
    free(vm->display_name);
    free(vm);
}

static int set_text(char **field, const char *what, const char *value,
                    size_t max, struct sd_error *err)
{
    int ret = value ? cat_text_check(what, value, max, err) : 0;

    if (ret < 0)
        return ret;
    if (value && !(*field = strdup(value)))
        return sd_error_set(err, -ENOMEM, "out of memory");
    return 0;
}

int cat_vm_info_new(const char *context_id, const char *display_name,
                    cat_time_t created_at, struct cat_vm_info **out,
                    struct sd_error *err)
{
    struct cat_vm_info *vm;
    char ts[CAT_RFC3339_LEN + 1];
    int ret = cat_name_check("VM context id", context_id, err);

    if (ret < 0)
        return ret;
    if (cat_rfc3339_format(created_at, ts) < 0)
        return sd_error_set(err, -EINVAL, "creation time %lld is out of "
                            "range", (long long)created_at);
    vm = calloc(1, sizeof(*vm));
    if (!vm)
        return sd_error_set(err, -ENOMEM, "out of memory");
    snprintf(vm->context_id, sizeof(vm->context_id), "%s", context_id);
    vm->created_at = created_at;
    vm->retention = (struct cat_retention){ CAT_KEEP_UNSET, CAT_KEEP_UNSET };
    ret = set_text(&vm->display_name, "display name", display_name,
                   CAT_TEXT_MAX, err);
    if (ret < 0) {
        cat_vm_info_free(vm);
        return ret;
    }
    *out = vm;
    return 0;
}

static bool rule_ok(int64_t v, int64_t min)
{
    return v == CAT_KEEP_UNSET || (v >= min && v <= CAT_KEEP_MAX);
}

int cat_vm_info_set_retention(struct cat_vm_info *vm,
                              const struct cat_retention *r,
                              struct sd_error *err)
{
    if (!rule_ok(r->keep_last, 1))
        return sd_error_set(err, -EINVAL, "keep_last %lld: expected 1 to "
                            "%d", (long long)r->keep_last, CAT_KEEP_MAX);
    if (!rule_ok(r->keep_days, 0))
        return sd_error_set(err, -EINVAL, "keep_days %lld: expected 0 to "
                            "%d", (long long)r->keep_days, CAT_KEEP_MAX);
    vm->retention = *r;
    return 0;
}

struct cat_retention cat_retention_over(const struct cat_retention *over,
                                        const struct cat_retention *under)
{
    return (struct cat_retention){
        over->keep_last != CAT_KEEP_UNSET ? over->keep_last
                                          : under->keep_last,
        over->keep_days != CAT_KEEP_UNSET ? over->keep_days
                                          : under->keep_days,
    };
}

static json_t *rule_json(int64_t v)
{
    return v == CAT_KEEP_UNSET ? json_null() : json_integer(v);
}

json_t *cat_retention_to_json(const struct cat_retention *r)
{
    return json_pack("{s:o, s:o}", "keep_last", rule_json(r->keep_last),
                     "keep_days", rule_json(r->keep_days));
}

const struct cat_vm_disk *cat_vm_info_disk(const struct cat_vm_info *vm,
                                           const char *name)
{
    for (size_t i = 0; i < vm->ndisks; i++)
        if (strcmp(vm->disks[i].name, name) == 0)
            return &vm->disks[i];
    return NULL;
}

int cat_vm_info_add_disk(struct cat_vm_info *vm, const char *name,
                         uint64_t virtual_size, const char *label,
                         struct sd_error *err)
{
    struct cat_vm_disk d = { .virtual_size = virtual_size };
    int ret = cat_disk_name_parse(name, &d.index, err);

    if (ret < 0)
        return ret;
    if (cat_vm_info_disk(vm, name))
        return sd_error_set(err, -EEXIST, "disk %s is listed twice", name);
    if (vm->ndisks >= CAT_VM_DISKS_MAX)
        return sd_error_set(err, -E2BIG, "more than %d disks",
                            CAT_VM_DISKS_MAX);
    if ((int64_t)virtual_size < 0)
        return sd_error_set(err, -EINVAL, "disk %s: size too large", name);
    ret = set_text(&d.label, "disk label", label, CAT_LABEL_MAX, err);
    if (ret < 0)
        return ret;
    struct cat_vm_disk *grown = realloc(vm->disks,
                                        (vm->ndisks + 1) * sizeof(*grown));
    if (!grown) {
        free(d.label);
        return sd_error_set(err, -ENOMEM, "out of memory");
    }
    snprintf(d.name, sizeof(d.name), "%s", name);
    grown[vm->ndisks++] = d;
    vm->disks = grown;
    return 0;
}

/* --- reading ---------------------------------------------------------- */

static int disk_from_json(const struct jf *jf, json_t *d, size_t i,
                          struct cat_vm_info *vm)
{
    char where[SD_ERROR_MSG_MAX];
    struct jf sub = { where, jf->err };
    const char *name, *label;
    uint64_t size;
    int ret;

    snprintf(where, sizeof(where), "%s: disks[%zu]", jf->file, i);
    if (!json_is_object(d))
        return sd_error_set(jf->err, -EINVAL, "%s: not an object", where);
    ret = jf_check_keys(&sub, d, disk_keys);
    if (ret == 0)
        ret = jf_string(&sub, d, "name", false, &name);
    if (ret == 0)
        ret = jf_uint(&sub, d, "virtual_size", &size);
    if (ret == 0)
        ret = jf_string(&sub, d, "label", true, &label);
    if (ret == 0) {
        ret = cat_vm_info_add_disk(vm, name, size, label, jf->err);
        if (ret < 0)
            sd_error_prefix(jf->err, "%s", where);
        /* In a file, a duplicate disk is just invalid content. */
        if (ret < 0 && ret != -ENOMEM) {
            ret = -EINVAL;
            if (jf->err)
                jf->err->code = ret;
        }
    }
    return ret;
}

static int disks_from_json(const struct jf *jf, json_t *obj,
                           struct cat_vm_info *vm)
{
    json_t *disks = json_object_get(obj, "disks");
    size_t i;
    json_t *d;

    if (!disks)
        return jf_fail(jf, "disks", -EINVAL, "missing");
    if (!json_is_array(disks))
        return jf_fail(jf, "disks", -EINVAL, "not an array");
    json_array_foreach(disks, i, d) {
        int ret = disk_from_json(jf, d, i, vm);
        if (ret < 0)
            return ret;
    }
    return 0;
}

/* One rule: left out or null is unset. */
static int rule_from_json(const struct jf *jf, json_t *obj, const char *key,
                          int64_t min, int64_t *out)
{
    json_t *v = json_object_get(obj, key);

    if (!v || json_is_null(v)) {
        *out = CAT_KEEP_UNSET;
        return 0;
    }
    if (!json_is_integer(v) || json_integer_value(v) < min ||
        json_integer_value(v) > CAT_KEEP_MAX)
        return jf_fail(jf, key, -EINVAL, "not an integer from %lld to %d",
                       (long long)min, CAT_KEEP_MAX);
    *out = json_integer_value(v);
    return 0;
}

/* The optional "retention" member: absent, the VM has no rules. */
static int retention_from_json(const struct jf *jf, json_t *obj,
                               struct cat_vm_info *vm)
{
    json_t *r = json_object_get(obj, "retention");
    char where[SD_ERROR_MSG_MAX];
    struct jf sub = { where, jf->err };
    int ret;

    if (!r)
        return 0;
    if (!json_is_object(r))
        return jf_fail(jf, "retention", -EINVAL, "not an object");
    snprintf(where, sizeof(where), "%s: retention", jf->file);
    ret = jf_check_keys(&sub, r, retention_keys);
    if (ret == 0)
        ret = rule_from_json(&sub, r, "keep_last", 1,
                             &vm->retention.keep_last);
    if (ret == 0)
        ret = rule_from_json(&sub, r, "keep_days", 0,
                             &vm->retention.keep_days);
    return ret;
}

static int vm_from_json(const struct jf *jf, json_t *obj,
                        struct cat_vm_info **out)
{
    const char *ctx, *display;
    cat_time_t created;
    int ret = jf_check_format(jf, obj, CAT_VM_FORMAT);

    if (ret == 0)
        ret = jf_check_keys(jf, obj, vm_keys);
    if (ret == 0)
        ret = jf_string(jf, obj, "context_id", false, &ctx);
    if (ret == 0)
        ret = jf_string(jf, obj, "display_name", true, &display);
    if (ret == 0)
        ret = jf_time(jf, obj, "created_at", false, &created);
    if (ret < 0)
        return ret;
    ret = cat_vm_info_new(ctx, display, created, out, jf->err);
    if (ret < 0) {
        sd_error_prefix(jf->err, "%s", jf->file);
        return ret;
    }
    ret = disks_from_json(jf, obj, *out);
    if (ret == 0)
        ret = retention_from_json(jf, obj, *out);
    if (ret < 0) {
        cat_vm_info_free(*out);
        *out = NULL;
    }
    return ret;
}

int cat_vm_info_parse(const char *text, size_t len, const char *file,
                      struct cat_vm_info **out, struct sd_error *err)
{
    struct jf jf = { file, err };
    json_t *obj;
    int ret = jf_parse_object(&jf, text, len, &obj);

    if (ret < 0)
        return ret;
    ret = vm_from_json(&jf, obj, out);
    json_decref(obj);
    return ret;
}

int cat_vm_info_read(const char *path, struct cat_vm_info **out,
                     struct sd_error *err)
{
    char *text;
    size_t len;
    int ret = jf_read_file(path, CAT_VM_FILE_MAX, &text, &len, err);

    if (ret < 0)
        return ret;
    ret = cat_vm_info_parse(text, len, path, out, err);
    free(text);
    return ret;
}

/* --- writing ---------------------------------------------------------- */

static json_t *text_or_null(const char *s)
{
    return s ? json_string(s) : json_null();
}

static json_t *disks_to_json(const struct cat_vm_info *vm)
{
    json_t *arr = json_array();

    for (size_t i = 0; arr && i < vm->ndisks; i++) {
        const struct cat_vm_disk *d = &vm->disks[i];
        json_t *o = json_pack("{s:s, s:I, s:o}", "name", d->name,
                              "virtual_size", (json_int_t)d->virtual_size,
                              "label", text_or_null(d->label));
        if (json_array_append_new(arr, o) != 0) {
            json_decref(arr);
            return NULL;
        }
    }
    return arr;
}

static bool has_rule(const struct cat_retention *r)
{
    return r->keep_last != CAT_KEEP_UNSET || r->keep_days != CAT_KEEP_UNSET;
}

json_t *cat_vm_info_to_json(const struct cat_vm_info *vm)
{
    json_t *obj = json_pack("{s:i, s:s, s:o, s:n, s:o}", "format",
                            CAT_VM_FORMAT, "context_id", vm->context_id,
                            "display_name", text_or_null(vm->display_name),
                            "created_at", "disks", disks_to_json(vm));
    int ret = obj ? jf_set_time(obj, "created_at", vm->created_at) : -1;

    /* Only with a rule: the file of a VM without one stays as it was. */
    if (ret == 0 && has_rule(&vm->retention))
        ret = json_object_set_new(obj, "retention",
                                  cat_retention_to_json(&vm->retention));
    if (ret != 0) {
        json_decref(obj);
        return NULL;
    }
    return obj;
}

int cat_vm_info_write(const struct cat_vm_info *vm, const char *vm_dir,
                      struct sd_error *err)
{
    char *path = cat_path_join(vm_dir, CAT_VM_FILE, NULL);
    json_t *obj;
    int ret;

    if (!path)
        return sd_error_set(err, -ENOMEM, "out of memory");
    obj = cat_vm_info_to_json(vm);
    ret = obj ? jf_write_file(obj, path, err)
              : sd_error_set(err, -ENOMEM, "%s: cannot build JSON", path);
    free(path);
    return ret;
}
