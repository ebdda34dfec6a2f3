#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Helpers of bench/capture-bench.sh (run with Debian's /usr/bin/python3).

    capture-bench-tool.py mksource FILE SIZE SEED
        FILE becomes a sparse raw disk of SIZE bytes: about half of it
        allocated, in runs of 4 KiB to 32 MiB (log-uniform, 4 KiB
        aligned) of random data, about one data run in eight written as
        explicit zeros (allocated, reads as zero), holes between them.
        Prints "runs N data BYTES zero BYTES hole BYTES".
    capture-bench-tool.py mkchange SRC DST CHANGES.json EXTENTLIST FRACTION SEED
        DST becomes a copy of SRC (holes stay holes, allocated zeros stay
        allocated) with about FRACTION of its size rewritten in 64 KiB
        aligned extents of 64 KiB to 2 MiB at random offsets: random data,
        about one extent in ten (and the first) zeros written over data. CHANGES.json gets the change list
        in the shape of VMware's QueryChangedDiskAreas (areas sorted,
        non-overlapping, touching ones merged); EXTENTLIST the same areas
        as "OFFSET LENGTH" lines for nbdkit's extentlist filter.
        Prints "areas N bytes BYTES".
    capture-bench-tool.py run RESULT -- CMD ARGS...
        Run CMD (its stdin, stdout and stderr are ours) and write to RESULT
        one line "WALL USER SYS STATUS": the seconds from fork to reaping,
        the user and system CPU seconds of CMD and every thread and child
        it reaped (getrusage RUSAGE_CHILDREN), and its exit status.
        Exits with CMD's status.
    capture-bench-tool.py stats REPLY-FILE
        From nbd-bench-tool.py rpc-time's output of export.stats, print
        "WRITE_BYTES ZERO_BYTES WRITE_OPS ZERO_OPS".
    capture-bench-tool.py report RUNS.csv STEM MACHINE.txt
        Summarize: STEM.txt (the machine and the table, also on stdout)
        and STEM.csv (one line per copy and tool, medians and ratios).
