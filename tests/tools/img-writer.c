/* SPDX-License-Identifier: MIT */
/*
 * img-writer: writes random, self-describing data into an image through
 * the library's async API and journals what it did, for the crash and
 * power-loss tests; `--verify` checks an image against such a journal
 * (writer-verify.c).
 *
 * Writer rules, on which the verifier relies:
 *  - every op is journaled (S line) before it is submitted, and marked
 *    complete (C line) only after its callback reported success;
 *  - ops in flight at the same time never overlap, so for overlapping ops
 *    submission order is also the order in which they took effect;
 *  - a flush is journaled (FS) before it is submitted, so the C lines
 *    before its FS line are exactly the writes it must make durable; its
 *    FC line carries the write log's size after it completed, an upper
 *    bound of where its own flush record lies in the log. Half the
 *    flushes are barriers (they wait for the ops in flight and no new op
 *    starts until they complete), which keeps that bound tight; the
 *    others overlap with writes.
 *
 * With --ops 0 it runs until it is killed.
 */
#include "config.h"

#include "img-writer.h"

#include "common/ring.h"
#include "qcow2/image.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct wslot {
    bool busy;
    bool done;
    int ret;
    char kind;                 /* w z u d, or f for a flush */
    bool barrier;              /* a flush that holds back new ops */
    uint64_t op;               /* op number, or flush number */
    uint64_t off, len;
    uint8_t *buf;
    struct sd_img_req req;
};

struct writer {
    struct sd_img *img;
    struct sd_ring ring;
    struct tool_rng rng;
    int journal_fd;
    int log_fd;                /* the write log, to learn its size; or -1 */
    uint64_t run;
    uint64_t size;
    uint64_t cluster;
    uint64_t max_len;
    uint64_t flush_every;
    uint64_t next_op, next_flush;
    unsigned barriers;         /* flushes in flight that hold back ops */
    bool draining;             /* a barrier flush waits for idle */
    struct wslot *slots;
    unsigned depth;
    unsigned busy;
};

struct writer_args {
    uint64_t run, seed, ops, max_len, flush_every;
    unsigned depth;
    const char *image_path;
    const char *journal_path;
};

static void usage(void)
{
    fprintf(stderr,
            "usage: img-writer --run N --journal FILE [--seed N] [--ops N]\n"
            "                  [--depth N] [--max-len SIZE] [--flush-every N]"
            " IMAGE\n"
            "       img-writer --verify --journal FILE [--initial RAW]\n"
            "                  [--cut-offset N] IMAGE\n");
    exit(2);
}

static void journal(struct writer *w, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void journal(struct writer *w, const char *fmt, ...)
{
    char line[160];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(line))
        die("journal line too long");
    write_all(w->journal_fd, line, (size_t)n);
}

static uint64_t log_size(const struct writer *w)
{
    struct stat st;

    if (w->log_fd < 0)
        return 0;
    if (fstat(w->log_fd, &st) < 0)
        die("stat write log: %s", strerror(errno));
    return (uint64_t)st.st_size;
}

static void wslot_done(void *opaque, int ret)
{
    struct wslot *s = opaque;

    s->ret = ret;
    s->done = true;
}

static bool overlaps_in_flight(const struct writer *w, uint64_t off,
                               uint64_t len)
{
    for (unsigned i = 0; i < w->depth; i++) {
        const struct wslot *s = &w->slots[i];
        if (s->busy && s->kind != 'f' && off < s->off + s->len &&
            s->off < off + len)
            return true;
    }
    return false;
}

static void pick_range(struct writer *w, uint64_t *off, uint64_t *len)
{
    unsigned style = (unsigned)rng_below(&w->rng, 3);
    uint64_t align = style == 0 ? 1 : style == 1 ? 512 : w->cluster;
    uint64_t max = rng_percent(&w->rng, 60) ? 8192 : w->max_len;
    uint64_t l = 1 + rng_below(&w->rng, max < w->size ? max : w->size);
    uint64_t o;

    l = (l + align - 1) / align * align;
    if (l > w->size)
        l = w->size / align * align;
    o = rng_below(&w->rng, w->size - l + 1) / align * align;
    *off = o;
    *len = l;
}

static char pick_kind(struct writer *w)
{
    unsigned r = (unsigned)rng_below(&w->rng, 100);

    return r < 80 ? 'w' : r < 88 ? 'z' : r < 94 ? 'u' : 'd';
}

