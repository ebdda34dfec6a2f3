/* SPDX-License-Identifier: MIT */
/*
 * Helper processes of file-level restore (nbdfuse, partx, blkid, lvs,
 * tar).
 *
 * The daemon may be multithreaded, so the child does only
 * async-signal-safe things between fork and exec: everything (argv,
 * the program's path) is prepared before fork. Children get
 * PR_SET_PDEATHSIG(SIGKILL): if the daemon dies, nothing we started keeps
 * its mount namespace alive. They also lose every inherited descriptor
 * but 0-2: a loop device descriptor left open in nbdfuse would keep that
 * device from ever clearing itself.
 */
#include "config.h"

#include "catalog/restore-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

void rs_sleep_ms(unsigned ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/* Find a program in PATH (or the sbin folders lvm and blkid live in, for
 * daemons started with a short PATH). */
static int which(const char *prog, char *buf, size_t len)
{
    const char *path = getenv("PATH");
    char dirs[4096];
    char *save = NULL;

    if (strchr(prog, '/')) {
        snprintf(buf, len, "%s", prog);
        return 0;
    }
    snprintf(dirs, sizeof(dirs), "%s:/usr/sbin:/sbin:/usr/bin:/bin",
             path ? path : "");
    for (char *d = strtok_r(dirs, ":", &save); d;
         d = strtok_r(NULL, ":", &save)) {
        if ((size_t)snprintf(buf, len, "%s/%s", d, prog) < len &&
            access(buf, X_OK) == 0)
            return 0;
    }
    return -ENOENT;
}

/* One mountinfo line: detach its mount if its mount point (field 5,
 * octal escapes undone) is at or under dir. Returns 1 if it did. */
static int detach_line(char *line, const char *dir)
{
    char mp[4096];
    size_t n = 0;
    char *p = line;

    for (int field = 0; field < 4 && p; field++) {
        p = strchr(p, ' ');
        if (p)
            p++;
    }
    if (!p)
        return 0;
    for (; *p && *p != ' ' && n < sizeof(mp) - 1; p++) {
        if (p[0] == '\\' && p[1] >= '0' && p[1] <= '3' && p[2] && p[3]) {
            mp[n++] = (char)(((p[1] - '0') << 6) | ((p[2] - '0') << 3) |
                             (p[3] - '0'));
            p += 3;
        } else {
            mp[n++] = *p;
        }
    }
    mp[n] = '\0';
    return rs_path_under(mp, dir) && umount2(mp, MNT_DETACH) == 0;
}

/* One pass over /proc/self/mountinfo; how many mounts were detached. */
static int detach_pass(const char *dir)
{
    char buf[4096], line[8192];
    size_t len = 0;
    ssize_t got;
    int fd = open("/proc/self/mountinfo", O_RDONLY | O_CLOEXEC), count = 0;

    if (fd < 0)
        return -1;
    while ((got = read(fd, buf, sizeof(buf))) > 0) {
        for (ssize_t i = 0; i < got; i++) {
            if (buf[i] != '\n') {
                if (len < sizeof(line) - 1)
                    line[len++] = buf[i];
                continue;
            }
            line[len] = '\0';
            count += detach_line(line, dir);
            len = 0;
        }
    }
    close(fd);
    return got < 0 ? -1 : count;
}

/* In the child, in its fresh namespace: the copy it got of ours holds
 * other points' guest mounts, and a copy would keep their file systems
 * and loop devices busy for as long as the child lives. Detach every
 * mount under dir; repeat, as the table changes under the reader. Only
 * system calls and stack buffers: this runs between fork and exec. */
static int detach_under(const char *dir)
{
    int r;

    for (int pass = 0; pass < 16; pass++) {
        r = detach_pass(dir);
        if (r <= 0)
            return r;
    }
    return -1;
}

/* In the child: never returns. */
static void child_exec(const char *path, const char *const argv[],
                       pid_t parent, const int fds[3], int cwd_fd,
                       const char *own_ns_without)
{
    struct sigaction dfl = { .sa_handler = SIG_DFL };
    sigset_t none;

    if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
        _exit(127);
    if (own_ns_without &&
        (unshare(CLONE_NEWNS) < 0 ||
         mount("none", "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
         detach_under(own_ns_without) < 0))
        _exit(127);
    for (int i = 0; i < 3; i++)
        if (fds[i] != i && dup2(fds[i], i) < 0)
            _exit(127);
    if (cwd_fd >= 0 && fchdir(cwd_fd) < 0)
        _exit(127);
    if (close_range(3, ~0U, 0) < 0)
        _exit(127);
    /* A daemon may block signals (signalfd) and ignore SIGPIPE; both
     * would be inherited across exec. */
    sigemptyset(&none);
    (void)sigaction(SIGPIPE, &dfl, NULL);
    (void)sigprocmask(SIG_SETMASK, &none, NULL);
    execv(path, (char *const *)argv);
    _exit(127);
}

static int spawn_fds(const char *const argv[], const int fds[3],
                     int cwd_fd, const char *own_ns_without, pid_t *ret_pid,
                     struct sd_error *err)
{
    char path[PATH_MAX];
    pid_t parent = getpid(), pid;

    if (which(argv[0], path, sizeof(path)) < 0)
        return sd_error_set(err, -ENOENT, "%s: not installed", argv[0]);
    pid = fork();
    if (pid < 0)
        return sd_error_set(err, -errno, "fork: %s", strerror(errno));
    if (pid == 0)
        child_exec(path, argv, parent, fds, cwd_fd, own_ns_without);
    *ret_pid = pid;
    return 0;
}

int rs_spawn(const char *const argv[], int cwd_fd, int out_fd, int err_fd,
             const char *own_ns_without, pid_t *ret_pid,
             struct sd_error *err)
{
    int null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
    int fds[3], r;

    if (null_fd < 0)
        return sd_error_set(err, -errno, "/dev/null: %s", strerror(errno));
    fds[0] = null_fd;
    fds[1] = out_fd >= 0 ? out_fd : null_fd;
    fds[2] = err_fd >= 0 ? err_fd : null_fd;
    r = spawn_fds(argv, fds, cwd_fd, own_ns_without, ret_pid, err);
    close(null_fd);
    return r;
}

int rs_wait(pid_t pid, int timeout_ms, int *ret_status)
{
    int status, waited = 0;

    for (;;) {
        pid_t r = waitpid(pid, &status, timeout_ms < 0 ? 0 : WNOHANG);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -errno;
        if (r == pid)
            break;
        if (waited >= timeout_ms)
            return -ETIMEDOUT;
        rs_sleep_ms(10);
        waited += 10;
    }
    if (ret_status)
        *ret_status = status;
    return 0;
}

void rs_kill_wait(pid_t pid)
{
    if (pid <= 0)
        return;
    (void)kill(pid, SIGKILL);
    (void)rs_wait(pid, -1, NULL);
}

/* Append what is readable on fd; 0 at end of file. */
static int drain(int fd, char **buf, size_t *len, size_t *cap, size_t max)
{
    char tmp[65536];
    ssize_t n = read(fd, tmp, sizeof(tmp));

    if (n < 0)
        return errno == EINTR || errno == EAGAIN ? 1 : -errno;
    if (n == 0)
        return 0;
    if (*len + (size_t)n > max)
        return -E2BIG;
    if (*len + (size_t)n + 1 > *cap) {
        size_t ncap = (*len + (size_t)n + 1) * 2;
        char *nb = realloc(*buf, ncap);
        if (!nb)
            return -ENOMEM;
        *buf = nb;
        *cap = ncap;
    }
    memcpy(*buf + *len, tmp, (size_t)n);
    *len += (size_t)n;
    (*buf)[*len] = '\0';
    return 1;
}

/* Read both pipes until both are closed. */
static int collect(int out_fd, int err_fd, struct rs_output *res)
{
    char *ebuf = NULL;
    size_t elen = 0, ecap = 0, ocap = 0;
    struct pollfd p[2] = { { out_fd, POLLIN, 0 }, { err_fd, POLLIN, 0 } };
    int r = 0;

    while (p[0].fd >= 0 || p[1].fd >= 0) {
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            r = -errno;
            break;
        }
        for (int i = 0; i < 2; i++) {
            if (p[i].fd < 0 || !p[i].revents)
                continue;
            int d = i == 0 ? drain(p[i].fd, &res->out, &res->len, &ocap,
                                   RS_OUTPUT_MAX)
                           : drain(p[i].fd, &ebuf, &elen, &ecap, 65536);
            if (d < 0 && r == 0)
                r = d;
            if (d <= 0)
                p[i].fd = -1;
        }
    }
    if (ebuf)
        snprintf(res->errtext, sizeof(res->errtext), "%s", ebuf);
    free(ebuf);
    return r;
}

static void trim_errtext(char *s)
{
    size_t n = strlen(s);

    while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == ' '))
        s[--n] = '\0';
    for (char *c = s; *c; c++)
        if (*c == '\n')
            *c = ' ';
}

