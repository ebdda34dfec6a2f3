#!/usr/bin/env python3
"""NBD protocol checks with the raw-socket client (proto-raw.py).

    proto-checks.py ENV.json [CHECK...]

ENV.json (written by tests/test-nbd-protocol.sh) names the server's port
and unix socket and the exports: rw (qcow2 v3, writable, fresh), ro
(read-only, with a description), v2 (qcow2 compat 0.10, writable),
hidden (allow-list without 127.0.0.1), chain (read-only overlay: the
backing file holds data at [0, 1M) with seed 1, the overlay at [2M, 3M)
with seed 2). Sizes are qemu-img's. Without CHECK names, all run. Each
check stops at the first wrong answer; exit status 0 only if all pass.
"""
import importlib
import json
import os
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
raw = importlib.import_module("proto-raw")
check = raw.check
M = 1 << 20

ENV = {}


def connect(transport="tcp"):
    return raw.RawNBD(ENV, transport).start()


def opened(name, structured=False, contexts=(), flags=None):
    """A connection in transmission on export name."""
    c = connect()
    if structured:
        check(c.structured_reply() == raw.REP_ACK, "STRUCTURED_REPLY refused")
    if contexts:
        final, _ = c.meta(True, name, list(contexts))
        check(final == raw.REP_ACK, "SET_META_CONTEXT: %#x" % final)
    c.go(name)
    return c


def still_serving(c, what):
    """After an error the connection must go on: a read still works."""
    r, _ = c.read(0, 512)
    check(r.error == 0, "after %s, a read failed with %d" % (what, r.error))


def names_of(replies):
    out = []
    for rtype, p in replies[:-1]:
        check(rtype == raw.REP_SERVER, "LIST: reply type %#x" % rtype)
        (n,) = struct.unpack(">I", p[:4])
        out.append(p[4:4 + n].decode())
    return out


# --- handshake ---

def check_greeting():
    c = raw.RawNBD(ENV)
    flags = c.greeting()
    check(flags & raw.FLAG_FIXED_NEWSTYLE, "server without FIXED_NEWSTYLE")
    check(flags & ~(raw.FLAG_FIXED_NEWSTYLE | raw.FLAG_NO_ZEROES) == 0,
          "unknown handshake flags %#x" % flags)
    c.close()


def check_info_go():
    rw, ro = ENV["rw"], ENV["ro"]
    c = connect()
    final, got = c.info(ro["name"], [raw.INFO_NAME, raw.INFO_DESCRIPTION,
                                     raw.INFO_BLOCK_SIZE])
    check(final == raw.REP_ACK, "INFO ro: %#x" % final)
    check(c.size == ro["size"], "INFO size %d, qemu-img says %d"
          % (c.size, ro["size"]))
    check(got.get(raw.INFO_NAME) == ro["name"].encode(),
          "INFO_NAME %r" % got.get(raw.INFO_NAME))
    check(got.get(raw.INFO_DESCRIPTION) == ro["description"].encode(),
          "INFO_DESCRIPTION %r" % got.get(raw.INFO_DESCRIPTION))
    check(raw.INFO_BLOCK_SIZE in got, "no INFO_BLOCK_SIZE")
    bmin, bpref, bmax = struct.unpack(">III", got[raw.INFO_BLOCK_SIZE])
    check(bmin >= 1 and bmin & (bmin - 1) == 0 and bmin <= 65536,
          "minimum block size %d" % bmin)
    check(bpref >= max(bmin, 512) and bpref & (bpref - 1) == 0,
          "preferred block size %d" % bpref)
    check(bmax >= bpref and bmax % bmin == 0, "maximum block size %d" % bmax)
    ro_flags = c.tflags
    # INFO of another export, then GO: same size and flags as INFO said.
    final, _ = c.info(rw["name"])
    check(final == raw.REP_ACK and c.size == rw["size"],
          "INFO rw: %#x size %d (expected %d)" % (final, c.size, rw["size"]))
    info_flags = c.tflags
    c.go(ro["name"])
    check(c.size == ro["size"] and c.tflags == ro_flags,
          "GO gives size %d flags %#x, INFO gave %d %#x"
          % (c.size, c.tflags, ro["size"], ro_flags))
    check(info_flags & raw.TF_HAS_FLAGS, "INFO flags without HAS_FLAGS")
    still_serving(c, "GO")
    # Unknown export: ERR_UNKNOWN, then the negotiation goes on.
    c = connect()
    final, _ = c.info("no-such-export")
    check(final == raw.REP_ERR_UNKNOWN, "INFO unknown export: %#x" % final)
    final, _ = c.info("no-such-export", go=True)
    check(final == raw.REP_ERR_UNKNOWN, "GO unknown export: %#x" % final)
    c.go(rw["name"])
    check(c.size == rw["size"], "GO after ERR_UNKNOWN: size %d" % c.size)
    still_serving(c, "GO after an unknown export")


