/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of server/libsdconfig: the main YAML file, export files and
 * directories, nbd-server INI files, and the value checks behind them.
 * Every error case checks the FILE:LINE the message names.
 */
#include "config.h"

#include "server/server-config.h"
#include "server/config-internal.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmpdir[64];
static char path_buf[8][PATH_MAX];
static unsigned path_next;

static void setup(void)
{
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/sd-test-config-XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir));
    path_next = 0;
}

static int remove_one(const char *p, const struct stat *st, int flag,
                      struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(p);
}

static void teardown(void)
{
    cr_assert_eq(nftw(tmpdir, remove_one, 16, FTW_DEPTH | FTW_PHYS), 0);
}

TestSuite(config, .init = setup, .fini = teardown);

/* tmpdir/name, in one of a few rotating buffers. */
static const char *tpath(const char *name)
{
    char *p = path_buf[path_next++ % 8];
    int n = snprintf(p, PATH_MAX, "%s/%s", tmpdir, name);

    cr_assert(n > 0 && n < PATH_MAX);
    return p;
}

static const char *write_file(const char *name, const char *text)
{
    const char *p = tpath(name);
    FILE *f = fopen(p, "w");

    cr_assert_not_null(f, "%s: %s", p, strerror(errno));
    cr_assert_eq(fputs(text, f) >= 0, true);
    cr_assert_eq(fclose(f), 0);
    return p;
}

static void make_dir(const char *name)
{
    cr_assert_eq(mkdir(tpath(name), 0755), 0);
}

/* The message must be exactly "<tmpdir>/<file>:<line>: " + something
 * containing `what`. */
static void expect_at(const struct sd_error *e, const char *file,
                      unsigned line, const char *what)
{
    char prefix[PATH_MAX + 32];

    snprintf(prefix, sizeof(prefix), "%s/%s:%u: ", tmpdir, file, line);
    cr_assert_neq(e->code, 0, "no error, expected %s", prefix);
    cr_assert_eq(strncmp(e->msg, prefix, strlen(prefix)), 0,
                 "message \"%s\" does not start with \"%s\"", e->msg, prefix);
    cr_assert_not_null(strstr(e->msg, what), "message \"%s\" lacks \"%s\"",
                       e->msg, what);
}

static int load_main(const char *text, struct sd_server_config *cfg,
                     struct sd_error *e)
{
    sd_error_clear(e);
    return sd_config_load_server_yaml(write_file("main.yaml", text), cfg, e);
}

static void expect_main_error(const char *text, unsigned line,
                              const char *what)
{
    struct sd_server_config cfg;
    struct sd_error e;

    cr_assert_lt(load_main(text, &cfg, &e), 0, "accepted: %s", text);
    expect_at(&e, "main.yaml", line, what);
}

/* --- defaults and the main file --- */

Test(config, builtin_defaults)
{
    struct sd_server_config cfg;
    struct sockaddr_in *in;
    struct sd_error e;

    cr_assert_eq(sd_server_config_init_defaults(&cfg, &e), 0, "%s", e.msg);
    cr_assert_eq(cfg.n_listen, 2);
    cr_assert_eq(cfg.listen[0].kind, SD_LISTEN_TCP);
    in = (struct sockaddr_in *)&cfg.listen[0].addr;
    cr_assert_eq(in->sin_family, AF_INET);
    cr_assert_eq(ntohs(in->sin_port), 10809);
    cr_assert_eq(ntohl(in->sin_addr.s_addr), INADDR_LOOPBACK);
    cr_assert_eq(cfg.listen[1].kind, SD_LISTEN_UNIX);
    cr_assert_str_eq(cfg.listen[1].path, "./var/run/nbd.sock");
    cr_assert_str_eq(cfg.export_dir, "./var/exports.d");
    cr_assert_str_eq(cfg.control_socket, "./var/run/control.sock");
    cr_assert_eq(cfg.workers, 0);
    cr_assert_eq(cfg.handshake_timeout, 10);
    cr_assert_eq(cfg.inflight_per_connection, 64ull << 20);
    cr_assert_eq(cfg.inflight_per_process, 1ull << 30);
    cr_assert_eq(cfg.tls.mode, SD_TLS_OFF);
    cr_assert_null(cfg.tls.cert);
    cr_assert_null(cfg.source);
    sd_server_config_clear(&cfg);
}

Test(config, load_without_file_reads_default_export_dir)
{
    char cwd[PATH_MAX];
    struct sd_config *cfg;
    struct sd_error e;

    make_dir("var");
    make_dir("var/exports.d");
    write_file("var/exports.d/demo.yaml", "name: demo\npath: /tmp/demo.img\n");
    cr_assert_not_null(getcwd(cwd, sizeof(cwd)));
    cr_assert_eq(chdir(tmpdir), 0);
    int ret = sd_config_load(NULL, &cfg, &e);
    cr_assert_eq(chdir(cwd), 0);
    cr_assert_eq(ret, 0, "%s", e.msg);
    cr_assert_eq(cfg->exports.n, 1);
    cr_assert_str_eq(cfg->exports.entries[0].export->name, "demo");
    sd_config_free(cfg);
}

Test(config, empty_main_file_is_all_defaults)
{
    struct sd_server_config cfg, def;
    struct sd_error e;

    cr_assert_eq(load_main("# nothing set\n", &cfg, &e), 0, "%s", e.msg);
    cr_assert_eq(sd_server_config_init_defaults(&def, &e), 0);
    cr_assert_eq(cfg.n_listen, def.n_listen);
    cr_assert_str_eq(cfg.export_dir, def.export_dir);
    cr_assert_eq(cfg.handshake_timeout, def.handshake_timeout);
    cr_assert_str_eq(cfg.source, tpath("main.yaml"));
    sd_server_config_clear(&cfg);
    sd_server_config_clear(&def);
}

