/* SPDX-License-Identifier: MIT */
/*
 * Inter-process image locks that qemu understands.
 *
 * Notes on the design
 *
 * qemu (block/file-posix.c, since 2.10) turns each block-layer permission
 * into one byte of an OFD byte-range lock on the image file:
 *
 *   byte 100 + i   read-locked by every holder of permission i
 *   byte 200 + i   read-locked by every holder that refuses to share i
 *
 * with i the bit number of qemu's BLK_PERM_* flags: 0 consistent read,
 * 1 write, 2 write unchanged, 3 resize (qemu 6.1 and older also used bit 4,
 * graph-mod, which no longer means anything). A process that wants
 * permission i tests byte 200 + i, and a process that will not share
 * permission i tests byte 100 + i; a lock there held by any other open file
 * description is a conflict. All the locks are shared (F_RDLCK), so any
 * number of compatible users coexist, and the test is an F_OFD_GETLK for a
 * write lock, which sees every other description's read lock.
 *
 * Seen in /proc/locks with qemu 7.2: a qemu writer of a qcow2 image holds
 * 100, 101, 103 and 201, 203; a reader (qemu-io -r, or the backing file of
 * an image qemu writes) holds 100 and 201, 203. We take the same two modes:
 *
 *   writer: holds consistent read, write, resize; shares neither write
 *           nor resize (so qemu-img info without -U is refused, -U works)
 *   reader: holds consistent read; shares neither write nor resize (a
 *           backing file must not change under us; qemu-img info works)
 *
 * Which descriptor holds the locks: the image's own open file
 * description, so a failed acquire needs no undo of its own. The locks go
 * with the description's last reference, which is not always the
 * image's close: io_uring may hold a reference to the description for a
 * finished request until its ring next runs deferred work, or until the
 * ring is torn down, and an image reopened in that window (a reload, the
 * next job, qemu-img) was refused as "locked by another process" (the
 * nbd-session fuzzer found it). So the engine drops its bytes with one
 * unlock of the whole file just before it closes the image: nothing
 * else of ours locks that description, and an unlock of a range in one
 * piece cannot fail for want of memory. The engine never reopens that
 * descriptor (the O_DIRECT twin blkfile.c opens is a description of its
 * own that holds no locks). An earlier version locked a private reopen
 * through /proc/self/fd; that open was a tenth of the time a reload
 * spends on an image.
 *
 * Two opens of one file in one process get two descriptions, so they
 * conflict with each other exactly as two processes would: a second
 * writer, or a writer beside a reader, is refused; readers coexist. That
 * is the right answer for, say, an overlay whose backing file is the
 * overlay itself under another name. The engine keeps one handle per
 * image per process (by device and inode), so its own exports never
 * collide this way.
 *
 * Like qemu, we lock first and check second: two processes racing to
 * open the same image both see the other's bytes, so at worst both fail;
 * never both succeed.
 */
#include "config.h"

#include "lock.h"

#include "common/error.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>

/* qemu's BLK_PERM_* bit numbers (include/block/block-common.h). */
enum {
    PERM_CONSISTENT_READ = 0,
    PERM_WRITE = 1,
    PERM_WRITE_UNCHANGED = 2,
    PERM_RESIZE = 3,
    PERM_COUNT = 4,
};

#define PERM_BIT(i) (1u << (i))

/* Byte offsets of qemu's lock bytes (RAW_LOCK_PERM_BASE, _SHARED_BASE). */
enum {
    LOCK_HELD_BASE = 100,
    LOCK_UNSHARED_BASE = 200,
};

struct lock_mode {
    unsigned held;      /* permissions we use */
    unsigned unshared;  /* permissions we refuse to others */
};

static const struct lock_mode writer_mode = {
    .held = PERM_BIT(PERM_CONSISTENT_READ) | PERM_BIT(PERM_WRITE) |
            PERM_BIT(PERM_RESIZE),
    .unshared = PERM_BIT(PERM_WRITE) | PERM_BIT(PERM_RESIZE),
};

static const struct lock_mode reader_mode = {
    .held = PERM_BIT(PERM_CONSISTENT_READ),
    .unshared = PERM_BIT(PERM_WRITE) | PERM_BIT(PERM_RESIZE),
};

