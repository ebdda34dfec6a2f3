/* SPDX-License-Identifier: MIT */
/*
 * Consolidation (consolidate.h): a journal, then steps that are each
 * safe to repeat, so that recovery is "run the journal again from its
 * phase". Names below: F the old full, I the incremental merged into
 * it, N the new full (named after I's stamp), C the children of I.
 *
 *   commit mode                         synthetic mode
 *   journal {phase: work}               journal {phase: work}
 *   commit I into F (I kept as is)      convert I's chain to a temp file,
 *   journal {phase: switch}               fsync, rename to N
 *   link F's file as N                  N's sidecar
 *   N's sidecar                         journal {phase: switch}
 *   -- both: rebase -u each C onto N, then C's sidecar; remove the
 *      sidecars of F and I, then their files; remove the journal.
 *
 * Recovery: commit mode always goes forward (once the commit started,
 * F no longer holds its own point); synthetic mode before its switch
 * goes back (N removed, nothing else was touched), after it forward.
 * Why each order is safe: docs/CONSOLIDATION.md.
 */
#include "config.h"

#include "catalog/checksum.h"
#include "catalog/consolidate.h"
#include "catalog/layout.h"
#include "common/atomic-file.h"
#include "qcow2/img-ops.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum {
    JOURNAL_CHILDREN_MAX = 4096,
};

enum journal_phase { PHASE_WORK, PHASE_SWITCH };

struct journal {
    int mode;                       /* enum cat_consolidation or MODE_MERGE */
    enum journal_phase phase;
    char full[CAT_ID_LEN + 1], incr[CAT_ID_LEN + 1], new_full[CAT_ID_LEN + 1];
    char (*children)[CAT_ID_LEN + 1];
    size_t nchildren;
};

/* The journal's modes: the two consolidations, and "merge", the delete of
 * an incremental by merging it into its children (cat_merge_incremental;
 * never a repository's mode, so not in enum cat_consolidation). */
#define MODE_MERGE 2
static const char *const mode_names[] = { "commit", "synthetic", "merge" };
static const char *const phase_names[] = { "work", "switch" };

const char *cat_consolidation_name(enum cat_consolidation mode)
{
    return mode_names[mode];
}

int cat_consolidation_parse(const char *text, enum cat_consolidation *out)
{
    for (int i = 0; i < 2; i++)
        if (strcmp(text, mode_names[i]) == 0) {
            *out = (enum cat_consolidation)i;
            return 0;
        }
    return -EINVAL;
}

void cat_test_point(const char *step)
{
    const char *at = getenv("SENDENSED_TEST_CRASH_AT");
    const char *pause = getenv("SENDENSED_TEST_PAUSE_AT");
    const char *file = getenv("SENDENSED_TEST_PAUSE_FILE");
    int fd;

    if (at && strcmp(at, step) == 0)
        abort();
    if (!pause || !file || strcmp(pause, step) != 0)
        return;
    /* Only one at a time pauses: others pass while the file exists. */
    fd = open(file, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd >= 0)
        close(fd);
    while (fd >= 0 && access(file, F_OK) == 0)
        usleep(20 * 1000);
}

/* --- files ------------------------------------------------------------ */

static char *file_of(const char *dir, const char *id, const char *ext,
                     struct sd_error *err)
{
    char *p = cat_path_join(dir, id, ext);

    if (!p)
        sd_error_set(err, -ENOMEM, "out of memory");
    return p;
}

static bool file_exists(const char *dir, const char *id, const char *ext)
{
    char *p = cat_path_join(dir, id, ext);
    bool yes = p && access(p, F_OK) == 0;

    free(p);
    return yes;
}

static int remove_file(const char *dir, const char *id, const char *ext,
                       struct sd_error *err)
{
    char *p = file_of(dir, id, ext, err);
    int ret = p ? sd_durable_remove(p, err) : -ENOMEM;

    free(p);
    if (ret == -ENOENT) {
        sd_error_clear(err);
        ret = 0;
    }
    return ret;
}

static int fsync_path(const char *path, struct sd_error *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    int ret = 0;

    if (fd < 0)
        return sd_error_set(err, -errno, "%s: %s", path, strerror(errno));
    if (fsync(fd) < 0)
        ret = sd_error_set(err, -errno, "fsync %s: %s", path,
                           strerror(errno));
    close(fd);
    return ret;
}

