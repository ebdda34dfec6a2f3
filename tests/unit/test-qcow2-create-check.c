/* SPDX-License-Identifier: MIT */
/*
 * Image creation and the consistency check, with qemu-img as the oracle.
 *
 * Images we create must pass `qemu-img check` and show in `qemu-img info`
 * what was asked. Images qemu made and wrote (data, zeroes, discards,
 * compressed clusters, snapshots, bitmaps, extended L2, odd refcount
 * widths and cluster sizes) must pass our check with the same statistics
 * qemu-img check reports. Damaged images (bytes patched by hand below)
 * must be flagged by both, and a leak repair must leave qemu-img check
 * clean.
 */
#include "config.h"

#include "qcow2/qcow2-check.h"
#include "qcow2/qcow2-format.h"
#include "common/error.h"

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

/* ---- helpers ------------------------------------------------------------ */

static char tmpdir[64];

static void make_tmpdir(void)
{
    strcpy(tmpdir, "/tmp/sd-qcc-XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir));
}

static void remove_tmpdir(void)
{
    char cmd[128];

    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(create, .init = make_tmpdir, .fini = remove_tmpdir);
TestSuite(check, .init = make_tmpdir, .fini = remove_tmpdir);
TestSuite(damage, .init = make_tmpdir, .fini = remove_tmpdir);

static char *path_in_tmp(const char *name)
{
    char *p;

    cr_assert_geq(asprintf(&p, "%s/%s", tmpdir, name), 0);
    return p;
}

/* Run a shell command; its exit status. */
static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...)
{
    va_list ap;
    char *cmd;
    int st;

    va_start(ap, fmt);
    cr_assert_geq(vasprintf(&cmd, fmt, ap), 0);
    va_end(ap);
    st = system(cmd);
    free(cmd);
    cr_assert_neq(st, -1);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

/* Run a shell command; its standard output (malloc'd). */
static char *sh_out(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *sh_out(const char *fmt, ...)
{
    size_t cap = 1 << 16, len = 0, n;
    char *out = malloc(cap), *cmd;
    va_list ap;
    FILE *p;

    va_start(ap, fmt);
    cr_assert_geq(vasprintf(&cmd, fmt, ap), 0);
    va_end(ap);
    p = popen(cmd, "r");
    cr_assert_not_null(p);
    while ((n = fread(out + len, 1, cap - 1 - len, p)) > 0)
        len += n;
    out[len] = '\0';
    pclose(p);
    free(cmd);
    return out;
}

/* The number after "key": in qemu-img's JSON; missing counts as 0. */
static uint64_t json_u64(const char *json, const char *key)
{
    char pat[64];
    const char *p;

    snprintf(pat, sizeof(pat), "\"%s\": ", key);
    p = strstr(json, pat);
    return p ? strtoull(p + strlen(pat), NULL, 10) : 0;
}

static int qemu_check_status(const char *path)
{
    return sh("qemu-img check '%s' >/dev/null 2>&1", path);
}

static uint64_t file_read_be(const char *path, uint64_t off, unsigned bytes)
{
    uint8_t b[8] = { 0 };
    uint64_t v = 0;
    int fd = open(path, O_RDONLY);

    cr_assert_geq(fd, 0);
    cr_assert_eq(pread(fd, b, bytes, off), (ssize_t)bytes);
    close(fd);
    for (unsigned i = 0; i < bytes; i++)
        v = v << 8 | b[i];
    return v;
}

static void file_write_be(const char *path, uint64_t off, unsigned bytes,
                          uint64_t v)
{
    uint8_t b[8];
    int fd = open(path, O_WRONLY);

    cr_assert_geq(fd, 0);
    for (unsigned i = bytes; i-- > 0; v >>= 8)
        b[i] = v & 0xff;
    cr_assert_eq(pwrite(fd, b, bytes, off), (ssize_t)bytes);
    close(fd);
}

static uint64_t file_size(const char *path)
{
    struct stat st;

    cr_assert_eq(stat(path, &st), 0);
    return st.st_size;
}

/* The few header fields the damage tests need, read by hand. */
struct hdr {
    unsigned cluster_bits, refcount_order;
    uint64_t cs, l1_offset, reftable_offset;
    bool extl2;
};

static struct hdr read_hdr(const char *path)
{
    struct hdr h;

    h.cluster_bits = file_read_be(path, 20, 4);
    h.cs = 1ull << h.cluster_bits;
    h.l1_offset = file_read_be(path, 40, 8);
    h.reftable_offset = file_read_be(path, 48, 8);
    if (file_read_be(path, 4, 4) >= 3) {
        h.refcount_order = file_read_be(path, 96, 4);
        h.extl2 = file_read_be(path, 72, 8) & QCOW2_INCOMPAT_EXTL2;
    } else {
        h.refcount_order = 4;
        h.extl2 = false;
    }
    return h;
}

/* Set the stored refcount of a cluster, any width. */
static void set_stored_refcount(const char *path, uint64_t cluster,
                                uint64_t value)
{
    struct hdr h = read_hdr(path);
    unsigned bits = 1u << h.refcount_order;
    uint64_t rbe = h.cs * 8 / bits;
    uint64_t rb = file_read_be(path, h.reftable_offset + cluster / rbe * 8, 8);
    uint64_t i = cluster % rbe;

    cr_assert_neq(rb, 0, "no refcount block for cluster %llu",
                  (unsigned long long)cluster);
    if (bits >= 8) {
        file_write_be(path, rb + i * bits / 8, bits / 8, value);
        return;
    }
    uint64_t byte_off = rb + i * bits / 8;
    unsigned shift = (i % (8 / bits)) * bits;
    uint8_t mask = ((1u << bits) - 1) << shift;
    uint8_t b = file_read_be(path, byte_off, 1);
    file_write_be(path, byte_off, 1, (b & ~mask) | ((value << shift) & mask));
}

/* Host offset of the first L2 table, from L1[0]. */
static uint64_t first_l2(const char *path)
{
    struct hdr h = read_hdr(path);

    return file_read_be(path, h.l1_offset, 8) & QCOW2_L1_OFFSET_MASK;
}

struct our_check {
    int ret;
    struct qcow2_check_result res;
    struct sd_error err;
};

static struct our_check run_check(const char *path, bool repair)
{
    struct qcow2_check_opts opts = { .repair_leaks = repair };
    struct our_check c;

    c.ret = qcow2_check(path, &opts, &c.res, &c.err);
    return c;
}

static bool has_message(const struct qcow2_check_result *res,
                        const char *needle)
{
    for (size_t i = 0; i < res->nb_messages; i++)
        if (strstr(res->messages[i], needle))
            return true;
    return false;
}

static void dump_messages(const struct qcow2_check_result *res)
{
    for (size_t i = 0; i < res->nb_messages; i++)
        cr_log_info("%s", res->messages[i]);
}

/* Our check is clean and agrees with qemu-img check on the statistics. */
static void assert_clean_like_qemu(const char *path)
{
    char *json = sh_out("qemu-img check --output=json '%s' 2>/dev/null", path);
    struct our_check c = run_check(path, false);

    cr_assert_eq(qemu_check_status(path), 0, "qemu-img check: %s", path);
    cr_assert_eq(c.ret, 0, "check failed: %s", c.err.msg);
    dump_messages(&c.res);
    cr_expect_eq(c.res.corruptions, 0, "%s", path);
    cr_expect_eq(c.res.leaks, 0, "%s", path);
    cr_expect_eq(c.res.check_errors, 0, "%s", path);
    cr_expect_eq(c.res.image_end_offset, json_u64(json, "image-end-offset"),
                 "%s: end %llu", path,
                 (unsigned long long)c.res.image_end_offset);
    cr_expect_eq(c.res.total_clusters, json_u64(json, "total-clusters"));
    cr_expect_eq(c.res.allocated_clusters,
                 json_u64(json, "allocated-clusters"), "%s", path);
    cr_expect_eq(c.res.fragmented_clusters,
                 json_u64(json, "fragmented-clusters"), "%s", path);
    cr_expect_eq(c.res.compressed_clusters,
                 json_u64(json, "compressed-clusters"), "%s", path);
    qcow2_check_result_free(&c.res);
    free(json);
}

/* What qemu-io writes into most test images: data, zeroes, a discard. */
#define WRITES "-c 'write -P 0xab 0 3M' -c 'write -z 5M 1M' " \
               "-c 'discard 1M 64k' -c 'write -P 0x11 7M 4k'"

/* ---- creation ---------------------------------------------------------- */

struct combo {
    uint32_t cs;
    int version;
    unsigned rbits;
    bool extl2, prealloc, lazy, zstd;
    uint64_t size;
};

static void assert_info_matches(const char *path, const struct combo *k)
{
    char *json = sh_out("qemu-img info --output=json '%s'", path);
    char want[96];

    cr_expect_eq(json_u64(json, "virtual-size"), (k->size + 511) / 512 * 512,
                 "%s", json);
    cr_expect_eq(json_u64(json, "cluster-size"), k->cs, "%s", json);
    snprintf(want, sizeof(want), "\"compat\": \"%s\"",
             k->version == 2 ? "0.10" : "1.1");
    cr_expect_not_null(strstr(json, want), "%s", json);
    cr_expect_eq(json_u64(json, "refcount-bits"), k->rbits, "%s", json);
    if (k->version == 3) {
        snprintf(want, sizeof(want), "\"extended-l2\": %s",
                 k->extl2 ? "true" : "false");
        cr_expect_not_null(strstr(json, want), "%s", json);
        snprintf(want, sizeof(want), "\"lazy-refcounts\": %s",
                 k->lazy ? "true" : "false");
        cr_expect_not_null(strstr(json, want), "%s", json);
        snprintf(want, sizeof(want), "\"compression-type\": \"%s\"",
                 k->zstd ? "zstd" : "zlib");
        cr_expect_not_null(strstr(json, want), "%s", json);
    }
    free(json);
}

static void create_and_verify(const struct combo *k)
{
    struct sd_img_create_opts o = {
        .format = SD_FMT_QCOW2, .size = k->size, .cluster_size = k->cs,
        .version = k->version, .refcount_bits = k->rbits,
        .extended_l2 = k->extl2, .lazy_refcounts = k->lazy,
        .preallocate_metadata = k->prealloc,
        .compression_type = k->zstd ? "zstd" : NULL,
    };
    char *path = path_in_tmp("combo.qcow2");
    struct sd_error err;

    cr_assert_eq(qcow2_create(path, &o, &err), 0,
                 "cs=%u v=%d rbits=%u: %s", k->cs, k->version, k->rbits,
                 err.msg);
    cr_log_info("cs=%u v%d rbits=%u extl2=%d prealloc=%d size=%llu", k->cs,
                k->version, k->rbits, k->extl2, k->prealloc,
                (unsigned long long)k->size);
    assert_clean_like_qemu(path);
    assert_info_matches(path, k);
    free(path);
}

Test(create, option_matrix)
{
    static const uint32_t sizes[] = { 512, 16384, 65536, 2u << 20 };
    static const unsigned rbits_v3[] = { 1, 16, 64 };
    static const uint64_t vsizes[] = { 1000, 300ull << 20 };
    unsigned n = 0;

    for (unsigned s = 0; s < 4; s++)
    for (int v = 2; v <= 3; v++)
    for (unsigned r = 0; r < (v == 3 ? 3u : 1u); r++)
    for (int x = 0; x <= (v == 3 && sizes[s] >= 16384); x++)
    for (int p = 0; p <= 1; p++)
    for (unsigned z = 0; z < 2; z++) {
        struct combo k = {
            .cs = sizes[s], .version = v,
            .rbits = v == 3 ? rbits_v3[r] : 16,
            .extl2 = x, .prealloc = p, .size = vsizes[z],
            .lazy = v == 3 && r == 1, .zstd = v == 3 && r == 2,
        };
        create_and_verify(&k);
        n++;
    }
    cr_assert_eq(n, 100);
}

Test(create, empty_and_large)
{
    struct combo empty = { .cs = 65536, .version = 3, .rbits = 16 };
    /* 8192 L2 tables and a 128-cluster L1: over a hundred refcount
     * blocks, and a refcount table of several clusters. */
    struct combo big = { .cs = 512, .version = 3, .rbits = 64,
                         .prealloc = true, .size = 256ull << 20 };
    struct combo huge = { .cs = 2u << 20, .version = 3, .rbits = 16,
                          .size = 1ull << 50 };

    create_and_verify(&empty);
    create_and_verify(&big);
    char *p = path_in_tmp("combo.qcow2");
    cr_expect_gt(file_read_be(p, 56, 4), 1, "refcount table clusters");
    free(p);
    create_and_verify(&huge);
}

/* qemu allocates in our images from our refcounts: still clean after. */
Test(create, qemu_writes_into_our_images)
{
    static const struct sd_img_create_opts cases[] = {
        { .size = 64 << 20 },
        { .size = 64 << 20, .cluster_size = 512, .refcount_bits = 1 },
        { .size = 64 << 20, .extended_l2 = true,
          .preallocate_metadata = true, .compression_type = "zstd" },
        { .size = 64 << 20, .version = 2, .preallocate_metadata = true },
        { .size = 64 << 20, .cluster_size = 2u << 20, .refcount_bits = 64,
          .lazy_refcounts = true },
    };
    char *p = path_in_tmp("w.qcow2");
    struct sd_error err;

    for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        cr_assert_eq(qcow2_create(p, &cases[i], &err), 0, "%s", err.msg);
        cr_assert_eq(sh("qemu-io " WRITES " -c 'write -c -P 7 32M 2M' "
                        "'%s' >/dev/null", p), 0, "case %u", i);
        cr_assert_eq(sh("qemu-io -c 'read -P 0xab 0 1M' -c 'read -P 0 5M 1M' "
                        "'%s' >/dev/null", p), 0, "case %u", i);
        assert_clean_like_qemu(p);
    }
    free(p);
}

Test(create, truncates_existing_file)
{
    char *path = path_in_tmp("old.qcow2");
    struct sd_img_create_opts o = { .size = 1 << 20 };
    struct sd_error err;

    cr_assert_eq(sh("head -c 5000000 /dev/urandom > '%s'", path), 0);
    cr_assert_eq(qcow2_create(path, &o, &err), 0, "%s", err.msg);
    cr_assert_lt(file_size(path), 5000000);
    assert_clean_like_qemu(path);
    free(path);
}

Test(create, raw)
{
    char *path = path_in_tmp("disk.raw");
    struct sd_error err;
    char *json;

    cr_assert_eq(raw_create(path, 1000, &err), 0, "%s", err.msg);
    cr_assert_eq(file_size(path), 1024);
    cr_assert_eq(raw_create(path, 10 << 20, &err), 0, "%s", err.msg);
    json = sh_out("qemu-img info --output=json '%s'", path);
    cr_expect_not_null(strstr(json, "\"format\": \"raw\""), "%s", json);
    cr_expect_eq(json_u64(json, "virtual-size"), 10 << 20);
    cr_expect_lt(json_u64(json, "actual-size"), 1 << 20);  /* sparse */
    free(json);
    free(path);
}

static char *info_of(const char *path)
{
    return sh_out("qemu-img info --output=json '%s'", path);
}

Test(create, backing_size_and_format)
{
    char *raw = path_in_tmp("base.raw"), *mid = path_in_tmp("mid.qcow2");
    char *top = path_in_tmp("top.qcow2"), *json;
    struct sd_img_create_opts o = { .backing_file = "base.raw" };
    struct sd_error err;

    cr_assert_eq(raw_create(raw, 10 << 20, &err), 0, "%s", err.msg);
    /* Size 0: the backing file's; relative name resolved beside mid. */
    cr_assert_eq(qcow2_create(mid, &o, &err), 0, "%s", err.msg);
    json = info_of(mid);
    cr_expect_eq(json_u64(json, "virtual-size"), 10 << 20, "%s", json);
    cr_expect_not_null(strstr(json, "\"backing-filename\": \"base.raw\""));
    cr_expect_not_null(strstr(json, "\"backing-filename-format\": \"raw\""),
                       "%s", json);
    free(json);
    assert_clean_like_qemu(mid);

    o.backing_file = "mid.qcow2";
    o.extended_l2 = true;
    cr_assert_eq(qcow2_create(top, &o, &err), 0, "%s", err.msg);
    json = info_of(top);
    cr_expect_eq(json_u64(json, "virtual-size"), 10 << 20, "%s", json);
    cr_expect_not_null(strstr(json, "\"backing-filename-format\": \"qcow2\""),
                       "%s", json);
    free(json);
    assert_clean_like_qemu(top);
    cr_expect_eq(sh("qemu-img compare '%s' '%s' >/dev/null", top, raw), 0);

    /* An explicit size wins over the backing file's. */
    o.size = 3 << 20;
    o.backing_format = SD_FMT_QCOW2;
    cr_assert_eq(qcow2_create(top, &o, &err), 0, "%s", err.msg);
    json = info_of(top);
    cr_expect_eq(json_u64(json, "virtual-size"), 3 << 20, "%s", json);
    free(json);
    free(raw);
    free(mid);
    free(top);
}

Test(create, missing_backing)
{
    char *top = path_in_tmp("top.qcow2");
    struct sd_img_create_opts o = { .backing_file = "nowhere.qcow2" };
    struct sd_error err;
    char *json;

    cr_assert_eq(qcow2_create(top, &o, &err), -ENOENT);
    cr_expect_not_null(strstr(err.msg, "nowhere.qcow2"), "%s", err.msg);
    cr_expect_eq(access(top, F_OK), -1, "nothing created on failure");

    o.size = 1 << 20;
    o.backing_format = SD_FMT_QCOW2;
    cr_assert_eq(qcow2_create(top, &o, &err), 0, "%s", err.msg);
    json = sh_out("qemu-img info -U --backing-chain=off --output=json '%s' "
                  "2>/dev/null; qemu-img check -U '%s' 2>&1", top, top);
    cr_expect_not_null(strstr(json, "nowhere.qcow2"), "%s", json);
    free(json);
    free(top);
}

Test(create, backing_format_mismatch)
{
    char *raw = path_in_tmp("base.raw"), *top = path_in_tmp("top.qcow2");
    struct sd_img_create_opts o = { .backing_file = "base.raw",
                                    .backing_format = SD_FMT_QCOW2 };
    struct sd_error err;

    cr_assert_eq(raw_create(raw, 1 << 20, &err), 0, "%s", err.msg);
    cr_assert_lt(qcow2_create(top, &o, &err), 0);
    cr_expect_not_null(strstr(err.msg, "not a qcow2 image"), "%s", err.msg);
    free(raw);
    free(top);
}

static void expect_refused(struct sd_img_create_opts o, const char *needle)
{
    char *path = path_in_tmp("bad.qcow2");
    struct sd_error err;

    if (!o.size)
        o.size = 1 << 20;
    cr_expect_lt(qcow2_create(path, &o, &err), 0, "accepted: %s", needle);
    cr_expect_not_null(strstr(err.msg, needle), "'%s' not in '%s'", needle,
                       err.msg);
    free(path);
}

Test(create, bad_options)
{
    char long_name[1100];

    memset(long_name, 'a', sizeof(long_name) - 1);
    long_name[sizeof(long_name) - 1] = '\0';
    expect_refused((struct sd_img_create_opts){ .cluster_size = 1000 },
                   "invalid cluster size");
    expect_refused((struct sd_img_create_opts){ .cluster_size = 256 },
                   "invalid cluster size");
    expect_refused((struct sd_img_create_opts){ .cluster_size = 4u << 20 },
                   "invalid cluster size");
    expect_refused((struct sd_img_create_opts){ .version = 4 },
                   "invalid qcow2 version");
    expect_refused((struct sd_img_create_opts){ .refcount_bits = 3 },
                   "invalid refcount_bits");
    expect_refused((struct sd_img_create_opts){ .refcount_bits = 128 },
                   "invalid refcount_bits");
    expect_refused((struct sd_img_create_opts){ .version = 2,
                                                .refcount_bits = 1 },
                   "need qcow2 version 3");
    expect_refused((struct sd_img_create_opts){ .version = 2,
                                                .extended_l2 = true },
                   "need qcow2 version 3");
    expect_refused((struct sd_img_create_opts){ .extended_l2 = true,
                                                .cluster_size = 4096 },
                   "at least 16384");
    expect_refused((struct sd_img_create_opts){ .version = 2,
                                                .lazy_refcounts = true },
                   "lazy refcounts need");
    expect_refused((struct sd_img_create_opts){ .version = 2,
                                                .compression_type = "zstd" },
                   "zstd needs");
    expect_refused((struct sd_img_create_opts){ .compression_type = "lz4" },
                   "unknown compression type");
    expect_refused((struct sd_img_create_opts){ .backing_file = long_name },
                   "backing file name");
    expect_refused((struct sd_img_create_opts){ .size = 1ull << 60 },
                   "too large");
    expect_refused((struct sd_img_create_opts){ .size = 1ull << 50,
                                                .cluster_size = 512 },
                   "too large");
}

/* ---- checking images qemu made ------------------------------------------ */

/* qemu-img create with options, then qemu-io commands (may be NULL). */
static char *qemu_image(const char *name, const char *opts, const char *size,
                        const char *io)
{
    char *path = path_in_tmp(name);

    cr_assert_eq(sh("qemu-img create -q -f qcow2 %s%s '%s' %s", opts ? "-o " : "",
                    opts ? opts : "", path, size), 0);
    if (io)
        cr_assert_eq(sh("qemu-io %s '%s' >/dev/null", io, path), 0);
    return path;
}

Test(check, qemu_written_default)
{
    char *p = qemu_image("a.qcow2", NULL, "64M", WRITES);

    assert_clean_like_qemu(p);
    free(p);
}

Test(check, qemu_compressed_both_types)
{
    static const char *const types[] = { "zlib", "zstd" };

    for (int t = 0; t < 2; t++) {
        char opts[64];
        snprintf(opts, sizeof(opts), "compression_type=%s", types[t]);
        char *p = qemu_image("c.qcow2", opts, "64M",
                             "-c 'write -c -P 0x5a 0 64k' "
                             "-c 'write -c -P 0x11 128k 64k' "
                             "-c 'write -c -P 0x22 192k 64k' "
                             "-c 'write -P 0x33 1M 256k'");
        assert_clean_like_qemu(p);
        struct our_check c = run_check(p, false);
        cr_expect_eq(c.res.compressed_clusters, 3, "%s", types[t]);
        qcow2_check_result_free(&c.res);
        free(p);
    }
}

Test(check, qemu_snapshots)
{
    char *p = qemu_image("s.qcow2", NULL, "64M", WRITES);

    cr_assert_eq(sh("qemu-img snapshot -c snap1 '%s'", p), 0);
    cr_assert_eq(sh("qemu-io -c 'write -P 0xcd 0 1M' -c 'write -c 10M 64k' "
                    "'%s' >/dev/null", p), 0);
    cr_assert_eq(sh("qemu-img snapshot -c snap2 '%s'", p), 0);
    cr_assert_eq(sh("qemu-io -c 'write -P 0xef 512k 1M' '%s' >/dev/null", p),
                 0);
    assert_clean_like_qemu(p);
    /* Deleting a snapshot frees what only it used. */
    cr_assert_eq(sh("qemu-img snapshot -d snap1 '%s'", p), 0);
    assert_clean_like_qemu(p);
    free(p);
}

Test(check, qemu_bitmaps)
{
    char *p = qemu_image("b.qcow2", NULL, "64M", NULL);

    cr_assert_eq(sh("qemu-img bitmap --add '%s' b0", p), 0);
    cr_assert_eq(sh("qemu-img bitmap --add -g 65536 '%s' b1", p), 0);
    cr_assert_eq(sh("qemu-io " WRITES " '%s' >/dev/null", p), 0);
    cr_assert_eq(sh("qemu-img info '%s' | grep -q 'name: b1'", p), 0);
    assert_clean_like_qemu(p);
    free(p);
}

Test(check, qemu_extended_l2)
{
    char *p = qemu_image("x.qcow2", "extended_l2=on,cluster_size=128k", "64M",
                         "-c 'write -P 1 0 4k' -c 'write -P 2 68k 8k' "
                         "-c 'write -z 1M 12k' -c 'write -c 2M 128k' "
                         WRITES);

    assert_clean_like_qemu(p);
    free(p);
}

Test(check, qemu_refcount_widths_and_cluster_sizes)
{
    static const char *const opts[] = {
        "refcount_bits=1", "refcount_bits=2", "refcount_bits=64",
        "cluster_size=512", "cluster_size=2M", "compat=0.10",
        "cluster_size=512,refcount_bits=64",
        "lazy_refcounts=on", "preallocation=metadata",
    };

    for (unsigned i = 0; i < sizeof(opts) / sizeof(opts[0]); i++) {
        char *p = qemu_image("w.qcow2", opts[i], "64M", WRITES);
        cr_log_info("%s", opts[i]);
        assert_clean_like_qemu(p);
        free(p);
    }
}

Test(check, qemu_failed_snapshot_leak)
{
    /* One-bit refcounts cannot count a snapshot's second reference: qemu
     * fails to take it and leaks the cluster it had allocated. */
    char *p = qemu_image("r1.qcow2", "refcount_bits=1", "16M",
                         "-c 'write 0 1M'");
    struct our_check c;

    cr_expect_neq(sh("qemu-img snapshot -c s '%s' 2>/dev/null", p), 0);
    cr_expect_eq(qemu_check_status(p), 3);
    c = run_check(p, false);
    cr_expect_eq(c.res.leaks, 1);
    cr_expect_eq(c.res.corruptions, 0);
    qcow2_check_result_free(&c.res);
    free(p);
}

/* ---- damaged images ---------------------------------------------------------- */

static void assert_both_see(const char *path, bool corruption, bool leak,
                            const char *needle)
{
    struct our_check c = run_check(path, false);
    int qst = qemu_check_status(path);

    dump_messages(&c.res);
    cr_assert_eq(c.ret, 0, "%s", c.err.msg);
    cr_expect_eq(qst, corruption ? 2 : leak ? 3 : 0, "qemu-img check: %d", qst);
    cr_expect_eq(c.res.corruptions != 0, corruption, "corruptions=%llu",
                 (unsigned long long)c.res.corruptions);
    cr_expect_eq(c.res.leaks != 0, leak, "leaks=%llu",
                 (unsigned long long)c.res.leaks);
    if (needle)
        cr_expect(has_message(&c.res, needle), "no message with '%s'",
                  needle);
    qcow2_check_result_free(&c.res);
}

Test(damage, refcount_zero_for_used_cluster)
{
    char *p = qemu_image("d.qcow2", NULL, "64M", WRITES);
    struct hdr h = read_hdr(p);

    set_stored_refcount(p, first_l2(p) >> h.cluster_bits, 0);
    assert_both_see(p, true, false, "refcount=0 reference=1");
    free(p);
}

static void leak_and_repair(const char *opts)
{
    char *p = qemu_image("l.qcow2", opts, "64M", WRITES);
    struct hdr h = read_hdr(p);
    uint64_t end = (file_size(p) + h.cs - 1) / h.cs;
    struct our_check c;

    /* Two clusters past the data, inside the file, marked used. */
    cr_assert_eq(truncate(p, (end + 2) * h.cs), 0);
    set_stored_refcount(p, end, 1);
    set_stored_refcount(p, end + 1, 1);
    assert_both_see(p, false, true, "Leaked cluster");

    c = run_check(p, true);
    cr_assert_eq(c.ret, 0, "%s", c.err.msg);
    cr_expect(c.res.repaired);
    cr_expect_eq(c.res.leaks_fixed, 2);
    cr_expect_eq(c.res.leaks, 0);
    cr_expect_eq(c.res.corruptions, 0);
    cr_expect_eq(c.res.recheck_first_message, 2);
    cr_expect(has_message(&c.res, "Repairing cluster"));
    cr_expect_not(has_message(&c.res, "Leaked cluster"));
    qcow2_check_result_free(&c.res);
    cr_expect_eq(qemu_check_status(p), 0, "qemu-img check after repair");
    free(p);
}

Test(damage, leak_repair_16)
{
    leak_and_repair(NULL);
}

Test(damage, leak_repair_1_and_64)
{
    leak_and_repair("refcount_bits=1");
    leak_and_repair("refcount_bits=64,cluster_size=512");
}

Test(damage, leak_is_not_repaired_next_to_a_corruption)
{
    char *p = qemu_image("lc.qcow2", NULL, "64M", WRITES);
    struct hdr h = read_hdr(p);
    uint64_t end = (file_size(p) + h.cs - 1) / h.cs;
    struct our_check c;

    cr_assert_eq(truncate(p, (end + 1) * h.cs), 0);
    set_stored_refcount(p, end, 1);
    set_stored_refcount(p, first_l2(p) >> h.cluster_bits, 0);
    c = run_check(p, true);
    cr_assert_eq(c.ret, 0, "%s", c.err.msg);
    cr_expect_not(c.res.repaired);
    cr_expect_eq(c.res.leaks_fixed, 0);
    cr_expect(has_message(&c.res, "repair of corruptions is not supported"));
    qcow2_check_result_free(&c.res);
    free(p);
}

Test(damage, l2_entry_past_eof)
{
    char *p = qemu_image("e.qcow2", NULL, "64M", WRITES);
    uint64_t far = (file_size(p) + (100ull << 16)) & ~0xffffull;

    file_write_be(p, first_l2(p), 8, far | QCOW2_OFLAG_COPIED);
    assert_both_see(p, true, true, "past the end of the file");
    free(p);
}

Test(damage, reftable_overlaps_l1)
{
    char *p = qemu_image("o.qcow2", NULL, "64M", WRITES);
    struct hdr h = read_hdr(p);

    cr_assert_eq(h.l1_offset, h.reftable_offset + 2 * h.cs);
    /* Grow the refcount table over the refcount block and the L1. */
    file_write_be(p, 56, 4, 3);
    assert_both_see(p, true, false, "the refcount table");
    free(p);
}

Test(damage, l2_reserved_bits_and_misalignment)
{
    char *p = qemu_image("rb.qcow2", NULL, "64M", WRITES);
    uint64_t l2 = first_l2(p), e0 = file_read_be(p, l2, 8);

    file_write_be(p, l2, 8, e0 | (1ull << 57));
    file_write_be(p, l2 + 8, 8, file_read_be(p, l2 + 8, 8) + 4096);
    assert_both_see(p, true, true, "reserved bits set");
    free(p);
}

Test(damage, oflag_copied_missing)
{
    char *p = qemu_image("cp.qcow2", NULL, "64M", WRITES);
    struct hdr h = read_hdr(p);

    file_write_be(p, h.l1_offset, 8,
                  file_read_be(p, h.l1_offset, 8) & ~QCOW2_OFLAG_COPIED);
    assert_both_see(p, true, false, "OFLAG_COPIED L2 cluster");
    free(p);
}

Test(damage, extended_l2_bitmaps)
{
    char *p = qemu_image("xb.qcow2", "extended_l2=on", "64M",
                         "-c 'write -P 1 0 4k' -c 'write -c 128k 64k'");
    uint64_t l2 = first_l2(p);

    /* Subcluster 1 both allocated and zero. */
    file_write_be(p, l2 + 8, 8, file_read_be(p, l2 + 8, 8) | 2 | (2ull << 32));
    assert_both_see(p, true, false, "subcluster allocation bitmap");
    /* Undo, then give the compressed cluster (entry 2) a bitmap. */
    file_write_be(p, l2 + 8, 8, file_read_be(p, l2 + 8, 8) & ~(2 | (2ull << 32)));
    cr_assert_eq(qemu_check_status(p), 0);
    file_write_be(p, l2 + 2 * 16 + 8, 8, 1);
    assert_both_see(p, true, false, "compressed cluster with non-zero");
    free(p);
}

/* ---- hostile images ---------------------------------------------------------- */

Test(damage, too_many_clusters_is_refused)
{
    char *p = qemu_image("h.qcow2", "cluster_size=512", "1M", NULL);
    struct our_check c;

    cr_assert_eq(truncate(p, (1ull << 27) * 512 + 512), 0);   /* sparse */
    c = run_check(p, false);
    cr_expect_eq(c.ret, -EFBIG);
    cr_expect_not_null(strstr(c.err.msg, "clusters"), "%s", c.err.msg);
    qcow2_check_result_free(&c.res);
    free(p);
}

Test(damage, hostile_snapshot_table)
{
    char *p = qemu_image("hs.qcow2", NULL, "64M", WRITES);
    struct our_check c;

    /* 60000 snapshots at a table past the end of the file. */
    file_write_be(p, 60, 4, 60000);
    file_write_be(p, 64, 8, 1ull << 40);
    c = run_check(p, false);
    cr_assert_eq(c.ret, 0, "%s", c.err.msg);
    cr_expect_gt(c.res.corruptions, 0);
    qcow2_check_result_free(&c.res);
    free(p);
}

Test(damage, every_l1_entry_points_at_one_l2)
{
    char *p = qemu_image("hl.qcow2", NULL, "1T", "-c 'write 0 64k'");
    struct hdr h = read_hdr(p);
    uint64_t e0 = file_read_be(p, h.l1_offset, 8);
    struct our_check c;

    for (unsigned i = 1; i < 2048; i++)
        file_write_be(p, h.l1_offset + i * 8, 8, e0);
    c = run_check(p, false);
    cr_assert_eq(c.ret, 0, "%s", c.err.msg);
    /* The L2 table and its data cluster: 2048 references, refcount 1. */
    cr_expect_eq(c.res.corruptions, 2);
    cr_expect(has_message(&c.res, "refcount=1 reference=2048"));
    cr_expect_eq(c.res.check_errors, 0);
    qcow2_check_result_free(&c.res);
    cr_expect_eq(qemu_check_status(p), 2);
    free(p);
}

Test(damage, not_qcow2)
{
    char *p = path_in_tmp("plain.raw");
    struct our_check c;

    cr_assert_eq(sh("head -c 1M /dev/zero > '%s'", p), 0);
    c = run_check(p, false);
    cr_expect_eq(c.ret, -EINVAL);
    cr_expect_not_null(strstr(c.err.msg, "not a qcow2 image"), "%s",
                       c.err.msg);
    qcow2_check_result_free(&c.res);
    free(p);
}
