/* SPDX-License-Identifier: MIT */
/*
 * What img-writer's two modes share: the journal and the data pattern.
 *
 * The journal is a text file, one line per event, each appended with a
 * single write(2) on an O_APPEND descriptor:
 *
 *   S <run> <op> <kind> <offset> <length>   before the op is submitted
 *   C <run> <op>                            after it completed successfully
 *   FS <run> <flush>                        before a flush is submitted
 *   FC <run> <flush> <log-offset>           after it completed; log-offset is
 *                                           the write log's size then (or 0)
 *
 * kind is w (write), z (zero), u (zero with MAY_UNMAP) or d (discard).
 * A write by op <op> of run <run> stores pattern_fill(writer_key(run, op))
 * so a verifier can recompute every byte it put anywhere.
 */
#ifndef SENDENSE_IMG_WRITER_H
#define SENDENSE_IMG_WRITER_H

#include <stdint.h>

#include "tool-util.h"

static inline uint64_t writer_key(uint64_t run, uint64_t op)
{
    return mix64((run << 32) ^ op ^ 0x5e4d5e4dULL);
}

struct verify_args {
    const char *image_path;
    const char *journal_path;
    const char *initial_path;  /* raw content before the first run */
    uint64_t cut_offset;       /* power-loss mode: log offset of the cut */
    bool have_cut;
};

/* writer-verify.c: exits 0 when the image holds what the journal says. */
int writer_verify(const struct verify_args *a);

#endif
