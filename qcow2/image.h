/* SPDX-License-Identifier: MIT */
/*
 * The image API: raw files, raw block devices and QCOW2 images behind one
 * interface.
 *
 * I/O model. An image belongs to one io_uring (struct sd_ring) owned by
 * the caller's thread. sd_img_submit() starts an operation in a coroutine
 * and returns at once; the request's callback runs from that ring's loop
 * (sd_ring_run_once) when the operation is complete. No operation blocks
 * the thread or holds a thread lock across I/O.
 *
 * Synchronous wrappers (sd_img_pread, ...) are for tools: called outside
 * a coroutine they drive the image's ring until the operation completes;
 * called inside one they simply run the operation.
 *
 * Errors are negative errno values; functions that can explain themselves
 * take a struct sd_error.
 */
#ifndef SENDENSE_IMAGE_H
#define SENDENSE_IMAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/error.h"

struct sd_ring;
struct sd_img;

enum sd_img_format {
    SD_FMT_AUTO = 0,
    SD_FMT_RAW,
    SD_FMT_QCOW2,
};

/* Deepest backing chain we follow; deeper chains are refused. */
enum { SD_MAX_CHAIN_DEPTH = 256 };

struct sd_img_open_opts {
    enum sd_img_format format;
    bool writable;
    bool direct;             /* O_DIRECT for the data file */
    bool direct_data;        /* aligned guest data skips the page cache,
                              * in the whole chain (blkfile.h) */
    bool no_backing;         /* do not open the backing chain */
    bool no_lock;            /* skip inter-process locks (tools only) */
    bool force_share;        /* inspect an image another process writes */
    struct sd_ring *ring;    /* ring for async I/O; may be NULL for tools */
};

/* Flags of a request. */
enum {
    SD_REQ_FUA         = 1 << 0,  /* write/zero: durable before completion */
    SD_REQ_MAY_UNMAP   = 1 << 1,  /* zero: may deallocate */
    SD_REQ_NO_FALLBACK = 1 << 2,  /* zero: fail -ENOTSUP unless fast */
};

enum sd_req_type {
    SD_REQ_READ,
    SD_REQ_WRITE,
    SD_REQ_ZERO,
    SD_REQ_DISCARD,
    SD_REQ_FLUSH,
    SD_REQ_BLOCK_STATUS,
};

/* One extent of a block-status answer. */
enum {
    SD_EXT_DATA       = 1 << 0,  /* backed by data somewhere in the chain */
    SD_EXT_ZERO       = 1 << 1,  /* reads as zeros */
    SD_EXT_ALLOCATED  = 1 << 2,  /* some layer of the chain decides it */
    SD_EXT_COMPRESSED = 1 << 3,
};

struct sd_extent {
    uint64_t offset;
    uint64_t length;
    unsigned flags;
    /* Layer that decides the extent: 0 = this image, 1 = its backing, ...;
     * -1 when no layer does (reads as zeros). */
    int depth;
    /* Host offset of the data in that layer's file, or UINT64_MAX. */
    uint64_t host_offset;
};

typedef void sd_img_cb(void *opaque, int ret);

struct sd_img_req {
    enum sd_req_type type;
    uint64_t offset;
    uint64_t length;
    void *buf;                 /* READ/WRITE: owned by the caller until cb */
    unsigned flags;
    struct sd_extent *extent;  /* BLOCK_STATUS: filled before cb */
    sd_img_cb *cb;
    void *opaque;
    struct sd_img *img_;       /* private to the image layer */
};

/* Capabilities a backend declares. */
struct sd_img_caps {
    bool can_write;
    bool can_trim;
    bool can_zero;
    bool can_fast_zero;
    bool can_multi_conn;
    bool has_backing;
};

struct sd_img_info {
    const char *format;          /* "raw" or "qcow2" */
    uint64_t virtual_size;
    uint64_t actual_size;        /* host bytes allocated for the file */
    uint32_t cluster_size;       /* 0 for raw */
    int qcow2_version;           /* 2 or 3 */
    unsigned refcount_bits;
    bool extended_l2;
    bool lazy_refcounts;
    bool corrupt;
    bool dirty;                  /* lazy refcounts not written back */
    const char *backing_file;    /* as written in the header, or NULL */
    const char *backing_format;  /* from the header extension, or NULL */
    const char *compression_type; /* "zlib" or "zstd" */
    unsigned nb_snapshots;
    unsigned nb_bitmaps;
    bool has_data_file;
};

