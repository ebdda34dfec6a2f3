#!/usr/bin/env python3
"""NBD protocol checks through libnbd's python binding (an independent
client), run by tests/test-nbd-protocol.sh:

    proto-nbdsh.py ENV.json BASE-URI AIO-EXPORT-URI

BASE-URI names the server with an empty export name (nbd://HOST:PORT/);
ENV.json is the one proto-checks.py reads. AIO-EXPORT-URI is a writable
export of at least 64 MiB that nothing else uses. Also, as the
well-behaved client of tests/test-nbd-hostile.sh:

    proto-nbdsh.py --good-client URI STOP-FILE REPORT-FILE

writes, reads back and verifies (many requests in flight) until
STOP-FILE exists, then writes "ok ROUNDS" or the first error to
REPORT-FILE.
"""
import json
import os
import random
import sys
import time

import nbd

M = 1 << 20


class CheckError(Exception):
    pass


def check(cond, what):
    if not cond:
        raise CheckError(what)


def content(seed, offset, length):
    """Bytes naming their seed and offset every 512 bytes."""
    out = bytearray(length)
    for pos in range(0, length, 512):
        tag = b"%08x:%012x;" % (seed & 0xFFFFFFFF, offset + pos)
        out[pos:pos + len(tag)] = tag[:length - pos]
    return bytes(out)


def check_negotiation(env, base_uri):
    h = nbd.NBD()
    h.set_opt_mode(True)
    h.connect_uri(base_uri)
    names = []
    h.opt_list(lambda name, desc: names.append(name) or 0)
    for k in ("rw", "ro", "v2", "chain"):
        check(env[k]["name"] in names, "opt_list misses %s: %s"
              % (env[k]["name"], names))
    check(env["hidden"]["name"] not in names,
          "opt_list shows an export the client may not use")
    h.set_export_name(env["ro"]["name"])
    h.set_full_info(True)
    h.opt_info()
    check(h.get_size() == env["ro"]["size"], "opt_info size %d"
          % h.get_size())
    check(h.get_export_description() == env["ro"]["description"],
          "description %r" % h.get_export_description())
    check(h.is_read_only(), "read-only export: is_read_only false")
    check(not h.can_trim() and not h.can_zero(),
          "read-only export offers trim or zero")
    check(h.get_block_size(nbd.SIZE_PREFERRED) >= 512, "preferred block size")
    ctxs = []
    h.opt_list_meta_context(lambda name: ctxs.append(name) or 0)
    check(sorted(ctxs) == ["base:allocation", "qemu:allocation-depth"],
          "opt_list_meta_context: %s" % ctxs)
    h.set_export_name(env["rw"]["name"])
    h.opt_go()
    check(h.get_size() == env["rw"]["size"], "GO size")
    check(h.get_structured_replies_negotiated(), "no structured replies")
    for what in ("can_flush", "can_fua", "can_trim", "can_zero",
                 "can_fast_zero", "can_multi_conn", "can_df", "can_cache"):
        check(getattr(h, what)(), "writable qcow2 v3 export: %s false" % what)
    check(not h.is_read_only(), "writable export is read-only")
    h.shutdown()


def check_structured_read(env, base_uri):
    h = nbd.NBD()
    h.add_meta_context(nbd.CONTEXT_BASE_ALLOCATION)
    h.add_meta_context("qemu:allocation-depth")
    h.connect_uri(base_uri + env["chain"]["name"])
    chunks = []

    def chunk(buf, offset, status, error):
        chunks.append((offset, len(buf), status, bytes(buf)))
        return 0

    buf = h.pread_structured(4 * M, 0, chunk)
    check(len(buf) == 4 * M, "pread_structured length")
    holes = [(o, n) for o, n, s, _ in chunks if s == nbd.READ_HOLE]
    check(any(o <= M and o + n >= 2 * M for o, n in holes) or
          sum(n for o, n in holes if M <= o < 2 * M) == M,
          "no READ_HOLE chunk over [1M, 2M): %s"
          % [(o, n, s) for o, n, s, _ in chunks])
    for o, n, s, data in chunks:
        if s == nbd.READ_HOLE:
            check(data == bytes(n), "hole chunk with data")
    seen = {}

    def extent(ctx, offset, entries, error):
        seen.setdefault(ctx, []).extend(entries)
        return 0

    h.block_status(4 * M, 0, extent)
    check(set(seen) == {"base:allocation", "qemu:allocation-depth"},
          "block_status contexts: %s" % list(seen))
    depth = seen["qemu:allocation-depth"]
    check(depth[:2] == [M, 2], "allocation depth starts %s" % depth[:2])
    h.block_status(4 * M, 0, extent, nbd.CMD_FLAG_REQ_ONE)
    h.shutdown()


