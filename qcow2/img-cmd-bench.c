/* SPDX-License-Identifier: MIT */
/*
 * sendense-img bench: the same workload as `qemu-img bench`, on our engine.
 *
 * Notes on the design.
 *
 * The flags mean what qemu-img bench's mean, so that bench/img-bench.sh
 * can run one workload through both tools and compare: COUNT requests of
 * BUFSIZE bytes, DEPTH of them in flight, the first at OFFSET and each next
 * one STEP bytes further (wrapping at the end of the image), every buffer
 * filled with the byte PATTERN. With --flush-interval=N the queue is
 * drained and flushed each time N more requests have been submitted, as
 * qemu-img bench does by default (its "drain on flush").
 *
 * Requests go through sd_img_submit() on a ring we own. A completion
 * callback runs inside the request's coroutine, so it only hands its slot
 * back; new requests are submitted from the loop below, never from inside
 * a coroutine.
 *
 * Timing covers the requests and the interval flushes, like qemu-img
 * bench's "Run completed in" line; a flush due after the last request is
 * left to close, which flushes a writable image before returning (qemu-img
 * bench does the same at blk_unref). The harness times the whole process
 * as well, so that close's flush is counted for both tools.
 */
#include "config.h"

#include "img-cli.h"

#include "common/coroutine.h"
#include "common/ring.h"
#include "qcow2/image.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum cache_mode {
    CACHE_WRITEBACK,     /* page cache; flush only when asked (default) */
    CACHE_WRITETHROUGH,  /* page cache; every write is FUA */
    CACHE_NONE,          /* O_DIRECT */
    CACHE_DIRECTSYNC,    /* O_DIRECT and every write is FUA */
};

struct bench_opts {
    const char *file;
    enum sd_img_format format;
    enum cache_mode cache;
    bool write;
    bool quiet;
    bool force_share;
    uint64_t count;
    unsigned depth;
    uint64_t bufsize;
    uint64_t offset;
    uint64_t step;           /* 0: bufsize */
    unsigned pattern;
    uint64_t flush_interval; /* 0: never */
};

struct bench_run;

/* One request in flight; slot i owns buf + i * bufsize. */
struct bench_slot {
    struct sd_img_req req;
    struct bench_run *run;
    unsigned index;
};

struct bench_run {
    const struct bench_opts *o;
    struct sd_ring ring;
    struct sd_img *img;
    uint8_t *buf;
    struct bench_slot *slots;
    unsigned *free_slots;     /* stack of idle slot indices */
    unsigned nr_free;
    uint64_t submitted;
    uint64_t completed;
    uint64_t next_offset;
    uint64_t last_flush_at;   /* value of submitted at the last flush */
    int error;                /* first failure, negative errno */
};

enum { MAX_DEPTH = 4096, RING_MIN_ENTRIES = 64 };
static const uint64_t MAX_BUFSIZE = 1ull << 30;

static int parse_number(const char *s, uint64_t max, uint64_t *out)
{
    unsigned long long v;
    char *end;

    if (!s || !*s || *s == '-')
        return -EINVAL;
    errno = 0;
    v = strtoull(s, &end, 0);
    if (errno || end == s || *end || v > max)
        return -EINVAL;
    *out = v;
    return 0;
}

static int parse_cache(const char *s, enum cache_mode *out)
{
    static const struct { const char *name; enum cache_mode mode; } modes[] = {
        { "writeback", CACHE_WRITEBACK },
        { "writethrough", CACHE_WRITETHROUGH },
        { "none", CACHE_NONE },
        { "directsync", CACHE_DIRECTSYNC },
    };

    for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
        if (strcmp(s, modes[i].name) == 0) {
            *out = modes[i].mode;
            return 0;
        }
    }
    return -EINVAL;
}

enum { OPT_PATTERN = 256, OPT_FLUSH_INTERVAL };

static int bad_value(const char *what, const char *arg)
{
    cli_fail("bench: invalid %s '%s'", what, arg);
    return -EINVAL;
}

