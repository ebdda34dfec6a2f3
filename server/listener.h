/* SPDX-License-Identifier: MIT */
/*
 * Listening sockets (TCP and unix) and their accept loops, on the
 * control loop. Accepted connections go to conn_accept().
 */
#ifndef SENDENSE_SERVER_LISTENER_H
#define SENDENSE_SERVER_LISTENER_H

#include "common/error.h"
#include "server/server-config.h"

struct sd_server;

/* Bind and listen on everything in cfg->listen (errors name the
 * address). Accepting starts with listeners_start(). */
int listeners_open(struct sd_server *srv, struct sd_error *err);
/* Start the accept loops (coroutines on the control loop). */
int listeners_start(struct sd_server *srv);
/* Stop accepting and close the sockets (unix socket files removed). */
void listeners_close(struct sd_server *srv);
/* Free them (after the control loop has ended). */
void listeners_free(struct sd_server *srv);

#endif
