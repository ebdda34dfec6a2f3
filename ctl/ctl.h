/* SPDX-License-Identifier: MIT */
/*
 * sendense-ctl's private header, grouped by file: a map of the tool.
 *
 *   main.c          global options, group and command dispatch, --help
 *   rpc.c           one blocking JSON-RPC call over a unix socket
 *   output.c        error lines, JSON printing, tables, sizes, times
 *   cmd-server.c    server info|reload           (sendense-nbd)
 *   cmd-export.c    export list|get|add|...      (sendense-nbd)
 *   cmd-connection.c connection list|close       (sendense-nbd)
 *   cmd-backup.c    backup start|complete|...    (sendensed)
 *   cmd-watch.c     backup watch: live progress  (sendensed)
 *   cmd-retention.c backup delete|verify|prune|retention   (sendensed)
 *   cmd-restore.c   restore export|mount|ls|...  (sendensed)
 *   forward.c       commands whose args map one to one onto params
 *   print-retention.c  default output of backup delete|verify|prune|
 *                      retention
 *   print-restore.c    default output of restore ...
 *
 * Conventions every command keeps:
 *  - run() gets argv with argv[0] = the command's name and returns the
 *    process exit status (enum ctl_exit);
 *  - a failure is one line on stderr: "sendense-ctl: <what>: <why>";
 *  - --help never reaches run(): main.c prints the command's usage.
 */
#ifndef SENDENSE_CTL_H
#define SENDENSE_CTL_H

#include <getopt.h>
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define CTL_PROG "sendense-ctl"
#define CTL_DEFAULT_SOCKET "/run/sendense/sendensed.sock"
#define CTL_DEFAULT_NBD_SOCKET "/run/sendense/control.sock"

/* Exit statuses; scripts rely on them (docs/SENDENSE-CTL.md). */
enum ctl_exit {
    CTL_EXIT_OK = 0,
    CTL_EXIT_ERROR = 1,         /* the daemon answered with an error */
    CTL_EXIT_USAGE = 2,         /* bad command line */
    CTL_EXIT_UNREACHABLE = 3,   /* no daemon on the socket, or it hung up */
};

/* What every command may use: the sockets and the output style. */
struct ctl_ctx {
    const char *socket;         /* sendensed */
    const char *nbd_socket;     /* sendense-nbd's control socket */
    bool json;
    char command[32];           /* "backup start", for messages */
};

struct ctl_cmd {
    const char *name;
    const char *summary;        /* one line for the group's --help */
    const char *usage;          /* the whole `GROUP CMD --help` text */
    int (*run)(struct ctl_ctx *ctx, int argc, char **argv);
};

struct ctl_group {
    const char *name;
    const char *summary;        /* one line for `sendense-ctl --help` */
    const char *daemon;         /* which daemon the group talks to */
    const struct ctl_cmd *cmds; /* ends with a { NULL } entry */
};

/* Long options every command accepts after its name, as well as before
 * the group: --json, --socket PATH, --nbd-socket PATH. */
enum {
    CTL_OPT_JSON = 0x100,
    CTL_OPT_SOCKET,
    CTL_OPT_NBD_SOCKET,
    CTL_OPT_FIRST_FREE,         /* commands number their options from here */
};
#define CTL_COMMON_OPTIONS                                          \
    { "json", no_argument, NULL, CTL_OPT_JSON },                    \
    { "socket", required_argument, NULL, CTL_OPT_SOCKET },          \
    { "nbd-socket", required_argument, NULL, CTL_OPT_NBD_SOCKET }

/* The same text for --help of every command. */
#define CTL_COMMON_HELP                                                     \
    "\nCommon options:\n"                                                   \
    "  --json             print the daemon's JSON result as it is\n"        \
    "  --socket PATH      sendensed's socket (env SENDENSE_SOCKET)\n"       \
    "  --nbd-socket PATH  sendense-nbd's control socket\n"                  \
    "                     (env SENDENSE_NBD_SOCKET)\n"                      \
    "\nExit status: 0 ok, 1 the daemon answered with an error, 2 usage\n"   \
    "error, 3 the daemon cannot be reached.\n"

