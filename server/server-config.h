/* SPDX-License-Identifier: MIT */
/*
 * sendense-nbd's configuration: the main file, the export definitions,
 * and nbd-server's INI files for users moving over.
 *
 * (Named server-config.h, not config.h: a quoted #include "config.h" in
 * a file of this folder would find this file before autoconf's.)
 *
 * Main file, YAML (default /etc/sendense/sendense-nbd.yaml; without a
 * file, the built-in defaults below apply). Every key is optional; an
 * empty value (`key:`, `~`, `null`) means the default.
 *
 *   key                       type / values               default
 *   ------------------------  --------------------------  -----------------------
 *   listen                    list of {tcp: HOST:PORT}    tcp 127.0.0.1:10809 and
 *                             or {unix: PATH}             unix ./var/run/nbd.sock
 *                             (HOST: numeric IPv4, or
 *                             [IPv6]; no host names)
 *   export_dir                path                        ./var/exports.d
 *   control_socket            path of a unix socket       ./var/run/control.sock
 *   workers                   auto | 1..SD_WORKERS_MAX    auto (one per core)
 *   handshake_timeout         seconds, 1..3600            10
 *   inflight_per_connection   bytes, suffix K/M/G/T       64M
 *                             (binary; "MiB" also read);
 *                             at least SD_REQUEST_MAX
 *   inflight_per_process      bytes, as above; at least   1G
 *                             inflight_per_connection
 *   tls.mode                  off | optional | required   off
 *   tls.cert                  PEM certificate path        none
 *   tls.key                   PEM private key path        none
 *   tls.ca                    PEM CA path: verify client  none (no client
 *                             certificates                certificates asked)
 *   tls.psk_file              PSK keys file path          none
 *
 * Relative paths in the main file are relative to the server's working
 * directory (the built-in defaults are, so that a checkout runs as is).
 * A tls mode other than off needs cert and key, or psk_file.
 *
 * Export file, YAML, one per file, <export_dir>/<name>.yaml:
 *
 *   key          type / values               default
 *   -----------  --------------------------  -----------------------------
 *   name         export name (rules below)   required; must equal <name>
 *   path         absolute path               required
 *   format       auto | raw | qcow2          auto (by magic)
 *   readonly     true | false                false
 *   allow        list of CIDRs (IPv4, IPv6;  absent: every client;
 *                a bare address is /32 or    [] : no client at all
 *                /128)
 *   tls          inherit | required          inherit
 *   overlay      none | temporary            none
 *   direct       true | false (O_DIRECT,     false
 *                raw block devices only)
 *   description  text, <= SD_DESCRIPTION_MAX none
 *
 * Export names: 1..SD_EXPORT_NAME_MAX bytes of UTF-8 (250: the file
 * <name>.yaml must fit in a 255-byte file name), no control characters,
 * no '/', not starting with '.' (the directory loader skips hidden files,
 * which is where atomic writers keep their temporary files).
 *
 * The export directory holds <name>.yaml files and nbd-server INI files
 * (*.conf, export sections only). Hidden files are skipped; any other
 * entry is reported as an error.
 *
 * nbd-server INI (main file or *.conf): see server/config-nbd-ini.c for
 * which keys are read and how; every key whose meaning sendense-nbd does
 * not implement is an error naming the key, never ignored.
 *
 * Errors are "FILE:LINE: what is wrong" in struct sd_error. Loading a
 * directory gives one entry per export (or per broken file), so that a
 * reload applies the good ones and reports the bad ones.
 */
#ifndef SENDENSE_SERVER_CONFIG_H
#define SENDENSE_SERVER_CONFIG_H

#include "common/error.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* Limits: a hostile or broken file cannot make us allocate without bound. */
#define SD_CONFIG_FILE_MAX (1u << 20)        /* bytes in one config file */
#define SD_CONFIG_DIR_FILES_MAX 10000u       /* entries in export_dir */
#define SD_CONFIG_EXPORTS_MAX 10000u         /* exports in one load */
#define SD_CONFIG_LIST_MAX 256u              /* listen, allow lists */
#define SD_CONFIG_PATH_MAX 4095u             /* bytes in a path */
#define SD_CONFIG_NODES_MAX 20000u           /* YAML nodes in one file */
#define SD_CONFIG_DEPTH_MAX 8u               /* YAML nesting */
#define SD_EXPORT_NAME_MAX 250u
#define SD_DESCRIPTION_MAX 1024u
#define SD_WORKERS_MAX 1024u
#define SD_HANDSHAKE_TIMEOUT_MAX 3600u
#define SD_REQUEST_MAX (32u << 20)           /* largest NBD request */

