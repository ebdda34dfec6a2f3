#!/usr/bin/env python3
"""One connection keeps many requests in flight and gets replies out of
order (the server runs with SENDENSE_NBD_TEST_DELAY_US, so requests
take varied times).

    inflight-check.py URI CONTROL_SOCKET N

Writes N distinct 4 KiB blocks, then issues N reads at once, records the
order in which replies arrive, checks every block's content, and asks
the control socket for the connection's peak of requests in flight.
Prints a JSON summary; exits 1 if a check fails.
"""
import json
import os
import sys

import nbd

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from importlib import import_module

rpc = import_module("nbd-rpc")

BLOCK = 4096


def block_data(i):
    return (b"%08d" % i) * (BLOCK // 8)


def main():
    uri, ctl, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    h = nbd.NBD()
    h.connect_uri(uri)

    cookies = [h.aio_pwrite(block_data(i), i * BLOCK) for i in range(n)]
    while h.aio_in_flight() > 0:
        h.poll(-1)
    for c in cookies:
        h.aio_command_completed(c)

    order = []
    bufs = [nbd.Buffer(BLOCK) for _ in range(n)]

    def done(i, err):
        order.append(i)
        return 0

    for i in range(n):
        h.aio_pread(bufs[i], i * BLOCK,
                    completion=lambda err, i=i: done(i, err))
    max_seen = h.aio_in_flight()
    while h.aio_in_flight() > 0:
        h.poll(-1)

    conns = rpc.call(ctl, "connection.list")["result"]["connections"]
    peak = max(c["peak_in_flight"] for c in conns)
    bad = [i for i in range(n) if bufs[i].to_bytearray() != block_data(i)]
    h.shutdown()

    out_of_order = sum(1 for a, b in zip(order, order[1:]) if b < a)
    summary = {"requests": n, "client_in_flight": max_seen,
               "server_peak_in_flight": peak,
               "replies_out_of_order": out_of_order, "bad_blocks": len(bad),
               "completed": len(order)}
    print(json.dumps(summary))
    ok = (len(order) == n and not bad and peak >= 32 and out_of_order > 0)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
