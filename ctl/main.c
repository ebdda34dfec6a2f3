/* SPDX-License-Identifier: MIT */
/*
 * sendense-ctl: the admin tool over sendensed's and sendense-nbd's
 * control sockets.
 *
 *   sendense-ctl [GLOBAL OPTIONS] GROUP COMMAND [ARGS] [--json]
 *
 * This file only dispatches: each group lives in cmd-GROUP.c as a
 * struct ctl_group with a table of commands (see ctl.h). Global options
 * may come before the group or anywhere after the command.
 */
#include "config.h"

#include "ctl/ctl.h"

#include <stdlib.h>
#include <string.h>

static const struct ctl_group *const groups[] = {
    &ctl_group_server,
    &ctl_group_export,
    &ctl_group_connection,
    &ctl_group_backup,
    &ctl_group_restore,
};

enum { NR_GROUPS = sizeof(groups) / sizeof(groups[0]) };

static void print_overview(FILE *out)
{
    fprintf(out, "Usage: %s [--socket PATH] [--nbd-socket PATH] GROUP "
            "COMMAND [ARGS] [--json]\n\nGroups:\n", CTL_PROG);
    for (unsigned i = 0; i < NR_GROUPS; i++)
        fprintf(out, "  %-11s %s\n", groups[i]->name, groups[i]->summary);
    fprintf(out, "\nRun '%s GROUP --help' for a group's commands and '%s "
            "GROUP COMMAND --help'\nfor a command's options.\n"
            "\nGlobal options:\n"
            "  --socket PATH      sendensed's socket (default %s,\n"
            "                     or env SENDENSE_SOCKET)\n"
            "  --nbd-socket PATH  sendense-nbd's control socket (default\n"
            "                     %s, or env SENDENSE_NBD_SOCKET)\n"
            "  --json             print the daemon's JSON result as it is\n"
            "  --help, --version\n"
            "\nExit status: 0 ok, 1 the daemon answered with an error, 2 "
            "usage error,\n3 the daemon cannot be reached.\n",
            CTL_PROG, CTL_PROG, CTL_DEFAULT_SOCKET, CTL_DEFAULT_NBD_SOCKET);
}

static void print_group(FILE *out, const struct ctl_group *g)
{
    fprintf(out, "Usage: %s %s COMMAND [ARGS] [--json]\n\n%s (talks to "
            "%s).\n\nCommands:\n", CTL_PROG, g->name, g->summary, g->daemon);
    for (const struct ctl_cmd *c = g->cmds; c->name; c++)
        fprintf(out, "  %-10s %s\n", c->name, c->summary);
    fprintf(out, "\nRun '%s %s COMMAND --help' for a command's options.\n",
            CTL_PROG, g->name);
}

static const struct ctl_group *find_group(const char *name)
{
    for (unsigned i = 0; i < NR_GROUPS; i++)
        if (strcmp(groups[i]->name, name) == 0)
            return groups[i];
    return NULL;
}

static const struct ctl_cmd *find_cmd(const struct ctl_group *g,
                                      const char *name)
{
    for (const struct ctl_cmd *c = g->cmds; c->name; c++)
        if (strcmp(c->name, name) == 0)
            return c;
    return NULL;
}

static bool is_help(const char *arg)
{
    return strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0 ||
           strcmp(arg, "help") == 0;
}

/* --help (or -h) anywhere before a "--" asks for the usage. */
static bool wants_help(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0)
            return false;
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
            return true;
    }
    return false;
}

static int apply_common_option(struct ctl_ctx *ctx, int c, char *arg)
{
    switch (c) {
    case CTL_OPT_JSON:
        ctx->json = true;
        return 0;
    case CTL_OPT_SOCKET:
        ctx->socket = arg;
        return 0;
    case CTL_OPT_NBD_SOCKET:
        ctx->nbd_socket = arg;
        return 0;
    default:
        return -1;
    }
}

/* cmd is "" for the global options. */
static int bad_option(const char *cmd, int c, char **argv)
{
    /* getopt leaves optind past the offending word (or its argument). */
    const char *word = optind > 0 ? argv[optind - 1] : "?";
    const char *sep = *cmd ? ": " : "";
    char help[64];

    snprintf(help, sizeof(help), "see '%s%s%s --help'", CTL_PROG,
             *cmd ? " " : "", cmd);
    if (c == ':')
        return ctl_fail(CTL_EXIT_USAGE, "%s%soption '%s' needs an argument "
                        "(%s)", cmd, sep, word, help);
    if (optopt && optopt < 0x100)
        return ctl_fail(CTL_EXIT_USAGE, "%s%sunknown option '-%c' (%s)", cmd,
                        sep, optopt, help);
    return ctl_fail(CTL_EXIT_USAGE, "%s%sunknown option '%s' (%s)", cmd, sep,
                    word, help);
}

int ctl_parse_options(struct ctl_ctx *ctx, int argc, char **argv,
                      const char *short_opts, const struct option *longopts,
                      ctl_opt_fn *on_opt, void *arg, int *first_arg)
{
    char spec[64];
    int c;

    /* ':' first: a missing argument is ':' and getopt prints nothing. */
    snprintf(spec, sizeof(spec), ":%s", short_opts ? short_opts : "");
    /* 0, not 1: GNU getopt then also forgets parse_global()'s '+'. */
    optind = 0;
    while ((c = getopt_long(argc, argv, spec, longopts, NULL)) != -1) {
        int status;

        if (c == '?' || c == ':')
            return bad_option(ctx->command, c, argv);
        if (apply_common_option(ctx, c, optarg) == 0)
            continue;
        status = on_opt ? on_opt(arg, c, optarg) : CTL_EXIT_USAGE;
        if (status != 0)
            return status;
    }
    *first_arg = optind;
    return 0;
}

