/* SPDX-License-Identifier: MIT */
/*
 * What the sendense-img subcommands share: the command table entry, the
 * one-line error report, option and size parsing, and JSON printing.
 *
 * Conventions every subcommand keeps:
 *  - run() gets argv with argv[0] = the subcommand's name and returns the
 *    process exit status (0 on success);
 *  - a failure is reported with exactly one line on stderr, through
 *    cli_fail(): "sendense-img: <what>: <why>";
 *  - --help never reaches run(): img-main.c prints the command's usage.
 */
#ifndef SENDENSE_IMG_CLI_H
#define SENDENSE_IMG_CLI_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#include "image.h"

#define CLI_PROG "sendense-img"

struct img_cmd {
    const char *name;
    const char *summary;      /* one line for `sendense-img --help` */
    const char *usage;        /* the whole `sendense-img CMD --help` text */
    int (*run)(int argc, char **argv);
};

/* Print "sendense-img: <formatted>" as one line on stderr (newlines in
 * the message are flattened) and return 1, so a command can write
 * `return cli_fail("%s: %s", path, why);`. */
int cli_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The same with a chosen exit status. */
int cli_fail_status(int status, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Report what getopt_long returned for a bad option ('?' or ':'); the
 * caller passes argv, optopt and the index getopt left. Returns 1. */
int cli_bad_option(const char *cmd, int c, char **argv);

/* Output styles: --json, --output=json, --output json, --output=human. */
enum cli_output { CLI_OUT_HUMAN, CLI_OUT_JSON };
int cli_parse_output(const char *arg, enum cli_output *out);

/* Long option values shared by the commands' option tables. */
enum {
    CLI_OPT_JSON = 0x100,
    CLI_OPT_OUTPUT,
    CLI_OPT_BACKING_CHAIN,
    CLI_OPT_FORCE_SHARE,
};

/* The options the inspecting commands (info, check, map) share: --json,
 * --output, -f and -U. Returns 0 when c was one of them and was applied,
 * -1 when it was not (the caller handles it), or an exit status after
 * printing why arg is wrong. */
struct cli_inspect_opts {
    enum cli_output *output;
    enum sd_img_format *format;
    bool *force_share;
};
int cli_inspect_option(const char *cmd, int c, const char *arg,
                       const struct cli_inspect_opts *o);

/* "raw" / "qcow2" (also "auto" when allow_auto). */
int cli_parse_format(const char *s, bool allow_auto, enum sd_img_format *out);
const char *cli_format_name(enum sd_img_format fmt);

/* A size with an optional binary suffix: 512, 64k, 10G, 1.5T, 4096b.
 * Returns 0, or -EINVAL / -ERANGE. */
int cli_parse_size(const char *s, uint64_t *out);

/* Write bytes the way qemu-img does for humans: "324 KiB", "1.5 GiB". */
void cli_human_size(uint64_t bytes, char *buf, size_t len);

/* Apply one -o list ("cluster_size=64k,compat=v3,...") to create
 * options. Tokenizes list in place: string values (backing_file) point
 * into it, so it must outlive opts (argv strings do). On error fills why
 * and returns -EINVAL. */
int cli_apply_create_options(char *list, struct sd_img_create_opts *opts,
                             char *why, size_t why_len);

/* Print a JSON value with qemu-img's layout (4-space indent, keys in
 * insertion order) and a newline; takes the reference. Returns 0 or 1. */
int cli_print_json(json_t *value);

/* json_object_set_new that reports allocation failure as -ENOMEM. */
int cli_json_set(json_t *obj, const char *key, json_t *value);

#endif
