/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of qcow2/qcow2-header.c.
 *
 * Images are made at test time by qemu-img (the format oracle), parsed,
 * and compared with the options they were made with. Rewritten headers
 * must still pass `qemu-img check` and read back the same. Hostile
 * headers are made by patching bytes of a good image; each must be
 * refused with the right errno and a message naming the field.
 */
#include "config.h"

#include "qcow2/qcow2-format.h"
#include "qcow2/blkfile.h"
#include "common/error.h"
#include "leak-check.h"

#include <criterion/criterion.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define MiB (1ull << 20)
#define GiB (1ull << 30)

/* ---- fixture ------------------------------------------------------- */

static char dir[64];

static void make_dir(void)
{
    const char *tmp = getenv("TMPDIR");

    snprintf(dir, sizeof(dir), "%s/qhdr-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    cr_assert_not_null(mkdtemp(dir), "mkdtemp: %s", strerror(errno));
    unsetenv("SENDENSE_WRITE_LOG");
}

static void remove_dir(void)
{
    char cmd[128];

    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        cr_log_warn("could not remove %s", dir);
}

TestSuite(qcow2_header, .init = make_dir, .fini = remove_dir);
TestSuite(qcow2_roundtrip, .init = make_dir, .fini = remove_dir);
TestSuite(qcow2_hostile, .init = make_dir, .fini = remove_dir);

static const char *path_of(const char *name)
{
    static char p[4][128];
    static unsigned next;
    char *s = p[next++ % 4];

    snprintf(s, sizeof(p[0]), "%s/%s", dir, name);
    return s;
}

/* Run a shell command in the test directory; returns its exit status. */
static int sh(const char *fmt, ...)
{
    char cmd[1024];
    int n = snprintf(cmd, sizeof(cmd), "cd '%s' && ", dir);
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(cmd + n, sizeof(cmd) - n, fmt, ap);
    va_end(ap);
    int status = system(cmd);
    cr_assert_neq(status, -1);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

/* qemu-img create -f qcow2 [opts] name size, which must succeed. */
static void qemu_create(const char *name, const char *opts, const char *size)
{
    int rc = sh("qemu-img create -q -f qcow2 %s %s %s", opts, name, size);

    cr_assert_eq(rc, 0, "qemu-img create %s %s %s failed (%d)", opts, name,
                 size, rc);
}

static int qemu_check(const char *name)
{
    return sh("qemu-img check -q %s >/dev/null 2>&1", name);
}

static int read_header(const char *name, struct qcow2_header *h,
                       struct sd_error *err)
{
    struct blkfile *f = NULL;
    int ret = blk_open(&f, path_of(name), 0, err);

    cr_assert_eq(ret, 0, "blk_open %s: %s", name, err ? err->msg : "");
    ret = qcow2_header_read(f, h, err);
    blk_close(f);
    return ret;
}

static void must_read(const char *name, struct qcow2_header *h)
{
    struct sd_error err = { 0 };
    int ret = read_header(name, h, &err);

    cr_assert_eq(ret, 0, "qcow2_header_read %s: %d %s", name, ret, err.msg);
}

static void write_header(const char *name, const struct qcow2_header *h)
{
    struct blkfile *f = NULL;
    struct sd_error err = { 0 };

    cr_assert_eq(blk_open(&f, path_of(name), BLK_WRITABLE, &err), 0, "%s", err.msg);
    int ret = qcow2_header_write(f, h, &err);
    cr_assert_eq(ret, 0, "qcow2_header_write: %d %s", ret, err.msg);
    blk_close(f);
}

/* L1 entries a fresh image of this geometry needs. */
static uint32_t l1_entries(uint64_t size, unsigned cluster_bits, bool ext_l2)
{
    uint64_t cs = 1ull << cluster_bits;
    uint64_t per_l2 = cs / (ext_l2 ? 16 : 8);

    return (uint32_t)((size + cs * per_l2 - 1) / (cs * per_l2));
}

static uint64_t file_size(const char *name)
{
    struct stat st;

    cr_assert_eq(stat(path_of(name), &st), 0);
    return (uint64_t)st.st_size;
}

/* What every freshly created image has, whatever its options. */
static void expect_sane_layout(const char *name, const struct qcow2_header *h)
{
    uint64_t cs = qcow2_cluster_size(h);

    cr_assert_eq(h->crypt_method, 0);
    cr_assert_eq(h->nb_snapshots, 0);
    cr_assert_eq(h->l1_table_offset % cs, 0);
    cr_assert_geq(h->l1_table_offset, cs);
    cr_assert_lt(h->l1_table_offset, file_size(name));
    cr_assert_eq(h->refcount_table_offset % cs, 0);
    cr_assert_geq(h->refcount_table_offset, cs);
    cr_assert_geq(h->refcount_table_clusters, 1);
    cr_assert_null(h->data_file);
}

/* ---- images qemu-img makes parse into the right fields ------------- */

Test(qcow2_header, v2_compat_0_10)
{
    struct qcow2_header h;

    qemu_create("a.qcow2", "-o compat=0.10", "64M");
    must_read("a.qcow2", &h);
    cr_assert_eq(h.version, 2);
    cr_assert_eq(h.cluster_bits, 16);
    cr_assert_eq(h.size, 64 * MiB);
    cr_assert_eq(h.l1_size, l1_entries(64 * MiB, 16, false));
    cr_assert_eq(h.refcount_order, 4, "v2 refcounts are 16 bits");
    cr_assert_eq(h.header_length, 72);
    cr_assert_eq(h.incompatible_features, 0);
    cr_assert_eq(h.compatible_features, 0);
    cr_assert_eq(h.autoclear_features, 0);
    cr_assert_eq(h.compression_type, QCOW2_COMPRESS_ZLIB);
    cr_assert_null(h.backing_file);
    cr_assert_null(h.backing_format);
    cr_assert_null(h.unknown_exts);
    expect_sane_layout("a.qcow2", &h);
    qcow2_header_free(&h);
}

Test(qcow2_header, v3_defaults)
{
    struct qcow2_header h;

    qemu_create("a.qcow2", "-o compat=1.1", "1G");
    must_read("a.qcow2", &h);
    cr_assert_eq(h.version, 3);
    cr_assert_eq(h.cluster_bits, 16);
    cr_assert_eq(h.size, GiB);
    cr_assert_eq(h.l1_size, 2);
    cr_assert_eq(h.refcount_order, 4);
    cr_assert_eq(h.header_length, 112);
    cr_assert_eq(h.incompatible_features, 0);
    cr_assert_eq(h.compatible_features, 0);
    cr_assert_eq(h.compression_type, QCOW2_COMPRESS_ZLIB);
    cr_assert_null(h.backing_file);
    cr_assert_null(h.unknown_exts, "the feature table is not an unknown extension");
    expect_sane_layout("a.qcow2", &h);
    qcow2_header_free(&h);
}

Test(qcow2_header, odd_virtual_size)
{
    struct qcow2_header h;

    /* 1 GiB + 512 bytes needs a third L1 entry. */
    qemu_create("a.qcow2", "", "1073742336");
    must_read("a.qcow2", &h);
    cr_assert_eq(h.size, GiB + 512);
    cr_assert_eq(h.l1_size, 3);
    qcow2_header_free(&h);
}

Test(qcow2_header, extended_l2)
{
    struct qcow2_header h;

    qemu_create("a.qcow2", "-o extended_l2=on", "1G");
    must_read("a.qcow2", &h);
    cr_assert_eq(h.version, 3);
    cr_assert_eq(h.incompatible_features, QCOW2_INCOMPAT_EXTL2);
    cr_assert_eq(h.l1_size, l1_entries(GiB, 16, true),
                 "16-byte L2 entries halve what one L2 table maps");
    cr_assert_eq(h.l1_size, 4);
    expect_sane_layout("a.qcow2", &h);
    qcow2_header_free(&h);
}

Test(qcow2_header, zstd_compression)
{
    struct qcow2_header h;

    qemu_create("a.qcow2", "-o compression_type=zstd", "1G");
    must_read("a.qcow2", &h);
    cr_assert_eq(h.incompatible_features, QCOW2_INCOMPAT_COMPRESSION);
    cr_assert_eq(h.compression_type, QCOW2_COMPRESS_ZSTD);
    qcow2_header_free(&h);
}

Test(qcow2_header, backing_file_and_format)
{
    struct qcow2_header h;

    qemu_create("base.qcow2", "", "3G");
    qemu_create("top.qcow2", "-b base.qcow2 -F qcow2", "");
    must_read("top.qcow2", &h);
    cr_assert_str_eq(h.backing_file, "base.qcow2");
    cr_assert_eq(h.backing_file_size, strlen("base.qcow2"));
    cr_assert_neq(h.backing_file_offset, 0);
    cr_assert_str_eq(h.backing_format, "qcow2");
    cr_assert_eq(h.size, 3 * GiB, "size taken from the backing file");
    cr_assert_eq(h.l1_size, 6);
    cr_assert_null(h.unknown_exts);
    qcow2_header_free(&h);
}

Test(qcow2_header, backing_raw_with_v2)
{
    struct qcow2_header h;

    cr_assert_eq(sh("truncate -s 10M base.raw"), 0);
    qemu_create("top.qcow2", "-o compat=0.10 -b base.raw -F raw", "");
    must_read("top.qcow2", &h);
    cr_assert_eq(h.version, 2);
    cr_assert_str_eq(h.backing_file, "base.raw");
    cr_assert_str_eq(h.backing_format, "raw");
    cr_assert_eq(h.size, 10 * MiB);
    qcow2_header_free(&h);
}

Test(qcow2_header, lazy_refcounts)
{
    struct qcow2_header h;

    qemu_create("a.qcow2", "-o lazy_refcounts=on", "1G");
    must_read("a.qcow2", &h);
    cr_assert_eq(h.compatible_features, QCOW2_COMPAT_LAZY_REFCOUNTS);
    cr_assert_eq(h.incompatible_features, 0);
    qcow2_header_free(&h);
}

Test(qcow2_header, refcount_bits_1)
{
    struct qcow2_header h;

    qemu_create("a.qcow2", "-o refcount_bits=1", "1G");
    must_read("a.qcow2", &h);
    cr_assert_eq(h.refcount_order, 0);
    qcow2_header_free(&h);
}

Test(qcow2_header, refcount_bits_64)
{
    struct qcow2_header h;

    qemu_create("a.qcow2", "-o refcount_bits=64", "1G");
    must_read("a.qcow2", &h);
    cr_assert_eq(h.refcount_order, 6);
    qcow2_header_free(&h);
}

Test(qcow2_header, cluster_size_512)
{
    struct qcow2_header h;

    qemu_create("a.qcow2", "-o cluster_size=512", "64M");
    must_read("a.qcow2", &h);
    cr_assert_eq(h.cluster_bits, 9);
    cr_assert_eq(h.l1_size, l1_entries(64 * MiB, 9, false));
    cr_assert_eq(h.l1_size, 2048);
    expect_sane_layout("a.qcow2", &h);
    qcow2_header_free(&h);
}

Test(qcow2_header, cluster_size_2M)
{
    struct qcow2_header h;

    qemu_create("a.qcow2", "-o cluster_size=2M", "100G");
    must_read("a.qcow2", &h);
    cr_assert_eq(h.cluster_bits, 21);
    cr_assert_eq(h.size, 100 * GiB);
    cr_assert_eq(h.l1_size, l1_entries(100 * GiB, 21, false));
    expect_sane_layout("a.qcow2", &h);
    qcow2_header_free(&h);
}

/* ---- byte patching ------------------------------------------------- */

static void patch(const char *name, uint64_t off, const void *bytes, size_t len)
{
    int fd = open(path_of(name), O_WRONLY);

    cr_assert_geq(fd, 0);
    cr_assert_eq(pwrite(fd, bytes, len, (off_t)off), (ssize_t)len);
    close(fd);
}

static void patch32(const char *name, uint64_t off, uint32_t v)
{
    v = htobe32(v);
    patch(name, off, &v, 4);
}

static void patch64(const char *name, uint64_t off, uint64_t v)
{
    v = htobe64(v);
    patch(name, off, &v, 8);
}

static uint32_t peek32(const uint8_t *p)
{
    uint32_t v;

    memcpy(&v, p, 4);
    return be32toh(v);
}

/* Insert a header extension in front of the image's others, moving the
 * rest of the extension area (and the backing file name) along. */
static void insert_extension(const char *name, uint32_t type,
                             const void *data, uint32_t len)
{
    uint8_t hdr[112];
    uint32_t padded = (len + 7) & ~7u;
    int fd = open(path_of(name), O_RDWR);

    cr_assert_geq(fd, 0);
    cr_assert_eq(pread(fd, hdr, sizeof(hdr), 0), (ssize_t)sizeof(hdr));
    uint64_t cs = 1ull << peek32(hdr + 20);
    uint32_t hl = peek32(hdr + 4) >= 3 ? peek32(hdr + 100) : 72;
    uint8_t *c = calloc(1, cs);
    cr_assert_not_null(c);
    cr_assert_eq(pread(fd, c, cs, 0), (ssize_t)cs);
    memmove(c + hl + 8 + padded, c + hl, cs - hl - 8 - padded);
    memset(c + hl, 0, 8 + padded);
    uint32_t be = htobe32(type);
    memcpy(c + hl, &be, 4);
    be = htobe32(len);
    memcpy(c + hl + 4, &be, 4);
    memcpy(c + hl + 8, data, len);
    uint64_t bfo;
    memcpy(&bfo, c + 8, 8);
    if (bfo) {
        bfo = htobe64(be64toh(bfo) + 8 + padded);
        memcpy(c + 8, &bfo, 8);
    }
    cr_assert_eq(pwrite(fd, c, cs, 0), (ssize_t)cs);
    close(fd);
    free(c);
}

/* ---- write round trip ---------------------------------------------- */

static void expect_same_header(const struct qcow2_header *a,
                               const struct qcow2_header *b)
{
#define SAME(field) cr_assert_eq(a->field, b->field, #field " differs: %llu vs %llu", \
                                 (unsigned long long)a->field, (unsigned long long)b->field)
    SAME(version);
    SAME(backing_file_size);
    SAME(cluster_bits);
    SAME(size);
    SAME(crypt_method);
    SAME(l1_size);
    SAME(l1_table_offset);
    SAME(refcount_table_offset);
    SAME(refcount_table_clusters);
    SAME(nb_snapshots);
    SAME(snapshots_offset);
    SAME(incompatible_features);
    SAME(compatible_features);
    SAME(autoclear_features);
    SAME(refcount_order);
    SAME(header_length);
    SAME(compression_type);
    SAME(bitmaps_nb);
#undef SAME
    cr_assert_eq(!a->backing_file, !b->backing_file);
    if (a->backing_file)
        cr_assert_str_eq(a->backing_file, b->backing_file);
    cr_assert_eq(!a->backing_format, !b->backing_format);
    if (a->backing_format)
        cr_assert_str_eq(a->backing_format, b->backing_format);
    const struct qcow2_ext *x = a->unknown_exts, *y = b->unknown_exts;
    for (; x && y; x = x->next, y = y->next) {
        cr_assert_eq(x->type, y->type);
        cr_assert_eq(x->len, y->len);
        cr_assert_eq(memcmp(x->data, y->data, x->len), 0);
    }
    cr_assert(!x && !y, "different numbers of unknown extensions");
}

/* Read, write back unchanged, and check with qemu and with ourselves. */
static void roundtrip(const char *name)
{
    struct qcow2_header before, after;

    cr_assert_eq(qemu_check(name), 0, "qemu-img check fails before the test");
    must_read(name, &before);
    write_header(name, &before);
    cr_assert_eq(qemu_check(name), 0, "qemu-img check fails on our header");
    must_read(name, &after);
    expect_same_header(&before, &after);
    qcow2_header_free(&before);
    qcow2_header_free(&after);
    expect_no_leaks();
}

Test(qcow2_roundtrip, v3_with_data)
{
    qemu_create("a.qcow2", "", "1G");
    cr_assert_eq(sh("qemu-io -c 'write -q -P 0xab 1M 192k' a.qcow2 >/dev/null"), 0);
    roundtrip("a.qcow2");
    cr_assert_eq(sh("qemu-io -c 'read -q -P 0xab 1M 192k' a.qcow2 >/dev/null"), 0,
                 "the data is no longer where qemu expects it");
}

Test(qcow2_roundtrip, v2_with_backing)
{
    qemu_create("base.qcow2", "-o compat=0.10", "1G");
    qemu_create("top.qcow2", "-o compat=0.10 -b base.qcow2 -F qcow2", "");
    roundtrip("top.qcow2");
    cr_assert_eq(sh("qemu-img info top.qcow2 | grep -q 'backing file format: qcow2'"),
                 0, "qemu no longer sees the backing format");
}

Test(qcow2_roundtrip, v3_backing_lazy_zstd_extl2)
{
    qemu_create("base.qcow2", "", "1G");
    qemu_create("top.qcow2", "-b base.qcow2 -F qcow2 -o lazy_refcounts=on,"
                "compression_type=zstd,extended_l2=on", "");
    roundtrip("top.qcow2");
    cr_assert_eq(sh("qemu-img info top.qcow2 | grep -q 'backing file: base.qcow2'"), 0);
    cr_assert_eq(sh("qemu-img info top.qcow2 | grep -q 'compression type: zstd'"), 0);
}

Test(qcow2_roundtrip, small_clusters_keep_the_feature_table_in_bounds)
{
    qemu_create("base.qcow2", "", "64M");
    qemu_create("top.qcow2", "-o cluster_size=512 -b base.qcow2 -F qcow2", "");
    roundtrip("top.qcow2");
}

Test(qcow2_roundtrip, unknown_extension_is_preserved)
{
    struct qcow2_header h;
    static const char payload[] = "hello";

    qemu_create("base.qcow2", "", "1G");
    qemu_create("top.qcow2", "-b base.qcow2 -F qcow2", "");
    insert_extension("top.qcow2", 0x12345678, payload, 5);
    cr_assert_eq(qemu_check("top.qcow2"), 0, "the patched image is not valid");
    must_read("top.qcow2", &h);
    cr_assert_not_null(h.unknown_exts);
    cr_assert_eq(h.unknown_exts->type, 0x12345678);
    cr_assert_eq(h.unknown_exts->len, 5);
    cr_assert_eq(memcmp(h.unknown_exts->data, payload, 5), 0);
    cr_assert_null(h.unknown_exts->next);
    cr_assert_str_eq(h.backing_file, "base.qcow2");
    cr_assert_str_eq(h.backing_format, "qcow2");
    qcow2_header_free(&h);
    roundtrip("top.qcow2");
    /* And the bytes are on disk in qemu's view too. */
    cr_assert_eq(sh("qemu-img info top.qcow2 | grep -q 'backing file: base.qcow2'"), 0);
}

Test(qcow2_roundtrip, changed_fields_are_written)
{
    struct qcow2_header h, again;

    qemu_create("base.qcow2", "", "1G");
    qemu_create("other.qcow2", "", "1G");
    qemu_create("top.qcow2", "-b base.qcow2 -F qcow2", "");
    must_read("top.qcow2", &h);
    free(h.backing_file);
    h.backing_file = strdup("other.qcow2");
    h.compatible_features |= QCOW2_COMPAT_LAZY_REFCOUNTS;
    cr_assert_not_null(h.backing_file);
    write_header("top.qcow2", &h);
    cr_assert_eq(qemu_check("top.qcow2"), 0);
    cr_assert_eq(sh("qemu-img info top.qcow2 | grep -q 'backing file: other.qcow2'"), 0);
    cr_assert_eq(sh("qemu-img info top.qcow2 | grep -q 'lazy refcounts: true'"), 0);
    must_read("top.qcow2", &again);
    cr_assert_str_eq(again.backing_file, "other.qcow2");
    cr_assert_eq(again.backing_file_size, strlen("other.qcow2"));
    cr_assert_eq(again.compatible_features, QCOW2_COMPAT_LAZY_REFCOUNTS);
    qcow2_header_free(&h);
    qcow2_header_free(&again);
}

/* ---- hostile headers ------------------------------------------------- */

/* Offsets of the fields in the on-disk header. */
enum {
    OFF_MAGIC = 0, OFF_VERSION = 4, OFF_BACKING_OFF = 8, OFF_BACKING_SIZE = 16,
    OFF_CLUSTER_BITS = 20, OFF_SIZE = 24, OFF_CRYPT = 32, OFF_L1_SIZE = 36,
    OFF_L1_OFF = 40, OFF_REFT_OFF = 48, OFF_REFT_CLUSTERS = 56,
    OFF_INCOMPAT = 72, OFF_REFCOUNT_ORDER = 96, OFF_HEADER_LEN = 100,
    OFF_COMPRESSION = 104,
};

/* A valid 64 MiB v3 image to break: L1 at 0x30000, one entry. qemu-img
 * ends the file right after the L1 entries; it is padded to the end of the
 * L1 cluster so that tests can place tables at exact boundaries. */
static const char *good_image(void)
{
    struct qcow2_header h;

    qemu_create("bad.qcow2", "", "64M");
    cr_assert_eq(truncate(path_of("bad.qcow2"), 0x40000), 0);
    cr_assert_eq(qemu_check("bad.qcow2"), 0);
    must_read("bad.qcow2", &h);
    cr_assert_eq(h.l1_table_offset, 0x30000);
    cr_assert_eq(h.l1_size, 1);
    cr_assert_eq(file_size("bad.qcow2"), 0x40000);
    qcow2_header_free(&h);
    return "bad.qcow2";
}

static void expect_refused(const char *name, int code, const char *words)
{
    struct qcow2_header h;
    struct sd_error err = { 0 };

    memset(&h, 0x5a, sizeof(h));
    int ret = read_header(name, &h, &err);
    cr_assert_eq(ret, code, "got %d (%s), expected %d", ret, err.msg, code);
    cr_assert_eq(err.code, code);
    cr_assert_not_null(strstr(err.msg, words), "message '%s' lacks '%s'",
                       err.msg, words);
    /* Nothing was left allocated (ASan's leak check sees the rest). */
    cr_assert_null(h.backing_file);
    cr_assert_null(h.backing_format);
    cr_assert_null(h.unknown_exts);
    /* And without an error struct the code is the same. */
    cr_assert_eq(read_header(name, &h, NULL), code);
    expect_no_leaks();
}

Test(qcow2_hostile, bad_magic)
{
    const char *img = good_image();

    patch32(img, OFF_MAGIC, 0x514649fa);
    expect_refused(img, -EINVAL, "magic");
}

Test(qcow2_hostile, file_too_short)
{
    cr_assert_eq(sh("printf 'QFI\\373' > short.img"), 0);
    expect_refused("short.img", -EINVAL, "too short");
}

Test(qcow2_hostile, version_4)
{
    const char *img = good_image();

    patch32(img, OFF_VERSION, 4);
    expect_refused(img, -ENOTSUP, "version 4");
}

Test(qcow2_hostile, version_1)
{
    const char *img = good_image();

    patch32(img, OFF_VERSION, 1);
    expect_refused(img, -ENOTSUP, "version 1");
}

Test(qcow2_hostile, cluster_bits_8)
{
    const char *img = good_image();

    patch32(img, OFF_CLUSTER_BITS, 8);
    expect_refused(img, -EINVAL, "cluster_bits 8");
}

Test(qcow2_hostile, cluster_bits_22)
{
    const char *img = good_image();

    patch32(img, OFF_CLUSTER_BITS, 22);
    expect_refused(img, -EINVAL, "cluster_bits 22");
}

Test(qcow2_hostile, unknown_incompatible_bit_is_named)
{
    const char *img = good_image();

    patch64(img, OFF_INCOMPAT, 1ull << 5);
    expect_refused(img, -ENOTSUP, "bit 5");
}

Test(qcow2_hostile, high_incompatible_bit_is_named)
{
    const char *img = good_image();

    /* A known bit too: the message must name the unknown one. */
    patch64(img, OFF_INCOMPAT, (1ull << 41) | QCOW2_INCOMPAT_DIRTY);
    expect_refused(img, -ENOTSUP, "bit 41");
}

Test(qcow2_hostile, l1_table_past_end_of_file)
{
    const char *img = good_image();

    patch64(img, OFF_L1_OFF, 0x50000);
    expect_refused(img, -EINVAL, "past the end");
}

Test(qcow2_hostile, l1_table_one_entry_past_end_of_file)
{
    const char *img = good_image();
    struct qcow2_header h;

    /* 8192 entries fill the last cluster exactly: accepted. */
    patch32(img, OFF_L1_SIZE, 8192);
    must_read(img, &h);
    cr_assert_eq(h.l1_size, 8192);
    qcow2_header_free(&h);
    patch32(img, OFF_L1_SIZE, 8193);
    expect_refused(img, -EINVAL, "past the end");
}

Test(qcow2_hostile, huge_l1_table)
{
    const char *img = good_image();

    patch32(img, OFF_L1_SIZE, 0x7fffffff);
    expect_refused(img, -EFBIG, "L1 table too large");
}

Test(qcow2_hostile, unaligned_l1_table)
{
    const char *img = good_image();

    patch64(img, OFF_L1_OFF, 0x30200);
    expect_refused(img, -EINVAL, "L1 table offset");
}

Test(qcow2_hostile, l1_table_too_small_for_size)
{
    const char *img = good_image();

    patch64(img, OFF_SIZE, 2 * GiB);
    expect_refused(img, -EINVAL, "L1 table too small");
}

Test(qcow2_hostile, absurd_virtual_size)
{
    const char *img = good_image();

    patch64(img, OFF_SIZE, 1ull << 62);
    expect_refused(img, -EFBIG, "virtual size");
}

Test(qcow2_hostile, refcount_table_at_zero)
{
    const char *img = good_image();

    patch64(img, OFF_REFT_OFF, 0);
    expect_refused(img, -EINVAL, "refcount table offset");
}

Test(qcow2_hostile, refcount_table_without_clusters)
{
    const char *img = good_image();

    patch32(img, OFF_REFT_CLUSTERS, 0);
    expect_refused(img, -EFBIG, "refcount table size");
}

Test(qcow2_hostile, refcount_order_7)
{
    const char *img = good_image();

    patch32(img, OFF_REFCOUNT_ORDER, 7);
    expect_refused(img, -EINVAL, "refcount_order 7");
}

Test(qcow2_hostile, encrypted)
{
    const char *img = good_image();

    patch32(img, OFF_CRYPT, 2);
    expect_refused(img, -ENOTSUP, "encrypted");
}

Test(qcow2_hostile, crypto_extension)
{
    const char *img = good_image();
    uint8_t luks[16] = { 0 };

    insert_extension(img, QCOW2_EXT_CRYPTO, luks, sizeof(luks));
    expect_refused(img, -ENOTSUP, "encrypted");
}

Test(qcow2_hostile, header_length_not_multiple_of_8)
{
    const char *img = good_image();

    patch32(img, OFF_HEADER_LEN, 108);
    expect_refused(img, -EINVAL, "header_length 108");
}

Test(qcow2_hostile, header_length_too_short)
{
    const char *img = good_image();

    patch32(img, OFF_HEADER_LEN, 96);
    expect_refused(img, -EINVAL, "header_length 96");
}

Test(qcow2_hostile, header_length_past_the_cluster)
{
    const char *img = good_image();

    patch32(img, OFF_HEADER_LEN, 0x10008);
    expect_refused(img, -EINVAL, "header_length");
}

Test(qcow2_hostile, compression_type_without_feature_bit)
{
    const char *img = good_image();
    uint8_t zstd = QCOW2_COMPRESS_ZSTD;

    patch(img, OFF_COMPRESSION, &zstd, 1);
    expect_refused(img, -EINVAL, "compression type 1");
}

Test(qcow2_hostile, unknown_compression_type)
{
    const char *img = good_image();
    uint8_t type = 2;

    patch64(img, OFF_INCOMPAT, QCOW2_INCOMPAT_COMPRESSION);
    patch(img, OFF_COMPRESSION, &type, 1);
    expect_refused(img, -ENOTSUP, "compression type 2");
}

Test(qcow2_hostile, extended_l2_with_small_clusters)
{
    qemu_create("bad.qcow2", "-o cluster_size=8k", "64M");
    patch64("bad.qcow2", OFF_INCOMPAT, QCOW2_INCOMPAT_EXTL2);
    expect_refused("bad.qcow2", -EINVAL, "extended L2");
}

Test(qcow2_hostile, backing_name_past_end_of_file)
{
    const char *img = good_image();

    patch64(img, OFF_BACKING_OFF, 0x40000 - 4);
    patch32(img, OFF_BACKING_SIZE, 10);
    expect_refused(img, -EINVAL, "past the end");
}

Test(qcow2_hostile, backing_name_too_long)
{
    const char *img = good_image();

    patch64(img, OFF_BACKING_OFF, 0x200);
    patch32(img, OFF_BACKING_SIZE, 4000);
    expect_refused(img, -EINVAL, "too long");
}

Test(qcow2_hostile, backing_name_with_nul)
{
    qemu_create("base.qcow2", "", "64M");
    qemu_create("bad.qcow2", "-b base.qcow2 -F qcow2", "");
    struct qcow2_header h;
    must_read("bad.qcow2", &h);
    uint64_t at = h.backing_file_offset;
    qcow2_header_free(&h);
    patch("bad.qcow2", at + 3, "", 1);
    expect_refused("bad.qcow2", -EINVAL, "NUL");
}

Test(qcow2_hostile, extension_runs_past_the_cluster)
{
    const char *img = good_image();

    /* The first extension (qemu's feature table) claims a whole cluster. */
    patch32(img, 112 + 4, 0x10000);
    expect_refused(img, -EINVAL, "runs past");
}

Test(qcow2_hostile, extension_runs_into_backing_name)
{
    qemu_create("base.qcow2", "", "64M");
    qemu_create("bad.qcow2", "-b base.qcow2 -F qcow2", "");
    /* The backing format extension claims bytes of the name after it. */
    struct qcow2_header h;
    must_read("bad.qcow2", &h);
    uint32_t len = (uint32_t)(h.backing_file_offset - 112 - 8 + 1);
    qcow2_header_free(&h);
    patch32("bad.qcow2", 112 + 4, len);
    expect_refused("bad.qcow2", -EINVAL, "runs past");
}

Test(qcow2_hostile, short_bitmaps_extension)
{
    const char *img = good_image();
    uint8_t short_ext[8] = { 0 };

    insert_extension(img, QCOW2_EXT_BITMAPS, short_ext, sizeof(short_ext));
    expect_refused(img, -EINVAL, "bitmaps");
}
