/* SPDX-License-Identifier: MIT */
/*
 * Shared by the config fuzz targets: the input goes to a file (the
 * loaders read paths, with their size cap and file checks), in a private
 * folder made once per process.
 */
#ifndef SENDENSE_FUZZ_CONFIG_COMMON_H
#define SENDENSE_FUZZ_CONFIG_COMMON_H

#include "server/server-config.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char fuzz_folder[64];

/* fuzz_folder/name, a folder made on first use. */
static const char *fuzz_dir(const char *name)
{
    static char path[128];

    if (!fuzz_folder[0]) {
        snprintf(fuzz_folder, sizeof(fuzz_folder), "/tmp/fuzz-config-XXXXXX");
        if (!mkdtemp(fuzz_folder))
            abort();
    }
    snprintf(path, sizeof(path), "%s/%s", fuzz_folder, name);
    if (mkdir(path, 0700) < 0 && errno != EEXIST)
        abort();
    return path;
}

/* A file of the input, name relative to the private folder; its parent
 * folder, if any, must have been made by fuzz_dir. */
static const char *fuzz_file(const char *name, const uint8_t *data,
                             size_t size)
{
    static char path[128];
    FILE *f;

    (void)fuzz_dir(".");
    snprintf(path, sizeof(path), "%s/%s", fuzz_folder, name);
    f = fopen(path, "wb");
    if (!f || fwrite(data, 1, size, f) != size || fclose(f) != 0)
        abort();
    return path;
}

/* A failed load must say why, starting with the file it read. */
static void fuzz_check_error(const char *path, int ret,
                             const struct sd_error *e)
{
    if (ret >= 0)
        return;
    if (e->code != ret || strncmp(e->msg, path, strlen(path)) != 0) {
        fprintf(stderr, "bad error %d/%d: \"%s\"\n", ret, e->code, e->msg);
        abort();
    }
}

#endif
