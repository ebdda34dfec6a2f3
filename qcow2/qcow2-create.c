/* SPDX-License-Identifier: MIT */
/*
 * Creating raw and QCOW2 images.
 *
 * Notes on the design. The QCOW2 layout is planned in full before a byte
 * is written, so every reference count is known up front:
 *
 *   cluster 0               header, extensions, backing file name
 *   1 .. rt                 refcount table (rt clusters)
 *   then rb clusters        refcount blocks, covering every cluster here
 *   then l1 clusters        the L1 table (none for an empty disk)
 *   then (preallocation)    one zeroed L2 table per L1 entry
 *
 * rt and rb depend on the total they cover, so they are found by
 * iterating to a fixed point. Every cluster of the layout has refcount 1,
 * and the file is exactly as long as the layout, so `qemu-img check`
 * finds nothing to report. The header is written last and the file is
 * fsynced: a crash part-way leaves a file that is not a valid image
 * rather than a half-valid one.
 */
#include "config.h"

#include "qcow2-check.h"
#include "qcow2-format.h"
#include "blkfile.h"

#include "common/error.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { DEFAULT_CLUSTER_SIZE = 65536, SECTOR = 512 };

/* What qcow2_create will write, settled before any I/O. */
struct create_plan {
    struct qcow2_header h;
    uint64_t cs;
    uint64_t l1_entries, l1_clusters, l2_tables;
    uint64_t reftable_clusters, refblocks, total_clusters;
};

static bool is_pow2(uint64_t v) { return v && !(v & (v - 1)); }

static uint64_t div_round_up(uint64_t a, uint64_t b)
{
    return a / b + (a % b != 0);
}

/* Create the file if needed, then open it and cut it to length 0. */
static int open_truncated(const char *path, struct blkfile **out,
                          struct sd_error *err)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    int ret;

    if (fd < 0)
        return sd_error_set(err, -errno, "could not create '%s': %s", path,
                            strerror(errno));
    close(fd);
    ret = blk_open(out, path, BLK_WRITABLE, err);
    if (ret < 0)
        return ret;
    if ((*out)->is_blockdev)
        return 0;               /* a device keeps its size */
    ret = blk_truncate(*out, 0);
    if (ret < 0) {
        blk_close(*out);
        return sd_error_set(err, ret, "could not truncate '%s': %s", path,
                            strerror(-ret));
    }
    return 0;
}

static int finish_file(struct blkfile *f, const char *path,
                       struct sd_error *err)
{
    int ret = blk_flush(f);

    if (ret < 0)
        return sd_error_set(err, ret, "could not sync '%s': %s", path,
                            strerror(-ret));
    return 0;
}

int raw_create(const char *path, uint64_t size, struct sd_error *err)
{
    struct blkfile *f;
    uint64_t dev_size;
    int ret;

    sd_error_clear(err);
    if (size > QCOW2_MAX_VIRTUAL_SIZE)
        return sd_error_set(err, -EFBIG, "image size %llu is too large",
                            (unsigned long long)size);
    size = div_round_up(size, SECTOR) * SECTOR;
    ret = open_truncated(path, &f, err);
    if (ret < 0)
        return ret;
    if (f->is_blockdev) {
        ret = blk_get_size(f, &dev_size);
        if (ret == 0 && dev_size < size)
            ret = sd_error_set(err, -ENOSPC, "device '%s' is smaller than "
                               "%llu bytes", path, (unsigned long long)size);
    } else {
        ret = blk_truncate(f, size);
        if (ret < 0)
            ret = sd_error_set(err, ret, "could not resize '%s': %s", path,
                               strerror(-ret));
    }
    if (ret == 0)
        ret = finish_file(f, path, err);
    blk_close(f);
    return ret;
}

/* ---- options ---------------------------------------------------------- */

static int check_cluster_and_version(const struct sd_img_create_opts *o,
                                     uint32_t cs, int version,
                                     unsigned rbits, struct sd_error *err)
{
    if (!is_pow2(cs) || cs < 512 || cs > (1u << QCOW2_MAX_CLUSTER_BITS))
        return sd_error_set(err, -EINVAL, "invalid cluster size %u: must be "
                            "a power of two from 512 to 2097152", cs);
    if (version != 2 && version != 3)
        return sd_error_set(err, -EINVAL, "invalid qcow2 version %d: must "
                            "be 2 or 3", version);
    if (!is_pow2(rbits) || rbits > 64)
        return sd_error_set(err, -EINVAL, "invalid refcount_bits %u: must "
                            "be a power of two from 1 to 64", rbits);
    if (version == 2 && rbits != 16)
        return sd_error_set(err, -EINVAL, "refcount_bits other than 16 "
                            "need qcow2 version 3");
    if (o->extended_l2 && version == 2)
        return sd_error_set(err, -EINVAL, "extended L2 entries need qcow2 "
                            "version 3");
    if (o->extended_l2 && cs < 16384)
        return sd_error_set(err, -EINVAL, "extended L2 entries need a "
                            "cluster size of at least 16384 (got %u)", cs);
    if (o->lazy_refcounts && version == 2)
        return sd_error_set(err, -EINVAL, "lazy refcounts need qcow2 "
                            "version 3");
    return 0;
}

