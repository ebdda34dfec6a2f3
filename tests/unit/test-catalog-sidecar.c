/* SPDX-License-Identifier: MIT */
/*
 * Sidecars and vm.json: what we write reads back the same, and what we
 * read is checked field by field. Damaged and hostile files (truncated,
 * wrong types, unknown values, names that climb out with "../") are
 * refused with a message naming the file and the field.
 */
#include "config.h"

#include "catalog/sidecar.h"
#include "catalog/vm-info.h"

#include "leak-check.h"
#include "catalog-fixture.h"

#include <errno.h>
#include <jansson.h>

#define T0 ((cat_time_t)1759665600)     /* 2025-10-05T12:00:00Z */
#define FILE_NAME "ctx/disk0/incr.json"

static struct cat_sidecar *new_sidecar(enum cat_backup_type type,
                                       cat_time_t stamp, const char *parent)
{
    struct cat_sidecar *sc = NULL;
    struct sd_error e = { 0 };

    cr_assert_eq(cat_sidecar_new(type, stamp, parent, &sc, &e), 0, "%s",
                 e.msg);
    return sc;
}

/* A completed incremental with every optional field set. */
static struct cat_sidecar *full_featured(void)
{
    struct cat_sidecar *sc = new_sidecar(CAT_TYPE_INCR, T0 + 3600,
                                         "full-20251005T120000Z");

    sc->status = CAT_STATUS_COMPLETED;
    sc->ended_at = T0 + 3900;
    sc->virtual_size = 10737418240ULL;
    sc->bytes_written = 123456;
    sc->allocated_bytes = 262144;
    cr_assert_eq(cat_sidecar_set_string(&sc->change_id,
                                        "52 de c0 4a/4711"), 0);
    cr_assert_eq(cat_sidecar_set_string(&sc->checksum_algorithm, "sha256"),
                 0);
    cr_assert_eq(cat_sidecar_set_string(&sc->checksum_value, "00ff1a"), 0);
    cr_assert_eq(cat_sidecar_set_string(&sc->job_id, "job-42"), 0);
    return sc;
}

static void expect_same(const struct cat_sidecar *a,
                        const struct cat_sidecar *b)
{
    cr_expect_str_eq(a->id, b->id);
    cr_expect_eq(a->type, b->type);
    cr_expect_str_eq(a->parent, b->parent);
    cr_expect_eq(!a->change_id, !b->change_id);
    if (a->change_id && b->change_id)
        cr_expect_str_eq(a->change_id, b->change_id);
    cr_expect_eq(a->status, b->status);
    cr_expect_eq(!a->failure_reason, !b->failure_reason);
    cr_expect_eq(a->virtual_size, b->virtual_size);
    cr_expect_eq(a->bytes_written, b->bytes_written);
    cr_expect_eq(a->allocated_bytes, b->allocated_bytes);
    cr_expect_eq(a->started_at, b->started_at);
    cr_expect_eq(a->ended_at, b->ended_at);
    cr_expect_eq(!a->checksum_value, !b->checksum_value);
    if (a->checksum_value && b->checksum_value) {
        cr_expect_str_eq(a->checksum_value, b->checksum_value);
        cr_expect_str_eq(a->checksum_algorithm, b->checksum_algorithm);
    }
    cr_expect_str_eq(a->image, b->image);
    cr_expect_str_eq(a->backing_file, b->backing_file);
    cr_expect_eq(!a->job_id, !b->job_id);
}

Test(sidecar, new_full_and_incr_derive_their_names)
{
    struct cat_sidecar *f = new_sidecar(CAT_TYPE_FULL, T0, NULL);
    struct cat_sidecar *i = new_sidecar(CAT_TYPE_INCR, T0 + 1, f->id);

    cr_expect_str_eq(f->id, "full-20251005T120000Z");
    cr_expect_str_eq(f->image, "full-20251005T120000Z.qcow2");
    cr_expect_str_eq(f->backing_file, "");
    cr_expect_eq(f->status, CAT_STATUS_RUNNING);
    cr_expect_eq(f->ended_at, -1);
    cr_expect_str_eq(i->id, "incr-20251005T120001Z");
    cr_expect_str_eq(i->parent, "full-20251005T120000Z");
    cr_expect_str_eq(i->backing_file, "full-20251005T120000Z.qcow2");
    cat_sidecar_free(f);
    cat_sidecar_free(i);
}