/* Handle one option; returns 0 or -EINVAL after saying why. */
static int parse_one(int c, const char *arg, struct bench_opts *o)
{
    uint64_t v;

    switch (c) {
    case 'c':
        return parse_number(arg, INT_MAX, &o->count) ? bad_value("count", arg) : 0;
    case 'd':
        if (parse_number(arg, MAX_DEPTH, &v) || v == 0)
            return bad_value("depth", arg);
        o->depth = (unsigned)v;
        return 0;
    case 'f':
        return cli_parse_format(arg, true, &o->format) ? bad_value("format", arg) : 0;
    case 'o':
        return cli_parse_size(arg, &o->offset) ? bad_value("offset", arg) : 0;
    case 's':
        if (cli_parse_size(arg, &o->bufsize) || !o->bufsize || o->bufsize > MAX_BUFSIZE)
            return bad_value("buffer size", arg);
        return 0;
    case 'S':
        if (cli_parse_size(arg, &o->step) || o->step > MAX_BUFSIZE)
            return bad_value("step size", arg);
        return 0;
    case 't':
        return parse_cache(arg, &o->cache) ? bad_value("cache mode", arg) : 0;
    case 'w':
        o->write = true;
        return 0;
    case 'q':
        o->quiet = true;
        return 0;
    case 'U':
        o->force_share = true;
        return 0;
    case OPT_PATTERN:
        if (parse_number(arg, 0xff, &v))
            return bad_value("pattern byte", arg);
        o->pattern = (unsigned)v;
        return 0;
    case OPT_FLUSH_INTERVAL:
        return parse_number(arg, INT_MAX, &o->flush_interval) ?
               bad_value("flush interval", arg) : 0;
    default:            /* '?' or ':' from getopt */
        return -EINVAL;
    }
}

/* Returns 0, or -EINVAL after saying why. */
static int parse_args(int argc, char **argv, struct bench_opts *o)
{
    static const struct option longopts[] = {
        { "pattern", required_argument, NULL, OPT_PATTERN },
        { "flush-interval", required_argument, NULL, OPT_FLUSH_INTERVAL },
        { NULL, 0, NULL, 0 },
    };
    int c;

    *o = (struct bench_opts){ .count = 75000, .depth = 64, .bufsize = 4096 };
    optind = 0;     /* glibc: start over whatever parsed argv before us */
    while ((c = getopt_long(argc, argv, ":c:d:f:o:qs:S:t:wU", longopts,
                            NULL)) != -1) {
        if (c == '?' || c == ':') {
            cli_bad_option("bench", c, argv);
            return -EINVAL;
        }
        if (parse_one(c, optarg, o) < 0)
            return -EINVAL;
    }
    if (optind != argc - 1) {
        cli_fail("bench: expecting one image file name (see '%s bench "
                 "--help')", CLI_PROG);
        return -EINVAL;
    }
    o->file = argv[optind];
    if (o->flush_interval && !o->write) {
        cli_fail("bench: --flush-interval is only available in write tests");
        return -EINVAL;
    }
    if (o->flush_interval && o->flush_interval < o->depth) {
        cli_fail("bench: flush interval can't be smaller than depth");
        return -EINVAL;
    }
    if (!o->step)
        o->step = o->bufsize;
    return 0;
}

static void slot_done(void *opaque, int ret)
{
    struct bench_slot *slot = opaque;
    struct bench_run *run = slot->run;

    if (ret < 0 && run->error == 0)
        run->error = ret;
    run->completed++;
    run->free_slots[run->nr_free++] = slot->index;
}

/* Offset of the request after one at off; wraps at the end of the image
 * so that a request never runs past it. */
static uint64_t advance_offset(const struct bench_run *run, uint64_t off)
{
    uint64_t size = sd_img_size(run->img);
    uint64_t next = off + run->o->step;

    next = size ? next % size : 0;
    if (next + run->o->bufsize > size)
        next = 0;
    return next;
}

