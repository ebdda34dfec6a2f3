/* SPDX-License-Identifier: MIT */
/*
 * sendense-img map: where each range of the virtual disk comes from, as
 * `qemu-img map` prints it. Extents come from block status resolved
 * through the backing chain; neighbours that say the same thing are
 * merged the way qemu-img merges them.
 *
 * The fields mean what qemu-img's mean: depth is the layer that decides
 * the range (0 = FILE), present whether some layer allocates it, zero and
 * data what reading it gives, offset where the bytes are in that layer's
 * file (every range of a raw layer, qcow2 clusters that have a host
 * cluster; never compressed ones). A range no layer allocates gets the
 * depth of the layer where the chain ends for it: the bottom image, or the
 * first one whose backing file is shorter than the offset. One addition:
 * compressed ranges carry "compressed": true (qemu-img 8.2 prints it too).
 */
#include "config.h"

#include "img-cli.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

static const char usage[] =
    "Usage: " CLI_PROG " map [--json | --output=json|human] [-f FMT]\n"
    "           [--start-offset=N] [--max-length=N] [-U] FILE\n"
    "\n"
    "Show where the data of each range of FILE's virtual disk is.\n"
    "\n"
    "  --json, --output=json   one JSON object per range, like qemu-img map\n"
    "  -f FMT                  raw or qcow2 (default: probe)\n"
    "  -s, --start-offset=N    start at byte N\n"
    "  -l, --max-length=N      map at most N bytes\n"
    "  -U, --force-share       read an image another process has open\n";

struct map_args {
    enum cli_output output;
    enum sd_img_format format;
    bool force_share;
    uint64_t start, max_length;
    const char *file;
};

struct map_entry {
    uint64_t start, length;
    int depth;
    bool present, zero, data, compressed, has_offset;
    uint64_t offset;
    const char *filename;       /* the layer's path; owned by the image */
};

static struct sd_img *layer_at(struct sd_img *top, int depth)
{
    struct sd_img *l = top;

    while (depth-- > 0 && l)
        l = sd_img_backing(l);
    return l;
}

/* The layer where the chain ends for off (see the note at the top). */
static int chain_end_depth(struct sd_img *top, uint64_t off)
{
    int depth = 0;

    for (struct sd_img *l = top;; depth++) {
        struct sd_img *b = sd_img_backing(l);
        if (!b || off >= sd_img_size(b))
            return depth;
        l = b;
    }
}

static void entry_from_extent(struct sd_img *top, const struct sd_extent *e,
                              struct map_entry *m)
{
    struct sd_img *layer;

    *m = (struct map_entry){
        .start = e->offset, .length = e->length, .depth = e->depth,
        .present = e->depth >= 0 && (e->flags & SD_EXT_ALLOCATED),
        .zero = e->flags & SD_EXT_ZERO, .data = e->flags & SD_EXT_DATA,
        .compressed = e->flags & SD_EXT_COMPRESSED,
    };
    if (e->depth < 0) {
        m->depth = chain_end_depth(top, e->offset);
        m->zero = true;
        m->data = false;
    }
    layer = layer_at(top, m->depth);
    m->filename = layer ? sd_img_path(layer) : "";
    if (e->depth < 0 || m->compressed)
        return;
    if (layer && strcmp(sd_img_format_name(layer), "raw") == 0) {
        /* A raw layer maps every byte to the same offset of its file. */
        m->has_offset = true;
        m->offset = e->offset;
    } else if (e->host_offset != UINT64_MAX) {
        m->has_offset = true;
        m->offset = e->host_offset;
    }
}

static bool mergeable(const struct map_entry *a, const struct map_entry *b)
{
    if (a->start + a->length != b->start || a->depth != b->depth ||
        a->present != b->present || a->zero != b->zero ||
        a->data != b->data || a->compressed != b->compressed ||
        a->has_offset != b->has_offset || strcmp(a->filename, b->filename))
        return false;
    return !a->has_offset || a->offset + a->length == b->offset;
}

static void print_entry_json(const struct map_entry *m, bool first)
{
    printf("%s{ \"start\": %" PRIu64 ", \"length\": %" PRIu64
           ", \"depth\": %d, \"present\": %s, \"zero\": %s, \"data\": %s",
           first ? "[" : ",\n", m->start, m->length, m->depth,
           m->present ? "true" : "false", m->zero ? "true" : "false",
           m->data ? "true" : "false");
    if (m->compressed)
        printf(", \"compressed\": true");
    if (m->has_offset)
        printf(", \"offset\": %" PRIu64, m->offset);
    printf("}");
}

