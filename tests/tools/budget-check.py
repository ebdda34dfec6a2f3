#!/usr/bin/env python3
"""In-flight budgets: a client that sends far more than the budget at
once is slowed down, never dropped.

    budget-check.py URI CONTROL_SOCKET BUDGET_BYTES

Queues 24 writes of 32 MiB (768 MiB) without waiting, then reads all
back; every request must succeed and verify, and the server's peak of
in-flight bytes on the connection must stay within the budget plus one
request (the reader checks the budget before each request header).
"""
import json
import os
import sys
from importlib import import_module

import nbd

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
rpc = import_module("nbd-rpc")

REQ = 32 << 20
COUNT = 24


def pattern(i):
    return bytes([i + 1]) * REQ


def main():
    uri, ctl, budget = sys.argv[1], sys.argv[2], int(sys.argv[3])
    h = nbd.NBD()
    h.connect_uri(uri)
    cookies = [h.aio_pwrite(pattern(i), i * REQ) for i in range(COUNT)]
    queued = h.aio_in_flight()
    while h.aio_in_flight() > 0:
        h.poll(-1)
    for c in cookies:
        h.aio_command_completed(c)       # raises on an error reply
    conns = rpc.call(ctl, "connection.list")["result"]["connections"]
    peak = max(c["peak_in_flight_bytes"] for c in conns)
    bad = [i for i in range(COUNT) if h.pread(REQ, i * REQ) != pattern(i)]
    h.shutdown()
    print(json.dumps({"queued": queued, "budget": budget,
                      "server_peak_in_flight_bytes": peak,
                      "bad": bad}))
    return 0 if not bad and 0 < peak <= budget + REQ else 1


if __name__ == "__main__":
    sys.exit(main())
