#!/usr/bin/env python3
"""NBD clients for the reload and control tests (libnbd's python binding).

    reload-nbd.py writer URI TAG DIR [--block N]
        Loop until DIR/stop exists: write a block whose bytes derive from
        (TAG, offset, generation), read it back and compare, and now and
        then re-read an older block and compare it with what was last
        written there. DIR/status holds "verified N" (updated as it goes);
        at the end DIR/map.json maps block index -> last generation.
        Exits 0 only if the connection never failed and every read
        matched; prints "verified N" on stdout.

    reload-nbd.py hold URI DIR [--write] [--offset N] [--expect-drop]
        Connect, write DIR/ready, then read (or with --write, write and
        read back) 4 KiB at offset N (default 0) again and again, updating DIR/status with the
        count, until DIR/stop exists. A failed request means the server
        dropped us: DIR/dropped is written. Exit 0 when the outcome is
        the expected one (stopped without a drop, or with --expect-drop
        dropped), 1 otherwise.

    reload-nbd.py verify SOURCE TAG MAP.json
        Read every block of SOURCE (an nbd:// or nbd+unix:// URI, or a raw
        file) and compare it with the map: the last generation written,
        or zeros where the map has nothing.

    reload-nbd.py rw URI TAG
        One connection: write a block at offset 0, read it back, compare.

    reload-nbd.py ops URI
        Known operations for export.stats: write 4096 @0, write 8192
        @65536, read 4096 @0, read 16384 @0, zero 4096 @131072,
        trim 65536 @196608, flush. Prints nothing; exit 0 on success.
"""
import json
import os
import random
import sys
import time

import nbd

DEFAULT_BLOCK = 64 * 1024


def block_bytes(tag, offset, gen, size):
    """The content of one block: a readable header, then bytes from a
    generator seeded by the same triple, so no two (export, offset,
    generation) give the same block."""
    head = ("%s:%d:%d|" % (tag, offset, gen)).encode()
    body = random.Random("%s/%d/%d" % (tag, offset, gen)).randbytes(size)
    return head + body[len(head):]


def connect(uri):
    h = nbd.NBD()
    h.connect_uri(uri)
    return h


def write_status(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text + "\n")
    os.rename(tmp, path)


def describe(tag, offset, got, want):
    return "%s: block at %d differs: read %r..., expected %r..." % (
        tag, offset, got[:40], want[:40])


def writer(uri, tag, outdir, block):
    stop = os.path.join(outdir, "stop")
    status = os.path.join(outdir, "status")
    h = connect(uri)
    nblocks = h.get_size() // block
    rng = random.Random(tag)
    gens = {}
    verified = 0
    i = 0
    while not os.path.exists(stop):
        b = rng.randrange(nblocks)
        gen = gens.get(b, 0) + 1
        data = block_bytes(tag, b * block, gen, block)
        h.pwrite(data, b * block, nbd.CMD_FLAG_FUA if i % 7 == 0 else 0)
        gens[b] = gen
        got = h.pread(block, b * block)
        if got != data:
            sys.exit(describe(tag, b * block, got, data))
        verified += 1
        if i % 4 == 3:
            old = rng.choice(list(gens))
            want = block_bytes(tag, old * block, gens[old], block)
            got = h.pread(block, old * block)
            if got != want:
                sys.exit(describe(tag, old * block, got, want))
            verified += 1
        if i % 16 == 15:
            h.flush()
        if i % 8 == 0:
            write_status(status, "verified %d" % verified)
            # Leave the two-core machine some room for the server and
            # the test driving it.
            time.sleep(0.01)
        i += 1
    h.flush()
    h.shutdown()
    with open(os.path.join(outdir, "map.json"), "w") as f:
        json.dump({"block": block, "gens": gens}, f)
    write_status(status, "verified %d" % verified)
    print("verified %d" % verified)


