/* SPDX-License-Identifier: MIT */
/*
 * Reading, validating and writing the QCOW2 header and its extensions.
 *
 * Every field that later code trusts is checked here, with a message that
 * names the field, so that a corrupt or hostile file stops at open time.
 */
#include "config.h"

#include "common/byteorder.h"

#include "qcow2-format.h"
#include "blkfile.h"
#include "common/error.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>


static void parse_fixed(const uint8_t *b, struct qcow2_header *h)
{
    h->version = get_be32(b + 4);
    h->backing_file_offset = get_be64(b + 8);
    h->backing_file_size = get_be32(b + 16);
    h->cluster_bits = get_be32(b + 20);
    h->size = get_be64(b + 24);
    h->crypt_method = get_be32(b + 32);
    h->l1_size = get_be32(b + 36);
    h->l1_table_offset = get_be64(b + 40);
    h->refcount_table_offset = get_be64(b + 48);
    h->refcount_table_clusters = get_be32(b + 56);
    h->nb_snapshots = get_be32(b + 60);
    h->snapshots_offset = get_be64(b + 64);
    if (h->version >= 3) {
        h->incompatible_features = get_be64(b + 72);
        h->compatible_features = get_be64(b + 80);
        h->autoclear_features = get_be64(b + 88);
        h->refcount_order = get_be32(b + 96);
        h->header_length = get_be32(b + 100);
        h->compression_type = h->header_length > 104 ? b[104] : 0;
    } else {
        h->refcount_order = 4;
        h->header_length = QCOW2_V2_HEADER_SIZE;
    }
}

static int check_incompatible(const struct qcow2_header *h,
                              struct sd_error *err)
{
    uint64_t unknown = h->incompatible_features & ~(uint64_t)QCOW2_INCOMPAT_KNOWN;

    if (unknown) {
        int bit = __builtin_ctzll(unknown);
        return sd_error_set(err, -ENOTSUP,
                            "unsupported incompatible feature bit %d "
                            "(incompatible_features=0x%llx)", bit,
                            (unsigned long long)h->incompatible_features);
    }
    if ((h->incompatible_features & QCOW2_INCOMPAT_COMPRESSION) &&
        h->compression_type > QCOW2_COMPRESS_ZSTD)
        return sd_error_set(err, -ENOTSUP, "unknown compression type %u",
                            h->compression_type);
    if (!(h->incompatible_features & QCOW2_INCOMPAT_COMPRESSION) &&
        h->compression_type != QCOW2_COMPRESS_ZLIB)
        return sd_error_set(err, -EINVAL,
                            "compression type %u without the compression "
                            "type feature bit", h->compression_type);
    if ((h->incompatible_features & QCOW2_INCOMPAT_EXTL2) &&
        h->cluster_bits < 14)
        return sd_error_set(err, -EINVAL,
                            "extended L2 entries need clusters of at least "
                            "16 KiB (cluster_bits=%u)", h->cluster_bits);
    return 0;
}

static int check_fixed(const struct qcow2_header *h, uint64_t file_size,
                       struct sd_error *err)
{
    uint64_t cs;

