/* SPDX-License-Identifier: MIT */
/*
 * Whole configuration loads, built-in defaults, comparing and freeing
 * definitions, and reading a config file within its size cap.
 */
#include "config.h"

#include "server/config-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int read_all(int fd, char *buf, size_t cap, size_t *len)
{
    size_t got = 0;

    while (got < cap) {
        ssize_t n = read(fd, buf + got, cap - got);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            break;
        got += (size_t)n;
    }
    *len = got;
    return 0;
}

/* The whole file into *buf (NUL-terminated), or SD_CONFIG_FILE_MAX + 1
 * bytes of it: one byte more than the cap tells a too-large file apart.
 * The buffer is sized by what fstat said, so the thousand small files
 * of an export folder do not each get a megabyte; a file that grew
 * since gets the rest read into the full-size buffer. */
static int read_capped(int fd, char **buf, off_t size, size_t *len)
{
    size_t limit = SD_CONFIG_FILE_MAX + 1;
    size_t want = size >= 0 && (uint64_t)size < limit ? (size_t)size + 1
                                                       : limit;
    size_t more = 0;
    ssize_t n;
    char *grown;
    int ret;

    *buf = malloc(want + 1);
    if (!*buf)
        return -ENOMEM;
    /* A regular file reads short only at its end: one read() takes a
     * file of the size fstat gave, with no second one to see the end. */
    do {
        n = read(fd, *buf, want);
    } while (n < 0 && errno == EINTR);
    if (n < 0)
        return -errno;
    *len = (size_t)n;
    if (*len < want || want == limit)
        return 0;
    grown = realloc(*buf, limit + 1);
    if (!grown)
        return -ENOMEM;
    *buf = grown;
    ret = read_all(fd, grown + want, limit - want, &more);
    *len += more;
    return ret;
}

int sd_config_read_file(const char *path, char **data, size_t *len,
                        struct sd_error *err)
{
    struct stat st;
    char *buf = NULL;
    int fd, ret;

    /* O_NONBLOCK: opening a FIFO must not wait for a writer. */
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0)
        return sd_error_set(err, -errno, "%s: %s", path, strerror(errno));
    if (fstat(fd, &st) < 0) {
        ret = sd_error_set(err, -errno, "%s: %s", path, strerror(errno));
        goto out_close;
    }
    if (!S_ISREG(st.st_mode)) {
        ret = sd_error_set(err, -EINVAL, "%s: not a regular file", path);
        goto out_close;
    }
    ret = read_capped(fd, &buf, st.st_size, len);
    if (ret < 0) {
        sd_error_set(err, ret, "%s: %s", path,
                     ret == -ENOMEM ? "out of memory" : strerror(-ret));
        goto out_free;
    }
    if (*len > SD_CONFIG_FILE_MAX) {
        ret = sd_error_set(err, -EFBIG, "%s: larger than %u bytes", path,
                           SD_CONFIG_FILE_MAX);
        goto out_free;
    }
    buf[*len] = '\0';
    *data = buf;
    buf = NULL;
    ret = 0;
out_free:
    free(buf);
out_close:
    close(fd);
    return ret;
}

static char *dup_or_null(const char *s, int *failed)
{
    char *d;

    if (!s)
        return NULL;
    d = strdup(s);
    if (!d)
        *failed = 1;
    return d;
}

int sd_server_config_init_defaults(struct sd_server_config *cfg,
                                   struct sd_error *err)
{
    int ret;