def check_list():
    visible = {ENV[k]["name"] for k in ("rw", "ro", "v2", "chain")}
    hidden = ENV["hidden"]["name"]
    c = connect()
    names = names_of(c.option(raw.OPT_LIST))
    check(visible <= set(names), "LIST %s misses some of %s"
          % (names, sorted(visible)))
    check(hidden not in names, "LIST over TCP shows %r, whose allow-list "
          "excludes 127.0.0.1" % hidden)
    check(len(names) == len(set(names)), "LIST repeats names: %s" % names)
    final, _ = c.info(hidden, go=True)
    check(final == raw.REP_ERR_POLICY, "GO to a disallowed export: %#x"
          % final)
    c.go(ENV["rw"]["name"])
    still_serving(c, "ERR_POLICY")
    # The allow-list is about network clients: the unix socket sees it.
    u = connect("unix")
    check(hidden in names_of(u.option(raw.OPT_LIST)),
          "LIST over the unix socket does not show %r" % hidden)
    u.go(hidden)
    still_serving(u, "GO over unix")


def check_options():
    rw = ENV["rw"]["name"]
    c = connect()
    replies = c.option(99, b"whatever")
    check(replies[-1][0] == raw.REP_ERR_UNSUP, "unknown option: %#x"
          % replies[-1][0])
    check(c.option(raw.OPT_STARTTLS)[-1][0] == raw.REP_ERR_UNSUP,
          "STARTTLS without TLS configured is not ERR_UNSUP")
    final, _ = c.meta(True, rw, ["base:allocation"])
    check(final == raw.REP_ERR_INVALID,
          "SET_META_CONTEXT before STRUCTURED_REPLY: %#x" % final)
    check(c.structured_reply() == raw.REP_ACK, "STRUCTURED_REPLY refused")
    check(c.structured_reply() == raw.REP_ERR_INVALID,
          "second STRUCTURED_REPLY is not ERR_INVALID")
    # Over 64 KiB, under 1 MiB: skipped and refused, negotiation goes on.
    replies = c.option(raw.OPT_INFO, b"\0" * (100 << 10))
    check(replies[-1][0] == raw.REP_ERR_TOO_BIG, "100 KiB option: %#x"
          % replies[-1][0])
    c.go(rw)
    check(c.tflags & raw.TF_DF, "DF not offered with structured replies")
    still_serving(c, "refused options")
    c = connect()
    c.send_option(raw.OPT_ABORT)
    rtype, _ = c.read_option_reply(raw.OPT_ABORT)
    check(rtype == raw.REP_ACK, "ABORT: %#x" % rtype)
    check(c.at_eof(), "server kept the connection after ABORT")


def check_client_flags():
    for flags in (0, raw.FLAG_NO_ZEROES, raw.FLAG_FIXED_NEWSTYLE | 0x80,
                  0xFFFFFFFF):
        c = raw.RawNBD(ENV)
        c.start(flags)
        # Whatever comes next, the server must hang up without replying.
        try:
            c.send_option(raw.OPT_LIST)
        except (BrokenPipeError, ConnectionResetError):
            pass
        try:
            data = c.sock.recv(20)
        except ConnectionResetError:
            data = b""
        check(data == b"", "client flags %#x: server answered %r"
              % (flags, data))
        check(c.at_eof(), "client flags %#x: connection not closed" % flags)


def check_export_name():
    for no_zeroes in (True, False):
        c = raw.RawNBD(ENV)
        c.start(raw.FLAG_FIXED_NEWSTYLE |
                (raw.FLAG_NO_ZEROES if no_zeroes else 0))
        size, flags = c.export_name(ENV["ro"]["name"])
        check(size == ENV["ro"]["size"], "EXPORT_NAME size %d" % size)
        check(flags & raw.TF_HAS_FLAGS and flags & raw.TF_READ_ONLY,
              "EXPORT_NAME flags %#x" % flags)
        check(not flags & raw.TF_DF, "DF without structured replies")
        r, data = c.read(0, 4096)
        check(r.error == 0 and len(data) == 4096,
              "read after EXPORT_NAME: %r" % r)
    # An unknown name cannot be answered: the server closes.
    c = connect()
    c.send_option(raw.OPT_EXPORT_NAME, b"no-such-export")
    check(c.at_eof(), "EXPORT_NAME of an unknown export: not closed")


