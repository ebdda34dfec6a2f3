/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: a whole NBD session, seen from the server, with the
 * client's bytes taken from the input.
 *
 * Notes on the design:
 *
 * - Input: byte 0 chooses the setup (below); the rest is exactly what
 *   the client sends, from its handshake flags on, after which its
 *   sending side is shut down, so the server always sees the end.
 * - The server is the real one: a struct sd_server whose only loop is
 *   the calling thread's (the control worker doubles as the one data
 *   worker: workers points at control), exports applied with
 *   registry_apply, and the connection started with conn_accept on one
 *   end of a socketpair. No listener, no thread.
 * - On the same loop two coroutines play the client: one sends the
 *   bytes, one reads everything the server sends (so the server never
 *   blocks on a full socket buffer) and keeps it for the checks. When
 *   the connection has left the server's table and both are done, the
 *   registry is emptied and the images closed from the loop (as the
 *   server's own stop does), and the loop ends.
 * - Setup byte: bit 0 adds a qcow2 export "qcow2" (made with
 *   sd_img_create); bit 1 a temporary-overlay export "overlay" over
 *   another raw file; bit 2 makes "raw" read-only; bit 3 makes the peer
 *   look like a TCP client 192.0.2.7, which the export "private" (allow
 *   10.0.0.0/8) refuses; bit 4 sets tls mode "required" with no TLS
 *   configured, so every option but STARTTLS and ABORT is refused.
 *   "raw" (1 MiB raw file, some data, some holes), a read-only "ro"
 *   sharing its handle, and "private" are always there.
 * - Scratch files live in a sd-fuzz-nbd-* folder under $TMPDIR (default
 *   /dev/shm), removed at exit; a run that crashes leaves it behind.
 * - Every run starts from fresh files and a fresh server, so a run
 *   depends on its input only.
 *
 * What is checked beyond "no crash, no leak (of memory or descriptors, or
 * image locks), no sanitizer report":
 * the server's byte stream is parsed against a model of what the client
 * sent. The greeting is exact; option replies come in order, one final
 * reply (ACK or error) per option, each naming the client's option;
 * transmission starts only after an ACK to GO or the answer to
 * EXPORT_NAME; every reply names a cookie the client sent, simple and
 * structured replies are well formed (structured only when negotiated,
 * and READ/BLOCK_STATUS use them then), data chunks lie inside their
 * request; and every request the server could read whole gets exactly
 * one complete reply before the server closes, with nothing trailing.
 */
#include "config.h"

#include "common/byteorder.h"

#include "common/co-io.h"
#include "common/log.h"
#include "qcow2/image.h"
#include "server/conn.h"
#include "server/exports.h"
#include "server/image-table.h"
#include "server/nbd-proto.h"
#include "server/server.h"
#include "server/worker.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum {
    IMAGE_SIZE = 1 << 20,
    RING_ENTRIES = 256,
    RECV_CHUNK = 64 * 1024,
    OUTPUT_MAX = 256 << 20,       /* more means the server runs away */
    MAX_TRACKED_REQUESTS = 1 << 16,
    OPTION_PAYLOAD_MAX = 64 * 1024,   /* as handshake.c reads them */
    OPTION_DISCARD_MAX = 1 << 20,
};

enum {
    SETUP_QCOW2 = 1 << 0,
    SETUP_OVERLAY = 1 << 1,
    SETUP_RAW_READONLY = 1 << 2,
    SETUP_TCP_PEER = 1 << 3,
    SETUP_TLS_REQUIRED = 1 << 4,
};

static char folder[256];

/* ---- files ----------------------------------------------------------- */

static int remove_entry(const char *path, const struct stat *st, int flag,
                        struct FTW *ftw)
{
    (void)st; (void)flag; (void)ftw;
    return remove(path);
}