Test(config, main_every_key)
{
    struct sd_server_config cfg;
    struct sockaddr_in6 *in6;
    struct sd_error e;

    cr_assert_eq(load_main(
        "listen:\n"
        "  - tcp: 0.0.0.0:10809\n"
        "  - tcp: \"[::1]:10810\"\n"
        "  - unix: /run/sendense/nbd.sock\n"
        "export_dir: /etc/sendense/exports.d\n"
        "control_socket: /run/sendense/control.sock\n"
        "workers: 4\n"
        "handshake_timeout: 30\n"
        "inflight_per_connection: 128M\n"
        "inflight_per_process: 2GiB\n"
        "tls:\n"
        "  mode: required\n"
        "  cert: /etc/sendense/tls/server.crt\n"
        "  key: /etc/sendense/tls/server.key\n"
        "  ca: /etc/sendense/tls/ca.crt\n"
        "  psk_file: /etc/sendense/tls/keys.psk\n",
        &cfg, &e), 0, "%s", e.msg);
    cr_assert_eq(cfg.n_listen, 3);
    cr_assert_str_eq(cfg.listen[0].text, "0.0.0.0:10809");
    in6 = (struct sockaddr_in6 *)&cfg.listen[1].addr;
    cr_assert_eq(in6->sin6_family, AF_INET6);
    cr_assert_eq(ntohs(in6->sin6_port), 10810);
    cr_assert(IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr));
    cr_assert_eq(cfg.listen[1].addrlen, sizeof(*in6));
    cr_assert_eq(cfg.listen[2].kind, SD_LISTEN_UNIX);
    cr_assert_str_eq(cfg.listen[2].path, "/run/sendense/nbd.sock");
    cr_assert_str_eq(cfg.export_dir, "/etc/sendense/exports.d");
    cr_assert_str_eq(cfg.control_socket, "/run/sendense/control.sock");
    cr_assert_eq(cfg.workers, 4);
    cr_assert_eq(cfg.handshake_timeout, 30);
    cr_assert_eq(cfg.inflight_per_connection, 128ull << 20);
    cr_assert_eq(cfg.inflight_per_process, 2ull << 30);
    cr_assert_eq(cfg.tls.mode, SD_TLS_REQUIRED);
    cr_assert_str_eq(cfg.tls.cert, "/etc/sendense/tls/server.crt");
    cr_assert_str_eq(cfg.tls.key, "/etc/sendense/tls/server.key");
    cr_assert_str_eq(cfg.tls.ca, "/etc/sendense/tls/ca.crt");
    cr_assert_str_eq(cfg.tls.psk_file, "/etc/sendense/tls/keys.psk");
    sd_server_config_clear(&cfg);
}

Test(config, main_workers_auto_and_null_keeps_default)
{
    struct sd_server_config cfg;
    struct sd_error e;

    cr_assert_eq(load_main("workers: auto\nexport_dir:\ntls: {mode: off}\n",
                           &cfg, &e), 0, "%s", e.msg);
    cr_assert_eq(cfg.workers, 0);
    cr_assert_str_eq(cfg.export_dir, "./var/exports.d");
    sd_server_config_clear(&cfg);
}

Test(config, main_errors_name_file_and_line)
{
    expect_main_error("workers: 2\nlisten_on: x\n", 2,
                      "unknown key \"listen_on\"");
    expect_main_error("workers: 2\nworkers: 3\n", 2,
                      "duplicate key \"workers\" (first at line 1)");
    expect_main_error("# c\nworkers: [1]\n", 2, "workers");
    expect_main_error("workers: 0\n", 1, "workers");
    expect_main_error("workers: many\n", 1, "workers");
    expect_main_error("handshake_timeout: 0\n", 1, "handshake_timeout");
    expect_main_error("handshake_timeout: \"10\"\n", 1, "handshake_timeout");
    expect_main_error("listen:\n  - tcp: localhost:10809\n", 2,
                      "not a numeric IPv4");
    expect_main_error("listen:\n  - tcp: 127.0.0.1:0\n", 2, "port");
    expect_main_error("listen:\n  - tcp: ::1:10809\n", 2, "[HOST]:PORT");
    expect_main_error("listen:\n  - udp: 1.2.3.4:1\n", 2,
                      "unknown key \"udp\"");
    expect_main_error("listen:\n  - {tcp: 1.2.3.4:1, unix: /x}\n", 2,
                      "one \"tcp");
    expect_main_error("listen: 1.2.3.4:1\n", 1, "expected a list");
    expect_main_error("listen: []\n", 1, "no socket");
    expect_main_error("\n\nlisten:\n  - unix: /tmp/"
                      "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
                      "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
                      "aaaaa.sock\n", 4, "longer than");
    expect_main_error("inflight_per_connection: 64X\n", 1, "size");
    expect_main_error("inflight_per_connection: 1M\n", 1,
                      "inflight_per_connection must be at least");
    expect_main_error("inflight_per_connection: 128M\n"
                      "inflight_per_process: 64M\n", 1,
                      "inflight_per_process must be at least");
    expect_main_error("tls:\n  mode: on\n", 2, "tls.mode: expected one of");
    expect_main_error("x: 1\ntls:\n  mode: required\n", 1,
                      "unknown key \"x\"");
    expect_main_error("workers: 1\ntls:\n  mode: required\n", 3,
                      "needs cert and key, or psk_file");
    expect_main_error("tls:\n  mode: optional\n  cert: /c\n", 2,
                      "cert and key go together");
    expect_main_error("tls:\n  cipher: x\n", 2, "unknown key \"cipher\"");
    expect_main_error("export_dir: \"\"\n", 1, "export_dir is empty");
    expect_main_error("- a\n- b\n", 1, "expected a mapping");
    expect_main_error("workers: 1\n---\nworkers: 2\n", 2,
                      "one YAML document");
    expect_main_error("a: &x 1\n", 1, "anchors");
    expect_main_error("workers: !!int 3\n", 1, "tags");
    expect_main_error("workers: 1\n  bad: indent\n", 2, "");
    expect_main_error("workers: [1, 2\n", 2, "");
}

Test(config, main_nesting_and_node_caps)
{
    char *deep = malloc(4096), *wide;
    size_t i, n = 0;

    cr_assert_not_null(deep);
    n += (size_t)sprintf(deep, "tls: ");
    for (i = 0; i < 20; i++)
        deep[n++] = '[';
    deep[n++] = '\n';
    deep[n] = '\0';
    expect_main_error(deep, 1, "nested too deep");
    free(deep);

    /* More nodes than SD_CONFIG_NODES_MAX in a file under the size cap. */
    wide = malloc(3 * SD_CONFIG_NODES_MAX + 64);
    cr_assert_not_null(wide);
    n = (size_t)sprintf(wide, "listen: [");
    for (i = 0; i < SD_CONFIG_NODES_MAX + 1; i++)
        n += (size_t)sprintf(wide + n, "1,");
    sprintf(wide + n, "1]\n");
    expect_main_error(wide, 1, "too many YAML nodes");
    free(wide);
}

