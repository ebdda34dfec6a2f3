/* SPDX-License-Identifier: MIT */
/* Who works on which VM: jobs and tasks (daemon-tasks.h). A handful of
 * entries at any time, so a plain array under one lock. */
#include "config.h"

#include "catalog/daemon-tasks.h"
#include "catalog/jobs.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void sdd_holds_init(struct sdd_holds *h)
{
    *h = (struct sdd_holds){ 0 };
    pthread_mutex_init(&h->lock, NULL);
}

static void hold_free(struct sdd_hold *e)
{
    free(e->vm);
    free(e->what);
}

void sdd_holds_destroy(struct sdd_holds *h)
{
    for (size_t i = 0; i < h->n; i++)
        hold_free(&h->v[i]);
    free(h->v);
    pthread_mutex_destroy(&h->lock);
    *h = (struct sdd_holds){ 0 };
}

/* Two jobs of one VM are jobs.c's to refuse, with its own message. */
static bool clash(enum sdd_hold_kind a, enum sdd_hold_kind b)
{
    return a == SDD_HOLD_WRITE || b == SDD_HOLD_WRITE;
}

/* The first hold of vm that does not go with kind. */
static struct sdd_hold *find_clash(struct sdd_holds *h, const char *vm,
                                   enum sdd_hold_kind kind)
{
    for (size_t i = 0; i < h->n; i++)
        if (strcmp(h->v[i].vm, vm) == 0 && clash(h->v[i].kind, kind))
            return &h->v[i];
    return NULL;
}

static int busy(const struct sdd_hold *e, const char *vm,
                struct sd_error *err)
{
    if (e->kind == SDD_HOLD_JOB)
        return sd_error_set(err, -EBUSY, "busy: VM %s has a running job",
                            vm);
    return sd_error_set(err, -EBUSY, "busy: VM %s: %s is running", vm,
                        e->what);
}

static int append(struct sdd_holds *h, const char *vm, const char *what,
                  enum sdd_hold_kind kind)
{
    struct sdd_hold e = { .vm = strdup(vm), .what = strdup(what),
                          .kind = kind };

    if (!e.vm || !e.what)
        goto nomem;
    if (h->n == h->cap) {
        size_t cap = h->cap ? 2 * h->cap : 8;
        struct sdd_hold *v = realloc(h->v, cap * sizeof(*v));

        if (!v)
            goto nomem;
        h->v = v;
        h->cap = cap;
    }
    h->v[h->n++] = e;
    return 0;
nomem:
    hold_free(&e);
    return -ENOMEM;
}

int sdd_hold_take(struct sdd_holds *h, const char *vm, const char *what,
                  enum sdd_hold_kind kind, struct sd_error *err)
{
    const struct sdd_hold *e;
    int ret;

    pthread_mutex_lock(&h->lock);
    e = find_clash(h, vm, kind);
    ret = e ? busy(e, vm, err) : append(h, vm, what, kind);
    pthread_mutex_unlock(&h->lock);
    if (ret == -ENOMEM)
        sd_error_set(err, ret, "out of memory");
    return ret;
}

static void remove_at(struct sdd_holds *h, size_t i)
{
    hold_free(&h->v[i]);
    h->v[i] = h->v[--h->n];
}

void sdd_hold_drop(struct sdd_holds *h, const char *vm, const char *what)
{
    pthread_mutex_lock(&h->lock);
    for (size_t i = 0; i < h->n; i++)
        if (strcmp(h->v[i].vm, vm) == 0 && strcmp(h->v[i].what, what) == 0) {
            remove_at(h, i);
            break;
        }
    pthread_mutex_unlock(&h->lock);
}

void sdd_holds_sync_jobs(struct sdd_holds *h, const struct sdd_jobs *jobs)
{
    pthread_mutex_lock(&h->lock);
    for (size_t i = h->n; i-- > 0;)
        if (h->v[i].kind == SDD_HOLD_JOB &&
            !sdd_jobs_running_for(jobs, h->v[i].vm))
            remove_at(h, i);
    pthread_mutex_unlock(&h->lock);
}
