/* SPDX-License-Identifier: MIT */
/*
 * sendense-img check: consistency of a QCOW2 image, printed and answered
 * the way qemu-img check does (see qcow2-check.h for the text, the JSON
 * fields and the exit status). The check itself is qcow2_check(); this
 * file only prints. Besides qemu-img's output, a check that finds
 * problems says so in one line on stderr, as every failing command does.
 */
#include "config.h"

#include "img-cli.h"
#include "qcow2-check.h"
#include "lock.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>

static const char usage[] =
    "Usage: " CLI_PROG " check [--json | --output=json|human] [-f FMT]\n"
    "           [-r leaks|all] [-U] FILE\n"
    "\n"
    "Check the refcounts and tables of a qcow2 image.\n"
    "Exit status: 0 clean, 1 the check failed, 2 corruptions, 3 leaks.\n"
    "\n"
    "  --json, --output=json   print qemu-img's JSON\n"
    "  -f FMT                  qcow2 (raw images cannot be checked)\n"
    "  -r leaks|all            repair leaked clusters (corruptions are\n"
    "                          reported, never repaired)\n"
    "  -U, --force-share       check an image another process has open\n"
    "                          (not with -r)\n";

enum {
    EXIT_CLEAN = 0,
    EXIT_FAILED = 1,
    EXIT_CORRUPT = 2,
    EXIT_LEAKS = 3,
    EXIT_NOT_SUPPORTED = 63,   /* qemu-img's "format cannot be checked" */
};

struct check_args {
    enum cli_output output;
    enum sd_img_format format;
    bool repair;
    bool force_share;
    const char *file;
};

static int parse_args(int argc, char **argv, struct check_args *a)
{
    static const struct option longopts[] = {
        { "json", no_argument, NULL, CLI_OPT_JSON },
        { "output", required_argument, NULL, CLI_OPT_OUTPUT },
        { "format", required_argument, NULL, 'f' },
        { "repair", required_argument, NULL, 'r' },
        { "force-share", no_argument, NULL, 'U' },
        { NULL, 0, NULL, 0 },
    };
    const struct cli_inspect_opts common = {
        &a->output, &a->format, &a->force_share,
    };
    int c, ret;

    opterr = 0;
    while ((c = getopt_long(argc, argv, ":f:r:U", longopts, NULL)) != -1) {
        switch (c) {
        case 'r':
            if (strcmp(optarg, "leaks") && strcmp(optarg, "all"))
                return cli_fail("check: -r: expected 'leaks' or 'all', not "
                                "'%s'", optarg);
            a->repair = true;
            break;
        default:
            ret = cli_inspect_option("check", c, optarg, &common);
            if (ret == 0)
                break;
            if (ret > 0)
                return ret;
            return cli_bad_option("check", c, argv);
        }
    }
    if (optind != argc - 1)
        return cli_fail(optind >= argc ? "check: missing FILE" :
                        "check: expected one FILE");
    a->file = argv[optind];
    return 0;
}

/* ---- JSON ------------------------------------------------------------------ */

/* qemu-img leaves out every optional count that is 0. */
static int set_count(json_t *o, const char *key, uint64_t n)
{
    return n ? cli_json_set(o, key, json_integer((json_int_t)n)) : 0;
}

static int print_json(const char *file, const struct qcow2_check_result *r)
{
    json_t *o = json_object();
    int ret = o ? 0 : -ENOMEM;

    if (ret == 0)
        ret = set_count(o, "image-end-offset", r->image_end_offset);
    if (ret == 0)
        ret = set_count(o, "total-clusters", r->total_clusters);
    if (ret == 0)
        ret = cli_json_set(o, "check-errors",
                           json_integer((json_int_t)r->check_errors));
    if (ret == 0)
        ret = set_count(o, "allocated-clusters", r->allocated_clusters);
    if (ret == 0)
        ret = set_count(o, "fragmented-clusters", r->fragmented_clusters);
    if (ret == 0)
        ret = set_count(o, "compressed-clusters", r->compressed_clusters);
    if (ret == 0)
        ret = set_count(o, "leaks", r->leaks);
    if (ret == 0)
        ret = set_count(o, "corruptions", r->corruptions);
    if (ret == 0)
        ret = set_count(o, "leaks-fixed", r->leaks_fixed);
    if (ret == 0)
        ret = set_count(o, "corruptions-fixed", r->corruptions_fixed);
    if (ret == 0)
        ret = cli_json_set(o, "filename", json_string(file));
    if (ret == 0)
        ret = cli_json_set(o, "format", json_string("qcow2"));
    if (ret < 0) {
        json_decref(o);
        return cli_fail("check: out of memory");
    }
    return cli_print_json(o);
}

/* ---- text ------------------------------------------------------------------ */

static void print_messages(const struct qcow2_check_result *r, size_t from,
                           size_t to)
{
    for (size_t i = from; i < to && i < r->nb_messages; i++)
        printf("%s\n", r->messages[i]);
}

