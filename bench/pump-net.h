/* SPDX-License-Identifier: MIT */
/* Addresses and listening sockets shared by the harness's pumps. */
#ifndef SENDENSE_BENCH_PUMP_NET_H
#define SENDENSE_BENCH_PUMP_NET_H

#include <stdbool.h>
#include <sys/socket.h>

/* ADDR is unix:PATH or tcp:PORT (on 127.0.0.1). Fills ss and len and
 * returns the address family, or -EINVAL. */
int pump_address(const char *addr, struct sockaddr_storage *ss, socklen_t *len);

/* A socket listening on addr, with "listening on ADDR" printed on stdout
 * (the harness waits for that line), or a negative errno. A unix
 * socket's old path is removed first. */
int pump_listen(const char *addr);

/* TCP_NODELAY on a TCP socket. On the serving side of a unix socket, a
 * 4 MiB send buffer, as sendense-nbd gives its connections (server/conn.c:
 * the default holds less than one 256 KiB read reply); a client keeps
 * the default, as nbdcopy does. */
void pump_tune_socket(int fd, bool serving);

#endif