    if (h->version != 2 && h->version != 3)
        return sd_error_set(err, -ENOTSUP, "unsupported qcow2 version %u",
                            h->version);
    if (h->cluster_bits < QCOW2_MIN_CLUSTER_BITS ||
        h->cluster_bits > QCOW2_MAX_CLUSTER_BITS)
        return sd_error_set(err, -EINVAL, "invalid cluster_bits %u "
                            "(must be 9 to 21)", h->cluster_bits);
    cs = 1ull << h->cluster_bits;
    if (h->version == 3 &&
        (h->header_length < QCOW2_V3_HEADER_SIZE || h->header_length % 8 ||
         h->header_length > cs))
        return sd_error_set(err, -EINVAL, "invalid header_length %u",
                            h->header_length);
    if (h->refcount_order > 6)
        return sd_error_set(err, -EINVAL, "invalid refcount_order %u "
                            "(at most 6: 64-bit refcounts)", h->refcount_order);
    if (h->crypt_method)
        return sd_error_set(err, -ENOTSUP, "encrypted images are not "
                            "supported (crypt_method=%u)", h->crypt_method);
    if (h->size > QCOW2_MAX_VIRTUAL_SIZE)
        return sd_error_set(err, -EFBIG, "virtual size %llu is too large",
                            (unsigned long long)h->size);
    if (h->l1_size > QCOW2_MAX_L1_BYTES / 8)
        return sd_error_set(err, -EFBIG, "L1 table too large (%u entries)",
                            h->l1_size);
    if (h->l1_table_offset % cs ||
        (h->l1_size && h->l1_table_offset == 0))
        return sd_error_set(err, -EINVAL, "invalid L1 table offset 0x%llx",
                            (unsigned long long)h->l1_table_offset);
    if (h->l1_size && (h->l1_table_offset >= file_size ||
                       h->l1_size * 8ull > file_size - h->l1_table_offset))
        return sd_error_set(err, -EINVAL, "L1 table at 0x%llx (%u entries) "
                            "extends past the end of the file",
                            (unsigned long long)h->l1_table_offset, h->l1_size);
    if (h->refcount_table_offset % cs || h->refcount_table_offset == 0)
        return sd_error_set(err, -EINVAL, "invalid refcount table offset 0x%llx",
                            (unsigned long long)h->refcount_table_offset);
    if (h->refcount_table_clusters == 0 ||
        (uint64_t)h->refcount_table_clusters * cs > QCOW2_MAX_REFTABLE_BYTES)
        return sd_error_set(err, -EFBIG, "invalid refcount table size "
                            "(%u clusters)", h->refcount_table_clusters);
    if (h->refcount_table_offset < cs)
        return sd_error_set(err, -EINVAL, "refcount table overlaps the header");
    if (h->nb_snapshots && h->snapshots_offset % cs)
        return sd_error_set(err, -EINVAL, "invalid snapshot table offset");
    if (h->backing_file_offset && h->backing_file_size > QCOW2_MAX_BACKING_NAME)
        return sd_error_set(err, -EINVAL, "backing file name too long "
                            "(%u bytes)", h->backing_file_size);
    return check_incompatible(h, err);
}

static int check_l1_size(const struct qcow2_header *h, struct sd_error *err)
{
    unsigned entry_bits = (h->incompatible_features & QCOW2_INCOMPAT_EXTL2) ? 4 : 3;
    unsigned l2_bits = h->cluster_bits - entry_bits;
    uint64_t per_l1 = 1ull << (h->cluster_bits + l2_bits);
    uint64_t need = (h->size + per_l1 - 1) / per_l1;

    if (need > h->l1_size)
        return sd_error_set(err, -EINVAL, "L1 table too small for the "
                            "virtual size (%u entries, need %llu)", h->l1_size,
                            (unsigned long long)need);
    return 0;
}

static char *dup_bytes(const uint8_t *p, size_t n)
{
    char *s = malloc(n + 1);

    if (s) {
        memcpy(s, p, n);
        s[n] = '\0';
    }
    return s;
}

static int keep_unknown_ext(struct qcow2_header *h, uint32_t type,
                            const uint8_t *data, uint32_t len)
{
    struct qcow2_ext *e = calloc(1, sizeof(*e)), **tail;

    if (!e)
        return -ENOMEM;
    e->type = type;
    e->len = len;
    e->data = malloc(len ? len : 1);
    if (!e->data) {
        free(e);
        return -ENOMEM;
    }
    memcpy(e->data, data, len);
    for (tail = &h->unknown_exts; *tail; tail = &(*tail)->next)
        ;
    *tail = e;
    return 0;
}

