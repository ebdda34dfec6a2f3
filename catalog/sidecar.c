/* SPDX-License-Identifier: MIT */
/*
 * Sidecars: the in-memory form, its rules, and its JSON both ways. The
 * same cat_sidecar_check() guards reading and writing, so whatever we
 * write we can read back, and whatever we read obeys the rules the
 * chain code relies on (parents older than children, file names that
 * stay inside their folder).
 */
#include "config.h"

#include "catalog/sidecar.h"

#include "catalog/json-field.h"
#include "catalog/names.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const type_names[] = {
    [CAT_TYPE_FULL] = "full",
    [CAT_TYPE_INCR] = "incr",
    [CAT_TYPE_SYNTHETIC_FULL] = "synthetic-full",
};
static const char *const status_names[] = {
    [CAT_STATUS_RUNNING] = "running",
    [CAT_STATUS_COMPLETED] = "completed",
    [CAT_STATUS_FAILED] = "failed",
};
#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static const char *const sidecar_keys[] = {
    "format", "id", "type", "parent", "change_id", "status",
    "failure_reason", "virtual_size", "bytes_written", "allocated_bytes",
    "started_at", "ended_at", "checksum", "image", "backing_file", "job_id",
    NULL,
};
static const char *const checksum_keys[] = { "algorithm", "value", NULL };

const char *cat_backup_type_name(enum cat_backup_type type)
{
    return type_names[type];
}

const char *cat_backup_status_name(enum cat_backup_status status)
{
    return status_names[status];
}

int cat_sidecar_set_string(char **field, const char *value)
{
    char *copy = NULL;

    if (value && !(copy = strdup(value)))
        return -ENOMEM;
    free(*field);
    *field = copy;
    return 0;
}

void cat_sidecar_free(struct cat_sidecar *sc)
{
    if (!sc)
        return;
    free(sc->change_id);
    free(sc->failure_reason);
    free(sc->checksum_algorithm);
    free(sc->checksum_value);
    free(sc->job_id);
    free(sc);
}

static void image_name(char out[CAT_IMAGE_NAME_LEN + 1], const char *id)
{
    snprintf(out, CAT_IMAGE_NAME_LEN + 1, "%s" CAT_IMAGE_EXT, id);
}

int cat_sidecar_new(enum cat_backup_type type, cat_time_t stamp,
                    const char *parent, struct cat_sidecar **out,
                    struct sd_error *err)
{
    enum cat_id_kind kind = type == CAT_TYPE_INCR ? CAT_ID_INCR : CAT_ID_FULL;
    struct cat_sidecar *sc = calloc(1, sizeof(*sc));

    if (!sc)
        return sd_error_set(err, -ENOMEM, "out of memory");
    sc->type = type;
    sc->status = CAT_STATUS_RUNNING;
    sc->started_at = stamp;
    sc->ended_at = -1;
    if (cat_id_make(kind, stamp, sc->id) < 0)
        goto out_invalid;
    image_name(sc->image, sc->id);
    if (parent) {
        if (strlen(parent) > CAT_ID_LEN)
            goto out_invalid;
        snprintf(sc->parent, sizeof(sc->parent), "%s", parent);
        image_name(sc->backing_file, parent);
    }
    int ret = cat_sidecar_check(sc, sc->id, err);
    if (ret < 0) {
        cat_sidecar_free(sc);
        return ret;
    }
    *out = sc;
    return 0;

out_invalid:
    cat_sidecar_free(sc);
    return sd_error_set(err, -EINVAL, "cannot name a backup at time %lld "
                        "with parent \"%.40s\"", (long long)stamp,
                        parent ? parent : "");
}

/* --- rules ------------------------------------------------------------ */

