/* SPDX-License-Identifier: MIT */
/*
 * Files that change all at once, and removals that stay removed.
 *
 * sd_atomic_write() writes the new contents to a temporary file in the
 * same folder, fsyncs it, renames it over the target and fsyncs the
 * folder: a reader (or a crash at any instant) sees either the old file
 * or the new one, never a mix, and once it returns the new file survives
 * power loss. sd_durable_remove() unlinks and fsyncs the folder.
 *
 * Temporary files are named ".<target name>.XXXXXX.tmp": hidden, so the
 * server's export-directory loader skips them, and recognisable
 * (sd_atomic_is_temp_name), so a scan after a crash can report and
 * remove the ones an interrupted write left behind.
 *
 * Errors: negative errno, with a message naming the path in err.
 */
#ifndef SENDENSE_ATOMIC_FILE_H
#define SENDENSE_ATOMIC_FILE_H

#include "common/error.h"

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* Replace (or create) path with len bytes of data, file mode mode. */
int sd_atomic_write(const char *path, const void *data, size_t len,
                    mode_t mode, struct sd_error *err);

/* Unlink path and make the removal durable. -ENOENT if it is not there. */
int sd_durable_remove(const char *path, struct sd_error *err);

/* fsync the folder dir, so entries created, renamed or removed in it
 * reach the disk. */
int sd_fsync_dir(const char *dir, struct sd_error *err);

/* mkdir dir (mode 0755) and fsync its parent; an existing folder is
 * fine. Parents must exist. */
int sd_durable_mkdir(const char *dir, struct sd_error *err);
/* The same, creating missing parent folders first (mkdir -p). */
int sd_durable_mkdir_parents(const char *dir, struct sd_error *err);

/* Whether a file name (no folder) is one of our temporary files. */
bool sd_atomic_is_temp_name(const char *name);

#endif
