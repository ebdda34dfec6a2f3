/* SPDX-License-Identifier: MIT */
/*
 * img-model: a randomized model test of the image library.
 *
 * A raw "model" file starts with the same content as the image. The tool
 * issues thousands of random operations (writes of 1 byte to 2 MiB at
 * unaligned, sector-aligned and cluster-aligned offsets, zero writes with
 * and without MAY_UNMAP, discards, reads, flushes), many in flight at
 * once through sd_img_submit on one ring, and applies each to the model
 * when it completes. Operations in flight at the same time never overlap:
 * overlapping requests are ordered by the server, not the library.
 *
 * Reads are checked against the model as they complete; the whole image is
 * compared with the model every --check-every operations, at the end, and
 * once more after closing and reopening the image. The model is written
 * back to its file so the caller can also run `qemu-img compare`.
 *
 * Discards leave the content unspecified by NBD; our contract is narrower:
 * every sector of a discarded range that lies in whole clusters reads as
 * zeros or as the backing chain's data (--base, else zeros); sectors in
 * partly covered clusters may also keep their old content. After the
 * check the range is read back and copied into the model.
 */
#include "config.h"

#include "tool-util.h"

#include "common/ring.h"
#include "qcow2/image.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum op_kind { OP_READ, OP_WRITE, OP_ZERO, OP_ZERO_UNMAP, OP_DISCARD,
               OP_FLUSH, OP_KINDS };

static const char *const op_names[OP_KINDS] = {
    "read", "write", "zero", "zero-unmap", "discard", "flush",
};

/* One request slot; a discard goes through a second phase (read back). */
struct slot {
    bool busy;
    bool done;
    bool reading_back;         /* discard: second phase */
    int ret;
    enum op_kind kind;
    uint64_t off, len;
    uint64_t seq;              /* operation number, for messages */
    uint8_t *buf;
    struct sd_img_req req;
};

struct model_run {
    struct sd_img *img;
    struct sd_ring ring;
    struct tool_rng rng;
    uint8_t *model;            /* expected content of the whole image */
    const uint8_t *base;       /* backing chain content, or NULL */
    size_t base_len;
    uint64_t size;
    uint64_t cluster;
    uint64_t max_len;
    uint64_t hot_off, hot_len; /* a small region that sees many ops */
    struct slot *slots;
    unsigned depth;
    unsigned busy;
    uint64_t counts[OP_KINDS];
};

struct model_args {
    uint64_t seed;
    uint64_t ops;
    uint64_t check_every;
    uint64_t max_len;
    unsigned depth;
    const char *base_path;
    const char *image_path;
    const char *model_path;
};

static void usage(void)
{
    fprintf(stderr,
            "usage: img-model [--seed N] [--ops N] [--depth N] "
            "[--max-len SIZE]\n"
            "                 [--check-every N] [--base RAW]\n"
            "                 [--direct-data] IMAGE MODEL.raw\n");
    exit(2);
}

static void parse_args(int argc, char **argv, struct model_args *a)
{
    static const struct option longopts[] = {
        { "seed", required_argument, NULL, 's' },
        { "ops", required_argument, NULL, 'n' },
        { "depth", required_argument, NULL, 'd' },
        { "max-len", required_argument, NULL, 'm' },
        { "check-every", required_argument, NULL, 'c' },
        { "base", required_argument, NULL, 'b' },
        { "direct-data", no_argument, NULL, 'D' },
        { NULL, 0, NULL, 0 },
    };
    int c;

    *a = (struct model_args){ .seed = 1, .ops = 2000, .depth = 16,
                              .max_len = 2 << 20 };
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case 's': a->seed = parse_size("seed", optarg); break;
        case 'n': a->ops = parse_size("ops", optarg); break;
        case 'd': a->depth = (unsigned)parse_size("depth", optarg); break;
        case 'm': a->max_len = parse_size("max-len", optarg); break;
        case 'c': a->check_every = parse_size("check-every", optarg); break;
        case 'b': a->base_path = optarg; break;
        case 'D': tool_direct_data = true; break;
        default: usage();
        }
    }
    if (argc - optind != 2 || a->depth == 0 || a->max_len == 0)
        usage();
    a->image_path = argv[optind];
    a->model_path = argv[optind + 1];
    if (!a->check_every)
        a->check_every = a->ops / 4 + 1;
}

