/* SPDX-License-Identifier: MIT */
/*
 * nbd-server's configuration files, read so that a deployment moves over
 * by pointing sendense-nbd at its existing config.
 *
 * The format (nbd-server(5)): "[section]" headers, "key = value" lines,
 * comment lines starting with '#'; no quoting; booleans are exactly
 * "true" or "false". The first section of the main file is [generic];
 * every other section is an export whose section name is the export
 * name. Files in includedir (and *.conf files in an export_dir) hold
 * export sections only.
 *
 * Every key nbd-server documents is in one of the tables below, with
 * what we do with it:
 *
 * - read: its meaning is ours (exportname, readonly, port, listenaddr,
 *   unixsock, duallisten, includedir, max_threads, certfile, keyfile,
 *   cacertfile, force_tls, tlsonly);
 * - accepted only with the value that matches what sendense-nbd always
 *   does (flush = true, trim = false is refused because TRIM is always
 *   offered where the image can do it; copyonwrite = false...);
 * - refused with the reason (authfile, prerun, user, tlsprio...).
 *
 * A key nbd-server does not know is an error too. Nothing is ignored.
 *
 * Mapping: [generic] without listenaddr listens on 0.0.0.0 and [::]
 * (nbd-server's default); unixsock replaces TCP unless duallisten =
 * true; keyfile turns TLS on (mode optional, certificate read from
 * certfile, or from keyfile when certfile is absent, as nbd-server
 * does); force_tls makes it required; includedir becomes export_dir.
 * We strip trailing blanks from values too (nbd-server keeps them; a
 * path ending in a blank is almost always a typo).
 */
#include "config.h"

#include "server/config-internal.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

enum ini_action {
    INI_READ,           /* handled by the section's reader */
    INI_ONLY_FALSE,     /* boolean; true is refused with `why` */
    INI_ONLY_TRUE,      /* boolean; false is refused with `why` */
    INI_REFUSE,         /* any value refused with `why` */
    INI_ANY_BOOL,       /* boolean; either value does the same here */
};

struct ini_key {
    const char *key;
    enum ini_action action;
    const char *why;
};

enum {
    G_PORT, G_LISTENADDR, G_UNIXSOCK, G_DUALLISTEN, G_INCLUDEDIR,
    G_MAX_THREADS, G_CERTFILE, G_KEYFILE, G_CACERTFILE, G_FORCE_TLS,
    G_READ_COUNT
};

static const struct ini_key generic_keys[] = {
    [G_PORT] = { "port", INI_READ, NULL },
    [G_LISTENADDR] = { "listenaddr", INI_READ, NULL },
    [G_UNIXSOCK] = { "unixsock", INI_READ, NULL },
    [G_DUALLISTEN] = { "duallisten", INI_READ, NULL },
    [G_INCLUDEDIR] = { "includedir", INI_READ, NULL },
    [G_MAX_THREADS] = { "max_threads", INI_READ, NULL },
    [G_CERTFILE] = { "certfile", INI_READ, NULL },
    [G_KEYFILE] = { "keyfile", INI_READ, NULL },
    [G_CACERTFILE] = { "cacertfile", INI_READ, NULL },
    [G_FORCE_TLS] = { "force_tls", INI_READ, NULL },
    { "allowlist", INI_ONLY_TRUE,
      "sendense-nbd always lets clients list exports" },
    { "oldstyle", INI_ONLY_FALSE,
      "the oldstyle handshake is not supported" },
    /* Large reads of raw images are spliced either way. */
    { "splice", INI_ANY_BOOL, NULL },
    { "user", INI_REFUSE,
      "sendense-nbd does not change user; start it as that user "
      "(systemd User=)" },
    { "group", INI_REFUSE,
      "sendense-nbd does not change group; start it with that group "
      "(systemd Group=)" },
    { "tlsprio", INI_REFUSE,
      "GnuTLS priority strings do not apply (sendense-nbd uses OpenSSL)" },
};

enum { E_EXPORTNAME, E_READONLY, E_FORCE_TLS, E_TLSONLY, E_READ_COUNT };

