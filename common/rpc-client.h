/* SPDX-License-Identifier: MIT */
/*
 * A blocking JSON-RPC 2.0 client over a unix socket, one JSON text per
 * line (DESIGN.md, "Control socket"): what sendensed uses to drive
 * sendense-nbd and sendense-ctl uses to drive both daemons.
 *
 * One connection per call: callers make few calls, and a fresh
 * connection never carries a half-read reply of a call that timed out.
 *
 * Outcomes of rpc_client_call():
 *  - 0, the daemon answered: either *result (the call's result) or
 *    *error (its JSON-RPC error object) is set, a new reference;
 *  - a negative errno, nothing answered, with a message in err naming
 *    the peer: -ENOTCONN when the socket cannot be connected to,
 *    whatever the reason (a missing socket file must not read as a
 *    method's "not found"), -ETIMEDOUT after timeout_s seconds without
 *    progress, -ECONNRESET when the peer hung up before replying,
 *    -EMSGSIZE for a reply line over reply_max bytes, -EPROTO for a
 *    reply that is not JSON-RPC, -ENOMEM.
 */
#ifndef SENDENSE_RPC_CLIENT_H
#define SENDENSE_RPC_CLIENT_H

#include "common/error.h"

#include <jansson.h>
#include <stddef.h>

struct rpc_client_opts {
    const char *peer;           /* "sendense-nbd": for messages */
    int timeout_s;              /* per wait for the socket, > 0 */
    size_t reply_max;           /* bytes of the reply line */
};

/* Call method with params (stolen; NULL for none). */
int rpc_client_call(const char *socket_path, const struct rpc_client_opts *o,
                    const char *method, json_t *params, json_t **result,
                    json_t **error, struct sd_error *err);

#endif
