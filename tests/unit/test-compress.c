/* SPDX-License-Identifier: MIT */
/*
 * Compressed clusters: round trips through our own codec, clusters that
 * qemu-io compressed (located by walking L1 and L2 by hand, so that this
 * test does not depend on the qcow2 engine), clusters we compressed read
 * back by qemu-img, and hostile input.
 */
#include "config.h"

#include "qcow2/qcow2-format.h"

#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const enum qcow2_compression both_types[] = {
    QCOW2_COMPRESS_ZLIB, QCOW2_COMPRESS_ZSTD,
};

static const char *type_name(enum qcow2_compression t)
{
    return t == QCOW2_COMPRESS_ZSTD ? "zstd" : "zlib";
}

/* Compressible, but not one repeated byte: a stream that is wrong by one
 * byte anywhere shows up in the comparison. */
static void fill_structured(uint8_t *p, size_t len, unsigned seed)
{
    for (size_t i = 0; i < len; i++)
        p[i] = (uint8_t)(seed * (i >> 5) + (i >> 12));
}

static void fill_random(uint8_t *p, size_t len, unsigned seed)
{
    uint32_t x = seed * 2654435761u + 1;

    for (size_t i = 0; i < len; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        p[i] = (uint8_t)x;
    }
}

/* Compress, then decompress with n_garbage random bytes after the stream
 * (what a sector-rounded descriptor hands the reader). */
static void round_trip(enum qcow2_compression t, const uint8_t *src,
                       size_t len, size_t n_garbage)
{
    size_t cap = len * 2 + 1024;
    uint8_t *comp = malloc(cap + n_garbage);
    uint8_t *back = malloc(len);
    uint64_t clen = 0;

    cr_assert(comp && back);
    cr_assert_eq(qcow2_compress(t, src, len, comp, cap, &clen), 0,
                 "%s compress of %zu bytes", type_name(t), len);
    cr_assert(clen > 0 && clen <= cap);
    fill_random(comp + clen, n_garbage, 99);
    memset(back, 0xee, len);
    cr_assert_eq(qcow2_decompress(t, comp, clen + n_garbage, back, len), 0,
                 "%s decompress of %zu bytes", type_name(t), len);
    cr_assert_eq(memcmp(back, src, len), 0, "%s round trip differs",
                 type_name(t));
    free(comp);
    free(back);
}

Test(compress, round_trip_sizes_and_contents)
{
    static const size_t sizes[] = { 512, 4096, 65536, 2u << 20 };

    for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
        uint8_t *buf = malloc(sizes[s]);

        cr_assert(buf);
        for (size_t t = 0; t < 2; t++) {
            memset(buf, 0, sizes[s]);
            round_trip(both_types[t], buf, sizes[s], 0);
            fill_structured(buf, sizes[s], 13);
            round_trip(both_types[t], buf, sizes[s], 0);
            round_trip(both_types[t], buf, sizes[s], 511);
        }
        free(buf);
    }
}

Test(compress, incompressible_data_reports_enospc)
{
    enum { LEN = 65536 };
    uint8_t *src = malloc(LEN), *dst = malloc(LEN);
    uint64_t out = 12345;

    cr_assert(src && dst);
    fill_random(src, LEN, 7);
    for (size_t t = 0; t < 2; t++) {
        /* qemu gives the compressor one byte less than a cluster. */
        cr_assert_eq(qcow2_compress(both_types[t], src, LEN, dst, LEN - 1,
                                    &out), -ENOSPC, "%s",
                     type_name(both_types[t]));
        cr_assert_eq(out, 12345, "out_len set on failure");
    }
    free(src);
    free(dst);
}

Test(compress, short_truncated_and_garbage_input_is_eio)
{
    enum { LEN = 65536 };
    uint8_t *src = malloc(LEN), *comp = malloc(2 * LEN), *dst = malloc(LEN);
    uint64_t clen;

    cr_assert(src && comp && dst);
    fill_structured(src, LEN, 3);
    for (size_t t = 0; t < 2; t++) {
        enum qcow2_compression ty = both_types[t];

        /* A stream of half a cluster cannot fill a whole one. */
        cr_assert_eq(qcow2_compress(ty, src, LEN / 2, comp, 2 * LEN, &clen),
                     0);
        cr_assert_eq(qcow2_decompress(ty, comp, clen, dst, LEN), -EIO,
                     "%s: short stream", type_name(ty));
        /* A full stream cut in half. */
        cr_assert_eq(qcow2_compress(ty, src, LEN, comp, 2 * LEN, &clen), 0);
        cr_assert_eq(qcow2_decompress(ty, comp, clen / 2, dst, LEN), -EIO,
                     "%s: truncated stream", type_name(ty));
        cr_assert_eq(qcow2_decompress(ty, comp, 0, dst, LEN), -EIO);
        /* Noise, many times over. */
        for (unsigned seed = 1; seed < 200; seed++) {
            fill_random(comp, 4096, seed);
            cr_assert_eq(qcow2_decompress(ty, comp, 4096, dst, LEN), -EIO,
                         "%s: garbage seed %u", type_name(ty), seed);
        }
    }
    free(src);
    free(comp);
    free(dst);
}

