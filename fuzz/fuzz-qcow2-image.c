/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: any file, opened as an image.
 *
 * Notes on the design:
 *
 * - The input is written to a file in a private folder on tmpfs (the
 *   image engine opens paths, and its backing-file logic resolves names
 *   against the image's folder). The folder also holds "base", a valid
 *   qcow2 image, and "base.raw", so that seeds whose backing file is
 *   named "base" or "base.raw" exercise a real chain.
 * - A backing file name taken from the input is followed only when it is
 *   a plain name (no '/', no ".."): the fuzzer must not open arbitrary
 *   host files, FIFOs or devices, which could hang it. Other names are
 *   opened with no_backing.
 * - Each input is opened as qcow2 (forced) and by probing, read-only and,
 *   on a copy, writable. We read the start of the disk (FUZZ_WALK_BYTES,
 *   at most FUZZ_WALK_CLUSTERS clusters) and a few far offsets, walk
 *   block status over the whole disk (at most
 *   FUZZ_MAX_EXTENTS calls), ask for the info, and on the writable copy
 *   write, read back, zero, discard and flush. Then qcow2_check runs on
 *   the input, and with leak repair on the written copy.
 * - Beyond "no crash, no leak, no hang", the target checks contracts that
 *   need no oracle: an extent starts where it was asked for and is not
 *   empty or too long; a range block status calls zero reads as zeros; a
 *   write that succeeded reads back (on an image the check finds
 *   consistent: a corrupt one may map two guest clusters to one host
 *   cluster, as qemu would too); a failed open says why.
 *
 * Built with libFuzzer (clang, --enable-fuzzing) this file is the whole
 * target; otherwise fuzz/replay-main.c drives it over files, to replay
 * the corpus and saved crashes in any build.
 */
#include "config.h"

#include "qcow2/image.h"
#include "qcow2/qcow2-check.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum {
    FUZZ_WALK_BYTES = 16 << 20,    /* read the disk this far from 0, */
    FUZZ_WALK_CLUSTERS = 1024,     /* but no more clusters than this */
    FUZZ_CHUNK = 256 << 10,        /* one read */
    FUZZ_FAR_READS = 4,            /* reads past the walk, spread out */
    FUZZ_MAX_EXTENTS = 512,        /* block status calls per open */
    FUZZ_ZERO_PROBE = 64 << 10,    /* bytes of a zero extent we verify */
    FUZZ_BASE_SIZE = 4 << 20,      /* the valid backing image */
    FUZZ_NAME_MAX = 64,            /* longest backing name we follow */
};

static char folder[64];
/* FUZZ_SKIP_CHECK in the environment: leave qcow2_check out, to go on
 * fuzzing the engine while a known bug in the check is being fixed. */
static bool skip_check;

/* ---- the private folder ------------------------------------------- */

static void path_in(char *out, size_t cap, const char *name)
{
    snprintf(out, cap, "%s/%s", folder, name);
}

static void remove_folder(void)
{
    static const char *const names[] = { "top", "w", "base", "base.raw" };
    char p[128];

    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        path_in(p, sizeof(p), names[i]);
        (void)unlink(p);
    }
    (void)rmdir(folder);
}

static int write_file(const char *name, const void *data, size_t size)
{
    char p[128];
    int fd, ret = 0;

    path_in(p, sizeof(p), name);
    fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    if (size && write(fd, data, size) != (ssize_t)size)
        ret = -EIO;
    if (close(fd) < 0 && ret == 0)
        ret = -errno;
    return ret;
}

static void pattern(uint8_t *buf, size_t len, uint64_t seed)
{
    for (size_t i = 0; i < len; i++)
        buf[i] = (uint8_t)((seed + i) * 0x9e3779b1u >> 13) | 1;
}

/* A valid qcow2 "base" with data in a few places. Should creating it
 * fail, "base" holds plain bytes instead: chains still end somewhere. */
static void make_base_images(void)
{
    static uint8_t buf[FUZZ_CHUNK];
    struct sd_img_create_opts co = { .format = SD_FMT_QCOW2,
                                     .size = FUZZ_BASE_SIZE };
    struct sd_img_open_opts oo = { .format = SD_FMT_QCOW2, .writable = true,
                                   .no_lock = true };
    struct sd_error err;
    struct sd_img *img;
    char p[128];

    pattern(buf, sizeof(buf), 7);
    if (write_file("base.raw", buf, sizeof(buf)) < 0)
        abort();
    path_in(p, sizeof(p), "base");
    if (qcow2_create(p, &co, &err) < 0 ||
        sd_img_open(&img, p, &oo, &err) < 0) {
        if (write_file("base", buf, sizeof(buf)) < 0)
            abort();
        return;
    }
    for (uint64_t off = 0; off < FUZZ_BASE_SIZE; off += 3 * FUZZ_CHUNK)
        (void)sd_img_pwrite(img, buf, FUZZ_CHUNK / 2, off, 0);
    (void)sd_img_close(img);
}

