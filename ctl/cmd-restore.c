/* SPDX-License-Identifier: MIT */
/* restore ...: whole-disk and file-level restores (docs/SENDENSED.md,
 * "Restore"), forwarded one to one (forward.c) and printed by
 * print-restore.c. */
#include "config.h"

#include "ctl/ctl.h"

#define ARGS(...) (const char *const[]){ __VA_ARGS__, NULL }
#define NO_ARGS (const char *const[]){ NULL }
#define REPO_OPT { "repository", "repository", CTL_FWD_STRING }
#define OPTS(...) (const struct ctl_forward_opt[]){ __VA_ARGS__, \
                                                   CTL_FORWARD_OPT_END }

/* One command: its run function, which hands its table to forward.c. */
#define RESTORE_CMD(fn, ...)                                            \
    static int fn(struct ctl_ctx *ctx, int argc, char **argv)           \
    {                                                                   \
        const struct ctl_forward f = { __VA_ARGS__ };                   \
        return ctl_run_forward(ctx, argc, argv, &f);                    \
    }

RESTORE_CMD(run_export, "restore.export", ARGS("vm", "disk", "id"), 3,
            OPTS({ "name", "name", CTL_FWD_STRING }, REPO_OPT),
            ctl_print_restore_export)
RESTORE_CMD(run_unexport, "restore.unexport", ARGS("name"), 1, NULL,
            ctl_print_restore_unexport)
RESTORE_CMD(run_list, "restore.list", NO_ARGS, 0, NULL,
            ctl_print_restore_list)
RESTORE_CMD(run_mount, "restore.mount", ARGS("vm", "disk", "id"), 3,
            OPTS(REPO_OPT), ctl_print_restore_mount)
RESTORE_CMD(run_ls, "restore.ls", ARGS("mount", "volume", "path"), 3, NULL,
            ctl_print_restore_ls)
RESTORE_CMD(run_stat, "restore.stat", ARGS("mount", "volume", "path"), 3,
            NULL, ctl_print_restore_stat)
RESTORE_CMD(run_extract, "restore.extract",
            ARGS("mount", "volume", "path", "dest"), 4, NULL,
            ctl_print_restore_extract)
RESTORE_CMD(run_umount, "restore.umount", ARGS("mount"), 1, NULL,
            ctl_print_restore_umount)

static const struct ctl_cmd cmds[] = {
    { "export", "export a backup point read-only over NBD",
      "Usage: sendense-ctl restore export VM DISK ID [--name NAME]\n"
      "           [--repository R] [--json]\n\n"
      "Exports the point in time read-only on sendense-nbd for a\n"
      "whole-disk restore (restore.export); prints its name, URI and\n"
      "backup point.\n", run_export },
    { "unexport", "remove a restore export",
      "Usage: sendense-ctl restore unexport NAME [--json]\n\n"
      "Removes a restore export; its clients are disconnected\n"
      "(restore.unexport).\n", run_unexport },
    { "list", "restore exports and mounts",
      "Usage: sendense-ctl restore list [--json]\n\n"
      "The restore exports and mounts sendensed holds (restore.list): a\n"
      "table of each, with the backup point, creation time (UTC), and the\n"
      "export's URI or the mount's volumes.\n", run_list },
    { "mount", "mount a backup point's file systems",
      "Usage: sendense-ctl restore mount VM DISK ID [--repository R]\n"
      "           [--json]\n\n"
      "Mounts every file system of the point read-only, in sendensed's\n"
      "private namespace (restore.mount); prints the mount id and a table\n"
      "of its volumes (kind, file system, offset, size, mounted, why not).\n",
      run_mount },
    { "ls", "list a folder of a mounted volume",
      "Usage: sendense-ctl restore ls MOUNT VOLUME PATH [--json]\n\n"
      "The entries of PATH (relative to the volume's root) in a restore\n"
      "mount (restore.ls): type, size, permissions, modification time\n"
      "(UTC) and name.\n", run_ls },
    { "stat", "one entry of a mounted volume",
      "Usage: sendense-ctl restore stat MOUNT VOLUME PATH [--json]\n\n"
      "One entry, a final symlink not followed (restore.stat).\n",
      run_stat },
    { "extract", "copy a file or folder out of a mount",
      "Usage: sendense-ctl restore extract MOUNT VOLUME PATH DEST [--json]\n"
      "\nCopies a file to DEST, or a folder as a tar archive, on sendensed's\n"
      "host; DEST is absolute and must not exist (restore.extract).\n",
      run_extract },
    { "umount", "end a restore mount",
      "Usage: sendense-ctl restore umount MOUNT [--json]\n\n"
      "Unmounts and releases a restore mount (restore.umount).\n",
      run_umount },
    { NULL, NULL, NULL, NULL },
};

const struct ctl_group ctl_group_restore = {
    .name = "restore",
    .summary = "restores: export, mount, ls, stat, extract, umount, list",
    .daemon = "sendensed",
    .cmds = cmds,
};