def hold(uri, outdir, write, offset, expect_drop):
    stop = os.path.join(outdir, "stop")
    status = os.path.join(outdir, "status")
    h = connect(uri)
    size = 4096
    write_status(os.path.join(outdir, "ready"), "ready")
    count = 0
    try:
        while not os.path.exists(stop):
            if write:
                data = block_bytes("hold", offset, count + 1, size)
                h.pwrite(data, offset)
                if h.pread(size, offset) != data:
                    sys.exit("hold: offset %d does not read back" % offset)
            else:
                h.pread(size, offset)
            count += 1
            write_status(status, "count %d" % count)
            time.sleep(0.02)
    except nbd.Error as e:
        write_status(os.path.join(outdir, "dropped"), str(e))
        print("dropped after %d requests: %s" % (count, e))
        sys.exit(0 if expect_drop else 1)
    h.shutdown()
    print("stopped after %d requests" % count)
    sys.exit(1 if expect_drop else 0)


class Source:
    """An NBD export or a raw file, read by offset."""

    def __init__(self, where):
        self.h = self.f = None
        if where.startswith("nbd:") or where.startswith("nbd+unix:"):
            self.h = connect(where)
            self.size = self.h.get_size()
        else:
            self.f = open(where, "rb")
            self.size = os.fstat(self.f.fileno()).st_size

    def read(self, offset, n):
        if self.h:
            return self.h.pread(n, offset)
        self.f.seek(offset)
        return self.f.read(n)

    def close(self):
        if self.h:
            self.h.shutdown()
        else:
            self.f.close()


def verify(where, tag, mapfile):
    with open(mapfile) as f:
        m = json.load(f)
    block = m["block"]
    gens = {int(k): v for k, v in m["gens"].items()}
    src = Source(where)
    bad = 0
    for b in range(src.size // block):
        want = (block_bytes(tag, b * block, gens[b], block) if b in gens
                else bytes(block))
        got = src.read(b * block, block)
        if got != want:
            bad += 1
            if bad <= 3:
                print(describe(tag, b * block, got, want), file=sys.stderr)
    src.close()
    if bad:
        sys.exit("%s: %d of %d blocks differ" % (where, bad,
                                                src.size // block))
    print("%d blocks match (%d written)" % (src.size // block, len(gens)))


def one_rw(uri, tag):
    h = connect(uri)
    size = min(DEFAULT_BLOCK, h.get_size())
    data = block_bytes(tag, 0, 1, size)
    h.pwrite(data, 0)
    h.flush()
    if h.pread(size, 0) != data:
        sys.exit("rw: block 0 does not read back")
    h.shutdown()


def ops(uri):
    h = connect(uri)
    h.pwrite(b"\1" * 4096, 0)
    h.pwrite(b"\2" * 8192, 65536)
    h.pread(4096, 0)
    h.pread(16384, 0)
    h.zero(4096, 131072)
    h.trim(65536, 196608)
    h.flush()
    h.shutdown()


def option(args, name, default=None):
    if name in args:
        i = args.index(name)
        value = args[i + 1]
        del args[i:i + 2]
        return value
    return default


def flag(args, name):
    if name in args:
        args.remove(name)
        return True
    return False


def main():
    args = sys.argv[1:]
    block = int(option(args, "--block", DEFAULT_BLOCK))
    offset = int(option(args, "--offset", 0))
    write = flag(args, "--write")
    expect_drop = flag(args, "--expect-drop")
    cmd = args.pop(0) if args else ""
    if cmd == "writer" and len(args) == 3:
        writer(args[0], args[1], args[2], block)
    elif cmd == "hold" and len(args) == 2:
        hold(args[0], args[1], write, offset, expect_drop)
    elif cmd == "verify" and len(args) == 3:
        verify(args[0], args[1], args[2])
    elif cmd == "rw" and len(args) == 2:
        one_rw(args[0], args[1])
    elif cmd == "ops" and len(args) == 1:
        ops(args[0])
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except nbd.Error as e:
        sys.exit("nbd error: %s" % e)