static int parse_compression(const char *name, int version, bool *zstd,
                             struct sd_error *err)
{
    *zstd = false;
    if (!name || strcmp(name, "zlib") == 0)
        return 0;
    if (strcmp(name, "zstd") != 0)
        return sd_error_set(err, -EINVAL, "unknown compression type '%s': "
                            "use zlib or zstd", name);
    if (version == 2)
        return sd_error_set(err, -EINVAL, "compression type zstd needs "
                            "qcow2 version 3");
    *zstd = true;
    return 0;
}

/* ---- the backing file --------------------------------------------------- */

/* Where the backing file is, seen from the new image's folder. */
static char *resolve_backing(const char *image_path, const char *backing)
{
    char *copy, *out;

    if (backing[0] == '/')
        return strdup(backing);
    copy = strdup(image_path);
    if (!copy)
        return NULL;
    if (asprintf(&out, "%s/%s", dirname(copy), backing) < 0)
        out = NULL;
    free(copy);
    return out;
}

static int backing_virtual_size(struct blkfile *f, enum sd_img_format fmt,
                                uint64_t *size, struct sd_error *err)
{
    struct qcow2_header h;
    int ret;

    if (fmt == SD_FMT_RAW)
        return blk_get_size(f, size) < 0
               ? sd_error_set(err, -EIO, "could not get the size")
               : 0;
    ret = qcow2_header_read(f, &h, err);
    if (ret < 0)
        return ret;
    *size = h.size;
    qcow2_header_free(&h);
    return 0;
}

/* Probe the backing file: its format (when asked for AUTO) and size. */
static int probe_backing(const char *resolved, enum sd_img_format *fmt,
                         uint64_t *size, struct sd_error *err)
{
    struct blkfile *f;
    uint8_t magic[4];
    bool is_qcow2;
    int ret = blk_open(&f, resolved, 0, err);

    if (ret < 0)
        return ret;
    ret = blk_pread(f, magic, sizeof(magic), 0);
    if (ret < 0) {
        ret = sd_error_set(err, ret, "could not read: %s", strerror(-ret));
        goto out_close;
    }
    is_qcow2 = magic[0] == 'Q' && magic[1] == 'F' && magic[2] == 'I' &&
               magic[3] == 0xfb;
    if (*fmt == SD_FMT_AUTO)
        *fmt = is_qcow2 ? SD_FMT_QCOW2 : SD_FMT_RAW;
    if (*fmt == SD_FMT_QCOW2 && !is_qcow2) {
        ret = sd_error_set(err, -EINVAL, "not a qcow2 image");
        goto out_close;
    }
    ret = backing_virtual_size(f, *fmt, size, err);
out_close:
    blk_close(f);
    return ret;
}

/* Fill the backing fields of the plan and, for size 0, the size. */
static int plan_backing(const char *path, const struct sd_img_create_opts *o,
                        uint64_t *size, struct create_plan *p,
                        struct sd_error *err)
{
    enum sd_img_format fmt = o->backing_format;
    uint64_t bsize = 0;
    char *resolved;
    int ret;

    if (!o->backing_file[0] || strlen(o->backing_file) > QCOW2_MAX_BACKING_NAME)
        return sd_error_set(err, -EINVAL, "backing file name must be 1 to "
                            "%d bytes long", QCOW2_MAX_BACKING_NAME);
    resolved = resolve_backing(path, o->backing_file);
    if (!resolved)
        return sd_error_set(err, -ENOMEM, "out of memory");
    ret = probe_backing(resolved, &fmt, &bsize, err);
    if (ret < 0 && (*size == 0 || ret != -ENOENT)) {
        sd_error_prefix(err, "backing file '%s'", resolved);
        free(resolved);
        return ret;
    }
    free(resolved);
    sd_error_clear(err);
    /* A missing backing file is allowed when the size is given; its
     * format is then written only when the caller named it. */
    if (*size == 0)
        *size = bsize;
    p->h.backing_file = strdup(o->backing_file);
    if (fmt != SD_FMT_AUTO)
        p->h.backing_format = strdup(fmt == SD_FMT_QCOW2 ? "qcow2" : "raw");
    if (!p->h.backing_file || (fmt != SD_FMT_AUTO && !p->h.backing_format))
        return sd_error_set(err, -ENOMEM, "out of memory");
    return 0;
}

