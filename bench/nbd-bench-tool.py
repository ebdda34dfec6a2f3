#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Small helpers of bench/nbd-bench.sh (run with Debian's /usr/bin/python3,
which has the libnbd module).

    nbd-bench-tool.py mkdata FILE SIZE
        FILE gets SIZE bytes of incompressible, non-zero data (a random
        MiB, with each copy's first 8 bytes set to its index, so no two
        MiB are equal).
    nbd-bench-tool.py rpc-time SOCKET METHOD [PARAMS-JSON]
        Call a JSON-RPC method on sendense-nbd's control socket; print the
        milliseconds from sending the request to reading the whole reply,
        then the reply, on one line each. Exit 1 on an error reply.
    nbd-bench-tool.py idle URI N
        Open N NBD connections to URI (handshake done), print "ready N",
        and keep them open until stdin is closed.
    nbd-bench-tool.py port
        Print a free TCP port on 127.0.0.1.
"""
import json
import os
import socket
import sys
import time

MIB = 1 << 20


def mkdata(path, size):
    block = bytearray(os.urandom(MIB))
    with open(path, "wb") as f:
        index = 0
        left = size
        while left > 0:
            block[0:8] = index.to_bytes(8, "little")
            n = min(left, MIB)
            f.write(block[:n])
            left -= n
            index += 1
    return 0


def rpc_time(path, method, params):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(300)
    s.connect(path)
    req = {"jsonrpc": "2.0", "id": 1, "method": method}
    if params is not None:
        req["params"] = params
    data = (json.dumps(req) + "\n").encode()
    start = time.monotonic()
    s.sendall(data)
    buf = b""
    while not buf.endswith(b"\n"):
        chunk = s.recv(65536)
        if not chunk:
            print("control socket closed without a reply", file=sys.stderr)
            return 1
        buf += chunk
    elapsed_ms = (time.monotonic() - start) * 1000.0
    s.close()
    reply = json.loads(buf)
    print("%.3f" % elapsed_ms)
    print(json.dumps(reply.get("result", reply.get("error"))))
    return 1 if "error" in reply else 0


def idle(uri, count):
    import nbd  # only this subcommand needs libnbd
    handles = []
    for _ in range(count):
        h = nbd.NBD()
        h.connect_uri(uri)
        handles.append(h)
    print("ready %d" % len(handles), flush=True)
    sys.stdin.read()
    for h in handles:
        h.shutdown()
    return 0


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    print(s.getsockname()[1])
    s.close()
    return 0


def main(argv):
    if len(argv) >= 4 and argv[1] == "mkdata":
        return mkdata(argv[2], int(argv[3]))
    if len(argv) in (4, 5) and argv[1] == "rpc-time":
        params = json.loads(argv[4]) if len(argv) == 5 else None
        return rpc_time(argv[2], argv[3], params)
    if len(argv) == 4 and argv[1] == "idle":
        return idle(argv[2], int(argv[3]))
    if len(argv) == 2 and argv[1] == "port":
        return free_port()
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
