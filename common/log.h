/* SPDX-License-Identifier: MIT */
/*
 * Logging for the daemons: one line per event on stderr (journald or a
 * terminal takes it from there), written with one write() so lines from
 * several threads never interleave. Library code does not log; it
 * returns errors for its caller to report.
 */
#ifndef SENDENSE_LOG_H
#define SENDENSE_LOG_H

enum sd_log_level { SD_LOG_DEBUG, SD_LOG_INFO, SD_LOG_WARN, SD_LOG_ERROR };

/* Messages below this level are dropped (default SD_LOG_INFO). */
void sd_log_set_level(enum sd_log_level level);
/* Prefix lines with a UTC timestamp (default on; off under systemd,
 * which stamps lines itself). */
void sd_log_set_timestamps(int on);

void sd_log(enum sd_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* While a thread holds the log, its lines are kept and written in a few
 * large writes, at release or when the buffer fills: a reload that adds
 * a thousand exports logs two thousand lines, and a write() each was a
 * tenth of its time. Holds nest. */
void sd_log_hold(void);
void sd_log_release(void);

#define sd_log_debug(...) sd_log(SD_LOG_DEBUG, __VA_ARGS__)
#define sd_log_info(...) sd_log(SD_LOG_INFO, __VA_ARGS__)
#define sd_log_warn(...) sd_log(SD_LOG_WARN, __VA_ARGS__)
#define sd_log_error(...) sd_log(SD_LOG_ERROR, __VA_ARGS__)

#endif