"""
import csv
import json
import math
import os
import random
import resource
import statistics
import subprocess
import sys
import time

KIB = 1 << 10
MIB = 1 << 20
CHUNK = 64 * KIB


def write_random(fd, off, length):
    while length > 0:
        n = min(length, 4 * MIB)
        os.pwrite(fd, os.urandom(n), off)
        off += n
        length -= n


def write_zeros(fd, off, length):
    zeros = bytes(min(length, 4 * MIB))
    while length > 0:
        n = min(length, len(zeros))
        os.pwrite(fd, zeros[:n], off)
        off += n
        length -= n


def mksource(path, size, seed):
    rng = random.Random(seed)
    top = max(1, min(32 * MIB, size // 16) // (4 * KIB))   # longest run, in 4 KiB
    data = zero = hole = runs = 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.ftruncate(fd, size)
        pos = 0
        while pos < size:
            pages = int(math.exp(rng.uniform(0.0, math.log(top + 1))))
            length = min(max(1, pages) * 4 * KIB, size - pos)
            # Allocated while behind half of what came before, so the
            # disk ends up about half full whatever the run lengths.
            if data + zero <= pos // 2:
                if rng.random() < 0.125:
                    write_zeros(fd, pos, length)
                    zero += length
                else:
                    write_random(fd, pos, length)
                    data += length
            else:
                hole += length
            runs += 1
            pos += length
        os.fsync(fd)
    finally:
        os.close(fd)
    print("runs %d data %d zero %d hole %d" % (runs, data, zero, hole))
    return 0


def copy_sparse(src, dst):
    """Copy allocated extents as they are (zeros too), leave holes."""
    sfd = os.open(src, os.O_RDONLY)
    dfd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        size = os.fstat(sfd).st_size
        os.ftruncate(dfd, size)
        pos = 0
        while pos < size:
            try:
                start = os.lseek(sfd, pos, os.SEEK_DATA)
            except OSError:
                break                   # ENXIO: no data past pos
            end = os.lseek(sfd, start, os.SEEK_HOLE)
            off = start
            while off < end:
                n = min(end - off, 4 * MIB)
                os.pwrite(dfd, os.pread(sfd, n, off), off)
                off += n
            pos = end
    finally:
        os.close(sfd)
        os.close(dfd)
    return size


def mkchange(src, dst, changes_json, extentlist, fraction, seed):
    rng = random.Random(seed)
    size = copy_sparse(src, dst)
    want = max(CHUNK, int(size * fraction))
    chunks = size // CHUNK
    taken = set()
    extents = []
    total = 0
    old = os.open(src, os.O_RDONLY)
    tries = 0
    try:
        while total < want:
            n = min(int(math.exp(rng.uniform(0.0, math.log(33)))), chunks)
            first = rng.randrange(0, chunks - n + 1)
            if any(c in taken for c in range(first, first + n)):
                continue
            # A change to zeros lands on non-zero data (the first one
            # always is one): a copy that skips zero blocks inside a
            # changed area leaves the old data there, and the compare
            # must see it.
            zeros = not extents or rng.random() < 0.1
            tries += 1
            if zeros and tries < 10000 and os.pread(old, n * CHUNK, first * CHUNK) == bytes(n * CHUNK):
                continue
            taken.update(range(first, first + n))
            extents.append((first * CHUNK, n * CHUNK, zeros))
            total += n * CHUNK
    finally:
        os.close(old)
    fd = os.open(dst, os.O_WRONLY)
    try:
        for off, length, zeros in extents:
            (write_zeros if zeros else write_random)(fd, off, length)
        os.fsync(fd)
    finally:
        os.close(fd)
    # Sorted, and touching extents merged into one area.
    areas = []
    for off, length, _ in sorted(extents):
        if areas and areas[-1][0] + areas[-1][1] == off:
            areas[-1][1] += length
        else:
            areas.append([off, length])
    doc = {"changeId": "capture-bench-%d" % seed, "startOffset": 0, "length": size,
           "changedArea": [{"start": a, "length": b} for a, b in areas]}
    with open(changes_json, "w") as f:
        json.dump(doc, f)
        f.write("\n")
    with open(extentlist, "w") as f:
        for a, b in areas:
            f.write("%d %d\n" % (a, b))
    print("areas %d bytes %d" % (len(areas), total))
    return 0


def run(result, argv):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    status = subprocess.call(argv)
    t1 = time.monotonic()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(result, "w") as f:
        f.write("%.4f %.3f %.3f %d\n" % (t1 - t0, after.ru_utime - before.ru_utime,
                                         after.ru_stime - before.ru_stime, status))
    return 0 if status == 0 else (status if status > 0 else 128 - status)


def stats(reply_file):
    with open(reply_file) as f:
        lines = f.read().splitlines()
    doc = json.loads(lines[-1])["stats"]
    print("%d %d %d %d" % (doc["bytes"]["write"], doc["bytes"]["zero"],
                           doc["ops"]["write"], doc["ops"]["zero"]))
    return 0


# ------------------------------------------------------------- report

OURS = "capture/sendense-nbd"
PEERS = ["nbdcopy/sendense-nbd", "nbdcopy/qemu-nbd"]


def num(text):
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def med(rows, key):
    values = [num(r[key]) for r in rows if num(r[key]) is not None]
    return statistics.median(values) if values else None


def fmt(v, spec):
    return "-" if v is None else spec % v


def summarize(runs):
    groups = {}
    for r in runs:
        groups.setdefault((r["copy"], r["tool"]), []).append(r)
    out = []
    for (copy, tool), rs in groups.items():
        ok = [r for r in rs if r["status"] == "ok"]
        s = {"copy": copy, "tool": tool, "runs": len(rs), "ok": len(ok),
             "compare": ("ok" if ok and all(r["compare"] == "identical" for r in rs)
                         else ",".join(sorted({r["compare"] or r["status"] for r in rs}))),
             "load": max([num(r["load1"]) for r in rs if num(r["load1"]) is not None],
                         default=None)}
        walls = [num(r["wall_s"]) for r in ok]
        s["wall"] = statistics.median(walls) if walls else None
        s["wall_min"] = min(walls) if walls else None
        s["wall_max"] = max(walls) if walls else None
        basis = num(rs[0]["basis_bytes"])
        s["mibs"] = basis / MIB / s["wall"] if s["wall"] and basis else None
        for key in ("client_cpu_s", "server_cpu_s", "helper_cpu_s", "total_cpu_s",
                    "wire_write_bytes", "wire_zero_bytes", "wire_write_ops",
                    "wire_zero_ops", "alloc_bytes"):
            s[key] = med(ok, key)
        # Notes only for what went wrong: the table's footer.
        s["note"] = ""
        if len(ok) < len(rs) or s["compare"] != "ok":
            why = sorted({r["note"] for r in rs if r["note"]})
            s["note"] = "; ".join(["%d of %d runs ok, compare %s" % (
                len(ok), len(rs), s["compare"])] + why)
        out.append(s)
    # Ratios on each peer line: x speed = peer wall / our wall (above 1:
    # sendense-capture is faster), x CPU = our total CPU / peer's (below 1:
    # sendense-capture with its server uses less).
    for s in out:
        s["x_speed"] = s["x_cpu"] = None
        if s["tool"] == OURS:
            continue
        ours = next((o for o in out if o["copy"] == s["copy"] and o["tool"] == OURS), None)
        if not ours or ours["compare"] != "ok" or s["compare"] != "ok":
            continue
        if ours["wall"] and s["wall"]:
            s["x_speed"] = s["wall"] / ours["wall"]
        if ours["total_cpu_s"] is not None and s["total_cpu_s"]:
            s["x_cpu"] = ours["total_cpu_s"] / s["total_cpu_s"]
    return out


def cell(key, value):
    """A CSV cell: counts of bytes and requests as integers."""
    if value is None:
        return ""
    if key.endswith(("_bytes", "_ops")):
        return int(value)
    return round(value, 4) if isinstance(value, float) else value


def report(runs_csv, stem, machine):
    with open(runs_csv, newline="") as f:
        runs = list(csv.DictReader(f))
    rows = summarize(runs)
    head = ["copy", "tool", "wall s med [min-max]", "MiB/s", "client CPU s",
            "server CPU s", "total CPU s", "wire MiB", "target MiB", "compare",
            "x speed", "x CPU", "load"]
    table = [head]
    for s in rows:
        wall = "failed" if s["wall"] is None else "%.2f [%.2f-%.2f]" % (
            s["wall"], s["wall_min"], s["wall_max"])
        wire = None
        if s["wire_write_bytes"] is not None:
            wire = s["wire_write_bytes"] / MIB
        table.append([s["copy"], s["tool"], wall, fmt(s["mibs"], "%.0f"),
                      fmt(s["client_cpu_s"], "%.2f"), fmt(s["server_cpu_s"], "%.2f"),
                      fmt(s["total_cpu_s"], "%.2f"), fmt(wire, "%.0f"),
                      fmt(None if s["alloc_bytes"] is None else s["alloc_bytes"] / MIB, "%.0f"),
                      s["compare"], fmt(s["x_speed"], "%.2f"), fmt(s["x_cpu"], "%.2f"),
                      fmt(s["load"], "%.1f")])
    widths = [max(len(r[i]) for r in table) for i in range(len(head))]
    lines = []
    for r in table:
        cells = [r[i].ljust(widths[i]) if i < 2 or i == 9 else r[i].rjust(widths[i])
                 for i in range(len(head))]
        lines.append("  ".join(cells).rstrip())
    notes = [s for s in rows if s["note"]]
    text = "".join(open(machine).readlines()) + "\n" + "\n".join(lines) + "\n"
    if notes:
        text += "\n" + "".join("# %s %s: %s\n" % (s["copy"], s["tool"], s["note"])
                               for s in notes)
    sys.stdout.write(text)
    with open(stem + ".txt", "w") as f:
        f.write(text)
    keys = ["copy", "tool", "runs", "ok", "compare", "wall", "wall_min", "wall_max",
            "mibs", "client_cpu_s", "server_cpu_s", "helper_cpu_s", "total_cpu_s",
            "wire_write_bytes", "wire_zero_bytes", "wire_write_ops", "wire_zero_ops",
            "alloc_bytes", "x_speed", "x_cpu", "load", "note"]
    with open(stem + ".csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["copy", "tool", "runs", "ok", "compare", "wall_s_median", "wall_s_min",
                    "wall_s_max", "mib_per_s", "client_cpu_s", "server_cpu_s",
                    "helper_cpu_s", "total_cpu_s", "wire_write_bytes", "wire_zero_bytes",
                    "wire_write_ops", "wire_zero_ops", "target_alloc_bytes",
                    "x_speed", "x_cpu", "max_load1", "note"])
        for s in rows:
            w.writerow([cell(k, s[k]) for k in keys])
    return 0


def main(argv):
    if len(argv) >= 4 and argv[0] == "mksource":
        return mksource(argv[1], int(argv[2]), int(argv[3]))
    if len(argv) >= 7 and argv[0] == "mkchange":
        return mkchange(argv[1], argv[2], argv[3], argv[4], float(argv[5]), int(argv[6]))
    if len(argv) >= 4 and argv[0] == "run" and argv[2] == "--":
        return run(argv[1], argv[3:])
    if len(argv) == 2 and argv[0] == "stats":
        return stats(argv[1])
    if len(argv) == 4 and argv[0] == "report":
        return report(argv[1], argv[2], argv[3])
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