/* The read is sized by fstat; a file longer than fstat says (as /proc
 * files are, at size 0) is still read whole, and the cap still holds. */
Test(config, read_file_whatever_its_stated_size)
{
    char *data, expect[4096];
    size_t len, n;
    struct sd_error e;
    FILE *f = fopen("/proc/version", "r");

    cr_assert_not_null(f);
    n = fread(expect, 1, sizeof(expect), f);
    fclose(f);
    cr_assert_gt(n, 0);
    cr_assert_eq(sd_config_read_file("/proc/version", &data, &len, &e), 0,
                 "%s", e.msg);
    cr_assert_eq(len, n);
    cr_assert_eq(memcmp(data, expect, n), 0);
    cr_assert_eq(data[len], '\0');
    free(data);

    char *big = malloc(SD_CONFIG_FILE_MAX);
    cr_assert_not_null(big);
    memset(big, '#', SD_CONFIG_FILE_MAX);
    f = fopen(tpath("max.yaml"), "w");
    cr_assert_not_null(f);
    cr_assert_eq(fwrite(big, 1, SD_CONFIG_FILE_MAX, f), SD_CONFIG_FILE_MAX);
    fclose(f);
    free(big);
    cr_assert_eq(sd_config_read_file(tpath("max.yaml"), &data, &len, &e), 0,
                 "%s", e.msg);
    cr_assert_eq(len, SD_CONFIG_FILE_MAX);
    cr_assert_eq(data[0], '#');
    cr_assert_eq(data[len - 1], '#');
    cr_assert_eq(data[len], '\0');
    free(data);

    f = fopen(tpath("empty.yaml"), "w");
    cr_assert_not_null(f);
    fclose(f);
    cr_assert_eq(sd_config_read_file(tpath("empty.yaml"), &data, &len, &e), 0);
    cr_assert_eq(len, 0);
    cr_assert_eq(data[0], '\0');
    free(data);
}

Test(config, file_size_cap_and_non_regular_files)
{
    struct sd_server_config cfg;
    struct sd_error e;
    char *big = malloc(SD_CONFIG_FILE_MAX + 2);

    cr_assert_not_null(big);
    memset(big, '#', SD_CONFIG_FILE_MAX + 1);
    big[SD_CONFIG_FILE_MAX + 1] = '\0';
    cr_assert_eq(load_main(big, &cfg, &e), -EFBIG);
    cr_assert_not_null(strstr(e.msg, "larger than"), "%s", e.msg);
    free(big);

    cr_assert_eq(mkfifo(tpath("fifo.yaml"), 0600), 0);
    cr_assert_eq(sd_config_load_server_yaml(tpath("fifo.yaml"), &cfg, &e),
                 -EINVAL);
    cr_assert_not_null(strstr(e.msg, "not a regular file"), "%s", e.msg);
    cr_assert_eq(sd_config_load_server_yaml(tpath("missing.yaml"), &cfg, &e),
                 -ENOENT);
}

/* --- export files --- */

static struct sd_export *load_export(const char *file, const char *text,
                                     struct sd_error *e)
{
    struct sd_export *exp = NULL;

    sd_error_clear(e);
    if (sd_config_load_export_yaml(write_file(file, text), &exp, e) < 0)
        return NULL;
    return exp;
}

static void expect_export_error(const char *file, const char *text,
                                unsigned line, const char *what)
{
    struct sd_error e;
    struct sd_export *exp = load_export(file, text, &e);

    cr_assert_null(exp, "accepted: %s", text);
    expect_at(&e, file, line, what);
}

Test(config, export_every_key)
{
    struct sd_error e;
    struct sd_export *exp = load_export("disk0.yaml",
        "name: disk0\n"
        "path: /var/lib/sendense/disk0.qcow2\n"
        "format: qcow2\n"
        "readonly: true\n"
        "allow: [127.0.0.1/32, 10.0.0.0/8, \"fd00::/8\"]\n"
        "tls: required\n"
        "overlay: none\n"
        "direct: true\n"
        "description: \"Disk 0 of pgtest2 – full\"\n", &e);

    cr_assert_not_null(exp, "%s", e.msg);
    cr_assert_str_eq(exp->name, "disk0");
    cr_assert_str_eq(exp->path, "/var/lib/sendense/disk0.qcow2");
    cr_assert_eq(exp->format, SD_FORMAT_QCOW2);
    cr_assert_eq(exp->readonly, true);
    cr_assert_eq(exp->allow_all, false);
    cr_assert_eq(exp->n_allow, 3);
    cr_assert_eq(exp->allow[1].family, AF_INET);
    cr_assert_eq(exp->allow[1].prefix, 8);
    cr_assert_eq(exp->allow[1].addr[0], 10);
    cr_assert_eq(exp->allow[2].family, AF_INET6);
    cr_assert_eq(exp->allow[2].prefix, 8);
    cr_assert_eq(exp->tls, SD_EXPORT_TLS_REQUIRED);
    cr_assert_eq(exp->overlay, SD_OVERLAY_NONE);
    cr_assert_eq(exp->direct, true);
    cr_assert_str_eq(exp->description, "Disk 0 of pgtest2 – full");
    cr_assert_str_eq(exp->source, tpath("disk0.yaml"));
    cr_assert_eq(exp->line, 1);
    sd_export_free(exp);
}

Test(config, export_defaults)
{
    struct sd_error e;
    struct sd_export *exp = load_export("a.yaml",
        "name: a\npath: /x.img\n", &e);

    cr_assert_not_null(exp, "%s", e.msg);
    cr_assert_eq(exp->format, SD_FORMAT_AUTO);
    cr_assert_eq(exp->readonly, false);
    cr_assert_eq(exp->allow_all, true);
    cr_assert_eq(exp->n_allow, 0);
    cr_assert_eq(exp->tls, SD_EXPORT_TLS_INHERIT);
    cr_assert_eq(exp->overlay, SD_OVERLAY_NONE);
    cr_assert_eq(exp->direct, false);
    cr_assert_null(exp->description);
    sd_export_free(exp);

    /* allow: [] admits no one, unlike a missing allow. */
    exp = load_export("b.yaml", "name: b\npath: /x.img\nallow: []\n"
                      "overlay: temporary\n", &e);
    cr_assert_not_null(exp, "%s", e.msg);
    cr_assert_eq(exp->allow_all, false);
    cr_assert_eq(exp->n_allow, 0);
    cr_assert_eq(exp->overlay, SD_OVERLAY_TEMPORARY);
    sd_export_free(exp);
}