/* ---- layout --------------------------------------------------------------- */

static int plan_layout(struct create_plan *p, bool prealloc,
                       struct sd_error *err)
{
    uint64_t cs = p->cs;
    uint64_t l2_entries = cs / (p->h.incompatible_features &
                                QCOW2_INCOMPAT_EXTL2 ? 16 : 8);
    uint64_t rb_entries = cs * 8 >> p->h.refcount_order;
    uint64_t rt = 1, rb = 1, fixed;

    p->l1_entries = div_round_up(p->h.size, cs * l2_entries);
    if (p->l1_entries > QCOW2_MAX_L1_BYTES / 8)
        return sd_error_set(err, -EFBIG, "image size %llu is too large for "
                            "a cluster size of %llu",
                            (unsigned long long)p->h.size,
                            (unsigned long long)cs);
    p->l1_clusters = div_round_up(p->l1_entries * 8, cs);
    p->l2_tables = prealloc ? p->l1_entries : 0;
    fixed = 1 + p->l1_clusters + p->l2_tables;
    for (;;) {
        uint64_t need_rb = div_round_up(fixed + rt + rb, rb_entries);
        uint64_t need_rt = div_round_up(need_rb * 8, cs);
        if (need_rb <= rb && need_rt <= rt)
            break;
        rb = need_rb > rb ? need_rb : rb;
        rt = need_rt > rt ? need_rt : rt;
    }
    if (rt * cs > QCOW2_MAX_REFTABLE_BYTES)
        return sd_error_set(err, -EFBIG, "the refcount table for this image "
                            "would exceed %u bytes; use larger clusters",
                            QCOW2_MAX_REFTABLE_BYTES);
    p->reftable_clusters = rt;
    p->refblocks = rb;
    p->total_clusters = fixed + rt + rb;
    p->h.refcount_table_offset = cs;
    p->h.refcount_table_clusters = rt;
    p->h.l1_size = p->l1_entries;
    p->h.l1_table_offset = p->l1_entries ? (1 + rt + rb) * cs : 0;
    return 0;
}

static void plan_header(struct create_plan *p, int version, unsigned rbits,
                        const struct sd_img_create_opts *o, bool zstd)
{
    struct qcow2_header *h = &p->h;

    h->version = version;
    h->cluster_bits = __builtin_ctzll(p->cs);
    h->refcount_order = __builtin_ctz(rbits);
    h->header_length = version == 3 ? QCOW2_V3_HEADER_SIZE + 8
                                    : QCOW2_V2_HEADER_SIZE;
    if (o->extended_l2)
        h->incompatible_features |= QCOW2_INCOMPAT_EXTL2;
    if (zstd) {
        h->incompatible_features |= QCOW2_INCOMPAT_COMPRESSION;
        h->compression_type = QCOW2_COMPRESS_ZSTD;
    }
    if (o->lazy_refcounts)
        h->compatible_features |= QCOW2_COMPAT_LAZY_REFCOUNTS;
}

static int make_plan(const char *path, const struct sd_img_create_opts *o,
                     struct create_plan *p, struct sd_error *err)
{
    uint32_t cs = o->cluster_size ? o->cluster_size : DEFAULT_CLUSTER_SIZE;
    int version = o->version ? o->version : 3;
    unsigned rbits = o->refcount_bits ? o->refcount_bits : 16;
    uint64_t size = o->size;
    bool zstd = false;
    int ret;

    memset(p, 0, sizeof(*p));
    ret = check_cluster_and_version(o, cs, version, rbits, err);
    if (ret == 0)
        ret = parse_compression(o->compression_type, version, &zstd, err);
    if (ret == 0 && o->backing_file)
        ret = plan_backing(path, o, &size, p, err);
    if (ret < 0)
        return ret;
    if (size > QCOW2_MAX_VIRTUAL_SIZE)
        return sd_error_set(err, -EFBIG, "image size %llu is too large "
                            "(at most %llu)", (unsigned long long)size,
                            (unsigned long long)QCOW2_MAX_VIRTUAL_SIZE);
    p->cs = cs;
    plan_header(p, version, rbits, o, zstd);
    p->h.size = div_round_up(size, SECTOR) * SECTOR;
    return plan_layout(p, o->preallocate_metadata, err);
}

/* ---- writing -------------------------------------------------------------- */

