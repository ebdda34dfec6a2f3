/* SPDX-License-Identifier: MIT */
/*
 * What an image holds: partitions (MBR, GPT: `partx --show`), file
 * systems (`blkid -p`), LVM logical volumes (`lvs --readonly`).
 *
 * There is no device-mapper here (nor in many daemons' containers), so
 * LVM volumes are never activated: the layout is read with lvm2's
 * reporting tools restricted to our own partition devices (--devices),
 * and each volume whose data is one contiguous run on one physical
 * volume (linear, in one or several adjacent segments) gets a loop device
 * at that run's offset. Anything else (striped, mirror, raid, thin,
 * snapshots, runs split over several places) is listed with a note
 * saying why it is not mapped.
 */
#include "config.h"

#include "catalog/restore-internal.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Partition types that only contain other partitions (MBR extended). */
static bool is_container(const char *type)
{
    return strcmp(type, "0x5") == 0 || strcmp(type, "0xf") == 0 ||
           strcmp(type, "0x85") == 0;
}

int rs_add_volume(struct sd_restore_point *pt, const char *name,
                  const char *kind, uint64_t offset, uint64_t size,
                  struct sd_error *err)
{
    struct sd_restore_volume *v;
    size_t i = pt->nvols;

    if (i == SD_RESTORE_MAX_VOLUMES)
        return sd_error_set(err, -E2BIG, "more than %d volumes",
                            SD_RESTORE_MAX_VOLUMES);
    v = &pt->vols[i];
    memset(v, 0, sizeof(*v));
    snprintf(v->name, sizeof(v->name), "%s", name);
    snprintf(v->kind, sizeof(v->kind), "%s", kind);
    v->offset = offset;
    v->size = size;
    pt->loop_fds[i] = -1;
    pt->nvols++;
    return (int)i;
}

/* Give volume i its loop device. */
static int map_volume(struct sd_restore_point *pt, size_t i,
                      struct sd_error *err)
{
    struct sd_restore_volume *v = &pt->vols[i];
    char name[32];
    int r;

    r = rs_loop_attach(pt->disk_file, pt->dir, v->offset, v->size, name,
                       &pt->loop_fds[i], err);
    if (r < 0)
        return r;
    snprintf(v->loopdev, sizeof(v->loopdev), "/dev/%s", name);
    return 0;
}

static int add_partition(struct sd_restore_point *pt, const char *line,
                         struct sd_error *err)
{
    unsigned nr;
    unsigned long long start, sectors;
    char type[64], name[16];
    int i;

    if (sscanf(line, "%u %llu %llu %63s", &nr, &start, &sectors, type) != 4)
        return sd_error_set(err, -EINVAL, "partx: cannot read '%s'", line);
    if (sectors == 0 || is_container(type))
        return 0;
    snprintf(name, sizeof(name), "p%u", nr);
    i = rs_add_volume(pt, name, "partition", start * 512, sectors * 512,
                      err);
    return i < 0 ? i : map_volume(pt, (size_t)i, err);
}

int rs_probe_partitions(struct sd_restore_point *pt, struct sd_error *err)
{
    const char *const argv[] = { "partx", "--show", "--noheadings",
                                 "-o", "NR,START,SECTORS,TYPE",
                                 pt->disk_file, NULL };
    struct rs_output res;
    char *save = NULL;
    int r, i;

    /* The whole disk first: a file system may also sit on it directly. */
    i = rs_add_volume(pt, "disk", "disk", 0, 0, err);
    if (i < 0 || (r = map_volume(pt, (size_t)i, err)) < 0)
        return i < 0 ? i : r;
    r = rs_run(argv, &res, err);
    if (r < 0)
        return r;
    /* partx fails when there is no partition table: nothing to add. */
    if (res.status == 0) {
        for (char *l = strtok_r(res.out, "\n", &save); l && r == 0;
             l = strtok_r(NULL, "\n", &save))
            r = add_partition(pt, l, err);
    }
    rs_output_free(&res);
    return r;
}

