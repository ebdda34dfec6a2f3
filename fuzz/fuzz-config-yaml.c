/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: any bytes, read as an export file and as a main
 * file in YAML. Beyond "no crash, no leak, no hang": a failed load names
 * its file, and an export that loads passes the same validation the
 * loader promises and compares equal to itself. The export file is also
 * loaded as the only file of an export directory, which reads it ahead
 * through io_uring and parses it from memory: the result must be the
 * same, error message included.
 */
#include "config.h"

#include "fuzz/fuzz-config-common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The directory loader's entry for the same file must match exp (or
 * the error e) exactly. */
static void check_dir_load(const char *path, const struct sd_export *exp,
                           const struct sd_error *e)
{
    struct sd_export_list list = { 0 };
    const struct sd_export_entry *ent;
    struct sd_error dir_err = { 0 };

    if (sd_config_load_export_dir(fuzz_dir("exports"), &list, &dir_err) < 0 ||
        list.n != 1)
        abort();
    ent = &list.entries[0];
    if (strcmp(ent->file, path) != 0)
        abort();
    if (exp ? !ent->export || sd_export_diff(exp, ent->export) != 0
            : ent->export || ent->error.code != e->code ||
              strcmp(ent->error.msg, e->msg) != 0) {
        fprintf(stderr, "the directory load differs: \"%s\" / \"%s\"\n",
                e->msg, ent->error.msg);
        abort();
    }
    sd_export_list_clear(&list);
}

static void fuzz_export(const uint8_t *data, size_t size)
{
    const char *path;
    struct sd_export *exp = NULL;
    struct sd_error e = { 0 };
    int ret;

    (void)fuzz_dir("exports");
    path = fuzz_file("exports/fz.yaml", data, size);
    ret = sd_config_load_export_yaml(path, &exp, &e);

    fuzz_check_error(path, ret, &e);
    check_dir_load(path, ret < 0 ? NULL : exp, &e);
    if (ret < 0)
        return;
    if (strcmp(exp->name, "fz") != 0 || sd_export_validate(exp, &e) < 0 ||
        sd_export_diff(exp, exp) != 0)
        abort();
    sd_export_free(exp);
}

static void fuzz_main(const uint8_t *data, size_t size)
{
    const char *path = fuzz_file("main.yaml", data, size);
    struct sd_server_config cfg;
    struct sd_error e = { 0 };
    int ret = sd_config_load_server_yaml(path, &cfg, &e);

    fuzz_check_error(path, ret, &e);
    if (ret < 0)
        return;
    if (sd_server_config_validate(&cfg, &e) < 0)
        abort();
    sd_server_config_clear(&cfg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_export(data, size);
    fuzz_main(data, size);
    return 0;
}