Test(sidecar, new_refuses_impossible_links)
{
    struct cat_sidecar *sc = NULL;
    struct sd_error e;

    /* An incremental needs a parent, older than itself; a full has none. */
    cr_expect_lt(cat_sidecar_new(CAT_TYPE_INCR, T0, NULL, &sc, &e), 0);
    cr_expect_lt(cat_sidecar_new(CAT_TYPE_INCR, T0, "full-20251005T120000Z",
                                 &sc, &e), 0);
    cr_expect_lt(cat_sidecar_new(CAT_TYPE_FULL, T0, "full-20251005T110000Z",
                                 &sc, &e), 0);
    cr_expect_lt(cat_sidecar_new(CAT_TYPE_INCR, T0, "../full-20251005T110000Z",
                                 &sc, &e), 0);
    cr_expect_null(sc);
}

Test(sidecar, write_then_read_round_trips)
{
    char *dir = fx_mkdtemp();
    struct cat_sidecar *sc = full_featured(), *back = NULL;
    struct sd_error e = { 0 };

    cr_assert_eq(cat_sidecar_write(sc, dir, &e), 0, "%s", e.msg);
    cr_expect_eq(fx_count(dir), 1, "only the sidecar, no temporary file");
    char *path = fx_path(dir, "incr-20251005T130000Z.json");
    cr_assert_eq(cat_sidecar_read(path, &back, &e), 0, "%s", e.msg);
    expect_same(sc, back);
    cat_sidecar_free(back);

    /* A status change rewrites the same file. */
    sc->status = CAT_STATUS_FAILED;
    cr_assert_eq(cat_sidecar_set_string(&sc->failure_reason, "no activity "
                                        "for 300 s"), 0);
    cr_assert_eq(cat_sidecar_write(sc, dir, &e), 0, "%s", e.msg);
    cr_assert_eq(cat_sidecar_read(path, &back, &e), 0, "%s", e.msg);
    cr_expect_eq(back->status, CAT_STATUS_FAILED);
    cr_expect_str_eq(back->failure_reason, "no activity for 300 s");
    cat_sidecar_free(back);
    cat_sidecar_free(sc);
    free(path);
    fx_rm_rf(dir);
    expect_no_leaks();
}

Test(sidecar, written_json_has_the_documented_shape)
{
    char *dir = fx_mkdtemp();
    struct cat_sidecar *sc = new_sidecar(CAT_TYPE_FULL, T0, NULL);
    struct sd_error e = { 0 };
    json_error_t jerr;

    cr_assert_eq(cat_sidecar_write(sc, dir, &e), 0, "%s", e.msg);
    char *path = fx_path(dir, "full-20251005T120000Z.json");
    json_t *o = json_load_file(path, 0, &jerr);
    cr_assert_not_null(o, "%s", jerr.text);
    cr_expect_eq(json_integer_value(json_object_get(o, "format")), 1);
    cr_expect_str_eq(json_string_value(json_object_get(o, "status")),
                     "running");
    cr_expect_str_eq(json_string_value(json_object_get(o, "started_at")),
                     "2025-10-05T12:00:00Z");
    cr_expect(json_is_null(json_object_get(o, "parent")));
    cr_expect(json_is_null(json_object_get(o, "backing_file")));
    cr_expect(json_is_null(json_object_get(o, "ended_at")));
    cr_expect(json_is_null(json_object_get(o, "checksum")));
    cr_expect_eq(json_object_size(o), 16);
    json_decref(o);
    cat_sidecar_free(sc);
    free(path);
    fx_rm_rf(dir);
}

