/* SPDX-License-Identifier: MIT */
/*
 * A YAML tree with line numbers (config-yaml-tree.c) and the helpers
 * that read typed values from it; used by config-yaml.c.
 */
#ifndef SENDENSE_SERVER_CONFIG_YAML_TREE_H
#define SENDENSE_SERVER_CONFIG_YAML_TREE_H

#include "server/server-config.h"

#include <stdbool.h>
#include <stddef.h>
#include <yaml.h>

enum sd_ynode_kind { SD_YSCALAR, SD_YMAP, SD_YSEQ };

struct sd_ynode {
    enum sd_ynode_kind kind;
    unsigned line;                    /* 1-based */
    char *value;                      /* scalar, NUL-terminated */
    bool plain;                       /* scalar written without quotes */
    struct sd_ynode **items;          /* map: key, value, key, value... */
    size_t n;
};

/* A known key of a mapping and what reads its value into obj. */
struct sd_yfield {
    const char *key;
    int (*set)(const char *path, const struct sd_ynode *value, void *obj,
               struct sd_error *err);
};

/* data (len bytes) from file path into *out (NULL for an empty file). */
int sd_ytree_parse(const char *path, const char *data, size_t len,
                   struct sd_ynode **out, struct sd_error *err);
void sd_ytree_free(struct sd_ynode *n);

/* "path:LINE: message" (LINE of at, or 1). Returns code. */
int sd_ytree_error(const char *path, const struct sd_ynode *at,
                   struct sd_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* Call each field's setter for its key; unknown and duplicate keys are
 * errors; a null value keeps the default. lines[i] (n_fields entries) is
 * set to the line of fields[i]'s key, or 0 when absent. */
int sd_ymap_walk(const char *path, const struct sd_ynode *map,
                 const struct sd_yfield *fields, size_t n_fields,
                 void *obj, unsigned *lines, struct sd_error *err);

bool sd_ynode_is_null(const struct sd_ynode *n);
/* Typed reads; `what` names the key in messages. */
int sd_ynode_string(const char *path, const struct sd_ynode *n,
                    const char *what, char **out, struct sd_error *err);
int sd_ynode_bool(const char *path, const struct sd_ynode *n,
                  const char *what, bool *out, struct sd_error *err);
int sd_ynode_enum(const char *path, const struct sd_ynode *n,
                  const char *what, const char *const *names,
                  size_t n_names, int *out, struct sd_error *err);

#endif
