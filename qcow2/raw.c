/* SPDX-License-Identifier: MIT */
/* The raw backend: a file or block device read and written as it is. */
#include "config.h"

#include "image-internal.h"

#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

/* The last data extent SEEK_DATA/SEEK_HOLE found. Some file systems
 * (tmpfs) find a hole by walking every page of the data before it, so
 * without this a reader asking about each block in turn would pay for
 * the whole data extent every time. Writes only add data, so the extent
 * stays true until a zero or discard may punch it. */
struct raw_state {
    uint64_t data_start, data_end;   /* empty when equal */
};

static int raw_open(struct sd_img *img, const struct sd_img_open_opts *opts,
                    struct sd_error *err)
{
    /* Opened a moment ago: the size blk_open saw is current. */
    img->size = img->file->size_at_open;
    img->priv = calloc(1, sizeof(struct raw_state));
    if (!img->priv)
        return sd_error_set(err, -ENOMEM, "out of memory");
    return 0;
}

static int raw_close(struct sd_img *img)
{
    free(img->priv);
    img->priv = NULL;
    return 0;
}

static void forget_data_extent(struct sd_img *img)
{
    struct raw_state *st = img->priv;

    st->data_start = st->data_end = 0;
}

static int raw_co_read(struct sd_img *img, void *buf, uint64_t off,
                       uint64_t len)
{
    return blk_pread_data(img->file, buf, len, off);
}

static int raw_co_write(struct sd_img *img, const void *buf, uint64_t off,
                        uint64_t len, unsigned flags)
{
    return blk_pwrite_data(img->file, buf, len, off);
}

static int raw_co_zero(struct sd_img *img, uint64_t off, uint64_t len,
                       unsigned flags)
{
    forget_data_extent(img);
    /* Block devices zero by fallocate; files punch only when allowed. */
    return blk_zero_range(img->file, off, len, flags & SD_REQ_MAY_UNMAP);
}

static int raw_co_discard(struct sd_img *img, uint64_t off, uint64_t len)
{
    int ret;

    forget_data_extent(img);
    ret = blk_zero_range(img->file, off, len, true);
    /* Discard is advisory: a file system that cannot punch loses nothing. */
    return ret == -EOPNOTSUPP || ret == -ENOTSUP ? 0 : ret;
}

static int raw_co_flush(struct sd_img *img)
{
    return blk_flush(img->file);
}

static int raw_co_block_status(struct sd_img *img, uint64_t off, uint64_t len,
                               struct sd_extent *ext)
{
    struct raw_state *st = img->priv;
    int fd = img->file->fd;
    off_t data, hole;

    *ext = (struct sd_extent){ off, len, SD_EXT_DATA | SD_EXT_ALLOCATED, 0,
                               off };
    if (img->file->is_blockdev)
        return 0;
    if (off >= st->data_start && off < st->data_end) {
        if (st->data_end - off < len)
            ext->length = st->data_end - off;
        return 0;
    }
    data = lseek(fd, (off_t)off, SEEK_DATA);
    if (data < 0) {
        if (errno == ENXIO) {     /* only a hole up to the end of file */
            ext->flags = SD_EXT_ZERO | SD_EXT_ALLOCATED;
            ext->host_offset = UINT64_MAX;
            return 0;
        }
        return 0;                 /* no SEEK_DATA: report data */
    }
    if ((uint64_t)data > off) {
        ext->flags = SD_EXT_ZERO | SD_EXT_ALLOCATED;
        ext->host_offset = UINT64_MAX;
        if ((uint64_t)data - off < len)
            ext->length = (uint64_t)data - off;
        return 0;
    }
    hole = lseek(fd, (off_t)off, SEEK_HOLE);
    if (hole > (off_t)off) {
        st->data_start = off;
        st->data_end = (uint64_t)hole;
        if ((uint64_t)hole - off < len)
            ext->length = (uint64_t)hole - off;
    }
    return 0;
}

static void raw_get_caps(const struct sd_img *img, struct sd_img_caps *caps)
{
    caps->can_write = true;
    caps->can_trim = true;
    caps->can_zero = true;
    caps->can_fast_zero = true;
    caps->can_multi_conn = true;
}

static int raw_get_info(struct sd_img *img, struct sd_img_info *info)
{
    return 0;
}

const struct sd_backend_ops sd_raw_ops = {
    .name = "raw",
    .open = raw_open,
    .close = raw_close,
    .co_read = raw_co_read,
    .co_write = raw_co_write,
    .co_zero = raw_co_zero,
    .co_discard = raw_co_discard,
    .co_flush = raw_co_flush,
    .co_block_status = raw_co_block_status,
    .get_caps = raw_get_caps,
    .get_info = raw_get_info,
};
