/* SPDX-License-Identifier: MIT */
/*
 * img-writer --verify: does an image hold what a writer's journal says?
 *
 * The journal lists every op in submission order. An op is *durable* when
 * it must be in the image: in crash mode (no --cut-offset) every completed
 * op is durable, since a write the library completed is in the kernel; in
 * power-loss mode an op is durable only if it completed before a flush was
 * submitted whose completion the log cut covers (that flush's FC line
 * carries a log offset at or below the cut).
 *
 * The image is checked in pieces: the address space split at 512-byte
 * boundaries (a power cut or a kill tears at sector granularity at worst)
 * and at the edges of every op. For each piece the set of acceptable
 * contents is built by walking the ops that cover it in order:
 *  - a durable write or zero replaces the set with its own content;
 *  - any other write or zero adds its content (it may or may not have
 *    landed, in whole or in part), and a write adds zeros as well: its
 *    cluster's mapping may have reached the disk before its data (a hole
 *    reads as zeros), which a qcow2 image may show for a write no flush
 *    covered. Only inside the write's own range, though: bytes beside it
 *    (the rest of a cluster or subcluster the engine copied) must keep
 *    what they held;
 *  - a discard adds zeros and the initial content (the contract: a
 *    discarded range reads as zeros, as the backing's data, or, in a
 *    partly covered cluster, unchanged).
 * The set starts as {initial content}. A piece that matches nothing in its
 * set is a lost or misplaced write, and the tool fails.
 */
#include "config.h"

#include "img-writer.h"

#include "common/ring.h"
#include "qcow2/image.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { BUCKET_SHIFT = 16, SECTOR = 512, CHUNK = 1 << 20, MAX_REPORTS = 10 };

struct jop {
    uint64_t run, op;
    char kind;
    uint64_t off, len;
    uint64_t done_line;        /* line of its C record, or UINT64_MAX */
};

struct jflush {
    uint64_t run, id;
    uint64_t sub_line;
    uint64_t log_off;
    bool completed;
};

struct index_vec {
    uint32_t *v;
    size_t n, cap;
};

struct journal {
    struct jop *ops;
    size_t nops, cap_ops;
    struct jflush *flushes;
    size_t nflushes, cap_flushes;
    uint64_t durable_before;   /* ops completed before this line are durable */
};

struct checker {
    struct journal *j;
    const uint8_t *initial;
    size_t initial_len;
    struct index_vec *buckets;
    size_t nbuckets;
    uint64_t size;
    uint64_t pieces, bad;
    uint32_t *cover;           /* scratch: ops covering one sector */
    size_t cover_cap;
};

static void *grow(void *p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return p;
    *cap = *cap ? *cap * 2 : 64;
    if (*cap < need)
        *cap = need;
    p = realloc(p, *cap * elem);
    if (!p)
        die("out of memory");
    return p;
}

/* Latest op with this (run, op): ops are few enough for a backwards scan
 * from the end, where completions nearly always find their op at once. */
static struct jop *find_op(struct journal *j, uint64_t run, uint64_t op)
{
    for (size_t i = j->nops; i-- > 0;)
        if (j->ops[i].run == run && j->ops[i].op == op)
            return &j->ops[i];
    return NULL;
}

static struct jflush *find_flush(struct journal *j, uint64_t run, uint64_t id)
{
    for (size_t i = j->nflushes; i-- > 0;)
        if (j->flushes[i].run == run && j->flushes[i].id == id)
            return &j->flushes[i];
    return NULL;
}

static void parse_line(struct journal *j, const char *line, uint64_t lineno)
{
    uint64_t run, op, off, len, logoff;
    char kind;

    if (sscanf(line, "S %" SCNu64 " %" SCNu64 " %c %" SCNu64 " %" SCNu64,
               &run, &op, &kind, &off, &len) == 5) {
        j->ops = grow(j->ops, &j->cap_ops, j->nops + 1, sizeof(*j->ops));
        j->ops[j->nops++] = (struct jop){ run, op, kind, off, len,
                                          UINT64_MAX };
    } else if (sscanf(line, "C %" SCNu64 " %" SCNu64, &run, &op) == 2) {
        struct jop *o = find_op(j, run, op);
        if (!o)
            die("journal line %" PRIu64 ": completion of unknown op", lineno);
        o->done_line = lineno;
    } else if (sscanf(line, "FS %" SCNu64 " %" SCNu64, &run, &op) == 2) {
        j->flushes = grow(j->flushes, &j->cap_flushes, j->nflushes + 1,
                          sizeof(*j->flushes));
        j->flushes[j->nflushes++] = (struct jflush){ run, op, lineno, 0,
                                                     false };
    } else if (sscanf(line, "FC %" SCNu64 " %" SCNu64 " %" SCNu64, &run, &op,
                      &logoff) == 3) {
        struct jflush *f = find_flush(j, run, op);
        if (!f)
            die("journal line %" PRIu64 ": unknown flush", lineno);
        f->completed = true;
        f->log_off = logoff;
    } else {
        die("journal line %" PRIu64 ": cannot parse '%s'", lineno, line);
    }
}