Test(config, export_errors_name_file_and_line)
{
    expect_export_error("x.yaml", "name: y\npath: /a\n", 1,
                        "must be in a file named \"y.yaml\"");
    expect_export_error("x.yaml", "path: /a\n", 1, "missing key \"name\"");
    expect_export_error("x.yaml", "name: x\n", 1, "missing key \"path\"");
    expect_export_error("x.yaml", "name: x\npath: a/b.img\n", 2,
                        "not absolute");
    expect_export_error("x.yaml", "name: x\npath: /a\nformat: vmdk\n", 3,
                        "format: expected one of auto, raw, qcow2");
    expect_export_error("x.yaml", "name: x\npath: /a\nreadonly: yes\n", 3,
                        "readonly: expected true or false");
    expect_export_error("x.yaml", "name: x\npath: /a\nreadonly: \"true\"\n",
                        3, "readonly: expected true or false");
    expect_export_error("x.yaml", "name: x\npath: /a\nallow:\n"
                        "  - 10.0.0.0/8\n  - 10.1.2.3/16\n", 5,
                        "bits set past the /16");
    expect_export_error("x.yaml", "name: x\npath: /a\nallow: 10.0.0.0/8\n", 3,
                        "allow: expected a list");
    expect_export_error("x.yaml", "name: x\npath: /a\ntls: optional\n", 3,
                        "tls: expected one of inherit, required");
    expect_export_error("x.yaml", "name: x\npath: /a\noverlay: yes\n", 3,
                        "overlay");
    expect_export_error("x.yaml", "name: x\npath: /a\ndirect: 1\n", 3,
                        "direct");
    expect_export_error("x.yaml", "name: x\npath: /a\nsize: 10\n", 3,
                        "unknown key \"size\"");
    expect_export_error("x.yaml", "name: x\npath: /a\npath: /b\n", 3,
                        "duplicate key \"path\" (first at line 2)");
    expect_export_error("x.yaml", "name: x\npath: /a\n"
                        "description: \"a\\tb\"\n", 3, "control character");
    expect_export_error("x.yaml", "name: x\npath: /a\nname: [x]\n", 3,
                        "duplicate key");
    expect_export_error("x.yaml", "name: [x]\npath: /a\n", 1,
                        "name: expected a single value");
    expect_export_error("x.yaml", "name: \"x\\0y\"\npath: /a\n", 1,
                        "NUL byte");
    expect_export_error("x.yaml", "", 1, "empty export file");
    expect_export_error("x.yaml", "name: x\npath: /a\nreadonly: true\n"
                        "overlay: temporary\n", 1, "overlay: temporary");
    expect_export_error(".hidden.yaml", "name: .hidden\npath: /a\n", 1,
                        "starts with '.'");
}

/* --- export directories --- */

static const struct sd_export_entry *find_entry(const struct sd_export_list *l,
                                                const char *file)
{
    const char *p = tpath(file);
    size_t i;

    for (i = 0; i < l->n; i++)
        if (strcmp(l->entries[i].file, p) == 0)
            return &l->entries[i];
    return NULL;
}

Test(config, dir_one_broken_file_among_good_ones)
{
    struct sd_export_list list = { 0 };
    const struct sd_export_entry *ent;
    struct sd_error e;

    make_dir("d");
    write_file("d/a.yaml", "name: a\npath: /a.img\n");
    write_file("d/b.yaml", "name: b\npath: /b.img\nreadonly: maybe\n");
    write_file("d/c.yaml", "name: c\npath: /c.img\nformat: raw\n");
    write_file("d/.d.yaml.tmp", "half-written");
    write_file("d/README", "notes");

    cr_assert_eq(sd_config_load_export_dir(tpath("d"), &list, &e), 0, "%s",
                 e.msg);
    cr_assert_eq(list.n, 4);
    cr_assert_eq(sd_export_list_errors(&list), 2);
    /* Sorted by file name: README, a, b, c. */
    cr_assert_str_eq(list.entries[0].file, tpath("d/README"));
    cr_assert_null(list.entries[0].export);
    cr_assert_not_null(strstr(list.entries[0].error.msg,
                              "not an export file"));
    ent = find_entry(&list, "d/a.yaml");
    cr_assert_not_null(ent->export);
    cr_assert_str_eq(ent->export->name, "a");
    ent = find_entry(&list, "d/b.yaml");
    cr_assert_null(ent->export);
    cr_assert_str_eq(ent->name, "b", "a broken file still names its export");
    expect_at(&ent->error, "d/b.yaml", 3, "readonly");
    ent = find_entry(&list, "d/c.yaml");
    cr_assert_not_null(ent->export);
    cr_assert_eq(ent->export->format, SD_FORMAT_RAW);
    sd_export_list_clear(&list);
}

Test(config, dir_duplicate_names_name_both_files)
{
    struct sd_export_list list = { 0 };
    const struct sd_export_entry *ent;
    struct sd_error e;
    char other[PATH_MAX + 16];

    make_dir("d");
    write_file("d/a.yaml", "name: a\npath: /a.img\n");
    write_file("d/old.conf", "\n[a]\nexportname = /old.img\n"
                             "[b]\nexportname = /b.img\n");
    cr_assert_eq(sd_config_load_export_dir(tpath("d"), &list, &e), 0, "%s",
                 e.msg);
    cr_assert_eq(list.n, 3);
    ent = find_entry(&list, "d/a.yaml");
    cr_assert_null(ent->export);
    snprintf(other, sizeof(other), "also defined in %s:2", tpath("d/old.conf"));
    expect_at(&ent->error, "d/a.yaml", 1, other);
    ent = &list.entries[1];
    cr_assert_str_eq(ent->file, tpath("d/old.conf"));
    cr_assert_null(ent->export);
    snprintf(other, sizeof(other), "also defined in %s:1", tpath("d/a.yaml"));
    expect_at(&ent->error, "d/old.conf", 2, other);
    cr_assert_not_null(list.entries[2].export);
    cr_assert_str_eq(list.entries[2].export->name, "b");
    sd_export_list_clear(&list);
}

