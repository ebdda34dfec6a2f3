/* SPDX-License-Identifier: MIT */
/*
 * Table-driven commands: positional arguments and options become the
 * method's params one to one, and the result is printed by the table's
 * human function (print-restore.c, print-retention.c), or as JSON with
 * --json. Used by the newer sendensed methods (cmd-restore.c,
 * cmd-retention.c).
 *
 * A sendensed older than the method answers -32601 (method not found);
 * that is reported as "not implemented yet by sendensed", exit status 1.
 * Nothing is emulated on this side.
 */
#include "config.h"

#include "ctl/ctl.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static int call_forward(const struct ctl_ctx *ctx,
                        const struct ctl_forward *f, json_t *params)
{
    struct ctl_rpc_error err;
    json_t *result = NULL;
    int status;

    if (ctl_rpc_call(ctx->socket, "sendensed", f->method, params, &result,
                     &err) < 0) {
        if (err.code == -32601)
            return ctl_fail(CTL_EXIT_ERROR, "%s: not implemented yet by "
                            "sendensed (it has no method %s)", ctx->command,
                            f->method);
        return ctl_report_rpc(f->method, &err);
    }
    if (ctx->json || !f->human)
        status = ctl_print_json(result);
    else
        status = f->human(result);
    json_decref(result);
    return status;
}

/* What on_option needs: the table and the params being built. */
struct forward_state {
    const struct ctl_forward *f;
    const char *command;
    json_t *params;
};

static int option_value(const struct forward_state *st,
                        const struct ctl_forward_opt *o, const char *v,
                        json_t **out)
{
    char *end;
    long long n;

    switch (o->type) {
    case CTL_FWD_BOOL:
        *out = json_true();
        return 0;
    case CTL_FWD_INT:
        errno = 0;
        n = strtoll(v, &end, 10);
        if (errno || end == v || *end || n < 0)
            return ctl_fail(CTL_EXIT_USAGE, "%s: --%s needs a number, not "
                            "'%s'", st->command, o->option, v);
        *out = json_integer(n);
        return 0;
    default:
        *out = json_string(v);
        return 0;
    }
}

static int on_option(void *arg, int c, const char *v)
{
    struct forward_state *st = arg;
    const struct ctl_forward_opt *o;
    json_t *value = NULL;
    int status;

    if (c < CTL_OPT_FIRST_FREE)
        return CTL_EXIT_USAGE;
    o = &st->f->options[c - CTL_OPT_FIRST_FREE];
    status = option_value(st, o, v, &value);
    if (status != 0)
        return status;
    if (!value || json_object_set_new(st->params, o->param, value) < 0)
        return ctl_fail(CTL_EXIT_ERROR, "out of memory");
    return 0;
}

/* getopt_long's table: the common options, then f's, numbered in order. */
static struct option *build_longopts(const struct ctl_forward *f)
{
    static const struct option common[] = { CTL_COMMON_OPTIONS };
    size_t ncommon = sizeof(common) / sizeof(common[0]), n = 0;
    struct option *opts;

    while (f->options && f->options[n].option)
        n++;
    opts = calloc(ncommon + n + 1, sizeof(*opts));
    if (!opts)
        return NULL;
    memcpy(opts, common, sizeof(common));
    for (size_t i = 0; i < n; i++)
        opts[ncommon + i] = (struct option){
            f->options[i].option,
            f->options[i].type == CTL_FWD_BOOL ? no_argument
                                               : required_argument,
            NULL, CTL_OPT_FIRST_FREE + (int)i,
        };
    return opts;
}

int ctl_run_forward(struct ctl_ctx *ctx, int argc, char **argv,
                    const struct ctl_forward *f)
{
    struct forward_state st = { f, ctx->command, json_object() };
    struct option *longopts = build_longopts(f);
    const struct ctl_params_spec spec = {
        longopts, on_option, &st, f->args, f->min_args,
    };
    int status;

    if (!st.params || !longopts) {
        status = ctl_fail(CTL_EXIT_ERROR, "out of memory");
        goto out_free;
    }
    status = ctl_parse_params(ctx, argc, argv, &spec, st.params);
    if (status == 0) {
        status = call_forward(ctx, f, st.params);
        st.params = NULL;           /* the call took it */
    }
out_free:
    json_decref(st.params);
    free(longopts);
    return status;
}