static int parse_ext(struct qcow2_header *h, uint32_t type,
                     const uint8_t *data, uint32_t len, struct sd_error *err)
{
    switch (type) {
    case QCOW2_EXT_BACKING_FORMAT:
        free(h->backing_format);
        h->backing_format = dup_bytes(data, len);
        return h->backing_format ? 0 : -ENOMEM;
    case QCOW2_EXT_FEATURE_TABLE:
        return 0;                 /* we write our own table */
    case QCOW2_EXT_DATA_FILE:
        free(h->data_file);
        h->data_file = dup_bytes(data, len);
        return h->data_file ? 0 : -ENOMEM;
    case QCOW2_EXT_BITMAPS:
        if (len < 24)
            return sd_error_set(err, -EINVAL, "bitmaps extension too short");
        h->bitmaps_nb = get_be32(data);
        h->bitmap_directory_size = get_be64(data + 8);
        h->bitmap_directory_offset = get_be64(data + 16);
        return keep_unknown_ext(h, type, data, len);
    case QCOW2_EXT_CRYPTO:
        return sd_error_set(err, -ENOTSUP, "encrypted images are not supported");
    default:
        return keep_unknown_ext(h, type, data, len);
    }
}

static int parse_extensions(struct qcow2_header *h, const uint8_t *buf,
                            uint64_t buf_len, struct sd_error *err)
{
    uint64_t off = h->header_length;
    uint64_t end = buf_len;

    /* Extensions end where the backing file name starts, at the latest. */
    if (h->backing_file_offset && h->backing_file_offset < end)
        end = h->backing_file_offset;
    while (off + 8 <= end) {
        uint32_t type = get_be32(buf + off), len = get_be32(buf + off + 4);
        off += 8;
        if (type == QCOW2_EXT_END)
            return 0;
        if (len > end - off)
            return sd_error_set(err, -EINVAL, "header extension 0x%08x "
                                "(%u bytes) runs past the header", type, len);
        int ret = parse_ext(h, type, buf + off, len, err);
        if (ret < 0)
            return err && err->code ? ret
                                    : sd_error_set(err, ret, "out of memory");
        off += (len + 7ull) & ~7ull;
    }
    return 0;
}

static int read_backing_name(struct blkfile *f, struct qcow2_header *h,
                             uint64_t file_size, struct sd_error *err)
{
    if (!h->backing_file_offset || !h->backing_file_size)
        return 0;
    if (h->backing_file_offset >= file_size ||
        h->backing_file_size > file_size - h->backing_file_offset)
        return sd_error_set(err, -EINVAL,
                            "backing file name lies past the end of the file");
    h->backing_file = calloc(1, h->backing_file_size + 1);
    if (!h->backing_file)
        return sd_error_set(err, -ENOMEM, "out of memory");
    int ret = blk_pread(f, h->backing_file, h->backing_file_size,
                        h->backing_file_offset);
    if (ret < 0)
        return sd_error_set(err, ret, "could not read the backing file name");
    if (strlen(h->backing_file) != h->backing_file_size)
        return sd_error_set(err, -EINVAL, "backing file name contains a NUL byte");
    return 0;
}

int qcow2_header_read(struct blkfile *f, struct qcow2_header *h,
                      struct sd_error *err)
{
    uint8_t fixed[QCOW2_V3_HEADER_SIZE + 8];
    uint64_t file_size, ext_len;
    uint8_t *buf = NULL;
    int ret;

    memset(h, 0, sizeof(*h));
    ret = blk_get_size(f, &file_size);
    if (ret < 0)
        return sd_error_set(err, ret, "could not get the file size");
    if (file_size < QCOW2_V2_HEADER_SIZE)
        return sd_error_set(err, -EINVAL, "file too short for a qcow2 header "
                            "(%llu bytes)", (unsigned long long)file_size);
    ret = blk_pread(f, fixed, sizeof(fixed), 0);
    if (ret < 0)
        return sd_error_set(err, ret, "could not read the header");
    if (get_be32(fixed) != QCOW2_MAGIC)
        return sd_error_set(err, -EINVAL, "not a qcow2 image (bad magic)");
    parse_fixed(fixed, h);
    ret = check_fixed(h, file_size, err);
    if (ret < 0)
        goto out_fail;
    ret = check_l1_size(h, err);
    if (ret < 0)
        goto out_fail;