/* ---- picking random ranges ---- */

static uint64_t pick_length(struct model_run *m)
{
    uint64_t max = m->max_len;
    unsigned r = (unsigned)rng_below(&m->rng, 100);

    if (r < 40)
        max = max < 4096 ? max : 4096;
    else if (r < 75)
        max = max < 256 * 1024 ? max : 256 * 1024;
    return 1 + rng_below(&m->rng, max);
}

/* A range in [lo, lo + span): unaligned, sector- or cluster-aligned. */
static void pick_range(struct model_run *m, uint64_t *off, uint64_t *len)
{
    uint64_t lo = 0, span = m->size;
    uint64_t l = pick_length(m), o, align;
    unsigned style = (unsigned)rng_below(&m->rng, 3);

    if (rng_percent(&m->rng, 30)) {
        lo = m->hot_off;
        span = m->hot_len;
    }
    align = style == 0 ? 1 : style == 1 ? 512 : m->cluster;
    if (align > 1) {
        l = (l + align - 1) / align * align;
        if (l > span)
            l = span / align * align;
        if (l == 0)
            l = span;           /* tiny image: take all of it */
    } else if (l > span) {
        l = span;
    }
    o = lo + rng_below(&m->rng, span - l + 1);
    if (align > 1)
        o = o / align * align;
    if (o < lo || o + l > m->size)
        o = lo;
    *off = o;
    *len = l < m->size - o ? l : m->size - o;
}

static bool overlaps_in_flight(const struct model_run *m, uint64_t off,
                               uint64_t len)
{
    for (unsigned i = 0; i < m->depth; i++) {
        const struct slot *s = &m->slots[i];
        if (s->busy && s->kind != OP_FLUSH && off < s->off + s->len &&
            s->off < off + len)
            return true;
    }
    return false;
}

static enum op_kind pick_kind(struct model_run *m)
{
    unsigned r = (unsigned)rng_below(&m->rng, 100);

    if (r < 20) return OP_READ;
    if (r < 65) return OP_WRITE;
    if (r < 73) return OP_ZERO;
    if (r < 81) return OP_ZERO_UNMAP;
    if (r < 95) return OP_DISCARD;
    return OP_FLUSH;
}

/* ---- issuing and completing operations ---- */

static void slot_done(void *opaque, int ret)
{
    struct slot *s = opaque;

    s->ret = ret;
    s->done = true;
}

static void submit_slot(struct model_run *m, struct slot *s,
                        enum sd_req_type type, unsigned flags)
{
    int ret;

    s->req = (struct sd_img_req){
        .type = type, .offset = s->off, .length = s->len, .buf = s->buf,
        .flags = flags, .cb = slot_done, .opaque = s,
    };
    s->done = false;
    ret = sd_img_submit(m->img, &s->req);
    if (ret < 0)
        die("op %" PRIu64 " (%s %" PRIu64 "+%" PRIu64 "): submit: %s",
            s->seq, op_names[s->kind], s->off, s->len, strerror(-ret));
}

static void fill_write_buffer(struct model_run *m, struct slot *s)
{
    /* Some writes are all zeros: engines may treat those specially. */
    if (rng_percent(&m->rng, 5))
        memset(s->buf, 0, s->len);
    else
        pattern_fill(s->buf, s->len, rng_next(&m->rng), s->off);
}

/* Start a random operation in s; false when no free range was found. */
static bool start_op(struct model_run *m, struct slot *s, uint64_t seq)
{
    static const enum sd_req_type types[OP_KINDS] = {
        SD_REQ_READ, SD_REQ_WRITE, SD_REQ_ZERO, SD_REQ_ZERO, SD_REQ_DISCARD,
        SD_REQ_FLUSH,
    };
    enum op_kind kind = pick_kind(m);
    uint64_t off = 0, len = 0;
    int tries = 0;

    if (kind != OP_FLUSH) {
        do {
            if (tries++ == 8)
                return false;
            pick_range(m, &off, &len);
        } while (overlaps_in_flight(m, off, len));
    }
    *s = (struct slot){ .busy = true, .kind = kind, .off = off, .len = len,
                        .seq = seq, .buf = s->buf };
    if (kind == OP_WRITE)
        fill_write_buffer(m, s);
    m->busy++;
    m->counts[kind]++;
    submit_slot(m, s, types[kind],
                kind == OP_ZERO_UNMAP ? SD_REQ_MAY_UNMAP :
                kind == OP_WRITE && rng_percent(&m->rng, 3) ? SD_REQ_FUA : 0);
    return true;
}

