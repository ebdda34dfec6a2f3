#!/bin/bash
# SPDX-License-Identifier: MIT
#
# The NBD benchmark harness still runs: bench/nbd-bench.sh in quick mode
# with tiny sizes and one row of every workload kind. Asserts only that
# every run produced a number (sendense-nbd in every row; each peer
# wherever it is installed and able to serve the target). No timing is
# judged.
. "${top_srcdir:-..}/tests/functions.sh"
. "$top_srcdir/tests/server-lib.sh"

requires nbdcopy nbdinfo fio openssl
"$PYTHON" -c 'import nbd' 2>/dev/null || requires python3-libnbd

build=$(cd "$top_builddir" && pwd)
out=$scratch/results
# One row of each workload kind, covering disk and tmpfs, unix and TCP,
# raw, new qcow2 and overlay targets.
rows='^(seq-(write|read)-1c/raw/tmpfs/|seq-write-1c/overlay/|seq-read-1c/qcow2/'
rows+='|seq-(write|read)-4c/|rand-(write|read)-4k/raw/tmpfs/|rand-read-4k/raw/disk/'
rows+='|scatter-64k-aligned/qcow2/|scatter-64k-4k/overlay/|tls-seq-'
rows+='|clients-|reload-|idle-)'

SENDENSE_BENCH_DIR=$scratch SENDENSE_NBD=$SENDENSE_NBD SENDENSE_IMG=$SENDENSE_IMG \
    bash "$top_srcdir/bench/nbd-bench.sh" --quick --no-install --build "$build" \
    --out "$out" --rows "$rows" --size 16M --fio-seconds 1 --clients 4 \
    --exports 100 --idle 50 --quiet-wait 0 > "$scratch/bench.out" 2> "$scratch/bench.err" || {
    cat "$scratch/bench.err" >&2
    fail "nbd-bench.sh failed"
}

runs=$(ls "$out"/nbd-bench-quick-*.runs.csv 2>/dev/null | head -n 1)
[ -n "$runs" ] || fail "no runs CSV in $out"
stem=${runs%.runs.csv}
[ -s "$stem.txt" ] || fail "no text report"
[ -s "$stem.csv" ] || fail "no summary CSV"

"$PYTHON" - "$runs" <<'EOF' || { cat "$scratch/bench.err" >&2; fail "a run produced no number"; }
import csv, sys

kinds = ["seq-write-1c", "seq-write-4c", "seq-read-1c", "seq-read-4c",
         "rand-write-4k", "rand-read-4k", "scatter-64k-aligned",
         "scatter-64k-4k", "tls-seq-write-1c", "tls-seq-read-1c",
         "clients-4", "reload-add-100", "reload-same-100", "idle-50"]
targets = {"raw", "qcow2", "overlay"}
bad = []
seen_kinds, seen_targets, seen_places = set(), set(), set()
pumped, nbd_pumped = set(), set()
nbd_pumped_rows, random_raw_rows = set(), set()
with open(sys.argv[1], newline="") as f:
    for r in csv.DictReader(f):
        if r["status"] in ("n/a", "unavailable"):
            if r["server"] == "sendense-nbd":
                bad.append("%s: sendense-nbd is %s" % (r["row"], r["status"]))
            continue
        try:
            float(r["value"])
            ok = r["status"] == "ok"
        except ValueError:
            ok = False
        if not ok:
            bad.append("%s %s: %s (%s)" % (r["row"], r["server"], r["status"], r["note"]))
            continue
        if r["server"] == "pump":
            pumped.add(r["workload"])
        if r["server"] == "nbd-pump":
            nbd_pumped.add(r["workload"] + "/" + r["place"])
            nbd_pumped_rows.add(r["row"])
        if r["server"] == "sendense-nbd":
            seen_kinds.add(r["workload"])
            seen_targets.add(r["target"])
            seen_places.add(r["place"] + "/" + r["transport"])
            if r["workload"].startswith("rand-") and r["target"] == "raw":
                random_raw_rows.add(r["row"])
missing = [k for k in kinds if k not in seen_kinds]
if missing:
    bad.append("no sendense-nbd number for: " + ", ".join(missing))
if seen_targets != targets:
    bad.append("targets covered: %s" % sorted(seen_targets))
# The socket pump is the ceiling of every one-connection sequential row.
for k in ("seq-write-1c", "seq-read-1c", "tls-seq-write-1c", "tls-seq-read-1c"):
    if k not in pumped:
        bad.append("no socket-pump number for " + k)
# The NBD pump is the ceiling of every random row on a raw file (its
# pipelined mode for reads on disk) and of the sequential rows on disk,
# one connection or four (pipelined, O_DIRECT).
for k in ("rand-write-4k/tmpfs", "rand-read-4k/tmpfs", "rand-read-4k/disk",
          "seq-write-1c/disk", "seq-read-1c/disk",
          "seq-write-4c/disk", "seq-read-4c/disk"):
    if k not in nbd_pumped:
        bad.append("no nbd-pump number for " + k)
for k in sorted(random_raw_rows - nbd_pumped_rows):
    bad.append("no nbd-pump number for " + k)
for p in ("disk/unix", "tmpfs/unix", "tmpfs/tcp"):
    if p not in seen_places:
        bad.append("no row on " + p)
for b in bad:
    print(b, file=sys.stderr)
sys.exit(1 if bad else 0)
EOF
if "$PYTHON" -c 'import matplotlib' 2>/dev/null; then
    [ -s "$stem.png" ] || fail "matplotlib is installed but there is no chart"
fi
echo "ok: every row has numbers ($(grep -c ',ok,' "$runs") runs)"
