/* SPDX-License-Identifier: MIT */
/*
 * sendensed [-c FILE] [--foreground]
 */
#include "config.h"

#include "catalog/daemon.h"
#include "common/log.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

static void usage(FILE *f)
{
    fprintf(f,
        "Usage: sendensed [-c FILE] [--foreground]\n"
        "\n"
        "The Sendense backup catalog daemon: runs backup jobs into QCOW2\n"
        "chains, exporting each new image through sendense-nbd, and answers\n"
        "JSON-RPC 2.0 on a unix socket (docs/SENDENSED.md).\n"
        "\n"
        "  -c, --config FILE   configuration (YAML); default %s\n"
        "                      if it exists, else built-in defaults\n"
        "                      (socket %s)\n"
        "  -f, --foreground    stay in the foreground (systemd, containers)\n"
        "  -v, --verbose       log debug messages too\n"
        "  -h, --help          this text\n"
        "  -V, --version       print the version\n",
        SDD_CONFIG_DEFAULT_FILE, SDD_DEFAULT_CONTROL_SOCKET);
}

static int run(const char *config, bool foreground)
{
    struct sdd_daemon d;
    struct sd_error err = { 0 };
    int ret = sdd_daemon_open(&d, config, &err);

    if (ret == 0 && !foreground && daemon(1, 1) < 0)
        ret = sd_error_set(&err, -errno, "daemon: %s", strerror(errno));
    if (ret == 0) {
        sd_log_info("sendensed %s: listening on %s", PACKAGE_VERSION,
                    d.cfg->control_socket);
        (void)sd_notify(0, "READY=1");
        ret = sdd_daemon_run(&d, &err);
        (void)sd_notify(0, "STOPPING=1");
    }
    sdd_daemon_close(&d);
    if (ret < 0) {
        fprintf(stderr, "sendensed: %s\n", err.msg);
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        { "config", required_argument, NULL, 'c' },
        { "foreground", no_argument, NULL, 'f' },
        { "verbose", no_argument, NULL, 'v' },
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, 'V' },
        { NULL, 0, NULL, 0 },
    };
    const char *config = NULL;
    bool foreground = false;
    int c;

    while ((c = getopt_long(argc, argv, "c:fvhV", opts, NULL)) != -1) {
        switch (c) {
        case 'c': config = optarg; break;
        case 'f': foreground = true; break;
        case 'v': sd_log_set_level(SD_LOG_DEBUG); break;
        case 'h': usage(stdout); return 0;
        case 'V': printf("sendensed %s\n", PACKAGE_VERSION); return 0;
        default:
            fprintf(stderr, "sendensed: try --help\n");
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "sendensed: unexpected argument '%s'; try --help\n",
                argv[optind]);
        return 2;
    }
    if (!config && access(SDD_CONFIG_DEFAULT_FILE, F_OK) == 0)
        config = SDD_CONFIG_DEFAULT_FILE;
    if (getenv("JOURNAL_STREAM"))
        sd_log_set_timestamps(0);
    /* Replies go out with MSG_NOSIGNAL; this covers every other write. */
    signal(SIGPIPE, SIG_IGN);
    return run(config, foreground);
}
