#!/bin/bash
# Memory is bounded by in-flight budgets: a client queueing 768 MiB of
# writes against a 32 MiB per-connection budget is slowed down (the
# server stops reading its socket), never dropped, and loses nothing.
# Also with the per-process budget (64 MiB shared by the workers) as the
# tighter one, and with several such clients at once.
. "${top_srcdir:-..}/tests/functions.sh"
. "$top_srcdir/tests/server-lib.sh"

truncate -s 768M "$scratch/a.raw"
must "$SENDENSE_IMG" create -q -f qcow2 "$scratch/b.qcow2" 768M

srv_start "inflight_per_connection: 32M" "inflight_per_process: 64M"
srv_export a "$scratch/a.raw"
srv_export b "$scratch/b.qcow2"
budget=$((32 << 20))
for uri in "$(srv_uri a)" "$(srv_unix_uri b)"; do
    out=$("$PYTHON" "$top_srcdir/tests/tools/budget-check.py" "$uri" \
          "$SRV_CTL" "$budget") || fail "$uri: $out"
    echo "$uri: $out"
done
# Two at once: each connection within its budget, both complete.
"$PYTHON" "$top_srcdir/tests/tools/budget-check.py" "$(srv_uri a)" "$SRV_CTL" \
    "$budget" > "$scratch/1.out" &
p1=$!
"$PYTHON" "$top_srcdir/tests/tools/budget-check.py" "$(srv_unix_uri b)" "$SRV_CTL" \
    "$budget" > "$scratch/2.out" &
p2=$!
wait $p1 || fail "first concurrent client: $(cat "$scratch/1.out")"
wait $p2 || fail "second concurrent client: $(cat "$scratch/2.out")"
cat "$scratch/1.out" "$scratch/2.out"
srv_stop
must qemu-img check "$scratch/b.qcow2"
