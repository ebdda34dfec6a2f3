/* SPDX-License-Identifier: MIT */
/*
 * Whole-image operations over the public image API: convert, commit and
 * rebase. They are what `sendense-img convert|commit|rebase` run, and
 * what the catalog calls for consolidation without going through the
 * CLI. Each is synchronous for its caller (it owns a private io_uring and
 * keeps several requests in flight on it), never prints, and explains a
 * failure in struct sd_error.
 */
#ifndef SENDENSE_IMG_OPS_H
#define SENDENSE_IMG_OPS_H

#include <stdbool.h>
#include <stdint.h>

#include "image.h"

struct sd_convert_opts {
    enum sd_img_format src_format;      /* AUTO = probe */
    enum sd_img_format dst_format;      /* RAW or QCOW2 */
    /* Layout of a qcow2 destination (cluster size, version...); format,
     * size and backing fields are set by convert. */
    struct sd_img_create_opts create;
    /* Create the destination on top of this backing file (written into
     * its header as given) and copy only what the source's top layer
     * allocates, as qemu-img convert -B does: the caller promises the
     * backing holds what lies below the source's top layer. */
    const char *dst_backing;
    enum sd_img_format dst_backing_format;
    bool force_share;                   /* read a source others write */
    unsigned max_requests;              /* in flight; 0 = 8 */
    uint32_t request_size;              /* bytes per request; 0 = 2 MiB */
};

/* Copy src (with its backing chain) into dst, which is created (an
 * existing file is replaced). Zero ranges are not written: a new qcow2
 * image reads as zeros and a raw one is left sparse. */
int sd_img_convert(const char *src, const char *dst,
                   const struct sd_convert_opts *opts, struct sd_error *err);

struct sd_commit_opts {
    enum sd_img_format format;          /* of the top image; AUTO = probe */
    /* Leave the top image as it is. By default it is emptied afterwards,
     * as qemu-img commit does, so it reads through to its backing file. */
    bool keep_top;
};

/* Write everything the top image allocates (data and zeros) into its
 * backing file, flush it, then empty the top unless keep_top. */
int sd_img_commit(const char *path, const struct sd_commit_opts *opts,
                  struct sd_error *err);

struct sd_rebase_opts {
    enum sd_img_format format;          /* of the image; AUTO = probe */
    /* The new backing file as it is to be written into the header;
     * relative names are relative to the image's folder. NULL or ""
     * removes the backing file. */
    const char *backing;
    enum sd_img_format backing_format;  /* AUTO = probe (safe mode) */
    /* Only rewrite the header. Otherwise (safe mode) every range the image
     * does not allocate and whose content differs between the old and new
     * backing chains is first copied into the image from the old chain,
     * so its guest-visible content does not change. */
    bool unsafe;
};

int sd_img_rebase(const char *path, const struct sd_rebase_opts *opts,
                  struct sd_error *err);

/* qemu's path_combine: the path of a backing file named in an image
 * header, relative to the image's folder, built textually ("top.qcow2" +
 * "b.qcow2" = "b.qcow2", "d/top.qcow2" + "b" = "d/b"). Returns a malloc'd
 * string or NULL when out of memory. */
char *sd_img_combine_path(const char *image, const char *backing);

#endif
