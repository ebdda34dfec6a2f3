/* SPDX-License-Identifier: MIT */
/* sendense-img convert: copy an image (and its backing chain) into a new
 * raw or qcow2 image; the work is sd_img_convert() in img-ops.c. */
#include "config.h"

#include "img-cli.h"
#include "img-ops.h"

#include <errno.h>
#include <getopt.h>
#include <string.h>

static const char usage[] =
    "Usage: " CLI_PROG " convert [-f FMT] -O raw|qcow2 [-o OPTIONS]\n"
    "           [-B BACKING [-F FMT]] [-U] SRC DST\n"
    "\n"
    "Copy SRC, with everything its backing chain shows, into a new image\n"
    "DST (an existing file is replaced). Ranges that read as zeros are not\n"
    "written: a qcow2 DST leaves them unallocated, a raw DST sparse.\n"
    "\n"
    "  -f FMT        format of SRC (default: probe)\n"
    "  -O FMT        format of DST: raw or qcow2 (default: raw)\n"
    "  -o OPTIONS    qcow2 options for DST, as for 'create'\n"
    "  -B BACKING    create DST over BACKING and copy only what SRC's top\n"
    "                layer allocates (BACKING must show what lies below it)\n"
    "  -F FMT        format of BACKING (default: probe)\n"
    "  -U            read a SRC another process has open\n";

struct convert_args {
    struct sd_convert_opts opts;
    bool create_options;
    const char *src, *dst;
};

static int parse_option(int c, struct convert_args *a)
{
    char why[256];

    switch (c) {
    case 'f':
        if (cli_parse_format(optarg, true, &a->opts.src_format) < 0)
            return cli_fail("convert: unknown format '%s'", optarg);
        return 0;
    case 'O':
        if (cli_parse_format(optarg, false, &a->opts.dst_format) < 0)
            return cli_fail("convert: unknown output format '%s' (raw or "
                            "qcow2)", optarg);
        return 0;
    case 'o':
        if (cli_apply_create_options(optarg, &a->opts.create, why,
                                     sizeof(why)) < 0)
            return cli_fail("convert: -o: %s", why);
        a->create_options = true;
        return 0;
    case 'B':
        a->opts.dst_backing = optarg;
        return 0;
    case 'F':
        if (cli_parse_format(optarg, false, &a->opts.dst_backing_format) < 0)
            return cli_fail("convert: unknown backing format '%s'", optarg);
        return 0;
    case 'U':
        a->opts.force_share = true;
        return 0;
    default:
        return -1;
    }
}

static int parse_args(int argc, char **argv, struct convert_args *a)
{
    static const struct option longopts[] = {
        { "force-share", no_argument, NULL, 'U' },
        { NULL, 0, NULL, 0 },
    };
    int c;

    opterr = 0;
    while ((c = getopt_long(argc, argv, ":f:O:o:B:F:U", longopts,
                            NULL)) != -1) {
        int ret = parse_option(c, a);
        if (ret < 0)
            return cli_bad_option("convert", c, argv);
        if (ret > 0)
            return ret;
    }
    if (argc - optind != 2)
        return cli_fail("convert: expected SRC and DST (see '%s convert "
                        "--help')", CLI_PROG);
    a->src = argv[optind];
    a->dst = argv[optind + 1];
    if (a->opts.dst_format == SD_FMT_RAW &&
        (a->create_options || a->opts.dst_backing))
        return cli_fail("convert: %s: -o and -B need -O qcow2", a->dst);
    /* -o backing_file= means what -B means. */
    if (!a->opts.dst_backing && a->opts.create.backing_file) {
        a->opts.dst_backing = a->opts.create.backing_file;
        if (a->opts.dst_backing_format == SD_FMT_AUTO)
            a->opts.dst_backing_format = a->opts.create.backing_format;
    }
    return 0;
}

static int convert_run(int argc, char **argv)
{
    struct convert_args a = { .opts.dst_format = SD_FMT_RAW };
    struct sd_error err = { 0 };
    int ret = parse_args(argc, argv, &a);

    if (ret != 0)
        return ret;
    if (strcmp(a.src, a.dst) == 0)
        return cli_fail("convert: %s: source and destination are the same "
                        "file", a.src);
    ret = sd_img_convert(a.src, a.dst, &a.opts, &err);
    if (ret < 0)
        return cli_fail("convert: %s", err.msg[0] ? err.msg : strerror(-ret));
    return 0;
}

const struct img_cmd img_cmd_convert = {
    .name = "convert",
    .summary = "copy an image into a new raw or qcow2 image",
    .usage = usage,
    .run = convert_run,
};
