/* SPDX-License-Identifier: MIT */
/*
 * What both daemons do with unix sockets: listen on a path (its folder
 * made, a stale socket file from a killed process replaced, another
 * live listener refused), and tell whether a peer may talk to them
 * (root, or the daemon's own user). Also mkdir -p, which the socket
 * folders and run-time folders need.
 */
#ifndef SENDENSE_COMMON_UNIX_SOCKET_H
#define SENDENSE_COMMON_UNIX_SOCKET_H

#include "common/error.h"

#include <stdbool.h>

/* mkdir -p path; what it creates gets mode. */
int sd_mkdir_p(const char *path, unsigned mode, struct sd_error *err);

/* A listening SOCK_STREAM socket at path, with the file's mode set (who
 * may connect is decided by the folder and this mode, not the umask).
 * -EADDRINUSE when another process listens there; -EEXIST when path is
 * something other than a socket. */
int sd_unix_listen(const char *path, unsigned mode, int *out,
                   struct sd_error *err);

/* Whether the peer of a connected unix socket is root or our own user;
 * *uid gets its uid (for the log). */
bool sd_unix_peer_allowed(int fd, unsigned *uid);

#endif
