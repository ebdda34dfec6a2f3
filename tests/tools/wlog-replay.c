/* SPDX-License-Identifier: MIT */
/*
 * wlog-replay: rebuild a file as a power cut may have left it.
 *
 * Input: a copy of the file as it was before the run (modified in place),
 * and the write log the library kept during the run (write-log.h). The
 * log holds each write, zero and truncate in the order it completed, and
 * each flush in the order it was submitted. Cutting at flush k means that
 * flush completed and the next one did not, so:
 *  - every record before flush k is applied (the flush made it durable);
 *  - of the records between flush k and flush k+1 (or the end), a random
 *    subset is applied, in log order: each may or may not have reached
 *    the disk. With --torn the subset is drawn per 512-byte sector, since
 *    a power cut can persist part of a write;
 *  - records after flush k+1 are dropped: they completed after that
 *    flush was submitted, and the engine may have waited for it.
 * Flush 0 cuts before the first flush.
 *
 * It prints the log offset just past flush k's record (0 for k = 0), which
 * is what `img-writer --verify --cut-offset` takes.
 *
 *   wlog-replay --count LOG
 *   wlog-replay --dump LOG        (one line per record, for reproducers)
 *   wlog-replay --flush K [--seed N] [--percent P] [--torn] LOG FILE
 */
#include "config.h"

#include "tool-util.h"

#include "qcow2/write-log.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

enum { SECTOR = 512 };

struct record {
    uint32_t type;
    uint64_t offset, len;
    const uint8_t *data;       /* WRITE only */
    uint64_t end_pos;          /* log offset just past the record */
};

struct log_view {
    const uint8_t *map;
    size_t size;
    size_t pos;
};

struct replay_args {
    const char *log_path;
    const char *file_path;
    uint64_t flush;
    uint64_t seed;
    unsigned percent;
    bool torn;
    bool count;
    bool dump;
};

