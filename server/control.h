/* SPDX-License-Identifier: MIT */
/*
 * The control socket: JSON-RPC 2.0 (common/jsonrpc.h) over a unix
 * socket, on the control loop. Only root and the server's own user may
 * connect (peer credentials), and the socket file is mode 0660.
 */
#ifndef SENDENSE_SERVER_CONTROL_H
#define SENDENSE_SERVER_CONTROL_H

#include "common/error.h"
#include "common/jsonrpc.h"

struct sd_server;

int control_open(struct sd_server *srv, struct sd_error *err);
int control_start(struct sd_server *srv);
void control_close(struct sd_server *srv);

/* Send replies that were completed later (JSONRPC_PENDING). */
void control_kick(struct sd_server *srv);

/* control-methods.c */
extern const struct jsonrpc_method control_methods[];

#endif