static void report_mismatch(const char *what, uint64_t seq, uint64_t off,
                            const uint8_t *got, const uint8_t *want,
                            uint64_t len)
{
    uint64_t i = 0;

    while (i < len && got[i] == want[i])
        i++;
    die("%s (op %" PRIu64 "): first difference at image offset %" PRIu64
        " (got 0x%02x, model 0x%02x)", what, seq, off + i, got[i], want[i]);
}

/* Bytes of the backing chain at [off, off + len), zero beyond it. */
static void base_content(const struct model_run *m, uint8_t *out,
                         uint64_t off, uint64_t len)
{
    uint64_t have = 0;

    if (m->base && off < m->base_len)
        have = m->base_len - off < len ? m->base_len - off : len;
    if (have)
        memcpy(out, m->base + off, have);
    memset(out + have, 0, len - have);
}

/* The discard contract (see the note at the top), one sector at a time. */
static void check_discarded(struct model_run *m, const struct slot *s,
                            uint8_t *scratch)
{
    uint64_t end = s->off + s->len;
    uint64_t whole_lo = (s->off + m->cluster - 1) / m->cluster * m->cluster;
    uint64_t whole_hi = end / m->cluster * m->cluster;

    for (uint64_t p = s->off; p < end;) {
        uint64_t next = (p / 512 + 1) * 512;
        uint64_t n = (next < end ? next : end) - p;
        const uint8_t *got = s->buf + (p - s->off);
        bool in_whole = p >= whole_lo && p + n <= whole_hi;

        base_content(m, scratch, p, n);
        if (!is_zero(got, n) && memcmp(got, scratch, n) != 0 &&
            (in_whole || memcmp(got, m->model + p, n) != 0))
            die("discard (op %" PRIu64 ", %" PRIu64 "+%" PRIu64 "): "
                "bytes at %" PRIu64 "+%" PRIu64 " are neither zeros, nor "
                "the backing's data%s", s->seq, s->off, s->len, p, n,
                in_whole ? "" : ", nor the old content");
        p += n;
    }
    memcpy(m->model + s->off, s->buf, s->len);
}

static void complete_slot(struct model_run *m, struct slot *s,
                          uint8_t *scratch)
{
    if (s->ret < 0)
        die("op %" PRIu64 " (%s %" PRIu64 "+%" PRIu64 ") failed: %s",
            s->seq, op_names[s->kind], s->off, s->len, strerror(-s->ret));
    switch (s->kind) {
    case OP_READ:
        if (memcmp(s->buf, m->model + s->off, s->len) != 0)
            report_mismatch("read", s->seq, s->off, s->buf,
                            m->model + s->off, s->len);
        break;
    case OP_WRITE:
        memcpy(m->model + s->off, s->buf, s->len);
        break;
    case OP_ZERO:
    case OP_ZERO_UNMAP:
        memset(m->model + s->off, 0, s->len);
        break;
    case OP_DISCARD:
        if (!s->reading_back) {
            s->reading_back = true;
            submit_slot(m, s, SD_REQ_READ, 0);
            return;
        }
        check_discarded(m, s, scratch);
        break;
    default:
        break;
    }
    s->busy = false;
    m->busy--;
}

static void run_ring_once(struct model_run *m, uint8_t *scratch)
{
    int ret = sd_ring_run_once(&m->ring, true);

    if (ret < 0)
        die("ring: %s", strerror(-ret));
    for (unsigned i = 0; i < m->depth; i++) {
        struct slot *s = &m->slots[i];
        if (s->busy && s->done)
            complete_slot(m, s, scratch);
    }
}

static void drain(struct model_run *m, uint8_t *scratch)
{
    while (m->busy)
        run_ring_once(m, scratch);
}

/* ---- whole-image comparison ---- */

