/* SPDX-License-Identifier: MIT */
/* Helpers shared by the sendense-img subcommands (see img-cli.h). */
#include "config.h"

#include "img-cli.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

static void vreport(const char *fmt, va_list ap)
{
    char line[1024];

    vsnprintf(line, sizeof(line), fmt, ap);
    /* One report, one line: library messages may quote file names. */
    for (char *p = line; *p; p++)
        if (*p == '\n' || *p == '\r')
            *p = ' ';
    fprintf(stderr, "%s: %s\n", CLI_PROG, line);
}

int cli_fail(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vreport(fmt, ap);
    va_end(ap);
    return 1;
}

int cli_fail_status(int status, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vreport(fmt, ap);
    va_end(ap);
    return status;
}

int cli_bad_option(const char *cmd, int c, char **argv)
{
    /* getopt leaves optind past the offending word (or its argument). */
    const char *word = optind > 0 ? argv[optind - 1] : "?";

    if (c == ':')
        return cli_fail("%s: option '%s' needs an argument (see '%s %s "
                        "--help')", cmd, word, CLI_PROG, cmd);
    if (optopt && optopt < 0x100)
        return cli_fail("%s: unknown option '-%c' (see '%s %s --help')",
                        cmd, optopt, CLI_PROG, cmd);
    return cli_fail("%s: unknown option '%s' (see '%s %s --help')", cmd,
                    word, CLI_PROG, cmd);
}

int cli_parse_output(const char *arg, enum cli_output *out)
{
    if (strcmp(arg, "json") == 0)
        *out = CLI_OUT_JSON;
    else if (strcmp(arg, "human") == 0)
        *out = CLI_OUT_HUMAN;
    else
        return -EINVAL;
    return 0;
}

int cli_parse_format(const char *s, bool allow_auto, enum sd_img_format *out)
{
    if (strcmp(s, "raw") == 0)
        *out = SD_FMT_RAW;
    else if (strcmp(s, "qcow2") == 0)
        *out = SD_FMT_QCOW2;
    else if (allow_auto && strcmp(s, "auto") == 0)
        *out = SD_FMT_AUTO;
    else
        return -EINVAL;
    return 0;
}

const char *cli_format_name(enum sd_img_format fmt)
{
    switch (fmt) {
    case SD_FMT_RAW:
        return "raw";
    case SD_FMT_QCOW2:
        return "qcow2";
    default:
        return "auto";
    }
}

static int suffix_shift(const char *suffix, unsigned *shift)
{
    static const char units[] = "bkmgtpe";
    const char *u;

    if (*suffix == '\0') {
        *shift = 0;
        return 0;
    }
    u = strchr(units, tolower((unsigned char)suffix[0]));
    if (!u || suffix[1] != '\0')
        return -EINVAL;
    *shift = 10 * (unsigned)(u - units);
    return 0;
}

int cli_parse_size(const char *s, uint64_t *out)
{
    unsigned __int128 whole = 0, frac = 0, frac_div = 1, total;
    const char *p = s;
    unsigned shift;

    if (!isdigit((unsigned char)*p))
        return -EINVAL;
    for (; isdigit((unsigned char)*p); p++) {
        whole = whole * 10 + (unsigned)(*p - '0');
        if (whole > UINT64_MAX)
            return -ERANGE;
    }
    if (*p == '.') {
        for (p++; isdigit((unsigned char)*p); p++) {
            if (frac_div < 1000000000000ull) {
                frac = frac * 10 + (unsigned)(*p - '0');
                frac_div *= 10;
            }
        }
    }
    if (suffix_shift(p, &shift) < 0)
        return -EINVAL;
    /* A fraction of a byte means nothing: "1.5" needs a unit. */
    if (frac_div > 1 && shift == 0)
        return -EINVAL;
    total = (whole << shift) + ((frac << shift) / frac_div);
    if (total > UINT64_MAX || (shift && whole > (UINT64_MAX >> shift)))
        return -ERANGE;
    *out = (uint64_t)total;
    return 0;
}

void cli_human_size(uint64_t bytes, char *buf, size_t len)
{
    static const char *const unit[] = {
        "B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB",
    };
    unsigned i = 0;

    /* Move to the next unit at 1000 of the current one, as qemu-img
     * does, so no number shows four digits. */
    while (i < 6 && (double)bytes >= 1000.0 * (double)(1ull << (10 * i)))
        i++;
    snprintf(buf, len, "%.3g %s", (double)bytes / (double)(1ull << (10 * i)),
             unit[i]);
}

/* ---- -o lists ---------------------------------------------------------- */

static int parse_on_off(const char *v, bool *out)
{
    if (strcmp(v, "on") == 0 || strcmp(v, "true") == 0)
        *out = true;
    else if (strcmp(v, "off") == 0 || strcmp(v, "false") == 0)
        *out = false;
    else
        return -EINVAL;
    return 0;
}

