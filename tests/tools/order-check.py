#!/usr/bin/env python3
"""Overlapping writes apply in the order they arrive.

    order-check.py URI PAIRS

For each of PAIRS regions, sends two overlapping writes back to back on
one connection without waiting (the first 64 KiB of pattern A, then 8 KiB
of pattern B inside it), plus a zero-write and a trim that overlap later
writes; with the server's delay hook the later request often becomes
ready first. After all replies, every region must read as the last
request left it. Exits 1 on any mismatch.
"""
import sys

import nbd

REGION = 128 * 1024


def main():
    uri, pairs = sys.argv[1], int(sys.argv[2])
    h = nbd.NBD()
    h.connect_uri(uri)
    expect = {}
    for i in range(pairs):
        base = i * REGION
        a, b = bytes([(i % 250) + 1]), bytes([(i % 250) + 2])
        h.aio_pwrite(a * 65536, base)
        h.aio_pwrite(b * 8192, base + 4096)
        h.aio_zero(4096, base + 32768)
        h.aio_pwrite(a * 4096, base + 32768 + 2048)
        region = bytearray(a * 65536)
        region[4096:4096 + 8192] = b * 8192
        region[32768:32768 + 4096] = bytes(4096)
        region[32768 + 2048:32768 + 2048 + 4096] = a * 4096
        expect[base] = bytes(region)
    while h.aio_in_flight() > 0:
        h.poll(-1)
    bad = [base for base, want in expect.items() if h.pread(65536 + 4096, base)[:len(want)] != want]
    h.shutdown()
    print("regions: %d, wrong: %d" % (pairs, len(bad)))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