/* A zstd frame of one RLE block that fills 64 KiB with 0x5a, declaring a
 * window of 2^window_log bytes (and no content size). */
static void rle_frame(uint8_t frame[10], unsigned window_log)
{
    uint32_t block = 1u | 1u << 1 | 65536u << 3;   /* last, RLE, size */

    frame[0] = 0x28, frame[1] = 0xb5, frame[2] = 0x2f, frame[3] = 0xfd;
    frame[4] = 0x00;                              /* no single segment */
    frame[5] = (uint8_t)((window_log - 10) << 3); /* window descriptor */
    frame[6] = (uint8_t)block;
    frame[7] = (uint8_t)(block >> 8);
    frame[8] = (uint8_t)(block >> 16);
    frame[9] = 0x5a;
}

Test(compress, zstd_frame_with_huge_window_is_refused)
{
    uint8_t frame[10], *dst = malloc(65536), want[65536];

    cr_assert(dst);
    memset(want, 0x5a, sizeof(want));
    /* The same frame decodes with a modest window... */
    rle_frame(frame, 17);
    cr_assert_eq(qcow2_decompress(QCOW2_COMPRESS_ZSTD, frame, sizeof(frame),
                                  dst, 65536), 0);
    cr_assert_eq(memcmp(dst, want, sizeof(want)), 0);
    /* ...but a 64 MiB window, which libzstd alone would allocate, is
     * more than any cluster needs. */
    rle_frame(frame, 26);
    cr_assert_eq(qcow2_decompress(QCOW2_COMPRESS_ZSTD, frame, sizeof(frame),
                                  dst, 65536), -EIO);
    free(dst);
}

Test(compress, bad_arguments)
{
    uint8_t b[16] = { 0 };
    uint64_t out;

    cr_assert_eq(qcow2_decompress(QCOW2_COMPRESS_ZLIB, b, 16, b, 0), -EINVAL);
    cr_assert_eq(qcow2_decompress((enum qcow2_compression)7, b, 16, b, 16),
                 -ENOTSUP);
    cr_assert_eq(qcow2_compress((enum qcow2_compression)7, b, 16, b, 16,
                                &out), -ENOTSUP);
}

/* ---- images made and read by qemu ---------------------------------- */

static char workdir[64];

static void make_workdir(void)
{
    strcpy(workdir, "/tmp/sd-test-compress-XXXXXX");
    cr_assert_not_null(mkdtemp(workdir));
}

static void remove_workdir(void)
{
    char cmd[128];

    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", workdir);
    cr_assert_eq(system(cmd), 0);
}

