#!/usr/bin/env python3
"""Where the server puts the connections of one image.

    placement-check.py URI CONTROL_SOCKET N

Waits until the server has no connection (those of earlier clients may
still be closing), opens N connections to URI (libnbd), reads a block
on each so that each is past its handshake and serving, then asks
server.info how many connections each worker holds. Prints the counts,
one per worker, smallest first ("0 4"), and closes the connections.
"""
import os
import sys
import time

import nbd

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from importlib import import_module

rpc = import_module("nbd-rpc")


def main():
    uri, ctl, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    deadline = time.monotonic() + 30
    while rpc.call(ctl, "server.info")["result"]["connections"]:
        if time.monotonic() > deadline:
            print("earlier connections still open after 30 s")
            return 1
        time.sleep(0.05)
    handles = []
    for _ in range(n):
        h = nbd.NBD()
        h.set_uri_allow_local_file(True)    # tls-certificates=DIR
        h.connect_uri(uri)
        h.pread(4096, 0)
        handles.append(h)
    info = rpc.call(ctl, "server.info")["result"]
    print(*sorted(w["connections"] for w in info["workers"]))
    for h in handles:
        h.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