static int parse_compat(const char *v, int *version)
{
    if (strcmp(v, "0.10") == 0 || strcmp(v, "v2") == 0)
        *version = 2;
    else if (strcmp(v, "1.1") == 0 || strcmp(v, "v3") == 0)
        *version = 3;
    else
        return -EINVAL;
    return 0;
}

static int parse_u32_size(const char *v, uint32_t *out)
{
    uint64_t n;

    if (cli_parse_size(v, &n) < 0 || n > UINT32_MAX)
        return -EINVAL;
    *out = (uint32_t)n;
    return 0;
}

static int parse_unsigned(const char *v, unsigned *out)
{
    char *end;
    unsigned long n;

    errno = 0;
    n = strtoul(v, &end, 10);
    if (errno || end == v || *end || n > 64)
        return -EINVAL;
    *out = (unsigned)n;
    return 0;
}

static int parse_prealloc(const char *v, bool *metadata)
{
    if (strcmp(v, "off") == 0)
        *metadata = false;
    else if (strcmp(v, "metadata") == 0)
        *metadata = true;
    else
        return -EINVAL;
    return 0;
}

static int parse_compression(const char *v, const char **out)
{
    if (strcmp(v, "zlib") == 0)
        *out = "zlib";
    else if (strcmp(v, "zstd") == 0)
        *out = "zstd";
    else
        return -EINVAL;
    return 0;
}

/* Apply key=value; returns 0, -EINVAL (bad value) or -ENOENT (bad key). */
static int apply_create_option(const char *key, const char *v,
                               struct sd_img_create_opts *o)
{
    if (strcmp(key, "cluster_size") == 0)
        return parse_u32_size(v, &o->cluster_size);
    if (strcmp(key, "compat") == 0)
        return parse_compat(v, &o->version);
    if (strcmp(key, "refcount_bits") == 0)
        return parse_unsigned(v, &o->refcount_bits);
    if (strcmp(key, "extended_l2") == 0)
        return parse_on_off(v, &o->extended_l2);
    if (strcmp(key, "lazy_refcounts") == 0)
        return parse_on_off(v, &o->lazy_refcounts);
    if (strcmp(key, "preallocation") == 0)
        return parse_prealloc(v, &o->preallocate_metadata);
    if (strcmp(key, "compression_type") == 0)
        return parse_compression(v, &o->compression_type);
    if (strcmp(key, "size") == 0)
        return cli_parse_size(v, &o->size) < 0 ? -EINVAL : 0;
    if (strcmp(key, "backing_file") == 0) {
        o->backing_file = v;
        return 0;
    }
    if (strcmp(key, "backing_fmt") == 0)
        return cli_parse_format(v, false, &o->backing_format);
    return -ENOENT;
}

int cli_apply_create_options(char *list, struct sd_img_create_opts *opts,
                             char *why, size_t why_len)
{
    char *save = NULL;

    for (char *tok = strtok_r(list, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(tok, '=');
        int ret;

        if (!eq) {
            snprintf(why, why_len, "option '%s' needs a value (key=value)",
                     tok);
            return -EINVAL;
        }
        *eq = '\0';
        ret = apply_create_option(tok, eq + 1, opts);
        if (ret == -ENOENT) {
            snprintf(why, why_len, "unknown option '%s'", tok);
            return -EINVAL;
        }
        if (ret < 0) {
            snprintf(why, why_len, "invalid value '%s' for '%s'", eq + 1, tok);
            return -EINVAL;
        }
    }
    return 0;
}

/* ---- JSON -------------------------------------------------------------- */

int cli_print_json(json_t *value)
{
    int ret;

    if (!value)
        return cli_fail("out of memory building JSON");
    ret = json_dumpf(value, stdout, JSON_INDENT(4) | JSON_PRESERVE_ORDER);
    json_decref(value);
    if (ret < 0 || fputc('\n', stdout) == EOF)
        return cli_fail("could not write JSON to stdout");
    return 0;
}

int cli_json_set(json_t *obj, const char *key, json_t *value)
{
    return value && json_object_set_new(obj, key, value) == 0 ? 0 : -ENOMEM;
}

int cli_inspect_option(const char *cmd, int c, const char *arg,
                       const struct cli_inspect_opts *o)
{
    switch (c) {
    case CLI_OPT_JSON:
        *o->output = CLI_OUT_JSON;
        return 0;
    case CLI_OPT_OUTPUT:
        if (cli_parse_output(arg, o->output) < 0)
            return cli_fail("%s: unknown output format '%s'", cmd, arg);
        return 0;
    case 'f':
        if (cli_parse_format(arg, true, o->format) < 0)
            return cli_fail("%s: unknown format '%s'", cmd, arg);
        return 0;
    case 'U':
        *o->force_share = true;
        return 0;
    default:
        return -1;
    }
}