static void submit(struct writer *w, struct wslot *s)
{
    static const char *const kinds = "wzudf";
    static const enum sd_req_type types[] = {
        SD_REQ_WRITE, SD_REQ_ZERO, SD_REQ_ZERO, SD_REQ_DISCARD, SD_REQ_FLUSH,
    };
    int i = (int)(strchr(kinds, s->kind) - kinds);
    int ret;

    s->req = (struct sd_img_req){
        .type = types[i], .offset = s->off, .length = s->len,
        .buf = s->kind == 'w' ? s->buf : NULL,
        .flags = s->kind == 'u' ? SD_REQ_MAY_UNMAP : 0,
        .cb = wslot_done, .opaque = s,
    };
    s->busy = true;
    s->done = false;
    w->busy++;
    ret = sd_img_submit(w->img, &s->req);
    if (ret < 0)
        die("run %" PRIu64 " op %" PRIu64 " (%c): submit: %s", w->run,
            s->op, s->kind, strerror(-ret));
}

static void start_flush(struct writer *w, struct wslot *s)
{
    s->kind = 'f';
    s->op = ++w->next_flush;
    s->off = s->len = 0;
    journal(w, "FS %" PRIu64 " %" PRIu64 "\n", w->run, s->op);
    submit(w, s);
}

/* Start a random op in s; false when no free range turned up. */
static bool start_op(struct writer *w, struct wslot *s)
{
    uint64_t off, len;
    int tries = 0;

    do {
        if (tries++ == 8)
            return false;
        pick_range(w, &off, &len);
    } while (overlaps_in_flight(w, off, len));
    s->kind = pick_kind(w);
    s->op = ++w->next_op;
    s->off = off;
    s->len = len;
    if (s->kind == 'w')
        pattern_fill(s->buf, len, writer_key(w->run, s->op), off);
    journal(w, "S %" PRIu64 " %" PRIu64 " %c %" PRIu64 " %" PRIu64 "\n",
            w->run, s->op, s->kind, off, len);
    submit(w, s);
    return true;
}

static void complete(struct writer *w, struct wslot *s)
{
    if (s->ret < 0)
        die("run %" PRIu64 " %s %" PRIu64 " (%c %" PRIu64 "+%" PRIu64
            ") failed: %s", w->run, s->kind == 'f' ? "flush" : "op", s->op,
            s->kind, s->off, s->len, strerror(-s->ret));
    if (s->barrier)
        w->barriers--;
    s->barrier = false;
    if (s->kind == 'f')
        journal(w, "FC %" PRIu64 " %" PRIu64 " %" PRIu64 "\n", w->run,
                s->op, log_size(w));
    else
        journal(w, "C %" PRIu64 " %" PRIu64 "\n", w->run, s->op);
    s->busy = false;
    w->busy--;
}

static void run_ring_once(struct writer *w)
{
    int ret = sd_ring_run_once(&w->ring, true);

    if (ret < 0)
        die("ring: %s", strerror(-ret));
    for (unsigned i = 0; i < w->depth; i++) {
        struct wslot *s = &w->slots[i];
        if (s->busy && s->done)
            complete(w, s);
    }
}

/* A barrier flush waits for the ops in flight, then runs alone. */
static void start_barrier_when_idle(struct writer *w)
{
    if (w->busy)
        return;
    w->draining = false;
    w->slots[0].barrier = true;
    w->barriers++;
    start_flush(w, &w->slots[0]);
}

static void fill_slots(struct writer *w, uint64_t ops, uint64_t *since_flush)
{
    if (w->draining)
        start_barrier_when_idle(w);
    for (unsigned i = 0; i < w->depth; i++) {
        struct wslot *s = &w->slots[i];
        if (s->busy)
            continue;
        if (w->barriers || w->draining || (ops && w->next_op >= ops))
            return;
        if (w->flush_every && *since_flush >= w->flush_every) {
            *since_flush = 0;
            if (rng_percent(&w->rng, 50)) {
                w->draining = true;
                start_barrier_when_idle(w);
            } else {
                start_flush(w, s);
            }
            continue;
        }
        if (!start_op(w, s))
            return;
        (*since_flush)++;
    }
}