def check_meta_contexts():
    rw = ENV["rw"]["name"]
    c = connect()
    c.structured_reply()
    final, ctxs = c.meta(False, rw, [])
    names = sorted(n for _, n in ctxs)
    check(final == raw.REP_ACK and names == ["base:allocation",
                                             "qemu:allocation-depth"],
          "LIST_META_CONTEXT without queries: %#x %s" % (final, ctxs))
    final, ctxs = c.meta(True, rw, ["base:allocation"])
    check(final == raw.REP_ACK and len(ctxs) == 1 and
          ctxs[0][1] == "base:allocation" and ctxs[0][0] != 0,
          "SET base:allocation: %#x %s" % (final, ctxs))
    base_id = ctxs[0][0]
    c.go(rw)
    r = c.cmd(raw.CMD_BLOCK_STATUS, 0, M)
    check(r.error == 0, "BLOCK_STATUS: error %d" % r.error)
    check(len(r.chunks) == 1, "one context, %d chunks" % len(r.chunks))
    raw.status_extents(r, base_id)
    # An unknown namespace selects nothing; BLOCK_STATUS is then invalid.
    c = connect()
    c.structured_reply()
    final, ctxs = c.meta(True, rw, ["x-unknown:foo"])
    check(final == raw.REP_ACK and ctxs == [],
          "SET x-unknown:foo: %#x %s" % (final, ctxs))
    c.go(rw)
    r = c.cmd(raw.CMD_BLOCK_STATUS, 0, M)
    check(r.error == raw.EINVAL,
          "BLOCK_STATUS without a context: error %d" % r.error)
    still_serving(c, "BLOCK_STATUS without a context")


# --- transmission flags ---

def flags_of(name, structured):
    c = opened(name, structured)
    f = c.tflags
    c.close()
    return f


def check_tflags():
    ro = flags_of(ENV["ro"]["name"], False)
    check(ro & raw.TF_READ_ONLY, "read-only export without READ_ONLY")
    check(not ro & (raw.TF_TRIM | raw.TF_WRITE_ZEROES | raw.TF_FAST_ZERO),
          "read-only export offers TRIM/WRITE_ZEROES: %#x" % ro)
    rw = flags_of(ENV["rw"]["name"], False)
    for bit, name in ((raw.TF_HAS_FLAGS, "HAS_FLAGS"),
                      (raw.TF_FLUSH, "FLUSH"), (raw.TF_FUA, "FUA"),
                      (raw.TF_TRIM, "TRIM"),
                      (raw.TF_WRITE_ZEROES, "WRITE_ZEROES"),
                      (raw.TF_FAST_ZERO, "FAST_ZERO"),
                      (raw.TF_MULTI_CONN, "CAN_MULTI_CONN"),
                      (raw.TF_CACHE, "CACHE")):
        check(rw & bit, "qcow2 v3 export without %s: %#x" % (name, rw))
    check(not rw & (raw.TF_READ_ONLY | raw.TF_DF),
          "writable export, simple replies: %#x" % rw)
    check(flags_of(ENV["rw"]["name"], True) == rw | raw.TF_DF,
          "structured replies must add DF and nothing else")
    check(ro & raw.TF_MULTI_CONN, "read-only export without CAN_MULTI_CONN")


# --- commands ---

