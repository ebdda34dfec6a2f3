#!/bin/bash
# sendense-nbd speaks the NBD protocol as the spec says: negotiation,
# transmission flags, every command and flag, the spec's errors (after
# which the connection goes on), and many requests in flight.
#
# Two clients: a raw-socket one (tests/tools/proto-raw.py, driven by
# proto-checks.py) for the byte-level checks and for what libnbd refuses
# to send, and libnbd's python binding (proto-nbdsh.py) as an independent
# client. Image sizes and layouts come from qemu-img/qemu-io.
. "${top_srcdir:-$(dirname "$0")/..}/tests/functions.sh"
. "$top_srcdir/tests/server-lib.sh"
. "$top_srcdir/tests/tools/proto-lib.sh"
requires qemu-img qemu-io
PY_NBD=$(nbd_python) || { echo "$0: SKIP: python3 with libnbd (python3-libnbd) not found"; exit 77; }
TOOLS=$top_srcdir/tests/tools

img=$scratch/img
mkdir -p "$img"
# Sizes that are not round numbers, so a wrong size shows.
must "$SENDENSE_IMG" create -q -f qcow2 "$img/rw.qcow2" 67109376
must "$SENDENSE_IMG" create -q -f qcow2 "$img/ro.qcow2" 20971520
must "$SENDENSE_IMG" create -q -f qcow2 -o compat=0.10 "$img/v2.qcow2" 16M
must "$SENDENSE_IMG" create -q -f qcow2 "$img/hidden.qcow2" 1M
must "$SENDENSE_IMG" create -q -f qcow2 "$img/aio.qcow2" 64M
# A chain: the backing file has data at [0, 1M), the overlay at [2M, 3M),
# written with the pattern the checks expect (proto-raw.py's pattern()).
python3 -c '
import importlib, sys
sys.path.insert(0, sys.argv[1])
raw = importlib.import_module("proto-raw")
open(sys.argv[2], "wb").write(raw.pattern(1, 0, 1 << 20))
open(sys.argv[3], "wb").write(raw.pattern(2, 2 << 20, 1 << 20))
' "$TOOLS" "$img/p1" "$img/p2" || fail "cannot write the patterns"
must "$SENDENSE_IMG" create -q -f qcow2 "$img/base.qcow2" 4M
must qemu-io -f qcow2 -c "write -s $img/p1 0 1M" "$img/base.qcow2"
must "$SENDENSE_IMG" create -q -f qcow2 -b base.qcow2 -F qcow2 "$img/chain.qcow2"
must qemu-io -f qcow2 -c "write -s $img/p2 2M 1M" "$img/chain.qcow2"

vsize() { qemu-img info -U --output=json "$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["virtual-size"])'; }

srv_start
DESC="Protocol test export, read-only, 20 MiB"
srv_export p-rw "$img/rw.qcow2"
srv_export p-ro "$img/ro.qcow2" "readonly: true" "description: \"$DESC\""
srv_export p-v2 "$img/v2.qcow2"
srv_export p-hidden "$img/hidden.qcow2" "allow: [10.99.0.0/16]"
srv_export p-chain "$img/chain.qcow2" "readonly: true"
srv_export p-aio "$img/aio.qcow2"

env=$scratch/env.json
cat > "$env" <<EOF
{"port": $SRV_PORT, "unix": "$SRV_SOCK",
 "rw": {"name": "p-rw", "size": $(vsize "$img/rw.qcow2")},
 "ro": {"name": "p-ro", "size": $(vsize "$img/ro.qcow2"), "description": "$DESC"},
 "v2": {"name": "p-v2", "size": $(vsize "$img/v2.qcow2")},
 "hidden": {"name": "p-hidden"},
 "chain": {"name": "p-chain", "size": $(vsize "$img/chain.qcow2")}}
EOF

python3 "$TOOLS/proto-checks.py" "$env" || { tail -30 "$SRV_LOG" >&2; fail "raw-socket protocol checks"; }

# libnbd's view of the same exports.
"$PY_NBD" "$TOOLS/proto-nbdsh.py" "$env" "$(srv_uri '')" "$(srv_uri p-aio)" ||
    { tail -30 "$SRV_LOG" >&2; fail "libnbd protocol checks"; }

# Every connection is gone once its client is.
eventually_connections 0 || fail "connections left: $(srv_rpc connection.list)"
srv_stop
# What the server wrote stayed a consistent image.
qemu_check_clean "$img/rw.qcow2"
qemu_check_clean "$img/aio.qcow2"
qemu_check_clean "$img/v2.qcow2"
exit 0
