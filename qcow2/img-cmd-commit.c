/* SPDX-License-Identifier: MIT */
/* sendense-img commit: write an image's own data into its backing file;
 * the work is sd_img_commit() in img-ops.c. */
#include "config.h"

#include "img-cli.h"
#include "img-ops.h"

#include <errno.h>
#include <getopt.h>
#include <string.h>

static const char usage[] =
    "Usage: " CLI_PROG " commit [-q] [-f FMT] [-d] FILE\n"
    "\n"
    "Write everything FILE allocates (data and zeroed ranges) into its\n"
    "backing file. Afterwards FILE is emptied, so it reads through to the\n"
    "backing file, as with qemu-img commit.\n"
    "\n"
    "  -f FMT   format of FILE (default: probe)\n"
    "  -d       leave FILE as it is (do not empty it)\n"
    "  -q       do not print 'Image committed.'\n";

static int commit_run(int argc, char **argv)
{
    struct sd_commit_opts opts = { .format = SD_FMT_AUTO };
    struct sd_error err = { 0 };
    bool quiet = false;
    int c, ret;

    opterr = 0;
    while ((c = getopt(argc, argv, ":f:dq")) != -1) {
        switch (c) {
        case 'f':
            if (cli_parse_format(optarg, true, &opts.format) < 0)
                return cli_fail("commit: unknown format '%s'", optarg);
            break;
        case 'd':
            opts.keep_top = true;
            break;
        case 'q':
            quiet = true;
            break;
        default:
            return cli_bad_option("commit", c, argv);
        }
    }
    if (optind != argc - 1)
        return cli_fail(optind >= argc ? "commit: missing FILE" :
                        "commit: expected one FILE");
    ret = sd_img_commit(argv[optind], &opts, &err);
    if (ret < 0)
        return cli_fail("commit: %s", err.msg[0] ? err.msg : strerror(-ret));
    if (!quiet)
        printf("Image committed.\n");
    return 0;
}

const struct img_cmd img_cmd_commit = {
    .name = "commit",
    .summary = "write an image's data into its backing file",
    .usage = usage,
    .run = commit_run,
};