/* A kill can leave a last line without its newline: it is ignored (its
 * event had not happened yet: lines are written before submission and
 * after completion). */
static void load_journal(struct journal *j, const char *path)
{
    size_t len;
    char *text = read_whole_file(path, &len);
    uint64_t lineno = 0;

    memset(j, 0, sizeof(*j));
    for (size_t pos = 0; pos < len;) {
        char *nl = memchr(text + pos, '\n', len - pos);
        if (!nl)
            break;
        *nl = '\0';
        parse_line(j, text + pos, ++lineno);
        pos = (size_t)(nl - text) + 1;
    }
    free(text);
}

static void set_durability(struct journal *j, const struct verify_args *a)
{
    const struct jflush *best = NULL;

    if (!a->have_cut) {
        j->durable_before = UINT64_MAX;
        return;
    }
    for (size_t i = 0; i < j->nflushes; i++) {
        const struct jflush *f = &j->flushes[i];
        if (f->completed && f->log_off <= a->cut_offset &&
            (!best || f->sub_line > best->sub_line))
            best = f;
    }
    j->durable_before = best ? best->sub_line : 0;
    if (best)
        printf("img-writer: cut at log offset %" PRIu64 " covers flush %"
               PRIu64 " of run %" PRIu64 "\n", a->cut_offset, best->id,
               best->run);
    else
        printf("img-writer: cut at log offset %" PRIu64 " covers no flush\n",
               a->cut_offset);
}

static bool is_durable(const struct journal *j, const struct jop *o)
{
    return o->done_line != UINT64_MAX && o->done_line < j->durable_before;
}

static void build_buckets(struct checker *c)
{
    c->nbuckets = (c->size >> BUCKET_SHIFT) + 1;
    c->buckets = calloc(c->nbuckets, sizeof(*c->buckets));
    if (!c->buckets)
        die("out of memory");
    for (size_t i = 0; i < c->j->nops; i++) {
        const struct jop *o = &c->j->ops[i];
        if (o->len == 0 || o->off + o->len > c->size)
            die("op %" PRIu64 " of run %" PRIu64 " lies outside the image",
                o->op, o->run);
        for (uint64_t b = o->off >> BUCKET_SHIFT;
             b <= (o->off + o->len - 1) >> BUCKET_SHIFT; b++) {
            struct index_vec *v = &c->buckets[b];
            v->v = grow(v->v, &v->cap, v->n + 1, sizeof(*v->v));
            v->v[v->n++] = (uint32_t)i;
        }
    }
}

/* ---- acceptable contents of one piece ---- */

struct candidates {
    bool initial, zero;
    uint32_t *writes;
    size_t n;
};

static bool initial_matches(const struct checker *c, const uint8_t *buf,
                            uint64_t off, uint64_t len)
{
    uint64_t have = 0;

    if (off < c->initial_len)
        have = c->initial_len - off < len ? c->initial_len - off : len;
    return (have == 0 || memcmp(buf, c->initial + off, have) == 0) &&
           is_zero(buf + have, len - have);
}

static void collect(const struct checker *c, const uint32_t *cover,
                    size_t ncover, uint64_t off, uint64_t end,
                    struct candidates *set)
{
    set->initial = true;
    set->zero = false;
    set->n = 0;
    for (size_t i = 0; i < ncover; i++) {
        const struct jop *o = &c->j->ops[cover[i]];
        bool durable = is_durable(c->j, o);
        if (o->off >= end || o->off + o->len <= off)
            continue;
        if (o->kind == 'd') {
            set->zero = set->initial = true;
            continue;
        }
        if (durable) {
            set->initial = set->zero = false;
            set->n = 0;
        }
        if (o->kind == 'w')
            set->writes[set->n++] = cover[i];
        if (o->kind != 'w' || !durable)
            set->zero = true;
    }
}

static bool piece_ok(const struct checker *c, const struct candidates *set,
                     const uint8_t *buf, uint64_t off, uint64_t len)
{
    if (set->zero && is_zero(buf, len))
        return true;
    if (set->initial && initial_matches(c, buf, off, len))
        return true;
    for (size_t i = 0; i < set->n; i++) {
        const struct jop *o = &c->j->ops[set->writes[i]];
        if (pattern_matches(buf, len, writer_key(o->run, o->op), off))
            return true;
    }
    return false;
}

/* What a bad piece holds instead, to make the report useful. */
static void describe_piece(const struct checker *c, const uint8_t *buf,
                           uint64_t off, uint64_t len)
{
    if (is_zero(buf, len)) {
        fprintf(stderr, "    it holds zeros\n");
        return;
    }
    if (initial_matches(c, buf, off, len)) {
        fprintf(stderr, "    it holds the initial content\n");
        return;
    }
    for (size_t i = 0; i < c->j->nops; i++) {
        const struct jop *o = &c->j->ops[i];
        if (o->kind == 'w' && off >= o->off && off + len <= o->off + o->len &&
            pattern_matches(buf, len, writer_key(o->run, o->op), off)) {
            fprintf(stderr, "    it holds the data of run %" PRIu64 " op %"
                    PRIu64 "\n", o->run, o->op);
            return;
        }
    }
    fprintf(stderr, "    it holds data no op wrote there\n");
}

