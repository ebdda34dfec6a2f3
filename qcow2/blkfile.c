/* SPDX-License-Identifier: MIT */
/*
 * Notes on the implementation.
 *
 * An operation inside a coroutine prepares one SQE whose user_data is a
 * struct blk_op living on the coroutine's stack, yields, and is resumed
 * by blk_op_complete(). Short reads and writes are continued in a loop,
 * as the kernel may return them for large requests.
 */
#include "config.h"

#include "blkfile.h"
#include "write-log.h"

#include "common/coroutine.h"
#include "common/error.h"
#include "common/ring.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <linux/magic.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/vfs.h>
#include <unistd.h>

enum { BLK_ASYNC_MIN = 128 * 1024 };

struct blk_op {
    struct sd_io io;
    struct coroutine *co;
    int res;
    bool done;
};

static void blk_op_complete(struct sd_io *io, int res)
{
    struct blk_op *op = (struct blk_op *)io;

    op->res = res;
    op->done = true;
    co_enter(op->co);
}

static bool use_ring(const struct blkfile *f)
{
    return f->ring && co_in_coroutine();
}

static bool use_ring_for_data(const struct blkfile *f)
{
    return use_ring(f) && !f->in_memory;
}

/* tmpfs and ramfs are mounted on an anonymous device (major 0); a file
 * system on a real block device is neither, and needs no fstatfs (one
 * system call less per image a reload opens). */
static bool memory_fs(int fd, dev_t dev)
{
    struct statfs sfs;

    if (major(dev) != 0)
        return false;
    return fstatfs(fd, &sfs) == 0 &&
           (sfs.f_type == TMPFS_MAGIC || sfs.f_type == RAMFS_MAGIC);
}

/* Prepare an SQE on f's ring bound to op; -EAGAIN-free by construction. */
static struct io_uring_sqe *blk_sqe(struct blkfile *f, struct blk_op *op)
{
    op->io.complete = blk_op_complete;
    op->co = co_self();
    op->done = false;
    return sd_ring_get_sqe(f->ring, &op->io);
}

/* Large buffered reads run inline in io_uring_enter() and so on one core,
 * or wait for the disk one after another; handing them to the kernel's
 * workers lets several proceed at once. Small ones are cheaper inline.
 * Writes are not handed over: buffered writes to one file serialize in
 * the kernel anyway, and the hand-over only costs (bench/README.md). */
static void blk_maybe_async(struct io_uring_sqe *sqe, size_t len)
{
    if (len >= BLK_ASYNC_MIN)
        sqe->flags |= IOSQE_ASYNC;
}

static int blk_wait(struct blk_op *op)
{
    while (!op->done)
        co_yield();
    return op->res;
}

/* The O_DIRECT twin of fd, opened through /proc/self/fd so it is the
 * same file even if the path was renamed meanwhile. On tmpfs and ramfs
 * (in_memory) the page cache is the medium itself, so direct I/O would
 * buy nothing; file systems without direct I/O refuse the open. Either
 * way: -1, and the file keeps to the page cache. Opened at the first
 * data request, not at open time: a reload that opens a thousand images
 * should not pay for twins that may never be used. */
static int open_direct_twin(const struct blkfile *f)
{
    char proc[64];

    if (f->in_memory)
        return -1;
    snprintf(proc, sizeof(proc), "/proc/self/fd/%d", f->fd);
    return open(proc, (f->writable ? O_RDWR : O_RDONLY) | O_DIRECT |
                      O_CLOEXEC);
}

/* The descriptor for one step of a data request: the O_DIRECT twin when
 * the request is large and buffer, offset and length are aligned, else
 * the buffered one. Small requests stay buffered: the page cache absorbs
 * random 4 KiB writes and serves rereads far faster than the device, and
 * copying 4 KiB costs little; what direct I/O saves is the copy and the
 * cache pollution of bulk transfers. Writes go direct from a smaller size
 * than reads (min_len): a buffered write of tens of KiB is one that ext4
 * cannot take without blocking, so io_uring hands it to a worker thread,
 * and the final flush writes it back again; the incremental backup's
 * scattered 64 KiB writes moved 35-38 % faster direct (bench/README.md).
 * Reads of that size keep the page cache, which serves rereads. */
