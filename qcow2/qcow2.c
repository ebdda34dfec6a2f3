/* SPDX-License-Identifier: MIT */
/*
 * The QCOW2 backend: open, close, info, capabilities, changing the
 * backing file, and the ops table. The I/O paths are in qcow2-io.c and
 * qcow2-alloc.c; the design notes are in qcow2-internal.h.
 */
#include "config.h"

#include "qcow2-internal.h"

#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

enum {
    L2_CACHE_BYTES = 32 << 20,
    RB_CACHE_BYTES = 4 << 20,
    BITMAP_DIR_MAX = 64 << 20,
    BITMAP_FLAG_IN_USE = 1,
    BITMAP_FLAG_AUTO = 2,
};

static int refuse_features(struct sd_img *img, const struct qcow2_header *h,
                           bool writable, struct sd_error *err)
{
    if ((h->incompatible_features & QCOW2_INCOMPAT_DATA_FILE) || h->data_file)
        return sd_error_set(err, -ENOTSUP, "'%s' uses an external data file, "
                            "which is not supported", img->path);
    if (!writable)
        return 0;
    if (h->incompatible_features & QCOW2_INCOMPAT_CORRUPT)
        return sd_error_set(err, -EROFS, "'%s' is marked corrupt; it can only "
                            "be opened read-only", img->path);
    if (h->incompatible_features & QCOW2_INCOMPAT_DIRTY)
        return sd_error_set(err, -EROFS, "'%s' has the dirty flag set (lazy "
                            "refcounts not written back); it can only be "
                            "opened read-only", img->path);
    return 0;
}

static void set_geometry(struct qcow2_state *s)
{
    s->cluster_bits = s->h.cluster_bits;
    s->cluster_size = 1ull << s->cluster_bits;
    s->ext_l2 = s->h.incompatible_features & QCOW2_INCOMPAT_EXTL2;
    s->l2_entry_bytes = s->ext_l2 ? 16 : 8;
    s->l2_bits = s->cluster_bits - (s->ext_l2 ? 4 : 3);
    s->l2_entries = 1ull << s->l2_bits;
    s->subc_per_cluster = s->ext_l2 ? QCOW2_SUBCLUSTERS_EXT : 1;
    s->subc_size = s->cluster_size / s->subc_per_cluster;
    s->refcount_bits = 1u << s->h.refcount_order;
    s->refblock_entries = s->cluster_size * 8 / s->refcount_bits;
    s->refcount_max = s->refcount_bits == 64 ? UINT64_MAX
                                             : (1ull << s->refcount_bits) - 1;
    s->l1_size = s->h.l1_size;
}

static int load_l1(struct sd_img *img, struct sd_error *err)
{
    struct qcow2_state *s = qcow2_state(img);
    uint64_t file_size;
    int ret = blk_get_size(img->file, &file_size);

    if (ret < 0)
        return sd_error_set(err, ret, "could not get the file size");
    s->l1 = calloc(s->l1_size ? s->l1_size : 1, 8);
    if (!s->l1)
        return sd_error_set(err, -ENOMEM, "out of memory");
    if (!s->l1_size)
        return 0;
    ret = blk_pread_exact(img->file, s->l1, s->l1_size * 8ull,
                          s->h.l1_table_offset);
    if (ret < 0)
        return sd_error_set(err, ret, "could not read the L1 table");
    for (uint32_t i = 0; i < s->l1_size; i++) {
        uint64_t e = be64toh(s->l1[i]), off = e & QCOW2_L1_OFFSET_MASK;
        s->l1[i] = e;
        if (e & QCOW2_L1_RESERVED_MASK)
            return sd_error_set(err, -EINVAL, "L1 entry %u has reserved bits "
                                "set (0x%llx)", i, (unsigned long long)e);
        if (off & (s->cluster_size - 1))
            return sd_error_set(err, -EINVAL, "L1 entry %u: L2 table offset "
                                "0x%llx is not cluster aligned", i,
                                (unsigned long long)off);
        if (off && (off >= file_size || s->cluster_size > file_size - off))
            return sd_error_set(err, -EINVAL, "L1 entry %u: L2 table at 0x%llx "
                                "lies past the end of the file", i,
                                (unsigned long long)off);
        if (off && off < s->cluster_size)
            return sd_error_set(err, -EINVAL, "L1 entry %u: L2 table overlaps "
                                "the header", i);
    }
    return 0;
}

static enum sd_img_format backing_format(const char *name)
{
    if (!name)
        return SD_FMT_AUTO;
    if (!strcmp(name, "qcow2"))
        return SD_FMT_QCOW2;
    if (!strcmp(name, "raw") || !strcmp(name, "file") ||
        !strcmp(name, "host_device"))
        return SD_FMT_RAW;
    return SD_FMT_AUTO;
}

