#!/usr/bin/env python3
"""Writer and checker for tests/test-nbd-crash.sh (libnbd's python module).

    clients-crash.py write URI JOURNAL SEED READY
        Write random data at random offsets into the export until the
        connection dies (the test kills the server), with many writes in
        flight, then save the journal (JSON). READY is created once the
        first write has been sent. Exit 0 when the connection died, 3 when
        it never did (MAX_SECONDS), 1 on any other trouble, including a
        write the server answered with an error.
    clients-crash.py verify IMAGE.raw BASELINE.raw JOURNAL
        IMAGE (the export's content after the kill) must be BASELINE (its
        content before the round) with the round's writes applied: every
        write whose reply arrived reads back exactly; a write that was in
        flight at the kill left each 512-byte sector either as it was or
        as written; bytes no write touched are unchanged.

Writes are 4 KiB to 1 MiB (log-uniform), 512-byte aligned, and never overlap another
write in flight, so the order of overlapping writes is their submission
order and the last write of every byte is unambiguous. The data of write
i is a slice of a pool of random bytes made from SEED, at a random
shift, so the journal (offset, length, shift, replied) can rebuild it.
"""
import errno
import json
import random
import sys
import time

SECTOR = 512
MIN_LEN = 4096
MAX_LEN = 1 << 20
POOL = 4 << 20
DEPTH = 16
MAX_SECONDS = 60
# How libnbd fails commands in flight when the connection goes.
GONE_ERRNOS = (errno.ENOTCONN, errno.ECONNRESET, errno.EPIPE, errno.ESHUTDOWN)


def make_pool(seed):
    return random.Random(seed).randbytes(POOL)


def write(uri, journal_path, seed, ready_path):
    import nbd

    seed = int(seed)
    rng = random.Random(seed * 7 + 1)
    pool = make_pool(seed)
    view = memoryview(pool)
    writes = []          # [offset, length, shift, replied]
    server_errors = []
    inflight = {}        # cookie -> index in writes
    h = nbd.NBD()
    h.connect_uri(uri)
    size = h.get_size()

    def overlaps(off, end):
        for i in inflight.values():
            o, n = writes[i][0], writes[i][1]
            if o < end and off < o + n:
                return True
        return False

    def submit():
        for _ in range(8):
            # Log-uniform: as many small writes as large ones.
            length = int(MIN_LEN * (MAX_LEN / MIN_LEN) ** rng.random()) // SECTOR * SECTOR
            off = rng.randrange(0, (size - length) // SECTOR + 1) * SECTOR
            if not overlaps(off, off + length):
                break
        else:
            return False
        shift = rng.randrange(0, POOL - length + 1)
        buf = nbd.Buffer.from_buffer(view[shift:shift + length])
        cookie = h.aio_pwrite(buf, off)
        inflight[cookie] = len(writes)
        writes.append([off, length, shift, False])
        return True

    def gone():
        # A server that vanished leaves the handle dead (reset) or
        # closed (end of file); either way the connection is over.
        return h.aio_is_dead() or h.aio_is_closed()

    def retire():
        for cookie in list(inflight):
            try:
                done = h.aio_command_completed(cookie)
            except nbd.Error as e:
                done = True
                if not gone() and e.errno not in GONE_ERRNOS:
                    server_errors.append("write %d (offset %d, length %d): %s"
                                         % (inflight[cookie], writes[inflight[cookie]][0],
                                            writes[inflight[cookie]][1], e))
            else:
                if done:
                    writes[inflight[cookie]][3] = True
            if done:
                del inflight[cookie]

    started = time.monotonic()
    died = False
    try:
        while time.monotonic() - started < MAX_SECONDS:
            while len(inflight) < DEPTH and submit():
                pass
            if ready_path and len(writes) > 0:
                open(ready_path, "w").close()
                ready_path = None
            h.poll(-1)
            retire()
            if gone():
                break
    except nbd.Error:
        pass
    died = gone()
    if died:
        try:
            retire()
        except nbd.Error:
            pass
    with open(journal_path, "w") as f:
        json.dump({"seed": seed, "writes": writes, "errors": server_errors}, f)
    replied = sum(1 for w in writes if w[3])
    print("%d writes sent, %d replied" % (len(writes), replied))
    if server_errors:
        print("the server answered writes with errors:\n  "
              + "\n  ".join(server_errors[:10]), file=sys.stderr)
        return 1
    if not died:
        print("the connection never died", file=sys.stderr)
        return 3
    return 0


def first_difference(a, b, start, end):
    step = 1 << 16
    pos = start
    while pos < end:
        n = min(step, end - pos)
        if a[pos:pos + n] != b[pos:pos + n]:
            for i in range(pos, pos + n):
                if a[i] != b[i]:
                    return i
        pos += n
    return None


def last_write_at(writes, offset):
    for i in range(len(writes) - 1, -1, -1):
        o, n = writes[i][0], writes[i][1]
        if o <= offset < o + n:
            return i
    return None


def verify(image_path, baseline_path, journal_path):
    with open(journal_path) as f:
        journal = json.load(f)
    with open(image_path, "rb") as f:
        image = f.read()
    with open(baseline_path, "rb") as f:
        expected = bytearray(f.read())
    if len(image) != len(expected):
        print("image is %d bytes, baseline %d" % (len(image), len(expected)), file=sys.stderr)
        return 1
    pool = make_pool(journal["seed"])
    writes = journal["writes"]
    uncertain = {}       # sector -> (old bytes, new bytes)
    for off, length, shift, replied in writes:
        data = pool[shift:shift + length]
        first = off // SECTOR
        for s in range(first, first + length // SECTOR):
            if replied:
                if not uncertain:
                    break
                uncertain.pop(s, None)
            else:
                at = (s - first) * SECTOR
                old = uncertain[s][0] if s in uncertain else \
                    bytes(expected[s * SECTOR:(s + 1) * SECTOR])
                uncertain[s] = (old, data[at:at + SECTOR])
        expected[off:off + length] = data
    # A sector an unreplied write touched may hold either version.
    torn = []
    for s, (old, new) in uncertain.items():
        got = image[s * SECTOR:(s + 1) * SECTOR]
        if got == old:
            expected[s * SECTOR:(s + 1) * SECTOR] = old
        elif got != new:
            torn.append(s)
    bad = first_difference(image, expected, 0, len(image))
    if torn or bad is not None:
        at = torn[0] * SECTOR if torn else bad
        w = last_write_at(writes, at)
        if w is None:
            what = "no write touched it: it must read as before the round"
        else:
            o, n, _, replied = writes[w]
            what = "last written by write %d (offset %d, length %d, %s)" % (
                w, o, n, "replied" if replied else "in flight at the kill: old or new data")
        print("byte %d is wrong; %s%s" % (at, what,
              "; %d sectors hold neither old nor new data" % len(torn) if torn else ""),
              file=sys.stderr)
        return 1
    replied = sum(1 for w in writes if w[3])
    print("verified: %d replied writes read back, %d in flight at the kill"
          % (replied, len(writes) - replied))
    return 0


def main(argv):
    if len(argv) == 6 and argv[1] == "write":
        return write(*argv[2:])
    if len(argv) == 5 and argv[1] == "verify":
        return verify(*argv[2:])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