def check_read_write():
    rw = ENV["rw"]["name"]
    a = raw.pattern(11, 0, M)
    s = opened(rw)
    r = s.cmd(raw.CMD_WRITE, 0, M, raw.F_FUA, a)
    check(r.error == 0 and not r.structured, "WRITE FUA: %r" % r)
    r, data = s.read(0, M)
    check(r.error == 0 and not r.structured and data == a,
          "simple READ does not return what was written")
    check(s.cmd(raw.CMD_FLUSH).error == 0, "FLUSH failed")
    check(s.cmd(raw.CMD_CACHE, 0, 4 * M).error == 0, "CACHE failed")
    # Structured: [0, 1M) is data, [1M, 2M) never written.
    c = opened(rw, structured=True)
    r, data = c.read(0, 2 * M)
    check(r.error == 0 and r.structured, "structured READ: %r" % r)
    check(data == a + bytes(M), "structured READ content is wrong")
    holes = [p for t, _, p in r.chunks if t == raw.CHUNK_HOLE]
    check(holes, "READ over a hole gave no OFFSET_HOLE chunk: %r" % r)
    check(struct.unpack(">QI", holes[-1]) == (M, M),
          "hole chunk %r, expected 1M+1M" % (struct.unpack(">QI", holes[-1]),))
    r, data = c.read(0, 2 * M, raw.F_DF)
    check(r.error == 0 and len(r.chunks) == 1 and
          r.chunks[0][0] == raw.CHUNK_DATA, "READ with DF: %r" % r)
    check(data == a + bytes(M), "READ with DF: content is wrong")
    # Writes through one connection read back through the other.
    b = raw.pattern(12, 5000, 70000)
    check(c.cmd(raw.CMD_WRITE, 5000, 70000, 0, b).error == 0, "WRITE")
    r, data = s.read(5000, 70000)
    check(data == b, "unaligned write does not read back")


def check_trim_zero():
    rw = ENV["rw"]["name"]
    c = opened(rw, structured=True)
    base = 8 * M
    a = raw.pattern(21, base, M)
    check(c.cmd(raw.CMD_WRITE, base, M, 0, a).error == 0, "WRITE")
    check(c.cmd(raw.CMD_TRIM, base, 128 << 10).error == 0, "TRIM")
    r, data = c.read(base, M)
    check(data[:128 << 10] == bytes(128 << 10), "trimmed range is not zero")
    check(data[128 << 10:] == a[128 << 10:], "TRIM touched data after it")
    r = c.cmd(raw.CMD_WRITE_ZEROES, base + (128 << 10), 100000, raw.F_NO_HOLE)
    check(r.error == 0, "WRITE_ZEROES NO_HOLE: %d" % r.error)
    # Whole clusters: qcow2 v3 zeroes them by a flag, fast.
    r = c.cmd(raw.CMD_WRITE_ZEROES, base + (512 << 10), 128 << 10,
              raw.F_FAST_ZERO | raw.F_FUA)
    check(r.error == 0, "WRITE_ZEROES FAST_ZERO on qcow2 v3: %d" % r.error)
    # Part of a cluster needs writing zeros: the server may refuse with
    # ENOTSUP (and change nothing), or do it.
    r = c.cmd(raw.CMD_WRITE_ZEROES, base + (800 << 10), 3000,
              raw.F_FAST_ZERO)
    check(r.error in (0, raw.ENOTSUP),
          "FAST_ZERO of part of a cluster: error %d" % r.error)
    part_zeroed = r.error == 0
    r, data = c.read(base, M)
    expect = bytearray(a)
    expect[:(128 << 10) + 100000] = bytes((128 << 10) + 100000)
    expect[512 << 10:640 << 10] = bytes(128 << 10)
    if part_zeroed:
        expect[800 << 10:(800 << 10) + 3000] = bytes(3000)
    check(data == bytes(expect), "zeroed ranges do not read back as zeros "
          "(or neighbours changed)")
    # qcow2 v2 has no zero flag: FAST_ZERO is not offered, and a client
    # that sends it anyway gets an error and its data stays.
    v2 = opened(ENV["v2"]["name"], structured=True)
    check(not v2.tflags & raw.TF_FAST_ZERO, "qcow2 v2 offers FAST_ZERO")
    b = raw.pattern(22, 0, 256 << 10)
    check(v2.cmd(raw.CMD_WRITE, 0, 256 << 10, 0, b).error == 0, "WRITE v2")
    r = v2.cmd(raw.CMD_WRITE_ZEROES, 0, 256 << 10, raw.F_FAST_ZERO)
    check(r.error in (raw.ENOTSUP, raw.EINVAL),
          "FAST_ZERO on qcow2 v2: error %d (want ENOTSUP or EINVAL)" % r.error)
    r, data = v2.read(0, 256 << 10)
    check(data == b, "failed FAST_ZERO changed the data")
    check(v2.cmd(raw.CMD_WRITE_ZEROES, 0, 65536).error == 0,
          "plain WRITE_ZEROES on qcow2 v2")
    r, data = v2.read(0, 256 << 10)
    check(data == bytes(65536) + b[65536:], "WRITE_ZEROES on v2")


