/* SPDX-License-Identifier: MIT */
/* What sendense-ctl prints: error lines, JSON, tables, sizes and times. */
#include "config.h"

#include "ctl/ctl.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int ctl_fail(int status, const char *fmt, ...)
{
    char line[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    /* One report, one line: daemon messages may quote anything. */
    for (char *p = line; *p; p++)
        if (*p == '\n' || *p == '\r')
            *p = ' ';
    fprintf(stderr, "%s: %s\n", CTL_PROG, line);
    return status;
}

int ctl_report_rpc(const char *what, const struct ctl_rpc_error *err)
{
    if (err->code == -32601)
        return ctl_fail(err->exit, "%s: not implemented yet by the daemon "
                        "(%s)", what, err->message);
    return ctl_fail(err->exit, "%s: %s", what, err->message);
}

int ctl_print_json(const json_t *value)
{
    if (json_dumpf(value, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER |
                   JSON_ENCODE_ANY) < 0 || fputc('\n', stdout) == EOF)
        return ctl_fail(CTL_EXIT_ERROR, "could not write to stdout");
    return CTL_EXIT_OK;
}

void ctl_human_size(uint64_t bytes, char *buf, size_t len)
{
    static const char *const unit[] = {
        "B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB",
    };
    unsigned i = 0;

    if (bytes < 1024) {
        snprintf(buf, len, "%llu B", (unsigned long long)bytes);
        return;
    }
    /* Next unit at 1000 of this one, so no number shows four digits. */
    while (i < 6 && (double)bytes >= 1000.0 * (double)(1ull << (10 * i)))
        i++;
    snprintf(buf, len, "%.3g %s", (double)bytes / (double)(1ull << (10 * i)),
             unit[i]);
}

void ctl_exact_size(uint64_t bytes, char *buf, size_t len)
{
    char size[32];

    ctl_human_size(bytes, size, sizeof(size));
    snprintf(buf, len, "%s (%llu bytes)", size, (unsigned long long)bytes);
}

static void format_tm(const struct tm *tm, char *buf, size_t len)
{
    if (strftime(buf, len, "%Y-%m-%d %H:%M:%S UTC", tm) == 0)
        snprintf(buf, len, "?");
}

void ctl_human_time(const char *rfc3339, char *buf, size_t len)
{
    struct tm tm = { 0 };
    const char *end;

    if (!rfc3339) {
        snprintf(buf, len, "-");
        return;
    }
    end = strptime(rfc3339, "%Y-%m-%dT%H:%M:%S", &tm);
    /* The daemons write UTC ("Z"); anything else is shown as it came. */
    if (!end || strcmp(end, "Z") != 0)
        snprintf(buf, len, "%s", rfc3339);
    else
        format_tm(&tm, buf, len);
}

void ctl_human_time_ms(int64_t ms, char *buf, size_t len)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;

    if (ms <= 0 || !gmtime_r(&t, &tm))
        snprintf(buf, len, "-");
    else
        format_tm(&tm, buf, len);
}

const char *ctl_str(const json_t *obj, const char *key, const char *dflt)
{
    const char *s = json_string_value(json_object_get(obj, key));

    return s ? s : dflt;
}

uint64_t ctl_u64(const json_t *obj, const char *key)
{
    json_int_t v = json_integer_value(json_object_get(obj, key));

    return v > 0 ? (uint64_t)v : 0;
}

void ctl_print_field(const char *key, const char *value)
{
    printf("%-16s %s\n", key, value ? value : "-");
}

/* --- tables -------------------------------------------------------------- */

struct ctl_table {
    size_t ncols, nrows, cap;
    char **cells;               /* nrows * ncols, row 0 = the headers */
};

struct ctl_table *ctl_table_new(size_t ncols, const char *const *headers)
{
    struct ctl_table *t = calloc(1, sizeof(*t));

    if (!t)
        return NULL;
    t->ncols = ncols;
    if (ctl_table_add(t, headers) < 0) {
        ctl_table_free(t);
        return NULL;
    }
    return t;
}

int ctl_table_add(struct ctl_table *t, const char *const *cells)
{
    if (t->nrows == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 16;
        char **bigger = realloc(t->cells, cap * t->ncols * sizeof(char *));

        if (!bigger)
            return -ENOMEM;
        t->cells = bigger;
        t->cap = cap;
    }
    for (size_t c = 0; c < t->ncols; c++) {
        char *copy = strdup(cells[c] ? cells[c] : "-");

        if (!copy) {
            for (size_t k = 0; k < c; k++)
                free(t->cells[t->nrows * t->ncols + k]);
            return -ENOMEM;
        }
        t->cells[t->nrows * t->ncols + c] = copy;
    }
    t->nrows++;
    return 0;
}

int ctl_table_print(const struct ctl_table *t, FILE *out)
{
    size_t width[32] = { 0 };
    size_t ncols = t->ncols < 32 ? t->ncols : 32;

    for (size_t r = 0; r < t->nrows; r++)
        for (size_t c = 0; c < ncols; c++) {
            size_t w = strlen(t->cells[r * t->ncols + c]);
            if (w > width[c])
                width[c] = w;
        }
    for (size_t r = 0; r < t->nrows; r++) {
        for (size_t c = 0; c < ncols; c++) {
            const char *cell = t->cells[r * t->ncols + c];
            /* No padding after the last column: no trailing blanks. */
            if (c + 1 == ncols)
                fprintf(out, "%s\n", cell);
            else
                fprintf(out, "%-*s  ", (int)width[c], cell);
        }
    }
    return ferror(out) ? ctl_fail(CTL_EXIT_ERROR, "could not write the "
                                  "table") : CTL_EXIT_OK;
}

void ctl_table_free(struct ctl_table *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->nrows * t->ncols; i++)
        free(t->cells[i]);
    free(t->cells);
    free(t);
}

int ctl_print_table(size_t ncols, const char *const *headers,
                    const json_t *items, ctl_row_fn *add_row)
{
    struct ctl_table *t = ctl_table_new(ncols, headers);
    const json_t *item;
    size_t i;
    int status = CTL_EXIT_OK;

    if (!t)
        return ctl_fail(CTL_EXIT_ERROR, "out of memory");
    json_array_foreach(items, i, item)
        if (add_row(t, item) < 0) {
            status = ctl_fail(CTL_EXIT_ERROR, "out of memory");
            break;
        }
    if (status == CTL_EXIT_OK)
        status = ctl_table_print(t, stdout);
    ctl_table_free(t);
    return status;
}

/* --- the usual command body ---------------------------------------------- */

int ctl_call_and_print(const struct ctl_ctx *ctx, bool nbd,
                       const char *method, json_t *params,
                       ctl_human_fn *human)
{
    struct ctl_rpc_error err;
    json_t *result = NULL;
    int status;

    if (ctl_rpc_call(nbd ? ctx->nbd_socket : ctx->socket,
                     nbd ? "sendense-nbd" : "sendensed", method, params,
                     &result, &err) < 0)
        return ctl_report_rpc(method, &err);
    if (ctx->json || !human)
        status = ctl_print_json(result);
    else
        status = human(result);
    json_decref(result);
    return status;
}