static int open_backing(struct sd_img *img, struct sd_error *err)
{
    struct qcow2_state *s = qcow2_state(img);
    char *path;
    int ret;

    if (s->h.backing_format && backing_format(s->h.backing_format) == SD_FMT_AUTO)
        return sd_error_set(err, -ENOTSUP, "'%s': backing format '%s' is not "
                            "supported", img->path, s->h.backing_format);
    path = sd_img_resolve_backing(img->path, s->h.backing_file);
    if (!path)
        return sd_error_set(err, -ENOMEM, "out of memory");
    ret = sd_img_open_backing(img, path, backing_format(s->h.backing_format),
                              err);
    /* Name the top image once; deeper errors name their own file. */
    if (ret < 0 && img->chain_depth == 0 && err && !strstr(err->msg, "loop"))
        sd_error_prefix(err, "could not open backing file of '%s'", img->path);
    free(path);
    return ret;
}

/* Bitmaps we do not update become inconsistent once we write: say so in
 * the file, as the spec asks, by setting their in_use flag. */
static int mark_bitmaps_in_use(struct sd_img *img, struct sd_error *err)
{
    struct qcow2_state *s = qcow2_state(img);
    uint64_t size = s->h.bitmap_directory_size, pos = 0;
    uint8_t *dir;
    bool changed = false;
    int ret;

    if (!(s->h.autoclear_features & QCOW2_AUTOCLEAR_BITMAPS) ||
        !s->h.bitmaps_nb || !size)
        return 0;
    if (size > BITMAP_DIR_MAX)
        return sd_error_set(err, -EFBIG, "bitmap directory too large");
    dir = malloc(size);
    if (!dir)
        return sd_error_set(err, -ENOMEM, "out of memory");
    ret = blk_pread_exact(img->file, dir, size, s->h.bitmap_directory_offset);
    if (ret < 0) {
        free(dir);
        return sd_error_set(err, ret, "could not read the bitmap directory");
    }
    for (uint64_t i = 0; i < s->h.bitmaps_nb && pos + 24 <= size; i++) {
        uint32_t flags, name_size, extra;
        memcpy(&flags, dir + pos + 12, 4);
        flags = be32toh(flags);
        name_size = ((uint32_t)dir[pos + 18] << 8) | dir[pos + 19];
        memcpy(&extra, dir + pos + 20, 4);
        extra = be32toh(extra);
        if ((flags & BITMAP_FLAG_AUTO) && !(flags & BITMAP_FLAG_IN_USE)) {
            flags = htobe32(flags | BITMAP_FLAG_IN_USE);
            memcpy(dir + pos + 12, &flags, 4);
            changed = true;
        }
        pos += (24ull + extra + name_size + 7) & ~7ull;
    }
    ret = changed ? blk_pwrite(img->file, dir, size,
                               s->h.bitmap_directory_offset) : 0;
    free(dir);
    if (ret < 0)
        return sd_error_set(err, ret, "could not update the bitmap directory");
    return 0;
}

static int prepare_writable(struct sd_img *img, struct sd_error *err)
{
    struct qcow2_state *s = qcow2_state(img);
    uint64_t unknown = s->h.autoclear_features & ~(uint64_t)QCOW2_AUTOCLEAR_KNOWN;
    int ret = mark_bitmaps_in_use(img, err);

    if (ret < 0)
        return ret;
    if (unknown && s->h.version >= 3) {
        s->h.autoclear_features &= QCOW2_AUTOCLEAR_KNOWN;
        ret = qcow2_header_write(img->file, &s->h, err);
    }
    return ret;
}

static void qcow2_free_state(struct qcow2_state *s)
{
    if (!s)
        return;
    qcow2_cache_destroy(&s->l2_cache);
    qcow2_cache_destroy(&s->rb_cache);
    qcow2_meta_free(s);
    qcow2_header_free(&s->h);
    free(s->l1);
    free(s->reftable);
    free(s->pending_free);
    free(s->zero_cluster);
    free(s);
}

static int qcow2_open(struct sd_img *img, const struct sd_img_open_opts *opts,
                      struct sd_error *err)
{
    struct qcow2_state *s = calloc(1, sizeof(*s));
    int ret;

    if (!s)
        return sd_error_set(err, -ENOMEM, "out of memory");
    img->priv = s;
    ret = qcow2_header_read(img->file, &s->h, err);
    if (ret < 0) {
        sd_error_prefix(err, "'%s'", img->path);
        goto out_fail;
    }
    ret = refuse_features(img, &s->h, opts->writable, err);
    if (ret < 0)
        goto out_fail;
    set_geometry(s);
    img->size = s->h.size;
    ret = load_l1(img, err);
    if (ret == 0)
        ret = qcow2_refcount_init(img, err);
    if (ret == 0 && qcow2_meta_build(img) < 0)
        ret = sd_error_set(err, -ENOMEM, "out of memory");
    if (ret < 0) {
        sd_error_prefix(err, "'%s'", img->path);
        goto out_fail;
    }
    unsigned l2n = L2_CACHE_BYTES / s->cluster_size;
    unsigned rbn = RB_CACHE_BYTES / s->cluster_size;
    s->zero_cluster = calloc(1, s->cluster_size);
    if (!s->zero_cluster ||
        qcow2_cache_init(&s->l2_cache, l2n < 16 ? 16 : l2n, s->cluster_size,
                         "L2 table") < 0 ||
        qcow2_cache_init(&s->rb_cache, rbn < 8 ? 8 : rbn, s->cluster_size,
                         "refcount block") < 0) {
        ret = sd_error_set(err, -ENOMEM, "out of memory");
        goto out_fail;
    }
    if (img->file->is_blockdev) {
        ret = qcow2_find_image_end(img);
        if (ret < 0) {
            sd_error_set(err, ret, "'%s': could not read the refcounts that "
                         "tell where the image ends on the device", img->path);
            goto out_fail;
        }
    }
    if (s->h.backing_file && !opts->no_backing) {
        ret = open_backing(img, err);
        if (ret < 0)
            goto out_fail;
    }
    if (opts->writable) {
        ret = prepare_writable(img, err);
        if (ret < 0)
            goto out_fail;
    }
    return 0;

out_fail:
    qcow2_free_state(s);
    img->priv = NULL;
    return ret;
}