static int data_fd(struct blkfile *f, const void *buf, size_t len,
                   uint64_t off, size_t min_len)
{
    if (len < min_len)
        return f->fd;
    if (f->dfd == BLK_DFD_UNOPENED)
        f->dfd = open_direct_twin(f);
    if (f->dfd < 0)
        return f->fd;
    if (((uintptr_t)buf | off | len) & (BLK_DIO_ALIGN - 1))
        return f->fd;
    return f->dfd;
}

/* A device whose direct I/O wants more than BLK_DIO_ALIGN refuses with
 * EINVAL: from then on the file goes through the page cache only. */
static bool dio_refused(struct blkfile *f, int fd, ssize_t n)
{
    if (fd != f->dfd || n != -EINVAL)
        return false;
    close(f->dfd);
    f->dfd = -1;
    return true;
}

static ssize_t blk_read_once(struct blkfile *f, int fd, void *buf,
                             size_t len, uint64_t off, bool data)
{
    if (data ? use_ring_for_data(f) : use_ring(f)) {
        struct blk_op op;
        struct io_uring_sqe *sqe = blk_sqe(f, &op);
        if (!sqe)
            return -EIO;
        io_uring_prep_read(sqe, fd, buf, len, off);
        if (fd == f->fd)
            blk_maybe_async(sqe, len);
        return blk_wait(&op);
    }
    ssize_t n = pread(fd, buf, len, off);
    return n < 0 ? -errno : n;
}

/* Small data writes through the page cache are written here, not by the
 * ring. File systems without asynchronous buffered writes (ext4 among
 * them) refuse them inline, so io_uring hands every one to a worker
 * thread: a wake-up and two context switches per 4 KiB, more than the
 * copy into the page cache itself (random 4 KiB writes to a file on disk:
 * 14-21 us of server CPU per request through the ring, 7-9 written here;
 * bench/README.md). Only whole pages of a regular file opened without
 * O_DIRECT: a partial page not in the cache would be read from the
 * device first, and direct or block-device writes wait for the device.
 * What is left to wait for is writeback throttling (too many dirty
 * pages), which then holds back this loop's other connections too; it
 * throttles the writer whichever thread writes. Metadata keeps the ring. */
static bool write_in_place(const struct blkfile *f, int fd, size_t len,
                           uint64_t off, bool data)
{
    return data && fd == f->fd && !f->is_blockdev && !f->direct &&
           len <= BLK_INLINE_WRITE_MAX &&
           ((off | len) & (BLK_DIO_ALIGN - 1)) == 0;
}

static ssize_t blk_write_once(struct blkfile *f, int fd, const void *buf,
                              size_t len, uint64_t off, bool data)
{
    if ((data ? use_ring_for_data(f) : use_ring(f)) &&
        !write_in_place(f, fd, len, off, data)) {
        struct blk_op op;
        struct io_uring_sqe *sqe = blk_sqe(f, &op);
        if (!sqe)
            return -EIO;
        io_uring_prep_write(sqe, fd, buf, len, off);
        return blk_wait(&op);
    }
    ssize_t n = pwrite(fd, buf, len, off);
    return n < 0 ? -errno : n;
}

static int read_loop(struct blkfile *f, void *buf, size_t len, uint64_t off,
                     bool data)
{
    char *p = buf;

    while (len) {
        size_t chunk = len > (1u << 30) ? (1u << 30) : len;
        int fd = data ? data_fd(f, p, chunk, off, BLK_DIO_MIN) : f->fd;
        ssize_t n = blk_read_once(f, fd, p, chunk, off, data);
        if (n == -EINTR || n == -EAGAIN || dio_refused(f, fd, n))
            continue;
        if (n < 0)
            return (int)n;
        if (n == 0) {           /* end of file: the rest reads as zeros */
            memset(p, 0, len);
            return 0;
        }
        p += n;
        off += n;
        len -= n;
    }
    return 0;
}

int blk_pread(struct blkfile *f, void *buf, size_t len, uint64_t off)
{
    return read_loop(f, buf, len, off, false);
}

int blk_pread_data(struct blkfile *f, void *buf, size_t len, uint64_t off)
{
    return read_loop(f, buf, len, off, true);
}

int blk_pread_exact(struct blkfile *f, void *buf, size_t len, uint64_t off)
{
    uint64_t size;
    int ret = blk_get_size(f, &size);

    if (ret < 0)
        return ret;
    if (off > size || len > size - off)
        return -EIO;
    return blk_pread(f, buf, len, off);
}

