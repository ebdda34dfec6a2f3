/* SPDX-License-Identifier: MIT */
/*
 * Compressed clusters, zlib and zstd, as qemu writes and reads them.
 *
 * Notes on the format (docs/interop/qcow2.txt, "Compressed Clusters
 * Descriptor" and the compression_type header field):
 *
 * - zlib clusters hold a raw deflate stream: no zlib header and no
 *   checksum, with a 4 KiB window (windowBits -12).
 * - zstd clusters hold one zstd frame.
 * - The L2 descriptor counts 512-byte sectors, so the bytes handed to us
 *   may run past the end of the compressed stream and the tail can be
 *   anything (the start of the next compressed cluster, say). We therefore
 *   stop as soon as the cluster is full and never insist that the input
 *   be consumed to its end.
 * - A stream that ends, fails or runs out of input before it fills the
 *   cluster is corrupt: -EIO. Nothing in the input is trusted.
 */
#include "config.h"

#include "qcow2-format.h"

#include <errno.h>
#include <limits.h>
#include <string.h>

#include <zlib.h>
#include <zstd.h>
#include <zstd_errors.h>

/* qemu's window for compressed clusters: 4 KiB, no zlib wrapper. */
enum { QCOW2_DEFLATE_WINDOW_BITS = -12 };

/*
 * A zstd frame names the window its decoder must allocate. A frame made
 * from one cluster never needs more than the cluster (at most 2 MiB); the
 * cap keeps a hostile frame from asking for the library's default limit
 * of 128 MiB. Two bits of slack accept frames from other encoders.
 */
enum { QCOW2_ZSTD_WINDOW_LOG_MAX = QCOW2_MAX_CLUSTER_BITS + 2 };

/* zlib counts in unsigned int; a cluster is far smaller, input may not be. */
static unsigned int zlib_len(uint64_t len)
{
    return len > UINT_MAX ? UINT_MAX : (unsigned int)len;
}

static int inflate_cluster(const void *src, uint64_t src_len, void *dst,
                           uint64_t dst_len)
{
    z_stream strm;
    int zret, ret;

    memset(&strm, 0, sizeof(strm));
    if (inflateInit2(&strm, QCOW2_DEFLATE_WINDOW_BITS) != Z_OK)
        return -ENOMEM;
    strm.next_in = (Bytef *)src;   /* zlib never writes through next_in */
    strm.avail_in = zlib_len(src_len);
    strm.next_out = dst;
    strm.avail_out = (unsigned int)dst_len;

    zret = inflate(&strm, Z_FINISH);
    /*
     * Z_BUF_ERROR with a full output only means the input went on past
     * the cluster, which the sector-rounded length allows.
     */
    if ((zret == Z_STREAM_END || zret == Z_BUF_ERROR) && strm.avail_out == 0)
        ret = 0;
    else
        ret = -EIO;
    inflateEnd(&strm);
    return ret;
}

/* Decompress until dst is full; the frame may end exactly there or later. */
static int zstd_fill(ZSTD_DCtx *dctx, const void *src, uint64_t src_len,
                     void *dst, uint64_t dst_len)
{
    ZSTD_inBuffer in = { .src = src, .size = src_len, .pos = 0 };
    ZSTD_outBuffer out = { .dst = dst, .size = dst_len, .pos = 0 };

    while (out.pos < out.size) {
        size_t in_before = in.pos, out_before = out.pos;
        size_t zret = ZSTD_decompressStream(dctx, &out, &in);

        if (ZSTD_isError(zret))
            return -EIO;
        if (zret == 0)             /* the frame ended */
            break;
        if (in.pos == in_before && out.pos == out_before)
            return -EIO;           /* input exhausted, cluster not full */
    }
    return out.pos == out.size ? 0 : -EIO;
}

