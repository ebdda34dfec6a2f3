#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Writes the seed corpus of fuzz-nbd-session into this folder: byte 0 is
# the setup (see fuzz-nbd-session.c: 1 qcow2 export, 2 overlay export,
# 4 "raw" read-only, 8 TCP peer, 16 TLS required), the rest is what a
# client sends: handshake flags, options, requests.
#
# usage: fuzz/corpus/nbd-session/generate-seeds.py [OUTDIR]
import os
import struct
import sys

OPTS_MAGIC = 0x49484156454F5054
REQ_MAGIC = 0x25609513
FIXED, NO_ZEROES = 1, 2
EXPORT_NAME, ABORT, LIST, STARTTLS, INFO, GO = 1, 2, 3, 5, 6, 7
STRUCTURED, LIST_META, SET_META = 8, 9, 10
INFO_NAME, INFO_DESCRIPTION, INFO_BLOCK_SIZE = 1, 2, 3
READ, WRITE, DISC, FLUSH, TRIM, CACHE, ZEROES, BLOCK_STATUS = range(8)
FUA, NO_HOLE, DF, REQ_ONE, FAST_ZERO = 1, 2, 4, 8, 16


def flags(f=FIXED | NO_ZEROES):
    return struct.pack(">I", f)


def opt(code, payload=b""):
    return struct.pack(">QII", OPTS_MAGIC, code, len(payload)) + payload


def name(n):
    n = n.encode()
    return struct.pack(">I", len(n)) + n


def go(export, infos=(), code=GO):
    return opt(code, name(export) + struct.pack(">H", len(infos)) +
               b"".join(struct.pack(">H", i) for i in infos))


def meta(export, queries, code=SET_META):
    q = b"".join(name(x) for x in queries)
    return opt(code, name(export) + struct.pack(">I", len(queries)) + q)


cookie = 0


def req(kind, offset=0, length=0, fl=0, data=None):
    global cookie
    cookie += 1
    if kind == WRITE and data is None:
        data = bytes((cookie + i) & 0xff for i in range(length))
    return (struct.pack(">IHHQQI", REQ_MAGIC, fl, kind, cookie, offset,
                        length) + (data or b""))


def full_workout():
    return b"".join([
        req(READ, 0, 65536), req(READ, 4096, 8192, DF),
        req(WRITE, 4096, 512), req(WRITE, 100000, 3000, FUA),
        req(BLOCK_STATUS, 0, 1 << 20), req(BLOCK_STATUS, 0, 1 << 20, REQ_ONE),
        req(TRIM, 65536, 65536), req(ZEROES, 8192, 4096),
        req(ZEROES, 12288, 4096, NO_HOLE), req(ZEROES, 16384, 4096, FAST_ZERO),
        req(CACHE, 0, 65536), req(FLUSH), req(READ, (1 << 20) - 100, 200),
        req(READ, 0, 0), req(WRITE, (1 << 20) - 10, 20), req(99, 0, 1),
        req(READ, 0, 4096), req(DISC),
    ])


def seeds():
    structured = opt(STRUCTURED)
    ctx = meta("raw", ["base:allocation", "qemu:allocation-depth"])
    infos = (INFO_NAME, INFO_DESCRIPTION, INFO_BLOCK_SIZE)
    yield "structured-raw", 0, [flags(), structured, ctx,
                                go("raw", infos), full_workout()]
    yield "simple-raw", 0, [flags(), go("raw"), full_workout()]
    yield "export-name-zeroes", 0, [flags(FIXED), opt(EXPORT_NAME, b"raw"),
                                    req(WRITE, 0, 1024), req(READ, 0, 2048),
                                    req(FLUSH), req(DISC)]
    yield "qcow2", 1, [flags(), structured, meta("qcow2", ["base:"]),
                       go("qcow2"), req(WRITE, 0, 8192), req(WRITE, 6000, 9000),
                       req(ZEROES, 4096, 4096), req(TRIM, 0, 4096),
                       req(BLOCK_STATUS, 0, 1 << 20), req(READ, 0, 32768),
                       req(FLUSH), req(DISC)]
    yield "overlay", 2, [flags(), structured,
                         meta("overlay", ["qemu:allocation-depth"]),
                         go("overlay"), req(READ, 0, 16384),
                         req(WRITE, 4096, 4096), req(BLOCK_STATUS, 0, 65536),
                         req(READ, 0, 16384), req(DISC)]
    yield "readonly", 4, [flags(), structured, go("raw"), req(WRITE, 0, 512),
                          req(ZEROES, 0, 512), req(TRIM, 0, 512),
                          req(READ, 0, 512), req(DISC)]
    yield "tcp-peer", 8, [flags(), opt(LIST), go("private", code=INFO),
                          go("nosuch", code=INFO), go("ro", infos),
                          req(READ, 0, 1024), req(WRITE, 0, 10)]
    yield "tls-required", 16, [flags(), opt(STARTTLS), go("raw"),
                               opt(STRUCTURED), opt(ABORT)]
    yield "handshake-misc", 0, [flags(), opt(LIST), opt(LIST, b"x"),
                                meta("raw", ["base:"]),  # before structured
                                structured, opt(STRUCTURED),
                                meta("raw", [], LIST_META),
                                meta("nosuch", ["base:allocation"]),
                                opt(99, b"abc"), opt(INFO, b"\0\0"),
                                go("raw", code=INFO), opt(ABORT)]
    yield "bad-request-magic", 0, [flags(), go("raw"), req(READ, 0, 512),
                                   b"\xde\xad\xbe\xef" + b"\0" * 24,
                                   req(READ, 0, 512)]
    yield "write-too-large", 0, [flags(), go("raw"), req(READ, 0, 512),
                                 struct.pack(">IHHQQI", REQ_MAGIC, 0, WRITE,
                                             77, 0, (32 << 20) + 1)]
    yield "bad-client-flags", 0, [flags(0), opt(ABORT)]
    yield "eof-mid-request", 3, [flags(), structured, go("qcow2"),
                                 req(WRITE, 0, 4096)[:1000]]


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(
        os.path.abspath(__file__))
    for name_, setup, parts in seeds():
        with open(os.path.join(out, name_), "wb") as f:
            f.write(bytes([setup]) + b"".join(parts))


if __name__ == "__main__":
    main()