static void set_refcount(uint8_t *block, uint64_t index, unsigned order,
                         uint64_t value)
{
    unsigned bits = 1u << order;

    if (bits >= 8) {
        unsigned bytes = bits / 8;
        for (unsigned i = 0; i < bytes; i++)      /* big-endian */
            block[index * bytes + i] = value >> (8 * (bytes - 1 - i));
    } else {
        unsigned per_byte = 8 / bits, shift = (index % per_byte) * bits;
        uint8_t mask = ((1u << bits) - 1) << shift;
        uint8_t *b = &block[index / per_byte];
        *b = (*b & ~mask) | ((value << shift) & mask);
    }
}

/* Refcount blocks first, then the table that points at them. */
static int write_refcounts(struct blkfile *f, const struct create_plan *p,
                           uint8_t *buf)
{
    uint64_t cs = p->cs, rb_entries = cs * 8 >> p->h.refcount_order;
    uint64_t first_rb = 1 + p->reftable_clusters;
    int ret;

    for (uint64_t b = 0; b < p->refblocks; b++) {
        memset(buf, 0, cs);
        for (uint64_t i = 0; i < rb_entries; i++) {
            if (b * rb_entries + i >= p->total_clusters)
                break;
            set_refcount(buf, i, p->h.refcount_order, 1);
        }
        ret = blk_pwrite(f, buf, cs, (first_rb + b) * cs);
        if (ret < 0)
            return ret;
    }
    for (uint64_t c = 0; c < p->reftable_clusters; c++) {
        uint64_t *e = (uint64_t *)buf;
        memset(buf, 0, cs);
        for (uint64_t i = 0; i < cs / 8; i++) {
            uint64_t b = c * (cs / 8) + i;
            if (b >= p->refblocks)
                break;
            e[i] = htobe64((first_rb + b) * cs);
        }
        ret = blk_pwrite(f, buf, cs, (1 + c) * cs);
        if (ret < 0)
            return ret;
    }
    return 0;
}

/* With preallocation, the L1 points at the zeroed L2 tables after it. */
static int write_l1(struct blkfile *f, const struct create_plan *p,
                    uint8_t *buf)
{
    uint64_t cs = p->cs, first_l2;
    int ret;

    if (!p->l2_tables)
        return 0;               /* an all-zero L1 is already there */
    first_l2 = p->h.l1_table_offset / cs + p->l1_clusters;
    ret = blk_zero_range(f, first_l2 * cs, p->l2_tables * cs, false);
    if (ret < 0)
        return ret;
    for (uint64_t c = 0; c < p->l1_clusters; c++) {
        uint64_t *e = (uint64_t *)buf;
        memset(buf, 0, cs);
        for (uint64_t i = 0; i < cs / 8; i++) {
            uint64_t n = c * (cs / 8) + i;
            if (n >= p->l1_entries)
                break;
            e[i] = htobe64(((first_l2 + n) * cs) | QCOW2_OFLAG_COPIED);
        }
        ret = blk_pwrite(f, buf, cs, p->h.l1_table_offset + c * cs);
        if (ret < 0)
            return ret;
    }
    return 0;
}

static int write_image(struct blkfile *f, const struct create_plan *p,
                       struct sd_error *err)
{
    uint8_t *buf = malloc(p->cs);
    int ret;

    if (!buf)
        return sd_error_set(err, -ENOMEM, "out of memory");
    ret = blk_truncate(f, p->total_clusters * p->cs);
    if (ret == 0)
        ret = write_refcounts(f, p, buf);
    if (ret == 0)
        ret = write_l1(f, p, buf);
    free(buf);
    if (ret < 0)
        return sd_error_set(err, ret, "could not write the image metadata: "
                            "%s", strerror(-ret));
    return qcow2_header_write(f, &p->h, err);
}

int qcow2_create(const char *path, const struct sd_img_create_opts *opts,
                 struct sd_error *err)
{
    struct create_plan plan;
    struct blkfile *f;
    int ret;

    sd_error_clear(err);
    ret = make_plan(path, opts, &plan, err);
    if (ret < 0)
        goto out_free_plan;
    ret = open_truncated(path, &f, err);
    if (ret < 0)
        goto out_free_plan;
    if (f->is_blockdev)
        ret = sd_error_set(err, -ENOTSUP, "'%s' is a block device: qcow2 "
                           "images are created in regular files", path);
    if (ret == 0)
        ret = write_image(f, &plan, err);
    if (ret == 0)
        ret = finish_file(f, path, err);
    blk_close(f);
out_free_plan:
    qcow2_header_free(&plan.h);
    return ret;
}
