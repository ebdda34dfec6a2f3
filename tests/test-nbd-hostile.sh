#!/bin/bash
# Hostile and broken NBD clients cannot hurt sendense-nbd or its other
# clients: while a well-behaved libnbd client keeps writing, reading back
# and verifying one export, clients send garbage, impossible lengths,
# floods of options, bad magics, cut-off writes, say nothing at all,
# vanish with requests in flight, and 256 connect at once. Each is hung
# up on (or served); afterwards the good client saw no error, the server
# answers, every connection is gone, and it stops cleanly (no sanitizer
# report in --enable-sanitizers builds).
. "${top_srcdir:-$(dirname "$0")/..}/tests/functions.sh"
. "$top_srcdir/tests/server-lib.sh"
. "$top_srcdir/tests/tools/proto-lib.sh"
requires qemu-img
PY_NBD=$(nbd_python) || { echo "$0: SKIP: python3 with libnbd (python3-libnbd) not found"; exit 77; }
TOOLS=$top_srcdir/tests/tools
HOSTILE="python3 $TOOLS/proto-hostile.py"
N_CONNS=256

img=$scratch/img
mkdir -p "$img"
must "$SENDENSE_IMG" create -q -f qcow2 "$img/good.qcow2" 32M
must "$SENDENSE_IMG" create -q -f qcow2 "$img/rw.qcow2" 16M
python3 -c '
import importlib, sys
sys.path.insert(0, sys.argv[1])
raw = importlib.import_module("proto-raw")
open(sys.argv[2], "wb").write(raw.pattern(5, 0, 8 << 20))
' "$TOOLS" "$img/ro.raw" || fail "cannot write the read-only image"

# A handshake timeout well above what the option floods need even on a
# slow, loaded machine (the silent client is dropped after it; the wait
# for that is generous).
srv_start "handshake_timeout: 8"
srv_export h-good "$img/good.qcow2"
srv_export h-rw "$img/rw.qcow2"
srv_export h-ro "$img/ro.raw" "format: raw" "readonly: true"

env=$scratch/env.json
cat > "$env" <<EOF
{"port": $SRV_PORT, "unix": "$SRV_SOCK",
 "rw": {"name": "h-rw", "size": 16777216},
 "ro": {"name": "h-ro", "size": 8388608}}
EOF

# The good client runs through everything below.
stop=$scratch/good.stop
report=$scratch/good.report
"$PY_NBD" "$TOOLS/proto-nbdsh.py" --good-client "$(srv_uri h-good)" \
    "$stop" "$report" &
good_pid=$!
cleanup_fn "touch '$stop'; wait $good_pid"
eventually_connections 1 || fail "the good client did not connect"

# The silent client waits out the handshake timeout beside the others.
$HOSTILE "$env" silent > "$scratch/silent.out" 2>&1 &
silent_pid=$!

out=$scratch/hostile.out
$HOSTILE "$env" garbage-flags bad-option-magic option-4g many-options \
    long-export-name bad-request-magic write-cut-short abrupt-inflight \
    > "$out" 2>&1 || { cat "$out"; tail -40 "$SRV_LOG" >&2; fail "hostile clients"; }
cat "$out"
# Each options flood ended at the cap (not, say, at the handshake timeout).
ports=$(sed -n 's/^options flood from port \([0-9]*\):.*/\1/p' "$out")
[ -n "$ports" ] || fail "no options flood ran"
for port in $ports; do
    grep -q "(127.0.0.1:$port): more than 16384 options; closing" "$SRV_LOG" ||
        { grep "127.0.0.1:$port)" "$SRV_LOG" | tail -3 >&2;
          fail "the flood from port $port was not cut by the options cap"; }
done

wait $silent_pid || { cat "$scratch/silent.out" >&2; fail "silent client"; }
cat "$scratch/silent.out"

# 256 clients at once, all held open while connection.list is read.
ready=$scratch/conns.ready
go=$scratch/conns.go
$HOSTILE "$env" many-conns $N_CONNS "$ready" "$go" > "$scratch/conns.out" 2>&1 &
conns_pid=$!
end=$((SECONDS + 120))
while [ ! -e "$ready" ]; do
    kill -0 $conns_pid 2>/dev/null || { cat "$scratch/conns.out" >&2; fail "many-conns ended early"; }
    [ "$SECONDS" -lt "$end" ] || fail "$N_CONNS connections not made"
    sleep 0.1
done
listed=$(srv_rpc connection.list | python3 -c '
import json, sys
conns = json.load(sys.stdin)["connections"]
print(sum(1 for c in conns if c.get("export") == "h-ro" and not c["closing"]))')
[ "$listed" = "$N_CONNS" ] ||
    fail "connection.list shows $listed connections on h-ro, want $N_CONNS"
touch "$go"
wait $conns_pid || { cat "$scratch/conns.out" >&2; fail "many-conns"; }

# Only the good client is left, and it is still doing well.
eventually_connections 1 ||
    fail "connections left behind: $(srv_rpc connection.list)"
kill -0 $good_pid 2>/dev/null || fail "the good client stopped early: $(cat "$report" 2>/dev/null)"
touch "$stop"
wait $good_pid || fail "good client: $(cat "$report")"
grep -q '^ok [1-9]' "$report" || fail "good client: $(cat "$report")"
echo "good client: $(cat "$report")"

srv_rpc server.info > /dev/null
eventually_connections 0 || fail "connections left: $(srv_rpc connection.list)"
srv_stop
qemu_check_clean "$img/good.qcow2"
qemu_check_clean "$img/rw.qcow2"
exit 0