/* --- the journal ------------------------------------------------------ */

static int journal_write(const char *dir, const struct journal *j,
                         struct sd_error *err)
{
    json_t *kids = json_array(), *o;
    char *path = NULL, *text = NULL;
    int ret = -ENOMEM;

    if (!kids)
        goto out;
    for (size_t i = 0; i < j->nchildren; i++)
        if (json_array_append_new(kids, json_string(j->children[i])) < 0)
            goto out;
    o = json_pack("{s:i, s:s, s:s, s:s, s:s, s:s, s:o*}", "format", 1,
                  "mode", mode_names[j->mode], "phase", phase_names[j->phase],
                  "full", j->full, "incr", j->incr, "new_full", j->new_full,
                  "children", kids);
    kids = NULL;
    text = o ? json_dumps(o, JSON_INDENT(2)) : NULL;
    json_decref(o);
    path = cat_path_join(dir, CAT_CONSOLIDATE_JOURNAL, "");
    if (text && path)
        ret = sd_atomic_write(path, text, strlen(text), 0644, err);
out:
    if (ret == -ENOMEM && err->code == 0)
        sd_error_set(err, -ENOMEM, "out of memory");
    json_decref(kids);
    free(text);
    free(path);
    return ret;
}

static int copy_id(json_t *v, char out[CAT_ID_LEN + 1])
{
    enum cat_id_kind kind;
    cat_time_t stamp;
    const char *s = json_string_value(v);

    if (!s || cat_id_parse(s, &kind, &stamp) < 0)
        return -EINVAL;
    memcpy(out, s, CAT_ID_LEN + 1);
    return 0;
}

static int journal_parse(json_t *o, struct journal *j)
{
    json_t *kids = json_object_get(o, "children");
    int mode = -1, phase = -1;
    const char *m = json_string_value(json_object_get(o, "mode"));
    const char *p = json_string_value(json_object_get(o, "phase"));

    for (int i = 0; i < 3; i++)
        if (m && strcmp(m, mode_names[i]) == 0)
            mode = i;
    for (int i = 0; i < 2; i++)
        if (p && strcmp(p, phase_names[i]) == 0)
            phase = i;
    if (mode < 0 || phase < 0 || !json_is_array(kids) ||
        json_array_size(kids) > JOURNAL_CHILDREN_MAX ||
        copy_id(json_object_get(o, "full"), j->full) < 0 ||
        copy_id(json_object_get(o, "incr"), j->incr) < 0 ||
        copy_id(json_object_get(o, "new_full"), j->new_full) < 0)
        return -EINVAL;
    j->mode = (enum cat_consolidation)mode;
    j->phase = (enum journal_phase)phase;
    j->nchildren = json_array_size(kids);
    j->children = calloc(j->nchildren + 1, sizeof(*j->children));
    if (!j->children)
        return -ENOMEM;
    for (size_t i = 0; i < j->nchildren; i++)
        if (copy_id(json_array_get(kids, i), j->children[i]) < 0)
            return -EINVAL;
    return 0;
}

/* 0 and *j filled, 1 when there is no journal. */
static int journal_read(const char *dir, struct journal *j,
                        struct sd_error *err)
{
    char *path = cat_path_join(dir, CAT_CONSOLIDATE_JOURNAL, "");
    json_error_t jerr;
    json_t *o;
    int ret;

    if (!path)
        return sd_error_set(err, -ENOMEM, "out of memory");
    if (access(path, F_OK) < 0 && errno == ENOENT) {
        free(path);
        return 1;
    }
    o = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    ret = o ? journal_parse(o, j) : -EINVAL;
    if (ret < 0)
        sd_error_set(err, ret, "%s: %s", path, o ? "not a consolidation "
                     "journal" : jerr.text);
    json_decref(o);
    free(path);
    return ret;
}

/* --- steps ------------------------------------------------------------ */

static int commit_step(const char *dir, const struct journal *j,
                       struct sd_error *err)
{
    struct sd_commit_opts o = { .format = SD_FMT_QCOW2, .keep_top = true };
    char *top = file_of(dir, j->incr, CAT_IMAGE_EXT, err);
    int ret = top ? sd_img_commit(top, &o, err) : -ENOMEM;