int rs_probe_fstype(struct sd_restore_volume *vol, struct sd_error *err)
{
    const char *const argv[] = { "blkid", "-p", "-o", "export",
                                 vol->loopdev, NULL };
    struct rs_output res;
    char *save = NULL;
    int r;

    r = rs_run(argv, &res, err);
    if (r < 0)
        return r;
    /* 2: nothing recognised; 8: ambivalent (several signatures). */
    if (res.status == 8)
        snprintf(vol->note, sizeof(vol->note),
                 "several signatures found; not mounted");
    for (char *l = strtok_r(res.out, "\n", &save); l;
         l = strtok_r(NULL, "\n", &save))
        if (strncmp(l, "TYPE=", 5) == 0)
            snprintf(vol->fstype, sizeof(vol->fstype), "%s", l + 5);
    rs_output_free(&res);
    return 0;
}

/* --- LVM --- */

#define LVM_CONFIG                                                         \
    "devices { scan_lvs = 0 } "                                            \
    "activation { udev_sync = 0 udev_rules = 0 monitoring = 0 } "          \
    "global { event_activation = 0 } "                                     \
    "backup { backup = 0 archive = 0 }"

/* argv for an lvm report over the physical volumes among our volumes. */
static int lvm_argv(const struct sd_restore_point *pt, const char *cmd,
                    const char *fields, const char **argv, size_t max)
{
    size_t n = 0;
    const char *fixed[] = { cmd, "--readonly", "--config", LVM_CONFIG,
                            "--reportformat", "json", "--units", "b",
                            "--nosuffix", "-o", fields };

    for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
        argv[n++] = fixed[i];
    for (size_t i = 0; i < pt->nvols; i++) {
        if (strcmp(pt->vols[i].fstype, "LVM2_member") != 0 ||
            !pt->vols[i].loopdev[0])
            continue;
        if (n + 3 > max)
            return -E2BIG;
        argv[n++] = "--devices";
        argv[n++] = pt->vols[i].loopdev;
    }
    argv[n] = NULL;
    return n > sizeof(fixed) / sizeof(fixed[0]) ? (int)n : 0;
}

/* Run an lvm report; *ret is its array of rows (report[0].<kind>). */
static int lvm_report(const struct sd_restore_point *pt, const char *cmd,
                      const char *kind, const char *fields, json_t **ret,
                      struct sd_error *err)
{
    const char *argv[16 + 2 * SD_RESTORE_MAX_VOLUMES];
    struct rs_output res;
    json_error_t jerr;
    json_t *root, *rows;
    int r = lvm_argv(pt, cmd, fields, argv, sizeof(argv) / sizeof(argv[0]));

    *ret = NULL;
    if (r <= 0)
        return r;
    r = rs_run(argv, &res, err);
    if (r < 0)
        return r;
    root = json_loads(res.out, 0, &jerr);
    rows = json_object_get(json_array_get(json_object_get(root, "report"),
                                          0), kind);
    if (!json_is_array(rows)) {
        r = sd_error_set(err, -EIO, "%s: %s", cmd,
                         res.errtext[0] ? res.errtext : "no report");
    } else {
        *ret = json_incref(rows);
    }
    json_decref(root);
    rs_output_free(&res);
    return r;
}

static const char *jstr(json_t *row, const char *key)
{
    const char *s = json_string_value(json_object_get(row, key));
    return s ? s : "";
}

static uint64_t jnum(json_t *row, const char *key)
{
    return strtoull(jstr(row, key), NULL, 10);
}

/* The partition volume whose loop device is dev. */
static const struct sd_restore_volume *
volume_by_dev(const struct sd_restore_point *pt, const char *dev)
{
    for (size_t i = 0; i < pt->nvols; i++)
        if (strcmp(pt->vols[i].loopdev, dev) == 0)
            return &pt->vols[i];
    return NULL;
}

static uint64_t pe_start_of(json_t *pvs, const char *dev, bool *found)
{
    size_t i;
    json_t *row;

    json_array_foreach(pvs, i, row) {
        if (strcmp(jstr(row, "pv_name"), dev) == 0) {
            *found = true;
            return jnum(row, "pe_start");
        }
    }
    *found = false;
    return 0;
}

/* Where one logical volume's data lies, if in one contiguous run. */
struct lv_run {
    char dev[64];
    uint64_t first_pe, count;
    uint64_t extent_size;
};