static int qcow2_close(struct sd_img *img)
{
    struct qcow2_state *s = qcow2_state(img);
    int ret = 0;

    if (!s)
        return 0;
    if (img->writable && !img->corrupt_reason) {
        ret = qcow2_release_reservation(img);
        if (ret == 0)
            ret = blk_flush(img->file);
    }
    qcow2_free_state(s);
    img->priv = NULL;
    return ret;
}

static void qcow2_get_caps(const struct sd_img *img, struct sd_img_caps *caps)
{
    const struct qcow2_state *s = img->priv;

    caps->can_write = true;
    caps->can_trim = true;
    caps->can_zero = true;
    caps->can_fast_zero = s->h.version >= 3;
    caps->can_multi_conn = true;
}

static int qcow2_get_info(struct sd_img *img, struct sd_img_info *info)
{
    struct qcow2_state *s = qcow2_state(img);

    info->cluster_size = s->cluster_size;
    info->qcow2_version = s->h.version;
    info->refcount_bits = s->refcount_bits;
    info->extended_l2 = s->ext_l2;
    info->lazy_refcounts = s->h.compatible_features & QCOW2_COMPAT_LAZY_REFCOUNTS;
    info->corrupt = (s->h.incompatible_features & QCOW2_INCOMPAT_CORRUPT) ||
                    img->corrupt_reason;
    info->dirty = s->h.incompatible_features & QCOW2_INCOMPAT_DIRTY;
    info->backing_file = s->h.backing_file;
    info->backing_format = s->h.backing_format;
    info->compression_type = s->h.compression_type == QCOW2_COMPRESS_ZSTD
                             ? "zstd" : "zlib";
    info->nb_snapshots = s->h.nb_snapshots;
    info->nb_bitmaps = s->h.bitmaps_nb;
    info->has_data_file = s->h.data_file != NULL;
    return 0;
}

int sd_img_set_backing(struct sd_img *img, const char *backing_file,
                       const char *backing_fmt, struct sd_error *err)
{
    struct qcow2_state *s;
    char *file = NULL, *fmt = NULL;
    int ret;

    if (img->ops != &sd_qcow2_ops)
        return sd_error_set(err, -ENOTSUP, "'%s': only qcow2 images have a "
                            "backing file", img->path);
    if (!img->writable)
        return sd_error_set(err, -EPERM, "'%s' is open read-only", img->path);
    s = qcow2_state(img);
    if ((backing_file && !(file = strdup(backing_file))) ||
        (backing_fmt && !(fmt = strdup(backing_fmt)))) {
        free(file);
        return sd_error_set(err, -ENOMEM, "out of memory");
    }
    free(s->h.backing_file);
    free(s->h.backing_format);
    s->h.backing_file = file;
    s->h.backing_format = file ? fmt : NULL;
    if (!file)
        free(fmt);
    ret = qcow2_header_write(img->file, &s->h, err);
    if (ret == 0)
        ret = blk_flush(img->file);
    if (ret < 0 && err && !err->code)
        sd_error_set(err, ret, "could not sync '%s'", img->path);
    return ret;
}

/* Like qemu, set the corrupt bit so no tool writes the image again before
 * someone looks at it. Best effort: the image already refuses writes. */
static void qcow2_mark_corrupt(struct sd_img *img)
{
    struct qcow2_state *s = qcow2_state(img);

    if (!s || s->h.version < 3)
        return;
    s->h.incompatible_features |= QCOW2_INCOMPAT_CORRUPT;
    if (qcow2_header_write(img->file, &s->h, NULL) == 0)
        (void)blk_flush(img->file);
}

const struct sd_backend_ops sd_qcow2_ops = {
    .name = "qcow2",
    .open = qcow2_open,
    .close = qcow2_close,
    .co_read = qcow2_co_read,
    .co_write = qcow2_co_write,
    .co_zero = qcow2_co_zero,
    .co_discard = qcow2_co_discard,
    .co_flush = qcow2_co_flush,
    .co_block_status = qcow2_co_block_status,
    .get_caps = qcow2_get_caps,
    .get_info = qcow2_get_info,
    .mark_corrupt = qcow2_mark_corrupt,
};
