/* SPDX-License-Identifier: MIT */
/*
 * The fixed newstyle negotiation, up to the choice of an export.
 *
 * Every read is bounded by the handshake deadline, so a client that
 * stalls (or never speaks) is dropped after handshake_timeout seconds.
 * Option payloads are capped; an option we do not know gets
 * NBD_REP_ERR_UNSUP and the negotiation goes on.
 */
#include "config.h"

#include "common/byteorder.h"

#include "common/log.h"
#include "server/conn.h"
#include "server/exports.h"
#include "server/image-table.h"
#include "server/nbd-proto.h"
#include "server/server.h"
#include "common/co-io.h"

#include <inttypes.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

enum {
    OPTION_PAYLOAD_MAX = 64 * 1024,  /* names and queries fit easily */
    OPTION_DISCARD_MAX = 1 << 20,    /* skipped to answer ERR_TOO_BIG */
    OPTIONS_MAX = 16384,             /* nbdinfo --list asks per export */
    META_QUERIES_MAX = 128,
    BLOCK_MIN = 1,
    BLOCK_PREFERRED = 4096,
};

struct hs {
    struct conn *c;
    struct timespec deadline;
    uint32_t opt;
    char meta_export[256];           /* export the contexts were set for */
};


static int send_reply(struct hs *h, uint32_t type, const void *data,
                      uint32_t len)
{
    uint8_t hdr[20];
    int ret;

    put_be64(hdr, NBD_MAGIC_OPT_REPLY);
    put_be32(hdr + 8, h->opt);
    put_be32(hdr + 12, type);
    put_be32(hdr + 16, len);
    ret = conn_write(h->c, hdr, sizeof(hdr), &h->deadline);
    if (ret == 0 && len)
        ret = conn_write(h->c, data, len, &h->deadline);
    return ret;
}

/* An error reply carrying a message for the user. */
static int send_error(struct hs *h, uint32_t type, const char *msg)
{
    sd_log_info("%s: option %u refused: %s", h->c->label, h->opt, msg);
    return send_reply(h, type, msg, (uint32_t)strlen(msg));
}

static bool tls_missing(const struct hs *h)
{
    return h->c->srv->settings.tls.mode == SD_TLS_REQUIRED && !h->c->tls;
}

/* The allow-list is about network clients; who may use a unix socket is
 * decided by the socket file's permissions. */
static bool client_allowed(const struct conn *c, const struct sd_export *e)
{
    if (e->allow_all || c->is_unix)
        return true;
    for (size_t i = 0; i < e->n_allow; i++)
        if (sd_cidr_match(&e->allow[i], (const struct sockaddr *)&c->addr))
            return true;
    return false;
}

/* The export a client may use, referenced; or NULL after replying with
 * the reason (reply_errors false: EXPORT_NAME, which cannot). */
static struct export_def *choose_export(struct hs *h, const char *name,
                                        bool reply_errors, int *ret)
{
    const char *why = NULL;
    struct export_def *def = registry_lookup(h->c->srv, name, &why);
    uint32_t type = NBD_REP_ERR_UNKNOWN;
    char msg[512];

    *ret = 0;
    if (def && !client_allowed(h->c, def->cfg)) {
        type = NBD_REP_ERR_POLICY;
        snprintf(msg, sizeof(msg), "client %s is not allowed to use "
                 "export '%s'", h->c->peer, name);
    } else if (def && def->cfg->tls == SD_EXPORT_TLS_REQUIRED && !h->c->tls) {
        type = NBD_REP_ERR_TLS_REQD;
        snprintf(msg, sizeof(msg), "export '%s' requires TLS", name);
    } else if (def) {
        return def;
    } else {
        snprintf(msg, sizeof(msg), "export '%.250s': %s", name,
                 why ? why : "no such export");
    }
    if (def)
        export_def_unref(def);
    if (reply_errors)
        *ret = send_error(h, type, msg);
    else
        sd_log_info("%s: %s", h->c->label, msg);
    return NULL;
}

static uint16_t transmission_flags(const struct hs *h,
                                   const struct export_def *def)
{
    uint16_t f = def->tflags;

    if (h->c->structured)
        f |= NBD_FLAG_SEND_DF;
    return f;
}