/* Export files are read ahead in batches; whatever that cannot take (a
 * large file, a link, a FIFO, a directory) goes the ordinary way, with
 * the same results. */
Test(config, dir_many_files_of_every_kind)
{
    enum { N = 150 };
    struct sd_export_list list = { 0 };
    const struct sd_export_entry *ent;
    struct sd_error e;
    char name[64], text[8192];
    size_t i;

    make_dir("d");
    for (i = 0; i < N; i++) {
        snprintf(name, sizeof(name), "d/e%03zu.yaml", i);
        snprintf(text, sizeof(text), "name: e%03zu\npath: /img/%zu.raw\n",
                 i, i);
        write_file(name, text);
    }
    /* Past the read-ahead's 4 KiB: a long comment. */
    memset(text, '#', 6000);
    snprintf(text + 6000, sizeof(text) - 6000,
             "\nname: big\npath: /img/big.raw\nreadonly: true\n");
    write_file("d/big.yaml", text);
    write_file("d/.link-target", "name: link\npath: /img/link.raw\n");
    cr_assert_eq(symlink(".link-target", tpath("d/link.yaml")), 0);
    cr_assert_eq(mkfifo(tpath("d/fifo.yaml"), 0600), 0);
    make_dir("d/sub.yaml");

    cr_assert_eq(sd_config_load_export_dir(tpath("d"), &list, &e), 0, "%s",
                 e.msg);
    cr_assert_eq(list.n, N + 4);
    for (i = 0; i < N; i++) {
        snprintf(name, sizeof(name), "d/e%03zu.yaml", i);
        ent = find_entry(&list, name);
        cr_assert_not_null(ent, "%s missing", name);
        cr_assert_not_null(ent->export, "%s: %s", name, ent->error.msg);
        snprintf(text, sizeof(text), "/img/%zu.raw", i);
        cr_assert_str_eq(ent->export->path, text);
    }
    ent = find_entry(&list, "d/big.yaml");
    cr_assert_not_null(ent->export, "%s", ent->error.msg);
    cr_assert_str_eq(ent->export->path, "/img/big.raw");
    cr_assert(ent->export->readonly);
    ent = find_entry(&list, "d/link.yaml");
    cr_assert_not_null(ent->export, "%s", ent->error.msg);
    cr_assert_str_eq(ent->export->path, "/img/link.raw");
    ent = find_entry(&list, "d/fifo.yaml");
    cr_assert_null(ent->export);
    cr_assert_not_null(strstr(ent->error.msg, "not a regular file"), "%s",
                       ent->error.msg);
    ent = find_entry(&list, "d/sub.yaml");
    cr_assert_null(ent->export);
    cr_assert_not_null(strstr(ent->error.msg, "not a regular file"), "%s",
                       ent->error.msg);
    cr_assert_eq(sd_export_list_errors(&list), 2);
    sd_export_list_clear(&list);
}

Test(config, dir_missing_is_an_error)
{
    struct sd_export_list list = { 0 };
    struct sd_error e;

    cr_assert_eq(sd_config_load_export_dir(tpath("nope"), &list, &e),
                 -ENOENT);
    cr_assert_eq(list.n, 0);
    cr_assert_not_null(strstr(e.msg, tpath("nope")));
}

/* --- nbd-server INI --- */

Test(config, ini_generic_exports_and_includedir)
{
    struct sd_config *cfg;
    const struct sd_export_entry *ent;
    struct sd_error e;
    char text[2048];

    make_dir("inc");
    write_file("inc/more.conf", "# included\n[disk1]\n"
                                "exportname = /srv/disk1.img\n"
                                "tlsonly = true\n");
    snprintf(text, sizeof(text),
             "# nbd-server config\n"
             "[generic]\n"
             "    port = 10900\n"
             "    listenaddr = 127.0.0.1, ::1\n"
             "    includedir = %s\n"
             "    max_threads = 8\n"
             "    allowlist = true\n"
             "[disk0]\n"
             "    exportname = /srv/disk0.img\n"
             "    readonly = true\n"
             "    flush = true\n"
             "    copyonwrite = false\n",
             tpath("inc"));
    write_file("nbd.conf", text);
    cr_assert_eq(sd_config_load(tpath("nbd.conf"), &cfg, &e), 0, "%s",
                 e.msg);
    cr_assert_eq(cfg->server.n_listen, 2);
    cr_assert_str_eq(cfg->server.listen[0].text, "127.0.0.1:10900");
    cr_assert_str_eq(cfg->server.listen[1].text, "[::1]:10900");
    cr_assert_str_eq(cfg->server.export_dir, tpath("inc"));
    cr_assert_eq(cfg->server.workers, 8);
    cr_assert_eq(cfg->server.tls.mode, SD_TLS_OFF);
    cr_assert_eq(cfg->exports.n, 2);
    cr_assert_eq(sd_export_list_errors(&cfg->exports), 0,
                 "%s", cfg->exports.entries[0].error.msg);
    ent = &cfg->exports.entries[0];
    cr_assert_str_eq(ent->export->name, "disk0");
    cr_assert_str_eq(ent->export->path, "/srv/disk0.img");
    cr_assert_eq(ent->export->readonly, true);
    cr_assert_eq(ent->export->line, 8);
    ent = &cfg->exports.entries[1];
    cr_assert_str_eq(ent->export->name, "disk1");
    cr_assert_eq(ent->export->tls, SD_EXPORT_TLS_REQUIRED);
    cr_assert_eq(ent->export->readonly, false);
    sd_config_free(cfg);
}

