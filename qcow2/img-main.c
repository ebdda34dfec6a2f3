/* SPDX-License-Identifier: MIT */
/*
 * sendense-img: a qemu-img-like tool over the image library.
 *
 * This file only dispatches: each subcommand lives in img-cmd-NAME.c and
 * defines `const struct img_cmd img_cmd_NAME` (see img-cli.h). To add a
 * subcommand, write that file, list it in sendense_img_SOURCES in
 * Makefile.am and add one X(NAME) line to IMG_COMMANDS below.
 */
#include "config.h"

#include "img-cli.h"

#include <stdio.h>
#include <string.h>

#define IMG_COMMANDS(X) \
    X(create)           \
    X(info)             \
    X(check)            \
    X(map)              \
    X(convert)          \
    X(commit)           \
    X(rebase)           \
    X(bench)            \
    /* add new subcommands here, one X(name) per line */

#define DECLARE_CMD(name) extern const struct img_cmd img_cmd_##name;
IMG_COMMANDS(DECLARE_CMD)
#undef DECLARE_CMD

#define LIST_CMD(name) &img_cmd_##name,
static const struct img_cmd *const commands[] = { IMG_COMMANDS(LIST_CMD) };
#undef LIST_CMD

enum { NR_COMMANDS = sizeof(commands) / sizeof(commands[0]) };

static void print_overview(FILE *out)
{
    fprintf(out, "Usage: %s COMMAND [OPTIONS] ...\n\nCommands:\n", CLI_PROG);
    for (unsigned i = 0; i < NR_COMMANDS; i++)
        fprintf(out, "  %-10s %s\n", commands[i]->name, commands[i]->summary);
    fprintf(out, "\nRun '%s COMMAND --help' for a command's options.\n",
            CLI_PROG);
}

static const struct img_cmd *find_command(const char *name)
{
    for (unsigned i = 0; i < NR_COMMANDS; i++)
        if (strcmp(commands[i]->name, name) == 0)
            return commands[i];
    return NULL;
}

/* --help (or -h) anywhere before a "--" asks for the command's usage. */
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

int main(int argc, char **argv)
{
    const struct img_cmd *cmd;

    if (argc < 2)
        return cli_fail("no command given (see '%s --help')", CLI_PROG);
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        print_overview(stdout);
        return 0;
    }
    if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "-V") == 0) {
        printf("%s %s\n", CLI_PROG, PACKAGE_VERSION);
        return 0;
    }
    cmd = find_command(argv[1]);
    if (!cmd)
        return cli_fail("unknown command '%s' (see '%s --help')", argv[1],
                        CLI_PROG);
    if (wants_help(argc - 1, argv + 1)) {
        fputs(cmd->usage, stdout);
        return 0;
    }
    return cmd->run(argc - 1, argv + 1);
}
