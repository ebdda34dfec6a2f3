/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: any bytes, read as nbd-server's main INI file and
 * as an include file of export sections. Beyond "no crash, no leak, no
 * hang": failed loads and error entries name their file, and every
 * export that loads passes validation.
 */
#include "config.h"

#include "fuzz/fuzz-config-common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_entries(const char *path, const struct sd_export_list *l)
{
    struct sd_error e;
    size_t i;

    for (i = 0; i < l->n; i++) {
        const struct sd_export_entry *ent = &l->entries[i];

        if (ent->export ? sd_export_validate(ent->export, &e) < 0
                        : strncmp(ent->error.msg, path, strlen(path)) != 0) {
            fprintf(stderr, "bad entry %zu: \"%s\"\n", i, ent->error.msg);
            abort();
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_file("nbd.conf", data, size);
    struct sd_export_list list = { 0 };
    struct sd_server_config cfg;
    struct sd_error e = { 0 };
    int ret;

    ret = sd_config_load_nbd_ini(path, &cfg, &list, &e);
    fuzz_check_error(path, ret, &e);
    if (ret == 0) {
        check_entries(path, &list);
        sd_server_config_clear(&cfg);
    }
    sd_export_list_clear(&list);

    sd_error_clear(&e);
    ret = sd_config_load_nbd_ini_exports(path, &list, &e);
    fuzz_check_error(path, ret, &e);
    check_entries(path, &list);
    sd_export_list_clear(&list);
    return 0;
}