static void remove_folder(void)
{
    if (folder[0])
        (void)nftw(folder, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void path_in(char *buf, size_t len, const char *name)
{
    snprintf(buf, len, "%s/%s", folder, name);
}

/* Sparse 1 MiB with two written spans, so reads and block status see
 * data, holes and their borders. */
static void make_raw(const char *name)
{
    char p[512];
    uint8_t buf[8192];
    int fd;

    path_in(p, sizeof(p), name);
    fd = open(p, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || ftruncate(fd, IMAGE_SIZE) < 0)
        abort();
    for (size_t i = 0; i < sizeof(buf); i++)
        buf[i] = (uint8_t)(i * 7 + 1);
    if (pwrite(fd, buf, sizeof(buf), 4096) != (ssize_t)sizeof(buf) ||
        pwrite(fd, buf, 1000, IMAGE_SIZE - 1000) != 1000)
        abort();
    close(fd);
}

static void make_qcow2(void)
{
    struct sd_img_create_opts co = { .format = SD_FMT_QCOW2,
                                     .size = IMAGE_SIZE,
                                     .cluster_size = 4096 };
    struct sd_error err = { 0 };
    char p[512];

    path_in(p, sizeof(p), "disk.qcow2");
    (void)unlink(p);
    if (sd_img_create(p, &co, &err) < 0)
        abort();
}

static void setup_once(void)
{
    const char *tmp = getenv("TMPDIR");

    if (folder[0])
        return;
    if (!tmp || !tmp[0])
        tmp = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(folder, sizeof(folder), "%s/sd-fuzz-nbd-XXXXXX", tmp);
    if (!mkdtemp(folder))
        abort();
    atexit(remove_folder);
    /* Replies to a client that has gone must fail, not kill us. */
    signal(SIGPIPE, SIG_IGN);
    if (!getenv("FUZZ_NBD_LOG"))
        sd_log_set_level((enum sd_log_level)(SD_LOG_ERROR + 1));
}

/* ---- the server ------------------------------------------------------ */

static struct sd_export *export_new(const char *name, const char *file,
                                    bool readonly)
{
    struct sd_export *e = calloc(1, sizeof(*e));
    char p[512];

    path_in(p, sizeof(p), file);
    if (!e || !(e->name = strdup(name)) || !(e->path = strdup(p)) ||
        !(e->description = strdup("fuzz export")))
        abort();
    e->format = SD_FORMAT_AUTO;
    e->readonly = readonly;
    e->allow_all = true;
    return e;
}

static void apply(struct sd_server *srv, struct sd_export *e)
{
    struct sd_error err = { 0 };
    enum apply_result r = registry_apply(srv, e, &err);

    if (r != APPLY_ADDED) {
        fprintf(stderr, "fuzz-nbd-session: export: %d %s\n", r, err.msg);
        abort();
    }
}

static void add_exports(struct sd_server *srv, uint8_t setup)
{
    struct sd_export *e;
    struct sd_error err = { 0 };

    make_raw("disk.raw");
    apply(srv, export_new("raw", "disk.raw",
                          setup & SETUP_RAW_READONLY));
    apply(srv, export_new("ro", "disk.raw", true));
    e = export_new("private", "disk.raw", true);
    e->allow_all = false;
    e->n_allow = 1;
    e->allow = calloc(1, sizeof(*e->allow));
    if (!e->allow || sd_cidr_parse("10.0.0.0/8", e->allow, &err) < 0)
        abort();
    apply(srv, e);
    if (setup & SETUP_QCOW2) {
        make_qcow2();
        apply(srv, export_new("qcow2", "disk.qcow2", false));
    }
    if (setup & SETUP_OVERLAY) {
        /* Its own base: an image open writable cannot be a backing
         * file (the lock keeps writers out of backing files). */
        make_raw("base.raw");
        e = export_new("overlay", "base.raw", false);
        e->overlay = SD_OVERLAY_TEMPORARY;
        e->format = SD_FORMAT_RAW;
        apply(srv, e);
    }
}

static struct sd_server *server_new(uint8_t setup)
{
    struct sd_server *srv = calloc(1, sizeof(*srv));

    if (!srv || pthread_mutex_init(&srv->conns_lock, NULL) ||
        registry_init(srv) < 0 ||
        worker_init(&srv->control, -1, RING_ENTRIES) < 0 ||
        !(srv->overlay_dir = strdup(folder)))
        abort();
    srv->control_fd = -1;
    /* One loop for everything: the control worker is the data worker. */
    srv->workers = &srv->control;
    srv->n_workers = 1;
    srv->settings.handshake_timeout = 5;
    srv->settings.inflight_per_connection = SD_REQUEST_MAX * 2ull;
    srv->settings.inflight_per_process = SD_REQUEST_MAX * 4ull;
    srv->control.budget_max = srv->settings.inflight_per_process;
    if (setup & SETUP_TLS_REQUIRED)
        srv->settings.tls.mode = SD_TLS_REQUIRED;
    return srv;
}

static void server_free(struct sd_server *srv)
{
    worker_destroy(&srv->control);
    free(srv->overlay_dir);
    pthread_mutex_destroy(&srv->conns_lock);
    free(srv);
}

/* ---- the client ------------------------------------------------------ */

struct session {
    struct sd_server *srv;
    int fd;                       /* client end */
    const uint8_t *in;
    size_t in_len;
    uint8_t *out;                 /* everything the server sent */
    size_t out_len, out_cap;
    unsigned running;             /* sender, drainer, connection */
};

static void part_done(struct session *s)
{
    if (--s->running)
        return;
    /* As the server's own stop: definitions and images go from the
     * loop, then the loop ends. */
    registry_destroy(s->srv);
    image_table_close_all(s->srv);
    s->srv->control.stopping = true;
}

static void sender(void *arg)
{
    struct session *s = arg;

    /* A server that closed early makes this fail: that is fine. */
    (void)co_send_all(&s->srv->control.ring, s->fd, s->in, s->in_len, NULL);
    (void)shutdown(s->fd, SHUT_WR);
    part_done(s);
}

static void drainer(void *arg)
{
    struct session *s = arg;
    struct sd_ring *ring = &s->srv->control.ring;

    for (;;) {
        struct co_io_op op;
        struct io_uring_sqe *sqe;
        int n;

        if (s->out_cap - s->out_len < RECV_CHUNK) {
            size_t cap = s->out_cap ? 2 * s->out_cap : 2 * RECV_CHUNK;
            if (cap > OUTPUT_MAX)
                abort();
            s->out = realloc(s->out, cap);
            if (!s->out)
                abort();
            s->out_cap = cap;
        }
        sqe = co_io_prepare(ring, &op, false);
        if (!sqe)
            abort();
        io_uring_prep_recv(sqe, s->fd, s->out + s->out_len, RECV_CHUNK, 0);
        n = co_io_wait(ring, &op, NULL);
        if (n == -EINTR || n == -EAGAIN)
            continue;
        if (n <= 0)
            break;
        s->out_len += (size_t)n;
    }
    part_done(s);
}

static void conn_gone(void *arg)
{
    part_done(arg);
}

static void start(void *arg)
{
    struct session *s = arg;

    if (worker_spawn(sender, s) < 0 || worker_spawn(drainer, s) < 0 ||
        conn_wait_gone(s->srv, NULL, UINT64_MAX, conn_gone, s) < 0)
        abort();
}

static void connect_client(struct session *s, uint8_t setup)
{
    int sv[2];
    struct sockaddr_storage ss = { 0 };
    socklen_t len;

    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        abort();
    if (setup & SETUP_TCP_PEER) {
        struct sockaddr_in *in = (struct sockaddr_in *)&ss;
        in->sin_family = AF_INET;
        in->sin_port = htons(5555);
        in->sin_addr.s_addr = htonl(0xc0000207);     /* 192.0.2.7 */
        len = sizeof(*in);
    } else {
        ss.ss_family = AF_UNIX;
        len = sizeof(sa_family_t);
    }
    s->fd = sv[1];
    /* The server owns sv[0] from here: conn_finish closes it. */
    if (conn_accept(s->srv, sv[0], (struct sockaddr *)&ss, len, "fuzz") < 0)
        abort();
}

/* ---- the model of the client's stream -------------------------------- */

struct cursor {
    const uint8_t *p;
    size_t len, pos;
};

static bool take(struct cursor *c, size_t n, const uint8_t **out)
{
    if (c->len - c->pos < n)
        return false;
    *out = c->p + c->pos;
    c->pos += n;
    return true;
}


struct option_sent {
    uint32_t opt;
    size_t end;                   /* stream offset after its payload */
};

struct request_sent {
    uint64_t cookie;              /* raw bytes, as echoed */
    uint64_t offset;
    uint32_t length;
    uint16_t type;
    bool answered;
};

struct model {
    bool flags_ok;
    bool no_zeroes;
    struct option_sent *opts;
    size_t n_opts;
    struct request_sent *reqs;
    size_t n_reqs;
    bool truncated;               /* more requests than tracked */
};

/* The options the server reads whole, in order, up to the first one it
 * closes on or the end of the stream. */
static void model_options(struct model *m, struct cursor *c)
{
    const uint8_t *h, *skip;

    while (take(c, 16, &h)) {
        uint32_t opt = get_be32(h + 8), len = get_be32(h + 12);
        struct option_sent *grown;

        if (get_be64(h) != NBD_MAGIC_OPTS)
            return;
        if (len > OPTION_PAYLOAD_MAX &&
            (opt == NBD_OPT_EXPORT_NAME || len > OPTION_DISCARD_MAX))
            return;
        if (!take(c, len, &skip))
            return;
        grown = realloc(m->opts, (m->n_opts + 1) * sizeof(*grown));
        if (!grown)
            abort();
        m->opts = grown;
        m->opts[m->n_opts++] = (struct option_sent){ opt, c->pos };
        if (opt == NBD_OPT_ABORT)
            return;
    }
}

static void model_client(struct model *m, const uint8_t *in, size_t len)
{
    struct cursor c = { in, len, 0 };
    const uint8_t *f;

    memset(m, 0, sizeof(*m));
    if (!take(&c, 4, &f))
        return;
    m->flags_ok = (get_be32(f) & NBD_FLAG_C_FIXED_NEWSTYLE) &&
                  !(get_be32(f) & ~(uint32_t)(NBD_FLAG_C_FIXED_NEWSTYLE |
                                           NBD_FLAG_C_NO_ZEROES));
    m->no_zeroes = get_be32(f) & NBD_FLAG_C_NO_ZEROES;
    if (m->flags_ok)
        model_options(m, &c);
}

/* The requests the server reads whole, from where transmission starts,
 * up to the first one it stops on. */
static void model_requests(struct model *m, const uint8_t *in, size_t len,
                           size_t from)
{
    struct cursor c = { in, len, from };
    const uint8_t *h, *skip;

    while (take(&c, 28, &h)) {
        uint16_t type = get_be16(h + 6);
        uint32_t length = get_be32(h + 24);
        struct request_sent *grown;

        if (get_be32(h) != NBD_REQUEST_MAGIC || type == NBD_CMD_DISC)
            return;
        if (type == NBD_CMD_WRITE &&
            (length > SD_REQUEST_MAX || !take(&c, length, &skip)))
            return;
        if (m->n_reqs == MAX_TRACKED_REQUESTS) {
            m->truncated = true;
            return;
        }
        grown = realloc(m->reqs, (m->n_reqs + 1) * sizeof(*grown));
        if (!grown)
            abort();
        m->reqs = grown;
        m->reqs[m->n_reqs] = (struct request_sent){
            .offset = get_be64(h + 16), .length = length, .type = type };
        memcpy(&m->reqs[m->n_reqs].cookie, h + 8, 8);
        m->n_reqs++;
    }
}

/* ---- checking the server's stream ------------------------------------ */

static void fail(const char *what, size_t at)
{
    fprintf(stderr, "fuzz-nbd-session: server stream at byte %zu: %s\n",
            at, what);
    abort();
}

static void check_greeting(struct cursor *out)
{
    const uint8_t *g;

    if (!take(out, 18, &g))
        fail("no full greeting", out->pos);
    if (get_be64(g) != NBD_MAGIC_INIT || get_be64(g + 8) != NBD_MAGIC_OPTS ||
        get_be16(g + 16) != (NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES))
        fail("bad greeting", 0);
}

static bool is_final_reply(uint32_t type)
{
    return type == NBD_REP_ACK || (type & NBD_REP_ERR_BIT);
}

static bool known_size(uint64_t size)
{
    return size == IMAGE_SIZE;
}

/* Option replies; returns the stream offset where transmission starts,
 * or SIZE_MAX when the handshake never finished. */
static size_t check_options(struct cursor *out, const struct model *m,
                            bool *structured)
{
    size_t i = 0;
    const uint8_t *h, *skip;

    while (out->pos < out->len) {
        if (i >= m->n_opts)
            fail("a reply to an option never sent", out->pos);
        if (m->opts[i].opt == NBD_OPT_EXPORT_NAME) {
            /* No option reply: size and flags, zeroes unless waived. */
            if (!take(out, m->no_zeroes ? 10 : 134, &h))
                fail("short EXPORT_NAME answer", out->pos);
            if (!known_size(get_be64(h)) || !(get_be16(h + 8) & NBD_FLAG_HAS_FLAGS))
                fail("bad EXPORT_NAME answer", out->pos);
            return m->opts[i].end;
        }
        if (!take(out, 20, &h))
            fail("short option reply header", out->pos);
        uint32_t opt = get_be32(h + 8), type = get_be32(h + 12), len = get_be32(h + 16);
        if (get_be64(h) != NBD_MAGIC_OPT_REPLY)
            fail("bad option reply magic", out->pos - 20);
        if (opt != m->opts[i].opt)
            fail("reply names another option", out->pos - 20);
        if (len > OPTION_PAYLOAD_MAX || !take(out, len, &skip))
            fail("option reply payload", out->pos);
        if (type == NBD_REP_INFO && len >= 2 &&
            get_be16(skip) == NBD_INFO_EXPORT &&
            (len != 12 || !known_size(get_be64(skip + 2))))
            fail("bad NBD_INFO_EXPORT", out->pos - len);
        if (!is_final_reply(type))
            continue;
        if (opt == NBD_OPT_STRUCTURED_REPLY && type == NBD_REP_ACK)
            *structured = true;
        if (opt == NBD_OPT_GO && type == NBD_REP_ACK)
            return m->opts[i].end;
        i++;
    }
    return SIZE_MAX;
}

/* The request a reply with this cookie answers; NULL when none is
 * waiting. ambiguous: more than one is, of different kinds. */
static struct request_sent *match(struct model *m, uint64_t cookie,
                                  bool *ambiguous)
{
    struct request_sent *first = NULL;

    *ambiguous = false;
    for (size_t i = 0; i < m->n_reqs; i++) {
        struct request_sent *r = &m->reqs[i];
        if (r->answered || r->cookie != cookie)
            continue;
        if (!first)
            first = r;
        else if (r->type != first->type || r->length != first->length ||
                 r->offset != first->offset)
            *ambiguous = true;
    }
    return first;
}

static bool known_nbd_error(uint32_t e)
{
    return e == NBD_EPERM || e == NBD_EIO || e == NBD_ENOMEM ||
           e == NBD_EINVAL || e == NBD_ENOSPC || e == NBD_EOVERFLOW ||
           e == NBD_ENOTSUP || e == NBD_ESHUTDOWN;
}

static bool uses_structured(const struct request_sent *r)
{
    return r->type == NBD_CMD_READ || r->type == NBD_CMD_BLOCK_STATUS;
}

/* One simple reply; false when the stream cannot be followed further. */
static bool check_simple(struct cursor *out, struct model *m, bool structured)
{
    const uint8_t *h, *skip;
    uint64_t cookie;
    bool ambiguous;
    struct request_sent *r;

    if (!take(out, 16, &h))
        fail("short simple reply", out->pos);
    memcpy(&cookie, h + 8, 8);
    r = match(m, cookie, &ambiguous);
    if (!r && m->truncated)
        return false;
    if (!r)
        fail("simple reply to no waiting request", out->pos - 16);
    if (ambiguous)
        return false;
    if (get_be32(h + 4) && !known_nbd_error(get_be32(h + 4)))
        fail("unknown error in a simple reply", out->pos - 12);
    if (structured && uses_structured(r))
        fail("simple reply where a structured one is due", out->pos - 16);
    if (r->type == NBD_CMD_READ && get_be32(h + 4) == 0 &&
        !take(out, r->length, &skip))
        fail("short read data", out->pos);
    r->answered = true;
    return true;
}

static void check_chunk_payload(const struct request_sent *r, uint16_t type,
                                const uint8_t *p, uint32_t len, size_t at)
{
    uint64_t end = r->offset + r->length;
    uint64_t off = len >= 8 ? get_be64(p) : 0;
    bool inside = off >= r->offset && off < end;

    switch (type) {
    case NBD_REPLY_TYPE_NONE:
        if (len)
            fail("NONE chunk with payload", at);
        break;
    case NBD_REPLY_TYPE_OFFSET_DATA:
        if (r->type != NBD_CMD_READ || len < 9 || !inside ||
            len - 8 > end - off)
            fail("data chunk outside its read", at);
        break;
    case NBD_REPLY_TYPE_OFFSET_HOLE:
        if (r->type != NBD_CMD_READ || len != 12 || !inside ||
            get_be32(p + 8) == 0 || get_be32(p + 8) > end - off)
            fail("hole chunk outside its read", at);
        break;
    case NBD_REPLY_TYPE_BLOCK_STATUS:
        if (r->type != NBD_CMD_BLOCK_STATUS || len < 12 || (len - 4) % 8 ||
            (get_be32(p) != NBD_CONTEXT_ID_BASE &&
             get_be32(p) != NBD_CONTEXT_ID_DEPTH))
            fail("bad block status chunk", at);
        break;
    case NBD_REPLY_TYPE_ERROR:
    case NBD_REPLY_TYPE_ERROR_OFFSET:
        if (len < 6 || get_be16(p + 4) > len - 6 ||
            !known_nbd_error(get_be32(p)))
            fail("bad error chunk", at);
        break;
    default:
        fail("unknown chunk type", at);
    }
}

static bool check_structured(struct cursor *out, struct model *m,
                             bool structured)
{
    const uint8_t *h, *p;
    uint64_t cookie;
    bool ambiguous;
    struct request_sent *r;
    size_t at = out->pos;

    if (!structured)
        fail("structured reply never negotiated", at);
    if (!take(out, 20, &h))
        fail("short chunk header", at);
    memcpy(&cookie, h + 8, 8);
    r = match(m, cookie, &ambiguous);
    if (!r && m->truncated)
        return false;
    if (!r)
        fail("chunk for no waiting request", at);
    if (!take(out, get_be32(h + 16), &p))
        fail("short chunk payload", at);
    if (ambiguous)
        return false;
    check_chunk_payload(r, get_be16(h + 6), p, get_be32(h + 16), at);
    if (get_be16(h + 4) & NBD_REPLY_FLAG_DONE)
        r->answered = true;
    else if (get_be16(h + 6) == NBD_REPLY_TYPE_NONE)
        fail("NONE chunk without DONE", at);
    return true;
}

static void check_transmission(struct cursor *out, struct model *m,
                               bool structured)
{
    bool followed = true;

    while (followed && out->pos < out->len) {
        const uint8_t *magic = out->p + out->pos;

        if (out->len - out->pos < 4)
            fail("trailing bytes", out->pos);
        if (get_be32(magic) == NBD_SIMPLE_REPLY_MAGIC)
            followed = check_simple(out, m, structured);
        else if (get_be32(magic) == NBD_STRUCTURED_REPLY_MAGIC)
            followed = check_structured(out, m, structured);
        else
            fail("bad reply magic", out->pos);
    }
    if (!followed || m->truncated)
        return;
    for (size_t i = 0; i < m->n_reqs; i++)
        if (!m->reqs[i].answered)
            fail("a request the server read got no reply", out->len);
}

static void check_stream(const struct session *s)
{
    struct model m;
    struct cursor out = { s->out, s->out_len, 0 };
    bool structured = false;
    size_t from;

    model_client(&m, s->in, s->in_len);
    check_greeting(&out);
    if (!m.flags_ok && out.pos != out.len)
        fail("output after refused client flags", out.pos);
    from = check_options(&out, &m, &structured);
    if (from != SIZE_MAX) {
        model_requests(&m, s->in, s->in_len, from);
        check_transmission(&out, &m, structured);
    }
    free(m.opts);
    free(m.reqs);
}

/* ---- one input ------------------------------------------------------- */

/* A descriptor left open by one input (an image, a socket) would break
 * the next one far from the cause: an image still open holds its lock.
 * Count them so the input that leaks is the one that fails. */
static int count_open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *de;
    int n = 0;

    if (!d)
        abort();
    while ((de = readdir(d)) != NULL)
        if (de->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1;                 /* the listing's own descriptor */
}

/* Closing an image must drop its locks at once, whatever io_uring still
 * holds (qcow2/lock.c): the next input's server, like a reload, opens
 * the same files again. */
static void check_no_lock_left(const char *name)
{
    struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
    char p[512];
    int fd;

    path_in(p, sizeof(p), name);
    fd = open(p, O_RDONLY | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT)
        return;
    if (fd < 0 || fcntl(fd, F_OFD_GETLK, &fl) < 0)
        abort();
    close(fd);
    if (fl.l_type != F_UNLCK) {
        fprintf(stderr, "fuzz-nbd-session: %s still locked (byte %lld) "
                "after its image was closed\n", name, (long long)fl.l_start);
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct session s = { 0 };
    int fds_before;

    if (size < 1)
        return 0;
    setup_once();
    fds_before = count_open_fds();
    s.srv = server_new(data[0]);
    s.in = data + 1;
    s.in_len = size - 1;
    s.running = 3;
    add_exports(s.srv, data[0]);
    connect_client(&s, data[0]);
    if (worker_post(&s.srv->control, start, &s) < 0 ||
        worker_run(&s.srv->control) < 0)
        abort();
    if (s.running)
        abort();
    close(s.fd);
    server_free(s.srv);
    if (count_open_fds() != fds_before) {
        fprintf(stderr, "fuzz-nbd-session: %d descriptors left open\n",
                count_open_fds() - fds_before);
        abort();
    }
    check_no_lock_left("disk.raw");
    check_no_lock_left("disk.qcow2");
    check_no_lock_left("base.raw");
    check_stream(&s);
    free(s.out);
    return 0;
}
