/* SPDX-License-Identifier: MIT */
/* sendense-capture: flags, then the one command, copy. */
#include "config.h"

#include "capture/capture.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char usage_text[] =
    "usage: sendense-capture copy [OPTIONS] SOURCE TARGET_URI\n"
    "       sendense-capture backup [OPTIONS] VM DISK=SOURCE [DISK=SOURCE...]\n"
    "  SOURCE: a raw file or block device, a qcow2 image, or an NBD URI\n"
    "          (nbd://, nbd+unix://, nbds...)\n"
    "copy: one disk into an NBD export\n"
    "  --changes FILE.json   copy only the change list's areas\n"
    "  --bitmap NAME         copy only the source's qemu:dirty-bitmap:NAME extents\n"
    "  --target-is-zero      the target reads as zeros: skip zero extents\n"
    "backup: every disk of a VM, through sendensed (backup.start, .complete, .fail)\n"
    "  --socket PATH         sendensed's socket (env SENDENSE_SOCKET, else\n"
    "                        " SDD_CAPTURE_DEFAULT_SOCKET ")\n"
    "  --type TYPE           auto (default), full or incremental\n"
    "  --repository NAME     the repository (default: sendensed's first)\n"
    "  --changes DISK=FILE   the change list of DISK, for an incremental\n"
    "  --change-id DISK=ID   the change id recorded with DISK's backup\n"
    "  --bitmap NAME         each NBD source's dirty bitmap, for an incremental\n"
    "both:\n"
    "  --connections N       target connections if it allows multi-conn (4)\n"
    "  --inflight N          requests in flight, all connections (32)\n"
    "  --request-size SIZE   largest request, up to 32M (256K)\n"
    "  --flush-every SIZE    FLUSH after this many bytes (4G), and at the end\n"
    "  --verify              then read back what was written or zeroed and compare\n"
    "  --retries N           reconnects after a lost connection (5)\n"
    "  --retry-delay SECS    wait before the first reconnect, doubling (1)\n"
    "  --json                progress and summary as JSON lines on stdout\n"
    "  --quiet               no progress\n";

#define MAX_DISKS 64

struct args {
    const char *command;
    const char *source, *target, *changes, *bitmap;
    struct cap_copy_opts copy;
    struct cap_resume resume;
    enum cap_progress_mode progress;
    bool verify;                /* --verify */
    /* backup */
    struct cap_backup_opts backup;
    struct cap_backup_disk disks[MAX_DISKS];
    const char *disk_changes[MAX_DISKS][2], *disk_ids[MAX_DISKS][2];
    size_t nchanges, nids;
};

static volatile sig_atomic_t interrupted;

bool cap_interrupted(void)
{
    return interrupted != 0;
}

static void on_signal(int sig)
{
    (void)sig;
    interrupted = 1;
}