    free(top);
    return ret;
}

/* Give F's file N's name too; F's name goes with the other removals. */
static int link_step(const char *dir, const struct journal *j,
                     struct sd_error *err)
{
    char *from = file_of(dir, j->full, CAT_IMAGE_EXT, err);
    char *to = from ? file_of(dir, j->new_full, CAT_IMAGE_EXT, err) : NULL;
    int ret = to ? 0 : -ENOMEM;

    if (ret == 0 && access(to, F_OK) < 0) {
        if (link(from, to) < 0)
            ret = sd_error_set(err, -errno, "link %s to %s: %s", from, to,
                               strerror(errno));
        else
            ret = sd_fsync_dir(dir, err);
    }
    free(from);
    free(to);
    return ret;
}

/* A hidden temporary name (common/atomic-file.h) that the repository
 * scan reports and repo.cleanup removes if a crash leaves it. */
static char *temp_image(const char *dir, const char *id)
{
    char *p = NULL;

    if (asprintf(&p, "%s/.%s%s.merged.tmp", dir, id, CAT_IMAGE_EXT) < 0)
        return NULL;
    return p;
}

static int convert_step(const char *dir, const struct journal *j,
                        struct sd_error *err)
{
    struct sd_convert_opts o = {
        .src_format = SD_FMT_QCOW2, .dst_format = SD_FMT_QCOW2,
        .create = { .format = SD_FMT_QCOW2 },
    };
    char *src = file_of(dir, j->incr, CAT_IMAGE_EXT, err);
    char *dst = file_of(dir, j->new_full, CAT_IMAGE_EXT, err);
    char *tmp = temp_image(dir, j->new_full);
    int ret = src && dst && tmp ? 0 : sd_error_set(err, -ENOMEM, "out of "
                                                   "memory");

    if (ret == 0)
        ret = sd_img_convert(src, tmp, &o, err);
    if (ret == 0)
        ret = fsync_path(tmp, err);
    if (ret == 0 && rename(tmp, dst) < 0)
        ret = sd_error_set(err, -errno, "rename %s: %s", tmp,
                           strerror(errno));
    if (ret == 0)
        ret = sd_fsync_dir(dir, err);
    if (ret < 0 && tmp)
        (void)unlink(tmp);          /* best effort: a leftover is reported */
    free(src);
    free(dst);
    free(tmp);
    return ret;
}

static int measure(const char *dir, struct cat_sidecar *sc,
                   struct sd_error *err)
{
    struct stat s;
    char *path = file_of(dir, sc->id, CAT_IMAGE_EXT, err);
    int ret = path ? cat_checksum_record(path, sc, err) : -ENOMEM;

    if (ret == 0 && stat(path, &s) < 0)
        ret = sd_error_set(err, -errno, "%s: %s", path, strerror(errno));
    if (ret == 0)
        sc->allocated_bytes = (uint64_t)s.st_blocks * 512;
    free(path);
    return ret;
}

static int read_sidecar(const char *dir, const char *id,
                        struct cat_sidecar **out, struct sd_error *err)
{
    char *path = file_of(dir, id, CAT_SIDECAR_EXT, err);
    int ret = path ? cat_sidecar_read(path, out, err) : -ENOMEM;

    free(path);
    return ret;
}

/* N's sidecar: I's point (change id, times), as a full. Written once:
 * F's and I's sidecars are removed only after it exists. */
static int new_sidecar_step(const char *dir, const struct journal *j,
                            struct sd_error *err)
{
    struct cat_sidecar *f = NULL, *sc = NULL;
    int ret;

    if (file_exists(dir, j->new_full, CAT_SIDECAR_EXT))
        return 0;
    ret = read_sidecar(dir, j->full, &f, err);
    if (ret == 0)
        ret = read_sidecar(dir, j->incr, &sc, err);
    if (ret == 0) {
        memcpy(sc->id, j->new_full, sizeof(sc->id));
        sc->type = j->mode == CAT_CONSOLIDATE_COMMIT
                 ? CAT_TYPE_FULL : CAT_TYPE_SYNTHETIC_FULL;
        sc->parent[0] = '\0';
        sc->backing_file[0] = '\0';
        snprintf(sc->image, sizeof(sc->image), "%s%s", j->new_full,
                 CAT_IMAGE_EXT);
        sc->bytes_written += f->bytes_written;
        ret = measure(dir, sc, err);
    }
    if (ret == 0)
        ret = cat_sidecar_write(sc, dir, err);
    cat_sidecar_free(f);
    cat_sidecar_free(sc);
    return ret;
}