def check_block_status():
    ch = ENV["chain"]
    c = connect()
    c.structured_reply()
    final, ctxs = c.meta(True, ch["name"], ["base:allocation",
                                            "qemu:allocation-depth"])
    ids = {n: i for i, n in ctxs}
    check(final == raw.REP_ACK and len(ids) == 2 and
          len(set(ids.values())) == 2, "SET both contexts: %s" % ctxs)
    c.go(ch["name"])
    r = c.cmd(raw.CMD_BLOCK_STATUS, 0, 4 * M)
    check(r.error == 0 and len(r.chunks) == 2, "BLOCK_STATUS: %r" % r)
    check(r.chunks[-1][1] & raw.RF_DONE and not r.chunks[0][1] & raw.RF_DONE,
          "DONE must be on the last chunk only")

    def expand(extents, length):
        """Per-MiB values (the layout is MiB-aligned)."""
        out, pos = [], 0
        for n, v in extents:
            check(n > 0, "zero-length extent")
            out += [v] * (n // M)
            check(n % M == 0 or pos + n >= length,
                  "extent %d+%d not on the layout's MiB grid" % (pos, n))
            pos += n
        check(0 < pos <= length, "extents cover %d of %d" % (pos, length))
        return out

    depth = expand(raw.status_extents(r, ids["qemu:allocation-depth"]), 4 * M)
    check(depth[:4] == [2, 0, 1, 0], "allocation depth per MiB: %s (want "
          "backing=2, none=0, overlay=1, none=0)" % depth)
    base = expand(raw.status_extents(r, ids["base:allocation"]), 4 * M)
    check(base[:4] == [0, 3, 0, 3],
          "base:allocation per MiB: %s (want data, hole, data, hole)" % base)
    for flags, what in ((raw.F_REQ_ONE, "REQ_ONE"),):
        r = c.cmd(raw.CMD_BLOCK_STATUS, 2 * M, 2 * M, flags)
        for name, want in (("qemu:allocation-depth", 1),
                           ("base:allocation", 0)):
            ext = raw.status_extents(r, ids[name])
            check(len(ext) == 1 and ext[0] == (M, want),
                  "%s with %s: %s" % (name, what, ext))
    # The data itself.
    r, data = c.read(0, 4 * M)
    check(data == raw.pattern(1, 0, M) + bytes(M) + raw.pattern(2, 2 * M, M)
          + bytes(M), "chain reads wrong data")


def check_disc():
    c = opened(ENV["ro"]["name"])
    cookies = [c.request(raw.CMD_READ, i * 65536, 65536) for i in range(8)]
    c.send(struct.pack(">IHHQQI", raw.REQUEST_MAGIC, 0, raw.CMD_DISC, 999,
                       0, 0))
    got = set()
    for _ in cookies:
        r = c.read_reply()
        check(r.error == 0 and len(r.data) == 65536, "read before DISC: %r"
              % r)
        got.add(r.cookie)
    check(got == set(cookies), "replies before DISC: %s" % sorted(got))
    check(c.at_eof(), "server did not close after DISC")


# --- errors ---

def check_errors():
    rw, ro = ENV["rw"], ENV["ro"]
    size = rw["size"]
    for structured in (False, True):
        c = opened(rw["name"], structured)
        tests = [
            ("read past the end", (raw.CMD_READ, size - 512, 4096),
             (raw.EINVAL,)),
            ("write past the end", (raw.CMD_WRITE, size - 512, 4096),
             (raw.ENOSPC,)),
            ("unknown command 99", (99, 0, 512), (raw.EINVAL,)),
            ("READ with flag 0x40", (raw.CMD_READ, 0, 512, 0x40),
             (raw.EINVAL,)),
            ("WRITE with REQ_ONE", (raw.CMD_WRITE, 0, 512, raw.F_REQ_ONE),
             (raw.EINVAL,)),
            ("READ of 33 MiB", (raw.CMD_READ, 0, 33 * M),
             (raw.EOVERFLOW, raw.EINVAL)),
            ("zero-length READ", (raw.CMD_READ, 0, 0), (raw.EINVAL,)),
            ("FLUSH with a length", (raw.CMD_FLUSH, 0, 512), (raw.EINVAL,)),
            ("BLOCK_STATUS without a context",
             (raw.CMD_BLOCK_STATUS, 0, 512), (raw.EINVAL,)),
        ]
        if not structured:
            tests.append(("READ with DF, simple replies",
                          (raw.CMD_READ, 0, 512, raw.F_DF), (raw.EINVAL,)))
        for what, req, want in tests:
            r = c.cmd(*req)
            check(r.error in want, "%s: error %d, want %s"
                  % (what, r.error, want))
            if structured and req[0] == raw.CMD_READ:
                check(r.structured and r.chunks[-1][0] == raw.CHUNK_ERROR,
                      "%s: READ error not as an error chunk: %r" % (what, r))
            still_serving(c, what)
    c = opened(ro["name"])
    for what, req in (("WRITE", (raw.CMD_WRITE, 0, 4096)),
                      ("TRIM", (raw.CMD_TRIM, 0, 4096)),
                      ("WRITE_ZEROES", (raw.CMD_WRITE_ZEROES, 0, 4096))):
        r = c.cmd(*req)
        check(r.error == raw.EPERM, "%s on a read-only export: error %d"
              % (what, r.error))
        still_serving(c, what + " on a read-only export")


def check_pipelined():
    """Requests sent back to back in one burst, and a burst sent a few
    bytes at a time: the server takes several from one receive, and
    headers and payloads that straddle receives, small payloads and large
    ones (received past the staging buffer), and a refused write whose
    payload it must skip in step."""
    rw, size = ENV["rw"]["name"], ENV["rw"]["size"]
    base = 20 * M
    for burst, piece in ((1, None), (2, 7)):
        c = opened(rw, structured=True)
        expect, blob, off = {}, [], base + (burst - 1) * 2 * M
        for i in range(120):
            n = (1, 512, 4096, 3000, 65536, 200000)[i % 6]
            data = raw.pattern(100 * burst + i, off, n)
            cookie = c.next_cookie
            blob.append(struct.pack(">IHHQQI", raw.REQUEST_MAGIC, 0,
                                    raw.CMD_WRITE, cookie, off, n) + data)
            c.next_cookie += 1
            c.pending[cookie] = (raw.CMD_WRITE, n)
            expect[cookie] = 0
            if i == 60:   # past the end: refused, its payload skipped
                cookie = c.next_cookie
                blob.append(struct.pack(">IHHQQI", raw.REQUEST_MAGIC, 0,
                                        raw.CMD_WRITE, cookie, size, 4096) +
                            bytes(4096))
                c.next_cookie += 1
                c.pending[cookie] = (raw.CMD_WRITE, 4096)
                expect[cookie] = None
            off += n
        data = b"".join(blob)
        if piece is None:
            c.send(data)
        else:
            for i in range(0, len(data), 4096):
                chunk = data[i:i + 4096]
                # The first pieces of each 4 KiB go a few bytes at a time.
                for j in range(0, 64, piece):
                    c.send(chunk[j:min(j + piece, 64)])
                    if j == 0 and i % 65536 == 0:
                        time.sleep(0.001)
                c.send(chunk[64:])
        for _ in expect:
            r = c.read_reply()
            if expect[r.cookie] is None:
                check(r.error != 0, "write past the end was not refused")
            else:
                check(r.error == 0, "pipelined WRITE %d failed: %d"
                      % (r.cookie, r.error))
        r, got = c.read(base + (burst - 1) * 2 * M, off - base -
                        (burst - 1) * 2 * M)
        want = b"".join(b[28:] for b in blob if struct.unpack(
            ">Q", b[16:24])[0] != size)
        check(r.error == 0 and got == want,
              "burst %d: what was written does not read back" % burst)
        still_serving(c, "a pipelined burst")
        c.close()


CHECKS = {
    "greeting": check_greeting,
    "info-go": check_info_go,
    "list": check_list,
    "options": check_options,
    "client-flags": check_client_flags,
    "export-name": check_export_name,
    "meta-contexts": check_meta_contexts,
    "tflags": check_tflags,
    "read-write": check_read_write,
    "trim-zero": check_trim_zero,
    "block-status": check_block_status,
    "disc": check_disc,
    "errors": check_errors,
    "pipelined": check_pipelined,
}


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    with open(argv[1]) as f:
        ENV.update(json.load(f))
    failed = 0
    for name in argv[2:] or list(CHECKS):
        try:
            CHECKS[name]()
            print("ok: %s" % name)
        except (raw.ProtoError, EOFError, OSError) as e:
            print("FAIL: %s: %s: %s" % (name, type(e).__name__, e))
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
