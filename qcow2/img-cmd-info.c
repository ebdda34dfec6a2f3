/* SPDX-License-Identifier: MIT */
/*
 * sendense-img info: what an image is, as qemu-img info prints it (text,
 * or --json with qemu-img's field names). Like qemu-img, the image is
 * opened without its backing chain; --backing-chain walks the chain by
 * the names in the headers and prints every image.
 */
#include "config.h"

#include "img-cli.h"
#include "img-ops.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char usage[] =
    "Usage: " CLI_PROG " info [--json | --output=json|human] [-f FMT]\n"
    "           [--backing-chain] [-U] FILE\n"
    "\n"
    "Show the format, sizes, backing file and qcow2 features of FILE.\n"
    "\n"
    "  --json, --output=json   print qemu-img's JSON\n"
    "  -f FMT                  raw or qcow2 (default: probe)\n"
    "  --backing-chain         also every image of the backing chain\n"
    "  -U, --force-share       read an image another process has open\n";

struct info_args {
    enum cli_output output;
    enum sd_img_format format;
    bool chain;
    bool force_share;
    const char *file;
};

/* One image of the chain, as info shows it. */
struct info_item {
    const char *filename;        /* as named: given, or from the header */
    struct sd_img_info info;
    char *full_backing;          /* backing path resolved, or NULL */
};

/* ---- JSON ------------------------------------------------------------------ */

static json_t *format_specific_json(const struct sd_img_info *in)
{
    json_t *fs = json_object(), *data = json_object();
    bool v3 = in->qcow2_version >= 3;
    int ret = fs && data ? 0 : -ENOMEM;

    if (ret == 0)
        ret = cli_json_set(fs, "type", json_string("qcow2"));
    if (ret == 0)
        ret = cli_json_set(data, "compat", json_string(v3 ? "1.1" : "0.10"));
    if (ret == 0)
        ret = cli_json_set(data, "compression-type", json_string(
                               in->compression_type ? in->compression_type
                                                    : "zlib"));
    if (ret == 0 && v3)
        ret = cli_json_set(data, "lazy-refcounts",
                           json_boolean(in->lazy_refcounts));
    if (ret == 0)
        ret = cli_json_set(data, "refcount-bits",
                           json_integer(in->refcount_bits));
    if (ret == 0 && v3)
        ret = cli_json_set(data, "corrupt", json_boolean(in->corrupt));
    if (ret == 0 && v3)
        ret = cli_json_set(data, "extended-l2", json_boolean(in->extended_l2));
    if (ret == 0) {
        ret = cli_json_set(fs, "data", data);
        data = NULL;
    }
    json_decref(data);
    if (ret < 0) {
        json_decref(fs);
        return NULL;
    }
    return fs;
}

static int backing_json(json_t *o, const struct info_item *it)
{
    const struct sd_img_info *in = &it->info;
    int ret = 0;

    if (!in->backing_file)
        return 0;
    if (in->backing_format)
        ret = cli_json_set(o, "backing-filename-format",
                           json_string(in->backing_format));
    if (ret == 0 && it->full_backing)
        ret = cli_json_set(o, "full-backing-filename",
                           json_string(it->full_backing));
    if (ret == 0)
        ret = cli_json_set(o, "backing-filename",
                           json_string(in->backing_file));
    return ret;
}

static json_t *item_json(const struct info_item *it)
{
    const struct sd_img_info *in = &it->info;
    bool qcow2 = strcmp(in->format, "qcow2") == 0;
    json_t *o = json_object();
    int ret = o ? 0 : -ENOMEM;

    if (ret == 0)
        ret = cli_json_set(o, "virtual-size", json_integer(
                               (json_int_t)in->virtual_size));
    if (ret == 0)
        ret = cli_json_set(o, "filename", json_string(it->filename));
    if (ret == 0 && qcow2)
        ret = cli_json_set(o, "cluster-size", json_integer(in->cluster_size));
    if (ret == 0)
        ret = cli_json_set(o, "format", json_string(in->format));
    if (ret == 0)
        ret = cli_json_set(o, "actual-size", json_integer(
                               (json_int_t)in->actual_size));
    if (ret == 0 && qcow2)
        ret = cli_json_set(o, "format-specific", format_specific_json(in));
    if (ret == 0)
        ret = backing_json(o, it);
    if (ret == 0)
        ret = cli_json_set(o, "dirty-flag", json_boolean(it->info.dirty));
    if (ret < 0) {
        json_decref(o);
        return NULL;
    }
    return o;
}

/* ---- text ------------------------------------------------------------------ */

static const char *yes_no(bool b)
{
    return b ? "true" : "false";
}

static void print_item_text(const struct info_item *it)
{
    const struct sd_img_info *in = &it->info;
    char vsize[32], dsize[32];

    cli_human_size(in->virtual_size, vsize, sizeof(vsize));
    cli_human_size(in->actual_size, dsize, sizeof(dsize));
    printf("image: %s\nfile format: %s\n", it->filename, in->format);
    printf("virtual size: %s (%" PRIu64 " bytes)\n", vsize, in->virtual_size);
    printf("disk size: %s\n", dsize);
    if (strcmp(in->format, "qcow2") != 0)
        return;
    printf("cluster_size: %" PRIu32 "\n", in->cluster_size);
    if (in->backing_file) {
        printf("backing file: %s", in->backing_file);
        if (it->full_backing && strcmp(it->full_backing, in->backing_file))
            printf(" (actual path: %s)", it->full_backing);
        printf("\n");
        if (in->backing_format)
            printf("backing file format: %s\n", in->backing_format);
    }
    if (it->info.dirty)
        printf("cleanly shut down: no\n");
    printf("Format specific information:\n");
    printf("    compat: %s\n", in->qcow2_version >= 3 ? "1.1" : "0.10");
    printf("    compression type: %s\n",
           in->compression_type ? in->compression_type : "zlib");
    if (in->qcow2_version >= 3)
        printf("    lazy refcounts: %s\n", yes_no(in->lazy_refcounts));
    printf("    refcount bits: %u\n", in->refcount_bits);
    if (in->qcow2_version >= 3) {
        printf("    corrupt: %s\n", yes_no(in->corrupt));
        printf("    extended l2: %s\n", yes_no(in->extended_l2));
    }
}

