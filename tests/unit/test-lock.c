/* SPDX-License-Identifier: MIT */
/*
 * Image locks against qemu 7.2 as the oracle: while we hold an image,
 * qemu-io and qemu-img must be refused or allowed exactly as they would
 * be by another qemu, and while qemu holds one, we must be refused with a
 * message that names the file.
 */
#include "config.h"

#include "qcow2/lock.h"
#include "common/error.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

/* qemu's lock bytes: 100 + i "holds permission i", 200 + i "refuses to
 * share it"; i = 0 consistent read, 1 write (block/file-posix.c). */
enum {
    BYTE_HOLDS_READ = 100,
    BYTE_HOLDS_WRITE = 101,
};

enum { OUT_MAX = 8192 };

static char dir_path[256];
static char qcow2_path[300];
static char raw_path[300];

/* Run argv with stdin from /dev/null and stdout+stderr captured in out;
 * returns the exit status, or -1 if the program died of a signal. */
static int run(const char *const argv[], char *out, size_t out_size)
{
    posix_spawn_file_actions_t fa;
    size_t used = 0;
    int pipe_fds[2], status;
    ssize_t n;
    pid_t pid;

    cr_assert_eq(pipe2(pipe_fds, O_CLOEXEC), 0);
    cr_assert_eq(posix_spawn_file_actions_init(&fa), 0);
    cr_assert_eq(posix_spawn_file_actions_addopen(&fa, 0, "/dev/null",
                                                  O_RDONLY, 0), 0);
    cr_assert_eq(posix_spawn_file_actions_adddup2(&fa, pipe_fds[1], 1), 0);
    cr_assert_eq(posix_spawn_file_actions_adddup2(&fa, pipe_fds[1], 2), 0);
    cr_assert_eq(posix_spawnp(&pid, argv[0], &fa, NULL, (char **)argv,
                              environ), 0, "cannot run %s", argv[0]);
    posix_spawn_file_actions_destroy(&fa);
    close(pipe_fds[1]);
    while ((n = read(pipe_fds[0], out + used, out_size - 1 - used)) > 0)
        used += (size_t)n;
    out[used] = '\0';
    close(pipe_fds[0]);
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void setup_images(void)
{
    char out[OUT_MAX];
    const char *tmp = getenv("TMPDIR");
    int fd;

    snprintf(dir_path, sizeof(dir_path), "%s/sd-test-lock-XXXXXX",
             tmp && *tmp ? tmp : "/tmp");
    cr_assert_not_null(mkdtemp(dir_path));
    snprintf(qcow2_path, sizeof(qcow2_path), "%s/img.qcow2", dir_path);
    snprintf(raw_path, sizeof(raw_path), "%s/img.raw", dir_path);

    const char *create[] = { "qemu-img", "create", "-q", "-f", "qcow2",
                             qcow2_path, "1M", NULL };
    cr_assert_eq(run(create, out, sizeof(out)), 0, "qemu-img create: %s", out);
    fd = open(raw_path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    cr_assert_geq(fd, 0);
    cr_assert_eq(ftruncate(fd, 1 << 20), 0);
    close(fd);
}

static void remove_images(void)
{
    unlink(qcow2_path);
    unlink(raw_path);
    rmdir(dir_path);
}

TestSuite(lock, .init = setup_images, .fini = remove_images);

/* An image open the way the engine opens it: the locks on its own fd. */
struct held {
    int fd;
};

static int try_hold(struct held *h, const char *path, bool writable,
                    struct sd_error *err)
{
    h->fd = open(path, (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC);
    cr_assert_geq(h->fd, 0, "open %s: %s", path, strerror(errno));
    sd_error_clear(err);
    int ret = img_lock_acquire(h->fd, path, writable, err);
    if (ret < 0) {
        close(h->fd);
        h->fd = -1;
    }
    return ret;
}

static void hold(struct held *h, const char *path, bool writable)
{
    struct sd_error err;
    int ret = try_hold(h, path, writable, &err);

    cr_assert_eq(ret, 0, "img_lock_acquire(%s): %s", path, err.msg);
}

static void let_go(struct held *h)
{
    if (h->fd >= 0)
        close(h->fd);
    h->fd = -1;
}

/* qemu-io writing one sector: refused with qemu's lock error, or done. */
static int qemu_write(const char *fmt, const char *path, char *out,
                      size_t out_size)
{
    const char *argv[] = { "qemu-io", "-f", fmt, "-c", "write 0 512", path,
                           NULL };
    return run(argv, out, out_size);
}

static void assert_qemu_lock_error(int status, const char *out,
                                   const char *what)
{
    cr_assert_neq(status, 0, "%s succeeded but should be locked out: %s",
                  what, out);
    cr_assert(strstr(out, "Failed to get") && strstr(out, "lock"),
              "%s failed without qemu's lock error: %s", what, out);
}

Test(lock, our_writer_refuses_qemu_writers_and_readers)
{
    char out[OUT_MAX];
    struct held h;

    hold(&h, qcow2_path, true);

    assert_qemu_lock_error(qemu_write("qcow2", qcow2_path, out, sizeof(out)),
                           out, "qemu-io write");
    const char *check[] = { "qemu-img", "check", qcow2_path, NULL };
    assert_qemu_lock_error(run(check, out, sizeof(out)), out, "qemu-img check");
    const char *info[] = { "qemu-img", "info", qcow2_path, NULL };
    assert_qemu_lock_error(run(info, out, sizeof(out)), out, "qemu-img info");

    const char *info_shared[] = { "qemu-img", "info", "-U", qcow2_path, NULL };
    cr_assert_eq(run(info_shared, out, sizeof(out)), 0,
                 "qemu-img info -U refused: %s", out);
    cr_assert_not_null(strstr(out, "file format: qcow2"), "%s", out);

    /* The refusals came from our lock: without it qemu writes. */
    let_go(&h);
    cr_assert_eq(qemu_write("qcow2", qcow2_path, out, sizeof(out)), 0,
                 "qemu-io write after release: %s", out);
    cr_assert_eq(run(check, out, sizeof(out)), 0, "qemu-img check: %s", out);
}

Test(lock, our_reader_refuses_qemu_writers_only)
{
    char out[OUT_MAX];
    struct held h;

    hold(&h, qcow2_path, false);

    assert_qemu_lock_error(qemu_write("qcow2", qcow2_path, out, sizeof(out)),
                           out, "qemu-io write");
    cr_assert_not_null(strstr(out, "\"write\""), "%s", out);

    const char *info[] = { "qemu-img", "info", qcow2_path, NULL };
    cr_assert_eq(run(info, out, sizeof(out)), 0,
                 "qemu-img info refused beside a reader: %s", out);
    const char *qemu_read[] = { "qemu-io", "-r", "-f", "qcow2", "-c",
                                "read 0 512", qcow2_path, NULL };
    cr_assert_eq(run(qemu_read, out, sizeof(out)), 0,
                 "qemu-io -r refused beside a reader: %s", out);
    let_go(&h);
}

/* With nothing else referring to the image's description, closing its
 * fd is the release (for when something else does, see below). */
Test(lock, closing_the_image_fd_releases_the_lock)
{
    char out[OUT_MAX];
    struct held h;

    hold(&h, qcow2_path, true);
    assert_qemu_lock_error(qemu_write("qcow2", qcow2_path, out, sizeof(out)),
                           out, "qemu-io write");
    let_go(&h);
    cr_assert_eq(qemu_write("qcow2", qcow2_path, out, sizeof(out)), 0,
                 "qemu-io write refused after the close: %s", out);
}

/* A close is not the release while something else still refers to the
 * description: io_uring can, for a request that has finished. dup() is
 * that other reference here. img_lock_release() is the release all the
 * same, for us and for qemu. */
Test(lock, release_drops_the_locks_while_the_description_lives_on)
{
    char out[OUT_MAX];
    struct sd_error err;
    struct held h, again;
    int other_ref;

    hold(&h, qcow2_path, true);
    other_ref = dup(h.fd);
    cr_assert_geq(other_ref, 0);
    let_go(&h);
    cr_assert_eq(try_hold(&again, qcow2_path, true, &err), -EBUSY,
                 "the close alone released the locks: %s", err.msg);

    hold(&h, raw_path, true);
    close(other_ref);
    other_ref = dup(h.fd);
    cr_assert_geq(other_ref, 0);
    cr_assert_eq(img_lock_release(h.fd), 0);
    let_go(&h);
    hold(&again, raw_path, true);
    let_go(&again);
    cr_assert_eq(qemu_write("raw", raw_path, out, sizeof(out)), 0,
                 "qemu-io write refused after the release: %s", out);
    close(other_ref);
}

/* A qemu-io kept alive on a pipe: it holds the image until stdin closes. */
struct bg_qemu {
    pid_t pid;
    int stdin_fd;
};

static void start_qemu_io(struct bg_qemu *q, const char *const argv[])
{
    posix_spawn_file_actions_t fa;
    int pipe_fds[2];

    cr_assert_eq(pipe2(pipe_fds, O_CLOEXEC), 0);
    cr_assert_eq(posix_spawn_file_actions_init(&fa), 0);
    cr_assert_eq(posix_spawn_file_actions_adddup2(&fa, pipe_fds[0], 0), 0);
    cr_assert_eq(posix_spawn_file_actions_addopen(&fa, 1, "/dev/null",
                                                  O_WRONLY, 0), 0);
    cr_assert_eq(posix_spawnp(&q->pid, argv[0], &fa, NULL, (char **)argv,
                              environ), 0);
    posix_spawn_file_actions_destroy(&fa);
    close(pipe_fds[0]);
    q->stdin_fd = pipe_fds[1];
}

/* Wait until another description locks the byte, failing if qemu-io
 * exits first (e.g. it could not open the image). */
static void wait_for_lock_byte(const struct bg_qemu *q, const char *path,
                               int byte)
{
    const struct timespec pause = { .tv_nsec = 10 * 1000 * 1000 };
    int probe = open(path, O_RDONLY | O_CLOEXEC);
    int status;

    cr_assert_geq(probe, 0);
    for (;;) {
        struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET,
                            .l_start = byte, .l_len = 1 };
        cr_assert_eq(fcntl(probe, F_OFD_GETLK, &fl), 0);
        if (fl.l_type != F_UNLCK)
            break;
        cr_assert_eq(waitpid(q->pid, &status, WNOHANG), 0,
                     "qemu-io exited before locking %s", path);
        nanosleep(&pause, NULL);
    }
    close(probe);
}

static void stop_qemu_io(struct bg_qemu *q)
{
    int status;

    close(q->stdin_fd);     /* EOF on its command line: it quits */
    cr_assert_eq(waitpid(q->pid, &status, 0), q->pid);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0,
              "qemu-io did not exit cleanly (status %#x)", status);
}

static void assert_refused(const char *path, bool writable,
                           const char *expected)
{
    struct sd_error err;
    struct held h;

    cr_assert_eq(try_hold(&h, path, writable, &err), -EBUSY,
                 "%s acquire beside qemu was not refused",
                 writable ? "writable" : "read-only");
    cr_assert_eq(err.code, -EBUSY);
    cr_assert_not_null(strstr(err.msg, path), "no file name in: %s", err.msg);
    cr_assert_not_null(strstr(err.msg, expected), "unexpected message: %s",
                       err.msg);
    cr_assert_null(strchr(err.msg, '\n'), "message not one line: %s",
                   err.msg);
}

static void check_qemu_writer_locks_us_out(const char *fmt, const char *path)
{
    const char *argv[] = { "qemu-io", "-f", fmt, path, NULL };
    struct bg_qemu q;
    struct held h;

    start_qemu_io(&q, argv);
    wait_for_lock_byte(&q, path, BYTE_HOLDS_WRITE);
    assert_refused(path, true, "another process has it open for writing");
    assert_refused(path, false, "another process has it open for writing");
    stop_qemu_io(&q);

    /* With qemu gone the same acquire succeeds. */
    hold(&h, path, true);
    let_go(&h);
}

Test(lock, qemu_raw_writer_locks_us_out)
{
    check_qemu_writer_locks_us_out("raw", raw_path);
}

Test(lock, qemu_qcow2_writer_locks_us_out)
{
    check_qemu_writer_locks_us_out("qcow2", qcow2_path);
}

Test(lock, qemu_reader_refuses_our_writer_only)
{
    const char *argv[] = { "qemu-io", "-r", "-f", "qcow2", qcow2_path, NULL };
    struct bg_qemu q;
    struct held h;

    start_qemu_io(&q, argv);
    wait_for_lock_byte(&q, qcow2_path, BYTE_HOLDS_READ);
    assert_refused(qcow2_path, true, "does not allow writers");
    hold(&h, qcow2_path, false);
    let_go(&h);
    stop_qemu_io(&q);
}

/* Two opens in one process are two descriptions: they conflict exactly
 * as two processes would. */
Test(lock, two_opens_in_one_process)
{
    struct held first, reader;

    hold(&first, raw_path, true);
    assert_refused(raw_path, true, "another process has it open for writing");
    assert_refused(raw_path, false, "another process has it open for writing");
    let_go(&first);

    hold(&first, raw_path, false);
    hold(&reader, raw_path, false);
    assert_refused(raw_path, true, "does not allow writers");
    let_go(&reader);
    assert_refused(raw_path, true, "does not allow writers");
    let_go(&first);

    hold(&first, raw_path, true);
    let_go(&first);
}

/* Read-lock one byte on a description of our own, as another program. */
static int foreign_lock(const char *path, int byte)
{
    struct flock fl = { .l_type = F_RDLCK, .l_whence = SEEK_SET,
                        .l_start = byte, .l_len = 1 };
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    cr_assert_geq(fd, 0);
    cr_assert_eq(fcntl(fd, F_OFD_SETLK, &fl), 0);
    return fd;
}

/* Bytes between the ones we test are no conflict (one test spans them
 * first), and a conflict among them is still found and named. */
Test(lock, bytes_between_ours_are_no_conflict)
{
    int write_unchanged = foreign_lock(raw_path, 102);
    int unshared_write_unchanged = foreign_lock(raw_path, 202);
    struct held h;
    int fd;

    hold(&h, raw_path, true);
    let_go(&h);
    hold(&h, raw_path, false);
    let_go(&h);

    fd = foreign_lock(raw_path, 103);       /* holds resize: a writer */
    assert_refused(raw_path, false, "another process has it open for writing");
    close(fd);
    fd = foreign_lock(raw_path, 203);       /* refuses to share resize */
    assert_refused(raw_path, true, "does not allow writers");
    close(fd);
    fd = foreign_lock(raw_path, 200);       /* refuses consistent readers */
    assert_refused(raw_path, false, "\"consistent read\"");
    close(fd);

    close(write_unchanged);
    close(unshared_write_unchanged);
    hold(&h, raw_path, true);
    let_go(&h);
}

Test(lock, bad_fd_is_reported)
{
    struct sd_error err;

    cr_assert_eq(img_lock_acquire(-1, raw_path, true, &err), -EBADF);
    cr_assert_not_null(strstr(err.msg, raw_path), "%s", err.msg);
    cr_assert_eq(img_lock_release(-1), -EBADF);
}
