/* SPDX-License-Identifier: MIT */
/* Tasks: long chain work in a thread of its own (daemon-tasks.h). */
#include "config.h"

#include "catalog/daemon.h"
#include "common/coroutine.h"
#include "common/log.h"

#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

int sdd_tasks_init(struct sdd_tasks *ts, struct sd_error *err)
{
    *ts = (struct sdd_tasks){ .event_fd = -1 };
    pthread_mutex_init(&ts->lock, NULL);
    ts->event_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (ts->event_fd < 0)
        return sd_error_set(err, -errno, "eventfd: %s", strerror(errno));
    return 0;
}

static void *task_main(void *arg)
{
    struct sdd_task *t = arg;
    struct sdd_tasks *ts = &t->d->tasks;
    uint64_t one = 1;

    t->ret = t->run(t, &t->result, &t->err);
    if (t->ret < 0 && t->err.code == 0)
        sd_error_set(&t->err, t->ret, "%s", strerror(-t->ret));
    /* The image library's coroutine stacks are per thread. */
    co_thread_release_pool();
    pthread_mutex_lock(&ts->lock);
    t->finished = true;
    pthread_mutex_unlock(&ts->lock);
    /* Cannot fail short of a closed fd: the counter has room. */
    if (write(ts->event_fd, &one, sizeof(one)) < 0)
        sd_log_error("task %s: eventfd: %s", t->method, strerror(errno));
    return NULL;
}

static void reply(struct sdd_task *t)
{
    if (!t->req)
        return;
    if (t->ret < 0)
        (void)jsonrpc_reply_sd_error(t->req, &t->err);
    else
        (void)jsonrpc_reply_result(t->req, json_incref(t->result));
    t->req = NULL;
}

static void task_free(struct sdd_task *t)
{
    if (t->vm) {
        sdd_hold_drop(&t->d->holds, t->vm, t->method);
        free(t->vm);
    }
    if (t->free_arg)
        t->free_arg(t->arg);
    json_decref(t->result);
    free(t);
}

/* Threads start with every signal blocked: signals are the loop's
 * (signalfd), and a task must not take one meant for it. */
static int spawn(struct sdd_task *t, struct sd_error *err)
{
    sigset_t all, old;
    int ret;

    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    ret = pthread_create(&t->thread, NULL, task_main, t);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (ret != 0)
        return sd_error_set(err, -ret, "cannot start a thread for %s: %s",
                            t->method, strerror(ret));
    return 0;
}

int sdd_task_start(struct sdd_daemon *d, const struct sdd_task_spec *spec,
                   struct jsonrpc_request *req, struct sd_error *err)
{
    struct sdd_tasks *ts = &d->tasks;
    struct sdd_task *t = calloc(1, sizeof(*t));
    int ret = 0;

    if (!t) {
        if (spec->free_arg)
            spec->free_arg(spec->arg);
        return sd_error_set(err, -ENOMEM, "out of memory");
    }
    *t = (struct sdd_task){ .d = d, .method = spec->method,
                            .hold = spec->hold,
                            .run = spec->run, .done = spec->done,
                            .arg = spec->arg, .free_arg = spec->free_arg };
    if (ts->count >= SDD_TASKS_MAX)
        ret = sd_error_set(err, -EBUSY, "busy: %d long operations are "
                           "running already; try again when one ends",
                           SDD_TASKS_MAX);
    if (ret == 0 && spec->vm) {
        sdd_holds_sync_jobs(&d->holds, &d->jobs);
        ret = sdd_hold_take(&d->holds, spec->vm, spec->method, spec->hold,
                            err);
        if (ret == 0 && !(t->vm = strdup(spec->vm))) {
            sdd_hold_drop(&d->holds, spec->vm, spec->method);
            ret = sd_error_set(err, -ENOMEM, "out of memory");
        }
    }
    t->req = req;
    if (ret == 0)
        ret = spawn(t, err);
    if (ret < 0) {
        t->req = NULL;
        task_free(t);
        return ret;
    }
    pthread_mutex_lock(&ts->lock);
    t->next = ts->list;
    ts->list = t;
    ts->count++;
    pthread_mutex_unlock(&ts->lock);
    return 0;
}

int sdd_task_reply_later(struct sdd_daemon *d,
                         const struct sdd_task_spec *spec,
                         struct jsonrpc_request *req)
{
    struct sd_error err = { 0 };

    if (sdd_task_start(d, spec, req, &err) < 0) {
        sd_log_warn("%s: %s", spec->method, err.msg);
        return jsonrpc_reply_sd_error(req, &err);
    }
    return JSONRPC_PENDING;
}

/* Unlink and return one finished task, or NULL. */
static struct sdd_task *take_finished(struct sdd_tasks *ts)
{
    struct sdd_task **pp, *t = NULL;

    pthread_mutex_lock(&ts->lock);
    for (pp = &ts->list; *pp; pp = &(*pp)->next)
        if ((*pp)->finished) {
            t = *pp;
            *pp = t->next;
            ts->count--;
            break;
        }
    pthread_mutex_unlock(&ts->lock);
    return t;
}

static void finish(struct sdd_task *t)
{
    pthread_join(t->thread, NULL);
    if (t->done)
        t->done(t);
    reply(t);
    task_free(t);
}

void sdd_tasks_reap(struct sdd_daemon *d)
{
    struct sdd_task *t;
    uint64_t n;

    if (read(d->tasks.event_fd, &n, sizeof(n)) < 0 && errno != EAGAIN)
        sd_log_error("tasks: eventfd: %s", strerror(errno));
    while ((t = take_finished(&d->tasks)))
        finish(t);
}

void sdd_tasks_stop(struct sdd_daemon *d)
{
    struct sdd_tasks *ts = &d->tasks;

    if (ts->count)
        sd_log_info("waiting for %zu long operation(s) to finish",
                    ts->count);
    while (ts->list) {
        struct sdd_task *t = ts->list;

        ts->list = t->next;
        ts->count--;
        finish(t);
    }
    if (ts->event_fd >= 0)
        close(ts->event_fd);
    ts->event_fd = -1;
    pthread_mutex_destroy(&ts->lock);
}