/* C's header first (its content is the same through N as through I),
 * then its sidecar; both idempotent. */
static int repoint_child(const char *dir, const struct journal *j,
                         const char *child, struct sd_error *err)
{
    char backing[CAT_IMAGE_NAME_LEN + 1];
    struct sd_rebase_opts o = { .format = SD_FMT_QCOW2, .backing = backing,
                                .backing_format = SD_FMT_QCOW2,
                                .unsafe = true };
    struct cat_sidecar *sc = NULL;
    char *img = file_of(dir, child, CAT_IMAGE_EXT, err);
    int ret = img ? 0 : -ENOMEM;

    snprintf(backing, sizeof(backing), "%s%s", j->new_full, CAT_IMAGE_EXT);
    if (ret == 0 && access(img, F_OK) == 0)
        ret = sd_img_rebase(img, &o, err);
    if (ret == 0)
        ret = read_sidecar(dir, child, &sc, err);
    if (ret == 0 && strcmp(sc->parent, j->new_full) != 0) {
        memcpy(sc->parent, j->new_full, sizeof(sc->parent));
        memcpy(sc->backing_file, backing, sizeof(sc->backing_file));
        ret = cat_sidecar_write(sc, dir, err);
    }
    cat_sidecar_free(sc);
    free(img);
    return ret;
}

/* Sidecars first: from then on F and I are out of the catalog, and
 * their files are leftovers this step (or cleanup) removes. */
static int remove_old(const char *dir, const struct journal *j,
                      struct sd_error *err)
{
    int ret = remove_file(dir, j->incr, CAT_SIDECAR_EXT, err);

    if (ret == 0)
        ret = remove_file(dir, j->full, CAT_SIDECAR_EXT, err);
    if (ret < 0)
        return ret;
    cat_test_point("remove-sidecars");
    ret = remove_file(dir, j->incr, CAT_IMAGE_EXT, err);
    if (ret == 0)
        ret = remove_file(dir, j->full, CAT_IMAGE_EXT, err);
    if (ret == 0)
        cat_test_point("remove-images");
    return ret;
}

static int remove_journal(const char *dir, struct sd_error *err)
{
    return remove_file(dir, CAT_CONSOLIDATE_JOURNAL, "", err);
}

/* --- the phases --------------------------------------------------------- */

static int run_switch(const char *dir, const struct journal *j,
                      struct sd_error *err)
{
    int ret = 0;

    if (j->mode == CAT_CONSOLIDATE_COMMIT) {
        ret = link_step(dir, j, err);
        if (ret == 0)
            cat_test_point("link");
        if (ret == 0)
            ret = new_sidecar_step(dir, j, err);
        if (ret == 0)
            cat_test_point("new-sidecar");
    }
    for (size_t i = 0; ret == 0 && i < j->nchildren; i++)
        ret = repoint_child(dir, j, j->children[i], err);
    if (ret == 0)
        cat_test_point("children");
    if (ret == 0)
        ret = remove_old(dir, j, err);
    if (ret == 0)
        ret = remove_journal(dir, err);
    return ret;
}

/* From a journal in phase work to one in phase switch. */
static int run_work(const char *dir, struct journal *j, struct sd_error *err)
{
    int ret;

    if (j->mode == CAT_CONSOLIDATE_COMMIT) {
        ret = commit_step(dir, j, err);
        if (ret == 0)
            cat_test_point("commit");
    } else {
        ret = convert_step(dir, j, err);
        if (ret == 0)
            cat_test_point("convert");
        if (ret == 0)
            ret = new_sidecar_step(dir, j, err);
        if (ret == 0)
            cat_test_point("new-sidecar");
    }
    if (ret < 0)
        return ret;
    j->phase = PHASE_SWITCH;
    ret = journal_write(dir, j, err);
    if (ret == 0)
        cat_test_point("switch");
    return ret;
}