static int check_parent(const struct jf *jf, const struct cat_sidecar *sc,
                        cat_time_t own_stamp)
{
    char want[CAT_IMAGE_NAME_LEN + 1];
    enum cat_id_kind kind;
    cat_time_t t;

    if (sc->type != CAT_TYPE_INCR) {
        if (sc->parent[0] || sc->backing_file[0])
            return jf_fail(jf, sc->parent[0] ? "parent" : "backing_file",
                           -EINVAL, "must be null for a %s backup",
                           type_names[sc->type]);
        return 0;
    }
    if (cat_id_parse(sc->parent, &kind, &t) < 0)
        return jf_fail(jf, "parent", -EINVAL, "\"%.40s\" is not a backup id",
                       sc->parent);
    if (t >= own_stamp)
        return jf_fail(jf, "parent", -EINVAL, "%s is not older than %s",
                       sc->parent, sc->id);
    image_name(want, sc->parent);
    if (strcmp(sc->backing_file, want) != 0)
        return jf_fail(jf, "backing_file", -EINVAL, "\"%.60s\" is not the "
                       "parent's image %s", sc->backing_file, want);
    return 0;
}

static int check_identity(const struct jf *jf, const struct cat_sidecar *sc,
                          cat_time_t *stamp)
{
    char want[CAT_IMAGE_NAME_LEN + 1];
    enum cat_id_kind kind;

    if (cat_id_parse(sc->id, &kind, stamp) < 0)
        return jf_fail(jf, "id", -EINVAL, "\"%.40s\" is not full-<stamp> or "
                       "incr-<stamp>", sc->id);
    if ((kind == CAT_ID_INCR) != (sc->type == CAT_TYPE_INCR))
        return jf_fail(jf, "type", -EINVAL, "%s does not match id %s",
                       type_names[sc->type], sc->id);
    image_name(want, sc->id);
    if (strcmp(sc->image, want) != 0)
        return jf_fail(jf, "image", -EINVAL, "\"%.60s\" is not %s",
                       sc->image, want);
    return 0;
}

static int check_status(const struct jf *jf, const struct cat_sidecar *sc)
{
    bool running = sc->status == CAT_STATUS_RUNNING;
    bool failed = sc->status == CAT_STATUS_FAILED;

    if (running != (sc->ended_at < 0))
        return jf_fail(jf, "ended_at", -EINVAL, running ? "must be null "
                       "while running" : "must be set once %s",
                       status_names[sc->status]);
    if (failed != (sc->failure_reason != NULL))
        return jf_fail(jf, "failure_reason", -EINVAL, failed ? "must be set "
                       "when failed" : "must be null unless failed");
    if (sc->started_at < 0)
        return jf_fail(jf, "started_at", -EINVAL, "must be set");
    return 0;
}

static bool is_hex(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f')))
            return false;
    return true;
}

static int check_texts(const struct jf *jf, const struct cat_sidecar *sc)
{
    struct sd_error e;

    if (sc->change_id && cat_text_check("change id", sc->change_id,
                                        CAT_CHANGE_ID_MAX, &e) < 0)
        return jf_fail(jf, "change_id", -EINVAL, "%s", e.msg);
    if (sc->failure_reason && cat_text_check("failure reason",
            sc->failure_reason, CAT_TEXT_MAX, &e) < 0)
        return jf_fail(jf, "failure_reason", -EINVAL, "%s", e.msg);
    if (sc->job_id && cat_name_check("job id", sc->job_id, &e) < 0)
        return jf_fail(jf, "job_id", -EINVAL, "%s", e.msg);
    if (!sc->checksum_algorithm != !sc->checksum_value)
        return jf_fail(jf, "checksum", -EINVAL, "needs both algorithm and "
                       "value");
    if (sc->checksum_algorithm &&
        cat_name_check("algorithm", sc->checksum_algorithm, &e) < 0)
        return jf_fail(jf, "checksum", -EINVAL, "%s", e.msg);
    if (sc->checksum_value && (!is_hex(sc->checksum_value) ||
        strlen(sc->checksum_value) > CAT_CHECKSUM_HEX_MAX))
        return jf_fail(jf, "checksum", -EINVAL, "value is not lowercase "
                       "hex of at most %d digits", CAT_CHECKSUM_HEX_MAX);
    return 0;
}

int cat_sidecar_check(const struct cat_sidecar *sc, const char *file,
                      struct sd_error *err)
{
    struct jf jf = { file, err };
    cat_time_t stamp;
    int ret = check_identity(&jf, sc, &stamp);

    if (ret == 0)
        ret = check_parent(&jf, sc, stamp);
    if (ret == 0)
        ret = check_status(&jf, sc);
    if (ret == 0)
        ret = check_texts(&jf, sc);
    if (ret == 0 && (int64_t)(sc->virtual_size | sc->bytes_written |
                              sc->allocated_bytes) < 0)
        ret = jf_fail(&jf, "virtual_size", -EINVAL, "sizes must fit in "
                      "63 bits");
    return ret;
}