    memset(cfg, 0, sizeof(*cfg));
    cfg->workers = 0;
    cfg->handshake_timeout = SD_DEFAULT_HANDSHAKE_TIMEOUT;
    cfg->inflight_per_connection = SD_DEFAULT_INFLIGHT_CONN;
    cfg->inflight_per_process = SD_DEFAULT_INFLIGHT_PROCESS;
    cfg->tls.mode = SD_TLS_OFF;
    cfg->listen = calloc(2, sizeof(*cfg->listen));
    cfg->export_dir = strdup(SD_DEFAULT_EXPORT_DIR);
    cfg->control_socket = strdup(SD_DEFAULT_CONTROL_SOCKET);
    if (!cfg->listen || !cfg->export_dir || !cfg->control_socket) {
        ret = sd_error_set(err, -ENOMEM, "out of memory");
        goto out_clear;
    }
    ret = sd_listen_parse_tcp(SD_DEFAULT_TCP, &cfg->listen[0], err);
    if (ret < 0)
        goto out_clear;
    cfg->n_listen = 1;
    ret = sd_listen_set_unix(SD_DEFAULT_UNIX_SOCKET, &cfg->listen[1], err);
    if (ret < 0)
        goto out_clear;
    cfg->n_listen = 2;
    return 0;
out_clear:
    sd_server_config_clear(cfg);
    return ret;
}

void sd_server_config_clear(struct sd_server_config *cfg)
{
    size_t i;

    if (!cfg)
        return;
    for (i = 0; i < cfg->n_listen; i++)
        sd_listen_clear(&cfg->listen[i]);
    free(cfg->listen);
    free(cfg->export_dir);
    free(cfg->control_socket);
    free(cfg->tls.cert);
    free(cfg->tls.key);
    free(cfg->tls.ca);
    free(cfg->tls.psk_file);
    free(cfg->source);
    memset(cfg, 0, sizeof(*cfg));
}

struct sd_export *sd_export_new(const char *source, unsigned line)
{
    struct sd_export *exp = calloc(1, sizeof(*exp));
    int failed = 0;

    if (!exp)
        return NULL;
    exp->format = SD_FORMAT_AUTO;
    exp->allow_all = true;
    exp->tls = SD_EXPORT_TLS_INHERIT;
    exp->overlay = SD_OVERLAY_NONE;
    exp->source = dup_or_null(source, &failed);
    exp->line = line;
    if (failed) {
        sd_export_free(exp);
        return NULL;
    }
    return exp;
}

void sd_export_free(struct sd_export *exp)
{
    if (!exp)
        return;
    free(exp->name);
    free(exp->path);
    free(exp->description);
    free(exp->allow);
    free(exp->source);
    free(exp);
}

static bool str_equal(const char *a, const char *b)
{
    if (!a || !b)
        return a == b;
    return strcmp(a, b) == 0;
}

static bool allow_equal(const struct sd_export *a, const struct sd_export *b)
{
    size_t i;

    if (a->allow_all != b->allow_all || a->n_allow != b->n_allow)
        return false;
    for (i = 0; i < a->n_allow; i++) {
        const struct sd_cidr *x = &a->allow[i], *y = &b->allow[i];

        if (x->family != y->family || x->prefix != y->prefix ||
            memcmp(x->addr, y->addr, sizeof(x->addr)) != 0)
            return false;
    }
    return true;
}

unsigned sd_export_diff(const struct sd_export *a, const struct sd_export *b)
{
    unsigned d = 0;

    if (!str_equal(a->name, b->name))
        d |= SD_EXPORT_DIFF_NAME;
    if (!str_equal(a->path, b->path))
        d |= SD_EXPORT_DIFF_PATH;
    if (a->format != b->format)
        d |= SD_EXPORT_DIFF_FORMAT;
    if (a->readonly != b->readonly)
        d |= SD_EXPORT_DIFF_READONLY;
    if (!allow_equal(a, b))
        d |= SD_EXPORT_DIFF_ALLOW;
    if (a->tls != b->tls)
        d |= SD_EXPORT_DIFF_TLS;
    if (a->overlay != b->overlay)
        d |= SD_EXPORT_DIFF_OVERLAY;
    if (a->direct != b->direct)
        d |= SD_EXPORT_DIFF_DIRECT;
    if (!str_equal(a->description, b->description))
        d |= SD_EXPORT_DIFF_DESCRIPTION;
    return d;
}

int sd_export_list_reserve(struct sd_export_list *list, size_t n)
{
    struct sd_export_entry *entries;
    size_t cap = list->cap ? list->cap : 16;

    if (list->n + n <= list->cap)
        return 0;
    while (cap < list->n + n)
        cap *= 2;
    entries = realloc(list->entries, cap * sizeof(*entries));
    if (!entries)
        return -ENOMEM;
    list->entries = entries;
    list->cap = cap;
    return 0;
}