/* What another process's lock byte tells us about it. */
enum lock_conflict {
    CONFLICT_NONE,
    CONFLICT_WRITER,        /* it writes or resizes the image */
    CONFLICT_NO_WRITERS,    /* it reads and forbids writers */
    CONFLICT_NO_READERS,    /* it forbids consistent readers */
};

static const char *const perm_names[PERM_COUNT] = {
    [PERM_CONSISTENT_READ] = "consistent read",
    [PERM_WRITE] = "write",
    [PERM_WRITE_UNCHANGED] = "write unchanged",
    [PERM_RESIZE] = "resize",
};

static void flock_bytes(struct flock *fl, short type, int offset, int len)
{
    memset(fl, 0, sizeof(*fl));     /* l_pid must be 0 for OFD locks */
    fl->l_type = type;
    fl->l_whence = SEEK_SET;
    fl->l_start = offset;
    fl->l_len = len;
}

/* Read-lock len bytes; -EAGAIN if another description write-locks one. */
static int lock_bytes(int fd, int offset, int len)
{
    struct flock fl;

    flock_bytes(&fl, F_RDLCK, offset, len);
    if (fcntl(fd, F_OFD_SETLK, &fl) < 0)
        return errno == EACCES ? -EAGAIN : -errno;
    return 0;
}

/* 1 if another open file description holds a lock on any of len bytes. */
static int bytes_locked_elsewhere(int fd, int offset, int len)
{
    struct flock fl;

    flock_bytes(&fl, F_WRLCK, offset, len);
    if (fcntl(fd, F_OFD_GETLK, &fl) < 0)
        return -errno;
    return fl.l_type != F_UNLCK;
}

static int byte_locked_elsewhere(int fd, int offset)
{
    return bytes_locked_elsewhere(fd, offset, 1);
}

static int lowest_perm(unsigned perms)
{
    int i = 0;

    while (!(perms & PERM_BIT(i)))
        i++;
    return i;
}

static int highest_perm(unsigned perms)
{
    int i = PERM_COUNT - 1;

    while (!(perms & PERM_BIT(i)))
        i--;
    return i;
}

/* Might another description hold any of the bytes base + i, i in perms?
 * One test over their span answers "no" for the usual uncontended open
 * (a reload opens a thousand images); "maybe" means testing byte by
 * byte, as a lock between them is no conflict. */
static int span_locked_elsewhere(int fd, int base, unsigned perms)
{
    int first, last;

    if (!perms)
        return 0;
    first = lowest_perm(perms);
    last = highest_perm(perms);
    return bytes_locked_elsewhere(fd, base + first, last - first + 1);
}

/* The same question for both byte sets find_conflict() looks at, in one
 * test from the first held-byte it checks to the last unshared-byte. */
static int mode_span_locked_elsewhere(int fd, const struct lock_mode *mode)
{
    int first, last;

    if (!mode->unshared || !mode->held)
        return 1;           /* no single span: let the finer tests run */
    first = LOCK_HELD_BASE + lowest_perm(mode->unshared);
    last = LOCK_UNSHARED_BASE + highest_perm(mode->held);
    return bytes_locked_elsewhere(fd, first, last - first + 1);
}

/* Take the bytes base + i, i in perms, adjacent ones in one call; the
 * first byte of a run that fails goes to *bad_byte. */
static int lock_perm_bytes(int fd, int base, unsigned perms, int *bad_byte)
{
    for (int i = 0; i < PERM_COUNT;) {
        int run = 0, ret;

        while (i + run < PERM_COUNT && (perms & PERM_BIT(i + run)))
            run++;
        if (!run) {
            i++;
            continue;
        }
        *bad_byte = base + i;
        ret = lock_bytes(fd, base + i, run);
        if (ret < 0)
            return ret;
        i += run;
    }
    return 0;
}

/* Take every byte of the mode; returns the failing byte in *bad_byte. */
static int apply_mode(int fd, const struct lock_mode *mode, int *bad_byte)
{
    int ret = lock_perm_bytes(fd, LOCK_HELD_BASE, mode->held, bad_byte);

    if (ret == 0)
        ret = lock_perm_bytes(fd, LOCK_UNSHARED_BASE, mode->unshared,
                              bad_byte);
    return ret;
}