#define SD_CONFIG_DEFAULT_FILE "/etc/sendense/sendense-nbd.yaml"
#define SD_DEFAULT_EXPORT_DIR "./var/exports.d"
#define SD_DEFAULT_UNIX_SOCKET "./var/run/nbd.sock"
#define SD_DEFAULT_CONTROL_SOCKET "./var/run/control.sock"
#define SD_DEFAULT_TCP "127.0.0.1:10809"
#define SD_DEFAULT_PORT 10809u
#define SD_DEFAULT_HANDSHAKE_TIMEOUT 10u
#define SD_DEFAULT_INFLIGHT_CONN (64ull << 20)
#define SD_DEFAULT_INFLIGHT_PROCESS (1ull << 30)

enum sd_listen_kind { SD_LISTEN_TCP, SD_LISTEN_UNIX };

/* One listening socket. For TCP, addr is ready for bind(); an IPv6
 * listener must set IPV6_V6ONLY so that [::] and 0.0.0.0 can share a
 * port (nbd-server INI files without listenaddr ask for both). */
struct sd_listen {
    enum sd_listen_kind kind;
    char *text;                       /* as written: "HOST:PORT" or path */
    struct sockaddr_storage addr;     /* TCP only */
    socklen_t addrlen;                /* TCP only */
    char *path;                       /* unix only */
};

enum sd_tls_mode { SD_TLS_OFF, SD_TLS_OPTIONAL, SD_TLS_REQUIRED };

struct sd_tls_config {
    enum sd_tls_mode mode;
    char *cert, *key, *ca, *psk_file; /* NULL when not set */
};

struct sd_server_config {
    struct sd_listen *listen;
    size_t n_listen;
    char *export_dir;                 /* NULL: none (INI without includedir) */
    char *control_socket;
    unsigned workers;                 /* 0 = auto */
    unsigned handshake_timeout;       /* seconds */
    uint64_t inflight_per_connection; /* bytes */
    uint64_t inflight_per_process;    /* bytes */
    struct sd_tls_config tls;
    char *source;                     /* file read, NULL for built-in */
};

/* An address block: family AF_INET or AF_INET6, network bytes in addr
 * (4 or 16 used), prefix length. Host bits are always zero. */
struct sd_cidr {
    int family;
    uint8_t addr[16];
    unsigned prefix;
};

enum sd_export_format { SD_FORMAT_AUTO, SD_FORMAT_RAW, SD_FORMAT_QCOW2 };
enum sd_export_tls { SD_EXPORT_TLS_INHERIT, SD_EXPORT_TLS_REQUIRED };
enum sd_export_overlay { SD_OVERLAY_NONE, SD_OVERLAY_TEMPORARY };

struct sd_export {
    char *name;
    char *path;
    char *description;                /* NULL when not set */
    enum sd_export_format format;
    bool readonly;
    bool allow_all;                   /* true when `allow` is absent */
    struct sd_cidr *allow;            /* n_allow entries */
    size_t n_allow;
    enum sd_export_tls tls;
    enum sd_export_overlay overlay;
    bool direct;
    char *source;                     /* file that defined it */
    unsigned line;                    /* line in that file (1-based) */
};

/* One result of loading: an export, or the error that kept it out.
 * name is known for most errors (from the file or section name) so a
 * reload can keep the old definition of that export in force. */
struct sd_export_entry {
    char *file;                       /* file read */
    char *name;                       /* NULL when not known */
    struct sd_export *export;         /* NULL on error */
    struct sd_error error;            /* code 0 when export is set */
};

struct sd_export_list {
    struct sd_export_entry *entries;  /* in the order read */
    size_t n;
    size_t cap;                       /* entries allocated */
};

/* Everything one load gives: the server settings and every export, from
 * the main file (INI sections) and from export_dir. */
struct sd_config {
    struct sd_server_config server;
    struct sd_export_list exports;
};

/* --- config.c: whole loads, defaults, freeing --- */

/* Load a main file (YAML, or nbd-server INI when its first significant
 * line is a [section] header; path NULL = built-in defaults), then its
 * export directory. Errors that stop the load (main file, unreadable
 * export directory) fail it; errors in single exports are entries of
 * out->exports. *out is set only on success. */
int sd_config_load(const char *path, struct sd_config **out,
                   struct sd_error *err);
void sd_config_free(struct sd_config *cfg);

/* Built-in defaults (fills *cfg; free with sd_server_config_clear). */
int sd_server_config_init_defaults(struct sd_server_config *cfg,
                                   struct sd_error *err);
void sd_server_config_clear(struct sd_server_config *cfg);

void sd_export_free(struct sd_export *exp);
void sd_export_list_clear(struct sd_export_list *list);
/* Number of error entries. */
size_t sd_export_list_errors(const struct sd_export_list *list);