Test(sidecar, write_refuses_a_sidecar_that_breaks_the_rules)
{
    char *dir = fx_mkdtemp();
    struct cat_sidecar *sc = new_sidecar(CAT_TYPE_FULL, T0, NULL);
    struct sd_error e = { 0 };

    sc->status = CAT_STATUS_COMPLETED;        /* but no ended_at */
    cr_expect_eq(cat_sidecar_write(sc, dir, &e), -EINVAL);
    cr_expect(strstr(e.msg, "ended_at") != NULL, "%s", e.msg);
    cr_expect_eq(fx_count(dir), 0);
    cat_sidecar_free(sc);
    fx_rm_rf(dir);
}

/* --- strict reading ----------------------------------------------------- */

/* The JSON of full_featured(), as an object to damage. */
static json_t *good_json(void)
{
    char *dir = fx_mkdtemp();
    struct cat_sidecar *sc = full_featured();
    struct sd_error e = { 0 };
    json_error_t jerr;

    cr_assert_eq(cat_sidecar_write(sc, dir, &e), 0, "%s", e.msg);
    char *path = fx_path(dir, "incr-20251005T130000Z.json");
    json_t *o = json_load_file(path, 0, &jerr);
    cr_assert_not_null(o);
    cat_sidecar_free(sc);
    free(path);
    fx_rm_rf(dir);
    return o;
}

/* Parse o (taken over); expect failure whose message names FILE_NAME
 * and each of the given words. */
static void expect_refused(json_t *o, const char *word1, const char *word2)
{
    char *text = json_dumps(o, 0);
    struct cat_sidecar *sc = NULL;
    struct sd_error e = { 0 };

    json_decref(o);
    cr_assert_not_null(text);
    int ret = cat_sidecar_parse(text, strlen(text), FILE_NAME, &sc, &e);
    cr_expect_eq(ret, -EINVAL, "accepted: %s", text);
    cr_expect_null(sc);
    cr_expect(strstr(e.msg, FILE_NAME) != NULL, "%s", e.msg);
    if (word1)
        cr_expect(strstr(e.msg, word1) != NULL, "want \"%s\": %s", word1,
                  e.msg);
    if (word2)
        cr_expect(strstr(e.msg, word2) != NULL, "want \"%s\": %s", word2,
                  e.msg);
    free(text);
    cat_sidecar_free(sc);
}

static json_t *with(const char *key, json_t *value)
{
    json_t *o = good_json();

    cr_assert_eq(json_object_set_new(o, key, value), 0);
    return o;
}

Test(sidecar_read, the_undamaged_document_parses)
{
    json_t *o = good_json();
    char *text = json_dumps(o, 0);
    struct cat_sidecar *sc = NULL;
    struct sd_error e = { 0 };

    cr_expect_eq(cat_sidecar_parse(text, strlen(text), FILE_NAME, &sc, &e),
                 0, "%s", e.msg);
    cat_sidecar_free(sc);
    free(text);
    json_decref(o);
}

Test(sidecar_read, unknown_status_names_file_and_field)
{
    expect_refused(with("status", json_string("done")), "\"status\"",
                   "unknown value \"done\"");
    expect_refused(with("type", json_string("differential")), "\"type\"",
                   "differential");
}

Test(sidecar_read, every_field_is_required)
{
    json_t *o = good_json();
    const char *key;
    json_t *v;

    json_object_foreach(o, key, v) {
        json_t *damaged = json_deep_copy(o);
        cr_assert_eq(json_object_del(damaged, key), 0);
        expect_refused(damaged, key, "missing");
    }
    json_decref(o);
}

Test(sidecar_read, wrong_types)
{
    expect_refused(with("virtual_size", json_string("10G")),
                   "virtual_size", "integer");
    expect_refused(with("bytes_written", json_integer(-1)),
                   "bytes_written", "non-negative");
    expect_refused(with("allocated_bytes", json_real(1.5)),
                   "allocated_bytes", NULL);
    expect_refused(with("id", json_integer(7)), "\"id\"", "string");
    expect_refused(with("status", json_null()), "status", "null");
    expect_refused(with("checksum", json_string("sha256:00")), "checksum",
                   NULL);
    expect_refused(with("started_at", json_string("yesterday")),
                   "started_at", "UTC time");
    expect_refused(with("format", json_integer(2)), "format", NULL);
    expect_refused(with("format", json_string("1")), "format", NULL);
    expect_refused(with("colour", json_string("blue")), "colour",
                   "unknown field");
}

