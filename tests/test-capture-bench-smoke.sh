#!/bin/bash
# SPDX-License-Identifier: MIT
#
# The Capture Agent benchmark harness still runs: bench/capture-bench.sh
# --quick on a 32 MiB source. Asserts that every copy (full and
# incremental; sendense-capture into sendense-nbd, nbdcopy into
# sendense-nbd and into qemu-nbd) produced numbers, that every target
# compared identical to its source, that each peer line has its ratios,
# and that both incrementals into sendense-nbd sent exactly the changed
# bytes (so the nbdcopy incremental is the like-for-like one the README
# describes). No timing is judged.
. "${top_srcdir:-..}/tests/functions.sh"
. "$top_srcdir/tests/server-lib.sh"

requires nbdcopy nbdinfo nbdkit qemu-img qemu-nbd
[ -e "$(nbdkit --dump-config | sed -n 's/^filterdir=//p')/nbdkit-extentlist-filter.so" ] ||
    requires nbdkit-extentlist-filter

SENDENSE_CAPTURE=${SENDENSE_CAPTURE:-$(cd "$top_builddir/capture" 2>/dev/null && pwd)/sendense-capture}
[ -x "$SENDENSE_CAPTURE" ] || { echo "$0: ERROR: $SENDENSE_CAPTURE was not built" >&2; exit 99; }

build=$(cd "$top_builddir" && pwd)
out=$scratch/results
SENDENSE_BENCH_DIR=$scratch SENDENSE_CAPTURE=$SENDENSE_CAPTURE SENDENSE_NBD=$SENDENSE_NBD \
    SENDENSE_IMG=$SENDENSE_IMG \
    bash "$top_srcdir/bench/capture-bench.sh" --quick --no-install --build "$build" \
    --out "$out" --size 32M > "$scratch/bench.out" 2> "$scratch/bench.err" || {
    cat "$scratch/bench.err" >&2
    fail "capture-bench.sh failed"
}

runs=$(ls "$out"/capture-bench-quick-*.runs.csv 2>/dev/null | head -n 1)
[ -n "$runs" ] || fail "no runs CSV in $out"
stem=${runs%.runs.csv}
[ -s "$stem.txt" ] || fail "no text report"
[ -s "$stem.csv" ] || fail "no summary CSV"
cmp -s "$stem.txt" "$scratch/bench.out" || fail "the table on stdout is not the .txt report"

"$PYTHON" - "$runs" "$stem.csv" <<'EOF' || { cat "$scratch/bench.err" >&2; fail "the report is incomplete"; }
import csv, sys

tools = ["capture/sendense-nbd", "nbdcopy/sendense-nbd", "nbdcopy/qemu-nbd"]
bad = []

def number(r, key):
    try:
        return float(r[key])
    except (TypeError, ValueError):
        bad.append("%s %s: %s is %r" % (r["copy"], r["tool"], key, r[key]))
        return None

with open(sys.argv[1], newline="") as f:
    runs = list(csv.DictReader(f))
for copy in ("full", "incr"):
    for tool in tools:
        rs = [r for r in runs if r["copy"] == copy and r["tool"] == tool]
        if len(rs) != 1:
            bad.append("%s %s: %d runs, expected 1" % (copy, tool, len(rs)))
            continue
        r = rs[0]
        if r["status"] != "ok" or r["compare"] != "identical":
            bad.append("%s %s: status %s, compare %s (%s)" % (copy, tool, r["status"],
                                                             r["compare"], r["note"]))
            continue
        for key in ("wall_s", "client_cpu_s", "server_cpu_s", "total_cpu_s", "alloc_bytes",
                    "basis_bytes"):
            number(r, key)
        if tool.endswith("/sendense-nbd"):
            wire = number(r, "wire_write_bytes")
            zero = number(r, "wire_zero_bytes") or 0.0
            # An incremental sends the changed bytes and nothing else:
            # as data, or (sendense-capture's zero detection, for the
            # areas the change made zero) as WRITE_ZEROES.
            if copy == "incr" and wire is not None and wire + zero != float(r["basis_bytes"]):
                bad.append("incr %s: %s bytes written and %s zeroed for %s changed" % (
                    tool, r["wire_write_bytes"], r["wire_zero_bytes"], r["basis_bytes"]))

with open(sys.argv[2], newline="") as f:
    summary = list(csv.DictReader(f))
if len(summary) != 6:
    bad.append("%d summary lines, expected 6" % len(summary))
for s in summary:
    if s["compare"] != "ok":
        bad.append("summary %s %s: compare %s" % (s["copy"], s["tool"], s["compare"]))
    keys = ["wall_s_median", "mib_per_s", "total_cpu_s", "target_alloc_bytes"]
    if s["tool"] != "capture/sendense-nbd":
        keys += ["x_speed", "x_cpu"]
    for key in keys:
        try:
            float(s[key])
        except ValueError:
            bad.append("summary %s %s: %s is %r" % (s["copy"], s["tool"], key, s[key]))
for b in bad:
    print(b, file=sys.stderr)
sys.exit(1 if bad else 0)
EOF
# The table itself: a line per copy and tool, each with a wall time.
for copy in full incr; do
    for tool in capture/sendense-nbd nbdcopy/sendense-nbd nbdcopy/qemu-nbd; do
        grep -Eq "^$copy +$tool +[0-9]+\.[0-9]+ \[" "$stem.txt" ||
            fail "no table line for $copy $tool"
    done
done
echo "ok: every copy has numbers and compared identical"
