#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Patch fields of a QCOW2 image in place, to make damaged images for tests.

Every number is big-endian on disk (docs/interop/qcow2.txt). Values are
integers (decimal or 0x...) or expressions of the form eof[+-N], where
eof is the file size rounded up to a whole cluster.

  qcow2-damage.py show FILE
      print the header fields as name=value lines
  qcow2-damage.py header FILE FIELD VALUE
      set a header field (see HEADER_FIELDS)
  qcow2-damage.py or-header FILE FIELD BITS
      set bits in a header field (e.g. incompatible_features)
  qcow2-damage.py l1 FILE INDEX VALUE
      set L1 entry INDEX
  qcow2-damage.py l2 FILE GUEST_OFFSET VALUE
      set the L2 entry that maps the cluster at GUEST_OFFSET
  qcow2-damage.py backing-name FILE NAME
      rewrite the backing file name in place (it must fit in the header
      cluster after the current name's offset)
"""
import os
import struct
import sys

# name: (offset, struct format); qcow2 v2 fields, then the v3 additions.
HEADER_FIELDS = {
    "magic": (0, ">I"),
    "version": (4, ">I"),
    "backing_file_offset": (8, ">Q"),
    "backing_file_size": (16, ">I"),
    "cluster_bits": (20, ">I"),
    "size": (24, ">Q"),
    "crypt_method": (32, ">I"),
    "l1_size": (36, ">I"),
    "l1_table_offset": (40, ">Q"),
    "refcount_table_offset": (48, ">Q"),
    "refcount_table_clusters": (56, ">I"),
    "nb_snapshots": (60, ">I"),
    "snapshots_offset": (64, ">Q"),
    "incompatible_features": (72, ">Q"),
    "compatible_features": (80, ">Q"),
    "autoclear_features": (88, ">Q"),
    "refcount_order": (96, ">I"),
    "header_length": (100, ">I"),
}

L1_OFFSET_MASK = 0x00FFFFFFFFFFFE00
COPIED = 1 << 63


def fail(msg):
    sys.stderr.write("qcow2-damage: %s\n" % msg)
    sys.exit(1)


def read_at(f, off, fmt):
    f.seek(off)
    data = f.read(struct.calcsize(fmt))
    if len(data) != struct.calcsize(fmt):
        fail("short read at %d" % off)
    return struct.unpack(fmt, data)[0]


def write_at(f, off, fmt, value):
    f.seek(off)
    f.write(struct.pack(fmt, value))


def header(f):
    h = {}
    for name, (off, fmt) in HEADER_FIELDS.items():
        if name == "incompatible_features" and h["version"] < 3:
            break
        h[name] = read_at(f, off, fmt)
    if h["magic"] != 0x514649FB:
        fail("not a qcow2 image")
    return h


def parse_value(text, f, cluster_size):
    if text.startswith("eof"):
        size = os.fstat(f.fileno()).st_size
        eof = (size + cluster_size - 1) // cluster_size * cluster_size
        rest = text[3:]
        return eof + (int(rest, 0) if rest else 0)
    return int(text, 0)


def l2_entry_offset(f, h, guest_off):
    cluster_size = 1 << h["cluster_bits"]
    l2_entries = cluster_size // 8
    cluster = guest_off // cluster_size
    l1_index, l2_index = divmod(cluster, l2_entries)
    if l1_index >= h["l1_size"]:
        fail("offset %d is past the L1 table" % guest_off)
    l1e = read_at(f, h["l1_table_offset"] + 8 * l1_index, ">Q")
    l2_off = l1e & L1_OFFSET_MASK
    if l2_off == 0:
        fail("no L2 table maps offset %d" % guest_off)
    return l2_off + 8 * l2_index


def cmd_show(f, args):
    for name, value in header(f).items():
        print("%s=%d" % (name, value))


def cmd_header(f, args, combine=None):
    h = header(f)
    name, text = args
    if name not in HEADER_FIELDS:
        fail("unknown field %s" % name)
    off, fmt = HEADER_FIELDS[name]
    value = parse_value(text, f, 1 << h["cluster_bits"])
    if combine:
        value = combine(read_at(f, off, fmt), value)
    write_at(f, off, fmt, value)


def cmd_or_header(f, args):
    cmd_header(f, args, lambda old, bits: old | bits)


def cmd_l1(f, args):
    h = header(f)
    index = int(args[0], 0)
    if index >= h["l1_size"]:
        fail("L1 index %d out of range" % index)
    value = parse_value(args[1], f, 1 << h["cluster_bits"])
    write_at(f, h["l1_table_offset"] + 8 * index, ">Q", value)


def cmd_l2(f, args):
    h = header(f)
    where = l2_entry_offset(f, h, int(args[0], 0))
    value = parse_value(args[1], f, 1 << h["cluster_bits"])
    write_at(f, where, ">Q", value)


def cmd_backing_name(f, args):
    h = header(f)
    name = args[0].encode()
    off = h["backing_file_offset"]
    if off == 0:
        fail("image has no backing file")
    if off + len(name) > 1 << h["cluster_bits"]:
        fail("name does not fit in the header cluster")
    f.seek(off)
    f.write(name)
    write_at(f, 16, ">I", len(name))


COMMANDS = {
    "show": (cmd_show, 0),
    "header": (cmd_header, 2),
    "or-header": (cmd_or_header, 2),
    "l1": (cmd_l1, 2),
    "l2": (cmd_l2, 2),
    "backing-name": (cmd_backing_name, 1),
}


def main(argv):
    if len(argv) < 3 or argv[1] not in COMMANDS:
        sys.stderr.write(__doc__)
        return 2
    func, nargs = COMMANDS[argv[1]]
    if len(argv) != 3 + nargs:
        fail("%s takes %d arguments after FILE" % (argv[1], nargs))
    mode = "rb" if argv[1] == "show" else "r+b"
    with open(argv[2], mode) as f:
        func(f, argv[3:])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