Test(sidecar_read, hostile_names)
{
    expect_refused(with("id", json_string("../../etc/passwd")), "\"id\"",
                   NULL);
    expect_refused(with("image", json_string("../x.qcow2")), "image", NULL);
    expect_refused(with("image", json_string("/etc/shadow")), "image", NULL);
    expect_refused(with("backing_file",
                        json_string("../../ctx-other/disk0/"
                                    "full-20251005T120000Z.qcow2")),
                   "backing_file", NULL);
    expect_refused(with("parent", json_string("../full-20251005T120000Z")),
                   "parent", NULL);
    expect_refused(with("job_id", json_string("../job")), "job_id", NULL);
    expect_refused(with("change_id", json_string("a\nb")), "change_id",
                   "control");
    /* jansson itself refuses "\u0000" unless asked not to */
    expect_refused(with("change_id", json_stringn("a\0b", 3)), "u0000",
                   NULL);
}

Test(sidecar_read, inconsistent_fields)
{
    /* a parent that is not older */
    json_t *o = with("parent", json_string("full-20251005T140000Z"));
    json_object_set_new(o, "backing_file",
                        json_string("full-20251005T140000Z.qcow2"));
    expect_refused(o, "parent", "not older");
    /* the backing file is not the parent's image */
    expect_refused(with("backing_file",
                        json_string("full-20251005T110000Z.qcow2")),
                   "backing_file", NULL);
    /* an incr id with a full type */
    o = with("type", json_string("full"));
    expect_refused(o, NULL, NULL);
    expect_refused(with("ended_at", json_null()), "ended_at", NULL);
    expect_refused(with("failure_reason", json_string("oops")),
                   "failure_reason", "unless failed");
    expect_refused(with("checksum", json_pack("{s:s}", "algorithm",
                                              "sha256")), "checksum", NULL);
    expect_refused(with("checksum", json_pack("{s:s, s:s}", "algorithm",
                                              "sha256", "value", "XYZ")),
                   "checksum", "hex");
}

Test(sidecar_read, duplicate_keys_are_refused)
{
    const char *text = "{\"format\": 1, \"format\": 1}";
    struct cat_sidecar *sc = NULL;
    struct sd_error e = { 0 };

    cr_expect_eq(cat_sidecar_parse(text, strlen(text), FILE_NAME, &sc, &e),
                 -EINVAL);
    cr_expect(strstr(e.msg, "duplicate") != NULL, "%s", e.msg);
}

/* Every prefix of a good sidecar is refused, without a crash or leak. */
Test(sidecar_read, every_truncation_is_refused)
{
    json_t *o = good_json();
    char *text = json_dumps(o, JSON_INDENT(2));
    size_t len = strlen(text);

    for (size_t n = 0; n < len; n++) {
        struct cat_sidecar *sc = NULL;
        struct sd_error e = { 0 };
        cr_assert_eq(cat_sidecar_parse(text, n, FILE_NAME, &sc, &e), -EINVAL,
                     "accepted %zu of %zu bytes", n, len);
        cr_assert_null(sc);
        cr_assert(strstr(e.msg, FILE_NAME) != NULL, "%s", e.msg);
    }
    free(text);
    json_decref(o);
    expect_no_leaks();
}

Test(sidecar_read, files_that_are_not_regular_or_too_big)
{
    char *dir = fx_mkdtemp();
    struct cat_sidecar *sc = NULL;
    struct sd_error e = { 0 };
    char *big = fx_path(dir, "big.json");
    char *link = fx_path(dir, "link.json");

    FILE *f = fopen(big, "w");
    cr_assert_not_null(f);
    for (int i = 0; i < CAT_SIDECAR_FILE_MAX + 1; i++)
        fputc(' ', f);
    fclose(f);
    cr_expect_eq(cat_sidecar_read(big, &sc, &e), -EINVAL);
    cr_expect_eq(symlink(big, link), 0);
    cr_expect_lt(cat_sidecar_read(link, &sc, &e), 0);
    cr_expect_eq(cat_sidecar_read(dir, &sc, &e), -EINVAL);
    cr_expect_null(sc);
    free(big);
    free(link);
    fx_rm_rf(dir);
}

