#!/usr/bin/env python3
"""Call sendense-nbd's control socket (JSON-RPC 2.0, one JSON per line).

    nbd-rpc.py SOCKET METHOD [PARAMS-JSON]

Prints the result as JSON on stdout and exits 0, or prints the error
object on stderr and exits 1.
"""
import json
import socket
import sys


def call(path, method, params=None, timeout=120):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(path)
    req = {"jsonrpc": "2.0", "id": 1, "method": method}
    if params is not None:
        req["params"] = params
    s.sendall((json.dumps(req) + "\n").encode())
    buf = b""
    while not buf.endswith(b"\n"):
        chunk = s.recv(65536)
        if not chunk:
            raise RuntimeError("control socket closed without a reply")
        buf += chunk
    s.close()
    return json.loads(buf)


def main():
    if len(sys.argv) not in (3, 4):
        print(__doc__, file=sys.stderr)
        return 2
    params = json.loads(sys.argv[3]) if len(sys.argv) == 4 else None
    reply = call(sys.argv[1], sys.argv[2], params)
    if "error" in reply:
        print(json.dumps(reply["error"]), file=sys.stderr)
        return 1
    print(json.dumps(reply["result"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