Test(config, ini_listen_defaults_unixsock_and_tls)
{
    struct sd_server_config srv;
    struct sd_export_list list = { 0 };
    struct sd_error e;

    cr_assert_eq(sd_config_load_nbd_ini(write_file("a.conf", "[generic]\n"),
                                        &srv, &list, &e), 0, "%s", e.msg);
    cr_assert_eq(srv.n_listen, 2);
    cr_assert_str_eq(srv.listen[0].text, "0.0.0.0:10809");
    cr_assert_str_eq(srv.listen[1].text, "[::]:10809");
    cr_assert_null(srv.export_dir);
    sd_server_config_clear(&srv);

    cr_assert_eq(sd_config_load_nbd_ini(write_file("b.conf",
        "[generic]\nunixsock = /run/nbd.sock\n"), &srv, &list, &e), 0,
        "%s", e.msg);
    cr_assert_eq(srv.n_listen, 1);
    cr_assert_eq(srv.listen[0].kind, SD_LISTEN_UNIX);
    sd_server_config_clear(&srv);

    cr_assert_eq(sd_config_load_nbd_ini(write_file("c.conf",
        "[generic]\nunixsock = /run/nbd.sock\nduallisten = true\n"
        "listenaddr = 10.0.0.1\nkeyfile = /k.pem\nforce_tls = true\n"),
        &srv, &list, &e), 0, "%s", e.msg);
    cr_assert_eq(srv.n_listen, 2);
    cr_assert_str_eq(srv.listen[1].text, "10.0.0.1:10809");
    cr_assert_eq(srv.tls.mode, SD_TLS_REQUIRED);
    cr_assert_str_eq(srv.tls.key, "/k.pem");
    cr_assert_str_eq(srv.tls.cert, "/k.pem", "nbd-server reads the "
                     "certificate from keyfile when certfile is absent");
    sd_server_config_clear(&srv);

    cr_assert_eq(sd_config_load_nbd_ini(write_file("d.conf",
        "[generic]\nkeyfile = /k.pem\ncertfile = /c.pem\n"
        "cacertfile = /ca.pem\n"), &srv, &list, &e), 0, "%s", e.msg);
    cr_assert_eq(srv.tls.mode, SD_TLS_OPTIONAL);
    cr_assert_str_eq(srv.tls.cert, "/c.pem");
    cr_assert_str_eq(srv.tls.ca, "/ca.pem");
    sd_server_config_clear(&srv);
    cr_assert_eq(list.n, 0);
}

/* An export section with one line added: that export is an error at
 * line 3 naming `what`; the other export of the file still loads. */
static void expect_ini_export_error(const char *line, const char *what)
{
    struct sd_export_list list = { 0 };
    struct sd_error e;
    char text[512];

    snprintf(text, sizeof(text),
             "[bad]\nexportname = /a.img\n%s\n[good]\nexportname = /b\n",
             line);
    cr_assert_eq(sd_config_load_nbd_ini_exports(write_file("x.conf", text),
                                                &list, &e), 0, "%s", e.msg);
    cr_assert_eq(list.n, 2, "%s", line);
    cr_assert_null(list.entries[0].export, "accepted: %s", line);
    cr_assert_str_eq(list.entries[0].name, "bad");
    expect_at(&list.entries[0].error, "x.conf", 3, what);
    cr_assert_not_null(list.entries[1].export);
    sd_export_list_clear(&list);
}

Test(config, ini_export_keys_we_do_not_implement_are_refused)
{
    static const char *const refused[] = {
        "authfile = /etc/nbd-server/allow", "cowdir = /tmp",
        "filesize = 1048576", "maxconnections = 4", "prerun = /bin/true %s",
        "postrun = /bin/true", "timeout = 30", "transactionlog = /tmp/t",
        "virtstyle = none", "waitfile = /tmp/w", "port = 12345",
        "listenaddr = 0.0.0.0",
        "copyonwrite = true", "sparse_cow = true", "multifile = true",
        "treefiles = true", "temporary = true", "sdp = true", "sync = true",
        "rotational = true",
        "flush = false", "fua = false", "trim = false",
    };
    size_t i;

    for (i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        char key[32];

        sscanf(refused[i], "%31s", key);
        char want[64];
        snprintf(want, sizeof(want), "key \"%s\"", key);
        expect_ini_export_error(refused[i], want);
    }
    expect_ini_export_error("nonsense = 1", "unknown key \"nonsense\"");
    expect_ini_export_error("readonly = yes", "readonly: expected true");
    expect_ini_export_error("copyonwrite = no", "expected true or false");
    expect_ini_export_error("exportname = /b", "duplicate key \"exportname\" "
                            "(first at line 2)");
    expect_ini_export_error("just words", "expected \"key = value\"");
}

Test(config, ini_accepted_fixed_values)
{
    struct sd_export_list list = { 0 };
    struct sd_error e;

    cr_assert_eq(sd_config_load_nbd_ini_exports(write_file("ok.conf",
        "[a]\nexportname = /a\nflush = true\nfua = true\ntrim = true\n"
        "copyonwrite = false\nsparse_cow = false\nmultifile = false\n"
        "treefiles = false\ntemporary = false\nsdp = false\nsync = false\n"
        "rotational = false\nforce_tls = false\n"), &list, &e), 0,
        "%s", e.msg);
    cr_assert_eq(list.n, 1);
    cr_assert_not_null(list.entries[0].export, "%s",
                       list.entries[0].error.msg);
    cr_assert_eq(list.entries[0].export->tls, SD_EXPORT_TLS_INHERIT);
    sd_export_list_clear(&list);
}

static void expect_ini_main_error(const char *text, unsigned line,
                                  const char *what)
{
    struct sd_server_config srv;
    struct sd_export_list list = { 0 };
    struct sd_error e;

    cr_assert_lt(sd_config_load_nbd_ini(write_file("m.conf", text), &srv,
                                        &list, &e), 0, "accepted: %s", text);
    expect_at(&e, "m.conf", line, what);
    sd_export_list_clear(&list);
}

/* nbd-server's splice = true|false: large reads of raw images are
 * spliced either way, so both are accepted. */
Test(config, ini_splice_either_way)
{
    const char *texts[] = { "[generic]\nsplice = true\n",
                            "[generic]\nsplice = false\n" };

    for (size_t i = 0; i < 2; i++) {
        struct sd_server_config srv;
        struct sd_export_list list = { 0 };
        struct sd_error e;

        cr_assert_eq(sd_config_load_nbd_ini(write_file("m.conf", texts[i]),
                                            &srv, &list, &e), 0, "%s",
                     e.msg);
        sd_server_config_clear(&srv);
        sd_export_list_clear(&list);
    }
}

