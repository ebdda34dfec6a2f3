/* SPDX-License-Identifier: MIT */
/*
 * Reading a directory's small files in batches.
 *
 * Each file is a chain of three linked requests on a direct descriptor
 * slot of a private ring: open into slot i, read from slot i, close slot
 * i. A failed open cancels the rest of its chain; the read is
 * hard-linked to the close, so a failed read still frees the slot. The
 * kernel opens and reads page-cached files without leaving the
 * submitting call, so a batch costs one io_uring_enter().
 *
 * A read shorter than asked is the end of the file: the chain is only
 * used for regular files, which read short only at their end.
 */
#include "config.h"

#include "batch-read.h"

#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum {
    BATCH_FILES = 64,                       /* slots, and files per call */
    BATCH_SQES = 3 * BATCH_FILES,
};

enum batch_op { OP_OPEN, OP_READ, OP_CLOSE };

/* run_batch() could not wait for its requests: the kernel may still
 * write into the buffers, which must then never be freed. */
enum { BATCH_LOST = -EIO };

static uint64_t tag(size_t slot, enum batch_op op)
{
    return ((uint64_t)slot << 2) | (uint64_t)op;
}

static void queue_file(struct io_uring *ring, int dir_fd, const char *name,
                       unsigned slot, char *buf, size_t max_len)
{
    struct io_uring_sqe *sqe;

    /* Direct descriptors never reach the fd table: no O_CLOEXEC. */
    sqe = io_uring_get_sqe(ring);
    io_uring_prep_openat_direct(sqe, dir_fd, name,
                                O_RDONLY | O_NONBLOCK | O_NOCTTY, 0, slot);
    sqe->flags |= IOSQE_IO_LINK;
    io_uring_sqe_set_data64(sqe, tag(slot, OP_OPEN));

    sqe = io_uring_get_sqe(ring);
    io_uring_prep_read(sqe, (int)slot, buf, (unsigned)max_len, 0);
    sqe->flags |= IOSQE_FIXED_FILE | IOSQE_IO_HARDLINK;
    io_uring_sqe_set_data64(sqe, tag(slot, OP_READ));

    sqe = io_uring_get_sqe(ring);
    io_uring_prep_close_direct(sqe, slot);
    io_uring_sqe_set_data64(sqe, tag(slot, OP_CLOSE));
}

/* Copy what slot i read into files[i]; a failure leaves data NULL. */
static void keep_result(struct sd_batch_file *file, const char *buf,
                        int res, size_t max_len)
{
    if (res < 0 || (size_t)res >= max_len)
        return;
    file->data = malloc((size_t)res + 1);
    if (!file->data)
        return;
    memcpy(file->data, buf, (size_t)res);
    file->data[res] = '\0';
    file->len = (size_t)res;
}

static int run_batch(struct io_uring *ring, int dir_fd,
                     struct sd_batch_file *files, size_t n, char *bufs,
                     size_t max_len)
{
    int read_res[BATCH_FILES];
    size_t i, seen, submitted;
    int ret;

    for (i = 0; i < n; i++) {
        read_res[i] = -ECANCELED;
        queue_file(ring, dir_fd, files[i].name, (unsigned)i,
                   bufs + i * max_len, max_len);
    }
    ret = io_uring_submit(ring);
    if (ret < 0)
        return ret;
    submitted = (size_t)ret;
    /* Every submitted request completes, cancelled ones too; a request
     * the kernel did not take never runs. */
    for (seen = 0; seen < submitted; seen++) {
        struct io_uring_cqe *cqe;
        uint64_t t;

        do
            ret = io_uring_wait_cqe(ring, &cqe);
        while (ret == -EINTR);
        if (ret < 0)
            return BATCH_LOST;
        t = io_uring_cqe_get_data64(cqe);
        if ((t & 3) == OP_READ && (t >> 2) < n)
            read_res[t >> 2] = cqe->res;
        io_uring_cqe_seen(ring, cqe);
    }
    for (i = 0; i < n; i++)
        keep_result(&files[i], bufs + i * max_len, read_res[i], max_len);
    return submitted == 3 * n ? 0 : -EAGAIN;
}

int sd_batch_read_small_files(int dir_fd, struct sd_batch_file *files,
                              size_t n, size_t max_len)
{
    struct io_uring ring;
    char *bufs;
    size_t done;
    int ret;

    for (done = 0; done < n; done++) {
        files[done].data = NULL;
        files[done].len = 0;
    }
    if (n == 0 || max_len == 0 || max_len > INT32_MAX)
        return 0;
    bufs = malloc(BATCH_FILES * max_len);
    if (!bufs)
        return -ENOMEM;
    ret = io_uring_queue_init(BATCH_SQES, &ring, 0);
    if (ret < 0) {
        free(bufs);
        return ret;
    }
    ret = io_uring_register_files_sparse(&ring, BATCH_FILES);
    for (done = 0; ret == 0 && done < n; done += BATCH_FILES) {
        size_t k = n - done < BATCH_FILES ? n - done : BATCH_FILES;

        ret = run_batch(&ring, dir_fd, files + done, k, bufs, max_len);
    }
    io_uring_queue_exit(&ring);
    if (ret != BATCH_LOST)
        free(bufs);     /* else leaked on purpose: see BATCH_LOST */
    return ret < 0 ? ret : 0;
}