static void print_entry_human(const struct map_entry *m)
{
    char off[32];

    if (!m->data || m->zero)
        return;
    if (m->has_offset)
        snprintf(off, sizeof(off), "%#" PRIx64, m->offset);
    else
        snprintf(off, sizeof(off), "compressed");
    printf("%#-16" PRIx64 "%#-16" PRIx64 "%-16s%s\n", m->start, m->length,
           off, m->filename);
}

static void print_entry(const struct map_args *a, const struct map_entry *m,
                        bool first)
{
    if (a->output == CLI_OUT_JSON)
        print_entry_json(m, first);
    else
        print_entry_human(m);
}

static int map_image(const struct map_args *a, struct sd_img *img)
{
    uint64_t size = sd_img_size(img);
    uint64_t end = a->max_length && a->max_length < size - a->start
                       ? a->start + a->max_length : size;
    struct map_entry cur = { 0 }, next;
    bool have = false, first = true;

    if (a->output == CLI_OUT_HUMAN)
        printf("%-16s%-16s%-16s%s\n", "Offset", "Length", "Mapped to", "File");
    for (uint64_t pos = a->start; pos < end;) {
        struct sd_extent e;
        int ret = sd_img_block_status(img, pos, end - pos, &e);

        if (ret < 0)
            return cli_fail("map: %s: block status at offset %" PRIu64
                            " failed: %s", a->file, pos, strerror(-ret));
        if (e.length == 0 || e.offset != pos)
            return cli_fail("map: %s: block status at offset %" PRIu64
                            " made no progress", a->file, pos);
        entry_from_extent(img, &e, &next);
        pos += e.length;
        if (have && mergeable(&cur, &next)) {
            cur.length += next.length;
            continue;
        }
        if (have) {
            print_entry(a, &cur, first);
            first = false;
        }
        cur = next;
        have = true;
    }
    if (have) {
        print_entry(a, &cur, first);
        first = false;
    }
    if (a->output == CLI_OUT_JSON)
        printf(first ? "[]\n" : "]\n");
    return 0;
}

static int parse_args(int argc, char **argv, struct map_args *a)
{
    static const struct option longopts[] = {
        { "json", no_argument, NULL, CLI_OPT_JSON },
        { "output", required_argument, NULL, CLI_OPT_OUTPUT },
        { "format", required_argument, NULL, 'f' },
        { "start-offset", required_argument, NULL, 's' },
        { "max-length", required_argument, NULL, 'l' },
        { "force-share", no_argument, NULL, 'U' },
        { NULL, 0, NULL, 0 },
    };
    const struct cli_inspect_opts common = {
        &a->output, &a->format, &a->force_share,
    };
    int c, ret;

    opterr = 0;
    while ((c = getopt_long(argc, argv, ":f:s:l:U", longopts, NULL)) != -1) {
        switch (c) {
        case 's':
        case 'l':
            if (cli_parse_size(optarg, c == 's' ? &a->start
                                                : &a->max_length) < 0)
                return cli_fail("map: invalid offset or length '%s'", optarg);
            break;
        default:
            ret = cli_inspect_option("map", c, optarg, &common);
            if (ret == 0)
                break;
            if (ret > 0)
                return ret;
            return cli_bad_option("map", c, argv);
        }
    }
    if (optind != argc - 1)
        return cli_fail(optind >= argc ? "map: missing FILE" :
                        "map: expected one FILE");
    a->file = argv[optind];
    return 0;
}

static int map_run(int argc, char **argv)
{
    struct map_args a = { .output = CLI_OUT_HUMAN };
    struct sd_img_open_opts o = { 0 };
    struct sd_error err = { 0 };
    struct sd_img *img;
    int ret = parse_args(argc, argv, &a);

    if (ret != 0)
        return ret;
    o.format = a.format;
    o.force_share = a.force_share;
    ret = sd_img_open(&img, a.file, &o, &err);
    if (ret < 0)
        return cli_fail("map: %s", err.msg[0] ? err.msg : strerror(-ret));
    if (a.start > sd_img_size(img))
        ret = cli_fail("map: %s: start offset %" PRIu64 " is past the end "
                       "of the image", a.file, a.start);
    else
        ret = map_image(&a, img);
    (void)sd_img_close(img);    /* read-only: nothing to flush */
    if (ret == 0 && fflush(stdout) != 0)
        ret = cli_fail("map: could not write to stdout");
    return ret;
}

const struct img_cmd img_cmd_map = {
    .name = "map",
    .summary = "show where each range of an image's data is",
    .usage = usage,
    .run = map_run,
};