    ext_len = qcow2_cluster_size(h);
    if (ext_len > QCOW2_MAX_HEADER_EXT_BYTES)
        ext_len = QCOW2_MAX_HEADER_EXT_BYTES;
    buf = malloc(ext_len);
    if (!buf) {
        ret = sd_error_set(err, -ENOMEM, "out of memory");
        goto out_fail;
    }
    ret = blk_pread(f, buf, ext_len, 0);
    if (ret < 0) {
        sd_error_set(err, ret, "could not read the header extensions");
        goto out_fail;
    }
    ret = parse_extensions(h, buf, ext_len, err);
    if (ret < 0)
        goto out_fail;
    ret = read_backing_name(f, h, file_size, err);
    if (ret < 0)
        goto out_fail;
    free(buf);
    return 0;

out_fail:
    free(buf);
    qcow2_header_free(h);
    return ret;
}

void qcow2_header_free(struct qcow2_header *h)
{
    struct qcow2_ext *e = h->unknown_exts;

    while (e) {
        struct qcow2_ext *next = e->next;
        free(e->data);
        free(e);
        e = next;
    }
    h->unknown_exts = NULL;
    free(h->backing_file);
    free(h->backing_format);
    free(h->data_file);
    free(h->feature_table);
    h->backing_file = h->backing_format = h->data_file = NULL;
    h->feature_table = NULL;
}

/* Feature name table entries: type (0 incompat, 1 compat, 2 autoclear),
 * bit, name. */
static const struct {
    uint8_t type, bit;
    const char *name;
} feature_names[] = {
    { 0, 0, "dirty bit" },
    { 0, 1, "corrupt bit" },
    { 0, 2, "external data file" },
    { 0, 3, "compression type" },
    { 0, 4, "extended L2 entries" },
    { 1, 0, "lazy refcounts" },
    { 2, 0, "bitmaps" },
    { 2, 1, "raw external data" },
};

static int put_ext(uint8_t *buf, uint64_t cap, uint64_t *off, uint32_t type,
                   const void *data, uint32_t len)
{
    uint64_t padded = (len + 7ull) & ~7ull;

    if (*off + 8 + padded > cap)
        return -ENOSPC;
    put_be32(buf + *off, type);
    put_be32(buf + *off + 4, len);
    if (len)
        memcpy(buf + *off + 8, data, len);
    memset(buf + *off + 8 + len, 0, padded - len);
    *off += 8 + padded;
    return 0;
}

static int put_feature_table(uint8_t *buf, uint64_t cap, uint64_t *off)
{
    enum { N = sizeof(feature_names) / sizeof(feature_names[0]) };
    uint8_t table[N * 48];

    memset(table, 0, sizeof(table));
    for (unsigned i = 0; i < N; i++) {
        table[i * 48] = feature_names[i].type;
        table[i * 48 + 1] = feature_names[i].bit;
        strncpy((char *)table + i * 48 + 2, feature_names[i].name, 46);
    }
    return put_ext(buf, cap, off, QCOW2_EXT_FEATURE_TABLE, table, sizeof(table));
}

