/* SPDX-License-Identifier: MIT */
#include "config.h"

#include "server/image-table.h"
#include "common/log.h"
#include "server/exports.h"
#include "server/server.h"
#include "server/worker.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static enum sd_img_format img_format(enum sd_export_format f)
{
    return f == SD_FORMAT_RAW ? SD_FMT_RAW
         : f == SD_FORMAT_QCOW2 ? SD_FMT_QCOW2 : SD_FMT_AUTO;
}

static enum sd_export_format format_of(struct sd_img *img)
{
    return strcmp(sd_img_format_name(img), "qcow2") == 0 ? SD_FORMAT_QCOW2
                                                         : SD_FORMAT_RAW;
}

static void make_key(char *key, size_t size, dev_t dev, ino_t ino)
{
    snprintf(key, size, "%llx:%llx", (unsigned long long)dev,
             (unsigned long long)ino);
}

/* By device and inode, through an index: a reload that opens a thousand
 * images must not compare each with every other. */
static struct srv_image *find(struct sd_server *srv, dev_t dev, ino_t ino)
{
    char key[SRV_IMAGE_KEY_MAX];
    size_t value;

    make_key(key, sizeof(key), dev, ino);
    if (!name_index_get(&srv->image_index, key, &value))
        return NULL;
    return (struct srv_image *)(uintptr_t)value;
}

static const char *describe(const struct srv_image *im)
{
    return im->writable ? "writable" : "read-only";
}

static bool can_share(const struct srv_image *im, const struct sd_export *e,
                      enum sd_export_format fmt)
{
    return (e->format == SD_FORMAT_AUTO || fmt == im->format) &&
           im->direct == e->direct && (im->writable || e->readonly);
}

static int open_image(struct sd_server *srv, const char *path,
                      enum sd_img_format fmt, bool writable, bool direct,
                      struct srv_image **out, struct sd_error *err)
{
    struct srv_image *im = calloc(1, sizeof(*im));
    struct sd_img_open_opts opts = { .format = fmt, .writable = writable,
                                     .direct = direct,
                                     .direct_data = !direct };
    int ret;

    if (!im || !(im->path = strdup(path))) {
        free(im);
        return sd_error_set(err, -ENOMEM, "out of memory");
    }
    im->srv = srv;
    im->owner = server_pick_image_worker(srv);
    /* Opened here with plain system calls: the owner's ring belongs to
     * the owner's thread, which is running. */
    ret = sd_img_open(&im->img, path, &opts, err);
    if (ret < 0) {
        free(im->path);
        free(im);
        return ret;
    }
    atomic_init(&im->refs, 1);
    im->writable = writable;
    im->direct = direct;
    im->format = format_of(im->img);
    im->size = sd_img_size(im->img);
    sd_img_get_caps(im->img, &im->caps);
    im->splice_fd = sd_img_splice_fd(im->img);
    atomic_fetch_add(&im->owner->n_images, 1);
    sd_img_set_ring(im->img, &im->owner->ring);
    *out = im;
    return 0;
}

/* A private qcow2 overlay over exp's image: created in the overlay
 * directory, opened, then unlinked, so it goes with its last user. */
static int open_temporary(struct sd_server *srv, const struct sd_export *e,
                          struct srv_image **out, struct sd_error *err)
{
    static atomic_uint counter;
    struct sd_img_create_opts co = { .format = SD_FMT_QCOW2,
                                     .extended_l2 = true,
                                     .backing_file = e->path,
                                     .backing_format = img_format(e->format) };
    char path[4096];
    struct stat st;
    int ret;

    /* Our own writable handle of the base would fail the overlay's read
     * lock with a message about "another process": say what it is. */
    if (stat(e->path, &st) == 0) {
        struct srv_image *im = find(srv, st.st_dev, st.st_ino);
        if (im && im->writable)
            return sd_error_set(err, -EBUSY, "%s is exported writable by this "
                                "server; a temporary overlay needs its base "
                                "read-only", e->path);
    }
    snprintf(path, sizeof(path), "%s/overlay-%d-%u.qcow2", srv->overlay_dir,
             (int)getpid(), atomic_fetch_add(&counter, 1));
    ret = sd_img_create(path, &co, err);
    if (ret < 0)
        return ret;
    ret = open_image(srv, path, SD_FMT_QCOW2, true, false, out, err);
    if (unlink(path) < 0 && ret == 0)
        sd_log_warn("overlay %s: cannot unlink: %s", path, strerror(errno));
    if (ret < 0)
        return ret;
    (*out)->temporary = true;
    return 0;
}

int image_table_acquire(struct sd_server *srv, const struct sd_export *e,
                        struct srv_image **out, struct srv_image **holder,
                        struct sd_error *err)
{
    enum sd_img_format fmt = img_format(e->format);
    struct srv_image *im;
    struct stat st;
    int ret;

