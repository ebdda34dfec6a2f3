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
 *     ]
 *   }
 *
 * Disk names are disk<N> (names.h), each at most once.
 */
#ifndef SENDENSE_CATALOG_VM_INFO_H
#define SENDENSE_CATALOG_VM_INFO_H

#include "catalog/names.h"
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
};

/* A new vm info without disks. */
int cat_vm_info_new(const char *context_id, const char *display_name,
                    cat_time_t created_at, struct cat_vm_info **out,
                    struct sd_error *err);
int cat_vm_info_add_disk(struct cat_vm_info *vm, const char *name,
                         uint64_t virtual_size, const char *label,
                         struct sd_error *err);
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