def run_aio(h, reqs):
    """Issue every (kind, offset, data or length) at once; wait for all.
    Returns {index: bytes read} and the completion order."""
    order, bufs, cookies = [], {}, {}

    def done(i):
        def cb(error):
            order.append(i)
            return 0
        return cb

    for i, (kind, off, arg) in enumerate(reqs):
        if kind == "w":
            cookies[i] = h.aio_pwrite(arg, off, done(i))
        else:
            bufs[i] = nbd.Buffer(arg)
            cookies[i] = h.aio_pread(bufs[i], off, done(i))
    check(h.aio_in_flight() > 1, "requests were not in flight together")
    while h.aio_in_flight() > 0:
        h.poll(-1)
    for i, c in cookies.items():
        check(h.aio_command_completed(c), "command %d not completed" % i)
    return {i: b.to_bytearray() for i, b in bufs.items()}, order


def check_aio(aio_uri):
    """64 reads and writes of mixed sizes in flight on one connection."""
    rnd = random.Random(7)
    h = nbd.NBD()
    h.connect_uri(aio_uri)
    size = h.get_size()
    slot = size // 128
    lengths = [rnd.choice((512, 4096, 65536, 100000, slot // 2, slot))
               for _ in range(128)]
    # Round 1: 64 writes to the even slots.
    w1 = [("w", 2 * i * slot, content(i, 2 * i * slot, lengths[2 * i]))
          for i in range(64)]
    _, order = run_aio(h, w1)
    check(sorted(order) == list(range(64)), "writes completed: %s" % order)
    # Round 2: 32 writes to odd slots and 32 reads of even ones, mixed.
    mixed = []
    for i in range(32):
        off = (2 * i + 1) * slot
        mixed.append(("w", off, content(1000 + i, off, lengths[2 * i + 1])))
        mixed.append(("r", 2 * i * slot, lengths[2 * i]))
    got, order2 = run_aio(h, mixed)
    for i, data in got.items():
        k = mixed[i][1] // slot // 2
        check(bytes(data) == w1[k][2], "aio read %d returned wrong data" % i)
    # Round 3: read everything written, 64 at a time.
    reads = [("r", off, len(data)) for _, off, data in w1[32:]]
    reads += [("r", off, len(data)) for kind, off, data in mixed
              if kind == "w"]
    expect = [data for _, _, data in w1[32:]]
    expect += [data for kind, _, data in mixed if kind == "w"]
    got, order3 = run_aio(h, reads)
    for i in range(len(reads)):
        check(bytes(got[i]) == expect[i], "aio read-back %d is wrong" % i)
    out_of_order = sum(1 for o in (order, order2, order3)
                       if o != sorted(o))
    print("aio: %d of 3 rounds completed out of order" % out_of_order)
    h.shutdown()


def good_client(uri, stop_file, report_file):
    """Writes, reads back and verifies its own model until told to stop."""
    rnd = random.Random(os.getpid())
    model = {}
    rounds = 0
    try:
        h = nbd.NBD()
        h.connect_uri(uri)
        size = h.get_size()
        blocks = size // 65536
        while not os.path.exists(stop_file):
            picks = rnd.sample(range(blocks), 16)
            reqs = []
            for b in picks:
                data = content(rounds * 100 + b, b * 65536, 65536)
                reqs.append(("w", b * 65536, data))
                model[b] = data
            run_aio(h, reqs)
            picks = rnd.sample(sorted(model), min(16, len(model)))
            got, _ = run_aio(h, [("r", b * 65536, 65536) for b in picks])
            for i, b in enumerate(picks):
                check(bytes(got[i]) == model[b],
                      "block %d reads back wrong in round %d" % (b, rounds))
            h.flush()
            rounds += 1
            time.sleep(0.01)
        h.shutdown()
        result = "ok %d" % rounds
    except Exception as e:      # the report names whatever went wrong
        result = "error after %d rounds: %s: %s" % (rounds, type(e).__name__,
                                                    e)
    with open(report_file, "w") as f:
        f.write(result + "\n")
    return 0 if result.startswith("ok") else 1


def main(argv):
    if len(argv) == 5 and argv[1] == "--good-client":
        return good_client(argv[2], argv[3], argv[4])
    if len(argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    with open(argv[1]) as f:
        env = json.load(f)
    failed = 0
    for name, fn, args in (("negotiation", check_negotiation, (env, argv[2])),
                           ("structured-read", check_structured_read,
                            (env, argv[2])),
                           ("aio", check_aio, (argv[3],))):
        try:
            fn(*args)
            print("ok: nbd %s" % name)
        except (CheckError, nbd.Error) as e:
            print("FAIL: nbd %s: %s" % (name, e))
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