static int error_line(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* A usage error: one line, exit status 2. */
static int error_line(const char *fmt, ...)
{
    va_list ap;

    fputs("sendense-capture: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return 2;
}

/* A size: digits with an optional K, M, G or T (powers of 1024). */
static int parse_size(const char *s, uint64_t *out)
{
    char *end;
    uint64_t v;
    int shift = 0;

    errno = 0;
    if (s[0] < '0' || s[0] > '9')
        return -EINVAL;
    v = strtoull(s, &end, 10);
    if (errno)
        return -EINVAL;
    switch (*end) {
    case 'K': case 'k': shift = 10; end++; break;
    case 'M': case 'm': shift = 20; end++; break;
    case 'G': case 'g': shift = 30; end++; break;
    case 'T': case 't': shift = 40; end++; break;
    default: break;
    }
    if (*end || v == 0 || v > (UINT64_MAX >> shift))
        return -EINVAL;
    *out = v << shift;
    return 0;
}

static int parse_count(const char *s, int max, int *out)
{
    uint64_t v;

    if (parse_size(s, &v) < 0 || v > (uint64_t)max || strspn(s, "0123456789") != strlen(s))
        return -EINVAL;
    *out = (int)v;
    return 0;
}

/* DISK=VALUE, for --changes and --change-id of backup. */
static int parse_pair(const char *opt, const char *arg, const char *pairs[][2], size_t *n)
{
    const char *eq = strchr(arg, '=');

    if (!eq || eq == arg || !eq[1])
        return error_line("%s: DISK=VALUE expected: %s", opt, arg);
    if (*n == MAX_DISKS)
        return error_line("%s: at most %d", opt, MAX_DISKS);
    pairs[*n][0] = arg;
    pairs[*n][1] = eq + 1;
    (*n)++;
    return 0;
}

static bool pair_is(const char *pair[2], const char *name)
{
    size_t len = (size_t)(pair[1] - 1 - pair[0]);

    return strlen(name) == len && strncmp(pair[0], name, len) == 0;
}

enum { O_CHANGES = 256, O_BITMAP, O_ZERO, O_CONNS, O_INFLIGHT, O_REQ, O_FLUSH,
       O_JSON, O_QUIET, O_HELP, O_VERIFY, O_RETRIES, O_RETRY_DELAY, O_SOCKET, O_TYPE,
       O_REPO, O_CHANGE_ID };

static const struct option options[] = {
    { "changes", required_argument, NULL, O_CHANGES },
    { "bitmap", required_argument, NULL, O_BITMAP },
    { "target-is-zero", no_argument, NULL, O_ZERO },
    { "connections", required_argument, NULL, O_CONNS },
    { "inflight", required_argument, NULL, O_INFLIGHT },
    { "request-size", required_argument, NULL, O_REQ },
    { "flush-every", required_argument, NULL, O_FLUSH },
    { "retries", required_argument, NULL, O_RETRIES },
    { "retry-delay", required_argument, NULL, O_RETRY_DELAY },
    { "json", no_argument, NULL, O_JSON },
    { "quiet", no_argument, NULL, O_QUIET },
    { "help", no_argument, NULL, O_HELP },
    { "verify", no_argument, NULL, O_VERIFY },
    { "socket", required_argument, NULL, O_SOCKET },
    { "type", required_argument, NULL, O_TYPE },
    { "repository", required_argument, NULL, O_REPO },
    { "change-id", required_argument, NULL, O_CHANGE_ID },
    { 0 },
};

/* One option; 0, or an exit status (1 for --help). */
static int parse_option(int c, const char *arg, struct args *a, bool backup)
{
    char *end;

    switch (c) {
    case O_CHANGES:
        if (backup)
            return parse_pair("--changes", arg, a->disk_changes, &a->nchanges);
        a->changes = arg;
        return 0;
    case O_CHANGE_ID:
        return backup ? parse_pair("--change-id", arg, a->disk_ids, &a->nids)
                      : error_line("--change-id is an option of backup");
    case O_SOCKET: case O_TYPE: case O_REPO:
        if (!backup)
            return error_line("--socket, --type and --repository are options of backup");
        if (c == O_SOCKET)
            a->backup.socket = arg;
        else if (c == O_REPO)
            a->backup.repository = arg;
        else if (strcmp(arg, "auto") && strcmp(arg, "full") && strcmp(arg, "incremental"))
            return error_line("--type: auto, full or incremental: %s", arg);
        else
            a->backup.type = arg;
        return 0;
    case O_ZERO:
        if (backup)
            return error_line("--target-is-zero: backup knows its targets");
        a->copy.target_is_zero = true;
        return 0;
    case O_BITMAP: a->bitmap = arg; return 0;
    case O_JSON: a->progress = CAP_PROGRESS_JSON; return 0;
    case O_QUIET: a->progress = CAP_PROGRESS_NONE; return 0;
    case O_HELP: fputs(usage_text, stdout); return 1;
    case O_VERIFY: a->verify = true; return 0;
    case O_CONNS:
        return parse_count(arg, 64, &a->copy.connections) < 0
                   ? error_line("--connections: not a number in 1..64: %s", arg) : 0;
    case O_INFLIGHT:
        return parse_count(arg, 1024, &a->copy.inflight) < 0
                   ? error_line("--inflight: not a number in 1..1024: %s", arg) : 0;
    case O_RETRIES:
        if (strcmp(arg, "0") == 0) {
            a->resume.retries = 0;
            return 0;
        }
        return parse_count(arg, 1000, &a->resume.retries) < 0
                   ? error_line("--retries: not a number in 0..1000: %s", arg) : 0;
    case O_RETRY_DELAY:
        errno = 0;
        a->resume.delay = strtod(arg, &end);
        if (errno || end == arg || *end || !(a->resume.delay > 0 && a->resume.delay <= 3600))
            return error_line("--retry-delay: seconds, more than 0, at most 3600: %s", arg);
        return 0;
    case O_REQ:
        if (parse_size(arg, &a->copy.request_size) < 0 || a->copy.request_size % 512 ||
            a->copy.request_size > (32 << 20))
            return error_line("--request-size: a multiple of 512 up to 32M: %s", arg);
        return 0;
    case O_FLUSH:
        return parse_size(arg, &a->copy.flush_every) < 0
                   ? error_line("--flush-every: not a size: %s", arg) : 0;
    default:
        return 2;
    }
}

/* backup's operands: VM DISK=SOURCE...; each --changes and --change-id
 * must name one of the disks. */
static int parse_backup_operands(int argc, char **argv, struct args *a)
{
    struct cap_backup_opts *b = &a->backup;

    if (argc - optind < 2)
        return error_line("backup needs VM and at least one DISK=SOURCE (try --help)");
    if (argc - optind - 1 > MAX_DISKS)
        return error_line("backup: at most %d disks", MAX_DISKS);
    b->vm = argv[optind];
    for (int i = optind + 1; i < argc; i++) {
        const char *pair[2] = { argv[i], strchr(argv[i], '=') };
        struct cap_backup_disk *d = &a->disks[b->ndisks];

        if (!pair[1] || pair[1] == argv[i] || !pair[1][1])
            return error_line("backup: DISK=SOURCE expected: %s", argv[i]);
        pair[1]++;
        *d = (struct cap_backup_disk){ .source = pair[1] };
        for (size_t j = 0; j < b->ndisks; j++)
            if (pair_is(pair, a->disks[j].name))
                return error_line("backup: disk given twice: %s", argv[i]);
        d->name = strndup(argv[i], (size_t)(pair[1] - 1 - argv[i]));
        if (!d->name)
            return error_line("out of memory");
        b->ndisks++;
        for (size_t j = 0; j < a->nchanges; j++)
            if (pair_is(a->disk_changes[j], d->name))
                d->changes = a->disk_changes[j][1];
        for (size_t j = 0; j < a->nids; j++)
            if (pair_is(a->disk_ids[j], d->name))
                d->change_id = a->disk_ids[j][1];
    }
    for (size_t j = 0; j < a->nchanges + a->nids; j++) {
        const char **pair = j < a->nchanges ? a->disk_changes[j] : a->disk_ids[j - a->nchanges];
        bool known = false;

        for (size_t k = 0; k < b->ndisks; k++)
            known = known || pair_is(pair, b->disks[k].name);
        if (!known)
            return error_line("%s: no such disk among the operands",
                              j < a->nchanges ? "--changes" : "--change-id");
    }
    return 0;
}

static int parse_args(int argc, char **argv, struct args *a)
{
    const char *env = getenv("SENDENSE_SOCKET");
    bool backup;
    int c, ret;

    *a = (struct args){ .copy = { .connections = 4, .inflight = 32,
                                  .request_size = 256 << 10,
                                  .flush_every = UINT64_C(4) << 30 },
                        .resume = { .retries = 5, .delay = 1.0 } };
    a->backup = (struct cap_backup_opts){
        .socket = env && env[0] ? env : SDD_CAPTURE_DEFAULT_SOCKET,
        .type = "auto", .disks = a->disks,
    };
    if (argc < 2 || strcmp(argv[1], "--help") == 0) {
        fputs(usage_text, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 1;
    }
    a->command = argv[1];
    backup = strcmp(a->command, "backup") == 0;
    if (!backup && strcmp(a->command, "copy") != 0)
        return error_line("unknown command \"%s\" (try --help)", argv[1]);
    optind = 2;
    while ((c = getopt_long(argc, argv, "", options, NULL)) != -1)
        if ((ret = parse_option(c, optarg, a, backup)) != 0)
            return ret;
    if (a->changes && a->bitmap)
        return error_line("--changes and --bitmap cannot be used together");
    if (a->nchanges && a->bitmap)
        return error_line("--changes and --bitmap cannot be used together");
    if (a->bitmap && (!a->bitmap[0] || strlen(a->bitmap) > 255))
        return error_line("--bitmap: a name of 1 to 255 bytes");
    if (backup) {
        a->backup.bitmap = a->bitmap;
        a->backup.copy = a->copy;
        a->backup.resume = a->resume;
        a->backup.verify = a->verify;
        a->backup.progress = a->progress;
        return parse_backup_operands(argc, argv, a);
    }
    if (argc - optind != 2)
        return error_line("copy needs SOURCE and TARGET_URI (try --help)");
    a->source = argv[optind];
    a->target = argv[optind + 1];
    a->copy.target = a->target;
    return 0;
}

static int run_copy(const struct args *a, struct sd_error *err)
{
    struct cap_source src;
    struct cap_changes ch = { 0 };
    struct cap_extents reqs = { 0 };
    struct cap_counters c = { 0 };
    struct cap_progress p;
    struct cap_plan_opts plan = { .bitmap = a->bitmap,
                                  .target_is_zero = a->copy.target_is_zero,
                                  .request_size = a->copy.request_size };
    int ret;

    cap_progress_init(&p, a->progress);
    ret = cap_source_open(&src, a->source, a->bitmap, err);
    if (ret < 0)
        return ret;
    if (a->changes) {
        ret = cap_changes_load(a->changes, &ch, err);
        plan.changes = &ch;
    }
    if (ret == 0)
        ret = cap_plan(&src, &plan, &reqs, &c, err);
    /* Without sendensed there is nothing to fence through: what is sent
     * again is the same bytes, from the same source, to the same place. */
    if (ret == 0)
        ret = cap_copy_resumable(&src, &reqs, &a->copy, &a->resume, &c, &p, err);
    if (ret == 0 && a->verify)
        ret = cap_verify(&src, &reqs, a->target, &c, &p, err);
    if (ret == 0) {
        cap_progress_update(&p, &c, true);
        cap_progress_summary(&p, &c);
    }
    cap_changes_free(&ch);
    cap_extents_free(&reqs);
    cap_source_close(&src);
    return ret;
}

int main(int argc, char **argv)
{
    struct args a;
    struct sd_error err = { 0 };
    struct sigaction sa = { .sa_handler = on_signal };
    int ret = parse_args(argc, argv, &a);

    if (ret == 1)
        return 0;               /* --help */
    if (ret)
        return ret;
    /* A closed connection is an error to report, not a signal to die of. */
    signal(SIGPIPE, SIG_IGN);
    /* A stopped backup is failed in sendensed, not left to time out. */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    ret = strcmp(a.command, "backup") == 0 ? cap_backup(&a.backup, &err)
                                           : run_copy(&a, &err);
    for (size_t i = 0; i < a.backup.ndisks; i++)
        free((char *)a.disks[i].name);
    if (ret < 0) {
        /* End a progress bar's line first. */
        if (a.progress == CAP_PROGRESS_AUTO && isatty(STDERR_FILENO))
            fputc('\n', stderr);
        fprintf(stderr, "sendense-capture: %s\n", err.msg[0] ? err.msg : "copy failed");
        return 1;
    }
    return 0;
}
