/* SPDX-License-Identifier: MIT */
/*
 * backup.start: check the request, record the VM (vm.json), and per
 * disk pick the parent, create the image, write the running sidecar and
 * add the export. Every step that changes something sets a flag in the
 * job (or in struct start), and undo_start() reverses exactly the flagged
 * steps, newest first, so a start that fails anywhere leaves the
 * repository and sendense-nbd as they were.
 */
#include "config.h"

#include "catalog/jobs-internal.h"

#include "catalog/layout.h"
#include "catalog/names.h"
#include "catalog/repo.h"
#include "common/atomic-file.h"
#include "qcow2/image.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

struct start {
    struct sdd_jobs *jobs;
    const struct sdd_start_req *req;
    const struct sdd_repository *repo;
    struct cat_repo *catalog;       /* the scan this start works from */
    struct cat_vm *vm;              /* NULL for a VM new to the repo */
    char *vm_dir;
    bool vm_dir_created;            /* the folder was not there */
    bool vm_file_existed;           /* vm.json was there before */
    bool vm_written;
    struct sdd_job *job;
};

static bool path_exists(const char *path)
{
    struct stat st;

    return lstat(path, &st) == 0;
}

/* --- checks, before anything changes ---------------------------------- */

static int check_disks(const struct sdd_start_req *req, struct sd_error *err)
{
    unsigned index;

    if (req->ndisks == 0 || req->ndisks > SDD_START_DISKS_MAX)
        return sd_error_set(err, -EINVAL, "disks: expected 1..%d disks",
                            SDD_START_DISKS_MAX);
    for (size_t i = 0; i < req->ndisks; i++) {
        const struct sdd_start_disk *d = &req->disks[i];
        int ret = cat_disk_name_parse(d->name, &index, err);

        if (ret < 0)
            return ret;
        if (d->size == 0 || d->size % 512 || d->size > (UINT64_C(1) << 62))
            return sd_error_set(err, -EINVAL, "disk %s: size must be a "
                                "positive multiple of 512 up to 2^62",
                                d->name);
        for (size_t j = 0; j < i; j++)
            if (strcmp(req->disks[j].name, d->name) == 0)
                return sd_error_set(err, -EINVAL, "disk %s is listed twice",
                                    d->name);
    }
    return 0;
}

static int check_request(struct start *st, struct sd_error *err)
{
    const struct sdd_start_req *req = st->req;
    const struct sdd_job *running;
    int ret = cat_name_check("VM context id", req->vm, err);

    if (ret == 0 && req->display_name)
        ret = cat_text_check("display name", req->display_name,
                             CAT_LABEL_MAX, err);
    if (ret == 0)
        ret = check_disks(req, err);
    if (ret < 0)
        return ret;
    st->repo = sdd_config_repo(st->jobs->cfg, req->repository);
    if (!st->repo)
        return sd_error_set(err, -ENOENT, "no repository named \"%s\"",
                            req->repository);
    running = sdd_jobs_running_for(st->jobs, req->vm);
    if (running)
        return sd_error_set(err, -EBUSY, "VM %s already has a running "
                            "backup job (%s)", req->vm, running->id);
    return 0;
}

/* --- the VM ----------------------------------------------------------- */

static const struct sdd_start_disk *requested(const struct sdd_start_req *req,
                                              const char *name)
{
    for (size_t i = 0; i < req->ndisks; i++)
        if (strcmp(req->disks[i].name, name) == 0)
            return &req->disks[i];
    return NULL;
}

/* The VM's record after this start: its disks as they were, sizes and
 * labels updated from the request, new disks added, its own retention
 * rules kept. */
static int build_vm_info(const struct start *st, struct cat_vm_info **out,
                         struct sd_error *err)
{
    const struct cat_vm_info *old = st->vm ? st->vm->info : NULL;
    const struct sdd_start_req *req = st->req;
    const char *display = req->display_name ? req->display_name
                          : old ? old->display_name : NULL;
    struct cat_vm_info *info = NULL;
    int ret = cat_vm_info_new(req->vm, display,
                              old ? old->created_at : jobs_now(), &info, err);

    if (ret == 0 && old)
        info->retention = old->retention;
    for (size_t i = 0; ret == 0 && old && i < old->ndisks; i++) {
        const struct cat_vm_disk *d = &old->disks[i];
        const struct sdd_start_disk *r = requested(req, d->name);

        ret = cat_vm_info_add_disk(info, d->name, r ? r->size
                                   : d->virtual_size,
                                   r && r->label ? r->label : d->label, err);
    }
    for (size_t i = 0; ret == 0 && i < req->ndisks; i++) {
        const struct sdd_start_disk *r = &req->disks[i];

        if (!cat_vm_info_disk(info, r->name))
            ret = cat_vm_info_add_disk(info, r->name, r->size, r->label, err);
    }
    if (ret < 0) {
        cat_vm_info_free(info);
        return ret;
    }
    *out = info;
    return 0;
}

