/* SPDX-License-Identifier: MIT */
#ifndef SENDENSE_BATCH_READ_H
#define SENDENSE_BATCH_READ_H

#include <stddef.h>

/* One small file to read, named relative to a directory. */
struct sd_batch_file {
    const char *name;
    char *data;         /* malloc'd and NUL-terminated, or NULL if unread */
    size_t len;
};

/*
 * Read many small files of one directory through a private io_uring:
 * each is opened, read and closed in the kernel, dozens per system call,
 * where reading them one by one costs four system calls each.
 *
 * For regular files only (readdir's d_type says which): a FIFO opened
 * here would read as empty. Only files of fewer than max_len bytes are
 * read; one that is larger, or that could not be opened or read, keeps
 * data == NULL, and the caller reads it the ordinary way, which also
 * says what is wrong with it. Returns 0, or a negative errno when the
 * batches stopped early (no ring, no memory); the files read until then
 * keep their data. The caller frees each data.
 */
int sd_batch_read_small_files(int dir_fd, struct sd_batch_file *files,
                              size_t n, size_t max_len);

#endif