/* --- vm.json ------------------------------------------------------------ */

static struct cat_vm_info *sample_vm(void)
{
    struct cat_vm_info *vm = NULL;
    struct sd_error e = { 0 };

    cr_assert_eq(cat_vm_info_new("ctx-pgtest2", "pgtest2", T0, &vm, &e), 0,
                 "%s", e.msg);
    cr_assert_eq(cat_vm_info_add_disk(vm, "disk0", 10737418240ULL, "root",
                                      &e), 0, "%s", e.msg);
    cr_assert_eq(cat_vm_info_add_disk(vm, "disk1", 2147483648ULL, NULL, &e),
                 0, "%s", e.msg);
    return vm;
}

Test(vm_info, write_then_read_round_trips)
{
    char *dir = fx_mkdtemp();
    struct cat_vm_info *vm = sample_vm(), *back = NULL;
    struct sd_error e = { 0 };

    cr_assert_eq(cat_vm_info_write(vm, dir, &e), 0, "%s", e.msg);
    cr_expect_eq(fx_count(dir), 1);
    char *path = fx_path(dir, "vm.json");
    cr_assert_eq(cat_vm_info_read(path, &back, &e), 0, "%s", e.msg);
    cr_expect_str_eq(back->context_id, "ctx-pgtest2");
    cr_expect_str_eq(back->display_name, "pgtest2");
    cr_expect_eq(back->created_at, T0);
    cr_assert_eq(back->ndisks, 2);
    cr_expect_str_eq(back->disks[0].name, "disk0");
    cr_expect_eq(back->disks[0].virtual_size, 10737418240ULL);
    cr_expect_str_eq(back->disks[0].label, "root");
    cr_expect_eq(back->disks[1].index, 1);
    cr_expect_null(back->disks[1].label);
    cat_vm_info_free(back);
    cat_vm_info_free(vm);
    free(path);
    fx_rm_rf(dir);
    expect_no_leaks();
}

Test(vm_info, bad_disks_are_refused)
{
    struct cat_vm_info *vm = sample_vm();
    struct sd_error e = { 0 };

    cr_expect_eq(cat_vm_info_add_disk(vm, "disk0", 1, NULL, &e), -EEXIST);
    cr_expect_eq(cat_vm_info_add_disk(vm, "../disk0", 1, NULL, &e), -EINVAL);
    cr_expect_eq(cat_vm_info_add_disk(vm, "disk01", 1, NULL, &e), -EINVAL);
    cr_expect_eq(cat_vm_info_add_disk(vm, "disk2", 1, "a\tb", &e), -EINVAL);
    cr_expect_eq(vm->ndisks, 2);
    cat_vm_info_free(vm);
}

static void expect_vm_refused(const char *text, const char *word)
{
    struct cat_vm_info *vm = NULL;
    struct sd_error e = { 0 };

    cr_expect_eq(cat_vm_info_parse(text, strlen(text), "ctx/vm.json", &vm,
                                   &e), -EINVAL, "accepted %s", text);
    cr_expect_null(vm);
    cr_expect(strstr(e.msg, "ctx/vm.json") != NULL, "%s", e.msg);
    cr_expect(strstr(e.msg, word) != NULL, "want \"%s\": %s", word, e.msg);
}

