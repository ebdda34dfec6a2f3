/* SPDX-License-Identifier: MIT */
/*
 * The write log of the power-loss test mode.
 *
 * A log is a sequence of records, each a fixed header followed by `len`
 * bytes of data for WRITE records:
 *
 *   uint32 magic 'SDWL', uint32 type, uint64 offset, uint64 len
 *
 * Records are appended in the order the operations take effect in the
 * page cache: a WRITE when its completion arrives, a FLUSH when it is
 * submitted (a flush covers exactly what completed before it started).
 * Every number is little-endian.
 */
#ifndef SENDENSE_WRITE_LOG_H
#define SENDENSE_WRITE_LOG_H

#include <stdint.h>
#include <stddef.h>

enum { WLOG_MAGIC = 0x4c574453 };

enum wlog_type {
    WLOG_WRITE = 1,
    WLOG_FLUSH = 2,
    WLOG_ZERO = 3,         /* offset, len: range reads as zeros */
    WLOG_TRUNCATE = 4,     /* offset: new size */
};

struct wlog_record {
    uint32_t magic;
    uint32_t type;
    uint64_t offset;
    uint64_t len;
};

struct write_log;

/* Open the log named by SENDENSE_WRITE_LOG, or return NULL when unset. */
struct write_log *write_log_open_from_env(void);
void write_log_close(struct write_log *log);
void write_log_append(struct write_log *log, enum wlog_type type,
                      uint64_t offset, uint64_t len, const void *data);

#endif