static int send_info_export(struct hs *h, const struct export_def *def)
{
    uint8_t b[12];

    put_be16(b, NBD_INFO_EXPORT);
    put_be64(b + 2, def->size);
    put_be16(b + 10, transmission_flags(h, def));
    return send_reply(h, NBD_REP_INFO, b, sizeof(b));
}

static int send_info_text(struct hs *h, uint16_t type, const char *text)
{
    size_t len = strlen(text);
    uint8_t *b = malloc(2 + len);
    int ret;

    if (!b)
        return -ENOMEM;
    put_be16(b, type);
    memcpy(b + 2, text, len);
    ret = send_reply(h, NBD_REP_INFO, b, (uint32_t)(2 + len));
    free(b);
    return ret;
}

static int send_info_block_size(struct hs *h, const struct export_def *def)
{
    uint8_t b[14];

    put_be16(b, NBD_INFO_BLOCK_SIZE);
    /* O_DIRECT needs sector-aligned requests; everything else takes any
     * byte range. */
    put_be32(b + 2, def->cfg->direct ? 4096 : BLOCK_MIN);
    put_be32(b + 6, BLOCK_PREFERRED);
    put_be32(b + 10, SD_REQUEST_MAX);
    return send_reply(h, NBD_REP_INFO, b, sizeof(b));
}

/* Publish the choice: the connection now serves def. */
static void bind_export(struct hs *h, struct export_def *def)
{
    struct conn *c = h->c;

    if (strcmp(h->meta_export, def->cfg->name) != 0 || !c->structured)
        c->ctx_base = c->ctx_depth = false;
    pthread_mutex_lock(&c->srv->conns_lock);
    c->def = def;
    snprintf(c->export_name, sizeof(c->export_name), "%s", def->cfg->name);
    pthread_mutex_unlock(&c->srv->conns_lock);
    atomic_fetch_add(&def->stats->clients, 1);
    atomic_fetch_add(&def->stats->connections_total, 1);
    snprintf(c->label, sizeof(c->label), "conn %" PRIu64 " (%s, %s)",
             c->id, c->peer, def->cfg->name);
    sd_log_info("%s: serving export '%s' (%s%s%s)", c->label, def->cfg->name,
                def->cfg->readonly ? "read-only" : "writable",
                c->structured ? ", structured replies" : "",
                c->tls ? ", TLS" : "");
}

/* INFO and GO: name, info requests. */
static int opt_info_go(struct hs *h, const uint8_t *p, uint32_t len,
                       bool go, bool *done)
{
    uint32_t name_len;
    uint16_t n_req;
    bool want_name = false, want_desc = false;
    struct export_def *def;
    char name[SD_EXPORT_NAME_MAX + 1];
    int ret;

    if (len < 6 || (name_len = get_be32(p)) > len - 6)
        return send_error(h, NBD_REP_ERR_INVALID, "malformed request");
    n_req = get_be16(p + 4 + name_len);
    if ((uint64_t)4 + name_len + 2 + 2ull * n_req != len)
        return send_error(h, NBD_REP_ERR_INVALID, "malformed request");
    if (name_len > SD_EXPORT_NAME_MAX)
        return send_error(h, NBD_REP_ERR_UNKNOWN, "export name too long");
    memcpy(name, p + 4, name_len);
    name[name_len] = '\0';
    for (uint16_t i = 0; i < n_req; i++) {
        uint16_t what = get_be16(p + 4 + name_len + 2 + 2 * i);
        want_name |= what == NBD_INFO_NAME;
        want_desc |= what == NBD_INFO_DESCRIPTION;
    }
    if (tls_missing(h))
        return send_error(h, NBD_REP_ERR_TLS_REQD, "TLS is required");
    def = choose_export(h, name, true, &ret);
    if (!def)
        return ret;
    ret = send_info_export(h, def);
    if (ret == 0 && want_name)
        ret = send_info_text(h, NBD_INFO_NAME, def->cfg->name);
    if (ret == 0 && want_desc && def->cfg->description)
        ret = send_info_text(h, NBD_INFO_DESCRIPTION, def->cfg->description);
    if (ret == 0)
        ret = send_info_block_size(h, def);
    if (ret == 0 && go) {
        /* Bound before the final reply: a client that has its answer
         * must find itself in connection.list and export.stats. If the
         * reply cannot be sent, the connection's end releases def. */
        bind_export(h, def);
        ret = send_reply(h, NBD_REP_ACK, NULL, 0);
        *done = ret == 0;
        return ret;
    }
    if (ret == 0)
        ret = send_reply(h, NBD_REP_ACK, NULL, 0);
    export_def_unref(def);
    return ret;
}