Test(config, ini_generic_errors)
{
    expect_ini_main_error("[generic]\nuser = nbd\n", 2, "key \"user\"");
    expect_ini_main_error("[generic]\ngroup = nbd\n", 2, "key \"group\"");
    expect_ini_main_error("[generic]\ntlsprio = NORMAL\n", 2,
                          "key \"tlsprio\"");
    expect_ini_main_error("[generic]\noldstyle = true\n", 2,
                          "key \"oldstyle\"");
    expect_ini_main_error("[generic]\nsplice = maybe\n", 2,
                          "splice: expected true or false");
    expect_ini_main_error("[generic]\nallowlist = false\n", 2,
                          "key \"allowlist\"");
    expect_ini_main_error("[generic]\nfoo = 1\n", 2, "unknown key \"foo\"");
    expect_ini_main_error("[generic]\nport = http\n", 2, "port");
    expect_ini_main_error("[generic]\nlistenaddr = host.example\n", 2,
                          "numeric");
    expect_ini_main_error("[generic]\nmax_threads = 0\n", 2, "max_threads");
    expect_ini_main_error("[generic]\ncertfile = /c.pem\n", 2,
                          "certfile needs keyfile");
    expect_ini_main_error("[generic]\nforce_tls = true\n", 1,
                          "needs cert and key");
    expect_ini_main_error("[disk]\nexportname = /a\n", 1,
                          "first section must be [generic]");
    expect_ini_main_error("# only comments\n", 1, "no [generic] section");
    expect_ini_main_error("[generic]\n[generic]\n", 2, "second [generic]");
    expect_ini_main_error("port = 1\n[generic]\n", 1, "before any [section]");
    expect_ini_main_error("[generic\n", 1, "malformed section header");
}

Test(config, ini_include_file_cannot_hold_generic)
{
    struct sd_export_list list = { 0 };
    struct sd_error e;

    cr_assert_eq(sd_config_load_nbd_ini_exports(write_file("inc.conf",
        "[generic]\nport = 1\n[ok]\nexportname = /ok\n"), &list, &e), 0,
        "%s", e.msg);
    cr_assert_eq(list.n, 2);
    expect_at(&list.entries[0].error, "inc.conf", 1, "main file only");
    cr_assert_not_null(list.entries[1].export);
    sd_export_list_clear(&list);
}

Test(config, main_file_syntax_is_detected)
{
    struct sd_config *cfg;
    struct sd_error e;

    write_file("yaml-main", "export_dir: /nonexistent-sd-dir\n");
    cr_assert_eq(sd_config_load(tpath("yaml-main"), &cfg, &e), -ENOENT);
    cr_assert_not_null(strstr(e.msg, "/nonexistent-sd-dir"), "%s", e.msg);

    write_file("ini-main", "\n# c\n  [generic]  \n[x]\nexportname = /x\n");
    cr_assert_eq(sd_config_load(tpath("ini-main"), &cfg, &e), 0, "%s", e.msg);
    cr_assert_eq(cfg->exports.n, 1);
    cr_assert_str_eq(cfg->exports.entries[0].export->name, "x");
    sd_config_free(cfg);
}

/* --- values --- */

static void expect_cidr(const char *text, int family, unsigned prefix,
                        const char *addr)
{
    struct sd_cidr c;
    struct sd_error e;
    uint8_t want[16] = { 0 };

    cr_assert_eq(sd_cidr_parse(text, &c, &e), 0, "%s: %s", text, e.msg);
    cr_assert_eq(c.family, family, "%s", text);
    cr_assert_eq(c.prefix, prefix, "%s", text);
    cr_assert_eq(inet_pton(family, addr, want), 1);
    cr_assert_eq(memcmp(c.addr, want, family == AF_INET ? 4 : 16), 0, "%s",
                 text);
}

Test(config, cidr_good)
{
    expect_cidr("127.0.0.1/32", AF_INET, 32, "127.0.0.1");
    expect_cidr("127.0.0.1", AF_INET, 32, "127.0.0.1");
    expect_cidr("10.0.0.0/8", AF_INET, 8, "10.0.0.0");
    expect_cidr("192.168.4.0/22", AF_INET, 22, "192.168.4.0");
    expect_cidr("0.0.0.0/0", AF_INET, 0, "0.0.0.0");
    expect_cidr("::1", AF_INET6, 128, "::1");
    expect_cidr("fd00::/8", AF_INET6, 8, "fd00::");
    expect_cidr("2001:db8::/32", AF_INET6, 32, "2001:db8::");
    expect_cidr("::/0", AF_INET6, 0, "::");
}

Test(config, cidr_bad)
{
    static const char *const bad[] = {
        "", "/8", "10.0.0.0/", "10.0.0.0/33", "10.0.0.0/08", "10.0.0.0/-1",
        "10.0.0.0/ 8", "10.0.0.1/8", "10.0.0", "10.0.0.256", "010.0.0.1",
        "::1/129", "fd00::1/8", "2001:db8::/x", "host.example/24",
        "[::1]/128", "1.2.3.4/32/1",
    };
    size_t i;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct sd_cidr c;
        struct sd_error e;

        cr_assert_eq(sd_cidr_parse(bad[i], &c, &e), -EINVAL, "accepted %s",
                     bad[i]);
        cr_assert_neq(e.msg[0], '\0');
    }
}

static struct sockaddr_storage sockaddr_of(const char *text)
{
    struct sockaddr_storage ss;
    struct sockaddr_in *in4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;

