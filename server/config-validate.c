/* SPDX-License-Identifier: MIT */
/*
 * Semantic checks of configuration values: export names, paths, CIDR
 * blocks, listen addresses, sizes, and whole definitions (TLS settings,
 * budgets). Parsers call these once a value has its type; messages say
 * what is wrong and leave FILE:LINE to the caller.
 */
#include "config.h"

#include "server/server-config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

/* Length of the UTF-8 sequence starting at s (at most n bytes), 0 when
 * it is not well formed (overlong, surrogate, past U+10FFFF, cut). */
static size_t utf8_sequence_len(const unsigned char *s, size_t n)
{
    unsigned cp, len, i;

    if (s[0] < 0x80)
        return 1;
    if (s[0] >= 0xc2 && s[0] <= 0xdf)
        len = 2, cp = s[0] & 0x1f;
    else if (s[0] >= 0xe0 && s[0] <= 0xef)
        len = 3, cp = s[0] & 0x0f;
    else if (s[0] >= 0xf0 && s[0] <= 0xf4)
        len = 4, cp = s[0] & 0x07;
    else
        return 0;
    if (n < len)
        return 0;
    for (i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
        cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

/* Text shown to clients and in logs: valid UTF-8 and no control
 * characters (C0, DEL). */
int sd_config_text_check(const char *what, const char *s, size_t max,
                      struct sd_error *err)
{
    size_t n = strlen(s), i = 0, len;

    if (n > max)
        return sd_error_set(err, -EINVAL, "%s is longer than %zu bytes",
                            what, max);
    while (i < n) {
        unsigned char c = (unsigned char)s[i];

        if (c < 0x20 || c == 0x7f)
            return sd_error_set(err, -EINVAL,
                                "%s holds a control character (byte %zu)",
                                what, i);
        len = utf8_sequence_len((const unsigned char *)s + i, n - i);
        if (len == 0)
            return sd_error_set(err, -EINVAL,
                                "%s is not valid UTF-8 (byte %zu)", what, i);
        i += len;
    }
    return 0;
}

int sd_export_name_check(const char *name, struct sd_error *err)
{
    int ret;

    if (!name || !name[0])
        return sd_error_set(err, -EINVAL, "export name is empty");
    ret = sd_config_text_check("export name", name, SD_EXPORT_NAME_MAX, err);
    if (ret < 0)
        return ret;
    if (strchr(name, '/'))
        return sd_error_set(err, -EINVAL,
                            "export name \"%s\" holds a '/'", name);
    if (name[0] == '.')
        return sd_error_set(err, -EINVAL,
                            "export name \"%s\" starts with '.'", name);
    return 0;
}

int sd_config_path_check(const char *what, const char *path,
                         struct sd_error *err)
{
    size_t i, n;

    if (!path || !path[0])
        return sd_error_set(err, -EINVAL, "%s is empty", what);
    n = strlen(path);
    if (n > SD_CONFIG_PATH_MAX)
        return sd_error_set(err, -ENAMETOOLONG,
                            "%s is longer than %u bytes", what,
                            SD_CONFIG_PATH_MAX);
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)path[i];

        if (c < 0x20 || c == 0x7f)
            return sd_error_set(err, -EINVAL,
                                "%s holds a control character (byte %zu)",
                                what, i);
    }
    return 0;
}

int sd_config_parse_uint(const char *text, unsigned max, unsigned *out)
{
    unsigned long long v = 0;
    const char *p;

    if (!text[0])
        return -EINVAL;
    /* Digits only: strtoul would take signs, spaces and hex. */
    for (p = text; *p; p++) {
        if (*p < '0' || *p > '9')
            return -EINVAL;
        v = v * 10 + (unsigned)(*p - '0');
        if (v > max)
            return -ERANGE;
    }
    *out = (unsigned)v;
    return 0;
}

/* Multiplier of a size suffix ("", K, M, G, T, with optional "iB"). */
static int size_suffix(const char *s, unsigned *shift)
{
    static const char units[] = "KMGT";
    const char *u;

    if (!s[0]) {
        *shift = 0;
        return 0;
    }
    if (s[0] == '\0' || !(u = strchr(units, s[0])))
        return -EINVAL;
    if (s[1] != '\0' && strcmp(s + 1, "iB") != 0)
        return -EINVAL;
    *shift = 10u * (unsigned)(u - units + 1);
    return 0;
}