static int opt_export_name(struct hs *h, const uint8_t *p, uint32_t len,
                           bool *done)
{
    char name[SD_EXPORT_NAME_MAX + 1];
    uint8_t b[10 + 124];
    struct export_def *def;
    int ret;

    if (tls_missing(h)) {
        sd_log_info("%s: EXPORT_NAME without TLS; closing", h->c->label);
        return -EACCES;
    }
    if (len > SD_EXPORT_NAME_MAX) {
        sd_log_info("%s: export name too long; closing", h->c->label);
        return -EINVAL;
    }
    memcpy(name, p, len);
    name[len] = '\0';
    def = choose_export(h, name, false, &ret);
    if (!def)
        return -ENOENT;
    memset(b, 0, sizeof(b));
    put_be64(b, def->size);
    put_be16(b + 8, transmission_flags(h, def));
    bind_export(h, def);        /* before the reply: see opt_info_go() */
    ret = conn_write(h->c, b, h->c->no_zeroes ? 10 : sizeof(b), &h->deadline);
    *done = ret == 0;
    return ret;
}

static int opt_list(struct hs *h, uint32_t len);

static int opt_starttls(struct hs *h, uint32_t len)
{
    struct conn *c = h->c;
    int ret;

    if (len)
        return send_error(h, NBD_REP_ERR_INVALID, "STARTTLS takes no data");
    if (!c->srv->tls)
        return send_error(h, NBD_REP_ERR_UNSUP, "TLS is not configured");
    if (c->tls)
        return send_error(h, NBD_REP_ERR_INVALID, "TLS already started");
    ret = send_reply(h, NBD_REP_ACK, NULL, 0);
    if (ret == 0)
        ret = conn_start_tls(c, &h->deadline);
    /* What was negotiated in the clear does not carry over. */
    c->structured = c->ctx_base = c->ctx_depth = false;
    return ret;
}

static int opt_structured_reply(struct hs *h, uint32_t len)
{
    if (len)
        return send_error(h, NBD_REP_ERR_INVALID, "option takes no data");
    if (h->c->structured)
        return send_error(h, NBD_REP_ERR_INVALID,
                          "structured replies already negotiated");
    h->c->structured = true;
    return send_reply(h, NBD_REP_ACK, NULL, 0);
}

static int send_context(struct hs *h, uint32_t id, const char *name)
{
    size_t n = strlen(name);
    uint8_t b[64];

    put_be32(b, id);
    memcpy(b + 4, name, n);
    return send_reply(h, NBD_REP_META_CONTEXT, b, (uint32_t)(4 + n));
}

/* Which of our contexts a query selects. */
static void match_query(const char *q, size_t n, bool *base, bool *depth)
{
    if ((n == 5 && !memcmp(q, "base:", 5)) ||
        (n == strlen(NBD_CONTEXT_BASE_ALLOCATION) &&
         !memcmp(q, NBD_CONTEXT_BASE_ALLOCATION, n)))
        *base = true;
    if ((n == 5 && !memcmp(q, "qemu:", 5)) ||
        (n == strlen(NBD_CONTEXT_QEMU_DEPTH) &&
         !memcmp(q, NBD_CONTEXT_QEMU_DEPTH, n)))
        *depth = true;
}