int sd_export_list_add(struct sd_export_list *list, const char *file,
                       const char *name, struct sd_export *exp,
                       const struct sd_error *e)
{
    struct sd_export_entry *ent;
    int failed = 0;

    if (list->n >= SD_CONFIG_EXPORTS_MAX) {
        sd_export_free(exp);
        return -E2BIG;
    }
    if (sd_export_list_reserve(list, 1) < 0) {
        sd_export_free(exp);
        return -ENOMEM;
    }
    ent = &list->entries[list->n];
    memset(ent, 0, sizeof(*ent));
    ent->file = dup_or_null(file, &failed);
    ent->name = dup_or_null(name, &failed);
    if (failed) {
        free(ent->file);
        free(ent->name);
        sd_export_free(exp);
        return -ENOMEM;
    }
    ent->export = exp;
    if (!exp && e)
        ent->error = *e;
    list->n++;
    return 0;
}

void sd_export_list_clear(struct sd_export_list *list)
{
    size_t i;

    if (!list)
        return;
    for (i = 0; i < list->n; i++) {
        free(list->entries[i].file);
        free(list->entries[i].name);
        sd_export_free(list->entries[i].export);
    }
    free(list->entries);
    list->entries = NULL;
    list->n = list->cap = 0;
}

size_t sd_export_list_errors(const struct sd_export_list *list)
{
    size_t i, n = 0;

    for (i = 0; i < list->n; i++)
        n += list->entries[i].export == NULL;
    return n;
}

bool sd_config_text_is_ini(const char *data, size_t len)
{
    size_t i = 0;

    while (i < len) {
        size_t start, end;

        while (i < len && (data[i] == ' ' || data[i] == '\t'))
            i++;
        start = i;
        while (i < len && data[i] != '\n')
            i++;
        end = i++;
        while (end > start && (data[end - 1] == ' ' ||
                               data[end - 1] == '\t' || data[end - 1] == '\r'))
            end--;
        if (end == start || data[start] == '#')
            continue;
        return data[start] == '[' && data[end - 1] == ']' &&
               memchr(data + start, ',', end - start) == NULL;
    }
    return false;
}

/* Main file of either syntax into cfg; INI export sections into list. */
static int load_main_file(const char *path, struct sd_config *cfg,
                          struct sd_error *err)
{
    char *data;
    size_t len;
    bool ini;
    int ret;

    ret = sd_config_read_file(path, &data, &len, err);
    if (ret < 0)
        return ret;
    ini = sd_config_text_is_ini(data, len);
    free(data);
    if (ini)
        return sd_config_load_nbd_ini(path, &cfg->server, &cfg->exports,
                                      err);
    return sd_config_load_server_yaml(path, &cfg->server, err);
}

int sd_config_load(const char *path, struct sd_config **out,
                   struct sd_error *err)
{
    struct sd_config *cfg = calloc(1, sizeof(*cfg));
    int ret;

    if (!cfg)
        return sd_error_set(err, -ENOMEM, "out of memory");
    if (path)
        ret = load_main_file(path, cfg, err);
    else
        ret = sd_server_config_init_defaults(&cfg->server, err);
    if (ret < 0)
        goto out_free;
    if (cfg->server.export_dir) {
        ret = sd_config_load_export_dir(cfg->server.export_dir,
                                        &cfg->exports, err);
        if (ret < 0)
            goto out_free;
    } else if (sd_export_list_mark_duplicates(&cfg->exports) < 0) {
        ret = sd_error_set(err, -ENOMEM, "out of memory");
        goto out_free;
    }
    *out = cfg;
    return 0;
out_free:
    sd_config_free(cfg);
    return ret;
}

void sd_config_free(struct sd_config *cfg)
{
    if (!cfg)
        return;
    sd_server_config_clear(&cfg->server);
    sd_export_list_clear(&cfg->exports);
    free(cfg);
}
