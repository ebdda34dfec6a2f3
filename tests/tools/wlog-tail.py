#!/usr/bin/env python3
"""Read a write log (qcow2/write-log.h) and say whether every write is
covered by a later flush.

    wlog-tail.py LOG

Prints "writes=N flushes=M covered=yes|no" and exits 0 when the last
WRITE/ZERO/TRUNCATE record is followed by a FLUSH record, else 1.
"""
import struct
import sys

MAGIC, WRITE, FLUSH, ZERO, TRUNCATE = 0x4C574453, 1, 2, 3, 4


def main():
    data = open(sys.argv[1], "rb").read()
    pos, writes, flushes, covered = 0, 0, 0, True
    while pos + 24 <= len(data):
        magic, kind, _off, length = struct.unpack_from("<IIQQ", data, pos)
        if magic != MAGIC:
            sys.exit("bad record at %d" % pos)
        pos += 24 + (length if kind == WRITE else 0)
        if kind == FLUSH:
            flushes += 1
            covered = True
        else:
            writes += 1
            covered = False
    print("writes=%d flushes=%d covered=%s" % (writes, flushes,
                                               "yes" if covered else "no"))
    return 0 if covered and writes else 1


if __name__ == "__main__":
    sys.exit(main())