static void print_findings(const struct qcow2_check_result *r)
{
    if (!r->corruptions && !r->leaks && !r->check_errors) {
        printf("No errors were found on the image.\n");
        return;
    }
    if (r->corruptions)
        printf("\n%" PRIu64 " errors were found on the image.\n"
               "Data may be corrupted, or further writes to the image may "
               "corrupt it.\n", r->corruptions);
    if (r->leaks)
        printf("\n%" PRIu64 " leaked clusters were found on the image.\n"
               "This means waste of disk space, but no harm to data.\n",
               r->leaks);
    if (r->check_errors)
        printf("\n%" PRIu64 " internal errors have occurred during the "
               "check.\n", r->check_errors);
}

static void print_text(const struct qcow2_check_result *r)
{
    size_t split = r->repaired ? r->recheck_first_message : r->nb_messages;

    print_messages(r, 0, split);
    if (r->repaired) {
        printf("The following inconsistencies were found and repaired:\n\n"
               "    %" PRIu64 " leaked clusters\n    %" PRIu64
               " corruptions\n\nDouble checking the fixed image now...\n",
               r->leaks_fixed, r->corruptions_fixed);
        print_messages(r, split, r->nb_messages);
    }
    if (r->messages_dropped)
        printf("(%" PRIu64 " more messages not shown)\n", r->messages_dropped);
    print_findings(r);
    if (r->total_clusters && r->allocated_clusters) {
        double alloc = r->allocated_clusters;
        printf("%" PRIu64 "/%" PRIu64 " = %0.2f%% allocated, %0.2f%% "
               "fragmented, %0.2f%% compressed clusters\n",
               r->allocated_clusters, r->total_clusters,
               alloc * 100.0 / (double)r->total_clusters,
               (double)r->fragmented_clusters * 100.0 / alloc,
               (double)r->compressed_clusters * 100.0 / alloc);
    }
    if (r->image_end_offset)
        printf("Image end offset: %" PRIu64 "\n", r->image_end_offset);
}

/* ---- running it ------------------------------------------------------------ */

static int exit_status(const char *file, const struct qcow2_check_result *r)
{
    if (r->check_errors)
        return cli_fail_status(EXIT_FAILED, "check: %s: the check could not "
                               "be completed (%" PRIu64 " internal errors)",
                               file, r->check_errors);
    if (r->corruptions)
        return cli_fail_status(EXIT_CORRUPT, "check: %s: %" PRIu64
                               " corruptions and %" PRIu64 " leaked clusters "
                               "found", file, r->corruptions, r->leaks);
    if (r->leaks)
        return cli_fail_status(EXIT_LEAKS, "check: %s: %" PRIu64
                               " leaked clusters found", file, r->leaks);
    return EXIT_CLEAN;
}

static int ensure_qcow2(const struct check_args *a)
{
    enum sd_img_format fmt = a->format;
    struct sd_error err = { 0 };

    if (fmt == SD_FMT_AUTO && sd_img_probe_format(a->file, &fmt, &err) < 0)
        return cli_fail("check: %s", err.msg);
    if (fmt != SD_FMT_QCOW2)
        return cli_fail_status(EXIT_NOT_SUPPORTED, "check: %s: this image "
                               "format does not support checks", a->file);
    return 0;
}

/* Like qemu-img: refuse to check an image another process writes (its
 * refcounts are moving), and to repair one anybody else has open. */
static int lock_for_check(const struct check_args *a, int *fd)
{
    struct sd_error err = { 0 };

    *fd = -1;
    if (a->force_share && !a->repair)
        return 0;
    *fd = open(a->file, a->repair ? O_RDWR | O_CLOEXEC : O_RDONLY | O_CLOEXEC);
    if (*fd < 0)
        return cli_fail("check: could not open '%s': %s", a->file,
                        strerror(errno));
    if (img_lock_acquire(*fd, a->file, a->repair, &err) < 0) {
        close(*fd);
        *fd = -1;
        return cli_fail("check: %s", err.msg);
    }
    return 0;
}

static int check_run(int argc, char **argv)
{
    struct check_args a = { .output = CLI_OUT_HUMAN };
    struct qcow2_check_opts opts = { 0 };
    struct qcow2_check_result res;
    struct sd_error err = { 0 };
    int ret = parse_args(argc, argv, &a);

    if (ret == 0)
        ret = ensure_qcow2(&a);
    if (ret != 0)
        return ret;
    int fd;
    ret = lock_for_check(&a, &fd);
    if (ret != 0)
        return ret;
    opts.repair_leaks = a.repair;
    memset(&res, 0, sizeof(res));
    ret = qcow2_check(a.file, &opts, &res, &err);
    if (fd >= 0)
        close(fd);      /* drops the locks */
    if (ret < 0) {
        qcow2_check_result_free(&res);
        return cli_fail("check: %s: %s", a.file,
                        err.msg[0] ? err.msg : strerror(-ret));
    }
    if (a.output == CLI_OUT_JSON)
        ret = print_json(a.file, &res);
    else
        print_text(&res);
    if (ret == 0 && fflush(stdout) != 0)
        ret = cli_fail("check: could not write to stdout");
    if (ret == 0)
        ret = exit_status(a.file, &res);
    qcow2_check_result_free(&res);
    return ret;
}

const struct img_cmd img_cmd_check = {
    .name = "check",
    .summary = "check a qcow2 image's consistency (qemu-img check)",
    .usage = usage,
    .run = check_run,
};
