/* SPDX-License-Identifier: MIT */
/*
 * A qcow2 file as the source, read through our image library (qcow2/,
 * libsdimg) with its backing chain: the virtual disk is copied, not the
 * file's bytes.
 *
 * Threads. The library's contract (qcow2/image.h) is that an image is
 * driven by one thread at a time and may be handed to another thread
 * between operations; its metadata caches are not locked. The copy's
 * workers read concurrently, so instead of one image behind a mutex we
 * keep a small pool of read-only handles of the same chain: a read takes
 * a free handle, opening another one (up to POOL_MAX) when all are busy,
 * and gives it back when done. Readers of one file coexist under the
 * library's locks (lock.c), and each handle's I/O is plain synchronous
 * system calls (no ring), so a handle never has an operation in flight
 * when it changes threads. If opening another handle fails (file
 * descriptors, memory), reads simply wait for the ones there are.
 *
 * Every handle is opened read-only with the library's reader locks: the
 * image and its backing files must not be written while they are read
 * (a running VM's image is refused: export it over NBD instead).
 */
#include "config.h"

#include "capture/capture.h"

#include "common/coroutine.h"
#include "qcow2/image.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Handles of the chain at most: one per reading thread is enough, and
 * each costs file descriptors and a metadata cache. */
#define POOL_MAX 8

struct cap_qcow2 {
    pthread_mutex_t lock;
    pthread_cond_t freed;
    struct sd_img *img[POOL_MAX];   /* NULL while being opened, or unused */
    bool busy[POOL_MAX];
    int n;                          /* slots used (opened or opening) */
    bool no_more;                   /* an extra open failed: stop trying */
};

/* Synchronous image operations run in coroutines drawn from a
 * per-thread pool: a reading thread frees its pool when it ends. */
static pthread_key_t pool_key;
static pthread_once_t pool_key_once = PTHREAD_ONCE_INIT;
static int pool_key_ret;

static void release_thread_pool(void *unused)
{
    (void)unused;
    co_thread_release_pool();
}

static void make_pool_key(void)
{
    pool_key_ret = pthread_key_create(&pool_key, release_thread_pool);
}

static int open_one(const char *path, struct sd_img **out, struct sd_error *err)
{
    struct sd_img_open_opts o = { .format = SD_FMT_QCOW2 };

    return sd_img_open(out, path, &o, err);
}

int cap_qcow2_open(struct cap_source *s, struct sd_error *err)
{
    struct sd_error perr = { 0 };
    enum sd_img_format fmt;
    struct cap_qcow2 *q;
    int ret;

    /* The library's probe decides, not the name. A file it cannot
     * probe goes the raw way, which says why it cannot be opened. */
    if (sd_img_probe_format(s->name, &fmt, &perr) < 0 || fmt != SD_FMT_QCOW2)
        return 0;
    pthread_once(&pool_key_once, make_pool_key);
    if (pool_key_ret)
        return sd_error_set(err, -pool_key_ret, "pthread_key_create: %s",
                            strerror(pool_key_ret));
    q = calloc(1, sizeof(*q));
    if (!q)
        return sd_error_set(err, -ENOMEM, "out of memory");
    pthread_mutex_init(&q->lock, NULL);
    pthread_cond_init(&q->freed, NULL);
    s->qcow2 = q;
    ret = open_one(s->name, &q->img[0], err);
    if (ret == -EBUSY) {
        /* The library's advice (force-share) is for inspecting tools; a
         * backup must not read a disk that is being written. */
        char *advice = strstr(err->msg, "; use force-share");

        if (advice)
            *advice = '\0';
        snprintf(err->msg + strlen(err->msg), sizeof(err->msg) - strlen(err->msg),
                 "; copy a running VM's disk from an NBD export of it instead");
    }
    if (ret < 0) {
        if (!strstr(err->msg, s->name))
            sd_error_prefix(err, "%s", s->name);
        return ret;
    }
    q->n = 1;
    s->size = sd_img_size(q->img[0]);
    return 1;
}

