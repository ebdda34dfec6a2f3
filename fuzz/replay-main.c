/* SPDX-License-Identifier: MIT */
/*
 * A main() for fuzz targets in builds without libFuzzer: runs
 * LLVMFuzzerTestOneInput once on each file named on the command line, or
 * on each regular file of a folder named there. Arguments starting with
 * '-' (libFuzzer options) are ignored, so scripts can call either build
 * the same way. Exits non-zero if a file cannot be read; a bug in the
 * target shows up as a crash or a sanitizer report.
 */
#include "config.h"

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Larger inputs are not meaningful seeds; refuse rather than OOM. */
enum { REPLAY_MAX_INPUT = 64 << 20 };

static int replay_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    uint8_t *data = NULL;
    long len;
    int ret = -1;

    if (!f)
        goto out;
    if (fseek(f, 0, SEEK_END) < 0 || (len = ftell(f)) < 0 ||
        len > REPLAY_MAX_INPUT || fseek(f, 0, SEEK_SET) < 0)
        goto out_close;
    data = malloc(len ? (size_t)len : 1);
    if (!data || fread(data, 1, (size_t)len, f) != (size_t)len)
        goto out_close;
    fprintf(stderr, "replay: %s (%ld bytes)\n", path, len);
    LLVMFuzzerTestOneInput(data, (size_t)len);
    ret = 0;
out_close:
    free(data);
    fclose(f);
out:
    if (ret < 0)
        fprintf(stderr, "replay: cannot read %s\n", path);
    return ret;
}

static int replay_folder(const char *path)
{
    struct dirent **names;
    int n = scandir(path, &names, NULL, alphasort), ret = 0;

    if (n < 0) {
        fprintf(stderr, "replay: cannot list %s\n", path);
        return -1;
    }
    for (int i = 0; i < n; i++) {
        char *p;
        struct stat st;

        if (asprintf(&p, "%s/%s", path, names[i]->d_name) < 0) {
            ret = -1;
        } else {
            if (stat(p, &st) == 0 && S_ISREG(st.st_mode) &&
                replay_file(p) < 0)
                ret = -1;
            free(p);
        }
        free(names[i]);
    }
    free(names);
    return ret;
}

int main(int argc, char **argv)
{
    int ret = 0;

    for (int i = 1; i < argc; i++) {
        struct stat st;

        if (argv[i][0] == '-')
            continue;
        if (stat(argv[i], &st) == 0 && S_ISDIR(st.st_mode))
            ret |= replay_folder(argv[i]) < 0;
        else
            ret |= replay_file(argv[i]) < 0;
    }
    return ret;
}