/* Undo a synthetic consolidation before its switch: only N was made. */
static int roll_back(const char *dir, const struct journal *j,
                     struct sd_error *err)
{
    char *tmp = temp_image(dir, j->new_full);
    int ret = tmp ? 0 : sd_error_set(err, -ENOMEM, "out of memory");

    if (ret == 0 && unlink(tmp) < 0 && errno != ENOENT)
        ret = sd_error_set(err, -errno, "%s: %s", tmp, strerror(errno));
    free(tmp);
    if (ret == 0)
        ret = remove_file(dir, j->new_full, CAT_SIDECAR_EXT, err);
    if (ret == 0)
        ret = remove_file(dir, j->new_full, CAT_IMAGE_EXT, err);
    if (ret == 0)
        ret = remove_journal(dir, err);
    return ret;
}

/* --- merging an incremental into its children --------------------------- */

/* C gets I's data in its own layer (a safe rebase onto P, I's parent: C
 * reads the same through P), then its checksum and sidecar follow. The
 * sidecar is written last, so one that names P says C is done; a rebase
 * cut short is simply run again. */
static int merge_into_child(const char *dir, const struct journal *j,
                            const char *child, struct sd_error *err)
{
    char backing[CAT_IMAGE_NAME_LEN + 1];
    struct sd_rebase_opts o = { .format = SD_FMT_QCOW2, .backing = backing,
                                .backing_format = SD_FMT_QCOW2 };
    struct cat_sidecar *sc = NULL;
    char *img = file_of(dir, child, CAT_IMAGE_EXT, err);
    int ret = img ? read_sidecar(dir, child, &sc, err) : -ENOMEM;

    snprintf(backing, sizeof(backing), "%s%s", j->full, CAT_IMAGE_EXT);
    if (ret < 0 || strcmp(sc->parent, j->incr) != 0)
        goto out;
    if (access(img, F_OK) == 0) {
        ret = sd_img_rebase(img, &o, err);
        /* I's data now in C's own layer: its checksum changed. */
        if (ret == 0 && sc->status == CAT_STATUS_COMPLETED)
            ret = cat_checksum_record(img, sc, err);
    }
    if (ret == 0) {
        memcpy(sc->parent, j->full, sizeof(sc->parent));
        memcpy(sc->backing_file, backing, sizeof(sc->backing_file));
        ret = cat_sidecar_write(sc, dir, err);
    }
out:
    cat_sidecar_free(sc);
    free(img);
    return ret;
}

/* Every child, then I (sidecar first), then the journal. */
static int run_merge(const char *dir, const struct journal *j,
                     struct sd_error *err)
{
    int ret = 0;

    for (size_t i = 0; ret == 0 && i < j->nchildren; i++) {
        ret = merge_into_child(dir, j, j->children[i], err);
        if (ret == 0)
            cat_test_point("merge-child");
    }
    if (ret == 0)
        ret = remove_file(dir, j->incr, CAT_SIDECAR_EXT, err);
    if (ret == 0) {
        cat_test_point("merge-sidecar");
        ret = remove_file(dir, j->incr, CAT_IMAGE_EXT, err);
    }
    if (ret == 0)
        ret = remove_journal(dir, err);
    return ret;
}

static int children_of(const struct cat_disk *d, const struct cat_backup *b,
                       struct journal *j, struct sd_error *err)
{
    struct cat_backup **kids = NULL;
    size_t n = 0;
    int ret = cat_disk_children(d, b, &kids, &n);

    if (ret < 0)
        return sd_error_set(err, ret, "out of memory");
    j->nchildren = n;
    j->children = calloc(n + 1, sizeof(*j->children));
    for (size_t i = 0; j->children && i < n; i++)
        memcpy(j->children[i], kids[i]->sc->id, CAT_ID_LEN + 1);
    free(kids);
    return j->children ? 0 : sd_error_set(err, -ENOMEM, "out of memory");
}