static int zstd_decompress_cluster(const void *src, uint64_t src_len,
                                   void *dst, uint64_t dst_len)
{
    ZSTD_DCtx *dctx = ZSTD_createDCtx();
    int ret;

    if (!dctx)
        return -ENOMEM;
    if (ZSTD_isError(ZSTD_DCtx_setParameter(dctx, ZSTD_d_windowLogMax,
                                            QCOW2_ZSTD_WINDOW_LOG_MAX)))
        ret = -EIO;
    else
        ret = zstd_fill(dctx, src, src_len, dst, dst_len);
    ZSTD_freeDCtx(dctx);
    return ret;
}

int qcow2_decompress(enum qcow2_compression type, const void *src,
                     uint64_t src_len, void *dst, uint64_t dst_len)
{
    if (dst_len == 0 || dst_len > (1ull << QCOW2_MAX_CLUSTER_BITS))
        return -EINVAL;
    if (src_len > SIZE_MAX)
        src_len = SIZE_MAX;
    switch (type) {
    case QCOW2_COMPRESS_ZLIB:
        return inflate_cluster(src, src_len, dst, dst_len);
    case QCOW2_COMPRESS_ZSTD:
        return zstd_decompress_cluster(src, src_len, dst, dst_len);
    }
    return -ENOTSUP;
}

static int deflate_cluster(const void *src, uint64_t src_len, void *dst,
                           uint64_t dst_cap, uint64_t *out_len)
{
    z_stream strm;
    int zret, ret;

    memset(&strm, 0, sizeof(strm));
    /* Default level, 4 KiB window, memLevel 9, no header: what qemu reads. */
    if (deflateInit2(&strm, Z_DEFAULT_COMPRESSION, Z_DEFLATED,
                     QCOW2_DEFLATE_WINDOW_BITS, 9,
                     Z_DEFAULT_STRATEGY) != Z_OK)
        return -ENOMEM;
    strm.next_in = (Bytef *)src;
    strm.avail_in = (unsigned int)src_len;
    strm.next_out = dst;
    strm.avail_out = zlib_len(dst_cap);

    zret = deflate(&strm, Z_FINISH);
    if (zret == Z_STREAM_END) {
        *out_len = strm.total_out;
        ret = 0;
    } else if (zret == Z_OK || zret == Z_BUF_ERROR) {
        ret = -ENOSPC;             /* ran out of room before the end */
    } else {
        ret = -EIO;
    }
    deflateEnd(&strm);
    return ret;
}

static int zstd_compress_cluster(const void *src, uint64_t src_len,
                                 void *dst, uint64_t dst_cap,
                                 uint64_t *out_len)
{
    ZSTD_CCtx *cctx = ZSTD_createCCtx();
    size_t zret;

    if (!cctx)
        return -ENOMEM;
    /* One call with the whole cluster: the frame records its content
     * size, so decoders need a window no larger than the cluster. */
    zret = ZSTD_compressCCtx(cctx, dst, dst_cap, src, src_len,
                             ZSTD_CLEVEL_DEFAULT);
    ZSTD_freeCCtx(cctx);
    if (ZSTD_isError(zret))
        return ZSTD_getErrorCode(zret) == ZSTD_error_dstSize_tooSmall ?
               -ENOSPC : -EIO;
    *out_len = zret;
    return 0;
}

int qcow2_compress(enum qcow2_compression type, const void *src,
                   uint64_t src_len, void *dst, uint64_t dst_cap,
                   uint64_t *out_len)
{
    if (src_len == 0 || src_len > (1ull << QCOW2_MAX_CLUSTER_BITS))
        return -EINVAL;
    if (dst_cap > SIZE_MAX)
        dst_cap = SIZE_MAX;
    switch (type) {
    case QCOW2_COMPRESS_ZLIB:
        return deflate_cluster(src, src_len, dst, dst_cap, out_len);
    case QCOW2_COMPRESS_ZSTD:
        return zstd_compress_cluster(src, src_len, dst, dst_cap, out_len);
    }
    return -ENOTSUP;
}