static int submit_one(struct bench_run *run)
{
    const struct bench_opts *o = run->o;
    unsigned i = run->free_slots[run->nr_free - 1];
    struct bench_slot *slot = &run->slots[i];
    bool sync_writes = o->cache == CACHE_WRITETHROUGH ||
                       o->cache == CACHE_DIRECTSYNC;
    int ret;

    slot->req = (struct sd_img_req){
        .type = o->write ? SD_REQ_WRITE : SD_REQ_READ,
        .offset = run->next_offset,
        .length = o->bufsize,
        .buf = run->buf + (size_t)i * o->bufsize,
        .flags = o->write && sync_writes ? SD_REQ_FUA : 0,
        .cb = slot_done,
        .opaque = slot,
    };
    /* Counted first: the request may complete inside sd_img_submit(). */
    run->nr_free--;
    run->submitted++;
    ret = sd_img_submit(run->img, &slot->req);
    if (ret < 0) {
        run->nr_free++;
        run->submitted--;
        return ret;
    }
    run->next_offset = advance_offset(run, run->next_offset);
    return 0;
}

/* A flush is due once flush_interval more requests were submitted; none is
 * due after the last request (close flushes then). */
static bool flush_due(const struct bench_run *run)
{
    uint64_t fi = run->o->flush_interval;

    return fi && run->submitted < run->o->count &&
           run->submitted != run->last_flush_at && run->submitted % fi == 0;
}

static unsigned in_flight(const struct bench_run *run)
{
    return (unsigned)(run->submitted - run->completed);
}

static int fill_queue(struct bench_run *run)
{
    while (run->nr_free && run->submitted < run->o->count &&
           !flush_due(run) && run->error == 0) {
        int ret = submit_one(run);
        if (ret < 0)
            return ret;
    }
    return 0;
}

/* Wait for at least one event while requests are in flight; fails when
 * nothing could ever wake them. */
static int wait_progress(struct bench_run *run)
{
    uint64_t before = run->completed;
    int ret = sd_ring_run_once(&run->ring, true);

    if (ret < 0)
        return ret;
    if (run->completed == before && run->ring.in_flight == 0 &&
        co_run_ready() == 0)
        return -EDEADLK;
    return 0;
}

static int run_requests(struct bench_run *run)
{
    int ret;

    while (run->completed < run->o->count || in_flight(run)) {
        if (run->error && !in_flight(run))
            break;
        ret = fill_queue(run);
        if (ret < 0 && !in_flight(run))
            return ret;
        if (ret < 0 && run->error == 0)
            run->error = ret;
        if (flush_due(run) && !in_flight(run) && run->error == 0) {
            run->last_flush_at = run->submitted;
            ret = sd_img_flush(run->img);
            if (ret < 0)
                return ret;
            continue;
        }
        if (!in_flight(run))
            continue;       /* everything completed during submission */
        ret = wait_progress(run);
        if (ret < 0)
            return ret;
    }
    return run->error;
}