static const struct ini_key export_keys[] = {
    [E_EXPORTNAME] = { "exportname", INI_READ, NULL },
    [E_READONLY] = { "readonly", INI_READ, NULL },
    [E_FORCE_TLS] = { "force_tls", INI_READ, NULL },
    [E_TLSONLY] = { "tlsonly", INI_READ, NULL },
    { "flush", INI_ONLY_TRUE, "FLUSH is always offered" },
    { "fua", INI_ONLY_TRUE, "FUA is always offered" },
    { "trim", INI_ONLY_TRUE,
      "TRIM is always offered where the image can do it" },
    { "copyonwrite", INI_ONLY_FALSE,
      "per-connection copy-on-write is not implemented (a YAML export "
      "with overlay: temporary is the nearest)" },
    { "sparse_cow", INI_ONLY_FALSE, "copy-on-write is not implemented" },
    { "multifile", INI_ONLY_FALSE, "multi-file exports are not supported" },
    { "treefiles", INI_ONLY_FALSE, "tree-file exports are not supported" },
    { "temporary", INI_ONLY_FALSE,
      "temporary files as exports are not supported" },
    { "sdp", INI_ONLY_FALSE, "SDP is not supported" },
    { "sync", INI_ONLY_FALSE,
      "an fsync after every write is not implemented (replied writes "
      "survive a server crash; FLUSH and FUA reach the disk)" },
    { "rotational", INI_ONLY_FALSE, "the rotational hint is not sent" },
    { "authfile", INI_REFUSE,
      "use a YAML export with allow: [CIDR, ...] instead" },
    { "cowdir", INI_REFUSE, "copy-on-write is not implemented" },
    { "filesize", INI_REFUSE,
      "the export size is always the image's size" },
    { "maxconnections", INI_REFUSE,
      "a per-export connection limit is not implemented" },
    { "prerun", INI_REFUSE, "running commands is not supported" },
    { "postrun", INI_REFUSE, "running commands is not supported" },
    { "timeout", INI_REFUSE, "idle timeouts are not implemented" },
    { "transactionlog", INI_REFUSE, "transaction logs are not implemented" },
    { "virtstyle", INI_REFUSE,
      "per-client file names are not supported" },
    { "waitfile", INI_REFUSE, "waitfile is not implemented" },
    { "port", INI_REFUSE,
      "oldstyle per-export ports are not supported" },
    { "listenaddr", INI_REFUSE,
      "oldstyle per-export addresses are not supported" },
};

/* What [generic] said, kept as text until the section is complete. */
struct generic_values {
    unsigned line;                            /* of the [generic] header */
    char *text[G_READ_COUNT];                 /* raw values, or NULL */
    unsigned at[G_READ_COUNT];                /* their lines */
};

struct ini_reader {
    const char *path;
    bool main_file;
    struct sd_error *err;
    struct sd_export_list *exports;
    struct generic_values generic;
    bool seen_generic, seen_section;
    /* the section being read */
    enum { SEC_NONE, SEC_GENERIC, SEC_EXPORT, SEC_SKIP } sec;
    char *sec_name;
    struct sd_export *exp;
    struct sd_error sec_err;                  /* first error in section */
    unsigned key_lines[ARRAY_SIZE(export_keys) > ARRAY_SIZE(generic_keys)
                           ? ARRAY_SIZE(export_keys)
                           : ARRAY_SIZE(generic_keys)];
};

