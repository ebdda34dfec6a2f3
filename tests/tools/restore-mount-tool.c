/* SPDX-License-Identifier: MIT */
/*
 * restore-mount-tool RUNTIME_DIR < SCRIPT
 *
 * Drives libsdrestore (catalog/restore-mount.h) for tests/test-restore-
 * mount.sh. Mounts live in this process's namespace, so one process
 * runs a whole script, one command a line (arguments split on blanks):
 *
 *   ns                          enter a private mount namespace
 *   mount ID URI                mount a point, print its volumes
 *   ls ID VOLUME PATH           list a directory
 *   stat ID VOLUME PATH         one entry
 *   get ID VOLUME PATH OUT      copy a file out to OUT
 *   tar ID VOLUME PATH OUT      a tar archive of a directory, to OUT
 *   umount ID                   release a point
 *   mounts                      count mounts under RUNTIME_DIR here
 *   hold                        print "holding" and wait to be killed
 *   cleanup                     sd_restore_cleanup_stale(RUNTIME_DIR)
 *
 * Each command is echoed first as "> COMMAND", so a test can split the
 * output by command. A command prefixed with '!' must fail (its error is
 * printed as "expected-failure: ..."). Any other failure ends the tool
 * with status 1, after releasing the points it holds. A test program:
 * it prints.
 */
#include "config.h"

#include "catalog/restore-mount.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum { MAX_POINTS = 8, MAX_ARGS = 8 };

static const char *runtime_dir;
static struct {
    char id[SD_RESTORE_ID_MAX];
    struct sd_restore_point *pt;
} points[MAX_POINTS];

static struct sd_restore_point *find_point(const char *id)
{
    for (int i = 0; i < MAX_POINTS; i++)
        if (points[i].pt && strcmp(points[i].id, id) == 0)
            return points[i].pt;
    return NULL;
}

static void release_all(void)
{
    for (int i = 0; i < MAX_POINTS; i++) {
        struct sd_error err = { 0 };
        if (points[i].pt && sd_restore_unmount(points[i].pt, &err) < 0)
            fprintf(stderr, "restore-mount-tool: umount %s: %s\n",
                    points[i].id, err.msg);
        points[i].pt = NULL;
    }
}

static void print_volumes(const struct sd_restore_point *pt)
{
    for (size_t i = 0; i < sd_restore_volume_count(pt); i++) {
        const struct sd_restore_volume *v = sd_restore_volume_get(pt, i);
        printf("volume %s kind=%s offset=%llu size=%llu fstype=%s "
               "loop=%s mounted=%s note=%s\n", v->name, v->kind,
               (unsigned long long)v->offset, (unsigned long long)v->size,
               v->fstype[0] ? v->fstype : "-",
               v->loopdev[0] ? v->loopdev : "-", v->mounted ? "yes" : "no",
               v->note[0] ? v->note : "-");
    }
}

static int cmd_mount(char **a, struct sd_error *err)
{
    int slot = -1;

    for (int i = 0; i < MAX_POINTS && slot < 0; i++)
        if (!points[i].pt)
            slot = i;
    if (slot < 0)
        return sd_error_set(err, -E2BIG, "too many points");
    int r = sd_restore_mount(runtime_dir, a[1], a[2], &points[slot].pt, err);
    if (r < 0)
        return r;
    snprintf(points[slot].id, sizeof(points[slot].id), "%s", a[1]);
    print_volumes(points[slot].pt);
    return 0;
}

static int cmd_umount(char **a, struct sd_error *err)
{
    for (int i = 0; i < MAX_POINTS; i++)
        if (points[i].pt && strcmp(points[i].id, a[1]) == 0) {
            struct sd_restore_point *pt = points[i].pt;
            points[i].pt = NULL;
            return sd_restore_unmount(pt, err);
        }
    return sd_error_set(err, -ENOENT, "no point %s", a[1]);
}

/* The point and volume index named by a[1], a[2]. */
static int locate(char **a, struct sd_restore_point **pt,
                  struct sd_error *err)
{
    int vol;

    *pt = find_point(a[1]);
    if (!*pt)
        return sd_error_set(err, -ENOENT, "no point %s", a[1]);
    vol = sd_restore_volume_find(*pt, a[2]);
    if (vol < 0)
        return sd_error_set(err, vol, "no volume %s", a[2]);
    return vol;
}

static const char type_char[] = { 'f', 'd', 'l', 'o' };

static void print_entry(const struct sd_restore_entry *e)
{
    printf("%c %04o %llu %lld %s\n", type_char[e->type],
           (unsigned)(e->mode & 07777), (unsigned long long)e->size,
           (long long)e->mtime, e->name);
}

static int cmd_ls(char **a, struct sd_error *err)
{
    struct sd_restore_point *pt;
    struct sd_restore_entry *v;
    size_t n;
    int vol = locate(a, &pt, err), r;

    if (vol < 0)
        return vol;
    r = sd_restore_list(pt, (size_t)vol, a[3], &v, &n, err);
    if (r < 0)
        return r;
    for (size_t i = 0; i < n; i++)
        print_entry(&v[i]);
    free(v);
    return 0;
}

