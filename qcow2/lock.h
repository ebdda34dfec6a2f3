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
 * description and last until its last close; after a failure, closing fd
 * drops whatever was taken. Returns -EBUSY, with a one-line message
 * naming path, when another process (or another open of the same file in
 * this one) holds the image in an incompatible way; another negative
 * errno if locking itself fails. */
int img_lock_acquire(int fd, const char *path, bool writable,
                     struct sd_error *err);

#endif