static int write_vm(struct start *st, struct sd_error *err)
{
    struct cat_vm_info *info = NULL;
    char *file;
    int ret;

    st->vm_dir = cat_path_join(st->repo->path, st->req->vm, NULL);
    file = st->vm_dir ? cat_path_join(st->vm_dir, CAT_VM_FILE, NULL) : NULL;
    if (!file)
        return sd_error_set(err, -ENOMEM, "out of memory");
    st->vm_dir_created = !path_exists(st->vm_dir);
    st->vm_file_existed = path_exists(file);
    free(file);
    ret = build_vm_info(st, &info, err);
    if (ret == 0)
        ret = cat_repo_write_vm(st->repo->path, info, err);
    /* Even a failed write may have created the folder or replaced the
     * file: undo looks at the flags above either way. */
    st->vm_written = true;
    cat_vm_info_free(info);
    return ret;
}

/* --- one disk --------------------------------------------------------- */

static int pick_parent(const struct start *st, const char *disk,
                       const struct cat_backup **out, struct sd_error *err)
{
    const struct cat_disk *d = st->vm ? cat_vm_disk(st->vm, disk) : NULL;
    const struct cat_backup *b = d ? cat_disk_latest_completed(d) : NULL;

    *out = NULL;
    if (st->req->type == SDD_JOB_FULL)
        return 0;
    if (!b && st->req->type == SDD_JOB_INCREMENTAL)
        return sd_error_set(err, -ENOENT, "disk %s of VM %s has no completed "
                            "backup to base an incremental on", disk,
                            st->req->vm);
    *out = b;
    return 0;
}

static int create_image(struct sdd_job_disk *jd, struct sd_error *err)
{
    bool incr = jd->sc->type == CAT_TYPE_INCR;
    struct sd_img_create_opts o = {
        .format = SD_FMT_QCOW2,
        .size = jd->virtual_size,
        .version = 3,
        /* Subclusters: a 4 KiB write into the overlay allocates without
         * copying the rest of the backing cluster (DESIGN.md). */
        .extended_l2 = incr,
        .backing_file = incr ? jd->sc->backing_file : NULL,
        .backing_format = incr ? SD_FMT_QCOW2 : SD_FMT_AUTO,
    };
    int ret = sd_img_create(jd->image_path, &o, err);

    /* A failed create may have left a partial file behind. */
    jd->image_created = true;
    if (ret < 0)
        sd_error_prefix(err, "disk %s: creating %s", jd->name,
                        jd->image_path);
    return ret;
}

static int make_sidecar(const struct start *st, struct sdd_job_disk *jd,
                        const struct cat_backup *parent, struct sd_error *err)
{
    enum cat_backup_type type = parent ? CAT_TYPE_INCR : CAT_TYPE_FULL;
    int ret = cat_sidecar_new(type, st->job->stamp,
                              parent ? parent->sc->id : NULL, &jd->sc, err);

    if (ret < 0)
        return ret;
    jd->sc->started_at = st->job->started_at;
    jd->sc->virtual_size = jd->virtual_size;
    if (cat_sidecar_set_string(&jd->sc->job_id, st->job->id) < 0 ||
        (parent && parent->sc->change_id &&
         !(jd->parent_change_id = strdup(parent->sc->change_id))))
        return sd_error_set(err, -ENOMEM, "out of memory");
    jd->image_path = cat_path_join(jd->dir, jd->sc->id, CAT_IMAGE_EXT);
    jd->sidecar_path = cat_path_join(jd->dir, jd->sc->id, CAT_SIDECAR_EXT);
    if (!jd->image_path || !jd->sidecar_path)
        return sd_error_set(err, -ENOMEM, "out of memory");
    return 0;
}

static int add_export(const struct start *st, struct sdd_job_disk *jd,
                      struct sd_error *err)
{
    const struct sdd_config *cfg = st->jobs->cfg;
    int ret = cat_export_name(st->req->vm, jd->index,
                              jd->sc->type == CAT_TYPE_INCR, st->job->stamp,
                              jd->export_name, err);

    if (ret == 0)
        ret = nbdc_export_add(cfg->nbd_control_socket, jd->export_name,
                              jd->image_path, "qcow2", false, err);
    if (ret < 0)
        return ret;
    jd->export_added = true;
    jd->uri = sdd_config_export_uri(cfg, jd->export_name);
    return jd->uri ? 0 : sd_error_set(err, -ENOMEM, "out of memory");
}

/* Everything about a disk that can be refused, before anything changes:
 * its index and its parent. */
static int plan_disk(const struct start *st, struct sdd_job_disk *jd,
                     const struct sdd_start_disk *rd,
                     const struct cat_backup **parent, struct sd_error *err)
{
    int ret = cat_disk_name_parse(rd->name, &jd->index, err);

    snprintf(jd->name, sizeof(jd->name), "%s", rd->name);
    jd->virtual_size = rd->size;
    if (ret == 0)
        ret = pick_parent(st, rd->name, parent, err);
    return ret;
}