static void writer_setup(struct writer *w, const struct writer_args *a)
{
    const char *log_path = getenv("SENDENSE_WRITE_LOG");
    struct sd_img_info info;
    int ret;

    memset(w, 0, sizeof(*w));
    w->run = a->run;
    w->depth = a->depth;
    w->max_len = a->max_len;
    w->flush_every = a->flush_every;
    rng_seed(&w->rng, a->seed ^ mix64(a->run));
    w->journal_fd = open(a->journal_path,
                         O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (w->journal_fd < 0)
        die("%s: %s", a->journal_path, strerror(errno));
    w->log_fd = -1;
    ret = sd_ring_init(&w->ring, 256);
    if (ret < 0)
        die("io_uring: %s", strerror(-ret));
    w->img = tool_open_image(a->image_path, true, &w->ring);
    /* The library opens (and may create) the log when it opens the image. */
    if (log_path && *log_path) {
        w->log_fd = open(log_path, O_RDONLY | O_CLOEXEC);
        if (w->log_fd < 0)
            die("%s: %s", log_path, strerror(errno));
    }
    w->size = sd_img_size(w->img);
    ret = sd_img_get_info(w->img, &info);
    if (ret < 0)
        die("info: %s", strerror(-ret));
    w->cluster = info.cluster_size ? info.cluster_size : 65536;
    if (w->cluster > w->size)
        w->cluster = 512;
    w->slots = calloc(w->depth, sizeof(*w->slots));
    if (!w->slots)
        die("out of memory");
    for (unsigned i = 0; i < w->depth; i++) {
        w->slots[i].buf = malloc(w->max_len + w->cluster);
        if (!w->slots[i].buf)
            die("out of memory");
    }
}

static void writer_finish(struct writer *w)
{
    int ret;

    /* A last flush, journaled like the others, then a clean close. */
    start_flush(w, &w->slots[0]);
    while (w->busy)
        run_ring_once(w);
    ret = sd_img_close(w->img);
    if (ret < 0)
        die("close: %s", strerror(-ret));
    for (unsigned i = 0; i < w->depth; i++)
        free(w->slots[i].buf);
    free(w->slots);
    sd_ring_exit(&w->ring);
    if (w->log_fd >= 0)
        close(w->log_fd);
    if (close(w->journal_fd) < 0)
        die("journal: %s", strerror(errno));
}

static int run_writer(const struct writer_args *a)
{
    struct writer w;
    uint64_t since_flush = 0;

    writer_setup(&w, a);
    for (;;) {
        fill_slots(&w, a->ops, &since_flush);
        if (!w.busy)
            break;              /* every op issued and completed */
        run_ring_once(&w);
    }
    writer_finish(&w);
    printf("img-writer: run %" PRIu64 ": %" PRIu64 " ops, %" PRIu64
           " flushes\n", a->run, w.next_op, w.next_flush);
    return 0;
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "run", required_argument, NULL, 'r' },
        { "seed", required_argument, NULL, 's' },
        { "ops", required_argument, NULL, 'n' },
        { "depth", required_argument, NULL, 'd' },
        { "max-len", required_argument, NULL, 'm' },
        { "flush-every", required_argument, NULL, 'f' },
        { "journal", required_argument, NULL, 'j' },
        { "verify", no_argument, NULL, 'V' },
        { "initial", required_argument, NULL, 'i' },
        { "cut-offset", required_argument, NULL, 'c' },
        { NULL, 0, NULL, 0 },
    };
    struct writer_args a = { .seed = 1, .ops = 1000, .depth = 16,
                             .max_len = 1 << 20 };
    struct verify_args v = { 0 };
    bool verify = false;
    int c;

    tool_name = "img-writer";
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case 'r': a.run = parse_size("run", optarg); break;
        case 's': a.seed = parse_size("seed", optarg); break;
        case 'n': a.ops = parse_size("ops", optarg); break;
        case 'd': a.depth = (unsigned)parse_size("depth", optarg); break;
        case 'm': a.max_len = parse_size("max-len", optarg); break;
        case 'f': a.flush_every = parse_size("flush-every", optarg); break;
        case 'j': a.journal_path = v.journal_path = optarg; break;
        case 'V': verify = true; break;
        case 'i': v.initial_path = optarg; break;
        case 'c':
            v.cut_offset = parse_size("cut-offset", optarg);
            v.have_cut = true;
            break;
        default: usage();
        }
    }
    if (argc - optind != 1 || !a.journal_path)
        usage();
    a.image_path = v.image_path = argv[optind];
    if (verify)
        return writer_verify(&v);
    if (a.run == 0 || a.run >= (1ULL << 31) || a.depth == 0 || !a.max_len)
        usage();
    return run_writer(&a);
}