static int write_loop(struct blkfile *f, const void *buf, size_t len,
                      uint64_t off, bool data)
{
    const char *p = buf;
    const uint64_t start = off;
    const size_t total = len;

    if (!f->writable)
        return -EPERM;
    while (len) {
        size_t chunk = len > (1u << 30) ? (1u << 30) : len;
        int fd = data ? data_fd(f, p, chunk, off, BLK_DIO_WRITE_MIN)
                      : f->fd;
        ssize_t n = blk_write_once(f, fd, p, chunk, off, data);
        if (n == -EINTR || n == -EAGAIN || dio_refused(f, fd, n))
            continue;
        if (n < 0)
            return (int)n;
        if (n == 0)
            return -EIO;
        p += n;
        off += n;
        len -= n;
    }
    f->dirty = true;
    if (f->log)
        write_log_append(f->log, WLOG_WRITE, start, total, buf);
    return 0;
}

int blk_pwrite(struct blkfile *f, const void *buf, size_t len, uint64_t off)
{
    return write_loop(f, buf, len, off, false);
}

int blk_pwrite_data(struct blkfile *f, const void *buf, size_t len,
                    uint64_t off)
{
    return write_loop(f, buf, len, off, true);
}

void *blk_alloc_buffer(size_t len)
{
    void *p;

    if (posix_memalign(&p, BLK_DIO_ALIGN, len ? len : 1) != 0)
        return NULL;
    return p;
}

static int blk_fallocate(struct blkfile *f, int mode, uint64_t off,
                         uint64_t len)
{
    if (use_ring(f)) {
        struct blk_op op;
        struct io_uring_sqe *sqe = blk_sqe(f, &op);
        if (!sqe)
            return -EIO;
        io_uring_prep_fallocate(sqe, f->fd, mode, off, len);
        return blk_wait(&op);
    }
    return fallocate(f->fd, mode, off, len) < 0 ? -errno : 0;
}

static int blk_write_zeros(struct blkfile *f, uint64_t off, uint64_t len)
{
    enum { ZBUF = 1 << 20 };
    void *zeros = calloc(1, ZBUF);
    int ret = 0;

    if (!zeros)
        return -ENOMEM;
    while (len && ret == 0) {
        size_t n = len < ZBUF ? len : ZBUF;
        ret = blk_pwrite(f, zeros, n, off);
        off += n;
        len -= n;
    }
    free(zeros);
    return ret;
}

int blk_zero_range(struct blkfile *f, uint64_t off, uint64_t len, bool punch)
{
    int ret;

    if (!f->writable)
        return -EPERM;
    if (!len)
        return 0;
    if (f->is_blockdev) {
        ret = blk_fallocate(f, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE,
                            off, len);
    } else if (punch) {
        ret = blk_fallocate(f, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                            off, len);
        if (ret == -EOPNOTSUPP)
            ret = blk_fallocate(f, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE,
                                off, len);
    } else {
        ret = blk_fallocate(f, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE,
                            off, len);
    }
    if (ret == -EOPNOTSUPP || ret == -EINVAL) {
        /* Zeroing never grows a file: past its end it reads zeros. */
        uint64_t size;
        ret = blk_get_size(f, &size);
        if (ret < 0 || off >= size)
            return ret;
        return blk_write_zeros(f, off, size - off < len ? size - off : len);
    }
    if (ret == 0)
        f->dirty = true;
    if (ret == 0 && f->log)
        write_log_append(f->log, WLOG_ZERO, off, len, NULL);
    return ret;
}

/* A file nothing was written to since the last flush is not flushed
 * again: on ext4 even a clean fdatasync() costs a device cache flush, and
 * removing a thousand exports would wait for a thousand of them. The flag
 * is cleared before the sync starts and set again by every write that
 * completes, so a write racing the sync is never covered by mistake. */
static int sync_file(struct blkfile *f)
{
    if (use_ring(f)) {
        struct blk_op op;
        struct io_uring_sqe *sqe = blk_sqe(f, &op);
        if (!sqe)
            return -EIO;
        io_uring_prep_fsync(sqe, f->fd, IORING_FSYNC_DATASYNC);
        return blk_wait(&op);
    }
    return fdatasync(f->fd) < 0 ? -errno : 0;
}

