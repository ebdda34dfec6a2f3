/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: any bytes, read as an export file and as a main
 * file in YAML. Beyond "no crash, no leak, no hang": a failed load names
 * its file, and an export that loads passes the same validation the
 * loader promises and compares equal to itself.
 */
#include "config.h"

#include "fuzz/fuzz-config-common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_export(const uint8_t *data, size_t size)
{
    const char *path = fuzz_file("fz.yaml", data, size);
    struct sd_export *exp = NULL;
    struct sd_error e = { 0 };
    int ret = sd_config_load_export_yaml(path, &exp, &e);

    fuzz_check_error(path, ret, &e);
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
