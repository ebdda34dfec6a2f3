/* SPDX-License-Identifier: MIT */
/*
 * A copy that outlives a lost connection. The target server may restart
 * or the network may cut a connection in the middle of a backup; what a
 * FLUSH covered is on the target's disk, everything else is sent again.
 * Before reconnecting, the export is fenced (sendensed's backup.fence,
 * which calls sendense-nbd's export.fence): the lost connections' last
 * writes either landed or never will, so none can land after the new
 * connection's. A refusal (a write error the target replied with, a bad
 * source) is not retried, and neither is a copy that ran out of tries:
 * it fails with the error, never as a success.
 */
#include "config.h"

#include "capture/capture.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_DELAY 30.0

static void pause_for(double seconds)
{
    struct timespec ts = { (time_t)seconds,
                           (long)((seconds - (double)(time_t)seconds) * 1e9) };

    /* A signal cuts the wait short; the next attempt sees it. */
    nanosleep(&ts, NULL);
}

static void report_retry(const struct cap_progress *p, const struct cap_copy_result *res,
                         const struct sd_error *err, int attempt, int retries, double delay)
{
    unsigned long long flushed = res->flushed_to == UINT64_MAX
                                     ? 0 : (unsigned long long)res->flushed_to;

    if (p->mode == CAP_PROGRESS_JSON) {
        json_t *ev = json_pack("{s:s, s:s, s:I, s:I, s:i, s:i, s:f}", "event", "retry",
                               "error", err->msg, "flushed_to", (json_int_t)flushed,
                               "left", (json_int_t)res->left.n, "attempt", attempt,
                               "retries", retries, "delay", delay);
        char *text = ev ? json_dumps(ev, JSON_COMPACT) : NULL;

        if (text)
            printf("%s\n", text);
        fflush(stdout);
        free(text);
        json_decref(ev);
    }
    if (p->tty && p->mode == CAP_PROGRESS_AUTO)
        fputc('\n', stderr);
    fprintf(stderr, "sendense-capture: %s; durable up to %llu, %zu requests left; "
            "reconnecting in %.1f s (try %d of %d)\n", err->msg, flushed, res->left.n,
            delay, attempt, retries);
}

/* Wait, then fence; a fence the daemon cannot give yet (the target
 * server is still down) costs a try and waits again. Returns 0 when the
 * copy may reconnect, a negative errno (err set) when it must stop. */
static int wait_and_fence(const struct cap_resume *r, const struct cap_progress *p,
                          const struct cap_copy_result *res, int *attempt, double *delay,
                          struct sd_error *err)
{
    for (;;) {
        int ret;

        if (cap_interrupted())
            return sd_error_set(err, -EINTR, "interrupted by a signal");
        if (*attempt > r->retries) {
            char msg[sizeof(err->msg)];

            snprintf(msg, sizeof(msg), "%s", err->msg);
            return sd_error_set(err, err->code ? err->code : -EIO,
                                "gave up after %d reconnect%s: %s", r->retries,
                                r->retries == 1 ? "" : "s", msg);
        }
        report_retry(p, res, err, *attempt, r->retries, *delay);
        pause_for(*delay);
        *delay = *delay * 2 > MAX_DELAY ? MAX_DELAY : *delay * 2;
        (*attempt)++;
        if (!r->fence)
            return 0;
        ret = r->fence(r->fence_arg, err);
        if (ret <= 0)
            return ret;
    }
}

int cap_copy_resumable(struct cap_source *src, const struct cap_extents *reqs,
                       const struct cap_copy_opts *o, const struct cap_resume *r,
                       struct cap_counters *c, struct cap_progress *p,
                       struct sd_error *err)
{
    struct cap_extents todo = { 0 };
    const struct cap_extents *now = reqs;
    double delay = r->delay > 0 ? r->delay : 1.0;
    int attempt = 1, ret;

    for (;;) {
        struct cap_copy_result res;

        ret = cap_copy(src, now, o, c, p, &res, err);
        cap_extents_free(&todo);
        todo = res.left;
        now = &todo;
        if (ret == 0 || !res.retryable)
            break;
        ret = wait_and_fence(r, p, &res, &attempt, &delay, err);
        if (ret < 0)
            break;
        c->reconnects++;
    }
    cap_extents_free(&todo);
    return ret;
}