/* What differs between two definitions of an export (0: the same). The
 * place it was defined (source, line) does not count. */
enum {
    SD_EXPORT_DIFF_NAME = 1u << 0,
    SD_EXPORT_DIFF_PATH = 1u << 1,
    SD_EXPORT_DIFF_FORMAT = 1u << 2,
    SD_EXPORT_DIFF_READONLY = 1u << 3,
    SD_EXPORT_DIFF_ALLOW = 1u << 4,
    SD_EXPORT_DIFF_TLS = 1u << 5,
    SD_EXPORT_DIFF_OVERLAY = 1u << 6,
    SD_EXPORT_DIFF_DIRECT = 1u << 7,
    SD_EXPORT_DIFF_DESCRIPTION = 1u << 8,
};
/* Changes that need the image opened again (the others apply to new
 * clients without touching the open image). */
#define SD_EXPORT_DIFF_REOPEN                                              \
    (SD_EXPORT_DIFF_PATH | SD_EXPORT_DIFF_FORMAT |                         \
     SD_EXPORT_DIFF_READONLY | SD_EXPORT_DIFF_OVERLAY |                    \
     SD_EXPORT_DIFF_DIRECT)
unsigned sd_export_diff(const struct sd_export *a, const struct sd_export *b);

/* --- config-yaml.c --- */

/* Main file in YAML; on success *out holds every setting (defaults for
 * what the file leaves out), validated. */
int sd_config_load_server_yaml(const char *path, struct sd_server_config *out,
                               struct sd_error *err);
/* One export file; its name must be <export name>.yaml. */
int sd_config_load_export_yaml(const char *path, struct sd_export **out,
                               struct sd_error *err);

/* --- config-nbd-ini.c --- */

/* nbd-server's main file: [generic] becomes *server, its export
 * sections are appended to *exports. includedir becomes
 * server->export_dir (NULL without one): sd_config_load reads it, with
 * every reload, like a YAML export_dir (its *.conf files, and *.yaml). */
int sd_config_load_nbd_ini(const char *path, struct sd_server_config *server,
                           struct sd_export_list *exports,
                           struct sd_error *err);
/* An INI file of export sections only (an includedir or export_dir
 * *.conf file): appends one entry per section, or one error entry. */
int sd_config_load_nbd_ini_exports(const char *path,
                                   struct sd_export_list *exports,
                                   struct sd_error *err);

/* --- config-exports.c --- */

/* Read every export file of dir (<name>.yaml, *.conf) and append the
 * results to *list, then mark exports defined twice (in list as a
 * whole) as errors naming both places. Fails (list untouched) only when
 * the directory cannot be read or holds more than SD_CONFIG_DIR_FILES_MAX
 * entries. */
int sd_config_load_export_dir(const char *dir, struct sd_export_list *list,
                              struct sd_error *err);
/* Turn every entry whose export name another entry also defines into an
 * error naming the other place. */
int sd_export_list_mark_duplicates(struct sd_export_list *list);

/* --- config-validate.c --- */

int sd_export_name_check(const char *name, struct sd_error *err);
int sd_cidr_parse(const char *text, struct sd_cidr *out, struct sd_error *err);
/* Does addr (AF_INET or AF_INET6, IPv4-mapped IPv6 included) fall in
 * the block? */
bool sd_cidr_match(const struct sd_cidr *cidr, const struct sockaddr *addr);
/* "1.2.3.4:PORT" or "[v6]:PORT" into out (kind, text, addr). */
int sd_listen_parse_tcp(const char *text, struct sd_listen *out,
                        struct sd_error *err);
int sd_listen_set_unix(const char *path, struct sd_listen *out,
                       struct sd_error *err);
void sd_listen_clear(struct sd_listen *l);
/* "64M", "1GiB", "4096" (binary multiples) into bytes. */
int sd_config_parse_size(const char *text, uint64_t *out);
/* Non-negative decimal, no sign, at most max. */
int sd_config_parse_uint(const char *text, unsigned max, unsigned *out);

/* Semantic checks of a whole definition; messages start with what is
 * wrong (callers put FILE:LINE in front). */
int sd_export_validate(const struct sd_export *exp, struct sd_error *err);
int sd_server_config_validate(const struct sd_server_config *cfg,
                              struct sd_error *err);
int sd_tls_config_validate(const struct sd_tls_config *tls,
                           struct sd_error *err);
/* Text for clients and logs: at most max bytes of UTF-8, no control
 * characters. */
int sd_config_text_check(const char *what, const char *s, size_t max,
                         struct sd_error *err);
/* A path: 1..SD_CONFIG_PATH_MAX bytes, no control characters. */
int sd_config_path_check(const char *what, const char *path,
                         struct sd_error *err);

#endif