static void log_open(struct log_view *v, const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;

    if (fd < 0 || fstat(fd, &st) < 0)
        die("%s: %s", path, strerror(errno));
    v->size = (size_t)st.st_size;
    v->pos = 0;
    v->map = NULL;
    if (v->size) {
        v->map = mmap(NULL, v->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (v->map == MAP_FAILED)
            die("mmap %s: %s", path, strerror(errno));
    }
    close(fd);
}

/* The next record, or false at the end of the log. */
static bool log_next(struct log_view *v, struct record *r)
{
    struct wlog_record h;
    uint64_t data_len;

    if (v->pos == v->size)
        return false;
    if (v->size - v->pos < sizeof(h))
        die("log: truncated record header at %zu", v->pos);
    memcpy(&h, v->map + v->pos, sizeof(h));
    if (le32toh(h.magic) != WLOG_MAGIC)
        die("log: bad magic at %zu", v->pos);
    r->type = le32toh(h.type);
    r->offset = le64toh(h.offset);
    r->len = le64toh(h.len);
    if (r->type < WLOG_WRITE || r->type > WLOG_TRUNCATE)
        die("log: unknown record type %u at %zu", r->type, v->pos);
    data_len = r->type == WLOG_WRITE ? r->len : 0;
    if (v->size - v->pos - sizeof(h) < data_len)
        die("log: truncated record data at %zu", v->pos);
    r->data = v->map + v->pos + sizeof(h);
    v->pos += sizeof(h) + data_len;
    r->end_pos = v->pos;
    return true;
}

/* ---- applying records ---- */

static void pwrite_all(int fd, const void *buf, uint64_t len, uint64_t off)
{
    const char *p = buf;

    while (len) {
        ssize_t n = pwrite(fd, p, len, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            die("pwrite: %s", n < 0 ? strerror(errno) : "short write");
        p += n;
        off += (uint64_t)n;
        len -= (uint64_t)n;
    }
}

/* Zeros over [off, off + len); like fallocate(ZERO_RANGE) the file grows
 * to cover the range (a punched hole past the end would not; a longer
 * file with zeros at its end is harmless to the checks). */
static void apply_zero(int fd, uint64_t off, uint64_t len)
{
    static const uint8_t zeros[64 * 1024];
    struct stat st;
    uint64_t end = off + len, size;

    if (fstat(fd, &st) < 0)
        die("fstat: %s", strerror(errno));
    size = (uint64_t)st.st_size;
    if (end > size && ftruncate(fd, (off_t)end) < 0)
        die("ftruncate: %s", strerror(errno));
    end = end < size ? end : size;
    for (uint64_t p = off; p < end;) {
        uint64_t n = end - p < sizeof(zeros) ? end - p : sizeof(zeros);
        pwrite_all(fd, zeros, n, p);
        p += n;
    }
}

/* Apply the part [off, off + len) of record r. */
static void apply_part(int fd, const struct record *r, uint64_t off,
                       uint64_t len)
{
    switch (r->type) {
    case WLOG_WRITE:
        pwrite_all(fd, r->data + (off - r->offset), len, off);
        break;
    case WLOG_ZERO:
        apply_zero(fd, off, len);
        break;
    case WLOG_TRUNCATE:
        if (ftruncate(fd, (off_t)r->offset) < 0)
            die("ftruncate: %s", strerror(errno));
        break;
    default:
        break;
    }
}

static void apply_whole(int fd, const struct record *r)
{
    apply_part(fd, r, r->offset, r->len);
}

/* A record that may have reached the disk in part: each sector of it
 * (aligned to the file, as the disk sees it) lands or not. */
static void apply_torn(int fd, const struct record *r, struct tool_rng *rng,
                       unsigned percent, uint64_t *pieces)
{
    uint64_t end = r->offset + r->len;

    if (r->type == WLOG_TRUNCATE) {
        if (rng_percent(rng, percent))
            apply_whole(fd, r);
        return;
    }
    for (uint64_t p = r->offset; p < end;) {
        uint64_t next = (p / SECTOR + 1) * SECTOR;
        uint64_t n = (next < end ? next : end) - p;
        if (rng_percent(rng, percent)) {
            apply_part(fd, r, p, n);
            (*pieces)++;
        }
        p += n;
    }
}

static uint64_t count_flushes(const char *log_path)
{
    struct log_view v;
    struct record r;
    uint64_t n = 0;

    log_open(&v, log_path);
    while (log_next(&v, &r))
        n += r.type == WLOG_FLUSH;
    if (v.map)
        munmap((void *)v.map, v.size);
    return n;
}

static void dump_log(const char *log_path)
{
    static const char *const names[] = { "?", "WRITE", "FLUSH", "ZERO",
                                         "TRUNCATE" };
    struct log_view v;
    struct record r;
    uint64_t i = 0, flushes = 0;

    log_open(&v, log_path);
    while (log_next(&v, &r)) {
        flushes += r.type == WLOG_FLUSH;
        printf("%" PRIu64 " %s", i++, names[r.type]);
        if (r.type == WLOG_FLUSH)
            printf(" #%" PRIu64, flushes);
        else
            printf(" off 0x%" PRIx64 " len 0x%" PRIx64, r.offset, r.len);
        printf(" end %" PRIu64 "\n", r.end_pos);
    }
    if (v.map)
        munmap((void *)v.map, v.size);
}

static void replay(const struct replay_args *a)
{
    struct log_view v;
    struct record r;
    struct tool_rng rng;
    uint64_t flushes = 0, cut = 0, applied = 0, maybe = 0, landed = 0;
    int fd = open(a->file_path, O_RDWR | O_CLOEXEC);

    if (fd < 0)
        die("%s: %s", a->file_path, strerror(errno));
    rng_seed(&rng, a->seed);
    log_open(&v, a->log_path);
    while (log_next(&v, &r)) {
        if (r.type == WLOG_FLUSH) {
            if (++flushes == a->flush)
                cut = r.end_pos;
            if (flushes > a->flush)
                break;          /* the next flush did not complete */
            continue;
        }
        if (flushes < a->flush) {
            apply_whole(fd, &r);
            applied++;
        } else if (a->torn) {
            maybe++;
            apply_torn(fd, &r, &rng, a->percent, &landed);
        } else if (maybe++, rng_percent(&rng, a->percent)) {
            apply_whole(fd, &r);
            landed++;
        }
    }
    if (flushes < a->flush)
        die("the log has only %" PRIu64 " flushes", flushes);
    if (close(fd) < 0)
        die("%s: %s", a->file_path, strerror(errno));
    if (v.map)
        munmap((void *)v.map, v.size);
    fprintf(stderr, "wlog-replay: flush %" PRIu64 ": %" PRIu64 " records "
            "applied, %" PRIu64 " of %" PRIu64 " later %s landed\n",
            a->flush, applied, landed, maybe, a->torn ? "sectors" : "records");
    printf("%" PRIu64 "\n", cut);
}

static void usage(void)
{
    fprintf(stderr,
            "usage: wlog-replay --count|--dump LOG\n"
            "       wlog-replay --flush K [--seed N] [--percent P] [--torn] "
            "LOG FILE\n");
    exit(2);
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "count", no_argument, NULL, 'c' },
        { "dump", no_argument, NULL, 'D' },
        { "flush", required_argument, NULL, 'k' },
        { "seed", required_argument, NULL, 's' },
        { "percent", required_argument, NULL, 'p' },
        { "torn", no_argument, NULL, 't' },
        { NULL, 0, NULL, 0 },
    };
    struct replay_args a = { .seed = 1, .percent = 50 };
    bool have_flush = false;
    int c;

    tool_name = "wlog-replay";
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case 'c': a.count = true; break;
        case 'D': a.dump = true; break;
        case 'k': a.flush = parse_size("flush", optarg); have_flush = true;
                  break;
        case 's': a.seed = parse_size("seed", optarg); break;
        case 'p': a.percent = (unsigned)parse_size("percent", optarg); break;
        case 't': a.torn = true; break;
        default: usage();
        }
    }
    if (a.count || a.dump) {
        if (argc - optind != 1)
            usage();
        if (a.dump)
            dump_log(argv[optind]);
        else
            printf("%" PRIu64 "\n", count_flushes(argv[optind]));
        return 0;
    }
    if (argc - optind != 2 || !have_flush || a.percent > 100)
        usage();
    a.log_path = argv[optind];
    a.file_path = argv[optind + 1];
    replay(&a);
    return 0;
}
