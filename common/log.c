/* SPDX-License-Identifier: MIT */
#include "config.h"

#include "log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static atomic_int log_level = SD_LOG_INFO;
static atomic_int log_timestamps = 1;

enum { HELD_BYTES = 32 * 1024 };

static _Thread_local struct {
    unsigned depth;
    size_t len;
    char buf[HELD_BYTES];
} held;

static void write_out(const char *buf, size_t len)
{
    /* A failed log write has nowhere better to be reported. */
    ssize_t w = write(STDERR_FILENO, buf, len);
    (void)w;
}

static void flush_held(void)
{
    if (held.len)
        write_out(held.buf, held.len);
    held.len = 0;
}

void sd_log_hold(void)
{
    held.depth++;
}

void sd_log_release(void)
{
    if (held.depth && --held.depth == 0)
        flush_held();
}

/* Whole lines only, so lines of other threads never land inside one. */
static void emit(const char *line, size_t n)
{
    if (!held.depth) {
        write_out(line, n);
        return;
    }
    if (held.len + n > sizeof(held.buf))
        flush_held();
    memcpy(held.buf + held.len, line, n);
    held.len += n;
}

void sd_log_set_level(enum sd_log_level level)
{
    atomic_store(&log_level, (int)level);
}

void sd_log_set_timestamps(int on)
{
    atomic_store(&log_timestamps, on);
}

static const char *level_name(enum sd_log_level level)
{
    switch (level) {
    case SD_LOG_DEBUG: return "debug";
    case SD_LOG_INFO: return "info";
    case SD_LOG_WARN: return "warning";
    case SD_LOG_ERROR: return "error";
    }
    return "?";
}

/* The date and time to the second, formatted once per second per thread:
 * a reload logs two lines for each of a thousand exports. */
static size_t format_second(time_t sec, char *buf, size_t size)
{
    static _Thread_local time_t cached_sec = -1;
    static _Thread_local char cached[32];
    static _Thread_local size_t cached_len;
    struct tm tm;

    if (sec != cached_sec) {
        gmtime_r(&sec, &tm);
        cached_len = strftime(cached, sizeof(cached), "%Y-%m-%dT%H:%M:%S",
                              &tm);
        cached_sec = sec;
    }
    if (cached_len >= size)
        return 0;
    memcpy(buf, cached, cached_len);
    return cached_len;
}

static size_t format_timestamp(char *buf, size_t size)
{
    struct timespec ts;

    if (!atomic_load(&log_timestamps))
        return 0;
    clock_gettime(CLOCK_REALTIME, &ts);
    size_t n = format_second(ts.tv_sec, buf, size);
    int m = snprintf(buf + n, size - n, ".%03ldZ ", ts.tv_nsec / 1000000);
    return m > 0 && (size_t)m < size - n ? n + (size_t)m : n;
}

void sd_log(enum sd_log_level level, const char *fmt, ...)
{
    char line[2048];
    size_t n;
    va_list ap;
    int m;

    if ((int)level < atomic_load(&log_level))
        return;
    n = format_timestamp(line, sizeof(line));
    m = snprintf(line + n, sizeof(line) - n, "%s: ", level_name(level));
    if (m > 0)
        n += (size_t)m;
    va_start(ap, fmt);
    m = vsnprintf(line + n, sizeof(line) - n - 1, fmt, ap);
    va_end(ap);
    if (m > 0)
        n += (size_t)m < sizeof(line) - n - 1 ? (size_t)m : sizeof(line) - n - 2;
    line[n++] = '\n';
    emit(line, n);
}
