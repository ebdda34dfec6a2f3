/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of qcow2/blkfile.c.
 *
 * blkfile has two paths: plain system calls outside coroutines, and
 * io_uring SQEs inside a coroutine when the file has a ring. Every test
 * written with BLK_TEST runs twice, once per path (suites blk_sync and
 * blk_ring); in the ring suite each operation runs in a coroutine driven
 * by sd_ring_run_once, and I/O operations must really go through the ring
 * (the coroutine has to wait for a completion).
 *
 * The write-log tests parse the log the test mode writes and replay it
 * onto a copy of the file's first state; the result must equal the file.
 */
#include "config.h"

#include "qcow2/blkfile.h"
#include "qcow2/write-log.h"
#include "common/coroutine.h"
#include "common/error.h"
#include "common/ring.h"
#include "leak-check.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

/* ---- fixture: a temp directory, and a ring in the ring suite ------- */

static char dir[64];
static bool ring_mode;
static struct sd_ring ring;
static unsigned async_ops;      /* operations that waited for a CQE */

static void make_dir(void)
{
    const char *tmp = getenv("TMPDIR");

    snprintf(dir, sizeof(dir), "%s/blkfile-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    cr_assert_not_null(mkdtemp(dir), "mkdtemp: %s", strerror(errno));
    unsetenv("SENDENSE_WRITE_LOG");
}

static void setup_sync(void)
{
    ring_mode = false;
    make_dir();
}

static void setup_ring(void)
{
    ring_mode = true;
    make_dir();
    int ret = sd_ring_init(&ring, 8);
    if (ret == -ENOSYS || ret == -EPERM)
        cr_skip_test("io_uring is not available: %s", strerror(-ret));
    cr_assert_eq(ret, 0, "sd_ring_init: %s", strerror(-ret));
}

static void teardown(void)
{
    char cmd[128];

    if (ring_mode)
        sd_ring_exit(&ring);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        cr_log_warn("could not remove %s", dir);
}

TestSuite(blk_sync, .init = setup_sync, .fini = teardown);
TestSuite(blk_ring, .init = setup_ring, .fini = teardown);

#define BLK_TEST(name)                                   \
    static void name##_body(void);                       \
    Test(blk_sync, name) { name##_body(); }              \
    Test(blk_ring, name) { name##_body(); }              \
    static void name##_body(void)

static const char *path_of(const char *name)
{
    static char p[4][128];
    static unsigned next;
    char *s = p[next++ % 4];

    snprintf(s, sizeof(p[0]), "%s/%s", dir, name);
    return s;
}

/* Create name holding len bytes of pattern(seed). */
static void pattern(uint8_t *buf, size_t len, uint64_t off, uint8_t seed)
{
    for (size_t i = 0; i < len; i++)
        buf[i] = (uint8_t)((off + i) * 37 + seed + ((off + i) >> 9));
}

static void make_file(const char *name, size_t len, uint8_t seed)
{
    uint8_t *buf = malloc(len ? len : 1);
    int fd = open(path_of(name), O_WRONLY | O_CREAT | O_TRUNC, 0644);

    cr_assert_not_null(buf);
    cr_assert_geq(fd, 0);
    pattern(buf, len, 0, seed);
    cr_assert_eq(write(fd, buf, len), (ssize_t)len);
    close(fd);
    free(buf);
}

static struct blkfile *open_file(const char *name, unsigned flags)
{
    struct blkfile *f = NULL;
    struct sd_error err = { 0 };
    int ret = blk_open(&f, path_of(name), flags, &err);

    cr_assert_eq(ret, 0, "blk_open: %s", err.msg);
    cr_assert_not_null(f);
    cr_assert_eq(f->writable, !!(flags & BLK_WRITABLE));
    if (ring_mode)
        f->ring = &ring;
    return f;
}

/* What a plain read of the file sees, independent of blkfile. */
static void read_back(const char *name, void *buf, size_t len, uint64_t off)
{
    int fd = open(path_of(name), O_RDONLY);

    cr_assert_geq(fd, 0);
    cr_assert_eq(pread(fd, buf, len, (off_t)off), (ssize_t)len);
    close(fd);
}

static uint64_t file_size(const char *name)
{
    struct stat st;

    cr_assert_eq(stat(path_of(name), &st), 0);
    return (uint64_t)st.st_size;
}

/* ---- running one operation on either path -------------------------- */

enum op_kind { OP_PREAD, OP_PREAD_EXACT, OP_PWRITE, OP_ZERO, OP_FLUSH,
               OP_TRUNCATE, OP_GET_SIZE, OP_PREAD_DATA, OP_PWRITE_DATA };

struct op {
    enum op_kind kind;
    struct blkfile *f;
    void *buf;
    size_t len;
    uint64_t off;
    bool punch;
    uint64_t size;
    int ret;
    bool done;
};

static int do_op(struct op *o)
{
    switch (o->kind) {
    case OP_PREAD:       return blk_pread(o->f, o->buf, o->len, o->off);
    case OP_PREAD_EXACT: return blk_pread_exact(o->f, o->buf, o->len, o->off);
    case OP_PWRITE:      return blk_pwrite(o->f, o->buf, o->len, o->off);
    case OP_PREAD_DATA:  return blk_pread_data(o->f, o->buf, o->len, o->off);
    case OP_PWRITE_DATA: return blk_pwrite_data(o->f, o->buf, o->len, o->off);
    case OP_ZERO:        return blk_zero_range(o->f, o->off, o->len, o->punch);
    case OP_FLUSH:       return blk_flush(o->f);
    case OP_TRUNCATE:    return blk_truncate(o->f, o->size);
    case OP_GET_SIZE:    return blk_get_size(o->f, &o->size);
    }
    return -EINVAL;
}

static void op_co(void *opaque)
{
    struct op *o = opaque;

    o->ret = do_op(o);
    o->done = true;
}

static int run(struct op *o)
{
    if (!ring_mode)
        return do_op(o);
    struct coroutine *co = co_create(op_co, o);
    cr_assert_not_null(co);
    co_enter(co);
    if (!o->done)
        async_ops++;
    while (!o->done) {
        cr_assert_gt(ring.in_flight, 0, "coroutine waits, nothing in flight");
        int n = sd_ring_run_once(&ring, true);
        cr_assert_geq(n, 0, "sd_ring_run_once: %s", strerror(-n));
    }
    return o->ret;
}

static int t_pread(struct blkfile *f, void *buf, size_t len, uint64_t off)
{
    return run(&(struct op){ .kind = OP_PREAD, .f = f, .buf = buf,
                             .len = len, .off = off });
}

static int t_pread_exact(struct blkfile *f, void *buf, size_t len, uint64_t off)
{
    return run(&(struct op){ .kind = OP_PREAD_EXACT, .f = f, .buf = buf,
                             .len = len, .off = off });
}

static int t_pwrite(struct blkfile *f, const void *buf, size_t len, uint64_t off)
{
    return run(&(struct op){ .kind = OP_PWRITE, .f = f, .buf = (void *)buf,
                             .len = len, .off = off });
}

static int t_pread_data(struct blkfile *f, void *buf, size_t len,
                        uint64_t off)
{
    return run(&(struct op){ .kind = OP_PREAD_DATA, .f = f, .buf = buf,
                             .len = len, .off = off });
}

static int t_pwrite_data(struct blkfile *f, const void *buf, size_t len,
                         uint64_t off)
{
    return run(&(struct op){ .kind = OP_PWRITE_DATA, .f = f,
                             .buf = (void *)buf, .len = len, .off = off });
}

static int t_zero(struct blkfile *f, uint64_t off, uint64_t len, bool punch)
{
    return run(&(struct op){ .kind = OP_ZERO, .f = f, .off = off,
                             .len = len, .punch = punch });
}

static int t_flush(struct blkfile *f)
{
    return run(&(struct op){ .kind = OP_FLUSH, .f = f });
}

static int t_truncate(struct blkfile *f, uint64_t size)
{
    return run(&(struct op){ .kind = OP_TRUNCATE, .f = f, .size = size });
}

static uint64_t t_get_size(struct blkfile *f)
{
    struct op o = { .kind = OP_GET_SIZE, .f = f };
    int ret = run(&o);

    cr_assert_eq(ret, 0, "blk_get_size: %s", strerror(-ret));
    return o.size;
}

/* In the ring suite, an I/O operation must have waited for its CQE. */
static void expect_async(unsigned before, unsigned ops)
{
    if (ring_mode)
        cr_assert_eq(async_ops - before, ops, "%u of %u operations went "
                     "through the ring", async_ops - before, ops);
    else
        cr_assert_eq(async_ops, 0);
}

static bool all_zero(const uint8_t *p, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (p[i])
            return false;
    return true;
}

/* ---- open ---------------------------------------------------------- */

BLK_TEST(open_missing_file_fails)
{
    struct blkfile *f = NULL;
    struct sd_error err = { 0 };
    const char *p = path_of("missing");

    cr_assert_eq(blk_open(&f, p, 0, &err), -ENOENT);
    cr_assert_eq(err.code, -ENOENT);
    cr_assert_not_null(strstr(err.msg, p), "message '%s' does not name the file",
                       err.msg);
    cr_assert_null(f, "output set on failure");
    cr_assert_eq(blk_open(&f, p, BLK_WRITABLE, NULL), -ENOENT);
    expect_no_leaks();
}

BLK_TEST(create_refuses_existing_file)
{
    struct blkfile *f = NULL;
    struct sd_error err = { 0 };

    f = open_file("new", BLK_WRITABLE | BLK_CREATE);
    cr_assert_eq(t_get_size(f), 0);
    blk_close(f);
    f = NULL;
    cr_assert_eq(blk_open(&f, path_of("new"), BLK_WRITABLE | BLK_CREATE, &err),
                 -EEXIST);
    cr_assert_eq(err.code, -EEXIST);
    blk_close(NULL);
}

/* ---- read and write ---------------------------------------------- */

BLK_TEST(write_then_read_back)
{
    enum { LEN = 200000 };
    uint8_t *out = malloc(LEN), *in = malloc(LEN), *disk = malloc(LEN);
    unsigned before = async_ops;

    cr_assert(out && in && disk);
    make_file("f", 0, 0);
    struct blkfile *f = open_file("f", BLK_WRITABLE);
    pattern(out, LEN, 0, 9);
    /* Unaligned pieces, written out of order. */
    cr_assert_eq(t_pwrite(f, out + 1000, LEN - 1000, 1000), 0);
    cr_assert_eq(t_pwrite(f, out, 1000, 0), 0);
    cr_assert_eq(t_pwrite(f, out + 4097, 3, 4097), 0);
    cr_assert_eq(t_get_size(f), LEN);
    memset(in, 0xee, LEN);
    cr_assert_eq(t_pread(f, in, LEN, 0), 0);
    cr_assert_eq(memcmp(in, out, LEN), 0);
    cr_assert_eq(t_pread(f, in, 17, 65531), 0);
    cr_assert_eq(memcmp(in, out + 65531, 17), 0);
    expect_async(before, 5);
    read_back("f", disk, LEN, 0);
    cr_assert_eq(memcmp(disk, out, LEN), 0);
    blk_close(f);
    free(out);
    free(in);
    free(disk);
}

BLK_TEST(write_past_end_grows_file)
{
    uint8_t buf[100], back[100];

    make_file("f", 4096, 1);
    struct blkfile *f = open_file("f", BLK_WRITABLE);
    memset(buf, 0x5a, sizeof(buf));
    cr_assert_eq(t_pwrite(f, buf, sizeof(buf), 1 << 20), 0);
    cr_assert_eq(t_get_size(f), (1 << 20) + sizeof(buf));
    cr_assert_eq(file_size("f"), (1 << 20) + sizeof(buf));
    read_back("f", back, sizeof(back), 1 << 20);
    cr_assert_eq(memcmp(back, buf, sizeof(buf)), 0);
    blk_close(f);
}

BLK_TEST(read_past_end_reads_zeros)
{
    uint8_t want[1000], buf[5000];
    unsigned before = async_ops;

    make_file("f", sizeof(want), 3);
    pattern(want, sizeof(want), 0, 3);
    struct blkfile *f = open_file("f", 0);
    memset(buf, 0xaa, sizeof(buf));
    cr_assert_eq(t_pread(f, buf, sizeof(buf), 0), 0);
    cr_assert_eq(memcmp(buf, want, sizeof(want)), 0);
    cr_assert(all_zero(buf + sizeof(want), sizeof(buf) - sizeof(want)),
              "bytes past the end must read as zeros");
    /* Wholly past the end. */
    memset(buf, 0xaa, sizeof(buf));
    cr_assert_eq(t_pread(f, buf, sizeof(buf), 1 << 30), 0);
    cr_assert(all_zero(buf, sizeof(buf)));
    /* Straddling the end at an odd offset. */
    memset(buf, 0xaa, sizeof(buf));
    cr_assert_eq(t_pread(f, buf, 10, sizeof(want) - 3), 0);
    cr_assert_eq(memcmp(buf, want + sizeof(want) - 3, 3), 0);
    cr_assert(all_zero(buf + 3, 7));
    cr_assert_eq(buf[10], 0xaa, "wrote past the requested length");
    expect_async(before, 3);
    blk_close(f);
}

BLK_TEST(pread_exact_fails_past_end)
{
    uint8_t want[4096], buf[4096];

    make_file("f", sizeof(want), 4);
    pattern(want, sizeof(want), 0, 4);
    struct blkfile *f = open_file("f", 0);
    cr_assert_eq(t_pread_exact(f, buf, 4096, 0), 0);
    cr_assert_eq(memcmp(buf, want, 4096), 0);
    cr_assert_eq(t_pread_exact(f, buf, 96, 4000), 0, "ends exactly at EOF");
    cr_assert_eq(memcmp(buf, want + 4000, 96), 0);
    cr_assert_eq(t_pread_exact(f, buf, 97, 4000), -EIO, "one byte past EOF");
    cr_assert_eq(t_pread_exact(f, buf, 1, 4096), -EIO);
    cr_assert_eq(t_pread_exact(f, buf, 8, UINT64_MAX - 4), -EIO,
                 "offset + length wraps around");
    cr_assert_eq(t_pread_exact(f, buf, 0, 4096), 0, "empty read at EOF");
    blk_close(f);
}

BLK_TEST(read_error_is_negative_errno)
{
    uint8_t buf[16];
    struct blkfile *f = NULL;

    cr_assert_eq(mkdir(path_of("d"), 0755), 0);
    cr_assert_eq(blk_open(&f, path_of("d"), 0, NULL), 0);
    if (ring_mode)
        f->ring = &ring;
    cr_assert_eq(t_pread(f, buf, sizeof(buf), 0), -EISDIR);
    blk_close(f);
}

/* ---- zero_range, flush, truncate ------------------------------------ */

static void check_zeroed(const char *name, size_t file_len, uint64_t zoff,
                         uint64_t zlen, uint8_t seed)
{
    uint8_t *disk = malloc(file_len), *want = malloc(file_len);

    cr_assert(disk && want);
    cr_assert_eq(file_size(name), file_len, "zeroing changed the size");
    read_back(name, disk, file_len, 0);
    pattern(want, file_len, 0, seed);
    memset(want + zoff, 0, zlen);
    for (size_t i = 0; i < file_len; i++)
        cr_assert_eq(disk[i], want[i], "byte %zu is 0x%02x, expected 0x%02x",
                     i, disk[i], want[i]);
    free(disk);
    free(want);
}

static void zero_range_case(bool punch)
{
    enum { LEN = 256 * 1024, ZOFF = 5000, ZLEN = 70000 };
    uint8_t buf[ZLEN];
    unsigned before = async_ops;

    make_file("f", LEN, 5);
    struct blkfile *f = open_file("f", BLK_WRITABLE);
    cr_assert_eq(t_zero(f, ZOFF, ZLEN, punch), 0);
    check_zeroed("f", LEN, ZOFF, ZLEN, 5);
    memset(buf, 0xcc, sizeof(buf));
    cr_assert_eq(t_pread(f, buf, ZLEN, ZOFF), 0);
    cr_assert(all_zero(buf, ZLEN));
    cr_assert_eq(t_zero(f, 0, 0, punch), 0, "an empty range is a no-op");
    check_zeroed("f", LEN, ZOFF, ZLEN, 5);
    expect_async(before, 2);
    blk_close(f);
}

BLK_TEST(zero_range_with_punch) { zero_range_case(true); }
BLK_TEST(zero_range_without_punch) { zero_range_case(false); }

BLK_TEST(punch_releases_space)
{
    enum { LEN = 4 << 20 };
    uint64_t before_bytes, after_bytes;

    make_file("f", LEN, 6);
    struct blkfile *f = open_file("f", BLK_WRITABLE);
    cr_assert_eq(t_flush(f), 0);
    cr_assert_eq(blk_allocated_bytes(f, &before_bytes), 0);
    cr_assert_geq(before_bytes, LEN);
    cr_assert_eq(t_zero(f, 0, LEN, true), 0);
    cr_assert_eq(blk_allocated_bytes(f, &after_bytes), 0);
    cr_assert_lt(after_bytes, before_bytes / 2,
                 "punching the whole file left %llu of %llu bytes allocated",
                 (unsigned long long)after_bytes,
                 (unsigned long long)before_bytes);
    cr_assert_eq(t_get_size(f), LEN);
    blk_close(f);
}

BLK_TEST(flush_succeeds)
{
    unsigned before = async_ops;

    make_file("f", 1000, 7);
    struct blkfile *f = open_file("f", BLK_WRITABLE);
    cr_assert_eq(t_pwrite(f, "x", 1, 10), 0);
    cr_assert_eq(t_flush(f), 0);
    expect_async(before, 2);
    blk_close(f);
    f = open_file("f", 0);
    cr_assert_eq(t_flush(f), 0, "flushing a read-only file is a no-op");
    blk_close(f);
}

BLK_TEST(truncate_grows_and_shrinks)
{
    uint8_t buf[8192], want[8192];

    make_file("f", 8192, 8);
    pattern(want, sizeof(want), 0, 8);
    struct blkfile *f = open_file("f", BLK_WRITABLE);
    cr_assert_eq(t_truncate(f, 3000), 0);
    cr_assert_eq(t_get_size(f), 3000);
    cr_assert_eq(file_size("f"), 3000);
    memset(buf, 0xaa, sizeof(buf));
    cr_assert_eq(t_pread(f, buf, sizeof(buf), 0), 0);
    cr_assert_eq(memcmp(buf, want, 3000), 0);
    cr_assert(all_zero(buf + 3000, sizeof(buf) - 3000));
    cr_assert_eq(t_pread_exact(f, buf, 3001, 0), -EIO);

    cr_assert_eq(t_truncate(f, 1ull << 32), 0);
    cr_assert_eq(t_get_size(f), 1ull << 32);
    memset(buf, 0xaa, sizeof(buf));
    cr_assert_eq(t_pread_exact(f, buf, sizeof(buf), (1ull << 32) - sizeof(buf)), 0);
    cr_assert(all_zero(buf, sizeof(buf)), "grown part must read as zeros");
    cr_assert_eq(t_pread(f, buf, 3000, 0), 0);
    cr_assert_eq(memcmp(buf, want, 3000), 0);
    blk_close(f);
}

/* ---- read-only files ------------------------------------------------- */

BLK_TEST(read_only_refuses_changes)
{
    uint8_t buf[4096], want[4096];

    make_file("f", sizeof(want), 10);
    pattern(want, sizeof(want), 0, 10);
    struct blkfile *f = open_file("f", 0);
    cr_assert_eq(t_pwrite(f, "abc", 3, 0), -EPERM);
    cr_assert_eq(t_zero(f, 0, 4096, true), -EPERM);
    cr_assert_eq(t_zero(f, 0, 4096, false), -EPERM);
    cr_assert_eq(t_truncate(f, 0), -EPERM);
    read_back("f", buf, sizeof(buf), 0);
    cr_assert_eq(memcmp(buf, want, sizeof(want)), 0);
    cr_assert_eq(file_size("f"), sizeof(want));
    blk_close(f);
}

/* ---- ring only: many coroutines at once ---------------------------- */

struct writer {
    struct blkfile *f;
    uint8_t data[4096];
    uint64_t off;
    int ret;
    bool done;
};

static void writer_fn(void *opaque)
{
    struct writer *w = opaque;
    uint8_t back[4096];

    w->ret = blk_pwrite(w->f, w->data, sizeof(w->data), w->off);
    if (w->ret == 0)
        w->ret = blk_pread(w->f, back, sizeof(back), w->off);
    if (w->ret == 0 && memcmp(back, w->data, sizeof(back)))
        w->ret = -EILSEQ;
    w->done = true;
}

Test(blk_ring, concurrent_coroutines_share_the_ring)
{
    enum { N = 40 };
    static struct writer w[N];

    make_file("f", 0, 0);
    struct blkfile *f = open_file("f", BLK_WRITABLE);
    /* All start before any completes: more I/O in flight than entries. */
    for (unsigned i = 0; i < N; i++) {
        w[i] = (struct writer){ .f = f, .off = (uint64_t)(N - 1 - i) * 4096 };
        pattern(w[i].data, sizeof(w[i].data), w[i].off, 11);
        struct coroutine *co = co_create(writer_fn, &w[i]);
        cr_assert_not_null(co);
        co_enter(co);
        cr_assert(!w[i].done, "writer %u did not wait for its CQE", i);
    }
    cr_assert_eq(ring.in_flight, N);
    for (;;) {
        unsigned left = 0;
        for (unsigned i = 0; i < N; i++)
            left += !w[i].done;
        if (!left)
            break;
        cr_assert_gt(ring.in_flight, 0);
        cr_assert_geq(sd_ring_run_once(&ring, true), 0);
    }
    for (unsigned i = 0; i < N; i++)
        cr_assert_eq(w[i].ret, 0, "writer %u: %d", i, w[i].ret);
    cr_assert_eq(t_get_size(f), N * 4096);
    static uint8_t disk[N * 4096], want[N * 4096];
    read_back("f", disk, sizeof(disk), 0);
    pattern(want, sizeof(want), 0, 11);
    cr_assert_eq(memcmp(disk, want, sizeof(want)), 0);
    blk_close(f);
}

/* Two connections flush at once: the second finds the file clean (the
 * first cleared it when its sync began) but must not answer before that
 * sync, which covers its writes, has ended. */
Test(blk_ring, a_flush_waits_for_the_flush_under_way)
{
    uint8_t data[4096];

    make_file("f", 0, 0);
    struct blkfile *f = open_file("f", BLK_WRITABLE);
    pattern(data, sizeof(data), 0, 5);
    cr_assert_eq(t_pwrite(f, data, sizeof(data), 0), 0);
    struct op a = { .kind = OP_FLUSH, .f = f }, b = a;
    co_enter(co_create(op_co, &a));
    cr_assert(!a.done, "the first flush did not wait for its sync");
    co_enter(co_create(op_co, &b));
    cr_assert(!b.done, "the second flush answered while the first was syncing");
    while (!a.done || !b.done) {
        cr_assert(!b.done || a.done, "the second flush ended before the first");
        cr_assert_geq(sd_ring_run_once(&ring, true), 0);
    }
    cr_assert_eq(a.ret, 0);
    cr_assert_eq(b.ret, 0);
    blk_close(f);
}

/* ---- write log ------------------------------------------------------- */

struct rec {
    uint32_t type;
    uint64_t off, len;
    const uint8_t *data;
};

static uint64_t le(const uint8_t *p, int bytes)
{
    uint64_t v = 0;

    for (int i = bytes - 1; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

/* Parse the whole log into recs; returns the count. */
static unsigned parse_log(const uint8_t *log, size_t len, struct rec *recs,
                          unsigned cap)
{
    unsigned n = 0;
    size_t pos = 0;

    while (pos < len) {
        cr_assert_leq(pos + 24, len, "truncated record header at %zu", pos);
        cr_assert_eq(le(log + pos, 4), WLOG_MAGIC, "bad magic at %zu", pos);
        cr_assert_lt(n, cap);
        struct rec *r = &recs[n++];
        r->type = (uint32_t)le(log + pos + 4, 4);
        r->off = le(log + pos + 8, 8);
        r->len = le(log + pos + 16, 8);
        pos += 24;
        r->data = NULL;
        if (r->type == WLOG_WRITE) {
            cr_assert_leq(pos + r->len, len, "truncated write data at %zu", pos);
            r->data = log + pos;
            pos += r->len;
        } else {
            cr_assert(r->type >= WLOG_FLUSH && r->type <= WLOG_TRUNCATE,
                      "unknown record type %u", r->type);
        }
    }
    return n;
}

/* Apply records to an in-memory file of *size bytes (capacity cap). */
static void replay(uint8_t *img, uint64_t *size, uint64_t cap,
                   const struct rec *recs, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        const struct rec *r = &recs[i];
        switch (r->type) {
        case WLOG_WRITE:
            cr_assert_leq(r->off + r->len, cap);
            memcpy(img + r->off, r->data, r->len);
            if (r->off + r->len > *size)
                *size = r->off + r->len;
            break;
        case WLOG_ZERO:
            cr_assert_leq(r->off + r->len, cap);
            memset(img + r->off, 0, r->len);
            break;
        case WLOG_TRUNCATE:
            cr_assert_leq(r->off, cap);
            if (r->off < *size)
                memset(img + r->off, 0, *size - r->off);
            *size = r->off;
            break;
        default:
            break;
        }
    }
}

/* Skip the records one zero_range produced: either one ZERO record or,
 * where the file system cannot zero a range, WRITEs of zeros tiling it. */
static unsigned skip_zero_records(const struct rec *recs, unsigned n,
                                  unsigned i, uint64_t off, uint64_t len)
{
    cr_assert_lt(i, n, "no record for zero_range");
    if (recs[i].type == WLOG_ZERO) {
        cr_assert_eq(recs[i].off, off);
        cr_assert_eq(recs[i].len, len);
        return i + 1;
    }
    uint64_t at = off;
    while (at < off + len) {
        cr_assert_lt(i, n);
        cr_assert_eq(recs[i].type, WLOG_WRITE, "record %u: type %u", i,
                     recs[i].type);
        cr_assert_eq(recs[i].off, at);
        cr_assert(all_zero(recs[i].data, recs[i].len));
        at += recs[i++].len;
    }
    cr_assert_eq(at, off + len);
    return i;
}

static uint8_t *slurp(const char *name, size_t *len)
{
    uint64_t size = file_size(name);
    uint8_t *buf = malloc(size ? size : 1);

    cr_assert_not_null(buf);
    if (size)
        read_back(name, buf, size, 0);
    *len = size;
    return buf;
}

BLK_TEST(write_log_records_every_change_in_order)
{
    enum { CAP = 1 << 20, INIT = 64 * 1024 };
    uint8_t a[4096], b[100];
    static uint8_t img[CAP];
    static struct rec recs[64];

    make_file("f", INIT, 12);
    setenv("SENDENSE_WRITE_LOG", path_of("log"), 1);
    struct blkfile *f = open_file("f", BLK_WRITABLE);
    pattern(a, sizeof(a), 0, 13);
    memset(b, 0x77, sizeof(b));
    cr_assert_eq(t_pwrite(f, a, sizeof(a), 0), 0);
    cr_assert_eq(t_pwrite(f, b, sizeof(b), 70000), 0);
    cr_assert_eq(t_zero(f, 8192, 8192, false), 0);
    cr_assert_eq(t_flush(f), 0);
    cr_assert_eq(t_zero(f, 20480, 4096, true), 0);
    cr_assert_eq(t_truncate(f, 50000), 0);
    cr_assert_eq(t_pwrite(f, b, 10, 49995), 0);
    cr_assert_eq(t_flush(f), 0);
    uint8_t dummy[16];
    cr_assert_eq(t_pread(f, dummy, sizeof(dummy), 0), 0);   /* not logged */
    blk_close(f);

    size_t log_len;
    uint8_t *log = slurp("log", &log_len);
    unsigned n = parse_log(log, log_len, recs, 64), i = 0;

    cr_assert_eq(recs[i].type, WLOG_WRITE);
    cr_assert_eq(recs[i].off, 0);
    cr_assert_eq(recs[i].len, sizeof(a));
    cr_assert_eq(memcmp(recs[i].data, a, sizeof(a)), 0);
    i++;
    cr_assert_eq(recs[i].type, WLOG_WRITE);
    cr_assert_eq(recs[i].off, 70000);
    cr_assert_eq(recs[i].len, sizeof(b));
    cr_assert_eq(memcmp(recs[i].data, b, sizeof(b)), 0);
    i++;
    i = skip_zero_records(recs, n, i, 8192, 8192);
    cr_assert_eq(recs[i++].type, WLOG_FLUSH);
    i = skip_zero_records(recs, n, i, 20480, 4096);
    cr_assert_eq(recs[i].type, WLOG_TRUNCATE);
    cr_assert_eq(recs[i++].off, 50000);
    cr_assert_eq(recs[i].type, WLOG_WRITE);
    cr_assert_eq(recs[i].off, 49995);
    cr_assert_eq(recs[i++].len, 10);
    cr_assert_eq(recs[i++].type, WLOG_FLUSH);
    cr_assert_eq(i, n, "%u unexpected records at the end", n - i);

    /* Replaying the log onto the first state gives the file as it is. */
    uint64_t size = INIT;
    pattern(img, INIT, 0, 12);
    replay(img, &size, CAP, recs, n);
    size_t final_len;
    uint8_t *final = slurp("f", &final_len);
    cr_assert_eq(size, final_len);
    cr_assert_eq(memcmp(img, final, final_len), 0, "replay differs from file");
    free(final);
    free(log);
    expect_no_leaks();
}

/* A ZERO record carries no size, and punching keeps the size: zeroing
 * past the end must not grow the file either, with or without punch, or
 * a replayed log no longer matches the file. */
static void zero_past_end_case(bool punch)
{
    enum { CAP = 64 * 1024, INIT = 3000 };
    static uint8_t img[CAP];
    static struct rec recs[16];

    make_file("f", INIT, 16);
    setenv("SENDENSE_WRITE_LOG", path_of("log"), 1);
    struct blkfile *f = open_file("f", BLK_WRITABLE);
    cr_assert_eq(t_zero(f, 2048, 8192, punch), 0);
    cr_assert_eq(t_get_size(f), INIT, "zeroing past the end (punch=%d) "
                 "changed the size to %llu", punch,
                 (unsigned long long)t_get_size(f));
    blk_close(f);

    size_t log_len;
    uint8_t *log = slurp("log", &log_len);
    unsigned n = parse_log(log, log_len, recs, 16);
    uint64_t size = INIT;
    pattern(img, INIT, 0, 16);
    replay(img, &size, CAP, recs, n);
    size_t final_len;
    uint8_t *final = slurp("f", &final_len);
    cr_assert_eq(size, final_len, "replayed size %llu, file size %zu",
                 (unsigned long long)size, final_len);
    cr_assert_eq(memcmp(img, final, final_len), 0);
    free(final);
    free(log);
}

BLK_TEST(zero_past_end_with_punch_keeps_size) { zero_past_end_case(true); }
BLK_TEST(zero_past_end_without_punch_keeps_size) { zero_past_end_case(false); }

BLK_TEST(write_log_ignores_read_only_files)
{
    uint8_t buf[100];

    make_file("f", 4096, 14);
    setenv("SENDENSE_WRITE_LOG", path_of("log"), 1);
    struct blkfile *f = open_file("f", 0);
    cr_assert_eq(t_pread(f, buf, sizeof(buf), 0), 0);
    cr_assert_eq(t_flush(f), 0);
    cr_assert_eq(t_pwrite(f, buf, sizeof(buf), 0), -EPERM);
    blk_close(f);
    cr_assert_eq(access(path_of("log"), F_OK), -1, "a log was written");
}

BLK_TEST(write_log_skips_failed_writes)
{
    make_file("f", 4096, 15);
    setenv("SENDENSE_WRITE_LOG", path_of("log"), 1);
    struct blkfile *f = open_file("f", BLK_WRITABLE);
    /* At the largest offset there is: past every file system's largest
     * file (tmpfs allows files of 2^63 - 1 bytes), so the write fails. */
    int ret = t_pwrite(f, "x", 1, (1ull << 63) - 1);
    cr_assert_lt(ret, 0);
    cr_assert_eq(t_pwrite(f, "y", 1, 10), 0);
    cr_assert_eq(t_flush(f), 0);
    blk_close(f);

    static struct rec recs[4];
    size_t log_len;
    uint8_t *log = slurp("log", &log_len);
    unsigned n = parse_log(log, log_len, recs, 4);
    cr_assert_eq(n, 2, "%u records, expected the good write and the flush", n);
    cr_assert_eq(recs[0].type, WLOG_WRITE);
    cr_assert_eq(recs[0].off, 10);
    cr_assert_eq(recs[1].type, WLOG_FLUSH);
    free(log);
}

/* A flush with nothing written since the last one costs nothing (on ext4
 * a clean fdatasync still flushes the device cache); one after a write,
 * zero or truncate syncs again. */
BLK_TEST(flush_skips_a_clean_file)
{
    static struct rec recs[16];

    make_file("f", 8192, 16);
    setenv("SENDENSE_WRITE_LOG", path_of("log"), 1);
    struct blkfile *f = open_file("f", BLK_WRITABLE);
    cr_assert_eq(t_flush(f), 0);                  /* nothing written yet */
    cr_assert_eq(t_pwrite(f, "a", 1, 0), 0);
    cr_assert_eq(t_flush(f), 0);                  /* synced */
    cr_assert_eq(t_flush(f), 0);                  /* clean: skipped */
    cr_assert_eq(t_zero(f, 4096, 4096, true), 0);
    cr_assert_eq(t_flush(f), 0);                  /* synced */
    cr_assert_eq(t_truncate(f, 4096), 0);
    cr_assert_eq(t_flush(f), 0);                  /* synced */
    cr_assert_eq(t_flush(f), 0);                  /* clean: skipped */
    blk_close(f);

    size_t log_len;
    uint8_t *log = slurp("log", &log_len);
    unsigned n = parse_log(log, log_len, recs, 16), flushes = 0;
    for (unsigned i = 0; i < n; i++)
        flushes += recs[i].type == WLOG_FLUSH;
    cr_assert_eq(flushes, 3, "%u flushes reached the file, expected 3",
                 flushes);
    cr_assert_eq(recs[n - 1].type, WLOG_FLUSH);
    free(log);
}

static bool on_tmpfs(const char *path)
{
    struct statfs sfs;

    cr_assert_eq(statfs(path, &sfs), 0);
    return sfs.f_type == TMPFS_MAGIC;
}

/* Flush and close f, then the file on disk must hold expect (scratch is
 * len bytes to read it into). */
static void flush_close_and_compare(struct blkfile *f, const char *name,
                                    const uint8_t *expect, uint8_t *scratch,
                                    size_t len)
{
    cr_assert_eq(t_flush(f), 0);
    blk_close(f);
    read_back(name, scratch, len, 0);
    cr_assert_arr_eq(scratch, expect, len, "file differs from what was written");
}

/* Aligned data goes around the page cache, unaligned data and metadata
 * through it; each must see the other's writes, in both orders, and the
 * bytes on disk are the union. */
BLK_TEST(direct_data_and_buffered_io_see_each_other)
{
    enum { LEN = 4 * BLK_DIO_MIN };
    uint8_t *a = blk_alloc_buffer(LEN), *b = blk_alloc_buffer(LEN);
    uint8_t *expect = malloc(LEN), *got = blk_alloc_buffer(LEN);

    cr_assert(a && b && expect && got);
    make_file("f", LEN, 21);
    read_back("f", expect, LEN, 0);
    struct blkfile *f = open_file("f", BLK_WRITABLE | BLK_DIRECT_DATA);
    cr_assert_eq(f->dfd, BLK_DFD_UNOPENED, "twin opened before any data");

    /* Unaligned, so buffered and left dirty in the page cache ... */
    pattern(a, 5000, 100, 22);
    cr_assert_eq(t_pwrite_data(f, a, 5000, 100), 0);
    cr_assert_eq(f->dfd, BLK_DFD_UNOPENED, "twin opened for a small write");
    memcpy(expect + 100, a, 5000);
    /* ... then read around it directly: the dirty pages must be seen. */
    cr_assert_eq(t_pread_data(f, got, LEN, 0), 0);
    if (on_tmpfs(dir))
        cr_assert_eq(f->dfd, -1, "no direct I/O twin on tmpfs");
    else
        cr_assert_geq(f->dfd, 0, "no direct I/O twin on a disk file system");
    cr_assert_arr_eq(got, expect, LEN, "direct read missed a buffered write");

    /* Read into the page cache, overwrite directly, read buffered again:
     * the cached pages must not survive the direct write. */
    cr_assert_eq(t_pread(f, got, LEN, 0), 0);
    pattern(b, BLK_DIO_MIN, 8192, 23);
    cr_assert_eq(t_pwrite_data(f, b, BLK_DIO_MIN, 8192), 0);
    memcpy(expect + 8192, b, BLK_DIO_MIN);
    cr_assert_eq(t_pread(f, got, LEN, 0), 0);
    cr_assert_arr_eq(got, expect, LEN, "stale page cache after a direct write");
    /* The same with a write of the smallest direct size. */
    pattern(b, BLK_DIO_WRITE_MIN, 3 * BLK_DIO_MIN, 25);
    cr_assert_eq(t_pwrite_data(f, b, BLK_DIO_WRITE_MIN, 3 * BLK_DIO_MIN), 0);
    memcpy(expect + 3 * BLK_DIO_MIN, b, BLK_DIO_WRITE_MIN);
    cr_assert_eq(t_pread(f, got, LEN, 0), 0);
    cr_assert_arr_eq(got, expect, LEN,
                     "stale page cache after a small direct write");
    flush_close_and_compare(f, "f", expect, got, LEN);
    free(a);
    free(b);
    free(expect);
    free(got);
}

/* Aligned data writes go direct from BLK_DIO_WRITE_MIN, reads only from
 * BLK_DIO_MIN: a read of the smaller size leaves the twin unopened, a
 * write of it opens the twin (on a file system with direct I/O). */
BLK_TEST(aligned_writes_go_direct_from_a_smaller_size_than_reads)
{
    enum { LEN = BLK_DIO_MIN };
    uint8_t *buf = blk_alloc_buffer(LEN), *expect = malloc(LEN);
    uint8_t *got = blk_alloc_buffer(LEN);

    cr_assert(buf && expect && got);
    cr_assert_lt(BLK_DIO_WRITE_MIN, BLK_DIO_MIN);
    make_file("f", LEN, 26);
    read_back("f", expect, LEN, 0);
    struct blkfile *f = open_file("f", BLK_WRITABLE | BLK_DIRECT_DATA);

    cr_assert_eq(t_pread_data(f, buf, BLK_DIO_WRITE_MIN, 0), 0);
    cr_assert_arr_eq(buf, expect, BLK_DIO_WRITE_MIN);
    cr_assert_eq(f->dfd, BLK_DFD_UNOPENED, "twin opened for a small read");
    pattern(buf, BLK_DIO_WRITE_MIN, 4096, 27);
    cr_assert_eq(t_pwrite_data(f, buf, BLK_DIO_WRITE_MIN, 4096), 0);
    memcpy(expect + 4096, buf, BLK_DIO_WRITE_MIN);
    if (on_tmpfs(dir))
        cr_assert_eq(f->dfd, -1, "no direct I/O twin on tmpfs");
    else
        cr_assert_geq(f->dfd, 0, "a BLK_DIO_WRITE_MIN write did not go direct");
    flush_close_and_compare(f, "f", expect, got, LEN);
    free(buf);
    free(expect);
    free(got);
}

/* Small whole-page data writes to a file are written by the caller, not
 * handed to the ring (where file systems without asynchronous buffered
 * writes send each to a worker thread); partial pages, larger writes and
 * metadata keep the ring. On tmpfs no data goes through the ring. */
Test(blk_ring, small_whole_page_data_writes_are_written_in_place)
{
    enum { LEN = 8 * BLK_INLINE_WRITE_MAX };
    uint8_t *buf = blk_alloc_buffer(LEN), *expect = malloc(LEN);
    uint8_t *got = malloc(LEN);
    unsigned before;

    cr_assert(buf && expect && got);
    make_file("f", LEN, 31);
    read_back("f", expect, LEN, 0);
    struct blkfile *f = open_file("f", BLK_WRITABLE);

    pattern(buf, BLK_INLINE_WRITE_MAX, 4096, 32);
    before = async_ops;
    cr_assert_eq(t_pwrite_data(f, buf, 4096, 4096), 0);
    cr_assert_eq(t_pwrite_data(f, buf, BLK_INLINE_WRITE_MAX, 4096), 0);
    cr_assert_eq(async_ops, before, "a whole-page data write waited for the ring");
    cr_assert(f->dirty, "a write in place must leave the file to be flushed");
    memcpy(expect + 4096, buf, BLK_INLINE_WRITE_MAX);

    unsigned ring_writes = on_tmpfs(dir) ? 0 : 2;
    pattern(buf, LEN, 0, 33);
    before = async_ops;
    cr_assert_eq(t_pwrite_data(f, buf, 4000, 40000), 0);          /* partial */
    cr_assert_eq(t_pwrite_data(f, buf, 2 * BLK_INLINE_WRITE_MAX, 65536), 0);
    cr_assert_eq(async_ops - before, ring_writes,
                 "%u of %u partial-page or larger data writes went through the ring",
                 async_ops - before, ring_writes);
    memcpy(expect + 40000, buf, 4000);
    memcpy(expect + 65536, buf, 2 * BLK_INLINE_WRITE_MAX);
    cr_assert_eq(t_pwrite(f, buf, 4096, 0), 0);                    /* metadata */
    cr_assert_eq(async_ops - before, ring_writes + 1, "a metadata write skipped the ring");
    memcpy(expect, buf, 4096);

    flush_close_and_compare(f, "f", expect, got, LEN);
    free(buf);
    free(expect);
    free(got);
}

/* A read crossing the end of the file: the direct part ends short and
 * the unaligned rest reads as zeros through the buffered path. */
BLK_TEST(direct_data_read_across_end_of_file)
{
    enum { FILE_LEN = BLK_DIO_MIN + 1000, LEN = 2 * BLK_DIO_MIN };
    uint8_t *got = blk_alloc_buffer(LEN), *expect = calloc(1, LEN);

    cr_assert(got && expect);
    make_file("f", FILE_LEN, 24);
    read_back("f", expect, FILE_LEN, 0);
    struct blkfile *f = open_file("f", BLK_DIRECT_DATA);
    memset(got, 0xee, LEN);
    cr_assert_eq(t_pread_data(f, got, LEN, 0), 0);
    cr_assert_arr_eq(got, expect, LEN);
    blk_close(f);
    free(got);
    free(expect);
}