/* Open path (and its backing chain). The image uses opts->ring for async
 * I/O; tools may pass NULL and use the synchronous wrappers. */
int sd_img_open(struct sd_img **out, const char *path,
                const struct sd_img_open_opts *opts, struct sd_error *err);

/* Hand the image (and its chain) to another ring, or to none (NULL:
 * plain system calls). Only while no operation is in flight: a server
 * opens and closes images on one thread with no ring, and runs their
 * I/O on a worker's ring in between. */
void sd_img_set_ring(struct sd_img *img, struct sd_ring *ring);

/* Flush (when writable) and close the image and its chain. Returns the
 * flush result; the image is closed either way. */
int sd_img_close(struct sd_img *img);

uint64_t sd_img_size(const struct sd_img *img);
const char *sd_img_path(const struct sd_img *img);
const char *sd_img_format_name(const struct sd_img *img);
struct sd_img *sd_img_backing(const struct sd_img *img);
void sd_img_get_caps(const struct sd_img *img, struct sd_img_caps *caps);
int sd_img_get_info(struct sd_img *img, struct sd_img_info *info);
/* For callers that move a raw image's data without reading it
 * (splice): the file it reads from, when that is on tmpfs or ramfs
 * (guest offsets are the file's; the descriptor stays open as long as
 * the image). -ENOTSUP for other formats, and for files on a device,
 * whose data is read with O_DIRECT (many reads at once, no page cache)
 * rather than spliced from the page cache one reply at a time. */
int sd_img_splice_fd(const struct sd_img *img);
/* Why the image refuses writes (marked corrupt), or NULL. */
const char *sd_img_corrupt_reason(const struct sd_img *img);

/* Text for an error an operation on img returned: for -EIO, why the
 * image (or a file of its chain) was found corrupt, when it was; else
 * strerror(). The text lives as long as the image. */
const char *sd_img_strerror(const struct sd_img *img, int err);

/* Detect the format of a file from its magic. */
int sd_img_probe_format(const char *path, enum sd_img_format *fmt,
                        struct sd_error *err);

/* Start an operation. Returns 0 when cb will be called, or a negative
 * errno (and cb will not be called) when the request is invalid. */
int sd_img_submit(struct sd_img *img, struct sd_img_req *req);

/* Synchronous wrappers (see the note at the top). */
int sd_img_pread(struct sd_img *img, void *buf, uint64_t len, uint64_t off);
int sd_img_pwrite(struct sd_img *img, const void *buf, uint64_t len,
                  uint64_t off, unsigned flags);
int sd_img_zero(struct sd_img *img, uint64_t off, uint64_t len,
                unsigned flags);
int sd_img_discard(struct sd_img *img, uint64_t off, uint64_t len);
int sd_img_flush(struct sd_img *img);
/* The extent at off, at most len long, resolved through the chain. */
int sd_img_block_status(struct sd_img *img, uint64_t off, uint64_t len,
                        struct sd_extent *ext);

/* Point a qcow2 image's header at another backing file (NULL: none).
 * The open chain is not changed: reopen the image to use the new one. */
int sd_img_set_backing(struct sd_img *img, const char *backing_file,
                       const char *backing_format, struct sd_error *err);

/* Make every cluster of the image's own layer unallocated, so the image
 * reads as its backing chain (what commit does to the top afterwards). */
int sd_img_make_empty(struct sd_img *img);

/* Create an image. */
struct sd_img_create_opts {
    enum sd_img_format format;     /* RAW or QCOW2 */
    uint64_t size;                 /* 0 with a backing file: take its size */
    uint32_t cluster_size;         /* 0 = 64 KiB */
    int version;                   /* 0 = 3 */
    unsigned refcount_bits;        /* 0 = 16 */
    bool extended_l2;
    bool lazy_refcounts;
    bool preallocate_metadata;
    const char *backing_file;      /* as it is written into the header */
    enum sd_img_format backing_format; /* AUTO = probe */
    const char *compression_type;  /* NULL or "zlib" or "zstd" */
};

int sd_img_create(const char *path, const struct sd_img_create_opts *opts,
                  struct sd_error *err);

#endif
