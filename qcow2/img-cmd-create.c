/* SPDX-License-Identifier: MIT */
/* sendense-img create: a new raw or QCOW2 image, optionally over a
 * backing file. */
#include "config.h"

#include "img-cli.h"
#include "img-ops.h"
#include "qcow2-check.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

static const char usage[] =
    "Usage: " CLI_PROG " create [-q] [-f qcow2|raw] [-b BACKING [-F FMT]]\n"
    "           [-o OPTIONS] FILE [SIZE]\n"
    "\n"
    "Create FILE (an existing file is replaced). SIZE takes the suffixes\n"
    "k, M, G, T, P, E (powers of 1024); with -b it may be left out to take\n"
    "the backing file's size.\n"
    "\n"
    "  -f FMT       qcow2 (default) or raw\n"
    "  -b BACKING   backing file, written into the header as given;\n"
    "               a relative name is relative to FILE's folder\n"
    "  -F FMT       format of the backing file (default: probe it)\n"
    "  -o OPTIONS   comma-separated qcow2 options:\n"
    "                 cluster_size=N (512 to 2M, default 64k)\n"
    "                 compat=0.10|1.1 (or v2|v3, default 1.1)\n"
    "                 refcount_bits=1|2|4|8|16|32|64 (default 16)\n"
    "                 extended_l2=on|off  lazy_refcounts=on|off\n"
    "                 preallocation=off|metadata\n"
    "                 compression_type=zlib|zstd\n"
    "                 backing_file=NAME  backing_fmt=FMT  size=SIZE\n"
    "  -q           do not print the 'Formatting' line\n";

struct create_args {
    enum sd_img_format format;
    struct sd_img_create_opts opts;
    bool size_given;
    bool quiet;
    const char *file;
};

static int parse_option(int c, struct create_args *a)
{
    char why[256];

    switch (c) {
    case 'f':
        if (cli_parse_format(optarg, false, &a->format) < 0)
            return cli_fail("create: unknown format '%s' (raw or qcow2)",
                            optarg);
        return 0;
    case 'b':
        a->opts.backing_file = optarg;
        return 0;
    case 'F':
        if (cli_parse_format(optarg, false, &a->opts.backing_format) < 0)
            return cli_fail("create: unknown backing format '%s'", optarg);
        return 0;
    case 'o':
        if (cli_apply_create_options(optarg, &a->opts, why, sizeof(why)) < 0)
            return cli_fail("create: -o: %s", why);
        if (a->opts.size)
            a->size_given = true;
        return 0;
    case 'q':
        a->quiet = true;
        return 0;
    default:
        return -1;
    }
}

static int parse_args(int argc, char **argv, struct create_args *a)
{
    static const struct option longopts[] = {
        { "format", required_argument, NULL, 'f' },
        { "quiet", no_argument, NULL, 'q' },
        { NULL, 0, NULL, 0 },
    };
    int c;

    opterr = 0;
    while ((c = getopt_long(argc, argv, ":f:b:F:o:qu", longopts, NULL)) != -1) {
        if (c == 'u')       /* qemu-img's "unsafe": we never open BACKING */
            continue;
        int ret = parse_option(c, a);
        if (ret < 0)
            return cli_bad_option("create", c, argv);
        if (ret > 0)
            return ret;
    }
    if (optind >= argc)
        return cli_fail("create: missing FILE (see '%s create --help')",
                        CLI_PROG);
    a->file = argv[optind++];
    if (optind < argc) {
        if (cli_parse_size(argv[optind], &a->opts.size) < 0)
            return cli_fail("create: invalid size '%s'", argv[optind]);
        a->size_given = true;
        optind++;
    }
    if (optind < argc)
        return cli_fail("create: unexpected argument '%s'", argv[optind]);
    return 0;
}

static int check_args(const struct create_args *a)
{
    if (!a->size_given && !a->opts.backing_file)
        return cli_fail("create: %s: missing SIZE", a->file);
    if (a->format == SD_FMT_RAW && a->opts.backing_file)
        return cli_fail("create: %s: a raw image cannot have a backing file",
                        a->file);
    return 0;
}

static void print_formatting(const struct create_args *a)
{
    const struct sd_img_create_opts *o = &a->opts;

    printf("Formatting '%s', fmt=%s", a->file, cli_format_name(a->format));
    if (a->format == SD_FMT_QCOW2) {
        printf(" cluster_size=%" PRIu32 " compat=%s", o->cluster_size
               ? o->cluster_size : 65536, o->version == 2 ? "0.10" : "1.1");
        if (o->extended_l2)
            printf(" extended_l2=on");
        if (o->lazy_refcounts)
            printf(" lazy_refcounts=on");
        if (o->preallocate_metadata)
            printf(" preallocation=metadata");
        if (o->compression_type)
            printf(" compression_type=%s", o->compression_type);
        if (o->backing_file)
            printf(" backing_file=%s", o->backing_file);
        if (o->backing_format != SD_FMT_AUTO)
            printf(" backing_fmt=%s", cli_format_name(o->backing_format));
        printf(" refcount_bits=%u", o->refcount_bits ? o->refcount_bits : 16);
    }
    if (a->size_given)
        printf(" size=%" PRIu64, o->size);
    printf("\n");
}

static int create_run(int argc, char **argv)
{
    struct create_args a = { .format = SD_FMT_QCOW2 };
    struct sd_error err = { 0 };
    int ret = parse_args(argc, argv, &a);

    if (ret == 0)
        ret = check_args(&a);
    if (ret != 0)
        return ret;
    if (!a.quiet)
        print_formatting(&a);
    a.opts.format = a.format;
    if (a.format == SD_FMT_RAW)
        ret = raw_create(a.file, a.opts.size, &err);
    else
        ret = qcow2_create(a.file, &a.opts, &err);
    if (ret < 0)
        return cli_fail("create: %s: %s", a.file,
                        err.msg[0] ? err.msg : strerror(-ret));
    return 0;
}

const struct img_cmd img_cmd_create = {
    .name = "create",
    .summary = "create a new raw or qcow2 image",
    .usage = usage,
    .run = create_run,
};