    *holder = NULL;
    if (e->overlay == SD_OVERLAY_TEMPORARY)
        return open_temporary(srv, e, out, err);
    if (stat(e->path, &st) < 0)
        return sd_error_set(err, -errno, "%s: %s", e->path, strerror(errno));
    im = find(srv, st.st_dev, st.st_ino);
    if (im) {
        if (!can_share(im, e, im->format)) {
            *holder = im;
            return sd_error_set(err, -EBUSY,
                                "%s is already open %s as %s%s; waiting for "
                                "its users to go", e->path, describe(im),
                                im->format == SD_FORMAT_QCOW2 ? "qcow2" : "raw",
                                im->direct ? " with O_DIRECT" : "");
        }
        image_ref(im);
        *out = im;
        return 0;
    }
    ret = open_image(srv, e->path, fmt, !e->readonly, e->direct, &im, err);
    if (ret < 0)
        return ret;
    if (e->format != SD_FORMAT_AUTO && im->format != e->format) {
        image_unref(im);
        return sd_error_set(err, -EINVAL, "%s is not a %s image", e->path,
                            e->format == SD_FORMAT_QCOW2 ? "qcow2" : "raw");
    }
    im->dev = st.st_dev;
    im->ino = st.st_ino;
    make_key(im->key, sizeof(im->key), im->dev, im->ino);
    if (name_index_put(&srv->image_index, im->key, (uintptr_t)im) < 0) {
        image_unref(im);
        return sd_error_set(err, -ENOMEM, "out of memory");
    }
    im->next = srv->images;
    srv->images = im;
    sd_log_info("image %s: opened %s (%s, %" PRIu64 " bytes) on %s",
                e->path, describe(im),
                im->format == SD_FORMAT_QCOW2 ? "qcow2" : "raw", im->size,
                im->owner->name);
    *out = im;
    return 0;
}

void image_ref(struct srv_image *im)
{
    atomic_fetch_add(&im->refs, 1);
}

static void unlink_from_table(struct srv_image *im)
{
    for (struct srv_image **pp = &im->srv->images; *pp; pp = &(*pp)->next) {
        if (*pp == im) {
            *pp = im->next;
            name_index_remove(&im->srv->image_index, im->key);
            return;
        }
    }
}

static void close_image(void *arg)
{
    struct srv_image *im = arg;
    struct sd_server *srv = im->srv;
    int ret;

    unlink_from_table(im);
    /* Nothing uses the image any more, so its I/O is over: take it off
     * the owner's ring and close it here (flush included) with plain
     * system calls. */
    sd_img_set_ring(im->img, NULL);
    ret = sd_img_close(im->img);
    if (ret < 0)
        sd_log_error("image %s: flush on close failed: %s", im->path,
                     strerror(-ret));
    else
        sd_log_info("image %s: closed", im->path);
    atomic_fetch_sub(&im->owner->n_images, 1);
    free(im->path);
    free(im);
    registry_retry_pending(srv);
}

void image_unref(struct srv_image *im)
{
    if (atomic_fetch_sub(&im->refs, 1) != 1)
        return;
    if (worker_self() == &im->srv->control) {
        close_image(im);
    } else if (worker_post(&im->srv->control, close_image, im) < 0) {
        sd_log_error("image %s: out of memory; left open", im->path);
    }
}

void image_table_close_all(struct sd_server *srv)
{
    while (srv->images) {
        struct srv_image *im = srv->images;
        sd_log_warn("image %s: still referenced at exit; closing", im->path);
        close_image(im);
    }
    name_index_free(&srv->image_index);
}

/* --- arrival order of overlapping writes --- */

void image_write_begin(struct srv_image *im, struct write_range *wr,
                       uint64_t offset, uint64_t length)
{
    wr->offset = offset;
    wr->end = offset + length;
    wr->done = (struct co_queue){ 0 };
    wr->next = NULL;
    wr->prev = im->writes_tail;
    if (im->writes_tail)
        im->writes_tail->next = wr;
    else
        im->writes_head = wr;
    im->writes_tail = wr;
}

static struct write_range *earlier_overlap(struct write_range *wr)
{
    for (struct write_range *o = wr->prev; o; o = o->prev)
        if (o->offset < wr->end && wr->offset < o->end)
            return o;
    return NULL;
}

void image_write_wait_earlier(struct srv_image *im, struct write_range *wr)
{
    struct write_range *o;

    (void)im;
    while ((o = earlier_overlap(wr)) != NULL)
        co_queue_wait(&o->done);
}

void image_write_end(struct srv_image *im, struct write_range *wr)
{
    if (wr->prev)
        wr->prev->next = wr->next;
    else
        im->writes_head = wr->next;
    if (wr->next)
        wr->next->prev = wr->prev;
    else
        im->writes_tail = wr->prev;
    co_queue_wake_all(&wr->done);
}
