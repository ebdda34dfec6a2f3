/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include "pump-net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

int pump_address(const char *addr, struct sockaddr_storage *ss, socklen_t *len)
{
    memset(ss, 0, sizeof *ss);
    if (strncmp(addr, "unix:", 5) == 0) {
        struct sockaddr_un *un = (struct sockaddr_un *)ss;
        if (strlen(addr + 5) >= sizeof un->sun_path)
            return -ENAMETOOLONG;
        un->sun_family = AF_UNIX;
        strcpy(un->sun_path, addr + 5);
        *len = sizeof *un;
        return AF_UNIX;
    }
    if (strncmp(addr, "tcp:", 4) == 0) {
        struct sockaddr_in *in = (struct sockaddr_in *)ss;
        char *end;
        long port = strtol(addr + 4, &end, 10);
        if (*end || port <= 0 || port > 65535)
            return -EINVAL;
        in->sin_family = AF_INET;
        in->sin_port = htons((unsigned short)port);
        in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        *len = sizeof *in;
        return AF_INET;
    }
    return -EINVAL;
}

int pump_listen(const char *addr)
{
    struct sockaddr_storage ss;
    socklen_t len;
    int family = pump_address(addr, &ss, &len), one = 1, err;

    if (family < 0)
        return family;
    int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (family == AF_UNIX)
        unlink(((struct sockaddr_un *)&ss)->sun_path);
    if (bind(fd, (struct sockaddr *)&ss, len) < 0 || listen(fd, 4) < 0) {
        err = -errno;
        close(fd);
        return err;
    }
    printf("listening on %s\n", addr);
    fflush(stdout);
    return fd;
}

void pump_tune_socket(int fd, bool serving)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    int one = 1, sndbuf = 4 * 1024 * 1024;

    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
        return;
    if (ss.ss_family == AF_INET)
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    else if (ss.ss_family == AF_UNIX && serving)
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
}
