/* SPDX-License-Identifier: MIT */
/*
 * The default output of restore ...: tables and key value lines made
 * from the results docs/SENDENSED.md ("Restore") gives. --json prints
 * those results as they are (forward.c). Apart from cmd-restore.c so
 * that unit tests can print canned results.
 */
#include "config.h"

#include "ctl/ctl.h"

#include <string.h>

/* sendensed gives times here in seconds since the epoch. */
static void human_time_s(const json_t *obj, const char *key, char *buf,
                         size_t len)
{
    json_int_t s = json_integer_value(json_object_get(obj, key));

    ctl_human_time_ms(s > 0 ? (int64_t)s * 1000 : 0, buf, len);
}

static void print_time_field(const char *key, const json_t *obj,
                             const char *field)
{
    char text[48];

    human_time_s(obj, field, text, sizeof(text));
    ctl_print_field(key, text);
}

static void print_size_field(const char *key, const json_t *obj,
                             const char *field)
{
    char text[64];

    ctl_exact_size(ctl_u64(obj, field), text, sizeof(text));
    ctl_print_field(key, text);
}

/* The backup point a restore export or mount was made from. */
static void print_point(const json_t *r)
{
    ctl_print_field("vm", ctl_str(r, "vm", NULL));
    ctl_print_field("disk", ctl_str(r, "disk", NULL));
    ctl_print_field("backup", ctl_str(r, "id", NULL));
    ctl_print_field("repository", ctl_str(r, "repository", NULL));
    print_time_field("created", r, "created");
}

/* --- whole-disk exports ---------------------------------------------- */

int ctl_print_restore_export(const json_t *r)
{
    ctl_print_field("name", ctl_str(r, "name", NULL));
    ctl_print_field("uri", ctl_str(r, "uri", NULL));
    print_point(r);
    return CTL_EXIT_OK;
}

int ctl_print_restore_unexport(const json_t *r)
{
    printf("restore export %s removed\n", ctl_str(r, "name", "?"));
    return CTL_EXIT_OK;
}

/* --- mounts ---------------------------------------------------------- */

static int add_volume_row(struct ctl_table *t, const json_t *v)
{
    char offset[32], size[32] = "-";

    ctl_human_size(ctl_u64(v, "offset"), offset, sizeof(offset));
    /* The whole disk comes with size 0: its loop device has no limit. */
    if (ctl_u64(v, "size") > 0)
        ctl_human_size(ctl_u64(v, "size"), size, sizeof(size));
    return ctl_table_add(t, (const char *const[]){
        ctl_str(v, "name", "?"), ctl_str(v, "kind", "?"),
        ctl_str(v, "fstype", "-"), offset, size,
        json_is_true(json_object_get(v, "mounted")) ? "yes" : "no",
        ctl_str(v, "note", "-"),
    });
}

int ctl_print_restore_mount(const json_t *r)
{
    static const char *const headers[] = {
        "VOLUME", "KIND", "FSTYPE", "OFFSET", "SIZE", "MOUNTED", "NOTE",
    };

    ctl_print_field("mount", ctl_str(r, "mount", NULL));
    ctl_print_field("export", ctl_str(r, "export", NULL));
    print_point(r);
    printf("\n");
    return ctl_print_table(7, headers, json_object_get(r, "volumes"),
                           add_volume_row);
}

int ctl_print_restore_umount(const json_t *r)
{
    printf("mount %s unmounted\n", ctl_str(r, "mount", "?"));
    return CTL_EXIT_OK;
}

/* --- restore list ---------------------------------------------------- */

static int add_export_row(struct ctl_table *t, const json_t *e)
{
    char created[48];

    human_time_s(e, "created", created, sizeof(created));
    return ctl_table_add(t, (const char *const[]){
        ctl_str(e, "name", "?"), ctl_str(e, "vm", "?"),
        ctl_str(e, "disk", "?"), ctl_str(e, "id", "?"), created,
        ctl_str(e, "uri", "-"),
    });
}

