#!/usr/bin/env python3
"""Hostile and broken NBD clients, for tests/test-nbd-hostile.sh.

    proto-hostile.py ENV.json SCENARIO...

ENV.json gives the server's port and unix socket, "rw" (a writable
export the scenarios may scribble on) and "ro" (a read-only export whose
content is proto-raw.py's pattern(5, 0, size)). Each scenario misbehaves
in one way and checks the server's answer (usually: it hangs up); see
SCENARIOS at the end. "many-conns" also takes READY and GO file names:
it holds its connections open after writing READY until GO exists.
Exit status 0 only if every scenario behaved.
"""
import importlib
import json
import os
import socket
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
raw = importlib.import_module("proto-raw")
check = raw.check
M = 1 << 20
OPTIONS_MAX = 16384      # the server's cap on options in one handshake
ENV = {}


def closed_by_server(c, what, timeout=30):
    """The server must hang up (EOF or reset) within a generous bound."""
    c.sock.settimeout(timeout)
    check(c.at_eof(), "%s: connection still open after %d s" % (what,
                                                               timeout))
    c.close()


def send_ignoring_reset(c, data):
    """Send what the server may already have refused to read."""
    try:
        c.send(data)
    except (BrokenPipeError, ConnectionResetError):
        pass


def opened(name, structured=False):
    c = raw.RawNBD(ENV).start()
    if structured:
        check(c.structured_reply() == raw.REP_ACK, "STRUCTURED_REPLY")
    c.go(name)
    return c


def garbage_flags():
    c = raw.RawNBD(ENV)
    c.greeting()
    send_ignoring_reset(c, b"\xde\xad\xbe\xef" + os.urandom(4096))
    closed_by_server(c, "garbage client flags")
    # Garbage before even reading the greeting.
    c = raw.RawNBD(ENV)
    send_ignoring_reset(c, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 40)
    closed_by_server(c, "HTTP request instead of NBD")


def bad_option_magic():
    c = raw.RawNBD(ENV).start()
    send_ignoring_reset(c, struct.pack(">QII", 0x1122334455667788,
                                       raw.OPT_GO, 0))
    closed_by_server(c, "bad option magic")


def option_4g():
    c = raw.RawNBD(ENV).start()
    send_ignoring_reset(c, struct.pack(">QII", raw.MAGIC_OPTS, raw.OPT_INFO,
                                       0xFFFFFFFF) + bytes(65536))
    closed_by_server(c, "option of 4 GiB")


def count_replies(c, out):
    """Reader thread: count option replies until the connection ends."""
    try:
        while True:
            rtype, _ = c.read_option_reply(99)
            out["types"].add(rtype)
            out["n"] += 1
    except (EOFError, ConnectionResetError, BrokenPipeError):
        out["end"] = True
    except Exception as e:                  # reported by the caller
        out["error"] = repr(e)


def options_flood(n_send, exact):
    c = raw.RawNBD(ENV).start()
    start = time.monotonic()
    out = {"n": 0, "types": set(), "end": False, "error": None}
    reader = threading.Thread(target=count_replies, args=(c, out))
    reader.start()
    one = struct.pack(">QII", raw.MAGIC_OPTS, 99, 0)
    for i in range(0, n_send, 1000):
        send_ignoring_reset(c, one * min(1000, n_send - i))
    reader.join(120)
    check(not reader.is_alive(), "%d options: connection never ended"
          % n_send)
    check(out["error"] is None, "%d options: %s" % (n_send, out["error"]))
    check(out["types"] <= {raw.REP_ERR_UNSUP},
          "%d unknown options: reply types %s" % (n_send, out["types"]))
    if exact:
        check(out["n"] == OPTIONS_MAX, "%d options: %d replies, want %d "
              "then a close" % (n_send, out["n"], OPTIONS_MAX))
    else:
        check(out["n"] <= OPTIONS_MAX, "%d options: %d replies (cap is %d)"
              % (n_send, out["n"], OPTIONS_MAX))
    # The log names the client's port: the shell checks it was the cap,
    # not the handshake timeout, that ended this connection.
    print("options flood from port %d: %d replies in %.2f s"
          % (c.sock.getsockname()[1], out["n"], time.monotonic() - start))
    c.close()


def many_options():
    # Exactly the cap: every one answered, then the server hangs up
    # without waiting for more (nothing is left unread, so no reset
    # can hide replies).
    options_flood(OPTIONS_MAX, exact=True)
    options_flood(20000, exact=False)


def long_export_name():
    c = raw.RawNBD(ENV).start()
    send_ignoring_reset(c, struct.pack(">QII", raw.MAGIC_OPTS,
                                       raw.OPT_EXPORT_NAME, 100 << 10)
                        + b"x" * (100 << 10))
    closed_by_server(c, "EXPORT_NAME of 100 KiB")