static int fail(struct ini_reader *r, unsigned line, int code,
                const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Record an error at line: in an export section, it is that export's
 * error (the rest of the file goes on); elsewhere it ends the load. */
static int fail(struct ini_reader *r, unsigned line, int code,
                const char *fmt, ...)
{
    struct sd_error *e = r->sec == SEC_EXPORT ? &r->sec_err : r->err;
    char msg[SD_ERROR_MSG_MAX];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (r->sec == SEC_EXPORT) {
        if (r->sec_err.code == 0)
            sd_error_set(e, code, "%s:%u: %s", r->path, line, msg);
        return 0;
    }
    return sd_error_set(e, code, "%s:%u: %s", r->path, line, msg);
}

static int parse_bool(const char *v, bool *out)
{
    if (strcmp(v, "true") == 0)
        *out = true;
    else if (strcmp(v, "false") == 0)
        *out = false;
    else
        return -EINVAL;
    return 0;
}

/* Keys that are not INI_READ: check the value against the rule. */
static int check_fixed(struct ini_reader *r, const struct ini_key *k,
                       const char *value, unsigned line)
{
    bool b;

    if (k->action == INI_REFUSE)
        return fail(r, line, -ENOTSUP, "key \"%s\" is not supported: %s",
                    k->key, k->why);
    if (parse_bool(value, &b) < 0)
        return fail(r, line, -EINVAL, "%s: expected true or false", k->key);
    if (k->action == INI_ANY_BOOL)
        return 0;
    if (b != (k->action == INI_ONLY_TRUE))
        return fail(r, line, -ENOTSUP, "key \"%s\" = %s is not supported: %s",
                    k->key, value, k->why);
    return 0;
}

static int export_read(struct ini_reader *r, size_t idx, const char *value,
                       unsigned line)
{
    struct sd_export *exp = r->exp;
    struct sd_error e;
    bool b;

    if (idx == E_EXPORTNAME) {
        if (sd_config_path_check("exportname", value, &e) < 0)
            return fail(r, line, e.code, "%s", e.msg);
        if (value[0] != '/')
            return fail(r, line, -EINVAL,
                        "exportname \"%s\" is not an absolute path", value);
        free(exp->path);
        exp->path = strdup(value);
        return exp->path ? 0 : sd_error_set(r->err, -ENOMEM, "out of memory");
    }
    if (parse_bool(value, &b) < 0)
        return fail(r, line, -EINVAL, "%s: expected true or false",
                    export_keys[idx].key);
    if (idx == E_READONLY)
        exp->readonly = b;
    else if (b)
        exp->tls = SD_EXPORT_TLS_REQUIRED;
    return 0;
}

static int generic_read(struct ini_reader *r, size_t idx, const char *value,
                        unsigned line)
{
    r->generic.text[idx] = strdup(value);
    r->generic.at[idx] = line;
    return r->generic.text[idx] ? 0
                                : sd_error_set(r->err, -ENOMEM,
                                               "out of memory");
}

static const struct ini_key *section_keys(const struct ini_reader *r,
                                          size_t *n)
{
    if (r->sec == SEC_GENERIC) {
        *n = ARRAY_SIZE(generic_keys);
        return generic_keys;
    }
    *n = ARRAY_SIZE(export_keys);
    return export_keys;
}

static int key_line(struct ini_reader *r, const char *key, const char *value,
                    unsigned line)
{
    const struct ini_key *keys;
    size_t i, n;

    if (r->sec == SEC_SKIP)
        return 0;
    if (r->sec == SEC_NONE)
        return fail(r, line, -EINVAL, "key \"%.64s\" before any [section]",
                    key);
    keys = section_keys(r, &n);
    for (i = 0; i < n && strcmp(keys[i].key, key) != 0; i++)
        ;
    if (i == n)
        return fail(r, line, -EINVAL, "unknown key \"%.64s\" in [%s]", key,
                    r->sec == SEC_GENERIC ? "generic" : "export section");
    if (r->key_lines[i])
        return fail(r, line, -EINVAL, "duplicate key \"%s\" (first at line "
                    "%u)", keys[i].key, r->key_lines[i]);
    r->key_lines[i] = line;
    if (keys[i].action != INI_READ)
        return check_fixed(r, &keys[i], value, line);
    if (r->sec == SEC_GENERIC)
        return generic_read(r, i, value, line);
    return export_read(r, i, value, line);
}

/* The export section being read becomes an entry. */
static int finish_export(struct ini_reader *r)
{
    struct sd_export *exp = r->exp;
    struct sd_error e;
    int ret;

    r->exp = NULL;
    if (r->sec_err.code == 0 && !exp->path)
        fail(r, exp->line, -EINVAL, "[%s] has no exportname", exp->name);
    if (r->sec_err.code == 0 && sd_export_validate(exp, &e) < 0)
        fail(r, exp->line, e.code, "%s", e.msg);
    if (r->sec_err.code) {
        sd_export_free(exp);
        exp = NULL;
    }
    ret = sd_export_list_add(r->exports, r->path, r->sec_name, exp,
                             &r->sec_err);
    return ret < 0 ? sd_error_set(r->err, ret, "%s: %s", r->path,
                                  strerror(-ret))
                   : 0;
}

static int finish_section(struct ini_reader *r)
{
    int ret = 0;

    if (r->sec == SEC_EXPORT)
        ret = finish_export(r);
    free(r->sec_name);
    r->sec_name = NULL;
    sd_error_clear(&r->sec_err);
    memset(r->key_lines, 0, sizeof(r->key_lines));
    r->sec = SEC_NONE;
    return ret;
}

static int start_generic(struct ini_reader *r, unsigned line)
{
    if (!r->main_file) {
        /* An entry reports it; the keys of this section are skipped. */
        sd_error_set(&r->sec_err, -EINVAL,
                     "%s:%u: [generic] belongs in the main file only",
                     r->path, line);
        r->sec = SEC_SKIP;
        return sd_export_list_add(r->exports, r->path, NULL, NULL,
                                  &r->sec_err);
    }
    if (r->seen_generic)
        return fail(r, line, -EINVAL, "second [generic] section");
    r->seen_generic = true;
    r->generic.line = line;
    r->sec = SEC_GENERIC;
    return 0;
}

static int start_export(struct ini_reader *r, const char *name,
                        unsigned line)
{
    struct sd_error e;

    r->sec_name = strdup(name);
    r->exp = sd_export_new(r->path, line);
    if (!r->sec_name || !r->exp || !(r->exp->name = strdup(name)))
        return sd_error_set(r->err, -ENOMEM, "%s: out of memory", r->path);
    r->sec = SEC_EXPORT;
    if (sd_export_name_check(name, &e) < 0) {
        free(r->sec_name);
        r->sec_name = NULL;         /* not a name a reload could use */
        fail(r, line, e.code, "%s", e.msg);
    }
    return 0;
}

static int section_line(struct ini_reader *r, const char *name,
                        unsigned line)
{
    bool first = !r->seen_section;
    int ret = finish_section(r);

    if (ret < 0)
        return ret;
    r->seen_section = true;
    if (strcmp(name, "generic") == 0)
        return start_generic(r, line);
    if (r->main_file && first)
        return fail(r, line, -EINVAL,
                    "the first section must be [generic]");
    return start_export(r, name, line);
}

static char *trim(char *s)
{
    char *end;

    while (*s == ' ' || *s == '\t')
        s++;
    end = s + strlen(s);
    while (end > s && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r'))
        end--;
    *end = '\0';
    return s;
}

static int one_line(struct ini_reader *r, char *text, unsigned line)
{
    char *s = trim(text), *eq;
    size_t n = strlen(s);

    if (n == 0 || s[0] == '#')
        return 0;
    if (s[0] == '[') {
        if (s[n - 1] != ']' || n < 3)
            return fail(r, line, -EINVAL, "malformed section header");
        s[n - 1] = '\0';
        return section_line(r, s + 1, line);
    }
    eq = strchr(s, '=');
    if (!eq || eq == s)
        return fail(r, line, -EINVAL, "expected \"key = value\"");
    *eq = '\0';
    return key_line(r, trim(s), trim(eq + 1), line);
}

static int read_lines(struct ini_reader *r, char *data, size_t len)
{
    unsigned line = 1;
    char *p = data, *end = data + len;
    int ret = 0;

    while (p < end && ret == 0) {
        char *nl = memchr(p, '\n', (size_t)(end - p));

        if (!nl)
            nl = end;
        *nl = '\0';
        ret = one_line(r, p, line++);
        p = nl + 1;
    }
    if (ret == 0)
        ret = finish_section(r);
    return ret;
}

static void reader_clear(struct ini_reader *r)
{
    size_t i;

    for (i = 0; i < G_READ_COUNT; i++)
        free(r->generic.text[i]);
    free(r->sec_name);
    sd_export_free(r->exp);
}

static int read_file(struct ini_reader *r)
{
    char *data;
    size_t len;
    int ret;

    ret = sd_config_read_file(r->path, &data, &len, r->err);
    if (ret < 0)
        return ret;
    if (memchr(data, '\0', len))
        ret = sd_error_set(r->err, -EINVAL, "%s: holds a NUL byte",
                           r->path);
    else
        ret = read_lines(r, data, len);
    free(data);
    return ret;
}

int sd_config_load_nbd_ini_exports(const char *path,
                                   struct sd_export_list *exports,
                                   struct sd_error *err)
{
    struct ini_reader r = { .path = path, .err = err, .exports = exports };
    struct sd_error local;
    int ret;

    if (!err)
        r.err = &local;
    ret = read_file(&r);
    reader_clear(&r);
    return ret;
}

/* --- [generic] into server settings --- */

static int generic_error(const char *path, unsigned line, struct sd_error *e,
                         int ret)
{
    sd_error_prefix(e, "%s:%u", path, line);
    return ret;
}

static int add_listen(struct sd_server_config *cfg, struct sd_listen *l)
{
    struct sd_listen *list;

    list = realloc(cfg->listen, (cfg->n_listen + 1) * sizeof(*list));
    if (!list) {
        sd_listen_clear(l);
        return -ENOMEM;
    }
    cfg->listen = list;
    cfg->listen[cfg->n_listen++] = *l;
    return 0;
}

/* One listenaddr item and the port: "1.2.3.4:P" or "[v6]:P". */
static int add_tcp(struct sd_server_config *cfg, const char *addr,
                   const char *port, struct sd_error *err)
{
    struct sd_listen l;
    char *text;
    int ret;

    if (asprintf(&text, strchr(addr, ':') ? "[%s]:%s" : "%s:%s", addr,
                 port) < 0)
        return sd_error_set(err, -ENOMEM, "out of memory");
    ret = sd_listen_parse_tcp(text, &l, err);
    free(text);
    if (ret == 0 && add_listen(cfg, &l) < 0)
        ret = sd_error_set(err, -ENOMEM, "out of memory");
    return ret;
}

static int generic_tcp(const struct generic_values *g,
                       struct sd_server_config *cfg, const char *path,
                       struct sd_error *err)
{
    const char *port = g->text[G_PORT] ? g->text[G_PORT] : "10809";
    char *addrs = strdup(g->text[G_LISTENADDR] ? g->text[G_LISTENADDR]
                                               : "0.0.0.0, ::");
    unsigned line = g->text[G_LISTENADDR] ? g->at[G_LISTENADDR]
                                          : g->at[G_PORT];
    char *save = NULL, *item;
    int ret = 0;

    if (!addrs)
        return sd_error_set(err, -ENOMEM, "out of memory");
    for (item = strtok_r(addrs, ",", &save); item && ret == 0;
         item = strtok_r(NULL, ",", &save)) {
        if (cfg->n_listen >= SD_CONFIG_LIST_MAX)
            ret = sd_error_set(err, -E2BIG, "listenaddr: more than %u "
                               "addresses", SD_CONFIG_LIST_MAX);
        else
            ret = add_tcp(cfg, trim(item), port, err);
    }
    free(addrs);
    return ret < 0 ? generic_error(path, line ? line : g->line, err, ret)
                   : 0;
}

static int generic_listen(const struct generic_values *g,
                          struct sd_server_config *cfg, const char *path,
                          struct sd_error *err)
{
    bool dual = false;
    struct sd_listen l;
    int ret;

    if (g->text[G_DUALLISTEN] && parse_bool(g->text[G_DUALLISTEN], &dual) < 0)
        return sd_error_set(err, -EINVAL, "%s:%u: duallisten: expected "
                            "true or false", path, g->at[G_DUALLISTEN]);
    if (g->text[G_UNIXSOCK]) {
        ret = sd_listen_set_unix(g->text[G_UNIXSOCK], &l, err);
        if (ret == 0 && add_listen(cfg, &l) < 0)
            ret = sd_error_set(err, -ENOMEM, "out of memory");
        if (ret < 0)
            return generic_error(path, g->at[G_UNIXSOCK], err, ret);
    }
    /* nbd-server: a unix socket replaces TCP unless duallisten. */
    if (g->text[G_UNIXSOCK] && !dual)
        return 0;
    return generic_tcp(g, cfg, path, err);
}

static int set_path_value(const struct generic_values *g, size_t idx,
                          char **out, const char *path, struct sd_error *err)
{
    int ret;

    if (!g->text[idx])
        return 0;
    ret = sd_config_path_check(generic_keys[idx].key, g->text[idx], err);
    if (ret < 0)
        return generic_error(path, g->at[idx], err, ret);
    free(*out);
    *out = strdup(g->text[idx]);
    return *out ? 0 : sd_error_set(err, -ENOMEM, "out of memory");
}

static int generic_tls(const struct generic_values *g,
                       struct sd_server_config *cfg, const char *path,
                       struct sd_error *err)
{
    size_t cert = g->text[G_CERTFILE] ? G_CERTFILE : G_KEYFILE;
    bool force = false;
    int ret;

    if (g->text[G_FORCE_TLS] && parse_bool(g->text[G_FORCE_TLS], &force) < 0)
        return sd_error_set(err, -EINVAL, "%s:%u: force_tls: expected true "
                            "or false", path, g->at[G_FORCE_TLS]);
    ret = set_path_value(g, G_KEYFILE, &cfg->tls.key, path, err);
    if (ret == 0 && g->text[G_KEYFILE])
        ret = set_path_value(g, cert, &cfg->tls.cert, path, err);
    if (ret == 0)
        ret = set_path_value(g, G_CACERTFILE, &cfg->tls.ca, path, err);
    if (ret < 0)
        return ret;
    if (g->text[G_CERTFILE] && !g->text[G_KEYFILE])
        return sd_error_set(err, -EINVAL, "%s:%u: certfile needs keyfile",
                            path, g->at[G_CERTFILE]);
    cfg->tls.mode = force ? SD_TLS_REQUIRED
                          : cfg->tls.key ? SD_TLS_OPTIONAL : SD_TLS_OFF;
    ret = sd_tls_config_validate(&cfg->tls, err);
    return ret < 0 ? generic_error(path, g->line, err, ret) : 0;
}

static int generic_to_server(const struct generic_values *g,
                             struct sd_server_config *cfg, const char *path,
                             struct sd_error *err)
{
    size_t i;
    int ret;

    /* nbd-server's settings replace ours; the rest keep their defaults. */
    for (i = 0; i < cfg->n_listen; i++)
        sd_listen_clear(&cfg->listen[i]);
    cfg->n_listen = 0;
    free(cfg->export_dir);
    cfg->export_dir = NULL;
    if (g->text[G_MAX_THREADS] &&
        (sd_config_parse_uint(g->text[G_MAX_THREADS], SD_WORKERS_MAX,
                              &cfg->workers) < 0 || cfg->workers == 0))
        return sd_error_set(err, -EINVAL, "%s:%u: max_threads: expected "
                            "1..%u", path, g->at[G_MAX_THREADS],
                            SD_WORKERS_MAX);
    ret = set_path_value(g, G_INCLUDEDIR, &cfg->export_dir, path, err);
    if (ret == 0)
        ret = generic_listen(g, cfg, path, err);
    if (ret == 0)
        ret = generic_tls(g, cfg, path, err);
    if (ret == 0 && (ret = sd_server_config_validate(cfg, err)) < 0)
        generic_error(path, g->line, err, ret);
    return ret;
}

int sd_config_load_nbd_ini(const char *path, struct sd_server_config *server,
                           struct sd_export_list *exports,
                           struct sd_error *err)
{
    struct sd_export_list found = { 0 };
    struct ini_reader r = { .path = path, .main_file = true,
                            .exports = &found };
    struct sd_server_config cfg;
    struct sd_error local;
    size_t i;
    int ret;

    r.err = err ? err : &local;
    ret = sd_server_config_init_defaults(&cfg, r.err);
    if (ret < 0)
        return ret;
    ret = read_file(&r);
    if (ret == 0 && !r.seen_generic)
        ret = sd_error_set(r.err, -EINVAL, "%s:1: no [generic] section",
                           path);
    if (ret == 0)
        ret = generic_to_server(&r.generic, &cfg, path, r.err);
    if (ret == 0 && !(cfg.source = strdup(path)))
        ret = sd_error_set(r.err, -ENOMEM, "out of memory");
    for (i = 0; ret == 0 && i < found.n; i++) {
        struct sd_export_entry *e = &found.entries[i];

        ret = sd_export_list_add(exports, e->file, e->name, e->export,
                                 &e->error);
        e->export = NULL;           /* now owned by exports */
        if (ret < 0)
            sd_error_set(r.err, ret, "%s: too many exports", path);
    }
    reader_clear(&r);
    sd_export_list_clear(&found);
    if (ret < 0) {
        sd_server_config_clear(&cfg);
        return ret;
    }
    *server = cfg;
    return 0;
}