void cap_qcow2_close(struct cap_source *s)
{
    struct cap_qcow2 *q = s->qcow2;

    if (!q)
        return;
    for (int i = 0; i < q->n; i++)
        sd_img_close(q->img[i]);        /* read-only: nothing to flush */
    pthread_cond_destroy(&q->freed);
    pthread_mutex_destroy(&q->lock);
    free(q);
    s->qcow2 = NULL;
    /* The calling (main) thread's coroutine pool; worker threads free
     * theirs as they end. */
    co_thread_release_pool();
}

/* A handle for this thread's next operation (its slot in *slot). */
static struct sd_img *take(struct cap_qcow2 *q, const char *path, int *slot)
{
    pthread_mutex_lock(&q->lock);
    for (;;) {
        for (int i = 0; i < q->n; i++) {
            if (q->img[i] && !q->busy[i]) {
                q->busy[i] = true;
                pthread_mutex_unlock(&q->lock);
                *slot = i;
                return q->img[i];
            }
        }
        if (q->n < POOL_MAX && !q->no_more) {
            int i = q->n++;
            struct sd_img *img = NULL;
            struct sd_error ignored = { 0 };

            q->busy[i] = true;
            pthread_mutex_unlock(&q->lock);
            /* Outside the lock: the others keep reading meanwhile. */
            if (open_one(path, &img, &ignored) < 0)
                img = NULL;
            pthread_mutex_lock(&q->lock);
            q->img[i] = img;
            if (img) {
                pthread_mutex_unlock(&q->lock);
                *slot = i;
                return img;
            }
            q->busy[i] = false;
            q->no_more = true;
            continue;
        }
        pthread_cond_wait(&q->freed, &q->lock);
    }
}

static void give(struct cap_qcow2 *q, int slot)
{
    pthread_mutex_lock(&q->lock);
    q->busy[slot] = false;
    pthread_cond_signal(&q->freed);
    pthread_mutex_unlock(&q->lock);
}

int cap_qcow2_map(struct cap_source *s, struct cap_extents *out,
                  struct sd_error *err)
{
    struct cap_qcow2 *q = s->qcow2;
    int slot;
    struct sd_img *img = take(q, s->name, &slot);
    uint64_t pos = 0;
    int ret = 0;

    while (pos < s->size) {
        struct sd_extent e;

        ret = sd_img_block_status(img, pos, s->size - pos, &e);
        if (ret < 0) {
            sd_error_set(err, ret, "%s: block status at %llu: %s", s->name,
                         (unsigned long long)pos, sd_img_strerror(img, ret));
            break;
        }
        if (e.offset != pos || e.length == 0 || e.length > s->size - pos) {
            ret = sd_error_set(err, -EIO, "%s: block status at %llu made no progress",
                               s->name, (unsigned long long)pos);
            break;
        }
        /* Zero clusters and ranges no layer allocates read as zeros:
         * they are never read. Compressed and other data is. */
        ret = cap_extents_add(out, pos, e.length, (e.flags & SD_EXT_ZERO) != 0);
        if (ret < 0) {
            sd_error_set(err, ret, "out of memory");
            break;
        }
        pos += e.length;
    }
    give(q, slot);
    return ret;
}

int cap_qcow2_read(struct cap_source *s, void *buf, uint64_t len, uint64_t off,
                   struct sd_error *err)
{
    struct cap_qcow2 *q = s->qcow2;
    int slot, ret;
    struct sd_img *img;

    /* Mark the thread so that its coroutine pool is freed when it ends. */
    if (!pthread_getspecific(pool_key))
        pthread_setspecific(pool_key, q);
    img = take(q, s->name, &slot);
    ret = sd_img_pread(img, buf, len, off);
    if (ret < 0)
        sd_error_set(err, ret, "%s: read at %llu (%llu bytes): %s", s->name,
                     (unsigned long long)off, (unsigned long long)len,
                     sd_img_strerror(img, ret));
    give(q, slot);
    return ret;
}