int cat_merge_incremental(const struct cat_disk *d,
                          const struct cat_backup *incr, struct sd_error *err)
{
    struct journal j = { .mode = MODE_MERGE, .phase = PHASE_WORK };
    int ret;

    if (incr->sc->type != CAT_TYPE_INCR || !incr->parent)
        return sd_error_set(err, -EINVAL, "%s: expected an incremental "
                            "with its parent", incr->sc->id);
    ret = children_of(d, incr, &j, err);
    memcpy(j.full, incr->parent->sc->id, CAT_ID_LEN + 1);
    memcpy(j.incr, incr->sc->id, CAT_ID_LEN + 1);
    memcpy(j.new_full, incr->parent->sc->id, CAT_ID_LEN + 1);
    if (ret == 0)
        ret = journal_write(d->dir, &j, err);
    if (ret == 0) {
        cat_test_point("merge-journal");
        ret = run_merge(d->dir, &j, err);
    }
    free(j.children);
    return ret;
}

/* --- entry points ------------------------------------------------------- */

static int plan(const struct cat_disk *d, const struct cat_backup *full,
                const struct cat_backup *incr, enum cat_consolidation mode,
                struct journal *j, struct sd_error *err)
{
    struct cat_backup **kids = NULL;
    size_t n = 0;
    enum cat_id_kind kind;
    cat_time_t stamp;
    int ret = cat_disk_children(d, full, &kids, &n);

    if (ret < 0)
        return sd_error_set(err, ret, "out of memory");
    if (n != 1 || kids[0] != incr)
        ret = sd_error_set(err, -EBUSY, "%s has %zu dependant(s) besides "
                           "%s: remove failed ones first", full->sc->id,
                           n - 1, incr->sc->id);
    free(kids);
    *j = (struct journal){ .mode = (int)mode, .phase = PHASE_WORK };
    if (ret == 0)
        ret = children_of(d, incr, j, err);
    if (ret < 0)
        return ret;
    memcpy(j->full, full->sc->id, CAT_ID_LEN + 1);
    memcpy(j->incr, incr->sc->id, CAT_ID_LEN + 1);
    (void)cat_id_parse(incr->sc->id, &kind, &stamp);
    return cat_id_make(CAT_ID_FULL, stamp, j->new_full) < 0
         ? sd_error_set(err, -EINVAL, "bad stamp in %s", incr->sc->id) : 0;
}

int cat_consolidate(const struct cat_disk *d, const struct cat_backup *full,
                    const struct cat_backup *incr,
                    enum cat_consolidation mode, char *new_id,
                    struct sd_error *err)
{
    struct journal j = { 0 };
    int ret;

    if (full->sc->type == CAT_TYPE_INCR || incr->parent != full ||
        full->sc->status != CAT_STATUS_COMPLETED ||
        incr->sc->status != CAT_STATUS_COMPLETED || !full->has_image ||
        !incr->has_image)
        return sd_error_set(err, -EINVAL, "%s and %s: expected a completed "
                            "full and its completed incremental",
                            full->sc->id, incr->sc->id);
    ret = plan(d, full, incr, mode, &j, err);
    if (ret == 0)
        ret = journal_write(d->dir, &j, err);
    if (ret == 0) {
        cat_test_point("journal");
        ret = run_work(d->dir, &j, err);
    }
    if (ret < 0 && j.phase == PHASE_WORK && mode == CAT_CONSOLIDATE_SYNTHETIC) {
        struct sd_error ignored = { 0 };
        (void)roll_back(d->dir, &j, &ignored);  /* else: at the next start */
    }
    if (ret == 0)
        ret = run_switch(d->dir, &j, err);
    if (ret == 0)
        memcpy(new_id, j.new_full, CAT_ID_LEN + 1);
    free(j.children);
    return ret;
}

int cat_consolidate_recover(const char *dir, struct sd_error *err)
{
    struct journal j = { 0 };
    int ret = journal_read(dir, &j, err);

    if (ret == 0 && j.mode == MODE_MERGE)
        ret = run_merge(dir, &j, err);
    else if (ret == 0 && j.phase == PHASE_WORK &&
             j.mode == CAT_CONSOLIDATE_SYNTHETIC)
        ret = roll_back(dir, &j, err);
    else if (ret == 0 && j.phase == PHASE_WORK)
        ret = run_work(dir, &j, err);
    if (ret == 0 && j.phase == PHASE_SWITCH && j.full[0])
        ret = run_switch(dir, &j, err);
    free(j.children);
    return ret < 0 ? ret : ret == 1 ? 0 : 1;
}
