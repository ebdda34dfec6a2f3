/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of sendensed's configuration (catalog/daemon-config.c):
 * built-in defaults, a short file on top of them, export URIs, and every
 * refused value with the file:line its message names.
 */
#include "config.h"

#include "catalog/daemon-config.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char file[64];

static void setup(void)
{
    int fd;

    snprintf(file, sizeof(file), "/tmp/sd-test-sddconf-XXXXXX");
    fd = mkstemp(file);
    cr_assert_geq(fd, 0);
    close(fd);
}

static void teardown(void)
{
    cr_assert_eq(unlink(file), 0);
}

TestSuite(sddconf, .init = setup, .fini = teardown);

static void write_text(const char *text)
{
    FILE *f = fopen(file, "w");

    cr_assert_not_null(f);
    cr_assert_eq(fputs(text, f) >= 0, 1);
    cr_assert_eq(fclose(f), 0);
}

/* Load text; on failure return the errno with the message in err. */
static int load_text(const char *text, struct sdd_config **cfg,
                     struct sd_error *err)
{
    write_text(text);
    return sdd_config_load(file, cfg, err);
}

Test(sddconf, defaults_without_a_file)
{
    struct sdd_config *cfg = NULL;
    struct sd_error err = { 0 };

    cr_assert_eq(sdd_config_load(NULL, &cfg, &err), 0, "%s", err.msg);
    cr_expect_str_eq(cfg->control_socket, SDD_DEFAULT_CONTROL_SOCKET);
    cr_expect_str_eq(cfg->nbd_control_socket, SDD_DEFAULT_NBD_CONTROL_SOCKET);
    cr_expect_str_eq(cfg->nbd_uri_base, SDD_DEFAULT_NBD_URI_BASE);
    cr_assert_eq(cfg->nrepos, 1);
    cr_expect_str_eq(cfg->repos[0].name, "default");
    cr_expect_str_eq(cfg->repos[0].path, SDD_DEFAULT_REPOSITORY_PATH);
    cr_expect_eq(cfg->idle_timeout, SDD_DEFAULT_IDLE_TIMEOUT);
    cr_expect_not(cfg->keep_failed_images);
    cr_expect_eq(sdd_config_repo(cfg, NULL), &cfg->repos[0]);
    sdd_config_free(cfg);
}

Test(sddconf, a_short_file_overrides_what_it_names)
{
    struct sdd_config *cfg = NULL;
    struct sd_error err = { 0 };
    char *uri;

    cr_assert_eq(load_text(
        "control_socket: /tmp/x/sdd.sock\n"
        "nbd_uri_base: nbd://backup.example:10809/{name}\n"
        "repositories:\n"
        "  - {name: fast, path: /srv/fast}\n"
        "  - {name: slow, path: /srv/slow}\n"
        "idle_timeout: 7\n"
        "keep_failed_images: true\n", &cfg, &err), 0, "%s", err.msg);
    cr_expect_str_eq(cfg->control_socket, "/tmp/x/sdd.sock");
    cr_expect_str_eq(cfg->nbd_control_socket, SDD_DEFAULT_NBD_CONTROL_SOCKET);
    cr_assert_eq(cfg->nrepos, 2);
    cr_expect_str_eq(sdd_config_repo(cfg, NULL)->name, "fast");
    cr_expect_str_eq(sdd_config_repo(cfg, "slow")->path, "/srv/slow");
    cr_expect_null(sdd_config_repo(cfg, "medium"));
    cr_expect_eq(cfg->idle_timeout, 7);
    cr_expect(cfg->keep_failed_images);
    uri = sdd_config_export_uri(cfg, "backup-a-disk0-full-20250101T000000");
    cr_assert_not_null(uri);
    cr_expect_str_eq(uri, "nbd://backup.example:10809/"
                          "backup-a-disk0-full-20250101T000000");
    free(uri);
    sdd_config_free(cfg);
}

Test(sddconf, an_empty_file_is_the_defaults)
{
    struct sdd_config *cfg = NULL;
    struct sd_error err = { 0 };

    cr_assert_eq(load_text("", &cfg, &err), 0, "%s", err.msg);
    cr_expect_eq(cfg->idle_timeout, SDD_DEFAULT_IDLE_TIMEOUT);
    sdd_config_free(cfg);
}

/* text must be refused with -EINVAL and a message naming line and
 * containing what. */
static void expect_refused(const char *text, unsigned line, const char *what)
{
    struct sdd_config *cfg = NULL;
    struct sd_error err = { 0 };
    char where[96];

    cr_assert_eq(load_text(text, &cfg, &err), -EINVAL, "accepted: %s", text);
    cr_expect_null(cfg);
    snprintf(where, sizeof(where), "%s:%u: ", file, line);
    cr_expect(strstr(err.msg, where) != NULL, "message %s lacks %s", err.msg,
              where);
    cr_expect(strstr(err.msg, what) != NULL, "message %s lacks %s", err.msg,
              what);
}

