/* SPDX-License-Identifier: MIT */
/*
 * QCOW2 on-disk format: constants and the parsed header. Every field on
 * disk is big-endian. See docs/QCOW2-NOTES.md for what we support.
 */
#ifndef SENDENSE_QCOW2_FORMAT_H
#define SENDENSE_QCOW2_FORMAT_H

#include <stdbool.h>
#include <stdint.h>

#define QCOW2_MAGIC 0x514649fbu            /* "QFI\xfb" */

enum {
    QCOW2_V2_HEADER_SIZE = 72,
    QCOW2_V3_HEADER_SIZE = 104,            /* with compression_type: 112 */
    QCOW2_MIN_CLUSTER_BITS = 9,
    QCOW2_MAX_CLUSTER_BITS = 21,
    QCOW2_MAX_BACKING_NAME = 1023,
    QCOW2_SUBCLUSTERS_EXT = 32,            /* per cluster with extended L2 */
};

/* Caps that keep hostile images from making us allocate without bound. */
#define QCOW2_MAX_L1_BYTES        (32u << 20)
#define QCOW2_MAX_REFTABLE_BYTES  (8u << 20)
#define QCOW2_MAX_VIRTUAL_SIZE    (1ull << 56)   /* 64 PiB */
#define QCOW2_MAX_HEADER_EXT_BYTES (1u << 20)

/* Incompatible features */
enum {
    QCOW2_INCOMPAT_DIRTY       = 1u << 0,
    QCOW2_INCOMPAT_CORRUPT     = 1u << 1,
    QCOW2_INCOMPAT_DATA_FILE   = 1u << 2,
    QCOW2_INCOMPAT_COMPRESSION = 1u << 3,
    QCOW2_INCOMPAT_EXTL2       = 1u << 4,
    QCOW2_INCOMPAT_KNOWN       = 0x1f,
};
/* Compatible features */
enum { QCOW2_COMPAT_LAZY_REFCOUNTS = 1u << 0 };
/* Autoclear features */
enum {
    QCOW2_AUTOCLEAR_BITMAPS       = 1u << 0,
    QCOW2_AUTOCLEAR_DATA_FILE_RAW = 1u << 1,
    QCOW2_AUTOCLEAR_KNOWN         = 0x3,
};

/* Header extension types */
enum {
    QCOW2_EXT_END            = 0x00000000u,
    QCOW2_EXT_BACKING_FORMAT = 0xe2792acau,
    QCOW2_EXT_FEATURE_TABLE  = 0x6803f857u,
    QCOW2_EXT_BITMAPS        = 0x23852875u,
    QCOW2_EXT_CRYPTO         = 0x0537be77u,
    QCOW2_EXT_DATA_FILE      = 0x44415441u,
};

enum qcow2_compression { QCOW2_COMPRESS_ZLIB = 0, QCOW2_COMPRESS_ZSTD = 1 };

/* L1 / L2 entry bits */
#define QCOW2_OFLAG_COPIED     (1ull << 63)
#define QCOW2_OFLAG_COMPRESSED (1ull << 62)
#define QCOW2_OFLAG_ZERO       (1ull << 0)
#define QCOW2_L1_OFFSET_MASK   0x00fffffffffffe00ull
#define QCOW2_L2_OFFSET_MASK   0x00fffffffffffe00ull
#define QCOW2_L1_RESERVED_MASK 0x7f000000000001ffull
#define QCOW2_L2_RESERVED_MASK 0x3f000000000001feull
#define QCOW2_REFT_OFFSET_MASK 0xfffffffffffffe00ull

/* One header extension we keep as it is, to write back unchanged. */
struct qcow2_ext {
    uint32_t type;
    uint32_t len;
    uint8_t *data;
    struct qcow2_ext *next;
};

/* The parsed, validated header (host byte order). */
struct qcow2_header {
    uint32_t version;
    uint64_t backing_file_offset;
    uint32_t backing_file_size;
    uint32_t cluster_bits;
    uint64_t size;
    uint32_t crypt_method;
    uint32_t l1_size;
    uint64_t l1_table_offset;
    uint64_t refcount_table_offset;
    uint32_t refcount_table_clusters;
    uint32_t nb_snapshots;
    uint64_t snapshots_offset;
    uint64_t incompatible_features;
    uint64_t compatible_features;
    uint64_t autoclear_features;
    uint32_t refcount_order;
    uint32_t header_length;
    uint8_t compression_type;

    char *backing_file;          /* NULL when none */
    char *backing_format;        /* from the extension, NULL when none */
    char *data_file;             /* external data file name, NULL when none */
    uint64_t bitmaps_nb;         /* from the bitmaps extension */
    uint64_t bitmap_directory_size;
    uint64_t bitmap_directory_offset;
    struct qcow2_ext *unknown_exts;   /* preserved verbatim */
    uint8_t *feature_table;      /* preserved verbatim */
    uint32_t feature_table_len;
};

struct blkfile;
struct sd_error;

/* qcow2-header.c */
int qcow2_header_read(struct blkfile *f, struct qcow2_header *h,
                      struct sd_error *err);
/* Rewrite header and extensions in the first cluster. */
int qcow2_header_write(struct blkfile *f, const struct qcow2_header *h,
                       struct sd_error *err);
void qcow2_header_free(struct qcow2_header *h);

static inline uint64_t qcow2_cluster_size(const struct qcow2_header *h)
{
    return 1ull << h->cluster_bits;
}

/* Compressed cluster descriptor: where its bytes are and how many. */
static inline void qcow2_compressed_loc(uint64_t entry, unsigned cluster_bits,
                                        uint64_t *host_off, uint64_t *max_len)
{
    unsigned x = 62 - (cluster_bits - 8);
    uint64_t off = entry & ((1ull << x) - 1);
    uint64_t nsec = (entry >> x) & ((1ull << (62 - x)) - 1);

    *host_off = off;
    /* The count covers the sector of off plus nsec more 512-byte sectors. */
    *max_len = (nsec + 1) * 512 - (off & 511);
}

/* compress.c */
/* Fill exactly dst_len (one cluster) bytes from src; -EIO when src does
 * not decompress to at least that much. Bytes after the stream are ignored. */
int qcow2_decompress(enum qcow2_compression type, const void *src,
                     uint64_t src_len, void *dst, uint64_t dst_len);
/* Compress one cluster into dst as qemu reads it; -ENOSPC when the result
 * does not fit in dst_cap (the caller then writes the cluster as it is). */
int qcow2_compress(enum qcow2_compression type, const void *src,
                   uint64_t src_len, void *dst, uint64_t dst_cap,
                   uint64_t *out_len);

#endif