static void run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void run(const char *fmt, ...)
{
    char cmd[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    cr_assert_eq(system(cmd), 0, "failed: %s", cmd);
}

static uint64_t be64_at(const uint8_t *p)
{
    uint64_t v = 0;

    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

static void put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

static void pread_all(int fd, void *buf, size_t len, uint64_t off)
{
    cr_assert_eq(pread(fd, buf, len, (off_t)off), (ssize_t)len,
                 "short read at %llu", (unsigned long long)off);
}

struct qimage {
    int fd;
    unsigned cluster_bits;
    uint8_t compression_type;
    uint64_t l2_entry_off;   /* file offset of the L2 entry of cluster 0 */
    uint64_t l2_entry;
};

/* Find the L2 entry of guest cluster 0 by reading header, L1 and L2. */
static void open_qimage(struct qimage *q, const char *path)
{
    uint8_t hdr[112], e[8];

    memset(hdr, 0, sizeof(hdr));
    q->fd = open(path, O_RDWR);
    cr_assert(q->fd >= 0, "open %s", path);
    pread_all(q->fd, hdr, 104, 0);
    cr_assert_eq(be64_at(hdr) >> 32, QCOW2_MAGIC);
    q->cluster_bits = (uint32_t)be64_at(hdr + 16);   /* bytes 20..23 */
    uint32_t header_len = (uint32_t)be64_at(hdr + 96);   /* low half */
    if (header_len >= 112)
        pread_all(q->fd, hdr + 104, 8, 104);
    q->compression_type = hdr[104];
    uint64_t l1_off = be64_at(hdr + 40);
    pread_all(q->fd, e, 8, l1_off);
    uint64_t l2_off = be64_at(e) & QCOW2_L1_OFFSET_MASK;
    cr_assert(l2_off != 0, "cluster 0 has no L2 table");
    q->l2_entry_off = l2_off;
    pread_all(q->fd, e, 8, l2_off);
    q->l2_entry = be64_at(e);
}

/* The compressed bytes of cluster 0, as many as the descriptor covers
 * (possibly running past the end of the file: those read as absent). */
static uint8_t *read_compressed(const struct qimage *q, uint64_t *len)
{
    uint64_t host_off, max_len;
    struct stat st;

    cr_assert(q->l2_entry & QCOW2_OFLAG_COMPRESSED,
              "cluster 0 is not compressed (entry %#llx)",
              (unsigned long long)q->l2_entry);
    qcow2_compressed_loc(q->l2_entry, q->cluster_bits, &host_off, &max_len);
    cr_assert_eq(fstat(q->fd, &st), 0);
    cr_assert((uint64_t)st.st_size > host_off);
    if (host_off + max_len > (uint64_t)st.st_size)
        max_len = (uint64_t)st.st_size - host_off;
    uint8_t *buf = malloc(max_len);
    cr_assert(buf);
    pread_all(q->fd, buf, max_len, host_off);
    *len = max_len;
    return buf;
}

static void check_qemu_cluster(const char *ctype, const char *cluster_size)
{
    char path[256];
    struct qimage q;
    uint64_t clen;

    snprintf(path, sizeof(path), "%s/%s-%s.qcow2", workdir, ctype,
             cluster_size);
    char opts[128];
    snprintf(opts, sizeof(opts), "compression_type=%s,cluster_size=%s",
             ctype, cluster_size);
    run("qemu-img create -q -f qcow2 -o %s '%s' 4M", opts, path);
    run("qemu-io -c 'write -c -P 0x5a 0 %s' '%s' >/dev/null", cluster_size,
        path);
    open_qimage(&q, path);
    enum qcow2_compression ty = strcmp(ctype, "zstd") == 0 ?
                                QCOW2_COMPRESS_ZSTD : QCOW2_COMPRESS_ZLIB;
    cr_assert_eq(q.compression_type, (uint8_t)ty);

    uint64_t csize = 1ull << q.cluster_bits;
    uint8_t *comp = read_compressed(&q, &clen);
    uint8_t *out = malloc(csize), *want = malloc(csize);
    cr_assert(out && want);
    memset(want, 0x5a, csize);
    cr_assert_eq(qcow2_decompress(ty, comp, clen, out, csize), 0,
                 "%s cluster from qemu", ctype);
    cr_assert_eq(memcmp(out, want, csize), 0);
    free(comp);
    free(out);
    free(want);
    close(q.fd);
}

Test(compress, reads_clusters_qemu_compressed,
     .init = make_workdir, .fini = remove_workdir)
{
    check_qemu_cluster("zlib", "64k");
    check_qemu_cluster("zstd", "64k");
    check_qemu_cluster("zlib", "4k");
    check_qemu_cluster("zstd", "2M");
}

/*
 * Replace the cluster qemu compressed with our own stream of other data,
 * at the same host offset, and have qemu-img read the image back.
 */
static void check_qemu_reads_ours(enum qcow2_compression ty)
{
    char path[256], raw[256], cmd[600];
    struct qimage q;
    uint64_t host_off, max_len, clen;

    snprintf(path, sizeof(path), "%s/ours-%s.qcow2", workdir, type_name(ty));
    snprintf(raw, sizeof(raw), "%s/ours-%s.raw", workdir, type_name(ty));
    run("qemu-img create -q -f qcow2 -o compression_type=%s '%s' 1M",
        type_name(ty), path);
    run("qemu-io -c 'write -c -P 0x11 0 64k' '%s' >/dev/null", path);
    open_qimage(&q, path);

    uint64_t csize = 1ull << q.cluster_bits;
    uint8_t *src = malloc(csize), *comp = malloc(csize), *back = malloc(csize);
    cr_assert(src && comp && back);
    fill_structured(src, csize, 31);
    cr_assert_eq(qcow2_compress(ty, src, csize, comp, csize - 1, &clen), 0);

    qcow2_compressed_loc(q.l2_entry, q.cluster_bits, &host_off, &max_len);
    cr_assert_eq(pwrite(q.fd, comp, clen, (off_t)host_off), (ssize_t)clen);
    unsigned x = 62 - (q.cluster_bits - 8);
    uint64_t nsec = ((host_off + clen - 1) >> 9) - (host_off >> 9);
    uint8_t e[8];
    put_be64(e, QCOW2_OFLAG_COMPRESSED | nsec << x | host_off);
    cr_assert_eq(pwrite(q.fd, e, 8, (off_t)q.l2_entry_off), 8);
    close(q.fd);

    snprintf(cmd, sizeof(cmd),
             "qemu-img convert -f qcow2 -O raw '%s' '%s'", path, raw);
    cr_assert_eq(system(cmd), 0, "qemu-img could not read our cluster");
    int fd = open(raw, O_RDONLY);
    cr_assert(fd >= 0);
    pread_all(fd, back, csize, 0);
    close(fd);
    cr_assert_eq(memcmp(back, src, csize), 0, "qemu read %s data differently",
                 type_name(ty));
    free(src);
    free(comp);
    free(back);
}

Test(compress, qemu_reads_clusters_we_compressed,
     .init = make_workdir, .fini = remove_workdir)
{
    check_qemu_reads_ours(QCOW2_COMPRESS_ZLIB);
    check_qemu_reads_ours(QCOW2_COMPRESS_ZSTD);
}
