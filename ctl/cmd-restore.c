/* SPDX-License-Identifier: MIT */
/* restore ...: whole-disk and file-level restores (docs/SENDENSED.md,
 * "Restore"), forwarded one to one (forward.c). */
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
            OPTS({ "name", "name", CTL_FWD_STRING }, REPO_OPT))
RESTORE_CMD(run_unexport, "restore.unexport", ARGS("name"), 1, NULL)
RESTORE_CMD(run_list, "restore.list", NO_ARGS, 0, NULL)
RESTORE_CMD(run_mount, "restore.mount", ARGS("vm", "disk", "id"), 3,
            OPTS(REPO_OPT))
RESTORE_CMD(run_ls, "restore.ls", ARGS("mount", "volume", "path"), 3, NULL)
RESTORE_CMD(run_stat, "restore.stat", ARGS("mount", "volume", "path"), 3,
            NULL)
RESTORE_CMD(run_extract, "restore.extract",
            ARGS("mount", "volume", "path", "dest"), 4, NULL)
RESTORE_CMD(run_umount, "restore.umount", ARGS("mount"), 1, NULL)

#define JSON_OUT "\nThe result is printed as JSON.\n"

static const struct ctl_cmd cmds[] = {
    { "export", "export a backup point read-only over NBD",
      "Usage: sendense-ctl restore export VM DISK ID [--name NAME]\n"
      "           [--repository R]\n\n"
      "Exports the point in time read-only on sendense-nbd for a\n"
      "whole-disk restore (restore.export); prints its name and URI.\n"
      JSON_OUT, run_export },
    { "unexport", "remove a restore export",
      "Usage: sendense-ctl restore unexport NAME\n\n"
      "Removes a restore export; its clients are disconnected\n"
      "(restore.unexport).\n" JSON_OUT, run_unexport },
    { "list", "restore exports and mounts",
      "Usage: sendense-ctl restore list\n\n"
      "The restore exports and mounts sendensed holds (restore.list).\n"
      JSON_OUT, run_list },
    { "mount", "mount a backup point's file systems",
      "Usage: sendense-ctl restore mount VM DISK ID [--repository R]\n\n"
      "Mounts every file system of the point read-only, in sendensed's\n"
      "private namespace (restore.mount); prints the mount id and its\n"
      "volumes.\n" JSON_OUT, run_mount },
    { "ls", "list a folder of a mounted volume",
      "Usage: sendense-ctl restore ls MOUNT VOLUME PATH\n\n"
      "The entries of PATH (relative to the volume's root) in a restore\n"
      "mount (restore.ls).\n" JSON_OUT, run_ls },
    { "stat", "one entry of a mounted volume",
      "Usage: sendense-ctl restore stat MOUNT VOLUME PATH\n\n"
      "One entry, a final symlink not followed (restore.stat).\n" JSON_OUT,
      run_stat },
    { "extract", "copy a file or folder out of a mount",
      "Usage: sendense-ctl restore extract MOUNT VOLUME PATH DEST\n\n"
      "Copies a file to DEST, or a folder as a tar archive, on sendensed's\n"
      "host; DEST is absolute and must not exist (restore.extract).\n"
      JSON_OUT, run_extract },
    { "umount", "end a restore mount",
      "Usage: sendense-ctl restore umount MOUNT\n\n"
      "Unmounts and releases a restore mount (restore.umount).\n" JSON_OUT,
      run_umount },
    { NULL, NULL, NULL, NULL },
};

const struct ctl_group ctl_group_restore = {
    .name = "restore",
    .summary = "restores: export, mount, ls, stat, extract, umount, list",
    .daemon = "sendensed",
    .cmds = cmds,
};
