/* SPDX-License-Identifier: MIT */
/*
 * Inter-process image locks, compatible with the OFD byte-range locks
 * qemu takes on image files, so that qemu's tools and ours refuse to
 * write an image the other has open for writing.
 */
#ifndef SENDENSE_LOCK_H
#define SENDENSE_LOCK_H

#include <stdbool.h>

struct sd_error;

/* Lock the file open as fd: a writer takes the write permission and
 * refuses to share it; a reader (e.g. a backing file) takes consistent
 * read and refuses to share write. On success *lock_fd is the descriptor
 * holding the locks (to pass to img_lock_release), or -1 if none. */
int img_lock_acquire(int fd, const char *path, bool writable, int *lock_fd,
                     struct sd_error *err);
void img_lock_release(int lock_fd);

#endif
