#!/usr/bin/env python3
"""Checks on what independent NBD clients report (tests/test-nbd-clients.sh).

    clients-check.py list LIST.json NAME SIZE rw|ro
        nbdinfo --list --json shows export NAME with SIZE bytes and the
        flags a writable (rw) or read-only (ro) export must have.
    clients-check.py map MAP.json EXPECTED
        nbdinfo --map --json, with adjacent entries of one type merged,
        is exactly EXPECTED: "OFFSET:LENGTH:TYPE,..." (sizes may end in
        K or M).
    clients-check.py stat STATS.json GROUP KEY
        print stats[GROUP][KEY] of an export.stats result.
    clients-check.py grew BEFORE.json AFTER.json GROUP.KEY=MIN,...
        between two export.stats results each counter named grew by at
        least MIN (MIN may end in K or M).
    clients-check.py fill FILE OFFSET LENGTH BYTE
        every byte of FILE[OFFSET, OFFSET+LENGTH) is BYTE (all numbers may
        end in K or M); reports the first that is not.

Exit 0 when the check holds; otherwise one line on stderr and exit 1.
"""
import json
import sys


def number(text):
    scale = {"K": 1 << 10, "M": 1 << 20}.get(text[-1:].upper(), 1)
    return int(text[:-1] if scale > 1 else text, 0) * scale


def die(msg):
    print("clients-check: " + msg, file=sys.stderr)
    sys.exit(1)


def check_list(path, name, size, mode):
    with open(path) as f:
        listing = json.load(f)
    found = [e for e in listing.get("exports", []) if e.get("export-name") == name]
    if len(found) != 1:
        die("export %s listed %d times" % (name, len(found)))
    e = found[0]
    want = {
        "export-size": number(size),
        "is_read_only": mode == "ro",
        "can_multi_conn": True,
        "can_flush": True,
        "can_fua": True,
        "can_trim": mode == "rw",
        "can_zero": mode == "rw",
    }
    for key, value in want.items():
        if e.get(key) != value:
            die("export %s: %s is %r, expected %r" % (name, key, e.get(key), value))
    contexts = set(e.get("contexts", []))
    for ctx in ("base:allocation", "qemu:allocation-depth"):
        if ctx not in contexts:
            die("export %s: meta context %s not offered (%s)" % (name, ctx, sorted(contexts)))


def merged(entries):
    out = []
    pos = 0
    for e in entries:
        if e["offset"] != pos:
            die("map has a gap or overlap at %d" % e["offset"])
        if out and out[-1][2] == e["type"]:
            out[-1][1] += e["length"]
        else:
            out.append([e["offset"], e["length"], e["type"]])
        pos = e["offset"] + e["length"]
    return out


def check_map(path, expected):
    with open(path) as f:
        got = merged(json.load(f))
    want = [[number(p) for p in run.split(":")] for run in expected.split(",")]
    if got != want:
        die("map differs (offset, length, type):\n  got:      %s\n  expected: %s"
            % (got, want))


def print_stat(path, group, key):
    with open(path) as f:
        print(json.load(f)["stats"][group][key])


def check_grew(before_path, after_path, spec):
    with open(before_path) as f:
        before = json.load(f)["stats"]
    with open(after_path) as f:
        after = json.load(f)["stats"]
    for item in spec.split(","):
        name, least = item.split("=")
        group, key = name.split(".")
        grew = after[group][key] - before[group][key]
        if grew < number(least):
            die("export.stats: %s grew by %d, expected at least %d"
                % (name, grew, number(least)))


def check_fill(path, offset, length, byte):
    offset, length, byte = number(offset), number(length), number(byte)
    chunk = 1 << 20
    with open(path, "rb") as f:
        f.seek(offset)
        done = 0
        while done < length:
            data = f.read(min(chunk, length - done))
            if not data:
                die("%s ends at %d, before %d" % (path, offset + done, offset + length))
            bad = data.lstrip(bytes([byte]))
            if bad:
                at = offset + done + len(data) - len(bad)
                die("%s: byte at %d is 0x%02x, expected 0x%02x" % (path, at, bad[0], byte))
            done += len(data)


def main(argv):
    commands = {"list": (check_list, 4), "map": (check_map, 2),
                "stat": (print_stat, 3), "grew": (check_grew, 3), "fill": (check_fill, 4)}
    if len(argv) < 2 or argv[1] not in commands or len(argv) != commands[argv[1]][1] + 2:
        print(__doc__, file=sys.stderr)
        return 2
    commands[argv[1]][0](*argv[2:])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
