/* SPDX-License-Identifier: MIT */
/*
 * What the generic image layer and its backends share. Backends implement
 * struct sd_backend_ops; every co_* function runs inside a coroutine on
 * the image's ring (or synchronously in tools) and returns 0 or -errno.
 */
#ifndef SENDENSE_IMAGE_INTERNAL_H
#define SENDENSE_IMAGE_INTERNAL_H

#include "image.h"
#include "blkfile.h"

struct sd_backend_ops {
    const char *name;
    /* img->file is open; parse and set img->size and img->priv. */
    int (*open)(struct sd_img *img, const struct sd_img_open_opts *opts,
                struct sd_error *err);
    /* Release img->priv; img->file is closed by the caller. */
    int (*close)(struct sd_img *img);
    int (*co_read)(struct sd_img *img, void *buf, uint64_t off, uint64_t len);
    int (*co_write)(struct sd_img *img, const void *buf, uint64_t off,
                    uint64_t len, unsigned flags);
    int (*co_zero)(struct sd_img *img, uint64_t off, uint64_t len,
                   unsigned flags);
    int (*co_discard)(struct sd_img *img, uint64_t off, uint64_t len);
    int (*co_flush)(struct sd_img *img);
    /* This layer only: the extent at off (at most len long). Without
     * SD_EXT_ALLOCATED the backing chain decides; depth is ignored. */
    int (*co_block_status)(struct sd_img *img, uint64_t off, uint64_t len,
                           struct sd_extent *ext);
    void (*get_caps)(const struct sd_img *img, struct sd_img_caps *caps);
    int (*get_info)(struct sd_img *img, struct sd_img_info *info);
    /* Optional: record in the file that the image is corrupt. */
    void (*mark_corrupt)(struct sd_img *img);
};

struct sd_img {
    const struct sd_backend_ops *ops;
    struct blkfile *file;
    char *path;
    uint64_t size;             /* virtual size in bytes */
    bool writable;
    bool direct_data;          /* passed on to the backing chain */
    bool locked;               /* took (some of) the image locks */
    struct sd_img *backing;    /* owned; NULL when none */
    unsigned chain_depth;      /* 0 for the top image */
    struct sd_img *parent;     /* the overlay above us, while opening */
    struct sd_ring *ring;
    void *priv;                /* backend state */
    char *corrupt_reason;      /* set once: the image refuses writes */
    char *corrupt_message;     /* "'<path>' is corrupt: <reason>", with it:
                                * a reply's text, valid while img is */
};

/* qcow2-io.c: unallocate this layer's clusters of a range (make_empty). */
int qcow2_make_empty_range(struct sd_img *img, uint64_t off, uint64_t len);

extern const struct sd_backend_ops sd_raw_ops;
extern const struct sd_backend_ops sd_qcow2_ops;

/* Open a backing image for img (path already resolved against img's
 * folder). Applies the chain-depth cap and loop detection. */
int sd_img_open_backing(struct sd_img *img, const char *path,
                        enum sd_img_format fmt, struct sd_error *err);

/* Resolve a backing file name as written in an image header against the
 * folder of the image. Returns a malloc'd path or NULL. */
char *sd_img_resolve_backing(const char *image_path, const char *backing);

/* Read from the backing chain; beyond the backing's end (or without a
 * backing file) the bytes read as zeros. */
int sd_img_co_read_backing(struct sd_img *img, void *buf, uint64_t off,
                           uint64_t len);

/* The chain-resolved block status, used by BLOCK_STATUS requests. */
int sd_img_co_block_status(struct sd_img *img, uint64_t off, uint64_t len,
                           struct sd_extent *ext);

/* Mark the image corrupt: it refuses writes from now on. Returns -EIO. */
int sd_img_set_corrupt(struct sd_img *img, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif
