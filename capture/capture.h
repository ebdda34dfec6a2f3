/* SPDX-License-Identifier: MIT */
/*
 * sendense-capture: copies a disk (raw file, block device or NBD export)
 * into an NBD export, in full or incrementally (docs/SENDENSE-CAPTURE.md).
 *
 *   extents.c   extent lists: add, sort, merge into requests
 *   changes.c   change-list JSON (VMware QueryChangedDiskAreas shape)
 *   source.c    the source: open, size, extent maps, reads
 *   copy.c      the copy engine: worker threads, libnbd aio writes, flushes
 *   progress.c  progress line, bar or JSON events; the final summary
 *   main.c      flags
 */
#ifndef SENDENSE_CAPTURE_H
#define SENDENSE_CAPTURE_H

#include "common/error.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct nbd_handle;

/* ---- extents.c ---- */

struct cap_extent {
    uint64_t off;
    uint64_t len;
    bool zero;          /* known to read as zeros: never read */
};

struct cap_extents {
    struct cap_extent *v;
    size_t n, cap;
};

/* Append [off, off+len); joins the previous extent when it touches it
 * and has the same kind. */
int cap_extents_add(struct cap_extents *x, uint64_t off, uint64_t len, bool zero);
void cap_extents_free(struct cap_extents *x);
uint64_t cap_extents_bytes(const struct cap_extents *x, bool zero);
/* Rewrite into requests: no request longer than max, none crossing a
 * multiple of max (so requests stay aligned), adjacent extents of one
 * kind merged. The input must be sorted and must not overlap. */
int cap_extents_split(const struct cap_extents *in, uint64_t max,
                      struct cap_extents *out);

/* ---- changes.c ---- */

struct cap_changes {
    char *change_id;            /* NULL when the file has none */
    uint64_t start, length;     /* the range the list covers */
    struct cap_extents areas;   /* sorted, not overlapping, inside it */
};

/* Parse a change list. Strict: unknown keys, wrong types, negative or
 * zero lengths, unsorted or overlapping areas, areas outside
 * [startOffset, startOffset+length) are errors. */
int cap_changes_parse(const char *text, size_t len, struct cap_changes *out,
                      struct sd_error *err);
int cap_changes_load(const char *path, struct cap_changes *out,
                     struct sd_error *err);
void cap_changes_free(struct cap_changes *c);

/* ---- source.c ---- */

struct cap_source {
    const char *name;
    int fd;                     /* file source, else -1 */
    struct nbd_handle *nbd;     /* NBD source, else NULL */
    uint64_t size;
};

/* bitmap: NULL, or the dirty bitmap whose meta context is requested. */
int cap_source_open(struct cap_source *s, const char *name, const char *bitmap,
                    struct sd_error *err);
void cap_source_close(struct cap_source *s);
/* Allocated data and zero extents of the whole source. */
int cap_source_map(struct cap_source *s, struct cap_extents *out,
                   struct sd_error *err);
/* The dirty extents of the bitmap given at open. */
int cap_source_dirty(struct cap_source *s, const char *bitmap,
                     struct cap_extents *out, struct sd_error *err);
int cap_source_read(struct cap_source *s, void *buf, uint64_t len,
                    uint64_t off, struct sd_error *err);

/* ---- progress.c ---- */

enum cap_progress_mode { CAP_PROGRESS_AUTO, CAP_PROGRESS_JSON, CAP_PROGRESS_NONE };

struct cap_counters {
    uint64_t total;             /* bytes the run handles (read + zeroed + skipped) */
    uint64_t read, written, zeroed, skipped;
};

struct cap_progress {
    enum cap_progress_mode mode;
    bool tty;
    double start;
    double last;
};

double cap_now(void);
void cap_progress_init(struct cap_progress *p, enum cap_progress_mode mode);
/* At most once a second unless final. */
void cap_progress_update(struct cap_progress *p, const struct cap_counters *c,
                         bool final);
void cap_progress_summary(struct cap_progress *p, const struct cap_counters *c);

/* ---- copy.c ---- */

struct cap_copy_opts {
    const char *target;
    int connections;
    int inflight;               /* requests in flight, all connections */
    uint64_t request_size;
    uint64_t flush_every;
    bool target_is_zero;
};

/* Copy the extents (sorted requests from cap_extents_split) from the
 * source to the target. Counters are updated as requests complete. */
int cap_copy(struct cap_source *src, const struct cap_extents *reqs,
             const struct cap_copy_opts *o, struct cap_counters *c,
             struct cap_progress *p, struct sd_error *err);

#endif