/* Fold one segment row into run; a reason in note when it cannot be. */
static bool lv_run_add(struct lv_run *run, json_t *seg, char *note,
                       size_t len)
{
    const char *type = jstr(seg, "segtype"), *ranges = jstr(seg,
                                                            "seg_pe_ranges");
    const char *colon = strrchr(ranges, ':');
    unsigned long long a, b;
    char dev[64];

    if (strcmp(type, "linear") != 0) {
        snprintf(note, len, "segment type %s cannot be mapped without "
                 "device-mapper", type);
        return false;
    }
    if (!colon || strchr(ranges, ' ') || (size_t)(colon - ranges) >= sizeof(dev) ||
        sscanf(colon + 1, "%llu-%llu", &a, &b) != 2 || b < a) {
        snprintf(note, len, "extents '%s' cannot be mapped", ranges);
        return false;
    }
    snprintf(dev, sizeof(dev), "%.*s", (int)(colon - ranges), ranges);
    if (run->count == 0) {
        snprintf(run->dev, sizeof(run->dev), "%s", dev);
        run->first_pe = a;
        run->extent_size = jnum(seg, "vg_extent_size");
    } else if (strcmp(dev, run->dev) != 0 ||
               a != run->first_pe + run->count) {
        snprintf(note, len, "segments are not contiguous on one physical "
                 "volume; not mapped");
        return false;
    }
    run->count += b - a + 1;
    return true;
}

/* Add the volume rows[first..last) describe (one LV, its segments). */
static int add_lv(struct sd_restore_point *pt, json_t *rows, size_t first,
                  size_t last, json_t *pvs, struct sd_error *err)
{
    json_t *row0 = json_array_get(rows, first);
    const char *attr = jstr(row0, "lv_attr");
    struct lv_run run = { .count = 0 };
    char name[SD_RESTORE_NAME_MAX], note[256] = "";
    const struct sd_restore_volume *pv_vol;
    uint64_t pe_start = 0;
    bool ok = true, found = false;
    int i;

    snprintf(name, sizeof(name), "%s-%s", jstr(row0, "vg_name"),
             jstr(row0, "lv_name"));
    if (attr[0] == 's' || attr[0] == 'S') {
        snprintf(note, sizeof(note), "snapshot: cannot be mapped without "
                 "device-mapper");
        ok = false;
    }
    for (size_t k = first; ok && k < last; k++)
        ok = lv_run_add(&run, json_array_get(rows, k), note, sizeof(note));
    pv_vol = ok ? volume_by_dev(pt, run.dev) : NULL;
    if (ok && pv_vol)
        pe_start = pe_start_of(pvs, run.dev, &found);
    if (ok && (!pv_vol || !found)) {
        snprintf(note, sizeof(note), "physical volume %s not found", run.dev);
        ok = false;
    }
    i = rs_add_volume(pt, name, "lvm",
                      ok ? pv_vol->offset + pe_start +
                               run.first_pe * run.extent_size : 0,
                      ok ? run.count * run.extent_size : 0, err);
    if (i < 0)
        return i;
    snprintf(pt->vols[i].note, sizeof(pt->vols[i].note), "%s", note);
    return ok ? map_volume(pt, (size_t)i, err) : 0;
}

static bool same_lv(json_t *a, json_t *b)
{
    return strcmp(jstr(a, "vg_name"), jstr(b, "vg_name")) == 0 &&
           strcmp(jstr(a, "lv_name"), jstr(b, "lv_name")) == 0;
}

int rs_probe_lvm(struct sd_restore_point *pt, struct sd_error *err)
{
    json_t *lvs = NULL, *pvs = NULL;
    size_t first = 0, n;
    int r;

    r = lvm_report(pt, "pvs", "pv", "pv_name,pe_start", &pvs, err);
    if (r < 0 || !pvs)
        return r;
    r = lvm_report(pt, "lvs", "lv",
                   "vg_name,lv_name,lv_attr,segtype,seg_start_pe,"
                   "seg_pe_ranges,vg_extent_size", &lvs, err);
    if (r < 0)
        goto out_free;
    n = json_array_size(lvs);
    /* lvs lists an LV's segments one row each, in order. */
    for (size_t k = 1; k <= n && r == 0; k++) {
        if (k < n && same_lv(json_array_get(lvs, first),
                             json_array_get(lvs, k)))
            continue;
        r = add_lv(pt, lvs, first, k, pvs, err);
        first = k;
    }
out_free:
    json_decref(lvs);
    json_decref(pvs);
    return r;
}
