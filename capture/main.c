/* SPDX-License-Identifier: MIT */
/* sendense-capture: flags, then the one command, copy. */
#include "config.h"

#include "capture/capture.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char usage_text[] =
    "usage: sendense-capture copy [OPTIONS] SOURCE TARGET_URI\n"
    "  SOURCE: a raw file or block device, or nbd://, nbd+unix:// (nbds...)\n"
    "  --changes FILE.json   copy only the change list's areas\n"
    "  --bitmap NAME         copy only the source's qemu:dirty-bitmap:NAME extents\n"
    "  --target-is-zero      the target reads as zeros: skip zero extents\n"
    "  --connections N       target connections if it allows multi-conn (4)\n"
    "  --inflight N          requests in flight, all connections (32)\n"
    "  --request-size SIZE   largest request (32M)\n"
    "  --flush-every SIZE    FLUSH after this many bytes (4G), and at the end\n"
    "  --json                progress and summary as JSON lines on stdout\n"
    "  --quiet               no progress\n";

struct args {
    const char *source, *target, *changes, *bitmap;
    struct cap_copy_opts copy;
    enum cap_progress_mode progress;
};

static int error_line(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* A usage error: one line, exit status 2. */
static int error_line(const char *fmt, ...)
{
    va_list ap;

    fputs("sendense-capture: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return 2;
}

/* A size: digits with an optional K, M, G or T (powers of 1024). */
static int parse_size(const char *s, uint64_t *out)
{
    char *end;
    uint64_t v;
    int shift = 0;

    errno = 0;
    if (s[0] < '0' || s[0] > '9')
        return -EINVAL;
    v = strtoull(s, &end, 10);
    if (errno)
        return -EINVAL;
    switch (*end) {
    case 'K': case 'k': shift = 10; end++; break;
    case 'M': case 'm': shift = 20; end++; break;
    case 'G': case 'g': shift = 30; end++; break;
    case 'T': case 't': shift = 40; end++; break;
    default: break;
    }
    if (*end || v == 0 || v > (UINT64_MAX >> shift))
        return -EINVAL;
    *out = v << shift;
    return 0;
}

static int parse_count(const char *s, int max, int *out)
{
    uint64_t v;

    if (parse_size(s, &v) < 0 || v > (uint64_t)max || strspn(s, "0123456789") != strlen(s))
        return -EINVAL;
    *out = (int)v;
    return 0;
}

static int parse_args(int argc, char **argv, struct args *a)
{
    enum { O_CHANGES = 256, O_BITMAP, O_ZERO, O_CONNS, O_INFLIGHT, O_REQ, O_FLUSH,
           O_JSON, O_QUIET, O_HELP };
    static const struct option opts[] = {
        { "changes", required_argument, NULL, O_CHANGES },
        { "bitmap", required_argument, NULL, O_BITMAP },
        { "target-is-zero", no_argument, NULL, O_ZERO },
        { "connections", required_argument, NULL, O_CONNS },
        { "inflight", required_argument, NULL, O_INFLIGHT },
        { "request-size", required_argument, NULL, O_REQ },
        { "flush-every", required_argument, NULL, O_FLUSH },
        { "json", no_argument, NULL, O_JSON },
        { "quiet", no_argument, NULL, O_QUIET },
        { "help", no_argument, NULL, O_HELP },
        { 0 },
    };
    int c;

    *a = (struct args){ .copy = { .connections = 4, .inflight = 32,
                                  .request_size = 32 << 20,
                                  .flush_every = UINT64_C(4) << 30 } };
    if (argc < 2 || strcmp(argv[1], "--help") == 0) {
        fputs(usage_text, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 1;
    }
    if (strcmp(argv[1], "copy") != 0)
        return error_line("unknown command \"%s\" (try --help)", argv[1]);
    optind = 2;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case O_CHANGES: a->changes = optarg; break;
        case O_BITMAP: a->bitmap = optarg; break;
        case O_ZERO: a->copy.target_is_zero = true; break;
        case O_JSON: a->progress = CAP_PROGRESS_JSON; break;
        case O_QUIET: a->progress = CAP_PROGRESS_NONE; break;
        case O_HELP: fputs(usage_text, stdout); return 1;
        case O_CONNS:
            if (parse_count(optarg, 64, &a->copy.connections) < 0)
                return error_line("--connections: not a number in 1..64: %s", optarg);
            break;
        case O_INFLIGHT:
            if (parse_count(optarg, 1024, &a->copy.inflight) < 0)
                return error_line("--inflight: not a number in 1..1024: %s", optarg);
            break;
        case O_REQ:
            if (parse_size(optarg, &a->copy.request_size) < 0 ||
                a->copy.request_size % 512 || a->copy.request_size > (32 << 20))
                return error_line("--request-size: a multiple of 512 up to 32M: %s", optarg);
            break;
        case O_FLUSH:
            if (parse_size(optarg, &a->copy.flush_every) < 0)
                return error_line("--flush-every: not a size: %s", optarg);
            break;
        default:
            return 2;
        }
    }
    if (argc - optind != 2)
        return error_line("copy needs SOURCE and TARGET_URI (try --help)");
    if (a->changes && a->bitmap)
        return error_line("--changes and --bitmap cannot be used together");
    if (a->bitmap && (!a->bitmap[0] || strlen(a->bitmap) > 255))
        return error_line("--bitmap: a name of 1 to 255 bytes");
    a->source = argv[optind];
    a->target = argv[optind + 1];
    a->copy.target = a->target;
    return 0;
}

/* What to copy: the source's map, a change list, or a dirty bitmap. */
static int plan(const struct args *a, struct cap_source *src, struct cap_extents *ext,
                struct sd_error *err)
{
    struct cap_changes ch;
    int ret;

    if (a->bitmap)
        return cap_source_dirty(src, a->bitmap, ext, err);
    if (!a->changes)
        return cap_source_map(src, ext, err);
    ret = cap_changes_load(a->changes, &ch, err);
    if (ret < 0)
        return ret;
    if (ch.areas.n && ch.areas.v[ch.areas.n - 1].off + ch.areas.v[ch.areas.n - 1].len >
                          src->size)
        ret = sd_error_set(err, -EINVAL, "%s: an area ends beyond the source (%llu bytes)",
                           a->changes, (unsigned long long)src->size);
    *ext = ch.areas;
    ch.areas = (struct cap_extents){ 0 };
    cap_changes_free(&ch);
    return ret;
}

static int run(const struct args *a, struct sd_error *err)
{
    struct cap_source src;
    struct cap_extents ext = { 0 }, kept = { 0 }, reqs = { 0 };
    struct cap_counters c = { 0 };
    struct cap_progress p;
    int ret;

    cap_progress_init(&p, a->progress);
    ret = cap_source_open(&src, a->source, a->bitmap, err);
    if (ret < 0)
        return ret;
    ret = plan(a, &src, &ext, err);
    /* Zero extents on a target known to be zero need no request. */
    for (size_t i = 0; ret == 0 && i < ext.n; i++)
        if (!(ext.v[i].zero && a->copy.target_is_zero))
            ret = cap_extents_add(&kept, ext.v[i].off, ext.v[i].len, ext.v[i].zero);
    if (ret == 0)
        ret = cap_extents_split(&kept, a->copy.request_size, &reqs);
    if (ret == -ENOMEM)
        sd_error_set(err, ret, "out of memory");
    if (ret == 0) {
        c.total = src.size;
        c.skipped = src.size - cap_extents_bytes(&kept, false) - cap_extents_bytes(&kept, true);
        ret = cap_copy(&src, &reqs, &a->copy, &c, &p, err);
    }
    if (ret == 0) {
        cap_progress_update(&p, &c, true);
        cap_progress_summary(&p, &c);
    }
    cap_extents_free(&ext);
    cap_extents_free(&kept);
    cap_extents_free(&reqs);
    cap_source_close(&src);
    return ret;
}

int main(int argc, char **argv)
{
    struct args a;
    struct sd_error err = { 0 };
    int ret = parse_args(argc, argv, &a);

    if (ret == 1)
        return 0;               /* --help */
    if (ret)
        return ret;
    /* A closed connection is an error to report, not a signal to die of. */
    signal(SIGPIPE, SIG_IGN);
    if (run(&a, &err) < 0) {
        /* End a progress bar's line first. */
        if (a.progress == CAP_PROGRESS_AUTO && isatty(STDERR_FILENO))
            fputc('\n', stderr);
        fprintf(stderr, "sendense-capture: %s\n", err.msg[0] ? err.msg : "copy failed");
        return 1;
    }
    return 0;
}
