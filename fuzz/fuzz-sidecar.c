/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: any bytes, parsed as a sidecar and as a vm.json
 * (catalog/sidecar.c, catalog/vm-info.c).
 *
 * Beyond "no crash, no leak, no unbounded allocation": whatever parses
 * must pass the rules again (cat_sidecar_check), and must round-trip:
 * serialised and parsed back, it serialises to the same text. A parse
 * that fails must say why (non-empty message, negative errno).
 */
#include "config.h"

#include "catalog/sidecar.h"
#include "catalog/vm-info.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char *dump(json_t *obj)
{
    char *text = obj ? json_dumps(obj, JSON_COMPACT) : NULL;

    json_decref(obj);
    if (!text)
        abort();
    return text;
}

static void check_failure(int ret, const struct sd_error *e)
{
    if (ret >= 0 || e->code != ret || !e->msg[0])
        abort();
}

static void fuzz_sidecar(const char *text, size_t len)
{
    struct cat_sidecar *sc = NULL, *again = NULL;
    struct sd_error e = { 0 };
    int ret = cat_sidecar_parse(text, len, "fuzz.json", &sc, &e);

    if (ret < 0) {
        check_failure(ret, &e);
        return;
    }
    if (cat_sidecar_check(sc, "fuzz.json", &e) < 0)
        abort();
    char *first = dump(cat_sidecar_to_json(sc));
    if (cat_sidecar_parse(first, strlen(first), "again.json", &again, &e) < 0)
        abort();
    char *second = dump(cat_sidecar_to_json(again));
    if (strcmp(first, second) != 0)
        abort();
    free(first);
    free(second);
    cat_sidecar_free(sc);
    cat_sidecar_free(again);
}

static void fuzz_vm_info(const char *text, size_t len)
{
    struct cat_vm_info *vm = NULL, *again = NULL;
    struct sd_error e = { 0 };
    int ret = cat_vm_info_parse(text, len, "vm.json", &vm, &e);

    if (ret < 0) {
        check_failure(ret, &e);
        return;
    }
    char *first = dump(cat_vm_info_to_json(vm));
    if (cat_vm_info_parse(first, strlen(first), "again", &again, &e) < 0)
        abort();
    char *second = dump(cat_vm_info_to_json(again));
    if (strcmp(first, second) != 0)
        abort();
    free(first);
    free(second);
    cat_vm_info_free(vm);
    cat_vm_info_free(again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* Same cap as a sidecar file on disk. */
    if (size > CAT_SIDECAR_FILE_MAX)
        return 0;
    fuzz_sidecar((const char *)data, size);
    fuzz_vm_info((const char *)data, size);
    return 0;
}