int sd_config_parse_size(const char *text, uint64_t *out)
{
    uint64_t v = 0;
    const char *p = text;
    unsigned shift;

    if (*p < '0' || *p > '9')
        return -EINVAL;
    for (; *p >= '0' && *p <= '9'; p++) {
        if (v > (UINT64_MAX - 9) / 10)
            return -ERANGE;
        v = v * 10 + (uint64_t)(*p - '0');
    }
    if (size_suffix(p, &shift) < 0)
        return -EINVAL;
    if (shift && v > (UINT64_MAX >> shift))
        return -ERANGE;
    *out = v << shift;
    return 0;
}

/* Prefix length after '/': decimal, no leading zero, <= max. */
static int prefix_parse(const char *s, unsigned max, unsigned *out)
{
    if (s[0] == '0' && s[1] != '\0')
        return -EINVAL;
    return sd_config_parse_uint(s, max, out) < 0 ? -EINVAL : 0;
}

/* Are any bits past the prefix set? */
static bool host_bits_set(const uint8_t *addr, unsigned bytes,
                          unsigned prefix)
{
    unsigned i;

    for (i = prefix / 8; i < bytes; i++) {
        uint8_t mask = i == prefix / 8 ? (uint8_t)(0xff >> (prefix % 8))
                                       : 0xff;
        if (addr[i] & mask)
            return true;
    }
    return false;
}

int sd_cidr_parse(const char *text, struct sd_cidr *out,
                  struct sd_error *err)
{
    char buf[INET6_ADDRSTRLEN + 8];
    struct sd_cidr c = { 0 };
    const char *slash;
    size_t addr_len;
    unsigned max;

    slash = strchr(text, '/');
    addr_len = slash ? (size_t)(slash - text) : strlen(text);
    if (addr_len == 0 || addr_len >= INET6_ADDRSTRLEN)
        return sd_error_set(err, -EINVAL, "\"%s\" is not a CIDR block",
                            text);
    memcpy(buf, text, addr_len);
    buf[addr_len] = '\0';
    if (inet_pton(AF_INET, buf, c.addr) == 1)
        c.family = AF_INET, max = 32;
    else if (inet_pton(AF_INET6, buf, c.addr) == 1)
        c.family = AF_INET6, max = 128;
    else
        return sd_error_set(err, -EINVAL,
                            "\"%s\" is not an IPv4 or IPv6 address", buf);
    c.prefix = max;
    if (slash && prefix_parse(slash + 1, max, &c.prefix) < 0)
        return sd_error_set(err, -EINVAL,
                            "\"%s\": prefix length must be 0..%u", text,
                            max);
    if (host_bits_set(c.addr, max / 8, c.prefix))
        return sd_error_set(err, -EINVAL,
                            "\"%s\" has bits set past the /%u prefix "
                            "(write the network address)",
                            text, c.prefix);
    *out = c;
    return 0;
}

static bool prefix_equal(const uint8_t *a, const uint8_t *b,
                         unsigned prefix)
{
    unsigned full = prefix / 8, rest = prefix % 8;

    if (memcmp(a, b, full) != 0)
        return false;
    if (rest == 0)
        return true;
    return ((a[full] ^ b[full]) & (uint8_t)(0xff << (8 - rest))) == 0;
}

bool sd_cidr_match(const struct sd_cidr *cidr, const struct sockaddr *addr)
{
    static const uint8_t v4mapped[12] = { 0, 0, 0, 0, 0, 0,
                                          0, 0, 0, 0, 0xff, 0xff };
    const struct sockaddr_in *in4 = (const struct sockaddr_in *)addr;
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)addr;
    const uint8_t *bytes;

    if (addr->sa_family == AF_INET) {
        if (cidr->family != AF_INET)
            return false;
        return prefix_equal(cidr->addr,
                            (const uint8_t *)&in4->sin_addr, cidr->prefix);
    }
    if (addr->sa_family != AF_INET6)
        return false;
    bytes = in6->sin6_addr.s6_addr;
    if (cidr->family == AF_INET6)
        return prefix_equal(cidr->addr, bytes, cidr->prefix);
    /* A dual-stack socket shows IPv4 clients as ::ffff:a.b.c.d. */
    if (memcmp(bytes, v4mapped, sizeof(v4mapped)) != 0)
        return false;
    return prefix_equal(cidr->addr, bytes + 12, cidr->prefix);
}