static int start_disk(struct start *st, struct sdd_job_disk *jd,
                      const struct cat_backup *parent, struct sd_error *err)
{
    char *dir = cat_path_join(st->vm_dir, jd->name, NULL);
    int ret;

    if (!dir)
        return sd_error_set(err, -ENOMEM, "out of memory");
    jd->dir_created = !path_exists(dir);
    free(dir);
    ret = cat_repo_make_disk_dir(st->repo->path, st->req->vm, jd->name,
                                 &jd->dir, err);
    if (ret == 0)
        ret = make_sidecar(st, jd, parent, err);
    if (ret == 0)
        ret = create_image(jd, err);
    if (ret == 0) {
        ret = cat_sidecar_write(jd->sc, jd->dir, err);
        jd->sidecar_written = true;
    }
    if (ret == 0)
        ret = add_export(st, jd, err);
    return ret;
}

/* --- undo ------------------------------------------------------------- */

static void undo_disk(const struct start *st, struct sdd_job_disk *jd)
{
    struct sd_error ignored = { 0 };

    /* Best effort: each step is tried whatever the previous one did;
     * the caller reports the error that made us undo. */
    if (jd->export_added)
        (void)nbdc_export_remove(st->jobs->cfg->nbd_control_socket,
                                 jd->export_name, false, &ignored);
    if (jd->sidecar_written)
        (void)sd_durable_remove(jd->sidecar_path, &ignored);
    if (jd->image_created)
        (void)sd_durable_remove(jd->image_path, &ignored);
    if (jd->dir_created && jd->dir && rmdir(jd->dir) == 0)
        (void)sd_fsync_dir(st->vm_dir, &ignored);
}

static void undo_vm(const struct start *st)
{
    struct sd_error ignored = { 0 };
    char *file;

    if (!st->vm_written)
        return;
    if (st->vm && st->vm_file_existed) {
        (void)cat_repo_write_vm(st->repo->path, st->vm->info, &ignored);
        return;
    }
    file = cat_path_join(st->vm_dir, CAT_VM_FILE, NULL);
    if (file && !st->vm_file_existed)
        (void)sd_durable_remove(file, &ignored);
    free(file);
    if (st->vm_dir_created && rmdir(st->vm_dir) == 0)
        (void)sd_fsync_dir(st->repo->path, &ignored);
}

static void undo_start(const struct start *st)
{
    for (size_t i = st->job->ndisks; i-- > 0;)
        undo_disk(st, &st->job->disks[i]);
    undo_vm(st);
}

/* --- the job ---------------------------------------------------------- */

static int new_job(struct start *st, struct sd_error *err)
{
    struct sdd_job *job = calloc(1, sizeof(*job));
    char stamp[CAT_STAMP_LEN + 1];
    uint32_t rnd = 0;
    cat_time_t now = jobs_now();

    if (!job)
        return sd_error_set(err, -ENOMEM, "out of memory");
    st->job = job;
    job->disks = calloc(st->req->ndisks, sizeof(*job->disks));
    if (!job->disks)
        return sd_error_set(err, -ENOMEM, "out of memory");
    if (getrandom(&rnd, sizeof(rnd), 0) != sizeof(rnd))
        return sd_error_set(err, -EIO, "getrandom: %s", strerror(errno));
    job->stamp = cat_next_stamp(now, st->vm ? cat_vm_last_stamp(st->vm) : -1);
    if (cat_stamp_format(job->stamp, stamp) < 0)
        return sd_error_set(err, -EINVAL, "the clock is out of range");
    snprintf(job->id, sizeof(job->id), "job-%s-%08x", stamp, rnd);
    snprintf(job->vm, sizeof(job->vm), "%s", st->req->vm);
    job->repo = st->repo;
    job->type = st->req->type;
    job->phase = SDD_PHASE_RUNNING;
    job->started_at = now;
    job->ended_at = -1;
    jobs_monotonic(&job->last_write);
    return 0;
}

int sdd_jobs_start(struct sdd_jobs *jobs, const struct sdd_start_req *req,
                   struct sdd_job **out, struct sd_error *err)
{
    struct start st = { .jobs = jobs, .req = req };
    const struct cat_backup **parents = NULL;
    int ret = check_request(&st, err);

    if (ret == 0)
        ret = cat_repo_open(st.repo->path, CAT_REPO_CREATE, &st.catalog, err);
    if (ret < 0)
        return ret;
    st.vm = cat_repo_vm(st.catalog, req->vm);
    parents = calloc(req->ndisks, sizeof(*parents));
    ret = parents ? new_job(&st, err)
                  : sd_error_set(err, -ENOMEM, "out of memory");
    for (size_t i = 0; ret == 0 && i < req->ndisks; i++)
        ret = plan_disk(&st, &st.job->disks[i], &req->disks[i], &parents[i],
                        err);
    if (ret == 0)
        ret = write_vm(&st, err);
    for (size_t i = 0; ret == 0 && i < req->ndisks; i++) {
        st.job->ndisks = i + 1;
        ret = start_disk(&st, &st.job->disks[i], parents[i], err);
    }
    if (ret < 0 && st.job) {
        undo_start(&st);
        job_free(st.job);
    } else if (ret == 0) {
        jobs_insert(jobs, st.job);
        *out = st.job;
    }
    free(parents);
    free(st.vm_dir);
    cat_repo_free(st.catalog);
    return ret;
}