static double now_seconds(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int alloc_queue(struct bench_run *run)
{
    const struct bench_opts *o = run->o;
    size_t total = (size_t)o->depth * o->bufsize;

    if (posix_memalign((void **)&run->buf, 4096, total))
        return -ENOMEM;
    memset(run->buf, (int)o->pattern, total);
    run->slots = calloc(o->depth, sizeof(*run->slots));
    run->free_slots = calloc(o->depth, sizeof(*run->free_slots));
    if (!run->slots || !run->free_slots)
        return -ENOMEM;
    for (unsigned i = 0; i < o->depth; i++) {
        run->slots[i].run = run;
        run->slots[i].index = i;
        run->free_slots[o->depth - 1 - i] = i;   /* slot 0 goes first */
    }
    run->nr_free = o->depth;
    return 0;
}

static void free_queue(struct bench_run *run)
{
    free(run->buf);
    free(run->slots);
    free(run->free_slots);
}

static unsigned ring_entries(unsigned depth)
{
    unsigned n = RING_MIN_ENTRIES;

    while (n < 2 * depth && n < MAX_DEPTH)
        n <<= 1;
    return n;
}

static int open_image(struct bench_run *run)
{
    const struct bench_opts *o = run->o;
    struct sd_img_open_opts oo = {
        .format = o->format,
        .writable = o->write,
        .direct = o->cache == CACHE_NONE || o->cache == CACHE_DIRECTSYNC,
        .force_share = o->force_share,
        .ring = &run->ring,
    };
    struct sd_error err;
    int ret = sd_img_open(&run->img, o->file, &oo, &err);

    if (ret < 0)
        cli_fail("bench: %s", err.msg[0] ? err.msg : strerror(-ret));
    return ret;
}

static void print_header(const struct bench_opts *o)
{
    if (o->quiet)
        return;
    printf("Sending %" PRIu64 " %s requests, %" PRIu64 " bytes each, %u in "
           "parallel (starting at offset %" PRIu64 ", step size %" PRIu64 ")\n",
           o->count, o->write ? "write" : "read", o->bufsize, o->depth,
           o->offset, o->step);
    if (o->flush_interval)
        printf("Sending flush every %" PRIu64 " requests\n", o->flush_interval);
}

static int bench_run(const struct bench_opts *o)
{
    struct bench_run run = { .o = o, .next_offset = o->offset };
    double t0, t1;
    int ret, close_ret;

    ret = sd_ring_init(&run.ring, ring_entries(o->depth));
    if (ret < 0) {
        cli_fail("bench: io_uring: %s", strerror(-ret));
        return ret;
    }
    ret = open_image(&run);
    if (ret < 0)
        goto out_ring;
    if (o->offset + o->bufsize > sd_img_size(run.img)) {
        cli_fail("bench: offset %" PRIu64 " + buffer size %" PRIu64
                 " is past the end of '%s'", o->offset, o->bufsize, o->file);
        ret = -EINVAL;
        goto out_close;
    }
    ret = alloc_queue(&run);
    if (ret < 0) {
        cli_fail("bench: out of memory");
        goto out_close;
    }
    print_header(o);
    fflush(stdout);
    t0 = now_seconds();
    ret = run_requests(&run);
    t1 = now_seconds();
    if (ret < 0)
        cli_fail("bench: %s: request failed: %s", o->file, strerror(-ret));
    else
        printf("Run completed in %.3f seconds.\n", t1 - t0);

out_close:
    close_ret = sd_img_close(run.img);
    if (close_ret < 0 && ret == 0) {
        cli_fail("bench: %s: flush at close failed: %s", o->file,
                 strerror(-close_ret));
        ret = close_ret;
    }
    free_queue(&run);
out_ring:
    sd_ring_exit(&run.ring);
    return ret;
}

static int bench_main(int argc, char **argv)
{
    struct bench_opts o;

    if (parse_args(argc, argv, &o) < 0)
        return 1;
    return bench_run(&o) < 0 ? 1 : 0;
}

const struct img_cmd img_cmd_bench = {
    .name = "bench",
    .summary = "time sequential reads or writes (as qemu-img bench does)",
    .usage =
        "Usage: sendense-img bench [-f FMT] [-w] [-c COUNT] [-d DEPTH] [-s BUFSIZE]\n"
        "                          [-o OFFSET] [-S STEP] [-t CACHE] [-q] [-U]\n"
        "                          [--pattern=N] [--flush-interval=N] FILE\n"
        "\n"
        "Send COUNT requests (default 75000) of BUFSIZE bytes (default 4K),\n"
        "DEPTH of them in flight (default 64), the first at OFFSET (default 0)\n"
        "and each next one STEP bytes further (default BUFSIZE), wrapping at\n"
        "the end of the image; reads unless -w. Prints\n"
        "'Run completed in SECONDS seconds.' Flags mean what they mean for\n"
        "qemu-img bench, so both tools can run the same workload.\n"
        "\n"
        "  -f FMT               raw or qcow2 (default: probe)\n"
        "  -w                   write (the file is opened writable)\n"
        "  -t CACHE             writeback (default), writethrough, none,\n"
        "                       directsync\n"
        "  -U                   do not take the image locks (force share)\n"
        "  -q                   print only the result line\n"
        "  --pattern=N          fill the write buffers with byte N (default 0)\n"
        "  --flush-interval=N   drain the queue and flush every N requests\n"
        "                       (writes only; N >= DEPTH)\n",
    .run = bench_main,
};