static void compare_whole(struct sd_img *img, const uint8_t *model,
                          uint64_t size, uint8_t *chunk, uint64_t chunk_len,
                          const char *when)
{
    for (uint64_t off = 0; off < size; off += chunk_len) {
        uint64_t n = size - off < chunk_len ? size - off : chunk_len;
        int ret = sd_img_pread(img, chunk, n, off);
        if (ret < 0)
            die("%s: read %" PRIu64 "+%" PRIu64 ": %s", when, off, n,
                strerror(-ret));
        if (memcmp(chunk, model + off, n) != 0)
            report_mismatch(when, 0, off, chunk, model + off, n);
    }
}

static void setup(struct model_run *m, const struct model_args *a)
{
    struct sd_img_info info;
    size_t model_len;
    int ret;

    memset(m, 0, sizeof(*m));
    rng_seed(&m->rng, a->seed);
    ret = sd_ring_init(&m->ring, 256);
    if (ret < 0)
        die("io_uring: %s", strerror(-ret));
    m->img = tool_open_image(a->image_path, true, &m->ring);
    m->size = sd_img_size(m->img);
    ret = sd_img_get_info(m->img, &info);
    if (ret < 0)
        die("info: %s", strerror(-ret));
    m->cluster = info.cluster_size ? info.cluster_size : 65536;
    m->model = read_whole_file(a->model_path, &model_len);
    if (model_len != m->size)
        die("model is %zu bytes, image is %" PRIu64, model_len, m->size);
    if (a->base_path)
        m->base = read_whole_file(a->base_path, &m->base_len);
    m->max_len = a->max_len;
    m->hot_len = m->size < (4 << 20) ? m->size : (4 << 20);
    m->hot_off = rng_below(&m->rng, m->size - m->hot_len + 1) / 512 * 512;
    m->depth = a->depth;
    m->slots = calloc(m->depth, sizeof(*m->slots));
    if (!m->slots)
        die("out of memory");
    for (unsigned i = 0; i < m->depth; i++) {
        /* Page-aligned, so aligned ranges take the O_DIRECT path. */
        void *buf;
        if (posix_memalign(&buf, 4096, m->max_len))
            die("out of memory");
        m->slots[i].buf = buf;
    }
}

static void run_ops(struct model_run *m, const struct model_args *a,
                    uint8_t *chunk, uint64_t chunk_len)
{
    uint64_t seq = 0, next_check = a->check_every;

    while (seq < a->ops) {
        for (unsigned i = 0; i < m->depth && seq < a->ops; i++) {
            if (m->slots[i].busy)
                continue;
            if (!start_op(m, &m->slots[i], seq + 1))
                break;
            seq++;
        }
        run_ring_once(m, chunk);
        if (seq >= next_check) {
            drain(m, chunk);
            compare_whole(m->img, m->model, m->size, chunk, chunk_len,
                          "periodic check");
            next_check += a->check_every;
        }
    }
    drain(m, chunk);
}

int main(int argc, char **argv)
{
    enum { CHUNK = 4 << 20 };
    struct model_args a;
    struct model_run m;
    uint8_t *chunk;
    int ret;

    tool_name = "img-model";
    parse_args(argc, argv, &a);
    setup(&m, &a);
    chunk = malloc(CHUNK > m.max_len ? CHUNK : m.max_len);
    if (!chunk)
        die("out of memory");
    run_ops(&m, &a, chunk, CHUNK);
    compare_whole(m.img, m.model, m.size, chunk, CHUNK, "final check");
    ret = sd_img_close(m.img);
    if (ret < 0)
        die("close: %s", strerror(-ret));
    m.img = tool_open_image(a.image_path, false, &m.ring);
    compare_whole(m.img, m.model, m.size, chunk, CHUNK, "after reopen");
    ret = sd_img_close(m.img);
    if (ret < 0)
        die("close after reopen: %s", strerror(-ret));
    write_whole_file(a.model_path, m.model, m.size);
    printf("img-model: seed %" PRIu64 ": %" PRIu64 " ops ok (", a.seed, a.ops);
    for (int k = 0; k < OP_KINDS; k++)
        printf("%s%s %" PRIu64, k ? ", " : "", op_names[k], m.counts[k]);
    printf(")\n");
    for (unsigned i = 0; i < m.depth; i++)
        free(m.slots[i].buf);
    free(m.slots);
    free(m.model);
    free((void *)m.base);
    free(chunk);
    sd_ring_exit(&m.ring);
    return 0;
}