static int opt_meta_context(struct hs *h, const uint8_t *p, uint32_t len,
                            bool set)
{
    bool base = false, depth = false;
    uint32_t name_len, n_queries, pos;
    char name[SD_EXPORT_NAME_MAX + 1];
    struct export_def *def;
    int ret;

    if (!h->c->structured)
        return send_error(h, NBD_REP_ERR_INVALID,
                          "structured replies must be negotiated first");
    if (len < 8 || (name_len = get_be32(p)) > len - 8)
        return send_error(h, NBD_REP_ERR_INVALID, "malformed request");
    if (name_len > SD_EXPORT_NAME_MAX)
        return send_error(h, NBD_REP_ERR_UNKNOWN, "export name too long");
    memcpy(name, p + 4, name_len);
    name[name_len] = '\0';
    n_queries = get_be32(p + 4 + name_len);
    if (n_queries > META_QUERIES_MAX)
        return send_error(h, NBD_REP_ERR_TOO_BIG, "too many queries");
    pos = 8 + name_len;
    for (uint32_t i = 0; i < n_queries; i++) {
        uint32_t qlen;
        if (len - pos < 4 || (qlen = get_be32(p + pos)) > len - pos - 4)
            return send_error(h, NBD_REP_ERR_INVALID, "malformed query");
        match_query((const char *)p + pos + 4, qlen, &base, &depth);
        pos += 4 + qlen;
    }
    if (pos != len)
        return send_error(h, NBD_REP_ERR_INVALID, "trailing data");
    if (!set && n_queries == 0)
        base = depth = true;
    if (tls_missing(h))
        return send_error(h, NBD_REP_ERR_TLS_REQD, "TLS is required");
    def = choose_export(h, name, true, &ret);
    if (!def)
        return ret;
    export_def_unref(def);
    ret = 0;
    if (base)
        ret = send_context(h, set ? NBD_CONTEXT_ID_BASE : 0,
                           NBD_CONTEXT_BASE_ALLOCATION);
    if (ret == 0 && depth)
        ret = send_context(h, set ? NBD_CONTEXT_ID_DEPTH : 0,
                           NBD_CONTEXT_QEMU_DEPTH);
    if (ret == 0 && set) {
        h->c->ctx_base = base;
        h->c->ctx_depth = depth;
        snprintf(h->meta_export, sizeof(h->meta_export), "%s", name);
    }
    return ret ? ret : send_reply(h, NBD_REP_ACK, NULL, 0);
}

struct list_ctx {
    struct hs *h;
    char **names;
    size_t n, cap;
    bool oom;
};

static void collect_name(void *arg, const struct export_def *def)
{
    struct list_ctx *l = arg;

    if (l->oom || !client_allowed(l->h->c, def->cfg))
        return;
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 64;
        char **p = realloc(l->names, cap * sizeof(*p));
        if (!p) {
            l->oom = true;
            return;
        }
        l->names = p;
        l->cap = cap;
    }
    if (!(l->names[l->n] = strdup(def->cfg->name)))
        l->oom = true;
    else
        l->n++;
}

static int opt_list(struct hs *h, uint32_t len)
{
    struct list_ctx l = { .h = h };
    int ret = 0;

    if (len)
        return send_error(h, NBD_REP_ERR_INVALID, "LIST takes no data");
    if (tls_missing(h))
        return send_error(h, NBD_REP_ERR_TLS_REQD, "TLS is required");
    /* Copy the names first: replies are sent without the registry lock. */
    registry_for_each(h->c->srv, collect_name, &l);
    for (size_t i = 0; i < l.n && ret == 0 && !l.oom; i++) {
        size_t n = strlen(l.names[i]);
        uint8_t b[4 + SD_EXPORT_NAME_MAX];
        put_be32(b, (uint32_t)n);
        memcpy(b + 4, l.names[i], n);
        ret = send_reply(h, NBD_REP_SERVER, b, (uint32_t)(4 + n));
    }
    for (size_t i = 0; i < l.n; i++)
        free(l.names[i]);
    free(l.names);
    if (ret)
        return ret;
    if (l.oom)
        return send_error(h, NBD_REP_ERR_SHUTDOWN, "out of memory");
    return send_reply(h, NBD_REP_ACK, NULL, 0);
}

/* Skip an option's payload we will not read. */
static int discard(struct hs *h, uint32_t len)
{
    uint8_t buf[4096];

    while (len) {
        uint32_t n = len < sizeof(buf) ? len : sizeof(buf);
        int ret = conn_read(h->c, buf, n, &h->deadline);
        if (ret < 0)
            return ret;
        len -= n;
    }
    return 0;
}