/* --- reading ---------------------------------------------------------- */

/* Copy a string field into a fixed array ("" for null). */
static int get_fixed(const struct jf *jf, json_t *obj, const char *key,
                     bool nullable, char *out, size_t size)
{
    const char *s;
    int ret = jf_string(jf, obj, key, nullable, &s);

    if (ret < 0)
        return ret;
    if (s && strlen(s) >= size)
        return jf_fail(jf, key, -EINVAL, "longer than %zu bytes", size - 1);
    snprintf(out, size, "%s", s ? s : "");
    return 0;
}

/* Copy a nullable string field into a new string. */
static int get_dup(const struct jf *jf, json_t *obj, const char *key,
                   char **out)
{
    const char *s;
    int ret = jf_string(jf, obj, key, true, &s);

    if (ret < 0)
        return ret;
    if (cat_sidecar_set_string(out, s) < 0)
        return sd_error_set(jf->err, -ENOMEM, "out of memory");
    return 0;
}

static int get_checksum(const struct jf *jf, json_t *obj,
                        struct cat_sidecar *sc)
{
    json_t *c = json_object_get(obj, "checksum");
    struct jf sub = { jf->file, jf->err };
    char where[SD_ERROR_MSG_MAX];
    int ret;

    if (!c)
        return jf_fail(jf, "checksum", -EINVAL, "missing");
    if (json_is_null(c))
        return 0;
    if (!json_is_object(c))
        return jf_fail(jf, "checksum", -EINVAL, "not an object or null");
    snprintf(where, sizeof(where), "%s: checksum", jf->file);
    sub.file = where;
    ret = jf_check_keys(&sub, c, checksum_keys);
    if (ret == 0)
        ret = get_dup(&sub, c, "algorithm", &sc->checksum_algorithm);
    if (ret == 0)
        ret = get_dup(&sub, c, "value", &sc->checksum_value);
    return ret;
}

static int get_enums(const struct jf *jf, json_t *obj, struct cat_sidecar *sc)
{
    int type, status;
    int ret = jf_enum(jf, obj, "type", type_names, COUNT(type_names), &type);

    if (ret == 0)
        ret = jf_enum(jf, obj, "status", status_names, COUNT(status_names),
                      &status);
    if (ret < 0)
        return ret;
    sc->type = (enum cat_backup_type)type;
    sc->status = (enum cat_backup_status)status;
    return 0;
}

static int get_numbers(const struct jf *jf, json_t *obj,
                       struct cat_sidecar *sc)
{
    int ret = jf_uint(jf, obj, "virtual_size", &sc->virtual_size);

    if (ret == 0)
        ret = jf_uint(jf, obj, "bytes_written", &sc->bytes_written);
    if (ret == 0)
        ret = jf_uint(jf, obj, "allocated_bytes", &sc->allocated_bytes);
    if (ret == 0)
        ret = jf_time(jf, obj, "started_at", false, &sc->started_at);
    if (ret == 0)
        ret = jf_time(jf, obj, "ended_at", true, &sc->ended_at);
    return ret;
}

static int get_names(const struct jf *jf, json_t *obj, struct cat_sidecar *sc)
{
    int ret = get_fixed(jf, obj, "id", false, sc->id, sizeof(sc->id));

    if (ret == 0)
        ret = get_fixed(jf, obj, "parent", true, sc->parent,
                        sizeof(sc->parent));
    if (ret == 0)
        ret = get_fixed(jf, obj, "image", false, sc->image,
                        sizeof(sc->image));
    if (ret == 0)
        ret = get_fixed(jf, obj, "backing_file", true, sc->backing_file,
                        sizeof(sc->backing_file));
    if (ret == 0)
        ret = get_dup(jf, obj, "change_id", &sc->change_id);
    if (ret == 0)
        ret = get_dup(jf, obj, "failure_reason", &sc->failure_reason);
    if (ret == 0)
        ret = get_dup(jf, obj, "job_id", &sc->job_id);
    return ret;
}

