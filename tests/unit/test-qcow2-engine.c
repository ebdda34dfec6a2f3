/* SPDX-License-Identifier: MIT */
/*
 * The QCOW2 engine's semantics, one behaviour per test: what zero writes
 * and discards leave behind on v2, v3 and extended-L2 images, fast-zero
 * refusal, copy-on-write from the backing chain, concurrent writes into
 * one cluster, corruption marking, the file-growth and reservation rules,
 * block status depths, and frees that wait for the flush after their L2
 * write. Images are made with qemu-img; qemu-img check
 * and qemu-io are the oracles where the file itself is the answer.
 */
#include "config.h"

#include "qcow2/image.h"
#include "common/ring.h"

#include <criterion/criterion.h>
#include <endian.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[256];
static struct sd_ring ring;

static void setup(void)
{
    snprintf(dir, sizeof(dir), "%s/sd-engine.XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    cr_assert_not_null(mkdtemp(dir));
    cr_assert_eq(sd_ring_init(&ring, 64), 0);
}

static void teardown(void)
{
    char cmd[512];

    sd_ring_exit(&ring);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(engine, .init = setup, .fini = teardown);

static void sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void sh(const char *fmt, ...)
{
    char cmd[2048];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    cr_assert_eq(system(cmd), 0, "command failed: %s", cmd);
}

static int sh_status(const char *cmd)
{
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static const char *path(const char *name)
{
    static char buf[4][400];
    static int next;
    char *p = buf[next++ % 4];

    snprintf(p, 400, "%s/%s", dir, name);
    return p;
}

static struct sd_img *open_rw(const char *name)
{
    struct sd_img_open_opts o = { .writable = true, .ring = &ring };
    struct sd_error err;
    struct sd_img *img;

    cr_assert_eq(sd_img_open(&img, path(name), &o, &err), 0, "%s", err.msg);
    return img;
}

static void assert_clean(const char *name)
{
    char cmd[600];

    snprintf(cmd, sizeof(cmd), "qemu-img check -q '%s'", path(name));
    cr_assert_eq(sh_status(cmd), 0, "qemu-img check found problems in %s",
                 name);
}

static void assert_bytes(struct sd_img *img, uint64_t off, uint64_t len,
                         int value)
{
    uint8_t *buf = malloc(len);

    cr_assert_eq(sd_img_pread(img, buf, len, off), 0);
    for (uint64_t i = 0; i < len; i++)
        cr_assert_eq(buf[i], value, "byte %llu is 0x%02x, want 0x%02x",
                     (unsigned long long)(off + i), buf[i], value);
    free(buf);
}

static void write_pattern(struct sd_img *img, uint64_t off, uint64_t len,
                          int value)
{
    uint8_t *buf = malloc(len);

    memset(buf, value, len);
    cr_assert_eq(sd_img_pwrite(img, buf, len, off, 0), 0);
    free(buf);
}

/* A base filled with 0x11 and an overlay over it. */
static void make_chain(const char *overlay_opts)
{
    sh("qemu-img create -q -f qcow2 '%s' 8M", path("base.qcow2"));
    sh("qemu-io -c 'write -P 0x11 0 8M' '%s' >/dev/null", path("base.qcow2"));
    sh("qemu-img create -q -f qcow2 -o %s -b base.qcow2 -F qcow2 '%s'",
       overlay_opts, path("top.qcow2"));
}

Test(engine, v2_overlay_zero_must_be_fast_is_refused)
{
    make_chain("compat=0.10");
    struct sd_img *img = open_rw("top.qcow2");
    struct sd_img_caps caps;

    sd_img_get_caps(img, &caps);
    cr_assert_not(caps.can_fast_zero, "v2 has no zero flag");
    cr_assert_eq(sd_img_zero(img, 0, 65536, SD_REQ_NO_FALLBACK), -ENOTSUP);
    /* Nothing changed: the backing still shows through. */
    assert_bytes(img, 0, 65536, 0x11);
    /* Without the flag, real zeros are written. */
    cr_assert_eq(sd_img_zero(img, 0, 65536, 0), 0);
    assert_bytes(img, 0, 65536, 0);
    assert_bytes(img, 65536, 4096, 0x11);
    cr_assert_eq(sd_img_close(img), 0);
    assert_clean("top.qcow2");
}

Test(engine, v3_zero_makes_zero_clusters_over_backing)
{
    make_chain("compat=1.1");
    struct sd_img *img = open_rw("top.qcow2");
    struct sd_extent ext;

    cr_assert_eq(sd_img_zero(img, 0, 1 << 20, SD_REQ_NO_FALLBACK), 0);
    cr_assert_eq(sd_img_block_status(img, 0, 1 << 20, &ext), 0);
    cr_assert_eq(ext.flags, SD_EXT_ALLOCATED | SD_EXT_ZERO);
    cr_assert_eq(ext.depth, 0);
    cr_assert_eq(ext.length, 1 << 20);
    assert_bytes(img, 0, 1 << 20, 0);
    cr_assert_eq(sd_img_close(img), 0);
    assert_clean("top.qcow2");
    /* qemu agrees: zero, and decided by the top layer. */
    sh("qemu-img map --output=json '%s' | grep -q "
       "'\"start\": 0, \"length\": 1048576, \"depth\": 0, \"present\": true, "
       "\"zero\": true, \"data\": false'", path("top.qcow2"));
}

Test(engine, partial_zero_writes_zeros_only_where_asked)
{
    make_chain("compat=1.1");
    struct sd_img *img = open_rw("top.qcow2");

    cr_assert_eq(sd_img_zero(img, 1000, 3000, 0), 0);
    assert_bytes(img, 0, 1000, 0x11);
    assert_bytes(img, 1000, 3000, 0);
    assert_bytes(img, 4000, 65536 - 4000, 0x11);
    cr_assert_eq(sd_img_close(img), 0);
    assert_clean("top.qcow2");
}

Test(engine, discard_over_backing_reads_zeros_on_v3)
{
    make_chain("compat=1.1");
    struct sd_img *img = open_rw("top.qcow2");

    write_pattern(img, 0, 1 << 20, 0x22);
    cr_assert_eq(sd_img_discard(img, 0, 1 << 20), 0);
    /* Older backing data must not come back. */
    assert_bytes(img, 0, 1 << 20, 0);
    cr_assert_eq(sd_img_close(img), 0);
    assert_clean("top.qcow2");
}

Test(engine, discard_frees_clusters_after_a_flush)
{
    struct stat before, after;

    sh("qemu-img create -q -f qcow2 '%s' 64M", path("a.qcow2"));
    struct sd_img *img = open_rw("a.qcow2");
    write_pattern(img, 0, 16 << 20, 0x33);
    cr_assert_eq(sd_img_flush(img), 0);
    cr_assert_eq(stat(path("a.qcow2"), &before), 0);
    cr_assert_eq(sd_img_discard(img, 0, 16 << 20), 0);
    cr_assert_eq(sd_img_flush(img), 0);
    cr_assert_eq(stat(path("a.qcow2"), &after), 0);
    /* The freed clusters are punched out of the file. */
    cr_assert_lt(after.st_blocks * 512, before.st_blocks * 512 - (8 << 20),
                 "host blocks %lld -> %lld", (long long)before.st_blocks,
                 (long long)after.st_blocks);
    assert_bytes(img, 0, 16 << 20, 0);
    cr_assert_eq(sd_img_close(img), 0);
    assert_clean("a.qcow2");
}

Test(engine, subcluster_write_does_not_copy_the_backing_cluster)
{
    struct stat st;

    make_chain("extended_l2=on");
    struct sd_img *img = open_rw("top.qcow2");
    /* 64 scattered 4 KiB writes: with 64 KiB clusters and 2 KiB
     * subclusters no backing data needs copying. */
    for (int i = 0; i < 64; i++)
        write_pattern(img, (uint64_t)i * 128 * 1024, 4096, 0x44);
    cr_assert_eq(sd_img_close(img), 0);
    cr_assert_eq(stat(path("top.qcow2"), &st), 0);
    /* Data: 256 KiB; metadata: a few clusters. Plain L2 would need 4 MiB. */
    cr_assert_lt(st.st_blocks * 512, 1024 * 1024, "%lld host bytes",
                 (long long)st.st_blocks * 512);
    assert_clean("top.qcow2");
    sh("qemu-io -c 'read -P 0x44 131072 4096' -c 'read -P 0x11 135168 4096' "
       "'%s' | grep -qv Pattern", path("top.qcow2"));
}

Test(engine, unaligned_write_copies_the_rest_from_backing)
{
    make_chain("compat=1.1");
    struct sd_img *img = open_rw("top.qcow2");

    write_pattern(img, 100000, 10, 0x55);
    assert_bytes(img, 65536, 100000 - 65536, 0x11);
    assert_bytes(img, 100000, 10, 0x55);
    assert_bytes(img, 100010, 131072 - 100010, 0x11);
    cr_assert_eq(sd_img_close(img), 0);
    assert_clean("top.qcow2");
    sh("qemu-io -c 'read -P 0x11 65536 34464' -c 'read -P 0x55 100000 10' "
       "-c 'read -P 0x11 100010 31062' '%s' | grep -c Pattern | grep -qx 0",
       path("top.qcow2"));
}

/* A new cluster comes from a sparse part of the file: the zeros around an
 * unaligned write into it are not written (no host blocks, half the I/O),
 * and still read as zeros, through us and through qemu. */
Test(engine, zero_fill_of_a_new_cluster_is_not_written)
{
    struct stat st;

    sh("qemu-img create -q -f qcow2 '%s' 64M", path("z.qcow2"));
    struct sd_img *img = open_rw("z.qcow2");
    for (uint64_t c = 0; c < 256; c += 2)
        write_pattern(img, c * 65536 + 4096, 8192, 0x3c);
    assert_bytes(img, 2 * 65536, 4096, 0);
    assert_bytes(img, 2 * 65536 + 4096, 8192, 0x3c);
    assert_bytes(img, 2 * 65536 + 12288, 65536 - 12288, 0);
    cr_assert_eq(sd_img_close(img), 0);
    assert_clean("z.qcow2");
    cr_assert_eq(stat(path("z.qcow2"), &st), 0);
    /* 128 clusters written 8 KiB each: 1 MiB of data, 8 MiB with fills. */
    cr_assert_lt((uint64_t)st.st_blocks * 512, 2 << 20, "%lld bytes allocated",
                 (long long)st.st_blocks * 512);
    sh("qemu-io -c 'read -P 0 131072 4096' -c 'read -P 0x3c 135168 8192' "
       "-c 'read -P 0 143360 53248' '%s' | grep -c Pattern | grep -qx 0",
       path("z.qcow2"));
}

struct pending {
    int done, failed;
};

static void count_done(void *opaque, int ret)
{
    struct pending *p = opaque;

    p->done++;
    if (ret < 0)
        p->failed++;
}

Test(engine, concurrent_writes_into_one_new_cluster)
{
    enum { N = 16, PIECE = 4096 };
    struct sd_img_req reqs[N];
    uint8_t *bufs[N];
    struct pending p = { 0, 0 };

    make_chain("compat=1.1");
    struct sd_img *img = open_rw("top.qcow2");
    /* Sixteen 4 KiB writes into the same unallocated 64 KiB cluster, all
     * in flight at once: one allocation, no write lost. */
    for (int i = 0; i < N; i++) {
        bufs[i] = malloc(PIECE);
        memset(bufs[i], 0x60 + i, PIECE);
        reqs[i] = (struct sd_img_req){ .type = SD_REQ_WRITE,
                                       .offset = (uint64_t)i * PIECE,
                                       .length = PIECE, .buf = bufs[i],
                                       .cb = count_done, .opaque = &p };
        cr_assert_eq(sd_img_submit(img, &reqs[i]), 0);
    }
    while (p.done < N)
        cr_assert_geq(sd_ring_run_once(&ring, true), 0);
    cr_assert_eq(p.failed, 0);
    for (int i = 0; i < N; i++) {
        assert_bytes(img, (uint64_t)i * PIECE, PIECE, 0x60 + i);
        free(bufs[i]);
    }
    cr_assert_eq(sd_img_close(img), 0);
    assert_clean("top.qcow2");
    /* Exactly one data cluster in the top image. */
    sh("test \"$(qemu-img map --output=json '%s' | grep -c '\"depth\": 0')\" = 1",
       path("top.qcow2"));
}

Test(engine, block_status_reports_depths_through_the_chain)
{
    struct sd_extent ext;

    sh("qemu-img create -q -f raw '%s' 4M", path("r.raw"));
    sh("qemu-io -f raw -c 'write -P 1 0 1M' '%s' >/dev/null", path("r.raw"));
    sh("qemu-img create -q -f qcow2 -b r.raw -F raw '%s' 8M", path("m.qcow2"));
    sh("qemu-io -c 'write -P 2 1M 1M' '%s' >/dev/null", path("m.qcow2"));
    sh("qemu-img create -q -f qcow2 -b m.qcow2 -F qcow2 '%s'", path("t.qcow2"));
    sh("qemu-io -c 'write -P 3 2M 1M' '%s' >/dev/null", path("t.qcow2"));
    struct sd_img *img = open_rw("t.qcow2");

    cr_assert_eq(sd_img_block_status(img, 2 << 20, 1 << 20, &ext), 0);
    cr_assert_eq(ext.depth, 0);
    cr_assert_eq(sd_img_block_status(img, 1 << 20, 1 << 20, &ext), 0);
    cr_assert_eq(ext.depth, 1);
    cr_assert(ext.flags & SD_EXT_DATA);
    cr_assert_eq(sd_img_block_status(img, 0, 1 << 20, &ext), 0);
    cr_assert_eq(ext.depth, 2);
    /* Past the raw base's 4 MiB end nothing decides: zeros. */
    cr_assert_eq(sd_img_block_status(img, 6 << 20, 1 << 20, &ext), 0);
    cr_assert_eq(ext.depth, -1);
    cr_assert(ext.flags & SD_EXT_ZERO);
    assert_bytes(img, 6 << 20, 4096, 0);
    cr_assert_eq(sd_img_close(img), 0);
}

static void damage_l2(const char *name, const char *guest, const char *value)
{
    sh("python3 '%s/tools/qcow2-damage.py' l2 '%s' %s %s", TESTS_SRCDIR,
       path(name), guest, value);
}

Test(engine, misaligned_l2_entry_marks_image_corrupt)
{
    sh("qemu-img create -q -f qcow2 '%s' 8M", path("c.qcow2"));
    sh("qemu-io -c 'write -P 7 0 64k' '%s' >/dev/null", path("c.qcow2"));
    damage_l2("c.qcow2", "0", "0x30200");
    struct sd_img *img = open_rw("c.qcow2");
    uint8_t buf[512];

    cr_assert_eq(sd_img_pread(img, buf, sizeof(buf), 0), -EIO);
    cr_assert_not_null(sd_img_corrupt_reason(img));
    cr_assert(strstr(sd_img_strerror(img, -EIO), "aligned") != NULL, "%s",
              sd_img_strerror(img, -EIO));
    /* From now on every write is refused. */
    cr_assert_eq(sd_img_pwrite(img, buf, sizeof(buf), 1 << 20, 0), -EIO);
    sd_img_close(img);
    /* The corrupt bit is on disk: we and qemu open it read-only only. */
    struct sd_img_open_opts o = { .writable = true, .ring = &ring };
    struct sd_error err;
    cr_assert_eq(sd_img_open(&img, path("c.qcow2"), &o, &err), -EROFS);
    cr_assert(strstr(err.msg, "corrupt") != NULL, "%s", err.msg);
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "qemu-io -c 'write 1M 512' '%s' "
             ">/dev/null 2>&1", path("c.qcow2"));
    cr_assert_neq(sh_status(cmd), 0, "qemu-io wrote a corrupt image");
}

Test(engine, data_write_onto_metadata_is_prevented)
{
    sh("qemu-img create -q -f qcow2 '%s' 8M", path("m.qcow2"));
    sh("qemu-io -c 'write -P 7 0 64k' '%s' >/dev/null", path("m.qcow2"));
    /* Guest cluster 0 now claims the refcount table's cluster. */
    damage_l2("m.qcow2", "0", "0x8000000000010000");
    struct sd_img *img = open_rw("m.qcow2");
    uint8_t buf[512];

    memset(buf, 0xee, sizeof(buf));
    cr_assert_eq(sd_img_pwrite(img, buf, sizeof(buf), 0, 0), -EIO);
    cr_assert(strstr(sd_img_strerror(img, -EIO), "metadata") != NULL, "%s",
              sd_img_strerror(img, -EIO));
    sd_img_close(img);
    /* The refcount table was not overwritten. */
    sh("qemu-img check '%s' >/dev/null 2>&1; test $? -ne 1", path("m.qcow2"));
}

Test(engine, out_of_range_and_read_only_errors)
{
    sh("qemu-img create -q -f qcow2 '%s' 1M", path("e.qcow2"));
    struct sd_img_open_opts o = { .ring = &ring };
    struct sd_error err;
    struct sd_img *img;
    uint8_t buf[512];

    cr_assert_eq(sd_img_open(&img, path("e.qcow2"), &o, &err), 0);
    cr_assert_eq(sd_img_pread(img, buf, 512, 1 << 20), -EINVAL);
    cr_assert_eq(sd_img_pwrite(img, buf, 512, 0, 0), -EPERM);
    sd_img_close(img);
    img = open_rw("e.qcow2");
    cr_assert_eq(sd_img_pwrite(img, buf, 512, (1 << 20) - 256, 0), -ENOSPC);
    cr_assert_eq(sd_img_close(img), 0);
}

Test(engine, close_gives_back_unused_reservation)
{
    struct stat st;

    sh("qemu-img create -q -f qcow2 '%s' 1G", path("g.qcow2"));
    struct sd_img *img = open_rw("g.qcow2");
    write_pattern(img, 0, 65536, 0x77);
    cr_assert_eq(sd_img_close(img), 0);
    cr_assert_eq(stat(path("g.qcow2"), &st), 0);
    /* The 128 MiB batch the write came from is not left in the file. */
    cr_assert_lt(st.st_size, 1 << 20, "file size %lld", (long long)st.st_size);
    assert_clean("g.qcow2");
}

/* Every reservation costs a sync that allocating writes wait for, so the
 * first is an eighth of the virtual size (at least 32 MiB, at most 1 GiB)
 * and the file grows sparsely over it while the image is open. */
static off_t size_after_first_write(const char *name, const char *vsize)
{
    struct stat st;

    sh("qemu-img create -q -f qcow2 '%s' %s", path(name), vsize);
    struct sd_img *img = open_rw(name);
    write_pattern(img, 0, 65536, 0x5a);
    cr_assert_eq(stat(path(name), &st), 0);
    cr_assert_lt((uint64_t)st.st_blocks * 512, 4 << 20,
                 "%s: %lld bytes allocated", vsize,
                 (long long)st.st_blocks * 512);
    cr_assert_eq(sd_img_close(img), 0);
    assert_clean(name);
    return st.st_size;
}

Test(engine, first_reservation_scales_with_the_virtual_size)
{
    off_t small = size_after_first_write("r1.qcow2", "64M");
    off_t mid = size_after_first_write("r2.qcow2", "4G");
    off_t huge = size_after_first_write("r3.qcow2", "64G");

    cr_assert(small >= 32 << 20 && small < 34 << 20, "64M: %lld", (long long)small);
    cr_assert(mid >= 512 << 20 && mid < 514 << 20, "4G: %lld", (long long)mid);
    cr_assert(huge >= 1 << 30 && huge < (1 << 30) + (2 << 20), "64G: %lld", (long long)huge);
}

Test(engine, writable_open_marks_auto_bitmaps_in_use)
{
    sh("qemu-img create -q -f qcow2 '%s' 8M", path("b.qcow2"));
    sh("qemu-img bitmap --add '%s' b0", path("b.qcow2"));
    struct sd_img *img = open_rw("b.qcow2");
    write_pattern(img, 0, 4096, 0x12);
    cr_assert_eq(sd_img_close(img), 0);
    /* We do not track the bitmap, so it must say it is not up to date. */
    sh("qemu-img info --output=json '%s' | grep -q '\"in-use\"'",
       path("b.qcow2"));
    assert_clean("b.qcow2");
}

/* -- frees and flushes: the power-loss order ---------------------------
 *
 * A cluster an L2 change drops may be counted free (its refcount lowered
 * in the file) only after a flush that started once that L2 change was
 * written. Otherwise a power cut can keep the lower refcount and lose the
 * L2 change: an entry pointing at a cluster with refcount 0. These tests
 * read the library's write log (records in the order writes completed and
 * flushes were submitted) while a flush runs beside the change. */

struct wlog_rec {
    uint32_t type;
    uint64_t offset, len;
};

static const char *log_path(void)
{
    return path("write.log");
}

/* The records of the write log from byte `from` on. */
static size_t read_log(size_t from, struct wlog_rec *out, size_t cap)
{
    FILE *f = fopen(log_path(), "rb");
    size_t n = 0;
    uint8_t h[24];

    cr_assert_not_null(f);
    cr_assert_eq(fseek(f, (long)from, SEEK_SET), 0);
    while (n < cap && fread(h, sizeof(h), 1, f) == 1) {
        uint32_t type, magic;
        uint64_t off, len;
        memcpy(&magic, h, 4);
        memcpy(&type, h + 4, 4);
        memcpy(&off, h + 8, 8);
        memcpy(&len, h + 16, 8);
        cr_assert_eq(le32toh(magic), 0x4c574453u, "bad record magic");
        out[n++] = (struct wlog_rec){ le32toh(type), le64toh(off),
                                      le64toh(len) };
        if (le32toh(type) == 1)        /* WRITE: data follows */
            cr_assert_eq(fseek(f, (long)le64toh(len), SEEK_CUR), 0);
    }
    fclose(f);
    return n;
}

static size_t log_size(void)
{
    struct stat st;

    return stat(log_path(), &st) == 0 ? (size_t)st.st_size : 0;
}

static uint64_t be64_at(const char *name, uint64_t off)
{
    FILE *f = fopen(path(name), "rb");
    uint64_t v = 0;

    cr_assert_not_null(f);
    cr_assert_eq(fseek(f, (long)off, SEEK_SET), 0);
    cr_assert_eq(fread(&v, 8, 1, f), 1);
    fclose(f);
    return be64toh(v);
}

static bool within(const struct wlog_rec *r, uint64_t start, uint64_t bytes)
{
    return r->type == 1 && r->offset >= start && r->offset < start + bytes;
}

/* After byte `from` of the log: the first write into the L2 table (the
 * drop) is followed by a flush before the first write into the refcount
 * block (the free), and that free happens at all. */
static void assert_free_after_flush(const char *name, size_t from)
{
    enum { CLUSTER = 65536, MAX_RECS = 256 };
    uint64_t l1 = be64_at(name, 40), reftable = be64_at(name, 48);
    uint64_t l2 = be64_at(name, l1) & 0x00fffffffffffe00ull;
    uint64_t rb = be64_at(name, reftable);
    struct wlog_rec recs[MAX_RECS];
    size_t n = read_log(from, recs, MAX_RECS), i = 0;

    while (i < n && !within(&recs[i], l2, CLUSTER))
        i++;
    cr_assert_lt(i, n, "no write of the L2 table at 0x%llx in the log",
                 (unsigned long long)l2);
    size_t drop = i;
    bool flushed = false;
    while (i < n && !within(&recs[i], rb, CLUSTER)) {
        flushed |= recs[i].type == 2;
        i++;
    }
    cr_assert_lt(i, n, "the dropped cluster was never freed");
    cr_assert(flushed, "record %zu lowers a refcount with no flush since the "
              "L2 write (record %zu) that dropped the cluster", i, drop);
}

static void open_logged(const char *name, struct sd_img **img)
{
    cr_assert_eq(setenv("SENDENSE_WRITE_LOG", log_path(), 1), 0);
    *img = open_rw(name);
    cr_assert_eq(unsetenv("SENDENSE_WRITE_LOG"), 0);
}

/* With the request that drops a cluster in flight (p counts it), start a
 * flush beside it, let both end, flush again and close; then the log
 * must show the free after a flush that followed the L2 write. */
static void flush_beside(struct sd_img *img, struct pending *p,
                         const char *name, size_t mark)
{
    struct sd_img_req flush = { .type = SD_REQ_FLUSH, .cb = count_done,
                                .opaque = p };

    cr_assert_eq(sd_img_submit(img, &flush), 0);
    while (p->done < 2)
        cr_assert_geq(sd_ring_run_once(&ring, true), 0);
    cr_assert_eq(p->failed, 0);
    cr_assert_eq(sd_img_flush(img), 0);
    cr_assert_eq(sd_img_close(img), 0);
    assert_free_after_flush(name, mark);
    assert_clean(name);           /* freed, not leaked */
}

Test(engine, discard_frees_only_after_its_l2_write_is_flushed)
{
    struct pending p = { 0, 0 };
    struct sd_img *img;

    sh("qemu-img create -q -f qcow2 -o compat=0.10 '%s' 4M", path("d.qcow2"));
    open_logged("d.qcow2", &img);
    write_pattern(img, 0, 65536, 0x42);
    cr_assert_eq(sd_img_flush(img), 0);
    size_t mark = log_size();
    /* v2 frees a discarded cluster. The discard's L2 write is in flight
     * when the flush starts: this flush must not free the cluster. */
    struct sd_img_req discard = { .type = SD_REQ_DISCARD, .offset = 0,
                                  .length = 65536, .cb = count_done,
                                  .opaque = &p };
    cr_assert_eq(sd_img_submit(img, &discard), 0);
    flush_beside(img, &p, "d.qcow2", mark);
}

Test(engine, compressed_overwrite_frees_only_after_its_l2_write_is_flushed)
{
    struct pending p = { 0, 0 };
    struct sd_img *img;
    uint8_t buf[4096];

    sh("qemu-img create -q -f raw '%s' 4M", path("c.raw"));
    sh("qemu-io -f raw -c 'write -P 0x33 0 4k' '%s' >/dev/null",
       path("c.raw"));
    sh("qemu-img convert -c -O qcow2 -o compat=0.10 '%s' '%s'", path("c.raw"),
       path("c.qcow2"));
    open_logged("c.qcow2", &img);
    size_t mark = log_size();
    /* A write into the compressed cluster copies it to a new one and
     * drops the compressed one. Step the ring until the data is written:
     * the L2 update is then in flight, and a flush starts beside it. (The
     * rest of the cluster is zeros, so no barrier comes between.) */
    memset(buf, 0x44, sizeof(buf));
    struct sd_img_req write = { .type = SD_REQ_WRITE, .offset = 0,
                                .length = sizeof(buf), .buf = buf,
                                .cb = count_done, .opaque = &p };
    struct wlog_rec recs[64];
    cr_assert_eq(sd_img_submit(img, &write), 0);
    for (;;) {
        size_t n = read_log(mark, recs, 64);
        if (n && recs[n - 1].type == 1 && recs[n - 1].len == 65536)
            break;
        cr_assert_eq(p.done, 0, "the write ended before its data was logged");
        cr_assert_geq(sd_ring_run_once(&ring, true), 0);
    }
    flush_beside(img, &p, "c.qcow2", mark);
}
