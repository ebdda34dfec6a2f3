/* SPDX-License-Identifier: MIT */
/* backup delete|verify|prune|retention: sendensed's catalog upkeep,
 * forwarded one to one (forward.c) and printed by print-retention.c;
 * part of the backup group (cmd-backup.c). */
#include "config.h"

#include "ctl/ctl.h"

#define ARGS(...) (const char *const[]){ __VA_ARGS__, NULL }
#define REPO_OPT { "repository", "repository", CTL_FWD_STRING }
#define OPTS(...) (const struct ctl_forward_opt[]){ __VA_ARGS__, \
                                                   CTL_FORWARD_OPT_END }

int ctl_backup_delete(struct ctl_ctx *ctx, int argc, char **argv)
{
    const struct ctl_forward f = {
        "backup.delete", ARGS("vm", "id"), 2,
        OPTS({ "disk", "disk", CTL_FWD_STRING },
             { "mode", "mode", CTL_FWD_STRING }, REPO_OPT),
        ctl_print_delete,
    };
    return ctl_run_forward(ctx, argc, argv, &f);
}

int ctl_backup_verify(struct ctl_ctx *ctx, int argc, char **argv)
{
    const struct ctl_forward f = {
        "backup.verify", ARGS("vm", "disk", "id"), 3,
        OPTS({ "checksum", "checksum", CTL_FWD_BOOL }, REPO_OPT),
        ctl_print_verify,
    };
    return ctl_run_forward(ctx, argc, argv, &f);
}

int ctl_backup_prune(struct ctl_ctx *ctx, int argc, char **argv)
{
    const struct ctl_forward f = {
        "backup.prune", ARGS("vm"), 0,
        OPTS({ "keep-last", "keep_last", CTL_FWD_INT },
             { "keep-days", "keep_days", CTL_FWD_INT },
             { "dry-run", "dry_run", CTL_FWD_BOOL }, REPO_OPT),
        ctl_print_prune,
    };
    return ctl_run_forward(ctx, argc, argv, &f);
}

int ctl_backup_retention(struct ctl_ctx *ctx, int argc, char **argv)
{
    const struct ctl_forward f = {
        "vm.retention", ARGS("vm"), 1,
        OPTS({ "keep-last", "keep_last", CTL_FWD_INT },
             { "keep-days", "keep_days", CTL_FWD_INT },
             { "clear", "clear", CTL_FWD_BOOL }, REPO_OPT),
        ctl_print_retention,
    };
    return ctl_run_forward(ctx, argc, argv, &f);
}

const char ctl_backup_delete_usage[] =
    "Usage: sendense-ctl backup delete VM ID [--disk DISK]\n"
    "           [--mode refuse|merge|cascade] [--repository R] [--json]\n\n"
    "Deletes backup ID of every disk of VM that has it, or of DISK only\n"
    "(backup.delete). A backup others depend on is refused (refuse, the\n"
    "default), merged into its child (merge), or deleted with its\n"
    "descendants (cascade). Prints one row per backup removed, and one\n"
    "for a full merged into its child.\n";

const char ctl_backup_verify_usage[] =
    "Usage: sendense-ctl backup verify VM DISK ID [--checksum]\n"
    "           [--repository R] [--json]\n\n"
    "Checks a backup's image and its chain (backup.verify); --checksum\n"
    "also compares the image's checksum with the sidecar's. Prints the\n"
    "result (ok or FAILED), what was read, the checksums, and the image\n"
    "check of every backup of the chain. A failed check is not an error:\n"
    "the exit status is 0 once the daemon has answered.\n";

const char ctl_backup_prune_usage[] =
    "Usage: sendense-ctl backup prune [VM] [--keep-last N] [--keep-days N]\n"
    "           [--dry-run] [--repository R] [--json]\n\n"
    "Applies retention to VM, or to every VM (backup.prune): keeps the\n"
    "last N backups and/or those of the last N days; --dry-run only says\n"
    "what would be done. Prints one row per action: remove, consolidate\n"
    "(a full merged with its next point) or skip, with its reason.\n";

const char ctl_backup_retention_usage[] =
    "Usage: sendense-ctl backup retention VM [--keep-last N] [--keep-days N]\n"
    "           [--clear] [--repository R] [--json]\n\n"
    "Shows or sets VM's own retention rules (vm.retention), kept in its\n"
    "vm.json: each one set replaces the repository's rule for this VM,\n"
    "for backup prune and for the retention run after each backup.\n"
    "--clear removes both (the repository's apply again), before setting\n"
    "those given. Prints each rule for the VM, the repository and the\n"
    "result (effective); '-' is not set.\n";