/* ---- walking the chain ----------------------------------------------------- */

static int load_item(const struct info_args *a, const char *path,
                     enum sd_img_format fmt, struct info_item *it,
                     struct sd_img **img)
{
    struct sd_img_open_opts o = {
        .format = fmt, .no_backing = true, .force_share = a->force_share,
    };
    struct sd_error err = { 0 };
    int ret = sd_img_open(img, path, &o, &err);

    if (ret < 0)
        return cli_fail("info: %s", err.msg[0] ? err.msg : strerror(-ret));
    it->filename = path;
    ret = sd_img_get_info(*img, &it->info);
    if (ret < 0)
        return cli_fail("info: %s: %s", path, strerror(-ret));
    if (it->info.backing_file) {
        it->full_backing = sd_img_combine_path(path, it->info.backing_file);
        if (!it->full_backing)
            return cli_fail("info: out of memory");
    }
    return 0;
}

static enum sd_img_format format_of(const char *name)
{
    enum sd_img_format f = SD_FMT_AUTO;

    if (name)
        (void)cli_parse_format(name, false, &f);
    return f;
}

/* A chain that comes back to a file it already went through loops. */
static int check_loop(const char *path, struct stat *seen, unsigned depth)
{
    struct stat st;

    if (stat(path, &st) < 0)
        return 0;                  /* opening it will say what is wrong */
    for (unsigned i = 0; i < depth; i++)
        if (seen[i].st_dev == st.st_dev && seen[i].st_ino == st.st_ino)
            return cli_fail("info: backing file '%s' creates an infinite "
                            "loop", path);
    seen[depth] = st;
    return 0;
}

/* Print one image (and, with --backing-chain, the next ones). */
static int info_walk(const struct info_args *a, json_t *array)
{
    char *path = strdup(a->file), *next;
    enum sd_img_format fmt = a->format;
    struct stat *seen = calloc(SD_MAX_CHAIN_DEPTH + 1, sizeof(*seen));
    int ret = path && seen ? 0 : cli_fail("info: out of memory");

    for (unsigned depth = 0; ret == 0 && path; depth++) {
        struct info_item it = { 0 };
        struct sd_img *img = NULL;

        if (depth > SD_MAX_CHAIN_DEPTH) {
            ret = cli_fail("info: %s: backing chain deeper than %d images",
                           a->file, SD_MAX_CHAIN_DEPTH);
            break;
        }
        ret = check_loop(path, seen, depth);
        if (ret != 0)
            break;
        ret = load_item(a, path, fmt, &it, &img);
        if (ret == 0 && array) {
            json_t *o = item_json(&it);
            if (!o || json_array_append_new(array, o) < 0)
                ret = cli_fail("info: out of memory");
        } else if (ret == 0) {
            if (depth)
                printf("\n");
            print_item_text(&it);
        }
        next = a->chain ? it.full_backing : NULL;
        if (!next)
            free(it.full_backing);
        fmt = format_of(it.info.backing_format);
        (void)sd_img_close(img);   /* read-only: nothing to flush */
        free(path);
        path = next;
    }
    free(path);
    free(seen);
    return ret;
}

static int parse_args(int argc, char **argv, struct info_args *a)
{
    static const struct option longopts[] = {
        { "json", no_argument, NULL, CLI_OPT_JSON },
        { "output", required_argument, NULL, CLI_OPT_OUTPUT },
        { "format", required_argument, NULL, 'f' },
        { "backing-chain", no_argument, NULL, CLI_OPT_BACKING_CHAIN },
        { "force-share", no_argument, NULL, 'U' },
        { NULL, 0, NULL, 0 },
    };
    const struct cli_inspect_opts common = {
        &a->output, &a->format, &a->force_share,
    };
    int c, ret;

    opterr = 0;
    while ((c = getopt_long(argc, argv, ":f:U", longopts, NULL)) != -1) {
        switch (c) {
        case CLI_OPT_BACKING_CHAIN:
            a->chain = true;
            break;
        default:
            ret = cli_inspect_option("info", c, optarg, &common);
            if (ret == 0)
                break;
            if (ret > 0)
                return ret;
            return cli_bad_option("info", c, argv);
        }
    }
    if (optind != argc - 1)
        return cli_fail(optind >= argc ? "info: missing FILE" :
                        "info: expected one FILE");
    a->file = argv[optind];
    return 0;
}

static int info_run(int argc, char **argv)
{
    struct info_args a = { .output = CLI_OUT_HUMAN };
    json_t *array = NULL;
    int ret = parse_args(argc, argv, &a);

    if (ret != 0)
        return ret;
    if (a.output == CLI_OUT_JSON) {
        array = json_array();
        if (!array)
            return cli_fail("info: out of memory");
    }
    ret = info_walk(&a, array);
    if (ret != 0) {
        json_decref(array);
        return ret;
    }
    if (!array)
        return 0;
    if (a.chain)
        return cli_print_json(array);
    /* One image: qemu-img prints the object, not an array. */
    json_t *one = json_incref(json_array_get(array, 0));
    json_decref(array);
    return cli_print_json(one);
}

const struct img_cmd img_cmd_info = {
    .name = "info",
    .summary = "show an image's format, sizes and backing file",
    .usage = usage,
    .run = info_run,
};
