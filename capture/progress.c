/* SPDX-License-Identifier: MIT */
/*
 * Progress on stderr: a bar on a terminal, a plain line otherwise, or
 * one JSON object per line on stdout (--json). The summary goes to
 * stdout: a line, or a JSON "summary" event.
 */
#include "config.h"

#include "capture/capture.h"

#include <stdio.h>
#include <time.h>
#include <unistd.h>

#define MIB (1024.0 * 1024.0)

double cap_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void cap_progress_init(struct cap_progress *p, enum cap_progress_mode mode)
{
    *p = (struct cap_progress){ .mode = mode, .tty = isatty(STDERR_FILENO) == 1,
                                .start = cap_now() };
    p->last = p->start;
}

static uint64_t load(const uint64_t *v)
{
    return __atomic_load_n(v, __ATOMIC_RELAXED);
}

/* Bytes handled so far: acknowledged by the target, or skipped. */
static uint64_t done_bytes(const struct cap_counters *c)
{
    return load(&c->written) + load(&c->zeroed) + load(&c->skipped);
}

static double rate(double bytes, double secs)
{
    return secs > 0 ? bytes / MIB / secs : 0;
}

void cap_progress_update(struct cap_progress *p, const struct cap_counters *c,
                         bool final)
{
    double now = cap_now(), secs = now - p->start;
    uint64_t done = done_bytes(c);
    double pct = c->total ? 100.0 * (double)done / (double)c->total : 100.0;
    /* Disk covered per second: what the ETA is made of. */
    double speed = rate((double)(done - c->skipped), secs);

    if (p->mode == CAP_PROGRESS_NONE || (!final && now - p->last < 1.0))
        return;
    p->last = now;
    if (p->mode == CAP_PROGRESS_JSON) {
        printf("{\"event\":\"progress\",\"done\":%llu,\"total\":%llu,\"read\":%llu,"
               "\"written\":%llu,\"zeroed\":%llu,\"skipped\":%llu,\"verified\":%llu,"
               "\"seconds\":%.3f}\n",
               (unsigned long long)done, (unsigned long long)c->total,
               (unsigned long long)load(&c->read), (unsigned long long)load(&c->written),
               (unsigned long long)load(&c->zeroed), (unsigned long long)load(&c->skipped),
               (unsigned long long)load(&c->verified), secs);
        fflush(stdout);
    } else if (p->tty) {
        char bar[31];
        int fill = (int)(pct * 30 / 100);
        double eta = speed > 0 ? ((double)(c->total - done) / MIB) / speed : 0;

        for (int i = 0; i < 30; i++)
            bar[i] = i < fill ? '#' : '.';
        bar[30] = '\0';
        fprintf(stderr, "\r[%s] %5.1f%% %.1f/%.1f MiB %.1f MiB/s ETA %.0fs ", bar, pct,
                (double)done / MIB, (double)c->total / MIB, speed, eta);
        if (final)
            fputc('\n', stderr);
    } else if (load(&c->verified)) {
        /* --verify reading back (the copy itself is done). */
        fprintf(stderr, "verify: %llu/%llu bytes\n", (unsigned long long)load(&c->verified),
                (unsigned long long)(load(&c->written) + load(&c->zeroed)));
    } else {
        fprintf(stderr, "progress: %.1f%% %llu/%llu bytes %.1f MiB/s\n", pct,
                (unsigned long long)done, (unsigned long long)c->total, speed);
    }
}

void cap_progress_wait(struct cap_progress *p, const struct cap_counters *c,
                       const int *done, int workers)
{
    while (__atomic_load_n(done, __ATOMIC_ACQUIRE) < workers) {
        struct timespec ts = { 0, 100 * 1000 * 1000 };

        nanosleep(&ts, NULL);
        cap_progress_update(p, c, false);
    }
}

void cap_progress_summary(struct cap_progress *p, const struct cap_counters *c)
{
    double secs = cap_now() - p->start;
    /* Data sent per second: zeroes and skips cost (almost) nothing. */
    double speed = rate((double)c->written, secs);

    if (p->mode == CAP_PROGRESS_JSON)
        printf("{\"event\":\"summary\",\"read\":%llu,\"written\":%llu,\"zeroed\":%llu,"
               "\"skipped\":%llu,\"verified\":%llu,\"resent\":%llu,"
               "\"reconnects\":%u,\"seconds\":%.3f,\"mib_per_second\":%.1f}\n",
               (unsigned long long)c->read, (unsigned long long)c->written,
               (unsigned long long)c->zeroed, (unsigned long long)c->skipped,
               (unsigned long long)c->verified, (unsigned long long)c->resent,
               c->reconnects, secs, speed);
    else
        printf("read %llu written %llu zeroed %llu skipped %llu verified %llu bytes in "
               "%.2f s, %.1f MiB/s\n", (unsigned long long)c->read,
               (unsigned long long)c->written, (unsigned long long)c->zeroed,
               (unsigned long long)c->skipped, (unsigned long long)c->verified, secs, speed);
    if (p->mode != CAP_PROGRESS_JSON && c->reconnects)
        printf("  after %u reconnect%s: %llu bytes sent again (acknowledged, not yet "
               "flushed when the connection was lost)\n", c->reconnects,
               c->reconnects == 1 ? "" : "s", (unsigned long long)c->resent);
    fflush(stdout);
}