static void put_fixed(uint8_t *b, const struct qcow2_header *h)
{
    put_be32(b, QCOW2_MAGIC);
    put_be32(b + 4, h->version);
    put_be64(b + 8, h->backing_file_offset);
    put_be32(b + 16, h->backing_file_size);
    put_be32(b + 20, h->cluster_bits);
    put_be64(b + 24, h->size);
    put_be32(b + 32, h->crypt_method);
    put_be32(b + 36, h->l1_size);
    put_be64(b + 40, h->l1_table_offset);
    put_be64(b + 48, h->refcount_table_offset);
    put_be32(b + 56, h->refcount_table_clusters);
    put_be32(b + 60, h->nb_snapshots);
    put_be64(b + 64, h->snapshots_offset);
    if (h->version < 3)
        return;
    put_be64(b + 72, h->incompatible_features);
    put_be64(b + 80, h->compatible_features);
    put_be64(b + 88, h->autoclear_features);
    put_be32(b + 96, h->refcount_order);
    put_be32(b + 100, h->header_length);
    if (h->header_length > 104)
        b[104] = h->compression_type;
}

static int put_extensions(uint8_t *buf, uint64_t cap, uint64_t *off,
                          const struct qcow2_header *h, bool feature_table)
{
    int ret = 0;

    if (h->backing_format)
        ret = put_ext(buf, cap, off, QCOW2_EXT_BACKING_FORMAT,
                      h->backing_format, strlen(h->backing_format));
    if (!ret && h->data_file)
        ret = put_ext(buf, cap, off, QCOW2_EXT_DATA_FILE, h->data_file,
                      strlen(h->data_file));
    if (!ret && h->version >= 3 && feature_table)
        ret = put_feature_table(buf, cap, off);
    for (const struct qcow2_ext *e = h->unknown_exts; e && !ret; e = e->next)
        ret = put_ext(buf, cap, off, e->type, e->data, e->len);
    if (!ret && h->version >= 3)
        ret = put_ext(buf, cap, off, QCOW2_EXT_END, NULL, 0);
    return ret;
}

int qcow2_header_write(struct blkfile *f, const struct qcow2_header *h_in,
                       struct sd_error *err)
{
    uint64_t cs = qcow2_cluster_size(h_in), off;
    struct qcow2_header h = *h_in;
    uint8_t *buf = calloc(1, cs);
    int ret;

    if (!buf)
        return sd_error_set(err, -ENOMEM, "out of memory");
    off = h.header_length;
    /* v2 has no room for extensions it does not know of but the
     * backing format; it still accepts them in the same area. The feature
     * name table is optional: with 512-byte clusters it does not fit
     * beside a v3 header, and is left out (as qemu does). */
    ret = put_extensions(buf, cs, &off, &h, true);
    if (ret == 0 && h.backing_file &&
        off + strlen(h.backing_file) > cs)
        ret = -ENOSPC;
    if (ret == -ENOSPC) {
        memset(buf, 0, cs);
        off = h.header_length;
        ret = put_extensions(buf, cs, &off, &h, false);
    }
    if (ret == 0 && h.version < 3 && (h.backing_format || h.unknown_exts))
        ret = put_ext(buf, cs, &off, QCOW2_EXT_END, NULL, 0);
    if (ret == 0 && h.backing_file) {
        size_t n = strlen(h.backing_file);
        if (off + n > cs)
            ret = -ENOSPC;
        else {
            memcpy(buf + off, h.backing_file, n);
            h.backing_file_offset = off;
            h.backing_file_size = n;
        }
    } else if (ret == 0) {
        h.backing_file_offset = 0;
        h.backing_file_size = 0;
    }
    if (ret < 0) {
        free(buf);
        return sd_error_set(err, ret, "header and extensions do not fit in "
                            "the first cluster");
    }
    put_fixed(buf, &h);
    /* Write only what is used: a short write stays inside one sector for
     * small headers, and never clobbers a following cluster. */
    uint64_t used = off + (h.backing_file ? strlen(h.backing_file) : 0);
    used = (used + 511) & ~511ull;
    if (used > cs)
        used = cs;
    ret = blk_pwrite(f, buf, used, 0);
    free(buf);
    if (ret < 0)
        return sd_error_set(err, ret, "could not write the header: %s",
                            strerror(-ret));
    return 0;
}
