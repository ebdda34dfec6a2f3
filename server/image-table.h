/* SPDX-License-Identifier: MIT */
/*
 * The images the server has open: one handle per image file (by device
 * and inode), shared by every export and connection that uses it, so
 * that inter-process locks and the engine's caches see one user. Each
 * image belongs to one data worker (its ring runs the image's I/O).
 *
 * Threads: the table is changed on the control loop only. A handle's
 * reference count is atomic: connections on workers drop references,
 * and the last drop hands the close to the control loop.
 */
#ifndef SENDENSE_SERVER_IMAGE_TABLE_H
#define SENDENSE_SERVER_IMAGE_TABLE_H

#include "common/coroutine.h"
#include "common/error.h"
#include "qcow2/image.h"
#include "server/server-config.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

struct sd_server;
struct worker;

/* A write in flight on an image, for arrival-order application of
 * overlapping writes (owner worker only). */
struct write_range {
    struct write_range *prev, *next;
    uint64_t offset, end;
    struct co_queue done;          /* later overlapping writes wait here */
};

enum { SRV_IMAGE_KEY_MAX = 36 };

struct srv_image {
    struct srv_image *next;        /* table list (control loop) */
    struct sd_server *srv;
    atomic_int refs;
    atomic_uint n_conns;           /* connections serving it (placement) */
    dev_t dev;
    ino_t ino;
    char key[SRV_IMAGE_KEY_MAX];   /* "dev:ino", the table index's key */
    char *path;
    enum sd_export_format format;  /* as opened (never AUTO) */
    bool writable;
    bool direct;
    bool temporary;                /* throw-away overlay, not in the table */
    struct sd_img *img;
    int splice_fd;                 /* sd_img_splice_fd(), or negative */
    struct sd_img_caps caps;
    uint64_t size;
    struct worker *owner;
    struct write_range *writes_head, *writes_tail;
};

/* An image for exp, opened or shared: exp->overlay == TEMPORARY gets a
 * fresh private overlay over the image. -EBUSY (with a message) when
 * the file is already open in a way exp cannot share (other format,
 * read-only vs writable, direct vs not); *holder is then that handle. */
int image_table_acquire(struct sd_server *srv, const struct sd_export *exp,
                        struct srv_image **out, struct srv_image **holder,
                        struct sd_error *err);
void image_ref(struct srv_image *im);
/* Any thread. The last reference closes the image on the control loop
 * (flushing it) and then retries exports waiting for it. */
void image_unref(struct srv_image *im);

/* Close everything still open (shutdown, control loop). */
void image_table_close_all(struct sd_server *srv);

/* Arrival order of overlapping writes (owner worker only): register in
 * the order requests arrive, then wait for the earlier ones. */
void image_write_begin(struct srv_image *im, struct write_range *wr,
                       uint64_t offset, uint64_t length);
void image_write_wait_earlier(struct srv_image *im, struct write_range *wr);
void image_write_end(struct srv_image *im, struct write_range *wr);

#endif
