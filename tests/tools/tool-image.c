/* SPDX-License-Identifier: MIT */
/* The one helper of the test tools that needs the image library. */
#include "config.h"

#include "tool-util.h"

#include "common/error.h"
#include "qcow2/image.h"

#include <string.h>

bool tool_direct_data;

struct sd_img *tool_open_image(const char *path, bool writable,
                               struct sd_ring *ring)
{
    struct sd_img_open_opts opts = {
        .format = SD_FMT_AUTO,
        .writable = writable,
        .direct_data = tool_direct_data,
        .ring = ring,
        .no_lock = !writable,
    };
    struct sd_error err;
    struct sd_img *img;
    int ret = sd_img_open(&img, path, &opts, &err);

    if (ret < 0)
        die("open %s: %s", path, err.msg[0] ? err.msg : strerror(-ret));
    return img;
}
