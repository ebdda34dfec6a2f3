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
 * read and refuses to share write. The locks belong to fd's open file
 * description and last until img_lock_release() or until its last
 * reference goes; after a failure, img_lock_release() drops whatever was
 * taken. Returns -EBUSY, with a one-line message naming path, when
 * another process (or another open of the same file in this one) holds
 * the image in an incompatible way; another negative errno if locking
 * itself fails. */
int img_lock_acquire(int fd, const char *path, bool writable,
                     struct sd_error *err);

/* Drop every lock fd's open file description holds, now. Close alone
 * drops them only with the description's last reference, which io_uring
 * may keep for a while after a request on it has finished; call this
 * just before closing an image that took locks. Returns 0 or a negative
 * errno (-EBADF for a descriptor that is not open). */
int img_lock_release(int fd);

#endif
