/* SPDX-License-Identifier: MIT */
/*
 * vm.json: the identity of one VM context and its disks, in
 * "<root>/<vm-context-id>/vm.json". Written atomically, read strictly.
 * Format 1:
 *
 *   {
 *     "format": 1,
 *     "context_id": "ctx-pgtest2",          must equal the folder name
 *     "display_name": "pgtest2",            or null
 *     "created_at": "2025-10-05T12:00:00Z",
 *     "disks": [
 *       {"name": "disk0", "virtual_size": 10737418240, "label": "root"},
 *       {"name": "disk1", "virtual_size": 2147483648, "label": null}
 *     ],
 *     "retention": {"keep_last": 4, "keep_days": null}
 *   }
 *
 * Disk names are disk<N> (names.h), each at most once. "retention" is
 * optional: the VM's own retention rules (docs/SENDENSED.md, "Chains"),
 * each an integer (keep_last 1..1e6, keep_days 0..1e6), or null or left
 * out when the VM follows its repository's rule. It is written only when
 * a rule is set, so older files stay valid and unchanged.
 */
#ifndef SENDENSE_CATALOG_VM_INFO_H
#define SENDENSE_CATALOG_VM_INFO_H

#include "catalog/names.h"
#include "catalog/retention.h"
#include "catalog/stamp.h"
#include "common/error.h"

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

enum {
    CAT_VM_FORMAT = 1,
    CAT_VM_FILE_MAX = 256 * 1024,
    CAT_VM_DISKS_MAX = 256,
    CAT_LABEL_MAX = 256,
};

struct cat_vm_disk {
    char name[CAT_NAME_MAX + 1];
    unsigned index;                     /* N of disk<N> */
    uint64_t virtual_size;
    char *label;                        /* NULL for none */
};

struct cat_vm_info {
    char context_id[CAT_NAME_MAX + 1];
    char *display_name;                 /* NULL for none */
    cat_time_t created_at;
    struct cat_vm_disk *disks;
    size_t ndisks;
    struct cat_retention retention;     /* the VM's own rules; unset ones
                                         * are its repository's */
};

/* A new vm info without disks or retention rules. */
int cat_vm_info_new(const char *context_id, const char *display_name,
                    cat_time_t created_at, struct cat_vm_info **out,
                    struct sd_error *err);
int cat_vm_info_add_disk(struct cat_vm_info *vm, const char *name,
                         uint64_t virtual_size, const char *label,
                         struct sd_error *err);
/* Set the VM's own rules (CAT_KEEP_UNSET: none); -EINVAL when a rule is
 * out of range (keep_last 1..CAT_KEEP_MAX, keep_days 0..CAT_KEEP_MAX). */
int cat_vm_info_set_retention(struct cat_vm_info *vm,
                              const struct cat_retention *r,
                              struct sd_error *err);
/* Rule by rule, over's when set, else under's: a VM's rules over its
 * repository's, a call's over both. */
struct cat_retention cat_retention_over(const struct cat_retention *over,
                                        const struct cat_retention *under);
/* {"keep_last": N or null, "keep_days": D or null} (new reference), NULL
 * when out of memory. */
json_t *cat_retention_to_json(const struct cat_retention *r);
/* The disk called name, or NULL. */
const struct cat_vm_disk *cat_vm_info_disk(const struct cat_vm_info *vm,
                                           const char *name);

int cat_vm_info_parse(const char *text, size_t len, const char *file,
                      struct cat_vm_info **out, struct sd_error *err);
int cat_vm_info_read(const char *path, struct cat_vm_info **out,
                     struct sd_error *err);
/* The JSON document above (new reference), NULL when out of memory. */
json_t *cat_vm_info_to_json(const struct cat_vm_info *vm);
/* Write "<vm_dir>/vm.json" atomically; vm_dir must exist. */
int cat_vm_info_write(const struct cat_vm_info *vm, const char *vm_dir,
                      struct sd_error *err);

void cat_vm_info_free(struct cat_vm_info *vm);

#endif