Test(vm_info, damaged_files_are_refused)
{
    expect_vm_refused("{\"format\":1,\"display_name\":null,"
                      "\"created_at\":\"2025-10-05T12:00:00Z\","
                      "\"disks\":[]}", "context_id");
    expect_vm_refused("{\"format\":1,\"context_id\":\"../x\","
                      "\"display_name\":null,"
                      "\"created_at\":\"2025-10-05T12:00:00Z\","
                      "\"disks\":[]}", "VM context id");
    expect_vm_refused("{\"format\":1,\"context_id\":\"c\","
                      "\"display_name\":null,"
                      "\"created_at\":\"2025-10-05T12:00:00Z\","
                      "\"disks\":[{\"name\":\"sda\",\"virtual_size\":1,"
                      "\"label\":null}]}", "disks[0]");
    expect_vm_refused("{\"format\":1,\"context_id\":\"c\","
                      "\"display_name\":null,"
                      "\"created_at\":\"2025-10-05T12:00:00Z\","
                      "\"disks\":{}}", "disks");
    expect_vm_refused("{\"format\":1,\"context_id\":\"c\","
                      "\"display_name\":null,"
                      "\"created_at\":\"2025-10-05T12:00:00Z\","
                      "\"disks\":[{\"name\":\"disk0\",\"virtual_size\":1,"
                      "\"label\":null},{\"name\":\"disk0\","
                      "\"virtual_size\":1,\"label\":null}]}", "twice");
    expect_vm_refused("[1,2]", "not a JSON object");
    expect_vm_refused("{\"format\":1,", "vm.json:1");
}

/* --- vm.json: the VM's own retention rules ------------------------------ */

#define VM_HEAD "{\"format\":1,\"context_id\":\"c\",\"display_name\":null," \
                "\"created_at\":\"2025-10-05T12:00:00Z\",\"disks\":[]"

static struct cat_vm_info *parse_vm(const char *text)
{
    struct cat_vm_info *vm = NULL;
    struct sd_error e = { 0 };

    cr_assert_eq(cat_vm_info_parse(text, strlen(text), "ctx/vm.json", &vm,
                                   &e), 0, "%s: %s", text, e.msg);
    return vm;
}

static void expect_rules(const struct cat_retention *r, int64_t last,
                         int64_t days)
{
    cr_expect_eq(r->keep_last, last, "keep_last %lld, want %lld",
                 (long long)r->keep_last, (long long)last);
    cr_expect_eq(r->keep_days, days, "keep_days %lld, want %lld",
                 (long long)r->keep_days, (long long)days);
}

Test(vm_info, retention_round_trips_and_clears)
{
    char *dir = fx_mkdtemp(), *path = fx_path(dir, "vm.json"), *text;
    struct cat_vm_info *vm = sample_vm(), *back = NULL;
    struct cat_retention r = { 4, CAT_KEEP_UNSET };
    struct sd_error e = { 0 };

    expect_rules(&vm->retention, CAT_KEEP_UNSET, CAT_KEEP_UNSET);
    cr_assert_eq(cat_vm_info_set_retention(vm, &r, &e), 0, "%s", e.msg);
    cr_assert_eq(cat_vm_info_write(vm, dir, &e), 0, "%s", e.msg);
    cr_expect_eq(fx_count(dir), 1);
    text = fx_read(path);
    cr_expect(strstr(text, "\"keep_last\": 4") != NULL, "%s", text);
    cr_expect(strstr(text, "\"keep_days\": null") != NULL, "%s", text);
    free(text);
    cr_assert_eq(cat_vm_info_read(path, &back, &e), 0, "%s", e.msg);
    expect_rules(&back->retention, 4, CAT_KEEP_UNSET);
    cr_expect_eq(back->ndisks, 2);
    cat_vm_info_free(back);

    /* Without a rule the member goes: the file is as older versions
     * wrote it. */
    r = (struct cat_retention){ CAT_KEEP_UNSET, CAT_KEEP_UNSET };
    cr_assert_eq(cat_vm_info_set_retention(vm, &r, &e), 0, "%s", e.msg);
    cr_assert_eq(cat_vm_info_write(vm, dir, &e), 0, "%s", e.msg);
    text = fx_read(path);
    cr_expect(strstr(text, "retention") == NULL, "%s", text);
    free(text);
    cr_assert_eq(cat_vm_info_read(path, &back, &e), 0, "%s", e.msg);
    expect_rules(&back->retention, CAT_KEEP_UNSET, CAT_KEEP_UNSET);
    cat_vm_info_free(back);
    cat_vm_info_free(vm);
    free(path);
    fx_rm_rf(dir);
    expect_no_leaks();
}