static int cmd_stat(char **a, struct sd_error *err)
{
    struct sd_restore_point *pt;
    struct sd_restore_entry e;
    int vol = locate(a, &pt, err), r;

    if (vol < 0)
        return vol;
    r = sd_restore_stat(pt, (size_t)vol, a[3], &e, err);
    if (r == 0)
        print_entry(&e);
    return r;
}

static int cmd_extract(char **a, bool tar, struct sd_error *err)
{
    struct sd_restore_point *pt;
    int vol = locate(a, &pt, err), fd, r;

    if (vol < 0)
        return vol;
    fd = open(a[4], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return sd_error_set(err, -errno, "%s: %s", a[4], strerror(errno));
    r = tar ? sd_restore_extract_tar(pt, (size_t)vol, a[3], fd, err)
            : sd_restore_extract_file(pt, (size_t)vol, a[3], fd, err);
    if (close(fd) < 0 && r == 0)
        r = sd_error_set(err, -errno, "%s: %s", a[4], strerror(errno));
    if (r < 0)
        (void)unlink(a[4]);
    return r;
}

static int cmd_mounts(void)
{
    char line[8192], mp[4096];
    size_t n = strlen(runtime_dir);
    unsigned count = 0;
    FILE *f = fopen("/proc/self/mountinfo", "re");

    if (!f)
        return -errno;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "%*s %*s %*s %*s %4095s", mp) == 1 &&
            strncmp(mp, runtime_dir, n) == 0 &&
            (mp[n] == '/' || mp[n] == '\0'))
            count++;
    fclose(f);
    printf("mounts %u\n", count);
    return 0;
}

static int cmd_cleanup(struct sd_error *err)
{
    struct sd_restore_cleanup c;
    int r = sd_restore_cleanup_stale(runtime_dir, &c, err);

    if (r == 0)
        printf("cleanup mounts=%u loops=%u processes=%u folders=%u "
               "fuse_aborted=%u\n", c.mounts, c.loops, c.processes,
               c.folders, c.fuse_aborted);
    return r;
}

_Noreturn static void cmd_hold(void)
{
    printf("holding\n");
    fflush(stdout);
    for (;;)
        pause();
}

/* Commands: name, argument count (with the name), handler id. */
static int run(char **a, int n, struct sd_error *err)
{
    static const struct { const char *name; int args; } cmds[] = {
        { "ns", 1 }, { "mount", 3 }, { "ls", 4 }, { "stat", 4 },
        { "get", 5 }, { "tar", 5 }, { "umount", 2 }, { "mounts", 1 },
        { "hold", 1 }, { "cleanup", 1 },
    };
    size_t c = 0;

    while (c < sizeof(cmds) / sizeof(cmds[0]) && strcmp(cmds[c].name, a[0]))
        c++;
    if (c == sizeof(cmds) / sizeof(cmds[0]) || cmds[c].args != n)
        return sd_error_set(err, -EINVAL, "bad command '%s' (%d words)",
                            a[0], n);
    switch (c) {
    case 0: return sd_restore_ns_setup(err);
    case 1: return cmd_mount(a, err);
    case 2: return cmd_ls(a, err);
    case 3: return cmd_stat(a, err);
    case 4: return cmd_extract(a, false, err);
    case 5: return cmd_extract(a, true, err);
    case 6: return cmd_umount(a, err);
    case 7: return cmd_mounts();
    case 8: cmd_hold();
    default: return cmd_cleanup(err);
    }
}

int main(int argc, char **argv)
{
    char line[8192], *a[MAX_ARGS + 1], *save;
    int status = 0;

    if (argc != 2 || argv[1][0] != '/') {
        fprintf(stderr, "usage: restore-mount-tool /RUNTIME_DIR < SCRIPT\n");
        return 2;
    }
    runtime_dir = argv[1];
    setvbuf(stdout, NULL, _IOLBF, 0);
    while (status == 0 && fgets(line, sizeof(line), stdin)) {
        struct sd_error err = { 0 };
        int n = 0;
        for (char *w = strtok_r(line, " \t\n", &save); w && n <= MAX_ARGS;
             w = strtok_r(NULL, " \t\n", &save))
            a[n++] = w;
        if (n == 0 || a[0][0] == '#')
            continue;
        printf(">");
        for (int i = 0; i < n; i++)
            printf(" %s", a[i]);
        printf("\n");
        bool must_fail = a[0][0] == '!';
        if (must_fail)
            a[0]++;
        int r = run(a, n, &err);
        if (must_fail && r < 0) {
            printf("expected-failure: %s\n", err.msg);
        } else if (must_fail) {
            fprintf(stderr, "restore-mount-tool: %s: succeeded, should fail\n",
                    a[0]);
            status = 1;
        } else if (r < 0) {
            fprintf(stderr, "restore-mount-tool: %s: %s\n", a[0], err.msg);
            status = 1;
        }
    }
    release_all();
    return status;
}