/* Split "HOST:PORT" / "[HOST]:PORT" into host (brackets removed) and
 * port text; returns the host family hint (AF_INET6 for brackets). */
static int split_host_port(const char *text, char *host, size_t host_size,
                           const char **port)
{
    const char *end, *colon;
    size_t n;

    if (text[0] == '[') {
        end = strchr(text, ']');
        if (!end || end[1] != ':')
            return -EINVAL;
        n = (size_t)(end - text - 1);
        if (n == 0 || n >= host_size)
            return -EINVAL;
        memcpy(host, text + 1, n);
        host[n] = '\0';
        *port = end + 2;
        return AF_INET6;
    }
    colon = strrchr(text, ':');
    if (!colon || colon == text)
        return -EINVAL;
    n = (size_t)(colon - text);
    if (n >= host_size || memchr(text, ':', n))
        return -EINVAL;
    memcpy(host, text, n);
    host[n] = '\0';
    *port = colon + 1;
    return AF_INET;
}

static int tcp_address(int family, const char *host, unsigned port,
                       struct sd_listen *out)
{
    struct sockaddr_in *in4 = (struct sockaddr_in *)&out->addr;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&out->addr;

    memset(&out->addr, 0, sizeof(out->addr));
    if (family == AF_INET) {
        if (inet_pton(AF_INET, host, &in4->sin_addr) != 1)
            return -EINVAL;
        in4->sin_family = AF_INET;
        in4->sin_port = htons((uint16_t)port);
        out->addrlen = sizeof(*in4);
        return 0;
    }
    if (inet_pton(AF_INET6, host, &in6->sin6_addr) != 1)
        return -EINVAL;
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons((uint16_t)port);
    out->addrlen = sizeof(*in6);
    return 0;
}

int sd_listen_parse_tcp(const char *text, struct sd_listen *out,
                        struct sd_error *err)
{
    char host[INET6_ADDRSTRLEN];
    const char *port_text;
    unsigned port;
    int family;

    family = split_host_port(text, host, sizeof(host), &port_text);
    if (family < 0)
        return sd_error_set(err, -EINVAL,
                            "tcp address \"%s\" is not HOST:PORT "
                            "(IPv4) or [HOST]:PORT (IPv6)", text);
    if (sd_config_parse_uint(port_text, 65535, &port) < 0 || port == 0)
        return sd_error_set(err, -EINVAL,
                            "tcp address \"%s\": port must be 1..65535",
                            text);
    if (tcp_address(family, host, port, out) < 0)
        return sd_error_set(err, -EINVAL,
                            "tcp address \"%s\": \"%s\" is not a numeric "
                            "%s address", text, host,
                            family == AF_INET ? "IPv4" : "IPv6");
    out->kind = SD_LISTEN_TCP;
    out->path = NULL;
    out->text = strdup(text);
    if (!out->text)
        return sd_error_set(err, -ENOMEM, "out of memory");
    return 0;
}

int sd_listen_set_unix(const char *path, struct sd_listen *out,
                       struct sd_error *err)
{
    struct sockaddr_un sun;
    int ret;

    ret = sd_config_path_check("unix socket path", path, err);
    if (ret < 0)
        return ret;
    if (strlen(path) >= sizeof(sun.sun_path))
        return sd_error_set(err, -ENAMETOOLONG,
                            "unix socket path \"%s\" is longer than %zu "
                            "bytes", path, sizeof(sun.sun_path) - 1);
    memset(out, 0, sizeof(*out));
    out->kind = SD_LISTEN_UNIX;
    out->path = strdup(path);
    out->text = strdup(path);
    if (!out->path || !out->text) {
        sd_listen_clear(out);
        return sd_error_set(err, -ENOMEM, "out of memory");
    }
    return 0;
}

