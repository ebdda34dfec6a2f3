/* SPDX-License-Identifier: MIT */
/* sendense-img rebase: give an image another backing file; the work is
 * sd_img_rebase() in img-ops.c. */
#include "config.h"

#include "img-cli.h"
#include "img-ops.h"

#include <errno.h>
#include <getopt.h>
#include <string.h>

static const char usage[] =
    "Usage: " CLI_PROG " rebase [-f FMT] [-u] -b BACKING [-F FMT] FILE\n"
    "\n"
    "Make BACKING the backing file of FILE (written into the header as\n"
    "given; a relative name is relative to FILE's folder; \"\" removes the\n"
    "backing file). By default (safe mode) every range FILE does not\n"
    "allocate and that reads differently through BACKING is first copied\n"
    "into FILE from its old backing chain, so FILE's content stays the same.\n"
    "\n"
    "  -f FMT       format of FILE (default: probe)\n"
    "  -b BACKING   the new backing file\n"
    "  -F FMT       format of BACKING (default: probe)\n"
    "  -u           unsafe: only rewrite the header\n";

static int rebase_run(int argc, char **argv)
{
    struct sd_rebase_opts opts = { .format = SD_FMT_AUTO };
    struct sd_error err = { 0 };
    bool have_backing = false;
    int c, ret;

    opterr = 0;
    while ((c = getopt(argc, argv, ":f:b:F:uq")) != -1) {
        switch (c) {
        case 'f':
            if (cli_parse_format(optarg, true, &opts.format) < 0)
                return cli_fail("rebase: unknown format '%s'", optarg);
            break;
        case 'b':
            opts.backing = optarg;
            have_backing = true;
            break;
        case 'F':
            if (cli_parse_format(optarg, false, &opts.backing_format) < 0)
                return cli_fail("rebase: unknown backing format '%s'",
                                optarg);
            break;
        case 'u':
            opts.unsafe = true;
            break;
        case 'q':
            break;
        default:
            return cli_bad_option("rebase", c, argv);
        }
    }
    if (!have_backing)
        return cli_fail("rebase: missing -b BACKING (use -b \"\" to remove "
                        "the backing file)");
    if (optind != argc - 1)
        return cli_fail(optind >= argc ? "rebase: missing FILE" :
                        "rebase: expected one FILE");
    ret = sd_img_rebase(argv[optind], &opts, &err);
    if (ret < 0)
        return cli_fail("rebase: %s", err.msg[0] ? err.msg : strerror(-ret));
    return 0;
}

const struct img_cmd img_cmd_rebase = {
    .name = "rebase",
    .summary = "change an image's backing file",
    .usage = usage,
    .run = rebase_run,
};
