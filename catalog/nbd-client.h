/* SPDX-License-Identifier: MIT */
/*
 * A blocking client of sendense-nbd's control socket, on
 * common/rpc-client.h (one connection per call).
 *
 * A JSON-RPC error comes back as a negative errno recovered from the
 * error's data ({"errno": "ENOENT"}, common/jsonrpc.h), with the
 * server's message in err. A socket nobody answers on is -ENOTCONN
 * (never -ENOENT, which means "no such export"). Calls give up after
 * NBDC_TIMEOUT_S seconds without progress (-ETIMEDOUT).
 */
#ifndef SENDENSE_CATALOG_NBD_CLIENT_H
#define SENDENSE_CATALOG_NBD_CLIENT_H

#include "common/error.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

enum {
    NBDC_TIMEOUT_S = 120,
    NBDC_REPLY_MAX = 4 << 20,       /* bytes of one reply line */
};

/* Call method with params (stolen; NULL for none). On success *result
 * is a new reference to the result. */
int nbdc_call(const char *socket_path, const char *method, json_t *params,
              json_t **result, struct sd_error *err);

/* export.add {name, path, format, readonly}. */
int nbdc_export_add(const char *socket_path, const char *name,
                    const char *path, const char *format, bool readonly,
                    struct sd_error *err);

/* export.remove {name, drain}: with drain, returns once the export's
 * clients are gone. -ENOENT when there is no such export. */
int nbdc_export_remove(const char *socket_path, const char *name, bool drain,
                       struct sd_error *err);

/* What sendensed reads from export.stats {name}. */
struct nbdc_export_stats {
    uint64_t bytes_written;         /* NBD_CMD_WRITE payload bytes */
    uint64_t bytes_zeroed;          /* WRITE_ZEROES lengths */
    uint64_t bytes_trimmed;
    unsigned clients;
    int64_t last_activity_ms;       /* wall clock, 0 when none */
    /* Writes (and flushes) the image failed: data the client sent is
     * not in it. The last one's errno name ("ENOSPC"; "" when none, or
     * from a server too old to say) and message. */
    uint64_t write_errors;
    char last_errno[16];
    char last_error[160];
};

int nbdc_export_stats(const char *socket_path, const char *name,
                      struct nbdc_export_stats *out, struct sd_error *err);

#endif
