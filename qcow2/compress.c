/* SPDX-License-Identifier: MIT */
#include "config.h"
#include "qcow2-format.h"
#include <errno.h>
int qcow2_decompress(enum qcow2_compression type, const void *src,
                     uint64_t src_len, void *dst, uint64_t dst_len)
{
    return -ENOTSUP;
}