Test(vm_info, retention_member_and_rules_are_optional)
{
    struct {
        const char *text;
        int64_t last, days;
    } cases[] = {
        { VM_HEAD "}", CAT_KEEP_UNSET, CAT_KEEP_UNSET },
        { VM_HEAD ",\"retention\":{}}", CAT_KEEP_UNSET, CAT_KEEP_UNSET },
        { VM_HEAD ",\"retention\":{\"keep_days\":0}}", CAT_KEEP_UNSET, 0 },
        { VM_HEAD ",\"retention\":{\"keep_last\":1,\"keep_days\":null}}",
          1, CAT_KEEP_UNSET },
        { VM_HEAD ",\"retention\":{\"keep_last\":1000000,"
          "\"keep_days\":1000000}}", 1000000, 1000000 },
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct cat_vm_info *vm = parse_vm(cases[i].text);
        json_t *obj = cat_vm_info_to_json(vm);
        bool any = cases[i].last != CAT_KEEP_UNSET ||
                   cases[i].days != CAT_KEEP_UNSET;

        expect_rules(&vm->retention, cases[i].last, cases[i].days);
        cr_assert_not_null(obj);
        cr_expect_eq(json_object_get(obj, "retention") != NULL, any, "%s",
                     cases[i].text);
        json_decref(obj);
        cat_vm_info_free(vm);
    }
}

Test(vm_info, bad_retention_is_refused)
{
    expect_vm_refused(VM_HEAD ",\"retention\":null}", "retention");
    expect_vm_refused(VM_HEAD ",\"retention\":[2]}", "not an object");
    expect_vm_refused(VM_HEAD ",\"retention\":{\"keep_weeks\":2}}",
                      "keep_weeks");
    expect_vm_refused(VM_HEAD ",\"retention\":{\"keep_last\":0}}",
                      "keep_last");
    expect_vm_refused(VM_HEAD ",\"retention\":{\"keep_last\":1000001}}",
                      "keep_last");
    expect_vm_refused(VM_HEAD ",\"retention\":{\"keep_last\":\"3\"}}",
                      "keep_last");
    expect_vm_refused(VM_HEAD ",\"retention\":{\"keep_last\":2.5}}",
                      "keep_last");
    expect_vm_refused(VM_HEAD ",\"retention\":{\"keep_days\":-1}}",
                      "retention: field \"keep_days\"");
    /* Strict as before everywhere else. */
    expect_vm_refused(VM_HEAD ",\"retain\":{\"keep_last\":2}}", "retain");
}

Test(vm_info, out_of_range_rules_are_not_set)
{
    struct cat_vm_info *vm = sample_vm();
    struct sd_error e = { 0 };

    cr_assert_eq(cat_vm_info_set_retention(vm, &(struct cat_retention){
                     3, 7 }, &e), 0, "%s", e.msg);
    cr_expect_eq(cat_vm_info_set_retention(vm, &(struct cat_retention){
                     0, 7 }, &e), -EINVAL);
    cr_expect(strstr(e.msg, "keep_last") != NULL, "%s", e.msg);
    cr_expect_eq(cat_vm_info_set_retention(vm, &(struct cat_retention){
                     3, CAT_KEEP_MAX + 1 }, &e), -EINVAL);
    cr_expect_eq(cat_vm_info_set_retention(vm, &(struct cat_retention){
                     3, -2 }, &e), -EINVAL);
    expect_rules(&vm->retention, 3, 7);
    cat_vm_info_free(vm);
}

Test(vm_info, rules_layer_one_by_one)
{
    struct cat_retention repo = { 2, 30 }, none = { CAT_KEEP_UNSET,
                                                    CAT_KEEP_UNSET };
    struct cat_retention r;

    r = cat_retention_over(&(struct cat_retention){ 4, CAT_KEEP_UNSET },
                           &repo);
    expect_rules(&r, 4, 30);
    r = cat_retention_over(&(struct cat_retention){ CAT_KEEP_UNSET, 0 },
                           &repo);
    expect_rules(&r, 2, 0);
    r = cat_retention_over(&none, &repo);
    expect_rules(&r, 2, 30);
    r = cat_retention_over(&none, &none);
    expect_rules(&r, CAT_KEEP_UNSET, CAT_KEEP_UNSET);
}