int ctl_check_args(const struct ctl_ctx *ctx, int n, int min, int max)
{
    if (n < min)
        return ctl_fail(CTL_EXIT_USAGE, "%s: missing argument (see '%s %s "
                        "--help')", ctx->command, CTL_PROG, ctx->command);
    if (n > max)
        return ctl_fail(CTL_EXIT_USAGE, "%s: too many arguments (see '%s %s "
                        "--help')", ctx->command, CTL_PROG, ctx->command);
    return 0;
}

int ctl_parse_params(struct ctl_ctx *ctx, int argc, char **argv,
                     const struct ctl_params_spec *spec, json_t *params)
{
    int first = 0, n, max = 0, status;

    while (spec->names[max])
        max++;
    status = ctl_parse_options(ctx, argc, argv, NULL, spec->longopts,
                               spec->on_opt, spec->arg, &first);
    if (status != 0)
        return status;
    n = argc - first;
    status = ctl_check_args(ctx, n, spec->min_args, max);
    for (int i = 0; status == 0 && i < n; i++)
        if (json_object_set_new(params, spec->names[i],
                                json_string(argv[first + i])) < 0)
            status = ctl_fail(CTL_EXIT_ERROR, "out of memory");
    return status;
}

int ctl_parse_plain(struct ctl_ctx *ctx, int argc, char **argv, int nargs,
                    int *first_arg)
{
    static const struct option longopts[] = {
        CTL_COMMON_OPTIONS,
        { NULL, 0, NULL, 0 },
    };
    int status;

    status = ctl_parse_options(ctx, argc, argv, NULL, longopts, NULL, NULL,
                               first_arg);
    if (status != 0)
        return status;
    return ctl_check_args(ctx, argc - *first_arg, nargs, nargs);
}

int ctl_run_plain(struct ctl_ctx *ctx, int argc, char **argv, bool nbd,
                  const char *method, ctl_human_fn *human)
{
    int first, status;

    status = ctl_parse_plain(ctx, argc, argv, 0, &first);
    if (status != 0)
        return status;
    return ctl_call_and_print(ctx, nbd, method, NULL, human);
}

/* Global options before the group; returns 0 and the group's index. */
static int parse_global(struct ctl_ctx *ctx, int argc, char **argv,
                        int *group_index)
{
    static const struct option longopts[] = {
        CTL_COMMON_OPTIONS,
        { NULL, 0, NULL, 0 },
    };
    int c;

    optind = 1;
    /* '+': stop at the group's name, the rest is the command's. */
    while ((c = getopt_long(argc, argv, "+:", longopts, NULL)) != -1) {
        if (c == '?' || c == ':')
            return bad_option("", c, argv);
        (void)apply_common_option(ctx, c, optarg);
    }
    *group_index = optind;
    return 0;
}

static int run_group(struct ctl_ctx *ctx, const struct ctl_group *g,
                     int argc, char **argv)
{
    const struct ctl_cmd *cmd;

    if (argc < 2)
        return ctl_fail(CTL_EXIT_USAGE, "%s: no command given (see '%s %s "
                        "--help')", g->name, CTL_PROG, g->name);
    if (is_help(argv[1])) {
        print_group(stdout, g);
        return CTL_EXIT_OK;
    }
    cmd = find_cmd(g, argv[1]);
    if (!cmd)
        return ctl_fail(CTL_EXIT_USAGE, "%s: unknown command '%s' (see '%s "
                        "%s --help')", g->name, argv[1], CTL_PROG, g->name);
    if (wants_help(argc - 1, argv + 1)) {
        fputs(cmd->usage, stdout);
        fputs(CTL_COMMON_HELP, stdout);
        return CTL_EXIT_OK;
    }
    snprintf(ctx->command, sizeof(ctx->command), "%s %s", g->name, cmd->name);
    return cmd->run(ctx, argc - 1, argv + 1);
}

static const char *env_or(const char *name, const char *dflt)
{
    const char *v = getenv(name);

    return v && *v ? v : dflt;
}

int main(int argc, char **argv)
{
    struct ctl_ctx ctx = {
        .socket = env_or("SENDENSE_SOCKET", CTL_DEFAULT_SOCKET),
        .nbd_socket = env_or("SENDENSE_NBD_SOCKET", CTL_DEFAULT_NBD_SOCKET),
    };
    const struct ctl_group *g;
    int first = 0, status;

    for (int i = 1; i < argc && argv[i][0] == '-'; i++) {
        if (is_help(argv[i])) {
            print_overview(stdout);
            return CTL_EXIT_OK;
        }
        if (strcmp(argv[i], "--version") == 0 || strcmp(argv[i], "-V") == 0) {
            printf("%s %s\n", CTL_PROG, PACKAGE_VERSION);
            return CTL_EXIT_OK;
        }
    }
    status = parse_global(&ctx, argc, argv, &first);
    if (status != 0)
        return status;
    if (first >= argc)
        return ctl_fail(CTL_EXIT_USAGE, "no command group given (see '%s "
                        "--help')", CTL_PROG);
    if (is_help(argv[first])) {
        print_overview(stdout);
        return CTL_EXIT_OK;
    }
    g = find_group(argv[first]);
    if (!g)
        return ctl_fail(CTL_EXIT_USAGE, "unknown command group '%s' (see "
                        "'%s --help')", argv[first], CTL_PROG);
    return run_group(&ctx, g, argc - first, argv + first);
}