/* main.c */
/* Parse argv (argv[0] = the command's name) with getopt_long: the
 * common options are applied to ctx; each other option is handed to
 * on_opt(arg, c, optarg), which returns 0 or an exit status. Returns 0
 * with *first_arg = the index of the first positional argument, or an
 * exit status after reporting a usage error. */
typedef int ctl_opt_fn(void *arg, int c, const char *optarg);
int ctl_parse_options(struct ctl_ctx *ctx, int argc, char **argv,
                      const char *short_opts, const struct option *longopts,
                      ctl_opt_fn *on_opt, void *arg, int *first_arg);
/* Usage error unless the command got between min and max positional
 * arguments. */
int ctl_check_args(const struct ctl_ctx *ctx, int n, int min, int max);
/* How a command line becomes a method's params: options through on_opt
 * (may be NULL) with arg, then between min_args and as many positional
 * arguments as names has (NULL-ended), each set as params[names[i]]. */
struct ctl_params_spec {
    const struct option *longopts;
    ctl_opt_fn *on_opt;
    void *arg;
    const char *const *names;
    int min_args;
};
/* Fills params (borrowed) as spec says. 0, or an exit status after
 * reporting. */
int ctl_parse_params(struct ctl_ctx *ctx, int argc, char **argv,
                     const struct ctl_params_spec *spec, json_t *params);
/* For a command with only the common options: ctl_parse_options, then
 * exactly nargs positional arguments from argv[*first_arg]. */
int ctl_parse_plain(struct ctl_ctx *ctx, int argc, char **argv, int nargs,
                    int *first_arg);
/* The whole run() of a command that takes no arguments and no options
 * of its own: method is called without params (ctl_call_and_print). */
typedef int ctl_human_fn(const json_t *result);
int ctl_run_plain(struct ctl_ctx *ctx, int argc, char **argv, bool nbd,
                  const char *method, ctl_human_fn *human);

/* rpc.c */
enum {
    CTL_RPC_TIMEOUT_S = 300,          /* backup.complete may drain a writer */
    CTL_RPC_REPLY_MAX = 64 << 20,     /* bytes of one reply line */
};
/* Why a call failed. */
struct ctl_rpc_error {
    int exit;                 /* CTL_EXIT_ERROR or CTL_EXIT_UNREACHABLE */
    long long code;           /* the JSON-RPC code when the daemon answered */
    char message[512];
};
/* Call method with params (stolen; NULL for none) on the socket of peer
 * ("sendensed", "sendense-nbd": for messages). 0 with *result a new
 * reference, or -1 with err filled. */
int ctl_rpc_call(const char *socket_path, const char *peer,
                 const char *method, json_t *params, json_t **result,
                 struct ctl_rpc_error *err);