static enum lock_conflict conflict_for_unshared_byte(int perm)
{
    if (perm == PERM_CONSISTENT_READ)
        return CONFLICT_NO_READERS;
    return CONFLICT_NO_WRITERS;
}

/* The first i in perms whose byte base + i another description holds:
 * 1 with *perm set, 0 when there is none, or a negative errno. */
static int first_locked_elsewhere(int fd, int base, unsigned perms,
                                  int *perm)
{
    int ret = span_locked_elsewhere(fd, base, perms);

    if (ret <= 0)
        return ret;
    for (int i = 0; i < PERM_COUNT; i++) {
        if (!(perms & PERM_BIT(i)))
            continue;
        ret = byte_locked_elsewhere(fd, base + i);
        if (ret != 0) {
            *perm = i;
            return ret;
        }
    }
    return 0;
}

/*
 * Find another process's lock incompatible with the mode. Writers are
 * looked for first: "someone writes it" is the most useful thing to say.
 * *perm is the permission the conflict is about.
 */
static int find_conflict(int fd, const struct lock_mode *mode,
                         enum lock_conflict *conflict, int *perm)
{
    int ret;

    *conflict = CONFLICT_NONE;
    ret = mode_span_locked_elsewhere(fd, mode);
    if (ret <= 0)
        return ret;
    ret = first_locked_elsewhere(fd, LOCK_HELD_BASE, mode->unshared, perm);
    if (ret > 0) {
        *conflict = CONFLICT_WRITER;
        return 0;
    }
    if (ret < 0)
        return ret;
    ret = first_locked_elsewhere(fd, LOCK_UNSHARED_BASE, mode->held, perm);
    if (ret > 0) {
        *conflict = conflict_for_unshared_byte(*perm);
        return 0;
    }
    return ret;
}

static int report_conflict(const char *path, enum lock_conflict conflict,
                           int perm, struct sd_error *err)
{
    switch (conflict) {
    case CONFLICT_WRITER:
        return sd_error_set(err, -EBUSY,
                            "'%s' is locked: another process has it open for "
                            "writing (qemu or sendense); use force-share for "
                            "read-only inspection", path);
    case CONFLICT_NO_WRITERS:
        return sd_error_set(err, -EBUSY,
                            "'%s' is locked: another process is reading it "
                            "and does not allow writers (e.g. as a backing "
                            "file)", path);
    case CONFLICT_NO_READERS:
    default:
        return sd_error_set(err, -EBUSY,
                            "'%s' is locked: another process does not share "
                            "the \"%s\" permission", path, perm_names[perm]);
    }
}

static int lock_and_check(int fd, const char *path,
                          const struct lock_mode *mode, struct sd_error *err)
{
    enum lock_conflict conflict;
    int bad_byte = 0, perm = 0;
    int ret;

    ret = apply_mode(fd, mode, &bad_byte);
    if (ret == -EAGAIN)
        return sd_error_set(err, -EBUSY,
                            "'%s' is locked: another process holds an "
                            "exclusive lock on byte %d", path, bad_byte);
    if (ret < 0)
        return sd_error_set(err, ret,
                            "could not lock byte %d of '%s': %s (does the "
                            "file system support OFD locks?)", bad_byte,
                            path, strerror(-ret));
    ret = find_conflict(fd, mode, &conflict, &perm);
    if (ret < 0)
        return sd_error_set(err, ret, "could not test the locks on '%s': %s",
                            path, strerror(-ret));
    if (conflict != CONFLICT_NONE)
        return report_conflict(path, conflict, perm, err);
    return 0;
}

int img_lock_acquire(int fd, const char *path, bool writable,
                     struct sd_error *err)
{
    return lock_and_check(fd, path, writable ? &writer_mode : &reader_mode,
                          err);
}

int img_lock_release(int fd)
{
    struct flock fl;

    /* Offset 0, length 0: every byte, ours and any a future qemu adds. */
    memset(&fl, 0, sizeof(fl));
    fl.l_type = F_UNLCK;
    fl.l_whence = SEEK_SET;
    if (fcntl(fd, F_OFD_SETLK, &fl) < 0)
        return -errno;
    return 0;
}
