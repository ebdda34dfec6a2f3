/* SPDX-License-Identifier: MIT */
/*
 * Small helpers shared by the test tools (img-model, img-writer,
 * wlog-replay): a seeded random generator, the data pattern that lets a
 * verifier tell which operation wrote a byte, and fatal-error reporting.
 * Test programs, not library code: they print and exit on failure.
 */
#ifndef SENDENSE_TOOL_UTIL_H
#define SENDENSE_TOOL_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct sd_ring;
struct sd_img;

/* splitmix64: tiny, fast, and good enough to pick offsets and sizes. */
struct tool_rng {
    uint64_t state;
};

void rng_seed(struct tool_rng *r, uint64_t seed);
uint64_t rng_next(struct tool_rng *r);
/* Uniform in [0, bound); bound must not be 0. */
uint64_t rng_below(struct tool_rng *r, uint64_t bound);
/* True with probability percent/100. */
bool rng_percent(struct tool_rng *r, unsigned percent);

/* A 64-bit mix of x (the splitmix64 finaliser). */
uint64_t mix64(uint64_t x);

/* The content an operation keyed `key` writes at absolute image offset
 * off: byte (off % 8) of mix64(key ^ off / 8). Deterministic, so a
 * verifier can recompute what any operation put anywhere. */
void pattern_fill(void *buf, size_t len, uint64_t key, uint64_t off);
/* True when buf (read from offset off) holds exactly that content. */
bool pattern_matches(const void *buf, size_t len, uint64_t key, uint64_t off);

bool is_zero(const void *buf, size_t len);

/* Print "prog: message" and exit(1). */
void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* Parse an unsigned number with an optional K/M/G suffix, or die. */
uint64_t parse_size(const char *what, const char *s);

/* Whole-file helpers; they die on error. */
void *read_whole_file(const char *path, size_t *len);
void write_whole_file(const char *path, const void *buf, size_t len);
void write_all(int fd, const void *buf, size_t len);

/* Open path with the library (die on error). */
/* Open images the way sendense-nbd does: aligned data I/O with O_DIRECT. */
extern bool tool_direct_data;
struct sd_img *tool_open_image(const char *path, bool writable,
                               struct sd_ring *ring);

extern const char *tool_name;

#endif