/* output.c */
/* "sendense-ctl: <formatted>" as one line on stderr; returns status. */
int ctl_fail(int status, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Report err ("<what>: <message>") and return its exit status. */
int ctl_report_rpc(const char *what, const struct ctl_rpc_error *err);
/* Print value (borrowed) indented on stdout. */
int ctl_print_json(const json_t *value);
/* "1.5 GiB", "512 B". */
void ctl_human_size(uint64_t bytes, char *buf, size_t len);
/* "1.5 GiB (1610612736 bytes)": where the exact count matters. */
void ctl_exact_size(uint64_t bytes, char *buf, size_t len);
/* An RFC 3339 time (as the daemons write it) as "2025-10-05 13:00:00 UTC";
 * "-" for none. */
void ctl_human_time(const char *rfc3339, char *buf, size_t len);
/* A time in milliseconds since the epoch, the same way. */
void ctl_human_time_ms(int64_t ms, char *buf, size_t len);
/* Field access that tolerates missing keys. */
const char *ctl_str(const json_t *obj, const char *key, const char *dflt);
uint64_t ctl_u64(const json_t *obj, const char *key);

/* A table printed with aligned columns once all rows are in. */
struct ctl_table;
struct ctl_table *ctl_table_new(size_t ncols, const char *const *headers);
/* Adds a row of ncols strings (copied). -ENOMEM on failure. */
int ctl_table_add(struct ctl_table *t, const char *const *cells);
int ctl_table_print(const struct ctl_table *t, FILE *out);
void ctl_table_free(struct ctl_table *t);

/* key: value lines for one object, keys padded to the same width. */
void ctl_print_field(const char *key, const char *value);

/* A table with one row per element of the JSON array items: add_row
 * turns an element into ctl_table_add() of its cells (0 or -ENOMEM).
 * Returns an exit status, having reported any failure. */
typedef int ctl_row_fn(struct ctl_table *t, const json_t *item);
int ctl_print_table(size_t ncols, const char *const *headers,
                    const json_t *items, ctl_row_fn *add_row);

/* Call, then print the result as JSON (--json) or with human(); the
 * usual body of a command. human may be NULL (JSON always). */
int ctl_call_and_print(const struct ctl_ctx *ctx, bool nbd,
                       const char *method, json_t *params,
                       ctl_human_fn *human);

/* forward.c: a command described by a table. Positional arguments fill
 * args[i] in order; each option sets its param. The result is printed
 * by human, or as JSON with --json (or without human); -32601 from the
 * daemon is "not implemented yet by sendensed". */
enum ctl_forward_type { CTL_FWD_STRING, CTL_FWD_INT, CTL_FWD_BOOL };
struct ctl_forward_opt {
    const char *option;         /* without "--"; NULL ends the table */
    const char *param;
    enum ctl_forward_type type;
};
#define CTL_FORWARD_OPT_END { NULL, NULL, CTL_FWD_STRING }
struct ctl_forward {
    const char *method;
    const char *const *args;    /* param names, NULL-ended */
    int min_args;
    const struct ctl_forward_opt *options;  /* may be NULL */
    ctl_human_fn *human;        /* the default output; may be NULL */
};
int ctl_run_forward(struct ctl_ctx *ctx, int argc, char **argv,
                    const struct ctl_forward *f);

/* The command groups. */
extern const struct ctl_group ctl_group_server;
extern const struct ctl_group ctl_group_export;
extern const struct ctl_group ctl_group_connection;
extern const struct ctl_group ctl_group_backup;
extern const struct ctl_group ctl_group_restore;

/* Commands of the backup group defined in other files. */
#define CTL_DECLARE_CMD(fn)                                     \
    int fn(struct ctl_ctx *ctx, int argc, char **argv);         \
    extern const char fn##_usage[]
/* cmd-watch.c */
CTL_DECLARE_CMD(ctl_backup_watch);
/* cmd-retention.c */
CTL_DECLARE_CMD(ctl_backup_delete);
CTL_DECLARE_CMD(ctl_backup_verify);
CTL_DECLARE_CMD(ctl_backup_prune);
CTL_DECLARE_CMD(ctl_backup_retention);

/* The default output of the forwarded commands, one per method, from
 * the results docs/SENDENSED.md gives; each returns an exit status. */
/* print-retention.c */
int ctl_print_delete(const json_t *result);
int ctl_print_verify(const json_t *result);
int ctl_print_prune(const json_t *result);
int ctl_print_retention(const json_t *result);
/* print-restore.c */
int ctl_print_restore_export(const json_t *result);
int ctl_print_restore_unexport(const json_t *result);
int ctl_print_restore_list(const json_t *result);
int ctl_print_restore_mount(const json_t *result);
int ctl_print_restore_ls(const json_t *result);
int ctl_print_restore_stat(const json_t *result);
int ctl_print_restore_extract(const json_t *result);
int ctl_print_restore_umount(const json_t *result);

#endif