def bad_request_magic():
    c = opened(ENV["rw"]["name"])
    r, _ = c.read(0, 512)
    check(r.error == 0, "read before the bad request")
    send_ignoring_reset(c, struct.pack(">IHHQQI", 0xCAFEF00D, 0,
                                       raw.CMD_READ, 1, 0, 512))
    closed_by_server(c, "request with a bad magic")


def write_cut_short():
    # More than the server takes: it hangs up rather than read 64 MiB.
    c = opened(ENV["rw"]["name"])
    send_ignoring_reset(c, struct.pack(">IHHQQI", raw.REQUEST_MAGIC, 0,
                                       raw.CMD_WRITE, 1, 0, 64 << 20)
                        + bytes(M))
    closed_by_server(c, "WRITE of 64 MiB")
    # A write it would take, cut short by the client going away.
    c = opened(ENV["rw"]["name"])
    send_ignoring_reset(c, struct.pack(">IHHQQI", raw.REQUEST_MAGIC, 0,
                                       raw.CMD_WRITE, 1, 0, 16 << 20)
                        + bytes(M))
    c.close()


def silent():
    """Connects and never speaks: closed by handshake_timeout."""
    c = raw.RawNBD(ENV)
    c.greeting()
    start = time.monotonic()
    closed_by_server(c, "silent client", timeout=60)
    print("silent client closed after %.1f s" % (time.monotonic() - start))


def rst_close(c):
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                      struct.pack("ii", 1, 0))
    c.close()


def abrupt_inflight():
    """64 reads and writes sent, then the client vanishes (FIN or RST)."""
    for round_ in range(6):
        c = opened(ENV["rw"]["name"], structured=round_ % 2 == 1)
        for i in range(64):
            off = (i * 3 + round_) * 65536 % (ENV["rw"]["size"] - M)
            if i % 2:
                c.request(raw.CMD_WRITE, off, 65536, 0,
                          raw.pattern(100 + round_, off, 65536))
            else:
                c.request(raw.CMD_READ, off, M)
        if round_ % 3 == 0:
            rst_close(c)
        elif round_ % 3 == 1:
            c.sock.shutdown(socket.SHUT_WR)   # half-close: server replies
            c.sock.settimeout(60)             # to a peer that never reads
            c.close()
        else:
            c.close()


def many_conns(n, ready_file, go_file):
    ro = ENV["ro"]
    conns = []
    for i in range(n):
        transport = "unix" if i % 4 == 3 else "tcp"
        c = raw.RawNBD(ENV, transport).start()
        c.go(ro["name"])
        check(c.size == ro["size"], "connection %d: size %d" % (i, c.size))
        conns.append(c)
    # All held open: the shell looks at connection.list now.
    with open(ready_file, "w") as f:
        f.write("%d\n" % n)
    deadline = time.monotonic() + 120
    while not os.path.exists(go_file):
        check(time.monotonic() < deadline, "no go-ahead from the test")
        time.sleep(0.05)
    cookies = []
    for i, c in enumerate(conns):
        off = (i * 7919 * 512) % (ro["size"] - 65536)
        cookies.append((off, c.request(raw.CMD_READ, off, 65536)))
    for i, c in enumerate(conns):
        off, cookie = cookies[i]
        r = c.wait(cookie)
        check(r.error == 0 and r.data == raw.pattern(5, off, 65536),
              "connection %d: read at %d is wrong (error %d)"
              % (i, off, r.error))
    for c in conns:
        c.send(struct.pack(">IHHQQI", raw.REQUEST_MAGIC, 0, raw.CMD_DISC,
                           0, 0, 0))
        c.close()


SCENARIOS = {
    "garbage-flags": garbage_flags,
    "bad-option-magic": bad_option_magic,
    "option-4g": option_4g,
    "many-options": many_options,
    "long-export-name": long_export_name,
    "bad-request-magic": bad_request_magic,
    "write-cut-short": write_cut_short,
    "silent": silent,
    "abrupt-inflight": abrupt_inflight,
}


def main(argv):
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    with open(argv[1]) as f:
        ENV.update(json.load(f))
    try:
        if argv[2] == "many-conns":
            many_conns(int(argv[3]), argv[4], argv[5])
            print("ok: many-conns")
            return 0
        failed = 0
        for name in argv[2:]:
            try:
                SCENARIOS[name]()
                print("ok: %s" % name)
            except (raw.ProtoError, EOFError, OSError) as e:
                print("FAIL: %s: %s: %s" % (name, type(e).__name__, e))
                failed += 1
        return 1 if failed else 0
    except (raw.ProtoError, EOFError, OSError) as e:
        print("FAIL: %s: %s: %s" % (argv[2], type(e).__name__, e))
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