/* The folder lives in $TMPDIR, else on tmpfs. A run that crashes leaves
 * its sd-fuzz-* folder behind (atexit does not run). */
static void setup_once(void)
{
    const char *tmp = getenv("TMPDIR");

    if (!tmp || !tmp[0])
        tmp = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";

    if (folder[0])
        return;
    snprintf(folder, sizeof(folder), "%s/sd-fuzz-XXXXXX", tmp);
    if (!mkdtemp(folder))
        abort();
    atexit(remove_folder);
    make_base_images();
}

/* ---- exercising one open image ------------------------------------ */

static uint64_t hash_input(const uint8_t *data, size_t size)
{
    uint64_t h = 0xcbf29ce484222325ull;          /* FNV-1a */

    for (size_t i = 0; i < size; i++)
        h = (h ^ data[i]) * 0x100000001b3ull;
    return h;
}

static bool all_zero(const uint8_t *p, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (p[i])
            return false;
    return true;
}

static uint64_t min_u64(uint64_t a, uint64_t b)
{
    return a < b ? a : b;
}

static void read_range(struct sd_img *img, uint8_t *buf, uint64_t off)
{
    uint64_t size = sd_img_size(img);

    if (off >= size)
        return;
    (void)sd_img_pread(img, buf, min_u64(FUZZ_CHUNK, size - off), off);
}

/* How far from 0 we read everything: tiny clusters cost per cluster. */
static uint64_t walk_end(struct sd_img *img)
{
    struct sd_img_info info;
    uint64_t end = min_u64(sd_img_size(img), FUZZ_WALK_BYTES);

    if (sd_img_get_info(img, &info) == 0 && info.cluster_size)
        end = min_u64(end, (uint64_t)info.cluster_size * FUZZ_WALK_CLUSTERS);
    return end;
}

static void walk_reads(struct sd_img *img, uint8_t *buf, uint64_t seed)
{
    uint64_t size = sd_img_size(img);
    uint64_t end = walk_end(img);

    for (uint64_t off = 0; off < end; off += FUZZ_CHUNK)
        read_range(img, buf, off);
    if (size <= end)
        return;
    read_range(img, buf, size - min_u64(size, FUZZ_CHUNK));
    for (int i = 0; i < FUZZ_FAR_READS; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        /* Unaligned on purpose: reads straddle clusters. */
        read_range(img, buf, seed % size);
    }
}

/* A zero extent must read as zeros (when the read succeeds at all). */
static void check_zero_extent(struct sd_img *img, const struct sd_extent *e,
                              uint8_t *buf)
{
    uint64_t len = min_u64(e->length, FUZZ_ZERO_PROBE);

    if (!(e->flags & SD_EXT_ZERO) || e->offset >= FUZZ_WALK_BYTES)
        return;
    if (sd_img_pread(img, buf, len, e->offset) == 0 && !all_zero(buf, len)) {
        fprintf(stderr, "extent at %llu says zero, reads data\n",
                (unsigned long long)e->offset);
        abort();
    }
}

static void walk_block_status(struct sd_img *img, uint8_t *buf)
{
    uint64_t size = sd_img_size(img), off = 0;

    for (int n = 0; off < size && n < FUZZ_MAX_EXTENTS; n++) {
        struct sd_extent e;

        if (sd_img_block_status(img, off, size - off, &e) < 0)
            return;
        if (e.offset != off || e.length == 0 || e.length > size - off) {
            fprintf(stderr, "bad extent %llu+%llu for %llu\n",
                    (unsigned long long)e.offset,
                    (unsigned long long)e.length, (unsigned long long)off);
            abort();
        }
        check_zero_extent(img, &e, buf);
        off += e.length;
    }
}

/* Whether the writable copy passed the check before the writes: only
 * then must a write read back. A corrupt image (two L2 entries sharing a
 * cluster, say) may legitimately return other data; it must still never
 * crash or touch memory it should not. */
static bool verify_writes;

static void write_and_read_back(struct sd_img *img, uint8_t *buf,
                                uint64_t off, uint64_t len, uint64_t seed)
{
    uint8_t *back = buf + FUZZ_CHUNK;

    len = min_u64(len, FUZZ_CHUNK);
    if (off >= sd_img_size(img))
        return;
    len = min_u64(len, sd_img_size(img) - off);
    pattern(buf, len, seed);
    if (sd_img_pwrite(img, buf, len, off, 0) < 0)
        return;
    if (verify_writes && sd_img_pread(img, back, len, off) == 0 &&
        memcmp(buf, back, len)) {
        fprintf(stderr, "write of %llu bytes at %llu does not read back\n",
                (unsigned long long)len, (unsigned long long)off);
        abort();
    }
}