static int sidecar_from_json(const struct jf *jf, json_t *obj,
                             struct cat_sidecar *sc)
{
    int ret = jf_check_format(jf, obj, CAT_SIDECAR_FORMAT);

    if (ret == 0)
        ret = jf_check_keys(jf, obj, sidecar_keys);
    if (ret == 0)
        ret = get_names(jf, obj, sc);
    if (ret == 0)
        ret = get_enums(jf, obj, sc);
    if (ret == 0)
        ret = get_numbers(jf, obj, sc);
    if (ret == 0)
        ret = get_checksum(jf, obj, sc);
    return ret;
}

int cat_sidecar_parse(const char *text, size_t len, const char *file,
                      struct cat_sidecar **out, struct sd_error *err)
{
    struct jf jf = { file, err };
    struct cat_sidecar *sc = calloc(1, sizeof(*sc));
    json_t *obj = NULL;
    int ret;

    if (!sc)
        return sd_error_set(err, -ENOMEM, "out of memory");
    ret = jf_parse_object(&jf, text, len, &obj);
    if (ret == 0)
        ret = sidecar_from_json(&jf, obj, sc);
    if (ret == 0)
        ret = cat_sidecar_check(sc, file, err);
    json_decref(obj);
    if (ret < 0) {
        cat_sidecar_free(sc);
        return ret;
    }
    *out = sc;
    return 0;
}

int cat_sidecar_read(const char *path, struct cat_sidecar **out,
                     struct sd_error *err)
{
    char *text;
    size_t len;
    int ret = jf_read_file(path, CAT_SIDECAR_FILE_MAX, &text, &len, err);

    if (ret < 0)
        return ret;
    ret = cat_sidecar_parse(text, len, path, out, err);
    free(text);
    return ret;
}

/* --- writing ---------------------------------------------------------- */

static json_t *nullable_string(const char *s)
{
    return s ? json_string(s) : json_null();
}

/* The fixed-size name fields say "none" with "". */
static json_t *name_or_null(const char *s)
{
    return s[0] ? json_string(s) : json_null();
}

static json_t *checksum_json(const struct cat_sidecar *sc)
{
    if (!sc->checksum_algorithm)
        return json_null();
    return json_pack("{s:s, s:s}", "algorithm", sc->checksum_algorithm,
                     "value", sc->checksum_value);
}

json_t *cat_sidecar_to_json(const struct cat_sidecar *sc)
{
    json_t *obj = json_pack("{s:i, s:s, s:s, s:o, s:o, s:s, s:o, s:I, s:I, "
                            "s:I}",
        "format", CAT_SIDECAR_FORMAT, "id", sc->id,
        "type", type_names[sc->type], "parent", name_or_null(sc->parent),
        "change_id", nullable_string(sc->change_id),
        "status", status_names[sc->status],
        "failure_reason", nullable_string(sc->failure_reason),
        "virtual_size", (json_int_t)sc->virtual_size,
        "bytes_written", (json_int_t)sc->bytes_written,
        "allocated_bytes", (json_int_t)sc->allocated_bytes);

    if (!obj)
        return NULL;
    if (jf_set_time(obj, "started_at", sc->started_at) != 0 ||
        jf_set_time(obj, "ended_at", sc->ended_at) != 0 ||
        json_object_set_new(obj, "checksum", checksum_json(sc)) != 0 ||
        json_object_set_new(obj, "image", json_string(sc->image)) != 0 ||
        json_object_set_new(obj, "backing_file",
                            name_or_null(sc->backing_file)) != 0 ||
        json_object_set_new(obj, "job_id", nullable_string(sc->job_id))) {
        json_decref(obj);
        return NULL;
    }
    return obj;
}

int cat_sidecar_write(const struct cat_sidecar *sc, const char *disk_dir,
                      struct sd_error *err)
{
    char *path = cat_path_join(disk_dir, sc->id, CAT_SIDECAR_EXT);
    int ret;

    if (!path)
        return sd_error_set(err, -ENOMEM, "out of memory");
    ret = cat_sidecar_check(sc, path, err);
    if (ret == 0) {
        json_t *obj = cat_sidecar_to_json(sc);
        ret = obj ? jf_write_file(obj, path, err)
                  : sd_error_set(err, -ENOMEM, "%s: cannot build JSON", path);
    }
    free(path);
    return ret;
}
