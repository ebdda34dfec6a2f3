/* SPDX-License-Identifier: MIT */
#include "config.h"

#include "catalog/vm-info.h"

#include "catalog/json-field.h"
#include "catalog/layout.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const vm_keys[] = {
    "format", "context_id", "display_name", "created_at", "disks", NULL,
};
static const char *const disk_keys[] = {
    "name", "virtual_size", "label", NULL,
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
    ret = set_text(&vm->display_name, "display name", display_name,
                   CAT_TEXT_MAX, err);
    if (ret < 0) {
        cat_vm_info_free(vm);
        return ret;
    }
    *out = vm;
    return 0;
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

json_t *cat_vm_info_to_json(const struct cat_vm_info *vm)
{
    json_t *obj = json_pack("{s:i, s:s, s:o, s:n, s:o}", "format",
                            CAT_VM_FORMAT, "context_id", vm->context_id,
                            "display_name", text_or_null(vm->display_name),
                            "created_at", "disks", disks_to_json(vm));

    if (obj && jf_set_time(obj, "created_at", vm->created_at) != 0) {
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