    memset(&ss, 0, sizeof(ss));
    if (inet_pton(AF_INET, text, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
    } else {
        cr_assert_eq(inet_pton(AF_INET6, text, &in6->sin6_addr), 1);
        in6->sin6_family = AF_INET6;
    }
    return ss;
}

static bool matches(const char *cidr, const char *addr)
{
    struct sockaddr_storage ss = sockaddr_of(addr);
    struct sd_cidr c;

    cr_assert_eq(sd_cidr_parse(cidr, &c, NULL), 0);
    return sd_cidr_match(&c, (struct sockaddr *)&ss);
}

Test(config, cidr_match)
{
    cr_assert(matches("10.0.0.0/8", "10.255.1.2"));
    cr_assert_not(matches("10.0.0.0/8", "11.0.0.1"));
    cr_assert(matches("192.168.4.0/22", "192.168.7.255"));
    cr_assert_not(matches("192.168.4.0/22", "192.168.8.0"));
    cr_assert(matches("0.0.0.0/0", "8.8.8.8"));
    cr_assert(matches("127.0.0.1", "127.0.0.1"));
    cr_assert_not(matches("127.0.0.1", "127.0.0.2"));
    cr_assert(matches("fd00::/8", "fdff::1"));
    cr_assert_not(matches("fd00::/8", "fe80::1"));
    cr_assert_not(matches("::/0", "1.2.3.4"), "families differ");
    cr_assert(matches("10.0.0.0/8", "::ffff:10.1.2.3"), "IPv4-mapped");
    cr_assert_not(matches("10.0.0.0/8", "::ffff:11.1.2.3"));
    cr_assert_not(matches("10.0.0.0/8", "::10.1.2.3"), "not mapped");
}

Test(config, export_name_rules)
{
    static const char *const good[] = {
        "a", "backup-ctx-pgtest2-disk0-full-20251005T120000", "disk 0",
        "a.b", "A_b-C~1", "\xc3\xa9t\xc3\xa9", "\xf0\x9f\x92\xbe",
    };
    static const char *const bad[] = {
        "", "a/b", "/a", ".", "..", ".hidden", "a\nb", "a\tb", "\x7f",
        "\xc3", "\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xff",
    };
    char name[SD_EXPORT_NAME_MAX + 2];
    size_t i;

    for (i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        cr_assert_eq(sd_export_name_check(good[i], NULL), 0, "refused %s",
                     good[i]);
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_assert_eq(sd_export_name_check(bad[i], NULL), -EINVAL,
                     "accepted bad name %zu", i);
    memset(name, 'n', SD_EXPORT_NAME_MAX);
    name[SD_EXPORT_NAME_MAX] = '\0';
    cr_assert_eq(sd_export_name_check(name, NULL), 0);
    name[SD_EXPORT_NAME_MAX] = 'n';
    name[SD_EXPORT_NAME_MAX + 1] = '\0';
    cr_assert_eq(sd_export_name_check(name, NULL), -EINVAL);
    /* The longest name still fits a file name with ".yaml". */
    cr_assert_leq(SD_EXPORT_NAME_MAX + strlen(".yaml"), 255);
}

Test(config, sizes_and_numbers)
{
    uint64_t v;
    unsigned u;

    cr_assert_eq(sd_config_parse_size("4096", &v), 0);
    cr_assert_eq(v, 4096);
    cr_assert_eq(sd_config_parse_size("64M", &v), 0);
    cr_assert_eq(v, 64ull << 20);
    cr_assert_eq(sd_config_parse_size("1GiB", &v), 0);
    cr_assert_eq(v, 1ull << 30);
    cr_assert_eq(sd_config_parse_size("2T", &v), 0);
    cr_assert_eq(v, 2ull << 40);
    cr_assert_eq(sd_config_parse_size("16777216T", &v), -ERANGE);
    cr_assert_eq(sd_config_parse_size("99999999999999999999", &v), -ERANGE);
    cr_assert_eq(sd_config_parse_size("", &v), -EINVAL);
    cr_assert_eq(sd_config_parse_size("M", &v), -EINVAL);
    cr_assert_eq(sd_config_parse_size("1MB", &v), -EINVAL);
    cr_assert_eq(sd_config_parse_size("-1", &v), -EINVAL);
    cr_assert_eq(sd_config_parse_size("1 M", &v), -EINVAL);
    cr_assert_eq(sd_config_parse_uint("65535", 65535, &u), 0);
    cr_assert_eq(u, 65535);
    cr_assert_eq(sd_config_parse_uint("65536", 65535, &u), -ERANGE);
    cr_assert_eq(sd_config_parse_uint("+1", 10, &u), -EINVAL);
    cr_assert_eq(sd_config_parse_uint("0x1", 10, &u), -EINVAL);
}

Test(config, export_diff)
{
    struct sd_error e;
    struct sd_export *a, *b;

    make_dir("b");
    a = load_export("a.yaml",
        "name: a\npath: /a.img\nallow: [10.0.0.0/8]\n", &e);
    b = load_export("b/../a.yaml",
        "name: a\npath: /a.img\nallow: [10.0.0.0/8]\n", &e);

    cr_assert_not_null(a);
    cr_assert_not_null(b, "%s", e.msg);
    cr_assert_eq(sd_export_diff(a, b), 0, "where it was defined does "
                 "not count");
    b->allow[0].prefix = 16;
    cr_assert_eq(sd_export_diff(a, b), SD_EXPORT_DIFF_ALLOW);
    cr_assert_eq(sd_export_diff(a, b) & SD_EXPORT_DIFF_REOPEN, 0);
    b->allow[0].prefix = 8;
    free(b->path);
    b->path = strdup("/b.img");
    b->readonly = true;
    cr_assert_eq(sd_export_diff(a, b),
                 SD_EXPORT_DIFF_PATH | SD_EXPORT_DIFF_READONLY);
    cr_assert_neq(sd_export_diff(a, b) & SD_EXPORT_DIFF_REOPEN, 0);
    b->allow_all = true;
    cr_assert_neq(sd_export_diff(a, b) & SD_EXPORT_DIFF_ALLOW, 0);
    sd_export_free(a);
    sd_export_free(b);
}

/* etc/sendense-nbd.yaml documents every key at its default: loading it
 * must give exactly the built-in defaults. */
Test(config, example_file_matches_builtin_defaults)
{
    const char *srcdir = getenv("top_srcdir");
    struct sd_server_config cfg, def;
    struct sd_error e;
    char path[PATH_MAX];
    size_t i;

    cr_assert_not_null(srcdir, "run through make check (top_srcdir)");
    snprintf(path, sizeof(path), "%s/etc/sendense-nbd.yaml", srcdir);
    cr_assert_eq(sd_config_load_server_yaml(path, &cfg, &e), 0, "%s", e.msg);
    cr_assert_eq(sd_server_config_init_defaults(&def, &e), 0);
    cr_assert_eq(cfg.n_listen, def.n_listen);
    for (i = 0; i < def.n_listen; i++) {
        cr_assert_eq(cfg.listen[i].kind, def.listen[i].kind);
        cr_assert_str_eq(cfg.listen[i].text, def.listen[i].text);
    }
    cr_assert_str_eq(cfg.export_dir, def.export_dir);
    cr_assert_str_eq(cfg.control_socket, def.control_socket);
    cr_assert_eq(cfg.workers, def.workers);
    cr_assert_eq(cfg.handshake_timeout, def.handshake_timeout);
    cr_assert_eq(cfg.inflight_per_connection, def.inflight_per_connection);
    cr_assert_eq(cfg.inflight_per_process, def.inflight_per_process);
    cr_assert_eq(cfg.tls.mode, def.tls.mode);
    cr_assert_null(cfg.tls.cert);
    cr_assert_null(cfg.tls.psk_file);
    sd_server_config_clear(&cfg);
    sd_server_config_clear(&def);
}