void sd_listen_clear(struct sd_listen *l)
{
    if (!l)
        return;
    free(l->text);
    free(l->path);
    l->text = l->path = NULL;
}

int sd_export_validate(const struct sd_export *exp, struct sd_error *err)
{
    int ret;

    ret = sd_export_name_check(exp->name, err);
    if (ret < 0)
        return ret;
    ret = sd_config_path_check("path", exp->path, err);
    if (ret < 0)
        return ret;
    if (exp->path[0] != '/')
        return sd_error_set(err, -EINVAL,
                            "path \"%s\" is not absolute", exp->path);
    if (exp->description) {
        ret = sd_config_text_check("description", exp->description,
                         SD_DESCRIPTION_MAX, err);
        if (ret < 0)
            return ret;
    }
    if (!exp->allow_all && exp->n_allow > SD_CONFIG_LIST_MAX)
        return sd_error_set(err, -E2BIG, "allow has more than %u entries",
                            SD_CONFIG_LIST_MAX);
    if (exp->overlay == SD_OVERLAY_TEMPORARY && exp->readonly)
        return sd_error_set(err, -EINVAL,
                            "overlay: temporary makes no sense with "
                            "readonly: true (nothing would be written)");
    return 0;
}

int sd_tls_config_validate(const struct sd_tls_config *tls,
                           struct sd_error *err)
{
    const char *const *p;
    const char *const paths[] = { tls->cert, tls->key, tls->ca,
                                  tls->psk_file };
    size_t i;

    for (i = 0, p = paths; i < 4; i++, p++) {
        int ret = *p ? sd_config_path_check("tls path", *p, err) : 0;

        if (ret < 0)
            return ret;
    }
    if (!tls->cert != !tls->key)
        return sd_error_set(err, -EINVAL,
                            "tls: cert and key go together (one is "
                            "missing)");
    if (tls->ca && !tls->cert)
        return sd_error_set(err, -EINVAL,
                            "tls: ca (client certificate check) needs "
                            "cert and key");
    if (tls->mode != SD_TLS_OFF && !tls->cert && !tls->psk_file)
        return sd_error_set(err, -EINVAL,
                            "tls: mode %s needs cert and key, or psk_file",
                            tls->mode == SD_TLS_REQUIRED ? "required"
                                                         : "optional");
    return 0;
}

static int budgets_validate(const struct sd_server_config *cfg,
                            struct sd_error *err)
{
    /* A budget below one request could never admit that request. */
    if (cfg->inflight_per_connection < SD_REQUEST_MAX)
        return sd_error_set(err, -EINVAL,
                            "inflight_per_connection must be at least "
                            "%u bytes (one 32 MiB request)",
                            SD_REQUEST_MAX);
    if (cfg->inflight_per_process < cfg->inflight_per_connection)
        return sd_error_set(err, -EINVAL,
                            "inflight_per_process must be at least "
                            "inflight_per_connection");
    return 0;
}

int sd_server_config_validate(const struct sd_server_config *cfg,
                              struct sd_error *err)
{
    struct sd_listen tmp;
    int ret;

    if (cfg->n_listen == 0)
        return sd_error_set(err, -EINVAL, "listen: no socket to listen on");
    if (cfg->export_dir) {
        ret = sd_config_path_check("export_dir", cfg->export_dir, err);
        if (ret < 0)
            return ret;
    }
    /* The control socket has the unix socket path limits. */
    ret = sd_listen_set_unix(cfg->control_socket, &tmp, err);
    if (ret < 0) {
        sd_error_prefix(err, "control_socket");
        return ret;
    }
    sd_listen_clear(&tmp);
    if (cfg->workers > SD_WORKERS_MAX)
        return sd_error_set(err, -EINVAL, "workers must be 1..%u or auto",
                            SD_WORKERS_MAX);
    if (cfg->handshake_timeout == 0 ||
        cfg->handshake_timeout > SD_HANDSHAKE_TIMEOUT_MAX)
        return sd_error_set(err, -EINVAL,
                            "handshake_timeout must be 1..%u seconds",
                            SD_HANDSHAKE_TIMEOUT_MAX);
    ret = budgets_validate(cfg, err);
    if (ret < 0)
        return ret;
    return sd_tls_config_validate(&cfg->tls, err);
}
