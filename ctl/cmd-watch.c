/* SPDX-License-Identifier: MIT */
/*
 * backup watch JOB: follows a job's progress until it completes or fails.
 *
 * Polls job.status once a second. On a terminal, one line is redrawn in
 * place (bar, bytes, percent, speed, ETA); otherwise (a pipe, a log) a
 * plain line is printed per poll, and with --json the status object
 * itself, one compact line per poll. Ends with exit status 0 when the job
 * completed and 1 when it failed, so a script can wait on it.
 */
#include "config.h"

#include "ctl/ctl.h"

#include <errno.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum { BAR_WIDTH = 30 };

/* The job's totals over its disks. */
struct progress {
    uint64_t done, total;
    double speed;               /* bytes/s, as sendensed measured it */
    long long eta;              /* seconds, -1 when unknown */
};

static void sum_progress(const json_t *job, struct progress *p)
{
    const json_t *d;
    size_t i;

    *p = (struct progress){ .eta = -1 };
    json_array_foreach(json_object_get(job, "disks"), i, d) {
        const json_t *eta = json_object_get(d, "eta_seconds");

        p->done += ctl_u64(d, "bytes_written") + ctl_u64(d, "bytes_zeroed") +
                   ctl_u64(d, "bytes_trimmed");
        p->total += ctl_u64(d, "total");
        p->speed += json_number_value(json_object_get(d, "speed"));
        /* The job ends with its slowest disk. */
        if (json_is_integer(eta) && json_integer_value(eta) > p->eta)
            p->eta = json_integer_value(eta);
    }
}

static void format_eta(long long eta, char *buf, size_t len)
{
    if (eta < 0)
        snprintf(buf, len, "--:--:--");
    else
        snprintf(buf, len, "%02lld:%02lld:%02lld", eta / 3600,
                 eta / 60 % 60, eta % 60);
}

static void print_progress(const json_t *job, bool tty)
{
    struct progress p;
    char done[32], total[32], speed[32], eta[32], bar[BAR_WIDTH + 1];
    double percent;
    int filled;

    sum_progress(job, &p);
    percent = p.total ? 100.0 * (double)p.done / (double)p.total : 0.0;
    if (percent > 100.0)
        percent = 100.0;
    ctl_human_size(p.done, done, sizeof(done));
    ctl_human_size(p.total, total, sizeof(total));
    ctl_human_size(p.speed > 0 ? (uint64_t)p.speed : 0, speed, sizeof(speed));
    format_eta(p.eta, eta, sizeof(eta));
    if (!tty) {
        printf("%s %s %5.1f%% %s / %s %s/s ETA %s\n",
               ctl_str(job, "job", "?"), ctl_str(job, "phase", "?"), percent,
               done, total, speed, eta);
        fflush(stdout);
        return;
    }
    filled = (int)(percent * BAR_WIDTH / 100.0);
    memset(bar, '#', (size_t)filled);
    memset(bar + filled, '-', (size_t)(BAR_WIDTH - filled));
    bar[BAR_WIDTH] = '\0';
    /* \r and erase-to-end-of-line: redraw in place. */
    printf("\r[%s] %5.1f%%  %s / %s  %s/s  ETA %s\033[K", bar, percent, done,
           total, speed, eta);
    fflush(stdout);
}

/* -1 while running or completing, else the exit status the job's end calls for. With
 * --json the last object already says how it ended: stdout gets no more. */
static int job_outcome(const json_t *job, bool tty, bool json)
{
    const char *phase = ctl_str(job, "phase", "?");

    if (strcmp(phase, "running") == 0 || strcmp(phase, "completing") == 0)
        return -1;
    if (tty)
        printf("\n");
    if (strcmp(phase, "completed") == 0) {
        if (!json)
            printf("job %s completed\n", ctl_str(job, "job", "?"));
        return CTL_EXIT_OK;
    }
    return ctl_fail(CTL_EXIT_ERROR, "job %s %s: %s", ctl_str(job, "job", "?"),
                    phase, ctl_str(job, "failure_reason", "no reason given"));
}

static void sleep_one_second(void)
{
    struct timespec ts = { .tv_sec = 1 };

    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

static int poll_once(const struct ctl_ctx *ctx, const char *job_id, bool tty,
                     int *outcome)
{
    struct ctl_rpc_error err;
    json_t *job = NULL;
    int status = CTL_EXIT_OK;

    if (ctl_rpc_call(ctx->socket, "sendensed", "job.status",
                     json_pack("{s:s}", "job", job_id), &job, &err) < 0) {
        if (tty)
            printf("\n");
        return ctl_report_rpc("job.status", &err);
    }
    if (ctx->json) {
        if (json_dumpf(job, stdout, JSON_COMPACT | JSON_PRESERVE_ORDER) < 0 ||
            puts("") == EOF)
            status = ctl_fail(CTL_EXIT_ERROR, "could not write to stdout");
        fflush(stdout);
    } else {
        print_progress(job, tty);
    }
    if (status == CTL_EXIT_OK)
        *outcome = job_outcome(job, tty, ctx->json);
    json_decref(job);
    return status;
}

int ctl_backup_watch(struct ctl_ctx *ctx, int argc, char **argv)
{
    int first, status, outcome = -1;
    bool tty;

    status = ctl_parse_plain(ctx, argc, argv, 1, &first);
    if (status != 0)
        return status;
    tty = isatty(STDOUT_FILENO) && !ctx->json;
    for (;;) {
        status = poll_once(ctx, argv[first], tty, &outcome);
        if (status != CTL_EXIT_OK)
            return status;
        if (outcome >= 0)
            return outcome;
        sleep_one_second();
    }
}

const char ctl_backup_watch_usage[] =
    "Usage: sendense-ctl backup watch JOB [--json]\n\n"
    "Follows a job until it completes or fails, asking sendensed once a\n"
    "second (job.status). On a terminal a progress line is redrawn in\n"
    "place: bar, percent, bytes written of the disks' total, speed and\n"
    "ETA; otherwise one plain line per second, or with --json the status\n"
    "object, one compact line per second. Percent counts written, zeroed\n"
    "and trimmed bytes against the virtual size, so an incremental ends\n"
    "well below 100%.\n\n"
    "Exit status 0 when the job completed, 1 when it failed (with the\n"
    "reason on stderr).\n";