static int add_mount_row(struct ctl_table *t, const json_t *m)
{
    const json_t *vols = json_object_get(m, "volumes"), *v;
    char created[48], volumes[48];
    size_t i, mounted = 0;

    json_array_foreach(vols, i, v)
        if (json_is_true(json_object_get(v, "mounted")))
            mounted++;
    snprintf(volumes, sizeof(volumes), "%zu (%zu mounted)",
             json_array_size(vols), mounted);
    human_time_s(m, "created", created, sizeof(created));
    return ctl_table_add(t, (const char *const[]){
        ctl_str(m, "mount", "?"), ctl_str(m, "vm", "?"),
        ctl_str(m, "disk", "?"), ctl_str(m, "id", "?"), created, volumes,
    });
}

/* Two tables, whose first header names what they hold. */
int ctl_print_restore_list(const json_t *r)
{
    static const char *const export_headers[] = {
        "EXPORT", "VM", "DISK", "BACKUP", "CREATED", "URI",
    };
    static const char *const mount_headers[] = {
        "MOUNT", "VM", "DISK", "BACKUP", "CREATED", "VOLUMES",
    };
    int status = ctl_print_table(6, export_headers,
                                 json_object_get(r, "exports"),
                                 add_export_row);

    if (status != CTL_EXIT_OK)
        return status;
    printf("\n");
    return ctl_print_table(6, mount_headers, json_object_get(r, "mounts"),
                           add_mount_row);
}

/* --- files in a mount ------------------------------------------------ */

/* "rwxr-xr-x" from permission bits, setuid, setgid and sticky as ls
 * shows them. */
static void mode_string(const json_t *entry, char out[10])
{
    unsigned mode = (unsigned)json_integer_value(json_object_get(entry,
                                                                 "mode"));
    static const char rwx[] = "rwxrwxrwx";
    /* Over the x of user, group, other: lower case when x is set. */
    static const struct {
        unsigned bit;
        int pos;
        char with_x, without_x;
    } special[] = {
        { 04000, 2, 's', 'S' }, { 02000, 5, 's', 'S' }, { 01000, 8, 't', 'T' },
    };

    for (int i = 0; i < 9; i++)
        out[i] = (mode & (0400u >> i)) ? rwx[i] : '-';
    for (size_t i = 0; i < sizeof(special) / sizeof(special[0]); i++)
        if (mode & special[i].bit)
            out[special[i].pos] = out[special[i].pos] == '-'
                                  ? special[i].without_x : special[i].with_x;
    out[9] = '\0';
}

static int add_entry_row(struct ctl_table *t, const json_t *e)
{
    char size[32], mode[10], mtime[48];

    ctl_human_size(ctl_u64(e, "size"), size, sizeof(size));
    mode_string(e, mode);
    human_time_s(e, "mtime", mtime, sizeof(mtime));
    return ctl_table_add(t, (const char *const[]){
        ctl_str(e, "type", "?"), size, mode, mtime, ctl_str(e, "name", "?"),
    });
}

int ctl_print_restore_ls(const json_t *r)
{
    static const char *const headers[] = {
        "TYPE", "SIZE", "MODE", "MTIME", "NAME",
    };

    return ctl_print_table(5, headers, json_object_get(r, "entries"),
                           add_entry_row);
}

int ctl_print_restore_stat(const json_t *r)
{
    char mode[10], text[32];

    mode_string(r, mode);
    snprintf(text, sizeof(text), "%s (%04o)", mode,
             (unsigned)json_integer_value(json_object_get(r, "mode")) & 07777);
    ctl_print_field("name", ctl_str(r, "name", NULL));
    ctl_print_field("type", ctl_str(r, "type", NULL));
    print_size_field("size", r, "size");
    ctl_print_field("mode", text);
    print_time_field("mtime", r, "mtime");
    return CTL_EXIT_OK;
}

int ctl_print_restore_extract(const json_t *r)
{
    const char *format = ctl_str(r, "format", "?");
    char size[64];

    ctl_exact_size(ctl_u64(r, "bytes"), size, sizeof(size));
    printf("extracted to %s: %s, %s\n", ctl_str(r, "dest", "?"),
           strcmp(format, "tar") == 0 ? "tar archive" : format, size);
    return CTL_EXIT_OK;
}
