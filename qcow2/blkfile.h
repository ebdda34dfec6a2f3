/* SPDX-License-Identifier: MIT */
/*
 * blkfile: every byte the image engine reads or writes goes through here.
 *
 * Inside a coroutine an operation is an io_uring SQE on the file's ring
 * and the coroutine yields until its CQE arrives; outside any coroutine
 * (tools, open-time header parsing) it is a plain system call. Either way
 * the caller sees 0 or a negative errno.
 *
 * Test mode: when the environment variable SENDENSE_WRITE_LOG names a
 * file, every write, zero-range, truncate and flush on a writable file is
 * appended to that log (see write-log.h) so that the power-loss test can
 * rebuild the file as it may have been on disk at any moment.
 */
#ifndef SENDENSE_BLKFILE_H
#define SENDENSE_BLKFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/coroutine.h"

struct sd_ring;
struct sd_error;
struct write_log;

struct blkfile {
    int fd;
    char *path;
    bool writable;
    bool direct;               /* opened O_DIRECT: buffers must be aligned */
    bool dirty;                /* written since the last flush began */
    unsigned flushing;         /* flushes whose sync is under way */
    struct co_queue flushed;   /* coroutines waiting for one to end */
    int dfd;                   /* O_DIRECT twin of fd for aligned data I/O,
                                * -1 if none, BLK_DFD_UNOPENED until the
                                * first data request */
    bool is_blockdev;
    bool in_memory;            /* on tmpfs/ramfs: data I/O is a memcpy */
    dev_t dev;
    ino_t ino;
    uint64_t size_at_open;     /* what blk_get_size said when opened */
    struct sd_ring *ring;      /* ring used inside coroutines; may be NULL */
    struct write_log *log;     /* test mode only */
};

enum blk_open_flags {
    BLK_WRITABLE = 1 << 0,
    BLK_DIRECT   = 1 << 1,
    BLK_CREATE   = 1 << 2,     /* create, fail if it exists */
    BLK_DIRECT_DATA = 1 << 3,  /* aligned data I/O bypasses the page cache */
};

/* Data reads of at least BLK_DIO_MIN bytes, and data writes of at least
 * BLK_DIO_WRITE_MIN, whose buffer, offset and length are aligned to
 * BLK_DIO_ALIGN go through dfd. */
enum { BLK_DIO_ALIGN = 4096, BLK_DIO_MIN = 128 * 1024,
       BLK_DIO_WRITE_MIN = 32 * 1024, BLK_DFD_UNOPENED = -2 };
/* Buffered data writes of whole pages up to this size are written by the
 * calling thread, not handed to the ring (blkfile.c, write_in_place). */
enum { BLK_INLINE_WRITE_MAX = 16 * 1024 };

int blk_open(struct blkfile **out, const char *path, unsigned flags,
             struct sd_error *err);
void blk_close(struct blkfile *f);

/* Read len bytes; bytes past the end of the file read as zeros. */
int blk_pread(struct blkfile *f, void *buf, size_t len, uint64_t off);
/* Read exactly len bytes or fail with -EIO (for metadata). */
int blk_pread_exact(struct blkfile *f, void *buf, size_t len, uint64_t off);
int blk_pwrite(struct blkfile *f, const void *buf, size_t len, uint64_t off);
/* Guest data: like blk_pread/blk_pwrite, but with BLK_DIRECT_DATA a
 * large aligned request skips the page cache (no copy, no cache pollution, no
 * kernel worker thread for cold reads). Metadata stays on the buffered
 * path, where it is cached. Linux keeps the two coherent: a direct read
 * writes back dirty cached pages of its range first and a direct write
 * invalidates them. */
int blk_pread_data(struct blkfile *f, void *buf, size_t len, uint64_t off);
int blk_pwrite_data(struct blkfile *f, const void *buf, size_t len,
                    uint64_t off);
/* A buffer suitable for direct data I/O (free() it). */
void *blk_alloc_buffer(size_t len);
/* Make the range read as zeros; punch a hole when punch is true. */
int blk_zero_range(struct blkfile *f, uint64_t off, uint64_t len, bool punch);
int blk_flush(struct blkfile *f);
int blk_truncate(struct blkfile *f, uint64_t size);
int blk_get_size(struct blkfile *f, uint64_t *size);
/* Bytes allocated on the host (st_blocks * 512). */
int blk_allocated_bytes(struct blkfile *f, uint64_t *bytes);

#endif
