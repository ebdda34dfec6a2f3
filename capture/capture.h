/* SPDX-License-Identifier: MIT */
/*
 * sendense-capture: copies a disk (raw file, block device or NBD export)
 * into an NBD export, in full or incrementally (docs/SENDENSE-CAPTURE.md).
 *
 *   extents.c   extent lists: add, sort, merge into requests
 *   changes.c   change-list JSON (VMware QueryChangedDiskAreas shape)
 *   source.c    the source: open, size, extent maps, reads
 *   plan.c      what a run copies: map, change list or bitmap, cut into requests
 *   copy.c      the copy engine: worker threads, libnbd aio writes, flushes
 *   progress.c  progress line, bar or JSON events; the final summary
 *   resume.c    a copy that reconnects after a lost connection, fencing first
 *   daemon.c    calls to sendensed (backup.start, complete, fail, fence)
 *   backup.c    the backup command: every disk of a VM, driven by sendensed
 *   main.c      flags
 *   source-qcow2.c  a qcow2 file source, read through qcow2/ (libsdimg)
 *   verify.c    --verify: read the target back and compare
 */
#ifndef SENDENSE_CAPTURE_H
#define SENDENSE_CAPTURE_H

#include "common/error.h"

#include <jansson.h>
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
    struct cap_qcow2 *qcow2;    /* qcow2 file source (source-qcow2.c), else NULL */
    uint64_t size;
};

/* nbd_connect_uri, with the local files a URI names allowed (TLS keys
 * and certificates). -1 with libnbd's error set, as nbd_connect_uri. */
int cap_nbd_connect_uri(struct nbd_handle *h, const char *uri);

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
    uint64_t resent;            /* acknowledged, but sent again: no flush covered them */
    unsigned reconnects;
    uint64_t verified;          /* bytes --verify read back and found equal */
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
/* Until *done reaches workers (threads count themselves done), showing
 * progress meanwhile. */
void cap_progress_wait(struct cap_progress *p, const struct cap_counters *c,
                       const int *done, int workers);
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

/* What one request added to the counters. */
struct cap_counted {
    uint64_t written, zeroed, skipped;
};

/* What a failed copy leaves to do. */
struct cap_copy_result {
    struct cap_extents left;    /* the requests not durable, as they were cut */
    uint64_t flushed_to;        /* everything below is durable (UINT64_MAX: all) */
    bool retryable;             /* a lost connection, not a refusal */
};

/* Copy the extents (sorted requests from cap_extents_split) from the
 * source to the target. Counters are updated as requests complete. On
 * failure res says what is left (the caller frees res->left). */
int cap_copy(struct cap_source *src, const struct cap_extents *reqs,
             const struct cap_copy_opts *o, struct cap_counters *c,
             struct cap_progress *p, struct cap_copy_result *res,
             struct sd_error *err);

/* Set by SIGINT/SIGTERM (main.c): the copy stops, nothing is retried. */
bool cap_interrupted(void);

/* ---- plan.c ---- */

struct cap_plan_opts {
    const struct cap_changes *changes;  /* an incremental from a change list */
    const char *bitmap;                 /* an incremental from a dirty bitmap */
    bool target_is_zero;
    uint64_t request_size;
};

/* The requests of a run, and its total and skipped bytes. */
int cap_plan(struct cap_source *src, const struct cap_plan_opts *o,
             struct cap_extents *reqs, struct cap_counters *c, struct sd_error *err);

/* ---- resume.c ---- */

/* Before reconnecting: make sure no write of the lost connections can
 * still land (sendensed's backup.fence). 0: fenced; > 0: not now (the
 * target server is down), try again after a wait; < 0: stop (err). */
typedef int cap_fence_fn(void *arg, struct sd_error *err);

struct cap_resume {
    int retries;                /* reconnects allowed */
    double delay;               /* seconds before the first; doubles, up to 30 */
    cap_fence_fn *fence;        /* NULL: nothing to fence through */
    void *fence_arg;
};

/* cap_copy, then after each lost connection: fence, wait, connect again
 * and send every request that was not durable. */
int cap_copy_resumable(struct cap_source *src, const struct cap_extents *reqs,
                       const struct cap_copy_opts *o, const struct cap_resume *r,
                       struct cap_counters *c, struct cap_progress *p,
                       struct sd_error *err);

/* ---- daemon.c ---- */

/* Call a sendensed method (params stolen). An error reply becomes err
 * with the daemon's message; *result is a new reference on success. */
int cap_daemon_call(const char *socket_path, const char *method, json_t *params,
                    json_t **result, struct sd_error *err);

/* ---- backup.c ---- */

#define SDD_CAPTURE_DEFAULT_SOCKET "/run/sendense/sendensed.sock"

struct cap_backup_disk {
    const char *name;           /* disk<N> */
    const char *source;
    const char *changes;        /* change list, or NULL */
    const char *change_id;      /* recorded with backup.complete, or NULL */
};

struct cap_backup_opts {
    const char *socket;         /* sendensed's */
    const char *vm;
    const char *type;           /* auto | full | incremental */
    const char *repository;     /* NULL: the default */
    const char *bitmap;         /* every NBD source's dirty bitmap, or NULL */
    struct cap_backup_disk *disks;
    size_t ndisks;
    struct cap_copy_opts copy;  /* target unset: each disk's export */
    struct cap_resume resume;
    bool verify;
    enum cap_progress_mode progress;
};

int cap_backup(const struct cap_backup_opts *o, struct sd_error *err);

/* ---- source-qcow2.c and verify.c (qcow2 sources, --verify) ---- */

/* Open s->name through the image library when its probe says qcow2.
 * Returns 1 when s is now a qcow2 source, 0 when the file is not a qcow2
 * image (or cannot be probed: the raw path reports why), or a negative
 * errno. */
int cap_qcow2_open(struct cap_source *s, struct sd_error *err);
void cap_qcow2_close(struct cap_source *s);
/* Zero: unallocated in the whole chain, or zero clusters. */
int cap_qcow2_map(struct cap_source *s, struct cap_extents *out,
                  struct sd_error *err);
/* Safe from several threads at once. */
int cap_qcow2_read(struct cap_source *s, void *buf, uint64_t len, uint64_t off,
                   struct sd_error *err);

/* After a copy of reqs (completed and flushed): read every request back
 * from the target and compare it with the source (zero requests with
 * zeros). A difference is -EIO with the first differing offset in err.
 * c->verified counts the bytes found equal. */
int cap_verify(struct cap_source *src, const struct cap_extents *reqs,
               const char *target_uri, struct cap_counters *c,
               struct cap_progress *p, struct sd_error *err);

#endif