int blk_flush(struct blkfile *f)
{
    int ret;

    if (!f->writable)
        return 0;
    /* Clean, but a flush begun earlier may still be syncing: it covers
     * every write done before this call, and until it ends they are not
     * durable. Wait for it rather than answer early (if it fails, the
     * file is dirty again and this flush syncs itself). */
    while (!f->dirty && f->flushing && co_in_coroutine())
        co_queue_wait(&f->flushed);
    if (!f->dirty)
        return 0;
    if (f->log)
        write_log_append(f->log, WLOG_FLUSH, 0, 0, NULL);
    f->dirty = false;
    f->flushing++;
    ret = sync_file(f);
    f->flushing--;
    if (ret < 0)
        f->dirty = true;
    co_queue_wake_all(&f->flushed);
    return ret;
}

int blk_truncate(struct blkfile *f, uint64_t size)
{
    if (!f->writable)
        return -EPERM;
    if (f->is_blockdev)
        return -ENOTSUP;
    if (ftruncate(f->fd, (off_t)size) < 0)
        return -errno;
    f->dirty = true;
    if (f->log)
        write_log_append(f->log, WLOG_TRUNCATE, size, 0, NULL);
    return 0;
}

int blk_get_size(struct blkfile *f, uint64_t *size)
{
    struct stat st;

    if (f->is_blockdev) {
        uint64_t bytes;
        if (ioctl(f->fd, BLKGETSIZE64, &bytes) < 0)
            return -errno;
        *size = bytes;
        return 0;
    }
    if (fstat(f->fd, &st) < 0)
        return -errno;
    *size = (uint64_t)st.st_size;
    return 0;
}

int blk_allocated_bytes(struct blkfile *f, uint64_t *bytes)
{
    struct stat st;

    if (fstat(f->fd, &st) < 0)
        return -errno;
    *bytes = (uint64_t)st.st_blocks * 512;
    return 0;
}

int blk_open(struct blkfile **out, const char *path, unsigned flags,
             struct sd_error *err)
{
    int oflags = O_CLOEXEC;
    struct blkfile *f;
    struct stat st;
    int e;

    if (flags & BLK_WRITABLE)
        oflags |= O_RDWR;
    else
        oflags |= O_RDONLY;
    if (flags & BLK_CREATE)
        oflags |= O_CREAT | O_EXCL;
    if (flags & BLK_DIRECT)
        oflags |= O_DIRECT;

    f = calloc(1, sizeof(*f));
    if (!f)
        return sd_error_set(err, -ENOMEM, "out of memory");
    f->path = strdup(path);
    if (!f->path) {
        free(f);
        return sd_error_set(err, -ENOMEM, "out of memory");
    }
    f->dfd = -1;
    f->fd = open(path, oflags, 0644);
    if (f->fd < 0) {
        e = -errno;
        free(f->path);
        free(f);
        return sd_error_set(err, e, "could not open '%s': %s", path,
                            strerror(-e));
    }
    if (fstat(f->fd, &st) < 0) {
        e = -errno;
        blk_close(f);
        return sd_error_set(err, e, "could not stat '%s': %s", path,
                            strerror(-e));
    }
    f->writable = flags & BLK_WRITABLE;
    f->direct = flags & BLK_DIRECT;
    if ((flags & BLK_DIRECT_DATA) && !f->direct)
        f->dfd = BLK_DFD_UNOPENED;
    f->is_blockdev = S_ISBLK(st.st_mode);
    f->in_memory = !f->is_blockdev && memory_fs(f->fd, st.st_dev);
    f->size_at_open = (uint64_t)st.st_size;
    e = f->is_blockdev ? blk_get_size(f, &f->size_at_open) : 0;
    if (e < 0) {
        blk_close(f);
        return sd_error_set(err, e, "could not get the size of '%s': %s",
                            path, strerror(-e));
    }
    f->dev = st.st_dev;
    f->ino = st.st_ino;
    if (f->writable)
        f->log = write_log_open_from_env();
    *out = f;
    return 0;
}

void blk_close(struct blkfile *f)
{
    if (!f)
        return;
    if (f->fd >= 0)
        close(f->fd);
    if (f->dfd >= 0)
        close(f->dfd);
    write_log_close(f->log);
    free(f->path);
    free(f);
}