static void exercise_writes(struct sd_img *img, uint8_t *buf, uint64_t seed)
{
    uint64_t size = sd_img_size(img);

    if (size == 0)
        return;
    write_and_read_back(img, buf, 0, 4096, seed);
    write_and_read_back(img, buf, seed % size, 70000, seed + 1);
    write_and_read_back(img, buf, size / 2 + 512, 512, seed + 2);
    (void)sd_img_zero(img, seed % size / 2, min_u64(size / 4, 1 << 20), 0);
    (void)sd_img_zero(img, 0, min_u64(size, 3 << 16), SD_REQ_MAY_UNMAP);
    (void)sd_img_discard(img, size / 3, min_u64(size / 3, 1 << 20));
    write_and_read_back(img, buf, 4096 * 3 + 7, 9000, seed + 3);
    (void)sd_img_flush(img);
}

static void exercise(struct sd_img *img, uint8_t *buf, uint64_t seed)
{
    struct sd_img_info info;
    struct sd_img_caps caps;

    if (sd_img_get_info(img, &info) == 0 &&
        info.virtual_size != sd_img_size(img))
        abort();
    sd_img_get_caps(img, &caps);
    (void)sd_img_corrupt_reason(img);
    walk_reads(img, buf, seed);
    walk_block_status(img, buf);
    if (caps.can_write)
        exercise_writes(img, buf, seed);
}

/* ---- opening ------------------------------------------------------ */

/* A backing name we may follow: a plain file name in our folder. */
static bool plain_name(const char *name)
{
    return name && name[0] && strlen(name) <= FUZZ_NAME_MAX &&
           !strchr(name, '/') && strcmp(name, ".") && strcmp(name, "..");
}

/* A failed open must explain itself in err. */
static void check_open_error(int ret, const struct sd_error *err)
{
    if (ret < 0 && (err->code != ret || err->msg[0] == '\0')) {
        fprintf(stderr, "open failed with %d but err is (%d, \"%s\")\n",
                ret, err->code, err->msg);
        abort();
    }
}

/* Open without the chain to learn the backing name, then with it if the
 * name is safe to follow. */
static int open_image(struct sd_img **img, const char *name,
                      enum sd_img_format fmt, bool writable)
{
    struct sd_img_open_opts o = { .format = fmt, .writable = writable,
                                  .no_lock = true, .no_backing = true };
    struct sd_img_info info;
    struct sd_error err;
    char p[128];
    bool follow;
    int ret;

    path_in(p, sizeof(p), name);
    ret = sd_img_open(img, p, &o, &err);
    check_open_error(ret, &err);
    if (ret < 0)
        return ret;
    follow = sd_img_get_info(*img, &info) == 0 &&
             plain_name(info.backing_file);
    if (!follow)
        return 0;
    (void)sd_img_close(*img);
    o.no_backing = false;
    ret = sd_img_open(img, p, &o, &err);
    check_open_error(ret, &err);
    return ret;
}

static void fuzz_open(const char *name, enum sd_img_format fmt,
                      bool writable, uint8_t *buf, uint64_t seed)
{
    struct sd_img *img;

    if (open_image(&img, name, fmt, writable) < 0)
        return;
    exercise(img, buf, seed);
    (void)sd_img_close(img);
}

/* Run the check; returns true when it found the image consistent. */
static bool fuzz_check(const char *name, bool repair)
{
    struct qcow2_check_opts o = { .repair_leaks = repair,
                                  .max_messages = 50 };
    struct qcow2_check_result res;
    struct sd_error err;
    bool consistent;
    char p[128];

    memset(&res, 0, sizeof(res));
    path_in(p, sizeof(p), name);
    consistent = qcow2_check(p, &o, &res, &err) == 0 &&
                 res.corruptions == 0 && res.check_errors == 0;
    qcow2_check_result_free(&res);
    return consistent;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t buf[2 * FUZZ_CHUNK];
    uint64_t seed = hash_input(data, size);

    if (!folder[0])
        skip_check = getenv("FUZZ_SKIP_CHECK") != NULL;
    setup_once();
    if (write_file("top", data, size) < 0 || write_file("w", data, size) < 0)
        abort();
    fuzz_open("top", SD_FMT_QCOW2, false, buf, seed);
    fuzz_open("top", SD_FMT_AUTO, false, buf, seed);
    verify_writes = !skip_check && fuzz_check("top", false);
    fuzz_open("w", SD_FMT_QCOW2, true, buf, seed);
    if (!skip_check)
        (void)fuzz_check("w", true);
    return 0;
}
