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
 * holding the locks (a private open of the same inode, close-on-exec; pass
 * it to img_lock_release), or -1 if none; on failure *lock_fd is not set.
 * Returns -EBUSY, with a one-line message naming path, when another
 * process (or another open of the same file in this one) holds the image
 * in an incompatible way; another negative errno if locking itself fails. */
int img_lock_acquire(int fd, const char *path, bool writable, int *lock_fd,
                     struct sd_error *err);
/* Drop the locks; accepts -1. */
void img_lock_release(int lock_fd);

#endif
