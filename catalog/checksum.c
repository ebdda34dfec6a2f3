/* SPDX-License-Identifier: MIT */
/*
 * The per-backup checksum: see checksum.h and docs/CHECKSUM.md.
 *
 * Runs are coalesced before they are hashed, so the value does not
 * depend on how the library splits its block-status answers (by L2
 * table, by subcluster type): only on which guest bytes the layer
 * decides and what they read as.
 */
#include "config.h"

#include "catalog/checksum.h"
#include "common/byteorder.h"
#include "qcow2/image.h"

#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct walk {
    struct sd_img *img;
    EVP_MD_CTX *md;
    uint8_t *buf;
    struct cat_layer_stats *st;
};

static int hash(struct walk *w, const void *data, size_t len)
{
    return EVP_DigestUpdate(w->md, data, len) ? 0 : -EIO;
}

/* Hash one run: its header, then its bytes, read in pieces. */
static int hash_run(struct walk *w, uint64_t off, uint64_t len)
{
    uint8_t head[16];
    int ret;

    put_be64(head, off);
    put_be64(head + 8, len);
    ret = hash(w, head, sizeof(head));
    w->st->runs++;
    w->st->bytes += len;
    for (uint64_t done = 0; ret == 0 && done < len; ) {
        uint64_t n = len - done < CAT_CHECKSUM_READ_SIZE
                   ? len - done : CAT_CHECKSUM_READ_SIZE;

        if (sd_img_pread(w->img, w->buf, n, off + done) < 0) {
            /* Keep the length of the stream right; the value is void. */
            w->st->read_errors++;
            memset(w->buf, 0, n);
        }
        ret = hash(w, w->buf, n);
        done += n;
    }
    return ret;
}

/* Find the runs of depth 0 and hash each once it ends. */
static int walk_layer(struct walk *w, struct sd_error *err)
{
    uint64_t size = sd_img_size(w->img), off = 0;
    uint64_t run_off = 0, run_len = 0;
    int ret = 0;

    while (ret == 0 && off < size) {
        struct sd_extent ext;

        ret = sd_img_block_status(w->img, off, size - off, &ext);
        if (ret < 0)
            return sd_error_set(err, ret, "block status at %llu: %s",
                                (unsigned long long)off,
                                sd_img_strerror(w->img, ret));
        if (ext.length == 0)
            return sd_error_set(err, -EIO, "block status at %llu: empty "
                                "extent", (unsigned long long)off);
        if (ext.depth == 0 && run_off + run_len == off && run_len) {
            run_len += ext.length;
        } else {
            if (run_len)
                ret = hash_run(w, run_off, run_len);
            run_off = off;
            run_len = ext.depth == 0 ? ext.length : 0;
        }
        off += ext.length;
    }
    if (ret == 0 && run_len)
        ret = hash_run(w, run_off, run_len);
    if (ret < 0 && err->code == 0)
        sd_error_set(err, ret, "hashing failed");
    return ret;
}

static void to_hex(const unsigned char *md, unsigned len, char *hex)
{
    for (unsigned i = 0; i < len; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
}

int cat_checksum_image(const char *path, char hex[CAT_CHECKSUM_HEX_LEN + 1],
                       struct cat_layer_stats *st, struct sd_error *err)
{
    struct sd_img_open_opts o = { .format = SD_FMT_QCOW2 };
    struct walk w = { .st = st };
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    int ret;

    *st = (struct cat_layer_stats){ 0 };
    w.md = EVP_MD_CTX_new();
    w.buf = malloc(CAT_CHECKSUM_READ_SIZE);
    if (!w.md || !w.buf || !EVP_DigestInit_ex(w.md, EVP_sha256(), NULL)) {
        ret = sd_error_set(err, -ENOMEM, "out of memory");
        goto out_free;
    }
    ret = sd_img_open(&w.img, path, &o, err);
    if (ret < 0)
        goto out_free;
    ret = walk_layer(&w, err);
    if (ret == 0 && !EVP_DigestFinal_ex(w.md, md, &mdlen))
        ret = sd_error_set(err, -EIO, "sha256 failed");
    if (ret == 0)
        to_hex(md, mdlen, hex);
    (void)sd_img_close(w.img);      /* read-only: nothing to flush */
    if (ret < 0)
        sd_error_prefix(err, "%s", path);
out_free:
    EVP_MD_CTX_free(w.md);
    free(w.buf);
    return ret;
}

int cat_checksum_layer(const char *image_path,
                       char hex[CAT_CHECKSUM_HEX_LEN + 1],
                       struct sd_error *err)
{
    struct cat_layer_stats st;
    int ret = cat_checksum_image(image_path, hex, &st, err);

    if (ret == 0 && st.read_errors)
        ret = sd_error_set(err, -EIO, "%s: %llu read error(s) while "
                           "computing the checksum", image_path,
                           (unsigned long long)st.read_errors);
    return ret;
}

int cat_checksum_set(struct cat_sidecar *sc, const char *hex)
{
    if (cat_sidecar_set_string(&sc->checksum_algorithm,
                               CAT_CHECKSUM_ALGORITHM) < 0 ||
        cat_sidecar_set_string(&sc->checksum_value, hex) < 0)
        return -ENOMEM;
    return 0;
}

int cat_checksum_record(const char *image_path, struct cat_sidecar *sc,
                        struct sd_error *err)
{
    char hex[CAT_CHECKSUM_HEX_LEN + 1];
    int ret = cat_checksum_layer(image_path, hex, err);

    if (ret == 0 && cat_checksum_set(sc, hex) < 0)
        ret = sd_error_set(err, -ENOMEM, "out of memory");
    return ret;
}