Test(sddconf, bad_values_are_refused_with_their_line)
{
    expect_refused("idle_timeout: 0\n", 1, "idle_timeout");
    expect_refused("idle_timeout: 12s\n", 1, "idle_timeout");
    expect_refused("idle_timeout: -1\n", 1, "idle_timeout");
    expect_refused("keep_failed_images: maybe\n", 1, "true or false");
    expect_refused("\nnbd_uri_base: nbd://host/\n", 2, "{name}");
    expect_refused("nbd_uri_base: nbd://h/{name}/{name}\n", 1, "{name}");
    expect_refused("colour: blue\n", 1, "unknown key");
    expect_refused("repositories: []\n", 1, "repositories");
    expect_refused("repositories:\n  - {name: a, path: relative}\n", 2,
                   "absolute");
    expect_refused("repositories:\n  - {name: ../a, path: /a}\n", 2,
                   "repository name");
    expect_refused("repositories:\n  - {name: a}\n", 2, "name and a path");
    expect_refused("repositories:\n  - {name: a, path: /a}\n"
                   "  - {name: a, path: /b}\n", 3, "twice");
    expect_refused("repositories:\n  - {name: a, path: /a}\n"
                   "  - {name: b, path: /a}\n", 3, "share a path");
}

Test(sddconf, restore_keys)
{
    struct sdd_config *cfg = NULL;
    struct sd_error err = { 0 };

    cr_assert_eq(sdd_config_load(NULL, &cfg, &err), 0, "%s", err.msg);
    cr_expect_str_eq(cfg->restore_runtime_dir,
                     SDD_DEFAULT_RESTORE_RUNTIME_DIR);
    cr_expect_null(cfg->restore_nbd_socket);
    cr_expect_eq(cfg->mount_idle_timeout, SDD_DEFAULT_MOUNT_IDLE_TIMEOUT);
    sdd_config_free(cfg);
    cr_assert_eq(load_text("restore_runtime_dir: /tmp/rt\n"
                           "restore_nbd_socket: /tmp/nbd.sock\n"
                           "mount_idle_timeout: 2\n", &cfg, &err), 0, "%s",
                 err.msg);
    cr_expect_str_eq(cfg->restore_runtime_dir, "/tmp/rt");
    cr_expect_str_eq(cfg->restore_nbd_socket, "/tmp/nbd.sock");
    cr_expect_eq(cfg->mount_idle_timeout, 2);
    sdd_config_free(cfg);
    /* "" means: ask sendense-nbd. */
    cr_assert_eq(load_text("restore_nbd_socket: \"\"\n", &cfg, &err), 0,
                 "%s", err.msg);
    cr_expect_null(cfg->restore_nbd_socket);
    sdd_config_free(cfg);
    expect_refused("mount_idle_timeout: 0\n", 1, "mount_idle_timeout");
    expect_refused("\nrestore_runtime_dir: run/rt\n", 2, "absolute");
    expect_refused("restore_nbd_socket: nbd.sock\n", 1, "absolute");
}

Test(sddconf, retention_and_consolidation_per_repository)
{
    struct sdd_config *cfg = NULL;
    struct sd_error err = { 0 };
    const struct sdd_repository *r;

    cr_assert_eq(load_text(
        "repositories:\n"
        "  - {name: a, path: /a}\n"
        "  - {name: b, path: /b, consolidation: synthetic,\n"
        "     retention: {keep_last: 7, keep_days: 0}}\n", &cfg, &err), 0,
        "%s", err.msg);
    r = sdd_config_repo(cfg, "a");
    cr_expect_eq(r->retention.keep_last, CAT_KEEP_UNSET);
    cr_expect_eq(r->retention.keep_days, CAT_KEEP_UNSET);
    cr_expect_eq(r->consolidation, CAT_CONSOLIDATE_COMMIT);
    r = sdd_config_repo(cfg, "b");
    cr_expect_eq(r->retention.keep_last, 7);
    cr_expect_eq(r->retention.keep_days, 0);
    cr_expect_eq(r->consolidation, CAT_CONSOLIDATE_SYNTHETIC);
    sdd_config_free(cfg);
    cr_assert_eq(sdd_config_load(NULL, &cfg, &err), 0, "%s", err.msg);
    cr_expect_eq(cfg->repos[0].retention.keep_last, CAT_KEEP_UNSET);
    sdd_config_free(cfg);
    expect_refused("repositories:\n  - {name: a, path: /a,\n"
                   "     retention: {keep_last: 0}}\n", 3, "keep_last");
    expect_refused("repositories:\n  - {name: a, path: /a,\n"
                   "     retention: {keep_days: -1}}\n", 3, "keep_days");
    expect_refused("repositories:\n  - {name: a, path: /a,\n"
                   "     retention: {keep_weeks: 1}}\n", 3, "unknown key");
    expect_refused("repositories:\n  - {name: a, path: /a, retention: 5}\n",
                   2, "retention");
    expect_refused("repositories:\n  - {name: a, path: /a,\n"
                   "     consolidation: bogus}\n", 3, "commit, synthetic");
}
