/* SPDX-License-Identifier: MIT */
/*
 * sendense-nbd [-c FILE] [--foreground] [--check-config]
 */
#include "config.h"

#include "common/log.h"
#include "server/server-config.h"
#include "server/server.h"
#include "server/tls.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void usage(FILE *f)
{
    fprintf(f,
        "Usage: sendense-nbd [-c FILE] [--foreground] [--check-config]\n"
        "\n"
        "The Sendense NBD server: serves raw files, block devices and QCOW2\n"
        "images (with backing chains) over NBD, reloads its export directory\n"
        "on SIGHUP, and is driven through a JSON-RPC control socket.\n"
        "\n"
        "  -c, --config FILE   main configuration (YAML, or nbd-server INI);\n"
        "                      default %s if it exists,\n"
        "                      else built-in defaults (127.0.0.1:%u,\n"
        "                      %s, exports in %s)\n"
        "  -f, --foreground    stay in the foreground (systemd, containers)\n"
        "      --check-config  load and validate everything, then exit\n"
        "  -v, --verbose       log debug messages too\n"
        "  -h, --help          this text\n"
        "  -V, --version       print the version\n",
        SD_CONFIG_DEFAULT_FILE, SD_DEFAULT_PORT, SD_DEFAULT_UNIX_SOCKET,
        SD_DEFAULT_EXPORT_DIR);
}

/* --check-config: everything the server would load, TLS credentials
 * included; every problem listed, exit status 1 if any. */
static int check_config(const char *path)
{
    struct sd_config *cfg = NULL;
    struct sd_error err = { 0 };
    size_t bad;

    if (!path && access(SD_CONFIG_DEFAULT_FILE, F_OK) == 0)
        path = SD_CONFIG_DEFAULT_FILE;
    if (sd_config_load(path, &cfg, &err) < 0) {
        fprintf(stderr, "sendense-nbd: %s\n", err.msg);
        return 1;
    }
    if (cfg->server.tls.mode != SD_TLS_OFF) {
        struct sd_tls_server *tls = NULL;
        if (sd_tls_server_new(&cfg->server.tls, &tls, &err) < 0) {
            fprintf(stderr, "sendense-nbd: %s\n", err.msg);
            sd_config_free(cfg);
            return 1;
        }
        sd_tls_server_free(tls);
    }
    bad = sd_export_list_errors(&cfg->exports);
    for (size_t i = 0; i < cfg->exports.n; i++)
        if (!cfg->exports.entries[i].export)
            fprintf(stderr, "sendense-nbd: %s\n",
                    cfg->exports.entries[i].error.msg);
    printf("%s: %zu export(s), %zu error(s)\n", path ? path : "built-in defaults",
           cfg->exports.n - bad, bad);
    sd_config_free(cfg);
    return bad ? 1 : 0;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        { "config", required_argument, NULL, 'c' },
        { "foreground", no_argument, NULL, 'f' },
        { "check-config", no_argument, NULL, 'C' },
        { "verbose", no_argument, NULL, 'v' },
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, 'V' },
        { NULL, 0, NULL, 0 },
    };
    const char *config = NULL;
    bool foreground = false, check = false;
    struct sd_error err = { 0 };
    int c;

    while ((c = getopt_long(argc, argv, "c:fvhV", opts, NULL)) != -1) {
        switch (c) {
        case 'c': config = optarg; break;
        case 'f': foreground = true; break;
        case 'C': check = true; break;
        case 'v': sd_log_set_level(SD_LOG_DEBUG); break;
        case 'h': usage(stdout); return 0;
        case 'V': printf("sendense-nbd %s\n", PACKAGE_VERSION); return 0;
        default:
            fprintf(stderr, "sendense-nbd: try --help\n");
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "sendense-nbd: unexpected argument '%s'; try --help\n",
                argv[optind]);
        return 2;
    }
    if (check)
        return check_config(config);
    if (getenv("JOURNAL_STREAM"))
        sd_log_set_timestamps(0);
    if (server_run(config, foreground, &err) < 0) {
        fprintf(stderr, "sendense-nbd: %s\n", err.msg);
        return 1;
    }
    return 0;
}