static int handle_option(struct hs *h, const uint8_t *p, uint32_t len,
                         bool *done)
{
    if (tls_missing(h) && h->opt != NBD_OPT_STARTTLS &&
        h->opt != NBD_OPT_ABORT && h->opt != NBD_OPT_EXPORT_NAME)
        return send_error(h, NBD_REP_ERR_TLS_REQD, "TLS is required");
    switch (h->opt) {
    case NBD_OPT_EXPORT_NAME:
        return opt_export_name(h, p, len, done);
    case NBD_OPT_ABORT:
        (void)send_reply(h, NBD_REP_ACK, NULL, 0);
        return -ECONNABORTED;
    case NBD_OPT_LIST:
        return opt_list(h, len);
    case NBD_OPT_STARTTLS:
        return opt_starttls(h, len);
    case NBD_OPT_INFO:
    case NBD_OPT_GO:
        return opt_info_go(h, p, len, h->opt == NBD_OPT_GO, done);
    case NBD_OPT_STRUCTURED_REPLY:
        return opt_structured_reply(h, len);
    case NBD_OPT_LIST_META_CONTEXT:
    case NBD_OPT_SET_META_CONTEXT:
        return opt_meta_context(h, p, len,
                                h->opt == NBD_OPT_SET_META_CONTEXT);
    default:
        return send_error(h, NBD_REP_ERR_UNSUP, "unknown option");
    }
}

static int greet(struct hs *h)
{
    uint8_t b[18];
    uint32_t flags;
    int ret;

    put_be64(b, NBD_MAGIC_INIT);
    put_be64(b + 8, NBD_MAGIC_OPTS);
    put_be16(b + 16, NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
    ret = conn_write(h->c, b, sizeof(b), &h->deadline);
    if (ret == 0)
        ret = conn_read(h->c, b, 4, &h->deadline);
    if (ret < 0)
        return ret;
    flags = get_be32(b);
    if (!(flags & NBD_FLAG_C_FIXED_NEWSTYLE) ||
        (flags & ~(uint32_t)(NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES))) {
        sd_log_info("%s: client flags 0x%x: only fixed newstyle is served",
                    h->c->label, flags);
        return -EPROTO;
    }
    h->c->no_zeroes = flags & NBD_FLAG_C_NO_ZEROES;
    return 0;
}

static int negotiate(struct hs *h)
{
    bool done = false;
    int ret = greet(h);

    for (unsigned n = 0; ret == 0 && !done; n++) {
        uint8_t hdr[16], *payload;
        uint32_t len;

        if (n == OPTIONS_MAX) {
            sd_log_info("%s: more than %u options; closing", h->c->label,
                        OPTIONS_MAX);
            return -E2BIG;
        }
        ret = conn_read(h->c, hdr, sizeof(hdr), &h->deadline);
        if (ret < 0)
            break;
        if (get_be64(hdr) != NBD_MAGIC_OPTS) {
            sd_log_info("%s: bad option magic; closing", h->c->label);
            return -EPROTO;
        }
        h->opt = get_be32(hdr + 8);
        len = get_be32(hdr + 12);
        if (len > OPTION_PAYLOAD_MAX) {
            if (h->opt == NBD_OPT_EXPORT_NAME || len > OPTION_DISCARD_MAX) {
                sd_log_info("%s: option %u with %u bytes; closing",
                            h->c->label, h->opt, len);
                return -E2BIG;
            }
            ret = discard(h, len);
            if (ret == 0)
                ret = send_error(h, NBD_REP_ERR_TOO_BIG, "option too large");
            continue;
        }
        payload = malloc(len ? len : 1);
        if (!payload)
            return -ENOMEM;
        ret = conn_read(h->c, payload, len, &h->deadline);
        if (ret == 0)
            ret = handle_option(h, payload, len, &done);
        free(payload);
    }
    return ret;
}

int conn_handshake(struct conn *c)
{
    struct hs h = { .c = c };
    int ret;

    h.deadline = co_deadline_in(c->srv->settings.handshake_timeout);
    ret = negotiate(&h);
    if (ret == -ETIMEDOUT)
        sd_log_info("%s: handshake not finished within %u s; closing",
                    c->label, c->srv->settings.handshake_timeout);
    else if (ret < 0 && ret != -ECONNABORTED && ret != -ECONNRESET &&
             !c->def)
        sd_log_debug("%s: handshake ended: %s", c->label, strerror(-ret));
    return c->def ? 0 : (ret < 0 ? ret : -EPROTO);
}
