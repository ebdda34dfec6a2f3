/* SPDX-License-Identifier: MIT */
/*
 * The private mount namespace of restore mounts.
 *
 * Guest file systems are untrusted: their mounts must never show on the
 * host, where a host process could stumble into them, and they must not
 * outlive the daemon. unshare(CLONE_NEWNS) gives the calling process a
 * copy of the host's mount table; making every mount in it private stops
 * our mounts from propagating back to the host (systemd makes / shared).
 * When the last process in the namespace exits, the kernel takes every
 * mount in it down. unshare(CLONE_NEWNS) also unshares the file system
 * context (CLONE_FS), which the kernel refuses (EINVAL) once the process
 * has threads, hence "before threads start".
 */
#include "config.h"

#include "catalog/restore-internal.h"

#include <errno.h>
#include <sched.h>
#include <stdbool.h>
#include <string.h>
#include <sys/mount.h>

static bool ns_done;

int sd_restore_ns_setup(struct sd_error *err)
{
    if (ns_done)
        return 0;
    if (unshare(CLONE_NEWNS) < 0)
        return sd_error_set(err, -errno, "unshare(CLONE_NEWNS): %s",
                            strerror(errno));
    if (mount("none", "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
        return sd_error_set(err, -errno, "making / private: %s",
                            strerror(errno));
    ns_done = true;
    return 0;
}