int rs_run(const char *const argv[], struct rs_output *res,
           struct sd_error *err)
{
    int op[2] = { -1, -1 }, ep[2] = { -1, -1 }, fds[3], r, status;
    pid_t pid = 0;

    memset(res, 0, sizeof(*res));
    if (pipe2(op, O_CLOEXEC) < 0 || pipe2(ep, O_CLOEXEC) < 0) {
        r = sd_error_set(err, -errno, "pipe: %s", strerror(errno));
        goto out_close;
    }
    fds[0] = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (fds[0] < 0) {
        r = sd_error_set(err, -errno, "/dev/null: %s", strerror(errno));
        goto out_close;
    }
    fds[1] = op[1];
    fds[2] = ep[1];
    r = spawn_fds(argv, fds, -1, NULL, &pid, err);
    close(fds[0]);
    close(op[1]);
    close(ep[1]);
    op[1] = ep[1] = -1;
    if (r < 0)
        goto out_close;
    r = collect(op[0], ep[0], res);
    if (r < 0)
        (void)kill(pid, SIGKILL);
    int w = rs_wait(pid, -1, &status);
    if (r < 0 || w < 0) {
        r = sd_error_set(err, r < 0 ? r : w, "%s: %s", argv[0],
                         strerror(-(r < 0 ? r : w)));
        goto out_close;
    }
    trim_errtext(res->errtext);
    if (!WIFEXITED(status)) {
        r = sd_error_set(err, -EIO, "%s: killed by signal %d", argv[0],
                         WTERMSIG(status));
        goto out_close;
    }
    res->status = WEXITSTATUS(status);
    if (res->status == 127 && !res->errtext[0])
        r = sd_error_set(err, -ENOEXEC, "%s: could not be started", argv[0]);
    else if (!res->out && !(res->out = calloc(1, 1)))
        r = sd_error_set(err, -ENOMEM, "out of memory");
out_close:
    for (int i = 0; i < 2; i++) {
        if (op[i] >= 0)
            close(op[i]);
        if (ep[i] >= 0)
            close(ep[i]);
    }
    if (r < 0)
        rs_output_free(res);
    return r;
}

void rs_output_free(struct rs_output *res)
{
    free(res->out);
    res->out = NULL;
    res->len = 0;
}
