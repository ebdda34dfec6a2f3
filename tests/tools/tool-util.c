/* SPDX-License-Identifier: MIT */
#include "config.h"

#include "tool-util.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

const char *tool_name = "tool";

uint64_t mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

void rng_seed(struct tool_rng *r, uint64_t seed)
{
    r->state = seed;
}

uint64_t rng_next(struct tool_rng *r)
{
    r->state += 0x9e3779b97f4a7c15ULL;
    return mix64(r->state);
}

uint64_t rng_below(struct tool_rng *r, uint64_t bound)
{
    return rng_next(r) % bound;
}

bool rng_percent(struct tool_rng *r, unsigned percent)
{
    return rng_below(r, 100) < percent;
}

static uint8_t pattern_byte(uint64_t key, uint64_t off)
{
    return (uint8_t)(mix64(key ^ (off / 8)) >> (8 * (off % 8)));
}

/* Whole little-endian words in the middle, single bytes at the edges. */
void pattern_fill(void *buf, size_t len, uint64_t key, uint64_t off)
{
    uint8_t *p = buf;

    while (len && off % 8) {
        *p++ = pattern_byte(key, off++);
        len--;
    }
    while (len >= 8) {
        uint64_t w = htole64(mix64(key ^ (off / 8)));
        memcpy(p, &w, 8);
        p += 8;
        off += 8;
        len -= 8;
    }
    while (len) {
        *p++ = pattern_byte(key, off++);
        len--;
    }
}

bool pattern_matches(const void *buf, size_t len, uint64_t key, uint64_t off)
{
    const uint8_t *p = buf;

    while (len && off % 8) {
        if (*p++ != pattern_byte(key, off++))
            return false;
        len--;
    }
    while (len >= 8) {
        uint64_t w = htole64(mix64(key ^ (off / 8)));
        if (memcmp(p, &w, 8) != 0)
            return false;
        p += 8;
        off += 8;
        len -= 8;
    }
    while (len) {
        if (*p++ != pattern_byte(key, off++))
            return false;
        len--;
    }
    return true;
}

bool is_zero(const void *buf, size_t len)
{
    const uint8_t *p = buf;

    /* Compare the buffer with itself shifted by one after a first byte. */
    return len == 0 || (p[0] == 0 && memcmp(p, p + 1, len - 1) == 0);
}

void die(const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "%s: ", tool_name);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

uint64_t parse_size(const char *what, const char *s)
{
    char *end;
    unsigned long long v;

    errno = 0;
    v = strtoull(s, &end, 0);
    if (errno || end == s)
        die("bad %s: '%s'", what, s);
    switch (*end) {
    case 'k': case 'K': v <<= 10; end++; break;
    case 'm': case 'M': v <<= 20; end++; break;
    case 'g': case 'G': v <<= 30; end++; break;
    default: break;
    }
    if (*end)
        die("bad %s: '%s'", what, s);
    return v;
}

void write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;

    while (len) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            die("write: %s", n < 0 ? strerror(errno) : "short write");
        p += n;
        len -= (size_t)n;
    }
}

void *read_whole_file(const char *path, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    char *buf;
    size_t done = 0;

    if (fd < 0 || fstat(fd, &st) < 0)
        die("%s: %s", path, strerror(errno));
    buf = malloc(st.st_size ? (size_t)st.st_size : 1);
    if (!buf)
        die("out of memory reading %s", path);
    while (done < (size_t)st.st_size) {
        ssize_t n = read(fd, buf + done, (size_t)st.st_size - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            die("%s: read failed", path);
        done += (size_t)n;
    }
    close(fd);
    *len = done;
    return buf;
}

void write_whole_file(const char *path, const void *buf, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

    if (fd < 0)
        die("%s: %s", path, strerror(errno));
    write_all(fd, buf, len);
    if (close(fd) < 0)
        die("%s: %s", path, strerror(errno));
}