static void report_bad(struct checker *c, const struct candidates *set,
                       const uint8_t *buf, uint64_t off, uint64_t len)
{
    if (c->bad++ >= MAX_REPORTS)
        return;
    fprintf(stderr, "img-writer: bytes %" PRIu64 "+%" PRIu64
            " hold none of:%s%s", off, len, set->initial ? " initial" : "",
            set->zero ? " zeros" : "");
    for (size_t i = 0; i < set->n; i++) {
        const struct jop *o = &c->j->ops[set->writes[i]];
        fprintf(stderr, " run%" PRIu64 "/op%" PRIu64 "(%s)", o->run, o->op,
                is_durable(c->j, o) ? "durable" :
                o->done_line == UINT64_MAX ? "in flight" : "completed");
    }
    fputc('\n', stderr);
    describe_piece(c, buf, off, len);
}

/* Check one sector [off, end) whose bytes are in buf. */
static void check_sector(struct checker *c, const uint8_t *buf, uint64_t off,
                         uint64_t end, struct candidates *set)
{
    const struct index_vec *b = &c->buckets[off >> BUCKET_SHIFT];
    size_t ncover = 0;
    uint64_t p = off;

    for (size_t i = 0; i < b->n; i++) {
        const struct jop *o = &c->j->ops[b->v[i]];
        if (o->off < end && o->off + o->len > off)
            c->cover[ncover++] = b->v[i];
    }
    while (p < end) {
        uint64_t q = end;
        for (size_t i = 0; i < ncover; i++) {
            const struct jop *o = &c->j->ops[c->cover[i]];
            if (o->off > p && o->off < q)
                q = o->off;
            if (o->off + o->len > p && o->off + o->len < q)
                q = o->off + o->len;
        }
        collect(c, c->cover, ncover, p, q, set);
        c->pieces++;
        if (!piece_ok(c, set, buf + (p - off), p, q - p))
            report_bad(c, set, buf + (p - off), p, q - p);
        p = q;
    }
}

static void check_image(struct checker *c, struct sd_img *img)
{
    struct candidates set;
    uint8_t *chunk = malloc(CHUNK);
    size_t most = 1;

    for (size_t i = 0; i < c->nbuckets; i++)
        most = c->buckets[i].n > most ? c->buckets[i].n : most;
    c->cover = calloc(most, sizeof(*c->cover));
    set.writes = calloc(most, sizeof(*set.writes));
    if (!chunk || !c->cover || !set.writes)
        die("out of memory");
    for (uint64_t off = 0; off < c->size; off += CHUNK) {
        uint64_t n = c->size - off < CHUNK ? c->size - off : CHUNK;
        int ret = sd_img_pread(img, chunk, n, off);
        if (ret < 0)
            die("read %" PRIu64 "+%" PRIu64 ": %s", off, n, strerror(-ret));
        for (uint64_t s = off; s < off + n; s += SECTOR) {
            uint64_t e = s + SECTOR < off + n ? s + SECTOR : off + n;
            check_sector(c, chunk + (s - off), s, e, &set);
        }
    }
    free(set.writes);
    free(c->cover);
    free(chunk);
}

int writer_verify(const struct verify_args *a)
{
    struct journal j;
    struct checker c = { .j = &j };
    struct sd_ring ring;
    struct sd_img *img;
    size_t durable = 0;
    int ret;

    load_journal(&j, a->journal_path);
    set_durability(&j, a);
    if (a->initial_path)
        c.initial = read_whole_file(a->initial_path, &c.initial_len);
    ret = sd_ring_init(&ring, 64);
    if (ret < 0)
        die("io_uring: %s", strerror(-ret));
    img = tool_open_image(a->image_path, false, &ring);
    c.size = sd_img_size(img);
    build_buckets(&c);
    check_image(&c, img);
    ret = sd_img_close(img);
    if (ret < 0)
        die("close: %s", strerror(-ret));
    sd_ring_exit(&ring);
    for (size_t i = 0; i < j.nops; i++)
        durable += is_durable(&j, &j.ops[i]);
    if (c.bad)
        die("%" PRIu64 " of %" PRIu64 " pieces hold unexpected data "
            "(%zu ops in the journal, %zu durable)", c.bad, c.pieces, j.nops,
            durable);
    printf("img-writer: verified %" PRIu64 " pieces against %zu ops (%zu "
           "durable), %zu flushes\n", c.pieces, j.nops, durable, j.nflushes);
    for (size_t i = 0; i < c.nbuckets; i++)
        free(c.buckets[i].v);
    free(c.buckets);
    free(j.ops);
    free(j.flushes);
    free((void *)c.initial);
    return 0;
}
