/* SPDX-License-Identifier: MIT */
/*
 * Helpers shared by the config-*.c files; not part of the API.
 */
#ifndef SENDENSE_SERVER_CONFIG_INTERNAL_H
#define SENDENSE_SERVER_CONFIG_INTERNAL_H

#include "server/server-config.h"

#include <stddef.h>

/* config.c */

/* Read a regular file (no FIFO or device: they could block or never
 * end) of at most SD_CONFIG_FILE_MAX bytes into a NUL-terminated buffer
 * the caller frees. */
int sd_config_read_file(const char *path, char **data, size_t *len,
                        struct sd_error *err);
/* Room for n more entries (the list grows by doubling: a folder of a
 * thousand exports must not copy the list a thousand times). */
int sd_export_list_reserve(struct sd_export_list *list, size_t n);
/* Append an entry; takes exp (may be NULL, then e must be an error).
 * On failure exp is freed. */
int sd_export_list_add(struct sd_export_list *list, const char *file,
                       const char *name, struct sd_export *exp,
                       const struct sd_error *e);
/* A new export with every default, source and line set. */
struct sd_export *sd_export_new(const char *source, unsigned line);
/* Is this a nbd-server INI file (first significant line "[...]")? */
bool sd_config_text_is_ini(const char *data, size_t len);

/* config-yaml.c */

/* sd_config_load_export_yaml() on a file already read: data holds len
 * bytes and a NUL; path names it in messages. */
int sd_config_parse_export_yaml(const char *path, const char *data,
                                size_t len, struct sd_export **out,
                                struct sd_error *err);

#endif
