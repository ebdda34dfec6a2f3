/* SPDX-License-Identifier: MIT */
/*
 * Creating images (qcow2-create.c) and checking QCOW2 images the way
 * `qemu-img check` does (qcow2-check.c). Both work on the file directly
 * with synchronous blkfile calls; neither needs an open struct sd_img.
 *
 * ---- What the CLI prints for `sendense-img check` -------------------
 *
 * Text (as qemu-img 7.2 does):
 *
 *   1. every string of res->messages, one per line, in order; messages at
 *      index >= res->recheck_first_message come from the double check
 *      after a repair. If res->messages_dropped is not 0, a line
 *      "(N more messages not shown)" after the messages.
 *   2. when res->repaired:
 *        "The following inconsistencies were found and repaired:\n\n"
 *        "    %llu leaked clusters\n    %llu corruptions\n\n"
 *        "Double checking the fixed image now...\n"
 *      (leaks_fixed, corruptions_fixed), printed before the messages of
 *      the double check.
 *   3. if corruptions, leaks and check_errors are all 0:
 *        "No errors were found on the image.\n"
 *      else, for each that is not 0:
 *        "\n%llu errors were found on the image.\n"
 *        "Data may be corrupted, or further writes to the image may "
 *        "corrupt it.\n"
 *        "\n%llu leaked clusters were found on the image.\n"
 *        "This means waste of disk space, but no harm to data.\n"
 *        "\n%llu internal errors have occurred during the check.\n"
 *   4. if total_clusters and allocated_clusters are not 0:
 *        "%llu/%llu = %0.2f%% allocated, %0.2f%% fragmented, "
 *        "%0.2f%% compressed clusters\n"
 *      (allocated/total, fragmented and compressed as % of allocated)
 *   5. if image_end_offset: "Image end offset: %llu\n"
 *
 * JSON (qemu-img's field names): "filename", "format": "qcow2",
 * "check-errors", "image-end-offset", "total-clusters",
 * "allocated-clusters", "fragmented-clusters", "compressed-clusters",
 * and, only when not 0: "corruptions", "leaks", "corruptions-fixed",
 * "leaks-fixed".
 *
 * Exit status (qemu-img's): 0 clean, 1 the check could not be completed
 * (qcow2_check returned < 0, or check_errors != 0), 2 corruptions,
 * 3 leaks only. With -r leaks the status reflects the image after repair.
 */
#ifndef SENDENSE_QCOW2_CHECK_H
#define SENDENSE_QCOW2_CHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "image.h"

struct sd_error;

/* ---- qcow2-create.c ------------------------------------------------ */

/*
 * Create a QCOW2 image at path, truncating a file that is already there
 * (as qemu-img create does). opts->format is ignored. The size is rounded
 * up to a multiple of 512; size 0 with a backing file takes the backing
 * file's virtual size (a raw backing file's size). A relative backing
 * file name is resolved against the folder of path when it is probed.
 * Layout: header cluster, refcount table, refcount blocks, L1 table and,
 * with preallocate_metadata, one zeroed L2 table per L1 entry, all with
 * refcount 1. The file is fsynced before returning 0.
 */
int qcow2_create(const char *path, const struct sd_img_create_opts *opts,
                 struct sd_error *err);

/* Create (or truncate) a sparse raw file of size bytes, rounded up to a
 * multiple of 512, and fsync it. */
int raw_create(const char *path, uint64_t size, struct sd_error *err);

/* ---- qcow2-check.c ------------------------------------------------- */

struct qcow2_check_opts {
    /* Lower the stored refcount of leaked clusters to the computed one,
     * fsync, then check again. Refused (and reported in the messages)
     * when the image has corruptions: repair of corruptions is not
     * supported, and a corrupt image's computed refcounts cannot be
     * trusted enough to free clusters. */
    bool repair_leaks;
    /* Keep at most this many messages (0: 1000); counts stay exact. */
    unsigned max_messages;
};

struct qcow2_check_result {
    uint64_t corruptions;         /* refcount too small, bad entries, ... */
    uint64_t leaks;               /* stored refcount > computed */
    uint64_t check_errors;        /* I/O errors, limits hit: incomplete */
    uint64_t corruptions_fixed;   /* always 0: not supported */
    uint64_t leaks_fixed;
    uint64_t image_end_offset;    /* end of the last used cluster */
    uint64_t total_clusters;      /* guest clusters of the virtual disk */
    uint64_t allocated_clusters;  /* guest clusters the active L1 maps */
    uint64_t fragmented_clusters;
    uint64_t compressed_clusters;
    bool repaired;                /* leaks were repaired and re-checked */
    bool dirty;                   /* header dirty bit set (lazy refcounts) */
    bool corrupt_bit;             /* header corrupt bit set */

    /* Human-readable lines like qemu-img's, without newline. */
    char **messages;
    size_t nb_messages;
    size_t recheck_first_message; /* first message of the double check */
    uint64_t messages_dropped;    /* past opts->max_messages */
};

/*
 * Check the QCOW2 image at path. Returns 0 when the check ran (its
 * findings are in *res, which the caller frees with
 * qcow2_check_result_free even on error), or a negative errno with err
 * set when the image cannot be checked at all (not qcow2, header
 * invalid, file too large to check, I/O error on the header).
 */
int qcow2_check(const char *path, const struct qcow2_check_opts *opts,
                struct qcow2_check_result *res, struct sd_error *err);

void qcow2_check_result_free(struct qcow2_check_result *res);

#endif
